"""What a node says in /diagnostics, one shape for every node: WARN while a condition holds or
shortly after an error, OK again once the cause is gone (a single bad input must not leave a node
WARN forever)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

ERROR_HOLD_S = 10.0  # an error keeps the node WARN this long after it happened


class Health:
    def __init__(self, hold_s: float = ERROR_HOLD_S) -> None:
        self.hold_s = hold_s
        self.last_error = ""  # kept for the diagnostics' values (history), not for the level
        self._error_at = -float("inf")

    def error(self, text: str) -> None:
        self.last_error = text
        self._error_at = time.monotonic()

    def recent_error(self) -> str:
        """The last error if it happened within ``hold_s``, else ``""``."""
        return self.last_error if time.monotonic() - self._error_at <= self.hold_s else ""

    def level(self, conditions: Iterable[str] = ()) -> tuple[bytes, str]:
        """(DiagnosticStatus level, message) from the conditions holding now and recent errors."""
        reasons = [c for c in conditions if c]
        recent = self.recent_error()
        if recent:
            reasons.append(recent)
        if not reasons:
            return DiagnosticStatus.OK, "ok"
        return DiagnosticStatus.WARN, "; ".join(reasons)


def diagnostics(
    name: str,
    level: tuple[bytes, str],
    hardware_id: str,
    values: Mapping[str, object],
    stamp: Time,
) -> DiagnosticArray:
    """One node's ``/diagnostics`` message: ``level`` is ``(level, message)`` (as
    :meth:`Health.level` gives it), ``values`` its key / value pairs in order."""
    status = DiagnosticStatus(
        level=level[0],
        name=name,
        message=level[1],
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
    )
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array
