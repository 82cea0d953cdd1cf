"""The engine interface over a family's records, for families with no network (``builtin:``).

A ``builtin:<name>`` family (the published Dynamic-OFA members, :mod:`dynofa_ros.manager.families`)
has each member's accuracy and simulator workload but no weights. :class:`RecordedEngine` lets a
:class:`~dynofa_ros.perception.PerceptionSession` drive such a family exactly as it drives an
:class:`~dynofa_ros.engine.Engine` (switch members, cost frames on the simulated board): its
"inference" looks at no pixels and runs no network, so a frame has no prediction (no class) and a
run's accuracy is the family's recorded accuracy of the members that ran
(:mod:`dynofa_ros.evaluation.metrics`, ``expected_accuracy``).
"""

from __future__ import annotations

import math
from typing import Any

from dynofa_ros.engine.engine import InferenceResult
from dynofa_ros.engine.errors import EngineError
from dynofa_ros.family import Family
from dynofa_ros.platform.workload import Workload

CPU = "cpu"


class RecordedEngine:
    """Members, switching, accuracy and workloads of ``family``; no network, no pixels.

    Like an engine prepared for the CPU with one thread: on the simulated board
    :class:`~dynofa_ros.perception.SimulatedTarget` presents the board's processors and threads.
    """

    processors: tuple[str, ...] = (CPU,)
    threads: tuple[int, ...] = (1,)
    labels: tuple[str, ...] = ()

    def __init__(self, family: Family) -> None:
        self.family = family
        self._members = tuple(m.id for m in family.members)
        if not self._members:
            raise EngineError(f"family {family.name} has no members")
        self._workloads: dict[str, Workload] = {}
        for m in family.members:
            if m.workload is None:
                raise EngineError(
                    f"family {family.name}: member {m.id!r} has no 'workload' (a family without "
                    "a network must carry its members' workloads for the simulated board)"
                )
            self._workloads[m.id] = Workload.from_dict(m.workload)
        self._active: str | None = self._members[0]

    @property
    def members(self) -> tuple[str, ...]:
        return self._members

    @property
    def closed(self) -> bool:
        return self._active is None

    @property
    def active(self) -> tuple[str, str, int]:
        return self._current(), CPU, 1

    def _current(self) -> str:
        if self._active is None:
            raise EngineError("engine is closed; load a new one")
        return self._active

    def _member(self, member_id: Any) -> str:
        if not isinstance(member_id, str) or member_id not in self._workloads:
            raise EngineError(
                f"member_id {member_id!r} is not a member of family {self.family.name} "
                f"(one of: {', '.join(self._members)})"
            )
        return member_id

    def accuracy(self, member_id: str) -> float | None:
        """Top-1 accuracy the family records for the member."""
        acc = self.family.member(self._member(member_id)).accuracy
        return None if acc is None or not math.isfinite(acc) else float(acc)

    def workload(self, member_id: str) -> Workload:
        return self._workloads[self._member(member_id)]

    def switch(self, member_id: str, processor: str = CPU, threads: int | None = None) -> None:
        self._current()
        member = self._member(member_id)
        if processor not in self.processors:
            raise EngineError(f"processor {processor!r} is not prepared (prepared: cpu)")
        if threads is not None and threads not in self.threads:
            raise EngineError(f"threads = {threads!r} is not prepared (prepared: 1)")
        self._active = member

    def infer_blank(self) -> InferenceResult:
        """A frame without pixels: the active member "ran" it; no class, no time here."""
        return InferenceResult(self._current(), CPU, 1, (), (), (), 0.0, 0.0, 0.0)

    def infer_raw(self, *_frame: Any, **_kw: Any) -> InferenceResult:
        """A camera frame: its pixels are not looked at (no network to run them)."""
        return self.infer_blank()

    infer_compressed = infer_raw
    infer_array = infer_raw

    def close(self) -> None:
        self._active = None
