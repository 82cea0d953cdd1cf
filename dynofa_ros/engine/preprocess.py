"""Camera buffers to network input, with as little copying as the formats allow.

Raw ``sensor_msgs/Image`` buffers become a **zero-copy** numpy view ``(H, W[, C])`` over the
message's bytes (row padding ``step`` expressed as a stride, big-endian ``mono16`` as a byte
order). Then, per frame:

1. optional centre crop: a slice of the view (no copy);
2. one resize to the member's resolution with OpenCV, reading the view directly (``INTER_AREA``
   when shrinking, ``INTER_LINEAR`` when enlarging); it writes the small ``r x r`` image;
3. channel conversion and normalisation fused in one pass over the small image: a ``(k, C)``
   matrix maps the buffer's ``k`` samples (RGB / BGR order, alpha dropped, grey weights
   BT.601 0.299 / 0.587 / 0.114 for a 1-channel network, grey replicated for a 3-channel one),
   with ``1 / (full scale * std)`` and ``-mean / std`` folded in, into ``(1, C, r, r)`` float32.

Where the one copy of the full-size image happens (at most one):

* raw frames: none in the usual case. Exceptions: a ``mono16`` buffer whose byte order is not
  the machine's (``is_bigendian`` on a little-endian host) is byte-swapped into a native array,
  and a ``mono16`` buffer with an odd ``step`` (OpenCV needs 2-byte aligned rows) is packed;
* compressed frames: the decode itself writes the only full-size array (a JPEG for a grey
  network is decoded straight to luma by libjpeg);
* :func:`array_view`: none for a C-contiguous image (rows may be padded); other layouts are
  packed once.

When the frame already has the member's resolution, step 2 is skipped and step 3 reads the view.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from dynofa_ros.engine.errors import EngineError

MAX_SIDE = 1 << 15  # pixels: larger sides are certainly a corrupt header


@dataclass(frozen=True)
class Encoding:
    """A ``sensor_msgs/Image`` encoding: samples per pixel, sample type, channel order."""

    name: str
    samples: int
    dtype: str  # "u1" | "u2"
    layout: str  # "rgb" | "bgr" | "rgba" | "bgra" | "mono"

    @property
    def pixel_bytes(self) -> int:
        return self.samples * int(self.dtype[1])


ENCODINGS: dict[str, Encoding] = {
    e.name: e
    for e in (
        Encoding("rgb8", 3, "u1", "rgb"),
        Encoding("bgr8", 3, "u1", "bgr"),
        Encoding("rgba8", 4, "u1", "rgba"),
        Encoding("bgra8", 4, "u1", "bgra"),
        Encoding("mono8", 1, "u1", "mono"),
        Encoding("mono16", 1, "u2", "mono"),
    )
}
RAW_ENCODINGS = tuple(ENCODINGS)
COMPRESSED_FORMATS = ("jpeg", "png")
LAYOUT_SAMPLES = {"rgb": 3, "bgr": 3, "rgba": 4, "bgra": 4, "mono": 1}
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as cv2.COLOR_RGB2GRAY


@dataclass(frozen=True)
class Frame:
    """A camera image ready for :class:`Preprocessor`: a view ``(H, W)`` or ``(H, W, k)``, its
    channel order and the sample value of full intensity (255 or 65535)."""

    pixels: np.ndarray
    layout: str
    full_scale: float


def _int_field(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise EngineError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    v = int(value)
    if not lo <= v <= hi:
        raise EngineError(f"{name} = {v} is outside {lo}..{hi}")
    return v


def byte_buffer(data: Any, name: str = "data") -> np.ndarray:
    """A 1-D ``uint8`` view (no copy) of a bytes-like object or a contiguous numpy array."""
    if isinstance(data, np.ndarray):
        if not data.flags.c_contiguous:
            raise EngineError(f"{name} must be a C-contiguous array (got strides {data.strides})")
        flat = data.reshape(-1).view(np.uint8)
    else:
        try:
            mv = memoryview(data)
        except TypeError:
            raise EngineError(
                f"{name} must be bytes, bytearray, memoryview, array.array or a numpy array, "
                f"got {type(data).__name__}"
            ) from None
        if not mv.c_contiguous:
            raise EngineError(f"{name} must be a contiguous buffer")
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        flat = np.frombuffer(mv, dtype=np.uint8)
    if flat.size == 0:
        raise EngineError(f"{name} is empty (0 bytes); a frame needs at least one pixel")
    return flat


def raw_view(  # noqa: PLR0917 - the fields of sensor_msgs/Image, in order
    data: Any,
    width: Any,
    height: Any,
    encoding: Any,
    step: Any = 0,
    is_bigendian: Any = False,
) -> Frame:
    """The pixels of a ``sensor_msgs/Image`` as a view over ``data`` (see the module doc for the
    only cases that copy). ``step`` 0 means packed rows (``width * bytes per pixel``)."""
    enc = ENCODINGS.get(encoding) if isinstance(encoding, str) else None
    if enc is None:
        raise EngineError(
            f"encoding {encoding!r} is not supported (allowed: {', '.join(RAW_ENCODINGS)}; "
            f"compressed frames: {', '.join(COMPRESSED_FORMATS)})"
        )
    w = _int_field(width, "width", 1, MAX_SIDE)
    h = _int_field(height, "height", 1, MAX_SIDE)
    row = w * enc.pixel_bytes
    s = _int_field(step, "step", 0, MAX_SIDE * 8)
    if s == 0:
        s = row
    elif s < row:
        raise EngineError(
            f"step = {s} is less than width * bytes per pixel = {w} * {enc.pixel_bytes} = {row} "
            f"for encoding {enc.name} (allowed: 0 for packed rows, or >= {row})"
        )
    flat = byte_buffer(data)
    if flat.size != s * h:
        raise EngineError(
            f"data has {flat.size} bytes but width={w} height={h} step={s} ({enc.name}) need "
            f"step * height = {s * h}; width, height, step and the byte count are inconsistent"
        )
    if enc.dtype == "u1":
        if enc.samples == 1:
            view = np.ndarray((h, w), np.uint8, flat, 0, (s, 1))
        else:
            view = np.ndarray((h, w, enc.samples), np.uint8, flat, 0, (s, enc.samples, 1))
        return Frame(view, enc.layout, 255.0)
    dt = np.dtype(">u2" if bool(is_bigendian) else "<u2")
    if s % 2 == 0 and dt.isnative:
        view = np.ndarray((h, w), dt, flat, 0, (s, 2))
    else:  # the one copy: OpenCV needs native byte order and aligned rows
        pixels = np.ndarray((h, w), dt, flat, 0, (s, 2))
        view = pixels.astype(np.uint16)
    return Frame(view, enc.layout, 65535.0)


def compressed_kind(fmt: Any) -> str:
    """``jpeg`` / ``png`` from a ``sensor_msgs/CompressedImage`` format (``"jpeg"``,
    ``"bgr8; jpeg compressed bgr8"``); ``""`` lets the decoder detect it."""
    if not isinstance(fmt, str):
        raise EngineError(f"fmt must be a string such as 'jpeg' or 'png', got {fmt!r}")
    text = fmt.strip().lower()
    if not text:
        return ""
    if "compresseddepth" in text.replace(" ", ""):
        raise EngineError(f"fmt {fmt!r} (compressed depth) is not supported (allowed: jpeg, png)")
    for token in re.split(r"[;,\s]+", text):
        if token in ("jpeg", "jpg"):
            return "jpeg"
        if token == "png":
            return "png"
    raise EngineError(
        f"fmt {fmt!r} is not supported (allowed: jpeg, png, or a CompressedImage format such as "
        "'bgr8; jpeg compressed bgr8')"
    )


MAX_DECODED_PIXELS = 50_000_000  # ~7000 x 7000: above any camera; a 25000^2 PNG bomb is refused
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers


def compressed_size(buf: np.ndarray) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's start-of-frame header, without decoding;
    ``None`` when the header is not found (the decoder then says what is wrong)."""
    head = buf[: 1 << 16].tobytes()
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_SOF:
            return int.from_bytes(head[i + 7 : i + 9], "big"), int.from_bytes(
                head[i + 5 : i + 7], "big"
            )
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        i += 2 + int.from_bytes(head[i + 2 : i + 4], "big")
    return None


def decode_compressed(data: Any, fmt: Any, channels: int) -> Frame:
    """Decode a JPEG / PNG buffer (the one full-size copy). JPEG goes straight to luma for a
    1-channel network (libjpeg skips the colour conversion), to BGR otherwise; PNG keeps its
    samples (grey / BGR / BGRA, 8 or 16 bit) and is converted after the resize, like raw frames."""
    kind = compressed_kind(fmt)
    buf = byte_buffer(data)
    size = compressed_size(buf)
    if size is not None and size[0] * size[1] > MAX_DECODED_PIXELS:
        raise EngineError(
            f"data: a {size[0]}x{size[1]} image is {size[0] * size[1]} pixels decoded, above "
            f"the cap of {MAX_DECODED_PIXELS} (checked from its header, not decoded)"
        )
    if buf[:4].tobytes() == b"\x89PNG":
        flag = cv2.IMREAD_UNCHANGED
    else:
        flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
    try:
        img = cv2.imdecode(buf, flag)
    except cv2.error:
        img = None
    if img is not None and img.ndim == 3 and img.shape[2] not in (3, 4):
        img = img[:, :, 0] if img.shape[2] == 1 else cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None or img.size == 0 or img.dtype not in (np.uint8, np.uint16):
        raise EngineError(
            f"data ({buf.size} bytes) cannot be decoded as {kind or 'an image'} (corrupt, "
            "truncated or not an image; allowed: jpeg, png)"
        )
    full = 65535.0 if img.dtype == np.uint16 else 255.0
    if img.ndim == 2:
        return Frame(img, "mono", full)
    return Frame(img, "bgr" if img.shape[2] == 3 else "bgra", full)


def array_view(image: Any) -> Frame:
    """An ``H x W`` grey or ``H x W x 3`` RGB (``x 4`` RGBA, ``x 1`` grey) ``uint8`` image, or an
    ``H x W`` ``uint16`` grey one, as a :class:`Frame` (no copy when rows are contiguous)."""
    if not isinstance(image, np.ndarray):
        raise EngineError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype not in (np.uint8, np.uint16):
        raise EngineError(f"image dtype must be uint8 (or uint16 grey), got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        layout = "mono"
    elif image.ndim == 3 and image.shape[2] in (3, 4) and image.dtype == np.uint8:
        layout = "rgb" if image.shape[2] == 3 else "rgba"
    else:
        raise EngineError(
            f"image must be H x W (grey) or H x W x 3 (RGB) uint8, got shape {image.shape} "
            f"{image.dtype}"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise EngineError(f"image is empty (shape {image.shape})")
    if max(image.shape[:2]) > MAX_SIDE:
        raise EngineError(f"image shape {image.shape} exceeds {MAX_SIDE} pixels per side")
    item = image.itemsize
    inner = image.strides[1:]
    packed = inner == ((item,) if image.ndim == 2 else (image.shape[2] * item, item))
    if not packed or image.strides[0] < 0 or not image.dtype.isnative:
        image = np.ascontiguousarray(image, dtype=image.dtype.newbyteorder("="))
    return Frame(image, layout, 65535.0 if image.dtype == np.uint16 else 255.0)


def _conversion(layout: str, channels: int) -> np.ndarray:
    """``(k, C)``: buffer samples (in ``layout`` order) to network channels (RGB or grey)."""
    k = LAYOUT_SAMPLES[layout]
    m = np.zeros((k, channels), np.float64)
    if layout == "mono":
        m[0, :] = 1.0
        return m
    rgb_rows = (0, 1, 2) if layout in ("rgb", "rgba") else (2, 1, 0)  # row of R, G, B
    if channels == 1:
        for row, wgt in zip(rgb_rows, GREY_WEIGHTS, strict=True):
            m[row, 0] = wgt
    else:
        for c, row in enumerate(rgb_rows):
            m[row, c] = 1.0
    return m


class Preprocessor:
    """Frames to normalised ``(1, C, r, r)`` float32 input of a network with ``channels`` input
    channels (grey or RGB) trained with per-channel ``mean`` / ``std`` on [0, 1] images."""

    def __init__(self, channels: int, mean: Any, std: Any) -> None:
        if channels not in (1, 3):
            raise EngineError(f"networks with {channels} input channels are not supported (1, 3)")
        self.channels = channels
        self.mean = np.asarray(mean, np.float64).reshape(channels)
        self.std = np.asarray(std, np.float64).reshape(channels)
        self._coef: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]] = {}
        for layout in LAYOUT_SAMPLES:
            for full in (255.0, 65535.0):
                m = _conversion(layout, channels) / (full * self.std)[None, :]
                self._coef[(layout, full)] = (
                    m.astype(np.float32),
                    (-self.mean / self.std).astype(np.float32),
                )

    def __call__(self, frame: Frame, size: int, center_crop: bool = False) -> np.ndarray:
        img = frame.pixels
        h, w = img.shape[0], img.shape[1]
        if center_crop and h != w:
            m = min(h, w)
            y0, x0 = (h - m) // 2, (w - m) // 2
            img = img[y0 : y0 + m, x0 : x0 + m]
            h = w = m
        if h != size or w != size:
            interp = cv2.INTER_AREA if h >= size and w >= size else cv2.INTER_LINEAR
            img = cv2.resize(img, (size, size), interpolation=interp)
        scale, bias = self._coef[(frame.layout, frame.full_scale)]
        c = self.channels
        out = np.empty((1, c, size, size), np.float32)
        if img.ndim == 2:
            for ch in range(c):
                plane = out[0, ch]
                np.multiply(img, scale[0, ch], out=plane)
                plane += bias[ch]
            return out
        k = img.shape[2]
        flat = img.reshape(size * size, k).astype(np.float32)
        y = flat @ scale
        y += bias
        out[0] = y.T.reshape(c, size, size)
        return out
