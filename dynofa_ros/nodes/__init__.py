"""ROS 2 nodes: thin adapters between messages / parameters and the core. The only rclpy users."""
