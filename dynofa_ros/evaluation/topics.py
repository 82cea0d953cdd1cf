"""The topic contract between scenario bags, the replay, the nodes and the metrics.

Scenario bag (input; every stamp in bag time, starting at the scenario's ``t0``):

- ``/scenario/description`` ``std_msgs/msg/String``: the scenario as YAML, first message (also in
  the bag metadata's ``custom_data["dynofa.scenario"]``);
- ``/<camera>/image_raw`` ``sensor_msgs/msg/Image``: frames (rgb8, bgr8, mono8), frame_id
  ``camera``; or ``/<camera>/image_raw/compressed`` ``sensor_msgs/msg/CompressedImage`` (jpeg)
  when the scenario asks;
- ``/<camera>/ground_truth`` ``dynofa_ros/msg/ClassificationResult``:
  ``model_name="ground_truth"``, ``class_ids=[label]``, same stamp as the frame;
- ``/mission_priority`` ``dynofa_ros/msg/MissionPriority``: at t0 and at each change;
- ``/scenario/battery`` ``sensor_msgs/msg/BatteryState``: battery timeline for the simulated
  board (``percentage`` in [0, 1]);
- ``/scenario/ambient_temperature`` ``sensor_msgs/msg/Temperature``: ambient °C for the simulated
  board, frame_id ``ambient``;
- ``/scenario/corunner`` ``dynofa_ros/msg/CoRunnerLoad``: co-runner starts / stops.

A bag recorded on a robot has camera topics (any name, type ``Image`` / ``CompressedImage``) and
may carry ``/battery`` and ``/temperature/*`` recorded from the real board instead of the
``/scenario/*`` timelines, and usually no ground truth.

Result bag (written by the replay; read by :func:`~.result_bag.load_result_bag`): the input events
above plus everything the nodes publish: ``/<model>/classification`` (``ClassificationResult``,
header stamp = the camera frame's), ``/<model>/status`` (``PerceptionStatus``),
``/<model>/reconfigure`` (``ReconfigurationCommand``), ``/battery`` (``BatteryState``),
``/temperature/<zone>`` (``Temperature``, frame_id = zone), optionally ``/diagnostics``
(``DiagnosticArray``: a ``throttled`` key = true / false, or the simulated platform's status with
a ``power_w`` key and a message mentioning throttling). The bag metadata's
``custom_data["dynofa.run"]`` holds the run description (JSON object of
:class:`~.records.RunInfo` fields: ``name``, ``policy``, ``mode``, ``t0_ns``, ``extra``, ...).
"""

from __future__ import annotations

DESCRIPTION = "/scenario/description"
MISSION_PRIORITY = "/mission_priority"
SCENARIO_BATTERY = "/scenario/battery"
SCENARIO_AMBIENT = "/scenario/ambient_temperature"
SCENARIO_CORUNNER = "/scenario/corunner"
BATTERY = "/battery"
TEMPERATURE_PREFIX = "/temperature/"
DIAGNOSTICS = "/diagnostics"

# Inputs a replay plays besides the cameras: mission changes and the simulated board's timelines.
SCENARIO_EVENTS = (MISSION_PRIORITY, SCENARIO_BATTERY, SCENARIO_AMBIENT, SCENARIO_CORUNNER)

IMAGE_SUFFIX = "/image_raw"
COMPRESSED_SUFFIX = "/image_raw/compressed"
GROUND_TRUTH_SUFFIX = "/ground_truth"
CLASSIFICATION_SUFFIX = "/classification"
STATUS_SUFFIX = "/status"
RECONFIGURE_SUFFIX = "/reconfigure"

GROUND_TRUTH_MODEL = "ground_truth"
CUSTOM_DATA_SCENARIO = "dynofa.scenario"  # bag metadata custom_data key: scenario YAML
CUSTOM_DATA_RUN = "dynofa.run"  # result bag custom_data key: run description (JSON)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
BATTERY_STATE = "sensor_msgs/msg/BatteryState"
TEMPERATURE = "sensor_msgs/msg/Temperature"
STRING = "std_msgs/msg/String"
DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"
CLASSIFICATION_RESULT = "dynofa_ros/msg/ClassificationResult"
PERCEPTION_STATUS = "dynofa_ros/msg/PerceptionStatus"
RECONFIGURATION_COMMAND = "dynofa_ros/msg/ReconfigurationCommand"
MISSION_PRIORITY_MSG = "dynofa_ros/msg/MissionPriority"
CORUNNER_LOAD = "dynofa_ros/msg/CoRunnerLoad"


def image_topic(camera: str, compressed: bool = False) -> str:
    return f"/{camera}{COMPRESSED_SUFFIX if compressed else IMAGE_SUFFIX}"


def ground_truth_topic(camera: str) -> str:
    return f"/{camera}{GROUND_TRUTH_SUFFIX}"


def camera_of(topic: str) -> str | None:
    """``/camera2/image_raw`` -> ``camera2`` (also for ``.../compressed`` and
    ``.../ground_truth``); ``None`` for other topics."""
    for suffix in (COMPRESSED_SUFFIX, IMAGE_SUFFIX, GROUND_TRUTH_SUFFIX):
        if topic.endswith(suffix):
            return topic[: -len(suffix)].strip("/") or None
    return None


def expected_type(topic: str, *, result: bool = False) -> str | None:
    """The type the contract requires on ``topic`` (``None``: the topic is not in the contract,
    its type is free). ``result=True`` adds the node outputs of a result bag
    (``/<model>/classification|status|reconfigure``); in a scenario bag those names are free."""
    fixed = {
        DESCRIPTION: STRING,
        MISSION_PRIORITY: MISSION_PRIORITY_MSG,
        SCENARIO_BATTERY: BATTERY_STATE,
        SCENARIO_AMBIENT: TEMPERATURE,
        SCENARIO_CORUNNER: CORUNNER_LOAD,
        BATTERY: BATTERY_STATE,
        DIAGNOSTICS: DIAGNOSTIC_ARRAY,
    }
    if topic in fixed:
        return fixed[topic]
    if topic.startswith(TEMPERATURE_PREFIX):
        return TEMPERATURE
    suffixes: tuple[tuple[str, str], ...] = (
        (COMPRESSED_SUFFIX, COMPRESSED_IMAGE),
        (IMAGE_SUFFIX, IMAGE),
        (GROUND_TRUTH_SUFFIX, CLASSIFICATION_RESULT),
    )
    if result:
        suffixes += (
            (CLASSIFICATION_SUFFIX, CLASSIFICATION_RESULT),
            (STATUS_SUFFIX, PERCEPTION_STATUS),
            (RECONFIGURE_SUFFIX, RECONFIGURATION_COMMAND),
        )
    for suffix, msgtype in suffixes:
        if topic.endswith(suffix):
            return msgtype
    return None
