"""``dynofa scenario``: scenario YAML -> rosbag2 bag, and checks of bags used as replay input.

::

    dynofa scenario generate SCENARIO -o BAG [--storage sqlite3|mcap] [--seed N] [--overwrite]
    dynofa scenario check BAG [--camera TOPIC[=MODEL]] [--scenario FILE] [--json]
    dynofa scenario list

SCENARIO is a YAML file or the name of a bundled scenario (``dynofa scenario list``, which says
which runners each can use; one with a ``builtin:`` family runs under ``dynofa simulate`` only and
``generate`` refuses it). The bag is
written beside BAG and renamed into place when complete: an interrupted run leaves no bag.
``check`` prints topics, message counts, duration, the cameras and their ground truth, and what
is missing (exit 1 with one error line when the bag cannot be replayed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

from dynofa_ros.evaluation.bagio import STORAGES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dynofa scenario", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="action", required=True)
    g = sub.add_parser("generate", help="write a scenario as a rosbag2 bag")
    g.add_argument("scenario", help="scenario YAML file or bundled scenario name")
    g.add_argument("-o", "--output", required=True, help="bag directory to create")
    g.add_argument(
        "--storage",
        default="sqlite3",
        help=f"rosbag2 storage: {' | '.join(STORAGES)} (default sqlite3)",
    )
    g.add_argument("--seed", type=int, help="override the scenario's seed")
    g.add_argument("--overwrite", action="store_true", help="replace an existing bag")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    c = sub.add_parser("check", help="what a bag holds and lacks for a replay")
    c.add_argument("bag")
    c.add_argument(
        "--camera", action="append", default=[], metavar="TOPIC[=MODEL]",
        help="camera topic(s) the replay would use (as `dynofa replay --camera`)",
    )  # fmt: skip
    c.add_argument("--scenario", metavar="FILE", help="as `dynofa replay --scenario`")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("list", help="bundled scenarios")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.action == "generate":
        return _generate(args)
    if args.action == "check":
        return _check(args)
    return _list()


def _generate(args: argparse.Namespace) -> int:
    from dynofa_ros.evaluation import scenario as sc
    from dynofa_ros.evaluation.bagio import storage_plugin
    from dynofa_ros.evaluation.generate import generate

    storage_plugin(args.storage)
    scenario = sc.load(sc.resolve(args.scenario))
    if args.seed is not None:
        if args.seed < 0:
            raise sc.ScenarioError(f"--seed {args.seed}: allowed: an integer >= 0")
        scenario = dataclasses.replace(scenario, seed=args.seed)
    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=None, unit="frame", desc=f"scenario {scenario.name}", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    try:
        result = generate(
            scenario, args.output, args.storage, overwrite=args.overwrite, progress=progress
        )
    finally:
        if bar is not None:
            bar.close()
    print(
        f"wrote {result.path} ({result.storage}, {result.frames} frames, "
        f"{result.duration_s:g} s, {result.size_bytes / 1e6:.1f} MB)"
    )
    for topic, count in sorted(result.counts.items()):
        print(f"  {topic:<34} {count:>7}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from dynofa_ros.evaluation.recorded import CameraChoice, plan
    from dynofa_ros.evaluation.scenario_bag import inspect_bag

    # everything the replay will need, checked as the replay checks it: the topics' types
    # first, then the plan, then every message the plan uses
    inspect_bag(args.bag, verify=False)
    replay_plan = plan(
        args.bag,
        cameras=[CameraChoice.parse(c) for c in args.camera],
        scenario_file=args.scenario,
    )
    info = inspect_bag(args.bag, cameras=[c.bag_topic for c in replay_plan.scenario.cameras])
    if args.json:
        out = {
            "path": str(info.path),
            "storage": info.storage,
            "duration_s": info.duration_s,
            "message_count": info.message_count,
            "topics": {n: {"type": t.msgtype, "count": t.count} for n, t in info.topics.items()},
            "cameras": [dataclasses.asdict(c) for c in info.cameras],
            "scenario": info.scenario.name if info.scenario else None,
            "ignored": list(info.ignored),
            "missing": list(info.notes),
            "plan": {
                "scenario": replay_plan.scenario.name,
                "recorded": replay_plan.recorded,
                "cameras": {
                    c.bag_topic: dataclasses.asdict(replay_plan.time_base[c.bag_topic])
                    for c in replay_plan.scenario.cameras
                },
                "ignored": replay_plan.ignored,
            },
        }
        print(json.dumps(out, indent=2))
    else:
        print(info.summary())
        print(replay_plan.summary())
    return 0


def _list() -> int:
    """Each bundled scenario with the runners that can run it: ``simulate`` (every scenario),
    ``replay fast`` / ``replay live`` (after ``generate``; not with a ``builtin:`` family or a
    ``source: none`` camera), ``realtime`` (those with a ``realtime`` section)."""
    from dynofa_ros.evaluation import scenario as sc

    rows = []
    for name, path in sc.bundled().items():
        s = sc.load(path)
        rows.append((name, s.duration_s, len(s.models), ", ".join(sc.runners(s)), s.description))
    width = max(len(r[3]) for r in rows)
    for name, duration, n, runners, description in rows:
        first = " ".join(description.split())
        first = first if len(first) <= 70 else first[:69] + "…"
        print(f"{name:<24} {duration:>5g} s  {n} model(s)  {runners:<{width}}  {first}")
    return 0


if __name__ == "__main__":
    from dynofa_ros.cli import main as cli_main

    sys.exit(cli_main(["scenario", *sys.argv[1:]]))
