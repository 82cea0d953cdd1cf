"""``dynofa import-ofa NAME|FILE [DST]``: once-for-all's OFA-MBv3 weights -> project safetensors.

NAME (``ofa-w1.0`` / ``ofa-w1.2`` or once-for-all's file name) is downloaded from once-for-all's
published files into the user's cache (checksummed, resumable, atomic; see
:mod:`dynofa_ros.supernet.download`); FILE is a local ``.pth``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _resolution_list(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or any(not 16 <= v <= 1024 for v in values):
        raise argparse.ArgumentTypeError(f"resolutions must lie in 16..1024, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    from dynofa_ros.supernet.download import PUBLISHED

    weights = [n for n, p in PUBLISHED.items() if p.preset]
    p = argparse.ArgumentParser(
        prog="dynofa import-ofa",
        description="Import a once-for-all OFAMobileNetV3 checkpoint into the project's "
        f"safetensors format: a published one by name ({', '.join(weights)}: downloaded into "
        "the user's cache, checksummed, resumable) or a local .pth (state_dict, optionally "
        "wrapped in {'state_dict': ...}; loaded with weights_only=True, no code runs). Every "
        "key and shape is checked.",
    )
    p.add_argument("src", help=f"a published name ({', '.join(weights)}) or a local .pth file")
    p.add_argument(
        "dst",
        type=Path,
        nargs="?",
        default=None,
        help="output .safetensors (default: models/<preset>.safetensors)",
    )
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
    p.add_argument(
        "--resolutions",
        type=_resolution_list,
        default=None,
        help="input resolutions the imported network accepts, comma list (default 128..260 step 4)",
    )
    p.add_argument("--sha256", default=None, help="expected SHA-256 of the downloaded file")
    p.add_argument("--url", default=None, help="download from this URL instead of the published")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from dynofa_ros.supernet.checkpoint import (
        CheckpointError,
        save_checkpoint,
        torch_load_state_dict,
    )
    from dynofa_ros.supernet.download import fetch_published, forget, sha256_of
    from dynofa_ros.supernet.ofa_import import IMPORT_RESOLUTIONS, import_ofa_state_dict

    local = Path(args.src)
    name = f"ofa-w{args.width}" if args.width else None
    downloaded = None
    if local.is_file():
        src = local
        source = {"kind": "once-for-all", "file": local.name, "sha256": sha256_of(local)}
    elif local.suffix in (".pth", ".pt") or "/" in args.src:
        raise CheckpointError(f"cannot read {local}: no such file")
    else:
        pub, src = fetch_published(
            args.src, url=args.url, sha256=args.sha256, progress=not args.quiet
        )
        downloaded = src
        name = name or pub.preset
        source = {
            "kind": "once-for-all",
            "file": pub.filename,
            "url": args.url or pub.url,
            "sha256": sha256_of(src),
        }
    try:
        state = torch_load_state_dict(src)
        net = import_ofa_state_dict(
            state, name, str(src), resolutions=args.resolutions or IMPORT_RESOLUTIONS
        )
    except CheckpointError:
        if downloaded is not None:  # a corrupt download must not stay in the cache
            forget(downloaded)
        raise
    labels = None
    if args.labels is not None:
        try:
            labels = [ln.strip() for ln in args.labels.read_text().splitlines() if ln.strip()]
        except OSError as exc:
            raise ValueError(f"cannot read labels file {args.labels}: {exc.strerror}") from exc
    dst = args.dst or Path("models") / f"{net.arch.name}.safetensors"
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(dst, net, labels=labels, extra={"source": source})
    res = net.space.resolutions
    print(
        f"imported {src} ({net.arch.name}, {len(state)} tensors, resolutions {res[0]}..{res[-1]}, "
        f"sha256 {source['sha256'][:12]}...) -> {dst}"
    )
    return 0
