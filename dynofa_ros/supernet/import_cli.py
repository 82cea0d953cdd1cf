"""``dynofa import-ofa SRC DST``: once-for-all OFA-MBv3 state dict (.pth) → project safetensors."""

from __future__ import annotations

import argparse
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dynofa import-ofa",
        description="Import a once-for-all OFAMobileNetV3 checkpoint (state_dict .pth, optionally "
        "wrapped in {'state_dict': ...}; loaded with weights_only=True, no code runs) into the "
        "project's safetensors format. Every key and shape is checked.",
    )
    p.add_argument("src", type=Path, help="OFA-MBv3 .pth (w1.0 or w1.2)")
    p.add_argument("dst", type=Path, help="output .safetensors")
    p.add_argument(
        "--width",
        choices=("1.0", "1.2"),
        default=None,
        help="width multiplier (default: detected from the tensor shapes)",
    )
    p.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="text file with one class name per line (default: class_0..class_999)",
    )
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from dynofa_ros.supernet.checkpoint import save_checkpoint, torch_load_state_dict
    from dynofa_ros.supernet.ofa_import import import_ofa_state_dict

    state = torch_load_state_dict(args.src)
    name = f"ofa-w{args.width}" if args.width else None
    net = import_ofa_state_dict(state, name, str(args.src))
    labels = None
    if args.labels is not None:
        try:
            labels = [ln.strip() for ln in args.labels.read_text().splitlines() if ln.strip()]
        except OSError as exc:
            raise ValueError(f"cannot read labels file {args.labels}: {exc.strerror}") from exc
    save_checkpoint(
        args.dst,
        net,
        labels=labels,
        extra={"source": {"kind": "once-for-all", "file": args.src.name}},
    )
    print(f"imported {args.src} ({net.arch.name}, {len(state)} tensors) -> {args.dst}")
    return 0
