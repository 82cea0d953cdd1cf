"""The interface every policy implements.

A policy is bound to a :class:`~dynofa_ros.manager.context.Context` once, is told every accepted
latency observation (:meth:`Policy.observe`), and is asked for a plan (:meth:`Policy.plan`): one
:class:`~dynofa_ros.manager.types.Choice` per model, or ``None`` to keep the current ones. A
plan is joint: every choice carries the board-wide CPU / GPU frequencies, so all models agree on
them. The runtime manager numbers the choices that changed; policies never see sequence numbers.
How a configuration is predicted is :mod:`~dynofa_ros.manager.predict`.
"""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping

from dynofa_ros.configuration import Configuration
from dynofa_ros.manager.context import Context
from dynofa_ros.manager.inputs import Effective, InputStore
from dynofa_ros.manager.model import Corrections
from dynofa_ros.manager.predict import Joint, Prediction, Row, predict_rows
from dynofa_ros.manager.types import (
    Choice,
    LatencyObservation,
    PowerReading,
    PriorityLevel,
    ProcessorLoad,
)
from dynofa_ros.platform.base import ProcessorKind


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
        self._joint_of_last: tuple[tuple[tuple[str, Choice], ...], Joint | None] | None = None
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

    def observe_clocks(self, obs: LatencyObservation, ran_under: Choice) -> None:  # noqa: B027
        """A frame that ran the decision in force (``ran_under``), with the clocks it ran at:
        for policies that learn what the board did with the clocks they pinned."""

    def observe_load(self, reading: ProcessorLoad) -> None:
        """A processor's measured busy fraction: what is not the models' own (as last predicted)
        is another program's, the evidence that interference there persists or has gone."""
        proc = self.ctx.board.resolve(reading.processor)
        if proc is None:
            return
        pred = self.last_prediction
        own = pred.load.get(proc.name, 0.0) if pred is not None else 0.0
        self.corrections.note_load(proc.name, reading.utilisation, own, reading.stamp_s)

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
            Row(options[m][p], k, factor.get((m, p), 1.0), eff[m].period_ms, p)
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
        last = self._joint_of_last
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
