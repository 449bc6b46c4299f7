"""A trial's hyperparameters into an optimizer's param groups, verified.

Framework-free (an optimizer is anything with ``param_groups``: a list of dicts), so the
PyTorch, Lightning and Transformers integrations share one rule:

* a trial parameter whose name is in the mapping (:data:`DEFAULT_OPTIMIZER_KEYS`, updated by
  the user's ``mapping``) is written into *every* param group of *every* optimizer under the
  mapped key (``learning_rate`` → ``lr``);
* with an LR scheduler on that optimizer, ``lr`` is the scheduler's *base* rate: its
  ``base_lrs`` (and the group's ``initial_lr``) become the new value and the group's current
  rate keeps its place in the schedule (``new * current / old_base``);
* then every value is read back: a mapped parameter that did not reach every group (the key
  is missing, or the value read back differs) is a :class:`HyperparameterNotAppliedError`
  naming it — never a silent no-op, which is what happens when a loaded optimizer state's
  param groups override the perturbed learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from poptune.exceptions import ArgumentTypeError, ConfigurationError

__all__ = [
    "DEFAULT_OPTIMIZER_KEYS",
    "HyperparameterNotAppliedError",
    "apply_hyperparameters",
    "optimizer_keys",
]

#: Trial parameter name -> param-group key, used unless a ``mapping`` overrides it.
DEFAULT_OPTIMIZER_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "learning_rate": "lr",
        "lr": "lr",
        "momentum": "momentum",
        "weight_decay": "weight_decay",
        "betas": "betas",
        "eps": "eps",
    }
)


class HyperparameterNotAppliedError(ConfigurationError):
    """A trial's hyperparameter that should be in the optimizer is not there.

    Raised after loading a checkpoint when a mapped parameter's key is missing from a param
    group, or the value read back is not the trial's. The message names the parameter, the
    key, the optimizer and group, and how to change the mapping.
    """


def check_callback_arguments(
    trial: Any, name: str, metric: Any, metric_is: str, context: Any
) -> None:
    """The checks both framework callbacks make of their arguments: ``trial`` is a poptune
    Trial, the metric ``name`` (``metric``) is a non-empty str (``metric_is`` says what it
    must be), ``context`` a list of metric names.

    Raises:
        ArgumentTypeError: naming the argument and the value.
    """
    if not hasattr(trial, "report") or not hasattr(trial, "parameters"):
        raise ArgumentTypeError(f"PoptuneCallback: trial must be a poptune Trial, got {trial!r}")
    if not isinstance(metric, str) or not metric:
        raise ArgumentTypeError(f"PoptuneCallback: {name} must be {metric_is}, got {metric!r}")
    if isinstance(context, str) or not all(isinstance(c, str) for c in context):
        raise ArgumentTypeError(
            f"PoptuneCallback: context must be a list of metric names, got {context!r}"
        )


def optimizer_keys(
    mapping: Mapping[str, str | None] | None = None,
    defaults: Mapping[str, str] = DEFAULT_OPTIMIZER_KEYS,
) -> dict[str, str]:
    """``defaults`` (:data:`DEFAULT_OPTIMIZER_KEYS`; the Keras integration has its own)
    updated by ``mapping``.

    Args:
        mapping: ``{parameter name: param-group key}`` added to the defaults (or replacing
            one); a value of None removes a default (``{"momentum": None}`` when the trial's
            ``momentum`` is not the optimizer's).

    Raises:
        ArgumentTypeError: ``mapping`` is not a dict of str to str or None.
    """
    keys = dict(defaults)
    if mapping is None:
        return keys
    if not isinstance(mapping, Mapping):
        raise ArgumentTypeError(
            f"apply_hyperparameters: mapping must be a dict parameter name -> param-group "
            f"key, got {mapping!r}"
        )
    for name, key in mapping.items():
        if not isinstance(name, str) or not (key is None or isinstance(key, str)):
            raise ArgumentTypeError(
                f"apply_hyperparameters: mapping must map str to str or None, got {name!r}: {key!r}"
            )
        if key is None:
            keys.pop(name, None)
        else:
            keys[name] = key
    return keys


def as_list(obj: Any, what: str) -> list[Any]:
    """``obj`` (one object or a sequence of them, None for none) as a list."""
    if obj is None:
        return []
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        return list(obj)
    if what == "optimizer" and not hasattr(obj, "param_groups"):
        raise ArgumentTypeError(
            f"apply_hyperparameters: an optimizer (with param_groups) or a list of them was "
            f"expected, got {obj!r}"
        )
    return [obj]


def parameters_of(trial_or_parameters: Any) -> Mapping[str, Any]:
    """A trial's ``parameters`` dict, or the mapping given."""
    params = getattr(trial_or_parameters, "parameters", trial_or_parameters)
    if not isinstance(params, Mapping):
        raise ArgumentTypeError(
            f"apply_hyperparameters: a trial or a dict of parameters was expected, got "
            f"{trial_or_parameters!r}"
        )
    return params


def _scheduler_of(optimizer: Any, schedulers: list[Any]) -> Any:
    """The scheduler driving ``optimizer`` (unwrapping Accelerate's wrapper), or None."""
    for scheduler in schedulers:
        if hasattr(scheduler, "base_lrs") or hasattr(scheduler, "optimizer"):
            inner = scheduler
        else:
            inner = getattr(scheduler, "scheduler", None)
        if inner is None or not hasattr(inner, "optimizer"):
            continue
        if inner.optimizer.param_groups is optimizer.param_groups:
            return inner
    return None


def _check_value(name: str, value: Any, current: Any) -> Any:
    if isinstance(current, tuple):
        if (
            not isinstance(value, Sequence)
            or isinstance(value, str)
            or len(value) != len(current)
            or not all(_is_number(v) for v in value)
        ):
            raise ArgumentTypeError(
                f"apply_hyperparameters: {name}={value!r} must be {len(current)} numbers, as "
                f"the optimizer's {current!r}"
            )
        return tuple(float(v) for v in value)
    if not _is_number(value):
        raise ArgumentTypeError(
            f"apply_hyperparameters: {name}={value!r} must be a number to go into an optimizer"
        )
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(got: Any, expected: Any) -> bool:
    if isinstance(expected, tuple):
        return (
            isinstance(got, (tuple, list))
            and len(got) == len(expected)
            and all(_same(g, e) for g, e in zip(got, expected, strict=True))
        )
    try:
        return math.isclose(float(got), float(expected), rel_tol=1e-9, abs_tol=0.0)
    except (TypeError, ValueError):
        return False


def apply_hyperparameters(
    optimizers: Any,
    parameters: Any,
    mapping: Mapping[str, str | None] | None = None,
    *,
    schedulers: Any = None,
) -> dict[str, Any]:
    """Write the trial's optimizer hyperparameters into every param group, then verify them.

    Call it after the optimizer's state was loaded (loading restores the saved param groups,
    whose ``lr`` is the donor's, not the trial's perturbed one).
    :func:`poptune.integrations.torch.load_checkpoint` and the Lightning and Transformers
    callbacks call it for you.

    Args:
        optimizers: a ``torch.optim.Optimizer`` (anything with ``param_groups``) or a list.
        parameters: the trial, or its ``parameters`` dict; only the names in the mapping are
            applied (bookkeeping such as ``load_from`` and model parameters are left alone).
        mapping: ``{parameter name: param-group key}`` over :data:`DEFAULT_OPTIMIZER_KEYS`
            (``learning_rate``/``lr`` → ``lr``, ``momentum``, ``weight_decay``, ``betas``,
            ``eps``); a value of None removes a default.
        schedulers: LR schedulers (one or a list); the one of an optimizer gets the new
            ``lr`` as its base rate (``base_lrs``) so that its next step does not undo it.

    Returns:
        ``{parameter name: value}`` of what was applied.

    Raises:
        HyperparameterNotAppliedError: a mapped parameter's key is missing from a param group,
            there is no optimizer, or a value read back differs from the trial's.
        ArgumentTypeError: a value is not a number (or not as many numbers as ``betas``).
        ConfigurationError: two parameters map to one key with different values.
    """
    opts = as_list(optimizers, "optimizer")
    scheds = as_list(schedulers, "scheduler")
    params = parameters_of(parameters)
    keys = optimizer_keys(mapping)
    chosen = {name: (keys[name], params[name]) for name in params if name in keys}
    if not chosen:
        return {}
    if not opts:
        raise HyperparameterNotAppliedError(
            f"{_list(chosen)} did not reach any optimizer: none was given (pass the "
            "optimizer, or leave a parameter out with mapping={NAME: None})"
        )
    by_key: dict[str, tuple[str, Any]] = {}
    for name, (key, value) in chosen.items():
        if key in by_key and by_key[key][1] != value:
            other = by_key[key][0]
            raise ConfigurationError(
                f"apply_hyperparameters: {other}={by_key[key][1]!r} and {name}={value!r} both "
                f"map to the param-group key {key!r}; remove one from the mapping"
            )
        by_key[key] = (name, value)
    expected: list[tuple[str, str, int, int, Any]] = []  # name, key, optimizer, group, value
    for o, optimizer in enumerate(opts):
        scheduler = _scheduler_of(optimizer, scheds)
        for g, group in enumerate(optimizer.param_groups):
            for name, (key, value) in chosen.items():
                if key not in group:
                    present = sorted(k for k in group if k != "params")
                    raise HyperparameterNotAppliedError(
                        f"{name}={value!r} did not reach the optimizer: param group {g} of "
                        f"optimizer {o} ({type(optimizer).__name__}) has no {key!r} key (its "
                        f"keys: {present}); map it to one of them with mapping={{{name!r}: "
                        f"KEY}}, or mapping={{{name!r}: None}} if it is not an optimizer "
                        "hyperparameter"
                    )
                value = _check_value(name, value, group[key])
                target = value
                if key == "lr" and scheduler is not None and hasattr(scheduler, "base_lrs"):
                    base = scheduler.base_lrs[g]
                    factor = group["lr"] / base if base else 1.0
                    scheduler.base_lrs[g] = value
                    if "initial_lr" in group:
                        group["initial_lr"] = value
                    target = value * factor
                group[key] = target
                expected.append((name, key, o, g, target))
        if scheduler is not None and hasattr(scheduler, "_last_lr"):
            scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    for name, key, o, g, target in expected:
        got = opts[o].param_groups[g].get(key)
        if not _same(got, target):
            raise HyperparameterNotAppliedError(
                f"{name}={params[name]!r} did not reach the optimizer: param group {g} of "
                f"optimizer {o} ({type(opts[o]).__name__}) reads {key}={got!r} after it was "
                f"set to {target!r}"
            )
    return {name: params[name] for name in chosen}


def _list(chosen: Mapping[str, tuple[str, Any]]) -> str:
    return ", ".join(f"{name}={value!r}" for name, (_, value) in chosen.items())
