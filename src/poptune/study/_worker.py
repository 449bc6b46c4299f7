"""The worker loop: claim a trial, run the user's objective on it, report, finalize.

The same loop runs in the user's process (``study.optimize(n_workers=1)``), in local worker
processes, in Dask tasks and under ``poptune worker``. The objective is
``objective(trial) -> float | None``: it may report intermediate values with
``trial.report(value, iteration=..., **context)``, ask ``trial.should_stop()``, and return a
final value. The loop finalizes the trial:

* COMPLETED when it returned normally (its return value, if not None, is recorded with the
  final status in one storage write: :func:`finalize_with_value`);
* STOPPED when ``trial.should_stop()`` said so and the objective then returned;
* FAILED when it raised (the exception is recorded in ``trial.meta['error']`` and the study
  goes on), when its checkpoint to start from is missing (``CheckpointError``: never a silent
  fresh start), or when it reported nothing at all;
* FAILED with ``meta['interrupted']`` on Ctrl-C, which then propagates: the study can be
  resumed.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from poptune._polling import Backoff
from poptune._validation import check_iteration, check_objective
from poptune.checkpoints import check_trial_names
from poptune.exceptions import CheckpointError, PoptuneError, TrialFinishedError
from poptune.study._failures import FailureLimit
from poptune.trial import AlgorithmState, Observation, Trial, TrialStatus

if TYPE_CHECKING:
    from poptune.study.study import Study

__all__ = [
    "Objective",
    "StaleNotice",
    "after_finalize",
    "deadline_in",
    "final_segment_attempts",
    "finalize_with_value",
    "iterate",
    "mark_interrupted",
    "others_running",
    "run_trial",
    "run_worker",
]

logger = logging.getLogger("poptune")

Objective = Callable[[Trial], Any]


def _fail(study: Study, trial: Trial, **info: Any) -> TrialStatus:
    try:
        study.finalize(trial, TrialStatus.FAILED, meta={**trial.meta, **info})
    except TrialFinishedError:  # e.g. reaped meanwhile as its heartbeat looked lost
        pass
    return TrialStatus.FAILED


def run_trial(study: Study, trial: Trial, objective: Objective) -> TrialStatus:
    """Run ``objective`` on ``trial`` and finalize it; return the final status."""
    try:
        check_trial_names(trial)  # a crafted row fails here, before any file is touched
        if trial.load_from and study.checkpoint_dir is not None:
            study.checkpoints.load_path(trial)  # missing: CheckpointError, loudly
        value = objective(trial)
    except KeyboardInterrupt:
        _fail(study, trial, interrupted=True)
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code failed: record it, go on
        error = f"{type(exc).__name__}: {exc}"
        logger.warning("poptune: trial %d failed: %s", trial.id, error)
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
        return _fail(study, trial, error=error, traceback=tb,
                     checkpoint_missing=isinstance(exc, CheckpointError))  # fmt: skip
    status = TrialStatus.STOPPED if trial._stop_seen else TrialStatus.COMPLETED
    if value is not None:
        try:  # the returned value and the final status: one write
            finalize_with_value(study, trial, value, _final_iteration(trial), status)
        except TrialFinishedError as exc:  # e.g. reaped meanwhile: its status stands
            logger.warning(
                "poptune: trial %d's value is not recorded: %s (finalized elsewhere meanwhile, "
                "e.g. as its heartbeat looked lost)", trial.id, exc,
            )  # fmt: skip
            return _fail(study, trial)
        except PoptuneError as exc:  # the value was refused: nothing was written
            logger.warning("poptune: trial %d returned a bad value: %s", trial.id, exc)
            return _fail(study, trial, error=f"{type(exc).__name__}: {exc}")
        return status
    if not trial.observations:
        return _fail(study, trial, error="the objective returned None and reported nothing")
    try:
        study.finalize(trial, status)
    except TrialFinishedError:
        return trial.status
    return status


def finalize_with_value(
    study: Study, trial: Trial, value: Any, iteration: int, status: TrialStatus
) -> None:
    """``study.add_observation(trial, value, iteration)`` then ``study.finalize(trial,
    status)``, as one storage write (:meth:`~poptune.storage.Storage.finish_with_observation`:
    one transaction on the SQL storages). Raises what those raise; nothing is written when
    the value is refused."""
    study._check_writable()
    objective = check_objective(value, trial.id)
    observation = Observation(check_iteration(iteration, trial.id), objective, {})
    study._storage.finish_with_observation(study._study_id, trial.id, observation, status)
    study._callbacks.observed(study, trial, observation)
    after_finalize(study, trial.id, status)


def after_finalize(study: Study, trial_id: int, status: TrialStatus) -> None:
    """What follows a final status (``Study.finalize`` and :func:`finalize_with_value`): the
    study callbacks' ``on_trial_end``; then, with ``keep_checkpoints``, the checkpoints
    nothing needs any more are deleted (what is deleted is decided in poptune.checkpoints)."""
    study._callbacks.finished(study, trial_id, status)
    if study.keep_checkpoints is not None:
        with study._lock:
            where = (study._storage, study._study_id, study._history, study.keep_checkpoints)
            study.checkpoints.collect_after_finalize(*where, study.algorithm.pending_checkpoints)


def iterate(study: Study) -> Iterator[Trial]:
    """``for trial in study``: see ``Study.__iter__`` (WAIT backs off from 10 ms to 1 s). A
    trial the loop handed out and nobody finalized is named in a warning: on WAIT when only
    such trials are left (PBT's generation never ends), on DONE (any other algorithm). The
    study callbacks' ``on_study_start`` fires as the loop begins, ``on_study_end`` when it
    ends (or raises), not when it is left with ``break``."""
    study._callbacks.study_started(study)
    left = False
    try:
        yield from _iterate(study)
    except GeneratorExit:  # the loop was left (break): the study has not ended
        left = True
        raise
    finally:
        if not left:
            study._callbacks.study_ended(study)


def _iterate(study: Study) -> Iterator[Trial]:
    mine: set[int] = set()
    backoff = Backoff(0.01, 1.0)
    suggest = study.get_suggestion
    while True:
        suggestion = suggest()
        if isinstance(suggestion, Trial):
            mine.add(suggestion.id)
            if backoff.delay != backoff.first:  # it waited: the next wait is short again
                backoff.reset()
            yield suggestion
            continue
        if suggestion is AlgorithmState.DONE:
            forgotten = [t.id for t in study._history.unfinished if t.id in mine]
            if forgotten:  # what PBT's WAIT below says, for an algorithm that never waits
                logger.warning(
                    "poptune: the algorithm is done, but trial(s) %s, which this loop handed "
                    "out, were never finalized: they stay RUNNING and get_best_result() "
                    "ignores them. Call study.finalize(trial) for every trial.",
                    forgotten,
                )
            return
        unfinished = study._history.unfinished
        if all(t.id in mine for t in unfinished):
            logger.warning(
                "poptune: the algorithm waits for trial(s) %s, which this loop handed out "
                "but which were never finalized; ending the loop. Call study.finalize(trial) "
                "for every trial.",
                [t.id for t in unfinished],
            )
            return
        backoff.wait()


def deadline_in(seconds: float | None) -> float | None:
    """The ``time.monotonic()`` deadline ``seconds`` from now (None: none)."""
    return None if seconds is None else time.monotonic() + seconds


def _final_iteration(trial: Trial) -> int:
    """Iteration for a returned value: the PBT generation if not used yet, else the next."""
    if trial.generation is not None and trial.generation not in trial.observations:
        return int(trial.generation)
    return max(trial.observations) + 1 if trial.observations else 1


def run_worker(
    study: Study,
    objective: Objective,
    max_trial_id: int | None = None,
    deadline: float | None = None,
    on_trial: Callable[[Trial, TrialStatus], None] | None = None,
    *,
    failures: FailureLimit | None = None,
    announce: bool = True,
) -> int:
    """Run trials until the algorithm is done, ``max_trial_id`` is reached, the
    ``deadline`` (``time.monotonic()``) passes or, after a trial of this worker failed, the
    study shows ``failures.limit`` failures in a row (:mod:`poptune.study._failures`); return
    how many trials ran here.

    ``announce``: say which trials running elsewhere (or left RUNNING by a worker that died)
    this worker waits for (:func:`poptune.study._liveness.announce_stale`); ``optimize``'s
    workers leave that to the process that started them.

    On WAIT (a PBT generation finishing elsewhere) it polls with backoff, 10 ms to 0.5 s.
    DONE while trials run elsewhere (the last PBT generation, the last trials of a search) is
    a wait too, on storages with heartbeats (polled from 50 ms up to the heartbeat interval,
    at most 2 s): a trial whose worker died goes stale after the grace period, is marked
    FAILED here, and its retry (``retry_failed_trials``) or, for a PBT segment of the last
    generation, its replacement runs here before this worker leaves. So the study is
    complete, not 3 of 4 members finished, when the last worker returns.
    """
    try:
        with study._storage.trial_loop(study._study_id):  # PostgreSQL: 2 round trips a trial
            return _loop(study, objective, max_trial_id, deadline, on_trial, failures, announce)
    except KeyboardInterrupt:
        # Mark whatever this worker had started, even between steps; a second Ctrl-C (a
        # terminal sends one to every process, the parent may relay another) must not cut
        # the marking short.
        with _sigint_ignored():
            mark_interrupted(study)
        raise


def mark_interrupted(study: Study) -> list[int]:
    """After Ctrl-C: mark FAILED (meta ``interrupted``) every trial this object handed out
    that is still running; return their ids."""
    marked = []
    running_here = study._storage.running_trials_of(study._study_id, study.worker_id)
    for tid in sorted(study._handed_out | set(running_here)):
        trial = study.history.get(tid)
        if trial is None or trial.is_finished:
            continue
        try:
            study.finalize(tid, TrialStatus.FAILED, meta={**trial.meta, "interrupted": True})
        except PoptuneError:
            continue
        marked.append(tid)
    study._handed_out.clear()
    return marked


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _loop(
    study: Study,
    objective: Objective,
    max_trial_id: int | None,
    deadline: float | None,
    on_trial: Callable[[Trial, TrialStatus], None] | None,
    failures: FailureLimit | None,
    announce: bool,
) -> int:
    ran = 0
    backoff = Backoff(0.01, 0.5)
    draining = _drain_backoff(study)
    notice = StaleNotice(study) if announce else None
    while deadline is None or time.monotonic() < deadline:
        trial = study._suggest(max_trial_id)
        if trial is AlgorithmState.DONE:
            if not others_running(study, max_trial_id):
                break
            # The last generation: trials running elsewhere may still fail, and their worker
            # may be dead. Stay until they finish or go stale; the next _suggest reaps a
            # stale one and claims its retry (or the replacement of a final segment).
            if notice is not None:
                notice.check()
            draining.wait(deadline)
            continue
        draining.reset()
        if trial is AlgorithmState.WAIT:
            if notice is not None:
                notice.check()
            backoff.wait(deadline)
            continue
        assert isinstance(trial, Trial)
        backoff.reset()
        status = run_trial(study, trial, objective)
        ran += 1
        if on_trial is not None:
            on_trial(trial, status)
        if status is TrialStatus.FAILED and failures is not None and failures.reached(study):
            break
    return ran


def _drain_backoff(study: Study) -> Backoff:
    """Polls while the study is DONE but trials run elsewhere: from 50 ms up to the heartbeat
    interval (at most 2 s): a lost trial is reaped at most once per interval anyway."""
    heartbeat = study._heartbeat
    cap = 0.5 if heartbeat is None else min(2.0, max(0.5, heartbeat.interval))
    return Backoff(0.05, cap)


def others_running(study: Study, max_trial_id: int | None = None) -> list[int]:
    """Ids of the QUEUED or RUNNING trials that other workers may still finish, fail or lose,
    and that this worker must therefore wait for before it leaves a study that is DONE.

    Only on storages with heartbeats (a dead worker's trial is reaped there; elsewhere nobody
    could tell it from a slow one, so nobody waits). Not the trials this Study object handed
    out itself (its own loop finalizes them, or nobody will). With ``max_trial_id`` (an
    ``optimize(n_trials=...)`` call), only this call's trials and retries: trials of workers
    of other calls are theirs to wait for.
    """
    if study._grace is None:
        return []
    mine = study._handed_out
    return [
        t.id
        for t in study.history.unfinished
        if t.id not in mine
        and (max_trial_id is None or t.id <= max_trial_id or "retry_of" in t.meta)
    ]


def final_segment_attempts(study: Study, trial_id: int) -> int | None:
    """How many attempts a trial that lost its worker may have in all, for
    :func:`~poptune.study._liveness.recover_lost_trials`: ``retry_failed_trials + 1``, except
    that a PBT segment of the last generation gets one more attempt even without retries.
    Without retries PBT replaces a lost member by exploiting in the next generation; after the
    last one there is none, so the member's final segment is run again instead (a retry with
    ``meta['retry_of']``, which PBT counts as another attempt at the same slot). Returns None
    for no retry."""
    retries = study.retry_failed_trials
    if retries:
        return retries + 1
    last = getattr(study.algorithm, "num_generations", None)
    trial = study._history.get(trial_id)
    if not isinstance(last, int) or trial is None or trial.member is None:
        return None
    if trial.generation is None or trial.generation < last:
        return None
    return 2


class StaleNotice:
    """Says which trials running elsewhere a worker waits for when they look abandoned.

    A study run again after its worker was killed (SIGKILL, a lost machine) finds the trials
    that worker was running still RUNNING. They are marked FAILED only once they have had no
    heartbeat for ``grace_period`` seconds (a slow worker is not a dead one), so a resumed
    study may wait that long; it says so, once per set of trials: which trials, that some sent
    no heartbeat for a while, how long the grace period is and what happens then (queued again
    with ``retry_failed_trials``, or left FAILED). Looked at most once per heartbeat interval.
    """

    def __init__(self, study: Study) -> None:
        self.study = study
        self.said: set[int] = set()
        self.next = 0.0

    def check(self) -> list[int]:
        """While this worker waits (WAIT, or DONE with trials running elsewhere): announce (a
        WARNING) the RUNNING trials of other workers, when some of them sent no heartbeat for
        two intervals and none has passed the grace period yet (those are reaped now, and that
        says so); return the ids announced."""
        study = self.study
        heartbeat, grace = study._heartbeat, study._grace
        if grace is None or heartbeat is None:
            return []
        now = time.monotonic()
        if now < self.next:
            return []
        self.next = now + heartbeat.interval
        mine = study._handed_out
        others = [t.id for t in study.history.unfinished
                  if t.status is TrialStatus.RUNNING and t.id not in mine]  # fmt: skip
        if not others or set(others) <= self.said:
            return []
        storage, sid = study._storage, study._study_id
        quiet = min(2 * heartbeat.interval, (heartbeat.interval + grace) / 2)
        if not storage.has_stale_trials(sid, quiet) or storage.has_stale_trials(sid, grace):
            return []
        self.said.update(others)
        retries = study.retry_failed_trials
        then = (
            f"queued again (retry_failed_trials={retries})"
            if retries
            else "not run again unless the algorithm replaces it (pass retry_failed_trials=1 "
            "to re-run a trial whose worker died)"
        )
        logger.warning(
            "poptune: study %r: trial(s) %s are RUNNING in another worker and some sent no "
            "heartbeat for over %g s: their worker may have died (e.g. an earlier run was "
            "killed). This worker waits for them: a trial without a heartbeat for "
            "grace_period=%g s is marked FAILED then, and %s. `poptune fail-stale` fails them "
            "now by hand.",
            study.name,
            others,
            quiet,
            grace,
            then,
        )
        return others
