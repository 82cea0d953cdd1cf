"""A bag a robot recorded, made replayable without a hand-made scenario.

A robot's bag has camera topics (often several: colour, depth, infra-red, their compressed twins),
``camera_info``, ``tf`` and whatever else was recorded, and no scenario description. This module
decides what a replay uses: which image topic feeds which model (``--camera TOPIC[=MODEL]``, or
the only usable image topic), which time base each camera's frames are on (header stamps when they
are usable, else the bag's receive times, with the reason), and the scenario the replay runs: the
settings a robot bag lacks (models, targets, mission, board events) come from a scenario file in
the usual format or from defaults, the cameras and the duration from the bag. Everything is
validated by the scenario format's one validator (:func:`~.scenario.from_dict`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dynofa_ros.evaluation import topics as T
from dynofa_ros.evaluation.bagio import BagError, BagReader, stamp_ns
from dynofa_ros.evaluation.scenario import Scenario, ScenarioError, from_dict
from dynofa_ros.evaluation.scenario_bag import CAMERA_TYPES, IMAGE_ENCODINGS

MAX_CLOCK_OFFSET_S = 1.0  # header stamps further than this from the receive times: another clock
DEFAULT_MODEL = "classifier"
DEFAULT_TARGET_MS = 50.0


@dataclass(frozen=True)
class CameraChoice:
    """``--camera TOPIC[=MODEL]``."""

    topic: str
    model: str | None = None

    @classmethod
    def parse(cls, text: str) -> CameraChoice:
        topic, sep, model = text.partition("=")
        topic = topic.strip()
        if not topic.startswith("/") or (sep and not model.strip()):
            raise ValueError(
                f"--camera {text!r}: expected TOPIC or TOPIC=MODEL with an absolute topic, e.g. "
                "/camera/color/image_raw=classifier"
            )
        return cls(topic, model.strip() or None)


@dataclass(frozen=True)
class ImageTopic:
    """An image topic of the bag as the replay sees it."""

    topic: str
    msgtype: str
    count: int
    encoding: str  # 'jpeg' / 'png' ... for CompressedImage
    width: int
    height: int

    @property
    def compressed(self) -> bool:
        return self.msgtype == T.COMPRESSED_IMAGE

    @property
    def usable(self) -> bool:
        """The engine takes it (depth 16UC1, 32FC1, bayer... recorded beside a colour stream
        are not camera images for the models)."""
        return self.compressed or self.encoding in IMAGE_ENCODINGS

    def describe(self) -> str:
        kind = "compressed" if self.compressed else "raw"
        size = f"{self.width}x{self.height} " if self.width else ""
        return f"{self.topic} ({kind} {size}{self.encoding}, {self.count} frames)"


@dataclass(frozen=True)
class TimeBase:
    """Which clock a camera's frames are replayed on: ``header`` stamps or bag ``receive``
    times (the stamps are then rewritten to the receive times for the live graph)."""

    kind: str
    reason: str
    first_ns: int
    last_ns: int
    fps: float


@dataclass(frozen=True)
class ReplayPlan:
    scenario: Scenario
    time_base: dict[str, TimeBase]  # per camera topic
    ignored: dict[str, str]  # topic -> why the replay does not use it
    recorded: bool  # the scenario was made for a recorded bag (not stored in it)

    def restamp(self, topic: str) -> bool:
        tb = self.time_base.get(topic)
        return tb is not None and tb.kind == "receive"

    def summary(self) -> str:
        """What the replay will use and ignore (``dynofa scenario check``)."""
        sc = self.scenario
        lines = [f"replay plan: scenario {sc.name} ({sc.duration_s:.3f} s)"]
        for m in sc.models:
            cam = sc.camera(m.camera)
            tb = self.time_base[cam.bag_topic]
            kind = "compressed" if cam.compressed else f"raw {cam.encoding}"
            lines.append(
                f"  model {m.name}: {cam.bag_topic} ({kind}, {cam.width}x{cam.height}, "
                f"{tb.fps:.2f} fps), target {m.latency_target_ms:g} ms; time base: {tb.kind} "
                f"({tb.reason})"
            )
        for topic, why in sorted(self.ignored.items()):
            lines.append(f"  ignored {topic}: {why}")
        return "\n".join(lines)


def image_topics(reader: BagReader) -> list[ImageTopic]:
    """Every Image / CompressedImage topic with the encoding and size of its first frame."""
    out = []
    for name, info in sorted(reader.topics().items()):
        if info.msgtype not in CAMERA_TYPES or info.count == 0:
            continue
        first = next(iter(reader.messages([name])), None)
        if first is None:
            continue
        msg = first[2]
        if info.msgtype == T.IMAGE:
            out.append(
                ImageTopic(
                    name, info.msgtype, info.count, msg.encoding, int(msg.width), int(msg.height)
                )
            )
        else:
            w, h = _compressed_size(msg)
            fmt = str(msg.format).split(";")[-1].strip().split(" ")[0] or "compressed"
            out.append(ImageTopic(name, info.msgtype, info.count, fmt, w, h))
    return out


def _compressed_size(msg: Any) -> tuple[int, int]:
    import cv2

    img = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_UNCHANGED)
    return (0, 0) if img is None else (int(img.shape[1]), int(img.shape[0]))


def time_base(reader: BagReader, topic: str) -> TimeBase:
    """Header stamps when every one is set, they never run backwards and they are on the bag's
    clock; else the receive times, saying why."""
    stamps, received = [], []
    for _, recv_ns, msg in reader.messages([topic]):
        stamps.append(stamp_ns(msg))
        received.append(recv_ns)
    h, r = np.asarray(stamps, np.int64), np.asarray(received, np.int64)
    reason = ""
    if (h <= 0).any():
        reason = f"{int((h <= 0).sum())} of {len(h)} header stamps are 0"
    elif len(h) > 1 and (np.diff(h) <= 0).any():
        k = int(np.argmax(np.diff(h) <= 0)) + 1
        reason = f"header stamps do not increase at frame {k}"
    else:
        offset = float(np.median(h - r)) / 1e9
        if abs(offset) > MAX_CLOCK_OFFSET_S:
            reason = f"header stamps are {offset:+.1f} s from the receive times (another clock)"
    kind = "receive" if reason else "header"
    t = r if reason else h
    if not reason:
        reason = "header stamps set, increasing, on the bag's clock"
    span = (int(t[-1]) - int(t[0])) / 1e9
    fps = (len(t) - 1) / span if len(t) > 1 and span > 0 else 0.0
    return TimeBase(kind, reason, int(t[0]), int(t[-1]), fps)


def _camera_name(topic: str) -> str:
    """A scenario camera name for a topic: ``/camera/color/image_raw`` -> ``camera_color``."""
    stem = topic
    for suffix in (T.COMPRESSED_SUFFIX, T.IMAGE_SUFFIX):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    name = re.sub(r"[^A-Za-z0-9_]", "_", stem.strip("/")) or "camera"
    return name if name[0].isalpha() else f"camera_{name}"


def plan(
    path: str | os.PathLike[str],
    *,
    cameras: Sequence[CameraChoice] = (),
    scenario_file: str | os.PathLike[str] | None = None,
    target_ms: float | None = None,
) -> ReplayPlan:
    """What a replay of ``path`` runs. A bag with its own scenario (``dynofa scenario
    generate``) replays it unless ``scenario_file`` replaces it; a recorded bag gets one made
    from ``scenario_file`` (or defaults) and its camera topics."""
    from dynofa_ros.evaluation.scenario import load
    from dynofa_ros.evaluation.scenario_bag import scenario_in_bag

    with BagReader(path) as reader:
        embedded = scenario_in_bag(reader)
        candidates = image_topics(reader)
        by_topic = {c.topic: c for c in candidates}
        ignored = {
            c.topic: f"encoding {c.encoding!r} is not a camera image the models take"
            for c in candidates
            if not c.usable
        }
        if not by_topic:
            raise BagError(
                f"bag {reader.path} has no image topic (sensor_msgs/msg/Image or "
                "CompressedImage); topics: " + ", ".join(sorted(reader.topics()))
            )
        if embedded is not None and scenario_file is None:
            if cameras:
                raise BagError(
                    f"bag {reader.path} carries its own scenario ({embedded.name}); --camera "
                    "applies to recorded bags or with --scenario FILE"
                )
            chosen = [c.bag_topic for c in embedded.cameras]
            for topic in chosen:
                _check_usable(reader.path, topic, by_topic)
            bases = {t: time_base(reader, t) for t in chosen}
            _ignore_rest(reader, chosen, embedded, ignored)
            return ReplayPlan(embedded, bases, ignored, recorded=False)

        base = load(scenario_file) if scenario_file is not None else None
        mapping = _choose(reader.path, cameras, candidates, by_topic, base)
        bases = {topic: time_base(reader, topic) for topic in mapping}
        scenario = _recorded_scenario(
            Path(reader.path), mapping, by_topic=by_topic, bases=bases, base=base,
            target_ms=target_ms, scenario_file=scenario_file,
        )  # fmt: skip
        _ignore_rest(reader, list(mapping), scenario, ignored)
        return ReplayPlan(scenario, bases, ignored, recorded=True)


def _check_usable(bag: Path, topic: str, by_topic: dict[str, ImageTopic]) -> ImageTopic:
    c = by_topic.get(topic)
    if c is None:
        raise BagError(
            f"bag {bag}: no image topic {topic}; image topics: "
            + ", ".join(x.describe() for x in by_topic.values())
        )
    if not c.usable:
        raise BagError(
            f"bag {bag}, topic {topic}: encoding {c.encoding!r} is not supported for a camera; "
            f"allowed: {', '.join(IMAGE_ENCODINGS)} or a CompressedImage (JPEG / PNG)"
        )
    return c


def _choose(
    bag: Path,
    choices: Sequence[CameraChoice],
    candidates: list[ImageTopic],
    by_topic: dict[str, ImageTopic],
    base: Scenario | None,
) -> dict[str, str]:
    """camera topic -> model name."""
    models = [m.name for m in base.models] if base is not None else []
    if not choices:
        usable = [c for c in candidates if c.usable]
        if len(usable) != 1:
            listing = ", ".join(c.describe() for c in candidates)
            why = "no usable image topic" if not usable else "more than one image topic"
            raise BagError(
                f"bag {bag}: {why}; choose with --camera TOPIC[=MODEL] (candidates: {listing})"
            )
        choices = [CameraChoice(usable[0].topic)]
    out: dict[str, str] = {}
    for choice in choices:
        _check_usable(bag, choice.topic, by_topic)
        if choice.topic in out:
            raise BagError(f"--camera {choice.topic} is given twice")
        if choice.model is not None:
            model = choice.model
        elif len(choices) == 1:
            model = models[0] if len(models) == 1 else DEFAULT_MODEL
        else:
            raise BagError(
                f"--camera {choice.topic}: name its model (TOPIC=MODEL) when several cameras "
                "are replayed"
            )
        if models and model not in models:
            raise BagError(
                f"--camera {choice.topic}={model}: the scenario has no model {model!r} (models: "
                f"{', '.join(models)})"
            )
        if model in out.values():
            raise BagError(f"--camera: model {model!r} is given two cameras")
        out[choice.topic] = model
    if models and set(models) != set(out.values()):
        missing = sorted(set(models) - set(out.values()))
        raise BagError(
            f"the scenario's model(s) {', '.join(missing)} have no camera: add --camera "
            "TOPIC=MODEL for each"
        )
    return out


def _recorded_scenario(
    bag: Path,
    mapping: dict[str, str],
    *,
    by_topic: dict[str, ImageTopic],
    bases: dict[str, TimeBase],
    base: Scenario | None,
    target_ms: float | None,
    scenario_file: str | os.PathLike[str] | None,
) -> Scenario:
    first = min(tb.first_ns for tb in bases.values())
    last = max(tb.last_ns for tb in bases.values())
    start_ns = first // 1_000_000 * 1_000_000  # on a whole millisecond (float-exact enough)
    period = max((1.0 / tb.fps for tb in bases.values() if tb.fps > 0), default=0.0)
    duration = max((last - start_ns) / 1e9 + period, 1e-3)
    data: dict[str, Any] = base.to_dict() if base is not None else {}
    data.pop("camera", None)
    data["cameras"] = []
    model_camera = {}
    for topic, model in mapping.items():
        c, tb = by_topic[topic], bases[topic]
        name = _camera_name(topic)
        model_camera[model] = name
        data["cameras"].append(
            {
                "name": name,
                "source": "recorded",
                "topic": topic,
                "fps": round(min(max(tb.fps, 0.1), 120.0), 6),
                "width": max(16, c.width),
                "height": max(16, c.height),
                "encoding": c.encoding if c.encoding in ("rgb8", "bgr8", "mono8") else "rgb8",
                "compressed": c.compressed,
            }
        )
    if base is None:
        data["name"] = re.sub(r"[^A-Za-z0-9_.-]", "_", bag.name) or "recorded"
        data["description"] = f"recorded bag {bag}"
        data["models"] = [
            {
                "name": m,
                "camera": model_camera[m],
                "latency_target_ms": target_ms or DEFAULT_TARGET_MS,
            }
            for m in mapping.values()
        ]
    else:
        for m in data["models"]:
            m["camera"] = model_camera[m["name"]]
            if target_ms is not None:
                m["latency_target_ms"] = target_ms
    data["duration_s"] = round(duration, 6)
    data["start_stamp_s"] = start_ns / 1e9
    source = f"{scenario_file} for bag {bag}" if scenario_file else f"recorded bag {bag}"
    try:
        return from_dict(data, source=source)
    except ScenarioError:
        raise
    except Exception as exc:  # a field the validator did not expect from a file
        raise ScenarioError(f"scenario {source}: {exc}") from None


def _ignore_rest(
    reader: BagReader, used: list[str], scenario: Scenario, ignored: dict[str, str]
) -> None:
    """Note every topic the replay does not use, with why."""
    truth = {T.ground_truth_topic(c.name) for c in scenario.cameras}
    for name, info in reader.topics().items():
        if name in used or name in truth or name in T.SCENARIO_EVENTS or name == T.DESCRIPTION:
            continue
        ignored.setdefault(name, f"{info.msgtype}: not an input of the replay")
