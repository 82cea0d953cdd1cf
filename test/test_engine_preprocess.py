"""Engine preprocessing: each sensor_msgs encoding (and JPEG / PNG) against an independent
reference conversion (float image, OpenCV colour conversion, float resize, normalisation), the
zero-copy view over the message bytes, row padding, byte order, centre crop, bad buffers."""

from __future__ import annotations

import array
from typing import Any

import cv2
import numpy as np
import pytest

from dynofa_ros.engine import EngineError
from dynofa_ros.engine.preprocess import (
    Preprocessor,
    array_view,
    byte_buffer,
    compressed_kind,
    decode_compressed,
    raw_view,
)

GREY_MEAN, GREY_STD = (0.286,), (0.353,)
RGB_MEAN, RGB_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth colour image with texture (so resizing and channel order matter)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    r = 127 + 120 * np.sin(xx / 7.0 + seed)
    g = 127 + 120 * np.cos(yy / 5.0)
    b = 255 * (xx + yy) / (h + w)
    img = np.stack([r, g, b], axis=2) + rng.normal(0, 8, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _reference(rgb_float: np.ndarray, channels: int, size: int, crop: bool = False) -> np.ndarray:
    """``rgb_float``: (H, W, 3) in [0, 1] (or (H, W) grey); the obvious float pipeline."""
    img = rgb_float.astype(np.float32)
    if channels == 1 and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    if channels == 3 and img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if crop:
        h, w = img.shape[:2]
        m = min(h, w)
        img = img[(h - m) // 2 : (h - m) // 2 + m, (w - m) // 2 : (w - m) // 2 + m]
    h, w = img.shape[:2]
    if (h, w) != (size, size):
        interp = cv2.INTER_AREA if h >= size and w >= size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    if img.ndim == 2:
        img = img[:, :, None]
    mean = np.array(GREY_MEAN if channels == 1 else RGB_MEAN, np.float32)
    std = np.array(GREY_STD if channels == 1 else RGB_STD, np.float32)
    return ((img - mean) / std).transpose(2, 0, 1)[None]


def _prep(channels: int) -> Preprocessor:
    if channels == 1:
        return Preprocessor(1, GREY_MEAN, GREY_STD)
    return Preprocessor(3, RGB_MEAN, RGB_STD)


def _tolerance(channels: int, lsb: float) -> float:
    """``lsb`` 8-bit steps in normalised units (the engine resizes 8-bit samples: rounding)."""
    return lsb / 255.0 / min(GREY_STD if channels == 1 else RGB_STD)


def _encode(rgb: np.ndarray, encoding: str, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
    """(pixels in ``encoding``, the reference float image the encoding represents)."""
    if encoding == "rgb8":
        return rgb, rgb / 255.0
    if encoding == "bgr8":
        return np.ascontiguousarray(rgb[:, :, ::-1]), rgb / 255.0
    alpha = rng.integers(0, 256, rgb.shape[:2], dtype=np.uint8)[:, :, None]
    if encoding == "rgba8":
        return np.concatenate([rgb, alpha], axis=2), rgb / 255.0
    if encoding == "bgra8":
        return np.concatenate([rgb[:, :, ::-1], alpha], axis=2), rgb / 255.0
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if encoding == "mono8":
        return grey, grey / 255.0
    grey16 = (grey.astype(np.uint16) * 257 + rng.integers(0, 200, grey.shape)).astype(np.uint16)
    return grey16, grey16 / 65535.0


ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16")
SIZES = ((96, 80, 32), (20, 26, 32), (28, 28, 28))  # shrink, enlarge, same size


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_each_encoding_matches_the_reference_conversion(encoding: str, channels: int) -> None:
    rng = np.random.default_rng(1)
    for h, w, size in SIZES:
        for crop in (False, True):
            pixels, ref_img = _encode(_rgb(h, w), encoding, rng)
            data = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
            frame = raw_view(data, w, h, encoding)
            got = _prep(channels)(frame, size, crop)
            want = _reference(ref_img, channels, size, crop)
            assert got.shape == (1, channels, size, size) and got.dtype == np.float32
            err = float(np.abs(got - want).max())
            # 8-bit resize: rounding (area) plus OpenCV's fixed-point bilinear weights (enlarging)
            assert err <= _tolerance(channels, 1.0), (encoding, h, w, size, crop, err)


def test_channel_order_is_respected() -> None:
    """A pure red image gives red in channel 0 for rgb8 and for bgr8 (whose bytes are B, G, R)."""
    red = np.zeros((8, 8, 3), np.uint8)
    red[:, :, 0] = 255
    prep = _prep(3)
    from_rgb = prep(raw_view(red.tobytes(), 8, 8, "rgb8"), 8)
    from_bgr = prep(raw_view(np.ascontiguousarray(red[:, :, ::-1]).tobytes(), 8, 8, "bgr8"), 8)
    np.testing.assert_allclose(from_rgb, from_bgr, atol=1e-6)
    assert from_rgb[0, 0].mean() > from_rgb[0, 1].mean() + 3  # red channel high, green low


def test_view_shares_the_message_bytes_with_row_padding() -> None:
    """The pixels are a view on the buffer (no copy of the full-size image), rows padded by
    ``step``; only a foreign-byte-order mono16 buffer is copied (once)."""
    rgb = _rgb(40, 50)
    step = 50 * 3 + 10
    buf = bytearray(step * 40)
    flat = np.frombuffer(buf, np.uint8).reshape(40, step)
    flat[:, : 50 * 3] = rgb.reshape(40, -1)
    frame = raw_view(buf, 50, 40, "rgb8", step)
    assert np.shares_memory(frame.pixels, np.frombuffer(buf, np.uint8))
    assert frame.pixels.strides[0] == step
    np.testing.assert_array_equal(frame.pixels, rgb)
    want = _reference(rgb / 255.0, 1, 32)
    assert np.abs(_prep(1)(frame, 32) - want).max() <= _tolerance(1, 0.55)
    for data in (bytes(buf), memoryview(buf), array.array("B", bytes(buf)), np.array(flat)):
        view = raw_view(data, 50, 40, "rgb8", step).pixels
        assert np.shares_memory(view, byte_buffer(data))

    grey16 = np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 500
    little = grey16.astype("<u2").tobytes()
    big = grey16.astype(">u2").tobytes()
    v_le = raw_view(little, 10, 12, "mono16", 0, False).pixels
    v_be = raw_view(big, 10, 12, "mono16", 0, True).pixels
    np.testing.assert_array_equal(v_le, grey16)
    np.testing.assert_array_equal(v_be, grey16)
    assert np.shares_memory(v_le, byte_buffer(little))
    assert not np.shares_memory(v_be, byte_buffer(big))


def test_padded_mono16_with_odd_step_is_read_correctly() -> None:
    grey16 = np.arange(6 * 5, dtype=np.uint16).reshape(6, 5) * 2000
    step = 5 * 2 + 3
    buf = bytearray(step * 6)
    for y in range(6):
        buf[y * step : y * step + 10] = grey16[y].astype("<u2").tobytes()
    frame = raw_view(bytes(buf), 5, 6, "mono16", step)
    np.testing.assert_array_equal(frame.pixels, grey16)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_compressed_frames_match_the_reference(ext: str, channels: int) -> None:
    rgb = _rgb(60, 72, seed=3)
    ok, enc = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    frame = decode_compressed(enc.tobytes(), "bgr8; jpeg compressed bgr8", channels)
    got = _prep(channels)(frame, 32)
    decoded = cv2.imdecode(enc, cv2.IMREAD_COLOR)[:, :, ::-1] / 255.0
    want = _reference(decoded, channels, 32)
    # the engine decodes JPEG straight to luma for a grey network (libjpeg's Y): a few steps
    lsb = 1.0 if ext == ".png" or channels == 3 else 2.0
    assert float(np.abs(got - want).max()) <= _tolerance(channels, lsb)


def test_sixteen_bit_and_alpha_png_keep_their_samples() -> None:
    rng = np.random.default_rng(4)
    grey16 = rng.integers(0, 65536, (40, 36), dtype=np.uint16)
    ok, enc = cv2.imencode(".png", grey16)
    assert ok
    frame = decode_compressed(enc.tobytes(), "png", 1)
    assert frame.pixels.dtype == np.uint16 and frame.full_scale == 65535.0
    want = _reference(grey16 / 65535.0, 1, 32)
    assert np.abs(_prep(1)(frame, 32) - want).max() <= _tolerance(1, 0.05)
    rgb = _rgb(30, 30)
    bgra = np.concatenate([rgb[:, :, ::-1], np.full((30, 30, 1), 7, np.uint8)], axis=2)
    ok, enc = cv2.imencode(".png", bgra)
    frame = decode_compressed(enc.tobytes(), "", 3)
    assert frame.layout == "bgra"
    want = _reference(rgb / 255.0, 3, 24)
    assert np.abs(_prep(3)(frame, 24) - want).max() <= _tolerance(3, 1.0)


def test_array_input_grey_and_rgb_and_non_contiguous() -> None:
    rgb = _rgb(30, 40)
    prep = _prep(1)
    a = prep(array_view(rgb), 24)
    b = prep(raw_view(rgb.tobytes(), 40, 30, "rgb8"), 24)
    np.testing.assert_array_equal(a, b)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    assert array_view(grey).layout == "mono"
    strided = rgb[::2, ::2]  # not row-contiguous: packed once
    want = _reference(strided / 255.0, 1, 15)
    assert np.abs(prep(array_view(strided), 15) - want).max() <= _tolerance(1, 0.55)


BAD_RAW = [
    ({"encoding": "yuv422"}, "encoding"),
    ({"encoding": "RGB8"}, "encoding"),
    ({"width": 0}, "width"),
    ({"height": -3}, "height"),
    ({"width": 2.5}, "width"),
    ({"step": 5}, "step"),  # less than width * 3
    ({"step": 31}, "data has"),  # byte count then disagrees
    ({"width": 11}, "data has"),
    ({"data": b""}, "data is empty"),
    ({"data": [1, 2, 3]}, "data must be bytes"),
]


@pytest.mark.parametrize(("change", "field"), BAD_RAW)
def test_bad_raw_frames_name_the_field(change: dict, field: str) -> None:
    args = {
        "data": bytes(10 * 8 * 3),
        "width": 10,
        "height": 8,
        "encoding": "rgb8",
        "step": 0,
    }
    args.update(change)
    with pytest.raises(EngineError, match=field) as info:
        raw_view(**args)
    assert isinstance(info.value, ValueError)


def test_bad_compressed_frames_name_the_field() -> None:
    with pytest.raises(EngineError, match="cannot be decoded as jpeg"):
        decode_compressed(b"\xff\xd8\xff\xe0 not really a jpeg", "jpeg", 1)
    with pytest.raises(EngineError, match="data is empty"):
        decode_compressed(b"", "png", 1)
    with pytest.raises(EngineError, match=r"fmt 'tiff'.*allowed: jpeg, png"):
        decode_compressed(b"123", "tiff", 1)
    with pytest.raises(EngineError, match="compressed depth"):
        compressed_kind("16UC1; compressedDepth png")
    assert compressed_kind("rgb8; png compressed bgr8") == "png"
    assert compressed_kind("JPEG") == "jpeg"


def test_bad_arrays_name_the_field() -> None:
    with pytest.raises(EngineError, match="image must be H x W"):
        array_view(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(EngineError, match="image dtype"):
        array_view(np.zeros((4, 4), np.float32))
    with pytest.raises(EngineError, match="image is empty"):
        array_view(np.zeros((0, 4), np.uint8))
    with pytest.raises(EngineError, match="image must be a numpy array"):
        array_view([[1, 2]])
