"""Manager node: the hierarchical runtime manager on a live graph.

Inputs: ``battery`` (sensor_msgs/BatteryState), every ``temperature/*`` topic
(sensor_msgs/Temperature; found by graph discovery, or listed in ``temperature_topics``),
``/mission_priority`` and each managed model's ``/<model>/status``. Output: one
``/<model>/reconfigure`` command stream per model. The policy runs on events (each status, each
priority change) and at ``rate_hz``; it publishes when its decision changes, and re-sends the
decision in force every ``command_repeat_s`` (same epoch / seq: a heartbeat the perception node's
watchdog listens for, and how a restarted perception node learns the decision). Everything the
policy decides lives in :mod:`dynofa_ros.manager` (no ROS there): this node converts messages.
Bad, stale or future-stamped inputs are counted and ignored by the manager, which then falls back
to a safe decision; the counts, and each model whose status stopped, are in ``/diagnostics``.
A clock that jumps back (a bag loop under ``use_sim_time``) resets the input history and starts
a new manager incarnation. A lifecycle node, like the perception node (see :class:`ManagerNode`);
a live ``policy`` change swaps the policy, not the manager.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.lifecycle import State, TransitionCallbackReturn
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import BatteryState, Temperature

from dynofa_ros.clock import timer_time
from dynofa_ros.errors import DynofaError
from dynofa_ros.msg import (
    MissionPriority,
    PerceptionStatus,
    ProcessorLoad,
    ReconfigurationCommand,
)
from dynofa_ros.nodes import qos
from dynofa_ros.nodes.convert import (
    command_message,
    load_reading,
    to_seconds,
    topic_token,
)
from dynofa_ros.nodes.health import Health, diagnostics
from dynofa_ros.nodes.lifecycle import ManagedNode
from dynofa_ros.nodes.parameters import Param, ParameterTable
from dynofa_ros.nodes.spin import run_node
from dynofa_ros.perception import COMMAND_SKEW_LIMIT_S, clip
from dynofa_ros.platform import BACKENDS

if TYPE_CHECKING:
    from dynofa_ros.family import Family
    from dynofa_ros.manager import RuntimeManager
    from dynofa_ros.platform.base import Platform

PLATFORMS = ("auto", *BACKENDS)
QOS = qos.OUTPUTS
TEMPERATURE_TYPE = "sensor_msgs/msg/Temperature"


def _policies() -> tuple[str, ...]:
    from dynofa_ros.manager import POLICIES

    return tuple(POLICIES)


def node_params() -> tuple[Param, ...]:
    return (
        Param("models", ["model"], "perception models managed, by model_name (= namespace)",
              live=False),
        Param("policy", "dynofa", "decision policy (the hierarchical manager or a baseline)",
              choices=_policies()),
        Param("rate_hz", 5.0, "periodic decisions besides the event-driven ones", "Hz", 0.1,
              100.0),
        Param("platform", "sim-xavier-nx", "board whose processors / frequency tables the "
              "decisions use", choices=PLATFORMS, live=False),
        Param("sysfs_root", "/", "root of the board's sysfs (jetson / linux)", live=False),
        Param("checkpoint", "", "super-network checkpoint whose families are used ('' = the "
              "embedded default)", live=False),
        Param("processor", "cuda", "processor whose family a model uses when '<model>.family' "
              "is ''", choices=("cpu", "cuda"), live=False),
        Param("config_file", "", "YAML with the manager's tuning (margins, dwell, thermal, "
              "priority weights); '' = defaults", live=False),
        Param("temperature_topics", [""], "Temperature topics; [''] = discover every "
              "'temperature/*' topic", live=False),
        Param("stale_after_s", 5.0, "an input older than this no longer counts; a model whose "
              "status stops this long is reported in /diagnostics", "s", 0.1, 3600.0),
        Param("max_future_skew_s", 2.0, "reject an input stamped further ahead of this node's "
              "clock (it never moves the manager's clock; 0 = no check)", "s", 0.0, 3600.0),
        Param("schedule", "", "the oracle's schedule (JSON; `dynofa replay --policy oracle` "
              "computes it from the scenario); policy 'oracle' needs it", live=False),
        Param("schedule_origin_s", 0.0, "ROS time of the schedule's t = 0 (the scenario's start "
              "stamp)", "s", 0.0, 4e9, live=False),
        Param("board_load_period_s", 0.5, "on a real board (platform jetson / linux): read its "
              "processors' load this often, as sim_platform_node publishes load/* for the "
              "simulated one (0 = only the load/* topics)", "s", 0.0, 60.0, live=False),
        Param("auto_activate", True, "configure and activate at start-up", live=False),
        Param("command_repeat_s", 1.0, "re-send each model's command in force this often (the "
              "perception node's manager_timeout_s watchdog listens for it; 0 = never)", "s",
              0.0, 3600.0),
    )  # fmt: skip


def model_params(model: str) -> tuple[Param, ...]:
    return (
        Param(f"{model}.family", "", "family file ('' = the checkpoint's for 'processor')",
              live=False),
        Param(f"{model}.latency_target_ms", 50.0, "per-frame latency target", "ms", 0.1,
              60000.0),
        Param(f"{model}.frame_rate_hz", 0.0, "camera frame rate (0 = one frame per target)",
              "Hz", 0.0, 1000.0),
        Param(f"{model}.min_accuracy", 0.0, "minimum top-1 accuracy", "", 0.0, 1.0),
        Param(f"{model}.priority", 1.0, "weight against the other models", "", 0.01, 100.0),
    )  # fmt: skip


def _check_schedule(values: Any) -> str | None:
    if values["policy"] == "oracle" and not values["schedule"]:
        return "policy 'oracle' needs the parameter schedule (a schedule file; set at start-up)"
    return None


class ManagerNode(ManagedNode):
    """*configure* loads the families and subscribes to the inputs (the manager learns from
    them while inactive), *activate* starts deciding and commanding, *deactivate* stops it,
    *cleanup* releases everything. ``auto_activate`` does configure + activate at start-up."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("manager", **kwargs)
        self.params = ParameterTable(self, node_params(), _check_schedule)
        models = [m for m in self.params["models"] if m]
        if not models or len(set(models)) != len(models):
            raise ValueError(f"models must be a non-empty list of distinct names, got {models}")
        self.models = models
        self.model_params = {m: ParameterTable(self, model_params(m)) for m in models}
        self._lock = threading.Lock()
        self._last_decision_s = 0.0
        self._last_now_s = 0.0
        self.manager: RuntimeManager | None = None  # from configure to cleanup
        self.platform: Platform | None = None
        self.deciding = False  # active
        self.rejected_inputs = 0
        self.clock_resets = 0
        self.health = Health()
        self._status_at: dict[str, float] = {}  # model -> node clock of its last status
        self._tick: Any = None  # decisions and ...
        self._repeat: Any = None  # ... heartbeats: from activate to deactivate
        self._temperature_topics: set[str] = set()  # subscribed (released with config_subs)
        self.params.on_change(self._on_params)
        if self.params["auto_activate"]:
            self.activate_when_spinning()

    # ============================================================================ lifecycle

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self.manager = self._build_manager()
        except (DynofaError, ValueError, OSError) as exc:  # a failed transition, never a crash
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.config_pubs = {
            m: self.create_lifecycle_publisher(
                ReconfigurationCommand, f"/{m}/reconfigure", qos.COMMANDS
            )
            for m in self.models
        }
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", QOS)
        self._subscribe()
        self.config_timers.append(self.create_timer(1.0, self._publish_diagnostics))
        self.get_logger().info(
            f"managing {', '.join(self.models)} with policy {self.params['policy']} at "
            f"{self.params['rate_hz']:g} Hz on {self.params['platform']}"
        )
        return super().on_configure(state)

    def _subscribe(self) -> None:
        manager = self._live()
        subs = self.config_subs
        subs.append(self.create_subscription(BatteryState, "battery", self._on_battery, QOS))
        subs.append(
            self.create_subscription(MissionPriority, "/mission_priority", self._on_mission, QOS)
        )
        for m in self.models:
            subs.append(
                self.create_subscription(
                    PerceptionStatus, f"/{m}/status", lambda msg, m=m: self._on_status(m, msg), QOS
                )
            )
        for name in manager.context.board.processors:
            subs.append(
                self.create_subscription(
                    ProcessorLoad, f"load/{topic_token(name.name)}", self._on_load, QOS
                )
            )
        if self.params["platform"] != "sim-xavier-nx" and self.params["board_load_period_s"] > 0:
            self.config_timers.append(
                self.create_timer(self.params["board_load_period_s"], self._read_board_load)
            )
        listed = [t for t in self.params["temperature_topics"] if t]
        for topic in listed:
            self._subscribe_temperature(topic)
        if not listed:
            self._discover_temperatures()
            self.config_timers.append(self.create_timer(2.0, self._discover_temperatures))
        if self.get_parameter("use_sim_time").value:
            subs.append(self.create_subscription(Clock, "/clock", self._on_clock, qos.CLOCK))
        else:
            self.config_timers.append(self.create_timer(0.01, lambda: self._on_clock(None)))

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._tick = self.create_timer(1.0 / self.params["rate_hz"], self._on_tick)
        self._repeat = self._repeat_timer(self.params["command_repeat_s"])
        self.deciding = True
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_deciding()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_deciding(self) -> None:
        self.deciding = False
        for timer in (self._tick, self._repeat):
            if timer is not None:
                timer.cancel()
                self.destroy_timer(timer)
        self._tick = self._repeat = None

    def _release(self) -> None:
        self._stop_deciding()
        self._temperature_topics.clear()
        self.release_endpoints()
        self.manager = None

    def _live(self) -> RuntimeManager:
        """The manager, which exists from configure to cleanup (when the callbacks run)."""
        if self.manager is None:
            raise RuntimeError(f"{self.get_name()}: no manager outside configure..cleanup")
        return self.manager

    # ------------------------------------------------------------------------- building
    def _build_manager(self, policy: str | None = None) -> RuntimeManager:
        from dynofa_ros.family import load_family
        from dynofa_ros.manager import ManagerConfig, ModelSpec, RuntimeManager, config_from_dict
        from dynofa_ros.perception import default_family_path
        from dynofa_ros.platform import make_platform
        from dynofa_ros.resources import default_checkpoint

        p = self.params
        checkpoint = Path(p["checkpoint"] or default_checkpoint())
        simulated = p["platform"] == "sim-xavier-nx"
        kw = {} if simulated else {"sysfs_root": p["sysfs_root"]}
        self.platform = make_platform(p["platform"], **kw)
        specs = []
        for m in self.models:
            mp = self.model_params[m]
            path = mp[f"{m}.family"] or default_family_path(checkpoint, p["processor"], simulated)
            rate = mp[f"{m}.frame_rate_hz"]
            specs.append(
                ModelSpec(
                    name=m,
                    family=load_family(path),
                    latency_target_ms=mp[f"{m}.latency_target_ms"],
                    frame_rate_hz=rate or None,
                    min_accuracy=mp[f"{m}.min_accuracy"],
                    priority=mp[f"{m}.priority"],
                )
            )
        config = ManagerConfig()
        if p["config_file"]:
            import yaml

            try:
                raw = yaml.safe_load(Path(p["config_file"]).read_text())
            except (OSError, yaml.YAMLError) as exc:
                raise DynofaError(f"config_file {p['config_file']!r}: {exc}") from exc
            config = config_from_dict(raw or {})
        config = replace(
            config, stale_after_s=p["stale_after_s"], max_future_skew_s=p["max_future_skew_s"]
        )
        manager = RuntimeManager(specs, self.platform, policy or p["policy"], config)
        self._foresee(manager, {s.name: s.family for s in specs})
        return manager

    def _foresee(self, manager: RuntimeManager, families: dict[str, Family]) -> None:
        """Hand the oracle its schedule (``schedule``), played as the clock reaches each entry."""
        if manager.policy.name != "oracle":
            return
        from dynofa_ros.evaluation.oracle import LEAD_S, read_schedule

        if not self.params["schedule"]:
            raise DynofaError("policy 'oracle' needs the parameter schedule (a schedule file)")
        schedule = read_schedule(self.params["schedule"], families)
        manager.foresee(schedule, self.params["schedule_origin_s"], LEAD_S)

    def _on_params(self, changed: Mapping[str, Any]) -> None:
        """A new policy replaces the manager's policy (a new incarnation), keeping its inputs
        and corrections; unconfigured, the parameter is simply what configure will use."""
        if "policy" in changed and self.manager is not None:
            manager = self.manager
            with self._lock:
                manager.set_policy(changed["policy"])
                specs = manager.context.specs
                self._foresee(manager, {n: spec.family for n, spec in specs.items()})
                epoch = manager.epoch
            self.get_logger().info(f"policy is now {changed['policy']} (epoch {epoch})")
        if "command_repeat_s" in changed and self.deciding:
            if self._repeat is not None:
                self._repeat.cancel()
                self.destroy_timer(self._repeat)
            self._repeat = self._repeat_timer(changed["command_repeat_s"])
        if "rate_hz" in changed and self._tick is not None:
            self._tick.cancel()
            self.destroy_timer(self._tick)
            self._tick = self.create_timer(1.0 / changed["rate_hz"], self._on_tick)

    # --------------------------------------------------------------------------- inputs
    def _now(self) -> float:
        """The node's clock; a jump back (a bag loop) resets the manager's input history."""
        now = self.get_clock().now().nanoseconds * 1e-9
        if 0.0 < now < self._last_now_s:
            self._clock_jumped_back(self._last_now_s, now)
        elif now > 0.0:
            self._last_now_s = now
        return now

    def _clock_jumped_back(self, before: float, now: float) -> None:
        if self.manager is None:
            epoch = 0
        else:
            with self._lock:
                self.manager.reset()
                epoch = self.manager.epoch
        self._last_decision_s = 0.0
        self._last_now_s = now
        self._status_at.clear()
        self.clock_resets += 1
        self.get_logger().warning(
            f"clock jumped back {before - now:.3f} s (to {now:.3f}): input history reset, new "
            f"epoch {epoch}"
        )

    def _offer(self, reading: Any, what: str) -> None:
        now = self._now()
        with self._lock:
            accepted = self._live().observe(reading, now)
        if not accepted:
            self.rejected_inputs += 1
            self.health.error(f"{what} rejected (see the warning.* values)")

    def _on_battery(self, msg: BatteryState) -> None:
        from dynofa_ros.manager import BatteryReading

        soc = float(msg.percentage)
        capacity = None
        if math.isfinite(msg.capacity) and msg.capacity > 0:
            if math.isfinite(msg.voltage) and msg.voltage > 0:
                capacity = float(msg.capacity) * float(msg.voltage)
            else:  # a bad voltage costs the capacity, not the state of charge
                with self._lock:
                    self._live().inputs.warn("battery.voltage: not a positive number")
        stamp = to_seconds(msg.header.stamp)
        self._offer(BatteryReading(stamp, soc, capacity), "battery")
        self._decide(stamp)

    def _on_temperature(self, msg: Temperature, topic: str) -> None:
        from dynofa_ros.manager import TemperatureReading

        zone = msg.header.frame_id or topic.rsplit("/", 1)[-1]
        reading = TemperatureReading(to_seconds(msg.header.stamp), zone, float(msg.temperature))
        self._offer(reading, f"temperature {topic}")

    def _on_load(self, msg: ProcessorLoad) -> None:
        self._offer(load_reading(msg), f"load {msg.processor!r}")

    def _read_board_load(self) -> None:
        """The board this node runs on, read directly: its processors' load (the sysfs / procfs
        the platform reads), so a real robot's manager sees other programs' load too."""
        from dynofa_ros.manager import ProcessorLoad as LoadReading

        now = self._now()
        try:
            processors = self.platform.telemetry().processors if self.platform else {}
        except (DynofaError, OSError) as exc:
            self.health.error(f"board load unreadable: {clip(str(exc))}")
            return
        for name, pt in processors.items():
            if pt.utilisation is not None:
                reading = LoadReading(
                    now, name, pt.utilisation, pt.frequency_khz, pt.utilisation_max
                )
                self._offer(reading, f"board load {name!r}")

    def _on_mission(self, msg: MissionPriority) -> None:
        from dynofa_ros.manager import Mission

        try:
            mission = Mission.from_fields(to_seconds(msg.header.stamp), msg)
        except ValueError:
            self.rejected_inputs += 1
            text = f"mission_priority level {msg.level} is not one of 0..3"
            self.health.error(text)
            self.get_logger().warning(text)
            return
        self._offer(mission, "mission_priority")
        self._decide(mission.stamp_s)

    def _on_status(self, model: str, msg: PerceptionStatus) -> None:
        from dynofa_ros.manager import LatencyObservation

        self._status_at[model] = self._now()
        if msg.level == PerceptionStatus.LEVEL_ERROR or msg.latency_ms <= 0.0:
            return  # a rejected frame or a command acknowledgement: no latency to learn from
        self._offer(
            LatencyObservation(
                stamp_s=to_seconds(msg.header.stamp),
                model=model,
                latency_ms=float(msg.latency_ms),
                subnet_id=msg.subnet_id,
                processor=msg.processor,
                threads=int(msg.threads),
                cpu_frequency_khz=int(msg.cpu_frequency_khz),
                gpu_frequency_khz=int(msg.gpu_frequency_khz),
                command_seq=int(msg.last_command_seq),
            ),
            f"/{model}/status",
        )
        self._decide(to_seconds(msg.header.stamp))

    def _subscribe_temperature(self, topic: str) -> None:
        name = self.resolve_topic_name(topic)
        if name in self._temperature_topics:
            return
        self._temperature_topics.add(name)
        self.config_subs.append(
            self.create_subscription(
                Temperature, name, lambda msg, t=name: self._on_temperature(msg, t), QOS
            )
        )

    def _discover_temperatures(self) -> None:
        prefix = self.resolve_topic_name("temperature") + "/"
        for name, types in self.get_topic_names_and_types():
            if name.startswith(prefix) and TEMPERATURE_TYPE in types:
                self._subscribe_temperature(name)

    # -------------------------------------------------------------------------- outputs
    def _on_tick(self) -> None:
        self._decide(timer_time(self._now(), 1.0 / self.params["rate_hz"]))

    def _on_clock(self, _msg: Any) -> None:
        """The oracle plays an entry at its own time, as soon as the clock reaches it."""
        play = getattr(self._live().policy, "unplayed", None)
        at = play(self._now()) if play is not None else None
        if at is not None:
            self._decide(at)

    def _decide(self, at: float) -> None:
        """Decide as of ``at``: the triggering input's stamp or the tick's scheduled time, so the
        decision does not depend on how late the callback ran (the fast replay decides at the
        same times); an implausible stamp (none, ahead of the clock) falls back to the clock."""
        now = self._now()
        if not self.deciding:
            return  # configured, not active: the manager learns from inputs, decides nothing
        if now <= 0.0:
            return  # use_sim_time and no /clock yet: a decision at time 0 would precede the run
        if not 0.0 < at <= now + COMMAND_SKEW_LIMIT_S:
            at = now
        at = max(at, self._last_decision_s)
        self._last_decision_s = at
        with self._lock:
            try:
                decisions = self._live().step(at)
            except DynofaError as exc:
                text = f"decision failed: {exc}"
                self.health.error(text)
                self.get_logger().error(text)
                return
        for d in decisions:
            self.config_pubs[d.target_model].publish(command_message(d))

    def _repeat_timer(self, period_s: float) -> Any:
        return self.create_timer(period_s, self._on_repeat) if period_s > 0 else None

    def _on_repeat(self) -> None:
        """Re-send each decision in force unchanged (a heartbeat; a duplicate is ignored)."""
        self._now()  # notices a clock jump even when no input arrives
        with self._lock:
            current = [self._live().current(m) for m in self.models]
        for d in current:
            if d is not None:
                self.config_pubs[d.target_model].publish(command_message(d))

    def _silent_models(self) -> list[str]:
        """Models whose status stopped for longer than stale_after_s (perception gone?)."""
        now, limit = self._now(), self.params["stale_after_s"]
        return [
            f"no status from /{m}/status for {now - at:.1f} s (perception node gone?)"
            for m, at in self._status_at.items()
            if now - at > limit
        ]

    def _publish_diagnostics(self) -> None:
        with self._lock:
            manager = self._live()
            warnings = dict(manager.warnings)
            current = {m: manager.current(m) for m in self.models}
            epoch, holding = manager.epoch, manager.holding
        values: dict[str, object] = {
            "policy": self.params["policy"],
            "epoch": epoch,
            "rejected_inputs": self.rejected_inputs,
            "clock_resets": self.clock_resets,
            "last_error": clip(self.health.last_error, 200),
        }
        values.update((f"warning.{clip(k, 120)}", v) for k, v in sorted(warnings.items()))
        for m, d in current.items():
            text = (
                "none yet"
                if d is None
                else f"{d.config.subnet_id} on {d.config.processor}, seq {d.seq} "
                f"({clip(d.reason, 200)})"
            )
            values[f"decision.{m}"] = text
        silent = self._silent_models()
        for m in self.models:
            at = self._status_at.get(m)
            text = "none yet" if at is None else f"last {self._now() - at:.1f} s ago"
            values[f"status.{m}"] = text
        conditions = [*silent]
        if holding:
            conditions.append(f"holding: {', '.join(holding)} stale")
        self.diag_pub.publish(
            diagnostics(
                f"{self.get_fully_qualified_name()}: runtime manager",
                self.health.level(conditions),
                self.params["platform"],
                values,
                self.get_clock().now().to_msg(),
            )
        )


def main(args: list[str] | None = None) -> int:
    return run_node(ManagerNode, "manager_node", args)


if __name__ == "__main__":
    raise SystemExit(main())
