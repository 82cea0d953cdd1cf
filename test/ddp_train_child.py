"""``dynofa train`` for the data-parallel tests, started by ``torchrun`` or plainly.

It registers the ``ddp-tiny`` preset (a narrow MobileNetV3 space for 28x28 grey images at 12 / 16
pixels, no dropout) so a few steps take seconds, and with ``--float64`` trains in float64: the
single-process and N-rank runs then agree to ~1e-10, while in float32 a BatchNorm network's
gradient already differs from float64 by ~1% (rounding, not logic), too coarse to tell a correct
data-parallel run from a subtly wrong one.
"""

from __future__ import annotations

import sys

import torch

from dynofa_ros.supernet.config import SearchSpace
from dynofa_ros.supernet.network import PRESETS, Architecture

TINY = Architecture(
    name="ddp-tiny",
    in_channels=1,
    num_classes=10,
    base_widths=(8, 8, 8, 8, 16, 16, 16, 32, 32),
    first_stride=2,
    strides=(1, 2, 1, 1, 1, 1),
    dropout=0.0,
    space=SearchSpace(resolutions=(12, 16)),
    mean=(0.2860,),
    std=(0.3530,),
)


def register() -> None:
    PRESETS.setdefault(TINY.name, TINY)


def main(argv: list[str]) -> int:
    from dynofa_ros.cli import main as dynofa

    register()
    if "--float64" in argv:
        argv = [a for a in argv if a != "--float64"]
        torch.set_default_dtype(torch.float64)
    return dynofa(["train", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
