"""Replay of a bundled scenario bag through the live nodes (real DDS, real engine, simulated
board), its fast in-process twin, and what bad input and Ctrl-C get."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ros_harness import exclusive_domain, wait_for_publishers

from dynofa_ros.evaluation.generate import generate
from dynofa_ros.evaluation.inprocess import ReplayOptions, bag_items, run_inprocess
from dynofa_ros.evaluation.oracle import read_schedule
from dynofa_ros.evaluation.records import read_results
from dynofa_ros.evaluation.result_bag import load_result_bag
from dynofa_ros.evaluation.scenario import load, parse, resolve
from dynofa_ros.processes import interruptible

CLI = [sys.executable, "-m", "dynofa_ros.cli"]


@pytest.fixture(scope="module")
def tiny_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "tiny.bag"
    generate(load(resolve("tiny")), path)
    return path


# 10 s at 15 fps with an event of each kind: long enough for the live graph to fall behind if an
# executor starves its callbacks (it lost 75 % of such frames with rclpy 9.1.2's multi-threaded
# executor), short enough for every `make test`.
LIVE_CHECK = """
name: live_check
duration_s: 10
seed: 3
camera: {source: fashion_mnist, fps: 15, width: 64, height: 64, encoding: rgb8}
models: [{name: classifier, camera: camera, latency_target_ms: 60}]
mission:
  - {t: 0, level: NORMAL, reason: start}
  - {t: 4, level: CRITICAL, reason: obstacle ahead}
battery:
  rate_hz: 2
  thresholds: [0.2]
  timeline: [{t: 0, soc: 0.3}, {t: 10, soc: 0.15}]
ambient:
  rate_hz: 1
  timeline: [{t: 0, celsius: 25}, {t: 10, celsius: 30}]
corunners:
  - {t: 3, name: gpu_app, processor: cuda, share: 0.5}
  - {t: 7, name: gpu_app, processor: cuda, share: 0.0}
"""


@pytest.fixture(scope="module")
def live_check_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "live_check.bag"
    generate(parse(LIVE_CHECK, "live_check"), path)
    return path


def _replay_live(bag: Path, out: Path, *extra: str) -> None:
    with exclusive_domain() as domain:
        done = subprocess.run(
            [*CLI, "replay", str(bag), "--policy", "dynofa", "-o", str(out),
             "--domain-id", str(domain), "--quiet", *extra],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def live_out(tiny_bag: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``dynofa replay`` of the tiny bag, live, once for the module."""
    out = tmp_path_factory.mktemp("live")
    _replay_live(tiny_bag, out)
    yield out


@pytest.fixture(scope="module")
def live_check_out(live_check_bag: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("live_check")
    # at half speed: a command must reach the node before the next frame (66 ms of bag time),
    # which a heavily loaded 2-core machine missed once in 7 runs at full speed
    _replay_live(live_check_bag, out, "--rate", "0.5")
    return out


def _decisions(run: object) -> list[tuple]:
    return [
        (c.seq, c.config.subnet_id, c.config.processor, c.config.threads,
         c.config.cpu_frequency_khz, c.config.gpu_frequency_khz)
        for c in run.commands  # type: ignore[attr-defined]
    ]  # fmt: skip


def test_live_replay_classifies_the_frames_and_obeys_the_manager(
    live_out: Path, tiny_bag: Path
) -> None:
    from dynofa_ros.engine import Engine
    from dynofa_ros.evaluation.inprocess import Frame

    run = read_results(live_out / "tiny-dynofa-live.results.jsonl")
    assert run.info.mode == "live"
    scenario, items = bag_items(tiny_bag)
    frames = {f.stamp_ns: f for f in items if isinstance(f, Frame)}
    # some frames may be dropped while the simulated board computes a slow configuration
    assert 3 <= len(run.frames) <= len(frames)
    labelled = [f for f in run.frames if f.label is not None]
    assert len(labelled) == len(run.frames)  # joined with ground truth by stamp
    correct = sum(f.predicted == f.label for f in labelled)
    assert correct / len(labelled) > 0.5  # chance is 0.1
    # every prediction is what the engine gives on that frame with the member that ran it
    options = ReplayOptions()
    engine = Engine.load(
        options.checkpoint_path(), options.family_path("classifier"), progress=False
    )
    try:
        for f in run.frames:
            engine.switch(f.subnet_id)
            assert engine_prediction(engine, frames[f.stamp_ns]) == f.predicted, f
    finally:
        engine.close()
    # the manager's commands were acknowledged and took effect at the next frames
    end = run.frames[-1].t_s
    acked = [c for c in run.commands if c.t_s < end - 0.3]
    assert acked, "the manager sent no command in time to be acknowledged"
    for c in acked:
        assert all(f.command_seq >= c.seq for f in run.frames if f.t_s > c.t_s + 0.3), c
    last = acked[-1]
    nxt = next((c.t_s for c in run.commands if c.seq > last.seq), end + 1)
    between = [f for f in run.frames if last.t_s + 0.3 < f.t_s < nxt]
    assert all(f.subnet_id == last.config.subnet_id for f in between if last.config.subnet_id)
    # the result bag holds the same run
    again = load_result_bag(live_out / "tiny-dynofa-live.bag")
    assert [f.stamp_ns for f in again.frames] == [f.stamp_ns for f in run.frames]
    assert scenario.name == "tiny"


def engine_prediction(engine: object, frame: object) -> int:
    return int(frame.infer(engine).class_ids[0])  # type: ignore[attr-defined]


def test_fast_mode_makes_the_same_decisions_as_the_live_graph(
    live_check_out: Path, live_check_bag: Path
) -> None:
    """Same pre-roll, timer times, decision times and command rule in both modes (see
    docs/evaluation.md): on the same inputs, the same frames and the same decisions, the whole
    run. Times and simulated latencies agree to float precision only (the fast mode computes on
    float seconds of a ~1.7e9 s epoch, the live graph on integer nanoseconds)."""
    live = read_results(live_check_out / "live_check-dynofa-live.results.jsonl")
    scenario, items = bag_items(live_check_bag)
    fast = run_inprocess(scenario, ReplayOptions(policy="dynofa"), items=items, progress=False)
    assert fast.info.mode == "fast" and live.info.mode == "live"
    # every frame the replay published reached the node and was accounted for
    frames = live.info.extra["frames"]["classifier"]
    assert frames["in_bag"] == 150 and frames["lost_transport"] == 0, frames
    assert frames == fast.info.extra["frames"]["classifier"]
    # the pre-roll decision comes before frame 0 and frame 0 runs it, in both modes
    assert fast.commands[0].t_s < 0 and live.commands[0].t_s < 0
    assert fast.frames[0].command_seq == live.frames[0].command_seq == fast.commands[0].seq

    def outcome(f: object) -> tuple:
        return (f.stamp_ns, f.subnet_id, f.processor, f.predicted, f.command_seq)  # type: ignore[attr-defined]

    assert [outcome(f) for f in live.frames] == [outcome(f) for f in fast.frames]
    for a, b in zip(fast.frames, live.frames, strict=True):
        assert b.latency_ms == pytest.approx(a.latency_ms, rel=1e-4), (a, b)
        assert b.energy_j == pytest.approx(a.energy_j, rel=1e-4), (a, b)  # one board time base
        assert b.energy_total_j == pytest.approx(a.energy_total_j, rel=1e-4), (a, b)
    # the board's readings at the same times, the same values (to the messages' precision:
    # BatteryState is float32, /diagnostics carry power and energy with 3 decimals)
    names = {s.series for s in live.samples} & {s.series for s in fast.samples}
    assert "battery" in names and any(n.startswith("temperature/") for n in names), names
    for name in names:
        fs = [s for s in fast.samples if s.series == name]
        ls = [s for s in live.samples if s.series == name]
        assert [round(s.t_s, 6) for s in ls] == [round(s.t_s, 6) for s in fs], name
        tol = {"abs": 2e-3} if name in ("power", "board_energy") else {"rel": 1e-6}
        assert [s.value for s in ls] == pytest.approx([s.value for s in fs], **tol), name
    assert _decisions(live) == _decisions(fast)
    for a, b in zip(fast.commands, live.commands, strict=True):
        assert b.t_s == pytest.approx(a.t_s, abs=1e-6)
    # the live node applied no command to a frame captured before (or at) its decision
    for f in live.frames:
        decided = [c.seq for c in live.commands if c.t_s < f.t_s]
        assert f.command_seq <= max(decided, default=0), f


def test_the_oracle_plays_its_schedule_in_the_live_graph(
    live_check_bag: Path, tmp_path: Path
) -> None:
    """The replay computes the oracle's schedule as the fast mode does and the manager node plays
    each entry at its time: the same frames and decisions as the fast oracle."""
    _replay_live(live_check_bag, tmp_path, "--rate", "0.5", "--policy", "oracle")
    live = read_results(tmp_path / "live_check-oracle-live.results.jsonl")
    scenario, items = bag_items(live_check_bag)
    fast = run_inprocess(scenario, ReplayOptions(policy="oracle"), items=items, progress=False)
    assert live.info.policy == "oracle" and len(fast.commands) >= 3
    assert _decisions(live) == _decisions(fast)
    for a, b in zip(fast.commands, live.commands, strict=True):
        assert b.t_s == pytest.approx(a.t_s, abs=1e-6) and b.reason == a.reason
    outcome = [(f.stamp_ns, f.subnet_id, f.processor, f.command_seq) for f in fast.frames]
    assert [(f.stamp_ns, f.subnet_id, f.processor, f.command_seq) for f in live.frames] == outcome
    schedule = read_schedule(next(tmp_path.glob("*.logs")) / "oracle_schedule.json")
    assert len(schedule) >= 2 and all(c.reason.startswith("oracle: planned") for c in live.commands)


def test_live_graph_does_not_spin(live_check_out: Path) -> None:
    """Each node's CPU over the live replay, as the replay measures it. rclpy 9.1.2's
    MultiThreadedExecutor busy-looped at 0.7-0.9 of a core in the perception node; classifying
    15 small frames a second costs a fraction of that."""
    live = read_results(live_check_out / "live_check-dynofa-live.results.jsonl")
    shares = live.info.extra["cpu_share"]
    assert set(shares) >= {"sim_platform", "classifier.perception", "manager", "replay"}
    for name, share in shares.items():
        assert 0.0 <= share < 0.5, (name, shares)


def test_replay_rejects_bad_bags_and_policies(tmp_path: Path, tiny_bag: Path) -> None:
    corrupt = tmp_path / "corrupt.bag"
    corrupt.mkdir()
    (corrupt / "metadata.yaml").write_text("rosbag2_bagfile_information: [not, a, bag\n")
    for argv, needle in (
        ([str(corrupt)], "corrupt.bag"),
        ([str(tmp_path / "missing.bag")], "does not exist"),
        ([str(tiny_bag), "--policy", "fastest"], "--policy 'fastest'"),
        ([str(tiny_bag), "--rate", "0"], "--rate 0"),
    ):
        done = subprocess.run(
            [*CLI, "replay", *argv, "-o", str(tmp_path / "out"), "--fast", "--quiet"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 1, (argv, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dynofa replay: error:"), done.stderr
        assert needle in lines[0]
    assert (
        not list((tmp_path / "out").glob("*.results.jsonl"))
        if (tmp_path / "out").exists()
        else True
    )


def _processes_in_domain(domain: int) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"ROS_DOMAIN_ID={domain}".encode() in environ:
            pids.append(int(proc.name))
    return pids


def _slow_replay(bag: Path, out: Path, domain: int) -> subprocess.Popen[str]:
    """``dynofa replay`` at a fifth of real time, returned once its graph runs (the perception
    node has logged its members)."""
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain)}
    replay = subprocess.Popen(
        [*CLI, "replay", str(bag), "-o", str(out), "--rate", "0.2", "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=interruptible,  # noqa: PLW1509 - one signal call, before exec
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and replay.poll() is None:
        logs = list(out.glob("*.logs/*perception*.log"))
        if logs and "members prepared" in logs[0].read_text(errors="replace"):
            break
        time.sleep(0.2)
    if replay.poll() is not None:
        pytest.fail(f"the replay ended before its graph ran: {replay.communicate()}")
    time.sleep(1.0)
    assert len(_processes_in_domain(domain)) >= 4  # replay + 3 nodes
    return replay


def _wait_until_no_process_in(domain: int, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while _processes_in_domain(domain) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _processes_in_domain(domain)


def test_ctrl_c_stops_every_process_and_leaves_no_half_written_result(
    tiny_bag: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with exclusive_domain() as domain:
        replay = _slow_replay(tiny_bag, out, domain)
        try:
            replay.send_signal(signal.SIGINT)
            _, err = replay.communicate(timeout=60)
        finally:
            if replay.poll() is None:
                replay.kill()
        assert replay.returncode == 130, err
        assert "interrupted" in err
        assert _wait_until_no_process_in(domain, 10.0) == []
    assert not list(out.glob("*.results.jsonl"))
    assert not [p for p in out.iterdir() if p.name.endswith(".bag") or ".partial" in p.name]


def test_nodes_stop_by_themselves_when_the_replay_is_killed(tiny_bag: Path, tmp_path: Path) -> None:
    """SIGKILL gives the replay no chance to stop its nodes (each in its own process group);
    they see they were orphaned and stop cleanly, instead of running on in the domain."""
    out = tmp_path / "out"
    with exclusive_domain() as domain:
        replay = _slow_replay(tiny_bag, out, domain)
        nodes = [p for p in _processes_in_domain(domain) if p != replay.pid]
        replay.kill()
        replay.communicate(timeout=60)
        left = _wait_until_no_process_in(domain, 30.0)
        for pid in left:  # do not leave them to the next test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert left == [], f"still running after the replay was killed: {left} of {nodes}"
    assert not list(out.glob("*.results.jsonl"))


def test_replay_node_subscribes_once_to_a_topic_two_threads_discover(
    ros_context: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay's thread and the executor's timer both discover /temperature/* topics; a
    second subscription to one topic recorded every reading twice (seen once in 20 live runs).
    Subscribing is slowed down here so that the two threads always meet."""
    import threading

    from rclpy.node import Node

    from dynofa_ros.nodes.replay_node import INPUT_QOS, ReplayNode

    node = ReplayNode({}, ["m"], lambda *_: None, context=ros_context)
    try:
        made: list[str] = []
        create = Node.create_subscription

        def slow_create(self: Node, msg_type: object, topic: str, *args: object, **kw: object):
            made.append(topic)
            time.sleep(0.2)
            return create(self, msg_type, topic, *args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(Node, "create_subscription", slow_create)
        topic = "/temperature/cpu_therm"
        args = (topic, "sensor_msgs/msg/Temperature", INPUT_QOS)
        threads = [threading.Thread(target=node._subscribe, args=args) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert made.count(topic) == 1, made
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_replay_refuses_a_domain_another_graph_uses(
    tiny_bag: Path, tmp_path: Path, ros_domain: int, ros_node: Any, processes: Any
) -> None:
    """A board node left running on the domain would answer frames and publish readings too."""
    processes.start_python("dynofa_ros.nodes.sim_platform_node")
    wait_for_publishers(ros_node, "/battery", processes=processes)
    done = subprocess.run(
        [*CLI, "replay", str(tiny_bag), "-o", str(tmp_path / "out"), "--policy", "step",
         "--domain-id", str(ros_domain), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "another ROS graph is on this ROS_DOMAIN_ID" in done.stderr
    assert "--domain-id" in done.stderr
    assert not list((tmp_path / "out").glob("*.results.jsonl"))
