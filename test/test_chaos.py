"""``dynofa chaos`` against a real graph (separate processes, real DDS), and its checks.

The DDS run here skips the kill -9 phase (test_node_faults restarts the nodes one by one): four
restarts with their model loading double the time and the load the rest of the suite sees."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from ros_harness import exclusive_domain

from dynofa_ros.chaos import STUCK_S, Report, judge


@pytest.mark.ros
def test_the_graph_survives_restarts_clock_jumps_and_hostile_input() -> None:
    with exclusive_domain() as domain:
        done = subprocess.run(
            [sys.executable, "-m", "dynofa_ros.cli", "chaos", "--inputs", "240",
             "--domain-id", str(domain), "--no-restarts"],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    summary = out.strip().splitlines()[-1]
    assert re.search(r"chaos: 240 inputs tried \(frames 30, compressed 30, commands 30, "
                     r"battery 30, temperature 30, load 30, mission 30, parameters 30\), "
                     r"0 restarts, 0 deaths, 0 stuck periods", summary), summary  # fmt: skip
    assert summary.endswith("; OK"), summary
    assert "/clock jumps back" in out


def test_the_checks_fail_what_they_should() -> None:
    sending = [(0.0, 10.0)]
    steady = [(0.1 * i, i) for i in range(101)]
    assert not judge(Report(), steady, sending, {"n": (1000, 1010)}).failures
    gap = [(t, n) for t, n in steady if not 3.0 < t < 3.0 + STUCK_S + 0.5]
    r = judge(Report(), gap, sending, {})
    assert len(r.stuck) == 1 and r.failures and r.longest_gap_s > STUCK_S
    silent_end = [(t, n) for t, n in steady if t < 7.0]  # results stop before the end
    assert judge(Report(), silent_end, sending, {}).stuck
    r = judge(Report(), steady, sending, {"perception": (1000, 1100)})
    assert r.failures == ["perception RSS grew 10.0% (>= 5%)"]
    r = Report(deaths=["manager"])
    assert "nodes died: manager" in judge(r, steady, sending, {}).failures
    assert "1 deaths" in r.summary() and "FAILED" in r.summary()
