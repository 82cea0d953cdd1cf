"""One perception model at run time: the engine, the board it runs on, and commands between frames.

This is the ROS-free half of the perception node, shared with the in-process replay so that both
make the same decisions from the same inputs. A :class:`PerceptionSession` owns

* the :class:`~dynofa_ros.engine.Engine` (every family member prepared; a switch is a reference
  swap),
* the frequency / power-mode side of a command, applied through the platform layer only when DVFS
  is allowed,
* a :class:`FrameTimer` that says what a frame cost: measured on this machine
  (:class:`MeasuredTimer`) or on a simulated Xavier NX (:class:`BoardTimer` in-process; the node
  has a service-backed timer that asks ``sim_platform_node``).

A command is validated as a whole before anything changes (:meth:`PerceptionSession.apply`
returns the reason for a rejection and leaves the previous configuration in place).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dynofa_ros.configuration import KEEP, Configuration
from dynofa_ros.errors import DynofaError
from dynofa_ros.platform.base import Platform, PlatformError, ProcessorKind, Setting

if TYPE_CHECKING:
    from dynofa_ros.engine import InferenceResult
    from dynofa_ros.family import Family
    from dynofa_ros.manager.types import Decision
    from dynofa_ros.platform.sim import SimulatedXavierNX
    from dynofa_ros.platform.workload import Workload

CPU = ProcessorKind.CPU.value
GPU = ProcessorKind.GPU.value


class FrameTarget(Protocol):
    """What a session runs frames on: an :class:`~dynofa_ros.engine.Engine`, a
    :class:`~dynofa_ros.engine.recorded.RecordedEngine` (members without a network), or either
    as a simulated board presents it (:class:`SimulatedTarget`)."""

    @property
    def family(self) -> Family: ...
    @property
    def members(self) -> tuple[str, ...]: ...
    @property
    def processors(self) -> tuple[str, ...]: ...
    @property
    def threads(self) -> tuple[int, ...]: ...
    @property
    def active(self) -> tuple[str, str, int]: ...
    def accuracy(self, member_id: str) -> float | None: ...
    def workload(self, member_id: str) -> Workload: ...
    def switch(self, member_id: str, processor: str = CPU, threads: int | None = None) -> None: ...
    def infer_raw(  # noqa: PLR0917 - the fields of sensor_msgs/Image, in order
        self,
        data: Any,
        width: int,
        height: int,
        encoding: str,
        step: int = 0,
        is_bigendian: bool = False,
    ) -> InferenceResult: ...
    def infer_compressed(self, data: Any, fmt: str = "jpeg") -> InferenceResult: ...
    def infer_blank(self) -> InferenceResult: ...
    def close(self) -> None: ...


# one frame's call into a target: one of its ``infer_*`` with the frame's data bound
Inference = Callable[[FrameTarget], "InferenceResult"]


class BoardBusyError(DynofaError):
    """The simulated board was still computing the previous frame when this one arrived."""


# A command waits for the first frame captured after the decision; one stamped further ahead of
# the frames than this is taken as clock skew between machines and applies at once.
COMMAND_SKEW_LIMIT_S = 1.0


def command_due(command_stamp_s: float, frame_stamp_s: float) -> bool:
    """Whether a command decided at ``command_stamp_s`` applies before the frame captured at
    ``frame_stamp_s``: a decision is about the frames after it. One rule for the node and the
    fast replay, so a decision and a frame with the same stamp are ordered the same way in both
    (on a live graph their arrival order is a race). Unstamped commands (0) apply at once."""
    return command_stamp_s < frame_stamp_s or command_stamp_s - frame_stamp_s > COMMAND_SKEW_LIMIT_S


SEQ_MODULUS = 2**64  # seq and epoch are uint64 in ReconfigurationCommand.msg
UINT32_MAX = 2**32 - 1
MAX_LATENCY_TARGET_MS = 3_600_000.0  # an hour: anything above is a bug in the sender


def seq_newer(seq: int, last: int) -> bool:
    """Whether ``seq`` follows ``last`` in serial-number arithmetic (RFC 1982) on 64 bits: a seq
    near 2^64-1 wraps instead of blocking every later command."""
    return 0 < (seq - last) % SEQ_MODULUS < SEQ_MODULUS // 2


def clip(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters for echoes in statuses, diagnostics and logs (a
    hostile 100 kB field must not be copied into every later message)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


@dataclass(frozen=True)
class Command:
    """``msg/ReconfigurationCommand.msg`` without ROS: in ``config`` the empty values mean
    "keep". ``epoch`` names the manager incarnation that sent it (0: sent by hand; see the
    message file for the rules)."""

    seq: int
    target_model: str = ""
    config: Configuration = KEEP
    latency_target_ms: float = 0.0
    reason: str = ""
    epoch: int = 0

    @classmethod
    def of(cls, decision: Decision) -> Command:
        """What the manager's ``decision`` tells its model's session."""
        return cls(
            seq=decision.seq,
            target_model=decision.target_model,
            config=decision.config,
            latency_target_ms=decision.latency_target_ms,
            reason=decision.reason,
            epoch=decision.epoch,
        )

    def same_identity(self, other: Command | None) -> bool:
        return other is not None and (self.epoch, self.seq) == (other.epoch, other.seq)


@dataclass(frozen=True)
class FrameCost:
    """What one frame cost on the board. ``simulated``: latency / energy come from the simulator,
    not from this machine's clock."""

    latency_ms: float
    energy_j: float = 0.0
    power_w: float = 0.0
    cpu_frequency_khz: int = 0
    gpu_frequency_khz: int = 0
    throttled: bool = False
    simulated: bool = False


@dataclass(frozen=True)
class FrameOutcome:
    result: InferenceResult
    cost: FrameCost
    active: Configuration


class FrameTimer(Protocol):
    """Says what a frame cost. ``stamp_s`` is the frame's time on the run's clock (camera stamp)."""

    simulated: bool

    def cost(
        self, workload: Workload, active: Configuration, result: InferenceResult, stamp_s: float
    ) -> FrameCost: ...


class MeasuredTimer:
    """This machine's clock: the engine's own stage times; power from the platform when it can
    measure it (Jetson rails, RAPL), else no energy figure."""

    simulated = False

    def __init__(self, platform: Platform | None = None) -> None:
        self.platform = platform

    def cost(
        self, workload: Workload, active: Configuration, result: InferenceResult, stamp_s: float
    ) -> FrameCost:
        latency_ms = float(result.total_ms)
        power_w, cpu_khz, gpu_khz, throttled = 0.0, 0, 0, False
        if self.platform is not None:
            try:
                tele = self.platform.telemetry()
            except PlatformError:
                tele = None
            if tele is not None:
                power_w = float(tele.total_power_w or 0.0)
                cpu_khz = _telemetry_khz(tele, CPU)
                gpu_khz = _telemetry_khz(tele, GPU)
                throttled = bool(tele.throttled)
        return FrameCost(
            latency_ms=latency_ms,
            energy_j=power_w * latency_ms * 1e-3,
            power_w=power_w,
            cpu_frequency_khz=cpu_khz,
            gpu_frequency_khz=gpu_khz,
            throttled=throttled,
        )


def _telemetry_khz(tele: Any, processor: str) -> int:
    p = tele.processors.get(processor)
    return int(p.frequency_khz or 0) if p is not None else 0


def simulate_frame(
    board: SimulatedXavierNX,
    workload: Workload,
    processor: str,
    threads: int,
    *,
    cpu_frequency_khz: int = 0,
    gpu_frequency_khz: int = 0,
    power_mode: int | None = None,
    start_s: float | None = None,
) -> FrameCost:
    """Run one frame that arrived at board time ``start_s`` (default: the board's now; earlier
    when another model's frame moved the clock on, see ``SimulatedXavierNX.run_concurrent``),
    after pinning the requested frequencies / power mode (0 / ``None`` or negative: leave). The
    one place both the simulated platform node's service and the in-process replay turn a frame
    into latency and energy."""
    freqs = {
        proc: int(khz) for proc, khz in ((CPU, cpu_frequency_khz), (GPU, gpu_frequency_khz)) if khz
    }
    mode = None if power_mode is None or power_mode < 0 else int(power_mode)
    board.processor(processor)  # unknown processor: raise before changing anything
    if freqs or mode is not None:
        board.apply(Setting(frequencies_khz=freqs, power_mode=mode))
    r = board.run_frame(workload, processor, int(threads) or None, start_s=start_s)
    return FrameCost(
        latency_ms=float(r.latency_ms),
        energy_j=float(r.energy_j),
        power_w=float(r.energy_j / max(r.latency_ms * 1e-3, 1e-9)),
        cpu_frequency_khz=int(r.cpu_frequency_khz),
        gpu_frequency_khz=int(board.frequency_khz(GPU)),
        throttled=bool(r.throttled),
        simulated=True,
    )


class BoardTimer:
    """A simulated Xavier NX in this process (in-process replay): the board's clock follows the
    frames' stamps (``offset_s`` maps a stamp to simulated time)."""

    simulated = True

    def __init__(self, board: SimulatedXavierNX, offset_s: float = 0.0) -> None:
        self.board = board
        self.offset_s = offset_s

    def cost(
        self, workload: Workload, active: Configuration, result: InferenceResult, stamp_s: float
    ) -> FrameCost:
        self.board.advance_to(stamp_s - self.offset_s)
        return simulate_frame(
            self.board,
            workload,
            active.processor,
            active.threads,
            cpu_frequency_khz=active.cpu_frequency_khz,
            gpu_frequency_khz=active.gpu_frequency_khz,
            power_mode=active.power_mode,
            start_s=stamp_s - self.offset_s,
        )


class SimulatedTarget:
    """The engine as seen when frames are costed on a simulated board: the board's processors
    and thread counts are all "prepared" (the prediction itself is still computed on this
    machine's CPU with the nearest prepared thread count; the board says what the frame cost)."""

    def __init__(self, engine: FrameTarget, board: Platform) -> None:
        self._engine = engine
        procs = board.processors()
        self.processors = tuple(p.name for p in procs)
        cpu_cores = [p.cores for p in procs if p.kind is ProcessorKind.CPU] or [1]
        self.threads = tuple(range(1, max(cpu_cores) + 1))
        self._processor = CPU if CPU in self.processors else self.processors[0]
        self._threads = engine.active[2]

    @property
    def family(self) -> Family:
        return self._engine.family

    @property
    def members(self) -> tuple[str, ...]:
        return self._engine.members

    def accuracy(self, member_id: str) -> float | None:
        return self._engine.accuracy(member_id)

    def workload(self, member_id: str) -> Workload:
        return self._engine.workload(member_id)

    def infer_raw(  # noqa: PLR0917 - the fields of sensor_msgs/Image, in order
        self,
        data: Any,
        width: int,
        height: int,
        encoding: str,
        step: int = 0,
        is_bigendian: bool = False,
    ) -> InferenceResult:
        return self._engine.infer_raw(data, width, height, encoding, step, is_bigendian)

    def infer_compressed(self, data: Any, fmt: str = "jpeg") -> InferenceResult:
        return self._engine.infer_compressed(data, fmt)

    def infer_blank(self) -> InferenceResult:
        return self._engine.infer_blank()

    def close(self) -> None:
        self._engine.close()

    @property
    def active(self) -> tuple[str, str, int]:
        return self._engine.active[0], self._processor, self._threads

    def switch(self, member_id: str, processor: str = CPU, threads: int | None = None) -> None:
        local = self._engine.threads
        t = self._threads if threads is None else threads
        self._engine.switch(
            member_id, CPU, max(x for x in local if x <= t) if t >= local[0] else local[0]
        )
        self._processor, self._threads = processor, t


def inference_of(msg: Any) -> Inference:
    """The engine call for a camera message: ``sensor_msgs/Image`` or ``CompressedImage``, as an
    rclpy message or decoded from a bag (same field names), its bytes viewed, not copied."""
    data = memoryview(msg.data)
    if hasattr(msg, "encoding"):
        w, h, enc, step, big = msg.width, msg.height, msg.encoding, msg.step, msg.is_bigendian
        return lambda e: e.infer_raw(data, w, h, enc, step, bool(big))
    fmt = msg.format
    return lambda e: e.infer_compressed(data, fmt)


def most_accurate(engine: Any) -> str:
    """The member with the best recorded accuracy (last listed on ties): where a model starts."""
    scored = [(engine.accuracy(m) or 0.0, i, m) for i, m in enumerate(engine.members)]
    return max(scored)[2]


def default_family_path(checkpoint: Path, processor: str, simulated: bool) -> Path:
    """The family ``dynofa search`` writes beside a checkpoint for this target:
    ``<stem>.<processor>.family.json`` measured here, ``<stem>.sim-nx-<processor>.family.json``
    on the simulated Xavier NX."""
    target = f"sim-nx-{processor}" if simulated else processor
    return checkpoint.with_name(f"{checkpoint.stem}.{target}.family.json")


def model_files(checkpoint: str, family: str, processor: str, simulated: bool) -> tuple[Path, Path]:
    """The (checkpoint, family) a model runs, from the nodes' two parameters: a family alone
    brings its own super-network (the one it was searched on), a checkpoint alone its default
    family; neither is the embedded default."""
    from dynofa_ros.family import load_family
    from dynofa_ros.resources import default_checkpoint

    if family and not checkpoint:
        fam = load_family(family)
        return fam.resolve(fam.supernet["checkpoint"]), Path(family)
    ckpt = Path(checkpoint) if checkpoint else default_checkpoint()
    return ckpt, Path(family) if family else default_family_path(ckpt, processor, simulated)


def _check_numbers(cmd: Command) -> None:
    """The numeric fields a message type does not bound by itself (NaN, negative, absurd)."""
    target = cmd.latency_target_ms
    if not (math.isfinite(target) and 0.0 <= target <= MAX_LATENCY_TARGET_MS):
        raise ValueError(
            f"latency_target_ms {target!r} must be a finite number in [0, "
            f"{MAX_LATENCY_TARGET_MS:g}] ms (0 = none)"
        )
    c = cmd.config
    for name, value in (
        ("cpu_frequency_khz", c.cpu_frequency_khz),
        ("gpu_frequency_khz", c.gpu_frequency_khz),
    ):
        if not 0 <= value <= UINT32_MAX:
            raise ValueError(f"{name} {value} must be in 0..{UINT32_MAX} kHz (0 = keep)")
    if not 0 <= c.threads <= 65535:
        raise ValueError(f"threads {c.threads} must be in 0..65535 (0 = keep)")
    if c.power_mode is not None and not 0 <= c.power_mode <= 127:
        raise ValueError(f"power_mode {c.power_mode} must be in -1..127 (-1 = keep)")


class PerceptionSession:
    """Engine + board + the command rules of one perception model (see the module docstring).

    ``platform`` validates frequencies / power modes (its tables) and, unless ``timer`` is
    simulated, is where allowed settings are written. With a simulated timer the pinned
    frequencies travel with each frame to the simulator instead.
    """

    def __init__(
        self,
        engine: FrameTarget,
        *,
        model_name: str,
        timer: FrameTimer | None = None,
        platform: Platform | None = None,
        allow_dvfs: bool = False,
        initial: Configuration | None = None,
    ) -> None:
        self.engine = engine
        self.model_name = model_name
        self.timer: FrameTimer = timer or MeasuredTimer(platform)
        self.platform = platform
        self.allow_dvfs = allow_dvfs
        member, processor, threads = engine.active
        self._active = initial or Configuration(member, processor, threads)
        if initial is not None:
            engine.switch(initial.subnet_id, initial.processor, initial.threads)
        self.last_applied_seq = 0
        self.last_applied_epoch = 0
        self.last_command: Command | None = None  # the last command applied (identity rules)
        self.fallback = False  # the safe configuration runs because the manager went silent
        self.notes: list[str] = []  # what the last accepted command could not do (e.g. DVFS off)
        self.busy_until_s = -math.inf  # simulated board: when the last frame's compute ends
        self.busy_from_s = -math.inf  # ... and when it started (the last costed frame's stamp)

    @property
    def active(self) -> Configuration:
        return self._active

    # --------------------------------------------------------------------------- commands
    def apply(self, cmd: Command) -> str | None:
        """Apply a command between frames. Returns ``None`` when applied (or when it is an exact
        duplicate of the last applied command: a manager's heartbeat), else the reason it was
        rejected (nothing changed). Frequency / power-mode fields are ignored, with a note, when
        DVFS is not allowed. A command ends the safe fallback (a duplicate re-applies the
        manager's configuration)."""
        self.notes = []
        if cmd.same_identity(self.last_command) and not self.fallback:
            return None
        try:
            self._check_identity(cmd)
            new, setting = self._validate(cmd)
        except (DynofaError, ValueError) as exc:
            return str(exc)
        why = self._switch(new, setting)
        if why is None:
            self.last_applied_seq, self.last_applied_epoch = cmd.seq, cmd.epoch
            self.last_command = cmd
            self.fallback = False
        return why

    def enter_fallback(self, safe: Command) -> str | None:
        """Switch to the safe configuration ``safe`` (its identity is ignored) because the
        manager went silent; the last applied command stays the reference for the next one."""
        self.notes = []
        try:
            new, setting = self._validate(safe)
        except (DynofaError, ValueError) as exc:
            return str(exc)
        why = self._switch(new, setting)
        if why is None:
            self.fallback = True
        return why

    def safe_command(self, member_id: str = "") -> Command:
        """The safe configuration: ``member_id`` (default: the family's fastest member) at the
        setting it was searched at (the family's processor, the measurement's threads and, when
        DVFS is allowed, its frequency), each only where this node has it prepared."""
        engine = self.engine
        family = engine.family
        member = member_id or family.members[0].id
        processor = family.processor if family.processor in engine.processors else ""
        rec = (
            next(
                (r for r in family.member(member).latency if r.processor == family.processor), None
            )
            if member in family.ids
            else None
        )
        threads = rec.threads if rec is not None and rec.threads in engine.threads else 0
        khz = rec.frequency_khz if rec is not None and self.allow_dvfs else 0
        return Command(
            seq=1,
            config=Configuration(
                member,
                processor,
                threads,
                cpu_frequency_khz=khz if family.processor == CPU else 0,
                gpu_frequency_khz=khz if family.processor == GPU else 0,
            ),
            reason="safe fallback: the manager is silent",
        )

    def _switch(self, new: Configuration, setting: Setting | None) -> str | None:
        if setting is not None and not self.timer.simulated and self.platform is not None:
            try:
                self.platform.apply(setting)
            except PlatformError as exc:
                return f"platform refused the setting: {exc}"
        self.engine.switch(new.subnet_id, new.processor, new.threads)
        self._active = new
        return None

    def _check_identity(self, cmd: Command) -> None:
        if not 1 <= cmd.seq < SEQ_MODULUS:
            raise ValueError(f"seq {cmd.seq} must be in 1..2^64-1")
        if not 0 <= cmd.epoch < SEQ_MODULUS:
            raise ValueError(f"epoch {cmd.epoch} must be in 0..2^64-1")
        last = self.last_command
        if last is None or cmd.epoch != last.epoch:
            return  # the first command, or a new manager incarnation: it takes over at once
        if cmd.same_identity(last):
            return  # a heartbeat during the fallback: back to the manager's configuration
        if not seq_newer(cmd.seq, last.seq):
            raise ValueError(
                f"seq {cmd.seq} is not newer than the last applied command {last.seq} "
                f"(epoch {cmd.epoch}: a duplicate or reordered command)"
            )

    def _validate(self, cmd: Command) -> tuple[Configuration, Setting | None]:
        if cmd.target_model and cmd.target_model != self.model_name:
            raise ValueError(
                f"target_model {clip(cmd.target_model)!r} is not this node's model_name "
                f"{self.model_name!r}"
            )
        _check_numbers(cmd)
        cur = self._active
        c = cmd.config
        member = c.subnet_id or cur.subnet_id
        if member not in self.engine.members:
            raise ValueError(
                f"subnet_id {clip(member)!r} is not in the family (one of: "
                f"{', '.join(self.engine.members)})"
            )
        processor = c.processor or cur.processor
        if processor not in self.engine.processors:
            raise ValueError(
                f"processor {clip(processor)!r} is not prepared here (one of: "
                f"{', '.join(self.engine.processors)})"
            )
        threads = c.threads or cur.threads
        if threads not in self.engine.threads:
            raise ValueError(
                f"threads {threads} is not a prepared thread count (one of: "
                f"{', '.join(str(t) for t in self.engine.threads)})"
            )
        new = replace(cur, subnet_id=member, processor=processor, threads=threads)
        wants_dvfs = c.cpu_frequency_khz or c.gpu_frequency_khz or c.power_mode is not None
        if not wants_dvfs:
            return new, None
        if not self.allow_dvfs or self.platform is None:
            why = "allow_dvfs is false" if not self.allow_dvfs else "no platform back-end"
            self.notes.append(f"frequency / power-mode fields ignored: {why}")
            return new, None
        freqs: dict[str, int] = {}
        for proc, khz, field in (
            (CPU, c.cpu_frequency_khz, "cpu_frequency_khz"),
            (GPU, c.gpu_frequency_khz, "gpu_frequency_khz"),
        ):
            if not khz:
                continue
            try:
                self.platform.processor(proc).check_frequency(khz)
            except PlatformError as exc:
                raise ValueError(f"{field}: {exc}") from exc
            freqs[proc] = khz
        mode = c.power_mode
        if mode is not None:
            modes = self.platform.capabilities().power_modes
            if mode not in modes:
                allowed = ", ".join(str(m) for m in modes) or "none settable here"
                raise ValueError(f"power_mode {mode} cannot be set (allowed: {allowed})")
        new = replace(
            new,
            cpu_frequency_khz=freqs.get(CPU, cur.cpu_frequency_khz),
            gpu_frequency_khz=freqs.get(GPU, cur.gpu_frequency_khz),
            power_mode=cur.power_mode if mode is None else mode,
        )
        return new, Setting(frequencies_khz=freqs, power_mode=mode)

    # ----------------------------------------------------------------------------- frames
    def busy(self, stamp_s: float) -> bool:
        """Whether a frame stamped ``stamp_s`` finds the simulated board still computing the
        previous one (it is then dropped, like a camera driver with no buffer). On real hardware
        the node's newest-frame slot does this by itself, so this is always ``False`` there."""
        # a stamp before the previous frame's own is time going back (a bag loop, a clock
        # jump), not a frame arriving mid-compute: the board is free for it
        return self.timer.simulated and self.busy_from_s <= stamp_s < self.busy_until_s

    def run(self, infer: Inference, stamp_s: float) -> FrameOutcome:
        """Run one frame (``infer`` calls one of the engine's ``infer_*``) and cost it."""
        active = self._active
        result = infer(self.engine)  # a malformed frame is rejected here, busy board or not
        if self.busy(stamp_s):
            raise BoardBusyError(
                f"simulated board busy until {self.busy_until_s:.3f} s (frame at {stamp_s:.3f} s)"
            )
        cost = self.timer.cost(self.engine.workload(result.member_id), active, result, stamp_s)
        if not math.isfinite(cost.latency_ms) or cost.latency_ms < 0:
            raise DynofaError(f"frame timer returned latency {cost.latency_ms} ms")
        if cost.simulated:
            self.busy_from_s, self.busy_until_s = stamp_s, stamp_s + cost.latency_ms * 1e-3
        return FrameOutcome(result=result, cost=cost, active=active)

    def close(self) -> None:
        self.engine.close()
