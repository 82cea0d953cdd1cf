"""``dynofa bench nodes``: what the ROS node adds on top of the engine, camera to result.

A camera publisher in this process sends 640x480 rgb8 frames at 30 Hz to a real
``perception_node`` process (ONNX Runtime on this CPU, the smallest member of the embedded
default's CPU family, so the engine step is short); a subscriber here takes each
``ClassificationResult``. Per frame: end-to-end = result received - frame published (one
machine, one clock), engine = preprocess + inference + postprocess from the node's status;
overhead = end-to-end - engine (DDS transport both ways, the node's callbacks, message
conversion). Frames lost in transport: sent - delivered to the node (processed + dropped by its
newest-frame slot + rejected, from its last status), next to the node's own estimate from the
camera stamps (``frames_lost_transport``). Run with the default DDS transport, with
``config/fastdds_shm.xml`` (Fast DDS shared memory, 8 MB segments) and with Fast DDS's built-in
``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` (Fast DDS >= 2.13), each in its own process and
``ROS_DOMAIN_ID``, camera and node alike. Medians and p90 are printed side by side: ratios within
one run are what this noisy machine allows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dynofa_ros.processes import ProcessManager, local_discovery_env, ros_env


@contextlib.contextmanager
def _transport(transport: str, domain: int) -> Iterator[dict[str, str]]:
    """The node's environment for ``transport`` on ``domain``; this process (the camera) gets
    the same settings until the block ends."""
    settings = transport_env(transport)
    env = {k: v for k, v in ros_env(domain).items() if k not in TRANSPORT_VARIABLES} | settings
    discovery = local_discovery_env(env)  # this process's own context stays local too
    keys = ("ROS_DOMAIN_ID", *TRANSPORT_VARIABLES, *discovery)
    saved = {k: os.environ.get(k) for k in keys}
    for k in TRANSPORT_VARIABLES:
        os.environ.pop(k, None)
    os.environ.update(ROS_DOMAIN_ID=str(domain), **settings, **discovery)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _key(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class _Camera:
    """This process's side: frames out at the camera's rate, results and statuses back, each
    matched to its frame by stamp."""

    def __init__(self, node: Any) -> None:
        from sensor_msgs.msg import Image

        from dynofa_ros.msg import ClassificationResult, PerceptionStatus
        from dynofa_ros.nodes import qos

        self.node = node
        self.sent: dict[int, float] = {}
        self.got: dict[int, float] = {}
        self.engine_ms: dict[int, float] = {}
        self.last_status: Any = None
        node.create_subscription(ClassificationResult, "/bench/classification", self._result,
                                 qos.OUTPUTS)  # fmt: skip
        node.create_subscription(PerceptionStatus, "/bench/status", self._status, qos.OUTPUTS)
        self.pub = node.create_publisher(Image, "/bench/image", qos.CAMERA)

    def _result(self, msg: Any) -> None:
        self.got[_key(msg.header.stamp)] = time.perf_counter()

    def _status(self, msg: Any) -> None:
        self.last_status = msg
        if msg.latency_ms > 0:
            self.engine_ms[_key(msg.header.stamp)] = (
                msg.preprocess_ms + msg.inference_ms + msg.postprocess_ms
            )

    def wait_for_node(self, executor: Any, procs: ProcessManager) -> None:
        deadline = time.monotonic() + 300  # configure prepares every member
        while (
            self.pub.get_subscription_count() == 0
            or self.node.count_publishers("/bench/classification") == 0
        ):
            executor.spin_once(timeout_sec=0.1)
            if time.monotonic() > deadline or not procs.processes[0].alive():
                raise RuntimeError("perception_node did not come up:\n" + procs.logs())

    def send(  # noqa: PLR0917 - the camera's settings
        self, executor: Any, count: int, warmup: int, rate_hz: float, width: int, height: int
    ) -> None:
        """``warmup + count`` frames at ``rate_hz``, stamped with their capture times."""
        import numpy as np
        from sensor_msgs.msg import Image

        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8).tobytes()
        period = 1.0 / rate_hz
        start = time.perf_counter()
        t0_ns = self.node.get_clock().now().nanoseconds
        for i in range(count + warmup):
            due = start + i * period
            while time.perf_counter() < due:
                executor.spin_once(timeout_sec=max(0.0, due - time.perf_counter()))
            msg = Image(height=height, width=width, encoding="rgb8", step=width * 3)
            msg.data = pixels
            stamp_ns = t0_ns + round(i * period * 1e9)  # they also match the result
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            if i >= warmup:
                self.sent[stamp_ns] = time.perf_counter()
            self.pub.publish(msg)
        end = time.perf_counter() + 3.0
        while time.perf_counter() < end and len(self.got) < len(self.sent):
            executor.spin_once(timeout_sec=0.05)
        end = time.perf_counter() + 1.0  # the last statuses
        while time.perf_counter() < end:
            executor.spin_once(timeout_sec=0.05)

    def figures(self, sent_total: int, procs: ProcessManager) -> dict[str, float]:
        sent, got, engine_ms = self.sent, self.got, self.engine_ms
        both = [i for i in sent if i in got and i in engine_ms]
        e2e = [(got[i] - sent[i]) * 1e3 for i in both]
        overhead = [(got[i] - sent[i]) * 1e3 - engine_ms[i] for i in both]
        if not overhead:
            raise RuntimeError("no frame came back:\n" + procs.logs())
        s = self.last_status
        delivered = (
            int(s.frames_processed + s.frames_dropped + s.frames_rejected) if s is not None else 0
        )
        return {
            "frames": len(sent),
            "results": len(overhead),
            "sent": sent_total,
            "lost_transport": sent_total - delivered,
            "lost_estimated": int(s.frames_lost_transport) if s is not None else 0,
            "e2e_p50": statistics.median(e2e),
            "engine_p50": statistics.median(engine_ms[i] for i in sent if i in engine_ms),
            "overhead_p50": statistics.median(overhead),
            "overhead_p90": statistics.quantiles(overhead, n=10)[-1],
        }


def _run(
    transport: str, frames: int, rate_hz: float, domain: int, *, width: int, height: int
) -> dict[str, float]:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from dynofa_ros.family import load_family
    from dynofa_ros.resources import models_dir

    family = models_dir() / "fmnist_mbv3_small.cpu.family.json"
    smallest = load_family(family).members[0].id
    warmup = 15
    with _transport(transport, domain) as env:
        procs = ProcessManager(Path(tempfile.mkdtemp(prefix="dynofa-bench-nodes-")), env)
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain)
        try:
            procs.start_python(
                "dynofa_ros.nodes.perception_node", "--ros-args", "-r", "__ns:=/bench",
                "-p", "model_name:=bench", "-p", f"initial_subnet:={smallest}",
                "-p", f"family:={family}",
            )  # fmt: skip
            node = rclpy.create_node("bench_camera", context=context)
            executor = SingleThreadedExecutor(context=context)
            executor.add_node(node)
            camera = _Camera(node)
            camera.wait_for_node(executor, procs)
            camera.send(executor, frames, warmup, rate_hz, width, height)
            node.destroy_node()
            return camera.figures(frames + warmup, procs)
        finally:
            procs.stop_all()
            context.try_shutdown()


TRANSPORTS = {
    "default": "default transport",
    "shm": "shared memory (fastdds_shm.xml)",
    "large_data": "FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA",
}
TRANSPORT_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")


def transport_env(transport: str) -> dict[str, str]:
    """The environment variables that select ``transport`` (the others are unset)."""
    from dynofa_ros.resources import config_dir

    if transport == "shm":
        return {"FASTDDS_DEFAULT_PROFILES_FILE": str(config_dir() / "fastdds_shm.xml")}
    if transport == "large_data":
        return {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
    return {}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="dynofa bench nodes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=300, help="measured frames per transport")
    ap.add_argument("--rate-hz", type=float, default=30.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--domain-id", type=int, default=91, help="first of three domains used")
    ap.add_argument(
        "--transport",
        choices=(*TRANSPORTS, "all"),
        default="all",
        help="all (default) runs each transport in its own process",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON line per transport")
    args = ap.parse_args(argv)
    if args.transport != "all":
        domain = args.domain_id + list(TRANSPORTS).index(args.transport)
        result = _run(args.transport, args.frames, args.rate_hz, domain, width=args.width,
                      height=args.height)  # fmt: skip
        print(json.dumps({"transport": args.transport, **result}) if args.json else result)
        return 0
    # Fast DDS reads its XML profile once per process (the participant factory is a singleton),
    # so each transport is measured in a fresh interpreter, publisher side included.
    rows = []
    for name, label in TRANSPORTS.items():
        print(f"{label}: {args.frames} frames {args.width}x{args.height} rgb8 at "
              f"{args.rate_hz:g} Hz ...", flush=True)  # fmt: skip
        child = [
            sys.executable, "-m", "dynofa_ros.cli", "bench", "nodes", "--transport", name, "--json",
            "--frames", str(args.frames), "--rate-hz", str(args.rate_hz),
            "--width", str(args.width), "--height", str(args.height),
            "--domain-id", str(args.domain_id),
        ]  # fmt: skip
        # the transport's variables are in the child's environment from its start (Fast DDS may
        # read them before the first participant exists)
        env = {k: v for k, v in os.environ.items() if k not in TRANSPORT_VARIABLES}
        env.update(transport_env(name))
        out = subprocess.run(child, capture_output=True, text=True, check=False, env=env)
        if out.returncode != 0:
            print(f"{label} run failed:\n{out.stderr[-3000:]}", file=sys.stderr)
            continue
        rows.append((label, json.loads(out.stdout.strip().splitlines()[-1])))
    if not rows or rows[0][0] != TRANSPORTS["default"]:
        raise RuntimeError("the default-transport run failed: nothing to compare with")
    print()
    print(f"{'transport':<38} {'results':>8} {'lost':>8} {'(node says)':>11} {'e2e p50':>9} "
          f"{'engine p50':>11} {'overhead p50':>13} {'p90':>7}")  # fmt: skip
    for label, r in rows:
        print(
            f"{label:<38} {r['results']:>4}/{r['frames']:<3} {r['lost_transport']:>4}/"
            f"{r['sent']:<3} {r['lost_estimated']:>11} {r['e2e_p50']:>7.2f}ms "
            f"{r['engine_p50']:>9.2f}ms {r['overhead_p50']:>11.2f}ms {r['overhead_p90']:>5.2f}ms"
        )
    base = rows[0][1]["overhead_p50"]
    for label, r in rows[1:]:
        print(f"overhead {label} / default: {r['overhead_p50'] / base:.2f}")
    print("(goal: overhead <= 3 ms, nothing lost)")
    return 0
