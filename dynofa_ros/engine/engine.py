"""The inference engine: every family member prepared at start-up, switched by reference swap.

``Engine.load(checkpoint, family, backend=...)`` builds, for each member and each configured
(processor, threads), a ready runner (see :mod:`dynofa_ros.engine.backends`) and runs it once,
so the first frame after any switch costs what every frame costs. The engine's *active binding*
is one immutable object (member, processor, threads, runner, resolution); :meth:`Engine.switch`
looks the new one up in a prepared table and assigns it (one attribute write, atomic in Python),
and every frame reads it exactly once at its start: a frame runs and reports the member that was
active when it started, and a switch takes effect at the next frame boundary, from any thread,
without a lock.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

import numpy as np

from dynofa_ros.engine.backends import (
    BACKENDS,
    PROCESSORS,
    Runner,
    check_choice,
    gpu_available,
)
from dynofa_ros.engine.errors import EngineError
from dynofa_ros.engine.prepared import PreparedFamily, check_matches, find_prepared, read_prepared
from dynofa_ros.engine.preprocess import (
    Frame,
    Preprocessor,
    array_view,
    decode_compressed,
    raw_view,
)
from dynofa_ros.family import Family, load_family, sha256_file
from dynofa_ros.platform.workload import Workload, workload_from_layer_specs

if TYPE_CHECKING:
    from dynofa_ros.supernet.checkpoint import Checkpoint

# a checkpoint file, or one loaded (whose network the engine then owns)
CheckpointSource: TypeAlias = "str | os.PathLike[str] | Checkpoint"

log = logging.getLogger(__name__)

MAX_THREADS = 64
MAX_TOP_K = 1000


@dataclass(frozen=True)
class InferenceResult:
    """One frame's prediction by the member that was active when the frame started.

    ``scores``: softmax probabilities of the ``top_k`` classes, best first; times in ms:
    preprocess (buffer view, resize, normalisation), inference (the runner), postprocess
    (softmax, top-k, labels). ``logits`` are the raw outputs (all classes)."""

    member_id: str
    processor: str
    threads: int
    class_ids: tuple[int, ...]
    labels: tuple[str, ...]
    scores: tuple[float, ...]
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float
    logits: tuple[float, ...] = ()
    resolution: int = 0

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms


@dataclass(frozen=True)
class PrepareReport:
    """What start-up did: runners built, seconds, process RSS before and after."""

    backend: str
    members: int
    runners: int
    seconds: float
    rss_before: int
    rss_after: int

    def __str__(self) -> str:
        mib = 2**20
        return (
            f"engine ({self.backend}): prepared {self.members} members, {self.runners} runners "
            f"in {self.seconds:.1f} s; RSS {self.rss_before / mib:.0f} -> "
            f"{self.rss_after / mib:.0f} MiB (+{(self.rss_after - self.rss_before) / mib:.0f})"
        )


@dataclass(frozen=True)
class _Binding:
    member_id: str
    processor: str
    threads: int
    runner: Runner
    resolution: int

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.member_id, self.processor, self.threads)


def process_rss() -> int:
    """Resident memory of this process in bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)


# ------------------------------------------------------------------------------ validation
def _check_processors(processors: Any) -> tuple[str, ...]:
    if isinstance(processors, str):
        processors = (processors,)
    try:
        procs = tuple(dict.fromkeys(processors))
    except TypeError:
        raise EngineError(
            f"processors must be a list of {', '.join(PROCESSORS)}, got {processors!r}"
        ) from None
    if not procs:
        raise EngineError(f"processors is empty (allowed: {', '.join(PROCESSORS)})")
    for p in procs:
        check_choice(p, "processor", PROCESSORS)
    return procs


def _check_threads_value(t: Any, name: str = "threads") -> int:
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 1 <= t <= MAX_THREADS:
        raise EngineError(f"{name} = {t!r} is outside 1..{MAX_THREADS}")
    return int(t)


def _check_threads(threads: Any) -> tuple[int, ...]:
    if isinstance(threads, (int, np.integer)) and not isinstance(threads, bool):
        threads = (threads,)
    try:
        values = tuple(dict.fromkeys(_check_threads_value(t) for t in threads))
    except TypeError:
        raise EngineError(
            f"threads must be a list of integers in 1..{MAX_THREADS}, got {threads!r}"
        ) from None
    if not values:
        raise EngineError(f"threads is empty (allowed: integers in 1..{MAX_THREADS})")
    return values


def _check_top_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_TOP_K:
        raise EngineError(f"top_k = {k!r} is outside 1..{MAX_TOP_K}")
    return int(k)


# ------------------------------------------------------------------------------ the engine
class Engine:
    """Prepared family members of one super-network on one backend; see the module doc.

    Build with :meth:`load`. ``infer_*`` may run in one thread while :meth:`switch` is called from
    another; ``infer_*`` calls from several threads are also safe (PyTorch backends serialise them).
    """

    def __init__(
        self,
        *,
        backend: str,
        family: Family,
        labels: tuple[str, ...],
        configs: dict[str, Any],
        bindings: dict[tuple[str, str, int], _Binding],
        initial: tuple[str, str, int],
        processors: tuple[str, ...],
        threads: tuple[int, ...],
        preprocessor: Preprocessor,
        workloads: dict[str, Workload],
        top_k: int,
        center_crop: bool,
        report: PrepareReport,
        checkpoint_path: Path | None,
    ) -> None:
        self.backend = backend
        self.family = family
        self._labels = labels
        self._configs = configs
        self._members = tuple(m.id for m in family.members)
        self._bindings = bindings
        self._processors = processors
        self._threads = threads
        self._prep = preprocessor
        self._workloads = workloads
        self._top_k = top_k
        self._center_crop = bool(center_crop)
        self.report = report
        self.checkpoint_path = checkpoint_path
        self._resolutions = {k[0]: b.resolution for k, b in bindings.items()}
        self._active: _Binding | None = bindings[initial]

    # -------------------------------------------------------------------------------- load
    @classmethod
    def load(
        cls,
        checkpoint: CheckpointSource,
        family: str | os.PathLike[str] | Family,
        *,
        backend: str = "onnxruntime",
        processors: Sequence[str] | str = ("cpu",),
        threads: Sequence[int] | int = (1,),
        top_k: int = 5,
        center_crop: bool = False,
        progress: bool = True,
        initial: str | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Engine:
        """Load ``checkpoint`` (path or loaded ``Checkpoint``, whose network the engine then owns)
        and ``family`` (path or :class:`~dynofa_ros.family.Family`), prepare every member for
        ``backend`` on each of ``processors`` ("cuda" is dropped with a warning when this machine
        has no GPU for the backend) and, on the CPU, each intra-op thread count in ``threads``.

        The first active binding: ``initial`` (default: the most accurate member), the first
        processor, the first thread count. ``cancelled`` is asked before each member: true,
        the preparation stops with an :class:`EngineError` (a node's Ctrl-C during start-up)."""
        from tqdm import tqdm

        from dynofa_ros.runtime_versions import require

        backend = check_choice(backend, "backend", tuple(BACKENDS))
        procs = _check_processors(processors)
        thr = _check_threads(threads)
        top_k = _check_top_k(top_k)
        kind = BACKENDS[backend]
        require("numpy", kind.requires)
        fam = family if isinstance(family, Family) else load_family(family)

        src = _Source.of(checkpoint, fam, kind.reads_prepared)
        net, prepared, configs, resolutions = src.net, src.prepared, src.configs, src.resolutions
        in_ch = src.in_channels
        if initial is None:
            best = max(m.accuracy for m in fam.members)
            initial = [m.id for m in fam.members if m.accuracy == best][-1]
        elif initial not in configs:
            raise EngineError(
                f"initial member {initial!r} is not in family {fam.name} "
                f"(one of: {', '.join(configs)})"
            )
        if net is not None:
            install_family_bn(fam, net, configs)

        procs = _available(procs, backend)
        workloads = src.workloads(fam, backend)

        rss_before = process_rss()
        start = time.perf_counter()
        bindings: dict[tuple[str, str, int], _Binding] = {}
        maker = kind(net, prepared, threading.Lock())
        with tqdm(
            total=len(configs) * len(procs),
            desc=f"prepare {backend}",
            unit="member",
            disable=not progress,
            file=sys.stderr,
        ) as bar:
            for mid, cfg in configs.items():
                if cancelled is not None and cancelled():
                    done = len({b.member_id for b in bindings.values()})
                    raise EngineError(f"interrupted while preparing members ({done} ready)")
                maker.member(mid, cfg)
                for p in procs:
                    shared: Runner | None = None  # GPU: one runner for every thread count
                    for t in thr:
                        runner = shared or maker.runner(p, t)
                        if p != "cpu":
                            shared = runner
                        r = resolutions[mid]
                        runner.run(np.zeros((1, in_ch, r, r), np.float32))  # warm up
                        bindings[(mid, p, t)] = _Binding(mid, p, t, runner, r)
                    bar.update(1)
        report = PrepareReport(
            backend,
            len(configs),
            len({id(b.runner) for b in bindings.values()}),
            time.perf_counter() - start,
            rss_before,
            process_rss(),
        )
        if progress:
            print(report, file=sys.stderr)
        log.info("%s", report)
        pre = Preprocessor(in_ch, src.mean, src.std)
        return cls(
            backend=backend,
            family=fam,
            labels=src.labels,
            configs=configs,
            bindings=bindings,
            initial=(initial, procs[0], thr[0]),
            processors=procs,
            threads=thr,
            preprocessor=pre,
            workloads=workloads,
            top_k=top_k,
            center_crop=center_crop,
            report=report,
            checkpoint_path=src.checkpoint_path,
        )

    # ------------------------------------------------------------------------- properties
    @property
    def members(self) -> tuple[str, ...]:
        return self._members

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    @property
    def processors(self) -> tuple[str, ...]:
        return self._processors

    @property
    def threads(self) -> tuple[int, ...]:
        return self._threads

    @property
    def active(self) -> tuple[str, str, int]:
        """(member, processor, threads) the next frame will use."""
        return self._binding().key

    @property
    def top_k(self) -> int:
        return self._top_k

    @top_k.setter
    def top_k(self, k: int) -> None:
        self._top_k = _check_top_k(k)

    @property
    def center_crop(self) -> bool:
        return self._center_crop

    @center_crop.setter
    def center_crop(self, value: bool) -> None:
        self._center_crop = bool(value)

    @property
    def in_channels(self) -> int:
        return self._prep.channels

    @property
    def rss_bytes(self) -> int:
        return process_rss()

    @property
    def closed(self) -> bool:
        return self._active is None

    def _binding(self) -> _Binding:
        b = self._active
        if b is None:
            raise EngineError("engine is closed; load a new one")
        return b

    def _member(self, member_id: Any) -> str:
        if not isinstance(member_id, str) or member_id not in self._configs:
            raise EngineError(
                f"member_id {member_id!r} is not a member of family {self.family.name} "
                f"(one of: {', '.join(self._members)})"
            )
        return member_id

    def config(self, member_id: str) -> Any:
        """The member's config: the super-network's config object, or the family's config
        mapping when the engine runs prepared ONNX files (no torch, no network)."""
        return self._configs[self._member(member_id)]

    def resolution(self, member_id: str) -> int:
        return self._resolutions[self._member(member_id)]

    def accuracy(self, member_id: str) -> float | None:
        """Top-1 accuracy the family records for the member."""
        acc = self.family.member(self._member(member_id)).accuracy
        return None if acc is None or not math.isfinite(acc) else float(acc)

    def workload(self, member_id: str) -> Workload:
        """The member as the simulated board sees it: the family's stored workload, else one
        computed from the network's layer description (runtime = this engine's backend)."""
        return self._workloads[self._member(member_id)]

    # ---------------------------------------------------------------------------- switching
    def switch(self, member_id: str, processor: str = "cpu", threads: int | None = None) -> None:
        """Make (member, processor, threads) active for the next frame; ``threads`` None keeps
        the current count. A table look-up and one reference assignment; on a bad value it
        raises :class:`EngineError` and nothing changes."""
        cur = self._binding()
        t = cur.threads if threads is None else threads
        b = self._bindings.get((member_id, processor, t)) if type(t) is int else None
        if b is None:
            self._member(member_id)
            if not isinstance(processor, str) or processor not in self._processors:
                raise EngineError(
                    f"processor {processor!r} is not prepared (prepared: "
                    f"{', '.join(self._processors)}; 'cuda' needs a GPU and processors=('cpu', "
                    "'cuda') at load)"
                )
            raise EngineError(
                f"threads = {threads!r} is not prepared (prepared: "
                f"{', '.join(str(v) for v in self._threads)})"
            )
        self._active = b

    # ---------------------------------------------------------------------------- inference
    def infer_raw(  # noqa: PLR0917 - the fields of sensor_msgs/Image, in order
        self,
        data: Any,
        width: int,
        height: int,
        encoding: str,
        step: int = 0,
        is_bigendian: bool = False,
        *,
        top_k: int | None = None,
        center_crop: bool | None = None,
    ) -> InferenceResult:
        """A ``sensor_msgs/Image`` buffer (``data``: bytes-like or numpy; ``step`` 0 = packed)."""
        t0 = time.perf_counter_ns()
        b = self._binding()
        frame = raw_view(data, width, height, encoding, step, is_bigendian)
        return self._run(b, frame, t0, top_k, center_crop)

    def infer_compressed(
        self,
        data: Any,
        fmt: str = "jpeg",
        *,
        top_k: int | None = None,
        center_crop: bool | None = None,
    ) -> InferenceResult:
        """A ``sensor_msgs/CompressedImage`` buffer (JPEG / PNG; ``fmt`` as in the message)."""
        t0 = time.perf_counter_ns()
        b = self._binding()
        frame = decode_compressed(data, fmt, self._prep.channels)
        return self._run(b, frame, t0, top_k, center_crop)

    def infer_blank(self) -> InferenceResult:
        """A frame without pixels (a scenario camera with ``source: none``): a network has
        nothing to run, so it is refused with the way out."""
        raise EngineError(
            "a frame without pixels cannot run a network (family "
            f"{self.family.name}); give the scenario's camera a source, or use a builtin: family"
        )

    def infer_array(
        self,
        image: np.ndarray,
        *,
        top_k: int | None = None,
        center_crop: bool | None = None,
    ) -> InferenceResult:
        """An ``H x W`` grey or ``H x W x 3`` RGB ``uint8`` image."""
        t0 = time.perf_counter_ns()
        b = self._binding()
        frame = array_view(image)
        return self._run(b, frame, t0, top_k, center_crop)

    def preprocess(self, frame: Frame, member_id: str | None = None) -> np.ndarray:
        """The network input ``(1, C, r, r)`` of ``frame`` for a member (default: active)."""
        r = self._binding().resolution if member_id is None else self.resolution(member_id)
        return self._prep(frame, r, self._center_crop)

    def _run(
        self,
        b: _Binding,
        frame: Frame,
        t0: int,
        top_k: int | None,
        center_crop: bool | None,
    ) -> InferenceResult:
        k = self._top_k if top_k is None else _check_top_k(top_k)
        crop = self._center_crop if center_crop is None else bool(center_crop)
        x = self._prep(frame, b.resolution, crop)
        t1 = time.perf_counter_ns()
        out = b.runner.run(x)
        t2 = time.perf_counter_ns()
        ids, scores, raw = _top_k(out, k)
        labels = self._labels
        names = tuple(labels[i] for i in ids)
        t3 = time.perf_counter_ns()
        return InferenceResult(
            member_id=b.member_id,
            processor=b.processor,
            threads=b.threads,
            class_ids=ids,
            labels=names,
            scores=scores,
            preprocess_ms=(t1 - t0) * 1e-6,
            inference_ms=(t2 - t1) * 1e-6,
            postprocess_ms=(t3 - t2) * 1e-6,
            logits=raw,
            resolution=b.resolution,
        )

    # ------------------------------------------------------------------------------- close
    def close(self) -> None:
        """Release every prepared runner; later calls raise :class:`EngineError`."""
        self._active = None
        self._bindings = {}

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        member, proc, thr = self.active
        return (
            f"engine {self.backend}: {len(self._members)} members of family {self.family.name}, "
            f"processors {', '.join(self._processors)}, threads "
            f"{', '.join(map(str, self._threads))}; active {member} on {proc} x{thr}"
        )


def family_configs(fam: Family, net: Any) -> dict[str, Any]:
    """Each member's config parsed by the super-network's own config type."""
    configs: dict[str, Any] = {}
    for i, m in enumerate(fam.members):
        try:
            configs[m.id] = net.space.parse(m.config)
        except ValueError as exc:
            raise EngineError(
                f"family {fam.name}: members[{i}] ({m.id}) is not a sub-network of this "
                f"super-network: {exc}"
            ) from exc
    return configs


def install_family_bn(fam: Family, net: Any, configs: dict[str, Any]) -> None:
    """The family's per-member BN statistics into ``net`` (a warning names the members that
    have none and run on the shared statistics)."""
    if fam.bn_statistics is not None:
        from dynofa_ros.search.build import load_bn_statistics

        load_bn_statistics(fam, net)
    no_stats = [
        mid for mid, cfg in configs.items() if net.uses_batchnorm and not net.has_bn_stats(cfg)
    ]
    if no_stats:
        log.warning(
            "family %s: no BN statistics for member(s) %s (neither a family BN file nor the "
            "checkpoint stores them); they use the super-network's shared statistics",
            fam.name,
            ", ".join(no_stats),
        )


def _top_k(out: np.ndarray, k: int) -> tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...]]:
    """Softmax top-``k`` (ids, scores best first, ties in class order) and all logits; plain
    Python for a few classes (a quarter of numpy's per-call cost), numpy for many."""
    raw = tuple(out.reshape(-1).tolist())
    n = len(raw)
    k = min(k, n)
    if n <= 64:
        m = max(raw)
        e = [math.exp(v - m) for v in raw]
        total = math.fsum(e)
        ids = sorted(range(n), key=e.__getitem__, reverse=True)[:k]
        return tuple(ids), tuple(e[i] / total for i in ids), raw
    logits = out.reshape(-1).astype(np.float64)
    z = np.exp(logits - logits.max())
    probs = z / z.sum()
    idx = np.argsort(-probs, kind="stable")[:k]
    return tuple(idx.tolist()), tuple(probs[idx].tolist()), raw


class _Source(NamedTuple):
    """What a family's members are built from: the super-network, or the prepared ONNX files
    beside the family (no torch, no export; see ``engine.prepared``)."""

    net: Any
    prepared: PreparedFamily | None
    configs: dict[str, Any]
    resolutions: dict[str, int]
    labels: tuple[str, ...]
    checkpoint_path: Path | None
    in_channels: int
    mean: Any
    std: Any

    @classmethod
    def of(cls, checkpoint: CheckpointSource, fam: Family, reads_prepared: bool) -> _Source:
        ready_dir = find_prepared(fam) if reads_prepared else None
        if ready_dir is not None and isinstance(checkpoint, (str, os.PathLike)):
            prepared = read_prepared(ready_dir)
            check_matches(prepared, fam, Path(checkpoint))
            return cls(
                None,
                prepared,
                {m.id: prepared.member(m.id).config for m in fam.members},
                {m.id: prepared.member(m.id).resolution for m in fam.members},
                tuple(prepared.labels),
                Path(checkpoint),
                prepared.in_channels,
                prepared.mean,
                prepared.std,
            )
        from dynofa_ros.runtime_versions import import_torch

        import_torch()  # one line when torch is missing or outside the matrix
        from dynofa_ros.supernet.checkpoint import Checkpoint, load_checkpoint

        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
        net = ckpt.net
        _check_same_supernet(fam, ckpt)
        configs = family_configs(fam, net)
        return cls(
            net,
            None,
            configs,
            {mid: int(cfg.r) for mid, cfg in configs.items()},
            tuple(ckpt.labels),
            ckpt.path,
            net.arch.in_channels,
            net.arch.mean,
            net.arch.std,
        )

    def workloads(self, fam: Family, backend: str) -> dict[str, Workload]:
        """Each member's workload: stored in the family (or its prepared files), else counted
        from the network's layers."""
        out = {}
        for m in fam.members:
            stored = m.workload
            if stored is None and self.prepared is not None:
                stored = self.prepared.member(m.id).workload
            if stored is not None:
                try:
                    out[m.id] = Workload.from_dict(stored)
                except ValueError as exc:
                    raise EngineError(f"family {fam.name}: member {m.id}: {exc}") from exc
            else:
                specs = self.net.layer_specs(self.configs[m.id])
                out[m.id] = workload_from_layer_specs(m.id, specs, runtime=backend)
        return out


def _available(procs: tuple[str, ...], backend: str) -> tuple[str, ...]:
    """``procs`` without "cuda" when ``backend`` has no GPU here (with a warning)."""
    ready = []
    for p in procs:
        if p == "cpu" or gpu_available(backend):
            ready.append(p)
        else:
            log.warning("processor 'cuda' requested but %s has no GPU here; skipped", backend)
    if not ready:
        raise EngineError(
            f"processors {list(procs)}: none is available for backend {backend} on this "
            "machine (allowed here: cpu)"
        )
    return tuple(ready)


def _check_same_supernet(fam: Family, ckpt: Any) -> None:
    """A family searched on another checkpoint would run with the wrong BN statistics."""
    want = fam.supernet.get("sha256")
    if not want or ckpt.path is None or not os.path.isfile(ckpt.path):
        return
    have = sha256_file(ckpt.path)
    if have != want:
        raise EngineError(
            f"family {fam.name} was searched on super-network {fam.supernet.get('checkpoint')!r} "
            f"(sha256 {want[:12]}...), but checkpoint {ckpt.path} has sha256 {have[:12]}...; "
            "use the family written for this checkpoint"
        )
