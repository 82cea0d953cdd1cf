"""``dynofa record-video VIDEO -o BAG``: a video file recorded the way a camera driver and
``ros2 bag record`` record a camera on a robot (topic ``/camera/color/image_raw``, header
stamps at the video's frame times, bag receive time a few milliseconds later, ``camera_info``
beside the images, no scenario description), so a replay can be tried on real footage without a
robot: ``dynofa replay BAG`` then treats it as any recorded bag."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dynofa_ros.evaluation import bagio
from dynofa_ros.evaluation import topics as T
from dynofa_ros.evaluation.bagio import BagError

CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TRANSPORT_DELAY_NS = 12_000_000  # a USB camera's frame reaches the recorder ~12 ms after capture


def record_video(
    video: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    topic: str = "/camera/color/image_raw",
    storage: str = "sqlite3",
    compressed: bool = False,
    max_frames: int | None = None,
    start_ns: int | None = None,
    overwrite: bool = False,
) -> int:
    """Write the bag atomically; return the number of frames."""
    import cv2

    path = Path(video)
    cap = cv2.VideoCapture(str(path))
    if not path.is_file() or not cap.isOpened():
        raise BagError(f"video {path} cannot be opened (a file OpenCV reads, e.g. .avi / .mp4)")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    if not 0 < fps <= 1000:
        fps = 30.0
    period_ns = round(1e9 / fps)
    t0 = start_ns if start_ns is not None else time.time_ns() // 1_000_000_000 * 1_000_000_000
    types = bagio.typestore().types
    frame_id = "camera_color_optical_frame"
    image_topic = f"{topic}/compressed" if compressed else topic
    info_topic = topic.rsplit("/", 1)[0] + "/camera_info"
    n = 0
    try:
        with bagio.BagWriter(out, storage, overwrite=overwrite) as writer:
            while max_frames is None or n < max_frames:
                ok, bgr = cap.read()
                if not ok:
                    break
                stamp = t0 + n * period_ns
                header = bagio.header(stamp, frame_id)
                h, w = bgr.shape[:2]
                if compressed:
                    ok, jpg = cv2.imencode(".jpg", bgr)
                    if not ok:
                        raise BagError(f"video {path}: frame {n} cannot be JPEG-encoded")
                    msg = types[T.COMPRESSED_IMAGE](
                        header=header, format="bgr8; jpeg compressed bgr8",
                        data=np.asarray(jpg, np.uint8).ravel(),
                    )  # fmt: skip
                    writer.write(image_topic, T.COMPRESSED_IMAGE, stamp + TRANSPORT_DELAY_NS, msg)
                else:
                    msg = types[T.IMAGE](
                        header=header, height=h, width=w, encoding="bgr8", is_bigendian=0,
                        step=w * 3, data=np.ascontiguousarray(bgr).reshape(-1),
                    )  # fmt: skip
                    writer.write(image_topic, T.IMAGE, stamp + TRANSPORT_DELAY_NS, msg)
                info = types[CAMERA_INFO](
                    header=header, height=h, width=w, distortion_model="plumb_bob",
                    d=np.zeros(5), k=np.eye(3).ravel(), r=np.eye(3).ravel(), p=np.zeros(12),
                    binning_x=0, binning_y=0,
                    roi=types["sensor_msgs/msg/RegionOfInterest"](
                        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
                    ),
                )  # fmt: skip
                writer.write(info_topic, CAMERA_INFO, stamp + TRANSPORT_DELAY_NS + 1000, info)
                n += 1
            if n == 0:
                raise BagError(f"video {path} has no readable frame")
    finally:
        cap.release()
    return n


def main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="dynofa record-video",
        description="Record a video file as a camera driver's rosbag2 (what a robot records), "
        "to try `dynofa replay` on real footage.",
    )
    ap.add_argument("video", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True, help="bag directory to write")
    ap.add_argument("--topic", default="/camera/color/image_raw", help="image topic")
    ap.add_argument("--storage", default="sqlite3", choices=tuple(bagio.STORAGES))
    ap.add_argument("--compressed", action="store_true", help="JPEG CompressedImage frames")
    ap.add_argument("--max-frames", type=int, help="stop after this many frames")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(list(argv))
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames {args.max_frames} must be >= 1")
    if not args.topic.startswith("/"):
        raise ValueError(f"--topic {args.topic!r} must be an absolute topic name")
    n = record_video(
        args.video, args.out, topic=args.topic, storage=args.storage,
        compressed=args.compressed, max_frames=args.max_frames, overwrite=args.overwrite,
    )  # fmt: skip
    topic = f"{args.topic}/compressed" if args.compressed else args.topic
    print(f"wrote {args.out} ({args.storage}, {n} frames on {topic})")
    return 0
