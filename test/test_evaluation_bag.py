"""Scenario -> real rosbag2 bags (sqlite3 and mcap), read back with ``rosbags``; bad bags."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from dynofa_ros.cli import main as cli
from dynofa_ros.evaluation import bagio
from dynofa_ros.evaluation import scenario as sc
from dynofa_ros.evaluation import topics as T
from dynofa_ros.evaluation.bagio import BagError, BagReader, BagWriter
from dynofa_ros.evaluation.generate import generate
from dynofa_ros.evaluation.scenario_bag import inspect_bag, read_scenario
from dynofa_ros.evaluation.timeline import FrameItem, iter_timeline

pytestmark = pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="Fashion-MNIST (dataset-fashion-mnist) not installed",
)

TINY_TOPICS = {
    T.DESCRIPTION: (T.STRING, 1),
    "/camera/image_raw": (T.IMAGE, 15),
    "/camera/ground_truth": (T.CLASSIFICATION_RESULT, 15),
    T.MISSION_PRIORITY: (T.MISSION_PRIORITY_MSG, 2),
    T.SCENARIO_BATTERY: (T.BATTERY_STATE, 6),
    T.SCENARIO_AMBIENT: (T.TEMPERATURE, 3),
    T.SCENARIO_CORUNNER: (T.CORUNNER_LOAD, 2),
}


@pytest.fixture(scope="module")
def tiny() -> sc.Scenario:
    return sc.load(sc.resolve("tiny"))


@pytest.fixture(scope="module", params=["sqlite3", "mcap"])
def tiny_bag(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             tiny: sc.Scenario) -> Path:  # fmt: skip
    out = tmp_path_factory.mktemp(request.param) / "tiny_bag"
    result = generate(tiny, out, request.param)
    assert result.path == out and result.storage == request.param and result.frames == 15
    return out


def test_bag_reads_back_with_rosbags_anyreader(tiny_bag: Path, tiny: sc.Scenario) -> None:
    """The standard reader decodes every message, our custom types from the bag's own
    definitions, and the content is the scenario's timeline."""
    storage = "mcap" if list(tiny_bag.glob("*.mcap")) else "sqlite3"
    assert list(tiny_bag.glob("*.mcap" if storage == "mcap" else "*.db3"))
    expected = [i for i in iter_timeline(tiny)]
    frames = [i for i in expected if isinstance(i, FrameItem)]
    with AnyReader([tiny_bag], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
        got = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
        assert got == TINY_TOPICS
        images, truths, priorities, corunners, stamps = [], [], [], [], []
        for conn, timestamp, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            stamps.append(timestamp)
            if conn.topic == T.DESCRIPTION:
                assert timestamp == tiny.start_ns
                assert sc.parse(msg.data) == tiny
                continue
            assert bagio.stamp_ns(msg) == timestamp  # header stamp = bag time
            if conn.topic == "/camera/image_raw":
                assert (msg.width, msg.height, msg.encoding, msg.step) == (64, 64, "rgb8", 192)
                assert msg.header.frame_id == "camera"
                images.append(np.asarray(msg.data).reshape(64, 64, 3))
            elif conn.topic == "/camera/ground_truth":
                assert msg.model_name == "ground_truth" and list(msg.scores) == [1.0]
                truths.append((timestamp, int(msg.class_ids[0]), msg.labels[0], msg.frame_seq))
            elif conn.topic == T.MISSION_PRIORITY:
                priorities.append((msg.level, msg.reason))
            elif conn.topic == T.SCENARIO_CORUNNER:
                corunners.append((msg.name, msg.processor, pytest.approx(msg.share)))
    assert stamps == sorted(stamps)
    assert all(np.array_equal(a, f.pixels) for a, f in zip(images, frames, strict=True))
    assert truths == [(f.stamp_ns, f.label, f.label_name, f.index + 1) for f in frames]
    assert priorities == [(1, "start"), (3, "obstacle ahead")]
    assert corunners == [("gpu_app", "cuda", 0.4), ("gpu_app", "cuda", 0.0)]


def test_bag_order_equals_the_in_process_timeline(tiny_bag: Path, tiny: sc.Scenario) -> None:
    """Both modes see the same items in the same order."""
    with BagReader(tiny_bag) as reader:
        order = [(t, topic) for topic, t, _ in reader.messages(list(TINY_TOPICS))
                 if topic not in (T.DESCRIPTION, "/camera/ground_truth")]  # fmt: skip
    topic_of = {"frame": "/camera/image_raw", "priority": T.MISSION_PRIORITY,
                "battery": T.SCENARIO_BATTERY, "ambient": T.SCENARIO_AMBIENT,
                "corunner": T.SCENARIO_CORUNNER}  # fmt: skip
    expected = [(i.stamp_ns, topic_of[i.kind]) for i in iter_timeline(tiny, images=False)]
    assert order == expected


def test_inspect_and_cli_check(tiny_bag: Path, tiny: sc.Scenario,
                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    info = inspect_bag(tiny_bag)
    assert info.scenario == tiny and read_scenario(tiny_bag) == tiny
    assert info.message_count == 44 and info.t0_ns == tiny.start_ns
    (cam,) = info.cameras
    assert (cam.name, cam.topic, cam.count, cam.ground_truth_count) == (
        "camera", "/camera/image_raw", 15, 15,
    )  # fmt: skip
    assert info.battery_topic == T.SCENARIO_BATTERY and info.has_priority and info.has_corunner
    assert info.notes == ()
    assert cli(["scenario", "check", str(tiny_bag)]) == 0
    out = capsys.readouterr().out
    assert "missing:   nothing" in out and "/camera/image_raw" in out and "15 frames" in out
    assert "duration:" in out and "2.800 s" in out


def test_cli_generate_both_storages_and_scenario_stays_in_metadata(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for storage in ("sqlite3", "mcap"):
        out = tmp_path / f"bag_{storage}"
        assert cli(["scenario", "generate", "tiny", "-o", str(out), "--storage", storage,
                    "--seed", "3", "--quiet"]) == 0  # fmt: skip
        assert f"({storage}, 15 frames" in capsys.readouterr().out
        with BagReader(out) as reader:
            assert reader.storage == storage
            stored = sc.parse(reader.custom_data[T.CUSTOM_DATA_SCENARIO])
        assert stored.seed == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag_mcap", "bag_sqlite3"]


def test_wrong_storage_and_existing_output(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert cli(["scenario", "generate", "tiny", "-o", str(tmp_path / "b"),
                "--storage", "rosbag1"]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("dynofa scenario: error: storage 'rosbag1' is not supported")
    assert "sqlite3, mcap" in err and not (tmp_path / "b").exists()
    (tmp_path / "exists").mkdir()
    assert cli(["scenario", "generate", "tiny", "-o", str(tmp_path / "exists")]) == 1
    assert "exists already" in capsys.readouterr().err


def test_invalid_scenario_file_names_field_on_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nduration_s: 2\ncamera: {fps: 0}\n")
    assert cli(["scenario", "generate", str(bad), "-o", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "bad.yaml" in err and "'camera.fps' = 0" in err and "0.1 <= fps <= 1000.0" in err


def test_interrupted_generation_leaves_no_bag(tmp_path: Path, tiny: sc.Scenario) -> None:
    def interrupt(done: int, total: int) -> None:
        if done == 7:
            raise KeyboardInterrupt

    out = tmp_path / "bag"
    with pytest.raises(KeyboardInterrupt):
        generate(tiny, out, "mcap", progress=interrupt)
    assert list(tmp_path.iterdir()) == []  # neither the bag nor its partial directory


def test_overwrite_replaces_only_when_complete(tmp_path: Path, tiny: sc.Scenario) -> None:
    out = tmp_path / "bag"
    generate(tiny, out, "sqlite3")
    before = sorted(p.name for p in out.iterdir())

    def interrupt(done: int, total: int) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        generate(dataclasses.replace(tiny, seed=9), out, "mcap", overwrite=True,
                 progress=interrupt)  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == before  # the old bag is intact
    generate(dataclasses.replace(tiny, seed=9), out, "mcap", overwrite=True)
    assert read_scenario(out).seed == 9 and list(out.glob("*.mcap"))
    assert [p.name for p in tmp_path.iterdir()] == ["bag"]


# ------------------------------------------------------------------------------ bad bags
def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def sqlite_bag(tmp_path_factory: pytest.TempPathFactory, tiny: sc.Scenario) -> Path:
    out = tmp_path_factory.mktemp("sq") / "tiny"
    generate(tiny, out, "sqlite3")
    return out


@pytest.fixture(scope="module")
def mcap_bag(tmp_path_factory: pytest.TempPathFactory, tiny: sc.Scenario) -> Path:
    out = tmp_path_factory.mktemp("mc") / "tiny"
    generate(tiny, out, "mcap")
    return out


def test_truncated_and_garbage_storage_files(tmp_path: Path, sqlite_bag: Path,
                                             mcap_bag: Path) -> None:  # fmt: skip
    cases = []
    for src, name in ((sqlite_bag, "tiny.db3"), (mcap_bag, "tiny.mcap")):
        data = (src / name).read_bytes()
        cut = _copy(src, tmp_path / f"cut_{name}")
        (cut / name).write_bytes(data[: len(data) // 3])
        junk = _copy(src, tmp_path / f"junk_{name}")
        (junk / name).write_bytes(b"not a bag at all" * 64)
        cases += [cut, junk]
    for bag in cases:
        with pytest.raises(BagError) as err:
            inspect_bag(bag)
        assert str(bag) in str(err.value) and "cannot read bag" in str(err.value)


def test_corrupt_message_inside_sqlite_storage(tmp_path: Path, sqlite_bag: Path) -> None:
    bag = _copy(sqlite_bag, tmp_path / "bag")
    with sqlite3.connect(bag / "tiny.db3") as db:
        (topic_id,) = db.execute(
            "SELECT id FROM topics WHERE name = '/camera/image_raw'"
        ).fetchone()
        db.execute("UPDATE messages SET data = substr(data, 1, 200) WHERE id = "
                   "(SELECT max(id) FROM messages WHERE topic_id = ?)", (topic_id,))  # fmt: skip
    with pytest.raises(BagError) as err:
        inspect_bag(bag)
    assert "/camera/image_raw" in str(err.value)
    assert inspect_bag(bag, verify=False).cameras[0].count == 15  # only a full read finds it


def test_missing_storage_file_and_metadata(tmp_path: Path, sqlite_bag: Path) -> None:
    bag = _copy(sqlite_bag, tmp_path / "bag")
    (bag / "tiny.db3").unlink()
    with pytest.raises(BagError, match="cannot read bag"):
        inspect_bag(bag)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match=r"no metadata\.yaml"):
        inspect_bag(tmp_path / "empty")
    with pytest.raises(BagError, match="does not exist"):
        inspect_bag(tmp_path / "nothing")


def _write(path: Path, storage: str, messages: list[tuple[str, str, object]]) -> Path:
    with BagWriter(path, storage) as w:
        for k, (topic, msgtype, msg) in enumerate(messages):
            w.write(topic, msgtype, 1_000_000_000 + k, msg)
    return path


def _image(ns: int = 1_000_000_000) -> object:
    Image = bagio.typestore().types[T.IMAGE]
    return Image(header=bagio.header(ns, "camera"), height=2, width=2, encoding="mono8",
                 is_bigendian=0, step=2, data=np.zeros(4, np.uint8))  # fmt: skip


def test_robot_bag_without_ground_truth_is_accepted_with_notes(tmp_path: Path) -> None:
    types = bagio.typestore().types
    temp = types[T.TEMPERATURE](header=bagio.header(1, "GPU-therm"), temperature=50.0,
                                variance=0.0)  # fmt: skip
    bag = _write(tmp_path / "robot", "mcap", [
        ("/robot/front_camera/image_raw", T.IMAGE, _image()),
        ("/temperature/gpu", T.TEMPERATURE, temp),
        ("/rosout_like", T.STRING, types[T.STRING](data="ignored")),
    ])  # fmt: skip
    info = inspect_bag(bag)
    (cam,) = info.cameras
    assert cam.name == "robot/front_camera" and cam.ground_truth_topic is None
    assert info.scenario is None and info.temperature_topics == ("/temperature/gpu",)
    assert info.ignored == ("/rosout_like",)
    notes = " | ".join(info.notes)
    assert "latency and energy only" in notes and "no battery" in notes
    assert "no scenario description" in notes and "/mission_priority" in notes


def test_missing_camera_and_wrong_types_on_contract_topics(tmp_path: Path) -> None:
    types = bagio.typestore().types
    no_camera = _write(tmp_path / "nocam", "sqlite3", [
        (T.MISSION_PRIORITY, T.MISSION_PRIORITY_MSG, types[T.MISSION_PRIORITY_MSG](
            header=bagio.header(1), level=1, latency_target_ms=0.0, min_accuracy=0.0,
            energy_budget_j=0.0, mission_duration_s=0.0, reason="")),
    ])  # fmt: skip
    with pytest.raises(BagError, match="no camera topic"):
        inspect_bag(no_camera)
    wrong = _write(tmp_path / "wrong", "sqlite3", [
        ("/camera/image_raw", T.IMAGE, _image()),
        (T.SCENARIO_BATTERY, T.STRING, types[T.STRING](data="90%")),
    ])  # fmt: skip
    with pytest.raises(BagError) as err:
        inspect_bag(wrong)
    msg = str(err.value)
    assert "/scenario/battery" in msg and "std_msgs/msg/String" in msg and T.BATTERY_STATE in msg


def test_bad_image_geometry_is_found(tmp_path: Path) -> None:
    Image = bagio.typestore().types[T.IMAGE]
    bad = Image(header=bagio.header(1, "camera"), height=4, width=4, encoding="rgb8",
                is_bigendian=0, step=12, data=np.zeros(10, np.uint8))  # fmt: skip
    bag = _write(tmp_path / "geom", "mcap", [("/camera/image_raw", T.IMAGE, bad)])
    with pytest.raises(BagError, match="needs 48 bytes, the message has 10"):
        inspect_bag(bag)


def _foreign_store(msgtype: str, definition: str) -> object:
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg(definition, msgtype))
    return store


def test_unknown_and_mismatched_message_types(tmp_path: Path) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer

    # a message type nobody knows, stored with its definition: decodable, ignored as input
    foreign = _foreign_store("acme_msgs/msg/Blob", "uint8[] payload\nstring note")
    path = tmp_path / "foreign"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        cam = w.add_connection("/camera/image_raw", T.IMAGE, typestore=bagio.typestore())
        blob = w.add_connection("/acme/blob", "acme_msgs/msg/Blob", typestore=foreign)
        w.write(cam, 1, bagio.serialize(_image(1)))
        Blob = foreign.types["acme_msgs/msg/Blob"]
        data = foreign.serialize_cdr(Blob(payload=np.zeros(3, np.uint8), note="x"),
                                     "acme_msgs/msg/Blob")  # fmt: skip
        w.write(blob, 2, data)
    info = inspect_bag(path)
    assert info.ignored == ("/acme/blob",)
    with BagReader(path) as reader:
        assert reader.check_type("/acme/blob") == "acme_msgs/msg/Blob"
        ((_, _, msg),) = list(reader.messages(["/acme/blob"]))
        assert msg.note == "x"

    # our own type with a different definition (an old / other version of the package)
    old = _foreign_store(T.CORUNNER_LOAD, "std_msgs/Header header\nstring name\nfloat32 share")
    path = tmp_path / "mismatch"
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as w:
        cam = w.add_connection("/camera/image_raw", T.IMAGE, typestore=bagio.typestore())
        c = w.add_connection(T.SCENARIO_CORUNNER, T.CORUNNER_LOAD, typestore=old)
        w.write(cam, 1, bagio.serialize(_image(1)))
        Load = old.types[T.CORUNNER_LOAD]
        w.write(c, 2, old.serialize_cdr(Load(header=bagio.header(2), name="a", share=0.5),
                                        T.CORUNNER_LOAD))  # fmt: skip
    with pytest.raises(BagError) as err:
        inspect_bag(path)
    msg = str(err.value)
    assert "/scenario/corunner" in msg and "differs from msg/CoRunnerLoad.msg" in msg

    # a type without any definition in the bag: named as unknown
    path = tmp_path / "nodef"
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as w:
        cam = w.add_connection("/camera/image_raw", T.IMAGE, typestore=bagio.typestore())
        w.add_connection("/camera/ground_truth", "acme_msgs/msg/Truth", msgdef="",
                         rihs01="RIHS01_" + "0" * 64)  # fmt: skip
        w.write(cam, 1, bagio.serialize(_image(1)))
    with pytest.raises(BagError) as err:
        inspect_bag(path)
    assert "/camera/ground_truth" in str(err.value)
    with BagReader(path) as reader, pytest.raises(BagError, match="unknown message type"):
        reader.check_type("/camera/ground_truth")
