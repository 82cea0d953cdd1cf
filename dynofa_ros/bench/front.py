"""``dynofa bench front``: how much of the search space the searched Pareto front dominates.

Reads a family file's searched front (its provenance), draws ``--random`` (100) random
sub-networks, evaluates the front and the random ones the same way — accuracy measured with BN
recalibrated per sub-network (or with the family's predictor: ``--accuracy predictor``), latency
from the same latency source the search used (the profile's table, or the simulator; or
``--latency measured``) — and prints the fraction of the random sub-networks some front point
dominates (at least as fast and at least as accurate, better in one).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from dynofa_ros.resources import models_dir


def evaluate_front(
    family_path: Path,
    *,
    n_random: int = 100,
    seed: int = 12345,
    accuracy: str = "measured",
    latency: str = "search",
    calibration_images: int | None = None,
    validation_images: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    from dynofa_ros.family import load_family
    from dynofa_ros.search import build
    from dynofa_ros.search.accuracy import AccuracyData, AccuracyMeter
    from dynofa_ros.search.errors import SearchError
    from dynofa_ros.search.lut import TableSet
    from dynofa_ros.search.pareto import Candidate, dominated_fraction, pareto_front
    from dynofa_ros.search.profile import MeasureSetting, TimingOptions, random_configs
    from dynofa_ros.supernet.checkpoint import load_checkpoint

    fam = load_family(family_path)
    prov = fam.provenance
    search = prov.get("search") or {}
    if not search.get("front"):
        raise SearchError(f"{family_path}: no searched front in its provenance")
    net = load_checkpoint(fam.resolve(fam.supernet["checkpoint"])).net.eval()
    front_cfgs = [net.space.parse(f["config"]) for f in search["front"]]
    rand_cfgs = random_configs(net.space, n_random, seed)
    src = prov.get("latency_source") or {}
    setting = MeasureSetting(**src["setting"])
    if latency == "measured":
        lat = build.measured_latency(net, setting, TimingOptions(10, 50, 2.0))
    elif src.get("kind") == "simulated":
        from dynofa_ros.platform import make_platform

        sim = make_platform("sim-xavier-nx")
        lat = build.simulated_latency(
            net,
            sim,
            setting.processor,
            frequency_khz=setting.frequency_khz or None,
            threads=setting.threads or None,
            runtime=src.get("runtime", "torch-dynamic"),
        )
    elif src.get("kind") == "table":
        # next to the family as searched, or where the search ran (an installed family's
        # relative path points outside the install)
        places = [fam.resolve(src["path_from_family"])] if src.get("path_from_family") else []
        places += [Path(src["path"])] if src.get("path") else []
        d = next((q for q in places if q.is_dir()), None)
        if d is None:
            raise SearchError(
                f"latency tables of {fam.name} not found (looked in "
                f"{', '.join(map(str, places))}): run the profile command in its provenance, "
                f"or pass --latency measured"
            )
        tables = TableSet.load(d, net.space.resolutions, **setting.to_dict())
        lat = build.table_latency(net, tables, setting)
    else:
        lat = build.measured_latency(net, setting, TimingOptions(10, 50, 2.0))
    acc_prov = prov.get("accuracy_source") or {}
    if accuracy == "predictor":
        from dynofa_ros.search.predictor import load_predictor

        pfile = (acc_prov.get("predictor") or {}).get("file_from_family")
        if not pfile:
            raise SearchError(f"{fam.name} names no predictor file")
        predictor, _ = load_predictor(fam.resolve(pfile))
        acc_fn = build.predictor_accuracy(predictor)
    else:
        n_cal = calibration_images or int(acc_prov.get("calibration_images", 500))
        n_val = validation_images or int(acc_prov.get("validation_images", 3000))
        meter = AccuracyMeter(net, AccuracyData.fashion_mnist(None, n_cal, n_val))
        acc_fn = build.AccuracySource(
            lambda cfgs: meter.measure_many(list(cfgs), progress=progress), "measured", "measured"
        )
    front = [
        Candidate(c, lt, ac, "front")
        for c, lt, ac in zip(front_cfgs, lat(front_cfgs), acc_fn(front_cfgs), strict=True)
    ]
    randoms = [
        Candidate(c, lt, ac, "random")
        for c, lt, ac in zip(rand_cfgs, lat(rand_cfgs), acc_fn(rand_cfgs), strict=True)
    ]
    # the searched front, re-evaluated, may have lost points to noise: take its own front
    front_now = pareto_front(front)
    return {
        "family": fam.name,
        "front_size": len(front),
        "random": len(randoms),
        "dominated_fraction": dominated_fraction(front_now, randoms),
        "accuracy": accuracy,
        "latency": lat.description,
        "front": front,
        "randoms": randoms,
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="dynofa bench front", description=__doc__.split("\n\n")[0].split(": ", 1)[1]
    )
    p.add_argument(
        "family",
        nargs="?",
        type=Path,
        default=None,
        help="family file (default: models/fmnist_mbv3_small.cpu.family.json)",
    )
    p.add_argument("--random", type=int, default=100)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--accuracy", choices=("measured", "predictor"), default="measured")
    p.add_argument(
        "--latency",
        choices=("search", "measured"),
        default="search",
        help="search: the latency source the search used (default); measured",
    )
    p.add_argument("--plot", type=Path, default=None, help="also write a PNG of the comparison")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    path = args.family or models_dir() / "fmnist_mbv3_small.cpu.family.json"
    res = evaluate_front(
        path,
        n_random=args.random,
        seed=args.seed,
        accuracy=args.accuracy,
        latency=args.latency,
        progress=not args.quiet,
    )
    print(
        f"{res['family']}: the searched front ({res['front_size']} sub-networks) dominates "
        f"{100 * res['dominated_fraction']:.0f} % of {res['random']} random sub-networks "
        f"({res['accuracy']} accuracy; latency: {res['latency']})"
    )
    if args.plot:
        from dynofa_ros.search.pareto import pareto_front
        from dynofa_ros.search.plots import pareto_png

        pareto_png(
            args.plot,
            title=f"{res['family']}: front vs random ({res['accuracy']})",
            candidates=[],
            front=pareto_front(res["front"]),
            family=[],
            random=res["randoms"],
        )
        print(f"plot -> {os.fspath(args.plot)}")
    return 0
