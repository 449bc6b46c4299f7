"""Run several algorithms one after another on the same study."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from poptune._validation import reject
from poptune.algorithms.base import (
    Algorithm,
    Suggestion,
    SuggestResult,
    algorithm_from_config,
    as_algorithm,
)
from poptune.exceptions import ConfigurationError
from poptune.history import History
from poptune.parameters import Parameter
from poptune.trial import AlgorithmState

__all__ = ["Chain"]


class Chain(Algorithm):
    """Run ``algorithms`` one after another on the same study (e.g. a grid, then a local
    search around its best point).

    The current algorithm makes every suggestion until it answers DONE; then the next one is
    asked, in the same call. WAIT is passed on as it is (the chain stays on the algorithm that
    waits). Each algorithm sees every trial of the study, including those its predecessors
    made, and keeps its own state in ``history.state['chain'][i]``; ``trial.meta['chain']`` is
    the index of the algorithm that made the trial. DONE after the last one is DONE.

    Costs O(1) per suggestion plus what the current algorithm costs.

    Args:
        algorithms: a non-empty sequence of :class:`~poptune.algorithms.Algorithm`.

    Raises:
        ConfigurationError: an empty sequence, or an element that is not an Algorithm.
    """

    def __init__(self, algorithms: Sequence[Algorithm]) -> None:
        if isinstance(algorithms, (Algorithm, str, bytes, Mapping)) or not isinstance(
            algorithms, Iterable
        ):
            what = "a list of Algorithm objects"
            reject("Chain", "algorithms", what, algorithms, wrong_type=True)
        items = list(algorithms)
        if not items:
            raise ConfigurationError("Chain: algorithms must not be empty, got []")
        built = []
        for i, algorithm in enumerate(items):
            if isinstance(algorithm, Mapping):
                algorithm = algorithm_from_config(algorithm)
            built.append(as_algorithm("Chain", algorithm, f"element {i} of algorithms"))
        self.algorithms = built
        keys: dict[str, None] = {}
        for algorithm in built:
            keys.update(dict.fromkeys(algorithm.reserved_keys))
        self.reserved_keys = tuple(keys)  # type: ignore[misc]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Chain:
        kwargs = dict(config)
        if set(kwargs) != {"algorithms"}:
            raise ConfigurationError(
                f"cannot rebuild Chain from {dict(config)!r}: expected the key 'algorithms'"
            )
        return cls(kwargs["algorithms"])

    def setup(self, parameters: Sequence[Parameter], lower_is_better: bool) -> None:
        super().setup(parameters, lower_is_better)
        for algorithm in self.algorithms:
            algorithm.setup(parameters, lower_is_better)

    def _states(self, history: History) -> list[dict[str, Any]]:
        states = history.state.setdefault("chain", [])
        while len(states) < len(self.algorithms):
            states.append({})
        return states

    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        state = history.state
        states = self._states(history)
        i = state.get("current", 0)
        while i < len(self.algorithms):
            view = history.scoped(states[i])
            result = self.algorithms[i].suggest(view, rng)
            states[i] = view.state
            if result is None or result is AlgorithmState.DONE:
                i += 1
                state["current"] = i
                continue
            if isinstance(result, Suggestion):
                return Suggestion(result.parameters, {**result.meta, "chain": i})
            if isinstance(result, dict):
                return Suggestion(result, {"chain": i})
            return result  # WAIT (or something the study will refuse)
        return AlgorithmState.DONE

    def pending_checkpoints(self, history: History) -> set[str]:
        states = history.state.get("chain", [])
        keep: set[str] = set()
        for algorithm, sub in zip(self.algorithms, states, strict=False):
            keep |= algorithm.pending_checkpoints(history.scoped(sub))
        return keep

    def get_config(self) -> dict[str, Any]:
        return {"algorithms": [algorithm.to_config() for algorithm in self.algorithms]}
