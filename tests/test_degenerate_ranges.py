"""Degenerate parameter ranges and values are refused with an error naming them (issue 17,
item 10)."""

from __future__ import annotations

import math

import pytest

from poptune import Choice, Continuous, Discrete, Ordinal
from poptune.exceptions import InvalidParameterError

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: Continuous("x", [1, 1]), "low must be < high, got range [1, 1]"),
        (lambda: Continuous("x", [2, 1]), "low must be < high, got range [2, 1]"),
        (lambda: Continuous("x", [1.0, 1.0 + 1e-17]), "low must be < high"),
        (lambda: Continuous("x", [10**20, 10**20 + 1]), "is a single float value"),
        (lambda: Continuous("x", [-1e308, 1e308]), "wider than a float can hold"),
        (lambda: Continuous("x", [NAN, 1]), "range bounds must be finite, got [nan, 1]"),
        (lambda: Continuous("x", [0, INF]), "range bounds must be finite"),
        (lambda: Continuous("x", [0, 1], "log"), "log scale needs bounds > 0, got range [0, 1]"),
        (lambda: Continuous("x", [-1, 1], "log"), "log scale needs bounds > 0"),
        (lambda: Continuous("x", []), "range must be two numbers"),
        (lambda: Continuous("x", [True, 2]), "range must be two numbers"),
        (lambda: Discrete("n", [3, 3]), "low must be < high, got range [3, 3]"),
        (lambda: Discrete("n", [1, NAN]), "range bounds must be finite"),
        (lambda: Discrete("n", [0, 8], "log"), "log scale needs bounds > 0"),
        (lambda: Discrete("n", [0.5, 3]), "Discrete bounds must be integers"),
        (lambda: Choice("c", []), "range must not be empty"),
        (lambda: Ordinal("o", []), "range must not be empty"),
        (lambda: Choice("c", ["a", "a"]), "duplicate value 'a'"),
        (lambda: Choice("c", [0.1, NAN]), "value nan in range [0.1, nan] is not equal to itself"),
        (lambda: Ordinal("o", [NAN]), "is not equal to itself"),
    ],
)
def test_a_degenerate_definition_is_refused_naming_it(make, fragment):
    with pytest.raises(InvalidParameterError) as info:
        make()
    assert fragment in str(info.value)


@pytest.mark.parametrize("value", [NAN, INF, -INF, 2.0, "0.5", None, True])
def test_a_bad_value_is_refused_naming_it(value):
    with pytest.raises(InvalidParameterError, match="parameter 'x'"):
        Continuous("x", [0.0, 1.0]).validate_value(value)
