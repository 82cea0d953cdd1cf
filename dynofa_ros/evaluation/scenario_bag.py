"""Inspect and validate a bag as replay input: generated from a scenario, or recorded on a robot.

:func:`inspect_bag` opens the bag, checks every topic of the contract
(:mod:`dynofa_ros.evaluation.topics`) for the right type and a decodable definition, finds the
camera streams (any ``Image`` / ``CompressedImage`` topic) with their ground truth, reads the
scenario description when there is one, and lists what is missing and what that means for the
evaluation. Problems that make the bag unusable raise :class:`~.bagio.BagError` with the bag,
topic and type named; everything else is reported in ``notes``.

The replay reads messages with :class:`~.bagio.BagReader` (``raw_messages`` gives CDR bytes that
rclpy publishes as they are).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from dynofa_ros.evaluation import topics as T
from dynofa_ros.evaluation.bagio import BagError, BagReader, TopicInfo
from dynofa_ros.evaluation.scenario import Scenario, ScenarioError, parse

CAMERA_TYPES = (T.IMAGE, T.COMPRESSED_IMAGE)


@dataclass(frozen=True)
class CameraStream:
    name: str  # topic prefix without slashes: "camera", "robot1/front_camera"
    topic: str
    msgtype: str
    count: int
    ground_truth_topic: str | None = None
    ground_truth_count: int = 0


@dataclass(frozen=True)
class ScenarioBagInfo:
    path: Path
    storage: str
    start_ns: int
    end_ns: int
    message_count: int
    topics: dict[str, TopicInfo]
    cameras: tuple[CameraStream, ...]
    scenario: Scenario | None
    battery_topic: str | None
    temperature_topics: tuple[str, ...]
    has_priority: bool
    has_corunner: bool
    ignored: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    @property
    def t0_ns(self) -> int:
        """Stamp of scenario time 0 (the scenario's start stamp, else the bag's first message)."""
        return self.scenario.start_ns if self.scenario is not None else self.start_ns

    @property
    def has_ground_truth(self) -> bool:
        return any(c.ground_truth_count for c in self.cameras)

    def summary(self) -> str:
        """Human-readable description (what ``dynofa scenario check`` prints)."""
        lines = [
            f"bag:       {self.path} ({self.storage}, {self.message_count} messages)",
            f"duration:  {self.duration_s:.3f} s (first to last message)"
            + (f"; scenario {self.scenario.duration_s:g} s" if self.scenario else ""),
            "scenario:  "
            + (
                f"{self.scenario.name} ({len(self.scenario.models)} model(s): "
                + ", ".join(
                    f"{m.name} on {m.camera}, target {m.latency_target_ms:g} ms"
                    for m in self.scenario.models
                )
                + ")"
                if self.scenario
                else "none (recorded bag?)"
            ),
            "topics:",
        ]
        width = max((len(n) for n in self.topics), default=0)
        for name, info in sorted(self.topics.items()):
            mark = "  (ignored)" if name in self.ignored else ""
            lines.append(f"  {name:<{width}}  {info.count:>7}  {info.msgtype}{mark}")
        lines.append("cameras:")
        for c in self.cameras:
            gt = (
                f"ground truth {c.ground_truth_topic} ({c.ground_truth_count})"
                if c.ground_truth_topic
                else "no ground truth"
            )
            lines.append(f"  {c.name}: {c.topic} {c.count} frames, {gt}")
        lines.append("missing:" if self.notes else "missing:   nothing")
        lines.extend(f"  - {n}" for n in self.notes)
        return "\n".join(lines)


def inspect_bag(
    path: str | os.PathLike[str],
    *,
    verify: bool = True,
    cameras: Collection[str] | None = None,
) -> ScenarioBagInfo:
    """What a bag holds for a replay; :class:`~.bagio.BagError` when it cannot be replayed.

    ``verify`` reads every message of the topics a replay uses once (decodes it, checks image
    sizes and the per-topic counts against the metadata), so corruption inside the storage is
    found here rather than in the middle of a replay. ``cameras``: the camera topics the replay
    uses (default: every image topic in an encoding the models take; depth and other image
    streams beside them are ignored).
    """
    from dynofa_ros.evaluation.recorded import image_topics

    with BagReader(path) as reader:
        topics = reader.topics()
        if reader.message_count == 0 or not topics:
            raise BagError(f"bag {reader.path} holds no messages")
        if cameras is None:
            cameras = [c.topic for c in image_topics(reader) if c.usable]
        ignored: list[str] = []
        used: list[str] = []
        for name, info in topics.items():
            expected = T.expected_type(name)
            if expected is not None and info.msgtype != expected:
                raise BagError(
                    f"bag {reader.path}: topic {name} has type {info.msgtype}; the scenario "
                    f"contract needs {expected}"
                )
            if expected is not None or (info.msgtype in CAMERA_TYPES and name in cameras):
                reader.check_type(name)
                used.append(name)
            else:
                ignored.append(name)
        if verify:
            _verify(reader, used, topics)

        scenario = scenario_in_bag(reader)
        streams = _cameras(topics, cameras)
        if not streams:
            raise BagError(
                f"bag {reader.path} has no camera topic (a sensor_msgs/msg/Image or "
                f"CompressedImage topic, e.g. {T.image_topic('camera')}); topics: "
                + ", ".join(sorted(topics))
            )
        notes: list[str] = []
        if scenario is not None:
            for cam in scenario.cameras:
                if cam.bag_topic not in topics:
                    raise BagError(
                        f"bag {reader.path}: the scenario's camera {cam.name!r} has no topic "
                        f"{cam.bag_topic} in the bag"
                    )
        else:
            notes.append(
                "no scenario description (/scenario/description or metadata): models "
                "and latency targets come from the replay's settings"
            )
        for c in streams:
            if c.count == 0:
                raise BagError(f"bag {reader.path}: camera topic {c.topic} has no messages")
            if not c.ground_truth_count:
                notes.append(
                    f"no ground truth for {c.topic} ({T.ground_truth_topic(c.name)}): "
                    "its frames are evaluated for latency and energy only"
                )
        battery = next((t for t in (T.SCENARIO_BATTERY, T.BATTERY) if t in topics), None)
        if battery is None:
            notes.append(
                "no battery timeline (/scenario/battery or /battery): the simulated "
                "board drains its own battery"
            )
        temperatures = tuple(
            sorted(
                t for t in topics if t == T.SCENARIO_AMBIENT or t.startswith(T.TEMPERATURE_PREFIX)
            )
        )
        if not temperatures:
            notes.append(
                "no temperature (/scenario/ambient_temperature or /temperature/*): the "
                "simulated board's default ambient"
            )
        has_priority = T.MISSION_PRIORITY in topics
        if not has_priority:
            notes.append("no /mission_priority: the manager's default level throughout")
        return ScenarioBagInfo(
            path=reader.path,
            storage=reader.storage,
            start_ns=reader.start_ns,
            end_ns=reader.end_ns,
            message_count=reader.message_count,
            topics=topics,
            cameras=tuple(streams),
            scenario=scenario,
            battery_topic=battery,
            temperature_topics=temperatures,
            has_priority=has_priority,
            has_corunner=T.SCENARIO_CORUNNER in topics,
            ignored=tuple(sorted(ignored)),
            notes=tuple(notes),
        )


IMAGE_ENCODINGS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 2}


def _verify(reader: BagReader, used: list[str], topics: dict[str, TopicInfo]) -> None:
    counts = dict.fromkeys(used, 0)
    for topic, stamp, msg in reader.messages(used):
        counts[topic] += 1
        where = f"bag {reader.path}, topic {topic}, message at {stamp} ns"
        if msg.__msgtype__ == T.IMAGE:
            per_pixel = IMAGE_ENCODINGS.get(msg.encoding)
            if per_pixel is None:
                raise BagError(
                    f"{where}: encoding {msg.encoding!r} is not supported; allowed: "
                    + ", ".join(IMAGE_ENCODINGS)
                )
            if (
                msg.step < msg.width * per_pixel
                or len(msg.data) != msg.step * msg.height
                or msg.width == 0
                or msg.height == 0
            ):
                raise BagError(
                    f"{where}: {msg.width}x{msg.height} {msg.encoding} with step {msg.step} "
                    f"needs {msg.step * msg.height} bytes, the message has {len(msg.data)}"
                )
        elif msg.__msgtype__ == T.COMPRESSED_IMAGE and len(msg.data) == 0:
            raise BagError(f"{where}: empty compressed image")
    for topic, n in counts.items():
        if n != topics[topic].count:
            raise BagError(
                f"bag {reader.path}, topic {topic}: the metadata announces "
                f"{topics[topic].count} messages, the storage holds {n}; the bag is truncated "
                "or its metadata.yaml does not belong to it"
            )


def _cameras(topics: dict[str, TopicInfo], used: Collection[str]) -> list[CameraStream]:
    out: list[CameraStream] = []
    for name, info in sorted(topics.items()):
        if info.msgtype not in CAMERA_TYPES or name not in used:
            continue
        cam = T.camera_of(name) or name.strip("/")
        gt = T.ground_truth_topic(cam)
        gt_info = topics.get(gt)
        out.append(
            CameraStream(
                name=cam,
                topic=name,
                msgtype=info.msgtype,
                count=info.count,
                ground_truth_topic=gt if gt_info else None,
                ground_truth_count=gt_info.count if gt_info else 0,
            )
        )
    return out


def scenario_in_bag(reader: BagReader) -> Scenario | None:
    text = reader.custom_data.get(T.CUSTOM_DATA_SCENARIO)
    if text is None and T.DESCRIPTION in reader.topics():
        for _, _, msg in reader.messages([T.DESCRIPTION]):
            text = msg.data
            break
    if text is None:
        return None
    try:
        return parse(text, source=f"in bag {reader.path}")
    except ScenarioError as exc:
        raise BagError(f"bag {reader.path}: its scenario description is invalid: {exc}") from None


def read_scenario(path: str | os.PathLike[str]) -> Scenario | None:
    """The scenario stored in a bag (metadata or ``/scenario/description``), if any."""
    with BagReader(path) as reader:
        return scenario_in_bag(reader)
