"""The manager's knobs, with ranges and units, loadable from a YAML / dict with field-naming errors.

Every number here is a default the user may override; the physical estimates (power model
priors, the host share of GPU latency, compute fraction of latency) are marked as estimates where
they are set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from dynofa_ros import validate
from dynofa_ros.manager.types import ManagerConfigError, PriorityLevel


@dataclass(frozen=True)
class LevelPolicy:
    """What a mission priority level means.

    The objective the manager maximises is, summed over models,
    ``priority * accuracy_weight * top1_percent - energy_weight * predicted_board_power_W``,
    so ``energy_weight / accuracy_weight`` is how many accuracy points one watt is worth.
    ``latency_scale`` relaxes (> 1) the models' latency targets; ``min_accuracy`` is a floor
    used when neither the mission nor the model sets a higher one.
    """

    accuracy_weight: float = 1.0
    energy_weight: float = 1.0
    latency_scale: float = 1.0
    min_accuracy: float = 0.0


# How many accuracy points one watt of board power is worth at each level (estimates of a
# mission designer's preference, documented in docs/manager.md): LOW is energy first (1 mW
# outweigh an accuracy point), NORMAL trades 1 W for 0.5 points (accuracy unless a change saves
# two watts a point: the Dynamic-OFA manager's most accurate member that meets the target, with
# the least energy for it), HIGH 1 W for 0.25 points, CRITICAL is accuracy first (power only
# picks the frequencies of the chosen member).
DEFAULT_LEVELS: Mapping[PriorityLevel, LevelPolicy] = MappingProxyType(
    {
        PriorityLevel.LOW: LevelPolicy(1.0, 1000.0, 1.0, 0.0),
        PriorityLevel.NORMAL: LevelPolicy(1.0, 0.5, 1.0, 0.0),
        PriorityLevel.HIGH: LevelPolicy(1.0, 0.25, 1.0, 0.0),
        PriorityLevel.CRITICAL: LevelPolicy(1.0, 0.0, 1.0, 0.0),
    }
)


@dataclass(frozen=True)
class ProcessorPower:
    """Prior power model of one processor (estimates; the board total is corrected online).

    ``P(f, u) = static_w * v(f) + u * dynamic_w * (f / f_max) * v(f)^2`` with the relative
    voltage ``v(f) = v_min_ratio + (1 - v_min_ratio) * (f - f_min) / (f_max - f_min)`` and ``u``
    the busy fraction (times the share of cores in use on a CPU).
    """

    static_w: float
    dynamic_w: float
    v_min_ratio: float = 0.6


# Estimates for a Jetson Xavier NX (no measurement behind them): the 15 W / 20 W modes put
# VDD_CPU_GPU_CV at several watts under full GPU or 6-core CPU load. Only ratios between
# configurations steer decisions; the absolute level is corrected online from measured power.
DEFAULT_POWER: Mapping[str, ProcessorPower] = MappingProxyType(
    {"cpu": ProcessorPower(0.6, 4.5, 0.6), "cuda": ProcessorPower(0.5, 6.0, 0.6)}
)


@dataclass(frozen=True)
class ThermalPolicy:
    """Keep every zone ``margin_c`` below its trip point by capping frequencies.

    ``zones`` maps a processor name to the thermal zone that throttles it; ``trip_c`` maps a zone
    to its throttling trip point (the platform interface does not publish trip points). A
    processor without a zone, or whose zone has no trip point, is not capped.
    The cap steps one frequency down when the zone reaches ``trip - margin`` and one up when it
    is below ``trip - margin - hysteresis``, at most once per ``dwell_s``.
    """

    zones: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    trip_c: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    margin_c: float = 5.0
    hysteresis_c: float = 3.0
    dwell_s: float = 1.0
    # a cap seen in the frames' clocks (a frame ran below the pinned clock: the board throttles
    # it, whether or not a zone is configured) holds this long unconfirmed, then lifts a step
    observed_hold_s: float = 2.0


@dataclass(frozen=True)
class ManagerConfig:
    # ---- application level
    latency_margin: float = 0.10  # a new configuration must predict <= target * (1 - margin)
    keep_margin: float = 0.03  # the current one is kept while it predicts <= target * (1 - this)
    switch_gain: float = 0.1  # objective gain (accuracy points / watts) a change must bring
    candidates_per_model: int = 6  # best standalone candidates per model tried jointly
    # ---- feedback
    window: int = 8  # frames in the 75 % quantile of measured / predicted latency ratios
    dwell_s: float = 0.3  # the joint configuration changes at most once per dwell
    correction_half_life_s: float = 5.0  # unobserved corrections decay to 1 with this half-life
    interference_ratio: float = 1.15  # measured / predicted above this is reported interference
    # a processor left with a raised correction keeps it while other programs keep at least
    # this busy fraction on it, and forgets it once that load halves (model.Corrections)
    foreign_load_min: float = 0.1
    correction_bounds: tuple[float, float] = (0.25, 8.0)
    compute_fraction: float = 0.85  # latency share that scales with 1/f when one frequency was
    # measured (estimate)
    # ---- GPU inference has a host side on the CPU (kernel launches): GPU latency records are
    # taken at one CPU frequency; the host part (fitted from the records' GPU frequency sweep,
    # or this share of the fastest GPU latency when > 0) scales with 1 / f_cpu; host and device
    # parts combine as a p-norm (a smooth maximum; see manager/context.py).
    gpu_host_fraction: float = 0.0
    gpu_overlap_p: float = 3.0
    gpu_host_cpu_khz: int = 0  # CPU frequency the GPU records were taken at (0: highest usable)
    # ---- frequencies the manager may pin, per processor name (e.g. a power mode's caps)
    frequency_caps_khz: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    frequency_floors_khz: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # ---- inputs
    stale_after_s: float = 2.0
    # an input stamped further ahead of the receiver's clock is rejected (clock skew / a bad
    # sender) and never moves the manager's clock; 0 = no check
    max_future_skew_s: float = 2.0
    max_latency_ms: float = 60_000.0
    temperature_range_c: tuple[float, float] = (-40.0, 150.0)
    # ---- battery
    battery_low: float = 0.20
    battery_hysteresis: float = 0.05
    saving_level: PriorityLevel = PriorityLevel.LOW
    saving_power_mode: int | None = None
    # ---- levels, power, thermal
    levels: Mapping[PriorityLevel, LevelPolicy] = field(default_factory=lambda: DEFAULT_LEVELS)
    power: Mapping[str, ProcessorPower] = field(default_factory=lambda: DEFAULT_POWER)
    board_static_w: float = 2.0
    thermal: ThermalPolicy = field(default_factory=ThermalPolicy)
    # ---- baselines
    step_window: int = 10  # step controller: frames averaged before a step
    step_up_ratio: float = 0.8  # step controller: step up below this fraction of the target

    def __post_init__(self) -> None:
        checks: dict[str, tuple[float, float]] = {
            "latency_margin": (0.0, 0.9),
            "keep_margin": (0.0, 0.9),
            "switch_gain": (0.0, math.inf),
            "candidates_per_model": (1, 1000),
            "window": (1, 1000),
            "dwell_s": (0.0, 3600.0),
            "correction_half_life_s": (1e-3, math.inf),
            "interference_ratio": (1.0, math.inf),
            "foreign_load_min": (1e-3, 1.0),
            "compute_fraction": (0.0, 1.0),
            "gpu_host_fraction": (0.0, 0.99),
            "gpu_overlap_p": (1.0, 64.0),
            "gpu_host_cpu_khz": (0, 1e9),
            "stale_after_s": (1e-3, math.inf),
            "max_future_skew_s": (0.0, math.inf),
            "max_latency_ms": (1e-3, math.inf),
            "battery_low": (0.0, 1.0),
            "battery_hysteresis": (0.0, 1.0),
            "board_static_w": (0.0, math.inf),
            "step_window": (1, 10_000),
            "step_up_ratio": (0.05, 1.0),
        }
        for key, (lo, hi) in checks.items():
            _check_range(getattr(self, key), lo, hi, f"manager.{key}")
        if self.keep_margin > self.latency_margin:
            raise ManagerConfigError(
                f"manager.keep_margin ({self.keep_margin}) must be <= manager.latency_margin "
                f"({self.latency_margin}): the current configuration is kept inside a wider band"
            )
        lo, hi = self.correction_bounds
        if not 0 < lo <= 1 <= hi:
            raise ManagerConfigError(
                f"manager.correction_bounds = {self.correction_bounds!r} must satisfy "
                "0 < lo <= 1 <= hi"
            )
        tlo, thi = self.temperature_range_c
        if not tlo < thi:
            raise ManagerConfigError(
                f"manager.temperature_range_c = {self.temperature_range_c!r} must be (lo, hi) "
                "with lo < hi"
            )
        missing = [lv.name for lv in PriorityLevel if lv not in self.levels]
        if missing:
            raise ManagerConfigError(f"manager.levels: missing level(s) {', '.join(missing)}")
        for key in ("frequency_caps_khz", "frequency_floors_khz"):
            for proc, khz in getattr(self, key).items():
                _check_range(khz, 1, 1e9, f"manager.{key}.{proc}")
        if self.saving_power_mode is not None:
            _check_range(self.saving_power_mode, 0, 255, "manager.saving_power_mode")


def number(  # noqa: PLR0917 - one positional call shape used by every loader
    raw: Mapping[str, Any], key: str, where: str, lo: float, hi: float, default: Any
) -> Any:
    """``raw[key]`` as a checked number (or ``default`` when absent); errors name ``where.key``."""
    if key not in raw or raw[key] is None:
        return default
    value = raw[key]
    _check_range(value, lo, hi, f"{where}.{key}")
    return value


def _check_range(value: Any, lo: float, hi: float, where: str) -> None:
    validate.check_range(value, lo, hi, where, ManagerConfigError)


def reject_unknown(raw: Mapping[str, Any], allowed: set[str] | frozenset[str], where: str) -> None:
    validate.reject_unknown(raw, allowed, where, ManagerConfigError)


def mapping(raw: Any, where: str) -> Mapping[str, Any]:
    return validate.mapping(raw, where, ManagerConfigError)


def parse_level(raw: Any, where: str) -> PriorityLevel:
    """A priority level from its name (case-insensitive) or its value 0..3."""
    if isinstance(raw, str) and raw.upper() in PriorityLevel.__members__:
        return PriorityLevel[raw.upper()]
    if (
        isinstance(raw, int)
        and not isinstance(raw, bool)
        and raw in {lv.value for lv in PriorityLevel}
    ):
        return PriorityLevel(raw)
    names = ", ".join(lv.name for lv in PriorityLevel)
    raise ManagerConfigError(f"{where} = {raw!r} is not a priority level ({names} or 0..3)")


def _pair(raw: Any, where: str) -> tuple[float, float]:
    if not isinstance(raw, (list, tuple)) or len(raw) != 2:
        raise ManagerConfigError(f"{where} must be a pair [lo, hi], got {raw!r}")
    for i, v in enumerate(raw):
        _check_range(v, -math.inf, math.inf, f"{where}[{i}]")
    return (float(raw[0]), float(raw[1]))


def _khz_map(raw: Any, where: str) -> Mapping[str, int]:
    out: dict[str, int] = {}
    for proc, khz in mapping(raw, where).items():
        if isinstance(khz, bool) or not isinstance(khz, int):
            raise ManagerConfigError(f"{where}.{proc} must be an integer kHz, got {khz!r}")
        _check_range(khz, 1, 1e9, f"{where}.{proc}")
        out[str(proc)] = khz
    return MappingProxyType(out)


_NESTED = frozenset(
    {
        "levels",
        "power",
        "thermal",
        "saving_level",
        "saving_power_mode",
        "correction_bounds",
        "temperature_range_c",
        "frequency_caps_khz",
        "frequency_floors_khz",
    }
)


def config_from_dict(raw: Any, where: str = "manager") -> ManagerConfig:
    """Build a :class:`ManagerConfig` from plain data (YAML), naming any bad field."""
    raw = mapping(raw, where)
    base = ManagerConfig()
    simple = {f.name for f in fields(ManagerConfig)} - _NESTED
    reject_unknown(raw, simple | _NESTED, where)
    kw: dict[str, Any] = {}
    for key in simple & set(raw):
        default = getattr(base, key)
        value = raw[key]
        integer = isinstance(default, int) and not isinstance(default, bool)
        if integer and (isinstance(value, bool) or not isinstance(value, int)):
            raise ManagerConfigError(f"{where}.{key} must be an integer, got {value!r}")
        _check_range(value, -math.inf, math.inf, f"{where}.{key}")
        kw[key] = value
    if "saving_level" in raw:
        kw["saving_level"] = parse_level(raw["saving_level"], f"{where}.saving_level")
    if raw.get("saving_power_mode") is not None:
        value = raw["saving_power_mode"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ManagerConfigError(f"{where}.saving_power_mode must be an integer mode id")
        kw["saving_power_mode"] = int(number(raw, "saving_power_mode", where, 0, 255, None))
    for key in ("correction_bounds", "temperature_range_c"):
        if key in raw:
            kw[key] = _pair(raw[key], f"{where}.{key}")
    for key in ("frequency_caps_khz", "frequency_floors_khz"):
        if key in raw:
            kw[key] = _khz_map(raw[key], f"{where}.{key}")
    if "levels" in raw:
        levels = dict(base.levels)
        for name, raw_body in mapping(raw["levels"], f"{where}.levels").items():
            lw = f"{where}.levels.{name}"
            lv = parse_level(name, lw)
            body = mapping(raw_body, lw)
            reject_unknown(body, {f.name for f in fields(LevelPolicy)}, lw)
            cur = levels[lv]
            levels[lv] = LevelPolicy(
                accuracy_weight=number(body, "accuracy_weight", lw, 0, 1e6, cur.accuracy_weight),
                energy_weight=number(body, "energy_weight", lw, 0, 1e6, cur.energy_weight),
                latency_scale=number(body, "latency_scale", lw, 0.1, 10, cur.latency_scale),
                min_accuracy=number(body, "min_accuracy", lw, 0, 1, cur.min_accuracy),
            )
        kw["levels"] = MappingProxyType(levels)
    if "power" in raw:
        power = dict(base.power)
        for name, raw_body in mapping(raw["power"], f"{where}.power").items():
            pw = f"{where}.power.{name}"
            body = mapping(raw_body, pw)
            reject_unknown(body, {f.name for f in fields(ProcessorPower)}, pw)
            prior = power.get(name, ProcessorPower(0.5, 5.0))
            power[name] = ProcessorPower(
                static_w=number(body, "static_w", pw, 0, 1e3, prior.static_w),
                dynamic_w=number(body, "dynamic_w", pw, 0, 1e3, prior.dynamic_w),
                v_min_ratio=number(body, "v_min_ratio", pw, 0.05, 1, prior.v_min_ratio),
            )
        kw["power"] = MappingProxyType(power)
    if "thermal" in raw:
        tw = f"{where}.thermal"
        body = mapping(raw["thermal"], tw)
        reject_unknown(body, {f.name for f in fields(ThermalPolicy)}, tw)
        zones = mapping(body.get("zones"), f"{tw}.zones")
        for proc, zone in zones.items():
            if not isinstance(zone, str) or not zone:
                raise ManagerConfigError(f"{tw}.zones.{proc} must be a zone name, got {zone!r}")
        trips = mapping(body.get("trip_c"), f"{tw}.trip_c")
        for zone in trips:
            number(trips, zone, f"{tw}.trip_c", -40, 200, None)
        thermal = base.thermal
        kw["thermal"] = ThermalPolicy(
            zones=MappingProxyType(dict(zones)),
            trip_c=MappingProxyType({k: float(v) for k, v in trips.items()}),
            margin_c=number(body, "margin_c", tw, 0, 100, thermal.margin_c),
            hysteresis_c=number(body, "hysteresis_c", tw, 0, 100, thermal.hysteresis_c),
            dwell_s=number(body, "dwell_s", tw, 0, 3600, thermal.dwell_s),
            observed_hold_s=number(body, "observed_hold_s", tw, 0.1, 3600, thermal.observed_hold_s),
        )
    try:
        return replace(base, **kw)
    except ManagerConfigError as exc:
        # __post_init__ names fields "manager.<key>"; keep the caller's prefix
        raise ManagerConfigError(str(exc).replace("manager.", f"{where}.", 1)) from None
