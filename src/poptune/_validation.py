"""Every argument and report check in poptune, with one message shape.

Arguments (of a Study, an algorithm, a runner): ``Owner: name must be <what>, got <value>``,
raised as :class:`~poptune.ConfigurationError`; a value of the wrong *type* raises
:class:`~poptune.exceptions.ArgumentTypeError`, which is both a ``ConfigurationError`` and a
``TypeError``, so ``except TypeError`` and ``except ValueError`` catch what a Python user
expects. What a user reports (objective, iteration, context):
:class:`~poptune.InvalidObservationError` naming the trial and the value.

Helpers: :func:`check_int`, :func:`check_number` (finite, bounded), :func:`check_positive`,
:func:`check_fraction`, :func:`check_bool`, :func:`check_str`, :func:`check_choice`,
:func:`check_path`, :func:`check_callable`, :func:`check_instance`,
:func:`check_mapping_of_str`, :func:`check_factors`, :func:`check_list` (a list or tuple,
never a set); :func:`reject` raises the same error for
a check none of them covers (a nested entry, a duck-typed object).

This module knows no poptune class it checks for: callers pass names, values and types.
"""

from __future__ import annotations

import math
import ntpath
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import numpy as np

from poptune.exceptions import ArgumentTypeError, ConfigurationError, InvalidObservationError

_SCALARS = (str, int, float, bool, type(None))


def reject(
    owner: str, name: str, what: str, value: Any, *, wrong_type: bool, note: str = ""
) -> NoReturn:
    """Raise the one argument error: ``Owner: name must be <what>, got <value>[ <note>]``.

    :class:`~poptune.exceptions.ArgumentTypeError` (a ``TypeError``) when ``wrong_type``,
    else :class:`~poptune.ConfigurationError` (a ``ValueError``). For checks no helper below
    covers (a combination of arguments, a nested entry), so that they read the same.
    """
    cls = ArgumentTypeError if wrong_type else ConfigurationError
    tail = f" {note}" if note else ""
    raise cls(f"{owner}: {name} must be {what}, got {value!r}{tail}")


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (numpy's included), and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number (numpy's included), and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(
    owner: str,
    name: str,
    value: Any,
    minimum: int,
    allow_none: bool = False,
    *,
    maximum: int | None = None,
) -> Any:
    """Return ``value`` as an int >= ``minimum`` (and <= ``maximum`` when given; None when
    allowed), else raise. Bools are refused; numpy integers are accepted."""
    if value is None and allow_none:
        return None
    if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
        extra = " or None" if allow_none else ""
        what = f"an int >= {minimum}" if maximum is None else f"an int in [{minimum}, {maximum}]"
        reject(owner, name, what + extra, value, wrong_type=not is_int(value))
    return int(value)


def check_fraction(
    owner: str, name: str, value: Any, low: float, high: float, low_open: bool = False
) -> float:
    """Return ``value`` as a float in [low, high] (or (low, high]), else raise."""
    ok = is_real(value) and (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        reject(
            owner,
            name,
            f"a number in {bracket}{low}, {high}]",
            value,
            wrong_type=not is_real(value),
        )
    return float(value)


def check_positive(owner: str, name: str, value: Any, allow_none: bool = False) -> Any:
    """Return ``value`` as a float > 0 (or None when allowed), else raise."""
    if value is None and allow_none:
        return None
    if not is_real(value) or not value > 0:
        extra = " or None" if allow_none else ""
        reject(owner, name, f"a number > 0{extra}", value, wrong_type=not is_real(value))
    return float(value)


def check_bool(owner: str, name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (numpy's included), else raise ArgumentTypeError."""
    if not isinstance(value, (bool, np.bool_)):
        reject(owner, name, "True or False", value, wrong_type=True)
    return bool(value)


def check_str(
    owner: str,
    name: str,
    value: Any,
    allow_none: bool = False,
    nonempty: bool = False,
    *,
    strip: bool = False,
) -> Any:
    """Return ``value`` if it is a str (non-empty when asked, and then not only whitespace
    with ``strip``; None when allowed), else raise."""
    if value is None and allow_none:
        return None
    extra = " or None" if allow_none else ""
    if not isinstance(value, str):
        reject(owner, name, f"a str{extra}", value, wrong_type=True)
    if nonempty and not (value.strip() if strip else value):
        reject(owner, name, f"a non-empty str{extra}", value, wrong_type=False)
    return value


def _listed(choices: Sequence[Any]) -> str:
    choices = list(choices)
    if len(choices) == 1:
        return repr(choices[0])
    if len(choices) == 2:
        return f"{choices[0]!r} or {choices[1]!r}"
    return "one of " + ", ".join(repr(c) for c in choices)


def check_choice(
    owner: str,
    name: str,
    value: Any,
    choices: Sequence[Any],
    *,
    what: str | None = None,
    note: str = "",
) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise naming them.

    A value whose type is none of the choices' types (``3`` where strings are expected)
    raises :class:`~poptune.exceptions.ArgumentTypeError`; any other ConfigurationError.
    ``what`` replaces the listed choices in the message (e.g. to leave out an alias), and
    ``note`` follows the value.
    """
    try:
        ok = value in choices
    except TypeError:  # unhashable value against a set of choices
        ok = False
    if not ok:
        wrong_type = not any(isinstance(value, type(c)) for c in choices)
        reject(owner, name, what or _listed(choices), value, wrong_type=wrong_type, note=note)
    return value


def check_number(
    owner: str,
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    allow_none: bool = False,
    min_open: bool = False,
) -> Any:
    """Return ``value`` as a finite float in [minimum, maximum] (bounds optional; ``min_open``:
    > minimum; None when allowed), else raise. NaN and infinities are refused; bools are not
    numbers here."""
    if value is None and allow_none:
        return None
    real = is_real(value)
    ok = (
        real
        and math.isfinite(value)
        and (minimum is None or value > minimum or (value == minimum and not min_open))
        and (maximum is None or value <= maximum)
    )
    if not ok:
        bracket, relation = ("(", ">") if min_open else ("[", ">=")
        if minimum is not None and maximum is not None:
            what = f"a number in {bracket}{minimum}, {maximum}]"
        elif minimum is not None:
            what = f"a number {relation} {minimum}"
        elif maximum is not None:
            what = f"a number <= {maximum}"
        else:
            what = "a finite number"
        extra = " or None" if allow_none else ""
        reject(owner, name, what + extra, value, wrong_type=not real)
    return float(value)


def check_path(owner: str, name: str, value: Any, allow_none: bool = False) -> Any:
    """Return ``value`` if it is a non-empty path (``str`` or ``os.PathLike``; None when
    allowed), else raise: ArgumentTypeError for another type, ConfigurationError for ''."""
    if value is None and allow_none:
        return None
    extra = " or None" if allow_none else ""
    if not isinstance(value, (str, os.PathLike)):
        reject(owner, name, f"a path (str or os.PathLike){extra}", value, wrong_type=True)
    if not os.fspath(value):
        reject(owner, name, f"a non-empty path{extra}", value, wrong_type=False)
    return value


def check_callable(owner: str, name: str, value: Any) -> Callable[..., Any]:
    """Return ``value`` if it is callable, else raise ArgumentTypeError."""
    if not callable(value):
        reject(owner, name, "callable", value, wrong_type=True)
    return value


def check_instance(
    owner: str,
    name: str,
    value: Any,
    kind: type | tuple[type, ...],
    what: str,
    allow_none: bool = False,
) -> Any:
    """Return ``value`` if it is an instance of ``kind`` (None when allowed), else raise
    ArgumentTypeError saying ``what`` was expected."""
    if value is None and allow_none:
        return None
    if not isinstance(value, kind):
        reject(owner, name, what + (" or None" if allow_none else ""), value, wrong_type=True)
    return value


def check_mapping_of_str(
    owner: str, name: str, value: Any, allow_none: bool = False
) -> dict[str, str]:
    """Return ``value`` (a mapping of str to str; None, when allowed, as ``{}``) as a dict,
    else raise ArgumentTypeError naming the mapping or the entry that is not a str."""
    if value is None and allow_none:
        return {}
    if not isinstance(value, Mapping):
        reject(owner, name, "a dict of str to str", value, wrong_type=True)
    for key, item in value.items():
        if not isinstance(key, str):
            reject(owner, f"{name} keys", "str", key, wrong_type=True)
        if not isinstance(item, str):
            reject(owner, f"{name}[{key!r}]", "a str", item, wrong_type=True)
    return dict(value)


def check_factors(owner: str, factors: Any) -> tuple[float, ...]:
    """Perturbation factors: a non-empty sequence of finite numbers > 0, as floats."""
    if isinstance(factors, (str, bytes)) or not isinstance(factors, Sequence) or not factors:
        reject(
            owner,
            "perturbation_factors",
            "a non-empty sequence of numbers > 0",
            factors,
            wrong_type=not isinstance(factors, Sequence) or isinstance(factors, (str, bytes)),
        )
    for f in factors:
        if not is_real(f) or not (math.isfinite(f) and f > 0):
            raise (ArgumentTypeError if not is_real(f) else ConfigurationError)(
                f"{owner}: perturbation_factors must be numbers > 0, got {f!r} in "
                f"{tuple(factors)!r}"
            )
    return tuple(float(f) for f in factors)


def check_list(owner: str, name: str, value: Any, what: str = "a list or tuple") -> list[Any]:
    """Return ``value`` (a list or tuple) as a new list, else raise ArgumentTypeError.

    Only lists and tuples: a set (or a dict, a generator, a str) has no order of the user's
    choosing, so a rule that reads the order (an Ordinal's neighbours) would silently go
    wrong. The message says so when ``value`` is a set.
    """
    if not isinstance(value, (list, tuple)):
        note = (
            "(a set has no order; give a list in the order you mean)"
            if isinstance(value, (set, frozenset))
            else ""
        )
        reject(owner, name, what, value, wrong_type=True, note=note)
    return list(value)


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
        if type(value) is float and not math.isfinite(value):
            # Refused here rather than stored: JSON (Study.save, export, the dashboard) has no
            # NaN or inf, and one study must read the same wherever it is written.
            raise InvalidObservationError(
                f"trial {trial_id}: context[{key!r}] must be finite, got {value!r} (report "
                "None, or a str such as 'nan', for a metric that has no value)"
            )
        out[key] = value
    return out


#: The bookkeeping parameters that name a checkpoint (SHERPA's names).
CHECKPOINT_FIELDS = ("load_from", "save_to")


def checkpoint_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot name a checkpoint (a file directly inside a checkpoint directory),
    or None when it can. A name is a str (or an int, a trial id) that is not empty, is at most
    255 characters, holds no path separator (``/``, ``\\``), no NUL, no ``..``, does not start
    with ``.`` (the store's temporary files do) and has no drive (``C:``)."""
    if isinstance(name, bool) or not isinstance(name, (str, int)):
        return f"a name is a str, got {type(name).__name__}"
    text = str(name)
    if not text:
        return "it is empty"
    for bad, what in (("/", "a path separator '/'"), ("\\", "a path separator '\\'"),
                      ("\0", "a NUL character"), ("..", "'..'")):  # fmt: skip
        if bad in text:
            return f"it contains {what}"
    if text.startswith("."):
        return "it starts with '.' (the checkpoint store's temporary files do)"
    if ntpath.splitdrive(text)[0] or os.path.isabs(text):
        return "it is an absolute path or names a drive"
    if len(text) > 255:
        return f"it is {len(text)} characters long (at most 255)"
    return None


def checkpoint_fields_problem(parameters: Mapping[str, Any]) -> str | None:
    """The first bad checkpoint name among a trial's ``load_from`` / ``save_to`` parameters
    as a message naming the field and the value, or None. ``''`` and a missing key (None)
    mean "none" (a fresh model; the trial id as the name to save to) and are accepted."""
    for field in CHECKPOINT_FIELDS:
        value = parameters.get(field)
        if value is None or value == "":
            continue
        problem = checkpoint_name_problem(value)
        if problem is not None:
            return (
                f"{field} {value!r} is not a checkpoint name: {problem}; a checkpoint name "
                "is one file name inside checkpoint_dir, such as a trial id"
            )
    return None
