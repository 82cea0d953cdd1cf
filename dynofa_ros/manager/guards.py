"""Safety guards the manager's policies share: the thermal cap per processor, the battery's
saving mode, and the power the mission's energy budget allows."""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping

from dynofa_ros.manager.context import Context
from dynofa_ros.manager.inputs import InputStore


class ThermalGuard:
    """Per processor, the highest usable column allowed: one step down (from where the processor
    runs) when its zone reaches ``trip - margin``, one up below ``trip - margin - hysteresis``,
    at most once per ``thermal.dwell_s``; and no higher than the clock the board was last seen
    to hold the processor at (:meth:`note_clock`), which lifts one step each
    ``thermal.observed_hold_s`` it is not seen again (the board may have cooled down)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.caps = {p.name: ctx.top_column(p.name) for p in ctx.processors}
        self.last_s = -math.inf
        self.hot: set[str] = set()
        self.seen: dict[str, tuple[int, float]] = {}  # processor -> (column, last seen at)

    def note_clock(self, processor: str, pinned_khz: int, ran_khz: int, now_s: float) -> None:
        """A frame ran ``processor`` at ``ran_khz`` while ``pinned_khz`` was asked for: below
        it, the board caps the processor (thermal or power limits nobody told the manager)."""
        if not pinned_khz or not ran_khz or ran_khz >= pinned_khz:
            return
        table = self.ctx.tables.get(processor)
        if not table:
            return
        col = max(0, bisect.bisect_right(table, ran_khz) - 1)
        held = self.seen.get(processor)
        self.seen[processor] = (col if held is None else min(col, held[0]), now_s)

    def effective(self, now_s: float) -> dict[str, int]:
        """The caps: the zones' (``caps``) and those seen in the frames' clocks."""
        hold = self.ctx.config.thermal.observed_hold_s
        out = dict(self.caps)
        for p, (seen_col, since) in list(self.seen.items()):
            col = seen_col
            if now_s - since >= hold:  # not seen for a while: try one step up
                col += 1
                if col >= self.ctx.top_column(p):
                    del self.seen[p]
                    continue
                self.seen[p] = (col, now_s)
            out[p] = min(out[p], col)
        return out

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
        seen = {p for p, (c, _) in self.seen.items() if c < self.ctx.top_column(p)}
        return [p for p, c in self.caps.items() if c < self.ctx.top_column(p) or p in seen]


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
