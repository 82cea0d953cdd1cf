"""``dynofa realtime``: real-machine scenarios (validation), co-runner processes (started, always
gone: after a run, on Ctrl-C / SIGTERM, when the parent dies), a short real run through the real
engine whose results ``dynofa report`` renders, and the manager leaving a configuration whose
measured latency is above the target within the scenario's transient.

Behaviour only: no assertion on how fast this machine is (latency above the target is injected
where a test needs it).
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from dynofa_ros.evaluation import realtime as rt
from dynofa_ros.evaluation.realtime_scenario import (
    REALTIME_KEYS,
    CoRunnerStep,
    bundled,
    from_dict,
    load,
    resolve,
)
from dynofa_ros.evaluation.records import (
    ModelInfo,
    RunInfo,
    RunResults,
    frame_record,
    read_results,
)
from dynofa_ros.evaluation.scenario import ScenarioError
from dynofa_ros.processes import interruptible

ROOT = Path(__file__).resolve().parent.parent
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SMALL, LARGE = "03d1ec9e72", "04bb43359a"  # fastest and most accurate of the shipped CPU family


def busy(processes: int) -> float:
    """The co-runner share that makes ``processes`` busy processes on this machine."""
    return processes / (2 * (os.cpu_count() or 1))


def corunners(*steps: tuple[float, int]) -> list[dict[str, Any]]:
    return [{"t": t, "name": "busy", "processor": "cpu", "share": busy(n)} for t, n in steps]


def tiny(**over: Any) -> dict[str, Any]:
    """A one-second scenario on two members of the shipped family (a test-sized engine); keys
    of the realtime section go there."""
    d: dict[str, Any] = {
        "name": "tiny_real",
        "duration_s": 1.0,
        "camera": {
            "source": "fashion_mnist",
            "fps": 100,
            "width": 64,
            "height": 64,
        },
        "models": [{"name": "classifier", "latency_target_ms": 50.0}],
        "corunners": corunners((0.3, 1), (0.6, 0)),
        "realtime": {
            "members": [SMALL, LARGE],
            "threads": [1, 2],
            "frames": 8,
            "warmup_s": 0.1,
            "telemetry_hz": 5,
            "manager": {"levels": {"NORMAL": {"energy_weight": 0}}},
            "random_frames": not FASHION_MNIST.is_dir(),
        },
    }
    for key, value in over.items():
        if key in REALTIME_KEYS:
            d["realtime"][key] = value
        else:
            d[key] = value
    return d


@pytest.fixture(scope="module")
def setup() -> Any:
    s = rt.prepare(from_dict(tiny()), progress=False)
    yield s
    s.close()


def gone(pids: Any, timeout_s: float = 5.0) -> bool:
    """Every pid has exited (zombies count as gone: they run nothing)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return True
        time.sleep(0.05)
    return False


def corunner_children(parent: psutil.Process) -> list[int]:
    out = []
    for child in parent.children(recursive=True):
        try:
            if any("getppid" in part for part in child.cmdline()):
                out.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return out


# ------------------------------------------------------------------------------- scenario
def test_bundled_scenario_validates_and_uses_the_engines_records() -> None:
    assert "cpu_corunner" in bundled()
    sc = load(resolve("cpu_corunner"))
    assert sc.model.backend == "onnxruntime"
    assert set(sc.policies) == {"dynofa", "static-performance", "oracle"}
    assert any(step.processes > 0 for step in sc.corunners)
    assert sc.corunners[-1].processes == 0  # the load stops before the end
    for m in sc.model.family.members:  # the manager's model: this backend, these thread counts
        assert {r.backend for r in m.latency} == {"onnxruntime"}
        assert {r.threads for r in m.latency} == set(sc.model.threads)
    starts = [a for a, _, _ in sc.segments()]
    assert starts == [0.0, *(s.t for s in sc.corunners)]


BAD = [
    ("duration_s", -1, "'duration_s' = -1"),
    ("seed", "x", "'seed' = 'x'"),
    ("realtime.warmup_s", 100, "'realtime.warmup_s' = 100"),
    ("realtime.goal", 0, "'realtime.goal' = 0"),
    ("realtime.policies", ["dynofa", "best"], "'realtime.policies[1]' = 'best'"),
    ("realtime.policies", ["nope"], "'realtime.policies[0]' = 'nope'"),
    ("realtime.colour", 1, "unknown field 'realtime.colour'"),
    ("colour", 1, "unknown field 'colour'"),
    ("camera.fps", 0, "'camera.fps' = 0"),
    ("camera.encoding", "yuv", "'camera.encoding' = 'yuv'"),
    ("camera.item_scale", [0.9, 0.5], "'camera.item_scale'"),
    ("camera.compressed", True, "'camera.source' = 'fashion_mnist'"),
    ("models.0.latency_target_ms", -2, "'models[0].latency_target_ms' = -2"),
    ("realtime.backend", "tensorrt", "'realtime.backend' = 'tensorrt'"),
    ("realtime.members", ["nope"], "'realtime.members[0]' = 'nope'"),
    ("realtime.threads", [1, 3], "no cpu onnxruntime latency record at 3 thread(s)"),
    ("realtime.corunner_kind", "gpu", "'realtime.corunner_kind' = 'gpu'"),
    ("models.0.family", "missing.family.json", "'models[0].family' = 'missing.family.json'"),
    ("corunners", [{"t": 0.5, "name": "b", "processor": "cpu", "share": -1}],
     "'corunners[0].share' = -1"),
    ("corunners", [{"t": 0.5, "name": "b", "processor": "cuda", "share": 0.5}],
     "'corunners[0].processor' = 'cuda'"),
    ("corunners", [{"t": 5, "name": "b", "processor": "cpu", "share": 0.5}],
     "'corunners[0].t' = 5"),
    ("corunners", corunners((0.6, 1), (0.2, 0)), "'corunners[1].t' = 0.2"),
    ("realtime.manager", {"window": 0}, "manager.window = 0"),
    ("model", {"name": "classifier"}, "old real-machine format"),
]  # fmt: skip


@pytest.mark.parametrize(("field", "value", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_fields_fail_naming_field_and_value(field: str, value: Any, message: str) -> None:
    d = copy.deepcopy(tiny())
    *path, key = field.split(".")
    node: Any = d
    for p in path:
        node = node[int(p)] if p.isdigit() else node[p]
    node[key] = value
    with pytest.raises(ScenarioError) as err:
        from_dict(d, source="bad.yaml")
    text = str(err.value)
    assert message in text
    assert "bad.yaml" in text


def test_a_missing_required_field_is_named() -> None:
    d = tiny()
    del d["realtime"]
    with pytest.raises(ScenarioError, match=r"no 'realtime' section"):
        from_dict(d)


def test_cli_reports_a_bad_scenario_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(tiny(duration_s=0)))
    proc = subprocess.run(
        [sys.executable, "-m", "dynofa_ros.cli", "realtime", str(bad), "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("dynofa realtime: error: scenario bad.yaml: field 'duration_s'")


# ------------------------------------------------------------------------------- co-runners
def test_corunners_are_started_counted_and_all_stopped(tmp_path: Path) -> None:
    with rt.CoRunners(tmp_path) as co:
        co.set(2, "spin")
        first = co.pids
        assert len(first) == 2
        assert all(psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in first)
        co.set(1, "spin")
        assert len(co.pids) == 1
        assert gone(set(first) - set(co.pids))
        co.set(1, "matmul")  # another kind: the spinner is replaced
        assert co.pids[0] not in first
        started = list(co.started)
    assert len(started) == 3
    assert gone(started)


def test_corunners_are_stopped_when_the_block_raises(tmp_path: Path) -> None:
    co = rt.CoRunners(tmp_path)
    with pytest.raises(RuntimeError), co:
        co.set(2)
        raise RuntimeError("boom")
    assert len(co.started) == 2
    assert gone(co.started)


def test_corunners_exit_by_themselves_when_their_parent_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from dynofa_ros.evaluation.realtime import CoRunners
        co = CoRunners({str(tmp_path)!r})
        co.set(1)
        print(co.pids[0], flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not gone([child], timeout_s=0.3)  # it runs while its parent lives
        parent.kill()  # no chance to stop anything
        parent.wait()
        assert gone([child])
    finally:
        parent.kill()
        parent.wait()


# ------------------------------------------------------------------------------- real runs
def test_a_run_starts_and_stops_its_corunners_and_records_everything(setup: Any) -> None:
    run = rt.run_policy(setup, "dynofa", progress=False)
    res = run.results
    assert len(run.corunner_pids) == 1
    assert gone(run.corunner_pids)
    assert res.info.mode == "real"
    assert len(res.frames) + len(run.dropped_at_s) == setup.scenario.frame_count
    assert [e.kind for e in res.events] == ["corunner", "corunner"]
    assert [e.t_s for e in res.events] == [0.3, 0.6]
    assert res.commands and res.commands[0].config.subnet_id in (SMALL, LARGE)
    for f in res.frames:
        assert f.latency_ms > 0
        assert f.target_ms == 50.0
        assert (f.subnet_id, f.threads) in {(m, t) for m in (SMALL, LARGE) for t in (1, 2)}
    assert [f.frame_seq for f in res.frames] == sorted({f.frame_seq for f in res.frames})
    s = rt.summarise(run, setup.scenario)
    assert [g.load.processes for g in s.segments] == [0, 1, 0]
    assert s.overall.frames == len(res.frames)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interrupted_run_leaves_no_corunner(setup: Any, how: str) -> None:
    me = psutil.Process()
    seen: list[int] = []
    handler = signal.getsignal(signal.SIGTERM)

    def interrupt(i: int, t: float, ms: float, active: Any) -> float:
        if t >= 0.4:  # the co-runner runs from 0.3 s
            seen.extend(corunner_children(me))
            if how == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)
        return ms

    with pytest.raises(KeyboardInterrupt):
        rt.run_policy(setup, "dynofa", progress=False, latency_of=interrupt)
    assert seen
    assert gone(seen)
    assert signal.getsignal(signal.SIGTERM) is handler  # restored


def test_the_manager_leaves_a_configuration_measured_above_target(setup: Any) -> None:
    """Once the configuration in force has been so for the manager's dwell time (a change
    inside it is what dwell delays), every frame of it reports twice the target; the manager
    must switch away within the transient (10 frames). (Its correction is per processor, so it
    tries that configuration again later, and then holds it for its dwell time before it may
    leave again: only the first reaction is bounded by the transient.)"""
    sc = setup.scenario
    # no load, and a correction that can exceed 2x: only the injected latency matters
    sc2 = from_dict(
        tiny(
            duration_s=1.5,
            corunners=[],
            manager={
                "levels": {"NORMAL": {"energy_weight": 0}},
                "correction_bounds": [0.25, 1000.0],
            },
        )
    )
    target = sc2.model.latency_target_ms
    dwell = sc2.manager.dwell_s

    def stretches(policy: str) -> tuple[tuple[str, int], list[int], list[Any]]:
        """The victim configuration, the lengths of its runs of frames once it is injected,
        and every frame's (t, configuration) for the failure message."""
        seen: list[tuple[str, int]] = []
        frames: list[Any] = []
        since = [0.0]  # when the configuration in force (as frames ran it) started

        def inject(i: int, t: float, ms: float, active: Any) -> float:
            config = (active.subnet_id, active.threads)
            if frames and frames[-1][1] != config:
                since[0] = t
            frames.append((round(t, 3), config))
            if not seen and (t < 0.5 or t - since[0] < dwell):
                return ms
            seen.append(config)
            return 2.0 * target if seen[-1] == seen[0] else ms

        rt.run_policy(setup, policy, progress=False, latency_of=inject)
        assert len(seen) >= 30, frames  # the injection had time to be seen
        runs = [len(list(g)) for on, g in itertools.groupby(c == seen[0] for c in seen) if on]
        return seen[0], runs, frames

    setup.scenario = sc2
    try:
        victim, runs, frames = stretches("dynofa")
        assert victim[0] == LARGE, frames  # the manager ran the most accurate member
        assert runs and runs[0] <= sc2.transient_frames, (runs, frames)
        # it did not stay on it: each later try lasts at most the dwell, plus a reaction
        hold = round(dwell * sc2.camera.fps) + sc2.transient_frames
        assert len(runs) < 2 or max(runs[1:]) <= hold, (runs, frames)
        _, static_runs, frames = stretches("static-performance")
        assert len(static_runs) == 1 and static_runs[0] > sc2.transient_frames, frames
    finally:
        setup.scenario = sc


def test_short_run_writes_results_that_report_renders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dynofa_ros.cli import main

    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(yaml.safe_dump(tiny()))
    out = tmp_path / "out"
    assert main(["realtime", str(scenario), "-o", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    for text in ("manager latency model", "dynofa:", "static-performance:", "0.3-0.6 s", "goal"):
        assert text in printed
    for policy in ("dynofa", "static-performance"):
        run = read_results(out / f"{policy}.results.jsonl")
        assert run.info.policy == policy
        assert run.frames and run.commands and len(run.events) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert [p["policy"] for p in summary["policies"]] == ["dynofa", "static-performance"]
    report = tmp_path / "report"
    assert main(["report", str(out), "-o", str(report)]) == 0
    html = (report / "report.html").read_text()
    assert "static-performance" in html and "dynofa" in html
    for name in ("timeline_dynofa.png", "timeline_static-performance.png", "comparison.png"):
        assert (report / name).stat().st_size > 1000


def test_cli_interrupted_writes_no_result_and_leaves_no_process(tmp_path: Path) -> None:
    scenario = tmp_path / "long.yaml"
    scenario.write_text(yaml.safe_dump(tiny(duration_s=60, corunners=corunners((0, 2)))))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dynofa_ros.cli", "realtime", str(scenario), "-o", str(out),
         "--quiet", "--policy", "dynofa"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,  # noqa: PLW1509 - one signal call, before exec
    )  # fmt: skip
    try:
        parent = psutil.Process(proc.pid)
        pids: list[int] = []
        end = time.monotonic() + 45
        while len(pids) < 2 and time.monotonic() < end and proc.poll() is None:
            time.sleep(0.1)
            pids = corunner_children(parent)
        assert len(pids) == 2, proc.stderr.read() if proc.poll() is not None else "no co-runner"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130
    assert "dynofa realtime: interrupted" in err
    assert gone(pids)
    assert not list(out.glob("*.results.jsonl"))  # the interrupted run left nothing


# ------------------------------------------------------------------------------- metrics
def test_summary_leaves_out_transients_and_counts_dropped_frames_as_misses() -> None:
    sc = from_dict(
        tiny(
            duration_s=2.0,
            transient_frames=10,
            corunners=corunners((1.0, 2)),
            random_frames=True,
        )
    )
    target = sc.model.latency_target_ms
    frames = []
    dropped = []
    for i in range(200):
        t = i / 100
        late = i in (1, 2, 101, 150)  # two in the first transient, one in the second, one after
        if i in (160, 161):
            dropped.append(t)
            continue
        ms = 2 * target if late else (10.0 if t < 1 else 20.0)
        frames.append(
            frame_record(t_s=t, model="classifier", frame_seq=i + 1, subnet_id=LARGE,
                         latency_ms=ms, target_ms=target, threads=1 + (t >= 1))
        )  # fmt: skip
    info = RunInfo(
        "p",
        "p",
        models={"classifier": ModelInfo(target, "camera")},
        extra={"dropped_at_s": dropped},
    )
    s = rt.summarise(RunResults(info, frames), sc)
    a, b = s.segments
    assert (a.transient_misses, b.transient_misses) == (2, 1)
    assert (a.after.frames, a.after.dropped, a.after.within) == (90, 0, 1.0)
    assert (b.after.frames, b.after.dropped) == (88, 2)
    assert b.after.within == pytest.approx(87 / 90)
    assert s.after.within == pytest.approx(177 / 180)
    assert not s.goal_met  # 98.3 % < 99 %
    assert s.ratio("mean_ms") == pytest.approx((87 * 20 + 2 * target) / 88 / 10)
    assert s.config_changes == 1 and s.switches == 0
    assert isinstance(s.segments[1].load, CoRunnerStep)


def test_probe_measures_every_configuration_under_every_load(setup: Any) -> None:
    rows = rt.probe(setup, 0.05, progress=False)
    cells = {(r.member_id, r.threads, r.processes) for r in rows}
    assert cells == {(m, t, p) for m in (SMALL, LARGE) for t in (1, 2) for p in (0, 1)}
    assert all(r.stats.frames == 5 and r.stats.p50_ms > 0 for r in rows)
    text = rt.probe_text(rows, setup.scenario)
    assert SMALL in text and LARGE in text and "1 spin" in text


def _probe_row(member: str, threads: int, processes: int, within: float, p50: float) -> Any:
    stats = rt.Stats(100, 0, p50, p50, p50, p50, within)
    return rt.ProbeRow(member, threads, processes, "spin", stats)


def test_oracle_schedule_takes_per_load_the_most_accurate_measured_within_the_goal() -> None:
    sc = from_dict(tiny(duration_s=1.0, corunners=corunners((0.3, 1), (0.6, 0))))
    rows = [
        _probe_row(LARGE, 1, 0, 1.0, 10.0),  # unloaded: the large member meets it on 1 thread
        _probe_row(LARGE, 2, 0, 1.0, 6.0),
        _probe_row(SMALL, 1, 0, 1.0, 3.0),
        _probe_row(LARGE, 1, 1, 0.50, 60.0),  # loaded: only the small one on 2 threads does
        _probe_row(LARGE, 2, 1, 0.98, 30.0),
        _probe_row(SMALL, 1, 1, 0.97, 20.0),
        _probe_row(SMALL, 2, 1, 1.0, 9.0),
    ]
    schedule = rt.oracle_schedule(rows, sc)
    plan = [(e.t_s, e.configs["classifier"].subnet_id, e.configs["classifier"].threads)
            for e in schedule]  # fmt: skip
    assert plan == [(0.0, LARGE, 1), (0.3, SMALL, 2), (0.6, LARGE, 1)]
    with pytest.raises(Exception, match="no measurement under co-runner"):
        rt.oracle_schedule(rows[:3], sc)


def test_the_oracle_plays_its_schedule_on_this_machine(setup: Any) -> None:
    sc = setup.scenario
    rows = [_probe_row(LARGE, 2, p, 1.0, 1.0) for p in (0, 1)]
    rows[1] = _probe_row(SMALL, 1, 1, 1.0, 1.0)
    schedule = rt.oracle_schedule(rows, sc)
    run = rt.run_policy(setup, "oracle", progress=False, schedule=schedule)
    frames = run.results.frames
    assert run.results.info.policy == "oracle" and frames
    # the load steps at 0.3 s and 0.6 s: each stretch runs its entry (played a frame early)
    for f in frames:
        want = (SMALL, 1) if 0.3 <= f.t_s < 0.6 else (LARGE, 2)
        assert (f.subnet_id, f.threads) == want, f
    with pytest.raises(Exception, match="schedule"):
        rt.run_policy(setup, "dynofa", progress=False, schedule=schedule)
