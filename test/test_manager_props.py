"""Property tests (hypothesis): whatever the input sequence, the manager's decisions stay within
the family, the frequency tables and the thermal cap, are deterministic, and never change
faster than the dwell time."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynofa_ros.manager import (
    POLICIES,
    BatteryReading,
    LatencyObservation,
    ManagerConfig,
    Mission,
    ModelSpec,
    PriorityLevel,
    RuntimeManager,
    TemperatureReading,
    ThermalPolicy,
)
from dynofa_ros.manager.families import published_gpu_family
from dynofa_ros.platform.sim import SimulatedXavierNX

FAMILY = published_gpu_family()
ZONE = "GPU-therm"
TRIP_C = 80.0
CONFIG = ManagerConfig(
    thermal=ThermalPolicy(zones={"cuda": ZONE, "cpu": ZONE}, trip_c={ZONE: TRIP_C}, dwell_s=0.5)
)
BOARD = SimulatedXavierNX(seed=0)
TABLES = {p.name: p.frequencies_khz for p in BOARD.processors()}

events = st.lists(
    st.one_of(
        st.tuples(st.just("frame"), st.floats(0.5, 3.0)),  # measured / predicted ratio
        st.tuples(st.just("battery"), st.floats(0.0, 1.0)),
        st.tuples(st.just("temp"), st.floats(20.0, 100.0)),
        st.tuples(st.just("level"), st.sampled_from(list(PriorityLevel))),
        st.tuples(st.just("bad"), st.sampled_from([float("nan"), -1.0, 1e9])),
    ),
    min_size=1,
    max_size=60,
)


def _replay(seq, policy: str = "dynofa", two: bool = False):
    specs = [ModelSpec("a", FAMILY, latency_target_ms=60.0, frame_rate_hz=15.0)]
    if two:
        specs.append(ModelSpec("b", FAMILY, latency_target_ms=120.0, frame_rate_hz=7.5))
    mgr = RuntimeManager(specs, SimulatedXavierNX(seed=0), policy, CONFIG)
    out = list(mgr.step(0.0))
    temps: list[float] = []
    t = 0.0
    for i, (kind, value) in enumerate(seq):
        t += 0.07
        if kind == "frame":
            name = specs[i % len(specs)].name
            d = mgr.current(name)
            mgr.observe(LatencyObservation(
                t, name, max(1.0, d.predicted_latency_ms) * value, d.config.subnet_id,
                d.config.processor, d.config.threads, d.config.cpu_frequency_khz,
                d.config.gpu_frequency_khz, d.seq))  # fmt: skip
        elif kind == "battery":
            mgr.observe(BatteryReading(t, value, 72.0))
        elif kind == "temp":
            mgr.observe(TemperatureReading(t, ZONE, value))
            temps.append(value)
        elif kind == "level":
            mgr.observe(Mission(t, value))
        else:
            mgr.observe(BatteryReading(t, value))
        new = mgr.step(t)
        thermal = getattr(mgr.policy, "thermal", None)
        for d in new if thermal is not None else ():
            # never above the thermal cap in force when the decision was made
            tables = mgr.context.tables
            assert d.config.cpu_frequency_khz <= tables["cpu"][thermal.caps["cpu"]]
            assert d.config.gpu_frequency_khz <= tables["cuda"][thermal.caps["cuda"]]
        out += new
    return mgr, out, temps


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events, st.sampled_from([p for p in POLICIES if p != "oracle"]))  # oracle: test_oracle
def test_decisions_stay_within_family_tables_and_thermal_cap(seq, policy) -> None:
    mgr, out, temps = _replay(seq, policy)
    assert out, "the first step always decides"
    ids = set(FAMILY.ids)
    for d in out:
        assert d.config.subnet_id in ids
        assert d.config.processor in TABLES
        assert d.config.cpu_frequency_khz == 0 or d.config.cpu_frequency_khz in TABLES["cpu"]
        assert d.config.gpu_frequency_khz == 0 or d.config.gpu_frequency_khz in TABLES["cuda"]
        assert d.config.threads >= 0
    seqs = [d.seq for d in out]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    if policy == "dynofa" and len(temps) >= 20 and min(temps) >= TRIP_C:
        # long at or above the trip point: the caps went down
        caps = mgr.policy.thermal.caps
        assert any(caps[p] < mgr.context.top_column(p) for p in ("cpu", "cuda"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events, st.booleans())
def test_deterministic_for_the_same_inputs(seq, two) -> None:
    a = _replay(seq, "dynofa", two)[1]
    b = _replay(seq, "dynofa", two)[1]
    assert a == b


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events, st.booleans())
def test_never_changes_faster_than_the_dwell_time(seq, two) -> None:
    mgr, out, _ = _replay(seq, "dynofa", two)
    changes = sorted({d.stamp_s for d in out if not d.reason.startswith("hold")})
    gaps = [b - a for a, b in itertools.pairwise(changes)]
    assert all(g >= mgr.config.dwell_s - 1e-9 for g in gaps), (changes, gaps)


def test_thermal_cap_lowers_the_frequencies_of_decisions() -> None:
    hot = [("temp", 95.0)] * 40 + [("frame", 1.0)] * 10
    mgr, out, _ = _replay(hot, "static-performance")  # the baseline ignores heat ...
    top = out[-1].config.gpu_frequency_khz
    assert top == TABLES["cuda"][-1] or top == 1109250
    mgr, out, _ = _replay(hot)  # ... the manager steps its caps down, once per thermal dwell
    caps = mgr.policy.thermal.caps
    ctx = mgr.context
    assert caps["cuda"] < ctx.top_column("cuda") and caps["cpu"] < ctx.top_column("cpu")
    last = out[-1]
    assert last.config.gpu_frequency_khz <= ctx.tables["cuda"][caps["cuda"]]
    assert last.config.cpu_frequency_khz <= ctx.tables["cpu"][caps["cpu"]]
    assert "thermal cap" in last.reason
