"""``dynofa replay``: a scenario bag through the nodes, live over DDS or in-process.

Live mode starts the real graph (``sim_platform_node``, one ``perception_node`` per model of the
scenario, ``manager_node``) as separate processes with ``use_sim_time``, plays the bag into it
with :class:`~dynofa_ros.nodes.replay_node.ReplayNode` and records its outputs into a result bag,
which :func:`~dynofa_ros.evaluation.result_bag.load_result_bag` turns into the run's records.
The fast mode (:mod:`dynofa_ros.evaluation.inprocess`) runs the same core code in one process.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynofa_ros.errors import DynofaError
from dynofa_ros.evaluation import topics as T
from dynofa_ros.evaluation.inprocess import ReplayOptions, replay_clock
from dynofa_ros.evaluation.records import RunInfo, RunResults
from dynofa_ros.evaluation.scenario import Scenario
from dynofa_ros.launch_graph import NodeSpec
from dynofa_ros.processes import DISCOVERY_VARIABLES, ProcessManager, ros_env

READY_TIMEOUT_S = 180.0  # engines prepare every member at configure
QUIET_S = 1.5  # wall time without new outputs that ends the drain


class ReplayError(DynofaError):
    """The live graph could not be started or died during the replay."""


@dataclass(frozen=True)
class LiveOptions:
    rate: float = 1.0  # x real time
    domain_id: int | None = None  # None: the environment's ROS_DOMAIN_ID, else 0
    log_dir: Path | None = None
    storage: str = "sqlite3"


def _yaml(value: Any) -> str:
    """A parameter value as ``-p name:=value`` YAML text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return repr(value)


def graph(scenario: Scenario, opt: ReplayOptions) -> list[NodeSpec]:
    """The nodes of a replay of ``scenario``: what ``launch/dynofa.launch.xml`` starts, with one
    perception node per model and every setting taken from the scenario."""
    common = {"use_sim_time": True}
    checkpoint = str(opt.checkpoint_path())
    sim = NodeSpec(
        "dynofa_ros", "sim_platform_node", "sim_platform",
        params={k: _yaml(v) for k, v in {
            **common,
            "seed": scenario.seed,
            "ambient_c": float(scenario.ambient.at(0.0)) if scenario.ambient else 25.0,
            "state_of_charge": float(scenario.battery.at(0.0)) if scenario.battery else 1.0,
            "publish_period_s": float(opt.telemetry_period_s),
            "epoch_s": float(scenario.start_stamp_s),
        }.items()},
    )  # fmt: skip
    nodes = [sim]
    for m in scenario.models:
        cam = scenario.camera(m.camera)
        params = {
            **common,
            "model_name": m.name,
            "checkpoint": str(opt.checkpoint_path(m)),
            "family": str(opt.family_path(m)),
            "backend": opt.backend,
            "input": "compressed" if cam.compressed else "raw",
            "processor": opt.processor,
            "max_threads": 1,
            "platform": "sim-xavier-nx",
            "allow_dvfs": True,
            "latency_target_ms": float(m.latency_target_ms),
        }
        nodes.append(
            NodeSpec(
                "dynofa_ros", "perception_node", "perception", namespace=f"/{m.name}",
                params={k: _yaml(v) for k, v in params.items()},
                remaps=[("image", f"/{m.camera}{T.IMAGE_SUFFIX}"),
                        ("image/compressed", f"/{m.camera}{T.COMPRESSED_SUFFIX}")],
            )
        )  # fmt: skip
    manager: dict[str, Any] = {
        **common,
        "models": [m.name for m in scenario.models],
        "policy": opt.policy,
        "rate_hz": float(opt.manager_rate_hz),
        "platform": "sim-xavier-nx",
        "checkpoint": checkpoint,
        "processor": opt.processor,
        "stale_after_s": float(opt.stale_after_s),
    }
    for m in scenario.models:
        manager[f"{m.name}.family"] = str(opt.family_path(m))
        manager[f"{m.name}.latency_target_ms"] = float(m.latency_target_ms)
        manager[f"{m.name}.frame_rate_hz"] = float(scenario.camera(m.camera).fps)
        manager[f"{m.name}.min_accuracy"] = float(m.min_accuracy)
        manager[f"{m.name}.priority"] = float(m.priority)
    nodes.append(
        NodeSpec(
            "dynofa_ros", "manager_node", "manager",
            params={k: _yaml(v) for k, v in manager.items()},
        )
    )  # fmt: skip
    return nodes


def run_live(
    bag: str | Path,
    scenario: Scenario,
    options: ReplayOptions,
    live: LiveOptions,
    result_bag: str | Path,
    *,
    name: str | None = None,
    progress: bool = True,
) -> RunResults:
    """Replay ``bag`` through the live graph; write ``result_bag``; return its records."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from tqdm import tqdm

    from dynofa_ros.evaluation.bagio import BagReader, BagWriter
    from dynofa_ros.evaluation.result_bag import load_result_bag
    from dynofa_ros.evaluation.scenario_bag import inspect_bag
    from dynofa_ros.nodes.replay_node import ReplayNode

    if not live.rate > 0:
        raise ValueError(f"rate {live.rate} must be > 0")
    info = inspect_bag(bag)
    cameras = {c.topic for c in info.cameras}
    events = {t for t in T.SCENARIO_EVENTS if t in info.topics}
    truth = {c.ground_truth_topic for c in info.cameras if c.ground_truth_topic}
    played = sorted(cameras | events)
    kept = sorted(events | truth)  # copied into the result bag
    inputs = {t: info.topics[t].msgtype for t in played}
    models = [m.name for m in scenario.models]

    domain = live.domain_id
    if domain is None:
        domain = int(os.environ.get("ROS_DOMAIN_ID", "0") or 0)
    if not 0 <= domain <= 232:
        raise ValueError(f"domain_id {domain} is not in [0, 232]")
    env = ros_env(domain)
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", *DISCOVERY_VARIABLES) if k in env})
    log_dir = Path(live.log_dir or tempfile.mkdtemp(prefix="dynofa-replay-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    run_info = RunInfo.for_scenario(
        scenario, name or f"{scenario.name}-{options.policy}", policy=options.policy,
        mode="live", source=str(bag),
        extra={"rate": live.rate, "logs": str(log_dir), "subnets": _subnets(scenario, options)},
    )  # fmt: skip
    custom = {
        T.CUSTOM_DATA_RUN: json.dumps(run_info.to_dict()),
        T.CUSTOM_DATA_SCENARIO: scenario.to_yaml(),
    }
    procs = ProcessManager(log_dir, env)
    stop = threading.Event()
    writer_lock = threading.Lock()
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    spinner = None
    recorded: list[tuple[int, int, str, str, bytes]] = []  # (ns, order, topic, type, cdr)

    def record(topic: str, msgtype: str, ns: int, data: bytes) -> None:
        # called from the executor thread too; the bag is written at the end, in this thread
        with writer_lock:
            recorded.append((ns, len(recorded), topic, msgtype, data))

    try:
        node = ReplayNode(inputs, models, record, context=context)
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        for spec in graph(scenario, options):
            name_ = spec.fully_qualified_name.strip("/").replace("/", ".")
            procs.start(spec.command(), name=name_)
        _wait_ready(node, procs, scenario, info, progress)

        clock0_ns, clock1_ns = replay_clock(scenario)  # shared with the fast mode
        frames = sum(info.topics[t].count for t in cameras)
        bar = tqdm(total=frames, unit="frame", desc=f"replay {scenario.name} "
                   f"[{options.policy}]", disable=not progress)  # fmt: skip

        def on_message(topic: str) -> None:
            if topic in cameras:
                bar.update(1)
            _check_alive(procs)

        with BagReader(bag) as reader:
            for t in played:
                reader.check_type(t)

            def inputs_and_copies() -> Any:
                for topic, msgtype, ns, data in reader.raw_messages(
                    sorted(set(played) | set(kept))
                ):
                    if topic in kept:
                        record(topic, msgtype, ns, data)
                    if topic in inputs:
                        yield topic, ns, data

            node.play(
                inputs_and_copies(), start_ns=clock0_ns, rate=live.rate, stop=stop,
                on_message=on_message,
            )  # fmt: skip
        bar.close()
        node.run_clock(max(clock1_ns, info.end_ns), clock0_ns, live.rate, stop)
        _drain(node)
        executor.remove_node(node)
        node.destroy_node()
        with writer_lock, BagWriter(result_bag, live.storage, custom_data=custom) as writer:
            for ns, _, topic, msgtype, data in sorted(recorded, key=lambda r: r[:2]):
                writer.write_raw(topic, msgtype, ns, data)
    finally:
        stop.set()
        procs.stop_all()
        executor.shutdown()
        context.try_shutdown()
        if spinner is not None:
            spinner.join(timeout=5.0)
    return load_result_bag(result_bag, name=run_info.name)


def _check_alive(procs: ProcessManager) -> None:
    for p in procs.processes:
        if not p.alive():
            tail = "\n".join(p.output().splitlines()[-15:])
            raise ReplayError(f"{p.name} exited with code {p.popen.returncode}:\n{tail}")


def _wait_ready(
    node: Any, procs: ProcessManager, scenario: Scenario, info: Any, progress: bool
) -> None:
    """Until every perception node listens to its camera, the manager to the mission topic and
    the simulated board serves frames (engines take a while to prepare every member)."""
    needed: dict[str, int] = {}
    for m in scenario.models:
        cam = scenario.camera(m.camera)
        suffix = T.COMPRESSED_SUFFIX if cam.compressed else T.IMAGE_SUFFIX
        topic = f"/{m.camera}{suffix}"
        needed[topic] = needed.get(topic, 0) + 1
    if T.MISSION_PRIORITY in info.topics:
        needed[T.MISSION_PRIORITY] = 1
    deadline = time.monotonic() + READY_TIMEOUT_S
    if progress:
        print(f"starting {len(procs.processes)} nodes (logs in {procs.log_dir}) ...", flush=True)
    while True:
        _check_alive(procs)
        missing = {t: n for t, n in needed.items() if node.subscribers(t) < n}
        node.discover()
        if not missing and node.count_publishers(T.BATTERY) > 0:
            return
        if time.monotonic() > deadline:
            raise ReplayError(
                f"the graph was not ready after {READY_TIMEOUT_S:g} s: no subscriber yet on "
                f"{', '.join(missing) or T.BATTERY + ' (publisher)'}; logs in {procs.log_dir}"
            )
        time.sleep(0.1)


def _drain(node: Any) -> None:
    """Wait until the outputs stop coming (the last frames and decisions)."""
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() - quiet_since < QUIET_S:
        total = sum(node.received.values())
        if total != last:
            last, quiet_since = total, time.monotonic()
        time.sleep(0.05)


def _subnets(scenario: Scenario, options: ReplayOptions) -> list[dict[str, Any]]:
    from dynofa_ros.evaluation.records import subnets_extra
    from dynofa_ros.family import load_family

    return subnets_extra(*(load_family(options.family_path(m)) for m in scenario.models))
