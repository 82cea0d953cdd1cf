"""``dynofa``: one command, one sub-command per concern, each living in its own layer.

Sub-command modules are imported only when used, so ``dynofa platform info`` does not pay for
torch. Each module exposes ``main(argv: list[str]) -> int``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import dynofa_ros
from dynofa_ros.errors import DynofaError

# name -> (module, one-line help). A name whose module is not present is not offered.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("dynofa_ros.supernet.train_cli", "train a super-network with the sandwich rule"),
    "infer": ("dynofa_ros.supernet.infer_cli", "classify one image with one sub-network"),
    "import-ofa": ("dynofa_ros.supernet.import_cli", "import a once-for-all OFA-MBv3 checkpoint"),
    "import-ofa-predictor": (
        "dynofa_ros.search.import_predictor_cli",
        "convert once-for-all's accuracy predictor to safetensors",
    ),
    "import-ofa-tables": (
        "dynofa_ros.search.import_tables_cli",
        "check once-for-all's latency tables, record their board",
    ),
    "profile": ("dynofa_ros.search.profile_cli", "measure latency tables on this machine"),
    "search": ("dynofa_ros.search.search_cli", "evolutionary search -> family file"),
    "export-family": (
        "dynofa_ros.engine.export_cli",
        "prepared ONNX files of a family (runs on a robot without torch)",
    ),
    "platform": ("dynofa_ros.platform.cli", "what the platform back-end sees and can set"),
    "simulate": (
        "dynofa_ros.evaluation.simulate_cli",
        "run policies on a scenario in-process (simulated NX)",
    ),
    "launch": ("dynofa_ros.launch_cli", "run a launch file's node graph here (no ros2 launch)"),
    "bench": ("dynofa_ros.bench", "benchmarks (supernet, engine, manager, nodes)"),
    "replay": ("dynofa_ros.replay_cli", "replay a scenario bag through the nodes"),
    "scenario": ("dynofa_ros.evaluation.scenario_cli", "generate a scenario bag from YAML"),
    "report": ("dynofa_ros.evaluation.report_cli", "write a report from replay results"),
    "record-video": (
        "dynofa_ros.evaluation.video_bag",
        "record a video file as a camera driver's bag (to try replay on real footage)",
    ),
    "realtime": ("dynofa_ros.evaluation.realtime_cli", "real engine, real co-runner load, here"),
    "chaos": ("dynofa_ros.chaos", "restarts, clock jumps and hostile input against a live graph"),
}


def _present(module: str) -> bool:
    """Whether the module's file exists, without importing its (possibly heavy) parents."""
    relative = Path(*module.split(".")[1:])
    return any(
        (Path(root) / relative).with_suffix(".py").is_file()
        or (Path(root) / relative / "__init__.py").is_file()
        for root in dynofa_ros.__path__
    )


def available() -> dict[str, tuple[str, str]]:
    return {name: entry for name, entry in COMMANDS.items() if _present(entry[0])}


def _usage() -> str:
    lines = ["usage: dynofa COMMAND [ARGS...]", "", "commands:"]
    for name, (_, help_text) in available().items():
        lines.append(f"  {name:<12} {help_text}")
    lines.append("")
    lines.append("`dynofa COMMAND --help` describes each command.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    commands = available()
    if name not in commands:
        print(f"dynofa: unknown command {name!r}; one of: {', '.join(commands)}", file=sys.stderr)
        return 2
    module = importlib.import_module(commands[name][0])
    try:
        return int(module.main(rest) or 0)
    except (DynofaError, ValueError, OSError) as exc:
        one_line = " ".join(str(exc).split())  # errors are one line, whatever raised them
        print(f"dynofa {name}: error: {one_line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dynofa {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
