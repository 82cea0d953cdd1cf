"""The generic Linux back-end on a fake laptop tree and on this machine."""

from __future__ import annotations

from pathlib import Path

import pytest
from platform_fakes import CPUFREQ, RecordingOpener, make_linux_tree, proc_stat, put, tree_snapshot

from dynofa_ros.platform.base import PlatformError, Setting
from dynofa_ros.platform.linux import LinuxPlatform
from dynofa_ros.platform.sysfs import SysfsIO

RAPL = "sys/class/powercap/intel-rapl:0"


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_linux_tree(tmp_path / "root")


def test_reads_cpufreq_thermal_battery_and_rapl(root: Path) -> None:
    clock = Clock()
    p = LinuxPlatform(root, clock=clock)
    (cpu,) = p.processors()
    assert cpu.cores == 4 and cpu.frequencies_khz == (800000, 1200000, 1600000, 2000000, 2400000)
    caps = p.capabilities()
    assert caps.frequency == {"cpu"} and caps.governor == {"cpu"} and caps.cores_online
    assert "power_mode" in caps.reasons
    clock.t += 2.0
    put(root, f"{RAPL}/energy_uj", 1_000_000 + 30_000_000)  # 30 J in 2 s
    put(root, f"{RAPL}/intel-rapl:0:0/energy_uj", 500_000 + 20_000_000)
    put(root, "proc/stat", proc_stat([200, 100, 100, 300], [900, 1000, 1000, 900]))
    t = p.telemetry()
    assert t.total_power_w == pytest.approx(15.0) and t.energy_j == pytest.approx(30.0)
    assert t.power_w["rapl:core@0:0"] == pytest.approx(10.0)
    assert (
        t.processors["cpu"].frequency_khz == 1900000 and t.processors["cpu"].governor == "schedutil"
    )
    assert t.processors["cpu"].utilisation == pytest.approx(300 / 500)
    assert t.processors["cpu"].utilisation_max == pytest.approx(1.0)
    assert t.temperatures_c == {"x86_pkg_temp": 52.0, "acpitz": 45.0}
    b = t.battery
    assert b.state_of_charge == pytest.approx(0.76) and b.voltage_v == pytest.approx(11.8)
    assert b.current_a == pytest.approx(-1.5) and b.capacity_wh == pytest.approx(50.0)


def test_rapl_counter_wrap_around(root: Path) -> None:
    clock = Clock()
    put(root, f"{RAPL}/max_energy_range_uj", 10_000_000)
    put(root, f"{RAPL}/energy_uj", 9_000_000)
    p = LinuxPlatform(root, clock=clock)
    clock.t += 1.0
    put(root, f"{RAPL}/energy_uj", 500_000)  # wrapped: 1.0 + 0.5 J
    t = p.telemetry()
    assert t.total_power_w == pytest.approx(1.5) and t.energy_j == pytest.approx(1.5)
    clock.t += 1.0
    put(root, f"{RAPL}/energy_uj", 2_500_000)
    t = p.telemetry()
    assert t.total_power_w == pytest.approx(2.0) and t.energy_j == pytest.approx(3.5)


def test_battery_from_charge_counters(root: Path) -> None:
    b = "sys/class/power_supply/BAT0"
    for f in ("capacity", "energy_full", "energy_now", "current_now"):
        (root / b / f).unlink()
    put(root, f"{b}/charge_full", 4_000_000)
    put(root, f"{b}/charge_now", 1_000_000)
    put(root, f"{b}/power_now", 11_800_000)
    put(root, f"{b}/status", "Charging")
    bat = LinuxPlatform(root).telemetry().battery
    assert bat.state_of_charge == pytest.approx(0.25) and bat.current_a == pytest.approx(1.0)
    assert bat.capacity_wh == pytest.approx(4.0 * 11.8)


def test_apply_pins_every_policy_and_rolls_back(root: Path) -> None:
    p = LinuxPlatform(root)
    p.apply(Setting(frequencies_khz={"cpu": 1200000}))
    for c in range(4):
        d = root / CPUFREQ / f"policy{c}"
        assert (d / "scaling_min_freq").read_text().strip() == "1200000"
        assert (d / "scaling_max_freq").read_text().strip() == "1200000"
    p.apply(Setting(unpin=frozenset({"cpu"}), governors={"cpu": "performance"}, cores_online=2))
    assert (root / CPUFREQ / "policy3/scaling_max_freq").read_text().strip() == "2400000"
    assert (root / "sys/devices/system/cpu/cpu3/online").read_text().strip() == "0"
    assert (root / "sys/devices/system/cpu/cpu1/online").read_text().strip() == "1"
    with pytest.raises(PlatformError, match=r"nearest valid: 1600000 kHz, 2000000 kHz"):
        p.apply(Setting(frequencies_khz={"cpu": 1700000}))
    with pytest.raises(PlatformError, match="no power modes"):
        p.apply(Setting(power_mode=0))
    with pytest.raises(PlatformError, match="processor 'cuda' is not on platform linux"):
        p.apply(Setting(frequencies_khz={"cuda": 1}))
    # denied half-way: policy2's max file
    denied = root / CPUFREQ / "policy2/scaling_min_freq"
    p2 = LinuxPlatform(root, io=SysfsIO(root, opener=RecordingOpener(deny=lambda x: x == denied)))
    before = tree_snapshot(root)
    with pytest.raises(
        PlatformError, match=r"policy2/scaling_min_freq: permission denied .*rolled back"
    ):
        p2.apply(Setting(frequencies_khz={"cpu": 800000}, cores_online=4))
    assert tree_snapshot(root) == before


def test_empty_tree_reports_nothing_and_sets_nothing(tmp_path: Path) -> None:
    p = LinuxPlatform(tmp_path)
    (cpu,) = p.processors()
    assert cpu.frequencies_khz == () and cpu.cores == 1
    t = p.telemetry()
    assert t.processors["cpu"].frequency_khz is None and t.battery is None
    assert t.total_power_w is None and t.energy_j is None and t.temperatures_c == {}
    caps = p.capabilities()
    assert not caps.frequency and "no cpufreq policies" in caps.reasons["frequency:cpu"]
    assert "hot-plug" in caps.reasons["cores_online"]
    with pytest.raises(PlatformError, match="cannot set cpu frequency: no cpufreq"):
        p.apply(Setting(unpin=frozenset({"cpu"})))


def test_this_machine_reads_without_failing() -> None:
    p = LinuxPlatform("/")
    p.capabilities()
    t1 = p.telemetry()
    t2 = p.telemetry()
    assert t2.stamp_s >= t1.stamp_s
    assert t2.processors["cpu"].cores_online is None or t2.processors["cpu"].cores_online >= 1
    assert p.processors()[0].cores >= 1
