"""Groups of trials that count as one configuration: ``Repeat``'s repeats.

A group's trial answers for all of them: the id, parameters and meta of its first trial, and
(once every trial of a complete group has finished and one COMPLETED) one observation, the
MEAN over its COMPLETED trials of each one's best objective. ``Repeat`` shows the algorithm it
wraps these trials; :func:`poptune.results.best_trial` ranks them when the study's algorithm
state holds :data:`RESULT_GROUPS`. Both use this module, so they cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

from poptune.trial import Observation, Trial, TrialStatus

__all__ = ["RESULT_GROUPS", "best_of", "best_group", "group_trial"]

#: The study-level algorithm-state key (``history.study_state[RESULT_GROUPS]``) under which
#: ``Repeat`` (``agg`` True or False) publishes its complete configurations: a list of lists
#: of trial ids, one list per configuration (its first trial first), in the order the configurations
#: began. A configuration enters the list once all its repeats have been handed out.
RESULT_GROUPS = "result_groups"


def group_trial(
    ids: Sequence[int], repeats: Sequence[Trial | None], complete: bool, lower_is_better: bool
) -> Trial:
    """The trial of one configuration: ``repeats[k]`` is the trial with id ``ids[k]`` (None if
    not known yet), ``complete`` whether all its repeats have been handed out.

    It has the first repeat's id, parameters and meta (without ``repeat``/``repeat_group``,
    plus ``meta['repeat_ids']``). Its status is RUNNING until the group is complete and every
    repeat has finished; then COMPLETED if at least one repeat COMPLETED (else the first
    repeat's status). A COMPLETED one has one observation: the mean over the COMPLETED
    repeats of each one's best objective (its final row in the results table), at the highest
    iteration reported, with context ``ObjectiveVar`` (sample variance), ``ObjectiveCount``
    and ``ObjectiveStdErr``.
    """
    first = repeats[0]
    assert first is not None, "the first trial of a group is known"
    meta = {k: v for k, v in first.meta.items() if k not in ("repeat", "repeat_group")}
    meta["repeat_ids"] = list(ids)
    known = [t for t in repeats if t is not None]
    done = complete and len(known) == len(repeats) and all(t.is_finished for t in known)
    completed = [t for t in known if t.status is TrialStatus.COMPLETED]
    if not done:
        status = TrialStatus.RUNNING
    elif completed:
        status = TrialStatus.COMPLETED
    else:
        status = first.status
    trial = Trial(ids[0], dict(first.parameters), status, meta)
    if done:
        trial.finished_seq = max(t.finished_seq for t in known)
    if status is TrialStatus.COMPLETED:
        # a COMPLETED trial has at least one observation (finalize refuses it otherwise)
        finals = [o for t in completed if (o := t.best_observation(lower_is_better)) is not None]
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


def best_of(completed: Iterable[Trial], lower_is_better: bool) -> Trial | None:
    """The COMPLETED group trial with the best mean; ``completed`` in the order their last
    repeat finished, and the first one wins a tie."""
    best: Trial | None = None
    best_value = 0.0
    for trial in completed:
        value = trial.score(lower_is_better)
        if best is None or (value < best_value if lower_is_better else value > best_value):
            best, best_value = trial, value
    return best


def best_group(
    groups: Iterable[Sequence[int]], get: Callable[[int], Trial | None], lower_is_better: bool
) -> Trial | None:
    """The best of the complete ``groups`` (``get`` looks a trial up by id), as
    :func:`group_trial` builds it, or None when none has COMPLETED. Costs O(trials grouped)."""
    completed = []
    for ids in groups:
        repeats = [get(i) for i in ids]
        if repeats[0] is None:  # a state read after the history was synced: not finished
            continue
        trial = group_trial(ids, repeats, True, lower_is_better)
        if trial.status is TrialStatus.COMPLETED:
            completed.append(trial)
    completed.sort(key=lambda t: (t.finished_seq, t.id))
    return best_of(completed, lower_is_better)
