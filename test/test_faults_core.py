"""Fault rules without ROS: command identity (epoch, seq) and the safe fallback of a real
perception session, the manager's incarnations and future-stamped inputs, transport losses
inferred from camera stamps, diagnostics that return to OK."""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import replace
from typing import Any

import pytest

from dynofa_ros.configuration import KEEP, Configuration
from dynofa_ros.family import load_family
from dynofa_ros.manager import BatteryReading, ManagerConfig, Mission, ModelSpec, RuntimeManager
from dynofa_ros.perception import Command, PerceptionSession, seq_newer
from dynofa_ros.platform.sim import SimulatedXavierNX
from dynofa_ros.resources import models_dir

MAX = 2**64 - 1


@pytest.fixture(scope="module")
def engine() -> Any:
    from dynofa_ros.engine import Engine

    e = Engine.load(
        models_dir() / "fmnist_mbv3_small.safetensors",
        models_dir() / "fmnist_mbv3_small.cpu.family.json",
        threads=(1, 2),
        progress=False,
    )
    yield e
    e.close()


def cmd(seq: int, epoch: int = 0, **fields: Any) -> Command:
    """A command by the message's field names (the configuration's go into ``config``)."""
    names = {f.name for f in dataclasses.fields(Configuration)}
    config = replace(KEEP, **{k: v for k, v in fields.items() if k in names})
    rest = {k: v for k, v in fields.items() if k not in names}
    return Command(seq=seq, epoch=epoch, config=config, **rest)


def _session(engine: Any) -> PerceptionSession:
    members = engine.members
    s = PerceptionSession(engine, model_name="model")
    assert s.apply(cmd(seq=1, subnet_id=members[-1])) is None  # a known start
    s.last_command, s.last_applied_seq, s.last_applied_epoch = None, 0, 0
    return s


def test_seq_is_compared_in_serial_number_arithmetic() -> None:
    assert seq_newer(2, 1) and not seq_newer(1, 1) and not seq_newer(1, 2)
    assert seq_newer(1, MAX) and seq_newer(5, MAX - 3), "wraps instead of blocking"
    assert not seq_newer(MAX, 1), "2^64-1 is far behind 1, not far ahead"


def test_epochs_take_over_duplicates_and_reordered_commands_do_not(engine: Any) -> None:
    m = engine.members
    s = _session(engine)
    assert s.apply(cmd(seq=40, epoch=7, subnet_id=m[0])) is None
    assert s.active.subnet_id == m[0] and (s.last_applied_epoch, s.last_applied_seq) == (7, 40)
    # the same incarnation: older and reordered commands are rejected, a duplicate is ignored
    why = s.apply(cmd(seq=39, epoch=7, subnet_id=m[1]))
    assert why is not None and "not newer than the last applied command 40" in why
    assert s.apply(cmd(seq=40, epoch=7, subnet_id=m[0])) is None
    assert s.active.subnet_id == m[0] and s.last_applied_seq == 40
    # a restarted manager (new epoch, seq from 1) takes over at once
    assert s.apply(cmd(seq=1, epoch=99, subnet_id=m[1])) is None
    assert s.active.subnet_id == m[1] and (s.last_applied_epoch, s.last_applied_seq) == (99, 1)
    # a seq of 2^64-1 cannot wedge the node: after 1 it is far behind (RFC 1982), not ahead,
    # and a sender that really counts up to it wraps to 1
    assert s.apply(cmd(seq=MAX, epoch=99, subnet_id=m[2])) is not None
    assert s.apply(cmd(seq=2, epoch=99, subnet_id=m[3])) is None
    assert s.apply(cmd(seq=MAX, epoch=5, subnet_id=m[2])) is None
    assert s.apply(cmd(seq=1, epoch=5, subnet_id=m[3])) is None
    assert s.active.subnet_id == m[3]
    # hand-sent commands (epoch 0) follow the same rules in their own incarnation
    assert s.apply(cmd(seq=3, subnet_id=m[0])) is None
    assert s.apply(cmd(seq=2, subnet_id=m[1])) is not None


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("latency_target_ms", math.nan, "latency_target_ms nan must be a finite number"),
        ("latency_target_ms", -5.0, "latency_target_ms -5.0"),
        ("latency_target_ms", math.inf, "latency_target_ms inf"),
        ("latency_target_ms", 3e38, "latency_target_ms 3e+38"),
        ("cpu_frequency_khz", -1, "cpu_frequency_khz -1 must be in 0..4294967295"),
        ("threads", -2, "threads -2 must be in 0..65535"),
        ("power_mode", -7, "power_mode -7 must be in -1..127"),
        ("seq", 0, "seq 0 must be in 1..2^64-1"),
        ("epoch", 2**64, "epoch 18446744073709551616 must be in 0..2^64-1"),
    ],
)
def test_every_numeric_command_field_is_validated(
    engine: Any, field: str, value: Any, words: str
) -> None:
    s = _session(engine)
    before = s.active
    why = s.apply(cmd(**{"seq": 1, field: value}))
    assert why is not None and words in why, why
    assert s.active == before and s.last_command is None


def test_long_strings_are_clipped_in_the_reason(engine: Any) -> None:
    s = _session(engine)
    why = s.apply(cmd(seq=1, target_model="x" * 100_000))
    assert why is not None and len(why) < 300 and "(100000 chars)" in why


def test_safe_fallback_and_hand_back(engine: Any) -> None:
    m = engine.members
    family = load_family(models_dir() / "fmnist_mbv3_small.cpu.family.json")
    s = _session(engine)
    assert s.apply(cmd(seq=5, epoch=3, subnet_id=m[-1], threads=2)) is None
    safe = s.safe_command()
    assert safe.config.subnet_id == family.members[0].id == m[0], "the fastest member"
    assert safe.config.processor == "cpu" and safe.config.threads in (0, 1, 2)
    assert s.enter_fallback(safe) is None
    assert s.fallback and s.active.subnet_id == m[0]
    assert (s.last_applied_epoch, s.last_applied_seq) == (3, 5), "still the reference"
    # the manager's heartbeat (a duplicate of its last command) hands control back
    assert s.apply(cmd(seq=5, epoch=3, subnet_id=m[-1], threads=2)) is None
    assert not s.fallback and s.active.subnet_id == m[-1] and s.active.threads == 2
    # a named safe member; one not in the family is refused with the reason
    assert s.safe_command(m[2]).config.subnet_id == m[2]
    assert s.enter_fallback(cmd(seq=1, subnet_id="nope")) is not None and not s.fallback


def _manager(**config: Any) -> RuntimeManager:
    family = load_family(models_dir() / "fmnist_mbv3_small.sim-nx-cuda.family.json")
    spec = ModelSpec("model", family, latency_target_ms=100.0, frame_rate_hz=10.0)
    return RuntimeManager([spec], SimulatedXavierNX(seed=0), "dynofa", ManagerConfig(**config))


def test_manager_incarnations() -> None:
    from dynofa_ros.nodes.convert import command_message

    a, b = _manager(), _manager()
    assert a.epoch != b.epoch and 0 < a.epoch <= MAX
    assert a.observe(Mission(1.0, 1))
    (d,) = a.step(1.0)
    assert (d.epoch, d.seq) == (a.epoch, 1) and command_message(d).epoch == a.epoch
    old = a.epoch
    a.set_policy("static-performance")
    assert a.epoch != old and a.current("model") is None
    (d,) = a.step(2.0)
    assert (d.epoch, d.seq) == (a.epoch, 1), "the new policy decides at once, seq from 1"
    assert a.inputs.mission is not None, "a policy change keeps the inputs"
    old = a.epoch
    a.reset()
    assert a.epoch != old and a.inputs.mission is None, "a clock jump back forgets them"
    with pytest.raises(ValueError, match=r"epoch 0 must be in 1\.\.2"):
        _manager().set_policy("dynofa", epoch=0)


def test_a_future_stamp_is_rejected_and_never_moves_the_clock() -> None:
    mgr = _manager(stale_after_s=5.0, max_future_skew_s=2.0)
    now = 1000.0
    assert not mgr.observe(BatteryReading(now + 3600.0, 0.05), now)
    assert mgr.warnings["battery.stamp_s: more than 2 s in the future"] == 1
    assert mgr.inputs.clock_s == -math.inf
    assert mgr.observe(BatteryReading(now + 1.0, 0.9), now), "within the skew"
    assert mgr.observe(BatteryReading(now + 2.0, 0.8), now + 1.5), "later good inputs count"
    assert mgr.inputs.battery(now + 2.0).state_of_charge == 0.8
    assert mgr.observe(BatteryReading(now + 3600.0, 0.05)), "no receiver clock: no check"


def test_a_bad_battery_capacity_keeps_the_state_of_charge() -> None:
    mgr = _manager()
    assert mgr.observe(BatteryReading(1.0, 0.5, capacity_wh=-12.0))
    assert mgr.inputs.battery(1.0).state_of_charge == 0.5
    assert mgr.inputs.battery(1.0).capacity_wh is None
    assert mgr.warnings["battery.capacity_wh: negative"] == 1


def test_a_hold_ends_with_a_decision_that_says_so() -> None:
    mgr = _manager(stale_after_s=2.0)
    assert mgr.observe(Mission(0.0, 1)) and mgr.observe(BatteryReading(0.0, 0.9))
    (first,) = mgr.step(0.0)
    (held,) = mgr.step(10.0)  # the battery went stale
    assert held.reason.startswith("hold:") and held.config == first.config
    assert mgr.observe(BatteryReading(11.0, 0.9))
    out = mgr.step(11.0)
    assert out and not out[-1].reason.startswith("hold:"), "the reason is current again"
    assert not mgr.current("model").reason.startswith("hold:")


def _losses(loss: float, jitter_s: float, seed: int = 0) -> tuple[int, int]:
    from dynofa_ros.nodes.latest import StampGaps

    rnd = random.Random(seed)
    gaps = StampGaps()
    for i in range(300):
        if i < 2 or rnd.random() >= loss:
            gaps.add(i / 30 + rnd.gauss(0, jitter_s))
    return 300 - gaps.received, gaps.lost


@pytest.mark.parametrize(("loss", "jitter_s"), [(0.3, 0.001), (0.58, 0.001), (0.58, 0.002)])
def test_transport_losses_are_inferred_from_camera_stamps(loss: float, jitter_s: float) -> None:
    true, estimated = _losses(loss, jitter_s)
    assert true > 0 and 0.8 * true <= estimated <= true, (true, estimated)
    assert _losses(0.0, jitter_s) == (0, 0)


def test_no_losses_are_inferred_from_an_aperiodic_source() -> None:
    from dynofa_ros.nodes.latest import StampGaps

    rnd = random.Random(1)
    gaps, t = StampGaps(), 0.0
    for _ in range(300):
        t += 0.1 + rnd.expovariate(1 / 0.05)
        gaps.add(t)
    assert gaps.lost == 0
    gaps.add(t - 100.0)  # a clock jump back restarts the estimate, counts nothing
    assert gaps.lost == 0 and gaps.period_s is None


def test_diagnostics_return_to_ok_once_the_cause_is_gone() -> None:
    from diagnostic_msgs.msg import DiagnosticStatus

    from dynofa_ros.nodes.health import Health

    h = Health(hold_s=60.0)
    assert h.level() == (DiagnosticStatus.OK, "ok")
    h.error("battery rejected")
    assert h.level() == (DiagnosticStatus.WARN, "battery rejected")
    assert h.level(["manager silent"])[1] == "manager silent; battery rejected"
    h.hold_s = 0.0  # the error is now older than the hold
    assert h.level() == (DiagnosticStatus.OK, "ok") and h.last_error == "battery rejected"


def test_a_compressed_frame_is_refused_from_its_header_above_the_pixel_cap() -> None:
    import struct
    import zlib

    import cv2
    import numpy as np

    from dynofa_ros.engine.preprocess import byte_buffer, compressed_size, decode_compressed
    from dynofa_ros.errors import DynofaError

    img = np.random.default_rng(0).integers(0, 255, (48, 64, 3)).astype(np.uint8)
    for ext in (".jpg", ".png"):
        _, data = cv2.imencode(ext, img)
        assert compressed_size(byte_buffer(data.tobytes())) == (64, 48)
        assert decode_compressed(data.tobytes(), ext[1:], 3).pixels.shape[:2] == (48, 64)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", 25000, 25000, 8, 0, 0, 0, 0)
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(600_000))) + chunk(b"IEND", b""))  # fmt: skip
    with pytest.raises(DynofaError, match="25000x25000 image is 625000000 pixels"):
        decode_compressed(bomb, "png", 1)


def test_a_clock_jump_back_frees_the_simulated_board_at_once(engine: Any) -> None:
    """A frame arriving while the simulated board computes the previous one is dropped; a frame
    stamped before the previous one (a bag loop, /clock jumping back) is time going back, not a
    busy board: before, the node dropped every frame for as long as the jump (found by
    ``dynofa chaos``)."""
    import numpy as np

    from dynofa_ros.perception import BoardBusyError, BoardTimer

    s = PerceptionSession(engine, model_name="model", timer=BoardTimer(SimulatedXavierNX(seed=0)))
    image = np.zeros((28, 28), dtype=np.uint8)

    def frame(stamp: float) -> Any:
        return s.run(lambda e: e.infer_array(image), stamp)

    frame(100.0)
    assert s.busy_until_s > 100.0
    with pytest.raises(BoardBusyError):
        frame(100.0 + 1e-4)  # mid-compute: dropped, as before
    out = frame(70.0)  # 30 s back
    assert out.cost.latency_ms > 0 and s.busy_from_s == 70.0
    with pytest.raises(BoardBusyError):
        frame(70.0 + 1e-4)  # and busy again from the new time on
