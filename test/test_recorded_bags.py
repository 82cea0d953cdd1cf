"""Bags a robot recorded (RealSense-like topics, depth / camera_info / tf beside the colour
stream, receive time after the header stamp, odd stamps), replayed without a hand-made scenario,
fast and live, and the one-line errors bad recorded bags get."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from robot_bags import COLOR, COLOR_COMPRESSED, DEPTH, write_robot_bag
from test_replay import _replay_live

from dynofa_ros.evaluation.bagio import BagError
from dynofa_ros.evaluation.inprocess import ReplayOptions, bag_items, run_inprocess
from dynofa_ros.evaluation.recorded import CameraChoice, plan
from dynofa_ros.evaluation.records import read_results
from dynofa_ros.evaluation.scenario import ScenarioError

CLI = [sys.executable, "-m", "dynofa_ros.cli"]


@pytest.mark.parametrize(
    ("stamps", "base", "why"),
    [
        ("valid", "header", "increasing"),
        ("jittered", "header", "increasing"),
        ("zero", "receive", "are 0"),
        ("backwards", "receive", "do not increase"),
    ],
)
def test_time_base_follows_the_stamps(tmp_path: Path, stamps: str, base: str, why: str) -> None:
    bag = write_robot_bag(tmp_path / "robot.bag", n=12, stamps=stamps)  # a directory named .bag
    p = plan(bag)
    tb = p.time_base[COLOR]
    assert (tb.kind, why in tb.reason) == (base, True), tb
    assert p.restamp(COLOR) == (base == "receive")
    assert p.recorded and [c.bag_topic for c in p.scenario.cameras] == [COLOR]
    assert p.scenario.models[0].name == "classifier"
    assert tb.fps == pytest.approx(15.0, rel=0.05)
    # depth, camera_info and tf are ignored, each with its reason
    assert "16UC1" in p.ignored[DEPTH]
    assert set(p.ignored) == {DEPTH, "/camera/color/camera_info", "/tf_static"}


@pytest.mark.parametrize(
    ("storage", "encoding", "compressed", "stamps"),
    [
        ("sqlite3", "rgb8", False, "valid"),
        ("mcap", "bgr8", False, "jittered"),
        ("mcap", "rgb8", True, "zero"),
    ],
)
def test_fast_replay_of_a_robot_bag_classifies_every_frame(
    tmp_path: Path, storage: str, encoding: str, compressed: bool, stamps: str
) -> None:
    bag = write_robot_bag(
        tmp_path / "robot", n=30, storage=storage, encoding=encoding, compressed=compressed,
        stamps=stamps,
    )  # fmt: skip
    p = plan(bag, target_ms=60.0)
    scenario, items = bag_items(bag, p)
    run = run_inprocess(scenario, ReplayOptions(policy="dynofa"), items=items, progress=False)
    frames = run.info.extra["frames"]["classifier"]
    assert frames["in_bag"] == 30
    assert frames["processed"] + frames["dropped_node"] == 30
    assert frames["processed"] >= 25, frames  # nothing silently collapses the run
    assert all(f.target_ms == 60.0 for f in run.frames)
    assert all(f.label is None and f.correct is None for f in run.frames)  # no ground truth
    times = [f.t_s for f in run.frames]
    assert times == sorted(times) and 0 <= times[0] < 0.1 and times[-1] > 1.5


def test_robot_bag_live_processes_what_the_fast_replay_does(tmp_path: Path) -> None:
    bag = write_robot_bag(tmp_path / "robot.bag", n=45, storage="mcap", compressed=True,
                          stamps="zero")  # fmt: skip
    scenario, items = bag_items(bag)
    fast = run_inprocess(scenario, ReplayOptions(policy="dynofa"), items=items, progress=False)
    out = tmp_path / "out"
    _replay_live(bag, out)
    live = read_results(out / "robot.bag-dynofa-live.results.jsonl")
    assert len(live.frames) >= 0.95 * len(fast.frames)
    # frames replayed on the receive times (the driver left the stamps at 0), in both modes
    assert {f.stamp_ns for f in live.frames} <= {f.stamp_ns for f in fast.frames}
    assert live.info.extra["frames"]["classifier"]["lost_transport"] == 0


def test_camera_choice_and_a_scenario_file(tmp_path: Path) -> None:
    bag = write_robot_bag(tmp_path / "robot", n=10, compressed=True, raw_too=True)
    with pytest.raises(BagError, match=r"more than one image topic.*--camera"):
        plan(bag)  # raw and compressed: ambiguous
    with pytest.raises(BagError, match=r"16UC1.*not supported"):
        plan(bag, cameras=[CameraChoice(DEPTH)])
    with pytest.raises(BagError, match="no image topic /nope"):
        plan(bag, cameras=[CameraChoice("/nope")])
    sc = tmp_path / "robot.yaml"
    sc.write_text(
        "name: patrol\nduration_s: 5\ncamera: {source: fashion_mnist}\n"
        "models: [{name: front, camera: camera, latency_target_ms: 70}]\n"
        "mission: [{t: 0, level: HIGH, reason: patrol}]\n"
    )
    p = plan(bag, cameras=[CameraChoice(COLOR_COMPRESSED, "front")], scenario_file=sc)
    assert p.scenario.name == "patrol" and p.scenario.models[0].latency_target_ms == 70
    assert p.scenario.camera(p.scenario.models[0].camera).bag_topic == COLOR_COMPRESSED
    assert COLOR in p.ignored
    with pytest.raises(BagError, match="no model 'rear'"):
        plan(bag, cameras=[CameraChoice(COLOR, "rear")], scenario_file=sc)
    sc.write_text("name: patrol\nduration_s: 5\nbogus: 1\n")
    with pytest.raises(ScenarioError, match="unknown field 'bogus'"):
        plan(bag, cameras=[CameraChoice(COLOR)], scenario_file=sc)
    with pytest.raises(ValueError, match="expected TOPIC or TOPIC=MODEL"):
        CameraChoice.parse("camera/color/image_raw")


def _cli_error(*args: str) -> str:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_bad_recorded_bags_get_one_line_errors(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # no image topic at all; only a depth image
    bare = write_robot_bag(tmp_path / "bare", n=3, color=False, depth=False)
    err = _cli_error("replay", str(bare), "--fast", "-o", str(out))
    assert "no image topic" in err and "bare" in err
    depth = write_robot_bag(tmp_path / "depth", n=3, color=False)
    err = _cli_error("replay", str(depth), "--fast", "-o", str(out))
    assert "no usable image topic" in err and "16UC1" in err
    err = _cli_error("replay", str(depth), "--fast", "--camera", DEPTH, "-o", str(out))
    assert "16UC1" in err and DEPTH in err
    # ambiguous camera
    both = write_robot_bag(tmp_path / "both", n=3, compressed=True, raw_too=True)
    err = _cli_error("replay", str(both), "--fast", "-o", str(out))
    assert COLOR in err and COLOR_COMPRESSED in err and "--camera" in err
    # truncated storage
    trunc = write_robot_bag(tmp_path / "trunc", n=20)
    db = next(trunc.glob("*.db3"))
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 3])
    err = _cli_error("scenario", "check", str(trunc))
    assert "trunc" in err
    # a scenario file with an invalid field
    sc = tmp_path / "bad.yaml"
    sc.write_text("name: x\nduration_s: -3\n")
    color = write_robot_bag(tmp_path / "color", n=3)
    err = _cli_error("replay", str(color), "--fast", "--scenario", str(sc), "-o", str(out))
    assert "duration_s" in err
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")  # Debian opencv-doc


def test_real_video_recorded_as_a_robot_bag_and_replayed(tmp_path: Path) -> None:
    """The README's worked example: footage we did not make, recorded as a camera driver does."""
    assert VTEST.is_file(), "make setup installs opencv-doc (tools/apt-packages.txt)"
    bag = tmp_path / "street.bag"
    done = subprocess.run(
        [*CLI, "record-video", str(VTEST), "-o", str(bag), "--compressed", "--max-frames", "20"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "20 frames on /camera/color/image_raw/compressed" in done.stdout
    out = tmp_path / "out"
    done = subprocess.run(
        [*CLI, "replay", str(bag), "--fast", "--policy", "dynofa", "-o", str(out), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = read_results(out / "street.bag-dynofa.results.jsonl")
    assert run.info.extra["frames"]["classifier"]["in_bag"] == 20
    assert len(run.frames) >= 15
    members = {s["id"] for s in run.info.extra["subnets"]}
    assert {f.subnet_id for f in run.frames} <= members
