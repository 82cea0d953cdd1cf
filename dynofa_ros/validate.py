"""Checks of values read from files, messages and parameters, for every loader and node.

Each check takes the error class to raise (a :class:`~dynofa_ros.errors.DynofaError` of the
caller's layer), so a scenario, a manager configuration and a family fail in their own terms
while saying the same things: the field, the value and what is allowed."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from dynofa_ros.errors import DynofaError

ErrorType = type[DynofaError]


def is_number(x: Any) -> bool:
    """A finite int or float (``bool`` is not a number here)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def json_safe(x: Any) -> Any:
    """``x`` with every non-finite float (JSON has no NaN / inf) replaced by ``None``."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return x


def check_range(value: Any, lo: float, hi: float, where: str, error: ErrorType) -> float:
    """``value`` as a float if it is a number in ``[lo, hi]`` (infinite only when ``hi`` is)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(f"{where} must be a number, got {value!r}")
    if math.isnan(value) or not (lo <= value <= hi) or (math.isinf(value) and hi != math.inf):
        raise error(f"{where} = {value!r} is outside [{lo}, {hi}]")
    return float(value)


def choice(value: Any, name: str, allowed: Sequence[str], error: ErrorType) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise error(f"{name} {value!r} is not supported (allowed: {', '.join(allowed)})")
    return value


def reject_unknown(
    raw: Mapping[str, Any], allowed: set[str] | frozenset[str], where: str, error: ErrorType
) -> None:
    unknown = sorted(str(k) for k in set(raw) - set(allowed))
    if unknown:
        raise error(
            f"{where}: unknown field(s) {', '.join(unknown)} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )


def mapping(raw: Any, where: str, error: ErrorType) -> Mapping[str, Any]:
    """``raw`` as a mapping (``None`` is empty)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise error(f"{where} must be a mapping, got {type(raw).__name__}")
    return raw


class Fields:
    """Field-by-field checks of one document that raise ``error`` as
    ``<label>: field 'a.b' = <value> is invalid; allowed: <what>``."""

    def __init__(self, label: str, error: ErrorType) -> None:
        self.label = label
        self.error = error

    def fail(self, field_name: str, value: Any, allowed: str) -> NoReturn:
        raise self.error(
            f"{self.label}: field '{field_name}' = {value!r} is invalid; allowed: {allowed}"
        )

    @staticmethod
    def _name(where: str, key: str) -> str:
        return f"{where}.{key}" if where else key

    def keys(self, data: Mapping[str, Any], where: str, allowed: set[str]) -> None:
        for key in data:
            if key not in allowed:
                name = self._name(where, str(key))
                raise self.error(
                    f"{self.label}: unknown field '{name}'; allowed here: "
                    + ", ".join(sorted(allowed))
                )

    def _get(
        self, data: Mapping[str, Any], key: str, where: str, default: Any, required: bool
    ) -> Any:
        if key not in data or data[key] is None:
            if required:
                raise self.error(f"{self.label}: field '{self._name(where, key)}' is required")
            return default
        return data[key]

    def number(
        self,
        data: Mapping[str, Any],
        key: str,
        where: str = "",
        *,
        default: float | None = None,
        required: bool = False,
        lo: float,
        hi: float,
        lo_open: bool = False,
    ) -> float:
        value = self._get(data, key, where, default, required)
        low = f"{lo} < " if lo_open else f"{lo} <= "
        allowed = f"a number, {low}{key} <= {hi}"
        if not is_number(value) or value < lo or value > hi or (lo_open and value == lo):
            self.fail(self._name(where, key), value, allowed)
        return float(value)

    def integer(
        self,
        data: Mapping[str, Any],
        key: str,
        where: str = "",
        *,
        default: int | None = None,
        required: bool = False,
        lo: int,
        hi: int,
    ) -> int:
        value = self._get(data, key, where, default, required)
        if not isinstance(value, int) or isinstance(value, bool) or value < lo or value > hi:
            self.fail(self._name(where, key), value, f"an integer, {lo} <= {key} <= {hi}")
        return int(value)

    def string(
        self,
        data: Mapping[str, Any],
        key: str,
        where: str = "",
        *,
        default: str | None = None,
        required: bool = False,
        pattern: re.Pattern[str] | None = None,
        allowed: str = "text",
    ) -> Any:
        value = self._get(data, key, where, default, required)
        if value is None:
            return None
        if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
            self.fail(self._name(where, key), value, allowed)
        return value

    def boolean(self, data: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
        value = self._get(data, key, where, default, False)
        if not isinstance(value, bool):
            self.fail(self._name(where, key), value, "true or false")
        return value

    def choice(  # noqa: PLR0917 - one positional call shape used by every loader
        self,
        data: Mapping[str, Any],
        key: str,
        where: str,
        choices: tuple[str, ...],
        default: str | None,
        required: bool = False,
    ) -> str:
        value = self._get(data, key, where, default, required)
        if value not in choices:
            self.fail(self._name(where, key), value, "one of " + ", ".join(choices))
        return str(value)
