"""QoS of the package's topics, one home so publishers and subscribers always match.

Commands are latched (transient local): a perception node that starts, or restarts, after the
manager's last decision still gets it; the decision is only re-sent when it changes. Results and
status are reliable with room for bursts; camera frames use the sensor-data profile (best effort,
depth 1 on the subscriber: the newest frame wins)."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

COMMANDS = QoSProfile(
    depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
OUTPUTS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
CAMERA = qos_profile_sensor_data
# /clock as rclpy's own time source reads it: only the newest time matters
CLOCK = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
