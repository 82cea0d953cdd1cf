"""The whole loop over real DDS: simulated board, perception node and manager node.

A battery drop makes the manager command a lower-energy configuration, which the perception
node acknowledges in the next frame's status; a mission-priority change to CRITICAL raises the
accuracy within the latency target; the policy is a live parameter; bad inputs are counted."""

from __future__ import annotations

import time
from typing import Any

import pytest
from node_inputs import fashion_images, image_message
from ros_harness import call_service, publish_until, spin_until, wait_for_subscribers

pytestmark = pytest.mark.ros
FRAME_PERIOD_S = 0.1


class Loop:
    def __init__(self, node: Any, processes: Any, *extra_manager: str) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import BatteryState, Image

        from dynofa_ros.msg import MissionPriority, PerceptionStatus, ReconfigurationCommand
        from dynofa_ros.nodes.qos import COMMANDS

        self.node, self.processes = node, processes
        processes.start_python("dynofa_ros.nodes.sim_platform_node", "--ros-args",
                               "-p", "publish_period_s:=0.1")  # fmt: skip
        processes.start_python(
            "dynofa_ros.nodes.perception_node", "--ros-args", "-r", "__ns:=/model",
            "-p", "model_name:=model", "-p", "platform:=sim-xavier-nx", "-p", "processor:=cuda",
            "-p", "allow_dvfs:=true",
        )  # fmt: skip
        processes.start_python(
            "dynofa_ros.nodes.manager_node", "--ros-args", "-p", "models:=[model]",
            "-p", "model.latency_target_ms:=100.0", "-p", "model.frame_rate_hz:=10.0",
            *extra_manager,
        )  # fmt: skip
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.commands: list[Any] = []
        self.statuses: list[Any] = []
        node.create_subscription(ReconfigurationCommand, "/model/reconfigure",
                                 self.commands.append, COMMANDS)  # fmt: skip
        node.create_subscription(PerceptionStatus, "/model/status", self.statuses.append, qos)
        self.images = node.create_publisher(Image, "/model/image", qos)
        self.battery = node.create_publisher(BatteryState, "/scenario/battery", qos)
        self.mission = node.create_publisher(MissionPriority, "/mission_priority", qos)
        for pub in (self.images, self.battery, self.mission):
            wait_for_subscribers(node, pub, processes=processes, timeout_s=60.0)
        self.i = 0

    def frames_until(self, predicate: Any, what: str, limit: int = 80) -> None:
        """Feed frames (each waits for its status) until ``predicate()`` holds."""
        images, _ = fashion_images()
        for _ in range(limit):
            if predicate():
                return
            # paced at the camera's 10 Hz: the simulated board drops frames that arrive while
            # it is still computing the previous one
            due = time.monotonic() + FRAME_PERIOD_S
            spin_until(self.node, lambda due=due: time.monotonic() >= due, what="frame period")
            n = len(self.statuses)
            self.i += 1
            msg = image_message(images[self.i % 64], self.node.get_clock().now().to_msg())
            publish_until(self.node, lambda m=msg: self.images.publish(m),
                          lambda n=n: len(self.statuses) > n, 30.0, what="status",
                          processes=self.processes)  # fmt: skip
        assert predicate(), f"{what} did not happen within {limit} frames"

    def acknowledged(self, seq: int) -> bool:
        return any(s.last_command_seq >= seq and s.latency_ms > 0 for s in self.statuses)


def _energy_mj(cmd: Any) -> float:
    return cmd.predicted_power_w * cmd.predicted_latency_ms


def test_battery_drop_and_mission_priority(ros_node: Any, processes: Any) -> None:
    from sensor_msgs.msg import BatteryState

    from dynofa_ros.msg import MissionPriority

    loop = Loop(ros_node, processes)
    high = MissionPriority(level=MissionPriority.LEVEL_CRITICAL, reason="accuracy first")
    high.header.stamp = ros_node.get_clock().now().to_msg()
    loop.mission.publish(high)
    loop.frames_until(lambda: loop.commands, "a first command")
    loop.frames_until(lambda: loop.acknowledged(loop.commands[-1].seq), "first acknowledgement")
    first = loop.commands[-1]
    assert first.target_model == "model" and first.latency_target_ms == pytest.approx(100.0)

    # let the latency feedback settle (the family's records meet the board's measurements)
    settled = len(loop.statuses) + 20
    loop.frames_until(lambda: len(loop.statuses) >= settled, "20 more frames", limit=25)
    low = BatteryState(percentage=0.08, present=True)
    low.header.stamp = ros_node.get_clock().now().to_msg()
    n = len(loop.commands)
    before_drop = loop.commands[-1]
    loop.battery.publish(low)
    loop.frames_until(
        lambda: any("saving mode" in c.reason for c in loop.commands[n:]),
        "a battery-saving command after the battery drop",
    )
    saving = next(c for c in loop.commands[n:] if "saving mode" in c.reason)
    assert _energy_mj(saving) < _energy_mj(before_drop), (before_drop, saving)
    # Acknowledged by the very next frame's status.
    before = len(loop.statuses)
    loop.frames_until(lambda: len(loop.statuses) > before, "next frame", limit=2)
    assert loop.statuses[-1].last_command_seq >= saving.seq

    full = BatteryState(percentage=1.0, present=True)
    full.header.stamp = ros_node.get_clock().now().to_msg()
    loop.battery.publish(full)
    critical = MissionPriority(level=MissionPriority.LEVEL_CRITICAL, reason="test")
    critical.header.stamp = ros_node.get_clock().now().to_msg()
    n = len(loop.commands)
    loop.mission.publish(critical)
    loop.frames_until(
        lambda: (
            len(loop.commands) > n
            and loop.commands[-1].predicted_accuracy > saving.predicted_accuracy
        ),
        "a more accurate configuration at CRITICAL",
    )
    best = loop.commands[-1]
    assert best.predicted_latency_ms <= 100.0
    loop.frames_until(lambda: loop.acknowledged(best.seq), "acknowledgement")
    assert all(p.alive() for p in processes.processes)


def test_the_manager_is_a_lifecycle_node(ros_node: Any, processes: Any) -> None:
    """Unconfigured at start with ``auto_activate:=false``; configure loads the families and
    listens (inputs only: no command while inactive); activate starts deciding; deactivate
    stops the heartbeat; a configure that fails leaves the node up with the reason."""
    from diagnostic_msgs.msg import DiagnosticArray
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from dynofa_ros.msg import MissionPriority, ReconfigurationCommand
    from dynofa_ros.nodes.qos import COMMANDS

    proc = processes.start_python(
        "dynofa_ros.nodes.manager_node", "--ros-args", "-p", "models:=[model]",
        "-p", "auto_activate:=false", "-p", "command_repeat_s:=0.2",
    )  # fmt: skip
    commands: list[Any] = []
    ros_node.create_subscription(ReconfigurationCommand, "/model/reconfigure", commands.append,
                                 COMMANDS)  # fmt: skip
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    diagnostics: list[Any] = []
    ros_node.create_subscription(DiagnosticArray, "/diagnostics",
                                 lambda m: diagnostics.extend(m.status), qos)  # fmt: skip
    mission = ros_node.create_publisher(MissionPriority, "/mission_priority", qos)
    get = ros_node.create_client(GetState, "/manager/get_state")
    change = ros_node.create_client(ChangeState, "/manager/change_state")

    def state() -> int:
        return int(call_service(ros_node, get, GetState.Request(), processes=processes)
                   .current_state.id)  # fmt: skip

    def transition(tid: int, goal: int) -> None:
        """Sent once (a transition is not idempotent); its outcome is read with get_state."""
        spin_until(ros_node, change.service_is_ready, 60.0, what=change.srv_name,
                   processes=processes)  # fmt: skip
        change.call_async(ChangeState.Request(transition=Transition(id=tid)))
        deadline = time.monotonic() + 60.0
        while (now := state()) != goal:  # each call spins until its answer
            assert time.monotonic() < deadline, f"state {now}, not {goal}, after 60 s"

    assert state() == State.PRIMARY_STATE_UNCONFIGURED
    transition(Transition.TRANSITION_CONFIGURE, State.PRIMARY_STATE_INACTIVE)
    wait_for_subscribers(ros_node, mission, processes=processes)
    msg = MissionPriority(level=MissionPriority.LEVEL_HIGH, reason="test")
    msg.header.stamp = ros_node.get_clock().now().to_msg()
    mission.publish(msg)
    # the diagnostics (published from configure on) show the mission taken and no decision
    n = len(diagnostics)
    spin_until(ros_node, lambda: len(diagnostics) >= n + 2, 30.0, what="two diagnostics",
               processes=processes)  # fmt: skip
    values = {kv.key: kv.value for kv in diagnostics[-1].values}
    assert values["decision.model"] == "none yet" and not commands, "inactive: no decision"

    transition(Transition.TRANSITION_ACTIVATE, State.PRIMARY_STATE_ACTIVE)
    spin_until(ros_node, lambda: len(commands) >= 3, 30.0, what="commands and heartbeats",
               processes=processes)  # fmt: skip
    first = commands[0]
    assert first.target_model == "model" and first.seq == 1
    assert all((c.epoch, c.seq) == (first.epoch, first.seq) for c in commands[1:3]), "heartbeat"

    transition(Transition.TRANSITION_DEACTIVATE, State.PRIMARY_STATE_INACTIVE)
    transition(Transition.TRANSITION_CLEANUP, State.PRIMARY_STATE_UNCONFIGURED)
    assert proc.alive()


def test_a_manager_whose_configure_fails_stays_up_and_says_why(processes: Any) -> None:
    proc = processes.start_python(
        "dynofa_ros.nodes.manager_node", "--ros-args", "-p", "models:=[model]",
        "-p", "model.family:=/nonexistent/robot.family.json",
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while "configure failed" not in proc.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    line = next(x for x in proc.output().splitlines() if "configure failed" in x)
    assert "/nonexistent/robot.family.json" in line
    assert proc.alive(), "a failed configure leaves the lifecycle node running, unconfigured"
