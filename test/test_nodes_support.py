"""The nodes' helpers that need no graph: the overlay image and the README's parameter tables."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from dynofa_ros.nodes.overlay import overlay_image
from dynofa_ros.nodes.params_doc import BEGIN, END, markdown

README = Path(__file__).resolve().parents[1] / "README.md"
RESULT = SimpleNamespace(
    labels=("Sneaker",), class_ids=(7,), scores=(0.93,), member_id="03d1ec9e72"
)


def _image(encoding: str, channels: int, pad: int = 0) -> Image:
    h, w = 48, 64
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 60, (h, w * channels + pad), dtype=np.uint8)
    msg = Image(height=h, width=w, encoding=encoding, step=w * channels + pad)
    msg.data = pixels.tobytes()
    return msg


@pytest.mark.parametrize(
    ("encoding", "channels"), [("rgb8", 3), ("bgr8", 3), ("mono8", 1), ("bgra8", 4)]
)
def test_overlay_draws_on_a_copy_of_the_frame_in_its_encoding(encoding: str, channels: int) -> None:
    msg = _image(encoding, channels, pad=4)  # rows padded: step > width * channels
    before = bytes(msg.data)
    out = overlay_image(msg, RESULT, 12.5)
    assert (out.width, out.height, out.encoding) == (64, 48, encoding)
    assert out.step == 64 * channels and len(out.data) == out.step * out.height
    drawn = np.frombuffer(bytes(out.data), np.uint8)
    assert drawn.max() == 255  # the white text is there (the input is below 60)
    assert bytes(msg.data) == before  # the camera frame is not touched


def test_overlay_of_a_compressed_frame_is_bgr8() -> None:
    ok, jpeg = cv2.imencode(".jpg", np.full((40, 50, 3), 30, np.uint8))
    assert ok
    msg = CompressedImage(format="jpeg", data=jpeg.tobytes())
    out = overlay_image(msg, RESULT, 3.0)
    assert (out.width, out.height, out.encoding) == (50, 40, "bgr8")


def test_overlay_rejects_what_it_cannot_draw_on() -> None:
    with pytest.raises(ValueError, match="encoding '16UC1'"):
        overlay_image(_image("16UC1", 2), RESULT, 1.0)
    short = _image("rgb8", 3)
    short.data = bytes(short.data)[:100]
    with pytest.raises(ValueError, match="data size"):
        overlay_image(short, RESULT, 1.0)
    with pytest.raises(ValueError, match="cannot decode"):
        overlay_image(CompressedImage(format="jpeg", data=b"not a jpeg"), RESULT, 1.0)


def test_readme_parameter_tables_match_the_nodes_declarations() -> None:
    text = README.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] == markdown(), (
        "README parameter tables are stale: run `.venv/bin/python -m dynofa_ros.nodes.params_doc`"
    )
    for name in ("allow_dvfs", "policy", "rate_hz", "<m>.latency_target_ms", "epoch_s"):
        assert f"`{name}`" in text
