"""A simulated Jetson Xavier NX: the same :class:`Platform` interface as the real back-ends, plus
the physics (latency, power, heat, battery, governors, co-runners) in simulated time, so the
runtime manager can be developed and judged in closed loop without the board.

It is a model, not a measurement: docs/simulator.md gives its equations, the API in brief and the
source (published figure or stated estimate) of every constant; ``dynofa bench nx_sim`` prints it
beside every published figure it can be compared to. Deterministic for a seed (the only
randomness is the latency jitter).
"""

from __future__ import annotations

import bisect
import copy
import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from dynofa_ros.platform import nx_data as nx
from dynofa_ros.platform.base import (
    SCHEDUTIL_MARGIN,
    BatteryTelemetry,
    Capabilities,
    Platform,
    PlatformError,
    Processor,
    ProcessorKind,
    ProcessorTelemetry,
    Setting,
    Telemetry,
    schedutil_khz,
)
from dynofa_ros.platform.workload import Workload

Event = Callable[["SimulatedXavierNX"], None]  # a change to the board, applied at a time
# How far behind a reading of the board its clock stays for inputs still on their way; a frame
# stamped earlier than that arrives late and runs at the board's "now".
REORDER_WINDOW_S = 1.0
# Linux PELT: a task's utilisation halves every 32 ms (kernel/sched/pelt.c)
PELT_HALF_LIFE_S = 0.032
# How long the frames' own activity is kept for a frame stamped before the clock to share
FRAMES_PAST_S = 2.0
# Other frames never take more than this of a processor from a frame
FRAME_SHARE_MAX = 0.9
# Co-runners and other frames together never take more than this of a processor from a frame
SHARE_MAX = 0.95

CPU = "cpu"
GPU = "cuda"

# ------------------------------------------------------------------------------ voltage tables
# Estimates (no public DVFS voltage table for the Xavier NX): flat at the minimum voltage up to a
# knee, then linear to the top step -- the usual shape of a 12 nm FinFET DVFS curve.
_CPU_V_MIN, _CPU_V_MAX, _CPU_KNEE = 0.62, 1.05, 729600
_GPU_V_MIN, _GPU_V_MAX, _GPU_KNEE = 0.60, 1.00, 306000


def _volt(f: int, f_knee: int, f_max: int, v_min: float, v_max: float) -> float:
    if f <= f_knee:
        return v_min
    return v_min + (v_max - v_min) * (f - f_knee) / (f_max - f_knee)


#: (kHz, volts) for each CPU table step (estimate, see above).
CPU_VOLTAGE_TABLE: tuple[tuple[int, float], ...] = tuple(
    (f, round(_volt(f, _CPU_KNEE, nx.CPU_FREQUENCIES_KHZ[-1], _CPU_V_MIN, _CPU_V_MAX), 4))
    for f in nx.CPU_FREQUENCIES_KHZ
)
#: (kHz, volts) for each GPU table step (estimate, see above).
GPU_VOLTAGE_TABLE: tuple[tuple[int, float], ...] = tuple(
    (f, round(_volt(f, _GPU_KNEE, nx.GPU_FREQUENCIES_KHZ[-1], _GPU_V_MIN, _GPU_V_MAX), 4))
    for f in nx.GPU_FREQUENCIES_KHZ
)

#: Open-circuit voltage of one Li-ion (NMC) cell vs state of charge: typical 18650 data-sheet
#: discharge curve at low rate (estimate; any NMC cell is within ~0.05 V of it mid-range).
CELL_OCV_TABLE: tuple[tuple[float, float], ...] = (
    (0.00, 3.00),
    (0.05, 3.30),
    (0.10, 3.45),
    (0.20, 3.58),
    (0.30, 3.65),
    (0.40, 3.71),
    (0.50, 3.77),
    (0.60, 3.83),
    (0.70, 3.90),
    (0.80, 3.98),
    (0.90, 4.07),
    (1.00, 4.20),
)


@dataclass(frozen=True)
class RuntimeCosts:
    """Per-runtime host-side costs (at the top CPU frequency) and CPU efficiency."""

    host_fixed_ms: float  # per inference: Python call tree, input upload, output sync / copy
    host_per_layer_ms: float  # per weight layer: dispatch of its kernels (GPU) / operators
    cpu_efficiency: float  # achieved fraction of the CPU's peak NEON MAC rate


@dataclass(frozen=True)
class NXModel:
    """Every constant of the simulated NX. Sources: docs/simulator.md (table per field)."""

    cpu_frequencies_khz: tuple[int, ...] = nx.CPU_FREQUENCIES_KHZ
    gpu_frequencies_khz: tuple[int, ...] = nx.GPU_FREQUENCIES_KHZ
    cpu_cores: int = nx.CPU_CORES
    #: CPU frequency the host-side costs are quoted at: the cap of the default power mode
    #: (15W_6CORE, 1420.8 MHz), where we assume the published family was measured (estimate:
    #: the default mode with clocks at their caps, ``jetson_clocks``)
    reference_cpu_khz: int = 1420800
    # --- latency: GPU ------------------------------------------------------------------------
    runtimes: Mapping[str, RuntimeCosts] = field(
        default_factory=lambda: {
            # calibrated: host costs on the published GPU family (least squares, 6 members);
            # cpu_efficiency on the published CPU family ends (0.5 s / 1.85 s, 6 threads)
            "torch-dynamic": RuntimeCosts(12.93, 0.5978, 0.00601),
            # estimates: a static extracted network skips the per-layer weight slicing
            # (~0.6x dispatch cost), same eager kernels
            "torch-static": RuntimeCosts(12.93, 0.36, 0.0066),
            # estimates: ONNX Runtime, ~55 us per kernel on the CUDA EP, MLAS NEON kernels at
            # ~10 % of peak on Carmel
            "onnxruntime": RuntimeCosts(2.0, 0.17, 0.10),
        }
    )
    kernels_per_layer: float = 3.0  # conv + BatchNorm + activation (estimate)
    gpu_kernel_cycles: float = 5000.0  # device-side floor per kernel (estimate, ~4.5 us @1.1 GHz)
    gpu_macs_per_cycle: float = float(nx.GPU_CUDA_CORES)  # 384 FP32 FMA / cycle (data sheet)
    gpu_efficiency: float = 0.08  # FP32 cuDNN, batch 1, depthwise-heavy (estimate)
    overlap_p: float = 3.0  # host/device overlap norm (estimate)
    gpu_wait_per_kernel_ms: float = 0.205  # time-slice wait (calibrated: 46 -> 62 ms at s = 0.5)
    activation_macs_ratio: float = 16.0  # activations = macs / 16 when not given (estimate)
    bytes_per_element: float = 4.0  # FP32
    dram_efficiency: float = 0.55  # achieved fraction of 51.2 GB/s (estimate)
    # --- latency: CPU ------------------------------------------------------------------------
    cpu_macs_per_cycle: float = 8.0  # per core: 2 x 128-bit FP32 NEON FMA (estimate)
    cpu_parallel_fraction: float = 0.85  # Amdahl (estimate)
    cpu_overhead_ratio: float = 0.5  # CPU per-layer overhead vs GPU dispatch (estimate)
    oversubscription_penalty: float = 0.10  # per extra thread per core (estimate)
    # --- power (W) ---------------------------------------------------------------------------
    cpu_core_dynamic_w: float = 1.20  # one busy core at 1907.2 MHz / 1.05 V (estimate)
    gpu_dynamic_w: float = 5.00  # busy GPU at 1109.25 MHz / 1.00 V (estimate)
    idle_clock_fraction_cpu: float = 0.05  # clocked idle core (WFI) vs busy (estimate)
    idle_clock_fraction_gpu: float = 0.08  # clocked idle GPU vs busy (estimate)
    cpu_static_w: float = 0.25  # cluster leakage at 25 degC (estimate)
    cpu_static_per_core_w: float = 0.04  # per online core (estimate)
    gpu_static_w: float = 0.35  # GPU not rail-gated, 25 degC (estimate)
    soc_static_w: float = 1.10  # VDD_SOC floor (estimate)
    module_base_w: float = 1.50  # rest of VDD_IN: DRAM background, IO, regulators (estimate)
    dram_pj_per_byte_soc: float = 15.0  # memory controller share (estimate)
    dram_pj_per_byte_dram: float = 25.0  # LPDDR4x device share (estimate, ~4-6 pJ/bit total)
    leakage_per_c: float = 0.015  # static power growth per degC above 25 (estimate)
    # --- thermal -----------------------------------------------------------------------------
    r_th_c_per_w: float = 3.0  # package + dev-kit heat sink with fan, to ambient (estimate)
    c_th_j_per_c: float = 60.0  # heat sink + module (estimate, tau = 180 s)
    hotspot_cpu_c_per_w: float = 0.8  # CPU-therm above the package per CPU watt (estimate)
    hotspot_gpu_c_per_w: float = 0.8  # GPU-therm above the package per GPU watt (estimate)
    trip_c: float = 97.0  # software throttling trip point (estimate, L4T-like)
    hysteresis_c: float = 3.0  # (estimate)
    throttle_period_s: float = 1.0  # step-wise passive polling period (estimate)
    # --- governors ---------------------------------------------------------------------------
    # re-evaluation period: schedutil's rate_limit_us, 10 ms at most (estimate)
    governor_period_s: float = 0.01
    schedutil_margin: float = SCHEDUTIL_MARGIN  # Linux schedutil (platform.base.schedutil_khz)
    util_window_s: float = 0.5  # telemetry utilisation window
    # --- battery -----------------------------------------------------------------------------
    battery_cells: int = 4  # 4S Li-ion pack (estimate for a small robot)
    battery_capacity_wh: float = 72.0  # 4S x 5 Ah x 3.6 V (estimate)
    battery_r_internal_ohm: float = 0.12  # pack (estimate)
    converter_efficiency: float = 0.90  # battery -> module DC-DC (estimate)
    # --- integration -------------------------------------------------------------------------
    step_s: float = 0.05  # longest integration step

    # ------------------------------------------------------------------------ voltage / power
    def cpu_voltage(self, khz: int) -> float:
        return _volt(khz, _CPU_KNEE, self.cpu_frequencies_khz[-1], _CPU_V_MIN, _CPU_V_MAX)

    def gpu_voltage(self, khz: int) -> float:
        return _volt(khz, _GPU_KNEE, self.gpu_frequencies_khz[-1], _GPU_V_MIN, _GPU_V_MAX)

    def cpu_core_power_w(self, khz: int) -> float:
        """Dynamic power of one busy core at ``khz``."""
        f_max = self.cpu_frequencies_khz[-1]
        return self.cpu_core_dynamic_w * (khz / f_max) * (self.cpu_voltage(khz) / _CPU_V_MAX) ** 2

    def gpu_busy_power_w(self, khz: int) -> float:
        """Dynamic power of the busy GPU at ``khz``."""
        f_max = self.gpu_frequencies_khz[-1]
        return self.gpu_dynamic_w * (khz / f_max) * (self.gpu_voltage(khz) / _GPU_V_MAX) ** 2

    # ------------------------------------------------------------------------------ latency
    def costs(self, workload: Workload) -> RuntimeCosts:
        try:
            return self.runtimes[workload.runtime]
        except KeyError:
            raise PlatformError(
                f"workload {workload.name!r}: runtime {workload.runtime!r} has no cost model "
                f"(one of: {', '.join(self.runtimes)})"
            ) from None

    def memory_bytes(self, workload: Workload) -> float:
        acts = workload.activations
        per_macs = workload.macs / self.activation_macs_ratio
        return self.bytes_per_element * (workload.params + (per_macs if acts is None else acts))

    def dram_bytes_per_s(self) -> float:
        return nx.DRAM_PEAK_GBPS * 1e9 * self.dram_efficiency

    def cpu_speed(self, threads: int, cores_online: int, cpu_share: float) -> float:
        """Cores' worth ``threads`` threads get when other programs take ``cpu_share`` of every
        online core's time (uniform time sharing)."""
        return min(threads, cores_online) * max(1e-3, 1.0 - cpu_share)

    def gpu_latency(
        self,
        workload: Workload,
        gpu_khz: int,
        cpu_khz: int,
        gpu_share: float = 0.0,
        cpu_share: float = 0.0,
        *,
        cores_online: int | None = None,
    ) -> LatencyParts:
        """One inference on the GPU: see the module docstring. ``gpu_share`` / ``cpu_share``:
        fraction of the GPU's / of every CPU core's time other programs take."""
        c = self.costs(workload)
        cores = self.cpu_cores if cores_online is None else cores_online
        f_ref = self.reference_cpu_khz
        kernels = self.kernels_per_layer * workload.layers
        host = (c.host_fixed_ms + c.host_per_layer_ms * workload.layers) * (f_ref / cpu_khz)
        host /= self.cpu_speed(1, cores, cpu_share)  # the one host thread
        f_hz = gpu_khz * 1e3
        launch_floor = kernels * self.gpu_kernel_cycles / f_hz * 1e3
        compute = workload.macs / (self.gpu_macs_per_cycle * self.gpu_efficiency * f_hz) * 1e3
        mem_bytes = self.memory_bytes(workload)
        memory = mem_bytes / self.dram_bytes_per_s() * 1e3
        device = (launch_floor + compute + memory) / max(1e-3, 1.0 - gpu_share)
        p = self.overlap_p
        wait = kernels * gpu_share * self.gpu_wait_per_kernel_ms
        total = (host**p + device**p) ** (1.0 / p) + wait
        return LatencyParts(
            total_ms=total,
            cpu_busy_cores=min(1.0, host / total),
            gpu_busy=min(1.0, device * (1.0 - gpu_share) / total),
            memory_bytes=mem_bytes,
            host_ms=host,
            device_ms=device,
        )

    def cpu_latency(
        self,
        workload: Workload,
        cpu_khz: int,
        threads: int,
        cores_online: int,
        cpu_share: float = 0.0,
    ) -> LatencyParts:
        """One inference on the CPU with ``threads`` intra-op threads; ``cpu_share``: fraction
        of every core's time other programs take."""
        c = self.costs(workload)
        f_ref = self.reference_cpu_khz
        serial = c.host_fixed_ms + self.cpu_overhead_ratio * c.host_per_layer_ms * workload.layers
        serial *= (f_ref / cpu_khz) / self.cpu_speed(1, cores_online, cpu_share)
        used = min(threads, cores_online)
        n_eff = self.cpu_speed(threads, cores_online, cpu_share)
        pf = self.cpu_parallel_fraction
        speedup = 1.0 / ((1.0 - pf) + pf / n_eff)
        if n_eff < 1.0:
            speedup = n_eff  # less than one core: plain time sharing
        over = max(0, threads - cores_online)
        rate = self.cpu_macs_per_cycle * c.cpu_efficiency * cpu_khz * 1e3  # MAC/s, one core
        compute = workload.macs / (rate * speedup) * 1e3
        compute *= 1.0 + self.oversubscription_penalty * over
        mem_bytes = self.memory_bytes(workload)
        memory = mem_bytes / self.dram_bytes_per_s() * 1e3
        total = serial + compute + memory
        busy = (serial + memory + compute * used) / total
        return LatencyParts(
            total_ms=total,
            cpu_busy_cores=busy,
            gpu_busy=0.0,
            memory_bytes=mem_bytes,
            host_ms=serial,
            device_ms=compute,
        )

    def latency(
        self,
        workload: Workload,
        processor: str,
        *,
        threads: int,
        khz: tuple[int, int],
        cores_online: int,
        shares: tuple[float, float],
    ) -> LatencyParts:
        """One inference on ``processor`` at ``khz`` (CPU, GPU) while others take ``shares``
        (CPU, GPU; capped at ``SHARE_MAX``): the rule both the board and the oracle's costs
        apply."""
        cpu_khz, gpu_khz = khz
        cpu = min(SHARE_MAX, shares[0])
        if processor == GPU:
            gpu = min(SHARE_MAX, shares[1])
            return self.gpu_latency(workload, gpu_khz, cpu_khz, gpu, cpu, cores_online=cores_online)
        return self.cpu_latency(workload, cpu_khz, threads, cores_online, cpu)


@dataclass(frozen=True)
class LatencyParts:
    total_ms: float
    cpu_busy_cores: float  # average busy cores over the frame (this workload only)
    gpu_busy: float  # average GPU busy fraction over the frame (this workload only)
    memory_bytes: float
    host_ms: float  # serial host / framework part
    device_ms: float  # GPU device part, or CPU parallel compute part


@dataclass(frozen=True)
class FrameRequest:
    """One inference to run: ``threads`` is the CPU intra-op thread count (ignored on the GPU,
    whose host side is one thread). ``None``: all online cores."""

    workload: Workload
    processor: str
    threads: int | None = None


@dataclass(frozen=True)
class FrameResult:
    workload: str
    processor: str
    threads: int
    start_s: float
    end_s: float
    latency_ms: float
    energy_j: float  # module (VDD_IN) energy over [start_s, end_s]
    frequency_khz: int  # the processor's effective frequency at the start
    cpu_frequency_khz: int  # the CPU's effective frequency at the start (GPU host side)
    throttled: bool


@dataclass(frozen=True)
class CoRunner:
    """Another program on a processor: it takes ``share`` of its time (GPU: time slices; CPU:
    that fraction of every online core's time -- a program keeping every core busy at equal
    priority is ~0.5 under CFS, more means a higher priority) and adds ``memory_gbps`` of DRAM
    traffic."""

    name: str
    processor: str
    share: float
    memory_gbps: float = 0.0


@dataclass
class _Unit:
    name: str
    table: tuple[int, ...]
    governor: str
    min_khz: int
    max_khz: int
    cur_khz: int
    mode_cap_khz: int
    thermal_cap_khz: int

    def cap(self) -> int:
        return min(self.mode_cap_khz, self.thermal_cap_khz)

    def effective(self, wanted: int) -> int:
        lo = min(self.min_khz, self.cap())
        hi = min(self.max_khz, self.cap())
        return max(lo, min(hi, wanted))


def frame_shares(gpu_busy: float, cpu_busy_cores: float, cores: int) -> tuple[float, float]:
    """What other frames' activity takes from a frame, as co-runner shares (GPU, CPU): the
    board's contention rule, which the oracle's bound applies too."""
    return min(FRAME_SHARE_MAX, gpu_busy), min(FRAME_SHARE_MAX, cpu_busy_cores / cores)


@dataclass(frozen=True)
class _Activity:
    cpu_busy_cores: float = 0.0
    gpu_busy: float = 0.0
    bytes_per_s: float = 0.0

    def __add__(self, other: _Activity) -> _Activity:
        return _Activity(
            self.cpu_busy_cores + other.cpu_busy_cores,
            self.gpu_busy + other.gpu_busy,
            self.bytes_per_s + other.bytes_per_s,
        )


class SimulatedXavierNX(Platform):
    """A simulated Xavier NX (see the module docstring). Deterministic for a seed."""

    name = "sim-xavier-nx"

    def __init__(
        self,
        seed: int = 0,
        *,
        model: NXModel | None = None,
        ambient_c: float = 25.0,
        state_of_charge: float = 1.0,
        base_load_w: float = 0.0,
        latency_jitter: float = 0.02,
        power_mode: int = nx.DEFAULT_POWER_MODE,
        start_temperature_c: float | None = None,
    ) -> None:
        self.model = model or NXModel()
        m = self.model
        self._rng = random.Random(seed)
        self.seed = seed
        self.latency_jitter = float(latency_jitter)
        self.now_s = 0.0
        self.ambient_c = float(ambient_c)
        self.r_th_c_per_w = m.r_th_c_per_w
        self.package_c = self.ambient_c if start_temperature_c is None else start_temperature_c
        self.state_of_charge = _check_soc(state_of_charge)
        self.base_load_w = float(base_load_w)
        self.energy_j = 0.0  # module (VDD_IN) energy since construction
        self.battery_energy_j = 0.0  # drawn from the battery since construction
        self._corunners: dict[str, CoRunner] = {}
        self._units = {
            CPU: _Unit(
                CPU,
                m.cpu_frequencies_khz,
                "schedutil",
                m.cpu_frequencies_khz[0],
                m.cpu_frequencies_khz[-1],
                m.cpu_frequencies_khz[0],
                m.cpu_frequencies_khz[-1],
                m.cpu_frequencies_khz[-1],
            ),
            GPU: _Unit(
                GPU,
                m.gpu_frequencies_khz,
                "nvhost_podgov",
                m.gpu_frequencies_khz[0],
                m.gpu_frequencies_khz[-1],
                m.gpu_frequencies_khz[0],
                m.gpu_frequencies_khz[-1],
                m.gpu_frequencies_khz[-1],
            ),
        }
        self.cores_online = m.cpu_cores
        self.power_mode = power_mode
        self._set_power_mode(power_mode)
        # last-instant readings and accumulators
        self._history: deque[tuple[float, float, float, float, float]] = deque()
        self._gov_acc = [0.0, 0.0, 0.0, 0.0]  # dt, cpu busy core-s, cpu max-core s, gpu busy s
        self._pelt = 0.0  # CPU schedutil's utilisation (see _record)
        self._next_governor_s = m.governor_period_s
        self._next_throttle_s = m.throttle_period_s
        self._last_power = self._power(_Activity())[0]
        # events stamped ahead of the inputs so far (:meth:`at`): (time, arrival order, action)
        self._pending: list[tuple[float, int, Event]] = []
        self._input_s = 0.0  # the latest stamp the board was asked to move to
        self._before: SimulatedXavierNX | None = None  # the state before that input
        self._arrivals = 0
        # the frames' own activity over the recent past, (from, to, activity): a frame stamped
        # before the clock (another model's frame moved it on) shares that span with them
        self._frames_past: deque[tuple[float, float, _Activity]] = deque()

    # ================================================================ Platform interface
    def processors(self) -> tuple[Processor, ...]:
        m = self.model
        return (
            Processor(CPU, ProcessorKind.CPU, m.cpu_cores, m.cpu_frequencies_khz),
            Processor(GPU, ProcessorKind.GPU, nx.GPU_CUDA_CORES, m.gpu_frequencies_khz),
        )

    def capabilities(self) -> Capabilities:
        return Capabilities(
            frequency=frozenset({CPU, GPU}),
            governor=frozenset({CPU, GPU}),
            cores_online=True,
            power_modes={i: pm.name for i, pm in nx.POWER_MODES.items()},
        )

    def telemetry(self) -> Telemetry:
        cpu, gpu = self._units[CPU], self._units[GPU]
        util = self._utilisation()
        p = self._last_power
        temps = self._temperatures(p)
        return Telemetry(
            stamp_s=self.now_s,
            processors={
                CPU: ProcessorTelemetry(
                    cpu.cur_khz, util[0], self.cores_online, cpu.governor, utilisation_max=util[1]
                ),
                GPU: ProcessorTelemetry(
                    gpu.cur_khz, util[2], None, gpu.governor, utilisation_max=util[2]
                ),
            },
            temperatures_c=temps,
            power_w=dict(p),
            total_power_w=p[nx.RAIL_TOTAL],
            energy_j=self.energy_j,
            battery=self._battery_telemetry(p[nx.RAIL_TOTAL]),
            power_mode=self.power_mode,
            throttled=self.throttled,
        )

    def apply(self, setting: Setting) -> None:
        """Validate the whole setting, then apply it (power mode first). Nothing changes when
        any part is invalid."""
        for proc, khz in setting.frequencies_khz.items():
            self.processor(proc).check_frequency(int(khz))
        for proc in setting.unpin:
            self.processor(proc)
        for proc, gov in setting.governors.items():
            self.processor(proc)
            allowed = nx.CPU_GOVERNORS if proc == CPU else nx.GPU_GOVERNORS
            if gov not in allowed:
                raise PlatformError(
                    f"{proc} governor {gov!r} is not available (one of: {', '.join(allowed)})"
                )
        if setting.power_mode is not None and setting.power_mode not in nx.POWER_MODES:
            raise PlatformError(
                f"power mode {setting.power_mode} does not exist on the Xavier NX "
                f"(one of: {', '.join(str(i) for i in nx.POWER_MODES)})"
            )
        if (
            setting.cores_online is not None
            and not 1 <= setting.cores_online <= self.model.cpu_cores
        ):
            raise PlatformError(
                f"cores_online {setting.cores_online} is outside 1..{self.model.cpu_cores}"
            )
        if setting.power_mode is not None:
            self._set_power_mode(setting.power_mode)
        for proc, gov in setting.governors.items():
            self._units[proc].governor = gov
        for proc in setting.unpin:
            u = self._units[proc]
            u.min_khz, u.max_khz = u.table[0], u.table[-1]
        for proc, khz in setting.frequencies_khz.items():
            u = self._units[proc]
            u.min_khz = u.max_khz = int(khz)
        if setting.cores_online is not None:
            self.cores_online = setting.cores_online
        for u in self._units.values():
            u.cur_khz = u.effective(self._governor_choice(u, None))

    # ================================================================ simulation interface
    @property
    def throttled(self) -> bool:
        return any(u.thermal_cap_khz < u.table[-1] for u in self._units.values())

    def frequency_khz(self, processor: str) -> int:
        """The processor's effective frequency now."""
        return self._unit(processor).cur_khz

    def frequency_cap_khz(self, processor: str) -> int:
        """The lower of the power-mode cap and the thermal cap now."""
        return self._unit(processor).cap()

    def thermal_cap_khz(self, processor: str) -> int:
        return self._unit(processor).thermal_cap_khz

    @property
    def corunners(self) -> Mapping[str, CoRunner]:
        return dict(self._corunners)

    def start_corunner(
        self, name: str, processor: str, share: float, memory_gbps: float = 0.0
    ) -> CoRunner:
        """Start another program taking ``share`` (0 < share < 1) of ``processor``."""
        self._unit(processor)
        if not 0.0 < share < 1.0 or not math.isfinite(share):
            raise PlatformError(f"co-runner {name!r}: share {share} must be in (0, 1)")
        if name in self._corunners:
            raise PlatformError(f"co-runner {name!r} is already running")
        c = CoRunner(name, processor, float(share), float(memory_gbps))
        self._corunners[name] = c
        return c

    def stop_corunner(self, name: str) -> None:
        if self._corunners.pop(name, None) is None:
            raise PlatformError(
                f"no co-runner {name!r} (running: {', '.join(self._corunners) or 'none'})"
            )

    def set_corunner(
        self, name: str, processor: str, share: float, memory_gbps: float = 0.0
    ) -> None:
        """A scenario's co-runner event: ``name`` now takes ``share`` of ``processor`` (a running
        one is replaced), or stops with ``share == 0``."""
        if name in self._corunners:
            self.stop_corunner(name)
        if share > 0.0:
            self.start_corunner(name, processor, share, memory_gbps)

    def set_ambient(self, celsius: float) -> None:
        if not math.isfinite(celsius):
            raise PlatformError(f"ambient temperature {celsius} is not a number")
        self.ambient_c = float(celsius)

    def set_thermal_resistance(self, c_per_w: float) -> None:
        """Change the cooling (e.g. fan stopped: a higher resistance)."""
        if not c_per_w > 0:
            raise PlatformError(f"thermal resistance {c_per_w} must be > 0 degC/W")
        self.r_th_c_per_w = float(c_per_w)

    def set_state_of_charge(self, soc: float) -> None:
        self.state_of_charge = _check_soc(soc)

    def set_base_load(self, watts: float) -> None:
        """Power the rest of the robot draws from the same battery."""
        if not watts >= 0:
            raise PlatformError(f"base load {watts} W must be >= 0")
        self.base_load_w = float(watts)

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass with no inference (co-runners keep running)."""
        if seconds < 0 or not math.isfinite(seconds):
            raise PlatformError(f"cannot advance by {seconds} s")
        self.advance_to(self.now_s + seconds)

    def advance_to(self, t_s: float) -> None:
        """Move the clock to ``t_s`` (never backwards), applying the events due on the way. An
        input stamped ``t_s`` (a frame) has arrived: events stamped later wait for theirs."""
        if t_s > self._input_s:
            # the state before this input, for a reading stamped between the two (its timer
            # may fire after the input arrived: see telemetry_at)
            self._before = self._fork()
            self._input_s = t_s
        self._run_to(t_s, inclusive=True)

    def _run_to(self, t_s: float, *, inclusive: bool) -> None:
        """Integrate to ``t_s``, applying the pending events stamped before it (and at it when
        ``inclusive``: an input stamped ``t_s`` sees the events of its own time)."""
        while self._pending and (
            self._pending[0][0] < t_s or (inclusive and self._pending[0][0] == t_s)
        ):
            at_s, _, action = heapq.heappop(self._pending)
            if at_s > self.now_s:
                self._integrate(at_s - self.now_s, _Activity())
            action(self)
        if t_s > self.now_s:
            self._integrate(t_s - self.now_s, _Activity())

    def at(self, t_s: float, action: Event) -> None:
        """Apply ``action`` (e.g. ``lambda b: b.set_ambient(30.0)``) at simulated time ``t_s``:
        now when an input stamped later was handled, else when the clock gets there (or at
        once after, when a frame still runs). Inputs stamped by
        time may reach a board in another order than their stamps (a scenario's event over one
        topic, the frame just before it over another, after inference); held until due, each
        takes effect in stamp order. Raises :class:`PlatformError` at once, changing nothing,
        when the action would fail."""
        action(self._fork())  # validate: a bad event must not stop a half-applied one later
        if t_s <= self._input_s:  # an input stamped later was handled: too late to wait
            action(self)
            return
        self._arrivals += 1
        heapq.heappush(self._pending, (float(t_s), self._arrivals, action))

    def telemetry_at(self, t_s: float) -> Telemetry:
        """The telemetry the board would report at ``t_s``. Reading is not an event: a frame
        stamped before ``t_s`` may still be on its way (a node's timer reads at ``t_s`` while
        that frame is being classified), so the clock only moves to ``t_s - REORDER_WINDOW_S``
        and the rest is looked ahead on a copy."""
        self.advance_to(t_s - REORDER_WINDOW_S)
        board = self
        if t_s <= self._input_s and self._before is not None:
            board = self._before  # an input stamped at or after t_s was handled first
        if t_s <= board.now_s and not (board._pending and board._pending[0][0] < t_s):
            return board.telemetry()
        twin = board._fork()
        twin._run_to(t_s, inclusive=False)  # a timer reads before the messages of its time
        return twin.telemetry()

    def _fork(self) -> SimulatedXavierNX:
        """A copy of the board's state (sharing its immutable model) to look ahead on."""
        twin = copy.copy(self)
        twin._rng = copy.copy(self._rng)
        twin._units = {k: replace(u) for k, u in self._units.items()}
        twin._corunners = dict(self._corunners)
        twin._history = deque(self._history)
        twin._frames_past = deque(self._frames_past)
        twin._gov_acc = list(self._gov_acc)
        twin._last_power = dict(self._last_power)
        twin._pending = list(self._pending)
        twin._before = None
        return twin

    def run_frame(
        self,
        workload: Workload,
        processor: str,
        threads: int | None = None,
        *,
        start_s: float | None = None,
    ) -> FrameResult:
        """Run one inference that arrived at ``start_s`` (default: now); the clock moves to its
        end. Returns latency and energy (see :meth:`run_concurrent` for an earlier start)."""
        return self.run_concurrent([FrameRequest(workload, processor, threads)], start_s=start_s)[0]

    def run_concurrent(
        self, requests: Sequence[FrameRequest], *, start_s: float | None = None
    ) -> list[FrameResult]:
        """Start several inferences together (e.g. two models); each sees the others as
        contention. The clock moves to the end of the longest; results in request order.

        ``start_s`` before the clock: the frames arrived while the board was running frames
        that were costed first (another model's, moving the clock on). Over that span they get
        what those frames left of the processors, as if they were co-runners of their measured
        activity; their latency counts from ``start_s``. The earlier frames keep the latency they
        were given: first come, first served, so the board's clock never runs ahead of the
        frames' stamps when two models together ask more than a processor has."""
        if not requests:
            return []
        start = self.now_s
        progress = [0.0] * len(requests)
        e_past = [0.0] * len(requests)
        ends_past: list[float | None] = [None] * len(requests)
        jitter_past: list[float] | None = None
        if start_s is not None and start - FRAMES_PAST_S <= start_s < start - 1e-9:
            jitter_past = [self._jitter() for _ in requests]
            self._run_past(
                requests, start_s, progress=progress, energy=e_past, ends=ends_past,
                jitter=jitter_past,
            )  # fmt: skip
            start = start_s
        cpu_f, gpu_f = self._units[CPU].cur_khz, self._units[GPU].cur_khz
        throttled = self.throttled
        threads = [self._threads(r) for r in requests]
        alone = [
            self._latency(r.workload, r.processor, t, 0.0, 0.0)
            for r, t in zip(requests, threads, strict=True)
        ]
        # contention: the other frames' shares, as they would run alone, for the whole frame
        extras = [
            frame_shares(
                sum(a.gpu_busy for j, a in enumerate(alone) if j != i),
                sum(a.cpu_busy_cores for j, a in enumerate(alone) if j != i),
                self.cores_online,
            )
            for i in range(len(requests))
        ]

        def latency(i: int) -> LatencyParts:
            r = requests[i]
            return self._latency(r.workload, r.processor, threads[i], *extras[i])

        parts = {i: latency(i) for i in range(len(requests))}
        jitter = jitter_past or [self._jitter() for _ in requests]
        # Each frame progresses at the rate its latency at the current frequencies allows: a
        # governor or the thermal cap changing a clock mid-frame changes the rest of the frame
        # (a frame started at the lowest clock speeds up as schedutil ramps, as on the board).
        ends: list[float] = [0.0] * len(requests)
        energy_at_end: list[float] = [0.0] * len(requests)
        e_start = self.energy_j
        active = []
        for i, end_past in enumerate(ends_past):
            if end_past is None:
                active.append(i)
            else:  # done within the span it shared with earlier frames
                ends[i], energy_at_end[i] = end_past - start, e_past[i]
        t_run = self.now_s
        while active:
            secs = {i: parts[i].total_ms * jitter[i] / 1e3 for i in active}
            dt = min((1.0 - progress[i]) * secs[i] for i in active)
            tick = min(self._next_governor_s, self._next_throttle_s) - self.now_s
            dt = min(dt, max(tick, 1e-9))  # a tick due now runs in _integrate's first step
            act = _Activity()
            for i in active:
                act = act + _Activity(
                    parts[i].cpu_busy_cores, parts[i].gpu_busy, parts[i].memory_bytes / secs[i]
                )
            self._integrate(dt, act)
            self._note_frames(t_run, self.now_s, act)
            t_run = self.now_s
            for i in list(active):
                progress[i] += dt / secs[i]
                if progress[i] >= 1.0 - 1e-9:
                    ends[i] = self.now_s - start
                    energy_at_end[i] = self.energy_j - e_start + e_past[i]
                    active.remove(i)
            for i in active:  # the clocks may have moved at the tick: the rest runs at them
                parts[i] = latency(i)
        lat_ms = [e * 1e3 for e in ends]
        results = []
        for i, r in enumerate(requests):
            end, energy = ends[i], energy_at_end[i]
            results.append(
                FrameResult(
                    workload=r.workload.name,
                    processor=r.processor,
                    threads=threads[i],
                    start_s=start,
                    end_s=start + end,
                    latency_ms=lat_ms[i],
                    energy_j=energy,
                    frequency_khz=cpu_f if r.processor == CPU else gpu_f,
                    cpu_frequency_khz=cpu_f,
                    throttled=throttled,
                )
            )
        return results

    def _note_frames(self, t0: float, t1: float, act: _Activity) -> None:
        """Keep the frames' activity over [t0, t1] for frames stamped before the clock."""
        past = self._frames_past
        if past and past[-1][1] == t0 and past[-1][2] == act:
            past[-1] = (past[-1][0], t1, act)
        else:
            past.append((t0, t1, act))
        while past and past[0][1] < t1 - FRAMES_PAST_S:
            past.popleft()

    def _run_past(
        self,
        requests: Sequence[FrameRequest],
        start_s: float,
        *,
        progress: list[float],
        energy: list[float],
        ends: list[float | None],
        jitter: Sequence[float],
    ) -> None:
        """Progress frames that arrived at ``start_s`` through [start_s, now], where the frames
        costed before them ran: each gets what those left (their activity as co-runner shares;
        at today's clocks and co-runners, which a span this short rarely sees change). The
        energy, battery and governor load they add there is charged now."""
        now = self.now_s
        spans = [(max(a, start_s), min(b, now), act) for a, b, act in self._frames_past]
        spans = [x for x in spans if x[1] > x[0]]
        cuts = sorted({start_s, now, *(a for a, _, _ in spans), *(b for _, b, _ in spans)})
        m = self.model
        for a, b in itertools.pairwise(cuts):
            if a < start_s or b > now:
                continue
            past = _Activity()
            for x0, x1, act in spans:
                if x0 <= a and b <= x1:
                    past = past + act
            p_past = self._power(past)[0][nx.RAIL_TOTAL]
            for i, r in enumerate(requests):
                if ends[i] is not None:
                    continue
                parts = self._latency(
                    r.workload,
                    r.processor,
                    self._threads(r),
                    *frame_shares(past.gpu_busy, past.cpu_busy_cores, self.cores_online),
                )
                secs = parts.total_ms * jitter[i] / 1e3
                dt = min(b - a, (1.0 - progress[i]) * secs)
                progress[i] += dt / secs
                if progress[i] >= 1.0 - 1e-9:
                    ends[i] = a + dt
                mine = _Activity(parts.cpu_busy_cores, parts.gpu_busy, parts.memory_bytes / secs)
                extra_w = self._power(past + mine)[0][nx.RAIL_TOTAL] - p_past
                energy[i] += extra_w * dt
                self._drain(extra_w * dt, extra_w / m.converter_efficiency * dt)
                self._gov_acc[1] += dt * parts.cpu_busy_cores / max(1, self.cores_online)
                self._gov_acc[3] += dt * min(parts.gpu_busy, max(0.0, 1.0 - past.gpu_busy))
                self._frames_past.append((a, a + dt, mine))

    def reference_latency_ms(
        self,
        workload: Workload,
        processor: str,
        frequency_khz: int | None = None,
        threads: int | None = None,
        *,
        cpu_frequency_khz: int | None = None,
        cores_online: int | None = None,
    ) -> float:
        """Noise-free latency at nominal conditions (no co-runner, no throttling): what a
        profiler would measure on an idle board with the frequency pinned. GPU runs assume the
        CPU at ``cpu_frequency_khz`` for the host side (default: 1420.8 MHz, the default power
        mode's cap, where the published family was calibrated)."""
        return reference_latency_ms(
            workload,
            processor,
            frequency_khz,
            threads,
            cpu_frequency_khz=cpu_frequency_khz,
            cores_online=cores_online,
            model=self.model,
        )

    def latency_table(
        self, workload: Workload, processor: str, threads: int | None = None
    ) -> dict[int, float]:
        """``{frequency_khz: reference latency ms}`` for every step of the processor's table."""
        table = self.processor(processor).frequencies_khz
        return {f: self.reference_latency_ms(workload, processor, f, threads) for f in table}

    # ================================================================ internals
    def _unit(self, processor: str) -> _Unit:
        try:
            return self._units[processor]
        except KeyError:
            raise PlatformError(
                f"processor {processor!r} is not on platform {self.name} (one of: cpu, cuda)"
            ) from None

    def _threads(self, r: FrameRequest) -> int:
        self._unit(r.processor)
        if r.processor == GPU:
            return 1
        if r.threads is None:
            return self.cores_online
        if r.threads < 1:
            raise PlatformError(f"threads must be >= 1, got {r.threads}")
        return int(r.threads)

    def _corunner_share(self, processor: str) -> float:
        share = sum(c.share for c in self._corunners.values() if c.processor == processor)
        return min(SHARE_MAX, share)

    def _latency(
        self, w: Workload, processor: str, threads: int, gpu_extra: float, cpu_extra: float
    ) -> LatencyParts:
        return self.model.latency(
            w, processor, threads=threads,
            khz=(self._units[CPU].cur_khz, self._units[GPU].cur_khz),
            cores_online=self.cores_online,
            shares=(self._corunner_share(CPU) + cpu_extra, self._corunner_share(GPU) + gpu_extra),
        )  # fmt: skip

    def _jitter(self) -> float:
        if self.latency_jitter <= 0:
            return 1.0
        return math.exp(self._rng.gauss(0.0, self.latency_jitter))

    def _set_power_mode(self, mode_id: int) -> None:
        pm = nx.POWER_MODES[mode_id]
        self.power_mode = mode_id
        self.cores_online = pm.cpu_online
        self._units[CPU].mode_cap_khz = nx.nearest_at_most(
            self.model.cpu_frequencies_khz, pm.cpu_max_khz
        )
        self._units[GPU].mode_cap_khz = nx.nearest_at_most(
            self.model.gpu_frequencies_khz, pm.gpu_max_khz
        )
        for u in self._units.values():
            u.cur_khz = u.effective(u.cur_khz)

    # ------------------------------------------------------------------------------ power
    def _corunner_activity(self) -> _Activity:
        act = _Activity()
        for c in self._corunners.values():
            if c.processor == GPU:
                act = act + _Activity(0.0, c.share, c.memory_gbps * 1e9)
            else:
                act = act + _Activity(c.share * self.cores_online, 0.0, c.memory_gbps * 1e9)
        return act

    def _power(self, act: _Activity) -> tuple[dict[str, float], _Activity]:
        """Rail powers for an activity (co-runners added) at the current state."""
        m = self.model
        total = act + self._corunner_activity()
        busy_cores = min(float(self.cores_online), total.cpu_busy_cores)
        gpu_busy = min(1.0, total.gpu_busy)
        leak = 1.0 + m.leakage_per_c * (self.package_c - 25.0)
        leak = max(0.5, leak)
        f_cpu, f_gpu = self._units[CPU].cur_khz, self._units[GPU].cur_khz
        core_w = m.cpu_core_power_w(f_cpu)
        idle_cores = self.cores_online - busy_cores
        cpu_w = core_w * (busy_cores + m.idle_clock_fraction_cpu * idle_cores)
        cpu_w += leak * (m.cpu_static_w + m.cpu_static_per_core_w * self.cores_online)
        gpu_dyn = m.gpu_busy_power_w(f_gpu)
        gpu_w = gpu_dyn * (gpu_busy + m.idle_clock_fraction_gpu * (1.0 - gpu_busy))
        gpu_w += leak * m.gpu_static_w
        bps = min(total.bytes_per_s, m.dram_bytes_per_s())
        soc_w = leak * m.soc_static_w + bps * m.dram_pj_per_byte_soc * 1e-12
        rest_w = m.module_base_w + bps * m.dram_pj_per_byte_dram * 1e-12
        cpu_gpu = cpu_w + gpu_w
        rails = {
            nx.RAIL_TOTAL: cpu_gpu + soc_w + rest_w,
            nx.RAIL_CPU_GPU: cpu_gpu,
            nx.RAIL_SOC: soc_w,
            "sim:cpu": cpu_w,
            "sim:gpu": gpu_w,
        }
        return rails, _Activity(busy_cores, gpu_busy, bps)

    def _temperatures(self, rails: Mapping[str, float]) -> dict[str, float]:
        m = self.model
        pkg = self.package_c
        return {
            nx.ZONE_CPU: pkg + m.hotspot_cpu_c_per_w * rails["sim:cpu"],
            nx.ZONE_GPU: pkg + m.hotspot_gpu_c_per_w * rails["sim:gpu"],
            nx.ZONE_AUX: pkg,
        }

    def _battery_telemetry(self, module_w: float) -> BatteryTelemetry:
        m = self.model
        ocv = m.battery_cells * _interp(CELL_OCV_TABLE, self.state_of_charge)
        current = _battery_current(ocv, m.battery_r_internal_ohm, self._battery_power(module_w))
        return BatteryTelemetry(
            state_of_charge=self.state_of_charge,
            voltage_v=ocv - current * m.battery_r_internal_ohm,
            current_a=-current,
            capacity_wh=m.battery_capacity_wh,
        )

    def _battery_power(self, module_w: float) -> float:
        return module_w / self.model.converter_efficiency + self.base_load_w

    def _drain(self, module_j: float, battery_j: float) -> None:
        """Charge energy the module used (``VDD_IN``) and what it took from the battery."""
        self.energy_j += module_j
        self.battery_energy_j += battery_j
        self.state_of_charge = max(
            0.0, self.state_of_charge - battery_j / (self.model.battery_capacity_wh * 3600.0)
        )

    # -------------------------------------------------------------------------- integration
    def _integrate(self, seconds: float, act: _Activity) -> None:
        m = self.model
        remaining = seconds
        while remaining > 1e-12:
            dt = min(
                remaining,
                m.step_s,
                max(1e-9, self._next_governor_s - self.now_s),
                max(1e-9, self._next_throttle_s - self.now_s),
            )
            rails, eff = self._power(act)
            p = rails[nx.RAIL_TOTAL]
            self._drain(p * dt, self._battery_power(p) * dt)
            # exact RC step for constant power over dt
            t_ss = self.ambient_c + p * self.r_th_c_per_w
            tau = self.r_th_c_per_w * m.c_th_j_per_c
            self.package_c = t_ss + (self.package_c - t_ss) * math.exp(-dt / tau)
            self.now_s += dt
            remaining -= dt
            share = self._corunner_share(CPU)
            max_core = min(1.0, min(1.0, act.cpu_busy_cores) + share)
            self._record(dt, eff.cpu_busy_cores / max(1, self.cores_online), max_core, eff.gpu_busy)
            if self.now_s >= self._next_governor_s - 1e-12:
                self._run_governors()
                self._next_governor_s = self.now_s + m.governor_period_s
            if self.now_s >= self._next_throttle_s - 1e-12:
                self._run_throttle(rails)
                self._next_throttle_s = self.now_s + m.throttle_period_s
        # the power of the last simulated instant (after any frequency change)
        self._last_power = self._power(act)[0]

    def _record(self, dt: float, cpu_util: float, cpu_max: float, gpu_util: float) -> None:
        self._history.append((self.now_s, dt, cpu_util, cpu_max, gpu_util))
        horizon = self.now_s - self.model.util_window_s
        while self._history and self._history[0][0] <= horizon:
            self._history.popleft()
        acc = self._gov_acc
        acc[0] += dt
        acc[1] += dt * cpu_util
        acc[2] += dt * cpu_max
        acc[3] += dt * gpu_util
        # the kernel's PELT: the busiest core's frequency-invariant busy fraction, a geometric
        # average with a 32 ms half-life (what schedutil scales f_max by)
        cpu = self._units[CPU]
        keep = 0.5 ** (dt / PELT_HALF_LIFE_S)
        invariant = cpu_max * cpu.cur_khz / cpu.table[-1]
        self._pelt = self._pelt * keep + invariant * (1.0 - keep)

    def _utilisation(self) -> tuple[float | None, float | None, float | None]:
        total = sum(h[1] for h in self._history)
        if total <= 0:
            return (None, None, None)
        return (
            sum(h[1] * h[2] for h in self._history) / total,
            sum(h[1] * h[3] for h in self._history) / total,
            sum(h[1] * h[4] for h in self._history) / total,
        )

    def _governor_choice(self, u: _Unit, util: float | None) -> int:
        gov = u.governor
        if gov == "performance":
            return u.table[-1]
        if gov == "powersave":
            return u.table[0]
        if gov == "userspace" or util is None:
            return u.cur_khz
        if gov == "ondemand":
            target = u.table[-1] if util > 0.8 else u.table[-1] * util / 0.8
        else:  # schedutil, nvhost_podgov, simple_ondemand: the schedutil rule (estimate)
            return schedutil_khz(u.table, u.cur_khz, util, self.model.schedutil_margin)
        i = bisect.bisect_left(u.table, math.ceil(target))
        return u.table[min(i, len(u.table) - 1)]

    def _run_governors(self) -> None:
        dt, _cpu_busy, cpu_max, gpu_busy = self._gov_acc
        self._gov_acc = [0.0, 0.0, 0.0, 0.0]
        if dt <= 0:
            return
        cpu, gpu = self._units[CPU], self._units[GPU]
        if cpu.governor == "schedutil":
            top = cpu.table[-1]
            cpu.cur_khz = cpu.effective(
                schedutil_khz(cpu.table, top, self._pelt, self.model.schedutil_margin)
            )
        else:
            cpu.cur_khz = cpu.effective(self._governor_choice(cpu, cpu_max / dt))
        gpu.cur_khz = gpu.effective(self._governor_choice(gpu, gpu_busy / dt))

    def _run_throttle(self, rails: Mapping[str, float]) -> None:
        m = self.model
        temps = self._temperatures(rails)
        for unit, zone in ((self._units[CPU], nx.ZONE_CPU), (self._units[GPU], nx.ZONE_GPU)):
            t = temps[zone]
            i = unit.table.index(unit.thermal_cap_khz)
            if t > m.trip_c:
                unit.thermal_cap_khz = unit.table[max(0, i - 1)]
            elif t < m.trip_c - m.hysteresis_c:
                unit.thermal_cap_khz = unit.table[min(len(unit.table) - 1, i + 1)]
            unit.cur_khz = unit.effective(unit.cur_khz)


# ---------------------------------------------------------------------------- module helpers
def reference_latency_ms(
    workload: Workload,
    processor: str,
    frequency_khz: int | None = None,
    threads: int | None = None,
    *,
    cpu_frequency_khz: int | None = None,
    cores_online: int | None = None,
    model: NXModel | None = None,
) -> float:
    """Noise-free NX latency (ms) of ``workload`` on ``processor`` (``"cpu"`` / ``"cuda"``) at
    ``frequency_khz`` (default: top step; must be a table step) with ``threads`` (CPU; default
    all online cores), on an idle board; GPU runs put the host side on the CPU at
    ``cpu_frequency_khz`` (default :attr:`NXModel.reference_cpu_khz`, 1420.8 MHz). The
    profiler's "measured" table on the simulated NX."""
    m = model or NXModel()
    cores = m.cpu_cores if cores_online is None else cores_online
    if processor == GPU:
        table = m.gpu_frequencies_khz
        f = table[-1] if frequency_khz is None else frequency_khz
        _check_in(table, f, GPU)
        f_cpu = m.reference_cpu_khz if cpu_frequency_khz is None else cpu_frequency_khz
        _check_in(m.cpu_frequencies_khz, f_cpu, CPU)
        return m.gpu_latency(workload, f, f_cpu).total_ms
    if processor == CPU:
        table = m.cpu_frequencies_khz
        f = table[-1] if frequency_khz is None else frequency_khz
        _check_in(table, f, CPU)
        t = cores if threads is None else threads
        if t < 1:
            raise PlatformError(f"threads must be >= 1, got {t}")
        return m.cpu_latency(workload, f, t, cores).total_ms
    raise PlatformError(f"processor {processor!r} is not on the simulated NX (one of: cpu, cuda)")


def _check_in(table: tuple[int, ...], khz: int, name: str) -> None:
    kind = ProcessorKind.GPU if name == GPU else ProcessorKind.CPU
    Processor(name, kind, 1, table).check_frequency(int(khz))


def _interp(table: Sequence[tuple[float, float]], x: float) -> float:
    xs = [a for a, _ in table]
    i = bisect.bisect_left(xs, x)
    if i <= 0:
        return table[0][1]
    if i >= len(table):
        return table[-1][1]
    (x0, y0), (x1, y1) = table[i - 1], table[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def _battery_current(ocv: float, r: float, p: float) -> float:
    """Current (A, positive = discharge) drawing ``p`` W at the terminals: V = OCV - I R."""
    disc = ocv * ocv - 4.0 * r * p
    if disc <= 0:  # beyond the pack's maximum power: report the current at that maximum
        return ocv / (2.0 * r)
    return (ocv - math.sqrt(disc)) / (2.0 * r)


def _check_soc(soc: float) -> float:
    if not 0.0 <= soc <= 1.0:
        raise PlatformError(f"state of charge {soc} must be in [0, 1]")
    return float(soc)


__all__ = [
    "CELL_OCV_TABLE",
    "CPU",
    "CPU_VOLTAGE_TABLE",
    "GPU",
    "GPU_VOLTAGE_TABLE",
    "CoRunner",
    "FrameRequest",
    "FrameResult",
    "LatencyParts",
    "NXModel",
    "RuntimeCosts",
    "SimulatedXavierNX",
    "frame_shares",
    "reference_latency_ms",
]
