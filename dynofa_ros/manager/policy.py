"""The interface every policy implements, and the prediction machinery they share.

A policy is bound to a :class:`~dynofa_ros.manager.context.Context` once, is told every accepted
latency observation (:meth:`Policy.observe`), and is asked for a plan (:meth:`Policy.plan`): one
:class:`~dynofa_ros.manager.types.Choice` per model, or ``None`` to keep the current ones. A
plan is joint: every choice carries the board-wide CPU / GPU frequencies, so all models agree on
them. The runtime manager numbers the choices that changed; policies never see sequence numbers.

Prediction model (shared by every policy, documented once here):

* latency of a candidate = nominal latency from the family's records at the chosen frequency
  (:class:`~dynofa_ros.manager.model.LatencyTable`) times the online correction of its
  (model, processor) (median of measured / predicted, :class:`~dynofa_ros.manager.model.
  Corrections`); a GPU candidate combines a device part (at f_gpu) and a host part (at f_cpu),
  see :mod:`~dynofa_ros.manager.context`;
* models sharing a processor slow each other: on a GPU the device part by ``1 / (1 - s)`` with
  ``s`` the others' busy fraction; on a CPU (CPU models and the host parts of GPU models) only
  when their threads exceed the cores, by ``1 / (1 - s)`` with ``s`` the others' busy cores over
  the cores (processor sharing);
* board power = ``board_static_w + sum over processors of idle(f) + load * busy(f)``
  (:class:`~dynofa_ros.manager.model.PowerModel`), times the online correction from measured
  board power.
"""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dynofa_ros.manager.context import Context, Options
from dynofa_ros.manager.inputs import Effective, InputStore
from dynofa_ros.manager.model import Corrections
from dynofa_ros.manager.types import (
    Choice,
    Configuration,
    LatencyObservation,
    PowerReading,
    PriorityLevel,
    ProcessorLoad,
)
from dynofa_ros.platform.base import ProcessorKind

# Objective penalties, in "accuracy points" (see LevelPolicy): a latency violation outweighs any
# accuracy or energy gain, an exceeded energy budget outweighs accuracy, an accuracy floor
# outweighs energy. Each grows with the size of the violation so that, when nothing is
# feasible, the least violating configuration wins.
LATENCY_PENALTY = 10_000.0
BUDGET_PENALTY = 1_000.0
ACCURACY_PENALTY = 100.0
MAX_SHARE = 0.9  # processor sharing: others never take more than this of a processor


@dataclass(frozen=True)
class Joint:
    """A joint configuration: per model (processor name, options row), per processor a column
    of its usable frequency table (``Context.tables``)."""

    rows: Mapping[str, tuple[str, int]]
    cols: Mapping[str, int]


@dataclass(frozen=True)
class Prediction:
    latency_ms: Mapping[str, float]  # corrected, with contention
    alone_ms: Mapping[str, float]  # corrected, without the other models
    limiting: Mapping[str, str]  # per model: the processor whose column limits its latency
    load: Mapping[str, float]  # per processor, in [0, 1]
    power_w: float  # board power, corrected
    raw_power_w: float  # board power before the online correction


class Policy(ABC):
    """A way of choosing configurations; see the module docstring."""

    name = "policy"
    description = ""

    def bind(self, ctx: Context) -> None:
        self.ctx = ctx
        cfg = ctx.config
        self.corrections = Corrections(
            cfg.window,
            cfg.correction_half_life_s,
            cfg.correction_bounds,
            foreign_load_min=cfg.foreign_load_min,
            calm_ratio=cfg.interference_ratio,
        )
        self.last_prediction: Prediction | None = None
        self.reset()

    def reset(self) -> None:  # noqa: B027 - optional hook
        """Forget run-time state (called by :meth:`bind`)."""

    @property
    def dwell_s(self) -> float:
        """Least time between two changes of the joint configuration."""
        return self.ctx.config.dwell_s

    def needs(self, inputs: InputStore) -> Iterable[str]:
        """Inputs (``InputStore.stale`` names) without which this policy holds its decision."""
        return ()

    def due(self, now_s: float) -> bool:
        """Whether the policy must plan at ``now_s`` even with no new reading (a schedule)."""
        del now_s
        return False

    def observe(
        self, obs: LatencyObservation, inputs: InputStore, current: Mapping[str, Choice]
    ) -> None:
        """One accepted frame of one model: update the latency correction of its processor."""
        del inputs
        predicted = self.predict_observation(obs, current.get(obs.model))
        if predicted is not None:
            pname = self.ctx.board.resolve(obs.processor)
            assert pname is not None
            self.corrections.add(obs.model, pname.name, obs.latency_ms, predicted, obs.stamp_s)

    def observe_load(self, reading: ProcessorLoad) -> None:
        """A processor's measured busy fraction: what is not the models' own (as last predicted)
        is another program's, the evidence that interference there persists or has gone."""
        proc = self.ctx.board.resolve(reading.processor)
        if proc is None:
            return
        pred = self.last_prediction
        own = pred.load.get(proc.name, 0.0) if pred is not None else 0.0
        self.corrections.note_foreign(
            proc.name, max(0.0, reading.utilisation - own), reading.stamp_s
        )

    def observe_power(self, reading: PowerReading, current: Mapping[str, Choice]) -> None:
        """A measured board power: correct the power model's level."""
        choice = next(iter(current.values()), None)
        if choice is not None and choice.raw_power_w > 0:
            self.ctx.power.observe(reading.total_w, choice.raw_power_w)

    @abstractmethod
    def plan(
        self, inputs: InputStore, now_s: float, current: Mapping[str, Choice]
    ) -> dict[str, Choice] | None:
        """One choice per model, or ``None`` to keep the current choices."""

    # ---- shared helpers -------------------------------------------------------------------
    def effective(
        self, inputs: InputStore, level: PriorityLevel | None = None
    ) -> dict[str, Effective]:
        return {m: inputs.effective(m, level) for m in self.ctx.specs}

    def factors(self, now_s: float) -> dict[tuple[str, str], float]:
        """Latency correction per (model, processor)."""
        return {
            (m, p): self.corrections.factor(m, p, now_s)
            for m, opts in self.ctx.options.items()
            for p in opts
        }

    def column_of(self, processor: str, khz: int, fallback: int | None = None) -> int:
        """The usable column nearest ``khz`` (``fallback`` or the top when ``khz`` is 0)."""
        table = self.ctx.tables[processor]
        if table == (0,):
            return 0
        if khz <= 0:
            return self.ctx.top_column(processor) if fallback is None else fallback
        i = bisect.bisect_left(table, khz)
        if i >= len(table):
            return len(table) - 1
        if i > 0 and khz - table[i - 1] < table[i] - khz:
            return i - 1
        return i

    def predict_observation(self, obs: LatencyObservation, current: Choice | None) -> float | None:
        """The latency the model predicts for the configuration that produced ``obs`` (at the
        frequencies it reports), with the contention of the current plan when ``obs`` ran it."""
        ctx = self.ctx
        proc = ctx.board.resolve(obs.processor)
        if proc is None:
            return None
        o = ctx.options[obs.model].get(proc.name)
        if o is None:
            return None
        row = o.row(obs.subnet_id, obs.threads)
        if row is None:
            return None
        cur = current.config if current is not None else None
        cpu = ctx.cpu

        def col(p: str, khz: int, decided: int) -> int:
            fb = self.column_of(p, decided) if decided else None
            return self.column_of(p, khz, fb)

        if o.dev_p is not None and o.host_p is not None:
            g = col(proc.name, obs.gpu_frequency_khz, cur.gpu_frequency_khz if cur else 0)
            c = 0
            if cpu is not None:
                c = col(cpu.name, obs.cpu_frequency_khz, cur.cpu_frequency_khz if cur else 0)
            c = min(c, o.host_p.shape[1] - 1)
            t = float((o.dev_p[row, g] + o.host_p[row, c]) ** (1.0 / o.p))
        else:
            decided = cur.cpu_frequency_khz if cur else 0
            t = float(o.latency[row, col(proc.name, obs.cpu_frequency_khz, decided)])
        if cur is not None and current is not None and cur.processor == proc.name:
            t *= current.contention
        return t

    def predict(
        self, joint: Joint, eff: Mapping[str, Effective], factor: Mapping[tuple[str, str], float]
    ) -> Prediction:
        """Latency, load and power of ``joint`` (see the module docstring)."""
        options = self.ctx.options
        sel = [
            (options[m][p], k, factor.get((m, p), 1.0), eff[m].period_ms, p)
            for m, (p, k) in joint.rows.items()
        ]
        lat, alone, limiting, load, raw = predict_rows(self.ctx, sel, joint.cols)
        names = list(joint.rows)
        return Prediction(
            dict(zip(names, lat, strict=True)),
            dict(zip(names, alone, strict=True)),
            dict(zip(names, limiting, strict=True)),
            load,
            raw * self.ctx.power.correction,
            raw,
        )

    def choices(
        self,
        joint: Joint,
        eff: Mapping[str, Effective],
        pred: Prediction,
        reasons: Mapping[str, str],
        *,
        power_mode: int | None = None,
        pin: bool = True,
    ) -> dict[str, Choice]:
        """The choices of ``joint``; ``pin=False`` leaves frequencies to the platform (0)."""
        ctx = self.ctx
        freq: dict[ProcessorKind, int] = {ProcessorKind.CPU: 0, ProcessorKind.GPU: 0}
        if pin:
            for kind in (ProcessorKind.CPU, ProcessorKind.GPU):
                proc = ctx.board.first(kind)
                if proc is not None:
                    freq[kind] = ctx.tables[proc.name][joint.cols[proc.name]]
        out: dict[str, Choice] = {}
        for model, (pname, row) in joint.rows.items():
            o = ctx.options[model][pname]
            config = Configuration(
                subnet_id=o.member_ids[row],
                processor=pname,
                threads=int(o.threads[row]),
                cpu_frequency_khz=freq[ProcessorKind.CPU],
                gpu_frequency_khz=freq[ProcessorKind.GPU],
                power_mode=power_mode,
            )
            alone = pred.alone_ms[model]
            out[model] = Choice(
                config=config,
                predicted_latency_ms=pred.latency_ms[model],
                predicted_accuracy=float(o.accuracy[row]),
                predicted_power_w=pred.power_w,
                latency_target_ms=eff[model].latency_target_ms,
                reason=reasons.get(model, ""),
                contention=pred.latency_ms[model] / alone if alone > 0 else 1.0,
                raw_power_w=pred.raw_power_w,
            )
        return out

    def joint_of(self, current: Mapping[str, Choice]) -> Joint | None:
        """The joint configuration of the current choices (``None`` if it is not one of ours,
        e.g. frequencies left to the platform); remembered for the same choice objects (they
        are immutable, and the manager keeps them until it decides again)."""
        key = tuple(current.items())
        last = getattr(self, "_joint_of_last", None)
        if (
            last is not None
            and len(last[0]) == len(key)
            and all(a[0] == b[0] and a[1] is b[1] for a, b in zip(last[0], key, strict=True))
        ):
            return last[1]
        joint = self._joint_of(current)
        self._joint_of_last = (key, joint)
        return joint

    def _joint_of(self, current: Mapping[str, Choice]) -> Joint | None:
        ctx = self.ctx
        if set(current) != set(ctx.specs):
            return None
        rows: dict[str, tuple[str, int]] = {}
        for model, choice in current.items():
            c = choice.config
            o = ctx.options[model].get(c.processor)
            row = None if o is None else o.row(c.subnet_id, c.threads)
            if row is None:
                return None
            rows[model] = (c.processor, row)
        any_choice = next(iter(current.values())).config
        cols: dict[str, int] = {}
        for proc in ctx.processors:
            table = ctx.tables[proc.name]
            if table == (0,):
                cols[proc.name] = 0
                continue
            khz = (
                any_choice.cpu_frequency_khz
                if proc.kind is ProcessorKind.CPU
                else any_choice.gpu_frequency_khz
            )
            if proc is not ctx.board.first(proc.kind):
                cols[proc.name] = len(table) - 1
            elif khz in table:
                cols[proc.name] = table.index(khz)
            else:
                return None
        return Joint(rows, cols)


def first_at_most(row: np.ndarray, limit: float) -> int:
    """Index of the first entry ``<= limit`` (latency falls with frequency), or -1."""
    ok = row <= limit
    j = int(ok.argmax())
    return j if ok[j] else -1


def options_of(ctx: Context, model: str, processor: str) -> Options:
    return ctx.options[model][processor]


Row = tuple[Options, int, float, float, str]
"""One model of a joint configuration for :func:`predict_rows`: its options on the processor
it runs on, the row, its latency correction, its frame period (ms) and the processor name."""


def predict_rows(
    ctx: Context, sel: Sequence[Row], cols: Mapping[str, int]
) -> tuple[list[float], list[float], list[str], dict[str, float], float]:
    """:meth:`Policy.predict` on plain lists (the joint search calls it thousands of times per
    second): per model the latency with contention, alone, and the processor limiting it; per
    processor its load; and the board power before the online correction.

    Plain Python floats on purpose: numpy's per-call cost dominates arrays of two or three
    models, and ``**`` on floats is the C library's ``pow`` (numpy's vectorised ``power`` may
    differ in the last bit), so every caller gets the same numbers."""
    cpu = ctx.cpu_name
    n = len(sel)
    dev = [0.0] * n
    alone = [0.0] * n
    host: list[float | None] = [None] * n
    for i, (o, k, f, _, p) in enumerate(sel):
        hr = o.host_rows
        if hr is not None:
            d = o.main_rows[k][cols[p]] * f
            c = min(cols[cpu] if cpu is not None else 0, len(hr[k]) - 1)
            h = hr[k][c] * f
            host[i] = h
            alone[i] = (d**o.p + h**o.p) ** o.inv_p
        else:
            d = o.main_rows[k][cols[p]] * f
            alone[i] = d
        dev[i] = d
    # contention: frames of the models are taken to start together (cameras in step), so
    # another model occupies the GPU for the device share of its frame, and the CPU for its
    # busy cores over all cores (uniform time sharing), as on the simulated board
    cpu_load: list[float | None] = (
        []
        if n == 1
        else [
            (h / alone[i] if h is not None else (o.cores_list[k] if p == cpu else None))
            for i, ((o, k, _, _, p), h) in enumerate(zip(sel, host, strict=True))
        ]
    )
    lat = list(alone)
    limiting = [""] * n
    if n == 1:  # no contention: what the loop below gives for one model, without the sums
        o, _, _, _, p = sel[0]
        h = host[0]
        limiting[0] = p if h is None or dev[0] >= h else (cpu or p)
    for i, (o, _, _, _, p) in enumerate(sel if n > 1 else ()):
        d = dev[i]
        h = host[i]
        if h is not None:
            others = sum(min(1.0, dev[j] / alone[j]) for j in range(n) if j != i and sel[j][4] == p)
            d /= 1.0 - min(MAX_SHARE, others)
            cpu_part = h
        else:
            cpu_part = d
        s = sum(v for j, v in enumerate(cpu_load) if j != i and v is not None) / ctx.cpu_cores
        if s > 0:
            cpu_part /= 1.0 - min(MAX_SHARE, s)
        if h is not None:
            lat[i] = (d**o.p + cpu_part**o.p) ** o.inv_p
            limiting[i] = p if d >= cpu_part else (cpu or p)
        else:
            lat[i] = cpu_part
            limiting[i] = p
    # power
    load: dict[str, float] = {}
    raw = ctx.power.board_static_w
    for q, is_cpu, q_cores, idle, busy_w in ctx.power_rows:
        busy = 0.0
        for i, (o, k, _, period, p) in enumerate(sel):
            u = min(1.0, lat[i] / period)
            if is_cpu:
                if p == q or (host[i] is not None and q == cpu):
                    busy += u * o.cores_list[k] / q_cores
            elif p == q:
                busy += u
        load[q] = min(1.0, busy)
        j = cols[q]
        raw += idle[j] + load[q] * busy_w[j]
    return lat, alone, limiting, load, raw


PairRow = tuple
"""A model of a two-model joint search, prepared once per plan by :func:`pair_row`."""


def pair_row(ctx: Context, row: Row) -> PairRow:
    """What :func:`settle_pair` needs of one candidate, looked up once: its latency rows, the
    last host column, correction, period, processor, p-norm exponents, cores, and per board
    processor how its load counts there (0: not, 1: busy cores over the CPU's, 2: busy)."""
    o, k, f, period, p = row
    key = (id(o), k, p)
    hit = ctx.pair_cache.get(key)
    if hit is None:
        cpu = ctx.cpu_name
        host = o.host_rows[k] if o.host_rows is not None else None
        flags = tuple(
            (1 if p == q or (host is not None and q == cpu) else 0)
            if is_cpu
            else (2 if p == q else 0)
            for q, is_cpu, _, _, _ in ctx.power_rows
        )
        cores = o.cores_list[k]
        hit = ctx.pair_cache[key] = (
            (o.main_rows[k], host, len(host) - 1 if host is not None else 0),
            (p, o.p, o.inv_p, cores, cores if p == cpu else None, flags),
        )
    return (*hit[0], f, period, *hit[1])


def settle_pair(
    ctx: Context,
    r0: PairRow,
    r1: PairRow,
    cols: dict[str, int],
    *,
    caps: Mapping[str, int] | None,
    lim0: float,
    lim1: float,
) -> tuple[float, float, float]:
    """Two models: :func:`predict_rows` at ``cols``, then, when ``caps`` are given, the
    settling of ``DynOFA._settle`` (raise the column limiting a model over its limit, both
    models in order, until none is or the caps stop it), updating ``cols`` in place. Returns
    the two latencies and the board power before the online correction. Unrolled for the
    joint search's inner loop; every operation is the one :func:`predict_rows` does, in its
    order (sums of one term are the term: ``0 + x`` is ``x``)."""
    cpu = ctx.cpu_name
    n_cores = ctx.cpu_cores
    power_rows = ctx.power_rows
    main0, host0, hcap0, f0, per0, p0, pw0, ip0, c0, cl0_fixed, flags0 = r0
    main1, host1, hcap1, f1, per1, p1, pw1, ip1, c1, cl1_fixed, flags1 = r1
    same = p0 == p1
    for bumps in range(65):  # (at most 64 bumps, as _settle)
        d0 = main0[cols[p0]] * f0
        d1 = main1[cols[p1]] * f1
        if host0 is not None or host1 is not None:
            c = cols[cpu] if cpu is not None else 0
        if host0 is not None:
            h0 = host0[c if c < hcap0 else hcap0] * f0
            a0 = (d0**pw0 + h0**pw0) ** ip0
            cl0 = h0 / a0
        else:
            a0 = d0
            cl0 = cl0_fixed
        if host1 is not None:
            h1 = host1[c if c < hcap1 else hcap1] * f1
            a1 = (d1**pw1 + h1**pw1) ** ip1
            cl1 = h1 / a1
        else:
            a1 = d1
            cl1 = cl1_fixed
        # model 0
        if host0 is not None:
            d = d0 / (1.0 - min(MAX_SHARE, min(1.0, d1 / a1) if same else 0))
            part = h0
        else:
            d = part = d0
        s = (cl1 if cl1 is not None else 0) / n_cores
        if s > 0:
            part /= 1.0 - min(MAX_SHARE, s)
        if host0 is not None:
            lat0 = (d**pw0 + part**pw0) ** ip0
            lim_p0 = p0 if d >= part else (cpu or p0)
        else:
            lat0 = part
            lim_p0 = p0
        # model 1
        if host1 is not None:
            d = d1 / (1.0 - min(MAX_SHARE, min(1.0, d0 / a0) if same else 0))
            part = h1
        else:
            d = part = d1
        s = (cl0 if cl0 is not None else 0) / n_cores
        if s > 0:
            part /= 1.0 - min(MAX_SHARE, s)
        if host1 is not None:
            lat1 = (d**pw1 + part**pw1) ** ip1
            lim_p1 = p1 if d >= part else (cpu or p1)
        else:
            lat1 = part
            lim_p1 = p1
        if caps is None or bumps == 64:
            break
        bumped = False
        if lat0 > lim0 and cols[lim_p0] < caps[lim_p0]:
            cols[lim_p0] += 1
            bumped = True
        if lat1 > lim1 and cols[lim_p1] < caps[lim_p1]:
            cols[lim_p1] += 1
            bumped = True
        if not bumped:
            break
    # power (at the final columns)
    u0 = min(1.0, lat0 / per0)
    u1 = min(1.0, lat1 / per1)
    raw = ctx.power.board_static_w
    for (q, _, q_cores, idle, busy_w), g0, g1 in zip(power_rows, flags0, flags1, strict=True):
        busy = 0.0
        if g0 == 1:
            busy += u0 * c0 / q_cores
        elif g0 == 2:
            busy += u0
        if g1 == 1:
            busy += u1 * c1 / q_cores
        elif g1 == 2:
            busy += u1
        j = cols[q]
        raw += idle[j] + min(1.0, busy) * busy_w[j]
    return lat0, lat1, raw
