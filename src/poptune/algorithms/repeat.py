"""Repeat each configuration of another algorithm, optionally showing it the mean results.

With ``agg=True`` the wrapped algorithm sees an :class:`AggregatedHistory` (one trial per
configuration, the mean of its repeats). With ``agg`` True or False the configurations are
published under the study state's ``result_groups`` key, from which
:meth:`~poptune.Study.get_best_result` and the dashboard rank the study without rebuilding the
algorithm.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from poptune._groups import RESULT_GROUPS, best_of, group_trial
from poptune._validation import check_bool, check_int
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
from poptune.trial import AlgorithmState, Trial, TrialStatus

__all__ = ["AggregatedHistory", "Repeat"]


class AggregatedHistory(History):
    """The study's history with one trial per configuration of :class:`Repeat` (``agg=True``).

    The trial of a configuration (see :func:`poptune._groups.group_trial`) has the id of its
    first repeat, that repeat's parameters and meta (plus ``meta['repeat_ids']``), and its
    status is RUNNING until every repeat has been handed out and has finished; then COMPLETED
    if at least one repeat COMPLETED (else the first repeat's status). A COMPLETED
    configuration has one observation: the MEAN over its COMPLETED repeats of each one's
    objective as the results table's final row gives it (the best value the repeat reported),
    at the highest iteration reported, with context ``ObjectiveVar`` (sample variance),
    ``ObjectiveCount`` and ``ObjectiveStdErr``.

    Trials are built lazily, when the wrapped algorithm first asks for them, so an algorithm
    that never reads the history (random search) costs nothing.

    Args:
        base: the study's history.
        state: the wrapped algorithm's state.
        groups: the list holding the complete configurations (trial ids, first id first, in
            id order); this Repeat's are ``groups[first:]``.
        first: the index of this Repeat's first configuration in ``groups``.
        partial: the configuration whose repeats are still being handed out, or None.
    """

    __slots__ = ("_base", "_configs", "_first", "_groups", "_partial")

    def __init__(
        self,
        base: History,
        state: dict[str, Any],
        groups: list[list[int]],
        first: int = 0,
        partial: list[int] | None = None,
    ) -> None:
        self._share(base)
        self.state = state
        self._base = base
        self._groups = groups
        self._first = first
        self._partial = partial
        self._configs: dict[int, Trial] | None = None

    # -- building ----------------------------------------------------------------------
    def _group_ids(self, gid: int) -> tuple[list[int], bool] | None:
        """The trial ids of configuration ``gid`` and whether it is complete (the complete
        ones are in id order: a binary search)."""
        groups = self._groups
        i = bisect.bisect_left(groups, [gid], lo=self._first)
        if i < len(groups) and groups[i][0] == gid:
            return groups[i], True
        partial = self._partial
        if partial and partial[0] == gid:
            return partial, False
        return None

    def _aggregate(self, ids: list[int], complete: bool) -> Trial:
        base = self._base
        return group_trial(ids, [base.get(i) for i in ids], complete, base.lower_is_better)

    def _all(self) -> dict[int, Trial]:
        if self._configs is None:
            configs = {g[0]: self._aggregate(g, True) for g in self._complete()}
            if self._partial:
                configs[self._partial[0]] = self._aggregate(self._partial, False)
            self._configs = configs
        return self._configs

    def _complete(self) -> Iterator[list[int]]:
        return itertools.islice(self._groups, self._first, None)

    # -- History's questions -----------------------------------------------------------
    def get(self, trial_id: int) -> Trial | None:
        if self._configs is not None:
            return self._configs.get(trial_id)
        found = self._group_ids(trial_id)
        return None if found is None else self._aggregate(*found)

    def __getitem__(self, trial_id: int) -> Trial:
        trial = self.get(trial_id)
        if trial is None:
            raise KeyError(trial_id)
        return trial

    def __len__(self) -> int:
        return self.n_trials

    def __iter__(self) -> Iterator[Trial]:
        return iter(self._all().values())

    @property
    def n_trials(self) -> int:
        return len(self._groups) - self._first + (1 if self._partial else 0)

    @property
    def trials(self) -> list[Trial]:
        return list(self._all().values())

    @property
    def completed(self) -> list[Trial]:
        """COMPLETED configurations in the order their last repeat finished."""
        done = [t for t in self._all().values() if t.status is TrialStatus.COMPLETED]
        return sorted(done, key=lambda t: (t.finished_seq, t.id))

    @property
    def n_completed(self) -> int:
        return len(self.completed)

    @property
    def unfinished(self) -> list[Trial]:
        return [t for t in self._all().values() if not t.is_finished]

    @property
    def n_unfinished(self) -> int:
        return len(self.unfinished)

    def generation(self, generation: int) -> list[Trial]:
        return [t for t in self._all().values() if t.parameters.get("generation") == generation]

    @property
    def generations(self) -> list[int]:
        found = {t.parameters.get("generation") for t in self._all().values()}
        return sorted(g for g in found if g is not None)

    def best_trial(self) -> Trial | None:
        """The COMPLETED configuration with the best mean (the first finished on ties)."""
        return best_of(self.completed, self.lower_is_better)


def _groups_from_meta(history: History, before: int) -> list[list[int]]:
    """The configurations (trial-id lists, by ``meta['repeat_group']``) of the trials before
    ``before``: how a state stored before ``agg=False`` published its groups is caught up."""
    found: dict[int, list[int]] = {}
    for trial in history:
        if trial.id >= before:
            break
        group = trial.meta.get("repeat_group")
        if isinstance(group, int):
            found.setdefault(group, []).append(trial.id)
    return list(found.values())


def _wrapped(owner: str, algorithm: Any) -> Algorithm:
    if isinstance(algorithm, Mapping):
        algorithm = algorithm_from_config(algorithm)
    return as_algorithm(owner, algorithm)


class Repeat(Algorithm):
    """Run each configuration suggested by ``algorithm`` ``num_times`` times (noisy
    objectives, several seeds).

    The repeats of a configuration are handed out one after another; ``trial.meta['repeat']``
    is the repeat's index (0 .. num_times - 1) and ``trial.meta['repeat_group']`` the id of the
    configuration's first trial. A bookkeeping ``save_to`` naming the first trial is renamed to
    each repeat's own id, so repeats never write the same checkpoint.

    Args:
        algorithm: the wrapped :class:`~poptune.algorithms.Algorithm`.
        num_times: trials per configuration (>= 1).
        wait_for_completion: once a configuration's repeats are handed out, answer WAIT until
            all of them have finished before asking ``algorithm`` for the next configuration.
        agg: show ``algorithm`` an :class:`AggregatedHistory`: one trial per configuration,
            COMPLETED once all its repeats finished, with the mean objective.

    State: the wrapped algorithm keeps its own in ``history.state['inner']``;
    ``history.state['groups']`` holds the last configuration's trial ids. Each
    configuration whose repeats have all been handed out is appended to the study-level key
    ``history.study_state['result_groups']`` (a list of trial-id lists, first id first; at the
    top of the study's state even when ``Repeat`` is wrapped, e.g. in a ``Chain``), and
    ``history.state['first_group']`` is the index of this Repeat's first configuration there.
    :meth:`~poptune.Study.get_best_result` and the dashboard rank the study by the means of
    these groups (SHERPA's best result under ``Repeat``, for ``agg=False`` too: the best
    mean over the configurations whose repeats have all finished), read from the stored state
    alone. A state stored before ``result_groups`` existed (``agg=True``: every configuration
    in ``state['groups']``; ``agg=False``: the configurations found from the trials'
    ``meta['repeat_group']``) is read as it is, and moved to the new keys by the next
    suggestion.

    Costs O(1) per suggestion plus what the wrapped algorithm costs (with ``agg``, building
    the aggregated view when it reads it: O(trials)).

    Raises:
        ConfigurationError: ``algorithm`` is not an Algorithm, ``num_times`` is not an int
            >= 1, a flag is not a bool, or ``algorithm`` is PBT-like (it manages lineages)
            and ``agg`` is False.
    """

    def __init__(
        self,
        algorithm: Algorithm,
        num_times: int = 5,
        wait_for_completion: bool = False,
        agg: bool = False,
    ) -> None:
        self.algorithm = _wrapped("Repeat", algorithm)
        self.num_times = check_int("Repeat", "num_times", num_times, 1)
        self.wait_for_completion = check_bool("Repeat", "wait_for_completion", wait_for_completion)
        self.agg = check_bool("Repeat", "agg", agg)
        if not self.agg and "lineage" in self.algorithm.reserved_keys:
            # PBT (and Replay) would see every repeat as a member of its own: wrong parents.
            raise ConfigurationError(
                f"Repeat: {type(self.algorithm).__name__} needs agg=True (it must see one "
                "trial per configuration, not each repeat)"
            )
        self.reserved_keys = tuple(self.algorithm.reserved_keys)  # type: ignore[misc]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Repeat:
        kwargs = dict(config)
        if "algorithm" not in kwargs:
            raise ConfigurationError(f"Repeat: config without 'algorithm': {dict(config)!r}")
        inner = _wrapped("Repeat", kwargs.pop("algorithm"))
        try:
            return cls(inner, **kwargs)
        except TypeError as exc:
            raise ConfigurationError(
                f"cannot rebuild Repeat from {dict(config)!r}: {exc}"
            ) from None

    def setup(self, parameters: Sequence[Parameter], lower_is_better: bool) -> None:
        super().setup(parameters, lower_is_better)
        self.algorithm.setup(parameters, lower_is_better)

    def _groups(self, history: History) -> tuple[list[list[int]], int, list[int] | None]:
        """This Repeat's configurations (``agg``): the list holding the complete ones, the index
        of its first one there, and the one still being handed out (or None). A state stored
        before ``result_groups`` existed is read as it was written: every configuration in
        ``state['groups']``."""
        state = history.state
        groups = state.get("groups", [])
        n = self.num_times
        partial = groups[-1] if groups and len(groups[-1]) < n else None
        if "first_group" in state:
            return history.study_state.get(RESULT_GROUPS, []), state["first_group"], partial
        return [g for g in groups if len(g) >= n], 0, partial

    def _publish_from_here(self, history: History) -> list[list[int]]:
        """The study's ``result_groups`` list, which this Repeat appends to, set up on its first
        suggestion (and then holding the configurations of a state stored without it)."""
        state = history.state
        published: list[list[int]] = history.study_state.setdefault(RESULT_GROUPS, [])
        if "first_group" not in state:
            groups = state.get("groups", [])
            state["first_group"] = len(published)
            if not self.agg and groups:
                # agg=False kept only the configuration being repeated: the earlier ones are
                # found from their trials' meta
                groups = _groups_from_meta(history, groups[-1][0]) + groups[-1:]
            published.extend(g for g in groups if len(g) >= self.num_times)
            state["groups"] = groups[-1:]
        return published

    def _view(self, history: History) -> History:
        inner = history.state.get("inner", {})
        if self.agg:
            return AggregatedHistory(history, inner, *self._groups(history))
        return history.scoped(inner)

    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        state = history.state
        published = self._publish_from_here(history)
        groups: list[list[int]] = state.setdefault("groups", [])
        tid = history.next_trial_id
        if groups and len(groups[-1]) < self.num_times:
            group = groups[-1]
            first = history[group[0]]
            params = dict(first.parameters)
            if params.get("save_to") == str(first.id):
                params["save_to"] = str(tid)
            meta = {**first.meta, "repeat": len(group), "repeat_group": group[0]}
            group.append(tid)
            if len(group) == self.num_times:
                published.append(list(group))
            return Suggestion(params, meta)
        if self.wait_for_completion and groups:
            for i in groups[-1]:
                trial = history.get(i)
                if trial is None or not trial.is_finished:
                    return AlgorithmState.WAIT
        state.setdefault("inner", {})
        view = self._view(history)
        result = self.algorithm.suggest(view, rng)
        state["inner"] = view.state
        if isinstance(result, Suggestion):
            params, meta = result.parameters, dict(result.meta)
        elif isinstance(result, dict):
            params, meta = result, {}
        else:  # WAIT, DONE, None (or something the study will refuse)
            return result
        meta.update(repeat=0, repeat_group=tid)
        groups[:] = [[tid]]  # the configuration being repeated
        if self.num_times == 1:
            published.append([tid])
        return Suggestion(dict(params), meta)

    def pending_checkpoints(self, history: History) -> set[str]:
        return self.algorithm.pending_checkpoints(self._view(history))

    def get_config(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm.to_config(),
            "num_times": self.num_times,
            "wait_for_completion": self.wait_for_completion,
            "agg": self.agg,
        }
