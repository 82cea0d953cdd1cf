"""The oracle (issue 15): a clairvoyant schedule planned on the simulated board's true costs,
checked against brute force, played by the ``oracle`` policy in the fast replay, and its files."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest

from dynofa_ros.evaluation import scenario as sc
from dynofa_ros.evaluation.inprocess import ReplayOptions, replay_clock, run_inprocess
from dynofa_ros.evaluation.oracle import (
    JITTER_Z,
    LEAD_S,
    BoardCosts,
    Conditions,
    OracleError,
    candidate_rows,
    compute_schedule,
    plan_interval,
    read_schedule,
    write_schedule,
)
from dynofa_ros.family import load_family
from dynofa_ros.manager import ManagerConfig, ManagerConfigError, ModelSpec, RuntimeManager
from dynofa_ros.manager.context import Context
from dynofa_ros.manager.families import simulated_family
from dynofa_ros.manager.model import Board
from dynofa_ros.platform.base import Setting
from dynofa_ros.platform.sim import CPU, GPU, SimulatedXavierNX
from dynofa_ros.platform.workload import PUBLISHED_GPU_FAMILY


def _scenario(**over: Any) -> sc.Scenario:
    data: dict[str, Any] = {
        "name": "oracle_test",
        "duration_s": 3,
        "seed": 3,
        "camera": {"source": "fashion_mnist", "fps": 5, "width": 64, "height": 64},
        "models": [{"name": "classifier", "camera": "camera", "latency_target_ms": 60}],
        "mission": [{"t": 0, "level": "NORMAL"}],
        "corunners": [
            {"t": 1.2, "name": "gpu_app", "processor": "cuda", "share": 0.5},
            {"t": 2.4, "name": "gpu_app", "processor": "cuda", "share": 0.0},
        ],
    }
    data.update(over)
    return sc.from_dict(data)


def _specs(scenario: sc.Scenario, family: Any = None) -> list[ModelSpec]:
    opt = ReplayOptions()
    return [
        ModelSpec(
            name=m.name,
            family=family if family is not None else load_family(opt.family_path(m)),
            latency_target_ms=m.latency_target_ms,
            frame_rate_hz=scenario.camera(m.camera).fps,
        )
        for m in scenario.models
    ]


def _board(scenario: sc.Scenario) -> SimulatedXavierNX:
    return SimulatedXavierNX(seed=scenario.seed)


def test_schedule_switches_at_exactly_the_corunner_times() -> None:
    s = _scenario()
    schedule = compute_schedule(s, _specs(s), _board(s))
    assert [e.t_s for e in schedule] == [0.0, 1.2, 2.4]
    assert "co-runner gpu_app 0.5" in schedule[1].why and "gpu_app 0" in schedule[2].why
    before, during, after = (e.configs["classifier"] for e in schedule)
    assert before == after and during != before  # the interference changes the best choice
    for e in schedule:  # each plan meets the target with the jitter margin
        assert e.latency_ms["classifier"] * math.exp(JITTER_Z * 0.02) <= 60.0
    # a co-runner that changes nothing the oracle can improve is no interval of its own
    calm = _scenario(corunners=[{"t": 1.2, "name": "tiny", "processor": "cuda", "share": 0.01}])
    assert [e.t_s for e in compute_schedule(calm, _specs(calm), _board(calm))] in (
        [0.0],
        [0.0, 1.2],
    )


def _brute_key(
    cond: Conditions,
    rows: dict[str, list[Any]],
    targets: dict[str, float],
    fps: dict[str, float],
    tables: tuple[tuple[int, ...], tuple[int, ...]],
) -> tuple[int, float, float, float]:
    """The lexicographic best over every joint configuration, each row's energy run on its own
    fresh board; two models' latencies are their bound beside each other (tested against the
    board below), one model's its run alone."""
    margin = math.exp(JITTER_Z * 0.02)
    costs = BoardCosts(SimulatedXavierNX(), cond)
    names = list(rows)

    def board(fc: int, fg: int) -> SimulatedXavierNX:
        b = SimulatedXavierNX(
            latency_jitter=0.0, ambient_c=cond.ambient_c, start_temperature_c=cond.package_c
        )
        for name, proc, share, gbps in cond.corunners:
            b.set_corunner(name, proc, share, gbps)
        b.apply(Setting(frequencies_khz={CPU: fc, GPU: fg}))
        return b

    best = None
    for fc, fg in itertools.product(*tables):
        b = board(fc, fg)
        e0 = b.energy_j
        b.advance(0.01)
        idle = (b.energy_j - e0) / 0.01
        per: dict[str, list[tuple[Any, float, float, float]]] = {}
        for m, cands in rows.items():
            per[m] = []
            for r in cands:
                res = board(fc, fg).run_frame(r.workload, r.processor, r.threads)
                extra = fps[m] * (res.energy_j - idle * res.latency_ms * 1e-3)
                per[m].append((r, res.latency_ms, r.accuracy, extra))
        for combo in itertools.product(*per.values()):
            lats = [lat for _, lat, _, _ in combo]
            if len(combo) > 1:
                lats = costs.contended_ms(
                    [(c[0], fps[m]) for m, c in zip(names, combo, strict=True)], fc, fg
                )
            ratios = [lat * margin / targets[m] for m, lat in zip(names, lats, strict=True)]
            miss = sum(1 for ratio in ratios if ratio > 1.0)
            viol = sum(ratio - 1.0 for ratio in ratios if ratio > 1.0)
            key = (miss, viol, -sum(a for _, _, a, _ in combo), idle + sum(e for *_, e in combo))
            if best is None or key < best:
                best = key
    assert best is not None
    return best


SMALL = simulated_family(
    "small",
    "cuda",
    [("a", 0.70, PUBLISHED_GPU_FAMILY[0].workload), ("c", 0.76, PUBLISHED_GPU_FAMILY[2].workload)],
    cpu_threads=(2, 6),
)


@pytest.mark.parametrize(
    ("corunners", "targets"),
    [
        ((), {"m1": 50.0}),
        ((), {"m1": 3000.0}),  # every processor and thread count meets it: energy decides
        ((("gpu_app", "cuda", 0.5, 0.0),), {"m1": 50.0}),
        ((("cpu_app", "cpu", 0.4, 2.0),), {"m1": 60.0, "m2": 90.0}),
        ((("gpu_app", "cuda", 0.3, 0.0),), {"m1": 8.0, "m2": 200.0}),  # m1 cannot meet it
    ],
)
def test_oracle_choice_is_the_lexicographic_best_by_brute_force(corunners, targets) -> None:
    fps = {m: min(f, 1000.0 / targets.get(m, 1.0)) for m, f in (("m1", 15.0), ("m2", 10.0))}
    specs = [ModelSpec(name=m, family=SMALL, latency_target_ms=t, frame_rate_hz=fps[m])
             for m, t in targets.items()]  # fmt: skip
    proto = SimulatedXavierNX()
    cond = Conditions(corunners, 41.0, 25.0, proto.power_mode)
    ctx = Context(specs, Board.from_platform(proto), ManagerConfig())
    rows = candidate_rows(specs, ctx)
    assert {(r.member, r.processor, r.threads) for r in rows["m1"]} == {
        (m, p, t) for m in ("a", "c") for p, t in (("cuda", 1), ("cpu", 2), ("cpu", 6))
    }
    # a spread of the usable CPU (up to the power mode's cap) and GPU steps; the loose target
    # on the top CPU steps, where the CPU rows meet it too
    cpu = ctx.tables[CPU][-3:] if targets["m1"] > 1000 else ctx.tables[CPU][::2]
    tables = (cpu, ctx.tables[GPU][::3])
    fps = {m: fps[m] for m in targets}
    plan = plan_interval(
        BoardCosts(proto, cond), rows, targets, fps, cpu_table=tables[0], gpu_table=tables[1]
    )
    best = _brute_key(cond, rows, targets, fps, tables)
    assert plan.key[:3] == pytest.approx(best[:3], rel=1e-12, abs=1e-12)
    assert plan.key[3] <= best[3] + 1e-9
    if len(targets) == 2 and targets["m1"] < 10:
        assert plan.key[0] == 1  # the unreachable target counts as a miss, the other is met


@pytest.mark.parametrize(
    ("first", "second", "cpu_step"),
    [
        (("c", "cuda", 1, 15.0), ("a", "cuda", 1, 10.0), -1),  # both on the GPU
        (("c", "cuda", 1, 15.0), ("a", "cuda", 1, 10.0), 8),  # ... with a slower host
        (("c", "cuda", 1, 10.0), ("a", "cpu", 2, 0.5), -1),  # the host thread beside 2 threads
    ],
)
def test_contended_bound_covers_what_the_board_gives_two_models(first, second, cpu_step) -> None:
    """Two models' frames run on the noise-free board as the runners cost them (in stamp order,
    each from its stamp, a model's frame skipped while its previous one runs): the board makes
    them slower than alone, and none slower than the oracle's bound."""
    fps = {"m1": first[3], "m2": second[3]}
    specs = [ModelSpec(name=m, family=SMALL, latency_target_ms=3000.0, frame_rate_hz=f)
             for m, f in fps.items()]  # fmt: skip
    proto = SimulatedXavierNX()
    ctx = Context(specs, Board.from_platform(proto), ManagerConfig())
    rows = candidate_rows(specs, ctx)
    pick = {
        m: next(r for r in rows[m] if (r.member, r.processor, r.threads) == want[:3])
        for m, want in (("m1", first), ("m2", second))
    }
    costs = BoardCosts(proto, Conditions((), 41.0, 25.0, proto.power_mode), jitter=0.0)
    fc, fg = ctx.tables[CPU][cpu_step], ctx.tables[GPU][2]
    bound = dict(
        zip(pick, costs.contended_ms([(pick[m], fps[m]) for m in pick], fc, fg), strict=True)
    )
    board = costs.board(fc, fg)
    t0 = board.now_s
    stream = sorted((t0 + k / fps[m], i, m) for i, m in enumerate(pick) for k in range(12))
    busy = dict.fromkeys(pick, -math.inf)
    worst = dict.fromkeys(pick, 0.0)
    for t, _, m in stream:
        if t < busy[m]:
            continue
        board.advance_to(t)
        r = pick[m]
        ran = board.run_frame(r.workload, r.processor, r.threads, start_s=t)
        assert ran.start_s == pytest.approx(t)
        worst[m] = max(worst[m], ran.latency_ms)
        busy[m] = t + ran.latency_ms * 1e-3
    alone = {m: costs.latency_ms(r, fc, fg) for m, r in pick.items()}
    for m in pick:
        assert alone[m] <= worst[m] <= bound[m] * (1 + 1e-9), (m, alone[m], worst[m], bound[m])
    assert max(worst[m] / alone[m] for m in pick) > 1.05


def test_oracle_policy_plays_the_schedule_in_the_fast_replay(tmp_path: Path) -> None:
    s = _scenario()  # co-runner events at frame times: the first frame of each interval
    run = run_inprocess(s, ReplayOptions(policy="oracle"), progress=False)
    clock0_ns, _ = replay_clock(s)
    board = SimulatedXavierNX(
        seed=s.seed,
        ambient_c=s.ambient.at(0.0) if s.ambient else 25.0,
        state_of_charge=s.battery.at(0.0) if s.battery else 1.0,
    )
    schedule = compute_schedule(s, _specs(s), board, offset_s=(s.start_ns - clock0_ns) * 1e-9)
    assert [e.t_s for e in schedule] == [0.0, 1.2, 2.4]  # the co-runner starts and stops
    # one command per entry: the first before the first frame, the others LEAD_S early
    cmds = sorted(run.commands, key=lambda c: c.t_s)
    assert len(cmds) == len(schedule)
    assert cmds[0].t_s < 0
    for c, e in zip(cmds[1:], schedule[1:], strict=True):
        assert c.t_s == pytest.approx(e.t_s - LEAD_S, abs=1e-6)
    # every frame runs the configuration planned for its time, and meets the target (every
    # interval has a configuration that meets it)
    assert run.frames
    for f in run.frames:
        e = [e for e in schedule if e.t_s <= f.t_s + 1e-9][-1]
        c = e.configs[f.model]
        assert (f.subnet_id, f.processor, f.threads) == (c.subnet_id, c.processor, c.threads)
        assert (f.cpu_frequency_khz, f.gpu_frequency_khz) == (
            c.cpu_frequency_khz,
            c.gpu_frequency_khz,
        )
        assert f.deadline_missed is False, f


def test_schedule_file_round_trip_and_bad_input(tmp_path: Path) -> None:
    s = _scenario()
    specs = _specs(s)
    schedule = compute_schedule(s, specs, _board(s))
    path = write_schedule(tmp_path / "oracle.json", schedule, scenario=s.name)
    families = {sp.name: sp.family for sp in specs}
    assert read_schedule(path, families) == schedule
    doc = json.loads(path.read_text())
    doc["entries"][1]["configs"]["classifier"]["subnet_id"] = "nope"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(OracleError) as exc:
        read_schedule(bad, families)
    msg = str(exc.value)
    assert "\n" not in msg and str(bad) in msg
    assert "entries[1].configs.classifier.subnet_id" in msg and "'nope'" in msg
    doc["entries"][1]["t_s"] = -1
    bad.write_text(json.dumps(doc))
    with pytest.raises(OracleError, match=r"entries\[1\]\.t_s: -1 is not a time >= 0 s"):
        read_schedule(bad, families)
    # read without families, the manager still refuses a member it cannot run
    doc["entries"][1]["t_s"] = 1.2
    bad.write_text(json.dumps(doc))
    loose = read_schedule(bad)
    mgr = RuntimeManager(specs, _board(s), "oracle")
    with pytest.raises(ManagerConfigError) as exc2:
        mgr.foresee(loose, 0.0, LEAD_S)
    assert "\n" not in str(exc2.value) and "entries[1].classifier: member 'nope'" in str(exc2.value)


def test_oracle_without_a_schedule_is_a_one_line_error() -> None:
    s = _scenario()
    mgr = RuntimeManager(_specs(s), _board(s), "oracle")
    with pytest.raises(ManagerConfigError) as exc:
        mgr.step(0.0)
    assert "\n" not in str(exc.value) and "'oracle' has no schedule" in str(exc.value)
    other = RuntimeManager(_specs(s), _board(s), "dynofa")
    with pytest.raises(ManagerConfigError, match="policy 'dynofa' takes no schedule"):
        other.foresee((), 0.0, 0.0)


def test_replay_policy_all_includes_the_oracle() -> None:
    from dynofa_ros.replay_cli import parse_policies

    assert "oracle" in parse_policies("all") and "dynofa" in parse_policies("all")
    with pytest.raises(ValueError, match="'nope' is not one of"):
        parse_policies("dynofa,nope")


def _run(
    policy: str, latency_ms: float, correct: int, joules: float, scenario: str = "tiny"
) -> Any:
    """Ten frames of one model (60 ms target): ``latency_ms`` each, the first ``correct`` right;
    the board's energy counter rises by ``joules``."""
    from dynofa_ros.evaluation.records import RecordBuilder, RunInfo

    t0 = 1_700_000_000_000_000_000
    b = RecordBuilder(
        RunInfo(f"{scenario}-{policy}", policy=policy, scenario=scenario, t0_ns=t0, duration_s=2),
        battery_thresholds=(),
    )
    for i in range(10):
        ns = t0 + i * 200_000_000
        b.ground_truth("camera", ns, 1)
        label = 1 if i < correct else 2
        b.classification("m", ns, frame_seq=i + 1, subnet_id="s", class_ids=[label],
                         latency_ms=latency_ms)  # fmt: skip
        b.status("m", i + 1, processor="cuda", threads=1, latency_ms=latency_ms,
                 latency_target_ms=60.0, power_w=3.0, energy_per_frame_mj=10.0)  # fmt: skip
    b.board_energy(t0, 100.0)
    b.board_energy(t0 + 2_000_000_000, 100.0 + joules)
    return b.build()


def test_report_shows_each_run_relative_to_the_oracle(tmp_path: Path) -> None:
    from dynofa_ros.evaluation import report as rp
    from dynofa_ros.evaluation.metrics import compute, relative_to_oracle

    runs = [
        _run("dynofa", 70.0, 8, 30.0),  # every frame late, 80 % right, 1.5 x the energy
        _run("oracle", 50.0, 9, 20.0),
        _run("step", 50.0, 9, 20.0, scenario="other"),  # no oracle for its scenario
    ]
    rel = relative_to_oracle([compute(r) for r in runs])
    assert [(r.name, r.oracle) for r in rel] == [
        ("tiny-dynofa", "tiny-oracle"),
        ("tiny-oracle", "tiny-oracle"),
    ]
    mine, ref = rel
    assert mine.energy_ratio == pytest.approx(1.5) and ref.energy_ratio == pytest.approx(1.0)
    assert mine.miss_points == pytest.approx(100.0) and ref.miss_points == 0.0
    assert mine.accuracy_points == pytest.approx(-10.0) and ref.accuracy_points == 0.0
    files = rp.write_report(runs, tmp_path / "report")
    assert files.oracle is not None and files.oracle.stat().st_size > 1000
    md = files.markdown.read_text()
    assert "## Relative to the oracle" in md and "(oracle.png)" in md
    assert "| tiny | tiny-dynofa | dynofa | 30.0 | 1.500 | 100.0 | +100.0 | 80.0 | -10.0 |" in md
    assert "| tiny | tiny-oracle | oracle | 20.0 | 1.000 | 0.0 | +0.0 | 90.0 | +0.0 |" in md
    # without an oracle run: no such section, no chart
    plain = rp.write_report(runs[:1], tmp_path / "plain")
    assert plain.oracle is None and "## Relative to the oracle" not in plain.markdown.read_text()
