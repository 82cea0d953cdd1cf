"""Accuracy of a sub-network on an in-memory image set, and BN calibration batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from dynofa_ros.supernet.bnstats import calibrate
from dynofa_ros.supernet.config import SubnetConfig
from dynofa_ros.supernet.data import ImageSet, iterate, prepare
from dynofa_ros.supernet.network import Supernet

DEFAULT_CALIBRATION_IMAGES = 2000


def _device(net: Supernet) -> torch.device:
    """Where the network's weights are (batches are moved there)."""
    return next(net.parameters()).device


def calibration_batches(
    data: ImageSet,
    net: Supernet,
    n_images: int = DEFAULT_CALIBRATION_IMAGES,
    batch_size: int = 250,
) -> Callable[[int], Iterator[torch.Tensor]]:
    """A function of the resolution giving the first ``n_images`` of ``data`` (a fixed subset:
    calibration is deterministic), preprocessed as at evaluation time."""
    subset = data.subset(torch.arange(min(n_images, len(data))))

    device = _device(net)

    def batches(r: int) -> Iterator[torch.Tensor]:
        for images, _ in iterate(subset, batch_size):
            yield prepare(images.to(device), r, net.arch.mean, net.arch.std)

    return batches


@torch.no_grad()
def accuracy(
    net: Supernet,
    cfg: Any,
    data: ImageSet,
    batch_size: int = 500,
    limit: int | None = None,
) -> float:
    """Top-1 accuracy of sub-network ``cfg`` on ``data`` (eval mode; its stored BN statistics
    when there are some)."""
    previous: Any = net.active  # of net's own config type, as cfg
    was_training = net.training
    net.set_active(cfg)
    net.eval()
    correct = total = 0
    device = _device(net)
    try:
        subset = data if limit is None else data.subset(torch.arange(min(limit, len(data))))
        for images, labels in iterate(subset, batch_size):
            logits = net(prepare(images.to(device), cfg.r, net.arch.mean, net.arch.std))
            correct += int((logits.argmax(1).cpu() == labels).sum())
            total += labels.numel()
    finally:
        net.set_active(previous)
        net.train(was_training)
    return correct / max(total, 1)


def calibrate_and_evaluate(
    net: Supernet,
    cfg: SubnetConfig,
    calib: ImageSet,
    data: ImageSet,
    *,
    n_calib: int = DEFAULT_CALIBRATION_IMAGES,
    limit: int | None = None,
) -> float:
    """Calibrate ``cfg``'s BN statistics on ``calib`` (stored in the network; nothing for a
    network without BatchNorm), then measure."""
    calibrate(net, cfg, calibration_batches(calib, net, n_calib))
    return accuracy(net, cfg, data, limit=limit)
