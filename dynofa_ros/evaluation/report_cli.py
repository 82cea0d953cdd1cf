"""``dynofa report``: a report comparing runs (policies) from their results.

::

    dynofa report RESULTS... -o DIR [--title TEXT]

RESULTS: results files (``*.results.jsonl``, what a replay writes), result bags, or directories
holding results files. DIR receives ``report.md``, ``report.html``, ``comparison.png``,
``timeline_<run>.png``, ``frames_<run>.csv`` and ``metrics.json``; the path of ``report.html``
is printed. No ROS is needed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dynofa report", description=__doc__.split("\n")[0])
    p.add_argument("results", nargs="+", help="results files, result bags or directories")
    p.add_argument("-o", "--output", required=True, help="report directory")
    p.add_argument("--title", help="report title")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from dynofa_ros.evaluation.report import load_runs, write_report

    runs = load_runs(args.results)
    files = write_report(runs, args.output, title=args.title)
    for run in runs:
        print(f"  {run.info.name}: {len(run.frames)} frames -> {files.csvs[run.info.name]}")
    print(f"report: {files.html} (Markdown: {files.markdown})")
    return 0


if __name__ == "__main__":
    from dynofa_ros.cli import main as cli_main

    sys.exit(cli_main(["report", *sys.argv[1:]]))
