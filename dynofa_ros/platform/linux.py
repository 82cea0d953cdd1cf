"""The generic Linux back-end: cpufreq, cores online, thermal zones, a ``power_supply`` battery
and RAPL energy counters (``/sys/class/powercap/intel-rapl:*``).

On a laptop or a VM this is mostly read-only: whatever is missing is simply absent from the
telemetry (``None`` / no key) and the capability says why, nothing fails. RAPL ``energy_uj``
counters wrap at ``max_energy_range_uj``; power is the energy difference between two readings
over the time between them, and ``energy_j`` the energy counted since the back-end started (the
top-level ``package-*`` zones, or all top-level zones when none is called so).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dynofa_ros.platform.base import (
    Capabilities,
    Platform,
    PlatformError,
    Processor,
    ProcessorKind,
    ProcessorTelemetry,
    Setting,
    Telemetry,
)
from dynofa_ros.platform.sysfs import (
    CpuFreq,
    SysfsIO,
    Transaction,
    passive_trip_exceeded,
    read_battery,
    read_thermal_zones,
)

THERMAL_DIRS = ("sys/class/thermal",)
POWERCAP_DIR = "sys/class/powercap"


@dataclass
class _RaplZone:
    rel: str
    name: str
    top: bool
    max_uj: float | None
    last_uj: float | None
    total_j: float = 0.0


class Rapl:
    """RAPL energy counters with wrap-around."""

    def __init__(self, io: SysfsIO, clock: Callable[[], float]) -> None:
        self.io = io
        self.clock = clock
        self.zones: list[_RaplZone] = []
        for rel in io.glob(POWERCAP_DIR, "intel-rapl:*"):
            if not io.exists(f"{rel}/energy_uj"):
                continue
            name = io.read_text(f"{rel}/name") or Path(rel).name
            top = Path(rel).name.count(":") == 1
            label = name if top else f"{name}@{Path(rel).name.removeprefix('intel-rapl:')}"
            self.zones.append(
                _RaplZone(
                    rel,
                    label,
                    top,
                    io.read_number(f"{rel}/max_energy_range_uj"),
                    io.read_number(f"{rel}/energy_uj"),
                )
            )
        self._last_t = clock()
        tops = [z for z in self.zones if z.top]
        packages = [z for z in tops if z.name.startswith("package")]
        self.total_zones = packages or tops

    def read(self) -> tuple[dict[str, float], float | None, float | None]:
        """(power by zone W, total power W, cumulative energy J) since the previous read."""
        now = self.clock()
        dt = now - self._last_t
        self._last_t = now
        power: dict[str, float] = {}
        for z in self.zones:
            uj = self.io.read_number(f"{z.rel}/energy_uj")
            if uj is None:
                continue
            if z.last_uj is not None:
                delta = uj - z.last_uj
                if delta < 0:  # the counter wrapped
                    if z.max_uj is None:
                        z.last_uj = uj
                        continue
                    delta += z.max_uj
                z.total_j += delta * 1e-6
                if dt > 1e-3:
                    power[f"rapl:{z.name}"] = delta * 1e-6 / dt
            z.last_uj = uj
        if not self.total_zones:
            return power, None, None
        keys = [f"rapl:{z.name}" for z in self.total_zones]
        total = sum(power[k] for k in keys) if all(k in power for k in keys) else None
        return power, total, sum(z.total_j for z in self.total_zones)


class LinuxPlatform(Platform):
    """Any Linux machine: reports what it finds, sets CPU frequency / governor / cores where the
    files exist and are writable."""

    name = "linux"

    def __init__(
        self,
        sysfs_root: str | Path = "/",
        *,
        io: SysfsIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.io = io or SysfsIO(sysfs_root)
        self.sysfs_root = self.io.root
        self.clock = clock
        self.cpu = CpuFreq(self.io)
        self.cpu.discover()
        self.rapl = Rapl(self.io, clock)

    def processors(self) -> tuple[Processor, ...]:
        return (Processor("cpu", ProcessorKind.CPU, self.cpu.cores, self.cpu.table_khz()),)

    def capabilities(self) -> Capabilities:
        reasons: dict[str, str] = {}
        f, g, c = self.cpu.frequency_reason(), self.cpu.governor_reason(), self.cpu.cores_reason()
        if f:
            reasons["frequency:cpu"] = f
        if g:
            reasons["governor:cpu"] = g
        if c:
            reasons["cores_online"] = c
        reasons["power_mode"] = "no power modes on a generic Linux machine (nvpmodel is Jetson's)"
        return Capabilities(
            frequency=frozenset() if f else frozenset({"cpu"}),
            governor=frozenset() if g else frozenset({"cpu"}),
            cores_online=c is None,
            reasons=reasons,
        )

    @property
    def warning_count(self) -> int:  # type: ignore[override]
        return self.io.warning_count

    def telemetry(self) -> Telemetry:
        mean, busiest = self.cpu.utilisation()
        online = self.cpu.online()
        power, total, energy = self.rapl.read()
        return Telemetry(
            stamp_s=self.clock(),
            processors={
                "cpu": ProcessorTelemetry(
                    frequency_khz=self.cpu.frequency_khz(),
                    utilisation=mean,
                    cores_online=len(online) if self.cpu.cpus else None,
                    governor=self.cpu.governor(),
                    utilisation_max=busiest,
                )
            },
            temperatures_c=read_thermal_zones(self.io, THERMAL_DIRS),
            power_w=power,
            total_power_w=total,
            energy_j=energy,
            battery=read_battery(self.io),
            throttled=passive_trip_exceeded(self.io, THERMAL_DIRS),
            warnings=self.io.take_warnings(),
        )

    def apply(self, setting: Setting) -> None:
        caps = self.capabilities()
        for proc, khz in setting.frequencies_khz.items():
            self.processor(proc).check_frequency(int(khz))
            if proc not in caps.frequency:
                raise PlatformError(f"cannot set {proc} frequency: {caps.reasons['frequency:cpu']}")
        for proc in setting.unpin:
            self.processor(proc)
            if proc not in caps.frequency:
                raise PlatformError(f"cannot set {proc} frequency: {caps.reasons['frequency:cpu']}")
        for proc, gov in setting.governors.items():
            self.processor(proc)
            if proc not in caps.governor:
                raise PlatformError(f"cannot set {proc} governor: {caps.reasons['governor:cpu']}")
            if gov not in self.cpu.governors():
                raise PlatformError(
                    f"{proc} governor {gov!r} is not available "
                    f"(one of: {', '.join(self.cpu.governors())})"
                )
        if setting.cores_online is not None:
            if not caps.cores_online:
                raise PlatformError(f"cannot set cores online: {caps.reasons['cores_online']}")
            self.cpu.check_cores(setting.cores_online)
        if setting.power_mode is not None:
            raise PlatformError(f"cannot set power mode: {caps.reasons['power_mode']}")
        with Transaction(self.io) as tx:
            for gov in setting.governors.values():
                self.cpu.plan_governor(tx, gov)
            if setting.unpin:
                self.cpu.plan_unpin(tx)
            for khz in setting.frequencies_khz.values():
                self.cpu.plan_pin(tx, int(khz))
            if setting.cores_online is not None:
                self.cpu.plan_cores(tx, setting.cores_online)
