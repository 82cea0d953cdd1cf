"""``dynofa realtime``: a real-machine scenario on this machine, one run per policy.

::

    dynofa realtime SCENARIO [--policy P|all] [-o OUT] [--report] [--probe [SECONDS]] [--quiet]

SCENARIO: a YAML path or the name of a bundled real-machine scenario
(a scenario with a ``realtime`` section, e.g. ``cpu_corunner``). ``--policy all`` (the
default) runs the scenario's ``policies``; ``--policy P`` one manager policy. Each run takes
the scenario's duration in wall time (plus its warm-up) and writes
``OUT/<policy>.results.jsonl`` as soon as it ends (atomically: an interrupted run leaves
nothing), then ``OUT/summary.json``; the figures are printed, and ``dynofa report OUT -o
OUT/report`` draws them (``--report`` does it here).
``--probe`` first measures every (member, threads) under each co-runner load of the scenario
(SECONDS each, default 1) and prints the table; the ``oracle`` policy needs it (it is run
then) and plays, per load step, the most accurate measured configuration that met the target.
Default OUT: ``results/realtime/<scenario>``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from dynofa_ros.manager.registry import POLICIES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dynofa realtime", description=__doc__.split("\n")[0])
    p.add_argument("scenario", help="real-machine scenario YAML, or a bundled name")
    p.add_argument(
        "--policy",
        default="all",
        choices=("all", *POLICIES),
        help="one policy, or all (the scenario's policies; default)",
    )
    p.add_argument("-o", "--output", help="results directory (default results/realtime/NAME)")
    p.add_argument("--report", action="store_true", help="also write the report to OUT/report")
    p.add_argument(
        "--probe",
        nargs="?",
        const=1.0,
        type=float,
        metavar="SECONDS",
        help="measure every (member, threads) under each load first (SECONDS each, default 1)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from dynofa_ros.evaluation import realtime as rt
    from dynofa_ros.evaluation.realtime_scenario import load, resolve
    from dynofa_ros.evaluation.records import write_results
    from dynofa_ros.fileio import atomic_write_text

    if args.probe is not None and not 0 < args.probe <= 60:
        raise ValueError(f"--probe SECONDS = {args.probe} is outside (0, 60]")
    sc = load(resolve(args.scenario))
    policies = list(sc.policies) if args.policy == "all" else [args.policy]
    out = Path(args.output) if args.output else Path("results") / "realtime" / sc.name
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.quiet
    cam = sc.camera
    print(f"scenario {sc.name}: {sc.description}".rstrip(": "))
    print(
        f"{sc.duration_s:g} s per policy at {cam.fps:g} fps ({sc.frame_count} frames, "
        f"{cam.width}x{cam.height} {cam.encoding}), target {sc.model.latency_target_ms:g} ms, "
        f"policies: {', '.join(policies)}"
    )
    print(f"manager latency model (family {sc.model.family.name}, {sc.model.backend} records):")
    print(rt.family_table(sc))
    setup = rt.prepare(sc, progress=progress)
    try:
        schedule = None
        if args.probe is not None or "oracle" in policies:
            rows = rt.probe(setup, args.probe or 1.0, progress=progress)
            print(rt.probe_text(rows, sc))
            if "oracle" in policies:  # its cost model: what the probe measured here
                schedule = rt.oracle_schedule(rows, sc)
                for e in schedule:
                    c = e.configs[sc.model.name]
                    print(
                        f"  oracle from {e.t_s:g} s ({e.why}): {c.subnet_id} x{c.threads}, "
                        f"p50 {e.latency_ms[sc.model.name]:.2f} ms measured"
                    )
        summaries = []
        for policy in policies:
            run = rt.run_policy(
                setup, policy, progress=progress, schedule=schedule if policy == "oracle" else None
            )
            path = write_results(out / f"{policy}.results.jsonl", run.results)
            s = rt.summarise(run, sc)
            summaries.append(s)
            print(
                f"  {policy}: {len(run.results.frames)} frames, {len(run.results.commands)} "
                f"commands, {len(run.dropped_at_s)} dropped -> {path}"
            )
            delay = run.results.info.extra.get("start_delay_ms") or {}
            if delay:
                print(
                    f"  {policy}: start delay after the due time (wake-up): p50 "
                    f"{delay['p50']:.3f} ms, p99 {delay['p99']:.3f} ms, max {delay['max']:.3f} ms"
                )
            for why in run.rejected:
                print(f"  {policy}: command rejected: {why}")
    finally:
        setup.close()
    print(rt.summary_text(summaries, sc))
    atomic_write_text(
        out / "summary.json",
        json.dumps({"scenario": sc.name, "policies": [s.to_dict() for s in summaries]}, indent=2)
        + "\n",
    )
    if args.report:
        from dynofa_ros.evaluation.report import load_runs, write_report

        files = write_report(load_runs([out]), out / "report", title=f"dynofa realtime {sc.name}")
        print(f"report: {files.html}")
    else:
        print(f"report: dynofa report {out} -o {out / 'report'}")
    return 0


if __name__ == "__main__":
    from dynofa_ros.cli import main as cli_main

    sys.exit(cli_main(["realtime", *sys.argv[1:]]))
