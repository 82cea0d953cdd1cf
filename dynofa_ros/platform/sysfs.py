"""Reading and writing sysfs safely, shared by the Jetson and Linux back-ends.

* :class:`SysfsIO` resolves every path under a root (``/`` on a board, a fake tree in tests),
  reads numbers defensively (garbage, empty, NaN -> ``None`` plus a counted, logged warning) and
  writes **only whitelisted files**: a back-end registers the exact files it may write when it
  discovers the board, and any other path is refused before anything is opened.
* :class:`Transaction` records the previous content of every file it writes and restores them in
  reverse order when a later write fails, so a setting is applied whole or not at all.
* :class:`CpuFreq` (cpufreq policies, cores online, ``/proc/stat`` utilisation),
  :func:`read_thermal_zones`, :func:`read_battery` are the pieces both back-ends use.

Permission problems: tests run as root, for whom ``chmod`` does not stop a write, so the denial
path is exercised by injecting the two OS hooks :class:`SysfsIO` uses -- ``opener`` (raises
``PermissionError`` / ``OSError(EROFS)`` exactly as ``open()`` does for a normal user or a
read-only mount) and ``access`` (``os.access``) -- and, without injection, by a directory standing
where a file should be (``IsADirectoryError``).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dynofa_ros.platform.base import BatteryTelemetry, PlatformError

log = logging.getLogger("dynofa_ros.platform")

ADVICE = (
    "run the node as a user allowed to write it (root, or a udev rule giving your group write "
    "access to the cpufreq / devfreq / cpu online files), or disable DVFS in the node's "
    "parameters"
)


class SysfsIO:
    """File access under ``root`` with a write whitelist and warning accounting."""

    def __init__(
        self,
        root: str | os.PathLike[str] = "/",
        *,
        opener: Callable[[Path, str], IO[str]] | None = None,
        access: Callable[[Path, int], bool] | None = None,
    ) -> None:
        self.root = Path(root)
        self._opener = opener or (lambda p, mode: open(p, mode, encoding="ascii"))  # noqa: SIM115
        self._access = access or (os.access)
        self._whitelist: set[str] = set()
        self.warning_count = 0
        self._warned: set[str] = set()
        self.pending_warnings: list[str] = []

    # ------------------------------------------------------------------------------ paths
    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def exists(self, rel: str) -> bool:
        return self.path(rel).exists()

    def is_dir(self, rel: str) -> bool:
        return self.path(rel).is_dir()

    def glob(self, rel_dir: str, pattern: str) -> list[str]:
        """Relative paths of ``pattern`` entries in ``rel_dir``, naturally sorted."""
        base = self.path(rel_dir)
        if not base.is_dir():
            return []
        out = [str(p.relative_to(self.root)) for p in base.glob(pattern)]
        return sorted(out, key=_natural)

    # ------------------------------------------------------------------------------ reading
    def read_text(self, rel: str) -> str | None:
        """The stripped content, or ``None`` when the file is absent or unreadable."""
        try:
            with self._opener(self.path(rel), "r") as f:
                return f.read().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self.warn(rel, f"unreadable ({exc.__class__.__name__}: {exc})")
            return None

    def read_number(self, rel: str, scale: float = 1.0) -> float | None:
        """A finite number times ``scale``; ``None`` (and a counted warning) for garbage, empty
        or non-finite content; ``None`` without a warning when the file is absent."""
        text = self.read_text(rel)
        if text is None:
            return None
        token = text.split()[0] if text.split() else ""
        try:
            value = float(token)
        except ValueError:
            self.warn(rel, f"not a number: {text[:40]!r}")
            return None
        if not math.isfinite(value):
            self.warn(rel, f"not a finite number: {text[:40]!r}")
            return None
        return value * scale

    def read_int_list(self, rel: str) -> tuple[int, ...] | None:
        text = self.read_text(rel)
        if text is None:
            return None
        try:
            return tuple(int(t) for t in text.split())
        except ValueError:
            self.warn(rel, f"not a list of integers: {text[:60]!r}")
            return None

    def warn(self, rel: str, what: str) -> None:
        msg = f"{self.path(rel)}: {what}"
        self.warning_count += 1
        self.pending_warnings.append(msg)
        if msg not in self._warned:  # log each distinct problem once; count every time
            self._warned.add(msg)
            log.warning("platform telemetry: %s (field left empty)", msg)

    def take_warnings(self) -> tuple[str, ...]:
        out, self.pending_warnings = tuple(self.pending_warnings), []
        return out

    # ------------------------------------------------------------------------------ writing
    def allow(self, rel: str) -> None:
        """Put ``rel`` on the write whitelist (back-ends do this for the files they found)."""
        self._whitelist.add(self._normal(rel))

    @property
    def whitelist(self) -> frozenset[str]:
        return frozenset(self._whitelist)

    def writable(self, rel: str) -> bool:
        p = self.path(rel)
        return (
            self._normal(rel) in self._whitelist and p.is_file() and bool(self._access(p, os.W_OK))
        )

    def write(self, rel: str, value: str | int) -> None:
        """Write ``value`` to a whitelisted file; anything else raises before opening."""
        norm = self._normal(rel)
        if norm not in self._whitelist:
            raise PlatformError(
                f"refusing to write {self.path(rel)}: not one of the sysfs files this back-end "
                "may change (cpufreq / devfreq frequency and governor files, cpu online files)"
            )
        p = self.path(norm)
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(p)
        if os.path.commonpath([real_root, real]) != real_root:
            raise PlatformError(f"refusing to write {p}: it resolves outside {self.root}")
        try:
            with self._opener(p, "w") as f:
                f.write(f"{value}\n")
        except PermissionError as exc:
            raise PlatformError(
                f"cannot write {value} to {p}: permission denied ({exc.strerror}); {ADVICE}"
            ) from exc
        except OSError as exc:
            reason = exc.strerror or exc.__class__.__name__
            if exc.errno == errno.EROFS:
                reason = "read-only file system"
            raise PlatformError(f"cannot write {value} to {p}: {reason}; {ADVICE}") from exc

    @staticmethod
    def _normal(rel: str) -> str:
        parts: list[str] = []
        for part in rel.strip("/").split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                raise PlatformError(f"refusing to write a sysfs path with '..': {rel}")
            parts.append(part)
        return "/".join(parts)


class Transaction:
    """Writes through :class:`SysfsIO` that are undone (reverse order) when one fails.

    Use ``with Transaction(io) as tx: tx.write(...)``; an exception inside the block rolls back
    every write made so far and is re-raised as a :class:`PlatformError` that says so.
    Non-file steps (e.g. an ``nvpmodel`` call) join with :meth:`on_rollback`.
    """

    def __init__(self, io: SysfsIO) -> None:
        self.io = io
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self.written: list[tuple[str, str]] = []

    def __enter__(self) -> Transaction:
        return self

    def write(self, rel: str, value: str | int) -> None:
        old = self.io.read_text(rel)
        self.io.write(rel, value)
        self.written.append((rel, str(value)))
        if old is not None:
            self._undo.append((str(self.io.path(rel)), lambda: self.io.write(rel, _first(old))))

    def on_rollback(self, what: str, undo: Callable[[], None]) -> None:
        self._undo.append((what, undo))

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            return
        failed = []
        for what, undo in reversed(self._undo):
            try:
                undo()
            except Exception as err:  # keep undoing the rest
                failed.append(f"{what} ({err})")
        n = len(self._undo)
        note = "nothing was changed" if n == 0 else f"the {n} earlier change(s) were rolled back"
        if failed:
            note = "rolling back failed for " + "; ".join(failed) + " -- check the board state"
        msg = f"{exc} [{note}]"
        raise PlatformError(msg) from exc


def _first(text: str) -> str:
    """The value to restore: the first token of a file read back (e.g. a governor name)."""
    return text.split(maxsplit=1)[0] if text.split() else text


def _natural(s: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


# =========================================================================== shared readers
@dataclass
class CpuPolicy:
    rel: str  # e.g. sys/devices/system/cpu/cpufreq/policy0
    cpus: tuple[int, ...]
    table_khz: tuple[int, ...]
    governors: tuple[str, ...]


@dataclass
class CpuFreq:
    """The CPU side of a Linux board: cpufreq policies, hot-pluggable cores, utilisation."""

    io: SysfsIO
    cpu_dir: str = "sys/devices/system/cpu"
    proc_stat: str = "proc/stat"
    policies: list[CpuPolicy] = field(default_factory=list)
    cpus: list[int] = field(default_factory=list)
    hotplug: list[int] = field(default_factory=list)  # cpus with an ``online`` file
    _last_stat: dict[str, tuple[int, int]] | None = None

    def discover(self) -> None:
        io = self.io
        self.cpus = sorted(
            int(m.group(1))
            for rel in io.glob(self.cpu_dir, "cpu[0-9]*")
            if (m := re.fullmatch(r"cpu(\d+)", Path(rel).name)) and io.is_dir(rel)
        )
        self.hotplug = [c for c in self.cpus if io.exists(f"{self.cpu_dir}/cpu{c}/online")]
        for c in self.hotplug:
            io.allow(f"{self.cpu_dir}/cpu{c}/online")
        for rel in io.glob(f"{self.cpu_dir}/cpufreq", "policy[0-9]*"):
            cpus = io.read_int_list(f"{rel}/related_cpus") or io.read_int_list(
                f"{rel}/affected_cpus"
            )
            if cpus is None:
                cpus = (int(Path(rel).name.removeprefix("policy")),)
            table = tuple(
                sorted(set(io.read_int_list(f"{rel}/scaling_available_frequencies") or ()))
            )
            govs = tuple((io.read_text(f"{rel}/scaling_available_governors") or "").split())
            self.policies.append(CpuPolicy(rel, cpus, table, govs))
            for name in ("scaling_min_freq", "scaling_max_freq", "scaling_governor"):
                io.allow(f"{rel}/{name}")
        self._last_stat = self._read_stat()

    # ------------------------------------------------------------------------ description
    @property
    def cores(self) -> int:
        return len(self.cpus) or 1

    def table_khz(self) -> tuple[int, ...]:
        """Frequencies every policy offers (the intersection), ascending."""
        tables = [set(p.table_khz) for p in self.policies if p.table_khz]
        if not tables or len(tables) != len(self.policies):
            return ()
        return tuple(sorted(set.intersection(*tables)))

    def governors(self) -> tuple[str, ...]:
        sets = [set(p.governors) for p in self.policies if p.governors]
        if not sets or len(sets) != len(self.policies):
            return ()
        return tuple(sorted(set.intersection(*sets)))

    def frequency_reason(self) -> str | None:
        """Why CPU frequencies cannot be pinned here (``None`` when they can)."""
        if not self.policies:
            return f"no cpufreq policies under {self.io.path(self.cpu_dir + '/cpufreq')}"
        if not self.table_khz():
            return "the cpufreq driver lists no frequency table (scaling_available_frequencies)"
        for p in self.policies:
            for name in ("scaling_min_freq", "scaling_max_freq"):
                if not self.io.writable(f"{p.rel}/{name}"):
                    return f"{self.io.path(p.rel + '/' + name)} is not writable; {ADVICE}"
        return None

    def governor_reason(self) -> str | None:
        if not self.policies:
            return f"no cpufreq policies under {self.io.path(self.cpu_dir + '/cpufreq')}"
        if not self.governors():
            return "the cpufreq policies list no governors"
        for p in self.policies:
            if not self.io.writable(f"{p.rel}/scaling_governor"):
                return f"{self.io.path(p.rel + '/scaling_governor')} is not writable; {ADVICE}"
        return None

    def cores_reason(self) -> str | None:
        if not self.hotplug:
            return "no cpu online files (CPU hot-plug not available)"
        for c in self.hotplug:
            if not self.io.writable(f"{self.cpu_dir}/cpu{c}/online"):
                return f"{self.io.path(f'{self.cpu_dir}/cpu{c}/online')} is not writable; {ADVICE}"
        return None

    # ------------------------------------------------------------------------ telemetry
    def online(self) -> list[int]:
        out = []
        for c in self.cpus:
            if c in self.hotplug:
                v = self.io.read_number(f"{self.cpu_dir}/cpu{c}/online")
                if v is None or v < 0.5:
                    continue
            out.append(c)
        return out

    def frequency_khz(self) -> int | None:
        freqs = []
        for p in self.policies:
            v = self.io.read_number(f"{p.rel}/scaling_cur_freq")
            if v is not None:
                freqs.append(int(v))
        return max(freqs) if freqs else None

    def governor(self) -> str | None:
        return (
            self.io.read_text(f"{self.policies[0].rel}/scaling_governor") if self.policies else None
        )

    def utilisation(self) -> tuple[float | None, float | None]:
        """(mean, busiest core) busy fraction since the previous call, from ``/proc/stat``."""
        now = self._read_stat()
        prev, self._last_stat = self._last_stat, now
        if not now or not prev:
            return None, None
        per_cpu = []
        mean = None
        for key, (busy, total) in now.items():
            if key not in prev:
                continue
            d_total = total - prev[key][1]
            if d_total <= 0:
                continue
            u = min(1.0, max(0.0, (busy - prev[key][0]) / d_total))
            if key == "cpu":
                mean = u
            else:
                per_cpu.append(u)
        return mean, (max(per_cpu) if per_cpu else None)

    def _read_stat(self) -> dict[str, tuple[int, int]] | None:
        text = self.io.read_text(self.proc_stat)
        if text is None:
            return None
        out = {}
        for line in text.splitlines():
            parts = line.split()
            if not parts or not parts[0].startswith("cpu"):
                continue
            try:
                vals = [int(v) for v in parts[1:]]
            except ValueError:
                self.io.warn(self.proc_stat, f"bad line {line[:40]!r}")
                continue
            if len(vals) < 4:
                continue
            idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
            total = sum(vals[:8])
            out[parts[0]] = (total - idle, total)
        return out

    # ------------------------------------------------------------------------ actuation
    def plan_pin(self, tx: Transaction, khz: int) -> None:
        """Pin every policy at ``khz`` (min = max), in the order that keeps min <= max."""
        for p in self.policies:
            cur_max = self.io.read_number(f"{p.rel}/scaling_max_freq")
            order = ("scaling_max_freq", "scaling_min_freq")
            if cur_max is not None and khz <= cur_max:
                order = ("scaling_min_freq", "scaling_max_freq")
            for name in order:
                tx.write(f"{p.rel}/{name}", khz)

    def plan_unpin(self, tx: Transaction) -> None:
        for p in self.policies:
            if p.table_khz:
                tx.write(f"{p.rel}/scaling_min_freq", p.table_khz[0])
                tx.write(f"{p.rel}/scaling_max_freq", p.table_khz[-1])

    def plan_governor(self, tx: Transaction, governor: str) -> None:
        for p in self.policies:
            tx.write(f"{p.rel}/scaling_governor", governor)

    def plan_cores(self, tx: Transaction, n: int) -> None:
        """Bring the first ``n`` cpus online (onlining before offlining)."""
        want = set(self.cpus[:n])
        for c in self.hotplug:
            if c in want:
                tx.write(f"{self.cpu_dir}/cpu{c}/online", 1)
        for c in reversed(self.hotplug):
            if c not in want:
                tx.write(f"{self.cpu_dir}/cpu{c}/online", 0)

    def check_cores(self, n: int) -> None:
        fixed_online = [c for c in self.cpus if c not in self.hotplug]
        if not 1 <= n <= len(self.cpus) or n < len(fixed_online):
            raise PlatformError(
                f"cores_online {n} is outside {max(1, len(fixed_online))}..{len(self.cpus)}"
            )


def read_thermal_zones(io: SysfsIO, dirs: tuple[str, ...]) -> dict[str, float]:
    """Thermal zone type -> degrees C (``temp`` is in millidegrees); first existing dir."""
    out: dict[str, float] = {}
    for d in dirs:
        zones = io.glob(d, "thermal_zone[0-9]*")
        if not zones:
            continue
        for rel in zones:
            name = io.read_text(f"{rel}/type") or Path(rel).name
            t = io.read_number(f"{rel}/temp", 1e-3)
            if t is None:
                continue
            key = (
                name if name not in out else f"{name}#{Path(rel).name.removeprefix('thermal_zone')}"
            )
            out[key] = t
        break
    return out


def passive_trip_exceeded(io: SysfsIO, dirs: tuple[str, ...]) -> bool:
    """Whether a zone is at or above one of its ``passive`` (throttling) trip points."""
    for d in dirs:
        zones = io.glob(d, "thermal_zone[0-9]*")
        if not zones:
            continue
        for rel in zones:
            temp = None
            for trip in io.glob(rel, "trip_point_*_type"):
                if io.read_text(trip) != "passive":
                    continue
                limit = io.read_number(trip.removesuffix("_type") + "_temp")
                if temp is None:
                    temp = io.read_number(f"{rel}/temp")
                if limit is not None and temp is not None and limit > 0 and temp >= limit:
                    return True
        break
    return False


def read_battery(io: SysfsIO, rel_dir: str = "sys/class/power_supply") -> BatteryTelemetry | None:
    """The first ``power_supply`` of type Battery (units: micro-V / -A / -W / -Wh / -Ah)."""
    for rel in io.glob(rel_dir, "*"):
        if io.read_text(f"{rel}/type") != "Battery":
            continue
        soc = io.read_number(f"{rel}/capacity", 0.01)
        e_now = io.read_number(f"{rel}/energy_now", 1e-6)
        e_full = io.read_number(f"{rel}/energy_full", 1e-6)
        c_now = io.read_number(f"{rel}/charge_now", 1e-6)
        c_full = io.read_number(f"{rel}/charge_full", 1e-6)
        if soc is None and e_now is not None and e_full:
            soc = e_now / e_full
        if soc is None and c_now is not None and c_full:
            soc = c_now / c_full
        if soc is None:
            continue
        volts = io.read_number(f"{rel}/voltage_now", 1e-6)
        amps = io.read_number(f"{rel}/current_now", 1e-6)
        if amps is None:
            watts = io.read_number(f"{rel}/power_now", 1e-6)
            if watts is not None and volts:
                amps = watts / volts
        status = io.read_text(f"{rel}/status")
        if amps is not None and status == "Discharging":
            amps = -abs(amps)
        capacity = e_full
        if capacity is None and c_full is not None and volts:
            capacity = c_full * volts
        return BatteryTelemetry(
            state_of_charge=max(0.0, min(1.0, soc)),
            voltage_v=volts,
            current_a=amps,
            capacity_wh=capacity,
        )
    return None


@dataclass(frozen=True)
class RailFiles:
    """Where one INA3221 channel's reading lives: volts (mV) x amps (mA), or power (mW)."""

    millivolts: str | None = None
    milliamps: str | None = None
    milliwatts: str | None = None


def discover_ina3221(io: SysfsIO, i2c_dir: str, hwmon_dir: str) -> dict[str, RailFiles]:
    """Rail name -> files, for JetPack 5 hwmon (``inN_label``, ``inN_input`` mV, ``currN_input``
    mA) and JetPack 4 iio (``rail_name_N``, ``in_powerN_input`` mW) layouts, as jetson-stats
    reads them. Channel 7 (sum of shunt voltages) and ``NC`` channels are skipped."""
    seen: set[str] = set()
    candidates = []
    for dev in io.glob(i2c_dir, "*"):
        candidates += io.glob(f"{dev}/hwmon", "hwmon*")
        candidates += io.glob(dev, "iio:device*")
    candidates += io.glob(hwmon_dir, "hwmon*")
    rails: dict[str, RailFiles] = {}
    for rel in candidates:
        real = os.path.realpath(io.path(rel))
        if real in seen:
            continue
        seen.add(real)
        name = (io.read_text(f"{rel}/name") or "").lower()
        if "ina3221" in name:
            for lab in io.glob(rel, "in[0-9]_label"):
                rail = io.read_text(lab) or ""
                n = Path(lab).name.split("_")[0].removeprefix("in")
                if not rail or "NC" in rail or n == "7":
                    continue
                rails[rail] = RailFiles(
                    millivolts=f"{rel}/in{n}_input", milliamps=f"{rel}/curr{n}_input"
                )
        for lab in io.glob(rel, "rail_name_[0-9]"):
            rail = io.read_text(lab) or ""
            n = lab.rsplit("_", 1)[1]
            if rail:
                rails[rail] = RailFiles(milliwatts=f"{rel}/in_power{n}_input")
    return rails


def read_rails(io: SysfsIO, rails: dict[str, RailFiles]) -> dict[str, float]:
    """Rail name -> watts; rails whose files are unreadable are left out (and counted)."""
    out = {}
    for rail, f in rails.items():
        if f.milliwatts is not None:
            w = io.read_number(f.milliwatts, 1e-3)
        else:
            mv = io.read_number(f.millivolts) if f.millivolts else None
            ma = io.read_number(f.milliamps) if f.milliamps else None
            w = None if mv is None or ma is None else mv * ma * 1e-6
        if w is not None:
            out[rail] = w
    return out
