"""Liveness rows of :class:`~poptune.storage.sql.SQLStorage` (a mixin it inherits): a
worker's heartbeat, the trials it runs, and looking for and failing the trials whose worker
stopped beating (the callers are the study package's liveness functions)."""

from __future__ import annotations

import time
from typing import Any

from poptune.storage import _transaction as txn
from poptune.storage._mirror import Mirror, decode_json
from poptune.storage._statements import FAIL_STALE, RUNNING_TRIALS_OF
from poptune.storage._transaction import Write, dumps
from poptune.trial import TrialStatus

__all__ = ["LivenessRows"]


class LivenessRows:
    """Heartbeats and stale trials of SQLStorage (see there); uses its connections,
    transactions, write path, ``_sql``, ``_fast``, ``lock_watch`` and ``_where``."""

    _fast: Any
    _sql: Any
    _where: str
    lock_watch: Any

    @txn.retried(reads=True)
    def heartbeat(self, study_id: int, worker: str) -> int:
        params = {"sid": study_id, "worker": worker}
        if self._fast is not None:  # one autocommit statement (a busy wait is tried again)
            with self._hot_connection() as conn:
                channel = conn.channel  # type: ignore[union-attr]
                run = lambda: channel.query((self._sql.heartbeat, params))[0][1]  # noqa: E731
                return int(txn.acquire(channel, [], self.lock_watch, self._where, run))
        with self._raw_transaction(write=True) as conn:
            return int(conn.execute(self._sql.heartbeat, params).rowcount)

    @txn.retried(reads=True)
    def running_trials_of(self, study_id: int, worker: str) -> list[int]:
        with self._connection() as conn:
            rows = conn.execute(RUNNING_TRIALS_OF, {"sid": study_id, "worker": worker})
            return [int(r[0]) for r in rows]

    @txn.retried(reads=True)
    def has_stale_trials(self, study_id: int, grace_period: float) -> bool:
        # One read, no lock and no commit: workers look every heartbeat interval, and a
        # locked transaction each time would queue them behind one another (all at once when
        # they start together).
        params = {"sid": study_id, "grace": grace_period}
        with self._connection() as conn:
            return bool(self._channel(conn).query((self._sql.any_stale, params))[0][0])

    @txn.retried(reads=False)
    def fail_stale_trials(self, study_id: int, grace_period: float) -> list[int]:
        with self._transaction(study_id, prefetch=False) as tx:
            params = {"sid": study_id, "grace": grace_period}
            stale = tx.channel.query((self._sql.stale, params))[0][0]
            now = time.time()
            with self._naming(study_id):
                failed = [(tid, {**decode_json(meta_json, "meta", tid), "heartbeat_lost": True})
                          for tid, meta_json in stale]  # fmt: skip
            if failed:
                statements = [(FAIL_STALE, {"meta": dumps(meta, "trial metadata"), "now": now,
                                            "sid": study_id, "tid": tid})
                              for tid, meta in failed]  # fmt: skip

                def apply(mirror: Mirror, version: int) -> None:
                    for tid, meta in failed:
                        mirror.finish(tid, TrialStatus.FAILED, meta, version)

                self._execute_write(study_id, Write(statements, apply))
        return [tid for tid, _ in failed]
