"""Local search: move one parameter at a time around the best configuration so far."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from poptune._validation import check_factors, check_instance, check_int
from poptune.algorithms.base import Algorithm, Suggestion, SuggestResult
from poptune.algorithms.pbt.explore import format_value, scale_number
from poptune.exceptions import ConfigurationError, InvalidParameterError
from poptune.history import History
from poptune.parameters import Choice, Continuous, Discrete, Ordinal, Parameter
from poptune.trial import AlgorithmState, TrialStatus

__all__ = ["LocalSearch", "configuration_key", "neighbours"]

logger = logging.getLogger("poptune.algorithms")


def configuration_key(params: Mapping[str, Any], parameters: Sequence[Parameter]) -> str:
    """A JSON text identifying a configuration: the index of Choice/Ordinal values, integers,
    and floats rounded to 12 significant digits (so ``0.1 * 1.2 * 0.8`` and ``0.1 * 0.8 * 1.2``
    are the same point)."""
    out: list[Any] = []
    for p in parameters:
        value = params[p.name]
        if isinstance(p, (Choice, Ordinal)):
            out.append(p.index(value))
        elif isinstance(p, Discrete):
            out.append(int(value))
        elif isinstance(p, Continuous):
            out.append(float(f"{float(value):.12g}"))
        else:  # a user-defined Parameter subclass
            out.append(repr(value))
    return json.dumps(out)


def neighbours(
    config: Mapping[str, Any], parameters: Sequence[Parameter], factors: Sequence[float]
) -> Iterator[tuple[dict[str, Any], str]]:
    """Every configuration that differs from ``config`` in exactly one parameter, with a
    record of the move (``'lr: 0.01 -> 0.012 (x1.2)'``), in parameter order:

    * Choice: each other value;
    * Ordinal: one step down and one step up the list (where there is one);
    * Continuous: the value times each factor, clipped to the range;
    * Discrete: the same, rounded; a value that rounding leaves unchanged moves by one in the
      factor's direction; then clipped.

    Moves that would leave the value unchanged (a factor of 1, a bound) are left out.
    """
    for p in parameters:
        name = p.name
        old = config[name]
        moves: list[tuple[Any, str]] = []
        if isinstance(p, Choice):
            i = p.index(old)
            moves = [(v, "other value") for j, v in enumerate(p.range) if j != i]
        elif isinstance(p, Ordinal):
            i = p.index(old)
            moves = [(p.range[j], f"{j - i:+d}") for j in (i - 1, i + 1) if 0 <= j < len(p.range)]
        elif isinstance(p, Discrete):
            for factor in factors:
                if factor == 1:
                    continue
                candidate = int(round(scale_number(float(old), factor, p.low, p.high)))
                if candidate == old:
                    candidate = old + (1 if factor > 1 else -1)
                new = p.clip(candidate)
                if new != old:
                    moves.append((new, f"x{factor:g}" + (", clipped" if new != candidate else "")))
        elif isinstance(p, Continuous):
            for factor in factors:
                target = scale_number(float(old), factor, p.low, p.high)
                new = min(max(target, p.low), p.high)
                if new != old and math.isfinite(new):
                    moves.append((new, f"x{factor:g}" + (", clipped" if new != target else "")))
        for new, note in moves:
            out = dict(config)
            out[name] = new
            yield out, f"{name}: {format_value(old)} -> {format_value(new)} ({note})"


class LocalSearch(Algorithm):
    """Greedy local search from a seed configuration, one parameter at a time.

    The seed configuration comes first. Afterwards every suggestion is a *neighbour* of the
    best finished configuration so far — a copy of it with one parameter moved (Choice:
    another value; Ordinal: one step up or down; numbers: times a factor of
    ``perturbation_factors``, clipped to the range, integers rounded and moved by at least
    one) — drawn at random among the neighbours not suggested yet. A configuration is never
    suggested twice (the suggested ones are kept, as JSON keys, in ``history.state``).

    Each configuration runs ``repeat_trials`` times in a row (``trial.meta['repeat']`` is the
    index when there are several). It counts as finished when all its trials have finished;
    its value is the mean, over its COMPLETED trials, of each trial's best reported objective
    (the value of its final row in the results table). A configuration becomes the new best
    only if it is strictly better.

    When every neighbour of the best has been suggested, the answer is WAIT while some
    configuration is still running (it may become the new best and open a new neighbourhood)
    and DONE once all are finished. ``trial.meta['explore']`` says which move made the trial.

    Costs O(running configurations x repeat_trials + size of the neighbourhood) per
    suggestion.

    Args:
        seed_configuration: a value for every parameter of the study (checked when the study
            is created).
        perturbation_factors: factors numbers are multiplied by (each gives one neighbour).
        repeat_trials: trials per configuration (>= 1).

    Raises:
        ConfigurationError: a seed that is not a dict, misses a parameter, names an unknown
            one or has a value outside its range; factors that are not numbers > 0;
            ``repeat_trials`` that is not an int >= 1.
    """

    def __init__(
        self,
        seed_configuration: Mapping[str, Any],
        perturbation_factors: Sequence[float] = (0.8, 1.2),
        repeat_trials: int = 1,
    ) -> None:
        owner = "LocalSearch"
        what = "a dict of parameter values"
        check_instance(owner, "seed_configuration", seed_configuration, Mapping, what)
        self.seed_configuration = dict(seed_configuration)
        self.perturbation_factors = check_factors(owner, perturbation_factors)
        self.repeat_trials = check_int(owner, "repeat_trials", repeat_trials, 1)
        self._seed: dict[str, Any] | None = None
        self._parameters: list[Parameter] | None = None

    def setup(self, parameters: Sequence[Parameter], lower_is_better: bool) -> None:
        super().setup(parameters, lower_is_better)
        names = [p.name for p in parameters]
        unknown = sorted(set(self.seed_configuration) - set(names))
        if unknown:
            raise ConfigurationError(
                f"LocalSearch: seed_configuration names {unknown}, which are not parameters "
                f"of the study (parameters: {names})"
            )
        seed: dict[str, Any] = {}
        for p in parameters:
            if p.name not in self.seed_configuration:
                raise ConfigurationError(
                    f"LocalSearch: seed_configuration {self.seed_configuration!r} has no value "
                    f"for parameter {p.name!r}"
                )
            try:
                seed[p.name] = p.validate_value(self.seed_configuration[p.name])
            except InvalidParameterError as exc:
                raise ConfigurationError(f"LocalSearch: seed_configuration: {exc}") from None
        self._seed = seed
        self._parameters = list(parameters)

    # -- suggestions -------------------------------------------------------------------
    def _start(
        self, state: dict[str, Any], params: dict[str, Any], meta: dict[str, Any], tid: int
    ) -> Suggestion:
        assert self._parameters is not None
        key = configuration_key(params, self._parameters)
        state["configs"][key] = [tid]
        state["open"].append(key)
        state["last"] = key
        if self.repeat_trials > 1:
            meta["repeat"] = 0
        return Suggestion(params, meta)

    def _close_finished(self, state: dict[str, Any], history: History) -> list[str]:
        """Score the configurations whose trials have all finished; keep ``best`` up to date;
        return the keys still running."""
        lower = history.lower_is_better
        still = []
        for key in state["open"]:
            ids = state["configs"][key]
            trials = [history.get(i) for i in ids]
            if len(ids) < self.repeat_trials or any(t is None or not t.is_finished for t in trials):
                still.append(key)
                continue
            values = [
                t.best_observation(lower).objective  # type: ignore[union-attr]
                for t in trials
                if t is not None and t.status is TrialStatus.COMPLETED
            ]
            if not values:
                continue
            value = math.fsum(values) / len(values)
            best = state.get("best")
            if best is None or (value < best[1] if lower else value > best[1]):
                state["best"] = [key, value]
        state["open"] = still
        return still

    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        if self._seed is None:
            self.setup(history.parameters, history.lower_is_better)
        assert self._seed is not None and self._parameters is not None
        state = history.state
        configs: dict[str, list[int]] = state.setdefault("configs", {})
        state.setdefault("open", [])
        tid = history.next_trial_id
        last = state.get("last")
        if last is not None and len(configs[last]) < self.repeat_trials:
            ids = configs[last]
            first = history[ids[0]]
            meta = {**first.meta, "repeat": len(ids)}
            ids.append(tid)
            return Suggestion(history.hyperparameters(first), meta)
        if not configs:
            return self._start(state, dict(self._seed), {}, tid)
        running = self._close_finished(state, history)
        best = state.get("best")
        if best is None:
            if running:
                return AlgorithmState.WAIT
            logger.error(
                "LocalSearch: no trial of the seed configuration %r COMPLETED; nothing to "
                "search around, the study ends",
                self._seed,
            )
            return AlgorithmState.DONE
        center = history.hyperparameters(history[configs[best[0]][0]])
        fresh: dict[str, tuple[dict[str, Any], str]] = {}
        for params, note in neighbours(center, self._parameters, self.perturbation_factors):
            key = configuration_key(params, self._parameters)
            if key not in configs and key not in fresh:
                fresh[key] = (params, note)
        if not fresh:
            return AlgorithmState.WAIT if running else AlgorithmState.DONE
        options = list(fresh.values())
        params, note = options[min(int(rng.random() * len(options)), len(options) - 1)]
        return self._start(state, params, {"explore": note}, tid)
