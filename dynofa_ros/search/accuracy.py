"""Measured accuracy of sub-networks: BatchNorm recalibrated per candidate, then top-1 on a
validation split (kept cheap: a few hundred calibration images, a few thousand validation ones).

Calibration images come from the training split (a fixed subset: deterministic); validation
images from the validation split carved from the training set (never the test set).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from dynofa_ros.search.errors import SearchError

DEFAULT_CALIBRATION_IMAGES = 500
DEFAULT_VALIDATION_IMAGES = 3000


@dataclass
class AccuracyData:
    calibration: Any  # ImageSet
    validation: Any  # ImageSet
    source: str

    @classmethod
    def fashion_mnist(
        cls,
        root: str | None = None,
        n_calibration: int = DEFAULT_CALIBRATION_IMAGES,
        n_validation: int = DEFAULT_VALIDATION_IMAGES,
    ) -> AccuracyData:
        from dynofa_ros.supernet.data import FASHION_MNIST_DIR, fashion_mnist_splits

        root = root or str(FASHION_MNIST_DIR)
        train, val, _ = fashion_mnist_splits(root)
        if n_calibration < 1 or n_validation < 1:
            raise SearchError("calibration and validation image counts must be >= 1")
        calib = train.subset(torch.arange(min(n_calibration, len(train))))
        valid = val.subset(torch.arange(min(n_validation, len(val))))
        return cls(
            calib,
            valid,
            f"Fashion-MNIST {root}: BN calibration on the first {len(calib)} training images, "
            f"top-1 on the first {len(valid)} images of the fixed validation split "
            "(carved from the training set)",
        )

    @classmethod
    def image_folder(
        cls,
        root: str,
        channels: int,
        size: int,
        *,
        n_calibration: int = DEFAULT_CALIBRATION_IMAGES,
        n_validation: int = DEFAULT_VALIDATION_IMAGES,
        classes: Sequence[str] | None = None,
    ) -> AccuracyData:
        """An ImageFolder tree (``root/<class>/<image>``; ``classes`` fixes the order, e.g. the
        checkpoint's labels), split into a fixed validation part and calibration images."""
        from dynofa_ros.supernet.data import load_image_folder, split_validation

        if n_calibration < 1 or n_validation < 1:
            raise SearchError("calibration and validation image counts must be >= 1")
        full = load_image_folder(root, channels, size, classes)
        if len(full) < 2:
            raise SearchError(f"image folder {root} holds {len(full)} image(s); need at least 2")
        train, valid = split_validation(full, min(n_validation, len(full) // 2))
        calib = train.subset(torch.arange(min(n_calibration, len(train))))
        return cls(
            calib,
            valid,
            f"image folder {root} ({len(full.classes)} classes): BN calibration on {len(calib)} "
            f"images, top-1 on a fixed split of {len(valid)} other images",
        )


class AccuracyMeter:
    """Top-1 of sub-networks of ``net`` with BN statistics calibrated for each one."""

    def __init__(self, net: Any, data: AccuracyData, *, batch_size: int = 500) -> None:
        self.net = net
        self.data = data
        self.batch_size = batch_size
        self.cache: dict[str, float] = {}

    def calibrate(self, cfg: Any, *, keep: bool = True) -> dict[str, Any]:
        """Calibrate and store ``cfg``'s BN statistics in the network; return them."""
        from dynofa_ros.supernet.bnstats import calibrate
        from dynofa_ros.supernet.evaluate import calibration_batches

        batches = calibration_batches(
            self.data.calibration, self.net, len(self.data.calibration), self.batch_size
        )
        stats = calibrate(self.net, cfg, batches, store=True)
        if not keep:
            self.forget(cfg)
        return stats

    def forget(self, cfg: Any) -> None:
        self.net.bn_stats.pop(cfg.id, None)
        self.net.bn_stats_configs.pop(cfg.id, None)
        self.net.set_active(self.net.active)

    def measure(self, cfg: Any, *, keep_bn: bool = False) -> float:
        if cfg.id in self.cache and (not keep_bn or self.net.has_bn_stats(cfg)):
            return self.cache[cfg.id]
        from dynofa_ros.supernet.evaluate import accuracy

        self.calibrate(cfg, keep=True)
        try:
            acc = accuracy(self.net, cfg, self.data.validation, batch_size=self.batch_size)
        finally:
            if not keep_bn:
                self.forget(cfg)
        self.cache[cfg.id] = acc
        return acc

    def measure_many(
        self, cfgs: Sequence[Any], *, progress: bool = True, desc: str = "accuracy"
    ) -> list[float]:
        return [
            self.measure(c)
            for c in tqdm(cfgs, desc=desc, disable=not progress or len(cfgs) < 2, leave=False)
        ]
