"""The launch files, checked as far as honestly possible without ``ros2 launch``: they parse with
the project's reader, every executable / parameter file / argument they name exists, and every
parameter they give a node is one the node declares, with a value it accepts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dynofa_ros.launch_graph import LaunchError, NodeSpec, executables, read_launch
from dynofa_ros.nodes import manager_node, perception_node, sim_platform_node
from dynofa_ros.nodes.parameters import Param

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.xml"))
ROS_BUILTIN = {"use_sim_time"}


def _specs(node: NodeSpec, values: dict[str, Any]) -> dict[str, Param]:
    if node.executable == "perception_node":
        params = perception_node.PARAMS
    elif node.executable == "sim_platform_node":
        params = sim_platform_node.PARAMS
    elif node.executable == "manager_node":
        models = values.get("models", ["model"])
        params = manager_node.node_params() + tuple(
            p for m in models for p in manager_node.model_params(m)
        )
    else:
        raise AssertionError(f"no parameter table known for {node.executable}")
    return {p.name: p for p in params}


def _flatten(prefix: str, tree: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(key + ".", v))
        else:
            out[key] = v
    return out


def _key_matches(key: str, fqn: str) -> bool:
    """rcl's matching of a parameter file's node key (``/**`` and ``*`` wildcards)."""
    key = key if key.startswith("/") else "/" + key
    if key == fqn:
        return True
    parts = [re.escape(x).replace(r"\*", "[^/]*") for x in key.split("/**")]
    return re.fullmatch("(/[^/]+)*".join(parts), fqn) is not None


def node_values(node: NodeSpec) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in node.params_files:
        doc = yaml.safe_load(f.read_text())
        for key, body in doc.items():
            if _key_matches(key, node.fully_qualified_name):
                values.update(_flatten("", body["ros__parameters"]))
    for k, text in node.params.items():
        values[k] = yaml.safe_load(text)
    return values


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_names_only_things_that_exist_and_are_accepted(path: Path) -> None:
    graph = read_launch(path)
    assert graph.nodes, f"{path.name} starts no node"
    assert set(n.executable for n in graph.nodes) <= set(executables())
    assert Path(graph.env["FASTDDS_DEFAULT_PROFILES_FILE"]).is_file()
    for node in graph.nodes:
        values = node_values(node)
        specs = _specs(node, values)
        assert values, f"{node.fully_qualified_name} gets no parameters from {path.name}"
        for name, raw in values.items():
            if name in ROS_BUILTIN:
                continue
            value = raw
            assert name in specs, (
                f"{path.name}: {node.fully_qualified_name} has no parameter {name}"
            )
            spec = specs[name]
            if spec.kind is float and isinstance(value, int):
                value = float(value)
            if spec.kind is list and isinstance(value, str):
                value = [value]
            assert spec.check(value) is None, (
                path.name,
                node.fully_qualified_name,
                spec.check(value),
            )


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_argument_is_documented_and_overridable(path: Path, tmp_path: Path) -> None:
    graph = read_launch(path)
    for name, description in graph.descriptions.items():
        assert description, f"{path.name}: argument {name} has no description"
    overrides = {"use_sim_time": "true", "simulate_platform": "false", "policy": "step"}
    graph2 = read_launch(path, {k: v for k, v in overrides.items() if k in graph.arguments})
    assert all(n.executable != "sim_platform_node" for n in graph2.nodes)
    assert all(n.params.get("use_sim_time") == "true" for n in graph2.nodes)


def test_reader_refuses_what_it_cannot_check(tmp_path: Path) -> None:
    path = LAUNCH_FILES[0]
    with pytest.raises(LaunchError, match=r"unknown launch argument.*nope"):
        read_launch(path, {"nope": "1"})
    bad = tmp_path / "bad.launch.xml"
    bad.write_text('<launch><include file="x.launch.py"/></launch>')
    with pytest.raises(LaunchError, match="<include>: not supported"):
        read_launch(bad)
    bad.write_text('<launch><node pkg="dynofa_ros" exec="nonexistent_node"/></launch>')
    with pytest.raises(LaunchError, match="exec 'nonexistent_node' is not one of"):
        read_launch(bad)
    bad.write_text('<launch><node pkg="dynofa_ros" exec="manager_node">'
                   '<param from="/nonexistent.yaml"/></node></launch>')  # fmt: skip
    with pytest.raises(LaunchError, match=r"parameter file /nonexistent\.yaml does not exist"):
        read_launch(bad)
    bad.write_text('<launch><node pkg="dynofa_ros" exec="manager_node" name="$(eval 1)"/></launch>')
    with pytest.raises(LaunchError, match="unsupported substitution"):
        read_launch(bad)
    bad.write_text("<launch><node")
    with pytest.raises(LaunchError, match="cannot parse"):
        read_launch(bad)


def test_parameter_file_wildcards_follow_rcl() -> None:
    assert _key_matches("/**/perception", "/front/perception")
    assert _key_matches("/**/perception", "/perception")
    assert _key_matches("manager", "/manager")
    assert not _key_matches("manager", "/front/manager")
    assert _key_matches("/*/perception", "/front/perception")
    assert not _key_matches("/*/perception", "/a/b/perception")
