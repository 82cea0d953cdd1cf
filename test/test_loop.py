"""The closed loop every runner shares (``evaluation/loop.py``): when a decision reaches a
frame on simulated time and on a real clock, what a refused command leaves, and what a frame
records. Real parts: the runtime manager, a perception session costed on the simulated NX."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dynofa_ros.configuration import KEEP, Configuration
from dynofa_ros.engine.recorded import RecordedEngine
from dynofa_ros.evaluation.loop import ClosedLoop, LoopModel
from dynofa_ros.evaluation.records import ModelInfo, RecordBuilder, RunInfo
from dynofa_ros.manager import ManagerConfig, ModelSpec, RuntimeManager
from dynofa_ros.manager.families import BUILTIN
from dynofa_ros.perception import (
    BoardTimer,
    Command,
    PerceptionSession,
    SimulatedTarget,
    most_accurate,
)
from dynofa_ros.platform.sim import SimulatedXavierNX

MODEL = "front"


def make_loop(policy: str = "static-performance") -> tuple[ClosedLoop, LoopModel]:
    board = SimulatedXavierNX(seed=0)
    family = BUILTIN["published-nx-gpu"]()
    target = SimulatedTarget(RecordedEngine(family), board)
    session = PerceptionSession(
        target,
        model_name=MODEL,
        timer=BoardTimer(board),
        platform=board,
        allow_dvfs=True,
        initial=Configuration(most_accurate(target), "cuda", 1),
    )
    spec = ModelSpec(name=MODEL, family=family, latency_target_ms=80.0, frame_rate_hz=10.0)
    manager = RuntimeManager([spec], board, policy, ManagerConfig())
    builder = RecordBuilder(RunInfo("loop", models={MODEL: ModelInfo(80.0, "camera")}))
    model = LoopModel(MODEL, "camera", session, 80.0)
    return ClosedLoop(manager, [model], builder), model


def blank(engine: object) -> object:
    return engine.infer_blank()  # type: ignore[attr-defined]


def test_on_simulated_time_a_decision_at_a_frames_stamp_waits_for_the_next_frame() -> None:
    loop, model = make_loop()
    loop.decide(1.0)
    assert len(model.pending) == 1
    seq = model.pending[0][1].seq
    loop.frame("camera", 1_000_000_000, blank)  # same stamp as the decision: not yet
    assert model.session.last_applied_seq != seq
    loop.frame("camera", 1_100_000_000, blank)
    assert model.session.last_applied_seq == seq and not model.pending


def test_on_a_real_clock_a_late_frame_gets_the_decision_made_before_it_started() -> None:
    loop, model = make_loop()
    loop.decide(1.05)
    seq = model.pending[0][1].seq
    # stamped (due) at 1.0, but it starts at 1.1: after the decision
    loop.frame("camera", 1_000_000_000, blank, clock=lambda: 1.1)
    assert model.session.last_applied_seq == seq


def test_a_refused_command_is_named_and_the_model_keeps_its_configuration() -> None:
    loop, model = make_loop()
    before = model.session.active
    wrong = replace(KEEP, subnet_id="no-such-member")
    model.pending.append((0.0, Command(seq=7, target_model=MODEL, config=wrong)))
    loop.frame("camera", 1_000_000_000, blank)
    assert len(loop.rejected) == 1
    assert loop.rejected[0].startswith(f"{MODEL} seq 7: ") and "no-such-member" in loop.rejected[0]
    assert model.session.active.subnet_id == before.subnet_id


def test_a_frame_is_recorded_observed_and_counted_once_per_model() -> None:
    loop, model = make_loop()
    loop.decide(0.5)
    for k in range(5):
        loop.frame("camera", 1_000_000_000 + k * 100_000_000, blank, label=3)
    run = loop.builder.build()
    frames = run.frames_of(MODEL)
    assert [f.t_s for f in frames] == pytest.approx([1.0 + k * 0.1 for k in range(5)])
    assert all(f.latency_ms > 0 and f.energy_j and f.energy_j > 0 for f in frames)
    assert model.processed == 5 and model.seen == 5
    assert loop.frame_counts()[MODEL]["processed"] == 5
    assert loop.manager.inputs.latest(MODEL, 1.4) is not None
    loop.frame("other-camera", 1_600_000_000, blank)  # no model on it: nothing happens
    assert model.seen == 5
