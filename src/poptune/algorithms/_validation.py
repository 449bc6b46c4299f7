"""Argument checks shared by the algorithms (one message format everywhere)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from poptune.exceptions import ConfigurationError


def check_int(owner: str, name: str, value: Any, minimum: int, allow_none: bool = False) -> Any:
    """Return ``value`` as an int >= ``minimum`` (or None when allowed), else raise."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        extra = " or None" if allow_none else ""
        raise ConfigurationError(
            f"{owner}: {name} must be an int >= {minimum}{extra}, got {value!r}"
        )
    return int(value)


def check_fraction(
    owner: str, name: str, value: Any, low: float, high: float, low_open: bool = False
) -> float:
    """Return ``value`` as a float in [low, high] (or (low, high]), else raise."""
    ok = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and (low < value if low_open else low <= value)
        and value <= high
    )
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigurationError(
            f"{owner}: {name} must be a number in {bracket}{low}, {high}], got {value!r}"
        )
    return float(value)


def check_positive(owner: str, name: str, value: Any, allow_none: bool = False) -> Any:
    """Return ``value`` as a float > 0 (or None when allowed), else raise."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        extra = " or None" if allow_none else ""
        raise ConfigurationError(f"{owner}: {name} must be a number > 0{extra}, got {value!r}")
    return float(value)


def check_factors(owner: str, factors: Any) -> tuple[float, ...]:
    """Perturbation factors: a non-empty sequence of finite numbers > 0, as floats."""
    if isinstance(factors, (str, bytes)) or not isinstance(factors, Sequence) or not factors:
        raise ConfigurationError(
            f"{owner}: perturbation_factors must be a non-empty sequence of numbers > 0, "
            f"got {factors!r}"
        )
    for f in factors:
        if (
            isinstance(f, bool)
            or not isinstance(f, numbers.Real)
            or not (math.isfinite(f) and f > 0)
        ):
            raise ConfigurationError(
                f"{owner}: perturbation_factors must be numbers > 0, got {f!r} in "
                f"{tuple(factors)!r}"
            )
    return tuple(float(f) for f in factors)
