"""Hyperband (Li et al. 2017) made asynchronous: brackets of ASHA taken in turn."""

from __future__ import annotations

from typing import Any

import numpy as np

from poptune.algorithms.base import Algorithm, SuggestResult
from poptune.algorithms.successive_halving import (
    RESERVED,
    Ladder,
    adopt_retries,
    check_arguments,
    max_exponent,
)
from poptune.history import History
from poptune.trial import AlgorithmState

__all__ = ["Hyperband"]


class Hyperband(Algorithm):
    """Hyperband as brackets of asynchronous successive halving, taken round-robin.

    With ``s_max = floor(log_eta(R / r))``, bracket ``s`` (0 .. s_max) is
    :class:`~poptune.algorithms.successive_halving.SuccessiveHalving` with early-stopping
    rate ``s``: its rung ``k`` trains with ``r * eta**(k + s)``, so bracket 0 starts many
    configurations on the smallest resource and halves aggressively, and bracket ``s_max``
    trains every configuration with the full resource (random search). Every bracket's top
    rung trains with the same, largest resource.

    Suggestions go to the brackets in turn (0, 1, ..., s_max, 0, 1, ...): the bracket whose
    turn it is promotes a configuration of its own when one is in the top ``1/eta`` of a rung
    of that bracket, else starts a new one on its bottom rung. This is the asynchronous
    variant of the ASHA paper (no bracket ever waits for another); the synchronous schedule of
    the Hyperband paper (n_i configurations per bracket, then halving) is not kept because it
    makes workers idle.

    Every trial's ``parameters`` carry ``resource``, ``rung`` (within its bracket),
    ``load_from`` and ``save_to`` as in SuccessiveHalving; ``trial.meta['bracket']`` is ``s``.
    DONE once ``max_finished_configs`` configurations, all brackets together, COMPLETED a
    top rung; WAIT while that many are completed or running there. The state is per-bracket
    rung lists, so a suggestion costs O(running trials) plus a binary search per rung.

    Args:
        r: the smallest resource (> 0).
        R: the largest resource (>= r).
        eta: reduction factor, an int >= 2.
        max_finished_configs: DONE after this many configurations completed a top rung.

    Raises:
        ConfigurationError: an argument outside these ranges.
    """

    reserved_keys = RESERVED

    def __init__(
        self,
        r: float = 1,
        R: float = 9,  # noqa: N803 - SHERPA's name
        eta: int = 3,
        max_finished_configs: int = 50,
    ) -> None:
        self.r, self.R, self.eta, self.max_finished_configs, _ = check_arguments(
            "Hyperband", r, R, eta, max_finished_configs
        )
        self.s_max = max_exponent(self.r, self.R, self.eta)
        self.ladders = [Ladder(self.r, self.R, self.eta, s) for s in range(self.s_max + 1)]

    def _brackets(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        brackets = state.get("brackets")
        if brackets is None:
            brackets = state["brackets"] = [ladder.new_state() for ladder in self.ladders]
        return brackets

    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        state = history.state
        brackets = self._brackets(state)
        adopt_retries(
            state, history, {s: (ladder, brackets[s]) for s, ladder in enumerate(self.ladders)}
        )
        completed = live = 0
        for ladder, bracket in zip(self.ladders, brackets, strict=True):
            ladder.refresh(bracket, history)
            c, n = ladder.top_counts(bracket)
            completed += c
            live += n
        if completed >= self.max_finished_configs:
            return AlgorithmState.DONE
        if live >= self.max_finished_configs:
            return AlgorithmState.WAIT
        turn = state.get("turn", 0)
        s = turn % len(self.ladders)
        state["turn"] = turn + 1
        suggestion = self.ladders[s].suggest(brackets[s], history, rng)
        state["seen"] = history.next_trial_id
        return suggestion

    def pending_checkpoints(self, history: History) -> set[str]:
        brackets = history.state.get("brackets")
        if brackets is None:
            return set()
        keep: set[str] = set()
        for ladder, bracket in zip(self.ladders, brackets, strict=True):
            keep |= ladder.pending(bracket, history)
        return keep
