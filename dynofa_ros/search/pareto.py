"""Pareto fronts over (latency: lower is better, accuracy: higher is better) and family selection.

Pure Python: points are any objects with ``latency_ms`` and ``accuracy`` attributes (e.g.
:class:`Candidate`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar


class Point(Protocol):
    @property
    def latency_ms(self) -> float: ...

    @property
    def accuracy(self) -> float: ...


P = TypeVar("P", bound=Point)


@dataclass(frozen=True)
class Candidate:
    """One evaluated sub-network: its config, latency (ms) and accuracy (fraction)."""

    config: Any
    latency_ms: float
    accuracy: float
    source: str = "search"  # "search" | "random" | ...
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def id(self) -> str:
        return str(getattr(self.config, "id", self.config))


def dominates(a: Point, b: Point, eps_latency: float = 0.0, eps_accuracy: float = 0.0) -> bool:
    """``a`` is at least as fast and at least as accurate as ``b``, and strictly better in one
    (tolerances loosen "at least as": ``a`` may be ``eps`` slower / less accurate)."""
    no_worse = (
        a.latency_ms <= b.latency_ms + eps_latency and a.accuracy >= b.accuracy - eps_accuracy
    )
    better = a.latency_ms < b.latency_ms or a.accuracy > b.accuracy
    return no_worse and better


def pareto_front(points: Iterable[P]) -> list[P]:
    """The non-dominated points, sorted by increasing latency (ties: the more accurate one)."""
    ordered = sorted(points, key=lambda p: (p.latency_ms, -p.accuracy))
    front: list[P] = []
    best = -math.inf
    for p in ordered:
        if p.accuracy > best:
            front.append(p)
            best = p.accuracy
    return front


def front_dominates(front: Sequence[Point], p: Point, eps_accuracy: float = 0.0) -> bool:
    """Whether some point of ``front`` dominates ``p``."""
    return any(dominates(f, p, eps_accuracy=eps_accuracy) for f in front)


def dominated_fraction(
    front: Sequence[Point], others: Sequence[Point], eps_accuracy: float = 0.0
) -> float:
    """Fraction of ``others`` dominated by some point of ``front``."""
    if not others:
        return float("nan")
    return sum(front_dominates(front, p, eps_accuracy) for p in others) / len(others)


def select_spread(front: Sequence[P], k: int) -> list[P]:
    """``k`` points of a front spread evenly over its latency range (fastest and most accurate
    always included); all of it when the front has at most ``k`` points. Sorted by latency."""
    if k < 1:
        raise ValueError(f"family size must be at least 1, got {k}")
    pts = sorted(front, key=lambda p: p.latency_ms)
    if len(pts) <= k:
        return pts
    if k == 1:
        return [max(pts, key=lambda p: p.accuracy)]
    lo, hi = pts[0].latency_ms, pts[-1].latency_ms
    chosen: list[int] = []
    for i in range(k):
        target = lo + (hi - lo) * i / (k - 1)
        order = sorted(range(len(pts)), key=lambda j: abs(pts[j].latency_ms - target))
        for j in order:
            if j not in chosen:
                chosen.append(j)
                break
    return [pts[j] for j in sorted(chosen)]
