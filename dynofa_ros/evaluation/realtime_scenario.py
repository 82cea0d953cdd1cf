"""Real-machine scenarios (``config/scenarios/real/*.yaml``) for ``dynofa realtime``.

A real-machine scenario runs frames through the real engine on this machine, with a real
co-running CPU load (busy child processes) started and stopped at given times, under one or
more manager policies. Unlike the bag scenarios (:mod:`.scenario`) nothing is simulated: the
latency of a frame is what this machine's clock measured.

Format (every key optional unless marked; times ``t`` in seconds from the start)::

    name: cpu_corunner                    # required; letters, digits, '_', '-', '.'
    description: free text
    duration_s: 30                        # required; (0, 3600]
    seed: 0                               # int >= 0: which frames the camera composes
    model:
      name: classifier                    # a letter, then letters, digits, '_'
      checkpoint: fmnist_mbv3_small.safetensors   # relative to this file, then models/
      family: fmnist_mbv3_small.cpu.family.json    # relative to this file, then models/
      members: null                       # a subset of the family's ids (default: all)
      backend: onnxruntime                # onnxruntime | torch-static | torch-dynamic
      threads: [1, 2]                     # intra-op thread counts prepared (each recorded)
      latency_target_ms: 1.5              # required; (0, 60000]
      min_accuracy: 0.0                   # [0, 1]
    camera:
      source: fashion_mnist               # fashion_mnist (labelled) | random (noise, no labels)
      path: null                          # Fashion-MNIST IDX directory (default: the system's)
      fps: 500                            # (0, 5000]: frames are due every 1 / fps seconds
      width: 192                          # [16, 4096]
      height: 192                         # [16, 4096]
      encoding: rgb8                      # rgb8 | bgr8 | mono8
      frames: 256                         # [1, 10000] distinct frames composed before the run
      item_scale: [0.8, 0.95]             # as in bag scenarios
      background: noise                   # noise | texture | flat
      background_level: 6                 # [0, 255]
      noise_amplitude: 6                  # [0, 255]
    policies: [dynofa, static-performance]  # what `--policy all` runs (manager policy names)
    manager: {}                           # ManagerConfig fields (manager/config.py)
    warmup_s: 1.0                         # [0, 60]: frames before t = 0, not recorded
    telemetry_hz: 2                       # [0, 100]: Linux back-end readings to the manager
    transient_frames: 10                  # [0, 100000]: frames after each load change left
                                          # out of the "after the transient" figure
    goal: 0.99                            # (0, 1]: share of frames within target after it
    corunners:                            # the co-running load from t on (time order)
      - {t: 10, processes: 1, kind: spin} # processes [0, 64]; kind spin | matmul
      - {t: 20, processes: 0}

A co-runner entry says how many busy processes run from ``t`` on (0 stops them); ``spin`` is a
pure Python busy loop (one core each, no memory traffic), ``matmul`` a single-threaded numpy
256 x 256 matrix product loop (one core each, cache and memory traffic too).

Every error is a :class:`~.scenario.ScenarioError` naming the file, the field, the value and
what is allowed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from dynofa_ros.evaluation import scenario as scenario_files
from dynofa_ros.evaluation.scenario import (
    BACKGROUNDS,
    ENCODINGS,
    CameraSpec,
    FieldValidator,
    ScenarioError,
)
from dynofa_ros.family import Family, FamilyError, load_family
from dynofa_ros.manager.config import ManagerConfig, config_from_dict
from dynofa_ros.manager.policies import POLICIES
from dynofa_ros.manager.types import ManagerConfigError

ENGINE_BACKENDS = ("onnxruntime", "torch-static", "torch-dynamic")
CAMERA_SOURCES = ("fashion_mnist", "random")
CORUNNER_KINDS = ("spin", "matmul")
MAX_PROCESSES = 64
MAX_THREADS = 64
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_SCENARIO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class RealModel:
    name: str
    checkpoint: Path
    family_path: Path
    family: Family  # restricted to ``members`` and to the records of ``backend``
    backend: str
    threads: tuple[int, ...]
    latency_target_ms: float
    min_accuracy: float = 0.0


@dataclass(frozen=True)
class RealCamera:
    source: str = "fashion_mnist"
    path: str | None = None
    fps: float = 500.0
    width: int = 192
    height: int = 192
    encoding: str = "rgb8"
    frames: int = 256
    item_scale: tuple[float, float] = (0.8, 0.95)
    background: str = "noise"
    background_level: int = 6
    noise_amplitude: int = 6

    @property
    def period_s(self) -> float:
        return 1.0 / self.fps

    def spec(self) -> CameraSpec:
        """The bag scenarios' camera description (what the frame composer reads)."""
        return CameraSpec(
            name="camera",
            source="fashion_mnist",
            path=self.path,
            fps=self.fps,
            width=self.width,
            height=self.height,
            encoding=self.encoding,
            item_scale=self.item_scale,
            background=self.background,
            background_level=self.background_level,
            noise_amplitude=self.noise_amplitude,
        )


@dataclass(frozen=True)
class CoRunnerStep:
    """From ``t`` on, ``processes`` busy processes of ``kind`` run (0: none)."""

    t: float
    processes: int
    kind: str = "spin"

    @property
    def label(self) -> str:
        if self.processes == 0:
            return "co-runner stops"
        plural = "es" if self.processes > 1 else ""
        return f"co-runner: {self.processes} {self.kind} process{plural}"


@dataclass(frozen=True)
class RealScenario:
    name: str
    duration_s: float
    model: RealModel
    camera: RealCamera
    description: str = ""
    seed: int = 0
    policies: tuple[str, ...] = ("dynofa", "static-performance")
    manager: ManagerConfig = field(default_factory=ManagerConfig)
    warmup_s: float = 1.0
    telemetry_hz: float = 2.0
    transient_frames: int = 10
    goal: float = 0.99
    corunners: tuple[CoRunnerStep, ...] = ()
    path: Path | None = None

    @property
    def frame_count(self) -> int:
        """Frames due in the run: one every ``1 / fps`` from t = 0 while ``t < duration_s``."""
        n = self.duration_s * self.camera.fps
        return max(1, int(n) if n - int(n) < 1e-9 else int(n) + 1)

    def load_at(self, t: float) -> CoRunnerStep:
        """The co-runner step in force at ``t`` (none before the first entry)."""
        current = CoRunnerStep(0.0, 0)
        for step in self.corunners:
            if step.t <= t:
                current = step
        return current

    def segments(self) -> list[tuple[float, float, CoRunnerStep]]:
        """``(start, end, load)`` of each stretch of constant load; t = 0 starts the first."""
        cuts = sorted({0.0, *(s.t for s in self.corunners if s.t < self.duration_s)})
        ends = [*cuts[1:], self.duration_s]
        return [(a, b, self.load_at(a)) for a, b in zip(cuts, ends, strict=True) if b > a]


# ------------------------------------------------------------------------------- loading
def load(path: str | os.PathLike[str]) -> RealScenario:
    """Read and validate a real-machine scenario YAML file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {p}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"scenario {p.name}: not valid YAML ({exc})") from None
    return replace(from_dict(data, source=p.name, base_dir=p.resolve().parent), path=p)


def from_dict(data: Any, source: str = "<scenario>", base_dir: Path | None = None) -> RealScenario:
    """Validate plain data (a parsed YAML document); files resolve against ``base_dir``."""
    v = FieldValidator(source)
    if not isinstance(data, Mapping):
        v.fail("(top level)", data, "a mapping")
    v.keys(
        data,
        "",
        {
            "name",
            "description",
            "duration_s",
            "seed",
            "model",
            "camera",
            "policies",
            "manager",
            "warmup_s",
            "telemetry_hz",
            "transient_frames",
            "goal",
            "corunners",
        },
    )
    name = v.string(
        data,
        "name",
        required=True,
        pattern=_SCENARIO_NAME,
        allowed="letters, digits, '_', '-', '.'",
    )
    duration = v.number(data, "duration_s", required=True, lo=0.0, hi=3600.0, lo_open=True)
    camera = _camera(v, data.get("camera", {}))
    model = _model(v, data.get("model"), base_dir)
    policies = v.sequence(data, "policies", default=["dynofa", "static-performance"], min_len=1)
    for i, pol in enumerate(policies):
        if pol not in POLICIES:
            v.fail(f"policies[{i}]", pol, "one of " + ", ".join(POLICIES))
    if len(set(policies)) != len(policies):
        v.fail("policies", policies, "each policy once")
    try:
        manager = config_from_dict(data.get("manager"), "manager")
    except ManagerConfigError as exc:
        raise ScenarioError(f"scenario {source}: {exc}") from None
    steps = v.sequence(data, "corunners", default=[])
    corunners = tuple(
        _corunner(v, item, f"corunners[{i}]", duration) for i, item in enumerate(steps)
    )
    for i in range(1, len(corunners)):
        if corunners[i].t < corunners[i - 1].t:
            v.fail(
                f"corunners[{i}].t",
                corunners[i].t,
                f"a time >= the previous entry's ({corunners[i - 1].t}); entries in time order",
            )
    return RealScenario(
        name=name,
        description=v.string(data, "description", default="") or "",
        duration_s=duration,
        seed=v.integer(data, "seed", default=0, lo=0, hi=2**32 - 1),
        model=model,
        camera=camera,
        policies=tuple(policies),
        manager=manager,
        warmup_s=v.number(data, "warmup_s", default=1.0, lo=0.0, hi=60.0),
        telemetry_hz=v.number(data, "telemetry_hz", default=2.0, lo=0.0, hi=100.0),
        transient_frames=v.integer(data, "transient_frames", default=10, lo=0, hi=100_000),
        goal=v.number(data, "goal", default=0.99, lo=0.0, hi=1.0, lo_open=True),
        corunners=corunners,
    )


def _camera(v: FieldValidator, data: Any) -> RealCamera:
    if not isinstance(data, Mapping):
        v.fail("camera", data, "a mapping")
    v.keys(data, "camera", set(RealCamera.__dataclass_fields__))
    d = RealCamera()
    scale = data.get("item_scale", list(d.item_scale))
    if (
        not isinstance(scale, list | tuple)
        or len(scale) != 2
        or not all(isinstance(s, int | float) and not isinstance(s, bool) for s in scale)
        or not 0 < scale[0] <= scale[1] <= 1
    ):
        v.fail("camera.item_scale", scale, "[min, max] with 0 < min <= max <= 1")
    return RealCamera(
        source=v.choice(data, "source", "camera", CAMERA_SOURCES, d.source),
        path=v.string(data, "path", "camera", default=None),
        fps=v.number(data, "fps", "camera", default=d.fps, lo=0.0, hi=5000.0, lo_open=True),
        width=v.integer(data, "width", "camera", default=d.width, lo=16, hi=4096),
        height=v.integer(data, "height", "camera", default=d.height, lo=16, hi=4096),
        encoding=v.choice(data, "encoding", "camera", ENCODINGS, d.encoding),
        frames=v.integer(data, "frames", "camera", default=d.frames, lo=1, hi=10_000),
        item_scale=(float(scale[0]), float(scale[1])),
        background=v.choice(data, "background", "camera", BACKGROUNDS, d.background),
        background_level=v.integer(
            data, "background_level", "camera", default=d.background_level, lo=0, hi=255
        ),
        noise_amplitude=v.integer(
            data, "noise_amplitude", "camera", default=d.noise_amplitude, lo=0, hi=255
        ),
    )


def _find(v: FieldValidator, where: str, value: str, base_dir: Path | None) -> Path:
    """A file named in the scenario: as given, relative to the scenario, then to models/."""
    from dynofa_ros.resources import models_dir

    raw = Path(value).expanduser()
    candidates = [raw] if raw.is_absolute() else []
    if not raw.is_absolute():
        if base_dir is not None:
            candidates.append(base_dir / raw)
        candidates += [Path.cwd() / raw, models_dir() / raw]
    for c in candidates:
        if c.is_file():
            return c
    v.fail(where, value, "an existing file (absolute, relative to the scenario, or in models/)")


def _model(v: FieldValidator, data: Any, base_dir: Path | None) -> RealModel:
    if data is None:
        raise ScenarioError(f"scenario {v.source}: field 'model' is required")
    if not isinstance(data, Mapping):
        v.fail("model", data, "a mapping")
    v.keys(
        data,
        "model",
        {
            "name",
            "checkpoint",
            "family",
            "members",
            "backend",
            "threads",
            "latency_target_ms",
            "min_accuracy",
        },
    )
    name = v.string(
        data,
        "name",
        "model",
        default="classifier",
        pattern=_NAME,
        allowed="a letter, then letters, digits, '_'",
    )
    checkpoint = _find(
        v,
        "model.checkpoint",
        v.string(data, "checkpoint", "model", default="fmnist_mbv3_small.safetensors"),
        base_dir,
    )
    family_path = _find(
        v,
        "model.family",
        v.string(data, "family", "model", default="fmnist_mbv3_small.cpu.family.json"),
        base_dir,
    )
    try:
        family = load_family(family_path)
    except FamilyError as exc:
        raise ScenarioError(f"scenario {v.source}: field 'model.family': {exc}") from None
    backend = v.choice(data, "backend", "model", ENGINE_BACKENDS, "onnxruntime")
    members = data.get("members")
    if members is not None:
        if (
            not isinstance(members, list)
            or not members
            or not all(isinstance(m, str) for m in members)
        ):
            v.fail("model.members", members, "a non-empty list of member ids")
        for i, mid in enumerate(members):
            if mid not in family.ids:
                v.fail(f"model.members[{i}]", mid, "one of " + ", ".join(family.ids))
        family = replace(family, members=tuple(m for m in family.members if m.id in members))
    threads = v.sequence(data, "threads", "model", default=[1, 2], min_len=1)
    for i, t in enumerate(threads):
        if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= MAX_THREADS:
            v.fail(f"model.threads[{i}]", t, f"an integer, 1 <= threads <= {MAX_THREADS}")
    family = measured_family(family, backend, tuple(threads), v.source)
    return RealModel(
        name=name,
        checkpoint=checkpoint,
        family_path=family_path,
        family=family,
        backend=backend,
        threads=tuple(dict.fromkeys(int(t) for t in threads)),
        latency_target_ms=v.number(
            data, "latency_target_ms", "model", required=True, lo=0.0, hi=60000.0, lo_open=True
        ),
        min_accuracy=v.number(data, "min_accuracy", "model", default=0.0, lo=0.0, hi=1.0),
    )


def measured_family(
    family: Family, backend: str, threads: tuple[int, ...], source: str = "<scenario>"
) -> Family:
    """``family`` with only its CPU latency records of ``backend`` at ``threads``.

    The manager's latency table takes the median over every record of a (processor, threads,
    frequency), whatever the backend; a family measured with several backends (ONNX Runtime
    and torch-static here, about 5x apart) would then predict neither. The real engine runs one
    backend, so the manager must see that backend's measurements only."""
    members = []
    for m in family.members:
        kept = tuple(
            r
            for r in m.latency
            if r.processor == "cpu" and r.backend == backend and r.threads in threads
        )
        missing = sorted(set(threads) - {r.threads for r in kept})
        if missing:
            have = sorted({r.threads for r in m.latency if r.backend == backend})
            raise ScenarioError(
                f"scenario {source}: field 'model.threads' = {list(threads)} is invalid; family "
                f"{family.name} member {m.id} has no cpu {backend} latency record at "
                f"{', '.join(map(str, missing))} thread(s) (recorded: "
                f"{', '.join(map(str, have)) or 'none'}); allowed: the recorded thread counts"
            )
        members.append(replace(m, latency=kept))
    return replace(family, members=tuple(members))


def _corunner(v: FieldValidator, data: Any, where: str, duration: float) -> CoRunnerStep:
    if not isinstance(data, Mapping):
        v.fail(where, data, "a mapping {t, processes, kind}")
    v.keys(data, where, {"t", "processes", "kind"})
    return CoRunnerStep(
        t=v.number(data, "t", where, required=True, lo=0.0, hi=duration),
        processes=v.integer(data, "processes", where, required=True, lo=0, hi=MAX_PROCESSES),
        kind=v.choice(data, "kind", where, CORUNNER_KINDS, "spin"),
    )


# ------------------------------------------------------------------------------- bundled
def bundled() -> dict[str, Path]:
    """Bundled real-machine scenarios by name (``config/scenarios/real/*.yaml``)."""
    return scenario_files.bundled("real")


def resolve(spec: str | os.PathLike[str]) -> Path:
    """A scenario file path, or the name of a bundled real-machine scenario."""
    return scenario_files.resolve(spec, "real", "real-machine scenario")
