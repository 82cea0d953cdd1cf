"""Reports: Markdown + HTML + PNG plots + CSVs of several runs, written atomically; the plots'
content (axes, units, legends, events); loading runs from results files, bags and CSVs."""

from __future__ import annotations

import json
import re
import struct
from dataclasses import replace
from pathlib import Path

import pytest
from test_evaluation_records import MODEL, TINY, _feed, write_result_bag

from dynofa_ros.configuration import KEEP, Configuration
from dynofa_ros.evaluation import plots
from dynofa_ros.evaluation import report as rp
from dynofa_ros.evaluation.metrics import compute
from dynofa_ros.evaluation.records import (
    RecordBuilder,
    ResultsError,
    RunInfo,
    RunResults,
    commands_csv,
    frames_csv,
    read_frames_csv,
    write_frames_csv,
    write_results,
)

S = 1_000_000_000
T0 = TINY.start_ns


def manager_run() -> RunResults:
    """The tiny scenario with ground truth, board telemetry (power, energy counter, power
    mode) and one command that changes the power mode."""
    b = RecordBuilder.for_scenario(TINY, "manager", policy="dynofa", mode="fast",
                                   extra={"settings": {"family": "sim-nx-cuda"}})  # fmt: skip
    _feed(b)
    for k in range(7):
        ns = T0 + round(0.5 * k * S)
        b.power(ns, 5.0 + 0.1 * k)
        b.board_energy(ns, 100.0 + 2.5 * k)
    b.power_mode(T0, 2)
    b.power_mode(T0 + round(2.1 * S), 3)
    b.command(T0 + round(2.1 * S), MODEL, seq=2, config=replace(KEEP, power_mode=3),
              reason="battery low: 10 W mode")  # fmt: skip
    return b.build()


def robot_run() -> RunResults:
    """Two models, no ground truth, no battery: frames are judged on latency and energy only."""
    info = RunInfo("robot log", source="robot.bag", t0_ns=T0, duration_s=4.0)
    b = RecordBuilder(info, battery_thresholds=())
    for model, period, latency in (("front", 0.25, 30.0), ("rear", 0.5, 80.0)):
        for i in range(int(4.0 / period)):
            ns = T0 + round(i * period * S)
            slow = model == "rear" and i >= 4
            b.classification(model, ns, frame_seq=i + 1, subnet_id="s" if slow else "l",
                             class_ids=[1], latency_ms=latency * (0.6 if slow else 1))  # fmt: skip
            b.status(model, i + 1, processor="cpu", threads=2 if slow else 4,
                     cpu_frequency_khz=1_900_800, latency_target_ms=60.0, power_w=3.0,
                     energy_per_frame_mj=90.0, last_command_seq=1 if slow else 0)  # fmt: skip
    b.command(T0 + round(1.9 * S), "rear", seq=1, config=Configuration("s", "", 2, power_mode=0),
              reason="too slow")  # fmt: skip
    b.temperature(T0, "CPU-therm", 51.0)
    b.temperature(T0 + 2 * S, "CPU-therm", 55.0)
    b.event(T0 + 2 * S, "note", "operator takes over")
    return b.build()


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[RunResults]]:
    tmp = tmp_path_factory.mktemp("report")
    bag = write_result_bag(tmp / "static.bag", "mcap", {"name": "static", "policy": "static"})
    runs = [manager_run(), rp.load_run(bag), robot_run()]
    out = tmp / "out"
    files = rp.write_report(runs, out, title="Tiny & robot")
    assert files.markdown == out / "report.md" and files.html == out / "report.html"
    return out, runs


def test_report_writes_every_file_and_nothing_else(
    report_dir: tuple[Path, list[RunResults]],
) -> None:
    out, runs = report_dir
    slugs = ["manager", "static", "robot_log"]
    expected = {"report.md", "report.html", "comparison.png", "metrics.json"}
    for s in slugs:
        expected |= {f"timeline_{s}.png", f"frames_{s}.csv", f"commands_{s}.csv"}
    assert {p.name for p in out.iterdir()} == expected  # no temporary file left
    for run, s in zip(runs, slugs, strict=True):
        assert (out / f"frames_{s}.csv").read_text() == frames_csv(run.frames)
        assert read_frames_csv(out / f"frames_{s}.csv") == run.frames
        assert (out / f"commands_{s}.csv").read_text() == commands_csv(run.commands)
        width, height = _png_size(out / f"timeline_{s}.png")
        assert width >= 1000 and height >= 600
    assert _png_size(out / "comparison.png")[0] >= 1000
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["name"] for m in metrics] == ["manager", "static", "robot log"]


def test_markdown_and_html_show_the_runs_side_by_side(
    report_dir: tuple[Path, list[RunResults]],
) -> None:
    out, _ = report_dir
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert md.startswith("# Tiny & robot\n") and "<title>Tiny &amp; robot</title>" in html
    summary = [line for line in md.splitlines() if line.startswith("| ")]
    rows = {tuple(c.strip() for c in line.strip("|").split("|"))[:2] for line in summary}
    assert {("manager", MODEL), ("static", MODEL), ("robot log", "front"),
            ("robot log", "rear")} <= rows  # fmt: skip
    # the run without ground truth has no accuracy; its latency is still evaluated
    front = next(line for line in summary if line.startswith("| robot log | front |"))
    cells = [c.strip() for c in front.strip("|").split("|")]
    header = [c.strip() for c in summary[0].strip("|").split("|")]
    assert cells[header.index("accuracy %")] == "n/a"
    assert cells[header.index("p50 ms")] == "30.0" and cells[header.index("miss %")] == "0.0"
    # every image and link is a relative file of the report
    for text, pattern in ((md, r"\]\(([^)]+)\)"), (html, r'(?:src|href)="([^"]+)"')):
        targets = set(re.findall(pattern, text))
        assert {"comparison.png", "timeline_robot_log.png", "frames_static.csv"} <= targets
        assert all((out / t).is_file() for t in targets), targets
    # board settings, energy and events reach the document
    assert "board energy: 15.0 J (average 5.00 W, from the board's energy counter)" in md
    assert "power modes: 2, 3" in md and "battery low: 10 W mode" in md
    assert "| 1.00 | priority CRITICAL | classifier |" in md
    assert "operator takes over" in md and "Settings: family = sim-nx-cuda." in md
    assert html.count("<table>") == md.count("\n|---") and "<h4>" in html


def test_plots_have_units_legends_and_event_lines() -> None:
    run = manager_run()
    fig = plots.timeline(run)
    try:
        axes = fig.axes
        labels = [ax.get_ylabel().replace("\n", " ") for ax in axes]
        assert labels == [
            "sub-network (by median latency)", "processor (threads)", "latency (ms)",
            "frequency (MHz)", "power (W)", "temperature (°C)", "battery (%)",
        ]  # fmt: skip
        assert axes[-1].get_xlabel() == "time (s)"
        assert all(ax.get_legend() is not None for ax in axes)
        legend = [t.get_text() for t in axes[2].get_legend().get_texts()]
        assert legend == ["classifier latency", "classifier target", "classifier missed (1)"]
        # 4 events (priority, battery threshold, co-runner on / off) on every panel
        event_x = {1.0, 1.5, 2.5}
        for ax in axes:
            xs = {round(float(line.get_xdata()[0]), 3) for line in ax.get_lines()
                  if line.get_linestyle() == ":"}  # fmt: skip
            assert xs == event_x
        texts = [t.get_text() for t in axes[0].texts]
        assert texts == ["priority CRITICAL", "battery < 20%", "gpu_app cuda 40%", "gpu_app stops"]
        modes = [t.get_text() for t in axes[3].texts]
        assert modes == ["power mode 2", "power mode 3"]
        assert axes[0].get_xlim() == (0.0, 3.0)
    finally:
        plots.plt.close(fig)
    fig = plots.comparison([compute(manager_run()), compute(robot_run())])
    try:
        titles = [ax.get_title() for ax in fig.axes]
        assert titles == [
            "perception energy (J)", "board energy (J)", "p95 latency (ms)",
            "deadline misses (%)", "accuracy (%)", "configuration changes",
        ]  # fmt: skip
        accuracy = fig.axes[4]
        assert "n/a" in [t.get_text() for t in accuracy.texts]  # the robot run has no truth
        ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
        assert ticks == ["manager", "robot log"]
    finally:
        plots.plt.close(fig)


def test_latency_outliers_stay_visible_without_crushing_the_scale() -> None:
    b = RecordBuilder.for_scenario(TINY, "r")
    for i in range(15):
        ns = T0 + round(0.2 * i * S)
        b.classification(MODEL, ns, frame_seq=i + 1, subnet_id="a", class_ids=[1],
                         latency_ms=900.0 if i == 3 else 40.0)  # fmt: skip
    fig = plots.timeline(b.build())
    try:
        ax = next(a for a in fig.axes if a.get_ylabel() == "latency (ms)")
        assert ax.get_ylim()[1] < 200  # the 60 ms target stays readable
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "classifier > 81 ms (1)" in legend  # 1.35 x the 60 ms target
    finally:
        plots.plt.close(fig)


def test_short_names_drop_the_shared_scenario_prefix() -> None:
    ms = [compute(RunResults(RunInfo(f"tiny-{p}", scenario="tiny"))) for p in ("a", "b")]
    assert plots.short_names(ms) == ["a", "b"]
    ms.append(compute(RunResults(RunInfo("other", scenario="tiny"))))
    assert plots.short_names(ms) == ["tiny-a", "tiny-b", "other"]


def test_failed_report_leaves_no_index_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    rp.write_report([robot_run()], out)
    assert (out / "report.md").is_file()

    def broken(*_: object) -> None:
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(plots, "comparison", broken)
    with pytest.raises(RuntimeError, match="plotting failed"):
        rp.write_report([manager_run(), robot_run()], out)
    names = {p.name for p in out.iterdir()}
    assert "report.md" not in names and "report.html" not in names  # the old one is gone too
    assert not [n for n in names if n.startswith(".") or n.endswith(".tmp")]


def test_load_runs_from_files_directories_csv_and_errors(tmp_path: Path) -> None:
    run = robot_run()
    write_results(tmp_path / "res" / "a.results.jsonl", run)
    write_results(tmp_path / "res" / "b.results.jsonl", manager_run())
    write_frames_csv(tmp_path / "frames_old.csv", run.frames)
    runs = rp.load_runs([tmp_path / "res", tmp_path / "frames_old.csv"])
    assert [r.info.name for r in runs] == ["robot log", "manager", "old"]
    assert runs[0].frames == run.frames and runs[2].frames == run.frames
    twice = rp.load_runs([tmp_path / "res" / "a.results.jsonl"] * 2)
    assert [r.info.name for r in twice] == ["robot log", "robot log (2)"]
    with pytest.raises(ResultsError, match="do not exist"):
        rp.load_runs([tmp_path / "nothing.results.jsonl"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="holds no results files"):
        rp.load_runs([tmp_path / "empty"])
    (tmp_path / "out.txt").write_text("x")
    with pytest.raises(ResultsError, match="is a file"):
        rp.write_report(runs, tmp_path / "out.txt")


def _counted(name: str, processed: int) -> RunResults:
    """A run of the tiny scenario whose replay accounted for its frames (RunInfo.extra)."""
    frames = {"in_bag": 15, "processed": processed, "dropped_node": 15 - processed,
              "rejected": 0, "lost_transport": 0}  # fmt: skip
    b = RecordBuilder.for_scenario(TINY, name, policy=name, extra={"frames": {MODEL: frames}})
    for i in range(processed):
        ns = T0 + round(0.2 * i * S)
        b.classification(MODEL, ns, frame_seq=i + 1, subnet_id="l", class_ids=[1],
                         latency_ms=40.0)  # fmt: skip
        b.status(MODEL, i + 1, processor="cuda", threads=1, latency_ms=40.0,
                 latency_target_ms=60.0, power_w=3.0, energy_per_frame_mj=100.0)  # fmt: skip
    return b.build()


def test_frames_table_flags_runs_that_processed_fewer_frames(tmp_path: Path) -> None:
    runs = [_counted("tiny-fast", 15), _counted("tiny-live", 9)]
    rp.write_report(runs, tmp_path / "report", title="frames")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Frames" in md
    assert "| tiny-fast | classifier | 15 | 15 | 0 | 0 | 100.0 |  |" in md
    assert "| tiny-live | classifier | 15 | 9 | 6 | 0 | 100.0 | ⚠ |" in md
    assert "compare its energy per processed frame" in md
    # all complete: no flag, no warning
    rp.write_report([_counted("tiny-a", 15), _counted("tiny-b", 15)], tmp_path / "r2", title="x")
    assert "⚠" not in (tmp_path / "r2" / "report.md").read_text()


def test_family_accuracy_is_not_shown_for_real_footage() -> None:
    from dynofa_ros.evaluation.records import subnets_extra
    from dynofa_ros.evaluation.scenario import family_accuracy_applies, parse
    from dynofa_ros.family import load_family
    from dynofa_ros.resources import models_dir

    fam = load_family(models_dir() / "fmnist_mbv3_small.sim-nx-cuda.family.json")
    assert all("accuracy" in s for s in subnets_extra(fam))
    assert all("accuracy" not in s for s in subnets_extra(fam, accuracy=False))
    assert family_accuracy_applies(TINY)  # Fashion-MNIST frames with ground truth
    video = parse("name: v\nduration_s: 2\ncamera: {source: video, path: x.avi}\n")
    assert not family_accuracy_applies(video)
