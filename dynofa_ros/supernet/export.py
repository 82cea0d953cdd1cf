"""ONNX export of one extracted sub-network (static graph, opset >= 17).

The TorchScript-based exporter is the one used on every torch of the runtime matrix (2.3 on
JetPack 6 up to the 2.13 pinned here): torch 2.5 added the ``dynamo`` switch (and 2.9 made the
dynamo exporter the default), older releases have no such argument, so it is passed only where
the installed ``torch.onnx.export`` takes it.
"""

from __future__ import annotations

import functools
import inspect
import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dynofa_ros.fileio import atomic_write_bytes
from dynofa_ros.supernet.network import Supernet

DEFAULT_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@functools.cache
def exporter_options() -> dict[str, Any]:
    """``dynamo=False`` where this torch's ``torch.onnx.export`` has the switch, else nothing."""
    try:
        params = inspect.signature(torch.onnx.export).parameters
    except (TypeError, ValueError):  # a C / wrapped callable without a signature
        return {}
    return {"dynamo": False} if "dynamo" in params else {}


def export_module_onnx(
    module: nn.Module,
    in_channels: int,
    resolution: int,
    path: str | os.PathLike[str] | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
) -> bytes:
    """Export a static module taking ``(B, in_channels, resolution, resolution)``; returns the
    ONNX bytes and writes them atomically to ``path`` when given."""
    if opset < 17:
        raise ValueError(f"ONNX opset must be >= 17, got {opset}")
    module = module.eval()
    example = torch.zeros(1, in_channels, resolution, resolution)
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter is the one we want (static graph, ~1 s); newer torch calls it
        # deprecated: silence that note
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (example,),
            buf,  # type: ignore[arg-type]  # a file object works; torch annotates paths only
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
            if dynamic_batch
            else None,
            do_constant_folding=True,
            **exporter_options(),
        )
    data = buf.getvalue()
    if path is not None:
        atomic_write_bytes(Path(path), data)
    return data


def export_onnx(
    net: Supernet,
    cfg: Any = None,
    path: str | os.PathLike[str] | None = None,
    *,
    opset: int = DEFAULT_OPSET,
) -> bytes:
    """Extract sub-network ``cfg`` (default: the active one) and export it to ONNX at its
    resolution ``cfg.r``."""
    cfg = net.active if cfg is None else cfg
    static = net.extract(cfg)
    return export_module_onnx(static, net.arch.in_channels, cfg.r, path, opset=opset)
