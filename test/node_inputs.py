"""What the node tests publish: real Fashion-MNIST test images as camera frames."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np


@cache
def fashion_images(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` Fashion-MNIST test images (28x28 uint8) and their labels."""
    from dynofa_ros.supernet.data import load_fashion_mnist

    s = load_fashion_mnist(split="test")
    return s.images[:n, 0].numpy(), s.labels[:n].numpy()


def image_message(pixels: np.ndarray, stamp: Any, encoding: str = "mono8") -> Any:
    """A ``sensor_msgs/Image`` of a grey image, filled with ``tobytes()`` (the fast path)."""
    from sensor_msgs.msg import Image

    if encoding == "rgb8":
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding)
    msg.step = pixels.shape[1] * (3 if encoding == "rgb8" else 1)
    msg.data = pixels.tobytes()
    msg.header.stamp = stamp
    msg.header.frame_id = "camera"
    return msg
