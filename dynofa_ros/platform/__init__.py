"""Platform layer: read the board (telemetry) and act on it (frequencies, governors, cores,
power mode) through one interface, :class:`~dynofa_ros.platform.base.Platform`.

Back-ends (no ROS, no torch):

* ``jetson`` (:mod:`.jetson`): Jetson Xavier NX sysfs (GPU devfreq, CPU cpufreq, cores online,
  thermal zones, INA3221 rails), ``nvpmodel`` through its command, jetson-stats when running;
* ``linux`` (:mod:`.linux`): generic Linux (cpufreq, thermal zones, power_supply battery, RAPL);
* ``sim-xavier-nx`` (:mod:`.sim`): a simulated Xavier NX advanced in simulated time, for
  closed-loop development and evaluation of the runtime manager.

``make_platform(name, **kw)`` builds one by name; ``detect_platform()`` picks ``jetson`` when the
NX GPU devfreq node exists under the sysfs root, else ``linux``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dynofa_ros.platform.base import (
    BatteryTelemetry,
    Capabilities,
    Platform,
    PlatformError,
    Processor,
    ProcessorKind,
    ProcessorTelemetry,
    Setting,
    Telemetry,
)


def _jetson(**kw: Any) -> Platform:
    from dynofa_ros.platform.jetson import JetsonPlatform

    return JetsonPlatform(**kw)


def _linux(**kw: Any) -> Platform:
    from dynofa_ros.platform.linux import LinuxPlatform

    return LinuxPlatform(**kw)


def _sim(**kw: Any) -> Platform:
    from dynofa_ros.platform.sim import SimulatedXavierNX

    return SimulatedXavierNX(**kw)


# name -> factory (a back-end is imported only when built); "auto" picks one (detect_platform)
PLATFORMS: dict[str, Callable[..., Platform]] = {
    "jetson": _jetson,
    "linux": _linux,
    "sim-xavier-nx": _sim,
}
BACKENDS = tuple(PLATFORMS)
ALIASES = {"sim": "sim-xavier-nx"}


def make_platform(name: str, **kw: Any) -> Platform:
    """Build a back-end by name (:data:`PLATFORMS`; keywords go to its constructor) or ``auto``
    (:func:`detect_platform`)."""
    if name == "auto":
        return detect_platform(**kw)
    factory = PLATFORMS.get(ALIASES.get(name, name))
    if factory is None:
        raise PlatformError(
            f"unknown platform back-end {name!r} (one of: auto, {', '.join(BACKENDS)})"
        )
    return factory(**kw)


def is_jetson(sysfs_root: str | Path = "/") -> bool:
    """Whether the Xavier NX GPU devfreq node exists under ``sysfs_root``."""
    from dynofa_ros.platform import nx_data

    root = Path(sysfs_root)
    return any((root / d).is_dir() for d in nx_data.GPU_DEVFREQ_DIRS)


def detect_platform(sysfs_root: str | Path = "/", **kw: Any) -> Platform:
    """The Jetson back-end when the NX GPU devfreq node exists, else the generic Linux one."""
    if is_jetson(sysfs_root):
        return make_platform("jetson", sysfs_root=sysfs_root, **kw)
    return make_platform("linux", sysfs_root=sysfs_root, **kw)


__all__ = [
    "BACKENDS",
    "BatteryTelemetry",
    "Capabilities",
    "Platform",
    "PlatformError",
    "Processor",
    "ProcessorKind",
    "ProcessorTelemetry",
    "Setting",
    "Telemetry",
    "detect_platform",
    "is_jetson",
    "make_platform",
]
