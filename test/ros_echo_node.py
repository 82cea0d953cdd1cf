"""Relay node for message tests: for each ``pkg/msg/Type`` argument, deserialise what arrives on
``echo_in/<Type>`` and publish it again on ``echo_out/<Type>`` (a real round trip through a second
process's type support)."""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from dynofa_ros.nodes.convert import message_class


class EchoNode(Node):
    def __init__(self, type_names: list[str]) -> None:
        super().__init__("echo")
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._keep = []
        for name in type_names:
            cls = message_class(name)
            short = name.split("/")[-1]
            pub = self.create_publisher(cls, f"echo_out/{short}", qos)
            self._keep.append(self.create_subscription(cls, f"echo_in/{short}", pub.publish, qos))


def main() -> None:
    rclpy.init()
    node = EchoNode(sys.argv[1:])
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
