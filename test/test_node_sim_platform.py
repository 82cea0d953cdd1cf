"""The simulated-board node over real DDS: frame timing service, scenario events, telemetry."""

from __future__ import annotations

import time
from typing import Any

import pytest
from ros_harness import call_service, spin_until, wait_for_publishers

pytestmark = pytest.mark.ros

NODE = "dynofa_ros.nodes.sim_platform_node"


def _published_workload() -> dict[str, Any]:
    """The smallest published Dynamic-OFA GPU member, as the simulator describes it."""
    from dynofa_ros.platform.workload import PUBLISHED_GPU_FAMILY

    w = PUBLISHED_GPU_FAMILY[0].workload
    return {"macs": w.macs, "layers": w.layers, "params": w.params, "runtime": w.runtime}


WORKLOAD = _published_workload()


def _call(node: Any, client: Any, request: Any, processes: Any) -> Any:
    future = client.call_async(request)
    spin_until(node, future.done, what="simulate_frame response", processes=processes)
    return future.result()


def _ready(node: Any, client: Any, processes: Any) -> None:
    """Until the service answers (a frame is not idempotent, so the handshake is a request the
    node rejects: rmw may drop a server's first responses, see ros_harness.call_service)."""
    call_service(node, client, _request(node, processor="tpu"), processes=processes)


def _request(node: Any, **fields: Any) -> Any:
    from dynofa_ros.srv import SimulateFrame

    req = SimulateFrame.Request(
        model_name="m", processor="cpu", threads=2, power_mode=-1, cpu_frequency_khz=1420800
    )
    req.stamp = node.get_clock().now().to_msg()
    for k, v in {**WORKLOAD, **fields}.items():
        setattr(req, k, v)
    return req


def test_frame_timing_follows_frequency_and_corunner(ros_node: Any, processes: Any) -> None:
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import BatteryState, Temperature

    from dynofa_ros.msg import CoRunnerLoad
    from dynofa_ros.srv import SimulateFrame

    processes.start_python(NODE, "--ros-args", "-p", "publish_period_s:=0.05")
    client = ros_node.create_client(SimulateFrame, "sim_board/simulate_frame")
    _ready(ros_node, client, processes)

    fast = _call(ros_node, client, _request(ros_node), processes)
    slow = _call(ros_node, client, _request(ros_node, cpu_frequency_khz=729600), processes)
    assert fast.success and slow.success, (fast.message, slow.message)
    assert slow.latency_ms > fast.latency_ms * 1.5
    assert fast.cpu_frequency_khz == 1420800 and slow.cpu_frequency_khz == 729600
    assert fast.power_w > slow.power_w > 0

    # A co-runner taking half the CPU slows the next frame at the same frequency.
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = ros_node.create_publisher(CoRunnerLoad, "scenario/corunner", qos)
    spin_until(ros_node, lambda: pub.get_subscription_count() > 0, what="corunner subscriber")
    event = CoRunnerLoad(name="cpu_app", processor="cpu", share=0.5)
    event.header.stamp = ros_node.get_clock().now().to_msg()
    pub.publish(event)
    loaded = None
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:  # the event and the call race over two connections
        loaded = _call(ros_node, client, _request(ros_node), processes)
        if loaded.latency_ms > fast.latency_ms * 1.2:
            break
    assert loaded is not None and loaded.latency_ms > fast.latency_ms * 1.2

    # Telemetry for the manager arrives as standard messages.
    got: dict[str, Any] = {}
    ros_node.create_subscription(BatteryState, "battery", lambda m: got.setdefault("bat", m), qos)
    wait_for_publishers(ros_node, "temperature/cpu_therm", processes=processes)
    ros_node.create_subscription(
        Temperature, "temperature/cpu_therm", lambda m: got.setdefault("temp", m), qos
    )
    spin_until(ros_node, lambda: len(got) == 2, what="battery and temperature",
               processes=processes)  # fmt: skip
    assert 0.0 < got["bat"].percentage <= 1.0
    assert got["bat"].power_supply_status == BatteryState.POWER_SUPPLY_STATUS_DISCHARGING
    assert 0.0 < got["temp"].temperature < 120.0 and got["temp"].header.frame_id == "CPU-therm"


def test_bad_requests_are_rejected_and_the_node_keeps_serving(
    ros_node: Any, processes: Any
) -> None:
    from dynofa_ros.srv import SimulateFrame

    processes.start_python(NODE)
    client = ros_node.create_client(SimulateFrame, "sim_board/simulate_frame")
    _ready(ros_node, client, processes)
    bad = {
        "gpu_frequency_khz": 1_000_000,  # not a table step
        "processor": "tpu",
        "layers": 0,
        "runtime": "tensorflow",
        "power_mode": 9,
    }
    for field, value in bad.items():
        reply = _call(ros_node, client, _request(ros_node, **{field: value}), processes)
        assert not reply.success, field
        assert reply.message, field
    assert (
        "1000000"
        in _call(
            ros_node, client, _request(ros_node, gpu_frequency_khz=1_000_000), processes
        ).message
    )
    good = _call(ros_node, client, _request(ros_node), processes)
    assert good.success and good.latency_ms > 0
