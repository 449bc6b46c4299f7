"""Population Based Training, asynchronous (the paper's design, Jaderberg et al. 2017).

A trial is one *segment* of one population member. There is no barrier between generations:
as soon as a member's segment has finished, the next worker that asks for a trial gets that
member's next segment, decided from the population as it stands at that moment:

* **ready**: among the members whose latest segment has finished and whose budget of
  ``num_generations`` segments is not spent, the one that finished first (lowest
  ``finished_seq``, so no member starves); none ready while some run: ``WAIT``; every budget
  spent: ``DONE``;
* **exploit**: a member whose segment COMPLETED, that has completed at least ``burn_in``
  segments and that loses the selection (``'truncation'``: it ranks in the bottom quantile;
  ``'tournament'``: a member drawn uniformly ranks above it; ``'ttest'``: that member's last
  ``ttest_window`` values along its lineage are significantly better, see
  :mod:`~poptune.algorithms.pbt.exploit`) copies the donor's latest COMPLETED segment and
  *explores* its hyperparameters; a member whose segment FAILED or was
  STOPPED always copies a donor (if no member has completed a segment yet, it starts again
  from a fresh random configuration);
* otherwise it **continues** from its own checkpoint with unchanged hyperparameters.

Members are compared by their score (``rank_by``) as ``ranking`` says; members without a
COMPLETED segment are not ranked; the quantile is :func:`~poptune.algorithms.pbt.exploit.
quantile_size` of the number ranked, so a member is never both top and bottom:

* ``'latest'`` (the default): every member by its latest COMPLETED segment, however far it
  has trained. With fewer workers than members the member that asks is usually the one that
  has waited longest, so it is compared with members that have trained one segment more:
  on one worker with 6 members about half the decisions are exploits where a fair
  comparison makes one in six (with truncation);
* ``'equal_progress'``: *whether* the asking member is exploited is decided at equal
  progress. The progress of a segment is the number of segments its weights have been
  trained for, its lineage plus itself (``len(trial.ancestors) + 1``; not ``generation``,
  which counts the member's own segments: a member that copied a donor further ahead holds
  weights trained longer than its generation says). The asker (progress ``p``, its latest
  COMPLETED segment) meets every other member (progress ``p'``, its latest COMPLETED
  segment) at the progress both have reached, ``min(p, p')``: each side is scored by its
  segment at that progress, an ancestor read from its ``lineage`` (the same weights, when
  they had trained exactly that long). The other member *beats* the asker if its score
  there is better (ties: the lower member index), and the asker's place is the number of
  members that beat it: truncation exploits it when that place is in the bottom quantile
  (it lost to all but fewer than ``quantile`` of the others), the tournament when its rival
  (drawn uniformly) beats it, the t-test when its rival's values up to that progress
  (along its lineage) are significantly better than the asker's up to it. *What* is copied
  is a member's latest COMPLETED segment (its current weights, whose checkpoint the
  garbage collector keeps), so truncation draws its donor from the top quantile of the
  other members ranked by those segments, the weights being handed on by their own score
  (drawing it by the score at equal progress copied weights that had trained less; on
  ``pbt_function`` with one worker and 8 members that scored 164 against 204 over 24
  seeds, case 11 of ``python -m benchmarks``). A member whose segment FAILED or was STOPPED
  picks its donor the same way in both rankings.

What is remembered lives in ``history.state['async']`` (JSON, one list entry per member):

* ``scanned``: every trial with an id up to this one has been indexed;
* ``latest``: the id of each member's latest attempt (its current segment; a trial re-queued
  after its worker died, ``meta['retry_of']``, is another attempt at the same segment);
* ``completed``: the id of each member's latest COMPLETED segment (``None`` before one);
* ``n_completed``: how many segments each member has completed (for ``burn_in``).

Each suggestion indexes only the trials created since the last one (re-queued trials are made
outside the algorithm) and looks at one trial per member (``'equal_progress'``: at most two
more, the segments compared), so it reads O(population) trials however long the study has
run (``'ttest'`` also reads the ``ttest_window`` segments that hold the two members' last
values; PB2's explore reads the trials its model needs). ``'equal_progress'`` finds a
segment at a given progress by its position in the lineage text, a scan that grows with the
segments trained: ~20 µs per member at 100 segments, ~0.1 ms at 1,000. Updating the
state is idempotent (ids only grow), so a suggestion gives the same answer whether or not
the state written during an earlier ``WAIT`` was kept.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from poptune.algorithms.base import Suggestion, SuggestResult
from poptune.algorithms.pbt._mode import PBTMode
from poptune.algorithms.pbt.exploit import (
    challenge,
    quantile_size,
    recent_scores,
    significantly_better,
)
from poptune.algorithms.pbt.explore import pick
from poptune.history import History
from poptune.lineage import child_keys
from poptune.trial import AlgorithmState, Trial, TrialStatus

__all__ = ["RANKINGS", "STATE_KEY", "AsynchronousPBT"]

#: Key of the asynchronous bookkeeping in ``history.state``.
STATE_KEY = "async"
#: The rankings asynchronous PBT accepts (the first is the default).
RANKINGS = ("latest", "equal_progress")


class AsynchronousPBT(PBTMode):
    """The asynchronous mode of :class:`~poptune.algorithms.PopulationBasedTraining`.

    Its settings and hooks are :class:`~poptune.algorithms.pbt._mode.PBTMode`'s, plus
    ``ranking``: what members are compared by, one of :data:`RANKINGS` (see the module
    docstring; checked by the algorithm that builds the mode).
    """

    def __init__(self, *, ranking: str = RANKINGS[0], **settings: Any) -> None:
        super().__init__(**settings)
        self.ranking = ranking

    def pending_checkpoints(self, history: History) -> set[str]:
        """None: a member's next segment is decided when it is asked for, from the
        checkpoints the garbage collector keeps anyway (each member's latest segment)."""
        return set()

    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        """The next segment of the member that is ready first, WAIT or DONE."""
        n = self.population_size
        state = _sync_state(history, n)
        latest: list[int | None] = state["latest"]
        for m in range(n):  # generation 1: the founders, members 0..N-1
            if latest[m] is None:
                config = self.founder(history, m, rng)
                return _record(history, state, m, _from_scratch(history, m, config))

        ready: Trial | None = None
        ready_member = -1
        running = False
        budget = self.num_generations
        for m in range(n):
            trial = history[latest[m]]  # type: ignore[index]
            status = trial.status
            if status is TrialStatus.COMPLETED:
                _note_completed(state, m, trial)
            if trial.parameters["generation"] >= budget:
                continue  # budget spent
            if status is TrialStatus.RUNNING or status is TrialStatus.QUEUED:
                running = True
            elif ready is None or trial.finished_seq < ready.finished_seq:
                ready, ready_member = trial, m  # visited in index order: ties go to the lowest
        if ready is None:
            return AlgorithmState.WAIT if running else AlgorithmState.DONE
        suggestion = self._decide(history, state, ready_member, rng)
        return _record(history, state, ready_member, suggestion)

    # -- the decision ---------------------------------------------------------------------------
    def _ranking(self, history: History, state: dict[str, Any]) -> list[tuple[int, Trial]]:
        """``(member, its latest COMPLETED segment)`` best first, ties by member index.

        The same order as :func:`~poptune.algorithms.pbt.exploit.rank_members`, keyed by the
        member's index in the state (one look-up per member).
        """
        lower, rank_by = history.lower_is_better, self.rank_by
        keyed: list[tuple[float, int, Trial]] = []
        completed = state["completed"]
        for m in range(self.population_size):
            tid = completed[m]
            if tid is None:
                continue
            trial = history[tid]
            score = trial.score(lower, rank_by)
            if math.isfinite(score):  # always, for a COMPLETED trial; kept as in rank_members
                keyed.append((score if lower else -score, m, trial))
        keyed.sort(key=lambda item: (item[0], item[1]))
        return [(m, trial) for _, m, trial in keyed]

    def _compared(
        self, history: History, m: int, by_latest: list[tuple[int, Trial]]
    ) -> tuple[list[tuple[int, Trial]], dict[int, tuple[Trial, Trial]]]:
        """``ranking='equal_progress'``: the order that decides whether member ``m`` (ranked
        in ``by_latest``) is exploited, and for each other member the two segments compared.

        Member ``m`` meets every other member at the progress both have reached (see the
        module docstring); the others that beat it come first, then ``m``, then the rest,
        each group in ``by_latest``'s order, so ``m``'s place is the number of members that
        beat it. Returns ``(order, {other: (its segment, m's segment)})``; at most two more
        look-ups per member (the ancestors compared).
        """
        lower, rank_by = history.lower_is_better, self.rank_by
        mine = next(trial for member, trial in by_latest if member == m)
        p = _progress(mine)
        cache: dict[int, Trial] = {}

        def key(trial: Trial, progress: int, own: bool) -> tuple[float, Trial]:
            at = cache.get(progress) if own else None
            if at is None:
                at = _at_progress(history, trial, progress)
                if own:
                    cache[progress] = at
            score = at.score(lower, rank_by)
            if not math.isfinite(score):  # an ancestor that never reported: its latest
                at, score = trial, trial.score(lower, rank_by)
            return (score if lower else -score), at

        beaters, rest = [], []
        pairs: dict[int, tuple[Trial, Trial]] = {}
        for other, trial in by_latest:
            if other == m:
                continue
            q = min(p, _progress(trial))
            theirs, their_segment = key(trial, q, False)
            ours, our_segment = key(mine, q, True)
            pairs[other] = (their_segment, our_segment)
            wins = theirs < ours or (theirs == ours and other < m)
            (beaters if wins else rest).append((other, trial))
        return [*beaters, (m, mine), *rest], pairs

    def _decide(
        self, history: History, state: dict[str, Any], m: int, rng: np.random.Generator
    ) -> Suggestion:
        """Next segment of member ``m``, whose latest segment has finished."""
        trial = history[state["latest"][m]]
        generation = trial.parameters["generation"] + 1
        ranked = by_latest = self._ranking(history, state)
        members = [member for member, _ in ranked]
        n_quantile = quantile_size(len(ranked), self.quantile_fraction)
        # the donors on offer, best first by the weights they hand on (with 'latest' this is
        # ``ranked`` without ``m``, whose top quantile never holds the bottom member ``m``)
        others = [entry for entry in by_latest if entry[0] != m]

        if trial.status is TrialStatus.COMPLETED:
            donor: Trial | None = None
            if state["n_completed"][m] >= self.burn_in and m in members:
                pairs: dict[int, tuple[Trial, Trial]] | None = None
                if self.ranking == "equal_progress":
                    ranked, pairs = self._compared(history, m, by_latest)
                    members = [member for member, _ in ranked]
                beats = None
                if self.exploit == "ttest":
                    k = self.ttest_window
                    lower = history.lower_is_better

                    def beats(j: int, i: int) -> bool:
                        if pairs is None:
                            a, b = ranked[j][1], ranked[i][1]
                        else:  # i is m's place: the two segments that member j and m compare
                            a, b = pairs[ranked[j][0]]
                        return significantly_better(
                            recent_scores(history, a, k), recent_scores(history, b, k), lower
                        )

                j = challenge(
                    self.exploit, len(ranked), members.index(m), rng, self.quantile_fraction, beats
                )
                if j is not None:  # truncation: a place in the top quantile; else the rival
                    donor = others[j][1] if self.exploit == "truncation" else ranked[j][1]
            if donor is None:
                return _continue(history, m, trial, generation)
            return self._exploit(history, state, m, trial, donor, generation, rng)

        # FAILED or STOPPED: no usable checkpoint of its own in this segment
        if not ranked:
            return _fresh(history, m, generation, rng)
        if not others:  # only this member ever completed a segment: go back to it
            donor = ranked[0][1]
        elif self.exploit != "truncation":  # every completed member beats a failed one
            donor = pick(others, rng)[1]
        else:
            donor = pick(others[: max(1, n_quantile)], rng)[1]
        return self._exploit(history, state, m, trial, donor, generation, rng)

    def _exploit(
        self,
        history: History,
        state: dict[str, Any],
        m: int,
        trial: Trial,
        donor: Trial,
        generation: int,
        rng: np.random.Generator,
    ) -> Suggestion:
        def running_configs() -> list[tuple[int, dict[str, Any]]]:
            """The other members' running segments."""
            out = []
            for other, tid in enumerate(state["latest"]):
                if other == m or tid is None:
                    continue
                segment = history[tid]
                if segment.status is TrialStatus.RUNNING or segment.status is TrialStatus.QUEUED:
                    out.append((segment.parameters["generation"], history.hyperparameters(segment)))
            return out

        config, records = self.explore(history, donor, generation, rng, running_configs)
        keys = child_keys(donor, generation, history.next_trial_id)
        meta: dict[str, Any] = {"member": m, **keys.meta}
        if records:
            meta["explore"] = "; ".join(records)
        meta["replaced"] = trial.id
        config.update(keys.parameters)
        return Suggestion(config, meta)


# -- progress ------------------------------------------------------------------------------------
def _progress(trial: Trial) -> int:
    """Segments the weights of ``trial`` have been trained for: its lineage and itself."""
    lineage = trial.lineage
    return (lineage.count(",") if isinstance(lineage, str) else 0) + 1


def _at_progress(history: History, trial: Trial, progress: int) -> Trial:
    """``trial``'s ancestor at ``progress`` (``trial`` itself when it has not trained further,
    or when its lineage names a trial the history lacks, e.g. a hand-made one)."""
    if _progress(trial) <= progress or progress < 1:
        return trial
    # the (progress)-th id of the lineage text, without converting the others
    ancestor = history.get(int(trial.lineage.split(",", progress)[progress - 1]))
    if ancestor is None or ancestor.status is not TrialStatus.COMPLETED:
        return trial
    return ancestor


# -- the state ----------------------------------------------------------------------------------
def _sync_state(history: History, n: int) -> dict[str, Any]:
    """Return ``history.state['async']``, with the trials made since the last call indexed."""
    state = history.state.get(STATE_KEY)
    if state is None:
        state = {
            "scanned": 0,
            "latest": [None] * n,
            "completed": [None] * n,
            "n_completed": [0] * n,
        }
        history.state[STATE_KEY] = state
    latest = state["latest"]
    for key, empty in (("latest", None), ("completed", None), ("n_completed", 0)):
        if len(state[key]) < n:  # a study resumed with a larger population (a smaller one
            # leaves the members above it alone)
            state[key].extend([empty] * (n - len(state[key])))
    top = history.next_trial_id - 1
    for tid in range(state["scanned"] + 1, top + 1):
        trial = history.get(tid)
        if trial is None:  # pragma: no cover - ids are dense
            continue
        m = trial.meta.get("member")
        if type(m) is not int or not 0 <= m < n or trial.generation is None:
            continue  # not a PBT segment (e.g. a trial queued with add_trial)
        if latest[m] is None or tid > latest[m]:
            latest[m] = tid  # a new segment, or a retry of the current one
        _note_completed(state, m, trial)
    state["scanned"] = max(state["scanned"], top)
    return state


def _note_completed(state: dict[str, Any], m: int, trial: Trial) -> None:
    """Count ``trial`` as member ``m``'s latest completed segment (once)."""
    if trial.status is not TrialStatus.COMPLETED:
        return
    previous = state["completed"][m]
    if previous is None or trial.id > previous:
        state["completed"][m] = trial.id
        state["n_completed"][m] += 1


def _record(history: History, state: dict[str, Any], m: int, suggestion: Suggestion) -> Suggestion:
    """Remember that member ``m``'s latest attempt is the trial about to be created."""
    tid = history.next_trial_id
    state["latest"][m] = tid
    state["scanned"] = max(state["scanned"], tid)
    return suggestion


# -- the suggestions ----------------------------------------------------------------------------
def _fresh(history: History, m: int, generation: int, rng: np.random.Generator) -> Suggestion:
    config = {p.name: p.sample(rng) for p in history.parameters}
    return _from_scratch(history, m, config, generation)


def _from_scratch(
    history: History, m: int, config: dict[str, Any], generation: int = 1
) -> Suggestion:
    """Member ``m`` starts a fresh model with ``config`` (no checkpoint to load)."""
    config.update(child_keys(None, generation, history.next_trial_id).parameters)
    return Suggestion(config, {"member": m})


def _continue(history: History, m: int, trial: Trial, generation: int) -> Suggestion:
    """Member ``m`` continues from its own segment ``trial`` with unchanged hyperparameters."""
    keys = child_keys(trial, generation, history.next_trial_id)
    config = history.hyperparameters(trial)
    config.update(keys.parameters)
    return Suggestion(config, {"member": m, **keys.meta})
