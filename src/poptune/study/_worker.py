"""The worker loop: claim a trial, run the user's objective on it, report, finalize.

The same loop runs in the user's process (``study.optimize(n_workers=1)``), in local worker
processes, in Dask tasks and under ``poptune worker``. The objective is
``objective(trial) -> float | None``: it may report intermediate values with
``trial.report(value, iteration=..., **context)``, ask ``trial.should_stop()``, and return a
final value. The loop finalizes the trial:

* COMPLETED when it returned normally (its return value, if not None, is reported first);
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
from poptune.checkpoints import check_trial_names
from poptune.exceptions import CheckpointError, PoptuneError, TrialFinishedError
from poptune.trial import AlgorithmState, Trial, TrialStatus

if TYPE_CHECKING:
    from poptune.study.study import Study

__all__ = ["Objective", "deadline_in", "iterate", "mark_interrupted", "run_trial", "run_worker"]

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
    try:
        if value is not None:
            iteration = _final_iteration(trial)
            study.add_observation(trial, value, iteration=iteration)
    except PoptuneError as exc:
        logger.warning("poptune: trial %d returned a bad value: %s", trial.id, exc)
        return _fail(study, trial, error=f"{type(exc).__name__}: {exc}")
    if not trial.observations:
        return _fail(study, trial, error="the objective returned None and reported nothing")
    status = TrialStatus.STOPPED if trial._stop_seen else TrialStatus.COMPLETED
    try:
        study.finalize(trial, status)
    except TrialFinishedError:
        return trial.status
    return status


def iterate(study: Study) -> Iterator[Trial]:
    """``for trial in study``: see ``Study.__iter__`` (WAIT backs off from 10 ms to 1 s)."""
    mine: set[int] = set()
    backoff = Backoff(0.01, 1.0)
    while True:
        suggestion = study.get_suggestion()
        if isinstance(suggestion, Trial):
            mine.add(suggestion.id)
            backoff.reset()
            yield suggestion
            continue
        if suggestion is AlgorithmState.DONE:
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
) -> int:
    """Run trials until the algorithm is done, ``max_trial_id`` is reached or the
    ``deadline`` (``time.monotonic()``) passes; return how many trials ran here.

    On WAIT (a PBT generation finishing elsewhere) it polls with backoff, 10 ms to 0.5 s.
    With ``retry_failed_trials``, DONE with trials still running elsewhere is a WAIT too: a
    worker that died there has its trial re-queued here once its heartbeat is stale.
    """
    try:
        return _loop(study, objective, max_trial_id, deadline, on_trial)
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
) -> int:
    ran = 0
    backoff = Backoff(0.01, 0.5)
    while deadline is None or time.monotonic() < deadline:
        trial = study._suggest(max_trial_id)
        if trial is AlgorithmState.DONE:
            if not (study.retry_failed_trials and study.history.n_unfinished):
                break
            trial = AlgorithmState.WAIT  # a lost trial elsewhere may come back as a retry
        if trial is AlgorithmState.WAIT:
            backoff.wait(deadline)
            continue
        assert isinstance(trial, Trial)
        backoff.reset()
        status = run_trial(study, trial, objective)
        ran += 1
        if on_trial is not None:
            on_trial(trial, status)
    return ran
