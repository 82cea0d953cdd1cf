"""Model card of a trained checkpoint: a JSON file (and a labels file) beside the weights.

``python -m dynofa_ros.supernet.card models/fmnist_mbv3_small.safetensors`` writes
``fmnist_mbv3_small.json`` (the exact training command, timing, the measured accuracy of every
reported sub-network, SHA-256 of the weights file) and ``fmnist_mbv3_small.labels.txt`` from the
checkpoint's own metadata, so the card cannot disagree with the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from dynofa_ros.fileio import atomic_write_text
from dynofa_ros.supernet.checkpoint import read_metadata


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def card_from_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    meta = read_metadata(p)
    training = meta.get("training") or {}
    subnets = [
        {
            k: e[k]
            for k in ("id", "config", "macs", "params", "val_accuracy", "test_accuracy")
            if k in e
        }
        for e in training.get("subnets", [])
    ]
    return {
        "file": p.name,
        "sha256": sha256_file(p),
        "bytes": p.stat().st_size,
        "format": meta["format"],
        "version": meta["version"],
        "architecture": meta["architecture"],
        "labels": meta["labels"],
        "command": training.get("command"),
        "train_seconds": training.get("train_seconds"),
        "torch_threads": training.get("torch_threads"),
        "torch_version": training.get("torch_version"),
        "data": {
            "train_images": training.get("train_images"),
            "val_images": training.get("val_images"),
            "test_images": training.get("test_images"),
        },
        "subnets": subnets,
        "history": training.get("history", []),
    }


def write_card(path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
    p = Path(path)
    card = card_from_checkpoint(p)
    card.update(extra or {})
    out = p.with_suffix(".json")
    atomic_write_text(out, json.dumps(card, indent=2) + "\n")
    atomic_write_text(p.with_suffix(".labels.txt"), "\n".join(card["labels"]) + "\n")
    return out


if __name__ == "__main__":
    extra = json.loads(sys.argv[2]) if len(sys.argv) > 2 else None
    print(write_card(sys.argv[1], extra))
