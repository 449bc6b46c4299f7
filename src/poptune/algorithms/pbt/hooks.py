"""PBT's extension points given as arguments, and how they are stored in a JSON config.

:class:`~poptune.algorithms.PopulationBasedTraining` (and :class:`~poptune.algorithms.PB2`)
take three of them:

* ``explore_fn(config, donor_config) -> config``: called once per explore with the proposed
  configuration and the donor's (both dicts of the study's parameters, copies); what it
  returns is the segment's configuration, checked against the parameters
  (:func:`apply_explore_fn`). For constraints between hyperparameters.
* ``hyperparameters``: the names explore changes; the others are the donor's.
* ``resample_distributions``: ``{name: distribution}`` that a redraw of the parameter uses
  instead of its prior: a poptune :class:`~poptune.Parameter` (stored as its ``to_dict()``)
  or a callable ``f(rng) -> value`` (:func:`resampler`).

**Storing a callable.** A config is JSON, so a callable argument is written as the text
``'module:qualname'`` when it is a module-level function marked with :func:`pbt_hook` that
importing that name gives back. Rebuilding follows the rule :mod:`poptune._config` applies to
``module:Class``: the module is imported only if it is trusted (``trusted_modules``, or the
module of a function passed in this process), and the object it names must carry the
:func:`pbt_hook` mark, or the config is refused, so a stored configuration (a database, a
saved study) cannot make PBT call an arbitrary function such as ``os:system``. Any other
callable (a lambda, a nested function, an unmarked function, a ``functools.partial``) is kept
in the config as an :class:`UnstoredCallable`: a study in memory works (and rebuilds in the
same process), but writing the config as JSON, which SQLite/PostgreSQL storage,
``Study.save`` and ``study.optimize`` with worker processes do, fails with a
:class:`~poptune.exceptions.StorageError` whose message names the argument and says why.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from poptune._config import import_stored
from poptune._validation import check_callable, check_instance, is_real, reject
from poptune.exceptions import ConfigurationError, InvalidParameterError
from poptune.parameters import Choice, Continuous, Discrete, Ordinal, Parameter

__all__ = [
    "ExploreFn",
    "Resampler",
    "UnstoredCallable",
    "apply_explore_fn",
    "callable_argument",
    "callable_config",
    "check_resample_distributions",
    "pbt_hook",
    "reachable_value",
    "resample_distributions_argument",
    "resample_distributions_config",
    "resampler",
]

#: ``explore_fn(config, donor_config) -> config``: the proposed configuration (after
#: perturbation) and the donor's, both ``{parameter: value}`` copies; returns the one to use.
ExploreFn = Callable[[dict[str, Any], dict[str, Any]], Mapping[str, Any]]

#: A resample distribution given as a callable: ``f(rng) -> value``; draw only from ``rng``.
Resampler = Callable[[np.random.Generator], Any]

#: The attribute :func:`pbt_hook` sets; a stored ``module:qualname`` must name an object
#: whose attribute of this name is ``True``.
HOOK_MARK = "__poptune_pbt_hook__"

_F = TypeVar("_F", bound=Callable[..., Any])

#: The built-in parameter types a resample distribution may be (stored as ``to_dict()``).
_DISTRIBUTIONS = (Continuous, Discrete, Choice, Ordinal)


def pbt_hook(function: _F) -> _F:
    """Mark a module-level function as one a stored PBT configuration may name.

    A PBT whose ``explore_fn`` (or a ``resample_distributions`` entry) is a marked function
    writes it in its config as ``'module:qualname'`` and is rebuilt from it in another
    process (a shared SQLite/PostgreSQL study, a saved study). The mark is the trust rule:
    a stored name that does not lead to a marked function is refused, never called.

    Example::

        @pbt_hook
        def keep_batch_above_micro_batch(config, donor):
            return {**config, "batch_size": max(config["batch_size"], config["micro_batch"])}

    Raises:
        ArgumentTypeError: ``function`` is not callable.
    """
    check_callable("pbt_hook", "the decorated object", function)
    try:
        setattr(function, HOOK_MARK, True)
    except (AttributeError, TypeError):
        reject(
            "pbt_hook",
            "the decorated object",
            "a Python function (one that accepts attributes)",
            function,
            wrong_type=True,
        )
    return function


class UnstoredCallable:
    """A callable argument as a config holds it when it cannot be written as JSON.

    It calls the function it wraps, so rebuilding the algorithm in the same process
    (``algorithm_from_config(algorithm.to_config())``) works; :mod:`json` refuses it, and its
    ``repr`` (shown in the storage's error) names the argument and the reason.
    """

    __slots__ = ("function", "name", "owner", "reason")

    def __init__(self, owner: str, name: str, function: Callable[..., Any], reason: str) -> None:
        self.owner = owner
        self.name = name
        self.function = function
        self.reason = reason

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UnstoredCallable):
            return NotImplemented
        return self.function is other.function and self.name == other.name

    def __hash__(self) -> int:
        return hash((id(self.function), self.name))

    def __repr__(self) -> str:
        return (
            f"<{self.owner}: {self.name}={self.function!r} cannot be stored as JSON: "
            f"{self.reason}; keep the study in memory, or give a module-level function "
            "marked with @poptune.algorithms.pbt.pbt_hook>"
        )


def _stored_name(function: Any) -> tuple[str | None, str]:
    """``('module:qualname', '')`` for a marked module-level function that importing that
    name gives back, else ``(None, why not)``."""
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None, "it has no module-level name"
    if "<" in qualname:  # <lambda>, <locals>
        return None, "a lambda or a function defined inside another one has no importable name"
    loaded = sys.modules.get(module)
    target: Any = loaded
    for part in qualname.split("."):
        target = getattr(target, part, None)
    if loaded is None or target is not function:
        return None, f"{module}:{qualname} does not import back to it"
    if getattr(function, HOOK_MARK, False) is not True:
        return None, "it is not marked with @poptune.algorithms.pbt.pbt_hook"
    return f"{module}:{qualname}", ""


def callable_config(owner: str, name: str, function: Callable[..., Any]) -> Any:
    """``function`` as a config holds it: ``'module:qualname'`` or an
    :class:`UnstoredCallable` (see the module docstring)."""
    path, reason = _stored_name(function)
    if path is not None:
        return path
    return UnstoredCallable(owner, name, function, reason)


def _import_hook(owner: str, name: str, path: str) -> Callable[..., Any]:
    module, sep, qualname = path.partition(":")
    if not (sep and module and qualname):
        reject(owner, name, "a callable or 'module:function' text", path, wrong_type=False)
    obj = import_stored(path, f"{owner}: {name}", f"{owner}: {name}: cannot import")
    if not callable(obj) or getattr(obj, HOOK_MARK, False) is not True:
        raise ConfigurationError(
            f"{owner}: {name} = {path!r} is not marked with @poptune.algorithms.pbt.pbt_hook: "
            "refusing to call it from a stored configuration"
        )
    return obj  # type: ignore[no-any-return]


def callable_argument(owner: str, name: str, value: Any) -> Callable[..., Any]:
    """A callable argument as given (a callable), or as a config holds it (``'module:
    qualname'`` text, rebuilt by the trust rule; an :class:`UnstoredCallable`)."""
    if isinstance(value, UnstoredCallable):
        return value.function
    if isinstance(value, str):
        return _import_hook(owner, name, value)
    return check_callable(owner, name, value)


def callable_label(function: Callable[..., Any]) -> str:
    """A short name for messages: ``module:qualname`` or the function's repr."""
    qualname = getattr(function, "__qualname__", None)
    module = getattr(function, "__module__", None)
    return f"{module}:{qualname}" if qualname and module else repr(function)


# -- resample distributions --------------------------------------------------------------
def resample_distributions_argument(
    owner: str, value: Any
) -> dict[str, Parameter | Callable[..., Any]] | None:
    """``resample_distributions`` checked: None, or ``{name: distribution}`` where a
    distribution is a Continuous/Discrete/Choice/Ordinal of that name (or its ``to_dict()``,
    as a config holds it) or a callable ``f(rng) -> value`` (or its stored name)."""
    if value is None:
        return None
    check_instance(owner, "resample_distributions", value, Mapping, "a dict name -> distribution")
    out: dict[str, Parameter | Callable[..., Any]] = {}
    for name, spec in value.items():
        key = f"resample_distributions[{name!r}]"
        if not isinstance(name, str):
            reject(
                owner, "resample_distributions keys", "parameter names (str)", name, wrong_type=True
            )
        if isinstance(spec, Mapping):
            try:
                spec = Parameter.from_dict(spec)
            except (InvalidParameterError, KeyError, TypeError) as exc:
                reject(
                    owner,
                    key,
                    "a parameter's to_dict()",
                    dict(spec),
                    wrong_type=False,
                    note=f"({exc})",
                )
        if isinstance(spec, Parameter):
            if type(spec) not in _DISTRIBUTIONS:
                what = "a Continuous, Discrete, Choice or Ordinal (or a callable f(rng) -> value)"
                reject(owner, key, what, spec, wrong_type=True)
            if spec.name != name:
                reject(owner, key, f"a parameter named {name!r}", spec, wrong_type=False)
            out[name] = spec
        else:
            if not (isinstance(spec, (str, UnstoredCallable)) or callable(spec)):
                what = "a Parameter or a callable f(rng) -> value"
                reject(owner, key, what, spec, wrong_type=True)
            out[name] = callable_argument(owner, key, spec)
    return out


def resample_distributions_config(
    owner: str, distributions: Mapping[str, Parameter | Callable[..., Any]] | None
) -> dict[str, Any] | None:
    """``resample_distributions`` as a config holds it: each Parameter as its ``to_dict()``,
    each callable by :func:`callable_config`."""
    if distributions is None:
        return None
    return {
        name: spec.to_dict()
        if isinstance(spec, Parameter)
        else callable_config(owner, f"resample_distributions[{name!r}]", spec)
        for name, spec in distributions.items()
    }


def _bounds(parameter: Parameter, allowed: Sequence[Any] | None) -> tuple[float, float]:
    if allowed is None:
        return parameter.low, parameter.high  # type: ignore[attr-defined]
    return float(allowed[0]), float(allowed[1])


def check_resample_distributions(
    owner: str,
    distributions: Mapping[str, Parameter | Callable[..., Any]],
    parameters: Sequence[Parameter],
    parameter_range: Mapping[str, Sequence[Any]],
    explored: Sequence[str],
) -> None:
    """Check ``resample_distributions`` against the study (``setup``): each names an explored
    parameter, and a Parameter given can only produce values explore may reach (inside
    ``parameter_range``, or the parameter's own range; for a number, the same type)."""
    by_name = {p.name: p for p in parameters}
    for name, spec in distributions.items():
        key = f"resample_distributions[{name!r}]"
        p = by_name.get(name)
        if p is None:
            raise ConfigurationError(
                f"{owner}: {key} names {name!r}, which is not a parameter of the study "
                f"(parameters: {sorted(by_name)})"
            )
        if name not in explored:
            raise ConfigurationError(
                f"{owner}: {key} names {name!r}, which explore does not change "
                f"(hyperparameters: {list(explored)})"
            )
        if not isinstance(spec, Parameter):
            continue
        allowed = parameter_range.get(name)
        if isinstance(p, (Choice, Ordinal)):
            values = p.range if allowed is None else allowed
            indexes = {p.index(v) for v in values}
            ok = isinstance(spec, (Choice, Ordinal)) and all(
                p.contains(v) and p.index(v) in indexes for v in spec.range
            )
            what = f"a Choice or Ordinal whose values are among {list(values)!r}"
        elif isinstance(p, (Continuous, Discrete)):
            low, high = _bounds(p, allowed)
            ok = type(spec) is type(p) and low <= spec.low and spec.high <= high  # type: ignore[attr-defined]
            what = f"a {type(p).__name__} inside [{low:g}, {high:g}]"
        else:  # a user-defined parameter type: only a callable can say what its values are
            ok, what = False, "a callable f(rng) -> value (the parameter's type is not built in)"
        if not ok:
            reject(owner, key, what, spec, wrong_type=False)


def reachable_value(parameter: Parameter, value: Any, allowed: Sequence[Any] | None) -> Any:
    """``value`` made canonical if explore may produce it: a value of ``parameter``, or a
    number inside ``allowed`` (its ``parameter_range`` bounds, which may reach past the
    parameter's own range).

    Raises:
        InvalidParameterError: neither.
    """
    try:
        return parameter.validate_value(value)
    except InvalidParameterError:
        if allowed is None or not isinstance(parameter, (Continuous, Discrete)):
            raise
        if not (is_real(value) and math.isfinite(value)):
            raise
        if not float(allowed[0]) <= value <= float(allowed[1]):
            raise
        if isinstance(parameter, Discrete):
            if int(value) != value:
                raise
            return int(value)
        return float(value)


def resampler(
    owner: str,
    name: str,
    spec: Parameter | Callable[..., Any],
    parameter: Parameter,
    allowed: Sequence[Any] | None,
) -> Resampler:
    """The draw explore makes for ``parameter`` from its resample distribution ``spec``: a
    Parameter's ``sample(rng)`` (its values checked by :func:`check_resample_distributions`)
    or the callable's value, which must be one explore may reach (:func:`reachable_value`)
    inside ``allowed``; either made the parameter's canonical value."""
    if isinstance(spec, Parameter):
        sample = spec.sample

        def draw_value(rng: np.random.Generator) -> Any:  # the parameter's own value (1, not 1.0)
            return reachable_value(parameter, sample(rng), allowed)

        return draw_value

    def draw(rng: np.random.Generator) -> Any:
        value = spec(rng)
        key = f"resample_distributions[{name!r}] ({callable_label(spec)})"
        try:
            value = reachable_value(parameter, value, allowed)
        except InvalidParameterError as exc:
            raise ConfigurationError(
                f"{owner}: {key} returned {value!r}, which is not a value of parameter "
                f"{name!r}: {exc}"
            ) from None
        if allowed is not None:
            if isinstance(parameter, (Choice, Ordinal)):
                inside = parameter.index(value) in {parameter.index(v) for v in allowed}
            else:
                inside = float(allowed[0]) <= value <= float(allowed[1])
            if not inside:
                raise ConfigurationError(
                    f"{owner}: {key} returned {value!r}, outside parameter_range[{name!r}] = "
                    f"{list(allowed)!r}"
                )
        return value

    return draw


# -- the explore_fn hook -----------------------------------------------------------------
def apply_explore_fn(
    owner: str,
    explore_fn: ExploreFn,
    config: dict[str, Any],
    donor_config: dict[str, Any],
    parameters: Sequence[Parameter],
    parameter_range: Mapping[str, Sequence[Any]],
    records: list[str],
    format_value: Callable[[Any], str],
) -> tuple[dict[str, Any], list[str]]:
    """Call ``explore_fn`` once with copies of ``config`` (proposed) and ``donor_config``;
    return its configuration, each value checked and made canonical by its parameter (a
    value explore may reach: :func:`reachable_value`), and
    ``records`` plus one line per value it changed (``'bs: 32 -> 64 (explore_fn)'``).

    Raises:
        ConfigurationError: it returned no dict, a name that is not a parameter of the
            study, left one of ``config``'s parameters out, or a value the parameter does
            not allow; the message names the hook, the parameter and the value.
    """
    label = f"explore_fn {callable_label(explore_fn)}"
    result = explore_fn(dict(config), dict(donor_config))
    if not isinstance(result, Mapping):
        raise ConfigurationError(
            f"{owner}: {label} must return a dict {{parameter: value}}, got {result!r}"
        )
    by_name = {p.name: p for p in parameters}
    unknown = [k for k in result if k not in by_name]
    if unknown:
        raise ConfigurationError(
            f"{owner}: {label} returned {unknown[0]!r}, which is not a parameter of the study "
            f"(parameters: {sorted(by_name)})"
        )
    missing = [k for k in config if k not in result]
    if missing:
        raise ConfigurationError(
            f"{owner}: {label} left out parameter {missing[0]!r}; return every parameter of "
            "the configuration it was given"
        )
    out: dict[str, Any] = {}
    changes: list[str] = []
    for name, value in result.items():
        try:
            final = reachable_value(by_name[name], value, parameter_range.get(name))
        except InvalidParameterError as exc:
            raise ConfigurationError(
                f"{owner}: {label} returned {name}={value!r}, which is not a value of the "
                f"parameter: {exc}"
            ) from None
        out[name] = final
        proposed = config.get(name)
        if type(proposed) is not type(final) or proposed != final:
            old, new = format_value(proposed), format_value(final)
            changes.append(f"{name}: {old} -> {new} (explore_fn)")
    ordered = {p.name: out[p.name] for p in parameters if p.name in out}
    return ordered, records + changes
