"""Super-network checkpoints: safetensors (no pickle) with a JSON metadata header.

Tensors: the network's ``state_dict`` under once-for-all's key names, plus per-sub-network BN
statistics under ``bn_stats/<id>/<bn name>.running_mean|var``. Metadata (safetensors header,
key ``dynofa``): format name and version, the architecture (preset name, widths, strides,
search space, input channels, classes, normalisation mean / std), class labels, the configs
whose BN statistics are stored, and free-form provenance (training command, accuracies).

Loading checks everything before building anything: a corrupt or truncated file, a wrong format
or version, and a missing / unexpected / mis-shaped tensor each raise :class:`CheckpointError`
naming the file and the key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dynofa_ros.errors import DynofaError
from dynofa_ros.fileio import atomic_path
from dynofa_ros.supernet.bnstats import install_all, stats_from_tensors, stats_to_tensors
from dynofa_ros.supernet.network import (
    AnyArchitecture,
    Supernet,
    architecture_from_dict,
    build_supernet,
)

FORMAT = "dynofa-supernet"
VERSION = 1
META_KEY = "dynofa"
BN_PREFIX = "bn_stats/"
OPTIONAL_SUFFIX = ".num_batches_tracked"  # a counter only; absent in some OFA exports


class CheckpointError(DynofaError):
    """A checkpoint that cannot be used; the message names the file and the key."""


@dataclass
class Checkpoint:
    """A loaded super-network with what its file says about it."""

    net: Supernet
    labels: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def arch(self) -> AnyArchitecture:
        return self.net.arch

    @property
    def mean(self) -> tuple[float, ...]:
        return self.net.arch.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.net.arch.std


def default_labels(num_classes: int) -> tuple[str, ...]:
    return tuple(f"class_{i}" for i in range(num_classes))


def save_checkpoint(
    path: str | os.PathLike[str],
    net: Supernet,
    *,
    labels: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write ``net`` (weights, BN statistics, architecture) atomically to ``path``."""
    from safetensors.torch import save_file

    labels = tuple(labels) if labels is not None else default_labels(net.arch.num_classes)
    if len(labels) != net.arch.num_classes:
        raise ValueError(f"{len(labels)} labels for a network with {net.arch.num_classes} classes")
    tensors = {k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}
    tensors.update({BN_PREFIX + k: v.clone() for k, v in stats_to_tensors(net).items()})
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "architecture": net.arch.to_dict(),
        "labels": list(labels),
        "bn_stats": {sid: cfg.to_dict() for sid, cfg in net.bn_stats_configs.items()},
        **dict(extra or {}),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Only the JSON metadata (fast: reads the header, not the tensors)."""
    p = Path(path)
    header = _read_header(p)
    meta_text = header.get("__metadata__", {}).get(META_KEY)
    if meta_text is None:
        raise CheckpointError(f"{p}: no '{META_KEY}' metadata; not a dynofa super-network file")
    try:
        meta: dict[str, Any] = json.loads(meta_text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{p}: metadata is not valid JSON ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{p}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{p}: checkpoint version {meta.get('version')!r} is not supported (this build reads "
            f"version {VERSION})"
        )
    return meta


def _read_header(p: Path) -> dict[str, Any]:
    """Parse and sanity-check the safetensors header: a truncated file is caught here."""
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{p}: file is {size} bytes, too short for a checkpoint")
            n = int.from_bytes(head, "little")
            if n <= 0 or n > min(size - 8, 100 * 2**20):
                raise CheckpointError(
                    f"{p}: corrupt or truncated checkpoint (header length {n}, file {size} bytes)"
                )
            header_bytes = fh.read(n)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {p}: {exc.strerror or exc}") from exc
    try:
        header = json.loads(header_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{p}: corrupt checkpoint (header is not JSON: {exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{p}: corrupt checkpoint (header is not an object)")
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise CheckpointError(f"{p}: corrupt checkpoint (entry {key!r})") from exc
    if 8 + n + end != size:
        raise CheckpointError(
            f"{p}: truncated or corrupt checkpoint: tensors need {8 + n + end} bytes, the file "
            f"has {size}"
        )
    return header


def load_tensors(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    _read_header(p)
    try:
        return load_file(str(p))
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{p}: corrupt checkpoint ({exc})") from exc


def check_state_dict(
    expected: Mapping[str, Tensor], got: Mapping[str, Tensor], source: str
) -> None:
    """Raise naming the first missing, unexpected or mis-shaped key (``num_batches_tracked``
    counters may be absent)."""
    missing = [k for k in expected if k not in got and not k.endswith(OPTIONAL_SUFFIX)]
    extra = [k for k in got if k not in expected]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{source}: missing key {missing[0]!r}{more}")
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise CheckpointError(f"{source}: unexpected key {extra[0]!r}{more}")
    for k, t in got.items():
        if tuple(t.shape) != tuple(expected[k].shape):
            raise CheckpointError(
                f"{source}: key {k!r} has shape {tuple(t.shape)}, the network expects "
                f"{tuple(expected[k].shape)}"
            )
        if t.is_floating_point() != expected[k].is_floating_point():
            raise CheckpointError(f"{source}: key {k!r} has dtype {t.dtype}")


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Build the super-network a checkpoint describes, load and check its tensors."""
    p = Path(path)
    meta = read_metadata(p)
    try:
        arch = architecture_from_dict(meta["architecture"])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{p}: bad 'architecture' metadata ({exc})") from exc
    labels = tuple(meta.get("labels") or default_labels(arch.num_classes))
    if len(labels) != arch.num_classes:
        raise CheckpointError(
            f"{p}: {len(labels)} labels in the metadata for {arch.num_classes} classes"
        )
    tensors = load_tensors(p)
    weights = {k: v for k, v in tensors.items() if not k.startswith(BN_PREFIX)}
    bn_tensors = {k[len(BN_PREFIX) :]: v for k, v in tensors.items() if k.startswith(BN_PREFIX)}
    net = build_supernet(arch)
    expected = net.state_dict()
    check_state_dict(expected, weights, str(p))
    state = dict(expected)
    for k, v in weights.items():
        state[k] = v.to(expected[k].dtype)
    net.load_state_dict(state)
    try:
        configs = {sid: net.space.parse(raw) for sid, raw in (meta.get("bn_stats") or {}).items()}
        install_all(net, stats_from_tensors(bn_tensors, configs), configs)
    except ValueError as exc:
        raise CheckpointError(f"{p}: {exc}") from exc
    largest: Any = net.space.largest()  # of net's own config type
    net.set_active(largest)
    net.eval()
    return Checkpoint(net=net, labels=labels, metadata=meta, path=p)


def torch_load_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A ``.pth`` state dict (``weights_only=True``: no code runs), unwrapping
    ``{"state_dict": ...}``."""
    p = Path(path)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"cannot read {p}: no such file") from exc
    except Exception as exc:
        raise CheckpointError(f"{p}: not a readable PyTorch state dict ({exc})") from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{p}: does not hold a state dict (name -> tensor)")
    return dict(obj)
