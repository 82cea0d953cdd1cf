"""A scenario as one time-ordered stream of items, without a bag: what the in-process mode plays.

The generator (:mod:`.generate`) writes exactly this stream into a bag, so a live replay of the
bag and an in-process run of the scenario see the same frames, labels and events in the same
order. Use::

    from dynofa_ros.evaluation.scenario import load, resolve
    from dynofa_ros.evaluation.timeline import FrameItem, iter_timeline

    scenario = load(resolve("corunner_interference"))   # a YAML path or a bundled name
    for item in iter_timeline(scenario):
        if isinstance(item, FrameItem):                  # or: item.kind == "frame"
            item.pixels, item.encoding, item.label       # ground truth: item.label (None: none)
        elif item.kind == "priority": item.change        # PriorityChange (level, targets, ...)
        elif item.kind == "battery": item.soc            # state of charge in [0, 1]
        elif item.kind == "ambient": item.celsius
        elif item.kind == "corunner": item.event         # CoRunnerEvent (name, processor, share)

Every item has ``t`` (seconds from scenario start), ``stamp_ns`` (the header / bag stamp:
``scenario.start_ns + round(t * 1e9)``) and ``kind``. Order: by stamp; at equal stamps the events
come before the frames (a frame sees the state that holds at its time), events in the order
priority, battery, ambient, co-runner, and frames of several cameras in the scenario's camera
order. The priority change at t = 0 (the initial level) is an item too; battery and ambient are
sampled at their ``rate_hz`` from t = 0 (linear between keyframes).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from dynofa_ros.evaluation.camera import FashionMnistFrames, open_source
from dynofa_ros.evaluation.scenario import (
    CameraSpec,
    CoRunnerEvent,
    PriorityChange,
    Scenario,
)

if TYPE_CHECKING:
    from dynofa_ros.platform.sim import SimulatedXavierNX

# Order of items with equal stamps (first key after the stamp).
_PRIORITY, _BATTERY, _AMBIENT, _CORUNNER, _FRAME = range(5)


@dataclass(frozen=True)
class FrameItem:
    """One camera frame and its ground truth.

    ``pixels``: ``uint8`` ``(H, W, 3)`` for ``rgb8`` / ``bgr8``, ``(H, W)`` for ``mono8`` (``None``
    when iterated with ``images=False``, and always for a ``source: none`` camera). ``index``
    counts this camera's frames from 0 (the ground truth message's ``frame_seq`` is
    ``index + 1``). ``label`` / ``label_name``: the class shown (``None`` for a video source and
    a ``source: none`` camera).
    """

    kind: ClassVar[str] = "frame"
    t: float
    stamp_ns: int
    camera: str
    index: int
    pixels: np.ndarray | None
    encoding: str
    label: int | None
    label_name: str | None


@dataclass(frozen=True)
class PriorityItem:
    kind: ClassVar[str] = "priority"
    t: float
    stamp_ns: int
    change: PriorityChange


@dataclass(frozen=True)
class BatteryItem:
    """Battery state of charge the simulated board must take (``/scenario/battery``)."""

    kind: ClassVar[str] = "battery"
    t: float
    stamp_ns: int
    soc: float
    capacity_wh: float

    def apply(self, board: SimulatedXavierNX) -> None:
        board.set_state_of_charge(self.soc)


@dataclass(frozen=True)
class AmbientItem:
    kind: ClassVar[str] = "ambient"
    t: float
    stamp_ns: int
    celsius: float

    def apply(self, board: SimulatedXavierNX) -> None:
        board.set_ambient(self.celsius)


@dataclass(frozen=True)
class CoRunnerItem:
    """Another program starts (``share > 0``), changes or stops (``share == 0``) its load."""

    kind: ClassVar[str] = "corunner"
    t: float
    stamp_ns: int
    event: CoRunnerEvent

    def apply(self, board: SimulatedXavierNX) -> None:
        board.set_corunner(self.event.name, self.event.processor, self.event.share)


TimelineItem = FrameItem | PriorityItem | BatteryItem | AmbientItem | CoRunnerItem


def stamp_at(scenario: Scenario, t: float) -> int:
    """Bag / header stamp (ns) of scenario time ``t`` (s)."""
    return scenario.start_ns + round(t * 1e9)


def sample_times(rate_hz: float, duration_s: float) -> list[float]:
    """``k / rate_hz`` for every ``k`` with ``k / rate_hz < duration_s`` (at least t = 0)."""
    n = math.ceil(duration_s * rate_hz - 1e-9)
    return [k / rate_hz for k in range(max(n, 1))]


def frame_count(scenario: Scenario) -> int:
    """Frames of every camera together (for progress bars)."""
    return sum(len(c.frame_times(scenario.duration_s)) for c in scenario.cameras)


def events(scenario: Scenario) -> list[TimelineItem]:
    """The scenario's non-frame items, in timeline order."""
    keyed: list[tuple[int, int, int, TimelineItem]] = []

    def add(group: int, t: float, item: TimelineItem) -> None:
        keyed.append((item.stamp_ns, group, len(keyed), item))

    for p in scenario.mission:
        add(_PRIORITY, p.t, PriorityItem(p.t, stamp_at(scenario, p.t), p))
    if scenario.battery is not None:
        b = scenario.battery
        for t in sample_times(b.rate_hz, scenario.duration_s):
            add(_BATTERY, t, BatteryItem(t, stamp_at(scenario, t), float(b.at(t)), b.capacity_wh))
    if scenario.ambient is not None:
        a = scenario.ambient
        for t in sample_times(a.rate_hz, scenario.duration_s):
            add(_AMBIENT, t, AmbientItem(t, stamp_at(scenario, t), float(a.at(t))))
    for c in scenario.corunners:
        add(_CORUNNER, c.t, CoRunnerItem(c.t, stamp_at(scenario, c.t), c))
    keyed.sort(key=lambda k: k[:3])
    return [k[3] for k in keyed]


def iter_frames(
    scenario: Scenario, camera: CameraSpec, *, images: bool = True
) -> Iterator[FrameItem]:
    """One camera's frames in time order (deterministic for the scenario's seed)."""
    times = camera.frame_times(scenario.duration_s)
    if not images or not camera.has_pixels:  # source: none has no pixels to compose
        labels = (
            FashionMnistFrames(camera, scenario.seed) if camera.source == "fashion_mnist" else None
        )
        for i, t in enumerate(times):
            label = labels.label(i) if labels is not None else None
            yield FrameItem(
                t,
                stamp_at(scenario, t),
                camera.name,
                i,
                None,
                camera.encoding,
                label,
                labels.classes[label] if labels is not None and label is not None else None,
            )
        return
    source = open_source(camera, scenario.seed)
    for frame in source.frames(times):
        yield FrameItem(
            frame.t,
            stamp_at(scenario, frame.t),
            camera.name,
            frame.index,
            frame.pixels,
            camera.encoding,
            frame.label,
            frame.label_name,
        )


def iter_timeline(scenario: Scenario, *, images: bool = True) -> Iterator[TimelineItem]:
    """Every frame of every camera and every event, in timeline order (see the module doc).

    Frames are composed lazily, one at a time. ``images=False`` skips composing the pixels
    (``FrameItem.pixels`` is ``None``; labels are still given) for runs that do not look at them.
    Raises :class:`~.scenario.ScenarioError` when a camera source cannot be opened (missing
    dataset directory or video file) at the first ``next()``, before any item.
    """
    streams: list[Iterator[tuple[int, int, int, int, TimelineItem]]] = [
        ((item.stamp_ns, _event_group(item), i, 0, item) for i, item in enumerate(events(scenario)))
    ]
    for cam_index, cam in enumerate(scenario.cameras):
        frames = iter_frames(scenario, cam, images=images)
        streams.append((f.stamp_ns, _FRAME, cam_index, f.index, f) for f in frames)
    for key in heapq.merge(*streams, key=lambda k: k[:4]):
        yield key[4]


def _event_group(item: TimelineItem) -> int:
    return {"priority": _PRIORITY, "battery": _BATTERY, "ambient": _AMBIENT, "corunner": _CORUNNER}[
        item.kind
    ]
