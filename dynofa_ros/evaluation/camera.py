"""Camera frame sources for scenarios.

- :class:`FashionMnistFrames`: Fashion-MNIST items composed into camera-sized frames. Each frame
  holds one item, upscaled to a random size (``item_scale`` × the frame's shorter side) at a random
  position on a noisy / textured / flat background; its label is the item's class. Frame ``i``
  depends only on (seed, camera name, i): the same scenario always gives the same bag.
  The IDX files are read with the super-network package's reader (``dynofa_ros.supernet.data``).
- :class:`VideoFrames`: frames of a video file (OpenCV ``VideoCapture``), sampled at the scenario's
  frame rate (looping when the video is shorter), resized to the camera size; no labels.

Both yield :class:`Frame` objects whose ``pixels`` are in the camera's encoding (``rgb8``,
``bgr8``: ``(H, W, 3)``; ``mono8``: ``(H, W)``).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dynofa_ros.evaluation.scenario import CameraSpec, ScenarioError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class Frame:
    index: int
    t: float  # seconds from the scenario start
    pixels: np.ndarray
    label: int | None = None
    label_name: str | None = None


def _camera_key(name: str) -> int:
    return zlib.crc32(name.encode())


@functools.lru_cache(maxsize=4)
def _dataset(root: str, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Images ``(N, 28, 28)`` uint8, labels, class names; read once per process (read-only)."""
    from dynofa_ros.supernet.data import DataError, load_fashion_mnist  # torch: only when used

    try:
        data = load_fashion_mnist(root, split)
    except DataError as exc:
        raise ScenarioError(f"Fashion-MNIST in {root}: {exc}") from None
    images = data.images.numpy()[:, 0]
    labels = data.labels.numpy()
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels, tuple(data.classes)


class FashionMnistFrames:
    def __init__(self, spec: CameraSpec, seed: int) -> None:
        self.spec = spec
        self.seed = seed
        root = Path(spec.path) if spec.path else FASHION_MNIST_DIR
        if not root.is_dir():
            raise ScenarioError(
                f"camera {spec.name}: Fashion-MNIST directory {root} does not exist (install the "
                "Debian package dataset-fashion-mnist, or set the camera's 'path')"
            )
        self.images, self.labels, self.classes = _dataset(str(root.resolve()), spec.split)
        order = np.random.default_rng([seed, _camera_key(spec.name), 0])
        self.order = order.permutation(len(self.labels))

    def label(self, index: int) -> int:
        """Class of frame ``index`` (without composing the frame)."""
        return int(self.labels[self.order[index % len(self.order)]])

    def frame(self, index: int, t: float) -> Frame:
        spec = self.spec
        rng = np.random.default_rng([self.seed, _camera_key(spec.name), 1, index])
        item_index = int(self.order[index % len(self.order)])
        H, W = spec.height, spec.width
        grey = _background(rng, spec, H, W)
        side = max(4, round(rng.uniform(*spec.item_scale) * min(H, W)))
        item = cv2.resize(self.images[item_index], (side, side), interpolation=cv2.INTER_LINEAR)
        alpha = item.astype(np.float32) / 255.0
        y = int(rng.integers(0, H - side + 1))
        x = int(rng.integers(0, W - side + 1))
        if spec.encoding == "mono8":
            patch = grey[y : y + side, x : x + side]
            grey[y : y + side, x : x + side] = patch * (1.0 - alpha) + item
            pixels = np.clip(grey + 0.5, 0, 255).astype(np.uint8)
        else:
            tint = rng.uniform(0.7, 1.3, size=3).astype(np.float32)
            rgb = grey[:, :, None] * tint[None, None, :]
            patch = rgb[y : y + side, x : x + side]
            rgb[y : y + side, x : x + side] = patch * (1.0 - alpha[:, :, None]) + item[
                :, :, None
            ].astype(np.float32)
            pixels = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
            if spec.encoding == "bgr8":
                pixels = np.ascontiguousarray(pixels[:, :, ::-1])
        label = self.label(index)
        return Frame(index, t, pixels, label, self.classes[label])

    def frames(self, times: list[float]) -> Iterator[Frame]:
        for i, t in enumerate(times):
            yield self.frame(i, t)


def _background(rng: np.random.Generator, spec: CameraSpec, H: int, W: int) -> np.ndarray:
    level = float(spec.background_level)
    amp = float(spec.noise_amplitude)
    if spec.background == "flat" or amp == 0:
        return np.full((H, W), level, np.float32)
    if spec.background == "noise":
        noise = rng.normal(0.0, amp / 2.0, size=(H, W)).astype(np.float32)
        return np.clip(level + noise, 0, 255)
    # texture: smooth blobs (upscaled coarse noise) plus a little fine grain
    coarse = rng.normal(0.0, 1.0, size=(max(2, H // 16), max(2, W // 16))).astype(np.float32)
    smooth = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0.0, 0.25, size=(H, W)).astype(np.float32)
    return np.clip(level + amp * 0.5 * (smooth + fine), 0, 255)


class VideoFrames:
    def __init__(self, spec: CameraSpec) -> None:
        self.spec = spec
        path = Path(spec.path or "")
        if not path.is_file():
            raise ScenarioError(
                f"camera {spec.name}: video file {path} does not exist (field "
                f"'camera.path'; e.g. /usr/share/doc/opencv-doc/examples/data/vtest.avi from the "
                "Debian package opencv-doc)"
            )
        self.path = path
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise ScenarioError(f"camera {spec.name}: OpenCV cannot open video {path}")
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.video_fps = float(fps) if fps and fps > 0 else spec.fps
            ok, _ = cap.read()
            if not ok:
                raise ScenarioError(f"camera {spec.name}: video {path} has no readable frame")
        finally:
            cap.release()

    def frames(self, times: list[float]) -> Iterator[Frame]:
        spec = self.spec
        cap = cv2.VideoCapture(str(self.path))
        position = -1  # index (within the current pass) of the frame in `current`
        offset = 0  # frames in the passes already played (the video loops)
        current: np.ndarray | None = None
        try:
            for i, t in enumerate(times):
                wanted = int(t * self.video_fps + 1e-6)
                while position + offset < wanted:
                    ok, img = cap.read()
                    if not ok:  # end of the video: loop
                        if position < 0:
                            raise ScenarioError(f"camera {spec.name}: cannot read {self.path}")
                        cap.release()
                        cap = cv2.VideoCapture(str(self.path))
                        offset += position + 1
                        position = -1
                        continue
                    position += 1
                    current = img
                assert current is not None
                yield Frame(i, t, _convert(current, spec))
        finally:
            cap.release()


def _convert(bgr: np.ndarray, spec: CameraSpec) -> np.ndarray:
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    h, w = bgr.shape[:2]
    interp = cv2.INTER_AREA if (spec.width < w or spec.height < h) else cv2.INTER_LINEAR
    img = cv2.resize(bgr, (spec.width, spec.height), interpolation=interp)
    if spec.encoding == "mono8":
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if spec.encoding == "rgb8":
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def open_source(spec: CameraSpec, seed: int) -> FashionMnistFrames | VideoFrames:
    if spec.source == "fashion_mnist":
        return FashionMnistFrames(spec, seed)
    return VideoFrames(spec)
