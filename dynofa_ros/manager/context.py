"""Everything a policy needs that does not change while it runs, prepared once.

For each model and each processor it may use, :class:`Options` holds the candidate
(member, threads) pairs with their accuracy and their nominal latency at every usable frequency
of that processor, as numpy arrays, so that a decision is a handful of vector operations.

A GPU inference has two parts that overlap: the host thread on the CPU that launches the kernels
and the device work. The family records GPU latency at one CPU frequency ``f_ref``; the manager
splits each member's records ``r(f_gpu)`` into a host part ``H`` (scaling with ``f_ref / f_cpu``)
and a device part ``D(f_gpu) = (r^p - H^p)^(1/p)``, and predicts
``(D(f_gpu)^p + (H f_ref / f_cpu)^p)^(1/p)`` (a smooth maximum, ``p = gpu_overlap_p``; a record
is reproduced exactly at ``f_ref``). ``H`` is fitted from the GPU frequency sweep: the value
for which ``D`` is best explained by ``c / f_gpu + m`` (compute + memory); with fewer than three
recorded frequencies, or when ``gpu_host_fraction`` is set, ``H = gpu_host_fraction * min r``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from dynofa_ros.manager.config import ManagerConfig
from dynofa_ros.manager.model import Board, LatencyTable, PowerModel
from dynofa_ros.manager.types import ManagerConfigError, ModelSpec
from dynofa_ros.platform.base import Processor, ProcessorKind

# relative RMS error of the records a host / device split may leave (their measurement noise)
FIT_TOLERANCE = 0.005


# what predict.pair_row looks up once per (options, row): (latency rows, host rows, last host
# column), (processor, p, 1 / p, cores, cores if on the CPU, load flags per board processor)
PairEntry = tuple[
    tuple[tuple[float, ...], tuple[float, ...] | None, int],
    tuple[str, float, float, float, float | None, tuple[int, ...]],
]


@dataclass(frozen=True, eq=False)
class Options:
    """Candidates of one model on one processor; row k is (member_ids[k], threads[k])."""

    processor: Processor
    member_ids: tuple[str, ...]
    threads: np.ndarray  # (K,) int
    accuracy: np.ndarray  # (K,) top-1 in [0, 1]
    latency: np.ndarray  # (K, F) nominal ms at each usable frequency of ``processor``
    host: np.ndarray | None  # (K, F_cpu) GPU only: host part (ms) at each CPU frequency
    cores_busy: np.ndarray  # (K,) CPU cores a frame keeps busy (1 for a GPU's host thread)
    dev: np.ndarray | None = None  # (K, F) GPU only: device part (ms)
    dev_p: np.ndarray | None = None  # (K, F) GPU only: device part to the power p
    host_p: np.ndarray | None = None  # (K, F_cpu) GPU only: host part to the power p
    p: float = 3.0
    key: tuple[str, str] = ("", "")  # (model, processor): the fast paths' cache key
    # Python-float copies for the scalar hot path (Policy.predict), filled in __post_init__:
    # per row, the device part (GPU: ``dev_p ** (1 / p)``) or the latency (CPU) at each column,
    # and the host part (GPU) at each CPU column. Python floats and ``**`` (the C library's
    # pow) keep the predictions bit for bit what element-wise scalar code gives.
    main_rows: tuple[tuple[float, ...], ...] = field(default=(), init=False)
    host_rows: tuple[tuple[float, ...], ...] | None = field(default=None, init=False)
    inv_p: float = field(default=1.0 / 3.0, init=False)
    cores_list: tuple[float, ...] = field(default=(), init=False)
    _index: dict[tuple[str, int | None], int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        inv_p = 1.0 / self.p
        if self.dev_p is not None and self.host_p is not None:
            main = tuple(tuple(v**inv_p for v in row) for row in self.dev_p.tolist())
            host = tuple(tuple(v**inv_p for v in row) for row in self.host_p.tolist())
        else:
            main = tuple(tuple(row) for row in self.latency.tolist())
            host = None
        index: dict[tuple[str, int | None], int] = {}
        gpu = self.host is not None
        for k, (m, t) in enumerate(zip(self.member_ids, self.threads.tolist(), strict=True)):
            index.setdefault((m, None if gpu else t), k)
        object.__setattr__(self, "main_rows", main)
        object.__setattr__(self, "host_rows", host)
        object.__setattr__(self, "inv_p", inv_p)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "cores_list", tuple(self.cores_busy.tolist()))

    @property
    def gpu(self) -> bool:
        return self.host is not None

    def row(self, member_id: str, threads: int) -> int | None:
        """The first row of ``member_id`` with ``threads`` (any thread count on a GPU)."""
        try:
            return self._index.get((member_id, None if self.host is not None else threads))
        except TypeError:  # unhashable threads: matches nothing
            return None

    def rows_of(self, member_id: str) -> list[int]:
        return [k for k, m in enumerate(self.member_ids) if m == member_id]


@dataclass(frozen=True)
class StaticChoice:
    """What the static baselines run: the family's own processor, its most measured threads."""

    member_id: str
    processor: str
    threads: int


class Context:
    """The models, the board's usable frequency tables, the candidates and the power curves."""

    def __init__(self, models: Sequence[ModelSpec], board: Board, config: ManagerConfig) -> None:
        if not models:
            raise ManagerConfigError("manager: at least one model is needed")
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ManagerConfigError(f"manager: duplicate model names in {names}")
        self.models = tuple(models)
        self.specs: Mapping[str, ModelSpec] = {m.name: m for m in models}
        self.board = board
        self.config = config
        self.processors: tuple[Processor, ...] = board.processors
        self.cpu = board.first(ProcessorKind.CPU)
        self.tables: dict[str, tuple[int, ...]] = {p.name: self._table(p) for p in board.processors}
        self.latency = LatencyTable(board, config.compute_fraction)
        self.power = PowerModel(board, config.power, config.board_static_w)
        self.idle_w: dict[str, np.ndarray] = {}
        self.busy_w: dict[str, np.ndarray] = {}
        for p in board.processors:
            self.idle_w[p.name], self.busy_w[p.name] = self.power.curves(p, self.tables[p.name])
        # the same as Python lists, per processor in board order, for the scalar hot path:
        # (name, is a CPU, cores, idle W per column, full-load extra W per column)
        self.power_rows: tuple[tuple[str, bool, int, list[float], list[float]], ...] = tuple(
            (
                p.name,
                p.kind is ProcessorKind.CPU,
                max(p.cores, 1),
                self.idle_w[p.name].tolist(),
                self.busy_w[p.name].tolist(),
            )
            for p in board.processors
        )
        # the least idle / full-load power at or above each column (bounds in the joint search)
        self.power_floor: dict[str, tuple[np.ndarray, np.ndarray]] = {
            p.name: (
                np.minimum.accumulate(self.idle_w[p.name][::-1])[::-1].copy(),
                np.minimum.accumulate(self.busy_w[p.name][::-1])[::-1].copy(),
            )
            for p in board.processors
        }
        self.cpu_name: str | None = self.cpu.name if self.cpu is not None else None
        self.pair_cache: dict[tuple[tuple[str, str], int], PairEntry] = {}  # predict.pair_row
        self.cpu_cores = max(self.cpu.cores, 1) if self.cpu is not None else 1
        cpu_table = self.tables[self.cpu.name] if self.cpu is not None else (0,)
        top_cpu = cpu_table[-1] or (self.cpu.max_frequency_khz if self.cpu else 0) or 0
        self.host_ref_khz = config.gpu_host_cpu_khz or top_cpu
        self.options: dict[str, dict[str, Options]] = {}
        self.static: dict[str, StaticChoice] = {}
        for spec in models:
            self.options[spec.name] = self._build(spec)
            self.static[spec.name] = self._static(spec)

    # ---- tables --------------------------------------------------------------------------
    def _table(self, p: Processor) -> tuple[int, ...]:
        """Frequencies the manager may pin on ``p`` after the configured caps / floors; ``(0,)``
        when the platform cannot pin its frequency."""
        table = self.board.table(p)
        if table == (0,):
            return table
        cap = self.config.frequency_caps_khz.get(p.name)
        floor = self.config.frequency_floors_khz.get(p.name)
        kept = tuple(
            f for f in table if (cap is None or f <= cap) and (floor is None or f >= floor)
        )
        if not kept:
            raise ManagerConfigError(
                f"manager.frequency_caps_khz / frequency_floors_khz leave no frequency of "
                f"{p.name} ({table[0]}..{table[-1]} kHz): cap {cap}, floor {floor}"
            )
        return kept

    def settable(self, processor: str) -> bool:
        return self.tables[processor] != (0,)

    def top_column(self, processor: str) -> int:
        return len(self.tables[processor]) - 1

    # ---- candidates ----------------------------------------------------------------------
    def _build(self, spec: ModelSpec) -> dict[str, Options]:
        wanted = spec.processors
        procs: list[Processor] = []
        for rec_proc in dict.fromkeys(r.processor for m in spec.family.members for r in m.latency):
            proc = self.board.resolve(rec_proc)
            if proc is None or proc in procs:
                continue
            if wanted is not None and rec_proc not in wanted and proc.name not in wanted:
                continue
            procs.append(proc)
        if not procs:
            raise ManagerConfigError(
                f"model {spec.name}: family {spec.family.name} has no latency record for a "
                f"processor of board {self.board.name} "
                f"({', '.join(p.name for p in self.board.processors)})"
            )
        out: dict[str, Options] = {}
        for proc in procs:
            table = self.tables[proc.name]
            gpu = proc.kind is not ProcessorKind.CPU
            ids: list[str] = []
            threads: list[int] = []
            acc: list[float] = []
            lat: list[list[float]] = []
            busy: list[float] = []
            for member in spec.family.members:
                counts = self.latency.thread_counts(member, proc)
                if gpu:
                    counts = counts[:1]  # threads do not apply to a GPU
                for t in counts:
                    if not gpu and t > proc.cores:
                        continue
                    if not gpu and spec.threads is not None and t not in spec.threads:
                        continue
                    pts = self.latency.points(member, proc, t)
                    ids.append(member.id)
                    threads.append(0 if gpu else t)
                    acc.append(member.accuracy)
                    lat.append([self.latency.at(pts, f) for f in table])
                    busy.append(1.0 if gpu else float(min(t or proc.cores, proc.cores)))
            if not ids:
                continue
            latency = np.asarray(lat, dtype=np.float64)
            host = dev = dev_p = host_p = None
            pw = self.config.gpu_overlap_p
            if gpu:
                ref = self._host_at_ref(latency, table)
                host = self._host(ref)
                dev_p = np.maximum(latency**pw - (ref**pw)[:, None], 1e-12)
                dev = dev_p ** (1.0 / pw)
                host_p = host**pw
            out[proc.name] = Options(
                processor=proc,
                member_ids=tuple(ids),
                threads=np.asarray(threads, dtype=np.int64),
                accuracy=np.asarray(acc, dtype=np.float64),
                latency=latency,
                host=host,
                cores_busy=np.asarray(busy, dtype=np.float64),
                dev=dev,
                dev_p=dev_p,
                host_p=host_p,
                p=pw,
                key=(spec.name, proc.name),
            )
        if not out:
            raise ManagerConfigError(f"model {spec.name}: no usable (member, threads) candidate")
        return out

    def _host_at_ref(self, latency: np.ndarray, table: tuple[int, ...]) -> np.ndarray:
        """Host part of each GPU candidate at the records' CPU frequency (module docstring)."""
        fixed = self.config.gpu_host_fraction
        fastest = latency.min(axis=1)
        freqs = np.asarray(table, dtype=np.float64)
        if fixed > 0 or len(set(table)) < 3 or freqs[0] <= 0:
            scaled: np.ndarray = fastest * (fixed or 0.9)
            return scaled
        p = self.config.gpu_overlap_p
        fractions = np.linspace(0.0, 0.995, 200)
        design = np.stack([1.0 / freqs, np.ones_like(freqs)], axis=1)  # (F, 2)
        solve = np.linalg.pinv(design)  # (2, F)
        out = np.empty(latency.shape[0])
        for k, row in enumerate(latency):
            h = fractions * fastest[k]  # (H,)
            d = np.maximum(row[None, :] ** p - (h**p)[:, None], 0.0) ** (1.0 / p)  # (H, F)
            coef = d @ solve.T  # (H, 2)
            # judged on the latency it reconstructs, not on d: near h = r, d = (r^p - h^p)^(1/p)
            # magnifies the records' last digits, which would reject the host-bound splits
            total = (np.maximum(coef @ design.T, 0.0) ** p + (h**p)[:, None]) ** (1.0 / p)
            err = np.sqrt(((total - row[None, :]) ** 2).mean(axis=1)) / max(float(row.mean()), 1e-9)
            ok = (coef >= -1e-9).all(axis=1)
            err = np.where(ok, err, np.inf)
            if not np.isfinite(err).any():
                out[k] = 0.9 * fastest[k]
                continue
            # records flat in f_gpu fit every split: take the largest host part that fits
            # within measurement noise (a launch-bound network), never the device-only
            # explanation by default
            out[k] = h[np.flatnonzero(err <= float(err.min()) + FIT_TOLERANCE).max()]
        return out

    def _host(self, ref: np.ndarray) -> np.ndarray:
        """Host part of GPU candidates at each CPU frequency (see the module docstring)."""
        if self.cpu is None or not self.settable(self.cpu.name) or not self.host_ref_khz:
            fixed: np.ndarray = ref[:, None].copy()
            return fixed
        f = np.asarray(self.tables[self.cpu.name], dtype=np.float64)
        host: np.ndarray = ref[:, None] * (self.host_ref_khz / f)[None, :]
        return host

    def nominal_top(self, model: str, processor: str) -> np.ndarray:
        """Nominal latency of each row at the highest usable frequencies (no correction)."""
        o = self.options[model][processor]
        if o.dev_p is None or o.host_p is None:
            top: np.ndarray = o.latency[:, -1]
            return top
        combined: np.ndarray = (o.dev_p[:, -1] + o.host_p[:, -1]) ** (1.0 / o.p)
        return combined

    def _static(self, spec: ModelSpec) -> StaticChoice:
        opts = self.options[spec.name]
        home = self.board.resolve(spec.family.processor)
        pname = home.name if home is not None and home.name in opts else next(iter(opts))
        o = opts[pname]
        top = self.nominal_top(spec.name, pname)
        if spec.static_member is not None:
            member = spec.static_member
        else:
            # The most accurate member whose nominal latency at the top frequency meets the
            # model's standing target with the manager's margin (the best a static choice can do).
            target = spec.latency_target_ms or spec.period_ms
            limit = target * (1.0 - self.config.latency_margin)
            ok = np.flatnonzero(top <= limit)
            pool = ok if ok.size else np.array([int(np.argmin(top))])
            best = pool[o.accuracy[pool] == o.accuracy[pool].max()]
            member = o.member_ids[int(best[np.argmin(top[best])])]
        rows = o.rows_of(member)
        if not rows:
            raise ManagerConfigError(
                f"model {spec.name}: static member {member!r} has no latency record on {pname}"
            )
        threads = int(max(o.threads[rows]))
        return StaticChoice(member, pname, threads)

    def largest(self, model: str) -> str:
        """The most accurate member of the model's family."""
        fam = self.specs[model].family
        return max(fam.members, key=lambda m: m.accuracy).id

    def ladder(self, model: str) -> tuple[str, ...]:
        """The model's members on its static processor / threads, fastest first (the step
        controller's levels)."""
        st = self.static[model]
        o = self.options[model][st.processor]
        top = self.nominal_top(model, st.processor)
        rows = [k for k in range(len(o.member_ids)) if int(o.threads[k]) == st.threads or o.gpu]
        rows.sort(key=lambda k: (float(top[k]), float(o.accuracy[k])))
        return tuple(dict.fromkeys(o.member_ids[k] for k in rows))
