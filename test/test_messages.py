"""Every custom message crosses DDS between two processes with every field intact."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from ros_harness import spin_until, wait_for_publishers, wait_for_subscribers

from dynofa_ros.nodes.convert import message_class

MSG_DIR = Path(__file__).resolve().parent.parent / "msg"
CUSTOM = sorted(f"dynofa_ros/msg/{p.stem}" for p in MSG_DIR.glob("*.msg"))
ECHO = str(Path(__file__).with_name("ros_echo_node.py"))

INT_BITS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64, "octet": 8, "char": 8}


def _value(typ: str, seed: int) -> Any:
    """A non-default value of a rosidl field type, different for each seed."""
    if typ.startswith("sequence<"):
        inner = typ[len("sequence<") : -1].split(",", maxsplit=1)[0]
        return [_value(inner, seed + i) for i in range(3)]
    if typ == "boolean":
        return True
    if typ.startswith("uint"):
        return 2 ** int(typ[4:]) - 1 - seed
    if typ in INT_BITS:
        return -(2 ** (INT_BITS[typ] - 1)) + seed
    if typ == "float":  # float32: exactly representable values
        return 1.5 + seed * 0.25
    if typ == "double":
        return math.pi * 1e100 + seed
    if typ == "string":
        return f"v{seed}-ü→✓"
    if "/" in typ:
        return _filled(
            message_class(typ.replace("/", "/msg/", 1) if "/msg/" not in typ else typ), seed
        )
    raise AssertionError(f"field type {typ} not covered by the test")


def _filled(cls: type, seed: int = 1) -> Any:
    msg = cls()
    for i, (name, typ) in enumerate(cls.get_fields_and_field_types().items()):
        if typ == "uint32" and name == "nanosec":
            setattr(msg, name, 999_999_999 - seed)
        else:
            setattr(msg, name, _value(typ, seed + i))
    return msg


def _as_plain(msg: Any) -> Any:
    if hasattr(msg, "get_fields_and_field_types"):
        return {n: _as_plain(getattr(msg, n)) for n in msg.get_fields_and_field_types()}
    if isinstance(msg, (list, tuple)) or hasattr(msg, "tolist"):
        return [_as_plain(v) for v in (msg.tolist() if hasattr(msg, "tolist") else msg)]
    return msg


def test_every_message_type_has_documented_fields() -> None:
    """Each field line of each .msg says what it is (unit / range) in a trailing comment."""
    assert len(CUSTOM) >= 4
    for path in [*MSG_DIR.glob("*.msg"), *MSG_DIR.parent.glob("srv/*.srv")]:
        for line in path.read_text().splitlines():
            code = line.split("#", 1)[0].strip()
            if code and "=" not in code and code != "---":  # a field, not a constant
                assert "#" in line, f"{path.name}: field without a comment: {line!r}"


@pytest.mark.ros
def test_custom_messages_round_trip_between_processes(ros_node: Any, processes: Any) -> None:
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    processes.start_python(ECHO, *CUSTOM, name="echo")
    received: dict[str, Any] = {}
    sent: dict[str, Any] = {}
    pubs = {}
    for name in CUSTOM:
        short = name.split("/")[-1]
        cls = message_class(name)
        pubs[short] = ros_node.create_publisher(cls, f"echo_in/{short}", qos)
        ros_node.create_subscription(
            cls, f"echo_out/{short}", lambda m, s=short: received.setdefault(s, m), qos
        )
    for i, (short, pub) in enumerate(pubs.items()):
        wait_for_subscribers(ros_node, pub, processes=processes)
        wait_for_publishers(ros_node, f"echo_out/{short}", processes=processes)
        sent[short] = _filled(
            type(pub.msg_type()) if False else message_class(f"dynofa_ros/msg/{short}"),
            seed=10 * i + 1,
        )
        pub.publish(sent[short])
    spin_until(
        ros_node, lambda: len(received) == len(sent), what="echoed messages", processes=processes
    )
    for short, msg in sent.items():
        assert _as_plain(received[short]) == _as_plain(msg), short
