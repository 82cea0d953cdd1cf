"""The perception node over real DDS: frames in, results out, commands between frames, bad input."""

from __future__ import annotations

from typing import Any

import pytest
from node_inputs import fashion_images, image_message
from ros_harness import call_service, publish_until, spin_until, wait_for_subscribers

pytestmark = pytest.mark.ros

NODE = "dynofa_ros.nodes.perception_node"
CPU_FAMILY = "fmnist_mbv3_small.cpu.family.json"


class Probe:
    """The test's side of one perception node in namespace ``/model``."""

    def __init__(self, node: Any, processes: Any, *, ns: str = "/model") -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image

        from dynofa_ros.msg import ClassificationResult, PerceptionStatus, ReconfigurationCommand
        from dynofa_ros.nodes.qos import COMMANDS

        self.node, self.processes = node, processes
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.results: list[Any] = []
        self.statuses: list[Any] = []
        node.create_subscription(ClassificationResult, f"{ns}/classification",
                                 self.results.append, qos)  # fmt: skip
        node.create_subscription(PerceptionStatus, f"{ns}/status", self.statuses.append, qos)
        self.images = node.create_publisher(Image, f"{ns}/image", qos)
        self.compressed = node.create_publisher(CompressedImage, f"{ns}/image/compressed", qos)
        self.commands = node.create_publisher(ReconfigurationCommand, f"{ns}/reconfigure", COMMANDS)
        self.seq = 0

    def ready(self, publisher: Any = None) -> None:
        """Wait until frames reach the node and its statuses reach us: one frame answered."""
        publisher = publisher or self.images
        wait_for_subscribers(self.node, publisher, processes=self.processes, timeout_s=60.0)
        wait_for_subscribers(self.node, self.commands, processes=self.processes)
        n = len(self.statuses)
        publish_until(self.node, lambda: publisher.publish(self._first_frame(publisher)),
                      lambda: len(self.statuses) > n, 60.0, what="first frame status",
                      processes=self.processes)  # fmt: skip

    def _first_frame(self, publisher: Any) -> Any:
        images, _ = fashion_images()
        stamp = self.node.get_clock().now().to_msg()
        if publisher is not self.compressed:
            return image_message(images[0], stamp)
        import cv2
        from sensor_msgs.msg import CompressedImage

        msg = CompressedImage(format="png", data=cv2.imencode(".png", images[0])[1].tobytes())
        msg.header.stamp = stamp
        return msg

    def until(self, predicate: Any, what: str, timeout_s: float = 30.0) -> None:
        spin_until(self.node, predicate, timeout_s, what=what, processes=self.processes)

    def frame(self, i: int = 0, *, msg: Any = None, publisher: Any = None) -> Any:
        """Publish one frame and return the status it produces (result or rejection)."""
        if msg is None:
            images, _ = fashion_images()
            msg = image_message(images[i], self.node.get_clock().now().to_msg())
        n = len(self.statuses)
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)

        def answered() -> bool:
            return any((s.header.stamp.sec, s.header.stamp.nanosec) == stamp
                       for s in self.statuses[n:])  # fmt: skip

        (publisher or self.images).publish(msg)
        self.until(answered, "frame status")
        return next(s for s in self.statuses[n:]
                    if (s.header.stamp.sec, s.header.stamp.nanosec) == stamp)  # fmt: skip

    def command(self, **fields: Any) -> int:
        from dynofa_ros.msg import ReconfigurationCommand

        self.seq += 1
        cmd = ReconfigurationCommand(seq=self.seq, target_model="model", power_mode=-1)
        for k, v in fields.items():
            setattr(cmd, k, v)
        self.commands.publish(cmd)
        return cmd.seq


def _start(processes: Any, *params: str) -> Any:
    args = ["--ros-args", "-r", "__ns:=/model", "-p", "model_name:=model",
            "-p", f"family:={_family()}", *(x for p in params for x in ("-p", p))]  # fmt: skip
    return processes.start_python(NODE, *args)


def _family() -> str:
    from dynofa_ros.resources import models_dir

    return str(models_dir() / CPU_FAMILY)


def _members() -> list[str]:
    from dynofa_ros.family import load_family

    return [m.id for m in load_family(_family()).members]


def test_frames_in_results_out_with_commands_between_frames(ros_node: Any, processes: Any) -> None:
    _start(processes)
    probe = Probe(ros_node, processes)
    probe.ready()
    _, labels = fashion_images()
    correct = 0
    for i in range(20):
        status = probe.frame(i)
        result = probe.results[-1]
        assert status.level == status.LEVEL_OK, status.message
        assert result.model_name == "model" and len(result.class_ids) == 5
        assert list(result.scores) == sorted(result.scores, reverse=True)
        assert 0.0 < sum(result.scores) <= 1.0 + 1e-5
        correct += int(result.class_ids[0] == labels[i])
        assert status.inference_ms > 0 and status.preprocess_ms > 0 and status.latency_ms > 0
    assert correct >= 15, f"{correct}/20 correct: the embedded default is > 85% accurate"

    members = _members()
    for target in (members[0], members[-1], members[2]):
        seq = probe.command(subnet_id=target, threads=1)
        status = probe.frame(0)
        assert status.last_command_seq == seq, "acknowledged by the next frame's status"
        assert status.subnet_id == target and probe.results[-1].subnet_id == target
        assert probe.results[-1].command_seq == seq

    # Unknown member: rejected with the reason, the previous configuration stays.
    seq = probe.command(subnet_id="nope")
    probe.until(lambda: probe.statuses[-1].rejected_command_seq == seq, "rejection status")
    rejected = probe.statuses[-1]
    assert rejected.level == rejected.LEVEL_WARN
    assert "subnet_id 'nope' is not in the family" in rejected.rejected_reason
    status = probe.frame(1)
    assert status.subnet_id == members[2] and status.last_command_seq == seq - 1

    # Threads that were not prepared, a command for another model: rejected alike.
    seq = probe.command(threads=7)
    probe.until(lambda: probe.statuses[-1].rejected_command_seq == seq, "threads rejected")
    assert "threads 7 is not a prepared thread count" in probe.statuses[-1].rejected_reason
    seq = probe.command(target_model="other", subnet_id=members[0])
    probe.until(lambda: probe.statuses[-1].rejected_command_seq == seq, "target rejected")
    assert "target_model 'other'" in probe.statuses[-1].rejected_reason
    # DVFS is off by default: frequencies are ignored (noted), the member still switches.
    seq = probe.command(subnet_id=members[1], cpu_frequency_khz=123)
    status = probe.frame(2)
    assert status.last_command_seq == seq and status.subnet_id == members[1]


def test_compressed_input_and_live_parameters(ros_node: Any, processes: Any) -> None:
    import cv2
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from sensor_msgs.msg import CompressedImage

    _start(processes, "input:=compressed", "latency_target_ms:=40.0")
    probe = Probe(ros_node, processes)
    probe.ready(probe.compressed)
    images, labels = fashion_images()
    _, png = cv2.imencode(".png", images[3])
    msg = CompressedImage(format="png", data=png.tobytes())
    msg.header.stamp = ros_node.get_clock().now().to_msg()
    status = probe.frame(msg=msg, publisher=probe.compressed)
    assert status.level == status.LEVEL_OK and status.latency_target_ms == pytest.approx(40.0)
    assert probe.results[-1].class_ids[0] == labels[3]

    client = ros_node.create_client(SetParameters, "/model/perception/set_parameters")

    def set_param(name: str, value: ParameterValue) -> Any:
        request = SetParameters.Request(parameters=[Parameter(name=name, value=value)])
        return call_service(ros_node, client, request, processes=processes).results[0]

    double = ParameterType.PARAMETER_DOUBLE
    r = set_param("latency_target_ms", ParameterValue(type=double, double_value=25.0))
    assert r.successful, r.reason
    msg.header.stamp = ros_node.get_clock().now().to_msg()
    assert probe.frame(msg=msg, publisher=probe.compressed).latency_target_ms == pytest.approx(25.0)
    r = set_param("latency_target_ms", ParameterValue(type=double, double_value=-1.0))
    assert not r.successful and "latency_target_ms" in r.reason and "60000" in r.reason
    r = set_param("latency_target_ms", ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                      string_value="fast"))  # fmt: skip
    assert not r.successful
    r = set_param("top_k", ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=3))
    assert not r.successful
    assert probe.processes.processes[0].alive()


def test_bad_start_parameters_fail_configure_with_the_reason(processes: Any, tmp_path: Any) -> None:
    bad = tmp_path / "corrupt.family.json"
    bad.write_text("{ not json")
    proc = processes.start_python(NODE, "--ros-args", "-p", f"family:={bad}")
    import time

    deadline = time.monotonic() + 60
    while "configure failed" not in proc.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "configure failed" in proc.output() and "corrupt.family.json" in proc.output()
    assert proc.alive(), "a failed configure leaves the lifecycle node running, unconfigured"
    proc2 = processes.start_python(NODE, "--ros-args", "-p", "top_k:=0")
    assert proc2.popen.wait(60) == 2
    assert "top_k" in proc2.output() and "Max: 20" in proc2.output()
