"""Timing on this machine: warm-up, repetitions, medians, for ONNX Runtime and PyTorch, plus the
provenance every result file carries (machine, processor, backend, versions, date)."""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform as _platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import numpy as np

BACKENDS = ("onnxruntime", "torch-static")


@dataclass(frozen=True)
class Timing:
    """Milliseconds over ``count`` timed repetitions (after warm-up). ``min_ms``, the fastest,
    is the uncontended latency a shared machine can still measure reproducibly (see
    :func:`measure_interleaved`)."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    count: int
    min_ms: float = math.nan

    def value(self, statistic: str) -> float:
        """``median`` or ``min`` (ms)."""
        if statistic == "median":
            return self.median_ms
        if statistic == "min":
            return self.min_ms
        raise ValueError(f"timing statistic {statistic!r} is not median or min")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(samples_s: list[float]) -> Timing:
    ms = sorted(s * 1e3 for s in samples_s)
    n = len(ms)
    return Timing(
        median_ms=statistics.median(ms),
        p90_ms=ms[min(n - 1, int(np.ceil(0.9 * n)) - 1)],
        mean_ms=statistics.fmean(ms),
        std_ms=statistics.pstdev(ms) if n > 1 else 0.0,
        count=n,
        min_ms=ms[0],
    )


def measure(
    fn: Callable[[], Any],
    *,
    warmup: int = 10,
    repeat: int = 50,
    max_seconds: float | None = None,
    sync: Callable[[], None] | None = None,
) -> Timing:
    """Call ``fn`` ``warmup`` times, then time ``repeat`` calls (``perf_counter``), stopping
    early after ``max_seconds`` (at least 5 timed calls). ``sync`` runs after each call inside
    the timed region (e.g. ``torch.cuda.synchronize``)."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    samples = []
    start = time.perf_counter()
    for i in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        samples.append(time.perf_counter() - t0)
        if max_seconds is not None and i >= 4 and time.perf_counter() - start > max_seconds:
            break
    return summarise(samples)


def measure_interleaved(
    fns: Sequence[Callable[[], Any]],
    *,
    warmup: int = 10,
    repeat: int = 50,
    per_visit: int = 3,
    max_seconds: float | None = None,
    sync: Callable[[], None] | None = None,
    seed: int = 0,
) -> list[Timing]:
    """Time many objects in interleaved rounds; one :class:`Timing` per ``fn``.

    Each round visits every ``fn`` once, in a shuffled order. A visit is one untimed call (back
    to the steady state a loop of that object runs in) then ``per_visit`` timed calls, of which
    the fastest is the visit's sample; the timing summarises the visits (``repeat`` timed calls
    per object in all, ``count`` = visits).

    Why: on a shared machine a burst of load lasts longer than one object's timing, so timing
    objects one after the other turns a burst into a bias of the objects timed during it (and
    of a fit made on some of them against the others); interleaved, every object sees the same
    share of it. The fastest of a few back-to-back calls drops the calls another process
    preempted; the fastest visit (:attr:`Timing.min_ms`) drops, in addition, the visits that ran
    on caches another process had just filled: measured here under a load of 12 on 2 cores, two
    interleaved pools of the same 20 networks agreed within 1.3 % (median; p90 3.8 %) by it and
    within 4 % (p90 14.5 %) by the median. ``max_seconds`` bounds the timed rounds at that many
    seconds per object on average (after at least 3 rounds)."""
    import random

    if not fns:
        return []
    for fn in fns:
        for _ in range(warmup):
            fn()
    if sync:
        sync()
    per_visit = max(1, int(per_visit))
    rounds = max(1, -(-max(1, repeat) // per_visit))
    samples: list[list[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    rng = random.Random(seed)
    start = time.perf_counter()
    for rnd in range(rounds):
        rng.shuffle(order)
        for i in order:
            fn = fns[i]
            fn()
            if sync:
                sync()
            best = math.inf
            for _ in range(per_visit):
                t0 = time.perf_counter()
                fn()
                if sync:
                    sync()
                best = min(best, time.perf_counter() - t0)
            samples[i].append(best)
        if (
            max_seconds is not None
            and rnd >= 2
            and time.perf_counter() - start > max_seconds * len(fns)
        ):
            break
    return [summarise(s) for s in samples]


# ------------------------------------------------------------------------------ runners
class OrtRunner:
    """One ONNX Runtime session on a processor with a thread count; ``run()`` runs it once on
    a fixed random input."""

    def __init__(
        self,
        onnx_bytes: bytes,
        input_shape: tuple[int, ...],
        *,
        threads: int = 1,
        processor: str = "cpu",
    ) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if processor == "cuda":
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(onnx_bytes, opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal(input_shape).astype(np.float32)

    def run(self) -> Any:
        return self.session.run(None, {self.input_name: self.x})


class TorchRunner:
    """An eager module on a processor; ``run()`` is one forward pass under inference mode."""

    def __init__(self, module: Any, example: Any, *, processor: str = "cpu") -> None:
        import torch

        self.torch = torch
        self.device = torch.device("cuda" if processor == "cuda" else "cpu")
        self.module = module.eval().to(self.device)
        self.x = example.to(self.device)

    def run(self) -> Any:
        with self.torch.inference_mode():
            return self.module(self.x)

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run PyTorch intra-op work on ``threads`` threads inside, restore afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def identity_onnx(shape: tuple[int, ...]) -> bytes:
    """A one-node ONNX model (Identity): what a call costs with no work (the call overhead)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    data: bytes = model.SerializeToString()
    return data


def onnx_bytes(module: Any, example: Any) -> bytes:
    """Export a static module with one input (legacy exporter, opset 17) to ONNX bytes."""
    import io
    import warnings

    import torch

    from dynofa_ros.supernet.export import exporter_options

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (example,),
            buf,  # type: ignore[arg-type]  # a file object works; torch annotates paths only
            input_names=["input"],
            output_names=["output"],
            opset_version=17,
            do_constant_folding=True,
            **exporter_options(),  # dynamo=False where this torch has the switch (>= 2.5)
        )
    return buf.getvalue()


# ------------------------------------------------------------------------------ provenance
@cache
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return _platform.processor() or _platform.machine()


def versions() -> dict[str, str]:
    out = {"python": _platform.python_version()}
    for name in ("torch", "onnxruntime", "numpy", "onnx"):
        try:
            module = __import__(name)
            out[name] = str(module.__version__)
        except ImportError:
            continue
    try:
        from importlib.metadata import version

        out["dynofa_ros"] = version("dynofa_ros")
    except Exception:
        out["dynofa_ros"] = "source"
    return out


def provenance(
    processor: str, backend: str, threads: int = 0, frequency_khz: int = 0, **extra: Any
) -> dict[str, Any]:
    """Where and how a measurement was taken."""
    uname = _platform.uname()
    return {
        "machine": {
            "hostname": uname.node,
            "system": f"{uname.system} {uname.release}",
            "arch": uname.machine,
            "cpu_model": cpu_model(),
            "logical_cpus": os.cpu_count(),
        },
        "processor": processor,
        "backend": backend,
        "threads": threads,
        "frequency_khz": frequency_khz,
        "versions": versions(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def useful_thread_counts(cores: int | None = None) -> list[int]:
    """1, 2, 4, ... up to the number of cores (the core count itself included)."""
    n = max(1, cores or len(os.sched_getaffinity(0)))
    counts, t = [], 1
    while t < n:
        counts.append(t)
        t *= 2
    counts.append(n)
    return counts
