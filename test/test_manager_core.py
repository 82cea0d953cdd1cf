"""The runtime manager's behaviours the ROS manager node relies on, on real family files.

The family is the embedded default's simulated Xavier NX GPU family (the one manager_node loads
for ``platform:=sim-xavier-nx``); the board is the simulated NX. Times are simulated seconds.
"""

from __future__ import annotations

import math

import pytest

from dynofa_ros.family import load_family
from dynofa_ros.manager import (
    BatteryReading,
    LatencyObservation,
    ManagerConfig,
    ManagerConfigError,
    Mission,
    ModelSpec,
    PriorityLevel,
    RuntimeManager,
    TemperatureReading,
    config_from_dict,
    make_policy,
)
from dynofa_ros.manager.families import published_gpu_family
from dynofa_ros.platform.sim import SimulatedXavierNX
from dynofa_ros.resources import models_dir

TARGET_MS = 100.0


@pytest.fixture(scope="module")
def family():
    return load_family(models_dir() / "fmnist_mbv3_small.sim-nx-cuda.family.json")


@pytest.fixture(scope="module")
def published():
    return published_gpu_family()


def _manager(family, policy: str = "dynofa", **config) -> RuntimeManager:
    spec = ModelSpec("model", family, latency_target_ms=TARGET_MS, frame_rate_hz=10.0)
    return RuntimeManager([spec], SimulatedXavierNX(seed=0), policy, ManagerConfig(**config))


def _frame(mgr: RuntimeManager, t: float, latency_ms: float | None = None) -> None:
    d = mgr.current("model")
    assert d is not None
    lat = d.predicted_latency_ms if latency_ms is None else latency_ms
    mgr.observe(
        LatencyObservation(t, "model", lat, d.config.subnet_id, d.config.processor,
                           d.config.threads, d.config.cpu_frequency_khz,
                           d.config.gpu_frequency_khz, d.seq)
    )  # fmt: skip


def _start(mgr: RuntimeManager, level: PriorityLevel = PriorityLevel.NORMAL) -> float:
    assert mgr.observe(Mission(0.0, level))
    assert mgr.observe(BatteryReading(0.0, 0.9, 72.0))
    first = mgr.step(0.0)
    assert len(first) == 1 and first[0].seq == 1
    t = 0.0
    for _ in range(10):  # settle: frames as predicted, a decision or none
        t += 0.1
        _frame(mgr, t)
        mgr.step(t)
    return t


def _energy_per_frame_mj(d) -> float:
    return d.predicted_power_w * d.predicted_latency_ms


@pytest.mark.parametrize(
    ("which", "level"),
    [("published", PriorityLevel.NORMAL), ("family", PriorityLevel.HIGH)],
)
def test_battery_drop_lowers_predicted_power_at_the_next_step(request, which, level) -> None:
    # the published family at NORMAL; the embedded family from HIGH, as the node test does (at
    # NORMAL its chosen member is already its least-power one: nothing left to save)
    mgr = _manager(request.getfixturevalue(which))
    t = _start(mgr, level)
    before = mgr.current("model")
    assert before is not None and before.predicted_latency_ms <= TARGET_MS
    t += 0.1
    assert mgr.observe(BatteryReading(t, 0.1, 72.0))
    # The reaction is bounded by the dwell time since the last change (documented): one step
    # at least dwell_s after it plans with the saving level.
    out = mgr.step(t + mgr.config.dwell_s)
    assert len(out) == 1, mgr.current("model")
    after = out[0]
    assert after.seq > before.seq
    assert after.predicted_power_w < before.predicted_power_w
    assert _energy_per_frame_mj(after) < _energy_per_frame_mj(before)
    assert after.predicted_latency_ms <= TARGET_MS
    assert "saving mode" in after.reason
    # Charge back above battery_low + hysteresis: the saving mode ends.
    t = after.stamp_s + 0.1
    _frame(mgr, t)
    mgr.observe(BatteryReading(t, 0.9, 72.0))
    back = mgr.step(t + mgr.config.dwell_s)
    assert back and "saving mode" not in back[0].reason


@pytest.mark.parametrize("which", ["family", "published"])
def test_critical_mission_raises_accuracy_within_the_target(request, which) -> None:
    """From LOW (energy first) to CRITICAL (accuracy first): a more accurate member, still
    within the target; NORMAL (a watt is worth half a point) sits between them."""
    family = request.getfixturevalue(which)
    accuracy = {}
    for level in (PriorityLevel.LOW, PriorityLevel.NORMAL):
        mgr = _manager(family)
        _start(mgr, level)
        d = mgr.current("model")
        assert d is not None
        accuracy[level] = d.predicted_accuracy
    mgr = _manager(family)
    t = _start(mgr, PriorityLevel.LOW)
    t += 0.1
    assert mgr.observe(Mission(t, PriorityLevel.CRITICAL, reason="test"))
    out = mgr.step(t + mgr.config.dwell_s)
    assert len(out) == 1
    critical = out[0]
    assert critical.predicted_accuracy > accuracy[PriorityLevel.LOW]
    assert accuracy[PriorityLevel.LOW] <= accuracy[PriorityLevel.NORMAL]
    assert accuracy[PriorityLevel.NORMAL] <= critical.predicted_accuracy
    assert critical.predicted_latency_ms <= TARGET_MS
    assert critical.predicted_accuracy == pytest.approx(max(m.accuracy for m in family.members))
    assert "CRITICAL" in critical.reason


def test_stale_battery_holds_a_safe_decision_with_a_counted_warning(family) -> None:
    mgr = _manager(family, stale_after_s=2.0)
    t = _start(mgr)
    held = mgr.current("model")
    assert held is not None
    # frames keep coming, the battery does not: once it is older than stale_after_s the
    # manager re-issues the decision in force, marked as a hold, once
    out = []
    while t < 3.0:
        t += 0.1
        _frame(mgr, t)
        out += mgr.step(t)
    holds = [d for d in out if d.reason.startswith("hold")]
    assert len(holds) == 1
    assert holds[0].config == held.config and holds[0].seq > held.seq
    assert "battery" in holds[0].reason
    assert mgr.warnings.get("battery: stale") == 1
    assert mgr.holding == ("battery",)
    # a mission change while holding changes nothing
    mgr.observe(Mission(t, PriorityLevel.CRITICAL))
    assert mgr.step(t + 1.0) == []
    # a fresh reading ends the hold and the manager plans again
    t += 1.1
    mgr.observe(BatteryReading(t, 0.9, 72.0))
    _frame(mgr, t)
    resumed = mgr.step(t)
    assert mgr.holding == ()
    assert resumed and not resumed[0].reason.startswith("hold")


@pytest.mark.parametrize(
    ("reading", "key"),
    [
        (BatteryReading(1.0, math.nan), "battery.state_of_charge: NaN"),
        (BatteryReading(1.0, -0.2), "battery.state_of_charge: negative"),
        (BatteryReading(1.0, 1.7), "battery.state_of_charge: out of range"),
        (TemperatureReading(1.0, "GPU-therm", math.inf),
         "temperature[GPU-therm].celsius: infinite"),
        (TemperatureReading(1.0, "GPU-therm", 900.0),
         "temperature[GPU-therm].celsius: out of range"),
        (Mission(1.0, PriorityLevel.NORMAL, latency_target_ms=-5.0),
         "mission.latency_target_ms: negative"),
        (LatencyObservation(1.0, "model", math.nan, "x", "cuda"),
         "observation[model].latency_ms: NaN"),
        (LatencyObservation(1.0, "model", -3.0, "x", "cuda"),
         "observation[model].latency_ms: negative"),
        (LatencyObservation(1.0, "nobody", 3.0, "x", "cuda"),
         "observation.model: unknown model 'nobody'"),
        (BatteryReading(math.nan, 0.5), "battery.stamp_s: not a finite time"),
    ],
)  # fmt: skip
def test_bad_readings_are_ignored_with_a_counted_warning(family, reading, key) -> None:
    mgr = _manager(family)
    _start(mgr)
    before = mgr.current("model")
    assert mgr.observe(reading) is False
    assert mgr.observe(reading) is False
    assert mgr.warnings[key] == 2
    assert mgr.step(1.5) == [] or mgr.current("model").config == before.config


def test_old_readings_and_unknown_members_are_rejected(family) -> None:
    mgr = _manager(family)
    t = _start(mgr)
    assert mgr.observe(BatteryReading(t, 0.5))
    assert mgr.observe(BatteryReading(t - 0.5, 0.5)) is False  # older than the one in force
    assert mgr.warnings["battery.stamp_s: older than the reading in force"] == 1
    assert mgr.observe(BatteryReading(t - 10.0, 0.5)) is False
    bad = LatencyObservation(t, "model", 30.0, "not-a-member", "cuda")
    assert mgr.observe(bad) is False
    assert mgr.warnings["observation[model].subnet_id: not in the family"] == 1


def test_decisions_map_onto_the_reconfiguration_message(family) -> None:
    mgr = _manager(family)
    _start(mgr)
    from dynofa_ros.configuration import message_fields  # what nodes/convert.py sends

    d = mgr.current("model")
    fields = message_fields(d.config)
    assert d.seq == 1 and d.target_model == "model"
    assert fields["power_mode"] == -1
    assert fields["subnet_id"] in family.ids
    assert d.config.processor in ("cuda", "cpu")
    assert d.config.cpu_frequency_khz in SimulatedXavierNX().processor("cpu").frequencies_khz


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ManagerConfigError, match=r"manager\.latency_margin = 2 is outside"):
        config_from_dict({"latency_margin": 2})
    with pytest.raises(ManagerConfigError, match=r"unknown field\(s\) bogus"):
        config_from_dict({"bogus": 1})
    with pytest.raises(ManagerConfigError, match=r"levels\.HIGH\.energy_weight"):
        config_from_dict({"levels": {"HIGH": {"energy_weight": -1}}})
    with pytest.raises(ManagerConfigError, match="unknown policy 'nope'"):
        make_policy("nope")
    cfg = config_from_dict({"levels": {"low": {"energy_weight": 7}}, "dwell_s": 1.5})
    assert cfg.levels[PriorityLevel.LOW].energy_weight == 7 and cfg.dwell_s == 1.5


def test_mission_from_message_fields_checks_the_level() -> None:
    from types import SimpleNamespace

    from dynofa_ros.manager import Mission, PriorityLevel

    fields = SimpleNamespace(
        level=3, latency_target_ms=40, min_accuracy=0.9, energy_budget_j=0,
        mission_duration_s=60, reason="obstacle",
    )  # fmt: skip
    m = Mission.from_fields(12.5, fields)
    assert (m.stamp_s, m.level, m.latency_target_ms, m.reason) == (
        12.5, PriorityLevel.CRITICAL, 40.0, "obstacle",
    )  # fmt: skip
    with pytest.raises(ValueError, match="7"):
        Mission.from_fields(0.0, SimpleNamespace(**{**vars(fields), "level": 7}))


def test_a_family_measured_with_several_backends_predicts_from_one() -> None:
    """The shipped CPU family holds onnxruntime and torch-static records (~5x apart): the
    manager must predict from the engine's backend, not the median of both."""
    family = load_family(models_dir() / "fmnist_mbv3_small.cpu.family.json")
    assert {r.backend for m in family.members for r in m.latency} == {
        "onnxruntime",
        "torch-static",
    }
    spec = ModelSpec("m", family, latency_target_ms=5.0)
    assert {r.backend for m in spec.family.members for r in m.latency} == {"onnxruntime"}
    torch_spec = ModelSpec("m", family, latency_target_ms=5.0, backend="torch-static")
    member = family.members[-1]
    assert torch_spec.family.member(member.id).latency_ms(
        "cpu", backend="torch-static", threads=1
    ) == member.latency_ms("cpu", backend="torch-static", threads=1)
    assert {r.backend for m in torch_spec.family.members for r in m.latency} == {"torch-static"}
    with pytest.raises(ManagerConfigError, match=r"'backend'.*'tensorrt'.*onnxruntime"):
        ModelSpec("m", family, latency_target_ms=5.0, backend="tensorrt")


def test_a_left_processor_keeps_its_correction_while_others_load_it() -> None:
    """The correction of a processor the models left stays while the board shows another
    program's load there, returns to its calm value once that load halves, and decays with its
    half-life only where no foreign load is visible."""
    from dynofa_ros.manager.model import Corrections

    c = Corrections(5, half_life_s=2.0, bounds=(0.25, 8.0), foreign_load_min=0.1, settle_s=1.0)
    for t in range(5):
        c.add("m", "cuda", 50.0, 50.0, float(t))  # calm: ratio 1
    for t in range(5, 10):
        c.add("m", "cuda", 80.0, 50.0, float(t))  # interference: ratio 1.6
    assert c.factor("m", "cuda", 9.0) == pytest.approx(1.6)
    c.note_load("cuda", 0.9, 0.0, 9.5)  # within settle_s of the last frame: our own work
    assert c.factor("m", "cuda", 30.0) < 1.01  # so far no evidence: the half-life decay
    c.note_load("cuda", 0.5, 0.0, 11.0)  # the models left; another program holds half the GPU
    assert c.factor("m", "cuda", 30.0) == pytest.approx(1.6)  # held, however long
    c.note_load("cuda", 0.45, 0.0, 31.0)
    assert c.factor("m", "cuda", 31.0) == pytest.approx(1.6)
    c.note_load("cuda", 0.02, 0.0, 32.0)  # the other program stopped
    assert c.factor("m", "cuda", 32.0) == pytest.approx(1.0)
    # a processor never left keeps learning from its own frames only
    c.note_load("cpu", 0.9, 0.0, 40.0)
    assert c.factor("m", "cpu", 40.0) == 1.0


@pytest.mark.parametrize("visible", [True, False])
def test_a_model_that_left_a_shared_processor_returns_when_its_load_falls(visible: bool) -> None:
    """Two models: one leaves the GPU for a co-runner, the other stays. The models' own GPU
    load is predicted far off (0.9 against 0.2 measured), so only a change of the measured load
    beyond the change of that prediction says the co-runner came (hold) or went (release).
    Interference the load does not show (``visible`` False: through memory) decays instead."""
    from dynofa_ros.manager.model import Corrections

    c = Corrections(8, half_life_s=5.0, bounds=(0.25, 8.0), foreign_load_min=0.1, settle_s=1.0)
    own, calm_load, busy_load = 0.9, 0.2, (0.5 if visible else 0.2)
    t = 0.0
    for i in range(16):
        c.add("a", "cuda", 51.0 if i % 5 == 0 else 50.0, 50.0, t)  # calm: quantile 1.0 or 1.02
        c.add("b", "cuda", 50.0, 50.0, t)
        if i % 5 == 0:
            c.note_load("cuda", calm_load, own, t)
        t += 0.1
    for _ in range(8):
        c.add("a", "cuda", 80.0, 50.0, t)  # the co-runner: a is slow, b barely notices
        c.add("b", "cuda", 52.0, 50.0, t)
        t += 0.1
    c.note_load("cuda", busy_load, own, t)
    assert c.factor("a", "cuda", t - 0.1) == pytest.approx(1.6)
    left = t  # a moves to the CPU; b stays and keeps the GPU in use
    for k in range(40):
        t = left + 0.5 * (k + 1)
        c.add("b", "cuda", 52.0, 50.0, t)
        c.note_load("cuda", busy_load + 0.01 * (k % 2), own, t)
    if not visible:
        assert c.factor("a", "cuda", t) < 1.05  # no evidence either way: the half-life decay
        return
    assert c.factor("a", "cuda", t) == pytest.approx(1.6)  # held, however long
    for dt, load, own_now in ((0.5, 0.3, own * 0.6), (1.0, 0.5, own)):
        c.add("b", "cuda", 52.0, 50.0, t + dt)
        c.note_load("cuda", load, own_now, t + dt)  # b changed; the load follows: nothing new
        assert c.factor("a", "cuda", t + dt) == pytest.approx(1.6)
    c.add("b", "cuda", 52.0, 50.0, t + 1.5)
    c.note_load("cuda", 0.2, own - 0.1, t + 1.5)  # the co-runner stopped (and b changed)
    assert c.factor("a", "cuda", t + 1.5) == pytest.approx(1.0)  # its lowest calm ratio, at once
    assert c.factor("b", "cuda", t + 1.5) == pytest.approx(52.0 / 50.0)  # b: its own frames


def test_a_returning_model_starts_from_its_decayed_correction() -> None:
    """Back on a processor after a while, a model's old ratios count as much as they had
    decayed to: one calm frame does not bring back an interference that has gone."""
    from dynofa_ros.manager.model import Corrections

    c = Corrections(8, half_life_s=2.0, bounds=(0.25, 8.0), foreign_load_min=0.1, settle_s=1.0)
    for t in range(8):
        c.add("m", "cuda", 80.0, 50.0, t * 0.1)  # interference: ratio 1.6
    assert c.factor("m", "cuda", 0.7) == pytest.approx(1.6)
    decayed = c.factor("m", "cuda", 10.7)  # five half-lives away
    assert decayed == pytest.approx(1.6 ** (0.5**5))
    c.add("m", "cuda", 50.0, 50.0, 10.7)  # back, and calm
    assert c.factor("m", "cuda", 10.7) == pytest.approx(decayed)  # not 1.6 again
    for t in range(1, 8):
        c.add("m", "cuda", 50.0, 50.0, 10.7 + t * 0.1)
    assert c.factor("m", "cuda", 11.4) == pytest.approx(1.0)
    # frames within settle_s of each other are one stay: the ring keeps them all
    for t in range(8):
        c.add("m", "cpu", 80.0 if t < 4 else 50.0, 50.0, t * 0.5)
    assert c.factor("m", "cpu", 3.5) == pytest.approx(1.6)


def test_frames_run_below_the_pinned_clock_cap_the_plan_until_the_cap_is_gone(family) -> None:
    """No thermal zone is configured: the board's throttling shows only in the clocks the
    frames ran at. The manager plans within that cap (a new decision whose clocks are at or
    below it, once), and lifts it a step per ``observed_hold_s`` once frames stop showing it."""
    mgr = _manager(family)
    t = _start(mgr)
    d = mgr.current("model")
    assert d is not None and d.config.cpu_frequency_khz > 0
    table = sorted(mgr.context.tables["cpu"])
    capped = table[max(0, table.index(d.config.cpu_frequency_khz) - 6)]
    decided = []
    for _ in range(20):  # every frame ran at the capped clock
        t += 0.1
        now = mgr.current("model")
        assert now is not None
        mgr.observe(
            LatencyObservation(t, "model", now.predicted_latency_ms, now.config.subnet_id,
                               now.config.processor, now.config.threads, capped,
                               now.config.gpu_frequency_khz, now.seq)
        )  # fmt: skip
        mgr.observe(BatteryReading(t, 0.9, 72.0))
        decided += mgr.step(t)
    assert len(decided) == 1, "one decision for the cap"
    assert decided[0].config.cpu_frequency_khz <= capped and "thermal cap cpu" in decided[0].reason
    # frames at the pinned clock again (the board cooled): the cap lifts a step per hold
    steps = len(table) - table.index(capped)
    for _ in range(round((steps + 2) * mgr.config.thermal.observed_hold_s / 0.1)):
        t += 0.1
        _frame(mgr, t)
        mgr.observe(BatteryReading(t, 0.9, 72.0))
        mgr.step(t)
    final = mgr.current("model")
    assert final is not None and final.config.cpu_frequency_khz > capped
    assert not mgr.policy.thermal.capped()


def test_a_clock_at_or_above_the_pinned_one_or_unpinned_is_no_cap(family) -> None:
    from dynofa_ros.manager.guards import ThermalGuard

    mgr = _manager(family)
    guard = ThermalGuard(mgr.context)
    table = mgr.context.tables["cpu"]
    guard.note_clock("cpu", table[5], table[5], 1.0)
    guard.note_clock("cpu", table[5], table[6], 1.0)
    guard.note_clock("cpu", 0, table[2], 1.0)  # governor-run: nothing was pinned
    assert guard.effective(1.0) == guard.caps and not guard.capped()
    guard.note_clock("cpu", table[5], table[3] + 1, 1.0)  # between steps: the step below
    assert guard.effective(1.0)["cpu"] == 3 and guard.capped() == ["cpu"]
