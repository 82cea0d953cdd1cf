"""The closed loop every runner shares: the manager, the perception sessions and the recorder.

``dynofa simulate`` and the fast replay (:mod:`.inprocess`) drive it on simulated time with a
simulated board; ``dynofa realtime`` (:mod:`.realtime`) drives it on this machine's clock with
its real engine. What differs between them is the plug: the clock, where frames come from and
which board costs them. What a frame, a reading or a decision does is written here once, the way
the live graph's nodes do it (perception_node applies queued commands between frames, by
:func:`~dynofa_ros.perception.command_due`; manager_node decides on every frame status and
battery reading), so no runner can drift from the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dynofa_ros.evaluation.records import RecordBuilder

if TYPE_CHECKING:
    from dynofa_ros.configuration import Configuration
    from dynofa_ros.manager import RuntimeManager
    from dynofa_ros.perception import Command, FrameOutcome, Inference, PerceptionSession
    from dynofa_ros.platform.base import Telemetry

# a runner's hook on a frame's latency (ms) before it is recorded and observed
LatencyHook = Callable[[float, "Configuration"], float]


@dataclass
class LoopModel:
    """One perception model: its session and what its node counts."""

    name: str
    camera: str
    session: PerceptionSession
    target_ms: float
    pending: list[tuple[float, Command]] = field(default_factory=list)  # (decided at, command)
    seen: int = 0
    processed: int = 0
    dropped: int = 0  # the simulated board was still busy with the previous frame
    energy_total_j: float = 0.0

    def counts(self) -> dict[str, int]:
        return {
            "in_bag": self.seen,
            "processed": self.processed,
            "dropped_node": self.dropped,
            "rejected": 0,
            "lost_transport": 0,
        }


class ClosedLoop:
    """One run's manager and models, recording into one :class:`RecordBuilder`.

    Times are seconds on the run's clock; a record's stamp is ``stamp_offset_ns`` plus that time
    in ns (the replay clock is the bag's own, so its offset is 0)."""

    def __init__(
        self,
        manager: RuntimeManager,
        models: Iterable[LoopModel],
        builder: RecordBuilder,
        *,
        stamp_offset_ns: int = 0,
    ) -> None:
        self.manager = manager
        self.models: dict[str, LoopModel] = {m.name: m for m in models}
        self.builder = builder
        self.stamp_offset_ns = stamp_offset_ns
        self.rejected: list[str] = []  # commands a session refused: "model seq N: why"
        self._board_khz: dict[str, int] = {}  # last frequency the board reported per processor

    def ns(self, t_s: float) -> int:
        return self.stamp_offset_ns + round(t_s * 1e9)

    # ---- manager ---------------------------------------------------------------------------
    def decide(self, now_s: float) -> None:
        """Ask the manager; its commands wait for their models' next frames."""
        from dynofa_ros.perception import Command

        for d in self.manager.step(now_s):
            self.models[d.target_model].pending.append((now_s, Command.of(d)))
            self.builder.command(
                self.ns(now_s), d.target_model, seq=d.seq, config=d.config,
                latency_target_ms=d.latency_target_ms, reason=d.reason,
            )  # fmt: skip

    def mission(self, now_s: float, change: Any) -> None:
        from dynofa_ros.manager import Mission

        self.manager.observe(Mission.from_fields(now_s, change))
        self.decide(now_s)

    # ---- board -----------------------------------------------------------------------------
    def published_telemetry(self, tele: Telemetry, now_s: float) -> None:
        """A board node's readings (sim_platform_node: battery, temperatures, loads, stamped
        with the clock): the manager decides on the battery, as manager_node does."""
        from dynofa_ros.manager import BatteryReading
        from dynofa_ros.manager.inputs import readings_of

        for reading in readings_of(tele, now_s, power=False):
            self.manager.observe(reading)
            if isinstance(reading, BatteryReading):
                self.decide(now_s)
        self.record_telemetry(tele, now_s)

    def own_telemetry(self, tele: Telemetry, now_s: float) -> None:
        """The manager reading its own board (manager_node on a real board)."""
        self.manager.observe(tele)
        self.record_telemetry(tele, now_s)

    def record_telemetry(self, tele: Telemetry, now_s: float) -> None:
        b, ns = self.builder, self.ns(now_s)
        if tele.battery is not None:
            b.battery(ns, float(tele.battery.state_of_charge))
        for zone, celsius in tele.temperatures_c.items():
            b.temperature(ns, zone, float(celsius))
        for proc, pt in tele.processors.items():
            if pt.frequency_khz:
                self._board_khz[proc] = int(pt.frequency_khz)
            if pt.utilisation is not None:
                b.load(ns, proc, float(pt.utilisation))
        if tele.total_power_w is not None:
            b.power(ns, float(tele.total_power_w))
        b.throttled(ns, bool(tele.throttled))
        if tele.energy_j is not None:
            b.board_energy(ns, float(tele.energy_j))
        b.power_mode(ns, tele.power_mode)

    # ---- frames ----------------------------------------------------------------------------
    def apply_due(self, model: LoopModel, start_s: float) -> None:
        """Between frames, in order, the commands decided before ``start_s`` (the node's rule)."""
        from dynofa_ros.perception import command_due

        n = 0
        while n < len(model.pending) and command_due(model.pending[n][0], start_s):
            n += 1
        for _, cmd in model.pending[:n]:
            why = model.session.apply(cmd)
            if why is not None:
                self.rejected.append(f"{model.name} seq {cmd.seq}: {why}")
            elif cmd.latency_target_ms > 0:
                model.target_ms = cmd.latency_target_ms
        del model.pending[:n]

    def frame(
        self,
        camera: str,
        stamp_ns: int,
        infer: Inference,
        *,
        label: int | None = None,
        clock: Callable[[], float] | None = None,
        latency_of: LatencyHook | None = None,
    ) -> list[FrameOutcome]:
        """One camera frame (stamped ``stamp_ns``) through every model on ``camera``: apply
        the commands due, run, record, tell the manager, decide. Without ``clock`` all of it
        happens at the frame's stamp (simulated time); with one, at the times it reads (real
        time: a late frame still gets the commands decided before it starts). ``latency_of``
        may replace the latency a frame reports (a test's hook)."""
        from dynofa_ros.manager import LatencyObservation
        from dynofa_ros.perception import BoardBusyError

        def now() -> float:
            return stamp_s if clock is None else clock()

        ns, stamp_s = stamp_ns, (stamp_ns - self.stamp_offset_ns) * 1e-9
        if label is not None:
            self.builder.ground_truth(camera, ns, label)
        outcomes = []
        for model in self.models.values():
            if model.camera != camera:
                continue
            model.seen += 1
            s = model.session
            self.apply_due(model, now())
            try:
                out = s.run(infer, stamp_s)
            except BoardBusyError:
                model.dropped += 1
                continue
            done_s = now()
            outcomes.append(out)
            model.processed += 1
            model.energy_total_j += out.cost.energy_j
            r, cost, active = out.result, out.cost, out.active
            latency = cost.latency_ms if latency_of is None else latency_of(cost.latency_ms, active)
            cpu_khz = (
                cost.cpu_frequency_khz or active.cpu_frequency_khz or self._board_khz.get("cpu", 0)
            )
            self.builder.classification(
                model.name, ns, frame_seq=model.processed, subnet_id=r.member_id,
                class_ids=r.class_ids, latency_ms=latency, command_seq=s.last_applied_seq,
            )  # fmt: skip
            self.builder.status(
                model.name, model.processed, subnet_id=r.member_id, processor=active.processor,
                threads=active.threads, cpu_frequency_khz=cpu_khz,
                gpu_frequency_khz=cost.gpu_frequency_khz or active.gpu_frequency_khz,
                latency_ms=latency, latency_target_ms=model.target_ms, power_w=cost.power_w,
                energy_per_frame_mj=cost.energy_j * 1e3, energy_total_j=model.energy_total_j,
                last_command_seq=s.last_applied_seq,
            )  # fmt: skip
            self.manager.observe(
                LatencyObservation(
                    stamp_s=done_s, model=model.name, latency_ms=latency, subnet_id=r.member_id,
                    processor=active.processor, threads=active.threads,
                    cpu_frequency_khz=cost.cpu_frequency_khz,
                    gpu_frequency_khz=cost.gpu_frequency_khz, command_seq=s.last_applied_seq,
                )
            )  # fmt: skip
            self.decide(now())
        return outcomes

    def frame_counts(self) -> dict[str, dict[str, int]]:
        return {m.name: m.counts() for m in self.models.values()}
