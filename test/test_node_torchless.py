"""A robot without a usable torch: the perception node over real DDS runs a family from its
prepared ONNX files (``dynofa export-family``), and without them fails configure with one line
saying what to do. torch is blocked in the node process by a ``sitecustomize`` that makes
``import torch`` fail, as on a board where it is absent or broken."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from test_engine_prepared import copy_family
from test_engine_support import CHECKPOINT
from test_node_perception import NODE, Probe

from dynofa_ros.engine.prepared import export_family
from dynofa_ros.family import load_family

pytestmark = pytest.mark.ros

BLOCK_TORCH = "import sys\nsys.modules['torch'] = None  # no usable torch on this board\n"


def _start(processes: Any, family: Path, blocker: Path) -> Any:
    args = ["--ros-args", "-r", "__ns:=/model", "-p", "model_name:=model",
            "-p", f"family:={family}", "-p", "max_threads:=1"]  # fmt: skip
    return processes.start_python(NODE, *args, env={"PYTHONPATH": str(blocker)})


def test_perception_node_runs_prepared_onnx_without_torch(
    ros_node: Any, processes: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_TORCH)
    family = copy_family(tmp_path / "robot")  # no checkpoint in that folder, as shipped
    export_family(CHECKPOINT, family)

    _start(processes, family, blocker)
    probe = Probe(ros_node, processes)
    probe.ready()
    for i in range(3):
        status = probe.frame(i)
        assert status.level == status.LEVEL_OK, status.message
    members = [m.id for m in load_family(family).members]
    seq = probe.command(subnet_id=members[0], threads=1)
    status = probe.frame(3)
    assert status.last_command_seq == seq and probe.results[-1].subnet_id == members[0]


def test_without_prepared_files_configure_fails_in_one_line(processes: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_TORCH)
    family = copy_family(tmp_path / "bare")
    proc = _start(processes, family, blocker)
    deadline = time.monotonic() + 60
    while "configure failed" not in proc.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    line = next(x for x in proc.output().splitlines() if "configure failed" in x)
    assert "torch is installed but cannot be imported" in line and "export-family" in line
    assert proc.alive(), "a failed configure leaves the lifecycle node running, unconfigured"
