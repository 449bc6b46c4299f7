"""Random search."""

from __future__ import annotations

from operator import call

import numpy as np

from poptune._validation import check_int
from poptune.algorithms.base import Algorithm, SuggestResult
from poptune.history import History
from poptune.parameters import uniform_makers
from poptune.trial import AlgorithmState

__all__ = ["RandomSearch"]


class RandomSearch(Algorithm):
    """Independent random samples of every parameter.

    Args:
        max_num_trials: DONE after this many suggestions; None (default) never ends.

    Raises:
        ConfigurationError: ``max_num_trials`` is not a positive int or None.
    """

    def __init__(self, max_num_trials: int | None = None) -> None:
        self.max_num_trials = check_int(
            "RandomSearch", "max_num_trials", max_num_trials, 1, allow_none=True
        )

    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        state = history.state
        n = state.get("n", 0)
        if self.max_num_trials is not None and n >= self.max_num_trials:
            return AlgorithmState.DONE
        state["n"] = n + 1
        parameters = history.parameters
        if type(rng) is np.random.Generator:
            plan = self.__dict__.get("_poptune_plan")
            if plan is None or plan[0] is not parameters:
                names = [p.name for p in parameters]
                plan = self.__dict__["_poptune_plan"] = (
                    parameters,
                    names,
                    uniform_makers(parameters),
                )
            _, names, makers = plan
            if makers is not None:  # one draw each: drawn together, the same numbers
                draws = rng.random(len(names)).tolist()
                return dict(zip(names, map(call, makers, draws), strict=True))  # make(u) each
        return {p.name: p.sample(rng) for p in parameters}
