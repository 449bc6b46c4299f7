"""Heartbeats: a worker's sign of life for the trials it runs.

A :class:`Heartbeat` runs a daemon thread that, every ``interval`` seconds, stamps the
storage's clock on every RUNNING trial of its worker. Any worker that finds a RUNNING trial
whose stamp is older than the study's grace period marks it FAILED (its worker died:
SIGKILL, a lost machine, a pre-empted job). The thread stops when the study object is
garbage-collected or the process exits.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from poptune.storage.base import Storage

if TYPE_CHECKING:
    from poptune.study import Study

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

    def stop(self) -> None:
        """Stop beating (the thread ends within one interval)."""
        self._stop.set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.interval):
            try:
                self.storage.heartbeat(self.study_id, self.worker)
            except Exception as exc:  # noqa: BLE001 - keep beating through passing outages
                if not failing:
                    logger.warning("poptune: heartbeat of %s failed: %s", self.worker, exc)
                failing = True
            else:
                failing = False


def reap(study: Study) -> None:
    """Fail (and, with ``retry_failed_trials``, queue again) the trials whose worker stopped
    beating; at most once per heartbeat interval of this study object."""
    heartbeat, grace = study._heartbeat, study._grace
    if grace is None or heartbeat is None:
        return
    now = time.monotonic()
    if now < study._next_reap:
        return
    study._next_reap = now + heartbeat.interval
    storage, sid = study._storage, study._study_id
    if not storage.has_stale_trials(sid, grace):  # the usual answer, without the study's lock
        return
    retried: list[int] = []
    with storage.transaction(sid):
        # Sync first: inside the transaction a storage shows what was committed before it,
        # and failing a trial below stamps it with this transaction's version.
        study._history.sync(storage, sid)
        failed = storage.fail_stale_trials(sid, grace)
        if failed and study.retry_failed_trials:
            next_id = study._history.next_trial_id
            for tid in failed:
                old = storage.get_trial(sid, tid)
                if int(old.meta.get("attempt", 1)) > study.retry_failed_trials:
                    continue
                storage.insert_trial(sid, old._retry(next_id))
                retried.append(next_id)
                next_id += 1
    if failed:
        logger.warning(
            "poptune: trial(s) %s of study %r lost their worker (no heartbeat for %g s) "
            "and were marked FAILED%s",
            failed,
            study.name,
            grace,
            f"; queued again as {retried}" if retried else "",
        )
