"""Metrics on hand-built records whose answers are known."""

from __future__ import annotations

import pytest

from dynofa_ros.evaluation.metrics import SETTLE_FRAMES, compute, reactions
from dynofa_ros.evaluation.records import (
    Event,
    FrameRecord,
    ModelInfo,
    RunInfo,
    RunResults,
    Sample,
    frame_record,
)


def _frame(t: float, latency: float, *, model: str = "m", subnet: str = "a", target: float = 55,
           label: int | None = None, predicted: int | None = 1, threads: int = 2,
           energy: float | None = 0.1, seq: int = 0) -> FrameRecord:  # fmt: skip
    return frame_record(
        t_s=t,
        model=model,
        frame_seq=seq,
        subnet_id=subnet,
        latency_ms=latency,
        target_ms=target,
        predicted=predicted,
        label=label,
        processor="cpu",
        threads=threads,
        energy_j=energy,
        power_w=None if energy is None else energy / (latency / 1000),
    )


def test_frame_record_derives_miss_and_correct() -> None:
    f = _frame(0, 60, target=55, label=1, predicted=1)
    assert f.deadline_missed is True and f.correct is True
    f = _frame(0, 55, target=55, label=2, predicted=1)
    assert f.deadline_missed is False and f.correct is False  # equal to the target is in time
    f = _frame(0, 55, target=0, label=None)
    assert f.target_ms is None and f.deadline_missed is None and f.correct is None


def test_latency_misses_accuracy_energy_battery_temperature_throttling() -> None:
    subnets = ["a", "a", "b", "b", "b", "a", "a", "a", "a", "a"]
    labels = [1, 1, 1, 1, 1, 1, 0, 0, None, None]  # predicted is always 1: 6 of 8 correct
    frames = [
        _frame(0.5 * i, 10.0 * (i + 1), subnet=subnets[i], label=labels[i],
               threads=4 if i == 9 else 2, seq=i + 1)
        for i in range(10)
    ]  # fmt: skip
    samples = [
        Sample(0.0, "battery", 0.9), Sample(4.0, "battery", 0.7),
        Sample(0.0, "temperature/cpu", 41.0), Sample(3.0, "temperature/cpu", 58.5),
        Sample(2.0, "temperature/gpu", 57.0),
        Sample(0.0, "throttled", 0.0), Sample(1.0, "throttled", 1.0),
        Sample(2.5, "throttled", 0.0), Sample(4.0, "throttled", 1.0),
        Sample(0.0, "power", 4.0), Sample(2.0, "power", 6.0),
    ]  # fmt: skip
    run = RunResults(RunInfo("r", policy="p", duration_s=5.0), frames, samples=samples)
    rm = compute(run)
    assert rm.duration_s == 5.0 and rm.name == "r" and rm.policy == "p"
    m = rm.model("m")
    assert m.frames == 10 and m.target_ms == 55
    assert m.latency_p50_ms == pytest.approx(55.0)
    assert m.latency_p95_ms == pytest.approx(95.5)
    assert m.latency_p99_ms == pytest.approx(99.1)
    assert m.latency_mean_ms == pytest.approx(55.0)
    assert m.miss_rate == pytest.approx(0.5)  # 60 ... 100 ms miss a 55 ms target
    assert m.accuracy == pytest.approx(6 / 8) and m.frames_with_ground_truth == 8
    assert m.energy_j == pytest.approx(1.0) and m.average_power_w == pytest.approx(0.2)
    assert m.battery_end == pytest.approx(0.7)
    assert m.max_temperature_c == pytest.approx(58.5)
    assert m.time_throttled_s == pytest.approx(1.5 + 1.0)
    assert m.switches == 2 and m.config_changes == 3 and m.subnets_used == 2
    assert m.commands == 0 and m.reactions == ()
    assert rm.board_energy_j == pytest.approx(4.0 * 2 + 6.0 * 3)
    assert rm.board_average_power_w == pytest.approx(26.0 / 5)


def test_unknowns_stay_unknown() -> None:
    frames = [_frame(0.1 * i, 20, target=0, energy=None) for i in range(3)]
    m = compute(RunResults(RunInfo("r"), frames)).model("m")
    assert m.miss_rate is None and m.accuracy is None and m.frames_with_ground_truth == 0
    assert m.energy_j is None and m.average_power_w is None and m.battery_end is None
    assert m.max_temperature_c is None and m.time_throttled_s is None
    assert m.target_ms is None and m.latency_p50_ms == pytest.approx(20)


def test_models_are_separate_and_listed_from_the_run_info() -> None:
    frames = [_frame(0, 10, model="a"), _frame(0, 30, model="b"), _frame(1, 50, model="b")]
    info = RunInfo("r", models={"c": ModelInfo(60.0, "camera")})
    rm = compute(RunResults(info, frames))
    assert [m.model for m in rm.models] == ["c", "a", "b"]
    assert rm.model("c").frames == 0 and rm.model("c").latency_p50_ms is None
    assert rm.model("b").latency_p50_ms == pytest.approx(40)
    assert rm.model("a").frames == 1


def test_frames_throttled_flags_give_throttled_time_without_a_series() -> None:
    flags = [False, True, True, False]
    frames = [dataclass_replace(_frame(float(i), 10), throttled=f) for i, f in enumerate(flags)]
    m = compute(RunResults(RunInfo("r", duration_s=4.0), frames)).model("m")
    assert m.time_throttled_s == pytest.approx(2.0)


def dataclass_replace(f: FrameRecord, **kw: object) -> FrameRecord:
    import dataclasses

    return dataclasses.replace(f, **kw)


def test_reaction_to_events() -> None:
    """A co-runner at 5 s: two misses, reconfiguration at 7 s, within target after; it stops at
    15 s: no miss, the manager goes back to the big sub-network at 17 s."""
    frames = []
    for t in range(20):
        latency = 80.0 if t in (5, 6) else 45.0 if t == 7 else 40.0
        subnet = "small" if 7 <= t < 17 else "big"
        frames.append(_frame(float(t), latency, subnet=subnet, target=50))
    events = [Event(5.0, "corunner", "app starts"), Event(15.0, "corunner", "app stops"),
              Event(16.0, "priority", "other model only", model="other")]  # fmt: skip
    run = RunResults(RunInfo("r", duration_s=20.0), frames, events=events)
    start, stop = compute(run).model("m").reactions
    assert (start.event_t_s, start.kind, start.event) == (5.0, "corunner", "app starts")
    assert start.frames == 10 and start.misses == 2
    assert start.reconfigured_after_s == pytest.approx(2.0)
    assert start.transient_frames == 2 and start.recovered_after_s == pytest.approx(2.0)
    assert start.within_target_after == pytest.approx(1.0)
    assert stop.frames == 5 and stop.misses == 0  # the other model's event does not cut it
    assert stop.reconfigured_after_s == pytest.approx(2.0)
    assert stop.transient_frames == 0 and stop.recovered_after_s == 0.0


def test_settling_needs_consecutive_frames_within_target() -> None:
    assert SETTLE_FRAMES == 5
    lat = [80, 40, 80, 40, 40, 40, 40, 40, 80, 40]  # a miss after the settled run counts later
    frames = [_frame(float(t), x, target=50) for t, x in enumerate(lat)]
    (r,) = reactions([Event(0.0, "x", "x")], frames, "m", 10.0)
    assert r.misses == 3 and r.transient_frames == 3
    assert r.recovered_after_s == pytest.approx(3.0)
    assert r.within_target_after == pytest.approx(6 / 7)
    assert r.reconfigured_after_s is None  # nothing before the event to compare with
    # never settles: no transient, no recovery
    frames = [_frame(float(t), 80 if t % 2 else 40, target=50) for t in range(10)]
    (r,) = reactions([Event(0.0, "x", "x")], frames, "m", 10.0)
    assert r.transient_frames is None and r.recovered_after_s is None and r.misses == 5
    # a shorter run of good frames is enough when the window ends with it
    frames = [_frame(float(t), 80 if t < 8 else 40, target=50) for t in range(10)]
    (r,) = reactions([Event(0.0, "x", "x")], frames, "m", 10.0)
    assert r.transient_frames == 8 and r.recovered_after_s == pytest.approx(8.0)


def test_board_energy_prefers_the_counter_and_power_modes_are_listed() -> None:
    frames = [dataclass_replace(_frame(float(i), 10), power_mode=m) for i, m in
              enumerate([2, 2, None, 0])]  # fmt: skip
    power = [Sample(0.0, "power", 4.0), Sample(2.0, "power", 6.0)]
    counter = [Sample(0.5, "board_energy", 1000.0), Sample(3.5, "board_energy", 1015.0)]
    run = RunResults(RunInfo("r", duration_s=4.0), frames, samples=power + counter)
    rm = compute(run)
    assert rm.board_energy_j == pytest.approx(15.0) and rm.board_energy_source == "counter"
    assert rm.board_average_power_w == pytest.approx(5.0)  # over the 3 s the counter covers
    m = rm.model("m")
    assert m.power_modes == (0, 2) and m.config_changes == 2  # 2 -> None -> 0
    # a counter that went backwards (board restarted) is not trusted: power instead
    reset = [Sample(0.5, "board_energy", 50.0), Sample(3.5, "board_energy", 2.0)]
    rm = compute(RunResults(RunInfo("r", duration_s=4.0), frames, samples=power + reset))
    assert rm.board_energy_j == pytest.approx(4.0 * 2 + 6.0 * 2)
    assert rm.board_energy_source == "power" and rm.board_average_power_w == pytest.approx(5.0)
    rm = compute(RunResults(RunInfo("r", duration_s=4.0), frames))
    assert (rm.board_energy_j, rm.board_average_power_w, rm.board_energy_source) == (
        None, None, None,
    )  # fmt: skip
