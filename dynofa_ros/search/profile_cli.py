"""``dynofa profile``: latency tables and whole-network measurements of a super-network.

For each processor present (CPU; CUDA when PyTorch / ONNX Runtime can use it), each backend
(ONNX Runtime, PyTorch on extracted modules), each useful thread count, and each frequency the
platform layer can pin (none on a machine without cpufreq access: then the governor decides and
the files say frequency 0), it writes::

    OUT/<processor>-<backend>-t<threads>[-f<kHz>]/<r>_lookup_table.yaml   (once-for-all format)
    OUT/<processor>-<backend>-t<threads>[-f<kHz>]/latency_correction.json  (fitted correction)
    OUT/<processor>-<backend>-t<threads>[-f<kHz>]/profile.json             (networks, error)

The correction is fitted on ``--fit-networks`` random sub-networks measured whole; the error of
the table alone and corrected is printed for ``--networks`` other (held-out) ones.

With ``--platform sim-xavier-nx`` nothing is timed: each sub-network's latency is the simulated
Xavier NX's reference latency at every CPU / GPU frequency (``OUT/sim-xavier-nx/profile.json``,
backend ``simulated``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dynofa_ros.search.correction import minimum_networks
from dynofa_ros.search.errors import SearchError

OVERHEAD_NOTE = (
    "per-network constant: the backend's call overhead timed on an identity model; subtracted "
    "from each standalone layer, added once per network"
)
SIMULATED_NOTE = (
    "SIMULATED: latencies are the simulated Xavier NX's noise-free reference latency "
    "(dynofa_ros.platform.sim, constants in docs/simulator.md); no real NX CPU or GPU was measured"
)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dynofa profile",
        description="Measure per-layer latency tables (once-for-all YAML format) and whole "
        "sub-networks on this machine, for each processor / backend / thread count / settable "
        "frequency; report the table's prediction error.",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="super-network checkpoint (default: the embedded default in models/)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: results/profile/<checkpoint stem>)",
    )
    p.add_argument(
        "--platform",
        default="auto",
        help="auto (this machine: jetson or linux) or sim-xavier-nx (simulated latency)",
    )
    p.add_argument(
        "--processors",
        default="auto",
        help="comma list of cpu, cuda; auto: cpu, plus cuda when available",
    )
    p.add_argument(
        "--backends",
        default="onnxruntime,torch-static",
        help="comma list of onnxruntime, torch-static",
    )
    p.add_argument(
        "--threads",
        default="auto",
        help="CPU intra-op thread counts, comma list; auto: 1, 2, 4, ... up to the cores",
    )
    p.add_argument(
        "--frequencies",
        default="all",
        help="when the platform can pin a processor's frequency: all, max, or a comma list of kHz",
    )
    p.add_argument(
        "--networks",
        type=int,
        default=30,
        help="held-out random sub-networks measured whole to check the tables (default 30)",
    )
    p.add_argument(
        "--fit-networks",
        type=int,
        default=30,
        help="other random sub-networks measured whole to fit the tables' correction on "
        f"(default 30; at least {minimum_networks()}, or 0: no correction)",
    )
    p.add_argument(
        "--statistic",
        choices=("min", "median"),
        default="min",
        help="what a layer's and a network's latency is: min (default; the fastest of the "
        "interleaved timed calls, reproducible on a shared machine) or median",
    )
    p.add_argument("--warmup", type=int, default=10, help="untimed runs before timing (10)")
    p.add_argument("--repeat", type=int, default=100, help="timed runs per layer / network (100)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=2.0,
        help="stop timing one layer / network after this many seconds (2)",
    )
    p.add_argument(
        "--runtime",
        default="onnxruntime",
        help="simulated runtime cost model (sim-xavier-nx only): onnxruntime, "
        "torch-static, torch-dynamic",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random sub-networks")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _processors(text: str) -> list[str]:
    import onnxruntime as ort
    import torch

    cuda = torch.cuda.is_available() or "CUDAExecutionProvider" in ort.get_available_providers()
    if text == "auto":
        return ["cpu", "cuda"] if cuda else ["cpu"]
    procs = [v.strip() for v in text.split(",") if v.strip()]
    for proc in procs:
        if proc not in ("cpu", "cuda"):
            raise SearchError(f"--processors: {proc!r} is not cpu or cuda")
        if proc == "cuda" and not cuda:
            raise SearchError(
                "--processors cuda: no CUDA device is usable by PyTorch or ONNX "
                "Runtime on this machine"
            )
    return procs


def _cuda_backend_ok(backend: str) -> bool:
    if backend == "onnxruntime":
        import onnxruntime as ort

        return "CUDAExecutionProvider" in ort.get_available_providers()
    import torch

    return torch.cuda.is_available()


def _frequencies(platform: Any, processor: str, choice: str) -> tuple[str | None, list[int]]:
    """(platform processor name, frequencies to pin) — ``[0]`` when none can be pinned."""
    if platform is None:
        return None, [0]
    kind = "cuda" if processor == "cuda" else "cpu"
    for proc in platform.processors():
        if proc.kind.value == kind and proc.name in platform.capabilities().frequency:
            table = list(proc.frequencies_khz)
            if not table:
                break
            if choice == "all":
                return proc.name, table
            if choice == "max":
                return proc.name, [table[-1]]
            wanted = _int_list(choice)
            return proc.name, [proc.check_frequency(f) for f in wanted]
    return None, [0]


def _errors(err: dict[str, Any] | None) -> str:
    if not err or not err.get("n"):
        return "-"
    return (
        f"signed {100 * err['median_signed']:+.1f} %, |median| {100 * err['median_abs']:.1f} %, "
        f"p90 {100 * err['p90_abs']:.1f} %, max {100 * err['max_abs']:.1f} %"
    )


def _summary(label: str, n_layers: int, report: Any, out: Path) -> str:
    held = [m for m in report.networks if m.role == "held-out"]
    n_fit = len(report.networks) - len(held)
    text = f"{label}: {n_layers} layers"
    if held:
        lat = [m.measured_ms for m in held]
        text += (
            f"; {len(held)} held-out networks {min(lat):.3f}-{max(lat):.3f} ms; table error "
            f"{_errors(report.table_error)}"
        )
        if report.corrected_error is not None:
            text += f"; corrected (fit on {n_fit}) {_errors(report.corrected_error)}"
    elif report.fit_error is not None:
        text += f"; correction fit on {n_fit} networks, fit error {_errors(report.fit_error)}"
    return text + f" -> {out}"


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.networks < 0 or args.fit_networks < 0 or args.repeat < 1 or args.warmup < 0:
        raise SearchError(
            "--networks and --fit-networks must be >= 0, --repeat >= 1, --warmup >= 0"
        )
    if 0 < args.fit_networks < minimum_networks():
        raise SearchError(
            f"--fit-networks {args.fit_networks} is too few to fit the latency correction "
            f"(at least {minimum_networks()}, else it fits noise); pass --fit-networks "
            f"{minimum_networks()} or more, or 0 to write the tables without a correction"
        )
    from dynofa_ros.resources import default_checkpoint
    from dynofa_ros.supernet.checkpoint import load_checkpoint

    ckpt_path = args.checkpoint or default_checkpoint()
    ck = load_checkpoint(ckpt_path)
    net = ck.net.eval()
    stem = Path(ckpt_path).name.removesuffix(".safetensors")
    out = args.out or Path("results") / "profile" / stem
    if args.platform in ("sim-xavier-nx", "sim"):
        return _simulated(args, net, Path(ckpt_path), out)
    from dynofa_ros.platform import make_platform

    platform = make_platform(args.platform)
    return _measured(args, net, Path(ckpt_path), out, platform)


def _measured(args: argparse.Namespace, net: Any, ckpt: Path, out: Path, platform: Any) -> int:
    from dataclasses import replace

    from dynofa_ros.family import sha256_file
    from dynofa_ros.platform.base import Setting
    from dynofa_ros.search.correction import CORRECTION_FILE
    from dynofa_ros.search.profile import (
        MeasureSetting,
        Profiler,
        TimingOptions,
        fit_and_validate,
        split_configs,
        write_profile,
    )
    from dynofa_ros.search.timing import useful_thread_counts

    threads = useful_thread_counts() if args.threads == "auto" else _int_list(args.threads)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in ("onnxruntime", "torch-static"):
            raise SearchError(f"--backends: {b!r} is not onnxruntime or torch-static")
    timing = TimingOptions(args.warmup, args.repeat, args.max_seconds, statistic=args.statistic)
    fit_cfgs, held_out = split_configs(net.space, args.fit_networks, args.networks, args.seed)
    supernet = {"checkpoint": ckpt.name, "sha256": sha256_file(ckpt), "kind": net.arch.name}
    lines = []
    for proc in _processors(args.processors):
        pname, freqs = _frequencies(platform, proc, args.frequencies)
        before = platform.telemetry().processors.get(pname) if pname else None
        try:
            for f in freqs:
                if pname is not None:
                    platform.apply(Setting(frequencies_khz={pname: f}))
                for backend in backends:
                    if proc == "cuda" and not _cuda_backend_ok(backend):
                        lines.append(f"{proc}-{backend}: skipped (no CUDA for this backend)")
                        continue
                    for t in threads if proc == "cpu" else [1]:
                        s = MeasureSetting(proc, backend, t, f)
                        prof = Profiler(net, s, timing, progress=not args.quiet)
                        extra = {"platform": platform.name, "supernet": supernet}
                        tables = prof.build_tables(net.space.resolutions, extra)
                        d = tables.save(out / s.label)
                        report = fit_and_validate(
                            prof,
                            replace(tables, path=d),
                            fit_cfgs,
                            held_out,
                            extra_provenance=extra,
                        )
                        if report.tables.correction is not None:
                            report.tables.correction.save(d)
                        first = next(iter(tables.tables.values()))
                        write_profile(
                            d,
                            {
                                "setting": s.to_dict(),
                                "supernet": supernet,
                                "provenance": first.provenance,
                                "overhead_ms": first.overhead_ms,
                                "overhead_note": OVERHEAD_NOTE,
                                "tables": {str(r): f"{r}_lookup_table.yaml" for r in tables.tables},
                                "correction": CORRECTION_FILE
                                if report.tables.correction is not None
                                else None,
                                "networks": [m.to_dict() for m in report.networks],
                                "table_error": report.table_error,
                                "corrected_error": report.corrected_error,
                                "fit_error": report.fit_error,
                                "error_note": "relative error (predicted - measured) / measured "
                                "on the held-out networks; fit_error on those the correction "
                                "was fitted on",
                            },
                        )
                        n_layers = sum(len(tb.entries) for tb in tables.tables.values())
                        lines.append(_summary(s.label, n_layers, report, d))
                        if not args.quiet:
                            print(lines[-1], flush=True)
        finally:
            if pname is not None and before is not None and before.governor:
                try:
                    platform.apply(Setting(governors={pname: before.governor}))
                except Exception as exc:
                    print(
                        f"dynofa profile: warning: could not restore {pname} governor "
                        f"{before.governor}: {exc}",
                        file=sys.stderr,
                    )
    if args.quiet:
        print("\n".join(lines))
    return 0


def _simulated(args: argparse.Namespace, net: Any, ckpt: Path, out: Path) -> int:
    from dynofa_ros.family import sha256_file
    from dynofa_ros.platform.sim import SimulatedXavierNX
    from dynofa_ros.platform.workload import workload_from_layer_specs
    from dynofa_ros.search.profile import random_configs, write_profile
    from dynofa_ros.search.timing import provenance, useful_thread_counts

    sim = SimulatedXavierNX()
    cfgs = [net.space.smallest(), net.space.largest()]
    cfgs += [
        c
        for c in random_configs(net.space, args.networks, args.seed)
        if c.id not in {x.id for x in cfgs}
    ]
    settings = []
    for proc in sim.processors():
        threads = useful_thread_counts(proc.cores) if proc.kind.value == "cpu" else [0]
        if args.threads != "auto" and proc.kind.value == "cpu":
            threads = _int_list(args.threads)
        for t in threads:
            nets = []
            for c in cfgs:
                w = workload_from_layer_specs(c.id, net.layer_specs(c), runtime=args.runtime)
                table = sim.latency_table(w, proc.name, t or None)
                nets.append(
                    {
                        "id": c.id,
                        "config": c.to_dict(),
                        "workload": w.to_dict(),
                        "latency_ms": {str(f): v for f, v in table.items()},
                    }
                )
            settings.append(
                {
                    "processor": proc.name,
                    "backend": "simulated",
                    "threads": t,
                    "frequencies_khz": list(proc.frequencies_khz),
                    "networks": nets,
                }
            )
            lat = [n["latency_ms"][str(proc.frequencies_khz[-1])] for n in nets]
            print(
                f"sim-xavier-nx {proc.name} t{t}: {len(nets)} networks "
                f"{min(lat):.2f}-{max(lat):.2f} ms at {proc.frequencies_khz[-1]} kHz, "
                f"{len(proc.frequencies_khz)} frequencies"
            )
    d = out / "sim-xavier-nx"
    d.mkdir(parents=True, exist_ok=True)
    p = write_profile(
        d,
        {
            "setting": {"platform": sim.name, "backend": "simulated", "runtime": args.runtime},
            "supernet": {
                "checkpoint": ckpt.name,
                "sha256": sha256_file(ckpt),
                "kind": net.arch.name,
            },
            "provenance": provenance(
                "cpu+cuda",
                "simulated",
                note=SIMULATED_NOTE,
            ),
            "settings": settings,
        },
    )
    print(f"-> {p}")
    return 0
