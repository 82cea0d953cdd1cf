"""``dynofa launch FILE [name:=value ...]``: run a ``*.launch.xml`` graph without ``ros2 launch``.

Reads the file with :mod:`dynofa_ros.launch_graph` (the same reader the tests check the launch
files with), starts every node as ``python -m dynofa_ros.nodes.<exec> --ros-args ...`` in its own
process group with the file's ``set_env`` environment, streams their logs, and on Ctrl-C (or when
any node exits) stops them all (SIGINT, then SIGTERM, then SIGKILL). ``--check`` only prints the
graph. FILE may be a path or a file name in the package's ``launch/`` folder.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
import time
from pathlib import Path

from dynofa_ros.launch_graph import LaunchError, LaunchGraph, read_launch
from dynofa_ros.processes import ProcessManager
from dynofa_ros.resources import share_dir


def resolve(name: str) -> Path:
    p = Path(name)
    if p.is_file():
        return p
    candidate = share_dir() / "launch" / name
    if candidate.is_file():
        return candidate
    raise LaunchError(f"no launch file {name!r} (not a path, not in {candidate.parent})")


def parse_arguments(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise LaunchError(f"launch argument {item!r} must be written name:=value")
        out[name] = value
    return out


def describe(graph: LaunchGraph) -> str:
    lines = [f"{graph.path}:"]
    lines += [f"  arg {k} = {v!r}" for k, v in graph.arguments.items()]
    lines += [f"  env {k} = {v}" for k, v in graph.env.items()]
    for n in graph.nodes:
        lines.append(f"  node {n.fully_qualified_name} ({n.executable})")
        lines.append("    " + " ".join(n.ros_args()))
    return "\n".join(lines)


def start(graph: LaunchGraph, processes: ProcessManager) -> None:
    for n in graph.nodes:
        processes.start(n.command(), name=n.fully_qualified_name.strip("/").replace("/", "."),
                        env=graph.env)  # fmt: skip


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="dynofa launch", description=__doc__.split("\n\n")[0])
    ap.add_argument("file", help="launch file (path, or name in the package's launch/ folder)")
    ap.add_argument("arguments", nargs="*", help="launch arguments, name:=value")
    ap.add_argument("--check", action="store_true", help="print the graph, start nothing")
    args = ap.parse_args(argv)
    graph = read_launch(resolve(args.file), parse_arguments(args.arguments))
    print(describe(graph), flush=True)
    if args.check:
        return 0
    log_dir = Path(tempfile.mkdtemp(prefix="dynofa-launch-"))
    processes = ProcessManager(log_dir)
    stop = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    offsets: dict[str, int] = {}
    try:
        start(graph, processes)
        print(f"started {len(processes.processes)} node(s); logs in {log_dir}", flush=True)
        while not stop and all(p.alive() for p in processes.processes):
            for p in processes.processes:
                text = p.output()
                new = text[offsets.get(p.name, 0) :]
                offsets[p.name] = len(text)
                for line in new.splitlines():
                    print(f"[{p.name}] {line}", flush=True)
            time.sleep(0.2)
    finally:
        with contextlib.suppress(Exception):
            processes.stop_all()
    dead = [p for p in processes.processes if p.popen.returncode not in (0, -2, None)]
    for p in dead:
        print(f"{p.name} exited with {p.popen.returncode}; log: {p.log_path}", file=sys.stderr)
    return 1 if dead and not stop else 0
