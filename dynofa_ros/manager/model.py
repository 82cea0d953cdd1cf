"""What the manager knows about the board and the models: latency and power predictions.

* :class:`Board` is the manager's read-only view of a :class:`~dynofa_ros.platform.base.Platform`
  (processors, frequency tables, what can be set).
* :class:`LatencyTable` turns a family's latency records into a table over every frequency of the
  board: a measured frequency is used as is; between / beyond measured frequencies latency follows
  ``t(f) = c / f + m`` (a compute part that scales with the clock and a memory / launch part that
  does not), fitted through the two nearest measurements, or with ``compute_fraction`` of the
  latency scaling when only one frequency was measured.
* :class:`Corrections` keeps, per (model, processor), the median of recent measured / predicted
  latency ratios: the online correction that reveals interference from other programs.
* :class:`PowerModel` predicts board power from processor frequencies and busy fractions.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from dynofa_ros.family import FamilyMember
from dynofa_ros.manager.config import ProcessorPower
from dynofa_ros.manager.types import ManagerConfigError
from dynofa_ros.platform.base import Platform, Processor, ProcessorKind


@dataclass(frozen=True)
class Board:
    """The processors the manager may map models to, and which frequencies it may pin.

    Family files name processors ``"cpu"`` / ``"cuda"`` (``ProcessorKind`` values); a board
    processor matches by name first, then by kind. ``settable`` holds processor names whose
    frequency the platform can pin; for the others the manager predicts at the top frequency and
    sends 0 ("keep").
    """

    name: str
    processors: tuple[Processor, ...]
    settable: frozenset[str] = frozenset()
    power_modes: Mapping[int, str] = field(default_factory=dict)
    caps_khz: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_platform(cls, platform: Platform) -> Board:
        """The platform's view; ``caps_khz`` from its current frequency caps (power mode) when
        it reports them (``frequency_cap_khz(name)``, e.g. the simulated NX): a pinned
        frequency above a cap would run at the cap, so the manager never predicts above it."""
        caps = platform.capabilities()
        procs = platform.processors()
        limits: dict[str, int] = {}
        cap_of = getattr(platform, "frequency_cap_khz", None)
        if callable(cap_of):
            for p in procs:
                khz = cap_of(p.name)
                if isinstance(khz, int) and p.frequencies_khz and khz < p.frequencies_khz[-1]:
                    limits[p.name] = khz
        return cls(platform.name, procs, caps.frequency, dict(caps.power_modes), limits)

    def resolve(self, family_processor: str) -> Processor | None:
        for p in self.processors:
            if p.name == family_processor:
                return p
        for p in self.processors:
            if p.kind.value == family_processor:
                return p
        return None

    def first(self, kind: ProcessorKind) -> Processor | None:
        return next((p for p in self.processors if p.kind is kind), None)

    def table(self, processor: Processor) -> tuple[int, ...]:
        """Frequencies the manager may choose on ``processor`` (``(0,)``: cannot pin)."""
        if processor.name in self.settable and processor.frequencies_khz:
            cap = self.caps_khz.get(processor.name)
            kept = tuple(f for f in processor.frequencies_khz if cap is None or f <= cap)
            return kept or processor.frequencies_khz[:1]
        return (0,)


class LatencyTable:
    """Nominal latency (ms) of family members on one board, from the family's records."""

    def __init__(self, board: Board, compute_fraction: float = 0.85) -> None:
        self.board = board
        self.compute_fraction = compute_fraction

    def points(
        self, member: FamilyMember, processor: Processor, threads: int
    ) -> list[tuple[int, float]]:
        """Measured (kHz, ms) of ``member`` on ``processor`` with ``threads`` (frequency 0 =
        unpinned: taken as the top of the table, as profiling runs at the default maximum)."""
        top = processor.max_frequency_khz or 0
        out: dict[int, list[float]] = {}
        for rec in member.latency:
            if self.board.resolve(rec.processor) != processor or rec.threads != threads:
                continue
            if not (math.isfinite(rec.median_ms) and rec.median_ms > 0):
                continue
            out.setdefault(rec.frequency_khz or top, []).append(rec.median_ms)
        return sorted((f, statistics.median(v)) for f, v in out.items())

    def thread_counts(self, member: FamilyMember, processor: Processor) -> tuple[int, ...]:
        return tuple(
            sorted(
                {
                    rec.threads
                    for rec in member.latency
                    if self.board.resolve(rec.processor) == processor
                    and math.isfinite(rec.median_ms)
                    and rec.median_ms > 0
                }
            )
        )

    def at(self, points: Sequence[tuple[int, float]], khz: int) -> float:
        """Latency at ``khz`` from measured ``points`` (see the module docstring)."""
        if not points:
            raise ManagerConfigError("no latency record to predict from")
        freqs = [f for f, _ in points]
        if khz <= 0 or freqs == [0]:
            # Unknown / unpinnable frequency: the measurement nearest the top.
            return points[-1][1]
        i = bisect.bisect_left(freqs, khz)
        if i < len(freqs) and freqs[i] == khz:
            return points[i][1]
        usable = [(f, t) for f, t in points if f > 0]
        if len(usable) == 1:
            f0, t0 = usable[0]
            a = self.compute_fraction
            return t0 * (a * f0 / khz + (1.0 - a))
        # The two nearest measured frequencies (bracketing when possible).
        j = min(max(bisect.bisect_left([f for f, _ in usable], khz), 1), len(usable) - 1)
        (f1, t1), (f2, t2) = usable[j - 1], usable[j]
        # t = c / f + m through both points
        c = (t1 - t2) / (1.0 / f1 - 1.0 / f2)
        m = t1 - c / f1
        if c < 0 or m < 0:  # measurement noise: fall back to the nearest point's prior split
            f0, t0 = min(usable, key=lambda p: abs(p[0] - khz))
            a = self.compute_fraction
            return t0 * (a * f0 / khz + (1.0 - a))
        return c / khz + m


class Corrections:
    """A high quantile of recent measured / predicted latency ratios per (model, processor).

    A ratio is only updated by frames of that model on that processor. Once the models have
    left a processor, its ratio says nothing new; what the board reports of that processor's
    load then does (:meth:`note_load`): while another program visibly keeps it busy, the
    ratio holds (going back would only meet the interference again: the ping-pong of a decaying
    estimate); when that load falls to under half its peak, the interference has gone and the
    ratio returns at once to its recent calm value (below ``calm_ratio``, or 1): a return within
    a telemetry period, not a half-life, to the configuration chosen before. While another
    model still runs there, the models' own load is only predicted; a change of the measured
    load beyond what the change of that prediction explains is the sign instead (a rise holds,
    a fall releases). Where the board shows
    neither (interference through memory, no telemetry), the ratio decays towards 1 with
    ``half_life_s`` so the processor is tried again; a model back on the processor starts from
    that decayed ratio.
    """

    def __init__(
        self,
        window: int,
        half_life_s: float,
        bounds: tuple[float, float],
        *,
        foreign_load_min: float = 0.1,
        settle_s: float = 1.0,
        calm_ratio: float = 1.15,
    ) -> None:
        self.window = window
        self.half_life_s = half_life_s
        self.lo, self.hi = bounds
        self.foreign_load_min = foreign_load_min
        self.settle_s = settle_s  # load readings this soon after the last frame hold our own work
        self._ratios: dict[tuple[str, str], deque[float]] = {}
        self._stamp: dict[tuple[str, str], float] = {}
        self._peak: dict[str, float] = {}  # per processor left: highest foreign load seen since
        self._used: dict[str, float] = {}  # per processor: stamp of its last ratio update
        self.calm_ratio = calm_ratio
        # per pair: its last factors below calm_ratio; the interference gone, the lowest of them
        # returns (the quantile of a calm ring wanders; its top would delay the return)
        self._calm: dict[tuple[str, str], deque[float]] = {}
        self._last_load: dict[str, tuple[float, float]] = {}  # per processor: (measured, own)
        self._rise: dict[str, float] = {}  # per processor in use: foreign load seen arriving

    def add(
        self, model: str, processor: str, measured_ms: float, predicted_ms: float, stamp_s: float
    ) -> None:
        ratio = min(max(measured_ms / predicted_ms, self.lo), self.hi)
        key = (model, processor)
        ring = self._ratios.get(key)
        if ring is None:
            ring = self._ratios[key] = deque(maxlen=self.window)
        elif stamp_s >= self._stamp[key] + self.settle_s:
            # back on the processor after a while: its old ratios count as much as they had
            # decayed to, not at full strength again (a co-runner's ratios would otherwise
            # return with the first new frame and send the model straight back)
            ring = self._ratios[key] = deque([self.factor(model, processor, stamp_s)], self.window)
        ring.append(ratio)
        self._stamp[key] = self._used[processor] = stamp_s
        k = self._quantile(ring)
        if k < self.calm_ratio and len(ring) == self.window:  # a full ring of this stay's frames
            self._calm.setdefault(key, deque(maxlen=self.window)).append(k)
        self._peak.pop(processor, None)  # back on it: its own frames speak again

    def note_load(self, processor: str, utilisation: float, own: float, stamp_s: float) -> None:
        """The board's measured busy fraction of ``processor`` at ``stamp_s``, and the models'
        own share of it as last predicted (``own``): the rest is other programs'."""
        prev = self._last_load.get(processor)
        self._last_load[processor] = (utilisation, own)
        used = self._used.get(processor)
        if used is None:
            return  # never used
        if stamp_s < used + self.settle_s:
            # Still in use: ``own`` is only a prediction, often off by a factor (a launch-bound
            # model barely loads the GPU), so ``utilisation - own`` says little. The change
            # of the measured load beyond what the change of that prediction explains does:
            # another program arrived (hold the ratios of the models that leave for it) or
            # left (they may return: two models, one stayed on the GPU)
            if prev is None or prev[1] <= 0.0:
                return
            unexplained = utilisation - prev[0] * own / prev[1]
            rise = self._rise.get(processor, 0.0)
            if unexplained >= self.foreign_load_min:
                self._rise[processor] = rise + unexplained
            elif -unexplained >= max(self.foreign_load_min, 0.5 * rise):
                self._release(processor, stamp_s, gone_before_s=stamp_s - self.settle_s)
                self._rise.pop(processor, None)
            return
        self._rise.pop(processor, None)  # left by every model: the foreign load itself speaks
        foreign = max(0.0, utilisation - own)
        peak = self._peak.get(processor, 0.0)
        if peak >= self.foreign_load_min and foreign < 0.5 * peak:
            self._release(processor, stamp_s)
            self._used[processor] = stamp_s  # calm holds as of now
            self._peak.pop(processor)
        elif foreign > peak:
            self._peak[processor] = foreign

    def _release(self, processor: str, stamp_s: float, gone_before_s: float = math.inf) -> None:
        """The interference on ``processor`` has gone: the ratios of the models that left it
        before ``gone_before_s`` return to the lowest of their recent calm values."""
        for key in [k for k in self._ratios if k[1] == processor]:
            if self._stamp[key] >= gone_before_s:
                continue  # still there: its own frames speak
            calm = min(self._calm[key]) if key in self._calm else None
            self._ratios[key] = deque([] if calm is None else [calm], maxlen=self.window)
            self._stamp[key] = stamp_s

    def factor(self, model: str, processor: str, now_s: float) -> float:
        key = (model, processor)
        ring = self._ratios.get(key)
        if not ring:
            return 1.0
        k = self._quantile(ring)
        age = max(0.0, now_s - self._stamp[key])
        if (
            age <= 0
            or max(self._peak.get(processor, 0.0), self._rise.get(processor, 0.0))
            >= self.foreign_load_min
        ):
            return k  # held while another program visibly loads the processor
        # Decay in log space towards 1.
        return math.exp(math.log(k) * 0.5 ** (age / self.half_life_s))

    @staticmethod
    def _quantile(ring: deque[float]) -> float:
        # a high quantile, not the median: frames that ran alone and frames that shared the
        # board alternate, and the manager must plan for the slower ones
        ordered = sorted(ring)
        return ordered[min(len(ordered) - 1, (3 * len(ordered)) // 4)]

    def clear(self) -> None:
        self._calm.clear()
        self._ratios.clear()
        self._stamp.clear()
        self._peak.clear()
        self._used.clear()
        self._last_load.clear()
        self._rise.clear()


class PowerModel:
    """Board power ``board_static_w + sum over processors of P_p(f_p, load_p)``, times an online
    correction (median of measured / predicted total power)."""

    def __init__(
        self,
        board: Board,
        priors: Mapping[str, ProcessorPower],
        board_static_w: float,
        window: int = 9,
    ) -> None:
        self.board = board
        self.board_static_w = board_static_w
        self._priors: dict[str, ProcessorPower] = {}
        for p in board.processors:
            prior = priors.get(p.name) or priors.get(p.kind.value)
            if prior is None:
                raise ManagerConfigError(
                    f"manager.power: no power prior for processor {p.name!r} "
                    f"(give one under its name or kind {p.kind.value!r})"
                )
            self._priors[p.name] = prior
        self._ratios: deque[float] = deque(maxlen=window)

    def _v(self, p: Processor, khz: int) -> float:
        prior = self._priors[p.name]
        table = p.frequencies_khz
        if not table or khz <= 0 or table[-1] == table[0]:
            return 1.0
        x = (min(max(khz, table[0]), table[-1]) - table[0]) / (table[-1] - table[0])
        return prior.v_min_ratio + (1.0 - prior.v_min_ratio) * x

    def idle_w(self, p: Processor, khz: int) -> float:
        return self._priors[p.name].static_w * self._v(p, khz)

    def busy_w(self, p: Processor, khz: int) -> float:
        """Extra power of ``p`` fully busy (all cores) at ``khz`` over idle."""
        top = p.max_frequency_khz or 0
        rel = khz / top if top and khz > 0 else 1.0
        v = self._v(p, khz)
        return self._priors[p.name].dynamic_w * rel * v * v

    def processor_w(self, p: Processor, khz: int, load: float) -> float:
        """``load``: busy fraction times the share of cores in use (CPU), in [0, 1]."""
        return self.idle_w(p, khz) + min(max(load, 0.0), 1.0) * self.busy_w(p, khz)

    def curves(self, p: Processor, table: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Idle and full-load extra power of ``p`` at each frequency of ``table`` (arrays)."""
        idle = np.array([self.idle_w(p, f) for f in table], dtype=np.float64)
        busy = np.array([self.busy_w(p, f) for f in table], dtype=np.float64)
        return idle, busy

    def board_w(self, per_processor: Iterable[float]) -> float:
        return (self.board_static_w + sum(per_processor)) * self.correction

    def observe(self, measured_w: float, predicted_w: float) -> None:
        if predicted_w > 0 and math.isfinite(measured_w) and measured_w > 0:
            self._ratios.append(min(max(measured_w / predicted_w, 0.25), 4.0))

    @property
    def correction(self) -> float:
        return statistics.median(self._ratios) if self._ratios else 1.0
