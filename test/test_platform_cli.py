"""``dynofa platform info / set`` and ``dynofa bench nx_sim``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from platform_fakes import GPU_DIR, make_nvpmodel, make_xavier_nx_tree

from dynofa_ros.bench import nx_sim
from dynofa_ros.cli import main as dynofa


def test_info_sim_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert dynofa(["platform", "info", "--backend", "sim-xavier-nx", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["backend"] == "sim-xavier-nx"
    assert [p["name"] for p in d["processors"]] == ["cpu", "cuda"]
    assert d["capabilities"]["frequency"] == ["cpu", "cuda"]
    assert d["telemetry"]["power_mode"] == 2 and d["telemetry"]["total_power_w"] > 0


def test_info_jetson_fake_tree_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_xavier_nx_tree(tmp_path / "root")
    script, _state, _calls = make_nvpmodel(tmp_path)
    argv = ["platform", "info", "--sysfs-root", str(root), "--nvpmodel", str(script)]
    assert dynofa(argv) == 0
    out = capsys.readouterr().out
    assert "backend: jetson" in out and "15 steps, 114.75..1109.25 MHz" in out
    assert "VDD_IN 6.00 W" in out and "power mode   2" in out
    assert "2 MODE_15W_6CORE" in out


def test_set_applies_all_or_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_xavier_nx_tree(tmp_path / "root")
    script, state, _calls = make_nvpmodel(tmp_path)
    base = [
        "platform",
        "set",
        "--backend",
        "jetson",
        "--sysfs-root",
        str(root),
        "--nvpmodel",
        str(script),
    ]
    assert dynofa([*base, "--gpu-khz", "510000", "--power-mode", "4", "--json"]) == 0
    assert (root / GPU_DIR / "max_freq").read_text().strip() == "510000000"
    assert state.read_text().strip() == "4"
    capsys.readouterr()
    assert dynofa([*base, "--gpu-khz", "500000", "--cpu-khz", "729600"]) == 1
    err = capsys.readouterr().err
    assert "error: cuda frequency 500000 kHz is not in the table" in err and "510000 kHz" in err
    assert (root / GPU_DIR / "max_freq").read_text().strip() == "510000000"


def test_info_on_this_machine_does_not_fail(capsys: pytest.CaptureFixture[str]) -> None:
    assert dynofa(["platform", "info"]) == 0
    assert "backend: linux" in capsys.readouterr().out


def test_bench_nx_sim_prints_published_next_to_simulated(
    capsys: pytest.CaptureFixture[str],
) -> None:
    res = nx_sim.run((306.0, 1109.25))
    assert len(res["gpu_family"]) == 6
    for g in res["gpu_family"]:
        assert abs(g["error_pct"]) < 3.0
        slow, fast = g["by_frequency"]["306000"], g["by_frequency"]["1109250"]
        assert slow["latency_ms"] > fast["latency_ms"] and slow["power_w"] < fast["power_w"]
    assert dynofa(["bench", "nx_sim", "--gpu-mhz", "510", "1109.25"]) == 0
    out = capsys.readouterr().out
    assert "41.2ms" in out and "published" in out and "co-runner" in out
    with pytest.raises(ValueError, match="not in the table"):
        nx_sim.run((500.0,))
