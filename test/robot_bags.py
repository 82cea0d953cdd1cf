"""Bags written the way a robot's camera driver and `ros2 bag record` write them (RealSense-like
topic names, depth / camera_info / tf beside the colour stream, receive time a little after the
header stamp), built with rosbags in the test itself: inputs the project did not make."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

COLOR = "/camera/color/image_raw"
COLOR_COMPRESSED = "/camera/color/image_raw/compressed"
DEPTH = "/camera/depth/image_rect_raw"
INFO = "/camera/color/camera_info"
TF_STATIC = "/tf_static"
T0_NS = 1_733_300_000_000_000_000  # a recent wall-clock epoch, as a robot stamps


def frames(n: int, width: int = 96, height: int = 72, seed: int = 0) -> list[np.ndarray]:
    """Moving shapes on a textured background (bgr), not Fashion-MNIST."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        img = base.copy()
        x = (5 + 3 * i) % (width - 20)
        cv2.rectangle(img, (x, 10), (x + 18, 40), (40, 200, 90), -1)
        cv2.circle(img, (width // 2, (7 * i) % height), 9, (220, 60, 30), -1)
        out.append(img)
    return out


def write_robot_bag(
    path: Path,
    *,
    n: int = 45,
    fps: float = 15.0,
    storage: str = "sqlite3",
    encoding: str = "rgb8",
    compressed: bool = False,
    raw_too: bool = False,
    stamps: str = "valid",  # valid | zero | jittered | backwards
    depth: bool = True,
    extras: bool = True,
    color: bool = True,
) -> Path:
    store = get_typestore(Stores.ROS2_HUMBLE)
    T = store.types
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    rng = np.random.default_rng(1)
    period_ns = round(1e9 / fps)
    with Writer(path, version=8, storage_plugin=plugin) as w:
        conns = {}

        def conn(topic: str, msgtype: str) -> object:
            if topic not in conns:
                conns[topic] = w.add_connection(topic, msgtype, typestore=store)
            return conns[topic]

        if extras:
            tf = T["tf2_msgs/msg/TFMessage"](transforms=[])
            w.write(conn(TF_STATIC, "tf2_msgs/msg/TFMessage"), T0_NS,
                    store.serialize_cdr(tf, "tf2_msgs/msg/TFMessage"))  # fmt: skip
        for i, img in enumerate(frames(n)):
            stamp_ns = T0_NS + i * period_ns
            if stamps == "jittered":
                stamp_ns += int(rng.integers(-4_000_000, 4_000_000))
            elif stamps == "backwards" and i == n // 2:
                stamp_ns -= 10 * period_ns
            recv_ns = T0_NS + i * period_ns + 12_000_000 + int(rng.integers(0, 2_000_000))
            hs = 0 if stamps == "zero" else stamp_ns
            header = T["std_msgs/msg/Header"](
                stamp=T["builtin_interfaces/msg/Time"](sec=hs // 10**9, nanosec=hs % 10**9),
                frame_id="camera_color_optical_frame",
            )
            h, wd = img.shape[:2]
            if color and (not compressed or raw_too):
                px = img if encoding == "bgr8" else img[:, :, ::-1].copy()
                msg = T["sensor_msgs/msg/Image"](
                    header=header, height=h, width=wd, encoding=encoding, is_bigendian=0,
                    step=wd * 3, data=np.frombuffer(px.tobytes(), dtype=np.uint8),
                )  # fmt: skip
                w.write(conn(COLOR, "sensor_msgs/msg/Image"), recv_ns,
                        store.serialize_cdr(msg, "sensor_msgs/msg/Image"))  # fmt: skip
            if color and compressed:
                ok, jpg = cv2.imencode(".jpg", img)
                assert ok
                msg = T["sensor_msgs/msg/CompressedImage"](
                    header=header, format="rgb8; jpeg compressed bgr8",
                    data=np.frombuffer(jpg.tobytes(), dtype=np.uint8),
                )  # fmt: skip
                w.write(conn(COLOR_COMPRESSED, "sensor_msgs/msg/CompressedImage"), recv_ns,
                        store.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage"))  # fmt: skip
            if depth:
                d = (np.full((h, wd), 1000, np.uint16) + i).astype("<u2")
                msg = T["sensor_msgs/msg/Image"](
                    header=header, height=h, width=wd, encoding="16UC1", is_bigendian=0,
                    step=wd * 2, data=np.frombuffer(d.tobytes(), dtype=np.uint8),
                )  # fmt: skip
                w.write(conn(DEPTH, "sensor_msgs/msg/Image"), recv_ns + 1000,
                        store.serialize_cdr(msg, "sensor_msgs/msg/Image"))  # fmt: skip
            if extras:
                info = T["sensor_msgs/msg/CameraInfo"](
                    header=header, height=h, width=wd, distortion_model="plumb_bob",
                    d=np.zeros(5), k=np.eye(3).ravel(), r=np.eye(3).ravel(),
                    p=np.zeros(12), binning_x=0, binning_y=0,
                    roi=T["sensor_msgs/msg/RegionOfInterest"](
                        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
                    ),
                )  # fmt: skip
                w.write(conn(INFO, "sensor_msgs/msg/CameraInfo"), recv_ns + 2000,
                        store.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))  # fmt: skip
    return path
