"""Repeat each configuration of another algorithm, optionally showing it the mean results.

Also home of the history views that wrapping algorithms (:class:`Repeat`,
:class:`~poptune.algorithms.chain.Chain`) hand to the algorithms they wrap: the study's
:class:`~poptune.history.History` with the wrapped algorithm's own ``state`` (a sub-dict of
the wrapper's state, so it is stored, shared and resumed with the study).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from poptune._validation import check_int
from poptune.algorithms.base import Algorithm, Suggestion, SuggestResult, algorithm_from_config
from poptune.exceptions import ConfigurationError
from poptune.history import History
from poptune.parameters import Parameter
from poptune.trial import AlgorithmState, Observation, Trial, TrialStatus

__all__ = ["AggregatedHistory", "HistoryView", "Repeat"]


class HistoryView:
    """The study's history as a wrapped algorithm sees it: every question is answered by
    ``base``, but ``state`` is the wrapped algorithm's own dict (a part of the wrapper's)."""

    __slots__ = ("_base", "state")

    def __init__(self, base: Any, state: dict[str, Any]) -> None:
        self._base = base
        self.state = state

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def __len__(self) -> int:
        return len(self._base)

    def __iter__(self) -> Iterator[Trial]:
        return iter(self._base)

    def __getitem__(self, trial_id: int) -> Trial:
        return self._base[trial_id]


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


class AggregatedHistory(HistoryView):
    """A history with one trial per configuration of :class:`Repeat` (``agg=True``).

    The trial of a configuration has the id of its first repeat, that repeat's parameters
    and meta (plus ``meta['repeat_ids']``), and its status is RUNNING until every repeat has
    been handed out and has finished; then COMPLETED if at least one repeat COMPLETED (else
    the first repeat's status). A COMPLETED configuration has one observation: the MEAN over
    its COMPLETED repeats of each one's objective as the results table's final row gives it
    (the best value the repeat reported), at the highest iteration reported, with context
    ``ObjectiveVar`` (sample variance), ``ObjectiveCount`` and ``ObjectiveStdErr``.

    Trials are built lazily, when the wrapped algorithm first asks for them, so an algorithm
    that never reads the history (random search) costs nothing.
    """

    __slots__ = ("_groups", "_num_times", "_trials")

    def __init__(
        self, base: Any, state: dict[str, Any], groups: list[list[int]], num_times: int
    ) -> None:
        super().__init__(base, state)
        self._groups = groups
        self._num_times = num_times
        self._trials: dict[int, Trial] | None = None

    # -- building ----------------------------------------------------------------------
    def _group_ids(self, gid: int) -> list[int] | None:
        """The trial ids of configuration ``gid`` (groups are in id order: a binary search)."""
        groups = self._groups
        i = bisect.bisect_left(groups, [gid])
        if i < len(groups) and groups[i][0] == gid:
            return groups[i]
        return None

    def _aggregate(self, ids: list[int]) -> Trial:
        base = self._base
        repeats = [base.get(i) for i in ids]
        first = repeats[0]
        meta = {k: v for k, v in first.meta.items() if k not in ("repeat", "repeat_group")}
        meta["repeat_ids"] = list(ids)
        done = len(ids) >= self._num_times and all(t is not None and t.is_finished for t in repeats)
        completed = [t for t in repeats if t is not None and t.status is TrialStatus.COMPLETED]
        if not done:
            status = TrialStatus.RUNNING
        elif completed:
            status = TrialStatus.COMPLETED
        else:
            status = first.status
        trial = Trial(ids[0], dict(first.parameters), status, meta)
        if done:
            trial.finished_seq = max(t.finished_seq for t in repeats)
        if status is TrialStatus.COMPLETED:
            lower = base.lower_is_better
            finals = [t.best_observation(lower) for t in completed]
            values = [o.objective for o in finals]
            n = len(values)
            mean = math.fsum(values) / n
            var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
            iteration = max(max(t.observations) for t in completed)
            context = {
                "ObjectiveVar": var,
                "ObjectiveCount": n,
                "ObjectiveStdErr": math.sqrt(var / n),
            }
            seq = max(o.seq for o in finals)
            trial._record(Observation(iteration, mean, context, seq))
        return trial

    def _all(self) -> dict[int, Trial]:
        if self._trials is None:
            self._trials = {group[0]: self._aggregate(group) for group in self._groups}
        return self._trials

    # -- History's questions -----------------------------------------------------------
    def get(self, trial_id: int) -> Trial | None:
        if self._trials is not None:
            return self._trials.get(trial_id)
        ids = self._group_ids(trial_id)
        return None if ids is None else self._aggregate(ids)

    def __getitem__(self, trial_id: int) -> Trial:
        trial = self.get(trial_id)
        if trial is None:
            raise KeyError(trial_id)
        return trial

    def __len__(self) -> int:
        return len(self._groups)

    def __iter__(self) -> Iterator[Trial]:
        return iter(self._all().values())

    @property
    def n_trials(self) -> int:
        return len(self._groups)

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
        lower = self._base.lower_is_better
        best: Trial | None = None
        best_value = 0.0
        for trial in self.completed:
            value = trial.score(lower)
            if best is None or (value < best_value if lower else value > best_value):
                best, best_value = trial, value
        return best


def _wrapped(owner: str, algorithm: Any) -> Algorithm:
    if isinstance(algorithm, Mapping):
        algorithm = algorithm_from_config(algorithm)
    if not isinstance(algorithm, Algorithm):
        raise ConfigurationError(
            f"{owner}: algorithm must be a poptune.algorithms.Algorithm, got {algorithm!r}"
        )
    return algorithm


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

    The wrapped algorithm keeps its state in ``history.state['inner']``. Costs O(1) per
    suggestion plus what the wrapped algorithm costs (with ``agg``, building the aggregated
    view when it reads it: O(trials)).

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
        for name, value in (("wait_for_completion", wait_for_completion), ("agg", agg)):
            if not _is_bool(value):
                raise ConfigurationError(f"Repeat: {name} must be True or False, got {value!r}")
        self.wait_for_completion = bool(wait_for_completion)
        self.agg = bool(agg)
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

    def _view(self, history: History) -> HistoryView:
        state = history.state
        inner = state.get("inner", {})
        if self.agg:
            return AggregatedHistory(history, inner, state.get("groups", []), self.num_times)
        return HistoryView(history, inner)

    def best_trial(self, history: History, state: Mapping[str, Any]) -> Trial | None:
        """With ``agg``: the COMPLETED configuration with the best mean objective (its trial
        carries the mean and ``ObjectiveVar``/``ObjectiveCount``/``ObjectiveStdErr``)."""
        if not self.agg:
            return history.best_trial()
        groups = state.get("groups", [])
        return AggregatedHistory(
            history, dict(state.get("inner", {})), groups, self.num_times
        ).best_trial()

    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        state = history.state
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
            return Suggestion(params, meta)
        if self.wait_for_completion and groups:
            for i in groups[-1]:
                trial = history.get(i)
                if trial is None or not trial.is_finished:
                    return AlgorithmState.WAIT
        state.setdefault("inner", {})
        view = self._view(history)
        result = self.algorithm.suggest(view, rng)  # type: ignore[arg-type]
        state["inner"] = view.state
        if isinstance(result, Suggestion):
            params, meta = result.parameters, dict(result.meta)
        elif isinstance(result, dict):
            params, meta = result, {}
        else:  # WAIT, DONE, None (or something the study will refuse)
            return result
        meta.update(repeat=0, repeat_group=tid)
        if self.agg:
            groups.append([tid])
        else:  # only the current configuration is needed
            groups[:] = [[tid]]
        return Suggestion(dict(params), meta)

    def pending_checkpoints(self, history: History) -> set[str]:
        return self.algorithm.pending_checkpoints(self._view(history))  # type: ignore[arg-type]

    def get_config(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm.to_config(),
            "num_times": self.num_times,
            "wait_for_completion": self.wait_for_completion,
            "agg": self.agg,
        }
