"""The elastic OFA-MobileNetV3 super-network: configs, elastic ops, BN statistics, checkpoints,
training, extraction and export. Pure PyTorch, no ROS import."""
