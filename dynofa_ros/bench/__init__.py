"""``dynofa bench NAME``: benchmark scripts that print figures (ratios within one run).

Each benchmark is ``dynofa_ros/bench/<name>.py`` with ``main(argv) -> int``; they are scripts,
not tests, and assert nothing about wall-clock time.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys


def names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: dynofa bench NAME [ARGS...]\n\nbenchmarks: " + ", ".join(names()))
        return 0 if argv else 2
    if argv[0] not in names():
        print(
            f"dynofa bench: unknown benchmark {argv[0]!r}; one of: {', '.join(names())}",
            file=sys.stderr,
        )
        return 2
    return int(importlib.import_module(f"{__name__}.{argv[0]}").main(argv[1:]) or 0)
