"""History: the algorithm's window on a study, what algorithms and stopping rules receive.

The trials and indexes are read-only to them; ``state`` is the one writable part: the
algorithm's JSON state, which the Study stores in the same transaction as the suggestion.

It is synced incrementally from the storage (only trials changed since the last sync are
re-indexed), so a suggestion costs the same at trial 10 and at trial 100,000; a History
:meth:`~History.bind`-ed to a :class:`~poptune.storage.MemoryStorage` shares the storage's
own indexes instead and syncing it reads nothing. Algorithms never see a pandas DataFrame.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from poptune._trial_index import TrialIndex
from poptune.parameters import Parameter
from poptune.storage.base import Storage
from poptune.trial import Trial

__all__ = ["History"]


class History:
    """Trials of a study with the indexes algorithms need.

    Attributes:
        parameters: the study's parameters, in the order given.
        lower_is_better: direction of the objective.
        state: the algorithm's JSON state; an algorithm may read and change it while it
            makes a suggestion (the study stores it in the same transaction). In a view made
            by :meth:`scoped`, the wrapped algorithm's own part of it.
        next_trial_id: the id the suggestion being made will get.
    """

    __slots__ = (
        "_by_generation",
        "_completed",
        "_indexed",
        "_ix",
        "_live",
        "_root",
        "_trials",
        "_unfinished",
        "lower_is_better",
        "next_trial_id",
        "parameter_names",
        "parameter_set",
        "parameters",
        "state",
        "version",
    )

    def __init__(self, parameters: Sequence[Parameter], lower_is_better: bool) -> None:
        self.parameters = list(parameters)
        self.parameter_names = [p.name for p in self.parameters]
        self.parameter_set = frozenset(self.parameter_names)  # the same names, for subset tests
        self.lower_is_better = lower_is_better
        self.state: dict[str, Any] = {}
        self._root: dict[str, Any] | None = None
        self.next_trial_id = 1
        self.version = 0
        self._adopt(TrialIndex(), bound=False)

    def _adopt(self, ix: TrialIndex, bound: bool) -> None:
        # The read paths use the containers directly (one attribute lookup each)
        self._ix, self._live = ix, bound
        self._trials, self._indexed, self._unfinished = ix.trials, ix.indexed, ix.unfinished
        self._completed, self._by_generation = ix.completed, ix.by_generation

    @classmethod
    def from_trials(
        cls, parameters: Sequence[Parameter], lower_is_better: bool, trials: Iterable[Trial]
    ) -> History:
        """A history holding ``trials`` (in id order), read from somewhere other than a
        storage (SHERPA's results table); ``next_trial_id`` is one above the highest id, as
        ids in such a table need not be dense. It is never synced."""
        history = cls(parameters, lower_is_better)
        last = 0
        for trial in trials:
            history._index(trial)
            last = max(last, trial.id)
        history.next_trial_id = last + 1
        return history

    # -- syncing ---------------------------------------------------------------------------
    def bind(self, storage: Storage, study_id: int) -> bool:
        """Share the indexes ``storage`` keeps of the study, where it keeps them in this
        process (:meth:`~poptune.storage.Storage.trial_index`: a MemoryStorage), and say whether
        it does. A bound History follows every change at once, as the storage makes it (under
        the study's lock); :meth:`sync` then only refreshes ``version`` and
        ``next_trial_id``. Otherwise nothing changes and :meth:`sync` reads changes as usual.
        Call it on a fresh History (what it indexed before is dropped)."""
        ix = storage.trial_index(study_id)
        if ix is None:
            return False
        self._adopt(ix, bound=True)
        self.version = ix.version
        self.next_trial_id = len(ix.trials) + 1
        return True

    def sync(self, storage: Storage, study_id: int, refresh: bool = True) -> list[Trial]:
        """Pull the trials changed since the last sync and update the indexes
        (``refresh=False``: only this process's own changes, without a database read).
        Returns the changed trials (none for a :meth:`bind`-ed History, already current)."""
        ix = self._ix
        if self._live:
            self.version = ix.version
            self.next_trial_id = len(self._trials) + 1
            return []
        changed, version = storage.changes_since(study_id, self.version, refresh)
        if changed:
            index = ix.index
            for trial in changed:
                index(trial)
        self.version = version
        self.next_trial_id = len(self._trials) + 1
        return changed

    def _index(self, trial: Trial) -> None:
        self._ix.index(trial)

    def scoped(self, state: dict[str, Any]) -> History:
        """This history with ``state`` as its algorithm state: what a wrapped algorithm
        (``Repeat``'s, ``Chain``'s, PBT's initial population) receives, so that it keeps its
        own part of the wrapper's state.

        The view shares this history's trials and indexes (it answers every question the same
        way, and sees the trials a later ``sync`` brings) and is meant to live for the one
        suggestion it is made for: ``version`` and ``next_trial_id`` are copied when it is
        made. Changes a wrapped algorithm makes to ``state`` land in the dict passed in;
        :attr:`study_state` stays the study's whole state. A subclass's view is of the same
        class, with the subclass's fields copied too.
        """
        view = object.__new__(type(self))
        for cls in type(self).__mro__:
            for name in cls.__dict__.get("__slots__", ()):
                if hasattr(self, name):
                    object.__setattr__(view, name, getattr(self, name))
        view._root = self.study_state
        view.state = state
        return view

    def _share(self, base: History) -> None:
        """Take ``base``'s trials, indexes and settings, as :meth:`scoped` gives a view: for a
        subclass that answers from the same study (``Repeat``'s aggregated history)."""
        for name in History.__slots__:
            object.__setattr__(self, name, getattr(base, name))
        self._root = base.study_state

    @property
    def study_state(self) -> dict[str, Any]:
        """The study's whole algorithm state: :attr:`state` itself, or, in a view made by
        :meth:`scoped`, the state of the history it was made from. A wrapped algorithm writes
        a study-level key here (``Repeat(agg=True)``'s ``result_groups``, which
        ``get_best_result`` ranks by) so that it is found whatever wraps the algorithm."""
        root = self._root
        return self.state if root is None else root

    # -- questions -------------------------------------------------------------------------
    @property
    def n_trials(self) -> int:
        """Number of trials in the study (all statuses)."""
        return len(self._trials)

    def __len__(self) -> int:
        return len(self._trials)

    def __iter__(self) -> Iterator[Trial]:
        """All trials in id order (as they were when the iteration began: a bound History's
        trials may grow meanwhile, in another thread)."""
        return iter(list(self._trials.values()))

    def __getitem__(self, trial_id: int) -> Trial:
        return self._trials[trial_id]

    def get(self, trial_id: int) -> Trial | None:
        return self._trials.get(trial_id)

    @property
    def trials(self) -> list[Trial]:
        """All trials in id order (a new list)."""
        return list(self._trials.values())

    @property
    def completed(self) -> list[Trial]:
        """COMPLETED trials in the order they were finalized (a new list)."""
        return list(self._completed)

    @property
    def n_completed(self) -> int:
        return len(self._completed)

    @property
    def unfinished(self) -> list[Trial]:
        """QUEUED and RUNNING trials in id order (a new list)."""
        return sorted(self._unfinished.values(), key=lambda t: t.id)

    @property
    def n_unfinished(self) -> int:
        return len(self._unfinished)

    def generation(self, generation: int) -> list[Trial]:
        """Trials whose ``generation`` parameter is ``generation``, in id order."""
        return self._by_generation.get(generation, [])

    @property
    def generations(self) -> list[int]:
        """Generation numbers that have at least one trial, ascending."""
        return sorted(self._by_generation)

    def hyperparameters(self, trial: Trial) -> dict[str, Any]:
        """The study parameters of ``trial`` (without algorithm bookkeeping keys)."""
        params = trial.parameters
        return {name: params[name] for name in self.parameter_names if name in params}

    def best_trial(self) -> Trial | None:
        """The COMPLETED trial holding the best single observation, or None."""
        best: Trial | None = None
        best_value = 0.0
        lower = self.lower_is_better
        for trial in self._completed:
            obs = trial.best_observation(lower)
            if obs is None:
                continue
            value = obs.objective
            if best is None or (value < best_value if lower else value > best_value):
                best, best_value = trial, value
        return best
