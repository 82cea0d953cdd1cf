"""Read the package's ``*.launch.xml`` files without ``ros2 launch``, to check and to run them.

``ros2 launch`` is what robots use; it is not installable from the package registries this
project's CI uses. This module reads the declarative subset our launch files are written in
(``arg``, ``let``, ``set_env``, ``group``, ``node`` with ``param`` / ``remap`` children, ``if`` /
``unless``; substitutions ``$(var)``, ``$(env)``, ``$(find-pkg-share)``), refuses anything else,
and turns each node into the command line ``ros2 run`` would execute
(``python -m dynofa_ros.nodes.<exec> --ros-args ...``). The tests check every launch file with
it, and ``dynofa launch FILE name:=value ...`` (and the live replay) start the same graph here.
"""

from __future__ import annotations

import os
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dynofa_ros.errors import DynofaError
from dynofa_ros.resources import PACKAGE, share_dir

SUBSTITUTION = re.compile(r"\$\(([a-z-]+)((?:\s+[^()\s]+)*)\s*\)")
NODE_ATTRS = {"pkg", "exec", "name", "namespace", "output", "if", "unless", "args"}
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


class LaunchError(DynofaError):
    """A launch file uses something this reader does not know or names something missing."""


@dataclass
class NodeSpec:
    package: str
    executable: str
    name: str
    namespace: str = "/"
    params_files: list[Path] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)  # name -> YAML text of the value
    remaps: list[tuple[str, str]] = field(default_factory=list)

    @property
    def fully_qualified_name(self) -> str:
        ns = self.namespace.rstrip("/")
        return f"{ns}/{self.name}" if ns else f"/{self.name}"

    def ros_args(self) -> list[str]:
        out = ["--ros-args", "-r", f"__node:={self.name}", "-r", f"__ns:={self.namespace}"]
        for f in self.params_files:
            out += ["--params-file", str(f)]
        for k, v in self.params.items():
            out += ["-p", f"{k}:={v}"]
        for a, b in self.remaps:
            out += ["-r", f"{a}:={b}"]
        return out

    def command(self, python: str = sys.executable) -> list[str]:
        return [python, "-m", f"dynofa_ros.nodes.{self.executable}", *self.ros_args()]


@dataclass
class LaunchGraph:
    path: Path
    arguments: dict[str, str]
    descriptions: dict[str, str]
    env: dict[str, str]
    nodes: list[NodeSpec]


def executables() -> tuple[str, ...]:
    """Node executables this package installs (``ros2 run dynofa_ros <exec>``)."""
    nodes = Path(__file__).resolve().parent / "nodes"
    return tuple(sorted(p.stem for p in nodes.glob("*_node.py")))


def read_launch(
    path: str | os.PathLike[str],
    arguments: Mapping[str, str] | None = None,
    *,
    find_share: Callable[[str], Path] | None = None,
) -> LaunchGraph:
    """Parse ``path`` with launch arguments ``arguments`` (``name -> value``)."""
    p = Path(path)
    try:
        root = ET.parse(p).getroot()
    except (OSError, ET.ParseError) as exc:
        raise LaunchError(f"{p}: cannot parse: {exc}") from exc
    if root.tag != "launch":
        raise LaunchError(f"{p}: root element is <{root.tag}>, expected <launch>")
    given = dict(arguments or {})
    reader = _Reader(p, given, find_share or _find_share)
    reader.block(root, "/")
    unknown = sorted(set(given) - set(reader.declared))
    if unknown:
        raise LaunchError(
            f"{p.name}: unknown launch argument(s) {', '.join(unknown)} "
            f"(declared: {', '.join(sorted(reader.declared))})"
        )
    return LaunchGraph(p, reader.values, reader.declared, reader.env, reader.nodes)


def _find_share(package: str) -> Path:
    if package != PACKAGE:
        raise LaunchError(f"$(find-pkg-share {package}): only {PACKAGE} can be resolved here")
    return share_dir()


class _Reader:
    def __init__(self, path: Path, given: dict[str, str], find: Callable[[str], Path]) -> None:
        self.path, self.given, self.find = path, given, find
        self.values: dict[str, str] = {}
        self.declared: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.nodes: list[NodeSpec] = []

    def fail(self, el: ET.Element, why: str) -> LaunchError:
        return LaunchError(f"{self.path.name}: <{el.tag}>: {why}")

    def sub(self, text: str, el: ET.Element) -> str:
        def one(m: re.Match[str]) -> str:
            kind, rest = m.group(1), m.group(2).split()
            if kind == "var" and len(rest) == 1:
                if rest[0] not in self.values:
                    raise self.fail(el, f"$(var {rest[0]}) is not a declared argument")
                return self.values[rest[0]]
            if kind == "env" and 1 <= len(rest) <= 2:
                value = self.env.get(rest[0], os.environ.get(rest[0]))
                if value is None and len(rest) == 1:
                    raise self.fail(el, f"$(env {rest[0]}) is not set")
                return value if value is not None else rest[1]
            if kind == "find-pkg-share" and len(rest) == 1:
                return str(self.find(rest[0]))
            raise self.fail(el, f"unsupported substitution $({kind} {' '.join(rest)})")

        out = SUBSTITUTION.sub(one, text)
        if "$(" in out:
            raise self.fail(el, f"unsupported substitution in {text!r}")
        return out

    def condition(self, el: ET.Element) -> bool:
        for attr, want in (("if", True), ("unless", False)):
            if attr in el.attrib:
                value = self.sub(el.attrib[attr], el).strip().lower()
                if value not in TRUE + FALSE:
                    raise self.fail(el, f"{attr}={value!r} is not true / false")
                if (value in TRUE) != want:
                    return False
        return True

    def block(self, parent: ET.Element, namespace: str) -> None:
        for el in parent:
            if not isinstance(el.tag, str):
                continue  # comments
            if el.tag == "arg":
                self.arg(el)
            elif not self.condition(el):
                continue
            elif el.tag == "let":
                self.values[el.attrib["name"]] = self.sub(el.attrib["value"], el)
            elif el.tag == "set_env":
                self.env[el.attrib["name"]] = self.sub(el.attrib["value"], el)
            elif el.tag == "group":
                ns = namespace
                for child in el:
                    if child.tag == "push-ros-namespace":
                        ns = _join(ns, self.sub(child.attrib["namespace"], child))
                self.block(el, ns)
            elif el.tag == "push-ros-namespace":
                continue  # handled by its group
            elif el.tag == "node":
                self.node(el, namespace)
            else:
                raise self.fail(el, "not supported by this reader (keep launch files declarative)")

    def arg(self, el: ET.Element) -> None:
        name = el.attrib.get("name")
        if not name:
            raise self.fail(el, "missing name")
        self.declared[name] = el.attrib.get("description", "")
        if name in self.given:
            self.values[name] = self.given[name]
        elif "default" in el.attrib:
            self.values[name] = self.sub(el.attrib["default"], el)
        else:
            raise self.fail(el, f"argument {name!r} has no default and was not given")

    def node(self, el: ET.Element, namespace: str) -> None:
        extra = set(el.attrib) - NODE_ATTRS
        if extra:
            raise self.fail(el, f"unsupported attribute(s) {', '.join(sorted(extra))}")
        pkg = self.sub(el.attrib.get("pkg", ""), el)
        exe = self.sub(el.attrib.get("exec", ""), el)
        if pkg != PACKAGE:
            raise self.fail(el, f"pkg {pkg!r}: only {PACKAGE} nodes can be run here")
        if exe not in executables():
            raise self.fail(el, f"exec {exe!r} is not one of {', '.join(executables())}")
        ns = _join(namespace, self.sub(el.attrib.get("namespace", ""), el))
        spec = NodeSpec(pkg, exe, self.sub(el.attrib.get("name", exe), el), ns)
        for child in el:
            if not isinstance(child.tag, str) or not self.condition(child):
                continue
            if child.tag == "param" and "from" in child.attrib:
                f = Path(self.sub(child.attrib["from"], child))
                if not f.is_file():
                    raise self.fail(child, f"parameter file {f} does not exist")
                spec.params_files.append(f)
            elif child.tag == "param":
                spec.params[child.attrib["name"]] = self.sub(child.attrib["value"], child)
            elif child.tag == "remap":
                spec.remaps.append(
                    (self.sub(child.attrib["from"], child), self.sub(child.attrib["to"], child))
                )
            else:
                raise self.fail(child, "not supported inside <node>")
        self.nodes.append(spec)


def _join(namespace: str, child: str) -> str:
    if not child:
        return namespace
    if child.startswith("/"):
        return child
    return namespace.rstrip("/") + "/" + child
