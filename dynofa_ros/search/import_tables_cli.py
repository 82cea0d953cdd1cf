"""``dynofa import-ofa-tables SRC DST --supernet ofa-w1.2 --board note10``: once-for-all's latency
lookup tables -> the project's tables (same YAML, plus a provenance header naming the board, the
source file and its SHA-256), each checked against the super-network's layers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dynofa_ros.search.profile_cli import _int_list


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dynofa import-ofa-tables",
        description="Check once-for-all's <r>_lookup_table.yaml files against a super-network "
        "and write them with a provenance header (the board they were measured on). Every "
        "table is checked before any is written.",
    )
    p.add_argument("src", type=Path, help="directory of once-for-all's tables")
    p.add_argument("dst", type=Path, help="output directory")
    p.add_argument("--supernet", default="ofa-w1.2", help="ofa-w1.0 or ofa-w1.2 (default)")
    p.add_argument("--board", required=True, help="where they were measured, e.g. note10")
    p.add_argument(
        "--resolutions", type=_int_list, default=None, help="default: every table in SRC"
    )
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from dynofa_ros.search.errors import SearchError
    from dynofa_ros.search.table_dir import import_tables
    from dynofa_ros.supernet.network import Architecture, ElasticMobileNetV3, preset

    try:
        arch = preset(args.supernet)
    except ValueError as exc:
        raise SearchError(f"--supernet: {exc}") from None
    if not isinstance(arch, Architecture):
        raise SearchError(
            f"--supernet {args.supernet}: once-for-all's tables are of MobileNetV3 super-networks"
        )
    net = ElasticMobileNetV3(arch)
    written = import_tables(args.src, args.dst, net, args.board, args.resolutions)
    res = ",".join(p.name.split("_", 1)[0] for p in written)
    print(
        f"imported {len(written)} latency tables of {args.board} for {args.supernet} "
        f"(resolutions {res}) -> {args.dst}"
    )
    return 0
