"""``dynofa infer``: classify one image file with one sub-network of a super-network checkpoint.

``--subnet`` takes a JSON config (inline or a file path), ``largest`` / ``smallest``, or the id of a
sub-network whose BN statistics the checkpoint stores. Colour and grey images of any size are
converted to the network's channels and resized to the sub-network's resolution with OpenCV.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dynofa_ros.errors import DynofaError


class SpecError(DynofaError):
    """A ``--subnet`` value that names no sub-network of the checkpoint."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dynofa infer",
        description="Print the top-k classes (softmax scores) of one image for one sub-network.",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="super-network .safetensors")
    p.add_argument(
        "--subnet",
        required=True,
        metavar="SPEC",
        help="'largest', 'smallest', a stored sub-network id, or a JSON config "
        "(inline or a file path)",
    )
    p.add_argument(
        "--image", required=True, type=Path, help="image file (any size, grey or colour)"
    )
    p.add_argument("--topk", type=int, default=5, help="classes to print (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON with the full logits")
    return p


def resolve_subnet(spec: str, ckpt: Any) -> Any:
    """The network's sub-network config from a ``--subnet`` value (see module doc)."""
    net = ckpt.net
    text = spec.strip()
    if text == "largest":
        return net.space.largest()
    if text == "smallest":
        return net.space.smallest()
    if text in net.bn_stats_configs:
        return net.bn_stats_configs[text]
    if text.startswith("{"):
        raw = text
    else:
        path = Path(text)
        if path.is_file():
            try:
                raw = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise SpecError(f"cannot read sub-network config file {path}: {exc}") from exc
        else:
            known = ", ".join(sorted(net.bn_stats_configs)) or "none stored"
            raise SpecError(
                f"--subnet {text!r} is not 'largest', 'smallest', a JSON config, a config file "
                f"or a stored sub-network id (stored: {known})"
            )
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SpecError(f"--subnet is not valid JSON: {exc}") from exc
    if isinstance(doc, dict) and "config" in doc and isinstance(doc["config"], dict):
        doc = doc["config"]  # a family member / report entry
    try:
        return net.space.parse(doc)
    except ValueError as exc:
        raise SpecError(f"--subnet: {exc}") from exc


def preprocess(image: np.ndarray, channels: int, size: int, mean: Any, std: Any) -> Any:
    """OpenCV image (grey or BGR, any size) → normalised ``(1, C, size, size)`` float tensor."""
    import torch

    from dynofa_ros.supernet.data import resize_image, to_channels

    # resized as float, like training's F.interpolate (no rounding back to uint8 in between)
    img = resize_image(to_channels(image, channels).astype(np.float32) / 255.0, size)
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return ((x - m) / s).unsqueeze(0)


@dataclass
class Prediction:
    subnet_id: str
    resolution: int
    logits: list[float]
    top: list[tuple[int, str, float]]  # (class index, label, softmax score)

    def to_dict(self) -> dict[str, Any]:
        return {
            "subnet": self.subnet_id,
            "resolution": self.resolution,
            "top": [{"class": i, "label": lab, "score": s} for i, lab, s in self.top],
            "logits": self.logits,
        }


def classify(ckpt: Any, cfg: Any, image: np.ndarray, topk: int = 5) -> Prediction:
    """One image through sub-network ``cfg`` of a loaded checkpoint (what the CLI prints)."""
    import torch

    net = ckpt.net
    if net.active.id != cfg.id:
        net.set_active(cfg)
    net.eval()
    x = preprocess(image, net.arch.in_channels, cfg.r, net.arch.mean, net.arch.std)
    with torch.no_grad():
        logits = net(x)[0]
    probs = torch.softmax(logits, 0)
    k = max(1, min(topk, probs.numel()))
    scores, idx = probs.topk(k)
    top = [(int(i), ckpt.labels[int(i)], float(s)) for s, i in zip(scores, idx, strict=True)]
    return Prediction(cfg.id, cfg.r, [float(v) for v in logits], top)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.topk < 1:
        raise ValueError("--topk must be >= 1")
    from dynofa_ros.supernet.checkpoint import load_checkpoint
    from dynofa_ros.supernet.data import read_image

    image = read_image(args.image)  # fail on a bad image before loading the network
    ckpt = load_checkpoint(args.checkpoint)
    cfg = resolve_subnet(args.subnet, ckpt)
    pred = classify(ckpt, cfg, image, args.topk)
    if args.json:
        print(json.dumps(pred.to_dict()))
    else:
        bn = "stored BN statistics" if ckpt.net.has_bn_stats(cfg) else "shared BN statistics"
        print(f"sub-network {pred.subnet_id} (r={pred.resolution}, {bn}):")
        for i, label, score in pred.top:
            print(f"  {score:7.4f}  {i:4d}  {label}")
    sys.stdout.flush()
    return 0
