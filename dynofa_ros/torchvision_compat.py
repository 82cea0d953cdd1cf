"""The one place that imports torchvision.

torchvision 0.28.0 (the pair of torch 2.13.0) ships only as a CUDA build; on CPU torch its C++ ops
do not load and ``import torchvision`` fails with ``operator torchvision::nms does not exist``
because its fake-tensor registrations need the op schemas. Defining the two schemas it registers
(``nms``, ``qnms``) with a plain-torch CPU kernel makes models, transforms, datasets and
``ops.nms`` work. Where torchvision's own ops load (a CUDA machine, a Jetson build) this is a
no-op. ``torchvision.io`` image decoding stays unavailable here: the project uses OpenCV.
"""

from __future__ import annotations

import types

import torch

_LIB: torch.library.Library | None = None  # kept alive: dropping it unregisters the ops


def _ops_present() -> bool:
    try:
        torch.ops.torchvision.nms  # noqa: B018 - attribute lookup resolves the op
    except (AttributeError, RuntimeError):
        return False
    return True


def _nms_cpu(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression, same contract as ``torchvision::nms``."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort(descending=True)
    keep: list[int] = []
    suppressed = torch.zeros(boxes.shape[0], dtype=torch.bool)
    for idx in order.tolist():
        if suppressed[idx]:
            continue
        keep.append(idx)
        w = (torch.minimum(x2[idx], x2) - torch.maximum(x1[idx], x1)).clamp(min=0)
        h = (torch.minimum(y2[idx], y2) - torch.maximum(y1[idx], y1)).clamp(min=0)
        inter = w * h
        iou = inter / (areas[idx] + areas - inter)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.int64, device=boxes.device)


def _install_cpu_ops() -> None:
    global _LIB
    if _LIB is not None or _ops_present():
        return
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("nms", _nms_cpu, "CPU")
    _LIB = lib


def import_torchvision() -> types.ModuleType:
    """Return the ``torchvision`` module, making it importable on CPU-only torch first."""
    _install_cpu_ops()
    import torchvision
    import torchvision.extension

    if _LIB is not None:
        # torchvision guards its ops with a flag set when its C++ library loads; ours are defined.
        torchvision.extension._has_ops = lambda: True
    return torchvision
