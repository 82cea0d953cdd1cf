"""``dynofa simulate SCENARIO``: run policies on a scenario's own timeline, in-process.

::

    dynofa simulate SCENARIO [--policy P[,P...]|all] [--compare] [-o DIR] [--report] [--quiet]

SCENARIO is a scenario YAML (the one format of ``config/scenarios``) or a bundled name
(``dynofa scenario list``). Each policy is one :func:`~.inprocess.run_inprocess` over the
scenario's timeline (:func:`~.inprocess.scenario_items`): the loop, the simulated board, the
result format and the metrics of ``dynofa replay --fast``, without generating a bag; a scenario
whose models have a ``builtin:`` family (no network) runs only here. ``--compare`` runs every
policy (``--policy all``). The table per policy and model: frames' energy, energy per frame,
latency p50 / p95, deadline misses, accuracy (measured against the ground truth; ``*``: the
family's recorded accuracy of the members that ran, when there is none), sub-network switches,
frames processed and dropped, and the board's energy over the run. ``-o DIR`` writes
``DIR/<scenario>-<policy>.results.jsonl`` (what ``dynofa report`` reads; ``--report`` writes
``DIR/report`` at the end).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from dynofa_ros.errors import DynofaError
from dynofa_ros.evaluation.inprocess import MANAGER_RATE_HZ, TELEMETRY_PERIOD_S
from dynofa_ros.evaluation.metrics import ModelMetrics, RunMetrics

COLUMNS = (
    "policy",
    "model",
    "energy J",
    "mJ/frame",
    "p50 ms",
    "p95 ms",
    "miss %",
    "accuracy %",
    "switches",
    "frames",
    "dropped",
    "board J",
)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="dynofa simulate",
        description="Run policies on a scenario's own timeline in one process: the loop, board, "
        "results and metrics of `dynofa replay --fast`, without a bag.",
    )
    ap.add_argument("scenario", help="scenario YAML, or a bundled name (dynofa scenario list)")
    ap.add_argument(
        "--policy", default="dynofa", help="comma list of policies, or 'all' (default dynofa)"
    )
    ap.add_argument("--compare", action="store_true", help="every policy (--policy all)")
    ap.add_argument("-o", "--out", type=Path, help="write DIR/<scenario>-<policy>.results.jsonl")
    ap.add_argument("--report", action="store_true", help="with -o: write DIR/report at the end")
    ap.add_argument(
        "--processor",
        default="cuda",
        choices=("cuda", "cpu"),
        help="start processor of the simulated board (default cuda)",
    )
    ap.add_argument("--manager-rate-hz", type=float, default=MANAGER_RATE_HZ)
    ap.add_argument("--telemetry-period-s", type=float, default=TELEMETRY_PERIOD_S)
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def _cell(x: float | int | None, digits: int = 1, scale: float = 1.0) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, int):
        return str(x)
    return f"{x * scale:.{digits}f}"


def row(rm: RunMetrics, m: ModelMetrics) -> tuple[str, ...]:
    """One table row: a model of a run, every figure from :mod:`~.metrics`."""
    acc, source = m.accuracy_or_expected()
    energy_per_frame = m.energy_j / m.frames if m.energy_j is not None and m.frames else None
    return (
        rm.policy or rm.name,
        m.model,
        _cell(m.energy_j, 2),
        _cell(energy_per_frame, 1, 1e3),
        _cell(m.latency_p50_ms),
        _cell(m.latency_p95_ms),
        _cell(m.miss_rate, 1, 100),
        _cell(acc, 2, 100) + ("*" if source == "family" else ""),
        str(m.switches),
        str(m.frames),
        _cell(m.dropped),
        _cell(rm.board_energy_j, 1),
    )


def table(runs: Sequence[RunMetrics]) -> str:
    """The comparison table (one row per run and model), aligned text."""
    body = [row(rm, m) for rm in runs for m in rm.models]
    widths = [max(len(c) for c in col) for col in zip(COLUMNS, *body, strict=True)]
    lines = [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [COLUMNS, *body]
    ]
    lines.insert(1, "-" * len(lines[0]))
    if any(m.accuracy_or_expected()[1] == "family" for rm in runs for m in rm.models):
        lines.append("* expected accuracy: the family's recorded accuracy (no ground truth)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from dynofa_ros.evaluation import scenario as sc
    from dynofa_ros.evaluation.inprocess import ReplayOptions, run_inprocess
    from dynofa_ros.evaluation.metrics import compute
    from dynofa_ros.evaluation.records import write_results
    from dynofa_ros.replay_cli import parse_policies

    policies = parse_policies("all" if args.compare else args.policy)
    for key in ("manager_rate_hz", "telemetry_period_s"):
        if not getattr(args, key) > 0:
            raise ValueError(f"--{key.replace('_', '-')} {getattr(args, key)} must be > 0")
    if args.report and args.out is None:
        raise ValueError("--report needs -o DIR")
    path = sc.resolve(args.scenario)
    scenario = sc.load(path)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    metrics, written = [], []
    for policy in policies:
        opt = ReplayOptions(
            policy=policy,
            processor=args.processor,
            manager_rate_hz=args.manager_rate_hz,
            telemetry_period_s=args.telemetry_period_s,
        )
        start = time.monotonic()
        name = f"{scenario.name}-{policy}"
        try:
            run = run_inprocess(scenario, opt, name=name, source=str(path), progress=not args.quiet)
        except DynofaError as exc:
            if not (args.compare and policy == "oracle"):
                raise
            # the oracle needs the board's cost model of every member; a family measured on
            # another machine (no workloads) leaves the comparison without it, not without rows
            print(f"{name}: skipped: {exc}")
            continue
        run.info.extra["runner"] = "simulate"
        metrics.append(compute(run))
        took = f"{time.monotonic() - start:.1f} s"
        if args.out is not None:
            written.append(write_results(args.out / f"{name}.results.jsonl", run))
            took += f" -> {written[-1]}"
        if not args.quiet:
            print(f"{name}: {len(run.frames)} frames, {len(run.commands)} commands ({took})")
    print(f"scenario {scenario.name} ({scenario.duration_s:g} s): {scenario.description}")
    print(table(metrics))
    if args.report:
        from dynofa_ros.evaluation.report_cli import main as report_main

        return report_main([*map(str, written), "-o", str(args.out / "report")])
    return 0
