"""``dynofa bench family``: reload family files and re-measure each member's latency.

For every latency record of every member, the member is measured again the same way (same
processor, backend and thread count; simulated records are recomputed from the simulator) and the
ratio re-measured / stored is printed, with a summary per family. On the machine that profiled a
family, the ratios should be within 20 % of 1 (this VM's run-to-run timing noise is about ±30 %
under load: run it on a quiet machine). Records of another machine or of a pinned frequency that
cannot be set here are skipped and counted.

For a family searched on this machine's latency tables, each member is also shown against its
latency limit: the smallest of the search's limits its searched (predicted) latency met, with the
prediction and what it measures now on the search's own setting.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from dynofa_ros.resources import models_dir


def default_families() -> list[Path]:
    return sorted(models_dir().glob("*.family.json"))


def remeasure(
    family_path: Path,
    *,
    repeat: int = 100,
    warmup: int = 20,
    backends: set[str] | None = None,
    threads: set[int] | None = None,
    quiet: bool = False,
) -> list[dict[str, Any]]:
    """One row per (member, record): stored and re-measured median latency and their ratio."""
    from dynofa_ros.family import load_family, sha256_file
    from dynofa_ros.search.build import load_bn_statistics
    from dynofa_ros.search.profile import (
        MeasureSetting,
        Profiler,
        TimingOptions,
        simulated_latency_table,
    )
    from dynofa_ros.supernet.checkpoint import load_checkpoint

    fam = load_family(family_path)
    ckpt = fam.resolve(fam.supernet["checkpoint"])
    if sha256_file(ckpt) != fam.supernet.get("sha256"):
        print(f"warning: {ckpt} differs from the checkpoint {fam.name} was searched on")
    net = load_checkpoint(ckpt).net.eval()
    if fam.bn_statistics:
        load_bn_statistics(fam, net)
    timing = TimingOptions(warmup=warmup, repeat=repeat, max_seconds=10.0)
    runtime = (fam.provenance.get("latency_source") or {}).get("runtime", "torch-dynamic")
    sim = None
    rows = []
    profilers: dict[tuple, Any] = {}
    sim_tables: dict[tuple, dict[int, float]] = {}
    for m in fam.members:
        cfg = net.space.parse(m.config)
        for rec in m.latency:
            row: dict[str, Any] = {
                "family": fam.name,
                "id": m.id,
                "record": rec,
                "stored_ms": rec.median_ms,
            }
            if rec.backend == "simulated":
                if sim is None:
                    from dynofa_ros.platform import make_platform

                    sim = make_platform("sim-xavier-nx")
                k = (m.id, rec.processor, rec.threads)
                if k not in sim_tables:
                    sim_tables[k] = simulated_latency_table(
                        net, sim, cfg, rec.processor, threads=rec.threads or None, runtime=runtime
                    )
                row["measured_ms"] = sim_tables[k].get(rec.frequency_khz)
            elif rec.frequency_khz:
                row["skipped"] = "pinned frequency (not set by this benchmark)"
            elif (backends and rec.backend not in backends) or (
                threads and rec.threads not in threads
            ):
                continue
            else:
                s = MeasureSetting(rec.processor, rec.backend, rec.threads, 0)
                key = (rec.processor, rec.backend, rec.threads)
                if key not in profilers:
                    profilers[key] = Profiler(net, s, timing, progress=False)
                try:
                    row["measured_ms"] = profilers[key].measure_network(cfg).median_ms
                except Exception as exc:
                    row["skipped"] = f"cannot measure here ({exc})"
            if row.get("measured_ms") is not None:
                row["ratio"] = row["measured_ms"] / row["stored_ms"]
            rows.append(row)
            if not quiet and "ratio" in row and rec.backend != "simulated":
                print(
                    f"  {m.id} {rec.processor}-{rec.backend}-t{rec.threads}: stored "
                    f"{rec.median_ms:.3f} ms, now {row['measured_ms']:.3f} ms, ratio "
                    f"{row['ratio']:.3f}",
                    flush=True,
                )
    return rows


def summarise(rows: list[dict[str, Any]], tolerance: float = 0.2) -> str:
    ratios = [r["ratio"] for r in rows if "ratio" in r]
    skipped = sum(1 for r in rows if "skipped" in r)
    if not ratios:
        return f"no record re-measured ({skipped} skipped)"
    within = sum(abs(x - 1) <= tolerance for x in ratios)
    return (
        f"{len(ratios)} records: ratio median {statistics.median(ratios):.3f}, min "
        f"{min(ratios):.3f}, max {max(ratios):.3f}; {within}/{len(ratios)} within "
        f"±{100 * tolerance:.0f} %" + (f"; {skipped} skipped" if skipped else "")
    )


def limits(family_path: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per member re-measured on the search's setting: its limit (the smallest search limit its
    searched latency met; None above every limit), the searched latency and the measured one."""
    from dynofa_ros.family import load_family

    fam = load_family(family_path)
    prov = fam.provenance
    setting = (prov.get("latency_source") or {}).get("setting") or {}
    searched = (prov.get("search") or {}).get("members") or {}
    lims = sorted(float(v) for v in (prov.get("evolution") or {}).get("limits_ms") or [])
    out = []
    for row in rows:
        rec = row["record"]
        if (
            "measured_ms" not in row
            or row["id"] not in searched
            or rec.backend == "simulated"
            or (rec.processor, rec.backend, rec.threads)
            != (setting.get("processor"), setting.get("backend"), setting.get("threads"))
        ):
            continue
        predicted = float(searched[row["id"]]["latency_ms"])
        limit = next((v for v in lims if predicted <= v), None)
        out.append(
            {
                "id": row["id"],
                "limit_ms": limit,
                "predicted_ms": predicted,
                "measured_ms": row["measured_ms"],
                "within": None if limit is None else row["measured_ms"] <= limit,
            }
        )
    return out


def _print_limits(view: list[dict[str, Any]]) -> None:
    for v in view:
        lim = "above every limit" if v["limit_ms"] is None else f"limit {v['limit_ms']:.3f} ms"
        verdict = (
            ""
            if v["within"] is None
            else f" ({100 * (v['measured_ms'] / v['limit_ms'] - 1):+.1f} % of the limit, "
            + ("within)" if v["within"] else "OVER)")
        )
        print(
            f"  {v['id']}: {lim}, predicted {v['predicted_ms']:.3f} ms, measured "
            f"{v['measured_ms']:.3f} ms ({100 * (v['predicted_ms'] / v['measured_ms'] - 1):+.1f} "
            f"% predicted vs measured){verdict}"
        )
    judged = [v for v in view if v["within"] is not None]
    if judged:
        ok = sum(bool(v["within"]) for v in judged)
        print(f"  limits: {ok}/{len(judged)} members measured within their search limit")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="dynofa bench family", description=__doc__.split("\n\n")[0].split(": ", 1)[1]
    )
    p.add_argument(
        "families", nargs="*", type=Path, help="family files (default: every models/*.family.json)"
    )
    p.add_argument("--repeat", type=int, default=100)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--backends", default=None, help="only these backends (comma list)")
    p.add_argument("--threads", default=None, help="only these thread counts (comma list)")
    p.add_argument("--tolerance", type=float, default=0.2)
    args = p.parse_args(argv)
    backends = set(args.backends.split(",")) if args.backends else None
    threads = {int(t) for t in args.threads.split(",")} if args.threads else None
    families = args.families or default_families()
    if not families:
        print("no family files found")
        return 1
    for path in families:
        print(f"{path}:")
        rows = remeasure(
            path, repeat=args.repeat, warmup=args.warmup, backends=backends, threads=threads
        )
        measured = [r for r in rows if r["record"].backend != "simulated"]
        simulated = [r for r in rows if r["record"].backend == "simulated"]
        if measured:
            print(f"  measured:  {summarise(measured, args.tolerance)}")
            _print_limits(limits(path, measured))
        if simulated:
            print(f"  simulated: {summarise(simulated, args.tolerance)} (recomputed, not timed)")
    return 0
