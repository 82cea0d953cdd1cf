"""A one-item mailbox: the newest item replaces an unprocessed older one, which is counted as
dropped. The perception node's subscription callback puts camera frames in; its worker thread
takes the newest, so it never works through a queue of stale frames."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Latest(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Store ``item``; return True when it replaced one that was never taken."""
        with self._cond:
            replaced = self._item is not None
            if replaced:
                self.dropped += 1
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout_s: float | None = None) -> T | None:
        """The newest item, waiting up to ``timeout_s``; ``None`` on time-out or when closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout_s)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
            self._item = None


class StampGaps:
    """Frames lost before the node, inferred from the camera stamps of the frames that arrived.

    A camera publishes at a steady period, so a gap of k periods between two consecutive
    arrivals means k-1 frames never reached the subscriber (DDS dropped them: ROS 2 images carry
    no sequence number). The period is a low quantile of the recent gaps, which stays right
    while at least a few percent of consecutive frames arrive in pairs. Losses are only counted
    while the source looks periodic (most recent gaps within ``tolerance`` of a whole number of
    periods): a publisher that sends when it likes (a test, an event camera) has no losses to
    infer. A stamp going backwards (a clock jump, a bag loop) restarts the estimate; a gap of
    more than ``pause_periods`` periods is a paused camera, not a loss.
    """

    def __init__(self, *, window: int = 100, min_gaps: int = 8, quantile: float = 0.05,
                 pause_periods: int = 50, tolerance: float = 0.25,
                 periodic_share: float = 0.8) -> None:  # fmt: skip
        from collections import deque

        self._gaps: deque[float] = deque(maxlen=window)
        self._min_gaps = min_gaps
        self._quantile = quantile
        self._pause = pause_periods
        self._tolerance = tolerance
        self._periodic_share = periodic_share
        self._last: float | None = None
        self.received = 0
        self.lost = 0

    @property
    def period_s(self) -> float | None:
        """The camera period as observed (``None`` until enough frames arrived, or while the
        source does not look periodic)."""
        if len(self._gaps) < self._min_gaps:
            return None
        ordered = sorted(self._gaps)
        low = ordered[int(self._quantile * (len(ordered) - 1))]
        if low <= 0:
            return None
        # the gaps of one period cluster above the low quantile; their median, then the gaps'
        # total over their whole numbers of periods (jitter averages out)
        single = [g for g in ordered if g < 1.5 * low]
        period = single[len(single) // 2]
        for _ in range(2):
            period = sum(ordered) / sum(max(1, round(g / period)) for g in ordered)
        off = sorted(abs(g / period - round(g / period)) for g in ordered)
        on_grid = sum(r <= self._tolerance for r in off)
        steady = off[len(off) // 2] <= self._tolerance / 2.5  # the typical gap is on the grid
        return period if steady and on_grid >= self._periodic_share * len(off) else None

    def add(self, stamp_s: float) -> int:
        """Count one arrived frame; return the frames inferred lost just before it."""
        self.received += 1
        last, self._last = self._last, stamp_s
        if last is None or stamp_s == last:
            return 0
        gap = stamp_s - last
        if gap < 0:
            self._gaps.clear()
            return 0
        self._gaps.append(gap)
        period = self.period_s
        if period is None:
            return 0
        missing = round(gap / period) - 1
        if missing <= 0 or missing > self._pause:
            return 0
        self.lost += missing
        return missing
