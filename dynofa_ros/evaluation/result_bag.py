"""Result bag (what a replay recorded) -> :class:`~.records.RunResults`.

Reads only the small topics (never the images): every ``ClassificationResult`` topic (ground
truth is the one with ``model_name == "ground_truth"``), every ``PerceptionStatus`` and
``ReconfigurationCommand`` topic, ``/battery`` (else ``/scenario/battery``), ``/temperature/*``,
``/scenario/ambient_temperature``, ``/mission_priority``, ``/scenario/corunner``, ``/diagnostics``
(``KeyValue`` ``throttled``), and the scenario description. The run description comes from the
bag metadata's ``custom_data["dynofa.run"]`` (JSON of :class:`~.records.RunInfo` fields; the
replay sets it), completed from the scenario.

Time: header stamps, in the replay's clock. ``t0`` is ``RunInfo.t0_ns`` when given, else the
scenario's start stamp when the frames lie within the scenario, else the first input stamp.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from dynofa_ros import configuration
from dynofa_ros.evaluation import topics as T
from dynofa_ros.evaluation.bagio import BagError, BagReader, stamp_ns
from dynofa_ros.evaluation.records import (
    DEFAULT_BATTERY_THRESHOLDS,
    RecordBuilder,
    ResultsError,
    RunInfo,
    RunResults,
    corunner_event,
    priority_event,
)
from dynofa_ros.evaluation.scenario import Scenario
from dynofa_ros.evaluation.scenario_bag import scenario_in_bag

_TRUE = {"1", "true", "yes", "on"}


def is_result_bag(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return (p.is_dir() and (p / "metadata.yaml").is_file()) or p.suffix in (".mcap", ".db3")


def _result_topics(reader: BagReader) -> list[str]:
    """The topics of a result bag that make its records (by message type, so a namespaced node
    is found too); a bag without classification results is refused with what it may be."""
    topics = reader.topics()
    by_type: dict[str, list[str]] = {}
    for topic, topic_info in topics.items():
        expected = T.expected_type(topic, result=True)
        if expected is not None and topic_info.msgtype != expected:
            raise BagError(
                f"bag {reader.path}: topic {topic} has type {topic_info.msgtype}; "
                f"expected {expected}"
            )
        by_type.setdefault(topic_info.msgtype, []).append(topic)
    classification_topics = by_type.get(T.CLASSIFICATION_RESULT, [])
    status_topics = by_type.get(T.PERCEPTION_STATUS, [])
    if not [t for t in classification_topics if not t.endswith(T.GROUND_TRUTH_SUFFIX)]:
        raise ResultsError(
            f"bag {reader.path} has no classification results (no "
            f"{T.CLASSIFICATION_RESULT} topic such as /<model>/classification): is it a "
            "scenario bag rather than a replay's result bag?"
        )
    # telemetry by type, so a namespaced platform node (/robot/battery) is found too;
    # the board's own battery wins over the scenario's timeline
    batteries = [t for t in by_type.get(T.BATTERY_STATE, []) if t != T.SCENARIO_BATTERY]
    battery_topics = batteries or [t for t in by_type.get(T.BATTERY_STATE, [])]
    wanted = set(classification_topics) | set(status_topics) | set(battery_topics)
    wanted |= set(by_type.get(T.RECONFIGURATION_COMMAND, []))
    wanted |= set(by_type.get(T.TEMPERATURE, []))
    wanted |= set(by_type.get(T.DIAGNOSTIC_ARRAY, []))
    wanted |= {t for t in (T.MISSION_PRIORITY, T.SCENARIO_CORUNNER) if t in topics}
    return sorted(wanted)


def load_result_bag(path: str | os.PathLike[str], name: str | None = None) -> RunResults:
    with BagReader(path) as reader:
        messages = list(reader.messages(_result_topics(reader)))
        scenario = scenario_in_bag(reader)
        custom = reader.custom_data.get(T.CUSTOM_DATA_RUN)
        source = str(reader.path)

    run_fields: dict[str, Any] = {}
    if custom:
        try:
            run_fields = json.loads(custom)
        except json.JSONDecodeError as exc:
            raise ResultsError(
                f"bag {source}: custom_data {T.CUSTOM_DATA_RUN} is not JSON ({exc.msg})"
            ) from None
    info = _run_info(run_fields, scenario, messages, source, name)
    b = RecordBuilder(info)
    seen_commands: set[tuple[str, int, int]] = set()
    for topic, _, msg in messages:
        msgtype = msg.__msgtype__
        if msgtype == T.CLASSIFICATION_RESULT:
            if msg.model_name == T.GROUND_TRUTH_MODEL or topic.endswith(T.GROUND_TRUTH_SUFFIX):
                if len(msg.class_ids):
                    b.ground_truth(
                        T.camera_of(topic) or "camera", stamp_ns(msg), int(msg.class_ids[0])
                    )
            else:
                b.classification(
                    msg.model_name or _model_of(topic),
                    stamp_ns(msg),
                    frame_seq=int(msg.frame_seq),
                    subnet_id=msg.subnet_id,
                    class_ids=list(msg.class_ids),
                    latency_ms=_f32(msg.latency_ms),
                    command_seq=int(msg.command_seq),
                )
        elif msgtype == T.PERCEPTION_STATUS:
            b.status(
                msg.model_name or _model_of(topic),
                int(msg.frames_processed),
                subnet_id=msg.subnet_id,
                processor=msg.processor,
                threads=int(msg.threads),
                cpu_frequency_khz=int(msg.cpu_frequency_khz),
                gpu_frequency_khz=int(msg.gpu_frequency_khz),
                latency_ms=_f32(msg.latency_ms),
                latency_target_ms=_f32(msg.latency_target_ms),
                power_w=_f32(msg.power_w),
                energy_per_frame_mj=_f32(msg.energy_per_frame_mj),
                energy_total_j=float(msg.energy_total_j),
                last_command_seq=int(msg.last_command_seq),
                level=int(msg.level),
            )
        elif msgtype == T.RECONFIGURATION_COMMAND:
            model = msg.target_model or _model_of(topic)
            identity = (model, int(getattr(msg, "epoch", 0)), int(msg.seq))
            if identity in seen_commands:
                continue  # the manager re-sends its command in force: one decision
            seen_commands.add(identity)
            b.command(
                stamp_ns(msg),
                model,
                seq=int(msg.seq),
                config=configuration.from_fields(msg),
                latency_target_ms=_f32(msg.latency_target_ms),
                reason=msg.reason,
            )
        elif msgtype == T.BATTERY_STATE:
            b.battery(stamp_ns(msg), _f32(msg.percentage))
        elif msgtype == T.TEMPERATURE:
            if topic == T.SCENARIO_AMBIENT:
                b.temperature(stamp_ns(msg), "ambient", float(msg.temperature), ambient=True)
            else:
                zone = msg.header.frame_id or topic.rsplit("/", 1)[-1] or "zone"
                b.temperature(stamp_ns(msg), zone, float(msg.temperature))
        elif msgtype == T.MISSION_PRIORITY_MSG:
            b.events.append(
                priority_event(
                    b.t(stamp_ns(msg)), int(msg.level), _f32(msg.latency_target_ms), msg.reason
                )
            )
        elif msgtype == T.CORUNNER_LOAD:
            b.events.append(
                corunner_event(b.t(stamp_ns(msg)), msg.name, msg.processor, _f32(msg.share))
            )
        elif msgtype == T.DIAGNOSTIC_ARRAY:
            _diagnostics(b, stamp_ns(msg), msg)
    # the first priority message is the initial state, not a change
    priorities = [e for e in b.events if e.kind == "priority"]
    if priorities and priorities[0].t_s <= 1e-6:
        b.events.remove(priorities[0])
    thresholds = (
        scenario.battery.thresholds
        if scenario is not None and scenario.battery
        else DEFAULT_BATTERY_THRESHOLDS
    )
    return b.build(battery_thresholds=thresholds)


def _f32(x: Any) -> float:
    """A ``float32`` message field as the decimal its publisher meant (0.4, not 0.40000000596)."""
    return float(str(np.float32(x)))


def _diagnostics(b: RecordBuilder, stamp: int, msg: Any) -> None:
    """Platform diagnostics: ``throttled`` from a ``throttled`` key, else (a platform status,
    recognised by its ``power_w`` key) from a message mentioning throttling; in a platform
    status ``power_w`` becomes the ``power`` series (board power), ``energy_j`` the
    ``board_energy`` counter; a ``power_mode`` key (nvpmodel id) the board's power mode."""
    for status in msg.status:
        values = {kv.key: kv.value.strip() for kv in status.values}
        platform = "power_w" in values
        if "throttled" in values:
            b.throttled(stamp, values["throttled"].lower() in _TRUE)
        elif platform:
            b.throttled(stamp, "throttl" in status.message.lower())
        if platform:
            with contextlib.suppress(ValueError):
                b.power(stamp, float(values["power_w"]))
            with contextlib.suppress(ValueError, KeyError):
                b.board_energy(stamp, float(values["energy_j"]))
        with contextlib.suppress(ValueError, KeyError):
            b.power_mode(stamp, int(values["power_mode"]))


def _model_of(topic: str) -> str:
    return topic.strip("/").rsplit("/", 1)[0] or topic


def _run_info(
    fields_: dict[str, Any],
    scenario: Scenario | None,
    messages: list[tuple[str, int, Any]],
    source: str,
    name: str | None,
) -> RunInfo:
    d = dict(fields_)
    d.setdefault("source", source)
    if name is not None:
        d["name"] = name
    d.setdefault("name", d.get("policy") or Path(source).name)
    models: dict[str, Any] = dict(d.get("models") or {})
    if scenario is not None:
        d.setdefault("scenario", scenario.name)
        d.setdefault("duration_s", scenario.duration_s)
        for m in scenario.models:
            models.setdefault(
                m.name, {"latency_target_ms": m.latency_target_ms, "camera": m.camera}
            )
    d["models"] = models
    if not d.get("t0_ns"):
        stamps = [
            stamp_ns(msg)
            for topic, _, msg in messages
            if hasattr(msg, "header")
            and msg.__msgtype__
            in (T.CLASSIFICATION_RESULT, T.MISSION_PRIORITY_MSG, T.CORUNNER_LOAD)
        ]
        stamps = [s for s in stamps if s > 0]
        first = min(stamps, default=0)
        if scenario is not None and (
            scenario.start_ns <= first <= scenario.start_ns + scenario.duration_s * 1e9
        ):
            d["t0_ns"] = scenario.start_ns
        else:
            d["t0_ns"] = first
    return RunInfo.from_dict(d)
