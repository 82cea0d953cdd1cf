"""Perception node: camera frames in, classification / status / diagnostics out, with the active
family member switched between frames on the runtime manager's commands.

A lifecycle node (ros2/demos ``lifecycle_py`` style): *configure* loads the super-network and
prepares every family member for the chosen backend (so a switch is a reference swap), *activate*
starts the frame worker, *deactivate* stops it, *cleanup* releases the model. ``auto_activate``
(default true) walks those transitions at start-up for simple use.

Threads: the executor only stores the newest camera frame (an unprocessed older one is dropped and
counted) and queues commands; one worker thread takes the newest frame, applies the queued
commands decided before that frame was captured (``perception.command_due``), runs the engine and
publishes. Frames are never queued, a command takes effect at a frame boundary and is
acknowledged by ``last_command_seq`` in that frame's status.
The command rules themselves live in :class:`dynofa_ros.perception.PerceptionSession`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.client import Client
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image

from dynofa_ros.configuration import Configuration
from dynofa_ros.engine.backends import BACKENDS
from dynofa_ros.errors import DynofaError
from dynofa_ros.msg import ClassificationResult, PerceptionStatus, ReconfigurationCommand
from dynofa_ros.nodes import qos
from dynofa_ros.nodes.convert import command_of, to_seconds, to_stamp
from dynofa_ros.nodes.health import Health, diagnostics
from dynofa_ros.nodes.latest import Latest, StampGaps
from dynofa_ros.nodes.lifecycle import ManagedNode
from dynofa_ros.nodes.parameters import Param, ParameterTable
from dynofa_ros.nodes.spin import interrupts_deferred, run_node
from dynofa_ros.perception import (
    COMMAND_SKEW_LIMIT_S,
    BoardBusyError,
    Command,
    FrameCost,
    FrameOutcome,
    FrameTarget,
    PerceptionSession,
    SimulatedTarget,
    clip,
    command_due,
    inference_of,
    model_files,
    most_accurate,
)
from dynofa_ros.platform import BACKENDS as PLATFORM_BACKENDS
from dynofa_ros.srv import SimulateFrame

PLATFORMS = ("none", "auto", *PLATFORM_BACKENDS)

PARAMS = (
    Param("model_name", "model", "name of this perception model; commands must target it",
          live=False),
    Param("checkpoint", "", "super-network checkpoint (.safetensors); '' = the family's own, or "
          "the embedded default",
          live=False),
    Param("family", "", "family file (.family.json); '' = <checkpoint stem>.<processor>"
          ".family.json beside the checkpoint (sim-nx-<processor> on the simulated board)",
          live=False),
    Param("backend", "onnxruntime", "how members run; every member is prepared at configure",
          choices=tuple(BACKENDS), live=False),
    Param("input", "raw", "camera transport: raw sensor_msgs/Image on 'image', or "
          "CompressedImage on 'image/compressed'", choices=("raw", "compressed"), live=False),
    Param("processor", "cpu", "processor at start", choices=("cpu", "cuda"), live=False),
    Param("threads", 1, "CPU inference threads at start", min=1, max=64, live=False),
    Param("max_threads", 2, "thread counts 1..max_threads are prepared (commands may pick any)",
          min=1, max=64, live=False),
    Param("initial_subnet", "", "family member at start ('' = the most accurate)", live=False),
    Param("top_k", 5, "classes reported per frame", min=1, max=20, live=False),
    Param("center_crop", False, "crop the frame's centre square before resizing", live=False),
    Param("publish_overlay", False, "publish 'overlay' (label, score, member, latency drawn on "
          "the frame) while someone subscribes"),
    Param("platform", "none", "board back-end for telemetry / DVFS; 'sim-xavier-nx' costs every "
          "frame on the simulated board (service sim_board/simulate_frame)", choices=PLATFORMS,
          live=False),
    Param("sysfs_root", "/", "root of the board's sysfs (jetson / linux back-ends)", live=False),
    Param("allow_dvfs", False, "apply the frequency / power-mode fields of commands through the "
          "platform layer (needs write access to the board's sysfs)"),
    Param("latency_target_ms", 0.0, "deadline reported per frame until a command sets one (0 = "
          "none)", "ms", 0.0, 60000.0),
    Param("max_frame_age_ms", 0.0, "drop a frame older than this when taken (0 = never)", "ms",
          0.0, 60000.0),
    Param("diagnostics_period_s", 1.0, "period of /diagnostics messages", "s", 0.1, 60.0,
          live=False),
    Param("auto_activate", True, "configure and activate at start-up", live=False),
    Param("simulate_timeout_s", 5.0, "wait for sim_board/simulate_frame before failing a frame",
          "s", 0.1, 60.0),
    Param("manager_timeout_s", 3.0, "fall back to safe_subnet when the manager that commanded "
          "this node (epoch != 0) is silent this long, on the node's clock (sim time under "
          "use_sim_time); the manager re-sends its command every command_repeat_s (0 = off)",
          "s", 0.0, 3600.0),
    Param("safe_subnet", "", "family member of the safe fallback ('' = the fastest member, at "
          "the processor / threads / frequency it was searched at)", live=False),
)  # fmt: skip

TRANSPORT_HINT = (
    "frames lost before the node (camera stamp gaps): the DDS transport drops camera-sized "
    "messages; load config/fastdds_shm.xml (FASTDDS_DEFAULT_PROFILES_FILE) in the camera's "
    "process too, or set FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA (Fast DDS >= 2.13) there"
)


@dataclass
class Counters:
    processed: int = 0
    rejected: int = 0
    energy_total_j: float = 0.0
    rejected_command_seq: int = 0
    rejected_reason: str = ""
    latency_target_ms: float = 0.0


class ServiceTimer:
    """Costs a frame on the simulated Xavier NX of ``sim_platform_node``: one service call per
    frame carrying the workload and the pinned frequencies (the board follows the frames'
    stamps). Called from the worker thread while the executor serves the response."""

    simulated = True

    def __init__(self, node: LifecycleNode, model_name: str, timeout_s: float) -> None:
        self._node = node
        self._model = model_name
        self.timeout_s = timeout_s
        self._client: Client = node.create_client(SimulateFrame, "/sim_board/simulate_frame")

    def cost(self, workload: Any, active: Configuration, result: Any, stamp_s: float) -> FrameCost:
        if not self._client.wait_for_service(timeout_sec=self.timeout_s):
            raise DynofaError(
                f"service {self._client.srv_name} is not available after {self.timeout_s:g} s "
                "(start sim_platform_node, or set platform to something else)"
            )
        request = SimulateFrame.Request(
            stamp=to_stamp(stamp_s),
            model_name=self._model,
            processor=active.processor,
            threads=active.threads,
            cpu_frequency_khz=active.cpu_frequency_khz,
            gpu_frequency_khz=active.gpu_frequency_khz,
            power_mode=-1 if active.power_mode is None else active.power_mode,
            macs=workload.macs,
            layers=workload.layers,
            params=workload.params,
            activations=workload.activations or 0,
            runtime=workload.runtime,
        )
        done = threading.Event()
        future = self._client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(self.timeout_s):
            future.cancel()
            raise DynofaError(f"{self._client.srv_name} did not answer in {self.timeout_s:g} s")
        response = future.result()
        if response is None or not response.success:
            why = response.message if response is not None else "no response"
            raise DynofaError(f"{self._client.srv_name} refused the frame: {why}")
        return FrameCost(
            latency_ms=float(response.latency_ms),
            energy_j=float(response.energy_mj) * 1e-3,
            power_w=float(response.power_w),
            cpu_frequency_khz=int(response.cpu_frequency_khz),
            gpu_frequency_khz=int(response.gpu_frequency_khz),
            throttled=bool(response.throttled),
            simulated=True,
        )

    def close(self) -> None:
        self._node.destroy_client(self._client)


class PerceptionNode(ManagedNode):
    def __init__(self, **kwargs: Any) -> None:
        # the worker's state first: destroy_node stops it, also when refused parameters end
        # the construction half-way (rclpy then destroys the node it had registered)
        self._frames: Latest[tuple[Image | CompressedImage, float]] = Latest()
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        super().__init__("perception", **kwargs)
        self.params = ParameterTable(self, PARAMS)
        self.params.on_change(self._on_params)
        self.session: PerceptionSession | None = None
        self._sim_timer: ServiceTimer | None = None
        self._commands: deque[tuple[ReconfigurationCommand, float]] = deque()  # (msg, received)
        self.counters = Counters(latency_target_ms=self.params["latency_target_ms"])
        self.health = Health()
        self._gaps = StampGaps()
        self._lost_at = -1.0e9  # monotonic time frames were last inferred lost
        self._heard_s: float | None = None  # node clock: last command from a manager (epoch != 0)
        self._safe: Command | None = None
        self._prebuilt: PerceptionSession | Exception | None = None
        self.started = False  # activated once
        self.interrupted = False  # Ctrl-C (context shut down) during the start-up
        if self.params["auto_activate"]:
            self.activate_when_spinning()

    # ============================================================================ lifecycle
    def prepare(self) -> bool:
        # The long part (loading and preparing every member) runs before the transition, so a
        # Ctrl-C meanwhile ends the start-up quietly instead of failing a half-done transition.
        try:
            self._prebuilt = self._build_session()
        except Exception as exc:  # reported by on_configure, unless we are shutting down
            self._prebuilt = exc
        if not self.context.ok():
            self.interrupted = True
            if isinstance(self._prebuilt, PerceptionSession):
                self._prebuilt.close()
            self._prebuilt = None
            return False
        return True

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        prebuilt, self._prebuilt = self._prebuilt, None
        try:
            if isinstance(prebuilt, Exception):
                raise prebuilt
            self.session = prebuilt or self._build_session()
        except Exception as exc:  # any load failure is a failed transition, never a crash
            self.get_logger().error(f"configure failed: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self.counters = Counters(latency_target_ms=self.params["latency_target_ms"])
        self.health = Health()
        self._gaps = StampGaps()
        self._heard_s = None
        self.config_pubs = {
            "classification": self.create_lifecycle_publisher(
                ClassificationResult, "classification", qos.OUTPUTS
            ),
            "status": self.create_lifecycle_publisher(PerceptionStatus, "status", qos.OUTPUTS),
            "overlay": self.create_lifecycle_publisher(Image, "overlay", qos.OUTPUTS),
        }
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos.OUTPUTS)
        kind, topic = (
            (Image, "image")
            if self.params["input"] == "raw"
            else (CompressedImage, "image/compressed")
        )
        self.config_subs = [
            self.create_subscription(kind, topic, self._on_frame, qos.CAMERA),
            self.create_subscription(
                ReconfigurationCommand, "reconfigure", self._on_command, qos.COMMANDS
            ),
        ]
        self.config_timers = [
            self.create_timer(self.params["diagnostics_period_s"], self._publish_diagnostics)
        ]
        from dynofa_ros.engine.engine import process_rss

        e = self.live.engine
        self.get_logger().info(
            f"{self.params['model_name']}: {len(e.members)} members prepared "
            f"({self.params['backend']}, processors {', '.join(e.processors)}, threads "
            f"{', '.join(map(str, e.threads))}, {process_rss() / 2**20:.0f} MiB RSS); active "
            f"{self.live.active.subnet_id}; listening on {self.resolve_topic_name(topic)}"
        )
        return super().on_configure(state)

    def _build_session(self) -> PerceptionSession:
        from dynofa_ros.engine import Engine
        from dynofa_ros.platform import make_platform

        p = self.params
        simulated = p["platform"] == "sim-xavier-nx"
        checkpoint, family = model_files(p["checkpoint"], p["family"], p["processor"], simulated)
        if p["threads"] > p["max_threads"]:
            raise DynofaError(f"threads {p['threads']} is above max_threads {p['max_threads']}")
        platform = None
        if p["platform"] == "sim-xavier-nx":
            platform = make_platform("sim-xavier-nx")  # frequency tables; frames go to the node
        elif p["platform"] != "none":
            platform = make_platform(p["platform"], sysfs_root=p["sysfs_root"])
        with interrupts_deferred():  # torch's import and the ONNX export call back from C++
            engine = Engine.load(
                checkpoint,
                family,
                backend=p["backend"],
                processors=("cpu",) if simulated else (p["processor"],),
                threads=tuple(range(1, p["max_threads"] + 1)),
                top_k=p["top_k"],
                center_crop=p["center_crop"],
                progress=False,
                cancelled=lambda: not self.context.ok(),
            )
        timer = None
        target: FrameTarget = engine
        if simulated:
            assert platform is not None  # the simulated board's tables, made above
            self._sim_timer = ServiceTimer(self, p["model_name"], p["simulate_timeout_s"])
            timer = self._sim_timer
            target = SimulatedTarget(engine, platform)
        members = target.members
        initial = p["initial_subnet"] or most_accurate(target)
        for name in ("initial_subnet", "safe_subnet"):
            chosen = initial if name == "initial_subnet" else p[name]
            if chosen and chosen not in members:
                target.close()
                raise DynofaError(
                    f"{name} {clip(chosen)!r} is not in {family.name} (one of: "
                    f"{', '.join(members)})"
                )
        return PerceptionSession(
            target,
            model_name=p["model_name"],
            timer=timer,
            platform=platform,
            allow_dvfs=p["allow_dvfs"],
            initial=Configuration(initial, p["processor"], p["threads"]),
        )

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._frames.reopen()
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="perception-worker", daemon=True)
        self._worker.start()
        self.started = True
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._halt_worker()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._halt_worker()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._halt_worker()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        self._halt_worker()  # the worker may be in a frame: it stops before the node goes
        super().destroy_node()

    def _halt_worker(self) -> None:
        self._stop.set()
        self._frames.close()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None

    def _release(self) -> None:
        self.release_endpoints()
        if self._sim_timer is not None:
            self._sim_timer.close()
            self._sim_timer = None
        if self.session is not None:
            self.session.close()
            self.session = None

    def _on_params(self, changed: Mapping[str, Any]) -> None:
        if "allow_dvfs" in changed and self.session is not None:
            self.session.allow_dvfs = changed["allow_dvfs"]
            self._safe = None  # the safe setting's frequency depends on it
        if "latency_target_ms" in changed:
            self.counters.latency_target_ms = changed["latency_target_ms"]
        if "simulate_timeout_s" in changed and self._sim_timer is not None:
            self._sim_timer.timeout_s = changed["simulate_timeout_s"]

    # ============================================================================== worker
    def _on_command(self, msg: ReconfigurationCommand) -> None:
        if msg.epoch != 0 and msg.target_model in ("", self.params["model_name"]):
            now = self._clock_s()
            self._heard_s = now if now > 0 else None
        self._commands.append((msg, time.monotonic()))

    def _on_frame(self, msg: Image | CompressedImage) -> None:
        lost = self._gaps.add(to_seconds(msg.header.stamp))
        if lost:
            self._lost_at = time.monotonic()
            self.get_logger().warning(
                f"{self._gaps.lost} frames lost so far: {TRANSPORT_HINT}",
                throttle_duration_sec=30.0,
            )
        self._frames.put((msg, time.monotonic()))

    def _clock_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    @property
    def live(self) -> PerceptionSession:
        """The session, which exists from configure to cleanup (when the callbacks run)."""
        if self.session is None:
            raise RuntimeError(f"{self.get_name()}: no session outside configure..cleanup")
        return self.session

    def _watchdog(self) -> None:
        """Fall back to the safe configuration when the commanding manager went silent."""
        s = self.live
        timeout = self.params["manager_timeout_s"]
        if timeout <= 0 or s.fallback or s.last_applied_epoch == 0:
            return  # off, already there, or no manager (hand-sent commands promise nothing)
        now = self._clock_s()
        if now <= 0:
            return  # use_sim_time and no /clock yet
        if self._heard_s is None or now < self._heard_s:
            self._heard_s = now  # first clock reading, or the clock jumped back: start again
            return
        silent = now - self._heard_s
        if silent <= timeout:
            return
        if self._safe is None:
            self._safe = s.safe_command(self.params["safe_subnet"])
        why = s.enter_fallback(self._safe)
        if why is not None:
            self._note_error(f"safe fallback failed: {why}")
            return
        text = self._fallback_text(silent)
        self.get_logger().warning(text)
        self._publish_status(None, None, level=PerceptionStatus.LEVEL_WARN, message=text)

    def _fallback_text(self, silent_s: float | None = None) -> str:
        a = self.live.active
        since = f" for {silent_s:.1f} s" if silent_s is not None else ""
        return (
            f"manager (epoch {self.live.last_applied_epoch}) silent{since} > "
            f"manager_timeout_s {self.params['manager_timeout_s']:g}: safe configuration "
            f"{a.subnet_id} on {a.processor} until it speaks again"
        )

    def _note_error(self, text: str) -> None:
        self.health.error(text)

    def _work(self) -> None:
        while not self._stop.is_set():
            item = self._frames.take(timeout_s=0.05)
            self._apply_due(None if item is None else to_seconds(item[0].header.stamp))
            self._watchdog()
            if item is None:
                continue
            msg, received = item
            limit = self.params["max_frame_age_ms"]
            age_ms = self._age_ms(msg)
            if limit > 0 and age_ms > limit:
                self._frames.dropped += 1
                continue
            try:
                outcome = self.live.run(inference_of(msg), to_seconds(msg.header.stamp))
            except BoardBusyError as exc:  # the simulated board is still on the previous frame
                self._frames.dropped += 1
                self._publish_status(msg, None, message=f"frame dropped: {exc}")
                continue
            except (DynofaError, ValueError) as exc:  # malformed frame / board refusal
                self._reject_frame(msg, str(exc))
                continue
            except Exception as exc:  # a bug or a backend failure must not kill the worker
                self.get_logger().error(f"frame failed: {type(exc).__name__}: {exc}")
                self._reject_frame(msg, f"{type(exc).__name__}: {exc}")
                continue
            self._publish_frame(msg, outcome, received)

    def _apply_due(self, frame_stamp_s: float | None) -> None:
        """Queued commands, in order, that apply before this frame (``command_due``); without
        frames, those that waited longer than the skew limit (so an idle node still answers)."""
        while self._commands:
            msg, received = self._commands[0]
            if frame_stamp_s is None:
                due = time.monotonic() - received > COMMAND_SKEW_LIMIT_S
            else:
                due = command_due(to_seconds(msg.header.stamp), frame_stamp_s)
            if not due:
                return
            self._commands.popleft()
            self._apply(msg)

    def _apply(self, msg: ReconfigurationCommand) -> None:
        c = self.counters
        was_fallback = self.live.fallback
        command: Command | None = None
        try:
            command = command_of(msg)
        except (TypeError, ValueError) as exc:
            reason: str | None = f"malformed command: {clip(str(exc), 200)}"
        else:
            reason = self.live.apply(command)
        if reason is None and command is not None:
            if command.latency_target_ms > 0:
                c.latency_target_ms = command.latency_target_ms
            if self.live.notes:
                self._note_error(f"command {command.seq}: " + "; ".join(self.live.notes))
            if was_fallback and not self.live.fallback:
                self.get_logger().info(
                    f"manager speaks again (epoch {command.epoch}, seq {command.seq}): "
                    f"{self.live.active.subnet_id} on {self.live.active.processor}"
                )
            return
        c.rejected_command_seq = int(msg.seq)
        c.rejected_reason = reason or ""
        text = f"command {msg.seq} rejected: {reason}"
        self._note_error(text)
        self.get_logger().warning(text)
        self._publish_status(None, None, level=PerceptionStatus.LEVEL_WARN, message=text)

    def _age_ms(self, msg: Any) -> float:
        return (self.get_clock().now().nanoseconds * 1e-9 - to_seconds(msg.header.stamp)) * 1e3

    def _publish_frame(self, msg: Any, outcome: FrameOutcome, received: float) -> None:
        c = self.counters
        c.processed += 1
        c.energy_total_j += outcome.cost.energy_j
        r = outcome.result
        latency_ms = (
            outcome.cost.latency_ms
            if outcome.cost.simulated
            else (time.monotonic() - received) * 1e3
        )
        self.config_pubs["classification"].publish(
            ClassificationResult(
                header=msg.header,
                model_name=self.params["model_name"],
                subnet_id=r.member_id,
                frame_seq=c.processed,
                command_seq=self.live.last_applied_seq,
                class_ids=[int(i) for i in r.class_ids],
                labels=list(r.labels),
                scores=[float(s) for s in r.scores],
                latency_ms=float(latency_ms),
            )
        )
        self._publish_status(msg, outcome, latency_ms=latency_ms)
        if (
            self.params["publish_overlay"]
            and self.config_pubs["overlay"].get_subscription_count() > 0
        ):
            from dynofa_ros.nodes.overlay import overlay_image

            try:
                self.config_pubs["overlay"].publish(overlay_image(msg, r, latency_ms))
            except ValueError as exc:
                self.get_logger().warning(f"overlay: {exc}")

    def _reject_frame(self, msg: Any, why: str) -> None:
        self.counters.rejected += 1
        text = f"frame rejected: {clip(why, 300)}"
        self._note_error(text)
        self._publish_status(msg, None, level=PerceptionStatus.LEVEL_ERROR, message=text)

    # ============================================================================= outputs
    def _publish_status(
        self,
        msg: Any,
        outcome: FrameOutcome | None,
        *,
        latency_ms: float = 0.0,
        level: int = PerceptionStatus.LEVEL_OK,
        message: str = "",
    ) -> None:
        pub = self.config_pubs.get("status")
        if pub is None or self.session is None:
            return
        c = self.counters
        active = outcome.active if outcome is not None else self.session.active
        if self.session.fallback and level == PerceptionStatus.LEVEL_OK:
            level, message = PerceptionStatus.LEVEL_WARN, self._fallback_text()
        s = PerceptionStatus()
        s.header.stamp = msg.header.stamp if msg is not None else self.get_clock().now().to_msg()
        s.header.frame_id = msg.header.frame_id if msg is not None else ""
        s.model_name = self.params["model_name"]
        s.level = level
        s.message = message
        s.subnet_id = active.subnet_id
        s.processor = active.processor
        s.threads = active.threads
        s.cpu_frequency_khz = active.cpu_frequency_khz
        s.gpu_frequency_khz = active.gpu_frequency_khz
        s.last_command_seq = self.session.last_applied_seq
        s.last_command_epoch = self.session.last_applied_epoch
        s.fallback = self.session.fallback
        s.rejected_command_seq = c.rejected_command_seq
        s.rejected_reason = c.rejected_reason
        if outcome is not None:
            r, cost = outcome.result, outcome.cost
            s.subnet_id = r.member_id
            s.preprocess_ms = float(r.preprocess_ms)
            s.inference_ms = float(r.inference_ms)
            s.postprocess_ms = float(r.postprocess_ms)
            s.latency_ms = float(latency_ms)
            s.frame_age_ms = float(max(0.0, self._age_ms(msg)))
            s.power_w = float(cost.power_w)
            s.energy_per_frame_mj = float(cost.energy_j * 1e3)
            s.cpu_frequency_khz = cost.cpu_frequency_khz or s.cpu_frequency_khz
            s.gpu_frequency_khz = cost.gpu_frequency_khz or s.gpu_frequency_khz
        s.latency_target_ms = float(c.latency_target_ms)
        s.frames_processed = c.processed
        s.frames_dropped = self._frames.dropped
        s.frames_rejected = c.rejected
        s.frames_lost_transport = self._gaps.lost
        s.energy_total_j = float(c.energy_total_j)
        pub.publish(s)

    def _publish_diagnostics(self) -> None:
        if self.diag_pub is None or self.session is None:
            return
        c, s = self.counters, self.session
        active = s.active
        values = {
            "subnet_id": active.subnet_id,
            "processor": active.processor,
            "threads": active.threads,
            "cpu_frequency_khz": active.cpu_frequency_khz,
            "gpu_frequency_khz": active.gpu_frequency_khz,
            "frames_processed": c.processed,
            "frames_dropped": self._frames.dropped,
            "frames_rejected": c.rejected,
            "frames_lost_transport": self._gaps.lost,
            "frames_received": self._gaps.received,
            "last_command_seq": s.last_applied_seq,
            "last_command_epoch": s.last_applied_epoch,
            "fallback": s.fallback,
            "rejected_command_seq": c.rejected_command_seq,
            "rejected_reason": clip(c.rejected_reason, 200),
            "energy_total_j": f"{c.energy_total_j:.3f}",
            "last_error": clip(self.health.last_error, 200),
        }
        conditions = [self._fallback_text() if s.fallback else ""]
        if time.monotonic() - self._lost_at <= self.health.hold_s:
            conditions.append(f"{self._gaps.lost} of {self._gaps.lost + self._gaps.received} "
                              f"frames lost so far: {TRANSPORT_HINT}")  # fmt: skip
        self.diag_pub.publish(
            diagnostics(
                f"{self.get_fully_qualified_name()}: perception {self.params['model_name']}",
                self.health.level(conditions),
                self.params["platform"],
                values,
                self.get_clock().now().to_msg(),
            )
        )


def main(args: list[str] | None = None) -> int:
    return run_node(
        PerceptionNode,
        "perception_node",
        args,
        interrupted_at_start=lambda n, ctrl_c: n.interrupted or (ctrl_c and not n.started),
    )


if __name__ == "__main__":
    raise SystemExit(main())
