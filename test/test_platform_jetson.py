"""The Jetson back-end on fake Xavier NX sysfs trees (no board needed)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from platform_fakes import (
    CPU_KHZ,
    CPUFREQ,
    GPU_DIR,
    GPU_HZ,
    RecordingOpener,
    make_nvpmodel,
    make_xavier_nx_tree,
    proc_stat,
    put,
    tree_snapshot,
)

from dynofa_ros.platform import detect_platform, make_platform
from dynofa_ros.platform.base import PlatformError, Setting
from dynofa_ros.platform.jetson import JetsonPlatform, parse_nvpmodel_conf
from dynofa_ros.platform.linux import LinuxPlatform
from dynofa_ros.platform.sysfs import SysfsIO


@pytest.fixture
def nx_root(tmp_path: Path) -> Path:
    return make_xavier_nx_tree(tmp_path / "root")


@pytest.fixture
def nvp(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_nvpmodel(tmp_path)


def jetson(root: Path, nvp=None, **kw) -> JetsonPlatform:
    cmd = str(nvp[0]) if nvp else str(root / "no-such-nvpmodel")
    return JetsonPlatform(root, cmd, use_jtop=False, **kw)


def gpu_files(root: Path) -> tuple[int, int]:
    return (
        int((root / GPU_DIR / "min_freq").read_text()),
        int((root / GPU_DIR / "max_freq").read_text()),
    )


def test_discovery_processors_and_capabilities(nx_root: Path, nvp) -> None:
    p = jetson(nx_root, nvp)
    cpu, gpu = p.processors()
    assert (cpu.name, cpu.cores, cpu.frequencies_khz) == ("cpu", 6, tuple(CPU_KHZ))
    assert gpu.name == "cuda" and gpu.frequencies_khz == tuple(f // 1000 for f in GPU_HZ)
    caps = p.capabilities()
    assert caps.frequency == {"cpu", "cuda"} and caps.governor == {"cpu", "cuda"}
    assert caps.cores_online and caps.power_modes[8] == "MODE_20W_6CORE"
    assert not caps.reasons
    whitelist = p.io.whitelist
    assert f"{GPU_DIR}/max_freq" in whitelist and f"{CPUFREQ}/policy4/scaling_governor" in whitelist
    assert not any(
        w.endswith(("scaling_setspeed", "cur_freq", "available_frequencies")) for w in whitelist
    )


def test_telemetry_reads_every_source(nx_root: Path, nvp) -> None:
    p = jetson(nx_root, nvp)
    put(
        nx_root,
        "proc/stat",
        proc_stat([150, 100, 100, 100, 100, 190], [950, 1000, 1000, 1000, 1000, 910]),
    )
    t = p.telemetry()
    cpu, gpu = t.processors["cpu"], t.processors["cuda"]
    assert cpu.frequency_khz == 1420800 and cpu.governor == "schedutil" and cpu.cores_online == 6
    assert cpu.utilisation == pytest.approx(140 / 600) and cpu.utilisation_max == pytest.approx(0.9)
    assert gpu.frequency_khz == 306000 and gpu.utilisation == pytest.approx(0.421)
    assert gpu.governor == "nvhost_podgov"
    assert t.temperatures_c == {"CPU-therm": 41.5, "GPU-therm": 40.0, "AUX-therm": 39.5}
    assert t.power_w == pytest.approx({"VDD_IN": 6.0, "VDD_CPU_GPU_CV": 2.0, "VDD_SOC": 1.5})
    assert t.total_power_w == pytest.approx(6.0)
    assert t.power_mode == 2 and not t.throttled and t.warnings == ()
    put(nx_root, "sys/devices/virtual/thermal/thermal_zone1/temp", 97500)
    put(nx_root, "sys/devices/system/cpu/cpu5/online", 0)
    t = p.telemetry()
    assert t.throttled and t.processors["cpu"].cores_online == 5


def test_jetpack4_iio_power_layout(tmp_path: Path) -> None:
    root = make_xavier_nx_tree(tmp_path / "r")
    import shutil

    shutil.rmtree(root / "sys/bus/i2c/devices/7-0040/hwmon")
    iio = "sys/bus/i2c/drivers/ina3221x/7-0040/iio:device0"
    for n, (rail, mw) in enumerate([("VDD_IN", 5200), ("VDD_CPU_GPU_CV", 1800), ("VDD_SOC", 1400)]):
        put(root, f"{iio}/rail_name_{n}", rail)
        put(root, f"{iio}/in_power{n}_input", mw)
    os.makedirs(root / "sys/bus/i2c/devices", exist_ok=True)
    os.symlink(root / "sys/bus/i2c/drivers/ina3221x/7-0040", root / "sys/bus/i2c/devices/7-0040x")
    t = jetson(root).telemetry()
    assert t.power_w == pytest.approx({"VDD_IN": 5.2, "VDD_CPU_GPU_CV": 1.8, "VDD_SOC": 1.4})


def test_gpu_pin_keeps_min_at_most_max_going_up_and_down(nx_root: Path, nvp) -> None:
    def check(path: Path) -> None:
        lo, hi = gpu_files(nx_root)
        assert lo <= hi, f"min {lo} > max {hi} after writing {path}"
        for pol in (0, 2, 4):
            d = nx_root / CPUFREQ / f"policy{pol}"
            assert int((d / "scaling_min_freq").read_text()) <= int(
                (d / "scaling_max_freq").read_text()
            )

    rec = RecordingOpener(after_write=check)
    p = jetson(nx_root, nvp, io=SysfsIO(nx_root, opener=rec))
    p.apply(Setting(frequencies_khz={"cuda": 510000}))  # max 1109.25 -> 510: min first
    assert gpu_files(nx_root) == (510000000, 510000000)
    assert [Path(w[0]).name for w in rec.writes] == ["min_freq", "max_freq"]
    rec.writes.clear()
    p.apply(Setting(frequencies_khz={"cuda": 1109250, "cpu": 1907200}))  # up: max first
    assert gpu_files(nx_root) == (1109250000, 1109250000)
    assert [Path(w[0]).name for w in rec.writes if "gv11b" in w[0]] == ["max_freq", "min_freq"]
    for pol in (0, 2, 4):
        d = nx_root / CPUFREQ / f"policy{pol}"
        assert (d / "scaling_min_freq").read_text().strip() == "1907200"
        assert (d / "scaling_max_freq").read_text().strip() == "1907200"
    p.apply(Setting(frequencies_khz={"cpu": 115200}))
    p.apply(Setting(unpin=frozenset({"cpu", "cuda"}), governors={"cuda": "performance"}))
    assert gpu_files(nx_root) == (GPU_HZ[0], GPU_HZ[-1])
    assert (nx_root / GPU_DIR / "governor").read_text().strip() == "performance"


def test_frequency_not_in_table_is_rejected_with_nearest(nx_root: Path, nvp) -> None:
    p = jetson(nx_root, nvp)
    before = tree_snapshot(nx_root)
    with pytest.raises(
        PlatformError, match=r"cuda frequency 600000 kHz .* nearest valid: 599250 kHz, 701250 kHz"
    ):
        p.apply(Setting(frequencies_khz={"cpu": 1420800, "cuda": 600000}))
    with pytest.raises(PlatformError, match=r"nearest valid: 1881600 kHz, 1907200 kHz"):
        p.apply(Setting(frequencies_khz={"cpu": 1900000}))
    with pytest.raises(PlatformError, match="governor 'turbo' is not available"):
        p.apply(Setting(governors={"cpu": "turbo"}))
    with pytest.raises(PlatformError, match="cores_online 9"):
        p.apply(Setting(cores_online=9))
    with pytest.raises(PlatformError, match="power mode 12 does not exist"):
        p.apply(Setting(power_mode=12))
    assert tree_snapshot(nx_root) == before


def test_only_whitelisted_files_are_ever_written(nx_root: Path, nvp) -> None:
    p = jetson(nx_root, nvp)
    before = tree_snapshot(nx_root)
    for rel in (
        f"{CPUFREQ}/policy0/scaling_setspeed",
        f"{GPU_DIR}/cur_freq",
        "sys/devices/17000000.gv11b/load",
        "etc/nvpmodel.conf",
        f"{GPU_DIR}/../../../../etc/passwd",
    ):
        with pytest.raises(PlatformError, match="refusing to write"):
            p.io.write(rel, 1)
    # a whitelisted name that is a link leading outside the root is refused too
    outside = nx_root.parent / "outside"
    outside.write_text("0\n")
    target = nx_root / "sys/devices/system/cpu/cpu3/online"
    target.unlink()
    os.symlink(outside, target)
    with pytest.raises(PlatformError, match="resolves outside"):
        p.io.write("sys/devices/system/cpu/cpu3/online", 1)
    assert outside.read_text() == "0\n"
    target.unlink()
    target.write_text("1\n")
    # a full apply only touches whitelisted files
    p.apply(
        Setting(
            frequencies_khz={"cpu": 729600, "cuda": 306000},
            governors={"cpu": "userspace"},
            cores_online=4,
            power_mode=3,
        )
    )
    after = tree_snapshot(nx_root)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed and changed <= p.io.whitelist
    assert (nx_root / "sys/devices/system/cpu/cpu5/online").read_text().strip() == "0"
    assert nvp[1].read_text().strip() == "3"


def test_permission_denied_names_path_and_rolls_back(nx_root: Path, nvp) -> None:
    denied = nx_root / GPU_DIR / "min_freq"
    rec = RecordingOpener(deny=lambda path: path == denied)
    p = jetson(nx_root, nvp, io=SysfsIO(nx_root, opener=rec))
    before = tree_snapshot(nx_root)
    with pytest.raises(PlatformError) as info:
        p.apply(
            Setting(
                frequencies_khz={"cpu": 729600, "cuda": 306000},
                governors={"cpu": "performance"},
                power_mode=0,
            )
        )
    msg = str(info.value)
    assert str(denied) in msg and "permission denied" in msg
    assert "run the node" in msg and "disable DVFS" in msg
    assert "rolled back" in msg
    assert tree_snapshot(nx_root) == before  # CPU governor / frequencies restored
    assert len(rec.writes) > 6  # writes happened and were undone
    assert nvp[2].read_text().split("\n")[-3:-1] == ["-m 0", "-m 2"]  # mode restored
    assert nvp[1].read_text().strip() == "2"


def test_directory_in_place_of_a_file_is_a_clear_error(nx_root: Path, nvp) -> None:
    f = nx_root / CPUFREQ / "policy4/scaling_max_freq"
    f.unlink()
    f.mkdir()
    p = jetson(nx_root, nvp)
    caps = p.capabilities()
    assert "cpu" not in caps.frequency and str(f) in caps.reasons["frequency:cpu"]
    with pytest.raises(
        PlatformError, match=r"cannot set cpu frequency: .*policy4/scaling_max_freq is not writable"
    ):
        p.apply(Setting(frequencies_khz={"cpu": 729600}))
    # and writing through the whitelist hits the real OS error, turned into a PlatformError
    p.io.allow(f"{CPUFREQ}/policy4/scaling_max_freq")
    with pytest.raises(
        PlatformError, match=r"cannot write 1 to .*policy4/scaling_max_freq: Is a directory"
    ):
        p.io.write(f"{CPUFREQ}/policy4/scaling_max_freq", 1)


def test_read_only_tree_reports_why_and_still_reads(nx_root: Path) -> None:
    io = SysfsIO(
        nx_root, access=lambda path, mode: False, opener=RecordingOpener(deny=lambda path: True)
    )
    p = JetsonPlatform(nx_root, "/nonexistent/nvpmodel", use_jtop=False, io=io)
    caps = p.capabilities()
    assert (
        not caps.frequency and not caps.governor and not caps.cores_online and not caps.power_modes
    )
    for key in ("frequency:cpu", "frequency:cuda", "governor:cpu", "governor:cuda", "cores_online"):
        assert "is not writable" in caps.reasons[key] and "run the node" in caps.reasons[key]
    assert "nvpmodel" in caps.reasons["power_mode"]
    before = tree_snapshot(nx_root)
    with pytest.raises(
        PlatformError, match=r"cannot set cuda frequency: .*17000000.gv11b/min_freq is not writable"
    ):
        p.apply(Setting(frequencies_khz={"cuda": 510000}))
    with pytest.raises(PlatformError, match="cannot set power mode: nvpmodel command"):
        p.apply(Setting(power_mode=2))
    assert tree_snapshot(nx_root) == before
    t = p.telemetry()
    assert t.processors["cuda"].frequency_khz == 306000 and t.total_power_w == pytest.approx(6.0)


def test_nvpmodel_failure_leaves_everything_as_it_was(tmp_path: Path, nx_root: Path) -> None:
    script, state, _calls = make_nvpmodel(tmp_path, mode=2, fail_on=6)
    p = jetson(nx_root, (script,))
    before = tree_snapshot(nx_root)
    with pytest.raises(PlatformError, match=r"nvpmodel -m 6 failed \(exit 1: NVPM ERROR: failed\)"):
        p.apply(Setting(power_mode=6, frequencies_khz={"cuda": 510000}))
    assert tree_snapshot(nx_root) == before and state.read_text().strip() == "2"
    p.apply(Setting(power_mode=4))
    assert p.telemetry().power_mode == 4


@pytest.mark.parametrize("bad", ["abc", "", "nan", "inf", "12 apples", "\x00\x01"])
def test_bad_telemetry_files_do_not_crash(nx_root: Path, nvp, bad: str, caplog) -> None:
    for rel in (
        f"{GPU_DIR}/cur_freq",
        "sys/devices/17000000.gv11b/load",
        "sys/devices/virtual/thermal/thermal_zone0/temp",
        "sys/bus/i2c/devices/7-0040/hwmon/hwmon3/curr1_input",
        f"{CPUFREQ}/policy0/scaling_cur_freq",
        "proc/stat",
    ):
        (nx_root / rel).write_text(bad)
    p = jetson(nx_root, nvp)
    with caplog.at_level(logging.WARNING, logger="dynofa_ros.platform"):
        t = p.telemetry()
        t2 = p.telemetry()
    if bad == "12 apples":  # a number followed by a unit word reads as the number
        assert t.processors["cuda"].frequency_khz == 0
    else:
        assert t.processors["cuda"].frequency_khz is None
        assert t.processors["cuda"].utilisation is None
        assert "CPU-therm" not in t.temperatures_c and "VDD_IN" not in t.power_w
        assert t.total_power_w == pytest.approx(3.5)  # falls back to the rails it could read
        assert len(t.warnings) >= 4 and p.warning_count >= 8
        assert any("cur_freq" in w for w in t.warnings) and t2.warnings
        assert any("field left empty" in r.getMessage() for r in caplog.records)
    assert t.processors["cpu"].frequency_khz == 729600  # the other policies still read


def test_missing_files_are_absent_not_warnings(tmp_path: Path) -> None:
    root = tmp_path / "bare"
    (root / GPU_DIR).mkdir(parents=True)
    p = jetson(root)
    t = p.telemetry()
    assert t.processors["cuda"].frequency_khz is None and t.warnings == ()
    assert p.processors()[1].frequencies_khz == ()
    assert "lists no frequency" in p.capabilities().reasons["frequency:cuda"]


def test_jtop_used_when_its_service_runs_and_not_otherwise(nx_root: Path, nvp) -> None:
    class Down:
        def start(self):
            raise RuntimeError("The jtop.service is not active")

    class Up:
        def __init__(self) -> None:
            self.power = {"rail": {"VDD_IN": {"power": 7300}}, "tot": {"power": 7300}}
            self.temperature = {"cpu": {"temp": 44.5, "online": True}, "cv0": {"temp": -256}}

        def start(self):
            pass

        def ok(self):
            return True

        def close(self):
            self.closed = True

    p = JetsonPlatform(nx_root, str(nvp[0]), jtop_factory=Down)
    assert not p.jtop_active and p.telemetry().total_power_w == pytest.approx(6.0)
    # the real jetson-stats, off a Jetson: JtopException -> absent, nothing fails
    assert not JetsonPlatform(nx_root, str(nvp[0])).jtop_active
    import shutil

    shutil.rmtree(nx_root / "sys/bus/i2c")
    shutil.rmtree(nx_root / "sys/devices/virtual/thermal")
    p = JetsonPlatform(nx_root, str(nvp[0]), jtop_factory=Up)
    t = p.telemetry()
    assert p.jtop_active and t.power_w == {"VDD_IN": 7.3} and t.temperatures_c == {"cpu": 44.5}
    p.close()
    assert not p.jtop_active


def test_detect_and_factory(nx_root: Path, tmp_path: Path) -> None:
    assert isinstance(detect_platform(nx_root, use_jtop=False), JetsonPlatform)
    assert isinstance(detect_platform(tmp_path / "empty"), LinuxPlatform)
    assert isinstance(make_platform("jetson", sysfs_root=nx_root, use_jtop=False), JetsonPlatform)


def test_parse_nvpmodel_conf() -> None:
    text = (
        "< PM_CONFIG DEFAULT=2 >\n< POWER_MODEL ID=0 NAME=MODE_15W_2CORE >\n"
        "CPU_ONLINE CORE_0 1\n<POWER_MODEL ID=8 NAME=MODE_20W_6CORE>"
    )
    assert parse_nvpmodel_conf(text) == {0: "MODE_15W_2CORE", 8: "MODE_20W_6CORE"}
