"""Asynchronous successive halving (ASHA, Li et al. 2018).

A configuration starts on the bottom rung with a small resource (epochs, samples...). Rung
``k`` trains with resource ``r * eta**(k + s)``; the rungs go up to the largest resource that
does not exceed ``R``. There is no barrier: whenever a worker asks for a trial, the best
configurations of a rung are promoted to the next one as soon as they are in the rung's top
``1/eta``, and otherwise a new configuration starts at the bottom.

A promotion is a new trial with the same hyperparameters that continues from the promoted
trial's checkpoint (SHERPA's keys in ``trial.parameters``: ``resource``, ``rung``,
``load_from`` = the promoted trial's ``save_to``, ``save_to`` = its own id).

The rung logic (:class:`Ladder`) is shared with :class:`~poptune.algorithms.hyperband.Hyperband`,
which runs several brackets of it.
"""

from __future__ import annotations

import bisect
import numbers
from typing import Any

import numpy as np

from poptune._validation import check_int, check_number
from poptune.algorithms.base import Algorithm, Suggestion, SuggestResult
from poptune.exceptions import ConfigurationError
from poptune.history import History
from poptune.lineage import checkpoint_name
from poptune.trial import AlgorithmState, TrialStatus

__all__ = ["Ladder", "SuccessiveHalving"]

RESERVED = ("resource", "rung", "load_from", "save_to")


def check_arguments(
    owner: str,
    r: Any,
    R: Any,  # noqa: N803
    eta: Any,
    max_finished_configs: Any,
    s: Any = None,
) -> tuple[Any, Any, int, int, int | None]:
    """Validate the arguments of :class:`SuccessiveHalving` and
    :class:`~poptune.algorithms.hyperband.Hyperband`, in this order: ``r`` and ``R``
    (numbers > 0, ``R >= r``), ``eta`` (an int >= 2), ``s`` when given (an int with
    ``0 <= s <= log_eta(R / r)``) and ``max_finished_configs`` (an int >= 1).

    Returns ``(r, R, eta, max_finished_configs, s)``, numbers kept as given.
    """
    check_number(owner, "r", r, minimum=0, min_open=True)
    check_number(owner, "R", R, minimum=0, min_open=True)
    if R < r:
        raise ConfigurationError(f"{owner}: R must be >= r (r={r!r}), got R={R!r}")
    eta = check_int(owner, "eta", eta, 2)
    if s is not None:
        checked = check_int(owner, "s", s, 0)
        s_max = max_exponent(r, R, eta)
        if checked > s_max:
            raise ConfigurationError(
                f"{owner}: s must be <= {s_max} (rung 0 would train with "
                f"r * eta**s = {_resource(r, eta, checked)!r} > R = {R!r}), got s={s!r}"
            )
        s = checked
    max_finished_configs = check_int(owner, "max_finished_configs", max_finished_configs, 1)
    return r, R, eta, max_finished_configs, s


def max_exponent(r: float, R: float, eta: int) -> int:  # noqa: N803
    """The largest ``n`` with ``r * eta**n <= R`` (exact for ints, 1e-9 tolerance otherwise)."""
    n = 0
    while _resource(r, eta, n + 1) <= R * (1 + 1e-9):
        n += 1
    return n


def _resource(r: float, eta: int, exponent: int) -> Any:
    value = r * eta**exponent
    if isinstance(r, numbers.Integral):
        return int(value)
    return float(value)


class Ladder:
    """The rungs of one bracket: rung ``k`` (0 .. ``top``) trains with ``r * eta**(k + s)``.

    Its bookkeeping is a JSON dict (kept by the owning algorithm in ``history.state``), one
    list per rung::

        {"rungs":    [[ids of the trials started on the rung], ...],
         "running":  [[ids of those not seen finished yet], ...],
         "ranked":   [[[key, id] of its COMPLETED trials, sorted], ...],
         "free":     [[[key, id] of those not promoted yet, sorted], ...],   # below the top
         "promoted": [[ids promoted from the rung], ...]}                     # below the top

    ``key`` is the trial's last reported objective (negated when higher is better), so the
    best trial comes first and ties go to the lower id. A trial moves from ``running`` to
    ``ranked`` once, when a suggestion first sees it finished: a suggestion costs
    O(running trials) plus a binary search per rung (and a list insertion per newly finished
    trial), never a scan of a rung or of the study.
    """

    __slots__ = ("eta", "r", "resources", "s", "top")

    def __init__(self, r: float, R: float, eta: int, s: int) -> None:  # noqa: N803
        self.r, self.eta, self.s = r, eta, s
        self.top = max_exponent(r, R, eta) - s
        self.resources = [_resource(r, eta, k + s) for k in range(self.top + 1)]

    def new_state(self) -> dict[str, Any]:
        rungs = len(self.resources)
        return {
            "rungs": [[] for _ in range(rungs)],
            "running": [[] for _ in range(rungs)],
            "ranked": [[] for _ in range(rungs)],
            "free": [[] for _ in range(rungs - 1)],
            "promoted": [[] for _ in range(rungs - 1)],
        }

    def refresh(self, bracket: dict[str, Any], history: History) -> None:
        """Rank the trials that finished since the last suggestion (O(running trials))."""
        sign = 1.0 if history.lower_is_better else -1.0
        for k, running in enumerate(bracket["running"]):
            still = []
            for tid in running:
                trial = history.get(tid)
                if trial is None or not trial.is_finished:
                    still.append(tid)
                elif trial.status is TrialStatus.COMPLETED:
                    entry = [sign * trial.score(history.lower_is_better, "last"), tid]
                    bisect.insort(bracket["ranked"][k], entry)
                    if k < self.top:
                        bisect.insort(bracket["free"][k], list(entry))
            if len(still) != len(running):
                bracket["running"][k] = still

    def find_promotion(self, bracket: dict[str, Any]) -> tuple[int, int] | None:
        """``(rung, trial id)`` of the configuration to promote now, or None.

        Rungs are checked from the highest (below the top) down. A rung with ``n`` COMPLETED
        trials promotes its best trial not promoted yet if that one ranks in the top
        ``floor(n / eta)``. Call :meth:`refresh` first.
        """
        for k in range(self.top - 1, -1, -1):
            free = bracket["free"][k]
            if not free:
                continue
            ranked = bracket["ranked"][k]
            if bisect.bisect_left(ranked, free[0]) < len(ranked) // self.eta:
                return k, free[0][1]
        return None

    def top_counts(self, bracket: dict[str, Any]) -> tuple[int, int]:
        """(COMPLETED, COMPLETED or still running) trials on the top rung (after refresh)."""
        completed = len(bracket["ranked"][self.top])
        return completed, completed + len(bracket["running"][self.top])

    def suggest(
        self, bracket: dict[str, Any], history: History, rng: np.random.Generator
    ) -> Suggestion:
        """Promote a configuration if one may be promoted, else start a new one (call
        :meth:`refresh` first)."""
        tid = history.next_trial_id
        found = self.find_promotion(bracket)
        meta: dict[str, Any] = {"bracket": self.s}
        if found is None:
            k = 0
            params = {p.name: p.sample(rng) for p in history.parameters}
            load_from = ""
        else:
            k, parent_id = found[0] + 1, found[1]
            bracket["free"][found[0]].pop(0)
            bracket["promoted"][found[0]].append(parent_id)
            parent = history[parent_id]
            params = history.hyperparameters(parent)
            load_from = checkpoint_name(parent)
            meta["parent"] = parent_id
        bracket["rungs"][k].append(tid)
        bracket["running"][k].append(tid)
        params.update(resource=self.resources[k], rung=k, load_from=load_from, save_to=str(tid))
        return Suggestion(params, meta)

    def pending(self, bracket: dict[str, Any], history: History) -> set[str]:
        """Checkpoints of trials below the top rung that may still be promoted: those not
        promoted yet, and those that were running at the last suggestion."""
        ids = [tid for free in bracket["free"] for _, tid in free]
        ids += [tid for running in bracket["running"][: self.top] for tid in running]
        keep: set[str] = set()
        for tid in ids:
            trial = history.get(tid)
            keep.add(checkpoint_name(trial) if trial is not None else str(tid))
        return keep


def adopt_retries(
    state: dict[str, Any], history: History, brackets: dict[int, tuple[Ladder, dict[str, Any]]]
) -> None:
    """File trials made since the last suggestion by someone else (the study re-queuing a
    trial whose worker died, ``meta['retry_of']``) on the rung of the trial they retry.

    Only trials with ids above ``state['seen']`` are looked at, so this is O(new trials).
    """
    seen = state.get("seen")
    end = history.next_trial_id
    if seen is None:  # first suggestion: trials made before this algorithm are not its own
        state["seen"] = end - 1
        return
    for tid in range(seen + 1, end):
        trial = history.get(tid)
        if trial is None or "retry_of" not in trial.meta:
            continue
        entry = brackets.get(trial.meta.get("bracket"))  # type: ignore[arg-type]
        k = trial.parameters.get("rung")
        if entry is None or not isinstance(k, int) or not 0 <= k <= entry[0].top:
            continue
        rung = entry[1]["rungs"][k]
        if trial.meta["retry_of"] in rung and tid not in rung:
            rung.append(tid)
            entry[1]["running"][k].append(tid)
    state["seen"] = end - 1


class SuccessiveHalving(Algorithm):
    """Asynchronous successive halving (ASHA, Li et al. 2018), SHERPA's signature.

    Rung ``k`` (0 .. K) trains with resource ``r * eta**(k + s)``, K being the highest rung
    whose resource does not exceed ``R``. When a trial is asked for, rungs are checked from
    the highest down: in rung ``k``, the COMPLETED trials are ranked by their last reported
    objective (respecting ``lower_is_better``; ties: lower id first) and the best of the top
    ``floor(n / eta)`` that has not been promoted yet is promoted to rung ``k + 1``: a new
    trial with the same hyperparameters and ``load_from`` = its ``save_to``. If no rung has
    such a configuration, a new random configuration starts on rung 0.

    Every trial's ``parameters`` carry ``resource`` (train this much), ``rung``,
    ``load_from`` ('' for a new configuration, else the checkpoint to continue from) and
    ``save_to`` (its own id, as a str); ``trial.parent`` is the promoted trial's id.

    Once ``max_finished_configs`` trials on the top rung have COMPLETED the algorithm is
    DONE; while that many are COMPLETED or running it answers WAIT (nothing more is started).
    A promotion whose trial fails is not made again (``retry_failed_trials`` re-runs it).

    The state (``history.state['bracket']``, see :class:`Ladder`) keeps, per rung, the trial
    ids, the running ones, the COMPLETED ones sorted by objective and the promoted ones, so a
    suggestion costs O(running trials) plus a binary search per rung, never a scan of a rung
    or of the study.

    Args:
        r: resource of rung 0 (with ``s = 0``), a number > 0.
        R: the maximum resource, >= ``r``.
        eta: reduction factor, an int >= 2: the top ``1/eta`` of a rung are promoted.
        s: early-stopping rate: rung 0 trains with ``r * eta**s`` (0 <= s <= log_eta(R/r)).
        max_finished_configs: DONE after this many configurations completed the top rung.

    Raises:
        ConfigurationError: an argument outside these ranges.
    """

    reserved_keys = RESERVED

    def __init__(
        self,
        r: float = 1,
        R: float = 9,  # noqa: N803 - SHERPA's name
        eta: int = 3,
        s: int = 0,
        max_finished_configs: int = 50,
    ) -> None:
        self.r, self.R, self.eta, self.max_finished_configs, self.s = check_arguments(
            "SuccessiveHalving", r, R, eta, max_finished_configs, s
        )
        self.ladder = Ladder(self.r, self.R, self.eta, self.s)

    @property
    def resources(self) -> list[Any]:
        """The resource of each rung, bottom first."""
        return list(self.ladder.resources)

    def _bracket(self, state: dict[str, Any]) -> dict[str, Any]:
        bracket = state.get("bracket")
        if bracket is None:
            bracket = state["bracket"] = self.ladder.new_state()
        return bracket

    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        state = history.state
        bracket = self._bracket(state)
        adopt_retries(state, history, {self.s: (self.ladder, bracket)})
        self.ladder.refresh(bracket, history)
        completed, live = self.ladder.top_counts(bracket)
        if completed >= self.max_finished_configs:
            return AlgorithmState.DONE
        if live >= self.max_finished_configs:
            return AlgorithmState.WAIT
        suggestion = self.ladder.suggest(bracket, history, rng)
        state["seen"] = history.next_trial_id
        return suggestion

    def pending_checkpoints(self, history: History) -> set[str]:
        bracket = history.state.get("bracket")
        return set() if bracket is None else self.ladder.pending(bracket, history)
