"""Physical sanity of the simulated Xavier NX (each test fails if its law breaks)."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest

from dynofa_ros.platform import make_platform
from dynofa_ros.platform.base import PlatformError, Setting, schedutil_khz
from dynofa_ros.platform.nx_data import CPU_FREQUENCIES_KHZ, GPU_FREQUENCIES_KHZ, POWER_MODES
from dynofa_ros.platform.sim import (
    CPU_VOLTAGE_TABLE,
    GPU_VOLTAGE_TABLE,
    FrameRequest,
    NXModel,
    SimulatedXavierNX,
    reference_latency_ms,
)
from dynofa_ros.platform.workload import (
    PUBLISHED_CPU_ENDS,
    PUBLISHED_GPU_FAMILY,
    Workload,
    count_weight_layers,
    workload_from_layer_specs,
)

W = PUBLISHED_GPU_FAMILY[1].workload  # the ~46 ms member of the co-runner experiment
SMALL = Workload("fmnist-like", 20_000_000, 69, 1_000_000, runtime="onnxruntime")


def quiet(**kw) -> SimulatedXavierNX:
    return SimulatedXavierNX(seed=0, latency_jitter=0.0, **kw)


def test_published_gpu_family_holds_at_top_gpu_frequency() -> None:
    for member in PUBLISHED_GPU_FAMILY:
        sim_ms = reference_latency_ms(member.workload, "cuda", 1109250)
        assert sim_ms == pytest.approx(member.latency_ms, rel=0.03), member.workload.name
    # and in the simulator itself, default power mode, GPU pinned at the top step
    nx = quiet()
    nx.apply(Setting(frequencies_khz={"cuda": 1109250, "cpu": 1420800}))
    r = nx.run_frame(PUBLISHED_GPU_FAMILY[-1].workload, "cuda")
    assert r.latency_ms == pytest.approx(PUBLISHED_GPU_FAMILY[-1].latency_ms, rel=0.03)
    # the published CPU family ends (6 threads)
    for member in PUBLISHED_CPU_ENDS:
        sim_ms = reference_latency_ms(member.workload, "cpu", 1420800, 6)
        assert sim_ms == pytest.approx(member.latency_ms, rel=0.05)


def test_published_family_is_ordered_and_spans_published_range() -> None:
    lat = [reference_latency_ms(m.workload, "cuda") for m in PUBLISHED_GPU_FAMILY]
    assert lat == sorted(lat)
    assert [m.top1 for m in PUBLISHED_GPU_FAMILY] == sorted(m.top1 for m in PUBLISHED_GPU_FAMILY)


@pytest.mark.parametrize(
    "processor,table", [("cuda", GPU_FREQUENCIES_KHZ), ("cpu", CPU_FREQUENCIES_KHZ)]
)
def test_higher_frequency_lower_latency_and_higher_power(processor: str, table) -> None:
    lat, power, energy = [], [], []
    for f in table:
        nx = quiet()
        nx.apply(
            Setting(frequencies_khz={processor: f}, power_mode=8 if processor == "cuda" else 0)
        )
        if processor == "cpu":
            nx.apply(Setting(cores_online=6))
        if nx.frequency_khz(processor) != f:  # above this mode's cap: not comparable
            continue
        r = nx.run_frame(W if processor == "cuda" else SMALL, processor)
        lat.append(r.latency_ms)
        power.append(r.energy_j / (r.latency_ms / 1e3))
        energy.append(r.energy_j)
    assert len(lat) >= 10
    assert all(a > b for a, b in itertools.pairwise(lat)), lat
    assert all(a < b for a, b in itertools.pairwise(power)), power
    # and the model's busy power itself grows with f * V(f)^2
    m = NXModel()
    busy = [m.gpu_busy_power_w(f) if processor == "cuda" else m.cpu_core_power_w(f) for f in table]
    assert all(a < b for a, b in itertools.pairwise(busy))


def test_voltage_tables_are_documented_and_monotone() -> None:
    for table in (CPU_VOLTAGE_TABLE, GPU_VOLTAGE_TABLE):
        volts = [v for _, v in table]
        assert volts == sorted(volts) and 0.5 < volts[0] < volts[-1] < 1.2
    assert [f for f, _ in GPU_VOLTAGE_TABLE] == list(GPU_FREQUENCIES_KHZ)


def test_energy_is_the_integral_of_power() -> None:
    nx = quiet()
    nx.start_corunner("gpu-load", "cuda", share=0.6)
    e0, t0 = nx.telemetry().energy_j, nx.now_s
    integral, dt = 0.0, 0.01
    for _ in range(2000):  # 20 s, power sampled at the end of each 10 ms step
        nx.advance(dt)
        integral += nx.telemetry().total_power_w * dt
    assert nx.now_s - t0 == pytest.approx(20.0)
    assert nx.telemetry().energy_j - e0 == pytest.approx(integral, rel=2e-3)
    # frame energies plus idle energy add up to the module's energy
    e1 = nx.energy_j
    frames = 0.0
    idle_start = nx.energy_j
    idle = 0.0
    for _ in range(50):
        r = nx.run_frame(W, "cuda")
        frames += r.energy_j
        before = nx.energy_j
        nx.advance(0.02)
        idle += nx.energy_j - before
    assert idle_start == e1
    assert frames + idle == pytest.approx(nx.energy_j - e1, rel=1e-9)


def test_temperature_settles_at_ambient_plus_power_times_rth() -> None:
    for ambient, rth in ((25.0, 3.0), (40.0, 5.0)):
        nx = quiet(ambient_c=ambient)
        nx.set_thermal_resistance(rth)
        nx.apply(Setting(frequencies_khz={"cuda": 1109250}))
        nx.start_corunner("hog", "cuda", share=0.8)
        nx.advance(20 * rth * nx.model.c_th_j_per_c)  # 20 time constants
        t = nx.telemetry()
        expected = ambient + t.total_power_w * rth
        assert t.temperatures_c["AUX-therm"] == pytest.approx(expected, abs=0.02)
        assert t.temperatures_c["GPU-therm"] > t.temperatures_c["AUX-therm"]


def test_temperature_follows_rc_time_constant() -> None:
    nx = quiet()
    nx.apply(Setting(frequencies_khz={"cuda": 1109250, "cpu": 1420800}))
    nx.start_corunner("hog", "cuda", share=0.8)
    nx.advance(1e-3)
    p = nx.telemetry().total_power_w
    tau = nx.r_th_c_per_w * nx.model.c_th_j_per_c
    nx.advance(tau - 1e-3)
    t = nx.telemetry()
    rise = t.temperatures_c["AUX-therm"] - 25.0
    # one time constant: 1 - 1/e of the final rise; leakage makes the power grow with the
    # temperature, so the rise lies between those of the first and the last power
    k = (1 - math.exp(-1)) * nx.r_th_c_per_w
    assert p < t.total_power_w
    assert k * p < rise < k * t.total_power_w


def test_throttling_caps_frequency_above_trip_point_and_releases_below() -> None:
    nx = quiet(ambient_c=60.0)  # a closed, sunlit enclosure
    nx.set_thermal_resistance(6.0)  # fan stopped
    nx.apply(Setting(frequencies_khz={"cuda": 1109250, "cpu": 1420800}))
    nx.start_corunner("gpu-hog", "cuda", share=0.9)
    nx.start_corunner("cpu-hog", "cpu", share=0.9)
    first_hot = first_throttled = None
    for _ in range(2400):
        nx.advance(0.25)
        t = nx.telemetry()
        if first_hot is None and t.temperatures_c["GPU-therm"] > nx.model.trip_c:
            first_hot = nx.now_s
        if first_throttled is None and t.throttled:
            first_throttled = nx.now_s
        assert t.processors["cuda"].frequency_khz <= nx.thermal_cap_khz("cuda")
    # throttling starts within one polling period of crossing the trip point, not before
    assert first_hot is not None and first_throttled is not None
    assert 0 <= first_throttled - first_hot <= nx.model.throttle_period_s
    t = nx.telemetry()
    assert t.throttled
    assert nx.thermal_cap_khz("cuda") < 1109250
    assert t.processors["cuda"].frequency_khz == nx.thermal_cap_khz("cuda")
    # the cap keeps the zone near the trip point (the step-wise loop regulates)
    assert t.temperatures_c["GPU-therm"] < nx.model.trip_c + 3.0
    # a throttled board is slower
    r_hot = nx.run_frame(PUBLISHED_GPU_FAMILY[-1].workload, "cuda")
    nx.stop_corunner("gpu-hog")
    nx.stop_corunner("cpu-hog")
    nx.set_ambient(25.0)
    nx.set_thermal_resistance(3.0)
    nx.advance(1500)
    assert not nx.telemetry().throttled
    assert nx.frequency_khz("cuda") == 1109250
    r_cool = nx.run_frame(PUBLISHED_GPU_FAMILY[-1].workload, "cuda")
    assert r_hot.latency_ms > r_cool.latency_ms


def test_battery_state_of_charge_falls_by_energy_over_capacity() -> None:
    nx = quiet(state_of_charge=0.8, base_load_w=2.0)
    nx.start_corunner("hog", "cpu", share=0.5)
    t0 = nx.telemetry()
    for _ in range(200):
        nx.run_frame(W, "cuda")
        nx.advance(0.05)
    t1 = nx.telemetry()
    elapsed = t1.stamp_s - t0.stamp_s
    drawn = (t1.energy_j - t0.energy_j) / nx.model.converter_efficiency + 2.0 * elapsed
    expected = drawn / (nx.model.battery_capacity_wh * 3600)
    assert t0.battery.state_of_charge - t1.battery.state_of_charge == pytest.approx(
        expected, rel=1e-6
    )
    assert t1.battery.current_a < 0  # discharging
    # voltage follows the open-circuit curve: lower charge, lower voltage
    low = quiet(state_of_charge=0.1).telemetry().battery
    high = quiet(state_of_charge=0.9).telemetry().battery
    assert low.voltage_v < high.voltage_v
    nx.set_state_of_charge(0.3)
    assert nx.telemetry().battery.state_of_charge == 0.3


def test_deterministic_for_a_seed() -> None:
    def run(seed: int) -> list[tuple[float, float]]:
        nx = SimulatedXavierNX(seed=seed)
        out = []
        for i in range(40):
            if i == 10:
                nx.start_corunner("x", "cuda", 0.4)
            r = nx.run_frame(PUBLISHED_GPU_FAMILY[i % 6].workload, "cuda")
            nx.advance(0.03)
            out.append((r.latency_ms, r.energy_j))
        t = nx.telemetry()
        out.append((t.energy_j, t.temperatures_c["AUX-therm"]))
        return out

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_gpu_corunner_raises_latency_like_the_published_experiment() -> None:
    nx = quiet()
    nx.apply(Setting(frequencies_khz={"cuda": 1109250}, governors={"cpu": "performance"}))
    alone = nx.run_frame(W, "cuda").latency_ms
    nx.start_corunner("gpu-app", "cuda", share=0.5)
    shared = nx.run_frame(W, "cuda").latency_ms
    assert alone == pytest.approx(46, abs=2.0)
    assert shared == pytest.approx(62, abs=2.0)
    nx.stop_corunner("gpu-app")
    assert nx.run_frame(W, "cuda").latency_ms == pytest.approx(alone)
    # a co-runner shows up in utilisation
    nx.start_corunner("gpu-app", "cuda", share=0.5)
    nx.advance(1.0)
    assert nx.telemetry().processors["cuda"].utilisation == pytest.approx(0.5)


def test_cpu_threads_cores_and_cpu_corunner() -> None:
    nx = quiet()
    nx.apply(Setting(frequencies_khz={"cpu": 1420800}))
    lat = [nx.run_frame(SMALL, "cpu", threads=t).latency_ms for t in (1, 2, 4, 6)]
    assert lat == sorted(lat, reverse=True)
    nx.apply(Setting(cores_online=2))
    assert nx.run_frame(SMALL, "cpu", threads=2).latency_ms == pytest.approx(lat[1])
    assert nx.run_frame(SMALL, "cpu", threads=6).latency_ms > lat[1]  # oversubscribed
    nx.apply(Setting(cores_online=6))
    nx.start_corunner("hog", "cpu", share=0.5)
    hogged = [nx.run_frame(SMALL, "cpu", threads=t).latency_ms for t in (2, 6)]
    assert hogged[0] > lat[1] * 1.3 and hogged[1] > lat[3] * 1.3
    # the GPU's host thread feels a CPU co-runner too (eager PyTorch is host-bound)
    gpu_hogged = nx.run_frame(W, "cuda").latency_ms
    nx.stop_corunner("hog")
    assert gpu_hogged > nx.run_frame(W, "cuda").latency_ms * 1.3


def test_concurrent_models_slow_each_other_and_energy_adds_up() -> None:
    nx = quiet()
    nx.apply(Setting(frequencies_khz={"cuda": 1109250, "cpu": 1420800}))
    a = nx.run_frame(W, "cuda").latency_ms
    b = nx.run_frame(SMALL, "cpu", threads=6).latency_ms
    e0, t0 = nx.energy_j, nx.now_s
    ra, rb = nx.run_concurrent([FrameRequest(W, "cuda"), FrameRequest(SMALL, "cpu", 6)])
    assert rb.latency_ms > b and ra.latency_ms >= a
    assert nx.now_s - t0 == pytest.approx(max(ra.latency_ms, rb.latency_ms) / 1e3)
    assert max(ra.energy_j, rb.energy_j) == pytest.approx(nx.energy_j - e0)


def test_a_frame_stamped_before_the_clock_shares_the_span_first_come_first_served() -> None:
    """Two models' frames of one stamp, costed one after the other (as every runner does): the
    second shares the processor with the first over their overlap instead of starting where the
    first ended; the first keeps its latency; the clock ends at the later end; the overlap's
    energy is charged once. A stamp older than the kept past runs now, as before."""

    def pinned() -> SimulatedXavierNX:
        nx = quiet()
        nx.apply(Setting(frequencies_khz={"cuda": 306000, "cpu": 1420800}))
        nx.advance(1.0)
        return nx

    alone = pinned()
    t0 = alone.now_s
    solo = alone.run_frame(W, "cuda")
    e_solo = alone.energy_j
    nx = pinned()
    e0 = nx.energy_j
    first = nx.run_frame(W, "cuda", start_s=t0)
    second = nx.run_frame(W, "cuda", start_s=t0)
    assert first.latency_ms == pytest.approx(solo.latency_ms)
    assert second.start_s == pytest.approx(t0)
    assert solo.latency_ms * 1.05 < second.latency_ms < 2 * solo.latency_ms
    assert nx.now_s == pytest.approx(t0 + second.latency_ms / 1e3)
    # more energy than one frame, less than two frames one after the other with idle between
    assert e_solo - e0 < nx.energy_j - e0 < 2 * (e_solo - e0)
    late = nx.run_frame(W, "cuda", start_s=nx.now_s - 5.0)  # beyond the kept past
    assert late.start_s == pytest.approx(second.end_s)
    assert late.latency_ms == pytest.approx(solo.latency_ms, rel=0.05)


def test_apply_validates_everything_before_changing_anything() -> None:
    nx = quiet()
    before = nx.telemetry()
    with pytest.raises(PlatformError, match=r"nearest valid: 1058250 kHz, 1109250 kHz"):
        nx.apply(Setting(frequencies_khz={"cuda": 1100000}))
    with pytest.raises(PlatformError, match="cpu frequency 1000000 kHz is not in the table"):
        nx.apply(Setting(frequencies_khz={"cuda": 510000, "cpu": 1000000}, power_mode=3))
    with pytest.raises(PlatformError, match="governor"):
        nx.apply(Setting(frequencies_khz={"cuda": 510000}, governors={"cpu": "turbo"}))
    with pytest.raises(PlatformError, match="power mode 11"):
        nx.apply(Setting(power_mode=11))
    with pytest.raises(PlatformError, match="cores_online 7"):
        nx.apply(Setting(cores_online=7))
    with pytest.raises(PlatformError, match="processor 'dla'"):
        nx.apply(Setting(frequencies_khz={"dla": 1}))
    after = nx.telemetry()
    assert after.processors == before.processors and after.power_mode == before.power_mode


def test_power_mode_caps_and_unpin() -> None:
    nx = quiet()
    nx.apply(Setting(power_mode=3, frequencies_khz={"cuda": 1109250, "cpu": 1907200}))
    t = nx.telemetry()
    assert t.power_mode == 3
    assert t.processors["cpu"].cores_online == POWER_MODES[3].cpu_online
    assert t.processors["cuda"].frequency_khz == 803250  # pinned above the 10 W cap: runs at it
    assert t.processors["cpu"].frequency_khz == POWER_MODES[3].cpu_max_khz
    nx.apply(Setting(power_mode=8))
    assert nx.frequency_khz("cuda") == 1109250
    nx.apply(Setting(frequencies_khz={"cuda": 510000}))
    nx.apply(Setting(governors={"cuda": "performance"}))
    assert nx.frequency_khz("cuda") == 510000  # still pinned
    nx.apply(Setting(unpin=frozenset({"cuda"})))
    assert nx.frequency_khz("cuda") == 1109250


def test_schedutil_follows_utilisation() -> None:
    nx = quiet()
    nx.advance(1.0)
    assert nx.frequency_khz("cpu") == CPU_FREQUENCIES_KHZ[0]  # idle board: lowest step
    for _ in range(40):
        nx.run_frame(W, "cuda")  # the host thread keeps one core busy
    assert nx.frequency_khz("cpu") == POWER_MODES[2].cpu_max_khz
    t = nx.telemetry().processors["cpu"]
    assert t.utilisation_max > 0.8  # busy at the top: 1.25 x f x busy asks for more
    assert t.utilisation < 0.3
    # the GPU settles where schedutil's rule keeps its own frequency (about 80 % busy), below
    # the top for this launch-bound member
    gpu = nx.telemetry().processors["cuda"]
    f = nx.frequency_khz("cuda")
    assert f < GPU_FREQUENCIES_KHZ[-1]
    assert schedutil_khz(GPU_FREQUENCIES_KHZ, f, gpu.utilisation) == f
    assert 0.5 < gpu.utilisation <= 0.8


def test_latency_table_and_reference_checks() -> None:
    nx = quiet()
    table = nx.latency_table(W, "cuda")
    assert list(table) == list(GPU_FREQUENCIES_KHZ)
    assert list(table.values()) == sorted(table.values(), reverse=True)
    with pytest.raises(PlatformError, match="nearest valid"):
        nx.reference_latency_ms(W, "cpu", 1000000)
    with pytest.raises(PlatformError, match="not on the simulated NX"):
        reference_latency_ms(W, "npu")


def test_embedded_default_sized_networks_get_a_useful_nx_range() -> None:
    smallest = Workload("fm-s", 6_400_000, 48, 520_000, runtime="torch-static")
    largest = Workload("fm-l", 57_000_000, 90, 2_200_000, runtime="torch-static")
    g = [reference_latency_ms(w, "cuda") for w in (smallest, largest)]
    assert 15 < g[0] < g[1] < 80 and g[1] / g[0] > 1.4  # launch-bound, but spans a range


def test_workload_from_layer_specs_counts_weight_layers() -> None:
    blk = SimpleNamespace(expand_ratio=4, use_se=True, mid_channels=64)
    specs = [
        SimpleNamespace(
            kind="Conv", macs=10, params=1, input_shape=(8, 8, 1), output_shape=(8, 8, 16)
        ),
        SimpleNamespace(
            kind="expanded_conv",
            block=blk,
            macs=100,
            params=10,
            input_shape=(8, 8, 16),
            output_shape=(8, 8, 16),
        ),
        SimpleNamespace(
            kind="AvgPool2D", macs=0, params=0, input_shape=(8, 8, 16), output_shape=(1, 1, 16)
        ),
        SimpleNamespace(
            kind="Logits", macs=160, params=170, input_shape=(1, 1, 16), output_shape=(10,)
        ),
    ]
    assert count_weight_layers(specs) == 1 + 5 + 1
    w = workload_from_layer_specs("x", specs)
    assert (w.macs, w.params, w.layers) == (270, 181, 7)
    assert Workload.from_dict(w.to_dict()) == w
    with pytest.raises(ValueError, match="runtime"):
        Workload("x", 1, 1, 1, runtime="tensorrt")


def test_factory_and_corunner_errors() -> None:
    nx = make_platform("sim-xavier-nx", seed=1)
    assert isinstance(nx, SimulatedXavierNX)
    assert {p.name for p in nx.processors()} == {"cpu", "cuda"}
    assert nx.capabilities().power_modes[2] == "MODE_15W_6CORE"
    with pytest.raises(PlatformError, match="share"):
        nx.start_corunner("x", "cuda", 1.5)
    with pytest.raises(PlatformError, match="no co-runner"):
        nx.stop_corunner("nobody")
    with pytest.raises(PlatformError, match="unknown platform"):
        make_platform("windows")


def test_set_corunner_replaces_and_stops_a_scenario_load() -> None:
    nx = SimulatedXavierNX(seed=0)
    nx.set_corunner("app", "cuda", 0.3)
    nx.set_corunner("app", "cuda", 0.6)  # a change of load replaces the running one
    assert nx.corunners["app"].share == 0.6
    nx.set_corunner("app", "cuda", 0.0)
    assert "app" not in nx.corunners
    nx.set_corunner("other", "cuda", 0.0)  # stopping what never ran is a no-op
    with pytest.raises(PlatformError, match=r"share 1\.5"):
        nx.set_corunner("app", "cuda", 1.5)


def _run(board: SimulatedXavierNX, inputs: list[tuple[float, str, float]]) -> list[tuple]:
    """Frames ("frame", stamp) and co-runner / ambient events, each handed to the board in the
    order given, as ``sim_platform_node`` does; the frames' results and the final state."""
    board.apply(Setting(frequencies_khz={"cuda": GPU_FREQUENCIES_KHZ[-1], "cpu": 1420800}))
    out = []
    for stamp, kind, value in inputs:
        if kind == "frame":
            board.advance_to(stamp)
            r = board.run_frame(W, "cuda")
            out.append((stamp, r.start_s, r.latency_ms, r.energy_j))
        elif kind == "corunner":
            board.at(stamp, lambda b, v=value: b.set_corunner("app", "cuda", v))
        elif kind == "ambient":
            board.at(stamp, lambda b, v=value: b.set_ambient(v))
        else:  # a telemetry read
            board.telemetry_at(stamp)
    board.advance_to(10.0)
    tele = board.telemetry()
    out.append((board.now_s, board.energy_j, board.package_c, dict(board.corunners), tele))
    return out


def test_events_and_readings_take_effect_in_stamp_order_whatever_the_arrival_order() -> None:
    """A scenario event reaches the board over a topic, a frame stamped just before it only after
    inference; a telemetry timer reads the board while a frame is still on its way. The board's
    results must be those of stamp order (the fast replay's) in any such arrival order."""
    frames = [(0.1 * k, "frame", 0.0) for k in range(1, 40)]
    events = [(1.05, "corunner", 0.5), (2.03, "ambient", 40.0), (3.02, "corunner", 0.0)]
    reads = [(0.5 * k, "read", 0.0) for k in range(1, 9)]
    in_order = sorted(frames + events + reads, key=lambda x: (x[0], x[1] != "corunner"))
    # each event and each reading arrives before the frame that precedes it (late frames)
    late: list[tuple[float, str, float]] = []
    for item in in_order:
        if item[1] != "frame" and late and late[-1][1] == "frame" and item[0] - late[-1][0] < 0.1:
            late.insert(len(late) - 1, item)
        else:
            late.append(item)
    assert late != in_order
    assert sum(1 for a, b in zip(late, in_order, strict=True) if a != b) >= 6
    expected = _run(quiet(), in_order)
    got = _run(quiet(), late)
    assert got[:-1] == expected[:-1], "every frame costed as in stamp order"
    assert got[-1][:4] == expected[-1][:4]
    # and the co-runner really was on for the frames between its start and stop
    slow = [lat for (stamp, _, lat, _) in expected[:-1] if 1.05 < stamp < 3.02]
    fast = [lat for (stamp, _, lat, _) in expected[:-1] if stamp > 3.3]
    assert min(slow) > max(fast)


def test_a_reading_does_not_move_the_clock_past_inputs_on_their_way() -> None:
    board = quiet()
    board.advance_to(1.0)
    board.at(2.5, lambda b: b.set_ambient(45.0))
    tele = board.telemetry_at(3.0)
    assert tele.stamp_s == pytest.approx(3.0)
    assert board.now_s == pytest.approx(2.0), "held back by the reorder window only"
    assert board.ambient_c == 25.0, "the event after the held clock is not applied yet"
    assert tele.temperatures_c and board.telemetry().stamp_s == pytest.approx(2.0)
    board.advance_to(2.4)
    r = board.run_frame(W, "cuda")  # stamped before the event: runs at its own stamp
    assert r.start_s == pytest.approx(2.4)
    board.advance_to(2.6)
    assert board.ambient_c == 45.0


def test_a_bad_event_fails_at_once_and_changes_nothing() -> None:
    board = quiet()
    board.set_corunner("app", "cuda", 0.5)
    with pytest.raises(PlatformError, match="share"):
        board.at(5.0, lambda b: b.set_corunner("app", "cuda", 2.0))
    with pytest.raises(PlatformError, match="share"):
        board.at(0.0, lambda b: b.set_corunner("app", "cuda", 2.0))
    board.advance_to(6.0)
    assert board.corunners["app"].share == 0.5


def test_a_reading_after_a_frame_of_its_own_time_reads_the_state_before_it() -> None:
    """The timer of a reading at t and the frame stamped t race in a live graph; the reading
    says what the board was at t, before the frame (and the events of t), either way."""

    def board() -> SimulatedXavierNX:
        b = quiet()
        b.advance_to(0.9)
        b.run_frame(W, "cuda")
        b.at(1.0, lambda x: x.set_state_of_charge(0.5))
        return b

    first = board()
    reading = first.telemetry_at(1.0)
    first.advance_to(1.0)
    first.run_frame(W, "cuda")
    late = board()
    late.advance_to(1.0)
    late.run_frame(W, "cuda")
    assert late.telemetry_at(1.0) == reading
    assert reading.battery is not None and reading.battery.state_of_charge > 0.99
