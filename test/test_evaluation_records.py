"""Per-frame records: the builder's joins, results file and CSV round trips, result bags."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dynofa_ros.configuration import KEEP, Configuration
from dynofa_ros.evaluation import bagio
from dynofa_ros.evaluation import scenario as sc
from dynofa_ros.evaluation import topics as T
from dynofa_ros.evaluation.bagio import BagError, BagWriter
from dynofa_ros.evaluation.records import (
    CSV_COLUMNS,
    FrameRecord,
    RecordBuilder,
    ResultsError,
    RunInfo,
    RunResults,
    frames_csv,
    read_frames_csv,
    read_results,
    scenario_events,
    write_frames_csv,
    write_results,
)
from dynofa_ros.evaluation.result_bag import load_result_bag

S = 1_000_000_000
TINY = sc.load(sc.resolve("tiny"))
T0 = TINY.start_ns
MODEL = "classifier"


def _label(i: int) -> int:
    return i % 10


def _predicted(i: int) -> int:
    return _label(i) if i % 2 == 0 else (_label(i) + 1) % 10


def _latency(i: int) -> float:
    return 70.0 if i == 7 else 50.0 if i <= 7 else 30.0


def _subnet(i: int) -> str:
    return "big" if i <= 7 else "small"


def _expected_frame(i: int) -> dict[str, Any]:
    t = 0.2 * (i - 1)
    return {
        "t_s": pytest.approx(t), "frame_seq": i, "subnet_id": _subnet(i),
        "latency_ms": _latency(i), "target_ms": 60.0, "deadline_missed": _latency(i) > 60,
        "predicted": _predicted(i), "label": _label(i), "correct": i % 2 == 0,
        "power_w": 5.0, "energy_j": pytest.approx(0.25), "energy_total_j": 0.25 * i,
        "battery": pytest.approx(0.3 if t < 1.0 - 1e-9 else 0.19 if t < 2.0 - 1e-9 else 0.15),
        "max_temperature_c": 40.0 if t < 1.5 - 1e-9 else 45.0,
        "throttled": t >= 2.0 - 1e-9, "processor": "cuda", "threads": 1,
        "cpu_frequency_khz": 1420800, "gpu_frequency_khz": 1109250, "power_mode": 2,
        "command_seq": 0 if i <= 7 else 1, "stamp_ns": T0 + round(t * S),
    }  # fmt: skip


def _feed(b: RecordBuilder) -> None:
    """What the nodes of one replay of ``tiny`` publish, fed in the order a bag gives it."""
    for i in range(1, 16):
        stamp = T0 + round(0.2 * (i - 1) * S)
        b.ground_truth("camera", stamp, _label(i))
        b.classification(MODEL, stamp, frame_seq=i, subnet_id=_subnet(i),
                         class_ids=[_predicted(i), 3], latency_ms=_latency(i),
                         command_seq=0 if i <= 7 else 1)  # fmt: skip
        b.status(MODEL, i, subnet_id=_subnet(i), processor="cuda", threads=1,
                 cpu_frequency_khz=1420800, gpu_frequency_khz=1109250,
                 latency_ms=_latency(i), latency_target_ms=60.0 if i != 3 else 0.0,
                 power_w=5.0, energy_per_frame_mj=250.0, energy_total_j=0.25 * i,
                 last_command_seq=0 if i <= 7 else 1)  # fmt: skip
        if i == 5:  # a rejected command reports the same count: not a frame
            b.status(MODEL, 5, latency_ms=999.0, processor="cpu")
    for t, soc in ((0.0, 0.3), (1.0, 0.19), (2.0, 0.15)):
        b.battery(T0 + round(t * S), soc)
    b.temperature(T0, "GPU-therm", 40.0)
    b.temperature(T0 + round(1.5 * S), "GPU-therm", 45.0)
    b.throttled(T0, False)
    b.throttled(T0 + 2 * S, True)
    b.power_mode(T0, 2)
    b.command(T0 + round(1.35 * S), MODEL, seq=1, config=Configuration("small", "cuda", 1),
              latency_target_ms=60.0, reason="too slow")  # fmt: skip


def _check_frames(run: RunResults) -> None:
    assert [f.model for f in run.frames] == [MODEL] * 15
    for f in run.frames:
        got = dataclasses.asdict(f)
        want = _expected_frame(f.frame_seq)
        assert {k: got[k] for k in want} == want, f.frame_seq


def test_builder_joins_by_sequence_stamp_and_time() -> None:
    b = RecordBuilder.for_scenario(TINY, "manager", policy="manager", mode="fast")
    _feed(b)
    run = b.build()
    assert run.info.t0_ns == T0 and run.info.duration_s == 3.0 and run.info.scenario == "tiny"
    assert run.info.models[MODEL].latency_target_ms == 60.0
    _check_frames(run)
    assert [(e.t_s, e.kind) for e in run.events] == [
        (1.0, "priority"), (1.0, "battery_threshold"), (1.5, "corunner"), (2.5, "corunner"),
    ]  # fmt: skip
    assert run.events == sorted(run.events, key=lambda e: e.t_s)
    (cmd,) = run.commands
    assert (cmd.t_s, cmd.seq, cmd.config.subnet_id, cmd.config.power_mode) == (
        pytest.approx(1.35), 1, "small", None,
    )  # fmt: skip
    assert [s.value for s in run.series("battery")] == [0.3, 0.19, 0.15]


def test_throttled_from_a_temperature_limit_when_no_series() -> None:
    info = dataclasses.replace(RunInfo.for_scenario(TINY, "r"), throttle_temperature_c=44.0)
    b = RecordBuilder(info)
    b.classification(MODEL, T0, frame_seq=1, subnet_id="a", class_ids=[1], latency_ms=10)
    b.classification(MODEL, T0 + 2 * S, frame_seq=2, subnet_id="a", class_ids=[1],
                     latency_ms=10)  # fmt: skip
    b.temperature(T0, "cpu", 40.0)
    b.temperature(T0 + S, "cpu", 46.0)
    run = b.build()
    assert [f.throttled for f in run.frames] == [False, True]
    assert [f.target_ms for f in run.frames] == [60.0, 60.0]  # the scenario's, no status
    assert [(s.t_s, s.value) for s in run.series("throttled")] == [(0.0, 0.0), (1.0, 1.0)]


def test_frames_are_judged_by_the_scenarios_deadline_not_the_nodes() -> None:
    """A mission change with a latency target holds for every policy: a baseline whose node
    never heard of it (its status still says 60 ms) misses the 35 ms deadline all the same."""
    from dynofa_ros.evaluation.records import priority_event

    b = RecordBuilder(RunInfo.for_scenario(TINY, "static"))
    b.events.append(priority_event(1.0, 3, 35.0, "obstacle"))
    b.events.append(priority_event(2.0, 1, 0.0, "clear"))
    for k, t in enumerate((0.5, 1.0, 1.5, 2.5), start=1):
        b.classification(MODEL, T0 + round(t * S), frame_seq=k, subnet_id="a", class_ids=[1],
                         latency_ms=40.0)  # fmt: skip
        b.status(MODEL, k, latency_ms=40.0, latency_target_ms=60.0)
    run = b.build()
    assert [f.target_ms for f in run.frames] == [60.0, 35.0, 35.0, 60.0]
    assert [f.deadline_missed for f in run.frames] == [False, True, True, False]


def test_results_file_round_trip(tmp_path: Path) -> None:
    b = RecordBuilder.for_scenario(TINY, "manager", policy="manager", mode="fast",
                                   extra={"settings": {"family": "gpu"}})  # fmt: skip
    _feed(b)
    run = b.build()
    path = write_results(tmp_path / "manager.results.jsonl", run)
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "dynofa-results" and header["version"] == 1
    assert header["record"] == "run" and header["name"] == "manager"
    records = [json.loads(x)["record"] for x in lines[1:]]
    assert records.count("frame") == 15 and records.count("event") == 4
    again = read_results(path)
    assert again.info == run.info
    assert again.frames == run.frames and again.events == run.events
    assert again.commands == run.commands and again.samples == run.samples
    assert [p.name for p in tmp_path.iterdir()] == ["manager.results.jsonl"]  # no temp left


def test_results_reader_tolerates_unknown_records_and_fields(tmp_path: Path) -> None:
    path = tmp_path / "r.results.jsonl"
    path.write_text(
        '{"format": "dynofa-results", "version": 1, "record": "run", "name": "x", "new": 1}\n'
        '{"record": "annotation", "text": "from a newer writer"}\n'
        '{"record": "frame", "t_s": 0, "model": "m", "frame_seq": 1, "subnet_id": "a", '
        '"processor": "", "threads": 0, "cpu_frequency_khz": 0, "gpu_frequency_khz": 0, '
        '"latency_ms": 12, "target_ms": null, "deadline_missed": null, "predicted": 1, '
        '"label": null, "correct": null, "power_w": null, "energy_j": null, '
        '"energy_total_j": null, "battery": null, "max_temperature_c": null, '
        '"throttled": null, "unknown_field": 3}\n\n'
    )
    run = read_results(path)
    (f,) = run.frames
    assert f.latency_ms == 12.0 and isinstance(f.latency_ms, float) and f.stamp_ns == 0


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "empty results file"),
        ('{"format": "other", "record": "run", "name": "x"}\n', "not a dynofa results file"),
        ('{"format": "dynofa-results", "version": 7, "record": "run", "name": "x"}\n',
         "version 7 is not supported"),
        ('{"format": "dynofa-results", "version": 1, "record": "run"}\n', "'name'"),
        ('{"format": "dynofa-results", "version": 1, "record": "run", "name": "x"}\n'
         '{"record": "frame", "t_s": 0', ":2: not JSON"),
        ('{"format": "dynofa-results", "version": 1, "record": "run", "name": "x"}\n'
         '{"record": "sample", "t_s": 0, "series": "battery", "value": "full"}\n',
         ":2: sample: field 'value' = 'full' is invalid; allowed: a number"),
        ('{"format": "dynofa-results", "version": 1, "record": "run", "name": "x"}\n'
         '{"record": "event", "t_s": 0, "kind": "x"}\n', "field 'label' is missing"),
        ('{"format": "dynofa-results", "version": 1, "record": "run", "name": "x", '
         '"t0_ns": "soon"}\n', "'t0_ns'"),
    ],
)  # fmt: skip
def test_bad_results_files(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "bad.results.jsonl"
    path.write_text(content)
    with pytest.raises(ResultsError) as err:
        read_results(path)
    assert needle in str(err.value) and str(path) in str(err.value)


def test_per_frame_csv_round_trip_and_errors(tmp_path: Path) -> None:
    b = RecordBuilder.for_scenario(TINY, "r")
    _feed(b)
    frames = b.build().frames
    path = write_frames_csv(tmp_path / "frames.csv", frames)
    text = path.read_text()
    header, first = text.splitlines()[:2]
    assert tuple(header.split(",")) == CSV_COLUMNS
    assert text == frames_csv(frames)
    row = dict(zip(CSV_COLUMNS, first.split(","), strict=True))
    assert row["deadline_missed"] == "0" and row["correct"] == "0" and row["label"] == "1"
    assert read_frames_csv(path) == frames
    bad = tmp_path / "bad.csv"
    bad.write_text(text.replace(",50.0,60.0,", ",fast,60.0,", 1))
    with pytest.raises(ResultsError, match=r"bad.csv:2: column 'latency_ms' = 'fast'"):
        read_frames_csv(bad)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ResultsError, match="not a per-frame CSV; missing column"):
        read_frames_csv(tmp_path / "other.csv")


# ----------------------------------------------------------------------------- result bags
def _msg(msgtype: str, **kw: Any) -> Any:
    return bagio.typestore().types[msgtype](**kw)


def write_result_bag(path: Path, storage: str, run_info: dict[str, Any] | None) -> Path:
    """A result bag as a replay of ``tiny`` records it: inputs plus the nodes' outputs."""
    custom = {T.CUSTOM_DATA_SCENARIO: TINY.to_yaml()}
    if run_info is not None:
        custom[T.CUSTOM_DATA_RUN] = json.dumps(run_info)
    nan = float("nan")
    items: list[tuple[int, str, str, Any]] = []

    def add(ns: int, topic: str, msgtype: str, msg: Any) -> None:
        items.append((ns, topic, msgtype, msg))

    add(T0, T.DESCRIPTION, T.STRING, _msg(T.STRING, data=TINY.to_yaml()))
    for p in TINY.mission:
        ns = T0 + round(p.t * S)
        add(ns, T.MISSION_PRIORITY, T.MISSION_PRIORITY_MSG, _msg(
            T.MISSION_PRIORITY_MSG, header=bagio.header(ns), level=p.level,
            latency_target_ms=0.0, min_accuracy=0.0, energy_budget_j=0.0,
            mission_duration_s=0.0, reason=p.reason))  # fmt: skip
    for c in TINY.corunners:
        ns = T0 + round(c.t * S)
        add(ns, T.SCENARIO_CORUNNER, T.CORUNNER_LOAD, _msg(
            T.CORUNNER_LOAD, header=bagio.header(ns), name=c.name, processor=c.processor,
            share=c.share))  # fmt: skip
    for i in range(1, 16):
        ns = T0 + round(0.2 * (i - 1) * S)
        hdr = bagio.header(ns, "camera")
        add(ns, "/camera/ground_truth", T.CLASSIFICATION_RESULT, _msg(
            T.CLASSIFICATION_RESULT, header=hdr, model_name="ground_truth", subnet_id="",
            frame_seq=i, command_seq=0, class_ids=np.array([_label(i)], np.int32),
            labels=["x"], scores=np.array([1.0], np.float32), latency_ms=0.0))  # fmt: skip
        done = ns + round(_latency(i) * 1e6)  # published when the frame is done
        add(done, f"/{MODEL}/classification", T.CLASSIFICATION_RESULT, _msg(
            T.CLASSIFICATION_RESULT, header=hdr, model_name=MODEL, subnet_id=_subnet(i),
            frame_seq=i, command_seq=0 if i <= 7 else 1,
            class_ids=np.array([_predicted(i), 3], np.int32), labels=["p", "q"],
            scores=np.array([0.7, 0.2], np.float32), latency_ms=_latency(i)))  # fmt: skip
        statuses = [(i, _latency(i), "cuda")] + ([(5, 999.0, "cpu")] if i == 5 else [])
        for count, latency, processor in statuses:
            add(done + 1, f"/{MODEL}/status", T.PERCEPTION_STATUS, _msg(
                T.PERCEPTION_STATUS, header=bagio.header(done + 1, "camera"), model_name=MODEL,
                level=0, message="", subnet_id=_subnet(i), processor=processor, threads=1,
                cpu_frequency_khz=1420800, gpu_frequency_khz=1109250,
                last_command_seq=0 if i <= 7 else 1, last_command_epoch=0 if i <= 7 else 7,
                fallback=False, frames_lost_transport=0, rejected_command_seq=0, rejected_reason="",
                preprocess_ms=1.0, inference_ms=latency - 2, postprocess_ms=1.0,
                latency_ms=latency, frame_age_ms=latency,
                latency_target_ms=60.0 if i != 3 else 0.0, frames_processed=count,
                frames_dropped=0, frames_rejected=0, power_w=5.0, energy_per_frame_mj=250.0,
                energy_total_j=0.25 * i))  # fmt: skip
    for t, soc in ((0.0, 0.3), (1.0, 0.19), (2.0, 0.15)):
        ns = T0 + round(t * S)
        add(ns, "/battery", T.BATTERY_STATE, _msg(
            T.BATTERY_STATE, header=bagio.header(ns, "battery"), voltage=15.0, temperature=nan,
            current=-1.0, charge=nan, capacity=nan, design_capacity=nan, percentage=soc,
            power_supply_status=2, power_supply_health=1, power_supply_technology=2,
            present=True, cell_voltage=np.zeros(0, np.float32),
            cell_temperature=np.zeros(0, np.float32), location="", serial_number=""))  # fmt: skip
    for t, c in ((0.0, 40.0), (1.5, 45.0)):
        ns = T0 + round(t * S)
        add(ns, "/temperature/gpu_therm", T.TEMPERATURE, _msg(
            T.TEMPERATURE, header=bagio.header(ns, "GPU-therm"), temperature=c,
            variance=0.0))  # fmt: skip
    KeyValue = bagio.typestore().types["diagnostic_msgs/msg/KeyValue"]
    Status = bagio.typestore().types["diagnostic_msgs/msg/DiagnosticStatus"]
    for t, message, power, energy in (
        (0.0, "ok", 6.0, 10.0),
        (2.0, "thermal throttling", 7.0, 24.0),
    ):
        ns = T0 + round(t * S)
        values = {"power_w": power, "energy_j": energy, "power_mode": 2, "cpu_khz": 1420800}
        platform = Status(
            level=0,
            name="sim_platform: simulated Xavier NX",
            message=message,
            hardware_id="sim",
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )
        other = Status(level=0, name="perception", message="ok", hardware_id="x",
                       values=[KeyValue(key="frames_processed", value="3")])  # fmt: skip
        add(
            ns,
            T.DIAGNOSTICS,
            T.DIAGNOSTIC_ARRAY,
            _msg(T.DIAGNOSTIC_ARRAY, header=bagio.header(ns), status=[other, platform]),
        )
    command = _msg(
        T.RECONFIGURATION_COMMAND, header=bagio.header(T0 + round(1.35 * S)), epoch=7, seq=1,
        target_model=MODEL, subnet_id="small", processor="cuda", threads=1,
        cpu_frequency_khz=0, gpu_frequency_khz=0, power_mode=-1, latency_target_ms=60.0,
        predicted_latency_ms=30.0, predicted_accuracy=0.8, predicted_power_w=5.0,
        reason="too slow")  # fmt: skip
    add(T0 + round(1.35 * S), f"/{MODEL}/reconfigure", T.RECONFIGURATION_COMMAND, command)
    # the manager re-sends its command in force (a heartbeat): one command in the records
    add(T0 + round(2.35 * S), f"/{MODEL}/reconfigure", T.RECONFIGURATION_COMMAND, command)
    items.sort(key=lambda x: x[0])
    with BagWriter(path, storage, custom_data=custom) as w:
        for ns, topic, msgtype, msg in items:
            w.write(topic, msgtype, ns, msg)
    return path


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_result_bag_gives_the_same_records_as_the_builder(tmp_path: Path, storage: str) -> None:
    bag = write_result_bag(
        tmp_path / "result", storage, {"name": "manager", "policy": "manager", "mode": "live"}
    )
    run = load_result_bag(bag)
    assert (run.info.name, run.info.policy, run.info.mode) == ("manager", "manager", "live")
    assert run.info.t0_ns == T0 and run.info.scenario == "tiny"
    assert run.info.source == str(bag)
    _check_frames(run)
    assert [(e.t_s, e.kind) for e in run.events] == [
        (1.0, "priority"), (1.0, "battery_threshold"), (1.5, "corunner"), (2.5, "corunner"),
    ]  # fmt: skip
    # the same events as the in-process mode derives from the scenario
    assert [e for e in run.events if e.kind != "battery_threshold"] == scenario_events(TINY)
    (cmd,) = run.commands
    assert (cmd.model, cmd.seq, cmd.config.subnet_id, cmd.reason) == (MODEL, 1, "small", "too slow")
    assert [(s.t_s, s.value) for s in run.series("throttled")] == [(0.0, 0.0), (2.0, 1.0)]
    assert [(s.t_s, s.value) for s in run.series("power")] == [(0.0, 6.0), (2.0, 7.0)]
    assert [(s.t_s, s.value) for s in run.series("board_energy")] == [(0.0, 10.0), (2.0, 24.0)]
    assert [(s.t_s, s.value) for s in run.series("power_mode")] == [(0.0, 2.0), (2.0, 2.0)]
    assert [s.series for s in run.samples if s.series.startswith("temperature/")] == [
        "temperature/GPU-therm"] * 2  # fmt: skip
    # and the in-process builder fed the same values gives the same frames
    b = RecordBuilder.for_scenario(TINY, "manager")
    _feed(b)
    assert b.build().frames == run.frames


def test_result_bag_without_run_description_is_named_after_the_bag(tmp_path: Path) -> None:
    run = load_result_bag(write_result_bag(tmp_path / "plain_run", "mcap", None))
    assert run.info.name == "plain_run" and run.info.t0_ns == T0
    assert load_result_bag(tmp_path / "plain_run", name="renamed").info.name == "renamed"


def test_scenario_bag_is_not_a_result_bag(tmp_path: Path) -> None:
    with BagWriter(tmp_path / "input", "sqlite3") as w:
        w.write(T.DESCRIPTION, T.STRING, T0, _msg(T.STRING, data=TINY.to_yaml()))
    with pytest.raises(ResultsError, match="no classification results"):
        load_result_bag(tmp_path / "input")
    with BagWriter(tmp_path / "wrongtype", "sqlite3") as w:
        w.write(f"/{MODEL}/status", T.STRING, T0, _msg(T.STRING, data="ok"))
    with pytest.raises(BagError, match=f"/{MODEL}/status has type std_msgs/msg/String"):
        load_result_bag(tmp_path / "wrongtype")


def test_power_mode_of_a_frame_from_status_telemetry_or_applied_command() -> None:
    """Telemetry says mode 2 from t = 0; a command (seq 1, mode 0) sent at 0.5 s takes effect
    with the first frame that acknowledges it; a command not yet applied does not count; a
    status that reports the mode itself wins."""
    b = RecordBuilder.for_scenario(TINY, "r")
    b.power_mode(T0, 2)
    b.command(T0 + S // 2, MODEL, seq=1, config=replace(KEEP, power_mode=0))
    b.command(T0 + 2 * S, MODEL, seq=2, config=replace(KEEP, power_mode=5))  # not acknowledged
    b.command(T0 + S // 2, "other", seq=3, config=replace(KEEP, power_mode=7))  # another model's
    applied = [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    for i, seq in enumerate(applied):
        ns = T0 + round(0.3 * i * S)
        b.classification(MODEL, ns, frame_seq=i + 1, subnet_id="a", class_ids=[1], latency_ms=9)
        extra = {"power_mode": 4} if i == 9 else {}
        b.status(MODEL, i + 1, last_command_seq=seq, **extra)
    b.power_mode(T0 + round(2.05 * S), 2)  # telemetry later than the command: it wins
    modes = [f.power_mode for f in b.build().frames]
    assert modes == [2, 2, 2, 0, 0, 0, 0, 2, 2, 4]
    assert [f.config.power_mode for f in b.build().frames] == modes


def test_csv_columns_are_the_frame_fields() -> None:
    names = [f.name for f in dataclasses.fields(FrameRecord)]
    assert sorted(CSV_COLUMNS) == sorted(names) and len(CSV_COLUMNS) == len(names)
    assert CSV_COLUMNS.index("power_mode") == CSV_COLUMNS.index("gpu_frequency_khz") + 1
