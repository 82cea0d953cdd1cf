"""Fuzz the perception node over DDS: 1100 malformed frames and commands (hypothesis). The node must
stay alive, answer each with an error status naming the problem, and keep processing good frames."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from node_inputs import fashion_images
from test_node_perception import Probe, _members, _start

pytestmark = pytest.mark.ros


def fuzz(n: int) -> settings:
    return settings(max_examples=n, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))  # fmt: skip


ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "yuv422", "32FC1", "", "RGB8"]


@st.composite
def raw_images(draw: Any) -> Any:
    from sensor_msgs.msg import Image

    width = draw(st.integers(0, 64))
    height = draw(st.integers(0, 64))
    encoding = draw(st.sampled_from(ENCODINGS))
    step = draw(st.one_of(st.just(0), st.integers(0, 300)))
    size = draw(st.one_of(st.integers(0, 64), st.integers(0, 64 * 64 * 4 + 8)))
    msg = Image(width=width, height=height, encoding=encoding, step=step)
    msg.is_bigendian = draw(st.integers(0, 1))
    msg.data = draw(st.binary(min_size=size, max_size=size))
    return msg


@st.composite
def compressed_images(draw: Any) -> Any:
    import cv2
    from sensor_msgs.msg import CompressedImage

    images, _ = fashion_images()
    fmt = draw(st.sampled_from(["jpeg", "png", "tiff", "", "jpeg; bgr8", "rgb8; jpeg compressed"]))
    ok, good = cv2.imencode(".jpg", images[draw(st.integers(0, 63))])
    assert ok
    good_bytes = good.tobytes()
    data = draw(
        st.one_of(
            st.binary(max_size=300),
            st.integers(0, len(good_bytes) - 1).map(lambda n: good_bytes[:n]),  # truncated
            st.just(b"\xff\xd8" + bytes(100)),
        )
    )
    return CompressedImage(format=fmt, data=data)


def commands(members: list[str]) -> Any:
    return st.fixed_dictionaries(
        {
            "subnet_id": st.one_of(st.sampled_from([*members, ""]), st.text(max_size=12)),
            "processor": st.sampled_from(["", "cpu", "cuda", "gpu", "npu", "CPU"]),
            "threads": st.integers(0, 65535),
            "cpu_frequency_khz": st.one_of(st.just(0), st.integers(0, 2**32 - 1)),
            "gpu_frequency_khz": st.one_of(st.just(0), st.integers(0, 2**32 - 1)),
            "power_mode": st.integers(-128, 127),
            "target_model": st.sampled_from(["model", "", "other"]),
            "latency_target_ms": st.one_of(
                st.floats(allow_nan=True, allow_infinity=True, width=32), st.just(0.0)
            ),
        }
    )


def _check_answer(status: Any) -> None:
    if status.level == status.LEVEL_ERROR:
        assert status.message.startswith("frame rejected: "), status.message
        assert len(status.message) > len("frame rejected: ") + 5
    else:  # a random message that happens to be a valid image is simply processed
        assert status.level == status.LEVEL_OK, status.message


def test_fuzz_raw_frames_and_commands(ros_node: Any, processes: Any) -> None:
    # Frames are costed on the simulated board, so commands may carry frequencies / modes.
    processes.start_python("dynofa_ros.nodes.sim_platform_node")
    _start(processes, "allow_dvfs:=true", "platform:=sim-xavier-nx", "max_threads:=2")
    probe = Probe(ros_node, processes)
    probe.ready()
    assert probe.frame(0).level == 0, probe.statuses[-1].message

    @fuzz(500)
    @given(msg=raw_images())
    def one_frame(msg: Any) -> None:
        msg.header.stamp = ros_node.get_clock().now().to_msg()
        _check_answer(probe.frame(msg=msg))

    one_frame()
    rejected = probe.statuses[-1].frames_rejected
    assert rejected >= 400, f"only {rejected} of 500 malformed frames were rejected"

    members = _members()

    @fuzz(300)
    @given(fields=commands(members))
    def one_command(fields: Any) -> None:
        seq = probe.command(**fields)
        status = probe.frame(seq % 64)
        assert status.level in (status.LEVEL_OK, status.LEVEL_ERROR)
        answered = status.last_command_seq == seq or probe.statuses[-2].rejected_command_seq == seq
        assert answered or any(s.rejected_command_seq == seq for s in probe.statuses[-3:])
        assert status.subnet_id in members

    one_command()
    good = probe.frame(5)
    assert good.level == good.LEVEL_OK and all(p.alive() for p in processes.processes)


def test_fuzz_compressed_frames(ros_node: Any, processes: Any) -> None:
    _start(processes, "input:=compressed")
    probe = Probe(ros_node, processes)
    probe.ready(probe.compressed)

    @fuzz(300)
    @given(msg=compressed_images())
    def one(msg: Any) -> None:
        msg.header.stamp = ros_node.get_clock().now().to_msg()
        _check_answer(probe.frame(msg=msg, publisher=probe.compressed))

    one()
    assert probe.statuses[-1].frames_rejected >= 200
    assert processes.processes[0].alive()
