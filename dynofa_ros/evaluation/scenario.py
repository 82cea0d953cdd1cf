"""Scenario model: what a scenario YAML may say, validated, with defaults filled in.

A scenario describes a run independently of the policy that will face it (cameras, models and
their targets, a timeline of mission, battery, ambient and co-runner load), in one format for
every runner: ``dynofa simulate``, ``dynofa scenario generate`` + ``replay`` and ``dynofa
realtime`` (:func:`runners` says which suit a scenario; a bag stores the normalised scenario,
:meth:`Scenario.to_yaml`, so a replay knows the targets). Every key, range and default, and how
to migrate an old file (:data:`OLD_FORMAT`): docs/evaluation.md, "Scenario format". Every error
is a :class:`ScenarioError` naming the file, the field, the value and what is allowed.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dynofa_ros.errors import DynofaError
from dynofa_ros.validate import Fields, is_number

FORMAT_VERSION = 1
DEFAULT_START_STAMP_S = 1_700_000_000.0
LEVELS = {"LOW": 0, "NORMAL": 1, "HIGH": 2, "CRITICAL": 3}
LEVEL_NAMES = {v: k for k, v in LEVELS.items()}
SOURCES = ("fashion_mnist", "video", "none", "recorded")
INTERPOLATIONS = ("linear", "step")
BUILTIN_PREFIX = "builtin:"
ENCODINGS = ("rgb8", "bgr8", "mono8")
BACKGROUNDS = ("noise", "texture", "flat")
PROCESSORS = ("cpu", "cuda")
SPLITS = ("test", "train")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_TOPIC = re.compile(r"^(/[A-Za-z_][A-Za-z0-9_]*)+$")
_SCENARIO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CHECKPOINT = re.compile(r"^.+\.safetensors$")
_FAMILY = re.compile(r"^(.+\.json|builtin:.+)$")

# Keys of the old ``dynofa simulate`` format (config/scenarios/sim) and how to migrate each.
OLD_FORMAT: dict[str, str] = {
    "telemetry_hz": "drop it (the runner's --telemetry-period-s)",
    "board": "give board.ambient_c as ambient: {interpolate: step, timeline: [{t: 0, celsius: C}]} "
    "and board.state_of_charge as a battery timeline; the other board fields are not scenario "
    "fields",
    "manager": "drop it (manager settings are the runner's)",
    "requirements": "give target changes as mission entries' latency_target_ms (every model)",
    "cooling": "drop it (not a scenario field)",
    "frame_rate_hz": "give the model a camera with that fps (cameras: [{name: NAME, source: none, "
    "fps: F}]) and set the model's camera: NAME",
    "processors": "drop it (every processor of the family is allowed)",
    "threads": "drop it (every thread count of the board is allowed)",
    "static_member": "drop it (the static baselines pick their member)",
    "memory_gbps": "drop it (co-runners take a share of a processor)",
}


class ScenarioError(DynofaError):
    """A scenario that cannot be used; names the file, the field, the value and what is allowed."""


@dataclass(frozen=True)
class CameraSpec:
    name: str = "camera"
    source: str = "fashion_mnist"
    path: str | None = None
    split: str = "test"
    fps: float = 15.0
    width: int = 128
    height: int = 128
    encoding: str = "rgb8"
    compressed: bool = False
    jpeg_quality: int = 90
    item_scale: tuple[float, float] = (0.8, 0.95)
    background: str = "noise"
    background_level: int = 6
    noise_amplitude: int = 6
    topic: str | None = None  # the topic in the bag; None: /<name>/image_raw[/compressed]

    @property
    def bag_topic(self) -> str:
        """Where this camera's frames are in a bag and on the live graph."""
        if self.topic:
            return self.topic
        return f"/{self.name}/image_raw" + ("/compressed" if self.compressed else "")

    @property
    def period_ms(self) -> float:
        return 1000.0 / self.fps

    @property
    def has_ground_truth(self) -> bool:
        return self.source == "fashion_mnist"

    @property
    def has_pixels(self) -> bool:
        """``source: none`` cameras give frames without pixels (timing only)."""
        return self.source != "none"

    def frame_times(self, duration_s: float) -> list[float]:
        """Seconds from t = 0 of every frame: ``i / fps`` for ``i / fps < duration``."""
        n = math.ceil(duration_s * self.fps - 1e-9)
        return [i / self.fps for i in range(max(n, 0))]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    camera: str
    latency_target_ms: float
    min_accuracy: float = 0.0
    priority: float = 1.0
    checkpoint: str | None = None  # None: the replay's checkpoint (see model_file)
    family: str | None = None  # None: the checkpoint's simulated family

    @property
    def builtin_family(self) -> str | None:
        """The name of a ``builtin:<name>`` family (recorded members, no network), else None."""
        if self.family is not None and self.family.startswith(BUILTIN_PREFIX):
            return self.family.removeprefix(BUILTIN_PREFIX)
        return None


@dataclass(frozen=True)
class PriorityChange:
    t: float
    level: int = 1
    latency_target_ms: float = 0.0
    min_accuracy: float = 0.0
    energy_budget_j: float = 0.0
    mission_duration_s: float = 0.0
    reason: str = ""

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES[self.level]


@dataclass(frozen=True)
class Keyframe:
    t: float
    value: float


@dataclass(frozen=True)
class BatterySpec:
    timeline: tuple[Keyframe, ...]
    rate_hz: float = 1.0
    capacity_wh: float = 50.0
    thresholds: tuple[float, ...] = (0.5, 0.2, 0.1)
    interpolate: str = "linear"  # one of INTERPOLATIONS

    def at(self, t: float) -> float:
        return interpolate(self.timeline, t, self.interpolate)


@dataclass(frozen=True)
class AmbientSpec:
    timeline: tuple[Keyframe, ...]
    rate_hz: float = 1.0
    interpolate: str = "linear"  # one of INTERPOLATIONS

    def at(self, t: float) -> float:
        return interpolate(self.timeline, t, self.interpolate)


@dataclass(frozen=True)
class CoRunnerEvent:
    t: float
    name: str
    processor: str
    share: float


@dataclass(frozen=True)
class Scenario:
    name: str
    duration_s: float
    cameras: tuple[CameraSpec, ...]
    models: tuple[ModelSpec, ...]
    mission: tuple[PriorityChange, ...]
    description: str = ""
    seed: int = 0
    start_stamp_s: float = DEFAULT_START_STAMP_S
    platform: str = "sim_xavier_nx"
    battery: BatterySpec | None = None
    ambient: AmbientSpec | None = None
    corunners: tuple[CoRunnerEvent, ...] = ()
    replay: Mapping[str, Any] = field(default_factory=dict)
    realtime: Mapping[str, Any] = field(default_factory=dict)

    @property
    def start_ns(self) -> int:
        return round(self.start_stamp_s * 1e9)

    def camera(self, name: str) -> CameraSpec:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(name)

    def model(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The normalised scenario (every default filled in); :func:`parse` reads it back."""
        out: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "description": self.description,
            "duration_s": self.duration_s,
            "seed": self.seed,
            "start_stamp_s": self.start_stamp_s,
            "platform": self.platform,
            "cameras": [{**asdict(c), "item_scale": list(c.item_scale)} for c in self.cameras],
            "models": [{k: v for k, v in asdict(m).items() if v is not None} for m in self.models],
            "mission": [{**asdict(p), "level": p.level_name} for p in self.mission],
            "corunners": [asdict(c) for c in self.corunners],
            "replay": dict(self.replay),
        }
        if self.realtime:
            out["realtime"] = dict(self.realtime)
        if self.battery is not None:
            out["battery"] = {
                "rate_hz": self.battery.rate_hz,
                "capacity_wh": self.battery.capacity_wh,
                "thresholds": list(self.battery.thresholds),
                "interpolate": self.battery.interpolate,
                "timeline": [{"t": k.t, "soc": k.value} for k in self.battery.timeline],
            }
        if self.ambient is not None:
            out["ambient"] = {
                "rate_hz": self.ambient.rate_hz,
                "interpolate": self.ambient.interpolate,
                "timeline": [{"t": k.t, "celsius": k.value} for k in self.ambient.timeline],
            }
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


def family_accuracy_applies(scenario: Scenario) -> bool:
    """Whether the families' recorded accuracies describe this scenario's frames: frames of the
    dataset they were measured on (with ground truth), or frames without pixels (timing only);
    not real footage (a video, a robot's recording)."""
    return all(c.has_ground_truth or not c.has_pixels for c in scenario.cameras)


def interpolate(timeline: tuple[Keyframe, ...], t: float, mode: str = "linear") -> float:
    """The value at ``t``: piecewise linear (``linear``) or the last keyframe at or before ``t``
    (``step``); the first value before the first keyframe, the last after the last."""
    if t <= timeline[0].t:
        return timeline[0].value
    if mode == "step":
        return next(k.value for k in reversed(timeline) if k.t <= t)
    for a, b in itertools.pairwise(timeline):
        if t <= b.t:
            if b.t == a.t:
                return b.value
            return a.value + (b.value - a.value) * (t - a.t) / (b.t - a.t)
    return timeline[-1].value


# ------------------------------------------------------------------------------- runners
RUNNERS = ("simulate", "replay fast", "replay live", "realtime")


def network_refusal(scenario: Scenario) -> str | None:
    """Why ``scenario`` cannot become a bag and run through the perception node (a model with a
    ``builtin:`` family has no network to run; a ``source: none`` camera has no pixels to
    publish), or ``None`` when it can."""
    for m in scenario.models:
        if m.builtin_family is not None:
            return (
                f"model {m.name!r} has family {m.family!r}: recorded members, no network to run "
                "(run it with `dynofa simulate`)"
            )
    for c in scenario.cameras:
        if not c.has_pixels:
            return (
                f"camera {c.name!r} has source 'none': frames without pixels (run it with "
                "`dynofa simulate`)"
            )
    return None


def require_network(scenario: Scenario, runner: str) -> None:
    """Raise :class:`ScenarioError` when ``runner`` (a bag or the live nodes) cannot run it."""
    why = network_refusal(scenario)
    if why is not None:
        raise ScenarioError(f"scenario {scenario.name}: {runner} needs a network: {why}")


def require_composable(scenario: Scenario, runner: str) -> None:
    """Raise :class:`ScenarioError` when ``runner`` would have to compose frames of a camera
    whose frames exist only in a recorded bag (``source: recorded``)."""
    for c in scenario.cameras:
        if c.source == "recorded":
            raise ScenarioError(
                f"scenario {scenario.name}: {runner} composes camera frames, but camera "
                f"{c.name!r} has source 'recorded' (its frames are in a robot's bag: replay "
                "that bag with `dynofa replay BAG --scenario FILE`)"
            )


def runners(scenario: Scenario) -> tuple[str, ...]:
    """The runners of :data:`RUNNERS` that can run ``scenario`` (``dynofa scenario list``)."""
    real = ("realtime",) if scenario.realtime else ()
    if any(c.source == "recorded" for c in scenario.cameras):
        return (*RUNNERS[1:3], *real)  # replays of the recorded bag
    return (*(RUNNERS[:3] if network_refusal(scenario) is None else RUNNERS[:1]), *real)


# ------------------------------------------------------------------------------- loading
def load(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate a scenario YAML file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {p}: {exc.strerror or exc}") from None
    return parse(text, source=p.name)


def parse(text: str, source: str = "<scenario>") -> Scenario:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"scenario {source}: not valid YAML ({exc})") from None
    return from_dict(data, source=source)


def from_dict(data: Any, source: str = "<scenario>") -> Scenario:
    v = FieldValidator(source)
    if not isinstance(data, Mapping):
        raise ScenarioError(
            f"scenario {source}: expected a mapping at the top level, got {type(data).__name__}"
        )
    _refuse_old_format(v, data)
    v.keys(
        data,
        "",
        {
            "format_version",
            "name",
            "description",
            "duration_s",
            "seed",
            "start_stamp_s",
            "platform",
            "camera",
            "cameras",
            "models",
            "mission",
            "battery",
            "ambient",
            "corunners",
            "replay",
            "realtime",
        },
    )
    version = data.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        v.fail("format_version", version, f"{FORMAT_VERSION}")
    name = v.string(
        data,
        "name",
        required=True,
        pattern=_SCENARIO_NAME,
        allowed="letters, digits, '_', '-', '.'",
    )
    duration = v.number(data, "duration_s", required=True, lo=0.0, hi=3600.0, lo_open=True)
    seed = v.integer(data, "seed", default=0, lo=0, hi=2**32 - 1)
    start = v.number(data, "start_stamp_s", default=DEFAULT_START_STAMP_S, lo=0.0, hi=4e9)
    platform = v.string(data, "platform", default="sim_xavier_nx")
    description = v.string(data, "description", default="")

    if "camera" in data and "cameras" in data:
        raise ScenarioError(f"scenario {source}: give 'camera' or 'cameras', not both")
    if "cameras" in data:
        items = v.sequence(data, "cameras", min_len=1)
        cameras = tuple(_camera(v, item, f"cameras[{i}]", None) for i, item in enumerate(items))
    else:
        cameras = (_camera(v, data.get("camera", {}), "camera", "camera"),)
    names = [c.name for c in cameras]
    for i, n in enumerate(names):
        if n in names[:i]:
            v.fail(f"cameras[{i}].name", n, "a name not used by another camera")

    if "models" in data:
        items = v.sequence(data, "models", min_len=1)
        models = tuple(_model(v, item, f"models[{i}]", cameras) for i, item in enumerate(items))
    elif not cameras[0].has_pixels:
        v.fail(
            "models",
            None,
            f"models with a builtin: family (camera {cameras[0].name!r} has source 'none': "
            "no pixels for the default model's network)",
        )
    else:
        models = (ModelSpec("classifier", cameras[0].name, cameras[0].period_ms),)
    mnames = [m.name for m in models]
    for i, n in enumerate(mnames):
        if n in mnames[:i]:
            v.fail(f"models[{i}].name", n, "a name not used by another model")

    mission_items = v.sequence(data, "mission", default=[])
    mission = [
        _priority(v, item, f"mission[{i}]", duration) for i, item in enumerate(mission_items)
    ]
    _ordered(v, mission, "mission")
    if not mission or mission[0].t > 0:
        mission.insert(0, PriorityChange(0.0, LEVELS["NORMAL"], reason="scenario start"))

    battery = _battery(v, data["battery"], duration) if data.get("battery") is not None else None
    ambient = _ambient(v, data["ambient"], duration) if data.get("ambient") is not None else None
    corunner_items = v.sequence(data, "corunners", default=[])
    corunners = [
        _corunner(v, item, f"corunners[{i}]", duration) for i, item in enumerate(corunner_items)
    ]
    _ordered(v, corunners, "corunners")
    replay = data.get("replay") or {}
    if not isinstance(replay, Mapping):
        v.fail("replay", replay, "a mapping")
    realtime = data.get("realtime") or {}
    if not isinstance(realtime, Mapping):
        v.fail("realtime", realtime, "a mapping (see config/scenarios/cpu_corunner.yaml)")
    return Scenario(
        name=name,
        description=description,
        duration_s=duration,
        seed=seed,
        start_stamp_s=start,
        platform=platform,
        cameras=cameras,
        models=models,
        mission=tuple(mission),
        battery=battery,
        ambient=ambient,
        corunners=tuple(corunners),
        replay=dict(replay),
        realtime=dict(realtime),
    )


def _refuse_old_format(v: FieldValidator, data: Mapping) -> None:
    """One line naming the first key of the old simulate format and how to migrate it."""
    found = [(k, k) for k in data if k in OLD_FORMAT]
    for key in ("battery", "ambient"):
        if isinstance(data.get(key), list):
            found.append((key, key))
    for i, m in enumerate(data.get("models") or []):
        if isinstance(m, Mapping):
            found += [(f"models[{i}].{k}", k) for k in m if k in OLD_FORMAT]
    for i, c in enumerate(data.get("corunners") or []):
        if isinstance(c, Mapping):
            found += [(f"corunners[{i}].{k}", k) for k in c if k in OLD_FORMAT]
    if not found:
        return
    name, key = found[0]
    how = OLD_FORMAT.get(key, "give it as a mapping {interpolate: step, timeline: [...]}")
    also = f" (old fields too: {', '.join(n for n, _ in found[1:])})" if len(found) > 1 else ""
    raise ScenarioError(
        f"scenario {v.source}: field '{name}' is from the old `dynofa simulate` format "
        f"(config/scenarios/sim, removed); migrate: {how}{also}; see docs/evaluation.md, "
        "'Migrating from the old simulate format'"
    )


def _camera(v: FieldValidator, data: Any, where: str, fixed_name: str | None) -> CameraSpec:
    if not isinstance(data, Mapping):
        v.fail(where, data, "a mapping")
    keys = set(CameraSpec.__dataclass_fields__)
    if fixed_name is not None:
        keys.discard("name")
    v.keys(data, where, keys)
    d = CameraSpec()
    name = fixed_name or v.string(
        data,
        "name",
        where,
        required=True,
        pattern=_NAME,
        allowed="a letter, then letters, digits, '_'",
    )
    source = v.choice(data, "source", where, SOURCES, d.source)
    path = v.string(data, "path", where, default=None)
    if source == "video" and not path:
        v.fail(f"{where}.path", path, "a video file path (source: video needs one)")
    scale = data.get("item_scale", list(d.item_scale))
    if (
        not isinstance(scale, list | tuple)
        or len(scale) != 2
        or not all(is_number(s) and 0 < s <= 1 for s in scale)
        or scale[0] > scale[1]
    ):
        v.fail(f"{where}.item_scale", scale, "[min, max] with 0 < min <= max <= 1")
    return CameraSpec(
        name=name,
        source=source,
        path=path,
        split=v.choice(data, "split", where, SPLITS, d.split),
        fps=v.number(data, "fps", where, default=d.fps, lo=0.1, hi=1000.0),
        width=v.integer(data, "width", where, default=d.width, lo=16, hi=4096),
        height=v.integer(data, "height", where, default=d.height, lo=16, hi=4096),
        encoding=v.choice(data, "encoding", where, ENCODINGS, d.encoding),
        compressed=v.boolean(data, "compressed", where, d.compressed),
        jpeg_quality=v.integer(data, "jpeg_quality", where, default=d.jpeg_quality, lo=1, hi=100),
        item_scale=(float(scale[0]), float(scale[1])),
        background=v.choice(data, "background", where, BACKGROUNDS, d.background),
        background_level=v.integer(
            data, "background_level", where, default=d.background_level, lo=0, hi=255
        ),
        noise_amplitude=v.integer(
            data, "noise_amplitude", where, default=d.noise_amplitude, lo=0, hi=255
        ),
        topic=v.string(
            data,
            "topic",
            where,
            default=None,
            pattern=_TOPIC,
            allowed="an absolute ROS topic name such as /camera/color/image_raw",
        ),
    )


def _model(v: FieldValidator, data: Any, where: str, cameras: tuple[CameraSpec, ...]) -> ModelSpec:
    if not isinstance(data, Mapping):
        v.fail(where, data, "a mapping")
    v.keys(data, where, set(ModelSpec.__dataclass_fields__))
    name = v.string(
        data,
        "name",
        where,
        required=True,
        pattern=_NAME,
        allowed="a letter, then letters, digits, '_'",
    )
    cam_names = [c.name for c in cameras]
    camera = data.get("camera", cam_names[0])
    if camera not in cam_names:
        v.fail(f"{where}.camera", camera, "one of " + ", ".join(cam_names))
    cam = next(c for c in cameras if c.name == camera)
    period = cam.period_ms
    family = v.string(
        data,
        "family",
        where,
        pattern=_FAMILY,
        allowed="a .json family file, or " + ", ".join(BUILTIN_PREFIX + n for n in _builtins()),
    )
    if family is not None and family.startswith(BUILTIN_PREFIX):
        if family.removeprefix(BUILTIN_PREFIX) not in _builtins():
            v.fail(
                f"{where}.family",
                family,
                "one of "
                + ", ".join(BUILTIN_PREFIX + n for n in _builtins())
                + ", or a .json family file",
            )
        if data.get("checkpoint") is not None:
            v.fail(
                f"{where}.checkpoint",
                data["checkpoint"],
                f"none with family {family} (it has no network)",
            )
    elif not cam.has_pixels:
        v.fail(
            f"{where}.camera",
            camera,
            "a camera with pixels (camera "
            f"{camera!r} has source 'none'; only a builtin: family runs on it)",
        )
    return ModelSpec(
        name=name,
        camera=camera,
        latency_target_ms=v.number(
            data, "latency_target_ms", where, default=period, lo=0.0, hi=60000.0, lo_open=True
        ),
        min_accuracy=v.number(data, "min_accuracy", where, default=0.0, lo=0.0, hi=1.0),
        priority=v.number(data, "priority", where, default=1.0, lo=0.0, hi=1000.0, lo_open=True),
        checkpoint=v.string(
            data, "checkpoint", where, pattern=_CHECKPOINT, allowed="a .safetensors file"
        ),
        family=family,
    )


def _builtins() -> tuple[str, ...]:
    from dynofa_ros.manager.families import BUILTIN

    return tuple(BUILTIN)


def model_file(model: ModelSpec, field_name: str) -> Path:
    """The file a model's ``checkpoint`` / ``family`` names: the path as given when it exists,
    else that name in the package's models folder (where the embedded networks live)."""
    from dynofa_ros.resources import models_dir

    value = getattr(model, field_name)
    p = Path(value)
    if p.exists():
        return p
    if not p.is_absolute() and (models_dir() / p).exists():
        return models_dir() / p
    raise ScenarioError(
        f"scenario model {model.name!r}: field '{field_name}' = {value!r} is not a file here nor "
        f"in {models_dir()}; allowed: an existing {field_name} file"
    )


def _time(v: FieldValidator, data: Mapping, where: str, duration: float) -> float:
    return v.number(data, "t", where, required=True, lo=0.0, hi=duration)


def _priority(v: FieldValidator, data: Any, where: str, duration: float) -> PriorityChange:
    if not isinstance(data, Mapping):
        v.fail(where, data, "a mapping")
    v.keys(data, where, set(PriorityChange.__dataclass_fields__))
    level = data.get("level", "NORMAL")
    if isinstance(level, str) and level.upper() in LEVELS:
        level_id = LEVELS[level.upper()]
    elif isinstance(level, int) and not isinstance(level, bool) and level in LEVEL_NAMES:
        level_id = level
    else:
        v.fail(f"{where}.level", level, "one of LOW, NORMAL, HIGH, CRITICAL (or 0..3)")
    return PriorityChange(
        t=_time(v, data, where, duration),
        level=level_id,
        latency_target_ms=v.number(
            data, "latency_target_ms", where, default=0.0, lo=0.0, hi=60000.0
        ),
        min_accuracy=v.number(data, "min_accuracy", where, default=0.0, lo=0.0, hi=1.0),
        energy_budget_j=v.number(data, "energy_budget_j", where, default=0.0, lo=0.0, hi=1e9),
        mission_duration_s=v.number(data, "mission_duration_s", where, default=0.0, lo=0.0, hi=1e9),
        reason=v.string(data, "reason", where, default=""),
    )


def _timeline(  # noqa: PLR0917 - private helper, one call per timeline kind
    v: FieldValidator, data: Mapping, where: str, key: str, lo: float, hi: float, duration: float
) -> tuple[Keyframe, ...]:
    items = v.sequence(data, "timeline", where, min_len=1, required=True)
    frames: list[Keyframe] = []
    for i, item in enumerate(items):
        w = f"{where}.timeline[{i}]"
        if not isinstance(item, Mapping):
            v.fail(w, item, f"a mapping {{t: seconds, {key}: value}}")
        v.keys(item, w, {"t", key})
        frames.append(
            Keyframe(
                _time(v, item, w, duration), v.number(item, key, w, required=True, lo=lo, hi=hi)
            )
        )
    _ordered(v, frames, f"{where}.timeline")
    return tuple(frames)


def _battery(v: FieldValidator, data: Any, duration: float) -> BatterySpec:
    if not isinstance(data, Mapping):
        v.fail("battery", data, "a mapping")
    v.keys(data, "battery", {"timeline", "rate_hz", "capacity_wh", "thresholds", "interpolate"})
    thresholds = data.get("thresholds", [0.5, 0.2, 0.1])
    if not isinstance(thresholds, list) or not all(is_number(x) and 0 < x < 1 for x in thresholds):
        v.fail("battery.thresholds", thresholds, "a list of fractions, each in (0, 1)")
    return BatterySpec(
        timeline=_timeline(v, data, "battery", "soc", 0.0, 1.0, duration),
        rate_hz=v.number(data, "rate_hz", "battery", default=1.0, lo=0.0, hi=100.0, lo_open=True),
        capacity_wh=v.number(
            data, "capacity_wh", "battery", default=50.0, lo=0.0, hi=10000.0, lo_open=True
        ),
        thresholds=tuple(sorted((float(x) for x in thresholds), reverse=True)),
        interpolate=v.choice(data, "interpolate", "battery", INTERPOLATIONS, "linear"),
    )


def _ambient(v: FieldValidator, data: Any, duration: float) -> AmbientSpec:
    if not isinstance(data, Mapping):
        v.fail("ambient", data, "a mapping")
    v.keys(data, "ambient", {"timeline", "rate_hz", "interpolate"})
    return AmbientSpec(
        timeline=_timeline(v, data, "ambient", "celsius", -40.0, 125.0, duration),
        rate_hz=v.number(data, "rate_hz", "ambient", default=1.0, lo=0.0, hi=100.0, lo_open=True),
        interpolate=v.choice(data, "interpolate", "ambient", INTERPOLATIONS, "linear"),
    )


def _corunner(v: FieldValidator, data: Any, where: str, duration: float) -> CoRunnerEvent:
    if not isinstance(data, Mapping):
        v.fail(where, data, "a mapping")
    v.keys(data, where, set(CoRunnerEvent.__dataclass_fields__))
    return CoRunnerEvent(
        t=_time(v, data, where, duration),
        name=v.string(data, "name", where, required=True),
        processor=v.choice(data, "processor", where, PROCESSORS, None, required=True),
        share=v.number(data, "share", where, required=True, lo=0.0, hi=1.0),
    )


def _ordered(v: FieldValidator, items: list[Any], where: str) -> None:
    for i in range(1, len(items)):
        if items[i].t < items[i - 1].t:
            v.fail(
                f"{where}[{i}].t",
                items[i].t,
                f"a time >= the previous entry's ({items[i - 1].t}); list entries in time order",
            )


class FieldValidator(Fields):
    """Field checks that raise :class:`ScenarioError` naming source, field, value, allowed."""

    def __init__(self, source: str) -> None:
        super().__init__(f"scenario {source}", ScenarioError)
        self.source = source

    def sequence(
        self,
        data: Mapping,
        key: str,
        where: str = "",
        *,
        default: Any = None,
        min_len: int = 0,
        required: bool = False,
    ) -> list[Any]:
        value = self._get(data, key, where, default, required)
        if not isinstance(value, list) or len(value) < min_len:
            more = (
                f" with at least {min_len} entr{'y' if min_len == 1 else 'ies'}" if min_len else ""
            )
            self.fail(self._name(where, key), value, f"a list{more}")
        return value


# ----------------------------------------------------------------------------- bundled
def bundled_dir(subdir: str = "") -> Path:
    from dynofa_ros.resources import config_dir

    return config_dir() / "scenarios" / subdir if subdir else config_dir() / "scenarios"


def bundled(subdir: str = "") -> dict[str, Path]:
    """Bundled scenarios by name (``config/scenarios/[subdir/]*.yaml``)."""
    d = bundled_dir(subdir)
    return {p.stem: p for p in sorted(d.glob("*.yaml"))} if d.is_dir() else {}


def resolve(spec: str | os.PathLike[str], subdir: str = "", kind: str = "scenario") -> Path:
    """A scenario file path, or the name of a bundled ``kind`` (in ``subdir``)."""
    p = Path(spec)
    if p.is_file():
        return p
    found = bundled(subdir).get(str(spec))
    if found is not None:
        return found
    raise ScenarioError(
        f"scenario {str(spec)!r}: no such file, and not a bundled {kind} (bundled: "
        f"{', '.join(bundled(subdir)) or 'none'})"
    )
