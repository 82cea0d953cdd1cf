"""``dynofa export-family``: write a family's prepared ONNX files (see :mod:`.prepared`).

Run it where torch is (a workstation, this repository's venv), then ship the folder with the
family: the onnxruntime engine on the robot loads the files without torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dynofa_ros.engine.prepared import export_family, prepared_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dynofa export-family",
        description="Export every member of a family to ONNX (with its BN statistics) into "
        "<family stem>.onnx/ beside the family, for ONNX Runtime without torch on the robot.",
    )
    p.add_argument("family", type=Path, help="family file (.family.json)")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="super-network .safetensors (default: the one the family names, beside it)",
    )
    p.add_argument(
        "-o", "--out", type=Path, default=None, help="folder (default: <family stem>.onnx/)"
    )
    p.add_argument("--quiet", action="store_true", help="print only the folder")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    out = args.out if args.out is not None else prepared_dir(args.family)
    prepared = export_family(args.checkpoint, args.family, out, progress=not args.quiet)
    print(f"{prepared.path} ({len(prepared.members)} members)", file=sys.stdout)
    return 0
