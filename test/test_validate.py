"""The one validation module: each loader fails in its own error class, in the same words."""

from __future__ import annotations

import math

import pytest

from dynofa_ros.evaluation.scenario import ScenarioError
from dynofa_ros.family import FamilyError
from dynofa_ros.manager.types import ManagerConfigError
from dynofa_ros.validate import Fields, check_range, is_number, json_safe, mapping, reject_unknown


@pytest.mark.parametrize("error", [ScenarioError, FamilyError, ManagerConfigError])
def test_checks_raise_the_callers_error_naming_field_value_and_range(error: type) -> None:
    with pytest.raises(error, match=r"a\.b = nan is outside \[0, 1\]"):
        check_range(math.nan, 0, 1, "a.b", error)
    with pytest.raises(error, match=r"a\.b must be a number, got True"):
        check_range(True, 0, 1, "a.b", error)
    assert check_range(3, 0, math.inf, "x", error) == 3.0
    with pytest.raises(error, match=r"unknown field\(s\) z \(allowed: x, y\)"):
        reject_unknown({"x": 1, "z": 2}, {"x", "y"}, "doc", error)
    with pytest.raises(error, match="doc must be a mapping, got list"):
        mapping([1], "doc", error)
    v = Fields("thing f.yaml", error)
    with pytest.raises(error, match=r"thing f\.yaml: field 'm\.rate' = -1 is invalid; allowed: "
                       r"a number, 0 < rate <= 10"):  # fmt: skip
        v.number({"rate": -1}, "rate", "m", lo=0, hi=10, lo_open=True)
    with pytest.raises(error, match=r"field 'm\.kind' = 'x' is invalid; allowed: one of a, b"):
        v.choice({"kind": "x"}, "kind", "m", ("a", "b"), None)
    with pytest.raises(error, match=r"unknown field 'q'; allowed here: kind"):
        v.keys({"q": 1}, "", {"kind"})


def test_numbers_and_json() -> None:
    assert is_number(1) and is_number(2.5) and not is_number(True) and not is_number(math.inf)
    assert json_safe({"a": [1.0, math.nan], "b": (math.inf,), 3: "x"}) == {
        "a": [1.0, None], "b": [None], "3": "x",
    }  # fmt: skip
