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
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
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
            cfg.window, cfg.correction_half_life_s, cfg.correction_bounds
        )
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
        ctx = self.ctx
        cpu = ctx.cpu.name if ctx.cpu is not None else None
        dev: dict[str, float] = {}
        host: dict[str, float] = {}
        pw: dict[str, float] = {}
        alone: dict[str, float] = {}
        util: dict[str, float] = {}
        cores: dict[str, float] = {}  # CPU cores busy while running
        on: dict[str, list[str]] = {}  # processor -> models whose main part runs there
        for m, (p, k) in joint.rows.items():
            o = ctx.options[m][p]
            f = factor.get((m, p), 1.0)
            if o.dev_p is not None and o.host_p is not None:
                pw[m] = o.p
                d = float(o.dev_p[k, joint.cols[p]]) ** (1.0 / o.p) * f
                c = min(joint.cols[cpu] if cpu is not None else 0, o.host_p.shape[1] - 1)
                h = float(o.host_p[k, c]) ** (1.0 / o.p) * f
                host[m] = h
                t = (d**o.p + h**o.p) ** (1.0 / o.p)
            else:
                d = float(o.latency[k, joint.cols[p]]) * f
                t = d
            dev[m] = d
            alone[m] = t
            util[m] = min(1.0, t / eff[m].period_ms)
            cores[m] = float(o.cores_busy[k])
            on.setdefault(p, []).append(m)
        # contention: frames of the models are taken to start together (cameras in step), so
        # another model occupies the GPU for the device share of its frame, and the CPU for its
        # busy cores over all cores (uniform time sharing), as on the simulated board
        lat = dict(alone)
        limiting: dict[str, str] = {}
        n_cores = max(ctx.cpu.cores, 1) if ctx.cpu is not None else 1
        cpu_load = {
            m: (host[m] / alone[m] if m in host else cores[m])
            for m in joint.rows
            if m in host or joint.rows[m][0] == cpu
        }
        for m, (p, _) in joint.rows.items():
            d = dev[m]
            gpu_side = m in host
            if gpu_side:
                others = sum(min(1.0, dev[j] / alone[j]) for j in on[p] if j != m)
                d /= 1.0 - min(MAX_SHARE, others)
            cpu_part = host.get(m) if gpu_side else d
            s = sum(v for j, v in cpu_load.items() if j != m) / n_cores
            if s > 0 and cpu_part is not None:
                cpu_part /= 1.0 - min(MAX_SHARE, s)
            if gpu_side:
                assert cpu_part is not None
                lat[m] = (d ** pw[m] + cpu_part ** pw[m]) ** (1.0 / pw[m])
                limiting[m] = p if d >= cpu_part else (cpu or p)
            else:
                lat[m] = cpu_part if cpu_part is not None else d
                limiting[m] = p
        # power
        load: dict[str, float] = {}
        raw = ctx.power.board_static_w
        for proc in ctx.processors:
            busy = 0.0
            for m, (p, _) in joint.rows.items():
                u = min(1.0, lat[m] / eff[m].period_ms)
                if proc.kind is ProcessorKind.CPU:
                    if p == proc.name or (m in host and proc.name == cpu):
                        busy += u * cores[m] / max(proc.cores, 1)
                elif p == proc.name:
                    busy += u
            load[proc.name] = min(1.0, busy)
            j = joint.cols[proc.name]
            raw += float(ctx.idle_w[proc.name][j]) + load[proc.name] * float(
                ctx.busy_w[proc.name][j]
            )
        return Prediction(lat, alone, limiting, load, raw * ctx.power.correction, raw)

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
        e.g. frequencies left to the platform)."""
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


def schedutil_column(
    table: tuple[int, ...], current_khz: int, utilisation: float, margin: float = 1.25
) -> int:
    """Linux schedutil's rule with frequency-invariant utilisation:
    ``f_next = margin * f_max * util_inv`` with ``util_inv = busy * f_cur / f_max``, i.e.
    ``margin * f_cur * busy``, rounded up to the table (``get_next_freq`` in
    kernel/sched/cpufreq_schedutil.c)."""
    if table == (0,):
        return 0
    target = margin * current_khz * utilisation
    i = bisect.bisect_left(table, math.ceil(target))
    return min(i, len(table) - 1)


def options_of(ctx: Context, model: str, processor: str) -> Options:
    return ctx.options[model][processor]
