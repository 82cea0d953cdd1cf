"""The perception node's overlay image: the frame with label, score, member and latency drawn on.

Built only while someone subscribes to ``overlay``. Raw frames keep their size and encoding
(rgb8 / bgr8 / mono8 / rgba8 / bgra8); compressed frames come back as bgr8.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


def _pixels(msg: Image | CompressedImage) -> tuple[np.ndarray, str]:
    if isinstance(msg, CompressedImage):
        img = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"overlay: cannot decode the {msg.format!r} frame")
        return img, "bgr8"
    channels = _CHANNELS.get(msg.encoding)
    if channels is None:
        raise ValueError(
            f"overlay: encoding {msg.encoding!r} is not drawn on (one of: {', '.join(_CHANNELS)})"
        )
    row = msg.width * channels
    if msg.step < row or len(msg.data) < msg.step * msg.height:
        raise ValueError(
            f"overlay: step {msg.step} / data size do not fit {msg.width}x{msg.height}"
        )
    rows = np.frombuffer(bytes(msg.data), np.uint8)[: msg.step * msg.height]
    img = rows.reshape(msg.height, msg.step)[:, :row].reshape(msg.height, msg.width, channels)
    img = img[:, :, 0] if channels == 1 else img
    return np.ascontiguousarray(img), msg.encoding


def overlay_image(msg: Image | CompressedImage, result: Any, latency_ms: float) -> Image:
    """A new Image: ``msg``'s frame with the top-1 label and score, the member and the latency."""
    img, encoding = _pixels(msg)
    h, w = img.shape[:2]
    scale = max(0.3, min(w, h) / 480.0)
    thickness = max(1, round(scale * 2))
    label = result.labels[0] if result.labels else str(result.class_ids[0])
    lines = [
        f"{label} {result.scores[0] * 100:.0f}%",
        f"{result.member_id} {latency_ms:.1f} ms",
    ]
    white = (255,) * img.shape[2] if img.ndim == 3 else 255
    y = 0
    for text in lines:
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        y += th + base + 2
        cv2.rectangle(img, (0, y - th - base - 2), (min(w, tw + 4), y + 2), (0,) * 4, -1)
        cv2.putText(img, text, (2, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, white, thickness)
    out = Image()
    out.header = msg.header
    out.height, out.width = h, w
    out.encoding = encoding
    out.is_bigendian = 0
    out.step = w * (img.shape[2] if img.ndim == 3 else 1)
    out.data = img.tobytes()
    return out
