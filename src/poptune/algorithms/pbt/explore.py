"""Explore: perturb a copied configuration, with a human-readable record of each change.

Rules, per parameter type (a factor is drawn uniformly from ``perturbation_factors``):

* With probability ``resample_probability`` any parameter is redrawn from its prior, as in
  the paper: ``lr: 0.0034 -> 0.0091 (resampled)``. The draw stays inside
  ``parameter_range`` when one is given (numbers: uniform on the parameter's scale between
  its bounds; Choice/Ordinal: one of its values), see :func:`resample`.
* ``Continuous``: a value other than 0 is multiplied by the factor (the sign is kept, the
  magnitude scales). A value of exactly 0 cannot be scaled, so it moves by
  ``(factor - 1) x 10%`` of the allowed range's width. Then clipped to ``parameter_range``
  (or the parameter's own range): ``lr: 0.0034 -> 0.0041 (x1.2)``.
* ``Discrete``: the same, then *rounded* (SHERPA truncated, so 1 x 1.2 stayed 1 forever and
  values drifted down). If rounding would leave the value unchanged, it moves by one in the
  factor's direction, so every perturbation with a factor other than 1 changes the value
  unless a bound stops it. Then clipped.
* ``Ordinal``: one step up the list for a factor > 1, down for a factor < 1 (``(+1)``),
  reflected at the ends so the value still changes.
* ``Choice``: resampled uniformly among the allowed values (never multiplied).

A parameter with a resample distribution (PBT's ``resample_distributions``) is redrawn from
it instead of its prior, both when resampled and, for a Choice, when perturbed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from poptune.history import History
from poptune.parameters import Choice, Continuous, Discrete, Ordinal, Parameter
from poptune.trial import Trial

__all__ = [
    "ExploreHook",
    "FounderFactory",
    "RunningConfigs",
    "explore",
    "format_value",
    "pick",
    "resample",
    "scale_number",
]

#: A function giving ``[(generation, config), ...]``: the segments that run (or will run)
#: alongside the one being explored (PB2 uses them; PBT's perturbation ignores them).
RunningConfigs = Callable[[], list[tuple[int, dict[str, Any]]]]

#: The explore hook PBT's modes call for an exploit,
#: ``explore(history, donor, generation, rng, running) -> (config, records)``: the study
#: parameters of a segment of ``generation`` that copies ``donor``, and one record line per
#: explored parameter (see :meth:`PopulationBasedTraining.explore
#: <poptune.algorithms.PopulationBasedTraining.explore>`).
ExploreHook = Callable[
    [History, Trial, int, np.random.Generator, RunningConfigs], tuple[dict[str, Any], list[str]]
]

#: The founder factory PBT's modes call for generation 1,
#: ``founder(history, member, rng) -> config``: the study parameters of founder ``member``.
FounderFactory = Callable[[History, int, np.random.Generator], dict[str, Any]]


def format_value(value: Any) -> str:
    """Compact text for explore records: ``0.003391``, ``32``, ``'relu'``."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def pick(values: Sequence[Any], rng: np.random.Generator) -> Any:
    """One of ``values``, uniformly, from one draw of ``rng`` (PBT's and explore's choice)."""
    return values[min(int(rng.random() * len(values)), len(values) - 1)]


def _bounds(parameter: Parameter, allowed: Any) -> tuple[float, float]:
    if allowed is None:
        return parameter.low, parameter.high  # type: ignore[attr-defined]
    return float(allowed[0]), float(allowed[1])


def resample(parameter: Parameter, allowed: Any, rng: np.random.Generator) -> Any:
    """One value of ``parameter`` drawn from its prior restricted to ``allowed`` (its
    ``parameter_range`` entry, or None for its own range), with one draw of ``rng``.

    Continuous and Discrete: uniform over ``[low, high]`` on the parameter's scale (log scale:
    uniform in log space), a Discrete over the integers inside the bounds; Choice and Ordinal:
    uniform over the allowed values.
    """
    if allowed is None:
        return parameter.sample(rng)
    if isinstance(parameter, (Choice, Ordinal)):
        return pick(allowed, rng)
    if isinstance(parameter, Discrete):
        low, high = math.ceil(allowed[0]), math.floor(allowed[1])
        if low >= high:  # one integer inside (or none): where clipping puts every value
            rng.random()
            return parameter.clip(float(allowed[0]), (allowed[0], allowed[1]))
        return Discrete(parameter.name, [low, high], parameter.scale).sample(rng)
    if isinstance(parameter, Continuous):
        bounds = [float(allowed[0]), float(allowed[1])]
        return Continuous(parameter.name, bounds, parameter.scale).sample(rng)
    return parameter.sample(rng)


def scale_number(value: float, factor: float, low: float, high: float) -> float:
    """``value * factor``; a 0 (which cannot be scaled) moves by (factor - 1) x 10% of the
    width of ``[low, high]`` (explore's rule, also LocalSearch's)."""
    if value == 0:
        return (factor - 1.0) * 0.1 * (high - low)
    return value * factor


def explore(
    config: Mapping[str, Any],
    parameters: Sequence[Parameter],
    rng: np.random.Generator,
    perturbation_factors: Sequence[float],
    resample_probability: float = 0.0,
    parameter_range: Mapping[str, Any] | None = None,
    resamplers: Mapping[str, Callable[[np.random.Generator], Any]] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Return a perturbed copy of ``config`` and one record line per parameter.

    Args:
        config: the donor's values of the study parameters.
        parameters: the study parameters (their types decide the rule).
        rng: the suggestion's generator.
        perturbation_factors: factors to draw from, e.g. ``(0.8, 1.2)``.
        resample_probability: chance of redrawing a parameter from its prior instead.
        parameter_range: ``{name: [low, high]}`` (numbers) or ``{name: [values]}``
            (Choice/Ordinal) limiting where explore may go; default: the parameter's range.
        resamplers: ``{name: draw}``, ``draw(rng) -> value``: how a parameter is redrawn
            (with probability ``resample_probability``, and a Choice's perturbation) instead
            of from its prior (PBT's ``resample_distributions``). A parameter of ``config``
            left out of ``parameters`` is copied unchanged.
    """
    ranges = parameter_range or {}
    draws = resamplers or {}
    out = dict(config)
    records: list[str] = []
    for p in parameters:
        name = p.name
        if name not in config:
            continue
        old = config[name]
        allowed = ranges.get(name)
        if resample_probability > 0 and rng.random() < resample_probability:
            draw = draws.get(name)
            new = draw(rng) if draw is not None else resample(p, allowed, rng)
            out[name] = new
            records.append(f"{name}: {format_value(old)} -> {format_value(new)} (resampled)")
            continue
        factor = float(pick(perturbation_factors, rng))
        if isinstance(p, Choice):
            values = list(allowed) if allowed is not None else p.range
            draw = draws.get(name)
            new = draw(rng) if draw is not None else pick(values, rng)
            note = "resampled"
        elif isinstance(p, Ordinal):
            values = list(allowed) if allowed is not None else p.range
            step = 0 if factor == 1 else (1 if factor > 1 else -1)
            if old in values:
                i = values.index(old)
                j = i + step
                if not 0 <= j < len(values):  # reflect at the ends
                    j = i - step if 0 <= i - step < len(values) else i
                new = values[j]
                note = f"{j - i:+d}"
            else:  # outside the allowed values: start again inside them
                new = pick(values, rng)
                note = "resampled"
        elif isinstance(p, Discrete):
            low, high = _bounds(p, allowed)
            target = scale_number(float(old), factor, low, high)
            candidate = int(round(target))
            if candidate == old and factor != 1:
                candidate = old + (1 if factor > 1 else -1)
            new = p.clip(candidate, (low, high))
            note = f"x{factor:g}" + (", clipped" if new != candidate else "")
        elif isinstance(p, Continuous):
            low, high = _bounds(p, allowed)
            target = scale_number(float(old), factor, low, high)
            new = min(max(target, low), high)
            note = f"x{factor:g}" + (", clipped" if new != target else "")
        else:  # a user-defined Parameter subclass: resample it
            new = p.sample(rng)
            note = "resampled"
        if isinstance(new, float) and not math.isfinite(new):  # pragma: no cover - defensive
            new = old
        out[name] = new
        records.append(f"{name}: {format_value(old)} -> {format_value(new)} ({note})")
    return out, records
