"""The hierarchical Dynamic-OFA manager and the baselines it is compared with, behind one interface.

``POLICIES`` (names for :func:`make_policy`):

* ``dynofa``: the hierarchical manager. Application level: per model, the family member (and,
  with the system level, its processor and threads) maximising
  ``priority * accuracy_weight * top1 - energy_weight * board power`` subject to predicted
  latency <= target * (1 - margin), the accuracy floor and the energy budget the mission /
  battery allow. System level: for each candidate the lowest frequencies meeting its target
  (least energy under the power model), never above the thermal cap; several models are placed
  jointly (their best few candidates each, with contention) and share the board's frequencies.
  Feedback: latency corrections from measured latency (interference), hysteresis (a current
  configuration is kept within a wider band, a change must gain ``switch_gain``), dwell time.
  Battery below ``battery_low``: the saving level (and power mode, when configured).
* ``static-performance``: the most accurate member on the family's processor, every frequency at
  the top (Linux's ``performance`` governor).
* ``static-schedutil``: one member (the most accurate meeting the target at the top frequency)
  with Linux's schedutil rule ``f = 1.25 * f_max * util`` (frequency-invariant utilisation from
  telemetry) rounded up to the table, re-evaluated every ``schedutil_period_s``.
* ``step``: the original Dynamic-OFA demo's controller: the mean latency of a window of frames;
  over the target, one member down; under ``step_up_ratio`` of it (or below the accuracy floor),
  one member up; frequencies left to the platform (no DVFS).
* ``switch-only``: ``dynofa``'s application level alone (members; static processor / threads;
  frequencies at the top usable step, under the thermal cap).
* ``dvfs-only``: ``dynofa``'s system level alone (static member; processor, threads and
  frequencies chosen).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from dynofa_ros.manager.context import Context
from dynofa_ros.manager.inputs import Effective, InputStore
from dynofa_ros.manager.policy import (
    ACCURACY_PENALTY,
    BUDGET_PENALTY,
    LATENCY_PENALTY,
    Joint,
    Policy,
    Prediction,
    schedutil_column,
)
from dynofa_ros.manager.types import Choice, LatencyObservation, ManagerConfigError, PriorityLevel
from dynofa_ros.platform.base import ProcessorKind


# ------------------------------------------------------------------------------- safety guards
class ThermalGuard:
    """Per processor, the highest usable column allowed: one step down (from where the processor
    runs) when its zone reaches ``trip - margin``, one up below ``trip - margin - hysteresis``,
    at most once per ``thermal.dwell_s``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.caps = {p.name: ctx.top_column(p.name) for p in ctx.processors}
        self.last_s = -math.inf
        self.hot: set[str] = set()

    def zone(self, processor: str) -> tuple[str, float] | None:
        tp = self.ctx.config.thermal
        zone = tp.zones.get(processor)
        if zone is None or zone not in tp.trip_c:
            return None
        return zone, tp.trip_c[zone]

    def update(
        self, inputs: InputStore, now_s: float, running: Mapping[str, int]
    ) -> dict[str, int]:
        tp = self.ctx.config.thermal
        if now_s - self.last_s < tp.dwell_s:
            return self.caps
        changed = False
        for p in self.caps:
            zt = self.zone(p)
            if zt is None or not self.ctx.settable(p):
                continue
            celsius = inputs.temperature(zt[0], now_s)
            if celsius is None:
                continue
            top = self.ctx.top_column(p)
            if celsius >= zt[1] - tp.margin_c:
                new = max(0, min(self.caps[p], running.get(p, top)) - 1)
                self.hot.add(p)
            elif celsius < zt[1] - tp.margin_c - tp.hysteresis_c:
                new = min(top, self.caps[p] + 1)
                self.hot.discard(p)
            else:
                continue
            if new != self.caps[p]:
                self.caps[p] = new
                changed = True
        if changed:
            self.last_s = now_s
        return self.caps

    def capped(self) -> list[str]:
        return [p for p, c in self.caps.items() if c < self.ctx.top_column(p)]


class BatterySaver:
    """Saving mode below ``battery_low``, left above ``battery_low + battery_hysteresis``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.on = False
        self.soc: float | None = None

    def update(self, inputs: InputStore, now_s: float) -> bool:
        cfg = self.ctx.config
        b = inputs.battery(now_s)
        if b is not None:
            self.soc = b.state_of_charge
            if b.state_of_charge < cfg.battery_low:
                self.on = True
            elif b.state_of_charge > cfg.battery_low + cfg.battery_hysteresis:
                self.on = False
        return self.on


def power_budget_w(inputs: InputStore, now_s: float) -> float:
    """Board power the mission allows: its energy budget over its remaining duration, and the
    battery's remaining energy over that duration (``inf`` when the duration is unknown)."""
    mission = inputs.mission
    if mission is None or mission.mission_duration_s <= 0:
        return math.inf
    budget = math.inf
    if mission.energy_budget_j > 0:
        budget = mission.energy_budget_j / mission.mission_duration_s
    b = inputs.battery(now_s)
    if b is not None and b.capacity_wh:
        budget = min(
            budget, b.state_of_charge * b.capacity_wh * 3600.0 / mission.mission_duration_s
        )
    return budget


# ------------------------------------------------------------------------------- dynofa
@dataclass(frozen=True)
class _Candidate:
    score: float  # standalone objective (accuracy points)
    processor: str
    row: int
    cols: Mapping[str, int]


class DynOFA(Policy):
    """The hierarchical manager (see the module docstring); ``switching`` / ``mapping`` /
    ``dvfs`` switch its levels on and off for the ablations."""

    name = "dynofa"
    description = "hierarchical: member + mapping + DVFS, feedback-corrected"

    def __init__(self, switching: bool = True, mapping: bool = True, dvfs: bool = True) -> None:
        self.switching = switching
        self.mapping = mapping
        self.dvfs = dvfs

    def reset(self) -> None:
        self.thermal = ThermalGuard(self.ctx)
        self.battery = BatterySaver(self.ctx)
        self.last_prediction: Prediction | None = None
        self.signature: tuple | None = None

    def needs(self, inputs: InputStore) -> Iterable[str]:
        out = [f"observation[{m}]" for m in self.ctx.specs]
        for p in self.thermal.caps:
            zt = self.thermal.zone(p)
            if zt is not None:
                out.append(f"temperature[{zt[0]}]")
        out.append("battery")
        return out

    # ---- candidates ------------------------------------------------------------------------
    def _allowed(self, model: str, processor: str) -> np.ndarray | None:
        st = self.ctx.static[model]
        o = self.ctx.options[model][processor]
        mask = np.ones(len(o.member_ids), dtype=bool)
        if not self.mapping:
            if processor != st.processor:
                return None
            if not o.gpu:
                mask &= o.threads == st.threads
        if not self.switching:
            mask &= np.array([m == st.member_id for m in o.member_ids])
        return mask if mask.any() else None

    def _rank(
        self,
        model: str,
        e: Effective,
        factor: Mapping[tuple[str, str], float],
        caps: Mapping[str, int],
        *,
        budget_w: float,
        limit: float,
    ) -> list[_Candidate]:
        """Every allowed candidate of ``model`` alone on the board at its least-power feasible
        frequencies, scored; vectorised per processor over (candidate, f_gpu, f_cpu) grids."""
        ctx = self.ctx
        lp = ctx.config.levels[e.level]
        cpu = ctx.cpu.name if ctx.cpu is not None else None
        # columns this model's search may use: with DVFS everything up to the cap, else the cap
        span = {q: (0 if self.dvfs else caps[q], caps[q]) for q in caps}
        idle_floor = {q: span[q][0] for q in caps}  # unused processors idle at their lowest
        out: list[_Candidate] = []
        for pname, o in ctx.options[model].items():
            mask = self._allowed(model, pname)
            if mask is None:
                continue
            f = factor.get((model, pname), 1.0)
            g0, g1 = span[pname]
            static = ctx.power.board_static_w + sum(
                float(ctx.idle_w[q.name][idle_floor[q.name]])
                for q in ctx.processors
                if q.name != pname and not (o.gpu and q.name == cpu)
            )
            if o.gpu and o.dev is not None and o.host is not None and cpu is not None:
                c0, c1 = span[cpu]
                c1 = min(c1, o.host.shape[1] - 1)
                c0 = min(c0, c1)
                dev = o.dev[:, g0 : g1 + 1] * f  # (K, G)
                host = o.host[:, c0 : c1 + 1] * f  # (K, C)
                lat = (dev[:, :, None] ** o.p + host[:, None, :] ** o.p) ** (1.0 / o.p)
                gpu_w = (
                    ctx.idle_w[pname][g0 : g1 + 1][None, :]
                    + np.minimum(1.0, dev / e.period_ms) * ctx.busy_w[pname][g0 : g1 + 1][None, :]
                )
                cpu_cores = max(ctx.cpu.cores, 1) if ctx.cpu is not None else 1
                cpu_w = (
                    ctx.idle_w[cpu][c0 : c1 + 1][None, :]
                    + np.minimum(1.0, host / e.period_ms)
                    / cpu_cores
                    * ctx.busy_w[cpu][c0 : c1 + 1][None, :]
                )
                power = static + gpu_w[:, :, None] + cpu_w[:, None, :]  # (K, G, C)
            else:
                c0, c1 = g0, g1
                lat = (o.latency[:, g0 : g1 + 1] * f)[:, :, None]  # (K, F, 1)
                share = (o.cores_busy / max(o.processor.cores, 1))[:, None]
                busy = np.minimum(1.0, lat[:, :, 0] / e.period_ms) * share
                power = (
                    static
                    + ctx.idle_w[pname][g0 : g1 + 1][None, :]
                    + busy * ctx.busy_w[pname][g0 : g1 + 1][None, :]
                )[:, :, None]
            power = power * ctx.power.correction
            k_n, _, n_c = lat.shape
            flat_lat = lat.reshape(k_n, -1)
            flat_pw = power.reshape(k_n, -1)
            feasible = flat_lat <= limit
            pick = np.where(
                feasible.any(axis=1),
                np.where(feasible, flat_pw, np.inf).argmin(axis=1),
                flat_lat.argmin(axis=1),
            )
            ar = np.arange(k_n)
            t = flat_lat[ar, pick]
            pw = flat_pw[ar, pick]
            score = (
                e.priority * lp.accuracy_weight * 100.0 * o.accuracy
                - lp.energy_weight * pw
                - LATENCY_PENALTY * np.maximum(0.0, t / limit - 1.0)
                - ACCURACY_PENALTY * 100.0 * np.maximum(0.0, e.min_accuracy - o.accuracy)
                - BUDGET_PENALTY * np.maximum(0.0, pw - budget_w)
            )
            gi, ci = np.divmod(pick, n_c)
            for k in np.flatnonzero(mask):
                cols = dict(idle_floor)
                cols[pname] = g0 + int(gi[k])
                if o.gpu and cpu is not None:
                    cols[cpu] = c0 + int(ci[k])
                out.append(_Candidate(float(score[k]), pname, int(k), cols))
        out.sort(key=lambda c: -c.score)
        return out

    # ---- joint ------------------------------------------------------------------------------
    def _score(
        self,
        joint: Joint,
        pred: Prediction,
        eff: Mapping[str, Effective],
        limits: Mapping[str, float],
        budget_w: float,
    ) -> float:
        cfg = self.ctx.config
        total = 0.0
        energy_weight = 0.0
        for m, (p, k) in joint.rows.items():
            e = eff[m]
            lp = cfg.levels[e.level]
            energy_weight = max(energy_weight, lp.energy_weight)
            acc = float(self.ctx.options[m][p].accuracy[k])
            total += e.priority * lp.accuracy_weight * 100.0 * acc
            total -= LATENCY_PENALTY * max(0.0, pred.latency_ms[m] / limits[m] - 1.0)
            total -= ACCURACY_PENALTY * 100.0 * max(0.0, e.min_accuracy - acc)
        total -= energy_weight * pred.power_w
        total -= BUDGET_PENALTY * max(0.0, pred.power_w - budget_w)
        return total

    def _settle(
        self,
        rows: Mapping[str, tuple[str, int]],
        cols: dict[str, int],
        eff: Mapping[str, Effective],
        factor: Mapping[tuple[str, str], float],
        *,
        caps: Mapping[str, int],
        limits: Mapping[str, float],
    ) -> tuple[Joint, Prediction]:
        """Raise the columns limiting a model that misses its limit (contention) until every
        model meets it or the caps are reached."""
        joint = Joint(rows, dict(cols))
        pred = self.predict(joint, eff, factor)
        if not self.dvfs or len(rows) == 1:
            return joint, pred
        for _ in range(64):
            bumped = False
            for m in rows:
                if pred.latency_ms[m] > limits[m]:
                    p = pred.limiting[m]
                    if cols[p] < caps[p]:
                        cols[p] += 1
                        bumped = True
            if not bumped:
                break
            joint = Joint(rows, dict(cols))
            pred = self.predict(joint, eff, factor)
        return joint, pred

    def plan(
        self, inputs: InputStore, now_s: float, current: Mapping[str, Choice]
    ) -> dict[str, Choice] | None:
        ctx = self.ctx
        cfg = ctx.config
        saving = self.battery.update(inputs, now_s)
        eff = self.effective(inputs, cfg.saving_level if saving else None)
        power_mode = cfg.saving_power_mode if saving else None
        factor = self.factors(now_s)
        cur_joint = self.joint_of(current) if current else None
        running = dict(cur_joint.cols) if cur_joint is not None else {}
        caps = dict(self.thermal.update(inputs, now_s, running))
        budget_w = power_budget_w(inputs, now_s)
        limits = {m: e.latency_target_ms * (1.0 - cfg.latency_margin) for m, e in eff.items()}
        keep = {m: e.latency_target_ms * (1.0 - cfg.keep_margin) for m, e in eff.items()}

        ranked = {
            m: self._rank(m, eff[m], factor, caps, budget_w=budget_w, limit=limits[m])
            for m in ctx.specs
        }
        for m, r in ranked.items():
            if not r:
                raise ManagerConfigError(f"model {m}: no candidate allowed by policy {self.name}")
        models = list(ctx.specs)
        if len(models) == 1:
            m = models[0]
            c = ranked[m][0]
            best_joint, best_pred = self._settle(
                {m: (c.processor, c.row)}, dict(c.cols), eff, factor, caps=caps, limits=limits
            )
            best_score = self._score(best_joint, best_pred, eff, limits, budget_w)
        else:
            n = cfg.candidates_per_model
            pools = []
            for m in models:
                pool = ranked[m][:n]
                pools.append(pool)
            best_score = -math.inf
            best_joint = best_pred = None
            for combo in itertools.product(*pools):
                rows = {m: (c.processor, c.row) for m, c in zip(models, combo, strict=True)}
                cols = {p: max(c.cols[p] for c in combo) for p in caps}
                joint, pred = self._settle(rows, cols, eff, factor, caps=caps, limits=limits)
                score = self._score(joint, pred, eff, limits, budget_w)
                if score > best_score:
                    best_score, best_joint, best_pred = score, joint, pred
            assert best_joint is not None and best_pred is not None

        # hysteresis: keep the current configuration unless the new one is clearly better;
        # not after the requirements changed (level, targets, saving mode, budget, caps): the
        # hysteresis absorbs measurement noise, a new requirement is served at once
        signature = (tuple(sorted(eff.items())), saving, budget_w, tuple(sorted(caps.items())))
        changed, self.signature = signature != self.signature, signature
        if (
            not changed
            and cur_joint is not None
            and all(cur_joint.cols[p] <= caps[p] for p in caps)
        ):
            allowed = all(
                (mask := self._allowed(m, p)) is not None and bool(mask[k])
                for m, (p, k) in cur_joint.rows.items()
            )
            same_mode = all(ch.config.power_mode == power_mode for ch in current.values())
            if allowed and same_mode:
                cur_pred = self.predict(cur_joint, eff, factor)
                cur_score = self._score(cur_joint, cur_pred, eff, keep, budget_w)
                if best_joint == cur_joint or best_score < cur_score + cfg.switch_gain:
                    self.last_prediction = cur_pred
                    return None
        self.last_prediction = best_pred
        reasons = self._reasons(
            best_joint,
            best_pred,
            eff,
            limits=limits,
            factor=factor,
            saving=saving,
            budget_w=budget_w,
        )
        return self.choices(best_joint, eff, best_pred, reasons, power_mode=power_mode, pin=True)

    def _reasons(
        self,
        joint: Joint,
        pred: Prediction,
        eff: Mapping[str, Effective],
        *,
        limits: Mapping[str, float],
        factor: Mapping[tuple[str, str], float],
        saving: bool,
        budget_w: float,
    ) -> dict[str, str]:
        ctx = self.ctx
        cfg = ctx.config
        notes: list[str] = []
        if saving:
            soc = self.battery.soc
            notes.append(
                f"battery {0 if soc is None else soc * 100:.0f}% < {cfg.battery_low * 100:.0f}%: "
                f"saving mode ({cfg.saving_level.name})"
            )
        for p in self.thermal.capped():
            notes.append(f"thermal cap {p} {ctx.tables[p][self.thermal.caps[p]] / 1000:g} MHz")
        if math.isfinite(budget_w):
            notes.append(f"budget {budget_w:.1f} W")
        freq = ", ".join(
            f"{p.name} {ctx.tables[p.name][joint.cols[p.name]] / 1000:g} MHz"
            for p in ctx.processors
            if ctx.settable(p.name)
        )
        out: dict[str, str] = {}
        for m, (p, k) in joint.rows.items():
            o = ctx.options[m][p]
            what = o.member_ids[k] + (f" x{int(o.threads[k])}" if not o.gpu else "")
            parts = [
                f"{self.name}: {what} on {p} ({100 * float(o.accuracy[k]):.1f}%), {freq}",
                f"predicted {pred.latency_ms[m]:.1f} ms for {eff[m].latency_target_ms:g} ms",
            ]
            if pred.latency_ms[m] > limits[m]:
                parts.append("nothing meets the target: least violating")
            k_f = factor.get((m, p), 1.0)
            if k_f > cfg.interference_ratio:
                parts.append(f"interference x{k_f:.2f} on {p}")
            if eff[m].level is not PriorityLevel.NORMAL:
                parts.append(f"level {eff[m].level.name}")
            out[m] = "; ".join(parts + notes)
        return out


# ------------------------------------------------------------------------------- baselines
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
    name = "static-schedutil"
    description = "static member, schedutil rule f = 1.25 f_max util on telemetry"

    @property
    def dwell_s(self) -> float:
        return self.ctx.config.schedutil_period_s

    def needs(self, inputs: InputStore) -> Iterable[str]:
        return [f"load[{p.name}]" for p in self.ctx.processors if self.ctx.settable(p.name)]

    def _rows(self) -> dict[str, tuple[str, int]]:
        out = {}
        for m, st in self.ctx.static.items():
            o = self.ctx.options[m][st.processor]
            row = o.row(st.member_id, st.threads)
            assert row is not None
            out[m] = (st.processor, row)
        return out

    def plan(
        self, inputs: InputStore, now_s: float, current: Mapping[str, Choice]
    ) -> dict[str, Choice] | None:
        ctx = self.ctx
        cfg = ctx.config
        cur = self.joint_of(current) if current else None
        cols: dict[str, int] = {}
        for p in ctx.processors:
            table = ctx.tables[p.name]
            if table == (0,):
                cols[p.name] = 0
                continue
            top = ctx.top_column(p.name)
            cur_col = cur.cols[p.name] if cur is not None else top
            load = inputs.load(p.name, now_s)
            if load is None:
                cols[p.name] = cur_col
                continue
            util = load.utilisation
            if p.kind is ProcessorKind.CPU and load.utilisation_max is not None:
                util = load.utilisation_max
            f_cur = load.frequency_khz or table[cur_col]
            cols[p.name] = schedutil_column(table, f_cur, util, cfg.schedutil_margin)
        joint = Joint(self._rows(), cols)
        if cur is not None and joint == cur:
            return None
        eff = self.effective(inputs)
        pred = self.predict(joint, eff, self.factors(now_s))
        reasons = {m: f"{self.name}: static member, schedutil frequencies" for m in joint.rows}
        return self.choices(joint, eff, pred, reasons)


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


# ------------------------------------------------------------------------------- registry
def _switch_only() -> Policy:
    p = DynOFA(switching=True, mapping=False, dvfs=False)
    p.name = "switch-only"
    p.description = "ablation: member switching only (static mapping, top frequencies)"
    return p


def _dvfs_only() -> Policy:
    p = DynOFA(switching=False, mapping=True, dvfs=True)
    p.name = "dvfs-only"
    p.description = "ablation: static member; mapping, threads and DVFS"
    return p


_FACTORIES = {
    "dynofa": DynOFA,
    "static-performance": StaticPerformance,
    "static-schedutil": StaticSchedutil,
    "step": Step,
    "switch-only": _switch_only,
    "dvfs-only": _dvfs_only,
}
POLICIES: tuple[str, ...] = tuple(_FACTORIES)


def make_policy(name: str) -> Policy:
    """A fresh policy by name (one of :data:`POLICIES`)."""
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise ManagerConfigError(
            f"unknown policy {name!r} (one of: {', '.join(POLICIES)})"
        ) from None
