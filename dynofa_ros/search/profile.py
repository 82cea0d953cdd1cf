"""Latency profiling of a super-network on this machine (or on the simulated Xavier NX).

Measured settings (:class:`MeasureSetting`): processor (``cpu`` / ``cuda``), backend
(``onnxruntime``: one ONNX Runtime session per layer / network; ``torch-static``: eager PyTorch
on extracted static modules), intra-op threads, and the frequency the processor was pinned at
(0 = not pinned: this machine's governor decides).

For a setting, :class:`Profiler` builds one :class:`~dynofa_ros.search.lut.LatencyTable` per
input resolution: every distinct layer of the search space (once-for-all's layer keys) is built
alone (``LayerSpec.build``), warmed up and timed; the table stores its median minus the call
overhead of the backend (an identity model, timed the same way), and the overhead is added back
once per network. Whole networks (extracted sub-networks) are timed the same way.

Every timing is :func:`~dynofa_ros.search.timing.measure_interleaved`: all the layers of a
resolution (with the identity model) in one interleaved pool, all the whole networks of a
profile in another, so a burst of load on this shared machine spreads over all of them instead
of biasing a few. :func:`fit_and_validate` fits the table's correction
(:mod:`dynofa_ros.search.correction`) on some of the whole networks and reports the error of the
table alone and corrected on the others (held out).

On the simulated NX the "measurement" is the simulator's noise-free reference latency of the
sub-network's :class:`~dynofa_ros.platform.workload.Workload` at each CPU / GPU frequency
(backend ``simulated``); no real hardware is involved.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dynofa_ros.fileio import atomic_write_text
from dynofa_ros.search.errors import SearchError
from dynofa_ros.search.lut import LatencyTable, LutEntry, TableSet, setting_label
from dynofa_ros.search.timing import (
    OrtRunner,
    Timing,
    TorchRunner,
    identity_onnx,
    measure_interleaved,
    onnx_bytes,
    provenance,
    torch_threads,
)

PROFILE_FORMAT = "dynofa-profile"
PROFILE_VERSION = 1
PROFILE_FILE = "profile.json"
STATISTICS = {
    "min": "fastest timed call over interleaved visits (uncontended latency)",
    "median": "median over interleaved visits of the fastest of per_visit calls",
}


@dataclass(frozen=True)
class MeasureSetting:
    processor: str = "cpu"
    backend: str = "onnxruntime"  # "onnxruntime" | "torch-static" | "simulated"
    threads: int = 1
    frequency_khz: int = 0

    @property
    def label(self) -> str:
        return setting_label(self.processor, self.backend, self.threads, self.frequency_khz)

    def to_dict(self) -> dict[str, Any]:
        return {
            "processor": self.processor,
            "backend": self.backend,
            "threads": self.threads,
            "frequency_khz": self.frequency_khz,
        }


@dataclass(frozen=True)
class TimingOptions:
    warmup: int = 10
    repeat: int = 50  # timed calls per object
    max_seconds: float = 2.0  # per timed object
    per_visit: int = 3  # back-to-back timed calls per visit; the fastest is the visit's sample
    # what a table entry and a measured network are: "min" (the fastest timed call: the
    # uncontended latency, reproducible on a shared machine) or "median" (of the visits)
    statistic: str = "min"


# ------------------------------------------------------------------------------ layer inventory
def network_keys(net: Any, cfg: Any) -> list[str]:
    """The lookup-table keys of sub-network ``cfg``, in order."""
    return [s.key for s in net.layer_specs(cfg)]


def layer_inventory(net: Any, resolution: int) -> dict[str, Any]:
    """Every distinct layer (key -> layer spec) any sub-network at ``resolution`` can use; each
    super-network family lists its own (``net.layer_inventory``)."""
    return dict(net.layer_inventory(resolution))


# ------------------------------------------------------------------------------ the profiler
class Profiler:
    """Times layers and whole sub-networks of ``net`` in one :class:`MeasureSetting`."""

    def __init__(
        self,
        net: Any,
        setting: MeasureSetting,
        options: TimingOptions | None = None,
        *,
        progress: bool = True,
    ) -> None:
        if setting.backend not in ("onnxruntime", "torch-static"):
            raise SearchError(
                f"backend {setting.backend!r} cannot be measured here (onnxruntime, torch-static)"
            )
        self.net = net
        self.setting = setting
        self.options = options or TimingOptions()
        self.progress = progress
        self._overhead: dict[tuple[int, ...], Timing] = {}

    def latency_ms(self, t: Timing) -> float:
        """The latency (ms) a timing stands for under this profiler's statistic."""
        return t.value(self.options.statistic)

    def _runner(self, module: Any, example: Any) -> tuple[Callable[[], Any], Any]:
        """(run once, sync or None) of ``module`` on ``example`` in this setting."""
        s = self.setting
        if s.backend == "onnxruntime":
            runner = OrtRunner(
                onnx_bytes(module, example),
                tuple(example.shape),
                threads=s.threads,
                processor=s.processor,
            )
            return runner.run, None
        trunner = TorchRunner(module, example, processor=s.processor)
        return trunner.run, trunner.sync

    def _identity(self, shape: tuple[int, ...]) -> tuple[Callable[[], Any], Any]:
        s = self.setting
        if s.backend == "onnxruntime":
            runner = OrtRunner(
                identity_onnx(shape), shape, threads=s.threads, processor=s.processor
            )
            return runner.run, None
        import torch

        trunner = TorchRunner(torch.nn.Identity(), torch.randn(*shape), processor=s.processor)
        return trunner.run, trunner.sync

    def _measure(self, runners: Sequence[tuple[Callable[[], Any], Any]]) -> list[Timing]:
        o = self.options
        syncs = [sy for _, sy in runners if sy is not None]
        with torch_threads(self.setting.threads):
            return measure_interleaved(
                [fn for fn, _ in runners],
                warmup=o.warmup,
                repeat=o.repeat,
                per_visit=o.per_visit,
                max_seconds=o.max_seconds,
                sync=syncs[0] if syncs else None,
            )

    def _time(self, module: Any, example: Any) -> Timing:
        with torch_threads(self.setting.threads):
            runner = self._runner(module, example)
        return self._measure([runner])[0]

    def call_overhead(self, shape: tuple[int, ...]) -> Timing:
        """Latency of a call doing no work (identity model) with an input of ``shape``."""
        if shape not in self._overhead:
            with torch_threads(self.setting.threads):
                runner = self._identity(shape)
            self._overhead[shape] = self._measure([runner])[0]
        return self._overhead[shape]

    def time_layer(self, spec: Any) -> Timing:
        return self._time(spec.build(), spec.example_input())

    def _network_runner(self, cfg: Any) -> tuple[Callable[[], Any], Any]:
        import torch

        module = self.net.extract(cfg)
        example = torch.randn(1, self.net.arch.in_channels, cfg.r, cfg.r)
        with torch_threads(self.setting.threads):
            return self._runner(module, example)

    def measure_network(self, cfg: Any) -> Timing:
        return self._measure([self._network_runner(cfg)])[0]

    def measure_networks(self, cfgs: Sequence[Any]) -> list[Timing]:
        """Whole sub-networks ``cfgs``, timed interleaved (all built first)."""
        runners = [
            self._network_runner(c)
            for c in tqdm(
                cfgs,
                desc=f"build networks {self.setting.label}",
                disable=not self.progress,
                leave=False,
            )
        ]
        return self._measure(runners)

    def build_table(
        self, resolution: int, extra_provenance: Mapping[str, Any] | None = None
    ) -> LatencyTable:
        layers = layer_inventory(self.net, resolution)
        shape = (1, self.net.arch.in_channels, resolution, resolution)
        desc = f"build layers {self.setting.label} r={resolution}"
        with torch_threads(self.setting.threads):
            runners = [self._identity(shape)] + [
                self._runner(spec.build(), spec.example_input())
                for spec in tqdm(layers.values(), desc=desc, disable=not self.progress, leave=False)
            ]
        overhead, *timings = self._measure(runners)
        self._overhead[shape] = overhead
        ov = self.latency_ms(overhead)
        entries = {
            key: LutEntry(mean=max(0.0, self.latency_ms(t) - ov), std=t.std_ms, count=t.count)
            for key, t in zip(layers, timings, strict=True)
        }
        prov = provenance(
            **self.setting.to_dict(),
            warmup=self.options.warmup,
            repeat=self.options.repeat,
            per_visit=self.options.per_visit,
            statistic=STATISTICS[self.options.statistic],
            call_overhead_ms=ov,
            **dict(extra_provenance or {}),
        )
        return LatencyTable(resolution, entries, overhead_ms=ov, provenance=prov)

    def build_tables(
        self, resolutions: Iterable[int], extra_provenance: Mapping[str, Any] | None = None
    ) -> TableSet:
        s = self.setting
        tables = {int(r): self.build_table(int(r), extra_provenance) for r in resolutions}
        return TableSet(tables, s.processor, s.backend, s.threads, s.frequency_khz)


# ------------------------------------------------------------------------------ validation
@dataclass
class NetworkMeasurement:
    config: Any
    measured: Timing
    predicted_ms: float | None = None  # what the tables predict (corrected when they have one)
    macs: int = 0
    table_ms: float | None = None  # the table's own sum, without the correction
    role: str = "held-out"  # "fit" (the correction was fitted on it) or "held-out"
    statistic: str = "median"  # which of the timing's statistics is the measured latency

    @property
    def measured_ms(self) -> float:
        return self.measured.value(self.statistic)

    @property
    def error(self) -> float | None:
        return _relative(self.predicted_ms, self.measured_ms)

    @property
    def table_error(self) -> float | None:
        return _relative(self.table_ms, self.measured_ms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.config.id,
            "config": self.config.to_dict(),
            "role": self.role,
            "macs": self.macs,
            "measured": self.measured.to_dict(),
            "measured_ms": self.measured_ms,
            "statistic": self.statistic,
            "table_ms": self.table_ms,
            "predicted_ms": self.predicted_ms,
            "table_relative_error": self.table_error,
            "relative_error": self.error,
        }


def _relative(predicted: float | None, measured: float) -> float | None:
    return None if predicted is None else (predicted - measured) / measured


def error_summary(errors: Sequence[float]) -> dict[str, float]:
    """Median / 90th-percentile / max of |relative error| and the median signed error."""
    if not errors:
        return {"n": 0}
    absolute = sorted(abs(e) for e in errors)
    n = len(absolute)
    return {
        "n": n,
        "median_abs": statistics.median(absolute),
        "p90_abs": absolute[min(n - 1, math.ceil(0.9 * n) - 1)],
        "max_abs": absolute[-1],
        "median_signed": statistics.median(errors),
    }


def random_configs(space: Any, n: int, seed: int) -> list[Any]:
    """``n`` distinct random sub-networks (deterministic for ``seed``)."""
    rng = random.Random(seed)
    out: dict[str, Any] = {}
    tries = 0
    while len(out) < n and tries < 100 * n:
        cfg = space.sample(rng)
        out.setdefault(cfg.id, cfg)
        tries += 1
    return list(out.values())


def validate(
    profiler: Profiler, tables: TableSet, cfgs: Sequence[Any], *, progress: bool = True
) -> list[NetworkMeasurement]:
    """Measure each whole sub-network (interleaved) and compare with the tables' prediction."""
    del progress  # the profiler's own setting decides
    net = profiler.net
    timings = profiler.measure_networks(cfgs)
    return [
        NetworkMeasurement(
            cfg,
            t,
            tables.predict(cfg.r, network_keys(net, cfg)),
            net.macs(cfg),
            tables.predict_table(cfg.r, network_keys(net, cfg)),
            statistic=profiler.options.statistic,
        )
        for cfg, t in zip(cfgs, timings, strict=True)
    ]


@dataclass
class FitReport:
    """A profile's correction and its errors: the table alone and corrected, on held-out
    networks (the fit networks' own error is reported too, as a check of the fit)."""

    tables: TableSet  # with the correction (None when nothing was fitted)
    networks: list[NetworkMeasurement]

    def _errors(self, role: str, corrected: bool) -> dict[str, float]:
        errors = [m.error if corrected else m.table_error for m in self.networks if m.role == role]
        return error_summary([e for e in errors if e is not None])

    @property
    def table_error(self) -> dict[str, float]:
        return self._errors("held-out", corrected=False)

    @property
    def corrected_error(self) -> dict[str, float] | None:
        return None if self.tables.correction is None else self._errors("held-out", True)

    @property
    def fit_error(self) -> dict[str, float] | None:
        return None if self.tables.correction is None else self._errors("fit", True)


def split_configs(
    space: Any, n_fit: int, n_held_out: int, seed: int
) -> tuple[list[Any], list[Any]]:
    """(fit, held-out): distinct random sub-networks, disjoint (deterministic for ``seed``)."""
    cfgs = random_configs(space, n_fit + n_held_out, seed)
    return cfgs[n_held_out:], cfgs[:n_held_out]


def fit_and_validate(
    profiler: Profiler,
    tables: TableSet,
    fit_cfgs: Sequence[Any],
    held_out: Sequence[Any],
    *,
    extra_provenance: Mapping[str, Any] | None = None,
) -> FitReport:
    """Time ``fit_cfgs`` and ``held_out`` whole, interleaved in one pool; fit the correction on
    the first (when there are any) and predict the second with and without it.

    ``tables`` must have been saved (its :attr:`~TableSet.path`): the correction records the
    hashes of the files it was fitted on. Too few fit networks raise the correction's one-line
    :class:`~dynofa_ros.search.errors.LatencyTableError` before anything is timed."""
    from dataclasses import replace

    from dynofa_ros.search.correction import DEFAULT_FEATURES, fit_correction, minimum_networks

    if fit_cfgs and len(fit_cfgs) < minimum_networks(len(DEFAULT_FEATURES)):
        fit_correction([])  # raises the refusal, naming the minimum
    net = profiler.net
    cfgs = list(fit_cfgs) + list(held_out)
    timings = profiler.measure_networks(cfgs)
    measured = dict(zip((c.id for c in cfgs), timings, strict=True))
    tables = replace(tables, correction=None)
    if fit_cfgs:
        s = profiler.setting
        correction = fit_correction(
            [
                (tables.table(c.r), network_keys(net, c), profiler.latency_ms(measured[c.id]))
                for c in fit_cfgs
            ],
            tables_sha256={str(r): h for r, h in tables.table_hashes().items()},
            provenance={
                **provenance(**s.to_dict()),
                "networks": [c.id for c in fit_cfgs],
                "fit_on": "whole networks timed interleaved with the held-out ones: "
                + STATISTICS[profiler.options.statistic],
                **dict(extra_provenance or {}),
            },
        )
        tables = replace(tables, correction=correction)
    out = []
    for role, group in (("fit", fit_cfgs), ("held-out", held_out)):
        for c in group:
            keys = network_keys(net, c)
            out.append(
                NetworkMeasurement(
                    c,
                    measured[c.id],
                    tables.predict(c.r, keys),
                    net.macs(c),
                    tables.predict_table(c.r, keys),
                    role,
                    profiler.options.statistic,
                )
            )
    report = FitReport(tables, out)
    if tables.correction is not None:
        prov = dict(tables.correction.provenance)
        prov["fit_error"] = report.fit_error
        prov["held_out_error"] = report.corrected_error
        prov["held_out_networks"] = [c.id for c in held_out]
        prov["held_out_table_error"] = report.table_error
        report.tables = replace(tables, correction=replace(tables.correction, provenance=prov))
    return report


# ------------------------------------------------------------------------------ simulated NX
def simulated_latency_fn(
    net: Any,
    platform: Any,
    processor: str,
    *,
    frequency_khz: int | None = None,
    threads: int | None = None,
    runtime: str = "onnxruntime",
) -> Callable[[Sequence[Any]], list[float]]:
    """Batched latency function of configs on the simulated board (reference latency of each
    sub-network's workload at ``frequency_khz``, default: the processor's top frequency)."""
    from dynofa_ros.platform.workload import workload_from_layer_specs

    def fn(cfgs: Sequence[Any]) -> list[float]:
        return [
            platform.reference_latency_ms(
                workload_from_layer_specs(c.id, net.layer_specs(c), runtime=runtime),
                processor,
                frequency_khz,
                threads,
            )
            for c in cfgs
        ]

    return fn


def simulated_latency_table(
    net: Any,
    platform: Any,
    cfg: Any,
    processor: str,
    *,
    threads: int | None = None,
    runtime: str = "onnxruntime",
) -> dict[int, float]:
    """``{frequency_khz: ms}`` of one sub-network on the simulated board."""
    from dynofa_ros.platform.workload import workload_from_layer_specs

    w = workload_from_layer_specs(cfg.id, net.layer_specs(cfg), runtime=runtime)
    table: dict[int, float] = platform.latency_table(w, processor, threads)
    return table


# ------------------------------------------------------------------------------ result files
def write_profile(directory: str | os.PathLike[str], doc: Mapping[str, Any]) -> Path:
    """Write ``profile.json`` (atomically) into a setting's directory."""
    p = Path(directory) / PROFILE_FILE
    body = {"format": PROFILE_FORMAT, "version": PROFILE_VERSION, **dict(doc)}
    atomic_write_text(p, json.dumps(body, indent=2) + "\n")
    return p


def read_profile(directory: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(directory) / PROFILE_FILE
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SearchError(f"cannot read profile {p}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise SearchError(f"profile {p} is not valid JSON ({exc})") from exc
    if doc.get("format") != PROFILE_FORMAT or doc.get("version") != PROFILE_VERSION:
        raise SearchError(
            f"{p}: format {doc.get('format')!r} version {doc.get('version')!r} is not "
            f"{PROFILE_FORMAT!r} version {PROFILE_VERSION}"
        )
    out: dict[str, Any] = doc
    return out
