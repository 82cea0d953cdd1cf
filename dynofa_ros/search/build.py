"""From a super-network checkpoint to a family file: latency and accuracy sources, the search
sweep, family selection, re-measurement, BN statistics and the file itself.

The pieces are small and injected, so ``dynofa search``, the benchmarks and the tests compose
them differently:

* a :class:`LatencySource` gives the latency of configs on the target: the per-layer table of a
  profile, real whole-network measurements, or the simulated Xavier NX;
* an :class:`AccuracySource` gives their accuracy: the predictor, or measured (BN recalibrated);
* :func:`run_search` sweeps latency limits with
  :class:`~dynofa_ros.search.evolution.EvolutionSearch` and keeps the Pareto front of
  everything evaluated;
* :func:`make_family` re-measures the chosen members for real on every recorded setting,
  calibrates and stores their BN statistics, and writes the family (JSON + safetensors).
"""

from __future__ import annotations

import datetime as _dt
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynofa_ros.family import Family, FamilyMember, LatencyRecord, load_family, sha256_file
from dynofa_ros.fileio import atomic_path
from dynofa_ros.search.errors import SearchError
from dynofa_ros.search.evolution import (
    EvolutionOptions,
    EvolutionSearch,
    RolloutResult,
    config_space,
    limit_range,
)
from dynofa_ros.search.lut import TableSet
from dynofa_ros.search.pareto import Candidate, pareto_front
from dynofa_ros.search.profile import (
    MeasureSetting,
    Profiler,
    TimingOptions,
    network_keys,
    simulated_latency_fn,
)

BatchFn = Callable[[Sequence[Any]], list[float]]


# ------------------------------------------------------------------------------ sources
@dataclass
class LatencySource:
    fn: BatchFn
    setting: MeasureSetting
    description: str
    provenance: dict[str, Any] = field(default_factory=dict)

    def __call__(self, cfgs: Sequence[Any]) -> list[float]:
        return list(self.fn(cfgs))


def table_latency(
    net: Any, tables: TableSet, setting: MeasureSetting, origin: Mapping[str, Any] | None = None
) -> LatencySource:
    """Latency from per-layer tables. ``origin`` (``table_dir.origin``): tables measured on
    another board are described and recorded as that board's, never as ``setting``'s."""
    # every table must cover every layer of the space: check once, fail with the missing key
    from dynofa_ros.search.profile import layer_inventory

    for r in net.space.resolutions:
        missing = tables.table(r).missing(layer_inventory(net, r))
        if missing:
            raise SearchError(
                f"latency table for resolution {r} in {tables.path} lacks {len(missing)} layer(s) "
                f"of this super-network, e.g. {missing[0]!r}; profile it again"
            )

    def fn(cfgs: Sequence[Any]) -> list[float]:
        return [tables.predict(c.r, network_keys(net, c)) for c in cfgs]

    prov = dict(next(iter(tables.tables.values())).provenance)
    where = setting.label
    if origin is not None and origin.get("measured_by") != "dynofa profile":
        where = f"measured on {origin.get('board', 'an unknown board')}, not here"
    return LatencySource(
        fn,
        setting,
        f"per-layer latency table {tables.path} ({where}), {tables.description}",
        {
            "kind": "table",
            "path": str(tables.path) if tables.path else None,
            "table": prov,
            **({"origin": dict(origin)} if origin is not None else {}),
            **({"correction": tables.correction.to_dict()} if tables.correction else {}),
        },
    )


def measured_latency(
    net: Any, setting: MeasureSetting, options: TimingOptions | None = None
) -> LatencySource:
    profiler = Profiler(net, setting, options, progress=False)

    def fn(cfgs: Sequence[Any]) -> list[float]:
        return [profiler.measure_network(c).median_ms for c in cfgs]

    return LatencySource(
        fn, setting, f"whole-network measurement ({setting.label})", {"kind": "measured"}
    )


def simulated_latency(
    net: Any,
    platform: Any,
    processor: str,
    *,
    frequency_khz: int | None = None,
    threads: int | None = None,
    runtime: str = "onnxruntime",
) -> LatencySource:
    proc = platform.processor(processor)
    f = frequency_khz or proc.max_frequency_khz or 0
    setting = MeasureSetting(processor, "simulated", threads or 0, f)
    fn = simulated_latency_fn(
        net, platform, processor, frequency_khz=f, threads=threads, runtime=runtime
    )
    return LatencySource(
        fn,
        setting,
        f"simulated {platform.name} {processor} at {f} kHz ({runtime} cost model): "
        "no real hardware measured",
        {"kind": "simulated", "platform": platform.name, "runtime": runtime},
    )


@dataclass
class AccuracySource:
    fn: BatchFn
    description: str
    source: str  # "predicted" | "measured"
    report: dict[str, Any] = field(default_factory=dict)

    def __call__(self, cfgs: Sequence[Any]) -> list[float]:
        return [float(v) for v in self.fn(cfgs)]


def predictor_accuracy(predictor: Any, report: Mapping[str, Any] | None = None) -> AccuracySource:
    return AccuracySource(
        lambda cfgs: list(predictor.predict(list(cfgs))),
        "accuracy predictor (once-for-all MLP over a one-hot architecture encoding)",
        "predicted",
        dict(report or {}),
    )


def measured_accuracy(meter: Any) -> AccuracySource:
    return AccuracySource(
        lambda cfgs: meter.measure_many(list(cfgs), progress=False),
        f"measured top-1 with BN recalibrated per sub-network ({meter.data.source})",
        "measured",
    )


def train_predictor(
    net: Any,
    meter: Any,
    n_samples: int,
    *,
    seed: int = 0,
    epochs: int = 300,
    progress: bool = True,
) -> tuple[Any, dict[str, Any], list[tuple[Any, float]]]:
    """Measure ``n_samples`` sub-networks (largest, smallest and random ones), fit the predictor,
    return it with its report (held-out rank correlation) and the samples."""
    from dynofa_ros.search.predictor import encoder_for_space, fit_predictor
    from dynofa_ros.search.profile import random_configs

    space = net.space
    cfgs = {c.id: c for c in (space.largest(), space.smallest())}
    for c in random_configs(space, n_samples + 10, seed + 1):
        if len(cfgs) >= n_samples:
            break
        cfgs.setdefault(c.id, c)
    configs = list(cfgs.values())
    accs = meter.measure_many(configs, progress=progress, desc="accuracy samples")
    predictor, report = fit_predictor(
        configs, accs, encoder_for_space(space), epochs=epochs, seed=seed
    )
    return predictor, report.to_dict(), list(zip(configs, accs, strict=True))


# ------------------------------------------------------------------------------ search
@dataclass
class SearchOutcome:
    limits_ms: list[float]
    rollouts: list[RolloutResult]
    candidates: list[Candidate]
    front: list[Candidate]
    skipped: list[tuple[float, str]] = field(default_factory=list)  # (limit, why)


LimitCallback = Callable[[int, int, float, "RolloutResult | None", str], None]


def run_search(
    net: Any,
    latency: LatencySource,
    accuracy: AccuracySource,
    options: EvolutionOptions,
    *,
    n_limits: int = 8,
    limits_ms: Sequence[float] | None = None,
    progress: bool = True,
    on_limit: LimitCallback | None = None,
    label: str | None = None,
) -> SearchOutcome:
    """Roll-outs under each latency limit (default: ``n_limits`` spread from the fastest to the
    largest sub-network's latency); the front of every evaluated candidate. An impossible limit
    is reported (``on_limit(i, n, limit, None, why)``) and skipped; only when every limit is
    impossible does the search fail."""
    search = EvolutionSearch(
        config_space(net.space),
        latency,
        accuracy,
        options,
        label=label or latency.setting.label,
        progress=progress,
    )
    if limits_ms is None:
        lo, _ = search.fastest_latency()
        hi = search.evaluator.latencies([net.space.largest()])[0]
        limits = limit_range(lo * 1.02, max(hi, lo * 1.05), n_limits)
    else:
        limits = sorted(float(v) for v in limits_ms)
    rollouts: list[RolloutResult] = []
    skipped: list[tuple[float, str]] = []
    for i, limit in enumerate(limits):
        try:
            result = search.run(limit)
        except SearchError as exc:
            skipped.append((limit, str(exc)))
            if on_limit is not None:
                on_limit(i, len(limits), limit, None, str(exc))
            continue
        rollouts.append(result)
        if on_limit is not None:
            on_limit(i, len(limits), limit, result, "")
    if not rollouts:
        raise SearchError(f"every latency limit is impossible: {skipped[0][1]}")
    candidates = search.evaluator.candidates()
    return SearchOutcome(limits, rollouts, candidates, pareto_front(candidates), skipped)


# ------------------------------------------------------------------------------ family
@dataclass
class RecordSetting:
    """Where a family member's latency is recorded: a real measurement setting, or the
    simulator at every frequency of a processor."""

    setting: MeasureSetting
    simulated: Any = None  # the simulated platform for backend "simulated"
    runtime: str = "onnxruntime"


def measure_records(
    net: Any,
    cfgs: Sequence[Any],
    records: Sequence[RecordSetting],
    options: TimingOptions,
    progress: bool = True,
) -> dict[str, list[LatencyRecord]]:
    """Latency records of each config (id -> records, in the order of ``records``)."""
    from tqdm import tqdm

    from dynofa_ros.search.profile import simulated_latency_table

    out: dict[str, list[LatencyRecord]] = {c.id: [] for c in cfgs}
    for rec in records:
        s = rec.setting
        if s.backend == "simulated":
            for c in cfgs:
                table = simulated_latency_table(
                    net,
                    rec.simulated,
                    c,
                    s.processor,
                    threads=s.threads or None,
                    runtime=rec.runtime,
                )
                for f in sorted(table, reverse=True):  # top frequency first
                    out[c.id].append(
                        LatencyRecord(s.processor, "simulated", s.threads, int(f), table[f])
                    )
            continue
        profiler = Profiler(net, s, options, progress=False)
        for c in tqdm(cfgs, desc=f"re-measure {s.label}", disable=not progress, leave=False):
            t = profiler.measure_network(c)
            out[c.id].append(
                LatencyRecord(
                    s.processor, s.backend, s.threads, s.frequency_khz, t.median_ms, t.p90_ms
                )
            )
    return out


def save_bn_statistics(path: str | Path, net: Any, ids: Sequence[str]) -> None:
    """Safetensors of the members' BN statistics, keys ``<id>/<bn>.running_mean|var`` (the
    layout of the checkpoint's ``bn_stats/`` entries), configs in the metadata."""
    import json

    from safetensors.torch import save_file

    from dynofa_ros.supernet.bnstats import stats_to_tensors

    missing = [i for i in ids if i not in net.bn_stats]
    if missing:
        raise SearchError(f"no BN statistics calibrated for member(s) {missing}")
    tensors = {k: v for k, v in stats_to_tensors(net).items() if k.split("/", 1)[0] in set(ids)}
    meta = {"configs": json.dumps({i: net.bn_stats_configs[i].to_dict() for i in ids})}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_bn_statistics(family: Family, net: Any | None = None) -> dict[str, Any]:
    """The family's BN statistics (``{id: {bn name: (mean, var)}}``), installed into ``net``
    (checked against its layers) when given."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from dynofa_ros.family import FamilyError
    from dynofa_ros.supernet.bnstats import install_all, stats_from_tensors

    if family.bn_statistics is None:
        raise FamilyError(f"family {family.name} stores no BN statistics")
    p = family.resolve(family.bn_statistics)
    try:
        tensors = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise FamilyError(f"cannot read BN statistics {p}: {exc}") from exc
    try:
        configs = {m.id: _member_config(net, m.config) for m in family.members}
        stats = stats_from_tensors(tensors, configs)
        if net is not None:
            install_all(net, stats, configs)
    except ValueError as exc:
        raise FamilyError(f"BN statistics {p}: {exc}") from exc
    return stats


def _member_config(net: Any, raw: Mapping[str, Any]) -> Any:
    """A member's config, of the network's config type (the MobileNetV3's without a network)."""
    if net is not None:
        return net.space.parse(raw)
    from dynofa_ros.supernet.config import SubnetConfig

    return SubnetConfig.from_dict(raw)


def family_paths(checkpoint: Path, target: str, out: Path | None = None) -> tuple[Path, Path]:
    """(family JSON, BN safetensors): ``<stem>.<target>.family.json`` / ``.bn.safetensors``
    beside the checkpoint unless ``out`` names the JSON."""
    stem = checkpoint.name.removesuffix(".safetensors")
    js = out or checkpoint.with_name(f"{stem}.{target}.family.json")
    bn = js.with_name(
        js.name.removesuffix(".family.json").removesuffix(".json") + ".bn.safetensors"
    )
    return js, bn


def make_family(
    *,
    name: str,
    processor: str,
    checkpoint: Path,
    net: Any,
    chosen: Sequence[Candidate],
    meter: Any,
    records: Sequence[RecordSetting],
    timing: TimingOptions,
    out_json: Path,
    out_bn: Path,
    provenance: Mapping[str, Any],
    progress: bool = True,
    workload_runtime: str | None = None,
) -> tuple[Family, dict[str, float]]:
    """Re-measure ``chosen`` (accuracy with BN calibrated and kept, latency on every record
    setting), write the BN statistics and the family; return it with the measured accuracies.
    ``meter`` None (no validation data of the network's classes): each member keeps the
    search's predicted accuracy, marked ``predicted``, and no BN statistics are calibrated.

    ``workload_runtime``: a family for a simulated board stores each member's workload with
    this runtime cost model, so whoever runs the member on the simulator (the engine, the
    manager's closed-loop simulation) costs it exactly as the search did."""
    from dynofa_ros.platform.workload import workload_from_layer_specs

    cfgs = [c.config for c in chosen]
    accs = {}
    if meter is None:  # no validation data of the network's classes: the search's prediction
        accs = {c.config.id: float(c.accuracy) for c in chosen}
    else:
        for c in cfgs:
            accs[c.id] = meter.measure(c, keep_bn=True)
    lat = measure_records(net, cfgs, records, timing, progress)
    with_bn = net.uses_batchnorm and meter is not None
    if with_bn:
        save_bn_statistics(out_bn, net, [c.id for c in cfgs])
    members = []
    for c in cfgs:
        members.append(
            FamilyMember(
                id=c.id,
                config=c.to_dict(),
                accuracy=accs[c.id],
                macs=int(net.macs(c)),
                params=int(net.params(c)),
                latency=tuple(lat[c.id]),
                accuracy_source="measured" if meter is not None else "predicted",
                workload=None
                if workload_runtime is None
                else workload_from_layer_specs(
                    c.id, net.layer_specs(c), runtime=workload_runtime
                ).to_dict(),
            )
        )

    def key(m: FamilyMember) -> float:
        v = m.latency_ms(processor)
        return float("inf") if v is None else v

    members.sort(key=key)
    fam = Family(
        name=name,
        processor=processor,
        supernet={
            "checkpoint": checkpoint.name,
            "sha256": sha256_file(checkpoint),
            "kind": net.arch.name,
        },
        members=tuple(members),
        provenance=dict(provenance),
        bn_statistics=None
        if not with_bn
        else out_bn.name
        if out_bn.parent == out_json.parent
        else str(out_bn),
    )
    fam.save(out_json)
    return load_family(out_json), accs


def command_line() -> str:
    return " ".join(["dynofa", *sys.argv[1:]]) if sys.argv else "dynofa"


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
