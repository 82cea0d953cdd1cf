"""The baselines ``dynofa`` is compared with (see :mod:`~dynofa_ros.manager.registry`), and its
two ablations."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from dynofa_ros.manager.dynofa import DynOFA
from dynofa_ros.manager.inputs import InputStore
from dynofa_ros.manager.policy import Policy
from dynofa_ros.manager.predict import (
    Joint,
)
from dynofa_ros.manager.types import Choice, LatencyObservation, ManagerConfigError


class StaticPerformance(Policy):
    name = "static-performance"
    description = "largest member, family's processor, top frequencies (performance governor)"

    def plan(
        self, inputs: InputStore, now_s: float, current: Mapping[str, Choice]
    ) -> dict[str, Choice] | None:
        del now_s
        if current:
            return None
        ctx = self.ctx
        rows: dict[str, tuple[str, int]] = {}
        for m in ctx.specs:
            st = ctx.static[m]
            member = ctx.largest(m)
            o = ctx.options[m][st.processor]
            ks = o.rows_of(member)
            if not ks:
                raise ManagerConfigError(
                    f"model {m}: largest member {member!r} has no record on {st.processor}"
                )
            rows[m] = (st.processor, max(ks, key=lambda k: int(o.threads[k])))
        joint = Joint(rows, {p.name: ctx.top_column(p.name) for p in ctx.processors})
        eff = self.effective(inputs)
        pred = self.predict(joint, eff, {})
        reasons = {m: f"{self.name}: largest member, top frequencies" for m in rows}
        return self.choices(joint, eff, pred, reasons)


class StaticSchedutil(Policy):
    """The static member with the board's own governor: frequencies are never pinned, so the
    board (simulated or real) runs Linux's schedutil on its measured utilisation, the GPU's busy
    fraction included, the same in every runner (the rule: ``platform.base.schedutil_khz``)."""

    name = "static-schedutil"
    description = "static member, frequencies left to the board's schedutil governor"

    def plan(
        self, inputs: InputStore, now_s: float, current: Mapping[str, Choice]
    ) -> dict[str, Choice] | None:
        if current:
            return None
        ctx = self.ctx
        rows = {}
        for m, st in ctx.static.items():
            row = ctx.options[m][st.processor].row(st.member_id, st.threads)
            assert row is not None
            rows[m] = (st.processor, row)
        # predicted at the top frequencies: the governor's choice is the board's to make
        joint = Joint(rows, {p.name: ctx.top_column(p.name) for p in ctx.processors})
        eff = self.effective(inputs)
        pred = self.predict(joint, eff, self.factors(now_s))
        reasons = {m: f"{self.name}: static member, board governor" for m in rows}
        return self.choices(joint, eff, pred, reasons, pin=False)


class Step(Policy):
    name = "step"
    description = "Dynamic-OFA demo: window mean latency, one member down / up, no DVFS"

    @property
    def dwell_s(self) -> float:
        return 0.0

    def needs(self, inputs: InputStore) -> Iterable[str]:
        return [f"observation[{m}]" for m in self.ctx.specs]

    def reset(self) -> None:
        ctx = self.ctx
        self.ladders = {m: ctx.ladder(m) for m in ctx.specs}
        self.level = {m: self.ladders[m].index(ctx.static[m].member_id) for m in ctx.specs}
        self.windows: dict[str, deque[float]] = {
            m: deque(maxlen=ctx.config.step_window) for m in ctx.specs
        }
        self.last_reason: dict[str, str] = {}

    def observe(
        self, obs: LatencyObservation, inputs: InputStore, current: Mapping[str, Choice]
    ) -> None:
        super().observe(obs, inputs, current)
        if obs.subnet_id == self.ladders[obs.model][self.level[obs.model]]:
            self.windows[obs.model].append(obs.latency_ms)

    def plan(
        self, inputs: InputStore, now_s: float, current: Mapping[str, Choice]
    ) -> dict[str, Choice] | None:
        ctx = self.ctx
        cfg = ctx.config
        eff = self.effective(inputs)
        changed = not current
        for m in ctx.specs:
            w = self.windows[m]
            if len(w) < cfg.step_window:
                continue
            mean = sum(w) / len(w)
            target = eff[m].latency_target_ms
            lvl = self.level[m]
            acc = ctx.specs[m].family.member(self.ladders[m][lvl]).accuracy
            if mean > target and lvl > 0:
                self.level[m] = lvl - 1
                self.last_reason[m] = f"mean {mean:.1f} ms > {target:g} ms: one member down"
            elif (
                (mean < cfg.step_up_ratio * target or acc < eff[m].min_accuracy)
                and lvl < len(self.ladders[m]) - 1
                and mean <= target
            ):
                self.level[m] = lvl + 1
                self.last_reason[m] = (
                    f"mean {mean:.1f} ms < {cfg.step_up_ratio:g} x {target:g} ms: one member up"
                )
            else:
                continue
            w.clear()
            changed = True
        if not changed:
            return None
        rows = {}
        for m in ctx.specs:
            st = ctx.static[m]
            o = ctx.options[m][st.processor]
            row = o.row(self.ladders[m][self.level[m]], st.threads)
            assert row is not None
            rows[m] = (st.processor, row)
        joint = Joint(rows, {p.name: ctx.top_column(p.name) for p in ctx.processors})
        pred = self.predict(joint, eff, self.factors(now_s))
        reasons = {
            m: f"{self.name}: " + self.last_reason.get(m, "start at the static member")
            for m in rows
        }
        return self.choices(joint, eff, pred, reasons, pin=False)


def switch_only() -> Policy:
    p = DynOFA(switching=True, mapping=False, dvfs=False)
    p.name = "switch-only"
    p.description = "ablation: member switching only (static mapping, top frequencies)"
    return p


def dvfs_only() -> Policy:
    p = DynOFA(switching=False, mapping=True, dvfs=True)
    p.name = "dvfs-only"
    p.description = "ablation: static member; mapping, threads and DVFS"
    return p
