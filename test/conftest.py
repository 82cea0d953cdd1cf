"""Shared fixtures. ROS fixtures come from ros_harness (isolated domain, processes, waiting)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ros_harness import ProcessManager, exclusive_domain, ros_processes

from dynofa_ros.processes import local_discovery_env


@pytest.fixture
def ros_domain(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A ROS domain id this test alone uses; also exported to the test's own environment."""
    with exclusive_domain() as domain:
        monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
        for key, value in local_discovery_env().items():  # the variables this ROS reads
            monkeypatch.setenv(key, value)
        yield domain


@pytest.fixture
def ros_context(ros_domain: int) -> Iterator[Any]:
    """An initialised rclpy context on the test's domain, shut down afterwards."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, domain_id=ros_domain)
    try:
        yield context
    finally:
        context.try_shutdown()


@pytest.fixture
def ros_node(ros_context: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A node in the test process for publishing / subscribing to the graph under test."""
    import rclpy

    name = "test_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
    node = rclpy.create_node(name, context=ros_context)
    try:
        yield node
    finally:
        node.destroy_node()


@pytest.fixture
def processes(
    ros_domain: int, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ProcessManager]:
    """Start node processes in the test's domain; all are stopped (and their logs shown on
    failure) when the test ends."""
    manager = ros_processes(ros_domain, tmp_path_factory.mktemp("node-logs"))
    try:
        yield manager
    finally:
        manager.stop_all()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(manager.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
