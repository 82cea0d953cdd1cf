"""Message <-> core value conversions shared by the nodes (one home for each mapping)."""

from __future__ import annotations

import importlib
import math
from typing import Any

from builtin_interfaces.msg import Time
from sensor_msgs.msg import BatteryState, Temperature

from dynofa_ros import configuration
from dynofa_ros.manager.types import Decision
from dynofa_ros.msg import ProcessorLoad, ReconfigurationCommand
from dynofa_ros.perception import Command
from dynofa_ros.platform.base import BatteryTelemetry, ProcessorTelemetry


def message_class(msgtype: str) -> Any:
    """``sensor_msgs/msg/Image`` (the name bags and ``ros2 topic`` use) -> the rclpy class."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def to_stamp(seconds: float) -> Time:
    sec = math.floor(seconds)
    nanosec = min(999_999_999, round((seconds - sec) * 1e9))
    return Time(sec=int(sec), nanosec=int(nanosec))


def battery_message(battery: BatteryTelemetry, stamp: Time, frame_id: str) -> BatteryState:
    msg = BatteryState()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.percentage = float(battery.state_of_charge)
    msg.voltage = float(battery.voltage_v) if battery.voltage_v is not None else math.nan
    msg.current = float(battery.current_a) if battery.current_a is not None else math.nan
    msg.temperature = math.nan
    msg.charge = math.nan
    if battery.capacity_wh is not None and battery.voltage_v:
        # BatteryState capacities are Ah; convert at the present voltage.
        msg.design_capacity = float(battery.capacity_wh / battery.voltage_v)
        msg.capacity = msg.design_capacity
        msg.charge = float(msg.capacity * battery.state_of_charge)
    else:
        msg.capacity = msg.design_capacity = math.nan
    discharging = battery.current_a is not None and battery.current_a < 0
    msg.power_supply_status = (
        BatteryState.POWER_SUPPLY_STATUS_DISCHARGING
        if discharging
        else BatteryState.POWER_SUPPLY_STATUS_NOT_CHARGING
    )
    msg.power_supply_health = BatteryState.POWER_SUPPLY_HEALTH_GOOD
    msg.power_supply_technology = BatteryState.POWER_SUPPLY_TECHNOLOGY_LION
    msg.present = True
    return msg


def temperature_message(celsius: float, stamp: Time, zone: str) -> Temperature:
    msg = Temperature()
    msg.header.stamp = stamp
    msg.header.frame_id = zone
    msg.temperature = float(celsius)
    msg.variance = 0.0
    return msg


def load_message(name: str, pt: ProcessorTelemetry, stamp: Time) -> ProcessorLoad | None:
    """A processor's telemetry as ``ProcessorLoad`` (``None`` when it has no utilisation)."""
    if pt.utilisation is None:
        return None
    msg = ProcessorLoad()
    msg.header.stamp = stamp
    msg.processor = name
    msg.utilisation = float(pt.utilisation)
    msg.utilisation_max = -1.0 if pt.utilisation_max is None else float(pt.utilisation_max)
    msg.frequency_khz = int(pt.frequency_khz or 0)
    return msg


def load_reading(msg: ProcessorLoad) -> Any:
    """``ProcessorLoad`` -> the manager's reading (its store validates the ranges); the
    manager's types load numpy, so they are imported where the manager runs."""
    from dynofa_ros.manager.types import ProcessorLoad as LoadReading

    top = float(msg.utilisation_max)
    return LoadReading(
        to_seconds(msg.header.stamp),
        msg.processor,
        float(msg.utilisation),
        int(msg.frequency_khz) or None,
        None if top == -1.0 else top,
    )


def topic_token(name: str) -> str:
    """A thermal-zone or model name as a valid topic token (``CPU-therm`` -> ``cpu_therm``)."""
    out = "".join(c.lower() if c.isalnum() else "_" for c in name).strip("_")
    return out if out and not out[0].isdigit() else f"z_{out}"


def command_message(d: Decision) -> ReconfigurationCommand:
    """A manager's decision as the message (stamped with the decision's time, so a re-sent
    command is an exact duplicate)."""
    cmd = ReconfigurationCommand(
        seq=d.seq,
        epoch=d.epoch,
        target_model=d.target_model,
        latency_target_ms=d.latency_target_ms,
        predicted_latency_ms=d.predicted_latency_ms,
        predicted_accuracy=d.predicted_accuracy,
        predicted_power_w=d.predicted_power_w,
        reason=d.reason,
        **configuration.message_fields(d.config),
    )
    cmd.header.stamp = to_stamp(d.stamp_s)
    return cmd


def command_of(msg: ReconfigurationCommand) -> Command:
    """A received command as the perception session's (raises ``ValueError`` / ``TypeError``
    on a malformed one)."""
    return Command(
        seq=int(msg.seq),
        target_model=str(msg.target_model),
        config=configuration.from_fields(msg),
        latency_target_ms=float(msg.latency_target_ms),
        reason=str(msg.reason),
        epoch=int(msg.epoch),
    )
