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

from poptune.storage.base import Storage

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
