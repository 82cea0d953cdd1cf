"""Child processes in their own process groups, always stopped, output kept in files.

Used by ``dynofa launch`` and the live replay to run a node graph, and by the tests' ROS harness.
A process is stopped the way a terminal would: SIGINT (clean ``rclpy`` shutdown), then SIGTERM,
then SIGKILL, to its whole group. A node whose starter dies without stopping it (SIGKILL) stops by
itself (:data:`PARENT_PID_VARIABLE`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

# The two switches that keep DDS discovery on this machine. Humble (rclpy 3.x) and older read
# only ROS_LOCALHOST_ONLY; Iron added ROS_AUTOMATIC_DISCOVERY_RANGE and deprecated the old one
# (Iron / Jazzy warn at every node start when it is 1 and let it override the range); Kilted's
# rcl no longer reads it at all.
DISCOVERY_VARIABLES = ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY")


def rclpy_major() -> int | None:
    """The major version of the rclpy this Python imports (a distribution's own install or the
    PyPI wheels), from its metadata, without importing it; ``None`` when there is none."""
    import importlib.metadata

    for dist in ("rclpy", "ros-rclpy"):
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        head = version.split(".", 1)[0]
        if head.isdigit():
            return int(head)
    return None


def local_discovery_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables confining discovery to this machine for the ROS 2 here: the rclpy version
    when its metadata is there (3.x = Humble), else ``ROS_DISTRO``, else both variables."""
    env = os.environ if environ is None else environ
    major = rclpy_major()
    distro = env.get("ROS_DISTRO", "").strip().lower()
    if major is not None:
        old = major < 4
    elif distro:
        old = distro in ("humble", "galactic", "foxy")
    else:  # unknown: both, so it is confined whichever distribution reads it
        return {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_LOCALHOST_ONLY": "1"}
    return {"ROS_LOCALHOST_ONLY": "1"} if old else {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def ros_env(domain: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for ROS children on ``domain``: local discovery only (a
    replay or a test must never talk to a robot's graph on the network; see
    :func:`local_discovery_env`), Fast DDS unless chosen otherwise, unbuffered Python output for
    the log files."""
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain),
        RMW_IMPLEMENTATION=env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp"),
        PYTHONUNBUFFERED="1",
    )
    env.update(local_discovery_env(env))
    env.update(extra or {})
    return env


# Set by ProcessManager in the environment of each process it starts: the pid of the process
# that started it. Node processes (``nodes.spin.run_node``) stop when their parent is no longer
# that process: a replay or launcher killed by SIGKILL cannot stop its own process groups, and
# its nodes would otherwise run on, answering frames on the domain, until the machine stops.
PARENT_PID_VARIABLE = "DYNOFA_PARENT_PID"


def interruptible() -> None:
    """``preexec_fn`` of a child stopped with SIGINT first: a parent started in the background
    (``cmd &`` in a script) passes SIGINT on as ignored, and Python then installs no
    KeyboardInterrupt handler; the child takes the default back, so SIGINT stops it cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class NodeProcess:
    """A node (or any program) in its own process group, with its output in a file."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]
    _log: IO[bytes]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def send_signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGINT (clean shutdown), then SIGTERM, then SIGKILL; returns the exit code."""
        steps = ((signal.SIGINT, timeout_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0))
        for sig, wait_s in steps:
            if not self.alive():
                break
            self.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(wait_s)
        # Children of the node (if any) go with its group.
        self.send_signal(signal.SIGKILL)
        self._log.close()
        return self.popen.returncode


@dataclass
class ProcessManager:
    """Starts processes with a common environment and guarantees they are all stopped."""

    log_dir: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    processes: list[NodeProcess] = field(default_factory=list)

    def start(
        self,
        argv: Sequence[str],
        *,
        name: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> NodeProcess:
        name = name or Path(argv[0]).name
        log_path = self.log_dir / f"{len(self.processes):02d}-{name}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed in NodeProcess.stop
        popen = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**self.env, **(env or {}), PARENT_PID_VARIABLE: str(os.getpid())},
            cwd=cwd,
            start_new_session=True,
            preexec_fn=interruptible,  # noqa: PLW1509 - one signal call, before exec
        )
        proc = NodeProcess(name, list(argv), log_path, popen, log)
        self.processes.append(proc)
        return proc

    def start_python(self, module_or_script: str, *args: str, **kw: Any) -> NodeProcess:
        """``python -m module`` (dotted name) or ``python script.py`` with the test interpreter."""
        if module_or_script.endswith(".py"):
            argv = [sys.executable, module_or_script, *args]
        else:
            argv = [sys.executable, "-m", module_or_script, *args]
        kw.setdefault("name", module_or_script.removesuffix(".py").replace("/", ".").split(".")[-1])
        return self.start(argv, **kw)

    def stop_all(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()

    def logs(self) -> str:
        return "\n".join(
            f"----- {p.name} (rc={p.popen.returncode}) -----\n{p.output()}" for p in self.processes
        )
