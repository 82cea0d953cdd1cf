"""``dynofa replay BAG --policy P [...]``: replay a scenario bag, write the run's results.

Each policy gets ``OUT/<scenario>-<policy>.results.jsonl`` (the format ``dynofa report`` reads;
live runs are named ``<scenario>-<policy>-live``) and, live, the result bag ``OUT/<name>.bag`` and
the nodes' logs in ``OUT/<name>.logs``. ``--report`` writes the comparison
report into ``OUT/report`` at the end.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dynofa_ros.evaluation.inprocess import (
    MANAGER_RATE_HZ,
    TELEMETRY_PERIOD_S,
    ReplayOptions,
)


def parse_policies(text: str) -> list[str]:
    """``--policy``: a comma list of policy names, or ``all``."""
    from dynofa_ros.manager import POLICIES

    names = list(POLICIES) if text == "all" else [p.strip() for p in text.split(",") if p.strip()]
    for p in names:
        if p not in POLICIES:
            raise ValueError(f"--policy {p!r} is not one of: {', '.join(POLICIES)}, all")
    if not names:
        raise ValueError("--policy needs at least one policy")
    return names


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="dynofa replay",
        description="Replay a scenario bag through the perception / manager / simulated-board "
        "nodes (live, over DDS) or their core code in one process (--fast), per policy.",
    )
    ap.add_argument(
        "bag", type=Path,
        help="a scenario bag (`dynofa scenario generate`) or any rosbag2 with a camera",
    )  # fmt: skip
    ap.add_argument(
        "--camera", action="append", default=[], metavar="TOPIC[=MODEL]",
        help="camera topic of a recorded bag, and the model it feeds (repeatable; default: the "
        "bag's only image topic)",
    )  # fmt: skip
    ap.add_argument(
        "--scenario", type=Path, metavar="FILE",
        help="scenario file for the settings a recorded bag lacks (models, targets, mission, "
        "events); replaces a bag's own scenario",
    )  # fmt: skip
    ap.add_argument(
        "--target-ms", type=float, help="latency target of every model (recorded bags: default 50)"
    )
    ap.add_argument(
        "--policy", default="dynofa",
        help="comma list of policies, or 'all' (default dynofa)",
    )  # fmt: skip
    ap.add_argument("-o", "--out", type=Path, default=Path("results"), help="output folder")
    ap.add_argument("--fast", action="store_true", help="in-process, simulated time, no DDS")
    ap.add_argument("--rate", type=float, default=1.0, help="live: x real time (default 1)")
    ap.add_argument("--checkpoint", type=Path, help="super-network (default: embedded)")
    ap.add_argument(
        "--processor",
        default="cuda",
        choices=("cuda", "cpu"),
        help="processor of the simulated board's family (default cuda)",
    )
    ap.add_argument(
        "--family",
        action="append",
        default=[],
        metavar="MODEL=FILE",
        help="family file of a model (default: <checkpoint>.sim-nx-<processor>)",
    )
    ap.add_argument("--manager-rate-hz", type=float, default=MANAGER_RATE_HZ)
    ap.add_argument("--telemetry-period-s", type=float, default=TELEMETRY_PERIOD_S)
    ap.add_argument("--domain-id", type=int, help="live: ROS_DOMAIN_ID (default: environment)")
    ap.add_argument(
        "--storage", default="sqlite3", choices=("sqlite3", "mcap"), help="live: result bag storage"
    )
    ap.add_argument("--report", action="store_true", help="write OUT/report at the end")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from dynofa_ros.evaluation.inprocess import bag_items, run_inprocess
    from dynofa_ros.evaluation.records import write_results

    policies = parse_policies(args.policy)
    families = {}
    for item in args.family:
        model, sep, path = item.partition("=")
        if not sep or not model or not path:
            raise ValueError(f"--family {item!r}: expected MODEL=FILE")
        families[model] = Path(path)
    for key in ("rate", "manager_rate_hz", "telemetry_period_s"):
        if not getattr(args, key) > 0:
            raise ValueError(f"--{key.replace('_', '-')} {getattr(args, key)} must be > 0")
    if args.target_ms is not None and not 0 < args.target_ms <= 60000:
        raise ValueError(f"--target-ms {args.target_ms} is not in (0, 60000]")
    from dynofa_ros.evaluation.recorded import CameraChoice, plan

    replay_plan = plan(
        args.bag,
        cameras=[CameraChoice.parse(c) for c in args.camera],
        scenario_file=args.scenario,
        target_ms=args.target_ms,
    )
    scenario, _ = bag_items(args.bag, replay_plan)  # validates the bag before anything starts
    if not args.quiet:
        print(replay_plan.summary(), flush=True)
    if not args.fast:
        from dynofa_ros.evaluation.scenario import require_network

        require_network(scenario, "a live replay")
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for policy in policies:
        opt = ReplayOptions(
            policy=policy,
            checkpoint=args.checkpoint,
            families=families,
            processor=args.processor,
            manager_rate_hz=args.manager_rate_hz,
            telemetry_period_s=args.telemetry_period_s,
        )
        name = f"{scenario.name}-{policy}" + ("" if args.fast else "-live")
        start = time.monotonic()
        if args.fast:
            _, items = bag_items(args.bag, replay_plan)
            run = run_inprocess(
                scenario, opt, items=items, name=name, source=str(args.bag),
                progress=not args.quiet,
            )  # fmt: skip
        else:
            from dynofa_ros.replay import LiveOptions, run_live

            live = LiveOptions(
                rate=args.rate, domain_id=args.domain_id, log_dir=args.out / f"{name}.logs",
                storage=args.storage,
            )  # fmt: skip
            result_bag = args.out / f"{name}.bag"
            if result_bag.exists():
                import shutil

                shutil.rmtree(result_bag) if result_bag.is_dir() else result_bag.unlink()
            run = run_live(
                args.bag, replay_plan, opt, live, result_bag, name=name, progress=not args.quiet
            )
        path = write_results(args.out / f"{name}.results.jsonl", run)
        written.append(path)
        print(
            f"{name}: {len(run.frames)} frames, {len(run.commands)} commands "
            f"({time.monotonic() - start:.1f} s) -> {path}",
            flush=True,
        )
    if args.report:
        from dynofa_ros.evaluation.report_cli import main as report_main

        return report_main([*map(str, written), "-o", str(args.out / "report")])
    return 0
