"""Real-machine runs of a scenario (``dynofa realtime``): its ``realtime`` section.

A scenario (:mod:`.scenario`, the one format of every runner) with a ``realtime`` section runs
on this machine: frames through the real engine, its CPU co-runners as real busy processes
started and stopped at their times, under one or more manager policies. Nothing is simulated:
a frame's latency is what this machine's clock measured. It needs exactly one model on one
camera (``source: fashion_mnist``) and co-runners
on processor ``cpu`` (:func:`corunner_steps` turns a share into processes). The section::

    realtime:
      backend: onnxruntime                # onnxruntime | torch-static | torch-dynamic
      threads: [1, 2]                     # intra-op thread counts prepared (each recorded)
      members: null                       # a subset of the family's ids (default: all)
      frames: 256                         # [1, 10000] distinct frames composed before the run
      policies: [dynofa, static-performance]  # what `--policy all` runs (oracle: probed)
      manager: {}                         # ManagerConfig fields (manager/config.py)
      warmup_s: 1.0                       # [0, 60]: frames before t = 0, not recorded
      telemetry_hz: 2                     # [0, 100]: Linux back-end readings to the manager
      transient_frames: 10                # [0, 100000]: frames after each load change left
                                          # out of the "after the transient" figure
      goal: 0.99                          # (0, 1]: share of frames within target after it
      corunner_kind: spin                 # spin (a Python busy loop) | matmul (numpy, memory)
      random_frames: false                # true: noise frames, no labels (no dataset needed)

The model's ``checkpoint`` / ``family`` resolve against the scenario's folder, then models/
(defaults: the embedded CPU family). The old real-machine format (``model:`` at the top level,
``config/scenarios/real``) is refused with how to migrate. Every error is a
:class:`~.scenario.ScenarioError` naming the file, the field, the value and what is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from dynofa_ros.engine.backends import BACKENDS
from dynofa_ros.evaluation import scenario as scenario_files
from dynofa_ros.evaluation.scenario import (
    CameraSpec,
    FieldValidator,
    ScenarioError,
)
from dynofa_ros.family import Family, FamilyError, load_family
from dynofa_ros.manager.config import ManagerConfig, config_from_dict
from dynofa_ros.manager.registry import POLICIES
from dynofa_ros.manager.types import ManagerConfigError
from dynofa_ros.resources import DEFAULT_CHECKPOINT

CAMERA_SOURCES = ("fashion_mnist", "random")
CORUNNER_KINDS = ("spin", "matmul")
MAX_PROCESSES = 64
MAX_THREADS = 64


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
REALTIME_KEYS = {
    "backend", "threads", "members", "frames", "policies", "manager", "warmup_s",
    "telemetry_hz", "transient_frames", "goal", "corunner_kind", "random_frames",
}  # fmt: skip
# The real-machine format before the scenario format took it over (config/scenarios/real).
_OLD_KEYS = {"model", "policies", "warmup_s", "telemetry_hz", "transient_frames", "goal"}


def load(path: str | os.PathLike[str]) -> RealScenario:
    """Read and validate a scenario YAML file with a ``realtime`` section."""
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
    """Validate plain data (a parsed scenario document); files resolve against ``base_dir``."""
    if isinstance(data, Mapping) and (old := sorted(_OLD_KEYS & set(data))):
        raise ScenarioError(
            f"scenario {source}: field(s) {', '.join(old)} belong to the old real-machine format; "
            "write it as a scenario (models: [...], corunners with processor cpu and share) with "
            "a realtime: section for backend, threads, members, frames, policies, manager, "
            "warmup_s, telemetry_hz, transient_frames, goal "
            "(see config/scenarios/cpu_corunner.yaml)"
        )
    return from_scenario(scenario_files.from_dict(data, source), source, base_dir)


def from_scenario(
    sc: scenario_files.Scenario, source: str = "<scenario>", base_dir: Path | None = None
) -> RealScenario:
    """The real-machine run of a scenario: its one model and camera on this machine's engine,
    its CPU co-runners as busy processes (:func:`corunner_steps`), its ``realtime`` section."""
    v = FieldValidator(source)
    rt = sc.realtime
    if not rt:
        raise ScenarioError(
            f"scenario {source}: no 'realtime' section: not a real-machine scenario (runners: "
            f"{', '.join(scenario_files.runners(sc))})"
        )
    v.keys(rt, "realtime", REALTIME_KEYS)
    if len(sc.models) != 1 or len(sc.cameras) != 1:
        v.fail("models", [m.name for m in sc.models], "exactly one model on one camera")
    policies = v.sequence(rt, "policies", "realtime", default=list(RealScenario.policies),
                          min_len=1)  # fmt: skip
    for i, pol in enumerate(policies):
        if pol not in POLICIES:
            v.fail(f"realtime.policies[{i}]", pol, "one of " + ", ".join(POLICIES))
    if len(set(policies)) != len(policies):
        v.fail("realtime.policies", policies, "each policy once")
    try:
        manager = config_from_dict(rt.get("manager"), "realtime.manager")
    except ManagerConfigError as exc:
        raise ScenarioError(f"scenario {source}: {exc}") from None
    kind = v.choice(rt, "corunner_kind", "realtime", CORUNNER_KINDS, "spin")
    return RealScenario(
        name=sc.name,
        description=sc.description,
        duration_s=sc.duration_s,
        seed=sc.seed,
        model=_model(v, sc.models[0], rt, base_dir),
        camera=_camera(v, sc.cameras[0], rt),
        policies=tuple(policies),
        manager=manager,
        warmup_s=v.number(rt, "warmup_s", "realtime", default=1.0, lo=0.0, hi=60.0),
        telemetry_hz=v.number(rt, "telemetry_hz", "realtime", default=2.0, lo=0.0, hi=100.0),
        transient_frames=v.integer(
            rt, "transient_frames", "realtime", default=10, lo=0, hi=100_000
        ),
        goal=v.number(rt, "goal", "realtime", default=0.99, lo=0.0, hi=1.0, lo_open=True),
        corunners=corunner_steps(v, sc.corunners, kind),
    )


def corunner_steps(
    v: FieldValidator, events: Sequence[scenario_files.CoRunnerEvent], kind: str
) -> tuple[CoRunnerStep, ...]:
    """The scenario's CPU co-runners as busy processes on this machine. A co-runner's share is
    what the simulated board means by it (the fraction of every core's time it takes from us):
    one busy process per core at equal priority takes about half, so ``share`` is
    ``round(2 * share * cores)`` processes; co-runners running together add up."""
    cores = os.cpu_count() or 1
    shares: dict[str, float] = {}
    steps: list[CoRunnerStep] = []
    for i, ev in enumerate(events):
        if ev.processor != "cpu":
            v.fail(f"corunners[{i}].processor", ev.processor, "cpu (a real co-runner here)")
        shares[ev.name] = ev.share
        n = min(MAX_PROCESSES, sum(round(2 * s * cores) for s in shares.values()))
        if steps and steps[-1].t == ev.t:
            steps[-1] = CoRunnerStep(ev.t, n, kind)
        else:
            steps.append(CoRunnerStep(ev.t, n, kind))
    return tuple(steps)


def _camera(v: FieldValidator, cam: CameraSpec, rt: Mapping[str, Any]) -> RealCamera:
    if cam.source != "fashion_mnist" or cam.compressed:
        v.fail("camera.source", cam.source, "fashion_mnist, not compressed")
    random = v.boolean(rt, "random_frames", "realtime", default=False)
    return RealCamera(
        source="random" if random else "fashion_mnist",
        path=cam.path,
        fps=cam.fps,
        width=cam.width,
        height=cam.height,
        encoding=cam.encoding,
        frames=v.integer(rt, "frames", "realtime", default=RealCamera.frames, lo=1, hi=10_000),
        item_scale=cam.item_scale,
        background=cam.background,
        background_level=cam.background_level,
        noise_amplitude=cam.noise_amplitude,
    )


def _find(v: FieldValidator, where: str, value: str, base_dir: Path | None) -> Path:
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


def _model(
    v: FieldValidator, m: scenario_files.ModelSpec, rt: Mapping[str, Any], base_dir: Path | None
) -> RealModel:
    if m.builtin_family is not None:
        v.fail("models[0].family", m.family, "a family file (this machine runs the network)")
    checkpoint = _find(v, "models[0].checkpoint", m.checkpoint or DEFAULT_CHECKPOINT, base_dir)
    family_path = _find(
        v, "models[0].family", m.family or "fmnist_mbv3_small.cpu.family.json", base_dir
    )
    try:
        family = load_family(family_path)
    except FamilyError as exc:
        raise ScenarioError(f"scenario {v.source}: field 'models[0].family': {exc}") from None
    backend = v.choice(rt, "backend", "realtime", tuple(BACKENDS), "onnxruntime")
    members = rt.get("members")
    if members is not None:
        if (
            not isinstance(members, list)
            or not members
            or not all(isinstance(x, str) for x in members)
        ):
            v.fail("realtime.members", members, "a non-empty list of member ids")
        for i, mid in enumerate(members):
            if mid not in family.ids:
                v.fail(f"realtime.members[{i}]", mid, "one of " + ", ".join(family.ids))
        family = replace(family, members=tuple(x for x in family.members if x.id in members))
    threads = v.sequence(rt, "threads", "realtime", default=[1, 2], min_len=1)
    for i, t in enumerate(threads):
        if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= MAX_THREADS:
            v.fail(f"realtime.threads[{i}]", t, f"an integer, 1 <= threads <= {MAX_THREADS}")
    family = measured_family(family, backend, tuple(threads), v.source)
    return RealModel(
        name=m.name,
        checkpoint=checkpoint,
        family_path=family_path,
        family=family,
        backend=backend,
        threads=tuple(dict.fromkeys(int(t) for t in threads)),
        latency_target_ms=m.latency_target_ms,
        min_accuracy=m.min_accuracy,
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
                f"scenario {source}: field 'realtime.threads' = {list(threads)} is invalid; family "
                f"{family.name} member {m.id} has no cpu {backend} latency record at "
                f"{', '.join(map(str, missing))} thread(s) (recorded: "
                f"{', '.join(map(str, have)) or 'none'}); allowed: the recorded thread counts"
            )
        members.append(replace(m, latency=kept))
    return replace(family, members=tuple(members))


# ------------------------------------------------------------------------------- bundled
def bundled() -> dict[str, Path]:
    """Bundled scenarios with a ``realtime`` section (``dynofa scenario list`` says so)."""
    out = {}
    for name, path in scenario_files.bundled().items():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, Mapping) and data.get("realtime"):
            out[name] = path
    return out


def resolve(spec: str | os.PathLike[str]) -> Path:
    """A scenario file path, or the name of a bundled real-machine scenario."""
    p = Path(spec)
    if p.is_file():
        return p
    found = bundled().get(str(spec))
    if found is None:
        raise ScenarioError(
            f"scenario {str(spec)!r}: no such file, and not a bundled real-machine scenario "
            f"(bundled: {', '.join(bundled()) or 'none'})"
        )
    return found
