"""Scenario -> rosbag2 bag (sqlite3 or mcap), following :mod:`dynofa_ros.evaluation.topics`.

The bag holds the description (``/scenario/description``, first message, and the bag metadata's
``custom_data["dynofa.scenario"]``: the normalised scenario YAML) followed by the items of
:func:`~.timeline.iter_timeline` in its order, each as its messages (:func:`messages`). Every
message's bag timestamp equals its header stamp: ``scenario.start_stamp_s + t``. The bag is
written beside the target and renamed into place at the end
(:class:`~dynofa_ros.evaluation.bagio.BagWriter`): an interrupted run leaves no bag.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dynofa_ros.evaluation import bagio
from dynofa_ros.evaluation import topics as T
from dynofa_ros.evaluation.scenario import (
    CameraSpec,
    Scenario,
    ScenarioError,
    require_composable,
    require_network,
)
from dynofa_ros.evaluation.timeline import (
    AmbientItem,
    BatteryItem,
    FrameItem,
    PriorityItem,
    TimelineItem,
    frame_count,
    iter_timeline,
)


@dataclass(frozen=True)
class GenerateResult:
    path: Path
    storage: str
    counts: dict[str, int]
    frames: int
    duration_s: float
    size_bytes: int


def generate(
    scenario: Scenario,
    out: str | os.PathLike[str],
    storage: str = "sqlite3",
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> GenerateResult:
    """Write ``scenario`` as a bag at ``out``. ``progress(done, total)`` is called per frame.

    Raises :class:`~.bagio.BagError` (bad storage name, ``out`` exists) or
    :class:`~.scenario.ScenarioError` (camera source missing; a model with no network or a
    camera with no pixels: a bag is for the nodes) before anything is written.
    """
    require_network(scenario, "a scenario bag")
    require_composable(scenario, "a scenario bag")
    bagio.storage_plugin(storage)  # fail early on a wrong storage name
    if Path(out).exists() and not overwrite:
        raise bagio.BagError(f"{out} exists already; choose another path or --overwrite")
    total = frame_count(scenario)
    yaml_text = scenario.to_yaml()
    items = iter_timeline(scenario)
    first = next(items, None)  # opens the camera sources: errors before the bag is started
    done = 0
    with bagio.BagWriter(
        out, storage, overwrite=overwrite, custom_data={T.CUSTOM_DATA_SCENARIO: yaml_text}
    ) as writer:
        t0 = scenario.start_ns
        writer.write(T.DESCRIPTION, T.STRING, t0, _types()[T.STRING](data=yaml_text))
        for item in itertools.chain([first] if first is not None else [], items):
            for topic, msgtype, msg in messages(scenario, item):
                writer.write(topic, msgtype, item.stamp_ns, msg)
            if isinstance(item, FrameItem):
                done += 1
                if progress is not None:
                    progress(done, total)
        counts = dict(writer.counts)
    path = Path(out)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return GenerateResult(path, storage, counts, total, scenario.duration_s, size)


def _types() -> Any:
    return bagio.typestore().types


def messages(scenario: Scenario, item: TimelineItem) -> list[tuple[str, str, Any]]:
    """The bag messages of one timeline item: ``[(topic, msgtype, message)]`` (rosbags
    message objects of :func:`~.bagio.typestore`; a frame gives its image and, when labelled,
    its ground truth)."""
    types = _types()
    hdr = bagio.header(item.stamp_ns)
    if isinstance(item, FrameItem):
        return _frame_messages(scenario.camera(item.camera), item)
    if isinstance(item, PriorityItem):
        p = item.change
        hdr.frame_id = "mission"
        return [
            (
                T.MISSION_PRIORITY,
                T.MISSION_PRIORITY_MSG,
                types[T.MISSION_PRIORITY_MSG](
                    header=hdr,
                    level=p.level,
                    latency_target_ms=p.latency_target_ms,
                    min_accuracy=p.min_accuracy,
                    energy_budget_j=p.energy_budget_j,
                    mission_duration_s=p.mission_duration_s,
                    reason=p.reason,
                ),
            )
        ]
    if isinstance(item, BatteryItem):
        BatteryState = types[T.BATTERY_STATE]
        nan = math.nan
        hdr.frame_id = "battery"
        return [
            (
                T.SCENARIO_BATTERY,
                T.BATTERY_STATE,
                BatteryState(
                    header=hdr,
                    voltage=nan,
                    temperature=nan,
                    current=nan,
                    charge=nan,
                    capacity=nan,
                    design_capacity=nan,
                    percentage=float(item.soc),
                    power_supply_status=BatteryState.POWER_SUPPLY_STATUS_DISCHARGING,
                    power_supply_health=BatteryState.POWER_SUPPLY_HEALTH_GOOD,
                    power_supply_technology=BatteryState.POWER_SUPPLY_TECHNOLOGY_LION,
                    present=True,
                    cell_voltage=np.zeros(0, np.float32),
                    cell_temperature=np.zeros(0, np.float32),
                    location=f"scenario capacity_wh={item.capacity_wh:g}",
                    serial_number="",
                ),
            )
        ]
    if isinstance(item, AmbientItem):
        hdr.frame_id = "ambient"
        return [
            (
                T.SCENARIO_AMBIENT,
                T.TEMPERATURE,
                types[T.TEMPERATURE](header=hdr, temperature=float(item.celsius), variance=0.0),
            )
        ]
    c = item.event
    hdr.frame_id = "corunner"
    return [
        (
            T.SCENARIO_CORUNNER,
            T.CORUNNER_LOAD,
            types[T.CORUNNER_LOAD](header=hdr, name=c.name, processor=c.processor, share=c.share),
        )
    ]


def _frame_messages(cam: CameraSpec, item: FrameItem) -> list[tuple[str, str, Any]]:
    types = _types()
    hdr = bagio.header(item.stamp_ns, "camera")
    px = item.pixels
    assert px is not None, "bag frames need pixels"
    if cam.compressed:
        bgr = cv2.cvtColor(px, cv2.COLOR_RGB2BGR) if cam.encoding == "rgb8" else px
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, cam.jpeg_quality])
        if not ok:
            raise ScenarioError(f"camera {cam.name}: JPEG encoding failed")
        out = [
            (
                cam.bag_topic,
                T.COMPRESSED_IMAGE,
                types[T.COMPRESSED_IMAGE](
                    header=hdr, format="jpeg", data=np.asarray(buf, np.uint8).ravel()
                ),
            )
        ]
    else:
        h, w = px.shape[:2]
        channels = 1 if px.ndim == 2 else px.shape[2]
        out = [
            (
                cam.bag_topic,
                T.IMAGE,
                types[T.IMAGE](
                    header=hdr,
                    height=h,
                    width=w,
                    encoding=cam.encoding,
                    is_bigendian=0,
                    step=w * channels,
                    data=np.ascontiguousarray(px).reshape(-1),
                ),
            )
        ]
    if item.label is not None:
        out.append(
            (
                T.ground_truth_topic(cam.name),
                T.CLASSIFICATION_RESULT,
                types[T.CLASSIFICATION_RESULT](
                    header=bagio.header(item.stamp_ns, "camera"),
                    model_name=T.GROUND_TRUTH_MODEL,
                    subnet_id="",
                    frame_seq=item.index + 1,
                    command_seq=0,
                    class_ids=np.array([item.label], np.int32),
                    labels=[item.label_name or str(item.label)],
                    scores=np.array([1.0], np.float32),
                    latency_ms=0.0,
                ),
            )
        )
    return out
