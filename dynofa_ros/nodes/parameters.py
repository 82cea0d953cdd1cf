"""Declarative ROS parameters: one table per node gives type, default, range, unit and meaning.

The table is declared with full descriptors (so ``ros2 param describe`` shows ranges and units,
and rclpy enforces numeric ranges and types), validated again on every live change (choices, and a
node-specific hook that may reject with a reason), and rendered as the README's parameter tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

Value = bool | int | float | str | list[str]

_TYPES: dict[type, int] = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    list: ParameterType.PARAMETER_STRING_ARRAY,
}


@dataclass(frozen=True)
class Param:
    name: str
    default: Value
    description: str
    unit: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    live: bool = True  # may change while the node runs (else: read-only after start)

    @property
    def kind(self) -> type:
        return type(self.default)

    def descriptor(self) -> ParameterDescriptor:
        text = self.description + (f" [{self.unit}]" if self.unit else "")
        d = ParameterDescriptor(
            name=self.name,
            type=_TYPES[self.kind],
            description=text,
            read_only=not self.live,
        )
        if self.choices:
            d.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.kind is int and (self.min is not None or self.max is not None):
            d.integer_range = [
                IntegerRange(
                    from_value=int(self.min if self.min is not None else -(2**63)),
                    to_value=int(self.max if self.max is not None else 2**63 - 1),
                    step=1,
                )
            ]
        elif self.kind is float and (self.min is not None or self.max is not None):
            d.floating_point_range = [
                FloatingPointRange(
                    from_value=float(self.min if self.min is not None else -math.inf),
                    to_value=float(self.max if self.max is not None else math.inf),
                    step=0.0,
                )
            ]
        return d

    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.min is not None or self.max is not None:
            lo = "-inf" if self.min is None else f"{self.min:g}"
            hi = "inf" if self.max is None else f"{self.max:g}"
            return f"[{lo}, {hi}]" + (f" {self.unit}" if self.unit else "")
        return self.kind.__name__

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable, or ``None`` when it is."""
        kind = self.kind
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is list:
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                return f"{self.name} must be a list of strings, got {value!r}"
        elif not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            return f"{self.name} must be {kind.__name__}, got {type(value).__name__} {value!r}"
        if self.choices and value not in self.choices:
            return f"{self.name} = {value!r} is not allowed; {self.allowed()}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                return f"{self.name} = {value!r} must be finite; allowed {self.allowed()}"
            if (self.min is not None and value < self.min) or (
                self.max is not None and value > self.max
            ):
                return f"{self.name} = {value!r} is outside {self.allowed()}"
        return None


Validator = Callable[[Mapping[str, Any]], str | None]


class ParameterTable:
    """Declares a node's parameters and keeps a validated snapshot of their values."""

    def __init__(self, node: Node, params: Sequence[Param], validate: Validator | None = None):
        self._node = node
        self._specs = {p.name: p for p in params}
        self._validate = validate
        self._listeners: list[Callable[[Mapping[str, Any]], None]] = []
        try:
            node.declare_parameters("", [(p.name, p.default, p.descriptor()) for p in params])
        except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
            # rclpy's own range / type check of a start-up override; it names the parameter
            raise ValueError(f"invalid parameters: {exc}") from exc
        values = {p.name: node.get_parameter(p.name).value for p in params}
        problems = [r for p in params if (r := p.check(_plain(values[p.name], p))) is not None]
        if not problems and validate is not None and (r := validate(values)) is not None:
            problems.append(r)
        if problems:
            raise ValueError("invalid parameters: " + "; ".join(problems))
        self.values: dict[str, Any] = {k: _plain(v, self._specs[k]) for k, v in values.items()}
        node.add_on_set_parameters_callback(self._on_set)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def on_change(self, listener: Callable[[Mapping[str, Any]], None]) -> None:
        """Call ``listener(changed)`` after an accepted live change."""
        self._listeners.append(listener)

    def _on_set(self, params: list[Parameter]) -> SetParametersResult:
        changed: dict[str, Any] = {}
        for p in params:
            spec = self._specs.get(p.name)
            if spec is None:  # not ours (e.g. use_sim_time): rclpy handles it
                continue
            value = _plain(p.value, spec)
            if (reason := spec.check(value)) is not None:
                return SetParametersResult(successful=False, reason=reason)
            if not spec.live:
                return SetParametersResult(
                    successful=False, reason=f"{p.name} cannot change while the node runs"
                )
            changed[p.name] = value
        if self._validate is not None and changed:
            merged = {**self.values, **changed}
            if (reason := self._validate(merged)) is not None:
                return SetParametersResult(successful=False, reason=reason)
        self.values.update(changed)
        for listener in self._listeners:
            listener(changed)
        return SetParametersResult(successful=True)


def _plain(value: Any, spec: Param) -> Any:
    if spec.kind is list and value is not None:
        return list(value)
    return value


def markdown_table(params: Sequence[Param]) -> str:
    """The README's table for one node (kept in sync by a test)."""
    lines = [
        "| parameter | type | default | allowed | live | description |",
        "|---|---|---|---|---|---|",
    ]
    for p in params:
        default = "[]" if p.default == [] else f"`{p.default!r}`".replace("|", "\\|")
        lines.append(
            f"| `{p.name}` | {p.kind.__name__} | {default} | {p.allowed()} | "
            f"{'yes' if p.live else 'no'} | {p.description} |"
        )
    return "\n".join(lines)
