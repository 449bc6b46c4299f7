"""Checks of what users report: objectives, iterations and context (one message format)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from poptune.exceptions import InvalidObservationError

_SCALARS = (str, int, float, bool, type(None))


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
