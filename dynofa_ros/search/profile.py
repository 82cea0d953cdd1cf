"""Latency profiling of a super-network on this machine (or on the simulated Xavier NX).

Measured settings (:class:`MeasureSetting`): processor (``cpu`` / ``cuda``), backend
(``onnxruntime``: one ONNX Runtime session per layer / network; ``torch-static``: eager PyTorch
on extracted static modules), intra-op threads, and the frequency the processor was pinned at
(0 = not pinned: this machine's governor decides).

For a setting, :class:`Profiler` builds one :class:`~dynofa_ros.search.lut.LatencyTable` per
input resolution: every distinct layer of the search space (once-for-all's layer keys) is built
alone (``LayerSpec.build``), warmed up and timed; the table stores its median minus the call
overhead of the backend (an identity model, timed the same way), and the overhead is added back
once per network. Whole networks (extracted sub-networks) are timed the same way, and
:func:`validate` reports the table's prediction error on random sub-networks.

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
    measure,
    onnx_bytes,
    provenance,
    torch_threads,
)

PROFILE_FORMAT = "dynofa-profile"
PROFILE_VERSION = 1
PROFILE_FILE = "profile.json"


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
    repeat: int = 50
    max_seconds: float = 2.0  # per timed object


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

    def _time(self, module: Any, example: Any) -> Timing:
        s, o = self.setting, self.options
        with torch_threads(s.threads):
            if s.backend == "onnxruntime":
                runner = OrtRunner(
                    onnx_bytes(module, example),
                    tuple(example.shape),
                    threads=s.threads,
                    processor=s.processor,
                )
                return measure(
                    runner.run, warmup=o.warmup, repeat=o.repeat, max_seconds=o.max_seconds
                )
            trunner = TorchRunner(module, example, processor=s.processor)
            return measure(
                trunner.run,
                warmup=o.warmup,
                repeat=o.repeat,
                max_seconds=o.max_seconds,
                sync=trunner.sync,
            )

    def call_overhead(self, shape: tuple[int, ...]) -> Timing:
        """Latency of a call doing no work (identity model) with an input of ``shape``."""
        if shape not in self._overhead:
            s, o = self.setting, self.options
            with torch_threads(s.threads):
                if s.backend == "onnxruntime":
                    runner = OrtRunner(
                        identity_onnx(shape), shape, threads=s.threads, processor=s.processor
                    )
                    t = measure(runner.run, warmup=o.warmup, repeat=max(o.repeat, 100))
                else:
                    import torch

                    trunner = TorchRunner(
                        torch.nn.Identity(), torch.randn(*shape), processor=s.processor
                    )
                    t = measure(
                        trunner.run, warmup=o.warmup, repeat=max(o.repeat, 100), sync=trunner.sync
                    )
            self._overhead[shape] = t
        return self._overhead[shape]

    def time_layer(self, spec: Any) -> Timing:
        return self._time(spec.build(), spec.example_input())

    def measure_network(self, cfg: Any) -> Timing:
        import torch

        module = self.net.extract(cfg)
        example = torch.randn(1, self.net.arch.in_channels, cfg.r, cfg.r)
        return self._time(module, example)

    def build_table(
        self, resolution: int, extra_provenance: Mapping[str, Any] | None = None
    ) -> LatencyTable:
        layers = layer_inventory(self.net, resolution)
        shape = (1, self.net.arch.in_channels, resolution, resolution)
        overhead = self.call_overhead(shape)
        entries: dict[str, LutEntry] = {}
        desc = f"profile {self.setting.label} r={resolution}"
        for key, spec in tqdm(layers.items(), desc=desc, disable=not self.progress, leave=False):
            t = self.time_layer(spec)
            entries[key] = LutEntry(
                mean=max(0.0, t.median_ms - overhead.median_ms), std=t.std_ms, count=t.count
            )
        prov = provenance(
            **self.setting.to_dict(),
            warmup=self.options.warmup,
            repeat=self.options.repeat,
            statistic="median",
            call_overhead_ms=overhead.median_ms,
            **dict(extra_provenance or {}),
        )
        return LatencyTable(resolution, entries, overhead_ms=overhead.median_ms, provenance=prov)

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
    predicted_ms: float | None = None
    macs: int = 0

    @property
    def error(self) -> float | None:
        if self.predicted_ms is None:
            return None
        return (self.predicted_ms - self.measured.median_ms) / self.measured.median_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.config.id,
            "config": self.config.to_dict(),
            "macs": self.macs,
            "measured": self.measured.to_dict(),
            "predicted_ms": self.predicted_ms,
            "relative_error": self.error,
        }


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
    """Measure each whole sub-network and compare with the table's prediction."""
    out = []
    net = profiler.net
    for cfg in tqdm(
        cfgs, desc=f"whole networks {profiler.setting.label}", disable=not progress, leave=False
    ):
        t = profiler.measure_network(cfg)
        pred = tables.predict(cfg.r, network_keys(net, cfg))
        out.append(NetworkMeasurement(cfg, t, pred, net.macs(cfg)))
    return out


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
    return platform.latency_table(w, processor, threads)


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
    return doc
