"""``dynofa import-ofa-predictor SRC DST``: once-for-all's accuracy predictor (``.pth``, read once
with ``weights_only=True``) -> the project's safetensors predictor, so searches never unpickle it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dynofa_ros.search.profile_cli import _int_list


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dynofa import-ofa-predictor",
        description="Convert once-for-all's accuracy predictor (the tutorial's acc_predictor.pth "
        "or an ofa.nas AccuracyPredictor state dict) into a dynofa predictor file "
        "(safetensors, encoder in the metadata). SRC 'acc-predictor' downloads the published "
        "one into the user's cache.",
    )
    p.add_argument("src", help="once-for-all predictor .pth, or 'acc-predictor' (download)")
    p.add_argument("dst", type=Path, help="output .safetensors")
    p.add_argument(
        "--resolutions",
        type=_int_list,
        default=None,
        help="ofa.nas layout only: the image_size_list it was trained with (default 128..224 "
        "step 4); the tutorial's file encodes 112..239 in 16 px bins",
    )
    p.add_argument("--sha256", default=None, help="expected SHA-256 of a downloaded file")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from dynofa_ros.search.predictor import ArchEncoder, load_ofa_predictor, save_predictor
    from dynofa_ros.supernet.download import fetch_published, sha256_of

    src = Path(args.src)
    if not src.is_file() and args.src == "acc-predictor":
        _, src = fetch_published(args.src, sha256=args.sha256, progress=not args.quiet)
    predictor = load_ofa_predictor(src, resolutions=args.resolutions)
    enc = predictor.encoder
    assert isinstance(enc, ArchEncoder)  # once-for-all's files are read with its encodings
    save_predictor(
        args.dst,
        predictor,
        {
            "source": f"once-for-all predictor {src.name}",
            "source_file": {"file": str(src.resolve()), "sha256": sha256_of(src)},
            "report": None,
            "note": "once-for-all's ImageNet predictor: outputs are predicted top-1 fractions",
        },
    )
    sizes = enc.image_size_list
    print(
        f"imported predictor {src} (layout {enc.layout}, {enc.n_dim} inputs, resolutions "
        f"{sizes[0]}..{sizes[-1]}"
        + (f" in {sizes[1] - sizes[0]} px bins" if enc.layout == "ofa-tutorial" else "")
        + f") -> {args.dst}"
    )
    return 0
