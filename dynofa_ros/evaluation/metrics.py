"""Metrics of one run, per model, computed from :class:`~.records.RunResults` only.

Definitions (``None`` = cannot be computed from what the run recorded):

- latency p50 / p95 / p99: percentiles (linear interpolation) of ``latency_ms`` over all frames;
- deadline-miss rate: frames with ``latency_ms > target_ms`` / frames with a target;
- accuracy: correct frames / frames with ground truth; expected accuracy: the mean of the
  family's recorded top-1 accuracy of the sub-network that ran each frame (``RunInfo.extra``
  ``subnets``), what a run without ground truth reports (a ``builtin:`` family has no network,
  so its frames have no prediction: :meth:`ModelMetrics.accuracy_or_expected`);
- dropped: frames the run counted as dropped before they were processed (``RunInfo.extra``
  ``dropped``, per model; ``None`` when the run did not count them);
- energy: sum of the frames' energy (the perception node's per-frame estimate), J; average power:
  energy / run duration, W; mean frame power: mean of the frames' ``power_w``; board energy (per
  run): the increase of the board's energy counter (``board_energy`` series) from its first to
  its last sample, else the ``power`` series (board power) integrated as a step function up to
  the end of the run; board average power: board energy / the time it covers;
- battery at end: last ``battery`` sample (else the last frame's);
- max temperature: over ``temperature/*`` samples and frames; time throttled: total time the
  ``throttled`` step function is 1 (else the frame intervals marked throttled), s;
- switches: frame-to-frame changes of the sub-network; configuration changes: of any of
  sub-network, processor, threads, CPU / GPU frequency, power mode; commands: commands sent to
  the model; power modes: the distinct known power modes of its frames;
- reaction to each event (per model), over the window from the event to the next event (or the
  end): ``reconfigured_after_s`` (first frame whose configuration differs from the one before the
  event), ``transient_frames`` (frames before the first run of ``SETTLE_FRAMES`` consecutive
  frames within target; 0 when it never missed), ``recovered_after_s`` (time of that first settled
  frame; 0 when the window starts within target), ``misses`` in the window, and
  ``within_target_after`` (fraction of frames within target after the transient).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeGuard

import numpy as np

from dynofa_ros.evaluation.records import Event, FrameRecord, RunResults, Sample, subnets_of

SETTLE_FRAMES = 5


@dataclass(frozen=True)
class Reaction:
    event_t_s: float
    event: str
    kind: str
    model: str
    frames: int
    misses: int
    reconfigured_after_s: float | None
    transient_frames: int | None
    recovered_after_s: float | None
    within_target_after: float | None


@dataclass(frozen=True)
class ModelMetrics:
    model: str
    frames: int
    target_ms: float | None  # the most common target
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    latency_mean_ms: float | None
    miss_rate: float | None
    accuracy: float | None
    frames_with_ground_truth: int
    energy_j: float | None
    average_power_w: float | None
    mean_frame_power_w: float | None
    battery_end: float | None
    max_temperature_c: float | None
    time_throttled_s: float | None
    switches: int
    config_changes: int
    commands: int
    subnets_used: int
    reactions: tuple[Reaction, ...] = field(default=())
    power_modes: tuple[int, ...] = ()
    expected_accuracy: float | None = None  # the family's recorded accuracy of the frames
    dropped: int | None = None

    def accuracy_or_expected(self) -> tuple[float | None, str]:
        """Measured accuracy (``"measured"``) when the run had ground truth, else the family's
        expected accuracy (``"family"``), else ``(None, "")``."""
        if self.accuracy is not None:
            return self.accuracy, "measured"
        if self.expected_accuracy is not None:
            return self.expected_accuracy, "family"
        return None, ""


@dataclass(frozen=True)
class RunMetrics:
    name: str
    policy: str
    scenario: str
    duration_s: float
    models: tuple[ModelMetrics, ...]
    board_energy_j: float | None = None  # see the module doc
    board_average_power_w: float | None = None
    board_energy_source: str | None = None  # "counter" | "power" | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def model(self, name: str) -> ModelMetrics:
        return next(m for m in self.models if m.model == name)


@dataclass(frozen=True)
class LatencyStats:
    """Latency of processed frames; ``within`` also counts dropped frames, as misses (a frame
    dropped before it could start never had a result, let alone in time)."""

    frames: int  # processed
    dropped: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    within: float | None  # frames with latency <= target / (processed + dropped)

    @classmethod
    def of(
        cls, latencies: Sequence[float], target_ms: float | None = None, dropped: int = 0
    ) -> LatencyStats:
        if not latencies:
            return cls(0, dropped, None, None, None, None, 0.0 if dropped else None)
        a = np.asarray(latencies, dtype=np.float64)
        p50, p95, p99 = (float(x) for x in np.percentile(a, [50, 95, 99]))
        within = None if target_ms is None else float(np.sum(a <= target_ms)) / (len(a) + dropped)
        return cls(len(a), dropped, p50, p95, p99, float(a.mean()), within)


def compute(run: RunResults) -> RunMetrics:
    duration = run.duration_s
    battery = run.series("battery")
    temps = [s.value for s in run.samples if s.series.startswith("temperature/")]
    throttle = sorted(run.series("throttled"), key=lambda s: s.t_s)
    recorded = {s["id"]: s.get("accuracy") for s in subnets_of(run.info)}
    counted = run.info.extra.get("dropped") if isinstance(run.info.extra, dict) else None
    models = []
    for model in run.models:
        frames = sorted(run.frames_of(model), key=lambda f: f.t_s)
        stats = LatencyStats.of([f.latency_ms for f in frames if math.isfinite(f.latency_ms)])
        with_target = [f for f in frames if f.deadline_missed is not None]
        with_gt = [f for f in frames if f.correct is not None]
        expected = [recorded.get(f.subnet_id) for f in frames]
        expected_known = [float(a) for a in expected if _is_fraction(a)]
        dropped = counted.get(model) if isinstance(counted, dict) else None
        energies = [f.energy_j for f in frames if f.energy_j is not None]
        energy = float(sum(energies)) if energies else None
        powers = [f.power_w for f in frames if f.power_w is not None]
        targets = [f.target_ms for f in frames if f.target_ms is not None]
        frame_temps = [f.max_temperature_c for f in frames if f.max_temperature_c is not None]
        all_temps = temps + frame_temps
        if battery:
            battery_end: float | None = max(battery, key=lambda s: s.t_s).value
        else:
            known = [f.battery for f in frames if f.battery is not None]
            battery_end = known[-1] if known else None
        switches = sum(1 for a, b in itertools.pairwise(frames) if a.subnet_id != b.subnet_id)
        changes = sum(1 for a, b in itertools.pairwise(frames) if a.config != b.config)
        models.append(
            ModelMetrics(
                model=model,
                frames=len(frames),
                target_ms=max(set(targets), key=targets.count) if targets else None,
                latency_p50_ms=stats.p50_ms,
                latency_p95_ms=stats.p95_ms,
                latency_p99_ms=stats.p99_ms,
                latency_mean_ms=stats.mean_ms,
                miss_rate=(
                    sum(bool(f.deadline_missed) for f in with_target) / len(with_target)
                    if with_target
                    else None
                ),
                accuracy=(
                    sum(bool(f.correct) for f in with_gt) / len(with_gt) if with_gt else None
                ),
                frames_with_ground_truth=len(with_gt),
                energy_j=energy,
                average_power_w=(
                    energy / duration if energy is not None and duration > 0 else None
                ),
                mean_frame_power_w=float(np.mean(powers)) if powers else None,
                battery_end=battery_end,
                max_temperature_c=max(all_temps) if all_temps else None,
                time_throttled_s=_time_throttled(throttle, frames, duration),
                switches=switches,
                config_changes=changes,
                commands=sum(1 for c in run.commands if c.model == model),
                subnets_used=len({f.subnet_id for f in frames}),
                reactions=tuple(reactions(run.events, frames, model, duration)),
                power_modes=tuple(sorted({m for f in frames if (m := f.power_mode) is not None})),
                expected_accuracy=(
                    float(np.mean(expected_known))
                    if expected_known and len(expected_known) == len(frames)
                    else None
                ),
                dropped=int(dropped) if isinstance(dropped, int) else None,
            )
        )
    board, covered, source = board_energy(run.series("board_energy"), run.series("power"), duration)
    return RunMetrics(
        run.info.name,
        run.info.policy,
        run.info.scenario,
        duration,
        tuple(models),
        board_energy_j=board,
        board_average_power_w=board / covered if board is not None and covered > 0 else None,
        board_energy_source=source,
    )


def _is_fraction(x: Any) -> TypeGuard[float]:
    return isinstance(x, int | float) and not isinstance(x, bool) and 0.0 <= x <= 1.0


def board_energy(
    counter: list[Sample], power: list[Sample], duration: float
) -> tuple[float | None, float, str | None]:
    """``(joules, seconds covered, source)``: the counter's increase from its first to its last
    sample (``"counter"``; needs two samples and no reset), else :func:`board_energy_j` of the
    power samples (``"power"``), else ``(None, 0, None)``."""
    cs = sorted(counter, key=lambda s: s.t_s)
    if len(cs) >= 2 and cs[-1].value >= cs[0].value and cs[-1].t_s > cs[0].t_s:
        return cs[-1].value - cs[0].value, cs[-1].t_s - cs[0].t_s, "counter"
    joules = board_energy_j(power, duration)
    if joules is None:
        return None, 0.0, None
    first = min(s.t_s for s in power)
    return joules, max(duration, *(s.t_s for s in power)) - first, "power"


def board_energy_j(power: list[Sample], duration: float) -> float | None:
    """Board energy from power: the ``power`` step function (each sample holds until the next,
    the last until the end of the run) integrated over [first sample, duration]."""
    ps = sorted(power, key=lambda s: s.t_s)
    if not ps:
        return None
    total = 0.0
    for a, b in zip(ps, [*ps[1:], None], strict=False):
        end = b.t_s if b is not None else max(duration, a.t_s)
        total += a.value * max(0.0, end - a.t_s)
    return total


def _time_throttled(
    throttle: list[Any], frames: list[FrameRecord], duration: float
) -> float | None:
    if throttle:
        total = 0.0
        for a, b in zip(throttle, [*throttle[1:], None], strict=False):
            end = b.t_s if b is not None else max(duration, a.t_s)
            if a.value > 0.5:
                total += max(0.0, end - a.t_s)
        return total
    known = [f for f in frames if f.throttled is not None]
    if not known:
        return None
    total = 0.0
    for a, b in zip(known, [*known[1:], None], strict=False):
        end = b.t_s if b is not None else max(duration, a.t_s)
        if a.throttled:
            total += max(0.0, end - a.t_s)
    return total


def reactions(
    events: list[Event], frames: list[FrameRecord], model: str, duration: float
) -> list[Reaction]:
    out: list[Reaction] = []
    evs = sorted((e for e in events if e.model in (None, model)), key=lambda e: e.t_s)
    first_t = frames[0].t_s if frames else 0.0
    for i, ev in enumerate(evs):
        if ev.t_s < first_t:
            continue
        end = evs[i + 1].t_s if i + 1 < len(evs) else math.inf
        before = [f for f in frames if f.t_s < ev.t_s]
        window = [f for f in frames if ev.t_s <= f.t_s < end]
        reconfigured = None
        if before:
            ref = before[-1].config
            changed = next((f for f in window if f.config != ref), None)
            if changed is not None:
                reconfigured = changed.t_s - ev.t_s
        known = [f for f in window if f.deadline_missed is not None]
        transient = recovered = within = None
        if known:
            k = _settle_index(known)
            if k is not None:
                transient = k
                recovered = 0.0 if k == 0 else known[k].t_s - ev.t_s
                after = known[k:]
                within = sum(not f.deadline_missed for f in after) / len(after)
        out.append(
            Reaction(
                event_t_s=ev.t_s,
                event=ev.label,
                kind=ev.kind,
                model=model,
                frames=len(window),
                misses=sum(bool(f.deadline_missed) for f in known),
                reconfigured_after_s=reconfigured,
                transient_frames=transient,
                recovered_after_s=recovered,
                within_target_after=within,
            )
        )
    return out


def _settle_index(frames: list[FrameRecord]) -> int | None:
    """Index of the first frame of the first run of SETTLE_FRAMES frames within target (a shorter
    run is enough when it reaches the end of the window)."""
    run = 0
    for i, f in enumerate(frames):
        if f.deadline_missed:
            run = 0
            continue
        run += 1
        if run == SETTLE_FRAMES or i == len(frames) - 1:
            return i - run + 1
    return None


# ------------------------------------------------------------------------------ vs the oracle
ORACLE_POLICY = "oracle"


@dataclass(frozen=True)
class Relative:
    """One run against the oracle run of the same scenario (the oracle's own row: 1.0, 0, 0).

    ``energy_j``: board energy, else the frames' energy summed; ``miss_rate`` / ``accuracy``:
    over every model's frames together. ``energy_ratio`` = energy / the oracle's;
    ``miss_points`` / ``accuracy_points``: differences in percentage points (positive = more)."""

    name: str
    policy: str
    scenario: str
    oracle: str  # the oracle run's name
    energy_j: float | None
    miss_rate: float | None
    accuracy: float | None
    energy_ratio: float | None
    miss_points: float | None
    accuracy_points: float | None


def totals(rm: RunMetrics) -> tuple[float | None, float | None, float | None]:
    """``(energy J, miss rate, accuracy)`` of a whole run (every model; see :class:`Relative`)."""
    energy = rm.board_energy_j
    if energy is None:
        known = [m.energy_j for m in rm.models if m.energy_j is not None]
        energy = float(sum(known)) if known else None
    timed = [(m.miss_rate, m.frames) for m in rm.models if m.miss_rate is not None and m.frames]
    n = sum(f for _, f in timed)
    miss = sum(r * f for r, f in timed) / n if n else None
    judged = [(m.accuracy, m.frames_with_ground_truth) for m in rm.models if m.accuracy is not None]
    g = sum(f for _, f in judged)
    acc = sum(a * f for a, f in judged) / g if g else None
    return energy, miss, acc


def relative_to_oracle(metrics: list[RunMetrics]) -> list[Relative]:
    """Every run of a scenario that has an oracle run (policy ``oracle``; the first one when
    several), against it, in the order given; runs of other scenarios are left out."""
    oracles: dict[str, RunMetrics] = {}
    for rm in metrics:
        if rm.policy == ORACLE_POLICY:
            oracles.setdefault(rm.scenario, rm)
    out: list[Relative] = []
    for rm in metrics:
        ref = oracles.get(rm.scenario)
        if ref is None:
            continue
        e, miss, acc = totals(rm)
        e0, miss0, acc0 = totals(ref)
        out.append(
            Relative(
                name=rm.name,
                policy=rm.policy,
                scenario=rm.scenario,
                oracle=ref.name,
                energy_j=e,
                miss_rate=miss,
                accuracy=acc,
                energy_ratio=e / e0 if e is not None and e0 else None,
                miss_points=100.0 * (miss - miss0)
                if miss is not None and miss0 is not None
                else None,
                accuracy_points=(
                    100.0 * (acc - acc0) if acc is not None and acc0 is not None else None
                ),
            )
        )
    return out
