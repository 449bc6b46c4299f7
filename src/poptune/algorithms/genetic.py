"""A simple genetic algorithm: uniform crossover of good parents, then mutation."""

from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np

from poptune._validation import check_fraction, check_int
from poptune.algorithms.base import Algorithm, Suggestion, SuggestResult
from poptune.history import History
from poptune.trial import AlgorithmState, TrialStatus

__all__ = ["Genetic"]

#: Random samples are suggested until this many trials have COMPLETED.
MIN_COMPLETED = 3


class Genetic(Algorithm):
    """Genetic search over the study's COMPLETED trials (SHERPA's signature).

    Until 3 trials have COMPLETED, suggestions are random samples. Afterwards the COMPLETED
    trials of the study are ranked by their best reported objective (the value of their final
    row in the results table; ties: lower id first) and the top third (``ceil(n / 3)``
    trials) are the possible parents. Two different parents are drawn from them (the same one
    twice when the top third is a single trial); the child takes each parameter from one of
    the two with probability 1/2 (uniform crossover), and each parameter is then redrawn from
    its prior with probability ``mutation_rate``. ``trial.meta['parents']`` holds the two
    parents' ids.

    The COMPLETED trials are kept sorted in ``history.state['ranked']``; a suggestion only
    looks at the trials made or still unfinished since the previous one, so it costs
    O(unfinished trials) plus a list insertion per newly completed trial.

    Args:
        mutation_rate: probability, per parameter, of resampling it (in [0, 1]).
        max_num_trials: DONE after this many suggestions; None (default) never ends.

    Raises:
        ConfigurationError: ``mutation_rate`` outside [0, 1] or ``max_num_trials`` not a
            positive int or None.
    """

    def __init__(self, mutation_rate: float = 0.1, max_num_trials: int | None = None) -> None:
        self.mutation_rate = check_fraction("Genetic", "mutation_rate", mutation_rate, 0.0, 1.0)
        self.max_num_trials = check_int(
            "Genetic", "max_num_trials", max_num_trials, 1, allow_none=True
        )

    @staticmethod
    def _refresh(state: dict[str, Any], history: History) -> list[list[Any]]:
        """Bring ``state['ranked']`` (``[key, id]`` of every COMPLETED trial of the study,
        best first) up to date: look at the trials made since the last suggestion and at
        those that were unfinished then (``state['watch']``), never at the others."""
        ranked: list[list[Any]] = state.setdefault("ranked", [])
        watch: list[int] = state.get("watch", [])
        start = state.get("seen", 0) + 1
        end = history.next_trial_id
        lower = history.lower_is_better
        sign = 1.0 if lower else -1.0
        still = []
        for tid in [*watch, *range(start, end)]:
            trial = history.get(tid)
            if trial is None:  # not a trial of this view (Repeat's aggregated history)
                continue
            if not trial.is_finished:
                still.append(tid)
            elif trial.status is TrialStatus.COMPLETED:
                bisect.insort(ranked, [sign * trial.score(lower, "best"), tid])
        state["watch"] = still
        state["seen"] = max(end - 1, start - 1)
        return ranked

    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        state = history.state
        n = state.get("n", 0)
        if self.max_num_trials is not None and n >= self.max_num_trials:
            return AlgorithmState.DONE
        state["n"] = n + 1
        ranked = self._refresh(state, history)
        if len(ranked) < MIN_COMPLETED:
            return {p.name: p.sample(rng) for p in history.parameters}
        k = math.ceil(len(ranked) / 3)
        i = min(int(rng.random() * k), k - 1)
        if k >= 2:
            j = min(int(rng.random() * (k - 1)), k - 2)
            j = j + 1 if j >= i else j
        else:
            j = i
        mother, father = history[ranked[i][1]], history[ranked[j][1]]
        child: dict[str, Any] = {}
        for p in history.parameters:
            source = mother if rng.random() < 0.5 else father
            value = source.parameters[p.name]
            if rng.random() < self.mutation_rate:
                value = p.sample(rng)
            child[p.name] = value
        return Suggestion(child, {"parents": [mother.id, father.id]})
