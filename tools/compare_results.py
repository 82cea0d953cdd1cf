"""Compare two trees of ``*.results.jsonl`` record by record (frames and commands).

A refactoring must not change a decision: run every bundled scenario under every policy before
and after (``dynofa simulate NAME --compare -o DIR/NAME``) and compare the two trees::

    python tools/compare_results.py results/before results/after

Exit status 1 when any file is missing or differs; the first difference of each is printed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

KINDS = ("frame", "command")


def records(path: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    with path.open() as f:
        for line in f:
            d = json.loads(line)
            if d.get("record") in out:
                out[d["record"]].append(d)
    return out


def compare(before: Path, after: Path) -> int:
    files = bad = 0
    for fa in sorted(before.rglob("*.results.jsonl")):
        rel = fa.relative_to(before)
        fb = after / rel
        files += 1
        if not fb.exists():
            print(f"missing: {fb}")
            bad += 1
            continue
        ra, rb = records(fa), records(fb)
        for kind in KINDS:
            a, b = ra[kind], rb[kind]
            if a == b:
                continue
            bad += 1
            first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
            print(f"differs: {rel} {kind}s: {len(a)} before, {len(b)} after, first at {first}")
            if first is not None:
                x, y = a[first], b[first]
                print(
                    "   ",
                    {
                        k: (x.get(k), y.get(k))
                        for k in sorted(set(x) | set(y))
                        if x.get(k) != y.get(k)
                    },
                )
    print(f"{files} results files compared, {bad} difference(s)")
    return 1 if bad or not files else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} BEFORE_DIR AFTER_DIR")
    sys.exit(compare(Path(sys.argv[1]), Path(sys.argv[2])))
