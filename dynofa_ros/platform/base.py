"""The one interface every platform back-end implements (Jetson sysfs, generic Linux, simulated NX).

The runtime manager reads a :class:`Telemetry` snapshot and asks for a :class:`Setting`; a back-end
says up front what it can set (:class:`Capabilities`) and validates a whole setting before writing
any of it, so a rejected setting changes nothing.
"""

from __future__ import annotations

import bisect
import enum
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from dynofa_ros.errors import DynofaError


class PlatformError(DynofaError):
    """A platform read or write that cannot be done; the message names the path or field and
    what to do about it (e.g. run with the needed permission, or disable DVFS)."""


class ProcessorKind(str, enum.Enum):
    CPU = "cpu"
    GPU = "cuda"


@dataclass(frozen=True)
class Processor:
    """A processor a perception model can be mapped to; ``name`` is what commands use."""

    name: str
    kind: ProcessorKind
    cores: int
    frequencies_khz: tuple[int, ...] = ()  # ascending; empty when unknown / not settable

    @property
    def max_frequency_khz(self) -> int | None:
        return self.frequencies_khz[-1] if self.frequencies_khz else None

    def check_frequency(self, khz: int) -> int:
        """Return ``khz`` if it is in the table, else raise naming the nearest valid ones."""
        if khz in self.frequencies_khz:
            return khz
        table = self.frequencies_khz
        if not table:
            raise PlatformError(f"{self.name}: frequency {khz} kHz cannot be set here (no table)")
        i = bisect.bisect_left(table, khz)
        nearest = sorted({table[j] for j in (i - 1, i) if 0 <= j < len(table)})
        raise PlatformError(
            f"{self.name} frequency {khz} kHz is not in the table "
            f"({table[0]}..{table[-1]} kHz, {len(table)} steps); nearest valid: "
            + ", ".join(f"{f} kHz" for f in nearest)
        )


SCHEDUTIL_MARGIN = 1.25  # Linux schedutil's headroom (map_util_freq: freq + freq / 4)


def schedutil_khz(
    table: tuple[int, ...], current_khz: int, busy: float, margin: float = SCHEDUTIL_MARGIN
) -> int:
    """Linux schedutil's next frequency: ``margin * f_max * util`` with frequency-invariant
    utilisation ``util = busy * f_cur / f_max``, i.e. ``margin * f_cur * busy``, rounded up to the
    table (``get_next_freq`` in kernel/sched/cpufreq_schedutil.c). The one rule of the governor
    baseline: the simulated board runs it; a real board runs the kernel's own."""
    target = margin * current_khz * busy
    i = bisect.bisect_left(table, math.ceil(target))
    return table[min(i, len(table) - 1)]


@dataclass(frozen=True)
class ProcessorTelemetry:
    frequency_khz: int | None = None
    utilisation: float | None = None  # busy fraction in [0, 1]
    cores_online: int | None = None
    governor: str | None = None
    # busiest core / cluster in [0, 1] (what Linux schedutil scales by); ``None`` when unknown
    utilisation_max: float | None = None


@dataclass(frozen=True)
class BatteryTelemetry:
    state_of_charge: float  # [0, 1]
    voltage_v: float | None = None
    current_a: float | None = None  # negative while discharging (sensor_msgs/BatteryState)
    capacity_wh: float | None = None


_K = TypeVar("_K")
_V = TypeVar("_V")


def _frozen(m: Mapping[_K, _V] | None = None) -> Mapping[_K, _V]:
    return MappingProxyType(dict(m or {}))


@dataclass(frozen=True)
class Telemetry:
    """One reading of the board. ``None`` / missing keys mean the back-end cannot see it."""

    stamp_s: float  # monotonic seconds (simulated seconds on the simulator)
    processors: Mapping[str, ProcessorTelemetry] = field(default_factory=_frozen)
    temperatures_c: Mapping[str, float] = field(default_factory=_frozen)  # by thermal zone
    power_w: Mapping[str, float] = field(default_factory=_frozen)  # by rail
    total_power_w: float | None = None
    energy_j: float | None = None  # cumulative since the back-end started, where measurable
    battery: BatteryTelemetry | None = None
    power_mode: int | None = None
    throttled: bool = False
    # what could not be read in this reading (one line each: path / field and why); the
    # back-end also counts them (``Platform.warning_count``)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Capabilities:
    """What ``apply()`` may change on this machine, and why not where it may not."""

    frequency: frozenset[str] = frozenset()  # processor names whose frequency can be pinned
    governor: frozenset[str] = frozenset()
    cores_online: bool = False
    power_modes: Mapping[int, str] = field(default_factory=_frozen)  # settable nvpmodel modes
    reasons: Mapping[str, str] = field(default_factory=_frozen)  # capability -> why it is absent


@dataclass(frozen=True)
class Setting:
    """A requested change; absent entries are left as they are."""

    frequencies_khz: Mapping[str, int] = field(default_factory=_frozen)
    governors: Mapping[str, str] = field(default_factory=_frozen)
    cores_online: int | None = None
    power_mode: int | None = None
    # processors whose pinned frequency is released (min / max back to the whole table, the
    # governor decides again); applied before ``frequencies_khz``
    unpin: frozenset[str] = frozenset()


class Platform(ABC):
    """A board the runtime reads and acts on. Back-ends take their sysfs root as a parameter."""

    name: str
    warning_count: int = 0  # unreadable telemetry fields since the back-end started

    @abstractmethod
    def processors(self) -> tuple[Processor, ...]: ...

    @abstractmethod
    def capabilities(self) -> Capabilities: ...

    @abstractmethod
    def telemetry(self) -> Telemetry: ...

    @abstractmethod
    def apply(self, setting: Setting) -> None:
        """Validate the whole setting, then write it; raise :class:`PlatformError` and change
        nothing (roll back what was written) when any part cannot be applied."""

    def processor(self, name: str) -> Processor:
        for p in self.processors():
            if p.name == name:
                return p
        names = ", ".join(p.name for p in self.processors())
        raise PlatformError(f"processor {name!r} is not on platform {self.name} (one of: {names})")
