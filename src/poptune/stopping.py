"""Stopping rules: decide whether a running trial should stop early."""

from __future__ import annotations

import struct
import threading
from itertools import chain, compress, repeat
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from poptune._config import config_type, init_config
from poptune._validation import check_int
from poptune.history import History
from poptune.results import history_from_results
from poptune.trial import _FINISHED, Trial

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MedianStoppingRule", "StoppingRule"]

#: Stopping rules are stored as ``module:Class`` (no built-in is written by a short name).
_NO_SHORT_NAMES: dict[str, str] = {}
#: Observations the index reads at a time (whole trials: about this many).
_CHUNK = 4096


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

    Cost: the observations of finished trials never change, so they are indexed once, as
    they finish, into flat numpy arrays (an index kept on the rule, rebuilt from the History
    whenever it sees another History object, so the answer is always the one a full scan of
    the History gives). The first call indexes the whole history, reading every observation
    in C (no Python code per finished trial or observation), a few thousand at a time: about
    11 ms of CPU (the least of repeated runs on a busy 2-core machine) for 10,000 trials
    holding 104,000 observations. A call then costs one vectorised pass over the N indexed
    observations, O(N) in numpy (cached per iteration until another trial finishes), plus a
    look at each unfinished trial (U, typically the number running at once), a numpy mask
    over the ids since the oldest unfinished one, and the median, O(R) for the R trials that
    count.

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
        values = self._values_at(history, t, exclude=trial.id)
        if len(values) < self.min_trials:
            return False
        median = float(np.median(values))
        return best > median if lower else best < median

    def values_at(
        self, history: History, iteration: int, exclude: int | None = None
    ) -> list[float]:
        """Best objective by ``iteration`` of every trial (but ``exclude``) that reached it."""
        return self._values_at(history, iteration, exclude).tolist()

    def _values_at(self, history: History, iteration: int, exclude: int | None) -> np.ndarray:
        with self._lock:
            index = self._index
            if index is None or index.history is not history:
                index = self._index = _FinishedIndex(history)
            tail = index.advance()
            values = index.values_at(iteration, exclude)
        lower = history.lower_is_better
        more = []
        for other in tail:  # trials that may still change: looked at directly
            if other.id == exclude:
                continue
            value = _best_by(other, iteration, lower)
            if value is not None:
                more.append(value)
        return np.concatenate([values, more]) if more else values


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
    """The observations of the finished trials (they never change), as flat numpy arrays.

    ``its`` and ``objectives`` hold one entry per observation, trial by trial; ``ids``,
    ``starts`` (where a trial's observations begin), ``first`` and ``last`` (its lowest and
    highest iteration) one per trial with observations. The trials that reached ``t`` and
    their bests by ``t`` are then one vectorised pass (:meth:`values_at`), cached per
    iteration until more trials finish. Trials are added as they finish, whatever their
    order: ``dense`` is the id up to which every trial is indexed, ``_done`` marks (by id - 1)
    the ones that are.
    """

    __slots__ = ("_arrays", "_cache", "_done", "_wide", "dense", "history")

    def __init__(self, history: History) -> None:
        self.history = history
        self.dense = 0
        self._done = np.zeros(0, dtype=bool)  # by id - 1: indexed (finished when looked at)
        self._wide = False  # an iteration outside 0..255 was seen
        # (its, objectives) per observation; (ids, starts, first, last) per trial; the
        # iterations are uint8 while every one is in 0..255, int64 once one is not
        self._arrays: tuple[np.ndarray, ...] | None = None
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def advance(self) -> list[Trial]:
        """Index the trials finished since the last call; the unfinished ones (to look at
        directly).

        Only the ids above ``dense`` not yet indexed are looked at, in bulk (C-level maps,
        numpy masks), not one by one in Python."""
        history = self.history
        n, dense, done = history.n_trials, self.dense, self._done
        if n <= dense:
            return []
        if n > len(done):  # room for the new ids, doubling (a study grows a trial at a time)
            grown = np.zeros(max(n, 2 * len(done)), dtype=bool)
            grown[: len(done)] = done
            done = self._done = grown
        look = np.flatnonzero(~done[dense:n]) + (dense + 1)  # the ids to look at
        # a plain History's own dict (History.get only wraps it); a subclass's get otherwise
        get = history._trials.get if type(history).get is History.get else history.get
        found = list(map(get, look.tolist()))
        statuses = map(getattr, found, repeat("status"), repeat(None))  # None: no such trial
        finished = np.fromiter(map(_FINISHED.__contains__, statuses), bool, count=len(found))
        tail = list(compress(found, (~finished).tolist()))
        if None in tail:  # pragma: no cover - ids are dense
            tail = [t for t in tail if t is not None]
        new = look[finished]
        if len(new):
            self._extend(list(map(attrgetter("_obs"), compress(found, finished.tolist()))), new)
            self._cache.clear()
            done[new - 1] = True
        gaps = np.flatnonzero(~done[dense:n])
        self.dense = dense + (int(gaps[0]) if len(gaps) else n - dense)
        return tail

    def _extend(self, records: list[dict[int, Any]], ids: np.ndarray) -> None:
        """Index the finished trials whose records (``trial._obs``) these are, ids ``ids``."""
        counts = np.fromiter(map(len, records), dtype=np.int64, count=len(records))
        ends = np.cumsum(counts)
        total = int(ends[-1]) if len(ends) else 0
        if not total:
            return
        if not self._wide:  # a wide study shows it at once, mostly: spare the bytes' try
            self._wide = any(min(r) < 0 or max(r) > 255 for r in (records[0], records[-1]) if r)
        # iterations as bytes while every one is in 0..255 (most studies), int64 otherwise
        its = np.empty(total, dtype=np.int64 if self._wide else np.uint8)
        objectives = np.empty(total)
        # read in chunks of whole trials, about _CHUNK observations each: a chunk's dicts are
        # still in cache when its objectives are read, after its iterations
        cuts = np.searchsorted(ends, np.arange(_CHUNK, total, _CHUNK), side="right")
        cuts = np.unique(cuts[(cuts > 0) & (cuts < len(records))]).tolist()
        lo = 0
        for i, j in zip([0, *cuts], [*cuts, len(records)], strict=True):
            hi = int(ends[j - 1])
            its = self._read_chunk(records[i:j], its, objectives, lo, hi)
            lo = hi
        has = counts > 0  # trials without observations are left out
        ids, counts, ends = ids[has], counts[has], ends[has]
        starts = ends - counts
        # a trial's iterations rise as it reports them (mostly): its first and last are then
        # at its ends; a min and max over each trial's otherwise
        rising = its[1:] > its[:-1]
        rising[ends[:-1] - 1] = True  # where one trial's iterations end and the next begin
        if rising.all():
            first, last = its[starts], its[ends - 1]
        else:
            first, last = np.minimum.reduceat(its, starts), np.maximum.reduceat(its, starts)
        if self._arrays is not None:
            old = self._arrays
            starts += len(old[0])
            new = (its, objectives, ids, starts, first, last)
            self._arrays = tuple(np.concatenate([a, b]) for a, b in zip(old, new, strict=True))
        else:
            self._arrays = (its, objectives, ids, starts, first, last)

    def _read_chunk(
        self, records: list[dict[int, Any]], its: np.ndarray, objectives: np.ndarray, a: int, b: int
    ) -> np.ndarray:
        """Fill ``its[a:b]`` and ``objectives[a:b]`` with the iterations and objectives of
        ``records`` (the trials' ``_obs``: (objective, context, seq) by iteration), in C (no
        Python code per observation); returns ``its``, a wider copy once an iteration
        outside 0..255 shows up."""
        if its.dtype == np.uint8:
            try:
                its[a:b] = np.frombuffer(bytearray(chain.from_iterable(records)), np.uint8)
            except ValueError:  # one outside 0..255: int64 from now on, for this index
                self._wide = True
                its = its.astype(np.int64)
        if its.dtype != np.uint8:
            its[a:b] = np.fromiter(chain.from_iterable(records), np.int64, count=b - a)
        # struct makes each objective a double as numpy does (a float's value, an int's
        # nearest double), at a fraction of numpy.fromiter's cost per value; what it refuses
        # (a str, None...) numpy reads, as it always did
        values = map(itemgetter(0), chain.from_iterable(map(dict.values, records)))
        try:
            struct.pack_into(f"{b - a}d", objectives, 8 * a, *values)
        except struct.error:
            values = map(itemgetter(0), chain.from_iterable(map(dict.values, records)))
            objectives[a:b] = np.fromiter(values, dtype=float, count=b - a)
        return its

    def values_at(self, iteration: int, exclude: int | None) -> np.ndarray:
        """The best objective by ``iteration`` of each indexed trial (but ``exclude``) that
        reached it: observed at an iteration <= ``iteration`` and at one >= it."""
        cached = self._cache.get(iteration)
        if cached is None:
            if self._arrays is None:
                return np.zeros(0)
            its, objectives, ids, starts, first, last = self._arrays
            lower = self.history.lower_is_better
            t: Any = iteration
            if its.dtype == np.uint8:  # iterations in 0..255 (bytes): t as a type that holds
                t = np.int16(min(max(iteration, -1), 256))  # it, the same comparisons
            # the observations after ``iteration`` can never be a trial's best by then
            masked = np.where(its <= t, objectives, np.inf if lower else -np.inf)
            best = (np.minimum if lower else np.maximum).reduceat(masked, starts)
            counts = (first <= t) & (last >= t)
            cached = self._cache[iteration] = (best[counts], ids[counts])
        values, owners = cached
        return values if exclude is None else values[owners != exclude]
