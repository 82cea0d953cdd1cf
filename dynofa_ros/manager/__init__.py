"""The runtime manager: tunes the dynamic network and the hardware together at run time.

Pure Python (no ROS, no torch). :class:`RuntimeManager` takes typed, timestamped inputs and
returns :class:`Decision` values (``msg/ReconfigurationCommand.msg`` field for field); a policy
from :data:`POLICIES` decides: the hierarchical Dynamic-OFA manager (``dynofa``) or a baseline.
``dynofa simulate`` runs them in closed loop against the simulated Xavier NX.
"""

from __future__ import annotations

from dynofa_ros.configuration import Configuration
from dynofa_ros.manager.config import (
    LevelPolicy,
    ManagerConfig,
    ProcessorPower,
    ThermalPolicy,
    config_from_dict,
)
from dynofa_ros.manager.policy import Policy
from dynofa_ros.manager.registry import POLICIES, make_policy
from dynofa_ros.manager.runtime import RuntimeManager
from dynofa_ros.manager.types import (
    BatteryReading,
    Choice,
    Decision,
    LatencyObservation,
    ManagerConfigError,
    Mission,
    ModelSpec,
    PowerReading,
    PriorityLevel,
    ProcessorLoad,
    Requirements,
    TemperatureReading,
)

__all__ = [
    "POLICIES",
    "BatteryReading",
    "Choice",
    "Configuration",
    "Decision",
    "LatencyObservation",
    "LevelPolicy",
    "ManagerConfig",
    "ManagerConfigError",
    "Mission",
    "ModelSpec",
    "Policy",
    "PowerReading",
    "PriorityLevel",
    "ProcessorLoad",
    "ProcessorPower",
    "Requirements",
    "RuntimeManager",
    "TemperatureReading",
    "ThermalPolicy",
    "config_from_dict",
    "make_policy",
]
