"""How every node process runs, stops and says why it stopped (one ``main()`` for all nodes)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from dynofa_ros.errors import DynofaError
from dynofa_ros.processes import PARENT_PID_VARIABLE

N = TypeVar("N", bound=Node)


def run_node(
    make: Callable[[], N],
    name: str,
    args: list[str] | None = None,
    *,
    interrupted_at_start: Callable[[N, bool], bool] | None = None,
) -> int:
    """Build the node and spin it until Ctrl-C, SIGTERM or shutdown.

    Single-threaded on purpose: rclpy 9.1.2's MultiThreadedExecutor busy-loops holding the GIL
    (ros2/rclpy#1452), which starved the camera, /clock and service-response callbacks (75 % of
    a replay's frames lost); a node that needs a thread owns one. Exit status: 0 after a run,
    2 when the start-up parameters are refused (one line naming them), 130 (the shell's Ctrl-C)
    when the node never ran: stopped while being built, or ``interrupted_at_start(node,
    ctrl_c)`` says its start-up was cut short."""
    # rclpy hands a Ctrl-C to Python's handler after it has shut the context down, from its
    # own thread: the KeyboardInterrupt could come after this function had already caught the
    # shutdown, during the clean-up or after the exit message, and the process then died by the
    # signal (rc -2, seen under load). Once stopping, a Ctrl-C is no longer an exception.
    stopping = [False]  # set without a call: no bytecode where the interrupt could land first

    def on_sigint(_signum: int, _frame: Any) -> None:
        if stopping[0]:
            return
        if _deferral.depth:
            _deferral.pending = True
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    _stop_when_orphaned()
    rclpy.init(args=args)
    node: N | None = None
    executor = SingleThreadedExecutor()
    ctrl_c = False
    try:
        node = make()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        stopping[0] = True
        ctrl_c = True
    except (ValueError, DynofaError) as exc:  # invalid parameters / files at start-up
        stopping[0] = True
        print(f"{name}: {exc}", flush=True)
        return 2
    finally:
        stopping[0] = True
        ctrl_c = ctrl_c or not rclpy.ok()
        if node is not None:
            node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
    if node is None or (interrupted_at_start is not None and interrupted_at_start(node, ctrl_c)):
        print(f"{name}: interrupted during start-up", flush=True)
        return 130
    return 0


class _Deferral:
    depth = 0  # open interrupts_deferred blocks (the main thread's: signal handlers run there)
    pending = False  # a Ctrl-C came during them


_deferral = _Deferral()


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """A Ctrl-C inside the block raises ``KeyboardInterrupt`` at its end, not where the main
    thread happens to be: raised inside Python code that C++ called (torch's import, the ONNX
    export's symbolic functions), it cannot unwind through the C++ frames and the process
    aborts (pybind11 ``terminate``, seen in a node's start-up). rclpy has shut the context
    down by the time the handler runs, so code inside can poll ``context.ok()`` to stop early.
    Outside ``run_node`` (no handler of ours) the block changes nothing."""
    _deferral.depth += 1
    try:
        yield
    finally:
        _deferral.depth -= 1
        if not _deferral.depth and _deferral.pending:
            _deferral.pending = False
            raise KeyboardInterrupt


def _stop_when_orphaned(poll_s: float = 0.5) -> None:
    """Started by a ``ProcessManager`` (a replay, ``dynofa launch``, a test): Ctrl-C ourselves
    once that process is gone (we were re-parented), the clean stop it could not send."""
    expected = os.environ.get(PARENT_PID_VARIABLE, "")
    if not expected.isdigit():
        return  # started by ros2 launch or a shell: their own rules apply
    parent = int(expected)
    if os.getppid() != parent:
        return  # a process the starter's child started (the variable was inherited)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
