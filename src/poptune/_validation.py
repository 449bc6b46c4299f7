"""Every argument and report check in poptune, with one message shape.

Arguments (of a Study, an algorithm, a runner): ``Owner: name must be <what>, got <value>``,
raised as :class:`~poptune.ConfigurationError`; a value of the wrong *type* raises
:class:`~poptune.exceptions.ArgumentTypeError`, which is both a ``ConfigurationError`` and a
``TypeError``, so ``except TypeError`` and ``except ValueError`` catch what a Python user
expects. What a user reports (objective, iteration, context):
:class:`~poptune.InvalidObservationError` naming the trial and the value.

This module knows no poptune class it checks for: callers pass names and values.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from poptune.exceptions import ArgumentTypeError, ConfigurationError, InvalidObservationError

_SCALARS = (str, int, float, bool, type(None))


def _fail(owner: str, name: str, what: str, value: Any, *, wrong_type: bool) -> None:
    cls = ArgumentTypeError if wrong_type else ConfigurationError
    raise cls(f"{owner}: {name} must be {what}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(owner: str, name: str, value: Any, minimum: int, allow_none: bool = False) -> Any:
    """Return ``value`` as an int >= ``minimum`` (or None when allowed), else raise."""
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < minimum:
        extra = " or None" if allow_none else ""
        _fail(owner, name, f"an int >= {minimum}{extra}", value, wrong_type=not _is_int(value))
    return int(value)


def check_fraction(
    owner: str, name: str, value: Any, low: float, high: float, low_open: bool = False
) -> float:
    """Return ``value`` as a float in [low, high] (or (low, high]), else raise."""
    ok = _is_real(value) and (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        _fail(
            owner,
            name,
            f"a number in {bracket}{low}, {high}]",
            value,
            wrong_type=not _is_real(value),
        )
    return float(value)


def check_positive(owner: str, name: str, value: Any, allow_none: bool = False) -> Any:
    """Return ``value`` as a float > 0 (or None when allowed), else raise."""
    if value is None and allow_none:
        return None
    if not _is_real(value) or not value > 0:
        extra = " or None" if allow_none else ""
        _fail(owner, name, f"a number > 0{extra}", value, wrong_type=not _is_real(value))
    return float(value)


def check_bool(owner: str, name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (numpy's included), else raise ArgumentTypeError."""
    if not isinstance(value, (bool, np.bool_)):
        _fail(owner, name, "True or False", value, wrong_type=True)
    return bool(value)


def check_str(
    owner: str, name: str, value: Any, allow_none: bool = False, nonempty: bool = False
) -> Any:
    """Return ``value`` if it is a str (non-empty when asked; None when allowed), else raise."""
    if value is None and allow_none:
        return None
    extra = " or None" if allow_none else ""
    if not isinstance(value, str):
        _fail(owner, name, f"a str{extra}", value, wrong_type=True)
    if nonempty and not value:
        _fail(owner, name, f"a non-empty str{extra}", value, wrong_type=False)
    return value


def check_choice(owner: str, name: str, value: Any, choices: Sequence[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise ConfigurationError listing them."""
    try:
        ok = value in choices
    except TypeError:  # unhashable value against a set of choices
        ok = False
    if not ok:
        listed = ", ".join(repr(c) for c in choices)
        _fail(owner, name, f"one of {listed}", value, wrong_type=False)
    return value


def check_factors(owner: str, factors: Any) -> tuple[float, ...]:
    """Perturbation factors: a non-empty sequence of finite numbers > 0, as floats."""
    if isinstance(factors, (str, bytes)) or not isinstance(factors, Sequence) or not factors:
        _fail(
            owner,
            "perturbation_factors",
            "a non-empty sequence of numbers > 0",
            factors,
            wrong_type=not isinstance(factors, Sequence) or isinstance(factors, (str, bytes)),
        )
    for f in factors:
        if not _is_real(f) or not (math.isfinite(f) and f > 0):
            raise (ArgumentTypeError if not _is_real(f) else ConfigurationError)(
                f"{owner}: perturbation_factors must be numbers > 0, got {f!r} in "
                f"{tuple(factors)!r}"
            )
    return tuple(float(f) for f in factors)


def check_objective(value: Any, trial_id: int) -> float:
    """The objective as a finite float, or InvalidObservationError naming the value."""
    if type(value) is not float:
        if hasattr(value, "item") and not isinstance(value, numbers.Real):
            try:  # numpy 0-d arrays, torch scalar tensors
                value = value.item()
            except (TypeError, ValueError, RuntimeError):
                pass
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InvalidObservationError(
                f"trial {trial_id}: objective must be a finite number, got {value!r} "
                f"of type {type(value).__name__}"
            )
        value = float(value)
    if not math.isfinite(value):
        raise InvalidObservationError(
            f"trial {trial_id}: objective must be a finite number, got {value!r}; "
            "finalize the trial as FAILED if training diverged"
        )
    return value


def check_iteration(value: Any, trial_id: int) -> int:
    """The iteration as an int, or InvalidObservationError naming the value."""
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidObservationError(
            f"trial {trial_id}: iteration must be an int, got {value!r} of type "
            f"{type(value).__name__}"
        )
    return int(value)


def check_context(
    context: Mapping[str, Any], trial_id: int, reserved: frozenset[str]
) -> dict[str, Any]:
    """The context as plain Python scalars, or InvalidObservationError naming the bad entry."""
    if not isinstance(context, Mapping):
        raise InvalidObservationError(f"trial {trial_id}: context must be a dict, got {context!r}")
    out: dict[str, Any] = {}
    for key, value in context.items():
        if not isinstance(key, str):
            raise InvalidObservationError(
                f"trial {trial_id}: context keys must be str, got {key!r}"
            )
        if key in reserved:
            raise InvalidObservationError(
                f"trial {trial_id}: context key {key!r} is a parameter name or a results "
                "column; choose another name"
            )
        if type(value) not in _SCALARS:
            if isinstance(value, np.generic) or getattr(value, "ndim", None) == 0:
                value = value.item()  # numpy scalars, 0-d arrays, scalar tensors
            elif isinstance(value, float):
                value = float(value)
            elif isinstance(value, int) and not isinstance(value, bool):
                value = int(value)
            if type(value) not in _SCALARS:
                raise InvalidObservationError(
                    f"trial {trial_id}: context[{key!r}] must be a str, number, bool or "
                    f"None, got {value!r} of type {type(value).__name__}"
                )
        out[key] = value
    return out
