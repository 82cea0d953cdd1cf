"""Fake sysfs trees that mirror real layouts, built in a temporary directory.

``make_xavier_nx_tree`` follows a Jetson Xavier NX on JetPack 5 (paths in TOOLCHAIN.md and as
jetson-stats reads them): GPU devfreq in Hz, three cpufreq policies in kHz, cpu1..5 hot-plug
files, thermal zones in millidegrees with passive trip points, an INA3221 hwmon device with three
labelled channels (mV / mA) and the "sum of shunt voltages" channel 7, /etc/nvpmodel.conf and
/proc/stat. ``make_nvpmodel`` writes a fake ``nvpmodel`` script that keeps its mode in a file and
logs its calls. ``make_linux_tree`` follows a laptop: acpi-cpufreq policies, an x86_pkg_temp
zone, a BAT0 battery and RAPL package / core / dram zones.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

GPU_HZ = [
    114750000, 204000000, 306000000, 408000000, 510000000, 599250000, 701250000, 752250000,
    803250000, 854250000, 905250000, 956250000, 1007250000, 1058250000, 1109250000,
]  # fmt: skip
CPU_KHZ = [115200 + 76800 * k for k in range(24)] + [1907200]
GPU_DIR = "sys/devices/17000000.gv11b/devfreq/17000000.gv11b"
CPUFREQ = "sys/devices/system/cpu/cpufreq"


def put(root: Path, rel: str, text: str | int) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(f"{text}\n")
    return p


def proc_stat(busy: list[int], idle: list[int]) -> str:
    """A /proc/stat with per-cpu busy (user) and idle jiffies, plus the 'cpu' total line."""
    lines = [f"cpu  {sum(busy)} 0 0 {sum(idle)} 0 0 0 0 0 0"]
    lines += [
        f"cpu{i} {b} 0 0 {d} 0 0 0 0 0 0" for i, (b, d) in enumerate(zip(busy, idle, strict=True))
    ]
    return "\n".join(lines) + "\nintr 0\n"


def make_xavier_nx_tree(root: Path) -> Path:
    g = GPU_DIR
    put(root, f"{g}/available_frequencies", " ".join(str(f) for f in GPU_HZ))
    put(
        root,
        f"{g}/available_governors",
        "wmark_active nvhost_podgov userspace performance simple_ondemand",
    )
    put(root, f"{g}/governor", "nvhost_podgov")
    put(root, f"{g}/min_freq", GPU_HZ[0])
    put(root, f"{g}/max_freq", GPU_HZ[-1])
    put(root, f"{g}/cur_freq", 306000000)
    put(root, "sys/devices/17000000.gv11b/load", 421)
    for c in range(6):
        (root / f"sys/devices/system/cpu/cpu{c}").mkdir(parents=True, exist_ok=True)
        if c > 0:
            put(root, f"sys/devices/system/cpu/cpu{c}/online", 1)
    for pol in (0, 2, 4):
        d = f"{CPUFREQ}/policy{pol}"
        put(root, f"{d}/related_cpus", f"{pol} {pol + 1}")
        put(root, f"{d}/affected_cpus", f"{pol} {pol + 1}")
        put(root, f"{d}/scaling_available_frequencies", " ".join(str(f) for f in CPU_KHZ))
        put(
            root,
            f"{d}/scaling_available_governors",
            "interactive conservative ondemand userspace powersave performance schedutil",
        )
        put(root, f"{d}/scaling_governor", "schedutil")
        put(root, f"{d}/scaling_min_freq", CPU_KHZ[0])
        put(root, f"{d}/scaling_max_freq", 1420800)
        put(root, f"{d}/scaling_cur_freq", 1420800 if pol == 0 else 729600)
        put(root, f"{d}/scaling_setspeed", "<unsupported>")
    zones = [("CPU-therm", 41500), ("GPU-therm", 40000), ("AUX-therm", 39500)]
    for i, (name, milli) in enumerate(zones):
        z = f"sys/devices/virtual/thermal/thermal_zone{i}"
        put(root, f"{z}/type", name)
        put(root, f"{z}/temp", milli)
        put(root, f"{z}/trip_point_0_type", "passive")
        put(root, f"{z}/trip_point_0_temp", 97000)
        put(root, f"{z}/trip_point_1_type", "critical")
        put(root, f"{z}/trip_point_1_temp", 104000)
    hw = "sys/bus/i2c/devices/7-0040/hwmon/hwmon3"
    put(root, f"{hw}/name", "ina3221")
    for n, (label, mv, ma) in enumerate(
        [("VDD_IN", 5000, 1200), ("VDD_CPU_GPU_CV", 5000, 400), ("VDD_SOC", 5000, 300)], start=1
    ):
        put(root, f"{hw}/in{n}_label", label)
        put(root, f"{hw}/in{n}_input", mv)
        put(root, f"{hw}/curr{n}_input", ma)
    put(root, f"{hw}/in7_label", "sum of shunt voltages")
    put(root, f"{hw}/in7_input", 60)
    put(root, "etc/nvpmodel.conf", "\n".join(
        ["< PM_CONFIG DEFAULT=2 >"]
        + [f"< POWER_MODEL ID={i} NAME={n} >" for i, n in enumerate(
            ["MODE_15W_2CORE", "MODE_15W_4CORE", "MODE_15W_6CORE", "MODE_10W_2CORE",
             "MODE_10W_4CORE", "MODE_10W_DESKTOP", "MODE_20W_2CORE", "MODE_20W_4CORE",
             "MODE_20W_6CORE"])]
    ))  # fmt: skip
    put(root, "proc/stat", proc_stat([100] * 6, [900] * 6))
    return root


def make_nvpmodel(tmp: Path, mode: int = 2, fail_on: int | None = None) -> tuple[Path, Path, Path]:
    """A fake ``nvpmodel``: (script, state file, call log). ``-m fail_on`` exits 1."""
    state, calls = tmp / "nvp_mode", tmp / "nvp_calls"
    state.write_text(f"{mode}\n")
    calls.write_text("")
    script = tmp / "nvpmodel"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{calls}"\n'
        'if [ "$1" = "-q" ]; then echo "NV Power Mode: MODE_X"; cat "'
        + str(state)
        + '"; exit 0; fi\n'
        f'if [ "$1" = "-m" ]; then\n'
        f'  if [ "$2" = "{fail_on}" ]; then echo "NVPM ERROR: failed" >&2; exit 1; fi\n'
        f'  echo "$2" > "{state}"; exit 0\n'
        "fi\n"
        "exit 2\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, state, calls


def make_linux_tree(root: Path) -> Path:
    for c in range(4):
        (root / f"sys/devices/system/cpu/cpu{c}").mkdir(parents=True, exist_ok=True)
        if c:
            put(root, f"sys/devices/system/cpu/cpu{c}/online", 1)
        d = f"{CPUFREQ}/policy{c}"
        put(root, f"{d}/related_cpus", c)
        put(root, f"{d}/scaling_available_frequencies", "2400000 2000000 1600000 1200000 800000")
        put(root, f"{d}/scaling_available_governors", "performance powersave ondemand schedutil")
        put(root, f"{d}/scaling_governor", "schedutil")
        put(root, f"{d}/scaling_min_freq", 800000)
        put(root, f"{d}/scaling_max_freq", 2400000)
        put(root, f"{d}/scaling_cur_freq", 1600000 + 100000 * c)
    put(root, "sys/class/thermal/thermal_zone0/type", "x86_pkg_temp")
    put(root, "sys/class/thermal/thermal_zone0/temp", 52000)
    put(root, "sys/class/thermal/thermal_zone1/type", "acpitz")
    put(root, "sys/class/thermal/thermal_zone1/temp", 45000)
    b = "sys/class/power_supply/BAT0"
    put(root, f"{b}/type", "Battery")
    put(root, f"{b}/status", "Discharging")
    put(root, f"{b}/capacity", 76)
    put(root, f"{b}/voltage_now", 11800000)
    put(root, f"{b}/current_now", 1500000)
    put(root, f"{b}/energy_full", 50000000)
    put(root, f"{b}/energy_now", 38000000)
    put(root, "sys/class/power_supply/AC/type", "Mains")
    put(root, "sys/class/power_supply/AC/online", 0)
    rapl = "sys/class/powercap"
    for rel, name, uj in [
        ("intel-rapl:0", "package-0", 1_000_000),
        ("intel-rapl:0/intel-rapl:0:0", "core", 500_000),
        ("intel-rapl:0/intel-rapl:0:1", "dram", 200_000),
    ]:
        put(root, f"{rapl}/{rel}/name", name)
        put(root, f"{rapl}/{rel}/energy_uj", uj)
        put(root, f"{rapl}/{rel}/max_energy_range_uj", 262143328850)
    # sysfs exposes sub-zones at the top of /sys/class/powercap as links too
    for sub in ("intel-rapl:0:0", "intel-rapl:0:1"):
        os.symlink(root / rapl / "intel-rapl:0" / sub, root / rapl / sub)
    put(root, "proc/stat", proc_stat([100] * 4, [900] * 4))
    return root


def tree_snapshot(root: Path) -> dict[str, str]:
    """Every regular file's content (links followed once), for before / after comparisons."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_file():
                out[str(p.relative_to(root))] = p.read_text()
    return out


class RecordingOpener:
    """An ``open()`` replacement that logs writes, can deny some paths like the OS does for a
    normal user, and can check an invariant after every write."""

    def __init__(
        self,
        deny: Callable[[Path], bool] = lambda p: False,
        after_write: Callable[[Path], None] | None = None,
    ) -> None:
        self.deny = deny
        self.after_write = after_write
        self.writes: list[tuple[str, str]] = []

    def __call__(self, path: Path, mode: str):
        if "w" in mode and self.deny(path):
            raise PermissionError(13, "Permission denied", str(path))
        return _LoggedFile(self, path, mode)


class _LoggedFile:
    def __init__(self, opener: RecordingOpener, path: Path, mode: str) -> None:
        self.opener, self.path, self.mode = opener, path, mode
        self.f = open(path, mode, encoding="ascii")  # noqa: SIM115

    def __enter__(self):
        return self

    def read(self) -> str:
        return self.f.read()

    def write(self, text: str) -> int:
        return self.f.write(text)

    def __exit__(self, *exc) -> None:
        self.f.close()
        if "w" in self.mode:
            self.opener.writes.append((str(self.path), self.path.read_text().strip()))
            if self.opener.after_write is not None:
                self.opener.after_write(self.path)
