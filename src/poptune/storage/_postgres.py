"""What :class:`~poptune.storage.sql.SQLStorage` does differently on PostgreSQL: its measured
optimizations (docs/topics/performance.md). SQLite never imports this module.

* **Few round trips** (psycopg 3, whose pipeline mode sends several statements and waits
  once; :class:`Pipelined`): a transaction opens with one round trip (``BEGIN``, the lock, and
  the changes after the mirror's version, read by statements that start once the lock is
  held, so they see every commit before it), and its writes wait to travel with the
  ``COMMIT``, or with the next statement whose answer is needed. A suggestion is two round
  trips; a sync outside transactions is one (a ``REPEATABLE READ`` snapshot).
* **A worker loop's trial is two round trips** (:meth:`Postgres.chained`): in
  ``study.optimize``'s loop (and ``poptune worker``, Dask, process workers) a trial's value
  and final status go in their own transaction (``BEGIN``, :data:`~poptune.storage.
  _statements.PG_FINISH_OBS`, ``COMMIT``: committed before anything after it runs), followed
  in the same round trip by the next suggestion's ``BEGIN``, lock and reads; that
  transaction stays open for the suggestion, which then needs only its second round trip.
  Anything the thread writes to the study meanwhile (an ``on_trial_end`` callback adding a
  trial) runs in it, never waiting for a second lock; whatever is held when the loop ends
  is rolled back. A round trip that fails is followed by the single-statement path, which
  first looks whether the final write had committed.
* **Single-statement writes** (any driver; :attr:`Postgres.alone`): an observation and a final
  status recorded outside a transaction are one statement each, a CTE that locks, numbers and
  writes. An observation's commit does not wait for the disk flush unless
  ``sync_observations=True`` (``synchronous_commit`` off inside that statement's transaction
  only): the next flushed commit carries it. A final status also brings back the changes
  since the mirror's version, read with the lock held (the next suggestion, which usually
  follows, then has little left to apply while it holds the lock).
* **Prepared statements on a kept connection**: every fixed statement is sent with psycopg's
  ``prepare=True`` (parsed and planned once per connection, not re-sent as text), and the
  pool hands out the connection used last (``pool_use_lifo``), so a worker keeps one
  connection and its prepared statements. A trial's last observation and its final status,
  recorded together by the worker loop, are one statement (:data:`~poptune.storage.
  _statements.PG_FINISH_OBS`): one round trip and one commit.
* **Pooled connections are checked without a round trip** (:func:`on_checkout`): a connection
  the server closed (restart, ``pg_terminate_backend``) has its socket readable and is
  replaced; one idle for longer than :data:`PING_AFTER_S` is pinged first (what
  ``pool_pre_ping`` did on every checkout, and still does for drivers other than psycopg 3).
* **Bounded waits, frozen holders, lost connections** (docs/topics/concurrency.md):
  every session runs with ``lock_timeout`` (a wait for the study lock that
  times out is rolled back and tried again) and ``idle_in_transaction_session_timeout`` (the
  server ends a session that holds a transaction open without a word, e.g. a worker stopped
  by ``SIGSTOP``, which releases its lock). A transaction knows its id
  (``pg_current_xact_id()``, in the lock statement's row): if the connection dies during
  ``COMMIT``, :meth:`Postgres.outcome` asks the server whether it committed. A
  single-statement write (:meth:`Postgres.run_alone`) whose connection died is tried again,
  and recognizes its own earlier commit (the observation is there, the status is set)
  instead of repeating it.
* **Statistics early** (:data:`ANALYZE_AT`): the worker that creates a study's 500th (5,000th,
  50,000th) trial runs ``ANALYZE`` on poptune's tables after its commit.
"""

from __future__ import annotations

import functools
import json
import select
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa

from poptune.exceptions import DuplicateIterationError, StorageError, StudyNotFoundError
from poptune.storage._mirror import Changes, reads_after
from poptune.storage._statements import (
    COMMIT,
    DIALECTS,
    FINISH,
    INS_OBS_RUNNING,
    PG_ADD_OBS,
    PG_ADD_OBS_ASYNC,
    PG_ANALYZE,
    PG_FINISH,
    PG_FINISH_OBS,
    PG_OBS_AT,
    PG_PING,
    PG_UNSTALL,
    PG_XACT_STATUS,
    TRIAL_STATUS,
    Statement,
    every_statement,
)
from poptune.storage._transaction import (
    RETRIES,
    LockSettings,
    Tx,
    Write,
    acquire,
    first_line,
    is_lost,
    logger,
    rollback,
)  # fmt: skip

if TYPE_CHECKING:
    from poptune.storage.sql import SQLStorage

__all__ = ["ANALYZE_AT", "PING_AFTER_S", "Held", "Pipelined", "Postgres"]

#: A pooled connection unused for longer than this (seconds) is pinged before use; a more
#: recent one only has its socket checked, without a round trip.
PING_AFTER_S = 10.0
#: Where a pooled connection's record keeps when it was last checked in.
CHECKED_IN = "poptune_checked_in"
#: Trial ids whose creation is followed by ``ANALYZE`` of poptune's tables. Until a table has
#: statistics, the planner sees lookups of one trial through the primary key and through the
#: version index as equally cheap, and the plan psycopg's prepared statements keep (made while
#: the study was small) may scan every trial of the study for each observation and final
#: status (until autovacuum's first analyze, a minute or more later). Statistics make it
#: choose the primary key; autovacuum keeps them fresh later.
ANALYZE_AT = frozenset({500, 5_000, 50_000})


class Postgres:
    """One storage's PostgreSQL specifics (pipelining where the driver is psycopg 3)."""

    def __init__(self, url: sa.URL, sync_observations: bool, locks: LockSettings) -> None:
        if url.get_driver_name() in ("psycopg2", "psycopg", "") and url.drivername in (
            "postgresql",
            "postgres",
        ):
            url = url.set(drivername="postgresql+psycopg")
        #: The URL to create the engine with (``postgresql://`` means psycopg 3).
        self.url = url
        #: The psycopg module, where statements can be pipelined; else None.
        self.psycopg = psycopg_with_pipeline(url)
        #: Other drivers have no checkout check of their own: they ping on every checkout.
        self.engine_kwargs: dict[str, Any] = {} if self.psycopg else {"pool_pre_ping": True}
        # The connection used last is used next: a worker keeps one connection, and with it
        # the statements psycopg prepared on it (each fixed statement prepared once).
        self.engine_kwargs["pool_use_lifo"] = True
        # Bounded waits and holders: set on every session poptune opens (libpq ``options``).
        options = url.query.get("options", "")
        options = options[-1] if isinstance(options, tuple) else options
        name = {} if "application_name" in url.query else {"application_name": "poptune"}
        url = self.url = url.set(query={**url.query, **name, "options": " ".join(filter(None, (
            options, f"-c lock_timeout={max(1, round(locks.lock_timeout * 1000))}",
            "-c idle_in_transaction_session_timeout="
            f"{max(1, round(locks.stall_timeout * 1000))}",
        )))})  # fmt: skip
        self.stall_timeout = locks.stall_timeout
        self._unstall_warned = False
        #: A write in a transaction -> the same write as one statement that takes the lock
        #: and numbers itself (``RETURNING`` its version), and whether the changes after the
        #: mirror's version come back with it.
        self.alone: dict[sa.TextClause, tuple[sa.TextClause, bool]] = {
            INS_OBS_RUNNING: (PG_ADD_OBS if sync_observations else PG_ADD_OBS_ASYNC, False),
            FINISH: (PG_FINISH, True),
            PG_FINISH_OBS: (PG_FINISH_OBS, True),
        }
        #: A trial's last observation and final status as one write (outside transactions).
        self.finish_with_obs = PG_FINISH_OBS
        self._engine: sa.Engine | None = None
        self._compiled: dict[int, str] = {}  # id of a statement -> its SQL for psycopg

    def attach(self, engine: sa.Engine) -> None:
        """Start serving ``engine``."""
        self._engine = engine
        if self.psycopg is not None:
            sa.event.listen(engine, "checkout", on_checkout)
            sa.event.listen(engine, "checkin", on_checkin)
            for stmt in every_statement("postgresql"):  # now rather than, later, under a lock
                self.sql(stmt)

    def channel(self, conn: sa.Connection, where: str) -> Pipelined | None:
        """``conn`` as a :class:`Pipelined` channel, or None if the driver cannot pipeline."""
        if self.psycopg is None:
            return None
        return Pipelined(self, conn, conn.connection.driver_connection, where)

    def sql(self, stmt: sa.TextClause) -> str:
        """A statement's SQL as psycopg takes it (``%(name)s`` parameters)."""
        sql = self._compiled.get(id(stmt))
        if sql is None:
            dialect = self._engine.dialect  # type: ignore[union-attr]
            sql = self._compiled[id(stmt)] = str(stmt.compile(dialect=dialect))
        return sql

    def pipeline(self, conn: sa.Connection, driver: Any, statements: list[Statement]) -> list[Any]:
        """Run the statements in order, in one round trip; return their cursors.

        A failure raises the matching SQLAlchemy error (``IntegrityError``, ...) and skips
        the statements after it. Outside ``BEGIN`` ... ``COMMIT``, the statements of one call
        are one transaction (an implicit one, which commits after the last)."""
        cursors = []
        try:
            if len(statements) == 1:  # one statement: no pipeline needed (cheaper)
                stmt, params = statements[0]
                cursor = driver.cursor()
                if isinstance(stmt, str):
                    cursor.execute(stmt, params)
                else:  # every statement here is fixed text: prepared at its first use
                    cursor.execute(self.sql(stmt), params, prepare=True)
                return [cursor]
            with driver.pipeline():
                commands = None  # one cursor for the plain commands (BEGIN, COMMIT...)
                for stmt, params in statements:
                    if isinstance(stmt, str):
                        if commands is None:
                            commands = driver.cursor()
                        commands.execute(stmt)
                        cursors.append(commands)
                    else:
                        cursor = driver.cursor()
                        cursor.execute(self.sql(stmt), params, prepare=True)
                        cursors.append(cursor)
        except self.psycopg.Error as exc:  # type: ignore[union-attr]
            dialect = conn.dialect
            lost = dialect.is_disconnect(exc, driver, None) or _broken(driver)
            if lost:
                conn.invalidate(exc)
                # The other pooled connections are likely gone too (a restart, a mass
                # termination): a fresh pool, so the retry does not pick one of them.
                self._engine.dispose()  # type: ignore[union-attr]
            raise sa.exc.DBAPIError.instance(
                "; ".join(s if isinstance(s, str) else self.sql(s) for s, _ in statements),
                None, exc, self.psycopg.Error, connection_invalidated=lost,  # type: ignore[union-attr]
                dialect=dialect,
            ) from exc  # fmt: skip
        return cursors

    def write_alone(
        self, channel: Any, statement: sa.TextClause, params: dict[str, Any], study_id: int,
        lo: int | None,
    ) -> tuple[int | None, Changes | None]:  # fmt: skip
        """A write that is a transaction of its own (autocommit), in one round trip: its
        version, or None if it changed nothing. With ``lo`` and a pipelined ``channel``, also
        the changes after version ``lo``, read after the write in its transaction (so with the
        lock held: complete up to the write's version)."""
        statements: list[Statement] = [(statement, params)]
        pull = lo is not None and channel.pipelined
        if pull:
            statements += reads_after(study_id, lo)  # type: ignore[arg-type]
        answers = channel.query(*statements)
        rows = answers[0][0]
        if not rows:
            return None, None
        version = rows[0][0]
        return version, (Changes(version, answers[1][0], answers[2][0]) if pull else None)

    # -- a worker loop's trials, chained: a final write opens the next suggestion's lock ------
    @contextmanager
    def chained(self, storage: SQLStorage, study_id: int) -> Iterator[None]:
        """The block of a worker loop (``run_worker``), where a suggestion follows each final
        write: there, :meth:`finish_then_lock` sends a trial's last observation and final
        status (their own transaction, committed) and the next suggestion's ``BEGIN``, lock and
        reads in one round trip, and keeps that transaction open for the suggestion (a trial
        is two round trips, not three). Whatever is held when the block ends is rolled back.
        Only where statements are pipelined (psycopg 3)."""
        local = storage._local
        if self.psycopg is None or getattr(local, "chain", None) is not None:
            yield
            return
        local.chain = study_id
        try:
            yield
        finally:
            local.chain = None
            self.release(storage)

    @staticmethod
    def chains(storage: SQLStorage, study_id: int) -> bool:
        """Whether this thread is in a :meth:`chained` block on the study."""
        return getattr(storage._local, "chain", None) == study_id

    @staticmethod
    def holds(storage: SQLStorage, study_id: int) -> bool:
        """Whether this thread holds the study's lock in a transaction a final write opened
        (any write or suggestion on the study then runs in it: never a second lock)."""
        held = getattr(storage._local, "held", None)
        return held is not None and held.tx.sid == study_id

    def take_held(self, storage: SQLStorage, study_id: int) -> Held | None:
        """The transaction held for the study, handed over (a new transaction's); one held
        for another study is rolled back."""
        held = getattr(storage._local, "held", None)
        if held is None:
            return None
        if held.tx.sid != study_id:
            self.release(storage)
            return None
        storage._local.held = None
        return held

    @staticmethod
    def release(storage: SQLStorage) -> None:
        """Roll back the transaction held by this thread, if any (it wrote nothing yet)."""
        held = getattr(storage._local, "held", None)
        if held is None:
            return
        storage._local.held = None
        held.connection.close()

    def finish_then_lock(self, storage: SQLStorage, study_id: int, write: Write) -> bool:
        """In a :meth:`chained` block: the write :data:`PG_FINISH_OBS` in a transaction of its
        own, then ``BEGIN``, the lock and the changes since the mirror's version (read with
        the lock held), in one round trip; the open transaction is kept for the suggestion
        that follows. Whether the write changed something (refused: nothing is held). If
        anything fails (a lock wait that timed out, a lost connection, a duplicate
        iteration), the write may or may not have committed: :meth:`run_alone` finds out
        first and writes it only if not."""
        stmt, params = write.statements[0]
        with storage._mirrors.lock:
            base = storage._mirrors.get(study_id)
            lo = base.db_version
        kept = _Kept(storage._connection())
        begin, lock = DIALECTS["postgresql"].begin_write, DIALECTS["postgresql"].lock
        try:
            channel = storage._channel(kept.conn)
            answers = channel.query(
                (begin, None), (stmt, params), (COMMIT, None),
                (begin, None), (lock, {"sid": study_id}), *reads_after(study_id, lo),
            )  # fmt: skip
        except Exception:
            answers = None
        except BaseException:
            kept.close()
            raise
        if answers is None:  # out of the except block: the error is not this path's context
            kept.close()
            return self.run_alone(storage, study_id, write, self.alone[stmt], check_first=True)
        rows, locked = answers[1][0], answers[4][0]
        try:
            if not locked:
                raise StudyNotFoundError(f"no study with id {study_id!r} in {storage}")
            if not rows:  # refused (the trial is not running): raises why, as run_alone does
                storage._check_running(study_id, write.guard, channel, write.refused)
            else:
                version, state_json, n_trials, xid = locked[0]
                changes = Changes(version - 1, answers[5][0], answers[6][0])
                with storage._naming(study_id):
                    storage._mirrors.commit(study_id, rows[0][0], (write.apply,), changes, base)
        except BaseException:
            kept.close()
            raise
        if not rows:
            kept.close()
            return False
        tx = Tx(channel, study_id, version, state_json, n_trials, storage.lock_watch, xid)
        storage._local.held = Held(kept, tx)
        return True

    def unstall(self, conn: sa.Connection) -> None:
        """End poptune's sessions stalled in a transaction longer than ``stall_timeout``
        (:data:`PG_UNSTALL`); best effort: a role that may not signal them is warned once."""
        try:
            ended = conn.execute(PG_UNSTALL, {"stall": self.stall_timeout}).all()
        except Exception as exc:  # noqa: BLE001 - e.g. permission denied: the wait goes on
            rollback(conn)
            if not self._unstall_warned:
                self._unstall_warned = True
                logger.warning("poptune: cannot end a stalled lock holder: %s", first_line(exc))
            return
        if ended:
            logger.warning(
                "poptune: ended %d session(s) that held a transaction open for more than "
                "%g s (stall_timeout) without a word", len(ended), self.stall_timeout,
            )  # fmt: skip

    def outcome(self, xid: str) -> str | None:
        """Whether transaction ``xid`` committed (``'committed'``, ``'aborted'``), asked on a
        new connection, waiting up to 5 s for a backend the server is still ending; None if
        that cannot be learnt."""
        deadline = time.monotonic() + 5.0
        while True:
            status = None
            try:
                with self._engine.connect() as conn:  # type: ignore[union-attr]
                    status = conn.execute(PG_XACT_STATUS, {"xid": xid}).scalar()
            except Exception:  # noqa: BLE001 - e.g. another lost connection: ask again
                pass
            if status in ("committed", "aborted"):
                return status
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def run_alone(
        self, storage: SQLStorage, study_id: int, write: Write,
        alone: tuple[sa.TextClause, bool], *, check_first: bool = False,
    ) -> bool:  # fmt: skip
        """Run ``write`` as its single statement ``alone`` (see :attr:`alone`); whether it
        changed something. A wait for the lock that times out is tried again; after a lost
        connection the write is tried again (at most ``RETRIES`` times), but it may have
        committed before the connection died,
        and finding its effect (the same observation there, the trial in the status set)
        counts as success, without a second write (the mirror then learns it on its next
        refresh). ``check_first``: look for that effect before the first try too."""
        (_, params), lost = write.statements[0], None
        check = check_first
        for _attempt in range(RETRIES + 1):
            with storage._mirrors.lock:
                base = storage._mirrors.get(study_id)
                lo = base.db_version if alone[1] else None
            try:
                with storage._connection() as conn:
                    channel = storage._channel(conn)
                    if check and self._already_made(channel, write, params, study_id):
                        return True
                    version, changes = acquire(
                        channel, [], storage.lock_watch, storage._where,
                        functools.partial(self.write_alone, channel, alone[0], params,
                                          study_id, lo),
                    )  # fmt: skip
                    if version is None:
                        storage._check_running(study_id, write.guard, channel, write.refused)
                        return False
            except Exception as exc:
                if isinstance(exc, DuplicateIterationError) or not is_lost(exc):
                    raise
                lost, check = exc, True
                time.sleep(0.1)
                continue
            with storage._naming(study_id):
                storage._mirrors.commit(study_id, version, (write.apply,), changes, base)
            return True
        raise StorageError(
            f"connection to {storage._where} lost {RETRIES + 1} times: {first_line(lost)}"
        )

    @staticmethod
    def _already_made(channel: Any, write: Write, params: dict[str, Any], sid: int) -> bool:
        """After a lost connection: whether ``write`` (an observation or a final status)
        committed before it was lost."""
        stmt = write.statements[0][0]
        key = {"sid": sid, "tid": params["tid"]}
        if stmt is PG_FINISH_OBS:  # made if the status is set (the observation came with it)
            rows = channel.query((TRIAL_STATUS, key))[0][0]
            return bool(rows) and rows[0][0] == params["status"]
        if stmt is INS_OBS_RUNNING:
            rows = channel.query((PG_OBS_AT, {**key, "it": params["it"]}))[0][0]
            if not rows:
                return False
            objective, context = rows[0]
            ours = params["ctx"]
            same_ctx = (context is None and ours is None) or (
                context is not None and ours is not None and json.loads(context) == json.loads(ours)
            )
            if objective == params["obj"] and same_ctx:
                return True
            raise DuplicateIterationError(
                f"trial {params['tid']} already has an observation at iteration {params['it']}"
            )
        if stmt is FINISH:
            rows = channel.query((TRIAL_STATUS, key))[0][0]
            return bool(rows) and rows[0][0] == params["status"]
        return False

    @staticmethod
    def wants_analyze(trial_id: int) -> bool:
        """Whether creating trial ``trial_id`` is followed by :meth:`analyze`."""
        return trial_id in ANALYZE_AT

    def analyze(self) -> None:
        """``ANALYZE`` poptune's tables (see :data:`ANALYZE_AT`); best effort: a role that does
        not own them only gets a server warning, and a failure is ignored."""
        try:
            with self._engine.connect() as conn:  # type: ignore[union-attr]
                conn.exec_driver_sql(PG_ANALYZE)
        except Exception:  # noqa: BLE001, S110 - statistics are an optimization, never an error
            pass


class Pipelined:
    """A connection whose statements psycopg 3 pipelines: writes whose answer is not needed
    wait, unsent, to travel with the next statement whose answer is, or with the ``COMMIT``.

    The same methods as the portable channel in :mod:`poptune.storage.sql`."""

    pipelined = True
    dialect = DIALECTS["postgresql"]
    __slots__ = ("conn", "driver", "postgres", "unsent", "where")

    def __init__(self, postgres: Postgres, conn: sa.Connection, driver: Any, where: str) -> None:
        self.postgres = postgres
        self.conn = conn
        self.driver = driver
        self.where = where
        self.unsent: list[Statement] = []

    def unstall(self) -> None:
        """Between waits for the lock: see :meth:`Postgres.unstall`."""
        self.postgres.unstall(self.conn)

    def send(self, stmt: sa.TextClause, params: dict[str, Any]) -> None:
        """A write whose answer is not needed: it waits to travel with the next query."""
        self.unsent.append((stmt, params))

    def query(self, *statements: Statement) -> list[tuple[list[Any], int]]:
        """Run the unsent writes and ``statements``, in one round trip: each statement's rows
        and row count."""
        batch = [*self.unsent, *statements]
        self.unsent.clear()
        cursors = self.postgres.pipeline(self.conn, self.driver, batch)
        return [
            (cursor.fetchall() if cursor.description else [], cursor.rowcount)
            for cursor in cursors[len(batch) - len(statements) :]
        ]

    def commit(self) -> None:
        """Send the unsent writes and ``COMMIT``, in one round trip."""
        batch = [*self.unsent, (COMMIT, None)]
        self.unsent.clear()
        self.postgres.pipeline(self.conn, self.driver, batch)


class _Kept:
    """A connection taken out of its context manager (``SQLStorage._connection``) and kept:
    ``with`` gives it, and gives it back at the block's end."""

    __slots__ = ("conn", "manager")

    def __init__(self, manager: AbstractContextManager[sa.Connection]) -> None:
        self.manager = manager
        self.conn = manager.__enter__()

    def __enter__(self) -> sa.Connection:
        return self.conn

    def __exit__(self, *exc: Any) -> bool | None:
        return self.manager.__exit__(*exc)

    def close(self) -> None:
        """Roll back whatever is open on the connection, and give it back."""
        rollback(self.conn)
        self.manager.__exit__(None, None, None)


class Held(NamedTuple):
    """A transaction a final write opened for the next suggestion (:meth:`Postgres.
    finish_then_lock`): its kept connection and the transaction, lock held."""

    connection: _Kept
    tx: Tx


def psycopg_with_pipeline(url: sa.URL) -> Any:
    """The psycopg module if ``url`` uses psycopg 3 and its libpq has pipeline mode, else None."""
    if url.get_driver_name() != "psycopg":
        return None
    try:
        import psycopg
    except ImportError:
        return None
    return psycopg if psycopg.Pipeline.is_supported() else None


def on_checkin(_dbapi_connection: Any, record: Any) -> None:
    """Pool event: remember when a connection was last used."""
    record.info[CHECKED_IN] = time.monotonic()


def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Pool event: replace a pooled connection the server closed, without a round trip when it
    was used within :data:`PING_AFTER_S` (SQLAlchemy then connects again)."""
    checked_in = record.info.get(CHECKED_IN)
    if checked_in is None:  # just connected
        return
    try:
        if time.monotonic() - checked_in > PING_AFTER_S:
            dbapi_connection.execute(PG_PING)
            return
        # An idle connection has nothing to read (poptune never LISTENs): something readable
        # is the server's goodbye (FATAL "terminating connection") or the socket's end.
        closed = dbapi_connection.closed or _readable(dbapi_connection.pgconn.socket)
    except Exception as exc:  # noqa: BLE001 - any failure here means a connection not to use
        raise sa.exc.DisconnectionError(f"connection lost: {_first_line(exc)}") from exc
    if closed:
        raise sa.exc.DisconnectionError("the server closed the connection")


def _broken(driver: Any) -> bool:
    """Whether psycopg's connection is unusable (e.g. "cannot exit pipeline mode while busy"
    after the server ended it mid-pipeline, which SQLAlchemy does not see as a disconnect)."""
    try:
        return bool(driver.closed or driver.broken or driver.pgconn.status != 0)  # 0: OK
    except Exception:  # noqa: BLE001 - a connection that cannot say is not one to keep
        return True


def _readable(fd: int) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # Windows


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
