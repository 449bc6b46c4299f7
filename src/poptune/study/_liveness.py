"""Liveness: a worker's heartbeats for the trials it runs, and the recovery of lost trials.

A :class:`Heartbeat` runs a daemon thread that, every ``interval`` seconds, stamps the
storage's clock on every RUNNING trial of its worker. Any worker that finds a RUNNING trial
whose stamp is older than the study's grace period marks it FAILED (its worker died:
SIGKILL, a lost machine, a pre-empted job): :func:`recover_lost_trials`, which then queues
them again with :func:`requeue` when the study has ``retry_failed_trials``. :func:`requeue`
is the one retry: ``Study.requeue`` is it, and the SHERPA job runner resubmits failed jobs
through that. The thread stops when the study object is closed or garbage-collected, or the
process exits.

**Busy is not dead.** A heartbeat that could not be written (the database locked by another
process, a lost connection) is tried again after at most a second, and never makes anyone's
trials look lost: stale means "no heartbeat for ``grace_period`` seconds *while the database
could be written*". The storage's ``lock_watch`` records when a write of this process last
had to give up waiting for the lock (or a heartbeat failed, or one of its own transactions
held the lock for longer than that wait lasts);
:func:`recover_lost_trials` reaps nothing until a full grace period has passed since that last
block, so owners that were only waiting have had the time to beat. (The evidence is this
process's own: a process that starts just as a long block ends has seen none, and may reap a
trial whose owner has not beaten yet; every process that was running during the block saw it.)
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING

from poptune.storage.base import Storage
from poptune.study._in_memory import record_of
from poptune.study._retry import once
from poptune.study._worker import final_segment_attempts
from poptune.trial import Trial

if TYPE_CHECKING:
    from poptune.study.study import Study

__all__ = ["Heartbeat", "recover_lost_trials", "requeue", "start_liveness"]

logger = logging.getLogger("poptune")


class Heartbeat:
    """Beats for ``worker`` on ``study_id`` every ``interval`` seconds once started."""

    def __init__(self, storage: Storage, study_id: int, worker: str, interval: float) -> None:
        self.storage = storage
        self.study_id = study_id
        self.worker = worker
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def start(self) -> None:
        """Start beating (idempotent)."""
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name=f"poptune-heartbeat-{self.worker}", daemon=True
                )
                self._thread.start()

    def stop(self, wait: float = 0.0) -> None:
        """Stop beating: a waiting thread ends at once, one that is beating after that beat.
        With ``wait`` (seconds), wait up to that long for it to end (never from the heartbeat
        thread itself, nor from a garbage collection's finalizer, which passes none)."""
        self._stop.set()
        thread = self._thread
        if wait > 0 and thread is not None and thread is not threading.current_thread():
            thread.join(wait)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        failing, delay = False, self.interval
        while not self._stop.wait(delay):
            try:
                self.storage.heartbeat(self.study_id, self.worker)
            except Exception as exc:  # noqa: BLE001 - keep beating through passing outages
                _note_blocked(self.storage)
                if not failing:
                    logger.warning("poptune: heartbeat of %s failed: %s", self.worker, exc)
                failing, delay = True, min(self.interval, 1.0)  # try again soon
                continue
            failing, delay = False, self.interval


def _note_blocked(storage: Storage) -> None:
    watch = getattr(storage, "lock_watch", None)
    if watch is not None:
        watch.blocked()


def blocked_within(storage: Storage, seconds: float) -> bool:
    """Whether this process saw ``storage`` unwritable in the last
    ``seconds``: then a trial's old heartbeat may be the database's fault, not its worker's."""
    watch = getattr(storage, "lock_watch", None)
    return watch is not None and watch.blocked_within(seconds)


def start_liveness(study: Study) -> None:
    """Give ``study`` a heartbeat (started with its first trial), on storages shared by
    processes and unless ``heartbeat_interval`` is None; set its liveness members, and
    ``_mem``: the record the short path of a study in memory works on (None: it has none,
    e.g. because it has a heartbeat; :mod:`poptune.study._in_memory`)."""
    study._heartbeat, study._grace, study._next_recovery = None, None, 0.0
    options = study._options
    interval = options.heartbeat_interval
    if study._storage.supports_heartbeat and interval is not None:
        study._heartbeat = Heartbeat(study._storage, study._study_id, study.worker_id, interval)
        weakref.finalize(study, study._heartbeat.stop)
        study._grace = float(options.grace_period)  # type: ignore[arg-type]
    study._mem = record_of(study)


def requeue(study: Study, trial_id: int, max_attempts: int | None) -> Trial | None:
    """The one retry (``Study.requeue``): queue trial ``trial_id`` once more, unless its
    attempt number (``meta['attempt']``, 1 for an original) is already ``max_attempts``.
    The caller has checked that the trial failed or stopped (``fail_stale_trials`` just
    failed it, in this transaction, or :meth:`Study.requeue` read its status)."""

    def make(number: int) -> Trial | None:
        old = study._storage.get_trial(study._study_id, trial_id)
        if max_attempts is not None and int(old.meta.get("attempt", 1)) >= max_attempts:
            return None
        return old._retry(number)

    return study._append(make)


def recover_lost_trials(study: Study) -> None:
    """Fail the trials whose worker stopped beating and, with ``retry_failed_trials=N``, queue
    each again while it has had at most N attempts (``Study.requeue(max_attempts=N + 1)``); at
    most once per heartbeat interval of this study object, and without the study's lock when
    nothing is stale (the usual answer)."""
    heartbeat, grace = study._heartbeat, study._grace
    if grace is None or heartbeat is None:
        return
    now = time.monotonic()
    if now < study._next_recovery:
        return
    study._next_recovery = now + heartbeat.interval
    storage, sid = study._storage, study._study_id
    if not storage.has_stale_trials(sid, grace) or blocked_within(storage, grace):
        return

    def reap() -> tuple[list[int], list[int]]:
        retried: list[int] = []
        with study._writing():  # one transaction: a lost trial is never seen without its retry
            if blocked_within(storage, grace):  # this very wait for the lock was one
                return [], []
            failed = storage.fail_stale_trials(sid, grace)
            for tid in failed:  # a lost final PBT segment is run again even without retries
                attempts = final_segment_attempts(study, tid)
                retry = None if attempts is None else requeue(study, tid, attempts)
                if retry is not None:
                    retried.append(retry.id)
        return failed, retried

    failed, retried = once(study, reap)
    if failed:
        logger.warning(
            "poptune: trial(s) %s of study %r lost their worker (no heartbeat for %g s) "
            "and were marked FAILED%s",
            failed,
            study.name,
            grace,
            f"; queued again as {retried}" if retried else "",
        )
