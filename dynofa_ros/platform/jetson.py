"""The Jetson back-end (Xavier NX first): sysfs for frequencies, cores, temperatures and power
rails; ``nvpmodel`` for power modes; jetson-stats (``jtop``) for readings when its service runs.

Everything is read under ``sysfs_root`` ("/" on the board; a fake tree in tests) and only the
files discovered at start-up as actuators are ever written (:class:`~.sysfs.SysfsIO` whitelist):
per cpufreq policy ``scaling_min_freq`` / ``scaling_max_freq`` / ``scaling_governor``, the GPU
devfreq ``min_freq`` / ``max_freq`` / ``governor``, and ``cpuN/online``. A frequency is pinned by
writing the same value to min and max, in the order that never puts min above max (raise max
first when going up, lower min first when going down). A setting is validated whole before the
first write, and a failed write rolls back every earlier one, ``nvpmodel`` included.

Units: cpufreq files are kHz, devfreq files are Hz; the interface is kHz everywhere.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import subprocess
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dynofa_ros.platform import nx_data as nx
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
    ADVICE,
    CpuFreq,
    SysfsIO,
    Transaction,
    discover_ina3221,
    passive_trip_exceeded,
    read_battery,
    read_rails,
    read_thermal_zones,
)

log = logging.getLogger("dynofa_ros.platform")

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=30, check=False)


class Nvpmodel:
    """The ``nvpmodel`` command: ``-q`` reads the mode, ``-m N`` sets it."""

    def __init__(self, command: str | Sequence[str], runner: Runner = _run) -> None:
        self.command = shlex.split(command) if isinstance(command, str) else list(command)
        self.runner = runner

    def available(self) -> bool:
        exe = self.command[0]
        return Path(exe).is_file() if "/" in exe else shutil.which(exe) is not None

    def query(self) -> int | None:
        try:
            res = self.runner([*self.command, "-q"])
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("nvpmodel -q failed: %s", exc)
            return None
        if res.returncode != 0:
            log.warning("nvpmodel -q failed (%s): %s", res.returncode, res.stderr.strip()[:200])
            return None
        for line in reversed(res.stdout.strip().splitlines()):
            if line.strip().isdigit():
                return int(line.strip())
        return None

    def set(self, mode: int) -> None:
        cmd = [*self.command, "-m", str(mode)]
        try:
            res = self.runner(cmd)
        except (OSError, subprocess.SubprocessError) as exc:
            raise PlatformError(f"cannot run {' '.join(cmd)}: {exc}; {ADVICE}") from exc
        if res.returncode != 0:
            err = (res.stderr or res.stdout).strip().splitlines()
            last = err[-1] if err else "no output"
            raise PlatformError(f"{' '.join(cmd)} failed (exit {res.returncode}: {last}); {ADVICE}")


def parse_nvpmodel_conf(text: str) -> dict[int, str]:
    """``{id: name}`` from ``< POWER_MODEL ID=N NAME=... >`` lines of an nvpmodel.conf."""
    return {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>", text)
    }


class JetsonPlatform(Platform):
    """A Jetson (Xavier NX layout) read and driven through sysfs and nvpmodel."""

    name = "jetson"

    def __init__(
        self,
        sysfs_root: str | Path = "/",
        nvpmodel_cmd: str | Sequence[str] = "nvpmodel",
        *,
        use_jtop: bool | None = None,
        jtop_factory: Callable[[], Any] | None = None,
        io: SysfsIO | None = None,
        runner: Runner = _run,
    ) -> None:
        self.io = io or SysfsIO(sysfs_root)
        self.sysfs_root = self.io.root
        self.nvpmodel = Nvpmodel(nvpmodel_cmd, runner)
        self.cpu = CpuFreq(self.io)
        self.cpu.discover()
        # GPU devfreq
        self.gpu_dir = next((d for d in nx.GPU_DEVFREQ_DIRS if self.io.is_dir(d)), None)
        self.gpu_table_khz: tuple[int, ...] = ()
        self.gpu_governors: tuple[str, ...] = ()
        if self.gpu_dir is not None:
            hz = self.io.read_int_list(f"{self.gpu_dir}/available_frequencies") or ()
            self.gpu_table_khz = tuple(sorted({f // 1000 for f in hz}))
            self.gpu_governors = tuple(
                (self.io.read_text(f"{self.gpu_dir}/available_governors") or "").split()
            )
            for name in ("min_freq", "max_freq", "governor"):
                self.io.allow(f"{self.gpu_dir}/{name}")
        self.gpu_load = next((f for f in nx.GPU_LOAD_FILES if self.io.exists(f)), None)
        self.rails = discover_ina3221(self.io, nx.I2C_DEVICES_DIR, nx.HWMON_DIR)
        conf = self.io.read_text(nx.NVPMODEL_CONF)
        self.modes = parse_nvpmodel_conf(conf) if conf else {}
        if not self.modes:
            self.modes = {i: m.name for i, m in nx.POWER_MODES.items()}
        self._nvp_ok = self.nvpmodel.available()
        self._mode = self.nvpmodel.query() if self._nvp_ok else None
        self._jtop = self._start_jtop(use_jtop, jtop_factory)

    # ------------------------------------------------------------------------ jetson-stats
    def _start_jtop(self, use: bool | None, factory: Callable[[], Any] | None) -> Any:
        if use is False:
            return None
        try:
            if factory is None:
                from jtop import jtop  # AGPL-3.0 optional dependency, used as a client

                factory = jtop
            with warnings.catch_warnings():  # jetson-stats' own deprecated calls
                warnings.simplefilter("ignore", DeprecationWarning)
                handle = factory()
                handle.start()
            if not handle.ok():
                raise RuntimeError("jtop is not ready")
            return handle
        except Exception as exc:  # JtopException off a Jetson / service not running / no jtop
            msg = f"jetson-stats not used ({exc.__class__.__name__}: {exc}); reading sysfs only"
            (log.warning if use else log.info)(msg)
            return None

    @property
    def jtop_active(self) -> bool:
        return self._jtop is not None

    def close(self) -> None:
        if self._jtop is not None:
            try:
                self._jtop.close()
            finally:
                self._jtop = None

    # ------------------------------------------------------------------------ description
    def processors(self) -> tuple[Processor, ...]:
        out = [Processor("cpu", ProcessorKind.CPU, self.cpu.cores, self.cpu.table_khz())]
        if self.gpu_dir is not None:
            out.append(Processor("cuda", ProcessorKind.GPU, nx.GPU_CUDA_CORES, self.gpu_table_khz))
        return tuple(out)

    def _gpu_reason(self, files: Sequence[str]) -> str | None:
        if self.gpu_dir is None:
            return f"no GPU devfreq node under {self.sysfs_root} ({nx.GPU_DEVFREQ_DIRS[0]})"
        if not self.gpu_table_khz and "min_freq" in files:
            return f"{self.io.path(self.gpu_dir)}/available_frequencies lists no frequency"
        for name in files:
            if not self.io.writable(f"{self.gpu_dir}/{name}"):
                return f"{self.io.path(self.gpu_dir + '/' + name)} is not writable; {ADVICE}"
        return None

    def capabilities(self) -> Capabilities:
        reasons: dict[str, str] = {}
        freq: set[str] = set()
        gov: set[str] = set()
        for key, reason in (
            ("frequency:cpu", self.cpu.frequency_reason()),
            ("frequency:cuda", self._gpu_reason(("min_freq", "max_freq"))),
            ("governor:cpu", self.cpu.governor_reason()),
            ("governor:cuda", self._gpu_reason(("governor",))),
        ):
            kind, proc = key.split(":")
            if reason is None:
                (freq if kind == "frequency" else gov).add(proc)
            else:
                reasons[key] = reason
        cores_reason = self.cpu.cores_reason()
        if cores_reason:
            reasons["cores_online"] = cores_reason
        if not self._nvp_ok:
            reasons["power_mode"] = (
                f"nvpmodel command {' '.join(self.nvpmodel.command)!r} not found; install "
                "nvidia-l4t-tools or pass its path (nvpmodel_cmd)"
            )
        return Capabilities(
            frequency=frozenset(freq),
            governor=frozenset(gov),
            cores_online=cores_reason is None,
            power_modes=dict(self.modes) if self._nvp_ok else {},
            reasons=reasons,
        )

    # ------------------------------------------------------------------------ telemetry
    def telemetry(self) -> Telemetry:
        io = self.io
        mean, busiest = self.cpu.utilisation()
        online = self.cpu.online()
        procs = {
            "cpu": ProcessorTelemetry(
                frequency_khz=self.cpu.frequency_khz(),
                utilisation=mean,
                cores_online=len(online) if self.cpu.cpus else None,
                governor=self.cpu.governor(),
                utilisation_max=busiest,
            )
        }
        if self.gpu_dir is not None:
            cur = io.read_number(f"{self.gpu_dir}/cur_freq", 1e-3)
            load = io.read_number(self.gpu_load, 1e-3) if self.gpu_load else None
            if load is not None:
                load = min(1.0, max(0.0, load))
            procs["cuda"] = ProcessorTelemetry(
                frequency_khz=None if cur is None else round(cur),
                utilisation=load,
                governor=io.read_text(f"{self.gpu_dir}/governor"),
                utilisation_max=load,
            )
        temps = read_thermal_zones(io, nx.THERMAL_DIRS)
        power = read_rails(io, self.rails)
        if self._jtop is not None:
            power, temps = self._merge_jtop(power, temps)
        total = power.get(nx.RAIL_TOTAL)
        if total is None and power:
            total = sum(power.values())
        return Telemetry(
            stamp_s=time.monotonic(),
            processors=procs,
            temperatures_c=temps,
            power_w=power,
            total_power_w=total,
            energy_j=None,
            battery=read_battery(io),
            power_mode=self._mode,
            throttled=passive_trip_exceeded(io, nx.THERMAL_DIRS),
            warnings=io.take_warnings(),
        )

    @property
    def warning_count(self) -> int:  # type: ignore[override]
        return self.io.warning_count

    def _merge_jtop(
        self, power: dict[str, float], temps: dict[str, float]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Fill what sysfs could not read from jetson-stats (mW, degC)."""
        try:
            if not power:
                for rail, v in (self._jtop.power or {}).get("rail", {}).items():
                    mw = v.get("power")
                    if isinstance(mw, (int, float)) and mw >= 0:
                        power[rail] = mw / 1000.0
            if not temps:
                for zone, v in (self._jtop.temperature or {}).items():
                    t = v.get("temp") if isinstance(v, dict) else v
                    if isinstance(t, (int, float)) and t > -256:
                        temps[zone] = float(t)
        except Exception as exc:
            log.warning("jetson-stats reading failed (%s); using sysfs only from now on", exc)
            self.close()
        return power, temps

    # ------------------------------------------------------------------------ actuation
    def apply(self, setting: Setting) -> None:
        caps = self.capabilities()

        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise PlatformError(
                    f"cannot set {what}: {caps.reasons.get(key, 'not supported here')}"
                )

        for proc, khz in setting.frequencies_khz.items():
            self.processor(proc).check_frequency(int(khz))
            need(proc in caps.frequency, f"frequency:{proc}", f"{proc} frequency")
        for proc in setting.unpin:
            self.processor(proc)
            need(proc in caps.frequency, f"frequency:{proc}", f"{proc} frequency")
        for proc, gov in setting.governors.items():
            self.processor(proc)
            need(proc in caps.governor, f"governor:{proc}", f"{proc} governor")
            allowed = self.cpu.governors() if proc == "cpu" else self.gpu_governors
            if gov not in allowed:
                raise PlatformError(
                    f"{proc} governor {gov!r} is not available (one of: {', '.join(allowed)})"
                )
        if setting.cores_online is not None:
            need(caps.cores_online, "cores_online", "cores online")
            self.cpu.check_cores(setting.cores_online)
        if setting.power_mode is not None:
            need(self._nvp_ok, "power_mode", "power mode")
            if setting.power_mode not in self.modes:
                raise PlatformError(
                    f"power mode {setting.power_mode} does not exist here (one of: "
                    + ", ".join(f"{i} {n}" for i, n in sorted(self.modes.items()))
                    + ")"
                )

        with Transaction(self.io) as tx:
            if setting.power_mode is not None and setting.power_mode != self._mode:
                old = self._mode
                self.nvpmodel.set(setting.power_mode)
                self._mode = setting.power_mode
                if old is not None:
                    tx.on_rollback(f"nvpmodel -m {old}", lambda: self._restore_mode(old))
            for proc, gov in setting.governors.items():
                if proc == "cpu":
                    self.cpu.plan_governor(tx, gov)
                else:
                    tx.write(f"{self.gpu_dir}/governor", gov)
            for proc in setting.unpin:
                if proc == "cpu":
                    self.cpu.plan_unpin(tx)
                else:
                    tx.write(f"{self.gpu_dir}/min_freq", self.gpu_table_khz[0] * 1000)
                    tx.write(f"{self.gpu_dir}/max_freq", self.gpu_table_khz[-1] * 1000)
            for proc, khz in setting.frequencies_khz.items():
                if proc == "cpu":
                    self.cpu.plan_pin(tx, int(khz))
                else:
                    self._pin_gpu(tx, int(khz))
            if setting.cores_online is not None:
                self.cpu.plan_cores(tx, setting.cores_online)

    def _restore_mode(self, mode: int) -> None:
        self.nvpmodel.set(mode)
        self._mode = mode

    def _pin_gpu(self, tx: Transaction, khz: int) -> None:
        hz = khz * 1000
        cur_max = self.io.read_number(f"{self.gpu_dir}/max_freq")
        order = ("max_freq", "min_freq")  # going up: raise max first
        if cur_max is not None and hz <= cur_max:
            order = ("min_freq", "max_freq")  # going down: lower min first
        for name in order:
            tx.write(f"{self.gpu_dir}/{name}", hz)
