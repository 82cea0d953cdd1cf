"""The simulated Xavier NX as a ROS node: stands in for the robot's board and battery / thermal
drivers on a machine without one, so the perception -> manager loop closes on a laptop exactly as
on the robot.

It owns one :class:`~dynofa_ros.platform.sim.SimulatedXavierNX`. Perception nodes whose platform
is simulated call ``sim_board/simulate_frame`` for every frame (latency, energy and heat come from
the simulated board); scenario events (``scenario/*``) set ambient temperature, battery charge and
co-running programs; it publishes ``battery`` (BatteryState), ``temperature/<zone>``
(Temperature) and ``load/<processor>`` (ProcessorLoad) for the manager. Simulated time follows
ROS time (bag time during a replay).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import BatteryState, Temperature

from dynofa_ros.clock import timer_time
from dynofa_ros.msg import CoRunnerLoad, ProcessorLoad
from dynofa_ros.nodes.convert import (
    battery_message,
    load_message,
    temperature_message,
    to_seconds,
    to_stamp,
    topic_token,
)
from dynofa_ros.nodes.health import Health, diagnostics
from dynofa_ros.nodes.parameters import Param, ParameterTable
from dynofa_ros.nodes.spin import run_node
from dynofa_ros.perception import simulate_frame
from dynofa_ros.platform.base import PlatformError
from dynofa_ros.platform.sim import CPU, GPU, Event, SimulatedXavierNX
from dynofa_ros.platform.workload import RUNTIMES, Workload
from dynofa_ros.srv import SimulateFrame

PARAMS = (
    Param("seed", 0, "random seed of the simulator (latency jitter)", min=0, max=2**31 - 1,
          live=False),
    Param("ambient_c", 25.0, "ambient temperature at start", "degC", -40.0, 85.0, live=False),
    Param("state_of_charge", 1.0, "battery charge at start", "fraction", 0.0, 1.0, live=False),
    Param("base_load_w", 0.0, "power the rest of the robot draws from the battery", "W", 0.0,
          500.0),
    Param("latency_jitter", 0.02, "relative latency noise of each simulated frame", "fraction",
          0.0, 0.5, live=False),
    Param("power_mode", 2, "nvpmodel mode at start (2 = 15W_6CORE)", min=0, max=8, live=False),
    Param("publish_period_s", 0.5, "period of battery / temperature / diagnostics messages", "s",
          0.01, 60.0, live=False),
    Param("battery_frame_id", "battery", "frame_id of the BatteryState messages"),
    Param("epoch_s", 0.0, "ROS time that is simulated time 0 (0 = the first time seen; a replay "
          "sets the scenario's start stamp)", "s", 0.0, 4e9, live=False),
)  # fmt: skip

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class SimPlatformNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("sim_platform", **kwargs)
        self.params = ParameterTable(self, PARAMS)
        p = self.params
        self.board = SimulatedXavierNX(
            seed=p["seed"],
            ambient_c=p["ambient_c"],
            state_of_charge=p["state_of_charge"],
            base_load_w=p["base_load_w"],
            latency_jitter=p["latency_jitter"],
            power_mode=p["power_mode"],
        )
        self.params.on_change(self._on_params)
        self._lock = threading.Lock()  # the service and the subscriptions share the board
        self._t0: float | None = p["epoch_s"] or None  # ROS time that is simulated time 0
        self.frames = 0
        self.rejected = 0
        self.health = Health()
        self._battery_pub = self.create_publisher(BatteryState, "battery", QOS)
        # one publisher per zone from the start: a publisher created at its first message
        # loses that message (no subscriber matched yet)
        self._temp_pubs = {
            zone: self.create_publisher(Temperature, f"temperature/{topic_token(zone)}", QOS)
            for zone in self.board.telemetry().temperatures_c
        }
        self._load_pubs = {
            name: self.create_publisher(ProcessorLoad, f"load/{topic_token(name)}", QOS)
            for name in self.board.telemetry().processors
        }
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", QOS)
        self.create_subscription(BatteryState, "scenario/battery", self._on_battery, QOS)
        self.create_subscription(Temperature, "scenario/ambient_temperature", self._on_ambient, QOS)
        self.create_subscription(CoRunnerLoad, "scenario/corunner", self._on_corunner, QOS)
        self.create_service(SimulateFrame, "sim_board/simulate_frame", self._on_simulate)
        self.create_timer(p["publish_period_s"], self._publish)
        self.get_logger().info(
            f"simulated Xavier NX ready (seed {p['seed']}, ambient {p['ambient_c']} degC, "
            f"battery {p['state_of_charge']:.0%}, power mode {p['power_mode']})"
        )

    # ------------------------------------------------------------------------------ time
    def _board_time(self, ros_s: float) -> float:
        """Simulated time of ROS time ``ros_s`` (the first time seen is 0 unless ``epoch_s``)."""
        if self._t0 is None:
            self._t0 = ros_s
        return ros_s - self._t0

    def _advance_to(self, ros_s: float) -> None:
        """Move simulated time to ``ros_s`` (never backwards: late requests run at 'now')."""
        self.board.advance_to(self._board_time(ros_s))

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------------ callbacks
    def _on_params(self, changed: Mapping[str, Any]) -> None:
        if "base_load_w" in changed:
            with self._lock:
                self.board.set_base_load(changed["base_load_w"])

    def _event(self, topic: str, stamp: Any, action: Event) -> None:
        """A scenario event, applied when the board's clock reaches its stamp: the frames
        stamped before it may still be in the perception nodes (see ``SimulatedXavierNX.at``)."""
        with self._lock:
            try:
                self.board.at(self._board_time(to_seconds(stamp)), action)
            except PlatformError as exc:
                self._reject(f"{topic}: {exc}")

    def _on_battery(self, msg: BatteryState) -> None:
        soc = float(msg.percentage)
        self._event("scenario/battery", msg.header.stamp, lambda b: b.set_state_of_charge(soc))

    def _on_ambient(self, msg: Temperature) -> None:
        celsius = float(msg.temperature)
        self._event(
            "scenario/ambient_temperature", msg.header.stamp, lambda b: b.set_ambient(celsius)
        )

    def _on_corunner(self, msg: CoRunnerLoad) -> None:
        name, processor, share = msg.name, msg.processor, float(msg.share)
        self._event(
            f"scenario/corunner {name!r}",
            msg.header.stamp,
            lambda b: b.set_corunner(name, processor, share),
        )

    def _on_simulate(
        self, request: SimulateFrame.Request, response: SimulateFrame.Response
    ) -> SimulateFrame.Response:
        with self._lock:
            try:
                workload = Workload(
                    name=request.model_name or "model",
                    macs=int(request.macs),
                    layers=int(request.layers),
                    params=int(request.params),
                    activations=int(request.activations) or None,
                    runtime=request.runtime or RUNTIMES[1],
                )
                self.board.processor(request.processor)
                stamp_s = to_seconds(request.stamp)
                self._advance_to(stamp_s)
                cost = simulate_frame(
                    self.board,
                    workload,
                    request.processor,
                    int(request.threads),
                    cpu_frequency_khz=int(request.cpu_frequency_khz),
                    gpu_frequency_khz=int(request.gpu_frequency_khz),
                    power_mode=int(request.power_mode),
                    start_s=self._board_time(stamp_s),
                )
            except (PlatformError, ValueError) as exc:
                response.success = False
                response.message = str(exc)
                self._reject(f"simulate_frame from {request.model_name!r}: {exc}")
                return response
            self.frames += 1
            response.success = True
            response.latency_ms = cost.latency_ms
            response.energy_mj = cost.energy_j * 1e3
            response.power_w = cost.power_w
            response.cpu_frequency_khz = cost.cpu_frequency_khz
            response.gpu_frequency_khz = cost.gpu_frequency_khz
            response.throttled = cost.throttled
            return response

    def _reject(self, why: str) -> None:
        self.rejected += 1
        self.health.error(why)
        self.get_logger().warning(why)

    # ---------------------------------------------------------------------- publishing
    def _publish(self) -> None:
        now = self._now_s()
        if now <= 0.0:
            return  # use_sim_time and no /clock yet: time 0 would anchor the board before the run
        now = timer_time(now, self.params["publish_period_s"])  # as of the scheduled time
        with self._lock:  # read as of now: frames stamped before may still be on their way
            tele = self.board.telemetry_at(self._board_time(now))
        stamp = to_stamp(now)
        if tele.battery is not None:
            self._battery_pub.publish(
                battery_message(tele.battery, stamp, self.params["battery_frame_id"])
            )
        for zone, celsius in tele.temperatures_c.items():
            self._temp_pubs[zone].publish(temperature_message(celsius, stamp, zone))
        for name, pt in tele.processors.items():
            load = load_message(name, pt, stamp)
            if load is not None:
                self._load_pubs[name].publish(load)
        values = {
            "sim_time_s": f"{tele.stamp_s:.3f}",
            "power_w": f"{tele.total_power_w or 0.0:.3f}",
            "energy_j": f"{tele.energy_j or 0.0:.3f}",
            "power_mode": -1 if tele.power_mode is None else tele.power_mode,
            "cpu_khz": tele.processors[CPU].frequency_khz,
            "gpu_khz": tele.processors[GPU].frequency_khz,
            "corunners": ",".join(self.board.corunners) or "none",
            "frames": self.frames,
            "rejected_inputs": self.rejected,
        }
        self._diag_pub.publish(
            diagnostics(
                f"{self.get_name()}: simulated Xavier NX",
                self.health.level(["thermal throttling" if tele.throttled else ""]),
                "sim-xavier-nx",
                values,
                stamp,
            )
        )


def main(args: list[str] | None = None) -> int:
    return run_node(SimPlatformNode, "sim_platform_node", args)


if __name__ == "__main__":
    raise SystemExit(main())
