"""Discovery confined to the machine on every ROS 2 distribution: the variable each one reads
(Humble: ROS_LOCALHOST_ONLY; Iron and later: ROS_AUTOMATIC_DISCOVERY_RANGE), found from the
installed rclpy's metadata (faked here as a distribution would install it), else ROS_DISTRO."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_runtime_versions import fake_distribution

from dynofa_ros.processes import DISCOVERY_VARIABLES, local_discovery_env, rclpy_major, ros_env

RANGE = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
ONLY = {"ROS_LOCALHOST_ONLY": "1"}


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in (*DISCOVERY_VARIABLES, "ROS_DISTRO"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("rclpy", "expected"),
    [("3.3.14", ONLY), ("4.1.5", RANGE), ("7.1.4", RANGE), ("9.1.2", RANGE)],
    ids=["humble", "iron", "jazzy", "kilted"],
)
def test_the_installed_rclpy_decides(
    clean: pytest.MonkeyPatch, tmp_path: Path, rclpy: str, expected: dict[str, str]
) -> None:
    clean.syspath_prepend(str(fake_distribution(tmp_path, "rclpy", rclpy)))
    clean.setenv("ROS_DISTRO", "rolling")  # the rclpy that runs wins over a sourced setup file
    assert rclpy_major() == int(rclpy.split(".", maxsplit=1)[0])
    assert local_discovery_env() == expected
    env = ros_env(42)
    assert env["ROS_DOMAIN_ID"] == "42"
    assert {k: env[k] for k in DISCOVERY_VARIABLES if k in env} == expected


@pytest.mark.parametrize(
    ("distro", "expected"),
    [
        ("humble", ONLY),
        ("Humble", ONLY),
        ("jazzy", RANGE),
        ("kilted", RANGE),
        ("", {**RANGE, **ONLY}),
    ],
)
def test_without_rclpy_metadata_ros_distro_decides(
    clean: pytest.MonkeyPatch, distro: str, expected: dict[str, str]
) -> None:
    clean.setattr("dynofa_ros.processes.rclpy_major", lambda: None)
    env = {"ROS_DISTRO": distro} if distro else {}
    assert local_discovery_env(env) == expected
