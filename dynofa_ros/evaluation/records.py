"""What one run produced, in one form whatever ran it (simulate, fast or live replay, realtime),
so that metrics and reports read every run the same way.

:class:`RunResults` holds a :class:`RunInfo` and the run's :class:`FrameRecord`,
:class:`Event`, :class:`CommandRecord` and :class:`Sample` lists (times in seconds from the
run's ``t0_ns``; ``None`` = unknown). :class:`RecordBuilder` joins what the nodes publish
(classification, status, telemetry, commands) into frame records, from a result bag or from
the closed loop alike. The types, the join rules, the results file (``*.results.jsonl``) and
the per-frame CSV are described in docs/evaluation.md, "Results (records)".
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import io
import itertools
import json
import math
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

from dynofa_ros.configuration import KEEP, Configuration
from dynofa_ros.errors import DynofaError
from dynofa_ros.fileio import atomic_path, atomic_write_text
from dynofa_ros.validate import is_number, json_safe

RESULTS_FORMAT = "dynofa-results"
RESULTS_VERSION = 1
RESULTS_SUFFIX = ".results.jsonl"
LEVEL_NAMES = {0: "LOW", 1: "NORMAL", 2: "HIGH", 3: "CRITICAL"}
DEFAULT_BATTERY_THRESHOLDS = (0.5, 0.2, 0.1)


class ResultsError(DynofaError):
    """A results file or result bag that cannot be read; names the file and line or topic."""


@dataclass(frozen=True)
class FrameRecord:
    t_s: float  # camera stamp, seconds from the run's t0
    model: str
    frame_seq: int  # 1-based per model (ClassificationResult.frame_seq)
    subnet_id: str
    processor: str
    threads: int
    cpu_frequency_khz: int  # 0 = unknown
    gpu_frequency_khz: int  # 0 = unknown
    latency_ms: float
    target_ms: float | None  # deadline in force (None: none)
    deadline_missed: bool | None  # latency_ms > target_ms
    predicted: int | None  # top-1 class id
    label: int | None  # ground truth (None: no ground truth for this frame)
    correct: bool | None  # predicted == label
    power_w: float | None
    energy_j: float | None  # energy of this frame
    energy_total_j: float | None  # the node's running total
    battery: float | None  # state of charge [0, 1] at the frame
    max_temperature_c: float | None  # hottest zone at the frame
    throttled: bool | None
    command_seq: int = 0  # last command applied before this frame
    stamp_ns: int = 0  # absolute camera stamp
    power_mode: int | None = None  # board power mode (nvpmodel id) in force; None = unknown

    @property
    def config(self) -> Configuration:
        """What the frame ran with (what a reconfiguration changes)."""
        return Configuration(
            self.subnet_id,
            self.processor,
            self.threads,
            self.cpu_frequency_khz,
            self.gpu_frequency_khz,
            self.power_mode,
        )


def frame_record(
    *,
    t_s: float,
    model: str,
    frame_seq: int,
    subnet_id: str,
    latency_ms: float,
    target_ms: float | None = None,
    predicted: int | None = None,
    label: int | None = None,
    processor: str = "",
    threads: int = 0,
    cpu_frequency_khz: int = 0,
    gpu_frequency_khz: int = 0,
    power_w: float | None = None,
    energy_j: float | None = None,
    energy_total_j: float | None = None,
    battery: float | None = None,
    max_temperature_c: float | None = None,
    throttled: bool | None = None,
    command_seq: int = 0,
    stamp_ns: int = 0,
    power_mode: int | None = None,
) -> FrameRecord:
    """A :class:`FrameRecord` with ``deadline_missed`` (``latency_ms > target_ms``) and
    ``correct`` (``predicted == label``) derived the one way every producer must use."""
    target = None if target_ms is None or target_ms <= 0 else float(target_ms)
    return FrameRecord(
        t_s=float(t_s),
        model=model,
        frame_seq=int(frame_seq),
        subnet_id=subnet_id,
        processor=processor,
        threads=int(threads),
        cpu_frequency_khz=int(cpu_frequency_khz),
        gpu_frequency_khz=int(gpu_frequency_khz),
        latency_ms=float(latency_ms),
        target_ms=target,
        deadline_missed=None if target is None else float(latency_ms) > target,
        predicted=None if predicted is None else int(predicted),
        label=None if label is None else int(label),
        correct=None if label is None or predicted is None else int(predicted) == int(label),
        power_w=power_w,
        energy_j=energy_j,
        energy_total_j=energy_total_j,
        battery=battery,
        max_temperature_c=max_temperature_c,
        throttled=throttled,
        command_seq=int(command_seq),
        stamp_ns=int(stamp_ns),
        power_mode=None if power_mode is None or power_mode < 0 else int(power_mode),
    )


@dataclass(frozen=True)
class Event:
    t_s: float
    kind: str  # "priority" | "corunner" | "battery_threshold" | free
    label: str  # short text for plots and tables
    model: str | None = None  # None: concerns every model
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandRecord:
    """A command sent to ``model``; in ``config`` the empty values ("", 0, None) mean "keep".
    The results file keeps ``config``'s fields flat, in its place."""

    t_s: float
    model: str
    seq: int
    config: Configuration
    latency_target_ms: float
    reason: str = ""


@dataclass(frozen=True)
class Sample:
    """A telemetry value. Series: ``battery`` (state of charge [0, 1]), ``temperature/<zone>``
    (°C), ``ambient`` (°C), ``throttled`` (0 / 1, a step function), ``power`` (board power, W),
    ``board_energy`` (the board's cumulative energy counter, J), ``power_mode`` (nvpmodel id)."""

    t_s: float
    series: str
    value: float


@dataclass(frozen=True)
class ModelInfo:
    """A model's scenario settings: its default latency target and the camera it reads."""

    latency_target_ms: float | None = None
    camera: str | None = None


@dataclass(frozen=True)
class RunInfo:
    """What a run was. ``extra`` is free JSON; keys the report uses: ``subnets`` (list of
    ``{"id", "accuracy", "macs"}`` fastest first, :func:`subnets_extra`) and ``settings``
    (mapping shown in the report's run section)."""

    name: str  # label in reports (usually the policy); unique among the runs of one report
    policy: str = ""
    scenario: str = ""
    source: str = ""  # bag or file it came from
    mode: str = ""  # "live" (DDS replay) | "fast" (in-process) | ""
    t0_ns: int = 0  # stamp of scenario time 0 (FrameRecord.t_s = (stamp_ns - t0_ns) / 1e9)
    duration_s: float | None = None  # None: up to the last frame or sample
    models: Mapping[str, ModelInfo] = field(default_factory=dict)
    throttle_temperature_c: float | None = None  # without a throttled series: max temp >= this
    extra: dict[str, Any] = field(default_factory=dict)  # filled in as a run ends

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = {k: asdict(v) for k, v in self.models.items()}
        return d

    @classmethod
    def for_scenario(
        cls,
        scenario: Any,
        name: str,
        *,
        policy: str = "",
        mode: str = "",
        source: str = "",
        throttle_temperature_c: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> RunInfo:
        """The run of a :class:`~.scenario.Scenario`: its name, ``t0_ns`` (start stamp),
        duration, and each model's latency target (the initial mission's, when it sets one)
        and camera."""
        mission = getattr(scenario, "mission", None)
        start_target = float(mission[0].latency_target_ms) if mission else 0.0
        return cls(
            name=name,
            policy=policy,
            scenario=scenario.name,
            source=source,
            mode=mode,
            t0_ns=scenario.start_ns,
            duration_s=float(scenario.duration_s),
            models={
                m.name: ModelInfo(float(start_target or m.latency_target_ms), m.camera)
                for m in scenario.models
            },
            throttle_temperature_c=throttle_temperature_c,
            extra=dict(extra or {}),
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunInfo:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["models"] = {
            str(k): ModelInfo(
                **{a: b for a, b in (v or {}).items() if a in ModelInfo.__dataclass_fields__}
            )
            for k, v in (d.get("models") or {}).items()
        }
        kw["extra"] = dict(d.get("extra") or {})
        if "name" not in kw or not isinstance(kw["name"], str) or not kw["name"]:
            raise ResultsError("run header: field 'name' is missing or not a non-empty string")
        for key in ("t0_ns",):
            if key in kw and (not isinstance(kw[key], int) or isinstance(kw[key], bool)):
                raise ResultsError(f"run header: field {key!r} = {kw[key]!r} is not an integer")
        for key in ("duration_s", "throttle_temperature_c"):
            if kw.get(key) is not None and not is_number(kw[key]):
                raise ResultsError(f"run header: field {key!r} = {kw[key]!r} is not a number")
        return cls(**kw)


@dataclass
class RunResults:
    info: RunInfo
    frames: list[FrameRecord] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    commands: list[CommandRecord] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        seen = dict.fromkeys(self.info.models)
        for f in self.frames:
            seen.setdefault(f.model)
        return list(seen)

    def frames_of(self, model: str) -> list[FrameRecord]:
        return [f for f in self.frames if f.model == model]

    def series(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.series == name]

    @property
    def duration_s(self) -> float:
        if self.info.duration_s is not None:
            return float(self.info.duration_s)
        ends = [f.t_s for f in self.frames] + [s.t_s for s in self.samples]
        return max(ends, default=0.0)


# ------------------------------------------------------------------------------ builder
class _Series:
    """A step function of time: value at t = last value set at or before t."""

    def __init__(self) -> None:
        self.t: list[int] = []
        self.v: list[float] = []

    def add(self, t_ns: int, value: float) -> None:
        i = bisect.bisect_right(self.t, t_ns)
        self.t.insert(i, t_ns)
        self.v.insert(i, value)

    def at(self, t_ns: int) -> float | None:
        i = bisect.bisect_right(self.t, t_ns)
        return self.v[i - 1] if i else None

    def last(self, t_ns: int) -> tuple[int, float] | None:
        """``(stamp, value)`` of the last value set at or before ``t_ns``."""
        i = bisect.bisect_right(self.t, t_ns)
        return (self.t[i - 1], self.v[i - 1]) if i else None


@dataclass
class _Classification:
    stamp_ns: int
    model: str
    frame_seq: int
    subnet_id: str
    predicted: int | None
    latency_ms: float
    command_seq: int


class RecordBuilder:
    """Collect node outputs and scenario inputs of one run; :meth:`build` joins them.

    Stamps are nanoseconds in one clock (the replay's); ``info.t0_ns`` is scenario time 0.
    ``info.models[model].camera`` names a model's camera (ground truth is looked up by camera and
    stamp; with a single labelled camera every model uses it). :meth:`build` adds an event each
    time the battery falls below one of ``battery_thresholds``.
    """

    def __init__(
        self, info: RunInfo, battery_thresholds: Iterable[float] = DEFAULT_BATTERY_THRESHOLDS
    ) -> None:
        self.info = info
        self.battery_thresholds = tuple(float(x) for x in battery_thresholds)
        self._gt: dict[tuple[str, int], int] = {}
        self._gt_cameras: set[str] = set()
        self._cls: dict[tuple[str, int], _Classification] = {}
        self._status: dict[tuple[str, int], dict[str, Any]] = {}
        self._battery = _Series()
        self._temps: dict[str, _Series] = {}
        self._throttled = _Series()
        self._power_mode = _Series()
        self.events: list[Event] = []
        self.commands: list[CommandRecord] = []
        self.samples: list[Sample] = []

    @classmethod
    def for_scenario(
        cls,
        scenario: Any,
        name: str,
        *,
        policy: str = "",
        mode: str = "",
        source: str = "",
        throttle_temperature_c: float | None = None,
        extra: Mapping[str, Any] | None = None,
        events: bool = True,
    ) -> RecordBuilder:
        """A builder for a run of ``scenario`` (:meth:`RunInfo.for_scenario`), with the battery
        thresholds of the scenario and, with ``events``, its priority and co-runner events
        already added (:func:`scenario_events`): the in-process mode's starting point."""
        info = RunInfo.for_scenario(
            scenario,
            name,
            policy=policy,
            mode=mode,
            source=source,
            throttle_temperature_c=throttle_temperature_c,
            extra=extra,
        )
        thresholds = (
            scenario.battery.thresholds
            if scenario.battery is not None
            else DEFAULT_BATTERY_THRESHOLDS
        )
        b = cls(info, thresholds)
        if events:
            b.events.extend(scenario_events(scenario))
        return b

    def t(self, stamp_ns: int) -> float:
        """Seconds from ``t0`` of a stamp."""
        return (stamp_ns - self.info.t0_ns) / 1e9

    # inputs --------------------------------------------------------------------------
    def ground_truth(self, camera: str, stamp_ns: int, label: int) -> None:
        """The true class of the frame of ``camera`` stamped ``stamp_ns``."""
        self._gt[(camera, stamp_ns)] = int(label)
        self._gt_cameras.add(camera)

    def classification(
        self,
        model: str,
        stamp_ns: int,
        *,
        frame_seq: int,
        subnet_id: str,
        class_ids: Iterable[int],
        latency_ms: float,
        command_seq: int = 0,
    ) -> None:
        """A ``ClassificationResult``: ``stamp_ns`` is the camera frame's stamp, ``class_ids``
        best first (top-1 is the prediction), ``frame_seq`` 1-based per model."""
        ids = [int(c) for c in class_ids]
        self._cls[(model, int(frame_seq))] = _Classification(
            stamp_ns,
            model,
            int(frame_seq),
            subnet_id,
            ids[0] if ids else None,
            float(latency_ms),
            int(command_seq),
        )

    def status(self, model: str, frames_processed: int, **fields_: Any) -> None:
        """``PerceptionStatus`` fields by name (``subnet_id``, ``processor``, ``threads``,
        ``cpu_frequency_khz``, ``gpu_frequency_khz``, ``latency_ms``, ``latency_target_ms``,
        ``power_w``, ``energy_per_frame_mj``, ``energy_total_j``, ``last_command_seq``, and
        ``power_mode`` where the producer knows it; others are ignored) after frame
        ``frames_processed`` of ``model``. The first status with a count wins (a later one with
        the same count reports a rejected command, not a frame)."""
        self._status.setdefault((model, int(frames_processed)), fields_)

    def battery(self, stamp_ns: int, soc: float) -> None:
        """State of charge in [0, 1] (non-finite values are ignored)."""
        if soc is None or not math.isfinite(soc):
            return
        self._battery.add(stamp_ns, float(soc))
        self.samples.append(Sample(self.t(stamp_ns), "battery", float(soc)))

    def temperature(
        self, stamp_ns: int, zone: str, celsius: float, *, ambient: bool = False
    ) -> None:
        """A thermal zone's temperature (``ambient=True``: the ambient, not a zone)."""
        if celsius is None or not math.isfinite(celsius):
            return
        if ambient:
            self.samples.append(Sample(self.t(stamp_ns), "ambient", float(celsius)))
            return
        self._temps.setdefault(zone, _Series()).add(stamp_ns, float(celsius))
        self.samples.append(Sample(self.t(stamp_ns), f"temperature/{zone}", float(celsius)))

    def power(self, stamp_ns: int, watts: float) -> None:
        """Board power (the ``power`` series; frames carry the perception node's own)."""
        if watts is not None and math.isfinite(watts):
            self.samples.append(Sample(self.t(stamp_ns), "power", float(watts)))

    def load(self, stamp_ns: int, processor: str, utilisation: float) -> None:
        """A processor's busy share as the board reports it (series ``load/<processor>``)."""
        if utilisation is not None and math.isfinite(utilisation):
            self.samples.append(Sample(self.t(stamp_ns), f"load/{processor}", float(utilisation)))

    def board_energy(self, stamp_ns: int, joules: float) -> None:
        """The board's cumulative energy counter (J, any origin): the run's board energy is its
        increase from the first to the last sample (series ``board_energy``)."""
        if joules is not None and math.isfinite(joules):
            self.samples.append(Sample(self.t(stamp_ns), "board_energy", float(joules)))

    def power_mode(self, stamp_ns: int, mode: int | None) -> None:
        """The board's power mode (nvpmodel id) from ``stamp_ns`` on (``None`` / negative:
        unknown, ignored). A frame takes the mode in force at its stamp."""
        if mode is None or mode < 0:
            return
        self._power_mode.add(stamp_ns, float(mode))
        self.samples.append(Sample(self.t(stamp_ns), "power_mode", float(mode)))

    def throttled(self, stamp_ns: int, value: bool) -> None:
        """Whether the board throttles from ``stamp_ns`` on (a step function)."""
        self._throttled.add(stamp_ns, 1.0 if value else 0.0)
        self.samples.append(Sample(self.t(stamp_ns), "throttled", 1.0 if value else 0.0))

    def event(
        self, stamp_ns: int, kind: str, label: str, model: str | None = None, **data: Any
    ) -> None:
        """Any other event (``Event.data`` = ``data``)."""
        self.events.append(Event(self.t(stamp_ns), kind, label, model, data))

    def command(
        self,
        stamp_ns: int,
        model: str,
        *,
        seq: int,
        config: Configuration = KEEP,
        latency_target_ms: float = 0.0,
        reason: str = "",
    ) -> None:
        """A ``ReconfigurationCommand`` sent to ``model`` (empty / 0 / None = keep)."""
        self.commands.append(
            CommandRecord(
                self.t(stamp_ns), model, int(seq), config, float(latency_target_ms), reason
            )
        )

    # output --------------------------------------------------------------------------
    def _camera(self, model: str) -> str | None:
        info = self.info.models.get(model)
        if info is not None and info.camera:
            return info.camera
        if len(self._gt_cameras) == 1:
            return next(iter(self._gt_cameras))
        return None

    def _power_mode_at(
        self, model: str, stamp_ns: int, command_seq: int, status: Mapping[str, Any]
    ) -> int | None:
        """The power mode of a frame: the status's own, else the later of the last telemetry
        value and the last power mode set by a command this model had applied."""
        own = status.get("power_mode")
        if isinstance(own, int) and not isinstance(own, bool) and own >= 0:
            return own
        best: tuple[float, int] | None = None
        seen = self._power_mode.last(stamp_ns)
        if seen is not None:
            best = (self.t(seen[0]), round(seen[1]))
        applied = [
            (c.seq, c.t_s, mode)
            for c in self.commands
            if c.model == model
            and (mode := c.config.power_mode) is not None
            and 0 < c.seq <= command_seq
        ]
        if applied:
            _, t_s, mode = max(applied)
            if best is None or t_s >= best[0]:
                best = (t_s, mode)
        return None if best is None else best[1]

    def _deadlines(self) -> Callable[[str, float], float | None]:
        """The deadline a frame is judged by: the scenario's, whatever the policy told the node
        (a baseline that ignores a mission's new target still misses it). The model's own
        target, or the latest mission change's ``latency_target_ms`` when > 0 (every model's);
        ``None`` for a model the scenario does not know (then the node's own target counts)."""
        changes = sorted(
            (e.t_s, float(e.data.get("latency_target_ms") or 0.0))
            for e in self.events
            if e.kind == "priority"
        )
        times = [t for t, _ in changes]

        def deadline(model: str, t_s: float) -> float | None:
            info = self.info.models.get(model)
            if info is None:
                return None
            i = bisect.bisect_right(times, t_s + 1e-9) - 1
            return changes[i][1] if i >= 0 and changes[i][1] > 0 else info.latency_target_ms

        return deadline

    def build(self, battery_thresholds: Iterable[float] | None = None) -> RunResults:
        """Join everything into a :class:`RunResults` (``battery_thresholds`` overrides the
        builder's; ``()`` adds no threshold event)."""
        frames: list[FrameRecord] = []
        deadline = self._deadlines()
        has_throttle = bool(self._throttled.t)
        limit = self.info.throttle_temperature_c
        for (model, seq), c in sorted(self._cls.items(), key=lambda kv: (kv[1].stamp_ns, kv[0])):
            st = self._status.get((model, seq), {})
            camera = self._camera(model)
            label = self._gt.get((camera, c.stamp_ns)) if camera is not None else None
            latency = _num(st.get("latency_ms")) or c.latency_ms
            target = deadline(model, self.t(c.stamp_ns)) or _num(st.get("latency_target_ms"))
            temps = [s.at(c.stamp_ns) for s in self._temps.values()]
            temps_known = [x for x in temps if x is not None]
            max_temp = max(temps_known) if temps_known else None
            if has_throttle:
                th = self._throttled.at(c.stamp_ns)
                throttled = None if th is None else th > 0.5
            elif limit is not None and max_temp is not None:
                throttled = max_temp >= limit
            else:
                throttled = None
            energy_mj = _num(st.get("energy_per_frame_mj"))
            command_seq = int(st.get("last_command_seq", c.command_seq) or c.command_seq)
            frames.append(
                frame_record(
                    t_s=self.t(c.stamp_ns),
                    model=model,
                    frame_seq=seq,
                    subnet_id=c.subnet_id or str(st.get("subnet_id", "")),
                    processor=str(st.get("processor", "")),
                    threads=int(st.get("threads", 0) or 0),
                    cpu_frequency_khz=int(st.get("cpu_frequency_khz", 0) or 0),
                    gpu_frequency_khz=int(st.get("gpu_frequency_khz", 0) or 0),
                    latency_ms=latency,
                    target_ms=target,
                    predicted=c.predicted,
                    label=label,
                    power_w=_num(st.get("power_w")),
                    energy_j=None if energy_mj is None else energy_mj / 1000.0,
                    energy_total_j=_num(st.get("energy_total_j")),
                    battery=self._battery.at(c.stamp_ns),
                    max_temperature_c=max_temp,
                    throttled=throttled,
                    command_seq=command_seq,
                    stamp_ns=c.stamp_ns,
                    power_mode=self._power_mode_at(model, c.stamp_ns, command_seq, st),
                )
            )
        samples = list(self.samples)
        events = list(self.events)
        thresholds = self.battery_thresholds if battery_thresholds is None else battery_thresholds
        events += battery_threshold_events(samples, thresholds)
        if not has_throttle and limit is not None and self._temps:
            samples.extend(_throttle_samples(self._temps, limit, self.t))
        return RunResults(
            info=self.info,
            frames=frames,
            events=sorted(events, key=lambda e: e.t_s),
            commands=sorted(self.commands, key=lambda c: (c.t_s, c.seq)),
            samples=sorted(samples, key=lambda s: (s.series, s.t_s)),
        )


def _throttle_samples(temps: dict[str, _Series], limit: float, t: Any) -> list[Sample]:
    stamps = sorted({s for series in temps.values() for s in series.t})
    out: list[Sample] = []
    for s in stamps:
        vals = [x for x in (series.at(s) for series in temps.values()) if x is not None]
        out.append(Sample(t(s), "throttled", 1.0 if vals and max(vals) >= limit else 0.0))
    return out


def _num(x: Any) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# ------------------------------------------------------------------------------ subnets
def subnets_extra(*families: Any, accuracy: bool = True) -> list[dict[str, Any]]:
    """``RunInfo.extra["subnets"]`` from :class:`~dynofa_ros.family.Family` objects: each
    member's ``id``, ``accuracy`` (top-1 in [0, 1]) and ``macs``, fastest first per family (the
    family's order), each id once. Plots then order sub-networks by it and show accuracies.
    ``accuracy=False`` leaves the accuracies out: a family's top-1 on its own data says nothing
    about frames of another source (a robot's camera, a video)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for family in families:
        for m in family.members:
            if m.id not in seen:
                seen.add(m.id)
                entry: dict[str, Any] = {"id": m.id, "macs": int(m.macs)}
                if accuracy:
                    entry["accuracy"] = float(m.accuracy)
                out.append(entry)
    return out


def subnets_of(info: RunInfo) -> list[dict[str, Any]]:
    """The valid entries of ``info.extra["subnets"]`` (see :func:`subnets_extra`)."""
    raw = info.extra.get("subnets") if isinstance(info.extra, Mapping) else None
    if not isinstance(raw, list):
        return []
    return [dict(s) for s in raw if isinstance(s, Mapping) and isinstance(s.get("id"), str)]


# ------------------------------------------------------------------------------ events


def priority_event(
    t_s: float, level: int, latency_target_ms: float = 0.0, reason: str = ""
) -> Event:
    name = LEVEL_NAMES.get(int(level), str(level))
    label = f"priority {name}" + (f" {latency_target_ms:g} ms" if latency_target_ms else "")
    return Event(
        t_s,
        "priority",
        label,
        None,
        {"level": int(level), "latency_target_ms": float(latency_target_ms), "reason": reason},
    )


def corunner_event(t_s: float, name: str, processor: str, share: float) -> Event:
    label = f"{name} {processor} {share:.0%}" if share > 0 else f"{name} stops"
    return Event(
        t_s, "corunner", label, None, {"name": name, "processor": processor, "share": float(share)}
    )


def battery_threshold_events(
    samples: Iterable[Sample], thresholds: Iterable[float] = DEFAULT_BATTERY_THRESHOLDS
) -> list[Event]:
    """An event each time the ``battery`` series falls below a threshold."""
    out: list[Event] = []
    battery = sorted((s for s in samples if s.series == "battery"), key=lambda s: s.t_s)
    for th in sorted(thresholds, reverse=True):
        for a, b in itertools.pairwise(battery):
            if a.value >= th > b.value:
                out.append(
                    Event(
                        b.t_s,
                        "battery_threshold",
                        f"battery < {th:.0%}",
                        None,
                        {"threshold": float(th)},
                    )
                )
    return sorted(out, key=lambda e: e.t_s)


def scenario_events(scenario: Any) -> list[Event]:
    """Priority changes (after the initial one) and co-runner changes of a
    :class:`~dynofa_ros.evaluation.scenario.Scenario`; battery thresholds come from the battery
    samples (:func:`battery_threshold_events`)."""
    out = [
        priority_event(p.t, p.level, p.latency_target_ms, p.reason) for p in scenario.mission[1:]
    ]
    out += [corunner_event(c.t, c.name, c.processor, c.share) for c in scenario.corunners]
    return sorted(out, key=lambda e: e.t_s)


# ------------------------------------------------------------------------ results file
def _json_default(o: Any) -> Any:
    if isinstance(o, Mapping):
        return dict(o)
    if hasattr(o, "item"):  # numpy scalar
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def results_lines(run: RunResults) -> Iterable[str]:
    """The lines of the results file of ``run`` (without newlines)."""
    header = {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "record": "run",
        **run.info.to_dict(),
    }
    yield json.dumps(json_safe(header), default=_json_default, allow_nan=False)
    for kind, items in (
        ("event", run.events),
        ("command", run.commands),
        ("sample", run.samples),
        ("frame", run.frames),
    ):
        for item in items:
            d = {"record": kind, **json_safe(_flat(asdict(item)))}
            yield json.dumps(d, default=_json_default, allow_nan=False)


def _flat(d: dict[str, Any]) -> dict[str, Any]:
    """A record's ``config`` (a :class:`Configuration`) spelled out in its place."""
    if not isinstance(d.get("config"), dict):
        return d
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(v if k == "config" else {k: v})
    return out


def write_results(path: str | os.PathLike[str], run: RunResults) -> Path:
    """Write ``run`` as a results file (``*.results.jsonl``), atomically."""
    p = Path(path)
    with atomic_path(p) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for line in results_lines(run):
            fh.write(line + "\n")
    return p


_KINDS: dict[str, type] = {
    "frame": FrameRecord,
    "event": Event,
    "command": CommandRecord,
    "sample": Sample,
}


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_value(value: Any, hint: Any) -> tuple[bool, Any]:
    """``(ok, value)``: ``value`` checked against a field's type (ints accepted for floats)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None:
            return type(None) in args, None
        for arg in args:
            if arg is not type(None):
                ok, v = _check_value(value, arg)
                if ok:
                    return True, v
        return False, value
    if hint is float:
        return is_number(value), float(value) if is_number(value) else value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is str:
        return isinstance(value, str), value
    if typing.get_origin(hint) in (Mapping, dict) or hint is Mapping:
        return isinstance(value, Mapping), value
    return True, value


def _record(cls: type, d: Mapping[str, Any], where: str) -> Any:
    """A ``cls`` from a mapping, every field type-checked; the error names the field."""
    hints = _hints(cls)
    kw: dict[str, Any] = {}
    for f in fields(cls):
        if hints[f.name] is Configuration:  # kept flat in the file (see _flat)
            kw[f.name] = _record(Configuration, d, where)
            continue
        if f.name not in d:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ResultsError(f"{where}: field {f.name!r} is missing")
            continue
        ok, value = _check_value(d[f.name], hints[f.name])
        if not ok:
            raise ResultsError(
                f"{where}: field {f.name!r} = {d[f.name]!r} is invalid; "
                f"allowed: {_type_name(hints[f.name])}"
            )
        kw[f.name] = value
    return cls(**kw)


def _type_name(hint: Any) -> str:
    names = {
        float: "a number",
        int: "an integer",
        bool: "true or false",
        str: "a string",
        type(None): "null",
    }
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    return names.get(hint, "an object")


def read_results(path: str | os.PathLike[str]) -> RunResults:
    """Read a results file; :class:`ResultsError` names the file, line and field of a problem."""
    p = Path(path)
    try:
        fh = open(p, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ResultsError(f"cannot read results {p}: {exc.strerror or exc}") from None
    lists: dict[str, list[Any]] = {}
    with fh:
        run: RunResults | None = None
        try:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ResultsError(
                        f"{p}:{lineno}: not JSON ({exc.msg}); is the file truncated?"
                    ) from None
                if not isinstance(d, dict):
                    raise ResultsError(f"{p}:{lineno}: expected a JSON object")
                if run is None:
                    if d.get("format") != RESULTS_FORMAT or d.get("record") != "run":
                        raise ResultsError(
                            f"{p}: not a dynofa results file (line 1 must be the "
                            f"run header with format {RESULTS_FORMAT!r})"
                        )
                    if d.get("version") != RESULTS_VERSION:
                        raise ResultsError(
                            f"{p}: results version {d.get('version')!r} is not "
                            f"supported (this reader: {RESULTS_VERSION})"
                        )
                    info = {k: v for k, v in d.items() if k not in ("format", "version", "record")}
                    try:
                        run = RunResults(RunInfo.from_dict(info))
                    except ResultsError as exc:
                        raise ResultsError(f"{p}:{lineno}: {exc}") from None
                    except TypeError as exc:
                        raise ResultsError(f"{p}:{lineno}: bad run header ({exc})") from None
                    lists = {
                        "frame": run.frames,
                        "event": run.events,
                        "command": run.commands,
                        "sample": run.samples,
                    }
                    continue
                kind = d.get("record")
                cls = _KINDS.get(kind) if isinstance(kind, str) else None
                if cls is None or not isinstance(kind, str):
                    continue
                lists[kind].append(_record(cls, d, f"{p}:{lineno}: {kind}"))
        except UnicodeDecodeError as exc:
            raise ResultsError(f"{p}: not UTF-8 text ({exc.reason}); not a results file") from None
    if run is None:
        raise ResultsError(f"{p}: empty results file")
    return run


# --------------------------------------------------------------------------- CSV
# FrameRecord fields, board settings together (power_mode is last among the fields only so that
# it can have a default)
CSV_COLUMNS = (
    "t_s",
    "model",
    "frame_seq",
    "subnet_id",
    "processor",
    "threads",
    "cpu_frequency_khz",
    "gpu_frequency_khz",
    "power_mode",
    "latency_ms",
    "target_ms",
    "deadline_missed",
    "predicted",
    "label",
    "correct",
    "power_w",
    "energy_j",
    "energy_total_j",
    "battery",
    "max_temperature_c",
    "throttled",
    "command_seq",
    "stamp_ns",
)


COMMAND_COLUMNS = tuple(f.name for f in fields(CommandRecord))


def _csv(columns: tuple[str, ...], items: Iterable[Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for item in items:
        row = []
        for name in columns:
            v = getattr(item, name)
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                row.append("")
            elif isinstance(v, bool):
                row.append("1" if v else "0")
            elif isinstance(v, float):
                row.append(repr(v))
            else:
                row.append(v)
        w.writerow(row)
    return buf.getvalue()


def frames_csv(frames: Iterable[FrameRecord]) -> str:
    """The per-frame CSV text (see the module doc)."""
    return _csv(CSV_COLUMNS, frames)


def commands_csv(commands: Iterable[CommandRecord]) -> str:
    """The commands of a run as CSV (columns :data:`COMMAND_COLUMNS`, empty = unknown)."""
    return _csv(COMMAND_COLUMNS, commands)


def write_frames_csv(path: str | os.PathLike[str], frames: Iterable[FrameRecord]) -> Path:
    """Per-frame CSV (columns :data:`CSV_COLUMNS`; empty cell = unknown; booleans 0 / 1),
    written atomically."""
    atomic_write_text(path, frames_csv(frames))
    return Path(path)


def _parse_cell(text: str, hint: Any) -> Any:
    if text == "":
        return None
    base = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    kind = base[0]
    if kind is bool:
        if text not in ("0", "1"):
            raise ValueError("0 or 1")
        return text == "1"
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    return text


def read_frames_csv(path: str | os.PathLike[str]) -> list[FrameRecord]:
    """Frame records from a per-frame CSV (:func:`write_frames_csv`); columns may come in any
    order, unknown columns are ignored; :class:`ResultsError` names the row and column."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"cannot read per-frame CSV {p}: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    required = [f.name for f in fields(FrameRecord) if f.default is dataclasses.MISSING]
    missing = [c for c in required if c not in header]
    if missing:
        raise ResultsError(f"{p}: not a per-frame CSV; missing column(s) {', '.join(missing)}")
    hints = _hints(FrameRecord)
    out: list[FrameRecord] = []
    for row_no, row in enumerate(reader, 2):
        d: dict[str, Any] = {}
        for name in CSV_COLUMNS:
            if name not in header:
                continue
            cell = (row.get(name) or "").strip()
            try:
                d[name] = _parse_cell(cell, hints[name])
            except ValueError:
                raise ResultsError(
                    f"{p}:{row_no}: column {name!r} = {cell!r} is invalid; "
                    f"allowed: {_type_name(hints[name])}"
                ) from None
        out.append(_record(FrameRecord, d, f"{p}:{row_no}"))
    return out
