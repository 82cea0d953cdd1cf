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

Without a checkpoint (``--supernet ofa-w1.2``) the search runs on tables and a predictor alone
and writes a search record instead of a family. Each limit's best sub-network is printed as it is
found; an impossible limit is reported and skipped. Every number keeps its origin: a table
measured on another board (once-for-all's note10, ``--board``) is recorded as that board's, and
accuracy is measured only on data of the network's classes, else marked predicted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from dynofa_ros.resources import default_checkpoint
from dynofa_ros.search.errors import SearchError
from dynofa_ros.search.profile_cli import _int_list

if TYPE_CHECKING:
    from dynofa_ros.supernet.network import Supernet


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
        help="super-network checkpoint (default: the embedded default in models/, unless "
        "--supernet names an architecture)",
    )
    p.add_argument(
        "--supernet",
        default=None,
        help="search without a checkpoint: the architecture (ofa-w1.0, ofa-w1.2, ...) whose "
        "sub-networks are searched with --profile tables and --predictor; prints the best "
        "sub-network per limit and writes a search record (no family: that needs weights)",
    )
    p.add_argument(
        "--resolutions",
        type=_int_list,
        default=None,
        help="input resolutions searched, comma list (default: those the --profile tables "
        "cover, else the super-network's)",
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
        "--board",
        default=None,
        help="the board a --profile table without provenance (once-for-all's own) was "
        "measured on, e.g. note10; recorded as such, never as this machine",
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
    g.add_argument(
        "--predictor-resolutions",
        type=_int_list,
        default=None,
        help="once-for-all .pth predictor of the ofa-nas layout: the resolutions it encodes "
        "(default 128..224 step 4)",
    )
    g.add_argument("--predictor-samples", type=int, default=150)
    g.add_argument(
        "--save-predictor",
        type=Path,
        default=None,
        help="where to save a trained predictor (default beside the family: "
        "<stem>.predictor.safetensors)",
    )
    g.add_argument(
        "--data",
        default=None,
        help="validation data whose classes are the network's: a Fashion-MNIST IDX folder or an "
        "ImageFolder tree (<class>/<image>, e.g. ImageNet's 1000 synsets). Default: the "
        "system's Fashion-MNIST for a 10-class grey network; otherwise none, and the family's "
        "accuracy is the predictor's, marked predicted",
    )
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
        help="family JSON (default <checkpoint dir>/<stem>.<target>.family.json); with "
        "--supernet and no checkpoint: the search record (default "
        "results/search/<supernet>.<board>.search.json)",
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


def _predictor(args: argparse.Namespace, resolutions: list[int]) -> tuple[Any, dict[str, Any]]:
    """The --predictor file, checked to encode every searched resolution."""
    from dynofa_ros.family import sha256_file
    from dynofa_ros.search.predictor import load_ofa_predictor, load_predictor

    path: Path = args.predictor
    if path.suffix == ".pth":
        predictor = load_ofa_predictor(path, resolutions=args.predictor_resolutions)
        meta: dict[str, Any] = {"source": "once-for-all state dict (.pth)"}
    else:
        predictor, meta = load_predictor(path)
    check = getattr(predictor.encoder, "check_resolutions", None)
    if check is not None:
        check(resolutions, str(path))
    info = {
        "file": str(path),
        "sha256": sha256_file(path),
        "encoder": predictor.encoder.to_dict(),
        "report": meta.get("report"),
        "source": meta.get("source"),
        "note": "predicted top-1 (fraction), not measured",
    }
    return predictor, info


def _accuracy_data(args: argparse.Namespace, net: Any, ckpt: Path, labels: Any) -> Any:
    """Validation data of the network's classes, or None (then accuracy is predicted)."""
    from dynofa_ros.search.accuracy import AccuracyData

    n_cls, channels = int(net.arch.num_classes), int(net.arch.in_channels)
    if args.data is None:
        if n_cls == 10 and channels == 1:
            return AccuracyData.fashion_mnist(None, args.calibration_images, args.validation_images)
        return None
    root = Path(args.data)
    if any(root.glob("*-ubyte*")):
        if n_cls != 10 or channels != 1:
            raise SearchError(
                f"--data {root}: Fashion-MNIST has 10 grey classes, but checkpoint {ckpt} has "
                f"{n_cls} classes and {channels} input channel(s)"
            )
        return AccuracyData.fashion_mnist(
            str(root), args.calibration_images, args.validation_images
        )
    if not root.is_dir():
        raise SearchError(f"--data {root} is not a directory")
    subdirs = sorted(p.name for p in root.iterdir() if p.is_dir())
    classes = list(labels) if labels and set(labels) <= set(subdirs) else subdirs
    if len(classes) != n_cls:
        raise SearchError(
            f"--data {root} has {len(classes)} classes, but checkpoint {ckpt} has {n_cls}: "
            "validation data must hold the network's classes"
        )
    return AccuracyData.image_folder(
        str(root),
        channels,
        max(net.space.resolutions),
        n_calibration=args.calibration_images,
        n_validation=args.validation_images,
        classes=classes,
    )


def _print_limit(i: int, n: int, limit: float, result: Any, why: str, *, where: str) -> None:
    if result is None:
        print(f"[{i + 1}/{n}] limit {limit:.4g} ms: skipped, {why}", flush=True)
        return
    c = result.best
    print(
        f"[{i + 1}/{n}] limit {limit:.4g} ms: best {c.id} r{c.config.r}, predicted top-1 "
        f"{100 * c.accuracy:.2f} %, latency {c.latency_ms:.4g} ms ({where})",
        flush=True,
    )


def _limits_table(outcome: Any, where: str, accuracy_kind: str) -> None:
    head = f"{accuracy_kind} top-1"
    print(f"{'limit ms':>9}  {'best':<12}{'r':>4}  {head:>16}  latency ms ({where})")
    by_limit = {r.limit_ms: r for r in outcome.rollouts}
    skipped = dict(outcome.skipped)
    for limit in outcome.limits_ms:
        if limit in by_limit:
            c = by_limit[limit].best
            print(
                f"{limit:>9.4g}  {c.id:<12}{c.config.r:>4}  {100 * c.accuracy:>15.2f}%  "
                f"{c.latency_ms:.4g}"
            )
        else:
            print(f"{limit:>9.4g}  {'(impossible: ' + skipped[limit].split(':', 1)[-1].strip()})")


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
    from dynofa_ros.search.pareto import dominated_fraction, select_spread
    from dynofa_ros.search.profile import random_configs

    progress = not args.quiet
    simulated = args.platform in ("sim-xavier-nx", "sim")
    if not simulated and args.platform != "this":
        raise SearchError(f"--platform must be 'this' or sim-xavier-nx, got {args.platform!r}")

    no_weights, net, ckpt, labels, stem = _network(args, simulated)

    resolutions, table_root = _resolutions(args, net, simulated, stem)

    # --- accuracy predictor given as a file: checked before anything slow
    predictor_info: dict[str, Any] = {}
    predictor = None
    if args.accuracy == "predictor" and args.predictor is not None:
        predictor, predictor_info = _predictor(args, resolutions)

    latency, target, origin, records, where = _latency(
        args, net, simulated, table_root, resolutions
    )

    accuracy, meter, predictor_info = _accuracy(
        args, net, ckpt, labels, no_weights, (predictor, predictor_info), target, stem
    )

    # --- search
    print(
        f"search {stem} over resolutions {','.join(map(str, resolutions))}: latency "
        f"{latency.description}; accuracy {accuracy.source} "
        f"({predictor_info.get('file') or accuracy.description})",
        flush=True,
    )
    outcome = build.run_search(
        net,
        latency,
        accuracy,
        options,
        n_limits=args.limits,
        limits_ms=args.limits_ms,
        progress=progress,
        on_limit=lambda i, n, lim, res, why: _print_limit(i, n, lim, res, why, where=where),
        label=where,
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
        f"{len(outcome.rollouts)} of {len(outcome.limits_ms)} limits "
        f"{outcome.limits_ms[0]:.3g}-{outcome.limits_ms[-1]:.3g} ms possible; front dominates "
        f"{100 * dominated:.0f} % of {len(randoms)} random sub-networks "
        f"({accuracy.source} accuracy, latency {where})"
    )
    _limits_table(outcome, where, accuracy.source)

    search_record = _search_record(outcome, chosen, dominated)
    latency_source = {
        "description": latency.description,
        **latency.provenance,
        "setting": latency.setting.to_dict(),
        "measured_on": origin.get("board"),
    }
    accuracy_source = {
        "description": accuracy.description,
        "kind": accuracy.source,
        "predictor": predictor_info,
    }

    if no_weights:
        return _write_search_record(
            args,
            stem,
            origin=origin,
            resolutions=resolutions,
            options=options,
            outcome=outcome,
            parts={
                "latency_source": latency_source,
                "accuracy_source": accuracy_source,
                "search": search_record,
            },
        )
    assert ckpt is not None
    return _make_family(
        args,
        ckpt=ckpt,
        stem=stem,
        net=net,
        target=target,
        simulated=simulated,
        latency=latency,
        accuracy=accuracy,
        origin=origin,
        where=where,
        meter=meter,
        records=records,
        chosen=chosen,
        outcome=outcome,
        options=options,
        randoms=randoms,
        latency_source=latency_source,
        accuracy_source=accuracy_source,
        search_record=search_record,
    )


class _Network(NamedTuple):
    no_weights: bool  # an architecture alone: latency tables and a predictor only
    net: Supernet
    ckpt: Path | None
    labels: Any
    stem: str


def _network(args: argparse.Namespace, simulated: bool) -> _Network:
    """The super-network searched: a checkpoint's, or an architecture alone (no weights)."""
    from dynofa_ros.supernet.checkpoint import load_checkpoint

    no_weights = args.supernet is not None and args.checkpoint is None
    labels: Any = None
    if no_weights:
        from dynofa_ros.supernet.network import build_supernet, preset

        if args.latency != "table" or args.accuracy != "predictor" or args.predictor is None:
            raise SearchError(
                "--supernet without --checkpoint searches latency tables (--profile DIR) with a "
                "predictor (--predictor FILE); measuring latency or accuracy needs --checkpoint"
            )
        if args.profile is None:
            raise SearchError("--supernet without --checkpoint needs --profile (a table directory)")
        if simulated:
            raise SearchError("--platform sim-xavier-nx needs --checkpoint")
        try:
            arch = preset(args.supernet)
        except ValueError as exc:
            raise SearchError(f"--supernet: {exc}") from None
        net: Supernet = build_supernet(arch).eval()  # random weights: only layer shapes used
        ckpt = None
        stem = args.supernet
    else:
        ckpt = Path(args.checkpoint or default_checkpoint())
        ck = load_checkpoint(ckpt)
        net = ck.net.eval()
        labels = ck.labels
        stem = ckpt.name.removesuffix(".safetensors")
        if args.supernet is not None and net.arch.name != args.supernet:
            raise SearchError(
                f"--supernet {args.supernet} but checkpoint {ckpt} is a {net.arch.name}"
            )

    return _Network(no_weights, net, ckpt, labels, stem)


def _resolutions(
    args: argparse.Namespace, net: Supernet, simulated: bool, stem: str
) -> tuple[list[int], Path | None]:
    """The resolutions searched (set on ``net.space``) and the latency tables' directory."""
    import dataclasses

    from dynofa_ros.search.profile import MeasureSetting

    table_root = None
    if not simulated and args.latency == "table":
        threads0 = args.threads or 1
        label0 = MeasureSetting(args.processor, args.backend, threads0, args.frequency_khz).label
        root = args.profile or Path("results") / "profile" / stem
        table_root = _resolve_profile(root, label0)
    if args.resolutions is not None:
        resolutions = sorted(set(args.resolutions))
    elif table_root is not None:
        from dynofa_ros.search.table_dir import table_resolutions

        resolutions = table_resolutions(table_root)
    else:
        resolutions = list(net.space.resolutions)
    if any(not 16 <= r <= 1024 for r in resolutions):
        raise SearchError(f"--resolutions must lie in 16..1024, got {resolutions}")
    net.space = dataclasses.replace(net.space, resolutions=tuple(resolutions))

    return resolutions, table_root


def _latency(
    args: argparse.Namespace,
    net: Supernet,
    simulated: bool,
    table_root: Path | None,
    resolutions: list[int],
) -> tuple[Any, str, dict[str, Any], list[Any], str]:
    """The latency source, the family's target, where latency comes from, the settings each
    member is re-measured on, and the label of the latency in tables."""
    from dynofa_ros.search import build
    from dynofa_ros.search.profile import MeasureSetting, TimingOptions
    from dynofa_ros.search.timing import useful_thread_counts

    records: list[build.RecordSetting] = []
    origin: dict[str, Any] = {"board": "this machine", "measured_by": "measured here"}
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
        origin = {"board": "simulated Xavier NX", "measured_by": "simulator"}
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
            from dynofa_ros.search.table_dir import load_table_dir

            assert table_root is not None
            tdir = load_table_dir(
                table_root, net, resolutions, board=args.board, setting=setting.to_dict()
            )
            origin = tdir.origin
            if not tdir.measured_here:
                setting = MeasureSetting(args.processor, "table", 0, 0)
            latency = build.table_latency(net, tdir.tables, setting, origin)
            latency.provenance["files"] = {str(r): f for r, f in tdir.files.items()}
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
    where = (
        origin["board"] + " table"
        if origin.get("measured_by") == "another board"
        else latency.setting.label
        if not simulated
        else "simulated NX"
    )

    return latency, target, origin, records, where


def _accuracy(  # noqa: PLR0917 - the search's state so far
    args: argparse.Namespace,
    net: Supernet,
    ckpt: Path | None,
    labels: Any,
    no_weights: bool,
    given: tuple[Any, dict[str, Any]],
    target: str,
    stem: str,
) -> tuple[Any, Any, dict[str, Any]]:
    """The accuracy source (measured, or a predictor given or trained here), the meter, and
    what the family records of the predictor."""
    from dynofa_ros.search import build
    from dynofa_ros.search.accuracy import AccuracyMeter

    predictor, predictor_info = given
    progress = not args.quiet
    data = None if no_weights else _accuracy_data(args, net, ckpt, labels)  # type: ignore[arg-type]
    meter = AccuracyMeter(net, data) if data is not None else None
    if args.accuracy == "measured":
        if meter is None:
            raise SearchError(
                f"--accuracy measured needs --data with the {net.arch.num_classes} classes of "
                f"checkpoint {ckpt}"
            )
        accuracy = build.measured_accuracy(meter)
    else:
        from dynofa_ros.search.predictor import save_predictor

        if predictor is None:
            if meter is None:
                raise SearchError(
                    "training a predictor needs validation data of the network's classes "
                    "(--data) or give one with --predictor"
                )
            assert ckpt is not None
            out_json0, _ = build.family_paths(ckpt, target, args.out)
            predictor, report, samples = build.train_predictor(
                net, meter, args.predictor_samples, seed=args.seed, progress=progress
            )
            save_to = args.save_predictor or out_json0.with_name(f"{stem}.predictor.safetensors")
            save_predictor(
                save_to,
                predictor,
                {
                    "report": report,
                    "data": meter.data.source,
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

    return accuracy, meter, predictor_info


def _search_record(outcome: Any, chosen: list[Any], dominated: float) -> dict[str, Any]:
    """What the family file records of the search: limits, front, chosen members."""
    search_record: dict[str, Any] = {
        "evaluated": len(outcome.candidates),
        "limits": [{"limit_ms": lim, "impossible": why} for lim, why in outcome.skipped]
        + [
            {
                "limit_ms": r.limit_ms,
                "best": {
                    "id": r.best.id,
                    "config": r.best.config.to_dict(),
                    "latency_ms": r.best.latency_ms,
                    "accuracy": r.best.accuracy,
                },
            }
            for r in outcome.rollouts
        ],
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
    }
    search_record["limits"].sort(key=lambda x: x["limit_ms"])
    return search_record


def _write_search_record(
    args: argparse.Namespace,
    stem: str,
    *,
    origin: dict[str, Any],
    resolutions: list[int],
    options: Any,
    outcome: Any,
    parts: dict[str, Any],
) -> int:
    import json

    from dynofa_ros.fileio import atomic_write_text
    from dynofa_ros.search import build

    board = str(origin.get("board", "unknown")).replace(" ", "_").replace("/", "_")
    out = args.out or Path("results") / "search" / f"{stem}.{board}.search.json"
    doc = {
        "format": "dynofa-search",
        "version": 1,
        "supernet": stem,
        "resolutions": resolutions,
        "created": build.utc_now(),
        "command": build.command_line(),
        "note": "no checkpoint: accuracy is the predictor's (predicted top-1), latency the "
        f"tables' ({origin.get('board')}); nothing was measured on this machine",
        **parts,
        "evolution": {**options.__dict__, "limits_ms": outcome.limits_ms},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(doc, indent=1) + "\n")
    print(f"search record -> {out}")
    return 0


def _make_family(
    args: argparse.Namespace,
    *,
    ckpt: Path,
    stem: str,
    net: Any,
    target: str,
    simulated: bool,
    latency: Any,
    accuracy: Any,
    origin: dict[str, Any],
    where: str,
    meter: Any,
    records: list[Any],
    chosen: list[Any],
    outcome: Any,
    options: Any,
    randoms: list[Any],
    latency_source: dict[str, Any],
    accuracy_source: dict[str, Any],
    search_record: dict[str, Any],
) -> int:
    from dynofa_ros.search import build
    from dynofa_ros.search.pareto import Candidate
    from dynofa_ros.search.profile import TimingOptions

    out_json, out_bn = build.family_paths(ckpt, target, args.out)
    timing = TimingOptions(warmup=20, repeat=args.repeat, max_seconds=5.0)
    sim_note = (
        "SIMULATED: every latency in this family is the simulated Xavier NX's model "
        "(dynofa_ros.platform.sim, constants in docs/simulator.md); no real NX CPU or GPU was "
        "measured."
        if simulated
        else None
    )
    predictor_info = accuracy_source["predictor"]
    if predictor_info.get("file"):
        predictor_info["file_from_family"] = _relative(Path(predictor_info["file"]), out_json)
    if latency_source.get("path"):
        latency_source["path_from_family"] = _relative(Path(latency_source["path"]), out_json)
    if simulated:
        latency_source["runtime"] = args.sim_runtime
    if meter is not None:
        accuracy_source["calibration_images"] = len(meter.data.calibration)
        accuracy_source["validation_images"] = len(meter.data.validation)
    prov: dict[str, Any] = {
        "created": build.utc_now(),
        "command": build.command_line(),
        "target": target,
        "latency_source": latency_source,
        "accuracy_source": accuracy_source,
        "accuracy_data": meter.data.source
        if meter is not None
        else f"none with the network's {net.arch.num_classes} classes: members' accuracy is "
        "the predictor's (accuracy_source 'predicted'); no BN statistics calibrated",
        "evolution": {**options.__dict__, "limits_ms": outcome.limits_ms},
        "search": search_record,
        "members_latency": "re-measured after the search on this machine: median of timed runs "
        "after warm-up"
        + (
            f"; the search's latency (provenance.search) is {origin.get('board')}'s table, "
            "not this machine's"
            if origin.get("measured_by") == "another board"
            else ""
        )
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

    prov["machine"] = machine_prov(args.processor, records[0].setting.backend)["machine"]
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
        progress=not args.quiet,
        workload_runtime=args.sim_runtime if simulated else None,
    )

    # --- plot
    from dynofa_ros.search.plots import pareto_png

    plot = args.plot or ckpt.parent / "plots" / f"{stem}.{target}.pareto.png"
    here_backend = "simulated" if simulated else records[0].setting.backend
    measured_pts = []
    for m in fam.members:
        ms = m.latency_ms(args.processor, backend=here_backend)
        if ms is not None and origin.get("measured_by") != "another board":
            measured_pts.append(Candidate(m.id, ms, m.accuracy, "family"))
    kind = "simulated " if simulated else ""
    pareto_png(
        plot,
        title=f"{stem} on {kind}{where} — {accuracy.source} accuracy, "
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
        + (f" (+ {out_bn.name})" if fam.bn_statistics else " (no BN statistics)")
        + f"; plot -> {plot}"
    )
    here = "simulated" if simulated else records[0].setting.label + " here"
    acc_col = "meas. acc" if meter is not None else "fam. acc"
    print(
        f"{'id':<12}{'r':>4}{'MMACs':>8}  {'search ms':>10} [{where}]  {'search acc':>10}"
        f"  {acc_col:>9}  {'ms':>8} [{here}]"
    )
    searched = {c.id: c for c in chosen}
    for m in fam.members:
        s = searched[m.id]
        ms = m.latency_ms(args.processor)
        print(
            f"{m.id:<12}{m.config['r']:>4}{m.macs / 1e6:>8.2f}  {s.latency_ms:>10.3f} "
            f"{'':>{len(where) + 2}}  {100 * s.accuracy:>9.2f}%  {100 * m.accuracy:>8.2f}%"
            f"  {(ms if ms is not None else float('nan')):>8.3f}  ({m.accuracy_source})"
        )
    sys.stdout.flush()
    return 0
