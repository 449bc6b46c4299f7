"""What PBT's two modes share: their settings and the two hooks they are given.

:class:`~poptune.algorithms.PopulationBasedTraining` keeps the arguments, checks them and
builds one mode object (:class:`~poptune.algorithms.pbt.synchronous.SynchronousPBT` or
:class:`~poptune.algorithms.pbt.asynchronous.AsynchronousPBT`) that its ``suggest`` and
``pending_checkpoints`` delegate to. A mode never calls back into the algorithm's privates:
everything it needs from outside comes through the two hooks below, so the modes are peers
that neither import each other nor the algorithm.
"""

from __future__ import annotations

import abc

import numpy as np

from poptune.algorithms.base import SuggestResult
from poptune.algorithms.pbt.explore import ExploreHook, FounderFactory
from poptune.history import History

__all__ = ["PBTMode"]


class PBTMode(abc.ABC):
    """A PBT mode: decides every segment of a population from the history.

    Args:
        num_generations: segments per member (generations, in synchronous mode).
        population_size: members.
        exploit: the selection strategy (``'truncation'``, ``'tournament'``, ``'ttest'``).
        rank_by: ``'last'`` or ``'best'``.
        quantile_fraction: the share of the bottom and top quantiles.
        ttest_window: how many recent values the t-test compares.
        founder: the founder factory ``founder(history, member, rng) -> config``: the study
            parameters of member ``member``'s first segment.
        explore: the explore hook ``explore(history, donor, generation, rng, running) ->
            (config, records)``: the study parameters of a segment that copies ``donor``
            (the algorithm's explore step: :meth:`PopulationBasedTraining.explore
            <poptune.algorithms.PopulationBasedTraining.explore>`, which PB2 overrides, then
            ``hyperparameters`` and ``explore_fn``). Called once per exploit.
        burn_in: segments a member must have completed before it may be exploited
            (asynchronous mode; the synchronous mode has no such rule and requires 0).
    """

    def __init__(
        self,
        *,
        num_generations: int,
        population_size: int,
        exploit: str,
        rank_by: str,
        quantile_fraction: float,
        ttest_window: int,
        founder: FounderFactory,
        explore: ExploreHook,
        burn_in: int = 0,
    ) -> None:
        self.num_generations = num_generations
        self.population_size = population_size
        self.exploit = exploit
        self.rank_by = rank_by
        self.quantile_fraction = quantile_fraction
        self.ttest_window = ttest_window
        self.founder = founder
        self.explore = explore
        self.burn_in = burn_in

    @abc.abstractmethod
    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        """The next segment (a :class:`~poptune.algorithms.base.Suggestion`), WAIT or DONE."""

    @abc.abstractmethod
    def pending_checkpoints(self, history: History) -> set[str]:
        """Checkpoint names that segments this mode has decided on but not created will load."""
