"""The one type for what a model runs with, shared by the manager (a decision), the perception
session (a command and the active state) and the results (a command record): a change to it
changes all of them at once, and message fields are mapped to it only in ``nodes/convert.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Configuration:
    """A sub-network on a processor with a thread count, the pinned clocks (0: the governor's)
    and the board power mode (``None``: the board's own).

    In a command, the empty values ("", 0, ``None``) mean "keep what runs" (:data:`KEEP`)."""

    subnet_id: str
    processor: str
    threads: int
    cpu_frequency_khz: int = 0
    gpu_frequency_khz: int = 0
    power_mode: int | None = None


KEEP = Configuration("", "", 0)  # a command that changes nothing of the configuration


def from_fields(msg: Any) -> Configuration:
    """From anything with ``ReconfigurationCommand.msg``'s field names (an rclpy or a rosbags
    message): its ``power_mode`` -1 ("keep") is ``None``; other values are kept as they are,
    for the receiver to check."""
    mode = int(msg.power_mode)
    return Configuration(
        str(msg.subnet_id),
        str(msg.processor),
        int(msg.threads),
        int(msg.cpu_frequency_khz),
        int(msg.gpu_frequency_khz),
        None if mode == -1 else mode,
    )


def message_fields(config: Configuration) -> dict[str, Any]:
    """``config`` as ``ReconfigurationCommand.msg``'s fields (``power_mode`` ``None`` is -1)."""
    return {
        "subnet_id": config.subnet_id,
        "processor": config.processor,
        "threads": config.threads,
        "cpu_frequency_khz": config.cpu_frequency_khz,
        "gpu_frequency_khz": config.gpu_frequency_khz,
        "power_mode": -1 if config.power_mode is None else config.power_mode,
    }
