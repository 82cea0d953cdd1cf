"""The fast replay: the whole closed loop in one process, in simulated time, without DDS.

It drives the shared :class:`~.loop.ClosedLoop` (the core objects of the live graph, wired the
way the nodes wire them) with the simulated board's plugs:

* per model a :class:`~dynofa_ros.perception.PerceptionSession` over the real
  :class:`~dynofa_ros.engine.Engine` (every frame really classified on this machine) whose frames
  are costed on one :class:`~dynofa_ros.platform.sim.SimulatedXavierNX` (as ``perception_node``
  with ``platform: sim-xavier-nx`` asks ``sim_platform_node``);
* the board takes the scenario's battery / ambient / co-runner events and reports telemetry every
  ``telemetry_period_s`` (as ``sim_platform_node`` publishes ``battery`` and ``temperature/*``);
* one :class:`~dynofa_ros.manager.RuntimeManager` observes the same readings (battery,
  temperatures, mission priority, every frame's status) and decides on each of them and at
  ``manager_rate_hz`` (as ``manager_node``); a decision reaches its model before its next frame
  (the node applies queued commands between frames).

Time is the frames' stamps (bag time); nothing sleeps, so a sweep over policies takes seconds
per simulated minute. For a deterministic scenario the live replay makes the same decisions.

The frames come from a bag (``dynofa replay --fast``) or from the scenario's own timeline
(:func:`scenario_items`: ``dynofa simulate``), one loop for both. A model whose family is
``builtin:<name>`` runs on a :class:`~dynofa_ros.engine.recorded.RecordedEngine` (recorded
members, no network: frames are costed, not classified).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dynofa_ros.clock import period_ns, timer_time
from dynofa_ros.errors import DynofaError
from dynofa_ros.evaluation.loop import ClosedLoop, LoopModel
from dynofa_ros.evaluation.records import RecordBuilder, RunResults, subnets_extra
from dynofa_ros.evaluation.scenario import ModelSpec as ScenarioModel
from dynofa_ros.evaluation.scenario import Scenario, family_accuracy_applies, model_file
from dynofa_ros.evaluation.timeline import (
    AmbientItem,
    BatteryItem,
    CoRunnerItem,
    FrameItem,
    PriorityItem,
    iter_timeline,
)

if TYPE_CHECKING:
    import numpy as np

    from dynofa_ros.engine import InferenceResult
    from dynofa_ros.family import Family
    from dynofa_ros.perception import FrameTarget, Inference

TELEMETRY_PERIOD_S = 0.5  # sim_platform_node's publish_period_s default
MANAGER_RATE_HZ = 5.0  # manager_node's rate_hz default
# The replay starts the graph's clock at least this long before the scenario's t = 0 (on a whole
# second, a scheduled time of every usual timer period): every node timer fires once and the
# manager's first decision reaches the models before the first frame, in the live graph as here.
PREROLL_S = 1.0
DRAIN_S = 1.0  # replay time the clock runs on after the scenario's end (the last decisions)


def replay_clock(scenario: Scenario) -> tuple[int, int]:
    """The replay clock's first and last time (ns), in both modes."""
    start = (scenario.start_ns - round(PREROLL_S * 1e9)) // 1_000_000_000 * 1_000_000_000
    return start, scenario.start_ns + round((scenario.duration_s + DRAIN_S) * 1e9)


@dataclass(frozen=True)
class ReplayOptions:
    """What a replay runs, besides the scenario (the nodes' parameters of the same names)."""

    policy: str = "dynofa"
    checkpoint: Path | None = None  # None: the embedded default
    families: dict[str, Path] = field(default_factory=dict)  # per model; default: sim-nx-<proc>
    processor: str = "cuda"  # start processor and family processor on the simulated board
    backend: str = "onnxruntime"
    manager_rate_hz: float = MANAGER_RATE_HZ
    telemetry_period_s: float = TELEMETRY_PERIOD_S
    stale_after_s: float = 5.0
    manager_config: Any = None  # a ManagerConfig; None: defaults

    def checkpoint_path(self, model: ScenarioModel | None = None) -> Path:
        """The super-network of ``model``: its scenario ``checkpoint``, else this replay's."""
        from dynofa_ros.resources import default_checkpoint

        if model is not None and model.checkpoint:
            return model_file(model, "checkpoint")
        return Path(self.checkpoint) if self.checkpoint else default_checkpoint()

    def family(self, model: ScenarioModel) -> Family:
        """A model's family: a ``builtin:<name>`` one (unless ``families`` names a file for it),
        else the file :meth:`family_path` names."""
        from dynofa_ros.family import load_family
        from dynofa_ros.manager.families import BUILTIN

        if model.builtin_family is not None and model.name not in self.families:
            return BUILTIN[model.builtin_family]()
        return load_family(self.family_path(model))

    def family_path(self, model: str | ScenarioModel) -> Path:
        """A model's family: ``families`` (the command line), else its scenario ``family``,
        else its checkpoint's simulated family for ``processor``."""
        from dynofa_ros.perception import default_family_path

        name = model if isinstance(model, str) else model.name
        if name in self.families:
            return Path(self.families[name])
        if not isinstance(model, str) and model.family:
            return model_file(model, "family")
        spec = None if isinstance(model, str) else model
        return default_family_path(self.checkpoint_path(spec), self.processor, simulated=True)


@dataclass(frozen=True)
class Frame:
    """A camera frame to classify: ``infer`` calls one of the engine's ``infer_*``."""

    stamp_ns: int
    camera: str
    infer: Inference
    label: int | None = None


@dataclass(frozen=True)
class Truth:
    """The ground-truth label of a camera frame (its own message in a bag)."""

    stamp_ns: int
    camera: str
    label: int


Item = Frame | Truth | PriorityItem | BatteryItem | AmbientItem | CoRunnerItem


def _blank(target: FrameTarget) -> InferenceResult:
    return target.infer_blank()


def _raw(pixels: np.ndarray, encoding: str) -> Inference:
    h, w = pixels.shape[:2]
    return lambda target: target.infer_raw(pixels, w, h, encoding, pixels.strides[0])


def scenario_items(scenario: Scenario) -> Iterator[Item]:
    """The scenario's timeline, frames composed on the fly (no bag needed)."""
    from dynofa_ros.evaluation.scenario import require_composable

    require_composable(scenario, "a run on the scenario's own timeline")
    for item in iter_timeline(scenario):
        if isinstance(item, FrameItem) and item.pixels is None:  # source: none
            yield Frame(item.stamp_ns, item.camera, _blank, item.label)
        elif isinstance(item, FrameItem):
            assert item.pixels is not None
            yield Frame(
                item.stamp_ns,
                item.camera,
                _raw(item.pixels, item.encoding),
                item.label,
            )
        else:
            yield item


def bag_items(path: str | Path, replay_plan: Any = None) -> tuple[Scenario, Iterator[Item]]:
    """A bag's scenario and its messages as replay items (frames decoded lazily).

    ``replay_plan`` (:func:`~.recorded.plan`, default: the bag's own) says which camera topics
    feed which model and on which time base. Their ground truth, mission priority and the
    ``/scenario/*`` timelines for the simulated board are used; other topics are ignored (a
    robot's own ``/battery`` too: the simulated board has its own)."""
    from dynofa_ros.evaluation import topics as T
    from dynofa_ros.evaluation.bagio import BagReader, stamp_ns
    from dynofa_ros.evaluation.recorded import plan
    from dynofa_ros.evaluation.scenario import CoRunnerEvent, PriorityChange
    from dynofa_ros.evaluation.scenario_bag import inspect_bag
    from dynofa_ros.perception import inference_of

    rp = replay_plan or plan(path)
    scenario = rp.scenario
    used = {c.bag_topic: c.name for c in scenario.cameras}
    info = inspect_bag(path, cameras=list(used))
    truth = {
        T.ground_truth_topic(c.name): c.name
        for c in scenario.cameras
        if T.ground_truth_topic(c.name) in info.topics
    }
    events = [t for t in T.SCENARIO_EVENTS if t in info.topics]
    t0 = scenario.start_ns

    def items() -> Iterator[Item]:
        with BagReader(path) as reader:
            for topic, recv_ns, msg in reader.messages([*used, *truth, *events]):
                ns = recv_ns if rp.restamp(topic) else stamp_ns(msg)
                t = (ns - t0) / 1e9
                if topic in truth:
                    if len(msg.class_ids):
                        yield Truth(ns, truth[topic], int(msg.class_ids[0]))
                elif topic in used:
                    yield Frame(ns, used[topic], inference_of(msg))
                elif topic == T.MISSION_PRIORITY:
                    change = PriorityChange(
                        t, int(msg.level), float(msg.latency_target_ms), float(msg.min_accuracy),
                        float(msg.energy_budget_j), float(msg.mission_duration_s), msg.reason,
                    )  # fmt: skip
                    yield PriorityItem(t, ns, change)
                elif topic == T.SCENARIO_BATTERY:
                    yield BatteryItem(t, ns, float(msg.percentage), float(msg.capacity))
                elif topic == T.SCENARIO_AMBIENT:
                    yield AmbientItem(t, ns, float(msg.temperature))
                elif topic == T.SCENARIO_CORUNNER:
                    ev = CoRunnerEvent(t, msg.name, msg.processor, float(msg.share))
                    yield CoRunnerItem(t, ns, ev)

    return scenario, items()


def start_board(scenario: Scenario) -> Any:
    """The simulated board in the scenario's t = 0 state (``sim_platform_node``'s parameters)."""
    from dynofa_ros.platform.sim import SimulatedXavierNX

    return SimulatedXavierNX(
        seed=scenario.seed,
        ambient_c=scenario.ambient.at(0.0) if scenario.ambient else 25.0,
        state_of_charge=scenario.battery.at(0.0) if scenario.battery else 1.0,
    )


def manager_spec(scenario: Scenario, m: ScenarioModel, family: Family) -> Any:
    """What the manager knows of a scenario's model (``manager_node``'s per-model parameters)."""
    from dynofa_ros.manager import ModelSpec

    return ModelSpec(
        name=m.name,
        family=family,
        latency_target_ms=m.latency_target_ms,
        frame_rate_hz=scenario.camera(m.camera).fps,
        min_accuracy=m.min_accuracy,
        priority=m.priority,
    )


def oracle_schedule(scenario: Scenario, opt: ReplayOptions) -> Any:
    """The oracle's schedule of a replay of ``scenario``, for the live graph's manager (the fast
    mode computes the same one from its own manager and board)."""
    from dynofa_ros.evaluation.oracle import compute_schedule
    from dynofa_ros.manager import ManagerConfig

    specs = [manager_spec(scenario, m, opt.family(m)) for m in scenario.models]
    config = replace(opt.manager_config or ManagerConfig(), stale_after_s=opt.stale_after_s)
    t0_s = (scenario.start_ns - replay_clock(scenario)[0]) * 1e-9
    return compute_schedule(scenario, specs, start_board(scenario), config, offset_s=t0_s)


def run_inprocess(
    scenario: Scenario,
    options: ReplayOptions | None = None,
    *,
    items: Iterable[Item] | None = None,
    name: str | None = None,
    source: str = "",
    progress: bool = True,
) -> RunResults:
    """Replay ``scenario`` (its own timeline, or ``items`` read from its bag) under a policy."""
    from tqdm import tqdm

    from dynofa_ros.configuration import Configuration
    from dynofa_ros.engine import Engine
    from dynofa_ros.engine.recorded import RecordedEngine
    from dynofa_ros.manager import ManagerConfig, RuntimeManager
    from dynofa_ros.perception import (
        BoardTimer,
        PerceptionSession,
        SimulatedTarget,
        most_accurate,
    )

    opt = options or ReplayOptions()
    clock0_ns, clock1_ns = replay_clock(scenario)
    clock0_s = clock0_ns * 1e-9  # the first /clock: the board's time starts, timers fire
    board = start_board(scenario)
    recorded = {m.name for m in scenario.models if m.builtin_family and m.name not in opt.families}
    checkpoints = list(
        dict.fromkeys(opt.checkpoint_path(m) for m in scenario.models if m.name not in recorded)
    )
    models: list[LoopModel] = []
    specs = []
    try:
        for m in scenario.models:
            family = opt.family(m)
            engine: Any = (
                RecordedEngine(family) if m.name in recorded else Engine.load(
                    opt.checkpoint_path(m), family, backend=opt.backend, processors=("cpu",),
                    threads=(1,), progress=False,
                )
            )  # fmt: skip
            target = SimulatedTarget(engine, board)
            if opt.processor not in target.processors:
                raise DynofaError(
                    f"processor {opt.processor!r} is not on the simulated board (one of: "
                    f"{', '.join(target.processors)})"
                )
            session = PerceptionSession(
                target,
                model_name=m.name,
                timer=BoardTimer(board, offset_s=clock0_s),
                platform=board,
                allow_dvfs=True,
                initial=Configuration(most_accurate(target), opt.processor, 1),
            )
            models.append(LoopModel(m.name, m.camera, session, m.latency_target_ms))
            specs.append(manager_spec(scenario, m, family))
        config = opt.manager_config or ManagerConfig()
        config = replace(config, stale_after_s=opt.stale_after_s)
        manager = RuntimeManager(specs, board, opt.policy, config)
        planned: Iterable[tuple] = ()  # the oracle's schedule times (it knows the scenario)
        if opt.policy == "oracle":
            from dynofa_ros.evaluation.oracle import foresee

            t0_s = (scenario.start_ns - clock0_ns) * 1e-9
            planned = foresee(manager, scenario, specs, board, offset_s=t0_s)
        builder = RecordBuilder.for_scenario(
            scenario,
            name or f"{scenario.name}-{opt.policy}",
            policy=opt.policy,
            mode="fast",
            source=source,
            extra={
                "checkpoint": ", ".join(
                    [c.name for c in checkpoints]
                    + [str(scenario.model(n).family) for n in recorded]
                ),
                "processor": opt.processor,
                "subnets": subnets_extra(
                    *(spec.family for spec in specs),
                    accuracy=family_accuracy_applies(scenario),
                ),
            },
        )

        loop = ClosedLoop(manager, models, builder)

        def event(item: PriorityItem | BatteryItem | AmbientItem | CoRunnerItem) -> None:
            now_s = item.stamp_ns * 1e-9
            if isinstance(item, PriorityItem):
                loop.mission(now_s, item.change)
            else:  # as sim_platform_node: the board applies it when its clock gets there
                board.at(now_s - clock0_s, item.apply)

        end_s = clock1_ns * 1e-9
        total = sum(math.ceil(scenario.duration_s * c.fps - 1e-9) for c in scenario.cameras)
        bar = tqdm(
            total=total, unit="frame", desc=f"{scenario.name} [{opt.policy}]",
            disable=not progress, leave=False,
        )  # fmt: skip
        for kind, t_s, payload in _merge(
            items if items is not None else scenario_items(scenario),
            _ticks(clock0_s, end_s, 1.0 / opt.manager_rate_hz, "tick"),
            _ticks(clock0_s, end_s, opt.telemetry_period_s, "telemetry"),
            iter(planned),
        ):
            if kind == "telemetry":
                loop.published_telemetry(board.telemetry_at(t_s - clock0_s), t_s)
            elif kind == "tick":
                loop.decide(t_s)
            elif isinstance(payload, Truth):
                builder.ground_truth(payload.camera, payload.stamp_ns, payload.label)
            elif isinstance(payload, Frame):
                loop.frame(payload.camera, payload.stamp_ns, payload.infer, label=payload.label)
                bar.update(1)
            else:
                event(payload)
        bar.close()
        run = builder.build()
        run.info.extra.update(
            {
                "dropped": {m.name: m.dropped for m in models},
                "frames": loop.frame_counts(),
                "rejected_commands": list(loop.rejected),
                "manager_warnings": dict(manager.warnings),
                "board_energy_j": float(board.telemetry().energy_j or 0.0),
            }
        )
        return run
    finally:
        for model in models:
            model.session.close()


def _ticks(clock0_s: float, end_s: float, period_s: float, kind: str) -> Iterator[tuple]:
    """A node timer's scheduled times (``dynofa_ros.clock``) on a replay clock running from
    ``clock0_s`` (where the timer is overdue and fires at once) to ``end_s``."""
    step = period_ns(period_s)
    t_ns, end_ns = round(timer_time(clock0_s, period_s) * 1e9), round(end_s * 1e9)
    while t_ns <= end_ns:
        yield kind, t_ns * 1e-9, None
        t_ns += step


def _merge(items: Iterable[Item], *ticks: Iterator[tuple]) -> Iterator[tuple[str, float, Any]]:
    """Periodic ticks and scenario items, lazily, in time order; at equal times the ticks first,
    in the order given, as on a live graph: a timer fires as its node receives ``/clock``, before
    the message published at that time (and its consequences) reach the node."""
    streams: list[Iterator[tuple[float, int, int, tuple[str, float, Any]]]] = []
    for rank, source in enumerate(ticks):
        streams.append(((t, rank, n, (k, t, p)) for n, (k, t, p) in enumerate(source)))
    streams.append(
        (it.stamp_ns * 1e-9, len(ticks), n, ("item", it.stamp_ns * 1e-9, it))
        for n, it in enumerate(items)
    )
    for key in heapq.merge(*streams, key=lambda k: k[:3]):
        yield key[3]
