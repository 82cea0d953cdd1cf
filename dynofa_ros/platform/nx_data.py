"""Jetson Xavier NX facts shared by the real Jetson back-end and the simulator.

Every constant says where it comes from. "TOOLCHAIN" is ``/work/shared/TOOLCHAIN.md`` of this
project (checked facts); "L4T" is NVIDIA's Jetson Linux Developer Guide, *Power Management for
Jetson Xavier NX Series and Jetson AGX Xavier Series*; "estimate" means no published figure was
found and the value is our engineering estimate (see ``docs/simulator.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

# --------------------------------------------------------------------------------------- sysfs
# TOOLCHAIN (Xavier NX facts). Paths are relative to the sysfs root ("/" on a board).
GPU_DEVFREQ_DIRS = (
    "sys/devices/17000000.gv11b/devfreq/17000000.gv11b",
    "sys/class/devfreq/17000000.gv11b",
)
#: GPU load in per mille. TOOLCHAIN names the first; jetson-stats also reads ``gpu.0/load``.
GPU_LOAD_FILES = ("sys/devices/17000000.gv11b/load", "sys/devices/gpu.0/load")
CPU_DIR = "sys/devices/system/cpu"
THERMAL_DIRS = ("sys/devices/virtual/thermal", "sys/class/thermal")
#: INA3221 layouts: JetPack 5 hwmon (``inN_label``, ``inN_input`` mV, ``currN_input`` mA) and
#: JetPack 4 iio (``rail_name_N``, ``in_powerN_input`` mW); as read by jetson-stats 7.2.2
#: (``jtop/core/power.py``).
I2C_DEVICES_DIR = "sys/bus/i2c/devices"
HWMON_DIR = "sys/class/hwmon"
NVPMODEL_CONF = "etc/nvpmodel.conf"

# --------------------------------------------------------------------------- frequency tables
#: GPU devfreq ``available_frequencies`` (TOOLCHAIN; the file lists Hz, this table kHz).
GPU_FREQUENCIES_KHZ: tuple[int, ...] = (
    114750,
    204000,
    306000,
    408000,
    510000,
    599250,
    701250,
    752250,
    803250,
    854250,
    905250,
    956250,
    1007250,
    1058250,
    1109250,
)

#: Carmel cpufreq ``scaling_available_frequencies``: 115.2 MHz steps of 76.8 MHz up to
#: 1881.6 MHz, then the top step 1907.2 MHz. The top steps (1651200 .. 1907200) and the
#: 15W_6CORE cap 1420800 are quoted from Xavier NX boards in public repositories (a NX
#: ``scaling_available_frequencies`` listing; a ``nvpmodel_t194_p3668.conf`` excerpt); the
#: 76.8 MHz ladder below is the Carmel table L4T documents for Xavier (AGX Xavier continues it
#: to 2265.6 MHz). Treat the lower steps as an estimate until read on a board.
CPU_FREQUENCIES_KHZ: tuple[int, ...] = (
    *tuple(115200 + 76800 * k for k in range(24)),
    1907200,
)

CPU_CORES = 6  # TOOLCHAIN: 6 Carmel cores in 3 two-core clusters
CPU_POLICIES = (0, 2, 4)  # one cpufreq policy per cluster (cpu0-1, cpu2-3, cpu4-5)
GPU_CUDA_CORES = 384  # TOOLCHAIN: Volta, 384 CUDA cores in 6 SMs
GPU_SMS = 6
EMC_MAX_MHZ = 1600  # Xavier NX data sheet: 128-bit LPDDR4x, max operating frequency 1600 MHz
DRAM_PEAK_GBPS = 51.2  # 128 bit x 2 x 1600 MHz / 8 (data sheet figures)

CPU_GOVERNORS = ("schedutil", "performance", "powersave", "userspace", "ondemand")
GPU_GOVERNORS = ("nvhost_podgov", "performance", "simple_ondemand", "userspace")


# ---------------------------------------------------------------------------- nvpmodel modes
@dataclass(frozen=True)
class PowerMode:
    """One nvpmodel mode: the caps it puts on the board."""

    id: int
    name: str
    budget_w: float
    cpu_online: int
    cpu_max_khz: int
    gpu_max_khz: int


#: Mode ids and names: TOOLCHAIN (JetPack 5, ``nvpmodel -p --verbose`` on an NX). Caps: the
#: 15W_6CORE CPU cap 1420800 kHz and the 1.1 GHz GPU cap of the 15 W and 20 W modes are quoted
#: from ``nvpmodel_t194_p3668.conf``; the other CPU caps (1.9 GHz with 2 cores, 1.5 / 1.2 GHz in
#: 10 W, 800 MHz GPU in 10 W) follow the L4T power-mode table as we recall it: **estimate**,
#: verify against ``/etc/nvpmodel/nvpmodel_t194_p3668.conf`` on the board. Caps are snapped to
#: table steps.
POWER_MODES: dict[int, PowerMode] = {
    m.id: m
    for m in (
        PowerMode(0, "MODE_15W_2CORE", 15.0, 2, 1907200, 1109250),
        PowerMode(1, "MODE_15W_4CORE", 15.0, 4, 1420800, 1109250),
        PowerMode(2, "MODE_15W_6CORE", 15.0, 6, 1420800, 1109250),
        PowerMode(3, "MODE_10W_2CORE", 10.0, 2, 1497600, 803250),
        PowerMode(4, "MODE_10W_4CORE", 10.0, 4, 1190400, 803250),
        PowerMode(5, "MODE_10W_DESKTOP", 10.0, 6, 1190400, 803250),
        PowerMode(6, "MODE_20W_2CORE", 20.0, 2, 1907200, 1109250),
        PowerMode(7, "MODE_20W_4CORE", 20.0, 4, 1907200, 1109250),
        PowerMode(8, "MODE_20W_6CORE", 20.0, 6, 1420800, 1109250),
    )
}
DEFAULT_POWER_MODE = 2  # L4T: the NX default mode is 15W_6CORE (``PM_CONFIG DEFAULT=2``)

#: INA3221 rail names of the Xavier NX module (jetson-stats documents VDD_IN as the NX total).
RAIL_TOTAL = "VDD_IN"
RAIL_CPU_GPU = "VDD_CPU_GPU_CV"
RAIL_SOC = "VDD_SOC"

#: Thermal zone types the simulator reports (names as on an NX; ``AUX-therm`` stands for the
#: package / heat-sink node of the simulator's RC model).
ZONE_CPU = "CPU-therm"
ZONE_GPU = "GPU-therm"
ZONE_AUX = "AUX-therm"


def nearest_at_most(table: tuple[int, ...], khz: int) -> int:
    """The highest table step ``<= khz`` (the lowest step when ``khz`` is below the table)."""
    best = table[0]
    for f in table:
        if f <= khz:
            best = f
    return best
