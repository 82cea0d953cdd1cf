"""``dynofa search``: evolutionary search per processor -> a family file (JSON + safetensors).

Latency on the target comes from a profile's per-layer table (``--latency table``, default), from
real whole-network measurement (``--latency measured``, slow) or, with ``--platform
sim-xavier-nx``, from the simulated Xavier NX. Accuracy comes from the predictor (trained here on
measured sub-networks, or ``--predictor FILE``) or is measured per candidate (``--accuracy
measured``, slow). The search sweeps ``--limits`` latency limits, keeps the Pareto front of every
evaluated candidate, picks ``--family-size`` members spread over the front's latency range,
re-measures them for real (accuracy with their own BN statistics; latency on each recorded
setting), and writes ``<stem>.<target>.family.json`` + ``<stem>.<target>.bn.safetensors`` and a
Pareto plot.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dynofa_ros.search.errors import SearchError
from dynofa_ros.search.profile_cli import _int_list, default_checkpoint


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dynofa search",
        description="Evolutionary search of Pareto-optimal sub-networks for one processor; "
        "writes a family file (JSON + BN statistics safetensors) and a Pareto plot.",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="super-network checkpoint (default: the embedded default in models/)",
    )
    g = p.add_argument_group("target and latency")
    g.add_argument(
        "--platform",
        default="this",
        help="'this' (this machine, measured) or sim-xavier-nx (simulated latency)",
    )
    g.add_argument("--processor", default="cpu", help="cpu or cuda (default cpu)")
    g.add_argument("--backend", default="onnxruntime", help="onnxruntime (default) or torch-static")
    g.add_argument(
        "--sim-runtime",
        default="torch-dynamic",
        help="simulator only: runtime cost model, torch-dynamic (default: the elastic "
        "super-network in eager PyTorch, as the published Dynamic-OFA family ran), "
        "torch-static or onnxruntime",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads searched for (default: 1 here; all cores on the sim)",
    )
    g.add_argument(
        "--frequency-khz",
        type=int,
        default=0,
        help="frequency of the profile to use (0: not pinned); simulator: default top",
    )
    g.add_argument(
        "--latency",
        choices=("table", "measured"),
        default="table",
        help="latency during the search: the profile's table (default) or measured",
    )
    g.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="profile folder of `dynofa profile` (default results/profile/<stem>); "
        "either its root or the setting's folder",
    )
    g.add_argument(
        "--record-threads",
        default="auto",
        help="thread counts each member's latency is re-measured at (auto: 1, 2, ..)",
    )
    g.add_argument(
        "--record-backends",
        default=None,
        help="backends each member is re-measured with (default: --backend)",
    )
    g = p.add_argument_group("accuracy")
    g.add_argument("--accuracy", choices=("predictor", "measured"), default="predictor")
    g.add_argument(
        "--predictor",
        type=Path,
        default=None,
        help="predictor file to use (dynofa safetensors, or once-for-all .pth); "
        "default: train one on --predictor-samples measured sub-networks",
    )
    g.add_argument("--predictor-samples", type=int, default=150)
    g.add_argument(
        "--save-predictor",
        type=Path,
        default=None,
        help="where to save a trained predictor (default beside the family: "
        "<stem>.predictor.safetensors)",
    )
    g.add_argument("--data", default=None, help="Fashion-MNIST IDX folder (default: the system's)")
    g.add_argument("--calibration-images", type=int, default=500)
    g.add_argument("--validation-images", type=int, default=3000)
    g = p.add_argument_group("evolution")
    g.add_argument("--population", type=int, default=100)
    g.add_argument("--generations", type=int, default=30)
    g.add_argument(
        "--mutate-prob",
        type=float,
        default=0.1,
        help="per-block / per-stage mutation probability (0.1)",
    )
    g.add_argument("--resolution-mutate-prob", type=float, default=0.5)
    g.add_argument(
        "--mutation-ratio",
        type=float,
        default=0.5,
        help="fraction of each generation made by mutation (0.5)",
    )
    g.add_argument(
        "--crossover-ratio",
        type=float,
        default=0.5,
        help="fraction made by crossover (0.5); the rest are random",
    )
    g.add_argument("--parent-ratio", type=float, default=0.25)
    g.add_argument("--limits", type=int, default=8, help="number of latency limits (8)")
    g.add_argument(
        "--limits-ms",
        type=_float_list,
        default=None,
        help="explicit latency limits (ms), comma list (overrides --limits)",
    )
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("output")
    g.add_argument("--family-size", type=int, default=6)
    g.add_argument(
        "--out",
        type=Path,
        default=None,
        help="family JSON (default <checkpoint dir>/<stem>.<target>.family.json)",
    )
    g.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="Pareto PNG (default <checkpoint dir>/plots/<stem>.<target>.pareto.png)",
    )
    g.add_argument(
        "--random", type=int, default=100, help="random sub-networks plotted for reference (100)"
    )
    g.add_argument("--repeat", type=int, default=100, help="timed runs per re-measurement (100)")
    g.add_argument("--quiet", action="store_true")
    return p


def _resolve_profile(root: Path, label: str) -> Path:
    if (root / "profile.json").is_file() or any(root.glob("*_lookup_table.yaml")):
        return root
    d = root / label
    if not d.is_dir():
        have = (
            ", ".join(sorted(x.name for x in root.iterdir() if x.is_dir())) if root.is_dir() else ""
        )
        raise SearchError(
            f"no profile for {label} in {root} (have: {have or 'nothing'}); run `dynofa profile`"
        )
    return d


def _relative(path: Path, family_json: Path) -> str:
    """``path`` relative to the family file's folder (how the family names its files)."""
    import os

    return os.path.relpath(path.resolve(), family_json.resolve().parent)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from dynofa_ros.search.evolution import EvolutionOptions

    options = EvolutionOptions(
        population=args.population,
        generations=args.generations,
        arch_mutate_prob=args.mutate_prob,
        resolution_mutate_prob=args.resolution_mutate_prob,
        mutation_ratio=args.mutation_ratio,
        crossover_ratio=args.crossover_ratio,
        parent_ratio=args.parent_ratio,
        seed=args.seed,
    )
    if args.family_size < 1:
        raise SearchError(f"--family-size must be >= 1, got {args.family_size}")
    if args.processor not in ("cpu", "cuda"):
        raise SearchError(f"--processor must be cpu or cuda, got {args.processor!r}")
    if args.limits_ms is not None and any(v <= 0 for v in args.limits_ms):
        raise SearchError(f"--limits-ms must be positive, got {args.limits_ms}")

    from dynofa_ros.search import build
    from dynofa_ros.search.accuracy import AccuracyData, AccuracyMeter
    from dynofa_ros.search.lut import TableSet
    from dynofa_ros.search.pareto import dominated_fraction, select_spread
    from dynofa_ros.search.profile import MeasureSetting, TimingOptions, random_configs
    from dynofa_ros.search.timing import useful_thread_counts
    from dynofa_ros.supernet.checkpoint import load_checkpoint

    ckpt = Path(args.checkpoint or default_checkpoint())
    ck = load_checkpoint(ckpt)
    net = ck.net.eval()
    stem = ckpt.name.removesuffix(".safetensors")
    progress = not args.quiet
    simulated = args.platform in ("sim-xavier-nx", "sim")
    if not simulated and args.platform != "this":
        raise SearchError(f"--platform must be 'this' or sim-xavier-nx, got {args.platform!r}")

    # --- latency source and the settings each member is re-measured on
    records: list[build.RecordSetting] = []
    if simulated:
        from dynofa_ros.platform import make_platform

        sim = make_platform("sim-xavier-nx")
        cpu_threads = args.threads or sim.processor("cpu").cores
        threads = cpu_threads if args.processor == "cpu" else None
        latency = build.simulated_latency(
            net,
            sim,
            args.processor,
            frequency_khz=args.frequency_khz or None,
            threads=threads,
            runtime=args.sim_runtime,
        )
        target = f"sim-nx-{args.processor}"
        sim_threads = [cpu_threads] + [
            t for t in useful_thread_counts(sim.processor("cpu").cores) if t != cpu_threads
        ]
        for proc in (args.processor, "cuda" if args.processor == "cpu" else "cpu"):
            for t in sim_threads if proc == "cpu" else [0]:
                records.append(
                    build.RecordSetting(
                        MeasureSetting(proc, "simulated", t, 0), sim, args.sim_runtime
                    )
                )
    else:
        threads = args.threads or 1
        setting = MeasureSetting(args.processor, args.backend, threads, args.frequency_khz)
        if args.latency == "table":
            root = args.profile or Path("results") / "profile" / stem
            d = _resolve_profile(root, setting.label)
            tables = TableSet.load(d, net.space.resolutions, **setting.to_dict())
            latency = build.table_latency(net, tables, setting)
        else:
            latency = build.measured_latency(net, setting, TimingOptions(10, 50, 2.0))
        target = args.processor
        rec_threads = (
            useful_thread_counts()
            if args.record_threads == "auto"
            else _int_list(args.record_threads)
        )
        rec_backends = [b.strip() for b in (args.record_backends or args.backend).split(",")]
        ordered = [(args.backend, threads)] + [
            (b, t) for b in rec_backends for t in rec_threads if (b, t) != (args.backend, threads)
        ]
        for b, t in ordered:
            if args.processor == "cuda" and t != ordered[0][1]:
                continue
            records.append(
                build.RecordSetting(MeasureSetting(args.processor, b, t, args.frequency_khz))
            )

    # --- accuracy source
    data = AccuracyData.fashion_mnist(args.data, args.calibration_images, args.validation_images)
    meter = AccuracyMeter(net, data)
    out_json, out_bn = build.family_paths(ckpt, target, args.out)
    predictor_info: dict[str, Any] = {}
    if args.accuracy == "measured":
        accuracy = build.measured_accuracy(meter)
    else:
        from dynofa_ros.search.predictor import load_ofa_predictor, load_predictor, save_predictor

        if args.predictor is not None:
            if args.predictor.suffix == ".pth":
                predictor = load_ofa_predictor(args.predictor)
                meta: dict[str, Any] = {"source": "once-for-all state dict"}
            else:
                predictor, meta = load_predictor(args.predictor)
            predictor_info = {"file": str(args.predictor), "report": meta.get("report")}
        else:
            predictor, report, samples = build.train_predictor(
                net, meter, args.predictor_samples, seed=args.seed, progress=progress
            )
            save_to = args.save_predictor or out_json.with_name(f"{stem}.predictor.safetensors")
            save_predictor(
                save_to,
                predictor,
                {
                    "report": report,
                    "data": data.source,
                    "checkpoint": ckpt.name,
                    "samples": [
                        {"id": c.id, "config": c.to_dict(), "accuracy": a} for c, a in samples
                    ],
                },
            )
            predictor_info = {"file": str(save_to), "report": report}
            print(
                f"predictor: {len(samples)} measured sub-networks; held-out Spearman "
                f"{report['test_spearman']:.3f}, Kendall {report['test_kendall']:.3f}, RMSE "
                f"{100 * report['test_rmse']:.2f} pts -> {save_to}"
            )
        accuracy = build.predictor_accuracy(predictor, predictor_info.get("report"))

    # --- search
    outcome = build.run_search(
        net,
        latency,
        accuracy,
        options,
        n_limits=args.limits,
        limits_ms=args.limits_ms,
        progress=progress,
    )
    chosen = select_spread(outcome.front, args.family_size)
    rand_cfgs = random_configs(net.space, args.random, args.seed + 1000)
    rand_lat, rand_acc = latency(rand_cfgs), accuracy(rand_cfgs)
    from dynofa_ros.search.pareto import Candidate

    randoms = [
        Candidate(c, lt, ac, "random")
        for c, lt, ac in zip(rand_cfgs, rand_lat, rand_acc, strict=True)
    ]
    dominated = dominated_fraction(outcome.front, randoms)
    print(
        f"search {target}: {len(outcome.candidates)} evaluated, front {len(outcome.front)}, "
        f"{len(outcome.limits_ms)} limits {outcome.limits_ms[0]:.3g}-{outcome.limits_ms[-1]:.3g} "
        f"ms; front dominates {100 * dominated:.0f} % of {len(randoms)} random sub-networks "
        f"({accuracy.source} accuracy, {latency.setting.label} latency)"
    )

    # --- family
    timing = TimingOptions(warmup=20, repeat=args.repeat, max_seconds=5.0)
    sim_note = (
        "SIMULATED: every latency in this family is the simulated Xavier NX's model "
        "(dynofa_ros.platform.sim, constants in docs/simulator.md); no real NX CPU or GPU was "
        "measured."
        if simulated
        else None
    )
    if predictor_info.get("file"):
        predictor_info["file_from_family"] = _relative(Path(predictor_info["file"]), out_json)
    if latency.provenance.get("path"):
        latency.provenance["path_from_family"] = _relative(
            Path(latency.provenance["path"]), out_json
        )
    if simulated:
        latency.provenance["runtime"] = args.sim_runtime
    prov: dict[str, Any] = {
        "created": build.utc_now(),
        "command": build.command_line(),
        "target": target,
        "latency_source": {
            "description": latency.description,
            **latency.provenance,
            "setting": latency.setting.to_dict(),
        },
        "accuracy_source": {
            "description": accuracy.description,
            "kind": accuracy.source,
            "predictor": predictor_info,
            "calibration_images": args.calibration_images,
            "validation_images": args.validation_images,
        },
        "accuracy_data": data.source,
        "evolution": {**options.__dict__, "limits_ms": outcome.limits_ms},
        "search": {
            "evaluated": len(outcome.candidates),
            "front": [
                {
                    "id": c.id,
                    "config": c.config.to_dict(),
                    "latency_ms": c.latency_ms,
                    "accuracy": c.accuracy,
                }
                for c in outcome.front
            ],
            "random_dominated_fraction": dominated,
            "members": {c.id: {"latency_ms": c.latency_ms, "accuracy": c.accuracy} for c in chosen},
        },
        "members_latency": "re-measured after the search: median of timed runs after warm-up"
        if not simulated
        else "simulated reference latency at each frequency",
    }
    if sim_note:
        prov["note"] = sim_note
        prov["measured_gpu"] = False
    elif args.processor == "cpu":
        import torch

        prov["cuda"] = (
            "a CUDA device was available but this family is for the CPU"
            if torch.cuda.is_available()
            else "no CUDA device on the profiling machine: no GPU family measured here"
        )
    from dynofa_ros.search.timing import provenance as machine_prov

    prov["machine"] = machine_prov(args.processor, latency.setting.backend)["machine"]
    fam, _accs = build.make_family(
        name=f"{stem}.{target}",
        processor=args.processor,
        checkpoint=ckpt,
        net=net,
        chosen=chosen,
        meter=meter,
        records=records,
        timing=timing,
        out_json=out_json,
        out_bn=out_bn,
        provenance=prov,
        progress=progress,
        workload_runtime=args.sim_runtime if simulated else None,
    )

    # --- plot
    from dynofa_ros.search.plots import pareto_png

    plot = args.plot or ckpt.parent / "plots" / f"{stem}.{target}.pareto.png"
    measured_pts = []
    for m in fam.members:
        ms = m.latency_ms(
            args.processor, backend=latency.setting.backend if not simulated else "simulated"
        )
        if ms is not None:
            measured_pts.append(Candidate(m.id, ms, m.accuracy, "family"))
    kind = "simulated " if simulated else ""
    pareto_png(
        plot,
        title=f"{stem} on {kind}{latency.setting.label} — {accuracy.source} accuracy, "
        f"{len(outcome.candidates)} evaluated",
        candidates=outcome.candidates,
        front=outcome.front,
        family=chosen,
        random=randoms,
        family_measured=measured_pts,
        xlabel=f"latency (ms), {latency.description.split(' (')[0]}",
    )
    print(
        f"family {fam.name}: {len(fam.members)} members -> {out_json}"
        + (f" (+ {out_bn.name})" if fam.bn_statistics else " (no BN statistics: none needed)")
        + f"; plot -> {plot}"
    )
    print(
        f"{'id':<12}{'r':>4}{'MMACs':>8}{'search ms':>11}{'search acc':>12}"
        f"{'meas. acc':>11}{'meas. ms':>10}"
    )
    searched = {c.id: c for c in chosen}
    for m in fam.members:
        s = searched[m.id]
        ms = m.latency_ms(args.processor)
        print(
            f"{m.id:<12}{m.config['r']:>4}{m.macs / 1e6:>8.2f}{s.latency_ms:>11.3f}"
            f"{100 * s.accuracy:>11.2f}%{100 * m.accuracy:>10.2f}%"
            f"{(ms if ms is not None else float('nan')):>10.3f}"
        )
    sys.stdout.flush()
    return 0
