"""Replay node: plays a scenario bag into a live graph on its own clock and records the outputs.

The nodes under test run with ``use_sim_time``; this node publishes ``/clock`` from the bag's
time line, each input message at its recorded time (scaled by ``rate``), raw CDR bytes straight
from the bag (no decode / encode). Everything the graph publishes about the run
(``/<model>/classification``, ``/<model>/status``, ``/<model>/reconfigure``, ``/battery``,
``/temperature/*``, ``/diagnostics``) is written, as received, into a result bag stamped with the
replay clock, together with the bag's own events and ground truth (not its images).

It is driven by :func:`dynofa_ros.replay.run_live` (``dynofa replay``), not launched on its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock

from dynofa_ros.evaluation import topics as T
from dynofa_ros.nodes import qos
from dynofa_ros.nodes.convert import message_class, to_stamp

INPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
BARRIER_TIMEOUT_S = 5.0  # wall seconds a barrier waits for its commands
CLOCK_PERIOD_S = 0.01  # wall seconds between /clock messages while waiting for the next input


class ReplayNode(Node):
    """Player + recorder. ``record(topic, msgtype, stamp_ns, data)`` receives every recorded
    message (called from the executor thread)."""

    def __init__(
        self,
        inputs: dict[str, str],
        models: Sequence[str],
        record: Callable[[str, str, int, bytes], None],
        **kwargs: Any,
    ) -> None:
        super().__init__("replay", **kwargs)
        self._record = record
        self._now_ns = 0
        self._lock = threading.Lock()
        self._clock_pub = self.create_publisher(Clock, "/clock", 10)
        self._pubs = {
            topic: self.create_publisher(message_class(msgtype), topic, self._qos_of(topic))
            for topic, msgtype in inputs.items()
        }
        self.received: dict[str, int] = {}
        self._commands: set[tuple[str, int]] = set()  # (topic, header stamp in µs) seen
        self._subs: dict[str, Any] = {}
        # discover() runs on the executor's timer and on the replay's thread while it waits for
        # the graph: two subscriptions to one topic would record each message twice
        self._subs_lock = threading.Lock()
        for m in models:
            for suffix, msgtype in (
                (T.CLASSIFICATION_SUFFIX, T.CLASSIFICATION_RESULT),
                (T.STATUS_SUFFIX, T.PERCEPTION_STATUS),
            ):
                self._subscribe(f"/{m}{suffix}", msgtype, qos.OUTPUTS)
            self._subscribe(f"/{m}{T.RECONFIGURE_SUFFIX}", T.RECONFIGURATION_COMMAND, qos.COMMANDS)
        self._subscribe(T.BATTERY, T.BATTERY_STATE, INPUT_QOS)
        self._subscribe(T.DIAGNOSTICS, T.DIAGNOSTIC_ARRAY, qos.OUTPUTS)
        self.discover()
        self.create_timer(0.5, self.discover)  # zones appear once the board publishes

    @staticmethod
    def _qos_of(topic: str) -> QoSProfile:
        if topic.endswith((T.IMAGE_SUFFIX, T.COMPRESSED_SUFFIX)):
            return qos.CAMERA
        return INPUT_QOS

    def _subscribe(self, topic: str, msgtype: str, profile: QoSProfile) -> None:
        with self._subs_lock:
            if topic in self._subs:
                return
            self._subs[topic] = self.create_subscription(
                message_class(msgtype),
                topic,
                lambda data, t=topic, k=msgtype: self._on_output(t, k, data),
                profile,
                raw=True,
            )

    def discover(self) -> None:
        """Subscribe to every ``/temperature/*`` topic that has appeared."""
        for name, types in self.get_topic_names_and_types():
            if name.startswith(T.TEMPERATURE_PREFIX) and T.TEMPERATURE in types:
                self._subscribe(name, T.TEMPERATURE, INPUT_QOS)

    def _on_output(self, topic: str, msgtype: str, data: bytes) -> None:
        if topic.endswith(T.RECONFIGURE_SUFFIX):
            msg = deserialize_message(bytes(data), message_class(msgtype))
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self._lock:
            self.received[topic] = self.received.get(topic, 0) + 1
            self._record(topic, msgtype, self._now_ns, bytes(data))
            if topic.endswith(T.RECONFIGURE_SUFFIX):
                self._commands.add((topic, stamp // 1000))  # to the microsecond

    # ----------------------------------------------------------------------------- playing
    def subscribers(self, topic: str) -> int:
        return self._pubs[topic].get_subscription_count() if topic in self._pubs else 0

    def set_clock(self, ns: int) -> None:
        with self._lock:
            self._now_ns = max(self._now_ns, int(ns))
            now = self._now_ns
        self._clock_pub.publish(Clock(clock=to_stamp(now * 1e-9)))

    def play(
        self,
        messages: Iterable[tuple[str, int, bytes]],
        *,
        start_ns: int,
        rate: float,
        stop: threading.Event,
        on_message: Callable[[str], None] | None = None,
        barriers: Sequence[tuple[int, Sequence[str]]] = (),
    ) -> None:
        """Publish ``(topic, stamp_ns, cdr)`` at their times (``rate`` x real time), with
        ``/clock`` ticking in between. At each barrier ``(ns, topics)`` the clock stops at
        ``ns`` until a command stamped ``ns`` came on each of ``topics`` (at most
        ``BARRIER_TIMEOUT_S``): a decision planned just before a frame reaches its node first."""
        wall0 = time.monotonic()
        self.set_clock(start_ns)
        pending = sorted(barriers)
        for topic, ns, data in messages:
            while pending and pending[0][0] <= ns and not stop.is_set():
                at, topics = pending.pop(0)
                self._wait_until(at, start_ns, wall0, rate, stop)
                self.set_clock(at)
                self._wait_for_commands(at, topics, stop)
            self._wait_until(ns, start_ns, wall0, rate, stop)
            if stop.is_set():
                return
            self.set_clock(ns)
            self._pubs[topic].publish(data)
            if on_message is not None:
                on_message(topic)

    def _wait_for_commands(self, ns: int, topics: Sequence[str], stop: threading.Event) -> None:
        want = {(t, ns // 1000) for t in topics}
        deadline = time.monotonic() + BARRIER_TIMEOUT_S
        while not stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if want <= self._commands:
                    return
            stop.wait(0.001)
        missing = sorted(t for t, _ in want - self._commands)
        if missing:
            self.get_logger().warning(
                f"no command stamped {ns * 1e-9:.6f} on {', '.join(missing)} after "
                f"{BARRIER_TIMEOUT_S:g} s: playing on"
            )

    def run_clock(self, until_ns: int, start_ns: int, rate: float, stop: threading.Event) -> None:
        """Let the clock run (no inputs) until ``until_ns``, e.g. to drain the last frames."""
        wall0 = time.monotonic() - (self._now_ns - start_ns) * 1e-9 / rate
        self._wait_until(until_ns, start_ns, wall0, rate, stop)
        self.set_clock(until_ns)

    def _wait_until(
        self, ns: int, start_ns: int, wall0: float, rate: float, stop: threading.Event
    ) -> None:
        due = wall0 + (ns - start_ns) * 1e-9 / rate
        while not stop.is_set():
            left = due - time.monotonic()
            if left <= 0:
                return
            stop.wait(min(left, CLOCK_PERIOD_S))
            elapsed = (time.monotonic() - wall0) * rate
            self.set_clock(min(ns, start_ns + int(elapsed * 1e9)))
