"""The ViT family under the runtime (issue 10): a real perception node process selects it by its
``checkpoint`` parameter (the family defaults to the one beside it), on this machine's CPU and on
the simulated Xavier NX GPU over DDS, and classifies camera frames with it."""

from __future__ import annotations

from typing import Any

import pytest
from node_inputs import fashion_images
from test_node_perception import NODE, Probe

from dynofa_ros.family import load_family
from dynofa_ros.resources import models_dir

pytestmark = pytest.mark.ros

CHECKPOINT = "fmnist_vit_small.safetensors"


def _start(processes: Any, *params: str) -> Any:
    args = ["--ros-args", "-r", "__ns:=/model", "-p", "model_name:=model",
            "-p", f"checkpoint:={models_dir() / CHECKPOINT}",
            *(x for p in params for x in ("-p", p))]  # fmt: skip
    return processes.start_python(NODE, *args)


def _classify(probe: Probe, n: int) -> int:
    """Feed ``n`` test images; every frame must succeed. Returns how many were right."""
    _, labels = fashion_images()
    correct = 0
    for i in range(n):
        status = probe.frame(i)
        assert status.level == status.LEVEL_OK, status.message
        assert probe.results[-1].model_name == "model"
        correct += int(probe.results[-1].class_ids[0] == labels[i])
    return correct


def test_vit_family_on_this_cpu(ros_node: Any, processes: Any) -> None:
    family = load_family(models_dir() / "fmnist_vit_small.cpu.family.json")
    members = [m.id for m in family.members]
    _start(processes, "max_threads:=1")
    probe = Probe(ros_node, processes)
    probe.ready()
    assert _classify(probe, 16) >= 12, "the ViT family is ~88 % accurate on Fashion-MNIST"
    best = max(family.members, key=lambda m: m.accuracy).id
    assert probe.statuses[-1].subnet_id == best  # the most accurate member of the ViT family
    for target in (members[0], members[-1]):
        seq = probe.command(subnet_id=target, threads=1)
        status = probe.frame(3)
        assert status.last_command_seq == seq and status.subnet_id == target
        assert probe.results[-1].subnet_id == target


def test_vit_family_on_the_simulated_gpu(ros_node: Any, processes: Any) -> None:
    """Frames are costed by sim_platform_node with the ViT members' workloads: at the family's
    reference clocks a frame takes the family's latency (2 % jitter), 13 kernels per layer."""
    from node_inputs import image_message
    from rclpy.time import Time

    family = load_family(models_dir() / "fmnist_vit_small.sim-nx-cuda.family.json")
    processes.start_python("dynofa_ros.nodes.sim_platform_node")
    _start(processes, "platform:=sim-xavier-nx", "processor:=cuda", "max_threads:=1",
           "allow_dvfs:=true")  # fmt: skip
    probe = Probe(ros_node, processes)
    probe.ready()
    images, labels = fashion_images()
    t0 = ros_node.get_clock().now().nanoseconds + 1_000_000_000  # after ready()'s frame

    def frame(i: int) -> Any:
        # the board follows the frames' stamps: 1 s apart, no frame finds it busy
        stamp = Time(nanoseconds=t0 + i * 1_000_000_000).to_msg()
        status = probe.frame(msg=image_message(images[i], stamp))
        assert status.level == status.LEVEL_OK and status.frames_dropped == 0, status.message
        return status

    # the family's reference clocks: GPU top step, CPU at the default power mode's cap
    seq = probe.command(processor="cuda", threads=1, gpu_frequency_khz=1109250,
                        cpu_frequency_khz=1420800)  # fmt: skip
    correct = 0
    for i in range(8):
        status = frame(i)
        correct += int(probe.results[-1].class_ids[0] == labels[i])
    assert correct >= 5 and status.last_command_seq == seq
    member = family.member(status.subnet_id)
    assert member.config["depth"] >= 5  # the most accurate members are deep
    assert status.latency_ms == pytest.approx(member.latency_ms("cuda"), rel=0.1)
    smallest = family.members[0]
    seq = probe.command(subnet_id=smallest.id, threads=1)
    status = frame(8)
    assert status.last_command_seq == seq and status.subnet_id == smallest.id
    assert status.latency_ms == pytest.approx(smallest.latency_ms("cuda"), rel=0.1)
    # 3 layers against 5-6: 13 kernels a layer is what separates them
    assert member.latency_ms("cuda") / smallest.latency_ms("cuda") > 1.2
