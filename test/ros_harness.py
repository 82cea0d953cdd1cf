"""Test harness for real ROS 2 graphs: isolated domains, node processes, waiting on the graph.

Every test that touches DDS gets its own ``ROS_DOMAIN_ID``, held by an exclusive file lock so
concurrent pytest runs on one machine never share a domain. Node processes are started in their own
process group and always stopped (SIGINT, then SIGTERM, then SIGKILL); their output is kept in
files and shown when a test fails. Waiting is on graph state (publisher / subscriber counts, a
predicate over received messages), never on fixed sleeps.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dynofa_ros.processes import ProcessManager, ros_env

# Fast DDS maps domain d to UDP ports 7400 + 250 * d (+ offsets); ids up to 232 are valid.
DOMAIN_RANGE = range(10, 230)
LOCK_DIR = Path(os.environ.get("DYNOFA_TEST_LOCK_DIR", "/tmp/dynofa_ros_test_domains"))
DEFAULT_TIMEOUT_S = 20.0


@contextlib.contextmanager
def exclusive_domain() -> Iterator[int]:
    """Hold a ROS domain id no other test (in any process) holds until the block ends."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    start = (os.getpid() * 7 + time.monotonic_ns()) % len(DOMAIN_RANGE)
    for i in range(len(DOMAIN_RANGE)):
        domain = DOMAIN_RANGE[(start + i) % len(DOMAIN_RANGE)]
        fh = open(LOCK_DIR / f"{domain}.lock", "w")  # noqa: SIM115 - held for the block
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        try:
            yield domain
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
        return
    raise RuntimeError(f"no free ROS domain id in {DOMAIN_RANGE} (locks in {LOCK_DIR})")


def ros_processes(domain: int, log_dir: Path) -> ProcessManager:
    """A :class:`ProcessManager` whose processes all join ``domain``."""
    return ProcessManager(log_dir, ros_env(domain))


def spin_until(
    node: Any,
    predicate: Callable[[], bool],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    *,
    what: str = "condition",
    processes: ProcessManager | None = None,
) -> None:
    """Spin ``node``'s context until ``predicate()`` holds; fail with node logs on time-out."""
    if not _spin(node, predicate, time.monotonic() + timeout_s, what, processes):
        logs = processes.logs() if processes is not None else ""
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{logs}")


def publish_until(
    node: Any,
    publish: Callable[[], None],
    predicate: Callable[[], bool],
    timeout_s: float = 30.0,
    *,
    resend_s: float = 5.0,
    what: str = "answer",
    processes: ProcessManager | None = None,
) -> None:
    """Publish, then spin until ``predicate()`` holds, publishing again every ``resend_s``.

    Matching is per side: our writer may list a subscriber whose reader has not yet matched our
    writer, and a best-effort reader (a camera subscription) then discards the sample. So the
    first frame after :func:`wait_for_subscribers` can vanish without a trace; a copy arrives."""
    deadline = time.monotonic() + timeout_s
    while True:
        publish()
        if _spin(node, predicate, min(time.monotonic() + resend_s, deadline), what, processes):
            return
        if time.monotonic() >= deadline:
            logs = processes.logs() if processes is not None else ""
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{logs}")


def call_service(
    node: Any,
    client: Any,
    request: Any,
    timeout_s: float = 60.0,
    *,
    resend_s: float = 5.0,
    processes: ProcessManager | None = None,
) -> Any:
    """Call a service whose request may be sent twice (a query, setting a value), asking
    again when no answer comes: rmw may drop a server's first responses until it has matched the
    client's response reader ("failed to send response ... client will not receive response")."""
    spin_until(node, client.service_is_ready, timeout_s, what=client.srv_name,
               processes=processes)  # fmt: skip
    futures: list[Any] = []  # a late answer to an earlier copy counts too
    publish_until(node, lambda: futures.append(client.call_async(request)),
                  lambda: any(f.done() for f in futures), timeout_s, resend_s=resend_s,
                  what=f"an answer from {client.srv_name}", processes=processes)  # fmt: skip
    return next(f for f in futures if f.done()).result()


def _spin(
    node: Any,
    predicate: Callable[[], bool],
    deadline: float,
    what: str,
    processes: ProcessManager | None,
) -> bool:
    """Spin until ``predicate()`` (True) or ``deadline`` (False); fail if a node process died."""
    import rclpy

    executor = rclpy.executors.SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        while not predicate():
            if time.monotonic() > deadline:
                return False
            if processes is not None:
                dead = [p for p in processes.processes if not p.alive()]
                if dead:
                    raise AssertionError(
                        f"{dead[0].name} exited (rc={dead[0].popen.returncode}) while waiting "
                        f"for {what}\n{processes.logs()}"
                    )
            executor.spin_once(timeout_sec=0.05)
        return True
    finally:
        executor.remove_node(node)
        executor.shutdown()


def wait_for_subscribers(node: Any, publisher: Any, count: int = 1, **kw: Any) -> None:
    spin_until(
        node,
        lambda: publisher.get_subscription_count() >= count,
        what=f"{count} subscriber(s) on {publisher.topic_name}",
        **kw,
    )


def wait_for_publishers(node: Any, topic: str, count: int = 1, **kw: Any) -> None:
    spin_until(
        node,
        lambda: node.count_publishers(topic) >= count,
        what=f"{count} publisher(s) on {topic}",
        **kw,
    )
