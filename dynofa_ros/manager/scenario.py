"""Closed-loop simulator scenarios (``config/scenarios/sim/*.yaml``): typed, validated, defaults
filled in. Every error is a :class:`~dynofa_ros.manager.types.ManagerConfigError` naming the
file, the field, the value and what is allowed.

Format (times ``t`` in simulated seconds from the start; every key optional unless marked)::

    name: one_model                      # required; [A-Za-z0-9_-]
    description: free text
    duration_s: 60                       # required; (0, 3600]
    seed: 0                              # int >= 0: latency jitter of the simulated board
    telemetry_hz: 10                     # (0, 1000]: board telemetry to the manager
    board:                               # the simulated Xavier NX at t = 0
      ambient_c: 25                      # [-40, 125]
      state_of_charge: 1.0               # [0, 1]
      power_mode: 2                      # nvpmodel id 0..8 (2 = 15W_6CORE, the default)
      latency_jitter: 0.02               # [0, 0.5]: log-normal sigma
      thermal_resistance: 3.0            # (0, 100] degC/W (about 6 with the fan stopped)
      start_temperature_c: null          # package temperature at t = 0 (default: ambient)
      base_load_w: 0                     # [0, 1000]: the rest of the robot on the battery
    manager: {}                          # ManagerConfig fields (see manager/config.py)
    models:                              # required, >= 1
      - name: classifier                 # required
        family: builtin:published-nx-gpu # required: builtin:<name> or a family JSON path
                                         # (relative to this file, then to models/)
        frame_rate_hz: 15                # camera rate (0, 1000]
        latency_target_ms: 60            # (0, 60000]; one of the two is required
        min_accuracy: 0                  # [0, 1]
        priority: 1                      # (0, 1000]
        processors: [cuda, cpu]          # restrict the mapping (default: all recorded)
        threads: [1, 2, 4]               # restrict CPU thread counts
        static_member: null              # member of the static baselines (default: best fit)
    mission:                             # MissionPriority changes
      - {t: 0, level: NORMAL, latency_target_ms: 0, min_accuracy: 0, energy_budget_j: 0,
         mission_duration_s: 0, reason: start}
    requirements:                        # per-model requirement changes
      - {t: 20, model: classifier, latency_target_ms: 50, frame_rate_hz: 15, min_accuracy: 0,
         priority: 1}
    corunners:                           # another program starts (share > 0) / stops (share 0)
      - {t: 25, name: gpu_app, processor: cuda, share: 0.5, memory_gbps: 0}
    ambient:    [{t: 50, celsius: 45}]   # step changes of the ambient temperature
    battery:    [{t: 50, soc: 0.15}]     # step changes of the state of charge
    cooling:    [{t: 50, c_per_w: 6}]    # step changes of the thermal resistance
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dynofa_ros.family import Family, FamilyError, load_family
from dynofa_ros.manager.config import (
    ManagerConfig,
    config_from_dict,
    mapping,
    number,
    parse_level,
    reject_unknown,
)
from dynofa_ros.manager.families import BUILTIN
from dynofa_ros.manager.types import ManagerConfigError, ModelSpec, PriorityLevel
from dynofa_ros.platform.nx_data import POWER_MODES

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class BoardSetup:
    ambient_c: float = 25.0
    state_of_charge: float = 1.0
    power_mode: int = 2
    latency_jitter: float = 0.02
    thermal_resistance: float = 3.0
    start_temperature_c: float | None = None
    base_load_w: float = 0.0


@dataclass(frozen=True)
class MissionEvent:
    t: float
    level: PriorityLevel = PriorityLevel.NORMAL
    latency_target_ms: float = 0.0
    min_accuracy: float = 0.0
    energy_budget_j: float = 0.0
    mission_duration_s: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class RequirementEvent:
    t: float
    model: str | None
    latency_target_ms: float | None = None
    frame_rate_hz: float | None = None
    min_accuracy: float | None = None
    priority: float | None = None


@dataclass(frozen=True)
class CoRunnerEvent:
    t: float
    name: str
    processor: str
    share: float  # 0: stop
    memory_gbps: float = 0.0


@dataclass(frozen=True)
class ValueEvent:
    """A step change of one board quantity (ambient_c, soc, c_per_w)."""

    t: float
    kind: str
    value: float


@dataclass(frozen=True)
class Scenario:
    name: str
    duration_s: float
    models: tuple[ModelSpec, ...]
    description: str = ""
    seed: int = 0
    telemetry_hz: float = 10.0
    board: BoardSetup = field(default_factory=BoardSetup)
    manager: ManagerConfig = field(default_factory=ManagerConfig)
    mission: tuple[MissionEvent, ...] = ()
    requirements: tuple[RequirementEvent, ...] = ()
    corunners: tuple[CoRunnerEvent, ...] = ()
    values: tuple[ValueEvent, ...] = ()
    path: Path | None = None


# ------------------------------------------------------------------------------- loading
def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManagerConfigError(f"cannot read scenario {p}: {exc.strerror or exc}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManagerConfigError(f"scenario {p} is not valid YAML: {exc}") from exc
    return scenario_from_dict(raw, source=str(p), base=p.parent)


def _req(raw: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in raw or raw[key] is None:
        raise ManagerConfigError(f"{where}: missing field {key!r}")
    return raw[key]


def _str(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise ManagerConfigError(f"{where} must be a non-empty string, got {raw!r}")
    return raw


def _list(raw: Any, where: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ManagerConfigError(f"{where} must be a list, got {type(raw).__name__}")
    return raw


def _time(raw: Mapping[str, Any], where: str, duration: float) -> float:
    t = number(raw, "t", where, 0.0, duration, None)
    if t is None:
        raise ManagerConfigError(f"{where}: missing field 't' (seconds from the start)")
    return float(t)


def resolve_family(ref: str, where: str, base: Path | None) -> Family:
    """``builtin:<name>`` or a family JSON path (relative to ``base``, then to ``models/``)."""
    if ref.startswith("builtin:"):
        name = ref.removeprefix("builtin:")
        if name not in BUILTIN:
            raise ManagerConfigError(
                f"{where} = {ref!r}: no built-in family {name!r} (one of: "
                + ", ".join(f"builtin:{n}" for n in BUILTIN)
                + ")"
            )
        return BUILTIN[name]()
    candidates = [Path(ref)]
    if not Path(ref).is_absolute():
        if base is not None:
            candidates.insert(0, base / ref)
        from dynofa_ros.resources import models_dir, share_dir

        candidates += [share_dir() / ref, models_dir() / Path(ref).name]
    for c in candidates:
        if c.is_file():
            try:
                return load_family(c)
            except FamilyError as exc:
                raise ManagerConfigError(f"{where}: {exc}") from exc
    raise ManagerConfigError(
        f"{where} = {ref!r}: no such family file (looked in: "
        + ", ".join(str(c) for c in dict.fromkeys(candidates))
        + "); write it with `dynofa search --platform sim-xavier-nx` or use builtin:"
        + "/builtin:".join(BUILTIN)
    )


def _model(raw: Any, where: str, base: Path | None) -> ModelSpec:
    raw = mapping(raw, where)
    allowed = {
        "name",
        "family",
        "frame_rate_hz",
        "latency_target_ms",
        "min_accuracy",
        "priority",
        "processors",
        "threads",
        "static_member",
    }
    reject_unknown(raw, allowed, where)
    name = _str(_req(raw, "name", where), f"{where}.name")
    if not _NAME.match(name):
        raise ManagerConfigError(f"{where}.name = {name!r}: use letters, digits, '_' and '-'")
    family = resolve_family(
        _str(_req(raw, "family", where), f"{where}.family"), f"{where}.family", base
    )
    procs = raw.get("processors")
    if procs is not None:
        procs = tuple(
            _str(p, f"{where}.processors[{i}]")
            for i, p in enumerate(_list(procs, f"{where}.processors"))
        )
    threads = raw.get("threads")
    if threads is not None:
        items = _list(threads, f"{where}.threads")
        for i, t in enumerate(items):
            if isinstance(t, bool) or not isinstance(t, int) or t < 1:
                raise ManagerConfigError(f"{where}.threads[{i}] = {t!r} must be an integer >= 1")
        threads = tuple(items)
    static = raw.get("static_member")
    if static is not None and static not in family.ids:
        raise ManagerConfigError(
            f"{where}.static_member = {static!r} is not in family {family.name} "
            f"(one of: {', '.join(family.ids)})"
        )
    try:
        return ModelSpec(
            name=name,
            family=family,
            latency_target_ms=number(raw, "latency_target_ms", where, 1e-3, 60_000, None),
            frame_rate_hz=number(raw, "frame_rate_hz", where, 1e-3, 1000, None),
            min_accuracy=number(raw, "min_accuracy", where, 0, 1, 0.0),
            priority=number(raw, "priority", where, 1e-3, 1000, 1.0),
            processors=procs,
            threads=threads,
            static_member=static,
        )
    except ManagerConfigError as exc:
        raise ManagerConfigError(f"{where}: {exc}") from None


def scenario_from_dict(raw: Any, source: str = "scenario", base: Path | None = None) -> Scenario:
    raw = mapping(raw, source)
    allowed = {
        "name",
        "description",
        "duration_s",
        "seed",
        "telemetry_hz",
        "board",
        "manager",
        "models",
        "mission",
        "requirements",
        "corunners",
        "ambient",
        "battery",
        "cooling",
    }
    reject_unknown(raw, allowed, source)
    name = _str(_req(raw, "name", source), f"{source}: name")
    if not _NAME.match(name):
        raise ManagerConfigError(f"{source}: name {name!r}: use letters, digits, '_' and '-'")
    duration = float(number(raw, "duration_s", source, 1e-3, 3600, None) or 0)
    if duration <= 0:
        raise ManagerConfigError(f"{source}: missing field 'duration_s' (seconds, (0, 3600])")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ManagerConfigError(f"{source}.seed = {seed!r} must be an integer >= 0")
    tel = float(number(raw, "telemetry_hz", source, 1e-3, 1000, 10.0))

    bw = f"{source}.board"
    b = mapping(raw.get("board"), bw)
    reject_unknown(b, set(BoardSetup.__dataclass_fields__), bw)
    mode = b.get("power_mode", 2)
    if mode not in POWER_MODES or isinstance(mode, bool):
        raise ManagerConfigError(
            f"{bw}.power_mode = {mode!r} is not an nvpmodel id (one of: "
            f"{', '.join(str(i) for i in POWER_MODES)})"
        )
    start = number(b, "start_temperature_c", bw, -40, 150, None)
    board = BoardSetup(
        ambient_c=float(number(b, "ambient_c", bw, -40, 125, 25.0)),
        state_of_charge=float(number(b, "state_of_charge", bw, 0, 1, 1.0)),
        power_mode=int(mode),
        latency_jitter=float(number(b, "latency_jitter", bw, 0, 0.5, 0.02)),
        thermal_resistance=float(number(b, "thermal_resistance", bw, 1e-3, 100, 3.0)),
        start_temperature_c=None if start is None else float(start),
        base_load_w=float(number(b, "base_load_w", bw, 0, 1000, 0.0)),
    )
    manager = config_from_dict(raw.get("manager"), f"{source}.manager")

    models_raw = _list(_req(raw, "models", source), f"{source}.models")
    if not models_raw:
        raise ManagerConfigError(f"{source}.models: at least one model is needed")
    models = tuple(_model(m, f"{source}.models[{i}]", base) for i, m in enumerate(models_raw))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ManagerConfigError(f"{source}.models: duplicate names in {names}")

    mission = []
    for i, item in enumerate(_list(raw.get("mission"), f"{source}.mission")):
        w = f"{source}.mission[{i}]"
        ev = mapping(item, w)
        reject_unknown(ev, set(MissionEvent.__dataclass_fields__), w)
        mission.append(
            MissionEvent(
                t=_time(ev, w, duration),
                level=parse_level(ev.get("level", "NORMAL"), f"{w}.level"),
                latency_target_ms=float(number(ev, "latency_target_ms", w, 0, 60_000, 0.0)),
                min_accuracy=float(number(ev, "min_accuracy", w, 0, 1, 0.0)),
                energy_budget_j=float(number(ev, "energy_budget_j", w, 0, 1e9, 0.0)),
                mission_duration_s=float(number(ev, "mission_duration_s", w, 0, 1e7, 0.0)),
                reason=str(ev.get("reason", "")),
            )
        )
    reqs = []
    for i, item in enumerate(_list(raw.get("requirements"), f"{source}.requirements")):
        w = f"{source}.requirements[{i}]"
        ev = mapping(item, w)
        reject_unknown(ev, set(RequirementEvent.__dataclass_fields__), w)
        model = ev.get("model")
        if model is not None and model not in names:
            raise ManagerConfigError(
                f"{w}.model = {model!r} is not a model (one of: {', '.join(names)})"
            )
        reqs.append(
            RequirementEvent(
                t=_time(ev, w, duration),
                model=model,
                latency_target_ms=number(ev, "latency_target_ms", w, 1e-3, 60_000, None),
                frame_rate_hz=number(ev, "frame_rate_hz", w, 1e-3, 1000, None),
                min_accuracy=number(ev, "min_accuracy", w, 0, 1, None),
                priority=number(ev, "priority", w, 1e-3, 1000, None),
            )
        )
    corunners = []
    for i, item in enumerate(_list(raw.get("corunners"), f"{source}.corunners")):
        w = f"{source}.corunners[{i}]"
        ev = mapping(item, w)
        reject_unknown(ev, set(CoRunnerEvent.__dataclass_fields__), w)
        proc = _str(_req(ev, "processor", w), f"{w}.processor")
        if proc not in ("cpu", "cuda"):
            raise ManagerConfigError(f"{w}.processor = {proc!r} must be cpu or cuda")
        share = float(
            number(ev, "share", w, 0, 0.95, None) if "share" in ev else _req(ev, "share", w)
        )
        corunners.append(
            CoRunnerEvent(
                t=_time(ev, w, duration),
                name=_str(_req(ev, "name", w), f"{w}.name"),
                processor=proc,
                share=share,
                memory_gbps=float(number(ev, "memory_gbps", w, 0, 100, 0.0)),
            )
        )
    values = []
    for key, field_name, lo, hi, kind in (
        ("ambient", "celsius", -40, 125, "ambient_c"),
        ("battery", "soc", 0, 1, "soc"),
        ("cooling", "c_per_w", 1e-3, 100, "c_per_w"),
    ):
        for i, item in enumerate(_list(raw.get(key), f"{source}.{key}")):
            w = f"{source}.{key}[{i}]"
            ev = mapping(item, w)
            reject_unknown(ev, {"t", field_name}, w)
            v = number(ev, field_name, w, lo, hi, None)
            if v is None:
                raise ManagerConfigError(f"{w}: missing field {field_name!r}")
            values.append(ValueEvent(_time(ev, w, duration), kind, float(v)))
    if not math.isfinite(duration):
        raise ManagerConfigError(f"{source}.duration_s must be finite")
    return Scenario(
        name=name,
        duration_s=duration,
        models=models,
        description=str(raw.get("description", "")),
        seed=seed,
        telemetry_hz=tel,
        board=board,
        manager=manager,
        mission=tuple(sorted(mission, key=lambda e: e.t)),
        requirements=tuple(sorted(reqs, key=lambda e: e.t)),
        corunners=tuple(sorted(corunners, key=lambda e: e.t)),
        values=tuple(sorted(values, key=lambda e: e.t)),
        path=None if base is None else Path(source),
    )


def scenarios_dir() -> Path:
    from dynofa_ros.resources import config_dir

    return config_dir() / "scenarios" / "sim"


def find_scenario(ref: str) -> Path:
    """A scenario file by path, or by name in ``config/scenarios/sim``."""
    p = Path(ref)
    if p.is_file():
        return p
    for c in (scenarios_dir() / ref, scenarios_dir() / f"{ref}.yaml"):
        if c.is_file():
            return c
    known = (
        sorted(x.stem for x in scenarios_dir().glob("*.yaml")) if scenarios_dir().is_dir() else []
    )
    raise ManagerConfigError(
        f"scenario {ref!r}: no such file, and no scenario of that name in {scenarios_dir()} "
        f"(one of: {', '.join(known) or 'none'})"
    )
