"""The ``oracle`` policy: plays a schedule planned in advance by a clairvoyant reference.

The schedule (``dynofa_ros.evaluation.oracle`` computes it from the whole scenario and the
simulated board's true cost model) lists, per interval between scenario events, the configuration
of every model. This policy only plays it, so the oracle runs in any runner like a policy: the
runner hands it the schedule before the run (:meth:`RuntimeManager.foresee
<dynofa_ros.manager.runtime.RuntimeManager.foresee>`) and steps the manager at each entry's time
(:meth:`Oracle.due` makes the manager plan then, with or without new readings).

Times: an entry's ``t_s`` is scenario time; the manager's clock is ``origin_s + t_s``. ``lead_s``
plays an entry that much early: a decision applies to the frames captured after it
(``perception.command_due``), so a runner that wants the first frame of an interval to run the
interval's configuration passes a lead shorter than a frame period.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dynofa_ros.configuration import Configuration
from dynofa_ros.manager.inputs import InputStore
from dynofa_ros.manager.policy import Policy
from dynofa_ros.manager.types import Choice, ManagerConfigError


@dataclass(frozen=True)
class ScheduleEntry:
    """From ``t_s`` (scenario seconds) on: each model's configuration, the latency target in
    force, and what the oracle's cost model predicts for it (latency per model, board power)."""

    t_s: float
    configs: Mapping[str, Configuration]
    targets_ms: Mapping[str, float]
    latency_ms: Mapping[str, float]
    accuracy: Mapping[str, float]
    power_w: float
    why: str = ""  # what starts the interval (event names)


Schedule = tuple[ScheduleEntry, ...]


def check_schedule(schedule: Sequence[ScheduleEntry], models: Sequence[str]) -> Schedule:
    """A schedule in time order with every model in every entry; else a one-line error."""
    out = tuple(schedule)
    if not out:
        raise ManagerConfigError("oracle schedule: no entry (at least the one at t = 0)")
    want = set(models)
    last = -math.inf
    for i, e in enumerate(out):
        if not math.isfinite(e.t_s) or e.t_s <= last:
            raise ManagerConfigError(
                f"oracle schedule: entries[{i}].t_s = {e.t_s} is not after the previous entry's "
                f"({last}); entries must be in increasing time order"
            )
        last = e.t_s
        if set(e.configs) != want:
            raise ManagerConfigError(
                f"oracle schedule: entries[{i}] configures {sorted(e.configs)}, the manager "
                f"serves {sorted(want)}"
            )
    return out


class Oracle(Policy):
    name = "oracle"
    description = "clairvoyant reference: a schedule planned with the whole scenario known"

    def reset(self) -> None:
        self.schedule: Schedule | None = None
        self.origin_s = 0.0
        self.lead_s = 0.0
        self._times: list[float] = []
        self._played = -1

    @property
    def dwell_s(self) -> float:
        return 0.0

    def foresee(self, schedule: Sequence[ScheduleEntry], origin_s: float, lead_s: float) -> None:
        """Take the schedule to play; each configuration must be one the manager can send."""
        ctx = self.ctx
        sched = check_schedule(schedule, list(ctx.specs))
        for i, e in enumerate(sched):
            for m, c in e.configs.items():
                where = f"oracle schedule: entries[{i}].{m}"
                opts = ctx.options[m]
                o = opts.get(c.processor)
                if o is None:
                    raise ManagerConfigError(
                        f"{where}.processor {c.processor!r} is not one of: {', '.join(opts)}"
                    )
                if o.row(c.subnet_id, c.threads) is None:
                    ids = ", ".join(dict.fromkeys(o.member_ids))
                    raise ManagerConfigError(
                        f"{where}: member {c.subnet_id!r} with {c.threads} thread(s) is not a "
                        f"candidate on {c.processor} (members: {ids}; threads: "
                        f"{', '.join(map(str, sorted(set(o.threads.tolist()))))})"
                    )
                for name, khz in (("cpu", c.cpu_frequency_khz), ("cuda", c.gpu_frequency_khz)):
                    table = ctx.tables.get(name, (0,))
                    if khz and khz not in table:
                        raise ManagerConfigError(
                            f"{where}: {name} frequency {khz} kHz is not in the usable table "
                            f"({table[0]}..{table[-1]} kHz)"
                        )
        if not (math.isfinite(lead_s) and lead_s >= 0):
            raise ManagerConfigError(f"oracle: lead_s {lead_s} must be >= 0 s")
        self.schedule = sched
        self.origin_s = float(origin_s)
        self.lead_s = float(lead_s)
        self._times = [self.origin_s + e.t_s - self.lead_s for e in sched]
        self._played = -1

    def _index(self, now_s: float) -> int:
        """The entry in force at ``now_s`` (the first one before the schedule starts)."""
        return max(0, bisect.bisect_right(self._times, now_s) - 1)

    def due(self, now_s: float) -> bool:
        return self.schedule is not None and self._index(now_s) != self._played

    def unplayed(self, now_s: float) -> float | None:
        """The time of the entry in force at ``now_s`` when it has not been played yet (a live
        manager steps at that time as soon as its clock reaches it), else ``None``."""
        if self.schedule is None:
            return None
        i = self._index(now_s)
        return self._times[i] if i != self._played and self._times[i] <= now_s else None

    def plan(
        self, inputs: InputStore, now_s: float, current: Mapping[str, Choice]
    ) -> dict[str, Choice] | None:
        if self.schedule is None:
            raise ManagerConfigError(
                "policy 'oracle' has no schedule: the runner must compute it from the scenario "
                "(dynofa_ros.evaluation.oracle) and hand it over with RuntimeManager.foresee"
            )
        i = self._index(now_s)
        if i == self._played and current:
            return None
        self._played = i
        e = self.schedule[i]
        why = f" ({e.why})" if e.why else ""
        return {
            m: Choice(
                config=c,
                predicted_latency_ms=float(e.latency_ms.get(m, 0.0)),
                predicted_accuracy=float(e.accuracy.get(m, 0.0)),
                predicted_power_w=float(e.power_w),
                latency_target_ms=float(e.targets_ms[m]),
                reason=f"oracle: planned for t = {e.t_s:.3f} s{why}",
            )
            for m, c in e.configs.items()
        }
