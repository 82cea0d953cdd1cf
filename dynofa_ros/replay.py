"""``dynofa replay``: a scenario bag through the nodes, live over DDS or in-process.

Live mode starts the real graph (``sim_platform_node``, one ``perception_node`` per model of the
scenario, ``manager_node``) as separate processes with ``use_sim_time``, plays the bag into it
with :class:`~dynofa_ros.nodes.replay_node.ReplayNode` and records its outputs into a result bag,
which :func:`~dynofa_ros.evaluation.result_bag.load_result_bag` turns into the run's records.
The fast mode (:mod:`dynofa_ros.evaluation.inprocess`) runs the same core code in one process.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dynofa_ros.errors import DynofaError
from dynofa_ros.evaluation import topics as T
from dynofa_ros.evaluation.inprocess import ReplayOptions, oracle_schedule, replay_clock
from dynofa_ros.evaluation.records import RunInfo, RunResults
from dynofa_ros.evaluation.scenario import Scenario
from dynofa_ros.launch_graph import NodeSpec
from dynofa_ros.processes import DISCOVERY_VARIABLES, ProcessManager, ros_env
from dynofa_ros.resources import config_dir

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


def graph(scenario: Scenario, opt: ReplayOptions, schedule: Path | None = None) -> list[NodeSpec]:
    """The nodes of a replay of ``scenario``: what ``launch/dynofa.launch.xml`` starts, with one
    perception node per model and every setting taken from the scenario (``schedule``: the
    oracle's, for policy ``oracle``)."""
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
            # the board's time 0 is the replay clock's first time, as in the fast mode
            "epoch_s": replay_clock(scenario)[0] * 1e-9,
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
                remaps=[("image/compressed" if cam.compressed else "image", cam.bag_topic)],
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
    if schedule is not None:
        manager["schedule"] = str(schedule)
        manager["schedule_origin_s"] = scenario.start_ns * 1e-9
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


def _oracle_barriers(schedule: Any, scenario: Scenario) -> list[tuple[int, list[str]]]:
    """Where the replay holds its clock for the oracle: each entry's time (played ``LEAD_S``
    early, as in the fast mode) and the command topics that must have answered it (the models
    whose configuration changes), so a decision 1 ms before a frame reaches the node first."""
    from dynofa_ros.evaluation.oracle import LEAD_S

    out = []
    for before, entry in itertools.pairwise(schedule):
        changed = [m for m, c in entry.configs.items() if c != before.configs.get(m)]
        ns = scenario.start_ns + round((entry.t_s - LEAD_S) * 1e9)
        out.append((ns, [f"/{m}{T.RECONFIGURE_SUFFIX}" for m in changed]))
    return out


class _Published:
    """Messages the replay published, per topic, with a progress bar over the camera frames;
    a node that exits stops the replay at once."""

    def __init__(
        self, procs: ProcessManager, cameras: set[str], frames: int, desc: str, progress: bool
    ) -> None:
        from tqdm import tqdm

        self.procs, self.cameras = procs, cameras
        self.counts: dict[str, int] = {}
        self.bar = tqdm(total=frames, unit="frame", desc=desc, disable=not progress)

    def add(self, topic: str) -> None:
        self.counts[topic] = self.counts.get(topic, 0) + 1
        if topic in self.cameras:
            self.bar.update(1)
        _check_alive(self.procs)

    def close(self) -> None:
        self.bar.close()


class _Recorder:
    """What the result bag will hold, recorded from the executor thread too; the bag is written
    at the end, in the replay's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[int, int, str, str, bytes]] = []  # (ns, order, topic, type, cdr)

    def record(self, topic: str, msgtype: str, ns: int, data: bytes) -> None:
        with self._lock:
            self._items.append((ns, len(self._items), topic, msgtype, data))

    def items(self) -> list[tuple[int, int, str, str, bytes]]:
        with self._lock:
            return list(self._items)

    def write(self, path: str | Path, storage: str, custom: dict[str, str]) -> None:
        from dynofa_ros.evaluation.bagio import BagWriter

        with BagWriter(path, storage, custom_data=custom) as writer:
            for ns, _, topic, msgtype, data in sorted(self.items(), key=lambda r: r[:2]):
                writer.write_raw(topic, msgtype, ns, data)


def _bag_topics(info: Any, cameras: set[str]) -> tuple[list[str], list[str]]:
    """The topics played into the graph (cameras, scenario events) and those copied into the
    result bag (scenario events, ground truth)."""
    events = {t for t in T.SCENARIO_EVENTS if t in info.topics}
    truth = {c.ground_truth_topic for c in info.cameras if c.ground_truth_topic}
    return sorted(cameras | events), sorted(events | truth)


def _inputs_and_copies(
    reader: Any,
    replay_plan: Any,
    played: list[str],
    kept: list[str],
    record: Callable[[str, str, int, bytes], None],
) -> Iterator[tuple[str, int, bytes]]:
    """The bag's inputs to play, restamped where the plan says; the kept topics are copied."""
    for topic, msgtype, ns, data in reader.raw_messages(sorted(set(played) | set(kept))):
        if topic in kept:
            record(topic, msgtype, ns, data)
        if topic in played:
            restamp = replay_plan.restamp(topic)
            yield topic, ns, reader.restamp(msgtype, data, ns) if restamp else data


def _start_graph(
    procs: ProcessManager, scenario: Scenario, options: ReplayOptions, log_dir: Path
) -> list[tuple[int, list[str]]]:
    """Start the graph's nodes; the oracle's schedule is computed here as the fast mode does
    (and played by the manager node). Returns the oracle's barriers (none for a policy)."""
    schedule, barriers = None, []
    if options.policy == "oracle":
        from dynofa_ros.evaluation.oracle import write_schedule

        planned = oracle_schedule(scenario, options)
        schedule = write_schedule(log_dir / "oracle_schedule.json", planned, scenario=scenario.name)
        barriers = _oracle_barriers(planned, scenario)
    for spec in graph(scenario, options, schedule):
        name_ = spec.fully_qualified_name.strip("/").replace("/", ".")
        procs.start(spec.command(), name=name_)
    return barriers


def _graph_env(domain: int | None) -> dict[str, str]:
    """The environment of the graph's processes, also set in this one (its replay node joins
    the same domain with the same transport)."""
    if domain is None:
        domain = int(os.environ.get("ROS_DOMAIN_ID", "0") or 0)
    if not 0 <= domain <= 232:
        raise ValueError(f"domain_id {domain} is not in [0, 232]")
    env = ros_env(domain)
    # the transport the launch files set (camera-sized images need it: the default transport
    # lost most 640x480 frames), unless the user chose a profile
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") or str(
        config_dir() / "fastdds_shm.xml"
    )
    wanted = ("ROS_DOMAIN_ID", "FASTDDS_DEFAULT_PROFILES_FILE", *DISCOVERY_VARIABLES)
    os.environ.update({k: env[k] for k in wanted if k in env})
    return env


def run_live(
    bag: str | Path,
    replay_plan: Any,
    options: ReplayOptions,
    live: LiveOptions,
    result_bag: str | Path,
    *,
    name: str | None = None,
    progress: bool = True,
) -> RunResults:
    """Replay ``bag`` through the live graph as ``replay_plan`` (:func:`~.recorded.plan`) says;
    write ``result_bag``; return its records. Frames on the receive-time base get that time as
    their header stamp (the nodes work on header stamps)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from dynofa_ros.evaluation.bagio import BagReader
    from dynofa_ros.evaluation.result_bag import load_result_bag
    from dynofa_ros.evaluation.scenario_bag import inspect_bag
    from dynofa_ros.nodes.replay_node import ReplayNode

    if not live.rate > 0:
        raise ValueError(f"rate {live.rate} must be > 0")
    scenario: Scenario = replay_plan.scenario
    cameras = {c.bag_topic for c in scenario.cameras}
    info = inspect_bag(bag, cameras=cameras)
    played, kept = _bag_topics(info, cameras)

    env = _graph_env(live.domain_id)
    log_dir = Path(live.log_dir or tempfile.mkdtemp(prefix="dynofa-replay-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    run_info = RunInfo.for_scenario(
        scenario, name or f"{scenario.name}-{options.policy}", policy=options.policy,
        mode="live", source=str(bag),
        extra={"rate": live.rate, "logs": str(log_dir), "subnets": _subnets(scenario, options),
               "dds_profile": env["FASTDDS_DEFAULT_PROFILES_FILE"]},
    )  # fmt: skip
    custom = {
        T.CUSTOM_DATA_RUN: json.dumps(run_info.to_dict()),
        T.CUSTOM_DATA_SCENARIO: scenario.to_yaml(),
    }
    procs = ProcessManager(log_dir, env)
    stop = threading.Event()
    recorder = _Recorder()
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    spinner = None
    try:
        node = ReplayNode(
            {t: info.topics[t].msgtype for t in played},
            [m.name for m in scenario.models],
            recorder.record,
            context=context,
        )
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        barriers = _start_graph(procs, scenario, options, log_dir)
        _wait_ready(node, procs, scenario, info, progress)

        clock0_ns, clock1_ns = replay_clock(scenario)  # shared with the fast mode
        cpu = CpuMeter(procs)
        published = _Published(procs, cameras, sum(info.topics[t].count for t in cameras),
                                f"replay {scenario.name} [{options.policy}]", progress)  # fmt: skip
        with BagReader(bag) as reader:
            for t in played:
                reader.check_type(t)
            node.play(
                _inputs_and_copies(reader, replay_plan, played, kept, recorder.record),
                start_ns=clock0_ns, rate=live.rate, stop=stop, on_message=published.add,
                barriers=barriers,
            )  # fmt: skip
        published.close()
        node.run_clock(max(clock1_ns, info.end_ns), clock0_ns, live.rate, stop)
        _drain(node)
        _check_alone(node)  # or one that joined during the run
        shares = cpu.shares()
        executor.remove_node(node)
        node.destroy_node()
        accounting = frame_accounting(
            published.counts, _camera_topics(scenario), _last_status(recorder.items())
        )
        run_info = replace(run_info, extra={**run_info.extra, "frames": accounting,
                                            "cpu_share": shares})  # fmt: skip
        custom[T.CUSTOM_DATA_RUN] = json.dumps(run_info.to_dict())
        if progress:
            print(_summary(accounting, shares), flush=True)
        recorder.write(result_bag, live.storage, custom)
    finally:
        stop.set()
        procs.stop_all()
        executor.shutdown()
        context.try_shutdown()
        if spinner is not None:
            spinner.join(timeout=5.0)
    return load_result_bag(result_bag, name=run_info.name)


class CpuMeter:
    """CPU time of each node process (and this one) over the replay, as a share of one core:
    what the whole graph costs, and the number that exposes an executor that spins."""

    def __init__(self, procs: ProcessManager) -> None:
        import psutil

        self._procs = {p.name: psutil.Process(p.popen.pid) for p in procs.processes}
        self._procs["replay"] = psutil.Process()
        self._start = {n: self._cpu(n) for n in self._procs}
        self._t0 = time.monotonic()

    def _cpu(self, name: str) -> float:
        try:
            t = self._procs[name].cpu_times()
        except Exception:  # a process that is gone has no more CPU to count
            return math.nan
        return float(t.user + t.system)

    def shares(self) -> dict[str, float]:
        wall = max(time.monotonic() - self._t0, 1e-9)
        return {n: round((self._cpu(n) - c0) / wall, 3) for n, c0 in self._start.items()}


def frame_accounting(
    published: dict[str, int], cameras: dict[str, str], last_status: dict[str, Any]
) -> dict[str, dict[str, int]]:
    """Per model: frames the replay published on its camera, and where each went (processed,
    dropped by the node as stale / board busy, rejected, or lost before the node in transport)."""
    out = {}
    for model, topic in cameras.items():
        st = last_status.get(model)
        processed = int(st.frames_processed) if st is not None else 0
        dropped = int(st.frames_dropped) if st is not None else 0
        rejected = int(st.frames_rejected) if st is not None else 0
        sent = int(published.get(topic, 0))
        out[model] = {
            "in_bag": sent,
            "processed": processed,
            "dropped_node": dropped,
            "rejected": rejected,
            "lost_transport": max(0, sent - processed - dropped - rejected),
        }
    return out


def _last_status(recorded: list[tuple[int, int, str, str, bytes]]) -> dict[str, Any]:
    from rclpy.serialization import deserialize_message

    from dynofa_ros.msg import PerceptionStatus

    last: dict[str, Any] = {}
    for _, _, _topic, msgtype, data in recorded:
        if msgtype == T.PERCEPTION_STATUS:
            msg = deserialize_message(data, PerceptionStatus)
            last[msg.model_name] = msg
    return last


def _camera_topics(scenario: Scenario) -> dict[str, str]:
    """Each model's camera topic, as the replay plays it."""
    out = {}
    for m in scenario.models:
        out[m.name] = scenario.camera(m.camera).bag_topic
    return out


def _summary(accounting: dict[str, dict[str, int]], shares: dict[str, float]) -> str:
    parts = [
        f"{m}: {a['processed']}/{a['in_bag']} frames processed, {a['dropped_node']} dropped by "
        f"the node, {a['rejected']} rejected, {a['lost_transport']} lost in transport"
        for m, a in accounting.items()
    ]
    cpu = ", ".join(f"{n} {v:.2f}" for n, v in shares.items())
    return "; ".join(parts) + f"; CPU (cores): {cpu}, graph {sum(shares.values()):.2f}"


def _check_alive(procs: ProcessManager) -> None:
    for p in procs.processes:
        if not p.alive():
            tail = "\n".join(p.output().splitlines()[-15:])
            raise ReplayError(f"{p.name} exited with code {p.popen.returncode}:\n{tail}")


def _check_configured(procs: ProcessManager) -> None:
    """A lifecycle node whose configure failed stays up, unconfigured: say why at once."""
    for p in procs.processes:
        failed = next((x for x in p.output().splitlines() if "configure failed" in x), None)
        if failed is not None:
            raise ReplayError(f"{p.name}: {failed.strip()} (logs in {procs.log_dir})")


def _wait_ready(
    node: Any, procs: ProcessManager, scenario: Scenario, info: Any, progress: bool
) -> None:
    """Until every perception node listens to its camera, the manager to the mission topic and
    the simulated board serves frames (engines take a while to prepare every member)."""
    needed: dict[str, int] = {}
    for topic in _camera_topics(scenario).values():
        needed[topic] = needed.get(topic, 0) + 1
    if T.MISSION_PRIORITY in info.topics:
        needed[T.MISSION_PRIORITY] = 1
    deadline = time.monotonic() + READY_TIMEOUT_S
    if progress:
        print(f"starting {len(procs.processes)} nodes (logs in {procs.log_dir}) ...", flush=True)
    while True:
        _check_alive(procs)
        _check_configured(procs)
        missing = {t: n for t, n in needed.items() if node.subscribers(t) < n}
        node.discover()
        if not missing and node.count_publishers(T.BATTERY) > 0:
            _check_alone(node, needed)
            return
        if time.monotonic() > deadline:
            raise ReplayError(
                f"the graph was not ready after {READY_TIMEOUT_S:g} s: no subscriber yet on "
                f"{', '.join(missing) or T.BATTERY + ' (publisher)'}; logs in {procs.log_dir}"
            )
        time.sleep(0.1)


def _check_alone(node: Any, cameras: Mapping[str, int] | None = None) -> None:
    """Refuse a domain another graph also uses: its simulated board would answer frames and
    publish readings too, and the results would mix two graphs."""
    crowded = [
        f"{n} publishers on {t}"
        for t, n in ((T.BATTERY, node.count_publishers(T.BATTERY)),
                     ("/clock", node.count_publishers("/clock")))
        if n > 1
    ] + [
        f"{node.subscribers(t)} subscribers on {t} (expected {n})"
        for t, n in (cameras or {}).items() if node.subscribers(t) > n
    ]  # fmt: skip
    if crowded:
        raise ReplayError(
            f"another ROS graph is on this ROS_DOMAIN_ID ({'; '.join(crowded)}): stop it, or "
            "replay on a free domain with --domain-id"
        )


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
    from dynofa_ros.evaluation.scenario import family_accuracy_applies
    from dynofa_ros.family import load_family

    return subnets_extra(
        *(load_family(options.family_path(m)) for m in scenario.models),
        accuracy=family_accuracy_applies(scenario),
    )
