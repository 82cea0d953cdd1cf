"""Scenario YAML: validation naming the field, bundled scenarios, and the in-process timeline."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from dynofa_ros.evaluation import scenario as sc
from dynofa_ros.evaluation.scenario import ScenarioError, parse
from dynofa_ros.evaluation.timeline import (
    FrameItem,
    events,
    frame_count,
    iter_timeline,
    stamp_at,
)

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
needs_dataset = pytest.mark.skipif(
    not FASHION_MNIST.is_dir(), reason="Fashion-MNIST (dataset-fashion-mnist) not installed"
)

MINIMAL = "name: m\nduration_s: 2\n"


def test_minimal_scenario_gets_documented_defaults() -> None:
    s = parse(MINIMAL)
    assert s.name == "m" and s.duration_s == 2.0
    (cam,) = s.cameras
    assert (cam.name, cam.source, cam.fps, cam.width, cam.height) == (
        "camera", "fashion_mnist", 15.0, 128, 128,
    )  # fmt: skip
    (model,) = s.models
    assert model.camera == "camera"
    assert model.latency_target_ms == pytest.approx(1000 / 15)  # the frame period
    assert [(p.t, p.level_name) for p in s.mission] == [(0.0, "NORMAL")]
    assert s.battery is None and s.ambient is None and s.corunners == ()


def test_normalised_yaml_round_trips() -> None:
    s = sc.load(sc.resolve("two_models"))
    again = parse(s.to_yaml(), source="round trip")
    assert again == s


@pytest.mark.parametrize(
    ("text", "field", "value", "allowed"),
    [
        ("camera: {fps: 5000}", "camera.fps", "5000", "0.1 <= fps <= 1000.0"),
        ("camera: {encoding: yuv422}", "camera.encoding", "'yuv422'", "rgb8, bgr8, mono8"),
        ("camera: {width: 8}", "camera.width", "8", "16 <= width <= 4096"),
        ("mission: [{t: 1, level: URGENT}]", "mission[0].level", "'URGENT'", "CRITICAL"),
        ("mission: [{t: 5}]", "mission[0].t", "5", "t <= 2.0"),
        ("corunners: [{t: 1, name: x, processor: npu, share: 0.5}]",
         "corunners[0].processor", "'npu'", "cpu, cuda"),
        ("corunners: [{t: 1, name: x, processor: cpu, share: 1.5}]",
         "corunners[0].share", "1.5", "0.0 <= share <= 1.0"),
        ("battery: {timeline: [{t: 0, soc: 1.2}]}", "battery.timeline[0].soc", "1.2",
         "0.0 <= soc <= 1.0"),
        ("battery: {thresholds: [0.5, 2], timeline: [{t: 0, soc: 1}]}", "battery.thresholds",
         "[0.5, 2]", "(0, 1)"),
        ("models: [{name: a, camera: nope}]", "models[0].camera", "'nope'", "one of camera"),
        ("models: [{name: a, latency_target_ms: 0}]", "models[0].latency_target_ms", "0",
         "0.0 < latency_target_ms"),
        ("ambient: {timeline: [{t: 1, celsius: 20}, {t: 0.5, celsius: 30}]}",
         "ambient.timeline[1].t", "0.5", "a time >= the previous entry's"),
    ],
)  # fmt: skip
def test_invalid_field_is_named_with_value_and_allowed_range(
    text: str, field: str, value: str, allowed: str
) -> None:
    with pytest.raises(ScenarioError) as err:
        parse(MINIMAL + text, source="bad.yaml")
    msg = str(err.value)
    assert "bad.yaml" in msg and f"'{field}'" in msg and value in msg and allowed in msg, msg


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("duration_s: 2\n", "field 'name' is required"),
        ("name: m\nduration_s: -1\n", "'duration_s' = -1"),
        ("name: m\nduration_s: 2\ncamara: {}\n", "unknown field 'camara'"),
        ("name: m\nduration_s: 2\ncamera: {fsp: 3}\n", "unknown field 'camera.fsp'"),
        ("name: m\nduration_s: 2\ncamera: {source: video}\n", "'camera.path'"),
        ("- just\n- a list\n", "expected a mapping"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_structural_errors_are_clear(text: str, needle: str) -> None:
    with pytest.raises(ScenarioError, match="scenario"):
        parse(text)
    with pytest.raises(ScenarioError) as err:
        parse(text)
    assert needle in str(err.value)


def test_unknown_scenario_name_lists_the_bundled_ones() -> None:
    with pytest.raises(ScenarioError) as err:
        sc.resolve("no_such_scenario")
    assert "corunner_interference" in str(err.value)


def test_bundled_scenarios_cover_the_issue_cases() -> None:
    bundled = sc.bundled()
    expected = {"steady", "battery_drain", "thermal_ramp", "corunner_interference",
                "mission_priority", "two_models", "tiny"}  # fmt: skip
    assert expected <= set(bundled)
    s = {name: sc.load(path) for name, path in bundled.items()}
    for name, scenario in s.items():
        assert scenario.name == name, f"{name}.yaml declares name {scenario.name!r}"
    assert len(s["steady"].models) == 1 and not s["steady"].corunners
    battery = s["battery_drain"].battery
    assert battery is not None and battery.at(0) > 0.5 and battery.at(60) < 0.1
    ambient = s["thermal_ramp"].ambient
    assert ambient is not None and ambient.at(90) > ambient.at(0)
    shares = [c.share for c in s["corunner_interference"].corunners]
    assert shares[0] > 0 and shares[-1] == 0  # starts, then stops
    assert {c.processor for c in s["corunner_interference"].corunners} == {"cuda"}
    assert len({p.level for p in s["mission_priority"].mission}) >= 3
    two = s["two_models"]
    assert len(two.models) == 2 and len(two.cameras) == 2
    assert {m.camera for m in two.models} == {"camera", "camera2"}
    tiny = s["tiny"]
    assert tiny.duration_s <= 5 and frame_count(tiny) <= 20
    assert tiny.cameras[0].width * tiny.cameras[0].height <= 64 * 64


def test_events_come_in_timeline_order_with_stamps() -> None:
    s = sc.load(sc.resolve("tiny"))
    items = events(s)
    kinds = [i.kind for i in items]
    assert kinds.count("priority") == 2 and kinds.count("corunner") == 2
    assert kinds.count("battery") == 6 and kinds.count("ambient") == 3  # 2 Hz, 1 Hz over 3 s
    stamps = [i.stamp_ns for i in items]
    assert stamps == sorted(stamps)
    for i in items:
        assert i.stamp_ns == s.start_ns + round(i.t * 1e9) == stamp_at(s, i.t)
    # equal stamps: priority before battery before ambient
    assert kinds[:3] == ["priority", "battery", "ambient"]
    battery = [i.soc for i in items if i.kind == "battery"]
    assert battery[0] == pytest.approx(0.3) and battery[-1] == pytest.approx(0.3 - 0.2 * 2.5 / 3)


@needs_dataset
def test_timeline_merges_frames_and_events_deterministically() -> None:
    s = sc.load(sc.resolve("tiny"))
    items = list(iter_timeline(s))
    frames = [i for i in items if isinstance(i, FrameItem)]
    assert len(frames) == frame_count(s) == 15
    assert [f.index for f in frames] == list(range(15))
    keys = [(i.stamp_ns, i.kind == "frame") for i in items]
    assert keys == sorted(keys)  # by stamp, events before frames at equal stamps
    first = frames[0]
    assert first.pixels is not None and first.pixels.shape == (64, 64, 3)
    assert first.pixels.dtype == np.uint8 and first.encoding == "rgb8"
    assert all(f.label is not None and 0 <= f.label < 10 and f.label_name for f in frames)
    again = [i for i in iter_timeline(s) if isinstance(i, FrameItem)]
    assert all(np.array_equal(a.pixels, b.pixels) and a.label == b.label
               for a, b in zip(frames, again, strict=True))  # fmt: skip
    other_seed = dataclasses.replace(s, seed=s.seed + 1)
    changed = [i for i in iter_timeline(other_seed) if isinstance(i, FrameItem)]
    assert any(not np.array_equal(a.pixels, b.pixels) for a, b in zip(frames, changed, strict=True))
    # without pixels: same labels, no composition
    light = [i for i in iter_timeline(s, images=False) if isinstance(i, FrameItem)]
    assert [f.label for f in light] == [f.label for f in frames]
    assert all(f.pixels is None for f in light)


@needs_dataset
def test_two_cameras_interleave_by_stamp() -> None:
    s = sc.load(sc.resolve("two_models"))
    s = dataclasses.replace(s, duration_s=1.0, corunners=())
    frames = [i for i in iter_timeline(s, images=False) if isinstance(i, FrameItem)]
    assert [f.camera for f in frames[:3]] == ["camera", "camera2", "camera"]
    assert sum(f.camera == "camera2" for f in frames) == 10
    assert sum(f.camera == "camera" for f in frames) == 15
    assert [f.stamp_ns for f in frames] == sorted(f.stamp_ns for f in frames)


def test_missing_dataset_or_video_is_a_scenario_error(tmp_path: Path) -> None:
    s = parse(MINIMAL + f"camera: {{path: {tmp_path / 'none'}}}\n")
    with pytest.raises(ScenarioError, match="does not exist"):
        next(iter_timeline(s))
    v = parse(MINIMAL + f"camera: {{source: video, path: {tmp_path / 'none.avi'}}}\n")
    with pytest.raises(ScenarioError, match=r"video file .* does not exist"):
        next(iter_timeline(v))


def test_video_frames_are_sampled_at_the_scenario_rate_and_loop(tmp_path: Path) -> None:
    import cv2

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 60))
    for k in range(12):  # 1.2 s at 10 fps, grey level 20 * k
        writer.write(np.full((60, 80, 3), 20 * k, np.uint8))
    writer.release()
    s = parse(MINIMAL + f"camera: {{source: video, path: {video}, fps: 5, width: 40, "
              "height: 30, encoding: mono8}\n")  # fmt: skip
    frames = [i for i in iter_timeline(s) if isinstance(i, FrameItem)]
    assert len(frames) == 10
    assert all(f.label is None and f.pixels.shape == (30, 40) for f in frames)
    # frame i at t = i / 5 s shows video frame 2 i, looping after 12 frames
    levels = [float(f.pixels.mean()) for f in frames]
    expected = [20.0 * ((2 * i) % 12) for i in range(10)]
    assert levels == pytest.approx(expected, abs=3.0)
