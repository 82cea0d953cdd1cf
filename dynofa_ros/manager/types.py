"""The manager's typed, timestamped inputs and its output, one dataclass each.

Every input carries ``stamp_s`` (monotonic seconds; simulated seconds on the simulator). Inputs
mirror the project's messages without importing ROS: :class:`Mission` is
``msg/MissionPriority.msg``, :class:`LatencyObservation` the relevant part of
``msg/PerceptionStatus.msg``, and :class:`Decision` is
``msg/ReconfigurationCommand.msg`` (mapped in ``nodes/convert.py``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from dynofa_ros.configuration import Configuration
from dynofa_ros.errors import DynofaError
from dynofa_ros.family import Family


class ManagerConfigError(DynofaError):
    """A manager or scenario setting that cannot be used; names the field and what is allowed."""


class PriorityLevel(enum.IntEnum):
    """``MissionPriority.LEVEL_*``: a level selects the manager's weights (``LevelPolicy``)."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3


@dataclass(frozen=True)
class ModelSpec:
    """One perception model the manager serves: its family and standing requirements.

    ``latency_target_ms`` or ``frame_rate_hz`` (or both) must be given: the frame period is
    ``1 / frame_rate_hz``; without a frame rate frames are assumed to arrive once per latency
    target, and without a target the target is the frame period. ``priority`` weighs this model
    against the others sharing the board (the two-model scenario). ``processors`` / ``threads``
    restrict the mapping; by default every processor / thread count the family measured is used.
    """

    name: str
    family: Family
    latency_target_ms: float | None = None
    frame_rate_hz: float | None = None
    min_accuracy: float = 0.0
    priority: float = 1.0
    processors: tuple[str, ...] | None = None
    threads: tuple[int, ...] | None = None
    static_member: str | None = None  # member used by static baselines / the DVFS-only ablation
    backend: str | None = None  # engine backend whose records predict (None: the searched one)

    def __post_init__(self) -> None:
        if not self.name:
            raise ManagerConfigError("model spec: field 'name' must not be empty")
        try:
            object.__setattr__(self, "family", self.family.for_backend(self.backend))
        except DynofaError as exc:
            raise ManagerConfigError(f"model {self.name}: field 'backend': {exc}") from exc
        if self.latency_target_ms is None and self.frame_rate_hz is None:
            raise ManagerConfigError(
                f"model {self.name}: give 'latency_target_ms' or 'frame_rate_hz' (or both)"
            )
        for key in ("latency_target_ms", "frame_rate_hz"):
            value = getattr(self, key)
            if value is not None and not (value > 0 and value < float("inf")):
                raise ManagerConfigError(f"model {self.name}: field {key!r} must be > 0")
        if not 0.0 <= self.min_accuracy <= 1.0:
            raise ManagerConfigError(f"model {self.name}: field 'min_accuracy' must be in [0, 1]")
        if not self.priority > 0:
            raise ManagerConfigError(f"model {self.name}: field 'priority' must be > 0")
        if self.static_member is not None:
            self.family.member(self.static_member)  # raises naming the valid ids

    @property
    def period_ms(self) -> float:
        if self.frame_rate_hz is not None:
            return 1000.0 / self.frame_rate_hz
        assert self.latency_target_ms is not None
        return self.latency_target_ms


@dataclass(frozen=True)
class Mission:
    """``MissionPriority.msg``: zero targets mean "the level's / model's default"."""

    stamp_s: float
    level: PriorityLevel = PriorityLevel.NORMAL
    latency_target_ms: float = 0.0
    min_accuracy: float = 0.0
    energy_budget_j: float = 0.0  # perception's energy until mission end (0 = unlimited)
    mission_duration_s: float = 0.0  # remaining mission time (0 = unknown)
    reason: str = ""

    @classmethod
    def from_fields(cls, stamp_s: float, fields: Any) -> Mission:
        """From anything with the message's field names (a ``MissionPriority`` message, a
        scenario's priority change); a level outside 0..3 raises ``ValueError``."""
        return cls(
            stamp_s=stamp_s,
            level=PriorityLevel(int(fields.level)),
            latency_target_ms=float(fields.latency_target_ms),
            min_accuracy=float(fields.min_accuracy),
            energy_budget_j=float(fields.energy_budget_j),
            mission_duration_s=float(fields.mission_duration_s),
            reason=str(fields.reason),
        )


@dataclass(frozen=True)
class Requirements:
    """A run-time change of one model's requirements (``model=None``: every model)."""

    stamp_s: float
    model: str | None = None
    latency_target_ms: float | None = None
    frame_rate_hz: float | None = None
    min_accuracy: float | None = None
    priority: float | None = None


@dataclass(frozen=True)
class BatteryReading:
    stamp_s: float
    state_of_charge: float  # [0, 1]
    capacity_wh: float | None = None


@dataclass(frozen=True)
class TemperatureReading:
    stamp_s: float
    zone: str
    celsius: float


@dataclass(frozen=True)
class ProcessorLoad:
    """Busy fraction of a processor over the last interval, at the frequency it ran."""

    stamp_s: float
    processor: str
    utilisation: float  # [0, 1]
    frequency_khz: int | None = None
    utilisation_max: float | None = None  # busiest core in [0, 1] (what schedutil scales by)


@dataclass(frozen=True)
class PowerReading:
    stamp_s: float
    total_w: float


@dataclass(frozen=True)
class LatencyObservation:
    """One frame of one model, with the configuration that produced it (PerceptionStatus)."""

    stamp_s: float
    model: str
    latency_ms: float
    subnet_id: str
    processor: str
    threads: int = 0
    cpu_frequency_khz: int = 0  # 0 = unknown
    gpu_frequency_khz: int = 0
    command_seq: int = 0


@dataclass(frozen=True)
class Choice:
    """A policy's choice for one model, before the manager numbers it."""

    config: Configuration
    predicted_latency_ms: float
    predicted_accuracy: float
    predicted_power_w: float
    latency_target_ms: float
    reason: str
    contention: float = 1.0  # predicted latency / the same without the other models
    raw_power_w: float = 0.0  # predicted board power before the online power correction


@dataclass(frozen=True)
class Decision:
    """One command for one model: ``msg/ReconfigurationCommand.msg`` plus the predictions it
    was made on (``nodes/convert.py`` maps it to the message)."""

    seq: int
    stamp_s: float
    target_model: str
    config: Configuration
    latency_target_ms: float
    predicted_latency_ms: float
    predicted_accuracy: float
    predicted_power_w: float
    reason: str
    # the manager incarnation that decided it (ReconfigurationCommand.msg): identity, not
    # content, so two runs on the same inputs still give equal decisions
    epoch: int = field(default=0, compare=False)

    @classmethod
    def from_choice(
        cls, seq: int, stamp_s: float, model: str, choice: Choice, epoch: int = 0
    ) -> Decision:
        return cls(
            epoch=epoch,
            seq=seq,
            stamp_s=stamp_s,
            target_model=model,
            config=choice.config,
            latency_target_ms=choice.latency_target_ms,
            predicted_latency_ms=choice.predicted_latency_ms,
            predicted_accuracy=choice.predicted_accuracy,
            predicted_power_w=choice.predicted_power_w,
            reason=choice.reason,
        )
