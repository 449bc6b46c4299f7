"""SQL storage through SQLAlchemy 2: SQLite files (the embedded default) and PostgreSQL.

* **One lock per study.** Every write runs in a transaction that starts with
  ``UPDATE poptune_studies SET version = version + 1 ... RETURNING ...``: on PostgreSQL that
  locks the study's row, on SQLite the transaction is ``BEGIN IMMEDIATE`` (the database's
  write lock). Writers of one study are serialized; the new version numbers every change.
* **Incremental sync.** Each process keeps a *mirror* of every study it reads
  (:mod:`poptune.storage._mirror`), complete up to a database version; syncing reads only the
  rows above it, in one snapshot (SQLite ``BEGIN``, PostgreSQL ``REPEATABLE READ``). In a
  write transaction the mirror is brought up to the version before the lock, so an algorithm
  decides on everything committed before it. Own writes reach the mirror once committed.
* **One path per write.** Each write is described once, as a
  :class:`~poptune.storage._transaction.Write` (statements, parameters, what it does to the
  mirror), and run by :meth:`SQLStorage._execute_write`: as PostgreSQL's single statement
  where no transaction is open, else in the caller's transaction or one of its own, whose
  channel sends each statement at once (:class:`~poptune.storage._transaction.Direct`) or
  pipelines it (:class:`~poptune.storage._postgres.Pipelined`).
* **PostgreSQL's measured optimizations** are in :mod:`poptune.storage._postgres` (never
  imported for SQLite); all SQL text is in :mod:`poptune.storage._statements`. SQLite's
  per-trial statements run on kept raw sqlite3 connections (:mod:`poptune.storage.
  _sqlite_fast`); SQLAlchemy keeps the schema, migrations, URLs and study-level statements.
* **Dead workers are looked for without the lock**: one read per heartbeat interval
  (:meth:`SQLStorage.has_stale_trials`); only a stale trial found takes the lock to fail it.
* Values are stored as JSON text, never pickled. **Every row read is checked**
  (:func:`~poptune.storage._mirror.decode_json`, :func:`~poptune.storage._mirror.
  decode_status`): a corrupt row raises :class:`~poptune.exceptions.CorruptRowError` naming
  the study, the trial and the field. A study with a corrupt trial row is refused as a whole
  (loudly, naming the row) rather than read without it; other studies stay readable.
* **Read-only openings** (``read_only=True``) never write: SQLite is opened with
  ``mode=ro`` (and ``immutable=1`` where even that cannot open it, on a read-only file
  system), with no ``journal_mode`` change; no table is created and no schema migrated (a
  database that needs a migration says so); every write raises StorageError.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from poptune.exceptions import (
    ConfigurationError,
    DuplicateIterationError,
    StorageError,
    StudyNotFoundError,
    UnknownTrialError,
)
from poptune.storage import _sqlite_fast as fast
from poptune.storage import _transaction as txn
from poptune.storage._connect import (
    canonical_url,
    connection_error,
    on_connect_read_only,
    read_only_connect,
    safe_url,
)
from poptune.storage._liveness_rows import LivenessRows
from poptune.storage._mirror import (
    Changes,
    Mirror,
    Mirrors,
    decode_json,
    read_locked,
    read_snapshot,
    reads_after,
)
from poptune.storage._sqlite_fast import FastChannel, RawConnection, RawPool, dispose, fast_pool
from poptune.storage._sqlite_locks import FrozenWriters
from poptune.storage._statements import (
    COMMIT,
    DIALECTS,
    FINISH,
    INS_OBS,
    INS_OBS_RUNNING,
    PG_FINISH_OBS,
    SET_STATE,
    STOP,
    STUDY_STATE,
    Statement,
)
from poptune.storage._study_rows import StudyRows
from poptune.storage._transaction import Direct, Tx, Write, dumps, dumps_context
from poptune.storage.base import Storage
from poptune.trial import Observation, Trial, TrialStatus

if TYPE_CHECKING:
    from poptune.storage._postgres import Pipelined, Postgres

__all__ = ["SQLStorage", "safe_url"]


_NO_OBSERVATION = (
    "has no observation: call add_observation() before finalizing it as COMPLETED, or "
    "finalize it as FAILED"
)


class SQLStorage(StudyRows, LivenessRows, Storage):
    """Studies in an SQLite file or a PostgreSQL database, shared by any number of processes.

    Args:
        url: ``sqlite:///path/to/file.db`` (relative to the working directory;
            ``sqlite:////abs/path.db`` for an absolute path) or
            ``postgresql://user:password@host:port/database`` (needs ``poptune[postgres]``,
            i.e. psycopg 3); ``postgres://`` is the same.
        engine_kwargs: extra keyword arguments for :func:`sqlalchemy.create_engine`.
        sync_observations: PostgreSQL only. False (the default): an observation recorded
            outside a transaction is committed without waiting for the server to flush it to
            disk (``synchronous_commit`` off for that one statement), which saves a disk
            flush per observation while the study's lock is held. A crash of a *worker*
            loses nothing; a crash of the *database server* (or its machine) within about
            0.6 s of an observation can lose that observation, unless a later suggestion or
            final status — always flushed, and flushing everything committed before it — has
            already reached the disk. True waits for every observation's flush. (SQLite files
            are written with ``synchronous=NORMAL``, the same trade on a power loss.)
        read_only: open for reading only (what ``load_study``, the ``poptune`` read commands
            and the dashboard do): no table created, no migration, no write of any kind
            (each raises StorageError); an SQLite file is opened ``mode=ro`` and its journal
            mode is left as it is. Reading a WAL-mode SQLite file still makes SQLite create
            its ``-wal``/``-shm`` side files where the directory allows it (the reader
            protocol; the database file is not changed); on a read-only file system the file
            is opened ``immutable=1`` instead.
        lock_timeout: seconds one wait for a study's lock lasts (PostgreSQL ``lock_timeout``,
            SQLite ``busy_timeout``) before it is rolled back and tried again with backoff;
            default 10, or ``?lock_timeout=`` in the URL (docs/topics/concurrency.md,
            "Locks, frozen workers and lost connections").
        stall_timeout: PostgreSQL: seconds a poptune session may sit in an open transaction
            without sending anything before the server ends it, which releases the lock of a
            frozen holder (``idle_in_transaction_session_timeout``); SQLite: seconds a
            poptune process on this machine may hold the write lock stopped or using no CPU
            before a waiting worker ends it (``SIGKILL``; docs/topics/frozen-writer.md);
            default 60, or ``?stall_timeout=`` in the URL. It must exceed the longest
            suggestion.

    Raises:
        ConfigurationError: the URL is not an SQLite or PostgreSQL URL, or the driver is not
            installed.
        StorageError: the database cannot be reached or opened; a failed connection is one
            short error (the driver's error kept as its ``cause`` attribute, not chained).
    """

    requires_json = True
    supports_heartbeat = True

    def __init__(
        self,
        url: str,
        engine_kwargs: Mapping[str, Any] | None = None,
        *,
        sync_observations: bool = False,
        read_only: bool = False,
        lock_timeout: float | None = None,
        stall_timeout: float | None = None,
    ) -> None:
        url = canonical_url(url)  # postgres:// is postgresql://
        self.url = url
        self.read_only = bool(read_only)
        self._where = safe_url(url)
        try:
            parsed = make_url(url)
        except Exception:  # noqa: BLE001 - SQLAlchemy raises ArgumentError and others
            raise ConfigurationError(
                f"not a database URL: {url!r}; expected sqlite:///file.db or "
                "postgresql://user@host/database"
            ) from None
        parsed, self._locks = txn.LockSettings.take(parsed, lock_timeout, stall_timeout)
        #: How long this process's transactions held study locks, and waits that timed out.
        self.lock_watch = txn.LockWatch(self._locks.lock_timeout)
        backend = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"}
        self._pg: Postgres | None = None
        self._frozen: FrozenWriters | None = None
        if backend == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                raise ConfigurationError(
                    f"{url!r} is an in-memory SQLite database, which other processes cannot "
                    "see; use storage='memory', or a file: sqlite:///runs.db"
                )
            kwargs["connect_args"] = {"timeout": self._locks.lock_timeout,
                                      "check_same_thread": False}  # fmt: skip
            if self.read_only:
                kwargs["creator"] = read_only_connect(parsed.database, parsed.query)
            elif not parsed.query.get("uri"):  # a frozen poptune holder is ended
                self._frozen = FrozenWriters(parsed.database, self._locks.stall_timeout)
                self.lock_watch.unstall = self._frozen.check
        elif backend == "postgresql":
            # Imported here: SQLite never loads PostgreSQL's fast path (nor psycopg).
            from poptune.storage._postgres import Postgres

            self._pg = Postgres(parsed, sync_observations, self._locks)
            parsed = self._pg.url
            kwargs.update(self._pg.engine_kwargs)
        else:
            raise ConfigurationError(
                f"unsupported database {backend!r} in {self._where!r}: poptune stores studies "
                "in SQLite (sqlite:///file.db) or PostgreSQL (postgresql://...)"
            )
        self._sql = DIALECTS[backend]
        kwargs.update(engine_kwargs or {})
        try:
            self._engine = sa.create_engine(parsed, **kwargs)
        except ImportError as exc:
            raise ConfigurationError(
                f"the driver for {self._where!r} is not installed ({exc}); "
                "pip install 'poptune[postgres]'"
            ) from None
        #: SQLite, writable: the per-trial statements' kept raw connections.
        self._fast: RawPool | None = None
        if self._pg is None:
            listener = on_connect_read_only if self.read_only else self._locks.sqlite_on_connect()
            if self._frozen is not None:  # held again by a storage used after close()
                listener = self._frozen.around(listener)
            sa.event.listen(self._engine, "connect", listener)
            if not self.read_only:
                self._fast = fast_pool(self._engine, kwargs, listener, self._where)
        else:
            self._pg.attach(self._engine)
        # Close the pooled connections when this storage is dropped (or at exit).
        self._finalizer = weakref.finalize(self, dispose, self._engine, self._fast, self._frozen)
        self._local = threading.local()
        self._mirrors = Mirrors()
        if self.read_only:
            self._check_schema()
        else:
            self._migrate()

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"SQLStorage({self._where!r}{mode})"

    def close(self) -> None:
        """Close the database connections (the storage reconnects if used again)."""
        dispose(self._engine, self._fast, self._frozen)

    # -- connections and transactions -------------------------------------------------------
    @contextmanager
    def _connection(self) -> Iterator[sa.Connection]:
        try:
            connection = self._engine.connect()
        except (sa.exc.DatabaseError, sa.exc.InterfaceError) as exc:
            # One short error, the driver's kept as its cause (not 100+ lines of chain).
            raise connection_error(self._where, exc) from None
        with self._database_errors(), connection as conn:
            yield conn

    @contextmanager
    def _database_errors(self) -> Iterator[None]:
        """A database error in the block ("file is not a database", "no such column", ...) as
        one StorageError naming the database; an IntegrityError passes (callers map it)."""
        try:
            yield
        except sa.exc.IntegrityError:
            raise
        except (sa.exc.DatabaseError, sa.exc.InterfaceError) as exc:
            raise StorageError(f"database error on {self._where}: {txn.first_line(exc)}") from exc

    @contextmanager
    def _hot_connection(self) -> Iterator[sa.Connection | RawConnection]:
        """The per-trial statements' connection: a kept raw one on a writable SQLite file."""
        if self._fast is None:
            with self._connection() as conn:
                yield conn
            return
        try:
            conn = self._fast.checkout()
        except (sa.exc.DatabaseError, sa.exc.InterfaceError) as exc:
            raise connection_error(self._where, exc) from None
        try:
            with self._database_errors():
                yield conn
        finally:
            self._fast.checkin(conn)

    def _channel(self, conn: sa.Connection | RawConnection) -> Direct | Pipelined | FastChannel:
        """How statements travel on ``conn``: pipelined where the driver can."""
        if self._fast is not None and not isinstance(conn, sa.Connection):
            return conn.channel
        if self._pg is not None:
            pipelined = self._pg.channel(conn, self._where)
            if pipelined is not None:
                return pipelined
        return Direct(conn, self._sql, self._where)

    def _check_writable(self) -> None:
        if self.read_only:
            raise StorageError(
                f"{self._where} was opened read-only: nothing can be written through it; "
                "open it with storage=URL (e.g. Study(..., storage=...)) to change it"
            )

    @contextmanager
    def _raw_transaction(self, write: bool) -> Iterator[sa.Connection]:
        """A transaction not tied to a study (schema, creating and deleting studies)."""
        if write:
            self._check_writable()
        with self._connection() as conn:
            begin = [(self._sql.begin_write if write else self._sql.begin_read, None)]
            txn.acquire(Direct(conn, self._sql, self._where), begin, self.lock_watch, self._where)
            try:
                yield conn
                conn.exec_driver_sql(COMMIT)
            except BaseException:
                txn.rollback(conn)
                raise

    def trial_loop(self, study_id: int) -> AbstractContextManager[None]:
        """A worker loop's block: in it, a trial's final write also opens the transaction of
        the suggestion that follows (PostgreSQL, pipelined: :meth:`Postgres.chained`)."""
        return self._pg.chained(self, study_id) if self._pg is not None else nullcontext()

    def transaction(self, study_id: int) -> AbstractContextManager[None]:  # type: ignore[override]
        # Whoever opens the study's lock syncs next (a suggestion, a reap, add_trial): on
        # PostgreSQL the changes come with the lock, in the same round trip.
        return self._transaction(study_id, prefetch=True)  # type: ignore[return-value]

    def _transaction(self, study_id: int, prefetch: bool) -> AbstractContextManager[Tx]:
        """This thread's transaction on the study: the one open, or a new one (which commits
        at the end, then applies its writes to the mirror; SQLite: a FastTransaction)."""
        tx: Tx | None = getattr(self._local, "tx", None)
        if tx is not None:
            if tx.sid != study_id:
                raise StorageError("a transaction on one study cannot open one on another")
            return fast.Joined(tx)
        if self._fast is not None:
            return fast.FastTransaction(self, study_id)
        return self._new_transaction(study_id, prefetch)

    @contextmanager
    def _new_transaction(self, study_id: int, prefetch: bool) -> Iterator[Tx]:
        # PostgreSQL, in a worker loop: the transaction a final write opened may be waiting
        held = self._pg.take_held(self, study_id) if self._pg is not None else None
        with held.connection if held is not None else self._hot_connection() as conn:
            try:
                tx = held.tx if held is not None else self._open(conn, study_id, prefetch)
                n_trials = tx.n_trials
                self._local.tx = tx
                yield tx
                state_json = tx.state_json
                if tx.state is not None:
                    state_json = dumps(tx.state, "the algorithm state")
                if state_json != tx.state_json or tx.n_trials != n_trials:
                    tx.channel.send(SET_STATE, {"state": state_json, "n": tx.n_trials,
                                                "sid": study_id})  # fmt: skip
                txn.commit(tx, self._pg.outcome if self._pg is not None else None)
            except BaseException as exc:
                txn.rollback(conn)
                txn.raise_if_lost(exc, self._where, conn)
                raise
            finally:
                self._local.tx = None
        self._mirrors.commit(study_id, tx.version, tx.on_commit)
        if tx.analyze:
            self._pg.analyze()  # type: ignore[union-attr]

    def _open(self, conn: sa.Connection, study_id: int, prefetch: bool) -> Tx:
        """Begin a write transaction and take the study's lock (by bumping its version); where
        pipelined and ``prefetch``, the changes after the mirror's version come along."""
        self._check_writable()
        channel = self._channel(conn)
        statements: list[Statement] = [
            (self._sql.begin_write, None), (self._sql.lock, {"sid": study_id}),
        ]  # fmt: skip
        base = None
        if prefetch and channel.pipelined:
            # Executed after LOCK, so once the lock is held: they see every commit before it.
            with self._mirrors.lock:
                base = self._mirrors.get(study_id)
                statements += reads_after(study_id, base.db_version)
        answers = txn.acquire(channel, statements, self.lock_watch, self._where)
        if not answers[1][0]:
            raise StudyNotFoundError(f"no study with id {study_id!r} in {self}")
        # On PostgreSQL the lock's row ends with the transaction's id.
        version, state_json, n_trials, *xid = answers[1][0][0]
        if base is not None:
            changes = Changes(version - 1, answers[2][0], answers[3][0])
            with self._naming(study_id):
                self._mirrors.catch_up(study_id, base, changes)
        return Tx(channel, study_id, version, state_json, n_trials, self.lock_watch, *xid)

    def _tx(self, study_id: int) -> Tx | None:
        tx: Tx | None = getattr(self._local, "tx", None)
        return tx if tx is not None and tx.sid == study_id else None

    # -- the one write path -----------------------------------------------------------------
    @txn.retried(reads=False)
    def _execute_write(self, study_id: int, write: Write) -> bool:
        """Run a write to a study; whether it was made (an answered write may change nothing).

        Where no transaction is open on the study and PostgreSQL has the write as one statement
        (:attr:`poptune.storage._postgres.Postgres.alone`), that statement is its own
        transaction (and may bring back the changes since the mirror's version, read with the
        lock held). Otherwise the write goes into the caller's transaction, or one of its own.
        Either way the mirror gets ``write.apply`` once the write commits."""
        self._check_writable()
        pg = self._pg
        if pg is not None and len(write.statements) == 1 and self._tx(study_id) is None:
            stmt, params = write.statements[0]
            alone = pg.alone.get(stmt)
            if alone is not None and not pg.holds(self, study_id):
                if stmt is PG_FINISH_OBS and pg.chains(self, study_id):
                    return pg.finish_then_lock(self, study_id, write)
                return pg.run_alone(self, study_id, write, alone)
        with self._transaction(study_id, prefetch=False) as tx:
            return self._write_in(tx, write)

    def _write_in(self, tx: Tx, write: Write) -> bool:
        """``_execute_write`` in the open transaction ``tx``."""
        channel = tx.channel
        *first, (last, params) = write.statements
        for stmt, p in first:
            p["v"] = tx.version
            channel.send(stmt, p)
        params["v"] = tx.version
        if not write.answered:
            channel.send(last, params)
        elif not channel.query((last, params))[0][1]:
            self._check_running(tx.sid, write.guard, channel, write.refused)
            return False
        tx.on_commit.append(write.apply)
        return True

    # -- the mirror -------------------------------------------------------------------------
    def _refresh_mirror(self, study_id: int) -> Mirror:
        """Bring the study's mirror up to date: in this thread's transaction on it, up to the
        version before its lock; else from one consistent snapshot.

        Raises:
            CorruptRowError: a row of the study cannot be read back (names it).
        """
        tx = self._tx(study_id)
        if tx is not None:
            upto = tx.version - 1
            mirror = self._mirrors.complete(study_id, upto)
            if mirror is not None:  # nothing to read (the usual case: synced as it opened)
                return mirror
            with self._naming(study_id):
                return self._mirrors.refresh(
                    study_id, lambda lo: read_locked(tx.channel, study_id, lo, upto)
                )
        with self._hot_connection() as conn:
            channel = self._channel(conn)
            try:
                with self._naming(study_id):
                    return self._mirrors.refresh(
                        study_id, lambda lo: read_snapshot(channel, study_id, lo)
                    )
            except StudyNotFoundError:
                raise
            except BaseException:
                txn.rollback(conn)
                raise

    # -- trials -----------------------------------------------------------------------------
    def changes_since(
        self, study_id: int, version: int, refresh: bool = True
    ) -> tuple[list[Trial], int]:
        if refresh and self._tx(study_id) is None:  # a read: run again after a lost connection
            return self._changes_read(study_id, version)
        with self._mirrors.lock:
            mirror = self._refresh_mirror(study_id) if refresh else self._mirrors.get(study_id)
            return mirror.since(version)

    @txn.retried(reads=True)
    def _changes_read(self, study_id: int, version: int) -> tuple[list[Trial], int]:
        with self._mirrors.lock:
            return self._refresh_mirror(study_id).since(version)

    @txn.retried(reads=True)
    def get_trial(self, study_id: int, trial_id: int) -> Trial:
        with self._mirrors.lock:
            trial = self._refresh_mirror(study_id).trials.get(trial_id)  # type: ignore[arg-type]
        if trial is None:
            raise UnknownTrialError(f"trial {trial_id!r} does not exist in study {study_id}")
        return trial

    @txn.retried(reads=False)
    def insert_trial(self, study_id: int, trial: Trial, worker: str | None = None) -> Trial:
        params = dumps(trial.parameters, f"trial {trial.id}'s parameters")
        meta = dumps(trial.meta, f"trial {trial.id}'s metadata")
        with self._transaction(study_id, prefetch=False) as tx:
            if trial.id != tx.n_trials + 1:
                raise StorageError(
                    f"trial id {trial.id} is not the next id {tx.n_trials + 1} of study {study_id}"
                )
            now, v = time.time(), tx.version
            finished = trial.status.is_finished
            statements = [(self._sql.insert_trial, {
                "sid": study_id, "tid": trial.id, "status": trial.status._value_, "params": params,
                "meta": meta, "stop": trial.stop_requested, "fseq": v if finished else 0,
                "now": now, "fat": now if finished else None,
                "worker": worker if trial.status is TrialStatus.RUNNING else None,
            })]  # fmt: skip
            for it, (objective, items, _seq) in trial._obs.items():
                statements.append((INS_OBS, {
                    "sid": study_id, "tid": trial.id, "it": it, "obj": objective,
                    "ctx": dumps_context(dict(items) if items else {}), "seq": v,
                }))  # fmt: skip
            tx.n_trials += 1
            tx.analyze = self._pg is not None and self._pg.wants_analyze(trial.id)
            self._write_in(tx, Write(statements, lambda m, v: m.insert(trial, v)))
        return trial

    @txn.retried(reads=False)
    def claim_queued_trial(self, study_id: int, worker: str | None = None) -> Trial | None:
        tx = self._tx(study_id)
        mirror = self._mirrors.complete(study_id, tx.version - 1) if tx is not None else None
        if mirror is not None and not mirror.queued:  # synced in this transaction: none queued
            return None
        with self._transaction(study_id, prefetch=True):
            with self._mirrors.lock:
                mirror = self._refresh_mirror(study_id)
                queued = sorted(mirror.queued)
            for tid in queued:
                trial = mirror.trials[tid]
                claim = (self._sql.claim, {"sid": study_id, "tid": tid, "worker": worker})
                write = Write((claim,), lambda m, v, t=trial: m.claim(t, v), answered=True)
                if self._execute_write(study_id, write):
                    return trial
        return None

    def add_observation(self, study_id: int, trial_id: int, observation: Observation) -> None:
        write = Write(((INS_OBS_RUNNING, txn.obs_params(study_id, trial_id, observation)),),
                       lambda m, v: m.record(trial_id, observation, v),
                       answered=True, guard=trial_id)  # fmt: skip
        self._write_observation(study_id, write, trial_id, observation)

    def _write_observation(self, sid: int, write: Write, tid: int, obs: Observation) -> None:
        try:
            self._execute_write(sid, write)
        except sa.exc.IntegrityError:
            raise DuplicateIterationError(
                f"trial {tid} already has an observation at iteration {obs.iteration}"
            ) from None

    def finish_trial(
        self,
        study_id: int,
        trial_id: int,
        status: TrialStatus,
        meta: dict[str, Any] | None = None,
    ) -> None:
        params = txn.final_params(study_id, trial_id, status, meta)
        write = Write(((FINISH, params),), lambda m, v: m.finish(trial_id, status, meta, v),
                       answered=True, guard=trial_id, refused=_NO_OBSERVATION)  # fmt: skip
        self._execute_write(study_id, write)

    def finish_with_observation(
        self, study_id: int, trial_id: int, observation: Observation, status: TrialStatus,
        meta: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        """One transaction (PostgreSQL: one statement); see the base class."""
        obs = txn.obs_params(study_id, trial_id, observation)
        final = txn.final_params(study_id, trial_id, status, meta)

        def apply(mirror: Mirror, version: int) -> None:
            mirror.record(trial_id, observation, version)
            mirror.finish(trial_id, status, meta, version)

        if self._pg is not None and self._tx(study_id) is None:
            statements: tuple[Statement, ...] = ((self._pg.finish_with_obs, {**obs, **final}),)
        else:
            statements = ((INS_OBS_RUNNING, obs), (FINISH, final))
        write = Write(statements, apply, answered=True, guard=trial_id)  # type: ignore[arg-type]
        self._write_observation(study_id, write, trial_id, observation)

    @txn.retried(reads=False)
    def request_stop(self, study_id: int, trial_id: int) -> None:
        with self._transaction(study_id, prefetch=False) as tx:
            self._check_running(study_id, trial_id, tx.channel)
            stop = (STOP, {"yes": True, "sid": study_id, "tid": trial_id})
            self._execute_write(study_id, Write((stop,), lambda m, v: m.stop(trial_id, v)))

    # -- algorithm state --------------------------------------------------------------------
    def get_algorithm_state(self, study_id: int) -> dict[str, Any]:
        tx = self._tx(study_id)
        if tx is not None:
            if tx.state is None:
                with self._naming(study_id):
                    tx.state = decode_json(tx.state_json, "state")
            return tx.state
        return self._study_json(study_id, STUDY_STATE)

    def set_algorithm_state(self, study_id: int, state: dict[str, Any]) -> None:
        tx = self._tx(study_id)
        if tx is not None:
            tx.state = state
            return
        self._state_alone(study_id, state)

    @txn.retried(reads=False)
    def _state_alone(self, study_id: int, state: dict[str, Any]) -> None:
        with self._transaction(study_id, prefetch=False) as tx:
            tx.state = state
