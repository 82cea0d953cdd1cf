"""``dynofa chaos``: fault injection against a running graph, then a check that it recovered.

A robot's graph meets restarts, clock jumps and hostile input every day; the tests cover each
fault alone, this puts them together on a real graph (separate processes, real DDS, simulated
time driven from here) the way a field day would:

1. **graph**: ``sim_platform_node``, ``perception_node`` (``/model``, simulated NX, raw
   frames), ``manager_node`` and a second ``perception_node`` (``/cam2``, compressed frames, no
   manager) in one ``ROS_DOMAIN_ID``, all on ``use_sim_time``; this process publishes ``/clock``
   and good camera frames at 10 Hz throughout.
2. **restarts**: each node in turn is killed (SIGKILL, no clean shutdown) and started again; the
   graph must classify again and the perception node follow the new manager's epoch.
3. **fuzz**: ``--inputs`` hostile inputs, drawn from a seeded generator: malformed frames,
   commands with every field out of range (and valid ones from foreign epochs), battery /
   temperature / processor-load / mission messages with bad values and stamps an hour away,
   and parameter sets of the wrong type, out of range or unknown on every node. Half-way the
   clock jumps back 30 s (a bag loop).
4. **checks**: every node alive and never restarted by anything but this tool; perception still
   classifying; perception following the live manager's epoch (not a fuzzed one, not its safe
   fallback); no parameter changed by a fuzzed set; each node's RSS grown < 5 % over the fuzz
   phase; no stuck period: good frames were sent but no result came for > ``STUCK_S`` (the
   restart phase excepted: a killed perception node is expected to be silent).

The summary line says what was tried and found; the exit code is 0 only when every check holds.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import signal
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dynofa_ros.errors import DynofaError
from dynofa_ros.processes import NodeProcess, ProcessManager, ros_env

STUCK_S = 2.0  # longest wait for a result while good frames are being sent
RSS_GROWTH_MAX = 0.05
FRAME_PERIOD_S = 0.1
JUMP_BACK_S = 30.0
RESEND_S = 5.0  # a service request without an answer this long is sent again
MODEL = "model"
NODES = {
    "sim_platform": ("dynofa_ros.nodes.sim_platform_node", "-p", "publish_period_s:=0.2"),
    "perception": (
        "dynofa_ros.nodes.perception_node",
        "-r",
        f"__ns:=/{MODEL}",
        "-p",
        f"model_name:={MODEL}",
        "-p",
        "platform:=sim-xavier-nx",
        "-p",
        "processor:=cuda",
        "-p",
        "allow_dvfs:=true",
        "-p",
        "manager_timeout_s:=2.0",
    ),
    "manager": (
        "dynofa_ros.nodes.manager_node",
        "-p",
        f"models:=[{MODEL}]",
        "-p",
        f"{MODEL}.latency_target_ms:=100.0",
        "-p",
        f"{MODEL}.frame_rate_hz:=10.0",
        "-p",
        "command_repeat_s:=0.25",
    ),
    "perception_compressed": (
        "dynofa_ros.nodes.perception_node",
        "-r",
        "__ns:=/cam2",
        "-p",
        "model_name:=cam2",
        "-p",
        "input:=compressed",
    ),
}
PARAMETER_SERVICES = {
    "sim_platform": "/sim_platform",
    "perception": f"/{MODEL}/perception",
    "manager": "/manager",
    "perception_compressed": "/cam2/perception",
}


class ChaosError(DynofaError):
    """The graph could not be started or reached (not a failed check: those are reported)."""


# ----------------------------------------------------------------------------- hostile inputs
ENCODINGS = ("rgb8", "bgr8", "rgba8", "mono8", "mono16", "yuv422", "32FC1", "", "RGB8", "jpeg")
HUGE = (math.nan, math.inf, -math.inf, -1.0, -5.0, 3e38, 1e12, 0.0)


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` and whose data is missing (a decoder
    that trusted the header would allocate the whole image)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )


@dataclass
class Fuzzer:
    """Seeded hostile inputs of every kind the graph takes (messages as rclpy objects)."""

    rng: random.Random
    members: list[str]
    foreign_epochs: set[int] = field(default_factory=set)

    def raw_frame(self, stamp: Any) -> Any:
        from sensor_msgs.msg import Image

        r = self.rng
        msg = Image(
            width=r.randint(0, 80),
            height=r.randint(0, 80),
            encoding=r.choice(ENCODINGS),
            step=r.choice((0, r.randint(0, 400))),
        )
        msg.is_bigendian = r.randint(0, 1)
        msg.data = r.randbytes(r.choice((0, r.randint(0, 64), r.randint(0, 80 * 80 * 4 + 8))))
        msg.header.stamp = stamp
        return msg

    def compressed_frame(self, stamp: Any) -> Any:
        from sensor_msgs.msg import CompressedImage

        r = self.rng
        kind = r.randrange(4)
        if kind == 0:
            data = _png_header(25000, 25000)  # decoded-pixel cap
        elif kind == 1:
            data = _png_header(r.randint(1, 64), r.randint(1, 64))[: r.randint(0, 33)]
        else:
            data = r.randbytes(r.randint(0, 2048))
        msg = CompressedImage(format=r.choice(("png", "jpeg", "", "bmp", "rgb8; png", "x" * 300)))
        msg.data = data
        msg.header.stamp = stamp
        return msg

    def command(self, stamp: Any) -> Any:
        from dynofa_ros.msg import ReconfigurationCommand

        r = self.rng
        epoch = r.choice((0, r.getrandbits(64) or 1))
        if epoch:
            self.foreign_epochs.add(epoch)
        msg = ReconfigurationCommand(
            epoch=epoch,
            seq=r.choice((0, 1, 2**64 - 1, r.getrandbits(64))),
            target_model=r.choice((MODEL, "", "other", "m" * 100_000)),
            subnet_id=r.choice((*self.members, "", "nope", "0" * 5000)),
            processor=r.choice(("", "cpu", "cuda", "tpu", "CUDA")),
            threads=r.choice((0, 1, 2, 7, 65535)),
            cpu_frequency_khz=r.choice((0, 1, 1420800, 2**32 - 1)),
            gpu_frequency_khz=r.choice((0, 1, 114750, 2**32 - 1)),
            power_mode=r.choice((-1, 0, 2, 9, 127, -128)),
            latency_target_ms=r.choice((*HUGE, 50.0)),
            predicted_latency_ms=r.choice(HUGE),
            reason=r.choice(("", "fuzz", "r" * 50_000)),
        )
        msg.header.stamp = stamp
        return msg

    def stamp_shift(self) -> float:
        """Seconds a telemetry message is stamped away from now: mostly a clock fault."""
        return self.rng.choice((0.0, 3600.0, -3600.0, 5.0, -5.0, 1e9))

    def battery(self, stamp: Any) -> Any:
        from sensor_msgs.msg import BatteryState

        r = self.rng
        msg = BatteryState(
            percentage=r.choice((*HUGE, 0.5, 1.5)),
            voltage=r.choice((*HUGE, 14.8)),
            capacity=r.choice((*HUGE, 5.0)),
        )
        msg.header.stamp = stamp
        return msg

    def temperature(self, stamp: Any) -> Any:
        from sensor_msgs.msg import Temperature

        msg = Temperature(temperature=self.rng.choice((*HUGE, -300.0, 1e9, 45.0)))
        msg.header.stamp = stamp
        msg.header.frame_id = self.rng.choice(("", "CPU-therm", "bogus", "z" * 3000))
        return msg

    def load(self, stamp: Any) -> Any:
        from dynofa_ros.msg import ProcessorLoad

        r = self.rng
        msg = ProcessorLoad(
            processor=r.choice(("cpu", "cuda", "", "tpu")),
            utilisation=r.choice((*HUGE, 0.5, 2.0)),
            utilisation_max=r.choice((*HUGE, -1.0)),
            frequency_khz=r.choice((0, 2**32 - 1)),
        )
        msg.header.stamp = stamp
        return msg

    def mission(self, stamp: Any) -> Any:
        from dynofa_ros.msg import MissionPriority

        msg = MissionPriority()
        msg.level = self.rng.choice((4, 17, 255))  # levels are 0..3: every one of these is bad
        msg.header.stamp = stamp
        return msg

    def parameter(self, name: str, current: Any) -> Any:
        """A value ``name`` must refuse: another type, or its own type out of any range."""
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue

        r = self.rng
        wrong: list[ParameterValue] = [
            ParameterValue(
                type=ParameterType.PARAMETER_STRING, string_value="x" * r.randint(0, 999)
            ),
            ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=True),
            ParameterValue(type=ParameterType.PARAMETER_BYTE_ARRAY, byte_array_value=[b"\x00"]),
            ParameterValue(type=ParameterType.PARAMETER_INTEGER_ARRAY, integer_array_value=[1, 2]),
        ]
        if current.type == ParameterType.PARAMETER_DOUBLE:
            wrong.append(
                ParameterValue(
                    type=current.type,
                    double_value=r.choice((math.nan, math.inf, -math.inf, -1e300, 1e300)),
                )
            )
        if current.type == ParameterType.PARAMETER_INTEGER:
            wrong.append(
                ParameterValue(type=current.type, integer_value=r.choice((-(2**62), 2**62)))
            )
        value = r.choice([v for v in wrong if v.type != current.type] + wrong[4:])
        return Parameter(name=name, value=value)


# ------------------------------------------------------------------------------------- graph
def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Report:
    inputs: dict[str, int] = field(default_factory=dict)
    restarts: int = 0
    deaths: list[str] = field(default_factory=list)
    stuck: list[tuple[float, float]] = field(default_factory=list)  # (sim start, gap s)
    longest_gap_s: float = 0.0
    rss_growth: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    t0: float = 0.0  # monotonic start of the fuzz phase (stuck periods are printed from it)

    def details(self) -> list[str]:
        return [
            f"stuck {gap:.2f} s without a result from fuzz start + {at - self.t0:.2f} s"
            for at, gap in self.stuck
        ]

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in self.inputs.items())
        rss = max(self.rss_growth.values(), default=0.0)
        verdict = "OK" if not self.failures else "FAILED: " + "; ".join(self.failures)
        return (
            f"chaos: {sum(self.inputs.values())} inputs tried ({kinds}), {self.restarts} "
            f"restarts, {len(self.deaths)} deaths, {len(self.stuck)} stuck periods (longest "
            f"gap between results {self.longest_gap_s:.2f} s), RSS {rss:+.1%} max; {verdict}"
        )


def judge(
    report: Report,
    statuses: list[tuple[float, int]],
    sending: list[tuple[float, float]],
    rss: dict[str, tuple[int, int]],
) -> Report:
    """Fill ``report``'s stuck periods, RSS growth and failures from what was observed:
    ``statuses`` (arrival time, frames_processed) of results, ``sending`` the (start, end)
    intervals in which good frames were sent and results were due, ``rss`` per node (KiB before,
    after). A pure function, so the checks themselves are tested."""
    results = sorted(t for t, _ in statuses)
    for lo, hi in sending:
        inside = [lo] + [t for t in results if lo <= t <= hi] + [hi]
        for a, b in itertools.pairwise(inside):
            report.longest_gap_s = max(report.longest_gap_s, b - a)
            if b - a > STUCK_S:
                report.stuck.append((a, b - a))
    if report.stuck:
        report.failures.append(f"{len(report.stuck)} stuck period(s) > {STUCK_S:g} s")
    for name, (before, after) in rss.items():
        growth = after / before - 1.0 if before > 0 else 0.0
        report.rss_growth[name] = growth
        if growth >= RSS_GROWTH_MAX:
            report.failures.append(f"{name} RSS grew {growth:.1%} (>= {RSS_GROWTH_MAX:.0%})")
    if report.deaths:
        report.failures.append(f"nodes died: {', '.join(report.deaths)}")
    return report


class Chaos:
    """The graph, the clock and the observers (one rclpy node in this process)."""

    def __init__(self, processes: ProcessManager, seed: int) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import BatteryState, CompressedImage, Image, Temperature

        from dynofa_ros.msg import (
            MissionPriority,
            PerceptionStatus,
            ProcessorLoad,
            ReconfigurationCommand,
        )
        from dynofa_ros.nodes import qos

        self.processes = processes
        self.nodes: dict[str, NodeProcess] = {}
        self.node = rclpy.create_node("chaos")
        self.clients: dict[str, Any] = {}  # service name -> client, kept for the run
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.offset_s = 1000.0 - time.monotonic()  # sim time = monotonic + offset
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        n = self.node
        self.clock_pub = n.create_publisher(Clock, "/clock", qos.CLOCK)
        self.pubs: dict[str, Any] = {
            "frames": n.create_publisher(Image, f"/{MODEL}/image", reliable),
            "compressed": n.create_publisher(CompressedImage, "/cam2/image/compressed", reliable),
            "good_compressed": n.create_publisher(
                CompressedImage, "/cam2/image/compressed", reliable
            ),
            "commands": n.create_publisher(
                ReconfigurationCommand, f"/{MODEL}/reconfigure", qos.COMMANDS
            ),
            "battery": n.create_publisher(BatteryState, "/battery", reliable),
            "temperature": n.create_publisher(Temperature, "/temperature/cpu_therm", reliable),
            "load": n.create_publisher(ProcessorLoad, "/load/cuda", reliable),
            "mission": n.create_publisher(MissionPriority, "/mission_priority", reliable),
        }
        self.statuses: list[tuple[float, Any]] = []  # (monotonic arrival, status)
        self.cam2: list[Any] = []  # statuses of the compressed-frame node
        self.commands: list[Any] = []  # the managers' (fuzzed epochs filtered out later)
        n.create_subscription(
            PerceptionStatus,
            f"/{MODEL}/status",
            lambda m: self.statuses.append((time.monotonic(), m)),
            reliable,
        )
        n.create_subscription(PerceptionStatus, "/cam2/status", self.cam2.append, reliable)
        n.create_subscription(
            ReconfigurationCommand, f"/{MODEL}/reconfigure", self.commands.append, qos.COMMANDS
        )
        self.images = np.random.default_rng(seed).integers(0, 255, (16, 28, 28), dtype=np.uint8)
        self.frames_sent = 0
        self.sending = False
        n.create_timer(0.01, self._tick_clock)
        n.create_timer(FRAME_PERIOD_S, self._good_frame)

    # ---- time and good frames
    def now_s(self) -> float:
        return time.monotonic() + self.offset_s

    def stamp(self, shift_s: float = 0.0) -> Any:
        from builtin_interfaces.msg import Time

        t = max(0.0, min(self.now_s() + shift_s, 2**31 - 1.0))
        return Time(sec=int(t), nanosec=int((t % 1.0) * 1e9))

    def _tick_clock(self) -> None:
        from rosgraph_msgs.msg import Clock

        self.clock_pub.publish(Clock(clock=self.stamp()))

    def _good_frame(self) -> None:
        import cv2
        from sensor_msgs.msg import CompressedImage, Image

        if not self.sending:
            return
        pixels = self.images[self.frames_sent % len(self.images)]
        msg = Image(height=28, width=28, encoding="mono8", step=28)
        msg.data = pixels.tobytes()
        msg.header.stamp = self.stamp()
        msg.header.frame_id = "camera"
        self.pubs["frames"].publish(msg)
        png = CompressedImage(format="png", data=cv2.imencode(".png", pixels)[1].tobytes())
        png.header = msg.header
        self.pubs["good_compressed"].publish(png)
        self.frames_sent += 1

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.01, max(0.0, end - time.monotonic())))

    def spin_until(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        end = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > end:
                raise ChaosError(f"timed out after {timeout_s:g} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.02)

    # ---- the graph
    def start(self, name: str) -> None:
        module, *args = NODES[name]
        self.nodes[name] = self.processes.start_python(
            module, "--ros-args", "-p", "use_sim_time:=true", *args
        )

    def kill(self, name: str) -> None:
        proc = self.nodes.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.popen.wait(30)
        proc.stop()

    def results_since(self, t: float) -> int:
        return sum(1 for at, s in self.statuses if at >= t and s.latency_ms > 0)

    def manager_epoch(self) -> int:
        """The epoch of the live manager: the newest command not sent by the fuzzer."""
        return int(self.commands[-1].epoch) if self.commands else 0

    def following(self, foreign: set[int]) -> bool:
        ours = [c for c in self.commands if c.epoch not in foreign and c.epoch != 0]
        frames = [s for _, s in self.statuses if s.latency_ms > 0]
        return bool(ours and frames) and (
            frames[-1].last_command_epoch == ours[-1].epoch and not frames[-1].fallback
        )

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def _parameters(chaos: Chaos, service: str) -> dict[str, Any]:
    """Every parameter of a node and its value (ListParameters + GetParameters)."""
    from rcl_interfaces.srv import GetParameters, ListParameters

    names = _call(chaos, ListParameters, f"{service}/list_parameters", ListParameters.Request())
    listed = list(names.result.names)
    got = _call(
        chaos, GetParameters, f"{service}/get_parameters", GetParameters.Request(names=listed)
    )
    return dict(zip(listed, got.values, strict=True))


def _call(chaos: Chaos, kind: Any, name: str, request: Any, timeout_s: float = 300.0) -> Any:
    """A parameter service's answer (its requests may be sent twice): asked again after
    ``RESEND_S`` without one, as rmw may drop a server's first responses until it has matched
    the client's response reader ("client will not receive response")."""
    client = chaos.clients.get(name)
    if client is None:
        client = chaos.clients[name] = chaos.node.create_client(kind, name)
    chaos.spin_until(client.service_is_ready, timeout_s, f"service {name}")
    deadline = time.monotonic() + timeout_s
    while True:
        future = client.call_async(request)
        wait = min(RESEND_S, deadline - time.monotonic())
        try:
            chaos.spin_until(future.done, max(wait, 0.0), f"answer of {name}")
            return future.result()
        except ChaosError:
            if time.monotonic() >= deadline:
                raise


def _value(v: Any) -> tuple[Any, ...]:
    """A ParameterValue as a comparable tuple (NaN as a string, so NaN equals NaN here)."""
    from rclpy.parameter import parameter_value_to_python

    x: Any = parameter_value_to_python(v)
    x = tuple(x) if isinstance(x, (list, tuple)) or hasattr(x, "tolist") else x
    return (v.type, repr(x))


def run(inputs: int, seed: int, domain: int, log_dir: Path, restarts: bool = True) -> Report:
    import rclpy

    from dynofa_ros.family import load_family
    from dynofa_ros.perception import default_family_path
    from dynofa_ros.resources import default_checkpoint

    report = Report()
    checkpoint = default_checkpoint()
    members = [m.id for m in load_family(default_family_path(checkpoint, "cuda", True)).members]
    fuzz = Fuzzer(random.Random(seed), members)
    processes = ProcessManager(log_dir, ros_env(domain))
    saved = dict(os.environ)
    os.environ.update(ros_env(domain))  # this process joins the graph's domain
    rclpy.init()
    chaos: Chaos | None = None
    try:
        chaos = Chaos(processes, seed)
        for name in NODES:
            chaos.start(name)
        print("chaos: graph starting (sim_platform, perception /model, manager) ...", flush=True)
        chaos.sending = True
        t0 = time.monotonic()
        live = chaos
        chaos.spin_until(
            lambda: live.results_since(t0) >= 20 and live.following(set()),
            300.0,
            "the graph to classify and follow its manager",
        )
        if restarts:
            _restart_each(chaos, report)
        params = {n: _parameters(chaos, s) for n, s in PARAMETER_SERVICES.items()}
        chaos.spin_for(2.0)
        rss_before = {n: rss_kb(p.popen.pid) for n, p in chaos.nodes.items()}
        fuzz_start = report.t0 = time.monotonic()
        _fuzz(chaos, fuzz, params, inputs, report)
        sending = [(fuzz_start, time.monotonic())]
        # ---- recovery and checks
        t = time.monotonic()
        try:
            chaos.spin_until(
                lambda: live.results_since(t) >= 20 and live.following(fuzz.foreign_epochs),
                60.0,
                "results following the live manager",
            )
        except ChaosError as exc:
            report.failures.append(str(exc))
        sending.append((t, time.monotonic()))
        for name, proc in chaos.nodes.items():
            if not proc.alive():
                report.deaths.append(name)
        rss = {n: (rss_before[n], rss_kb(p.popen.pid)) for n, p in chaos.nodes.items() if p.alive()}
        after = {n: _parameters(chaos, s) for n, s in PARAMETER_SERVICES.items()}
        for node, values in params.items():
            changed = [k for k, v in values.items() if _value(v) != _value(after[node].get(k, v))]
            if changed:
                report.failures.append(f"{node}: fuzzed sets changed {', '.join(changed)}")
        statuses = [
            (at, int(s.frames_processed))
            for at, s in chaos.statuses
            if at >= fuzz_start and s.latency_ms > 0
        ]
        return judge(report, statuses, sending, rss)
    finally:
        if chaos is not None:
            chaos.close()
        rclpy.try_shutdown()
        processes.stop_all()
        os.environ.clear()
        os.environ.update(saved)


def _restart_each(chaos: Chaos, report: Report) -> None:
    """kill -9 every node in turn, restart it, and wait until the graph follows again."""
    for name in NODES:
        print(f"chaos: kill -9 {name} and restart", flush=True)
        old = chaos.manager_epoch()
        chaos.kill(name)
        chaos.spin_for(1.0)
        chaos.start(name)
        report.restarts += 1
        t, seen = time.monotonic(), len(chaos.cam2)

        def back(t: float = t, old: int = old, name: str = name, seen: int = seen) -> bool:
            return (
                chaos.results_since(t) >= 10
                and chaos.following(set())
                and (name != "manager" or chaos.manager_epoch() != old)
                and (name != "perception_compressed" or len(chaos.cam2) > seen)
            )

        chaos.spin_until(back, 300.0, f"the graph to recover from the {name} restart")


FUZZ_KINDS = (
    "frames",
    "compressed",
    "commands",
    "battery",
    "temperature",
    "load",
    "mission",
    "parameters",
)


def _fuzz(
    chaos: Chaos,
    fuzz: Fuzzer,
    params: dict[str, dict[str, Any]],
    inputs: int,
    report: Report,
) -> None:
    """``inputs`` hostile inputs, the kinds in turn; ``/clock`` jumps back half-way."""
    from rcl_interfaces.srv import SetParameters

    print(f"chaos: {inputs} hostile inputs ...", flush=True)
    start = time.monotonic()
    make = {
        "frames": fuzz.raw_frame,
        "compressed": fuzz.compressed_frame,
        "commands": fuzz.command,
        "battery": fuzz.battery,
        "temperature": fuzz.temperature,
        "load": fuzz.load,
        "mission": fuzz.mission,
    }
    for i in range(inputs):
        if i == inputs // 2:
            chaos.offset_s -= JUMP_BACK_S
            print(
                f"chaos: /clock jumps back {JUMP_BACK_S:g} s at fuzz start + "
                f"{time.monotonic() - start:.2f} s",
                flush=True,
            )
        kind = FUZZ_KINDS[i % len(FUZZ_KINDS)]
        report.inputs[kind] = report.inputs.get(kind, 0) + 1
        stamp = chaos.stamp()
        if kind == "parameters":
            node = fuzz.rng.choice(list(PARAMETER_SERVICES))
            name = fuzz.rng.choice([*params[node], "no_such_parameter"])
            current = params[node].get(name, params[node][next(iter(params[node]))])
            req = SetParameters.Request(parameters=[fuzz.parameter(name, current)])
            _call(chaos, SetParameters, f"{PARAMETER_SERVICES[node]}/set_parameters", req)
            continue
        if kind in ("battery", "temperature", "load", "mission"):
            stamp = chaos.stamp(fuzz.stamp_shift())
        chaos.pubs[kind].publish(make[kind](stamp))
        chaos.spin_for(0.005)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="dynofa chaos", description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=1200, help="hostile inputs (default 1200)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--domain-id", type=int, default=97, help="ROS_DOMAIN_ID of the graph")
    ap.add_argument("--no-restarts", action="store_true", help="skip the kill -9 phase")
    ap.add_argument("--logs", type=Path, help="keep the nodes' logs here (default: a temp dir)")
    args = ap.parse_args(argv)
    if args.inputs < 1:
        ap.error(f"--inputs {args.inputs}: must be >= 1")
    if not 0 <= args.domain_id <= 232:
        ap.error(f"--domain-id {args.domain_id}: allowed 0..232")
    with tempfile.TemporaryDirectory(prefix="dynofa-chaos-") as tmp:
        logs = args.logs or Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        try:
            report = run(args.inputs, args.seed, args.domain_id, logs, not args.no_restarts)
        except ChaosError as exc:
            print(f"dynofa chaos: error: {exc} (node logs: {logs})", file=sys.stderr)
            return 1
    for line in report.details():
        print(f"chaos: {line}")
    print(report.summary())
    return 0 if not report.failures else 1
