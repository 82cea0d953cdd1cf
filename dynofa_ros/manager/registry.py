"""The hierarchical Dynamic-OFA manager and the baselines it is compared with, behind one interface.

``POLICIES`` (names for :func:`make_policy`):

* ``dynofa``: the hierarchical manager. Application level: per model, the family member (and,
  with the system level, its processor and threads) maximising
  ``priority * accuracy_weight * top1 - energy_weight * board power`` subject to predicted
  latency <= target * (1 - margin), the accuracy floor and the energy budget the mission /
  battery allow. System level: for each candidate the lowest frequencies meeting its target
  (least energy under the power model), never above the thermal cap; several models are placed
  jointly (their best few candidates each, with contention) and share the board's frequencies.
  Feedback: latency corrections from measured latency (interference), hysteresis (a current
  configuration is kept within a wider band, a change must gain ``switch_gain``), dwell time.
  Battery below ``battery_low``: the saving level (and power mode, when configured).
* ``static-performance``: the most accurate member on the family's processor, every frequency at
  the top (Linux's ``performance`` governor).
* ``static-schedutil``: one member (the most accurate meeting the target at the top frequency);
  frequencies are left to the board's governor (Linux's schedutil on the board's measured
  utilisation), never pinned.
* ``step``: the original Dynamic-OFA demo's controller: the mean latency of a window of frames;
  over the target, one member down; under ``step_up_ratio`` of it (or below the accuracy floor),
  one member up; frequencies left to the platform (no DVFS).
* ``switch-only``: ``dynofa``'s application level alone (members; static processor / threads;
  frequencies at the top usable step, under the thermal cap).
* ``dvfs-only``: ``dynofa``'s system level alone (static member; processor, threads and
  frequencies chosen).
* ``oracle``: the clairvoyant reference: plays a schedule planned with the whole scenario and
  the board's true cost model known (:mod:`~dynofa_ros.manager.oracle`); the runner hands it over.
"""

from __future__ import annotations

from collections.abc import Callable

from dynofa_ros.manager.baselines import (
    StaticPerformance,
    StaticSchedutil,
    Step,
    dvfs_only,
    switch_only,
)
from dynofa_ros.manager.dynofa import DynOFA
from dynofa_ros.manager.oracle import Oracle
from dynofa_ros.manager.policy import Policy
from dynofa_ros.manager.types import ManagerConfigError

_FACTORIES: dict[str, Callable[[], Policy]] = {
    "dynofa": DynOFA,
    "static-performance": StaticPerformance,
    "static-schedutil": StaticSchedutil,
    "step": Step,
    "switch-only": switch_only,
    "dvfs-only": dvfs_only,
    "oracle": Oracle,
}
POLICIES: tuple[str, ...] = tuple(_FACTORIES)


def make_policy(name: str) -> Policy:
    """A fresh policy by name (one of :data:`POLICIES`)."""
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise ManagerConfigError(
            f"unknown policy {name!r} (one of: {', '.join(POLICIES)})"
        ) from None
