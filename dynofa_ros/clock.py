"""Times of periodic ROS timers, shared by the nodes and the fast replay so both tick alike.

An rcl timer created under ``use_sim_time`` before the first ``/clock`` (ROS time 0) keeps the
phase of time 0: it is due at every multiple of its period. A callback runs when the clock has
passed that time, a little late; the nodes act as of the scheduled time, not the late one.
"""

from __future__ import annotations


def period_ns(period_s: float) -> int:
    if not period_s > 0:
        raise ValueError(f"timer period must be > 0 s, got {period_s!r}")
    return round(period_s * 1e9)


def timer_time(now_s: float, period_s: float) -> float:
    """The latest scheduled time of a period-``period_s`` timer at or before ``now_s``."""
    p = period_ns(period_s)
    return (round(now_s * 1e9) // p) * p * 1e-9
