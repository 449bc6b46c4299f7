"""Stopping rules: decide whether a running trial should stop early."""

from __future__ import annotations

import bisect
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from poptune._config import config_type, init_config
from poptune._validation import check_int
from poptune.history import History
from poptune.results import history_from_results
from poptune.trial import Trial

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MedianStoppingRule", "StoppingRule"]

#: Stopping rules are stored as ``module:Class`` (no built-in is written by a short name).
_NO_SHORT_NAMES: dict[str, str] = {}


class StoppingRule:
    """Base class of early-stopping rules.

    :meth:`~poptune.Study.should_trial_stop` calls :meth:`should_trial_stop` with the trial
    and a freshly synced :class:`~poptune.history.History`. A rule must derive its answer from
    the history alone (no counters in ``self``), so every worker gives the same answer.
    """

    def should_trial_stop(self, trial: Trial, history: History) -> bool:
        """True if ``trial`` should be stopped now."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """Constructor keyword arguments, JSON-serializable.

        Default, as for :meth:`~poptune.algorithms.Algorithm.get_config`: every named
        parameter of ``__init__`` read from the attribute of the same name.
        """
        return init_config(self)

    def to_config(self) -> dict[str, Any]:
        """``{'type': 'module:Class', **get_config()}``, by the rule
        :meth:`~poptune.algorithms.Algorithm.to_config` follows, with no short names: poptune
        has no registry of stopping rules, so a built-in one is stored as
        ``poptune.stopping:MedianStoppingRule`` (as saved studies hold it)."""
        return {"type": config_type(type(self), _NO_SHORT_NAMES), **self.get_config()}


class MedianStoppingRule(StoppingRule):
    """Stop a trial whose best objective so far is worse than the median of the other trials'
    best objectives *at the same iteration*.

    Let ``t`` be the trial's latest reported iteration and ``b`` its best objective so far
    (over all its observations, which all have iterations <= ``t``). Another trial *counts*
    when it has reached ``t`` — it has an observation at an iteration >= ``t`` — and has an
    observation at an iteration <= ``t``; its value is its best objective over its
    observations with iteration <= ``t`` (what it had achieved by then, not what it achieved
    over its whole run: SHERPA compared against whole runs, which stops good trials early in
    their run). Trials of every status count (their observations are real measurements);
    the trial itself does not. The trial is stopped when

    * ``t >= min_iterations``,
    * at least ``min_trials`` other trials count, and
    * ``b`` is strictly worse than their median (``lower_is_better`` decides "worse").

    A trial without observations is never stopped.

    Cost: the observations of finished trials never change, so they are indexed once (sorted
    iterations with running bests, and the trials ordered by their last iteration; an index
    kept on the rule, rebuilt from the History whenever it sees another History object, so the
    answer is always the one a full scan of the History gives). A call then costs
    O(R log k + U·k): R the trials that reached ``t`` (each a binary search into its ``k``
    observations), plus a direct look at the trials created since the oldest unfinished one
    (U, typically the number of trials running at once), plus the median, O(R).

    Args:
        min_iterations: never stop a trial whose latest iteration is below this (int >= 0).
        min_trials: never stop unless at least this many other trials count (int >= 1).

    Raises:
        ConfigurationError: an argument outside these ranges.
    """

    def __init__(self, min_iterations: int = 0, min_trials: int = 1) -> None:
        self.min_iterations = check_int("MedianStoppingRule", "min_iterations", min_iterations, 0)
        self.min_trials = check_int("MedianStoppingRule", "min_trials", min_trials, 1)
        self._index: _FinishedIndex | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"MedianStoppingRule(min_iterations={self.min_iterations}, "
            f"min_trials={self.min_trials})"
        )

    # the index is a cache: not part of a copy or a pickle
    def __getstate__(self) -> dict[str, Any]:
        return {"min_iterations": self.min_iterations, "min_trials": self.min_trials}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.min_iterations = state["min_iterations"]
        self.min_trials = state["min_trials"]
        self._index = None
        self._lock = threading.Lock()

    def should_trial_stop(
        self,
        trial: Trial | int,
        history: History | pd.DataFrame | None = None,
        lower_is_better: bool | None = None,
        *,
        results: pd.DataFrame | None = None,
    ) -> bool:
        """Whether ``trial`` should stop now, given the study's ``history`` (poptune's form,
        what a Study calls), or, as SHERPA called it, ``should_trial_stop(trial, results,
        lower_is_better)`` with SHERPA's results DataFrame (``results=`` or in the place of
        ``history``; ``lower_is_better`` defaults to True there). The table is read as
        :func:`poptune.results.history_from_results` reads it; the trial's own observations
        are its rows (or the trial's, when the table has none) and ``trial`` may be its id.
        """
        if results is not None or not isinstance(history, History):
            table = history if results is None else results
            lower = True if lower_is_better is None else bool(lower_is_better)
            history = history_from_results(table, (), lower)
            tid = trial if isinstance(trial, int) else trial.id
            trial = history.get(tid) or (trial if isinstance(trial, Trial) else Trial(tid, {}))
        elif isinstance(trial, int):
            trial = history[trial]
        obs = trial.observations
        if not obs:
            return False
        t = max(obs)
        if t < self.min_iterations:
            return False
        lower = history.lower_is_better
        own = [o.objective for o in obs.values()]
        best = min(own) if lower else max(own)
        values = self.values_at(history, t, exclude=trial.id)
        if len(values) < self.min_trials:
            return False
        median = float(np.median(values))
        return best > median if lower else best < median

    def values_at(
        self, history: History, iteration: int, exclude: int | None = None
    ) -> list[float]:
        """Best objective by ``iteration`` of every trial (but ``exclude``) that reached it."""
        with self._lock:
            index = self._index
            if index is None or index.history is not history:
                index = self._index = _FinishedIndex(history)
            index.advance()
            values = index.values_at(iteration, exclude)
            tail = range(index.frozen + 1, history.n_trials + 1)
        lower = history.lower_is_better
        for tid in tail:  # trials that may still change: looked at directly
            if tid == exclude:
                continue
            other = history.get(tid)
            if other is None:  # pragma: no cover - ids are dense
                continue
            value = _best_by(other, iteration, lower)
            if value is not None:
                values.append(value)
        return values


def _best_by(trial: Trial, iteration: int, lower: bool) -> float | None:
    """Best objective of ``trial`` over iterations <= ``iteration`` if it reached ``iteration``."""
    obs = trial.observations
    if not obs or max(obs) < iteration:
        return None
    values = [o.objective for it, o in obs.items() if it <= iteration]
    if not values:
        return None
    return min(values) if lower else max(values)


class _FinishedIndex:
    """Observations of the finished trials 1..``frozen`` (they never change), indexed.

    ``order`` holds ``(last iteration, trial id)`` sorted, so the trials that reached an
    iteration are a suffix of it; ``series[id]`` holds the trial's sorted iterations and the
    running best objective at each.
    """

    __slots__ = ("frozen", "history", "order", "series")

    def __init__(self, history: History) -> None:
        self.history = history
        self.frozen = 0
        self.order: list[tuple[int, int]] = []
        self.series: dict[int, tuple[list[int], list[float]]] = {}

    def advance(self) -> None:
        history = self.history
        lower = history.lower_is_better
        n = history.n_trials
        while self.frozen < n:
            trial = history.get(self.frozen + 1)
            if trial is None or not trial.is_finished:
                break
            self.frozen += 1
            obs = trial.observations
            if not obs:
                continue
            iterations = sorted(obs)
            running: list[float] = []
            best = 0.0
            for i, it in enumerate(iterations):
                value = obs[it].objective
                if i == 0 or (value < best if lower else value > best):
                    best = value
                running.append(best)
            self.series[trial.id] = (iterations, running)
            bisect.insort(self.order, (iterations[-1], trial.id))

    def values_at(self, iteration: int, exclude: int | None) -> list[float]:
        values: list[float] = []
        order, series = self.order, self.series
        for k in range(bisect.bisect_left(order, (iteration, 0)), len(order)):
            tid = order[k][1]
            if tid == exclude:
                continue
            iterations, running = series[tid]
            j = bisect.bisect_right(iterations, iteration) - 1
            if j >= 0:
                values.append(running[j])
        return values
