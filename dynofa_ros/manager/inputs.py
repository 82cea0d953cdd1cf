"""Validated, timestamped inputs: the one place bad telemetry is caught.

Every reading goes through :meth:`InputStore.offer` (or :meth:`InputStore.offer_telemetry` for a
platform :class:`~dynofa_ros.platform.base.Telemetry`). A reading that is NaN, negative, out of
range, for an unknown model / processor / member, older than the newest one of its kind,
already stale when it arrives, or stamped further ahead of the receiver's clock than
``max_future_skew_s`` (then it never moves the store's clock) is dropped: a counted, logged
warning (:attr:`InputStore.warnings`, keyed ``"<field>: <why>"``), and the previous good value
stays in force until it is stale itself. Fields are checked one by one where they are
independent (a bad battery capacity does not discard a good state of charge). A value older
than ``stale_after_s`` at decision time reads as unknown (``None``); the policies then hold
their current decision for what depends on it.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from dynofa_ros.manager.config import ManagerConfig
from dynofa_ros.manager.model import Board
from dynofa_ros.manager.types import (
    BatteryReading,
    LatencyObservation,
    Mission,
    ModelSpec,
    PowerReading,
    PriorityLevel,
    ProcessorLoad,
    Requirements,
    TemperatureReading,
)
from dynofa_ros.platform.base import ProcessorKind, Telemetry

log = logging.getLogger("dynofa_ros.manager")

Reading = (
    Mission
    | Requirements
    | BatteryReading
    | TemperatureReading
    | ProcessorLoad
    | PowerReading
    | LatencyObservation
)


_R = TypeVar(
    "_R", BatteryReading, TemperatureReading, ProcessorLoad, PowerReading, LatencyObservation
)


class RejectedError(ValueError):
    """Why one reading was dropped (internal: turned into a counted warning)."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.key = f"{field}: {why}"


def _reading_value(value: Any, field: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RejectedError(field, "not a number")
    if math.isnan(value):
        raise RejectedError(field, "NaN")
    if not math.isfinite(value):
        raise RejectedError(field, "infinite")
    if value < 0 <= lo:
        raise RejectedError(field, "negative")
    if not lo <= value <= hi:
        raise RejectedError(field, "out of range")
    return float(value)


def _kind(item: Any) -> str:
    """The warning prefix of a reading: ``battery``, ``temperature[zone]``, ``observation[m]``."""
    if isinstance(item, TemperatureReading):
        return f"temperature[{item.zone}]"
    if isinstance(item, LatencyObservation):
        return f"observation[{item.model}]"
    if isinstance(item, ProcessorLoad):
        return f"load[{item.processor}]"
    names = {BatteryReading: "battery", PowerReading: "power", Mission: "mission",
             Requirements: "requirements"}  # fmt: skip
    return names.get(type(item), "input")


@dataclass(frozen=True)
class Effective:
    """One model's requirements in force, after mission level, overrides and defaults."""

    latency_target_ms: float
    period_ms: float
    min_accuracy: float
    priority: float
    level: PriorityLevel


def readings_of(t: Telemetry, stamp_s: float | None = None, *, power: bool = True) -> list[Reading]:
    """A telemetry snapshot as the readings a board publishes, in sim_platform_node's order
    (battery, temperatures, loads, then power), stamped ``stamp_s`` (default: the snapshot's)."""
    s = t.stamp_s if stamp_s is None else stamp_s
    items: list[Reading] = []
    if t.battery is not None:
        items.append(BatteryReading(s, t.battery.state_of_charge, t.battery.capacity_wh))
    items.extend(TemperatureReading(s, zone, float(c)) for zone, c in t.temperatures_c.items())
    items.extend(
        ProcessorLoad(s, name, pt.utilisation, pt.frequency_khz, pt.utilisation_max)
        for name, pt in t.processors.items()
        if pt.utilisation is not None
    )
    if power and t.total_power_w is not None:
        items.append(PowerReading(s, t.total_power_w))
    return items


class InputStore:
    def __init__(self, models: Sequence[ModelSpec], board: Board, config: ManagerConfig) -> None:
        self.models = {m.name: m for m in models}
        self.board = board
        self.config = config
        self.warnings: Counter[str] = Counter()
        self.clock_s = -math.inf  # newest accepted stamp
        self.mission: Mission | None = None
        self._requirements: dict[str, Requirements] = {}
        self._battery: BatteryReading | None = None
        self._temps: dict[str, TemperatureReading] = {}
        self._loads: dict[str, ProcessorLoad] = {}
        self._power: PowerReading | None = None
        self._latest: dict[str, LatencyObservation] = {}
        self._recent: dict[str, deque[LatencyObservation]] = {
            name: deque(maxlen=64) for name in self.models
        }
        self._pending: list[LatencyObservation] = []
        self._expired: dict[str, float] = {}  # what -> stamp of the reading already warned of
        self._effective: dict[tuple[str, PriorityLevel | None], tuple[Any, Any, Effective]] = {}

    # ---- intake ---------------------------------------------------------------------------
    def warn(self, key: str) -> None:
        self.warnings[key] += 1
        n = self.warnings[key]
        if n == 1 or n % 100 == 0:
            log.warning("ignored input (%s), seen %d time(s); holding the last good value", key, n)

    def offer(self, item: Reading, now_s: float | None = None) -> bool:
        """Validate and store one reading; ``False`` (and a counted warning) when dropped.
        ``now_s``: the receiver's clock, for the future-stamp check (``None``: no check)."""
        try:
            self._check_future(item, now_s)
            self._offer(item)
        except RejectedError as exc:
            self.warn(exc.key)
            return False
        return True

    def _check_future(self, item: Reading, now_s: float | None) -> None:
        skew = self.config.max_future_skew_s
        if now_s is None or skew <= 0 or not now_s > 0:
            return  # no reference clock (fast replay, use_sim_time before /clock) or check off
        stamp = getattr(item, "stamp_s", None)
        if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) and stamp > now_s + skew:
            raise RejectedError(f"{_kind(item)}.stamp_s", f"more than {skew:g} s in the future")

    def offer_telemetry(self, t: Telemetry, now_s: float | None = None) -> tuple[int, int]:
        """Split a platform telemetry snapshot into readings: (kept, offered)."""
        items = readings_of(t)
        return sum(self.offer(i, now_s) for i in items), len(items)

    def _stamp(self, item: Reading, kind: str, previous: Any) -> float:
        stamp = item.stamp_s
        if (
            isinstance(stamp, bool)
            or not isinstance(stamp, (int, float))
            or not math.isfinite(stamp)
        ):
            raise RejectedError(f"{kind}.stamp_s", "not a finite time")
        if stamp < self.clock_s - self.config.stale_after_s:
            raise RejectedError(f"{kind}.stamp_s", "stale")
        if previous is not None and stamp < previous.stamp_s:
            raise RejectedError(f"{kind}.stamp_s", "older than the reading in force")
        return float(stamp)

    def _accept_clock(self, stamp: float) -> None:
        self.clock_s = max(self.clock_s, stamp)

    def _offer(self, item: Reading) -> None:
        """Validate ``item`` (``RejectedError`` names the field) and store it."""
        if isinstance(item, LatencyObservation):
            self._check_observation(item)
            self._latest[item.model] = item
            self._recent[item.model].append(item)
            self._pending.append(item)
        elif isinstance(item, BatteryReading):
            self._battery = self._checked_battery(item)
        elif isinstance(item, TemperatureReading):
            self._temps[item.zone] = self._checked_temperature(item)
        elif isinstance(item, ProcessorLoad):
            name = self._checked_load(item)
            self._loads[name] = item
        elif isinstance(item, PowerReading):
            self._stamp(item, "power", self._power)
            _reading_value(item.total_w, "power.total_w", 0.0, 10_000.0)
            self._power = item
        elif isinstance(item, Mission):
            self.mission = self._checked_mission(item)
        elif isinstance(item, Requirements):
            for name in self._checked_requirements(item):
                self._requirements[name] = item
        else:
            raise RejectedError("input", f"unknown kind {type(item).__name__}")
        self._accept_clock(item.stamp_s)

    def _checked_battery(self, item: BatteryReading) -> BatteryReading:
        self._stamp(item, "battery", self._battery)
        _reading_value(item.state_of_charge, "battery.state_of_charge", 0.0, 1.0)
        if item.capacity_wh is not None:
            try:  # a bad capacity does not discard a good state of charge
                if _reading_value(item.capacity_wh, "battery.capacity_wh", 0.0, 1e6) == 0.0:
                    raise RejectedError("battery.capacity_wh", "out of range")
            except RejectedError as exc:
                self.warn(exc.key)
                item = replace(item, capacity_wh=None)
        return item

    def _checked_temperature(self, item: TemperatureReading) -> TemperatureReading:
        kind = f"temperature[{item.zone}]"
        if not isinstance(item.zone, str) or not item.zone:
            raise RejectedError("temperature.zone", "empty")
        self._stamp(item, kind, self._temps.get(item.zone))
        lo, hi = self.config.temperature_range_c
        v = item.celsius
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            if not lo <= v <= hi:
                raise RejectedError(f"{kind}.celsius", "out of range")
        else:
            _reading_value(v, f"{kind}.celsius", lo, hi)
        return item

    def _checked_load(self, item: ProcessorLoad) -> str:
        """The board's name of the processor a valid load reading is of."""
        proc = self.board.resolve(item.processor)
        if proc is None:
            raise RejectedError("load.processor", f"unknown processor {item.processor!r}")
        self._stamp(item, f"load[{proc.name}]", self._loads.get(proc.name))
        _reading_value(item.utilisation, f"load[{proc.name}].utilisation", 0.0, 1.0)
        if item.utilisation_max is not None:
            _reading_value(item.utilisation_max, f"load[{proc.name}].utilisation_max", 0.0, 1.0)
        if (
            item.frequency_khz
            and proc.frequencies_khz
            and item.frequency_khz not in proc.frequencies_khz
        ):
            raise RejectedError(f"load[{proc.name}].frequency_khz", "not in the table")
        return proc.name

    def _checked_mission(self, item: Mission) -> Mission:
        self._stamp(item, "mission", self.mission)
        try:
            PriorityLevel(item.level)
        except ValueError:
            raise RejectedError("mission.level", "out of range") from None
        max_ms = self.config.max_latency_ms
        _reading_value(item.latency_target_ms, "mission.latency_target_ms", 0.0, max_ms)
        _reading_value(item.min_accuracy, "mission.min_accuracy", 0.0, 1.0)
        _reading_value(item.energy_budget_j, "mission.energy_budget_j", 0.0, math.inf)
        _reading_value(item.mission_duration_s, "mission.mission_duration_s", 0.0, math.inf)
        return item

    def _checked_requirements(self, item: Requirements) -> list[str]:
        """The models valid requirements apply to."""
        names = [item.model] if item.model is not None else list(self.models)
        if item.model is not None and item.model not in self.models:
            raise RejectedError("requirements.model", f"unknown model {item.model!r}")
        for name in names:
            self._stamp(item, "requirements", self._requirements.get(name))
        positive = (
            ("latency_target_ms", self.config.max_latency_ms),
            ("frame_rate_hz", 10_000.0),
            ("priority", 1e6),
        )
        for key, hi in positive:
            value = getattr(item, key)
            if value is not None and _reading_value(value, f"requirements.{key}", 0.0, hi) == 0:
                raise RejectedError(f"requirements.{key}", "out of range")
        if item.min_accuracy is not None:
            _reading_value(item.min_accuracy, "requirements.min_accuracy", 0.0, 1.0)
        return names

    def _check_observation(self, obs: LatencyObservation) -> None:
        spec = self.models.get(obs.model)
        if spec is None:
            raise RejectedError("observation.model", f"unknown model {obs.model!r}")
        kind = f"observation[{obs.model}]"
        self._stamp(obs, kind, self._latest.get(obs.model))
        _reading_value(obs.latency_ms, f"{kind}.latency_ms", 0.0, self.config.max_latency_ms)
        if obs.latency_ms == 0:
            raise RejectedError(f"{kind}.latency_ms", "out of range")
        if obs.subnet_id not in spec.family.ids:
            raise RejectedError(f"{kind}.subnet_id", "not in the family")
        if self.board.resolve(obs.processor) is None:
            raise RejectedError(f"{kind}.processor", "not on this board")
        if isinstance(obs.threads, bool) or not isinstance(obs.threads, int) or obs.threads < 0:
            raise RejectedError(f"{kind}.threads", "out of range")
        for key, pk in (
            ("cpu_frequency_khz", ProcessorKind.CPU),
            ("gpu_frequency_khz", ProcessorKind.GPU),
        ):
            khz = getattr(obs, key)
            proc = self.board.first(pk)
            if isinstance(khz, bool) or not isinstance(khz, int) or khz < 0:
                raise RejectedError(f"{kind}.{key}", "out of range")
            if (
                khz
                and proc is not None
                and proc.frequencies_khz
                and khz not in proc.frequencies_khz
            ):
                raise RejectedError(f"{kind}.{key}", "not in the table")

    # ---- reading back ---------------------------------------------------------------------
    def _fresh(self, reading: _R | None, now_s: float, what: str) -> _R | None:
        if reading is None:
            return None
        if now_s - reading.stamp_s > self.config.stale_after_s:
            if self._expired.get(what) != reading.stamp_s:
                self._expired[what] = reading.stamp_s
                self.warn(f"{what}: stale")
            return None
        return reading

    def stale(self, what: str, now_s: float) -> bool:
        """Whether the input named ``what`` (``battery``, ``power``, ``temperature[zone]``,
        ``load[processor]``, ``observation[model]``) was received once and is now stale. An
        input never received is not stale: the manager starts from its priors."""
        kind, _, key = what.partition("[")
        key = key.rstrip("]")
        if kind == "observation":
            reading: Any = self._latest.get(key)
        elif kind == "temperature":
            reading = self._temps.get(key)
        elif kind == "load":
            reading = self._loads.get(key)
        elif kind == "battery":
            reading = self._battery
        elif kind == "power":
            reading = self._power
        else:
            raise KeyError(kind)
        return reading is not None and self._fresh(reading, now_s, what) is None

    def battery(self, now_s: float) -> BatteryReading | None:
        return self._fresh(self._battery, now_s, "battery")

    def temperature(self, zone: str, now_s: float) -> float | None:
        r = self._fresh(self._temps.get(zone), now_s, f"temperature[{zone}]")
        return None if r is None else r.celsius

    def load(self, processor: str, now_s: float) -> ProcessorLoad | None:
        return self._fresh(self._loads.get(processor), now_s, f"load[{processor}]")

    def power(self, now_s: float) -> PowerReading | None:
        return self._fresh(self._power, now_s, "power")

    def latest(self, model: str, now_s: float) -> LatencyObservation | None:
        return self._fresh(self._latest.get(model), now_s, f"observation[{model}]")

    def recent(self, model: str) -> deque[LatencyObservation]:
        return self._recent[model]

    def drain(self) -> list[LatencyObservation]:
        """Observations accepted since the last call (each handed out once)."""
        out, self._pending = self._pending, []
        return out

    def effective(self, model: str, level: PriorityLevel | None = None) -> Effective:
        """The model's requirements in force; ``level`` overrides the mission's level (battery
        saving mode). Remembered while the mission and the model's requirements in force are
        the same (immutable) readings."""
        mission = self.mission
        req = self._requirements.get(model)
        hit = self._effective.get((model, level))
        if hit is not None and hit[0] is mission and hit[1] is req:
            return hit[2]
        out = self._effective_of(model, level)
        self._effective[model, level] = (mission, req, out)
        return out

    def _effective_of(self, model: str, level: PriorityLevel | None) -> Effective:
        spec = self.models[model]
        mission = self.mission
        lvl = level if level is not None else (mission.level if mission else PriorityLevel.NORMAL)
        policy = self.config.levels[PriorityLevel(lvl)]
        req = self._requirements.get(model)
        frame_rate = spec.frame_rate_hz
        target = spec.latency_target_ms
        min_acc = spec.min_accuracy
        prio = spec.priority
        if req is not None:
            frame_rate = req.frame_rate_hz if req.frame_rate_hz is not None else frame_rate
            target = req.latency_target_ms if req.latency_target_ms is not None else target
            min_acc = req.min_accuracy if req.min_accuracy is not None else min_acc
            prio = req.priority if req.priority is not None else prio
        period = 1000.0 / frame_rate if frame_rate else None
        if target is None:
            assert period is not None
            target = period
        target *= policy.latency_scale
        if mission is not None and mission.latency_target_ms > 0:
            target = mission.latency_target_ms
        if mission is not None and mission.min_accuracy > 0:
            min_acc = mission.min_accuracy
        min_acc = max(min_acc, policy.min_accuracy)
        return Effective(
            latency_target_ms=float(target),
            period_ms=float(period if period is not None else target),
            min_accuracy=float(min_acc),
            priority=float(prio),
            level=PriorityLevel(lvl),
        )
