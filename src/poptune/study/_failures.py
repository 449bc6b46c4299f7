"""Failures never pass silently: what ``study.optimize`` says when it ends, and when it gives up.

Every ``optimize`` call ends with one summary line (logger ``poptune``): the trials the call
ran, by status, and the first error with its trial id and where its traceback is. It is a
WARNING when a trial failed (Python shows warnings without any logging set up) and INFO when
none did.

``max_consecutive_failures`` (default :data:`DEFAULT_MAX_CONSECUTIVE_FAILURES`): once that many
trials of the call, in id order, have FAILED with no COMPLETED or STOPPED trial between them,
the workers start no further trial and ``optimize`` raises
:class:`~poptune.exceptions.TrialsFailingError` with the first of them (its error and the
objective's traceback text). An objective with a typo then costs 5 trials, not 500. Trials
still running elsewhere are skipped in the count, never counted. ``None`` (or 0) carries on.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from poptune._validation import check_int
from poptune.exceptions import TrialsFailingError
from poptune.history import History
from poptune.trial import Trial, TrialStatus

if TYPE_CHECKING:
    from poptune.study.study import Study

__all__ = [
    "DEFAULT_MAX_CONSECUTIVE_FAILURES",
    "FailureLimit",
    "check_limit",
    "conclude",
    "failure_run",
    "where_logged",
]

logger = logging.getLogger("poptune")

#: ``optimize``'s default: stop once this many trials failed in a row.
DEFAULT_MAX_CONSECUTIVE_FAILURES = 5

_SUCCESS = (TrialStatus.COMPLETED, TrialStatus.STOPPED)


def check_limit(owner: str, value: Any) -> int | None:
    """``max_consecutive_failures`` checked: an int >= 1, or None (0 and None: no limit)."""
    if value is None:
        return None
    limit = check_int(owner, "max_consecutive_failures", value, 0)
    return None if limit == 0 else limit


def failure_run(history: History, start: int) -> list[Trial]:
    """The FAILED trials with ids above ``start`` since the last COMPLETED or STOPPED one (in
    id order), oldest first; QUEUED and RUNNING trials are skipped.

    It walks back from the newest id and stops at the first success: the cost is the run and
    the unfinished trials among it, not the study (no copy of ``history.trials``), so a worker
    that asks after every failure pays the same at trial 10 and at trial 100,000."""
    run: list[Trial] = []
    get = history.get
    for tid in range(history.n_trials, start, -1):  # a study's ids are 1..n_trials
        trial = get(tid)
        if trial is None:  # pragma: no cover - ids are dense
            continue
        status = trial.status
        if status in _SUCCESS:
            break
        if status is TrialStatus.FAILED:
            run.append(trial)
    run.reverse()
    return run


@dataclass(frozen=True)
class FailureLimit:
    """Stop once ``limit`` trials with ids above ``start`` failed in a row (picklable: it
    travels to worker processes in their plan)."""

    start: int
    limit: int

    def reached(self, study: Study) -> bool:
        """Whether the study's trials (synced now) show ``limit`` failures in a row."""
        return len(failure_run(study.history, self.start)) >= self.limit


def where_logged(study: Study, trial: Trial) -> str:
    """Where the traceback of a failed ``trial`` can be read."""
    if trial.meta.get("traceback"):
        where = f"study.get_trial({trial.id}).meta['traceback']"
    else:
        where = f"study.get_trial({trial.id}).meta"
    url = getattr(study._storage, "url", None)
    if url is not None:
        where += f", or `poptune trials <storage> {study.name} --status FAILED`"
    return where


def _summary(study: Study, start: int) -> tuple[list[Trial], Counter[str]]:
    trials = [t for t in study.history.trials if t.id > start]
    return trials, Counter(t.status.value for t in trials)


def conclude(study: Study, start: int, limit: int | None) -> None:
    """Log the summary of an ``optimize`` call whose trials have ids above ``start``; raise
    :class:`~poptune.exceptions.TrialsFailingError` when ``limit`` failures in a row stopped
    it."""
    trials, counts = _summary(study, start)
    if not trials:
        logger.info(
            "poptune: study %r: nothing to do, the algorithm is done (%d trials)",
            study.name,
            study.history.n_trials,
        )
        return
    order = ("COMPLETED", "STOPPED", "FAILED", "RUNNING", "QUEUED")
    by_status = ", ".join(f"{counts[s]} {s}" for s in order if counts[s])
    failed = [t for t in trials if t.status is TrialStatus.FAILED]
    run = failure_run(study.history, start) if limit is not None else []
    if limit is not None and len(run) >= limit:
        first = run[0]
        error = str(first.meta.get("error") or "no error recorded (see its meta)")
        text = str(first.meta.get("traceback") or "")
        logger.warning(
            "poptune: study %r: optimize() stopped: %d trials failed in a row (%s)",
            study.name,
            len(run),
            by_status,
        )
        raise TrialsFailingError(
            f"optimize() stopped: {len(run)} trials of study {study.name!r} failed in a row "
            f"with no success (max_consecutive_failures={limit}): trials "
            f"{[t.id for t in run]}. The first, trial {first.id}, failed with {error}"
            + (f"\n{text.rstrip()}" if text else "")
            + f"\n(traceback: {where_logged(study, first)}). Fix the objective and run "
            "optimize() again (the failed trials stay FAILED), or pass "
            "max_consecutive_failures=None to carry on despite failures.",
            trial_id=first.id,
            error=error,
            traceback=text,
            failed=[t.id for t in run],
        )
    if not failed:
        logger.info("poptune: study %r: %d trial(s) this call: %s", study.name, len(trials),
                    by_status)  # fmt: skip
        return
    first = failed[0]
    every = "every one FAILED" if len(failed) == len(trials) else by_status
    logger.warning(
        "poptune: study %r: %d trial(s) this call: %s; first error: trial %d: %s (traceback: %s)",
        study.name,
        len(trials),
        every,
        first.id,
        first.meta.get("error", "no error recorded"),
        where_logged(study, first),
    )
