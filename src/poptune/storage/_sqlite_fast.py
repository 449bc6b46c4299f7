"""SQLite's hot path: the study-lock transactions and heartbeats of a writable SQLite storage,
run on kept raw ``sqlite3`` connections instead of through SQLAlchemy.

SQLAlchemy keeps the schema, the migrations, the URLs and every statement off the per-trial
path (creating, listing and deleting studies, the dashboard's reads). What a trial costs in
statements (a suggestion, a claim, an observation, a final status, a heartbeat) goes through
:class:`RawPool`: a stack of ``sqlite3`` connections, opened as SQLAlchemy's engine opens its
own (the same file, ``check_same_thread=False``, ``timeout`` = the busy timeout) and set up
by the same listener (:data:`~poptune.storage._statements.SQLITE_PRAGMAS`: WAL,
``synchronous=NORMAL``, foreign keys), in autocommit mode (``isolation_level=None``: poptune's
own ``BEGIN IMMEDIATE`` / ``COMMIT``). A connection is handed back to the stack after use, so
one worker thread keeps using the same one and ``sqlite3``'s statement cache (per connection,
keyed by the SQL text) parses each fixed statement once. Checking a connection out or in
is a list pop or append: no pool events, no reset-on-return ``ROLLBACK`` (a connection
returned inside a transaction is closed instead, which rolls it back).

The channel (:class:`FastChannel`) has the methods of
:class:`~poptune.storage._transaction.Direct`, and its connection (:class:`RawConnection`)
the few of SQLAlchemy's that the transaction plumbing calls (``exec_driver_sql``,
``invalidate``, ``dialect``); ``sqlite3`` errors are raised as the SQLAlchemy errors they
would have been (``IntegrityError``, ``OperationalError`` with the driver's error as
``orig``), so every existing check (a busy wait tried again, a duplicate iteration, a
corrupt file) sees what it saw before.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from poptune.exceptions import StorageError, StudyNotFoundError
from poptune.storage import _transaction as txn
from poptune.storage._connect import connection_error
from poptune.storage._statements import COMMIT, DIALECTS, SET_STATE, Statement

__all__ = ["FastChannel", "FastTransaction", "Joined", "RawConnection", "RawPool", "fast_pool"]

_LOCK_SQL = DIALECTS["sqlite"].lock.text
_BEGIN_WRITE = DIALECTS["sqlite"].begin_write


class _Result:
    """The rows of one statement, as much of SQLAlchemy's ``Result`` as callers use."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self.rows = cursor.fetchall() if cursor.description else []
        self.rowcount = cursor.rowcount

    def all(self) -> list[Any]:
        return self.rows

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class FastChannel:
    """Statements one at a time on a raw ``sqlite3`` connection (the methods of
    :class:`~poptune.storage._transaction.Direct`)."""

    pipelined = False
    dialect = DIALECTS["sqlite"]
    __slots__ = ("conn", "cursor", "where")

    def __init__(self, conn: RawConnection, where: str) -> None:
        self.conn = conn
        self.cursor = conn.dbapi.cursor()
        self.where = where

    def run(self, sql: str, params: Any) -> sqlite3.Cursor:
        """Execute ``sql`` on the channel's cursor; a driver error is raised as SQLAlchemy's.
        A statement that finds the database locked (``BEGIN IMMEDIATE``, an autocommit
        heartbeat) is tried again every 0.25-2 ms for up to the busy timeout, then raises
        ``database is locked`` as SQLite's own busy wait would (which, once a wait lasts,
        sleeps 10-100 ms at a time: far longer than a trial's transaction holds the lock)."""
        try:
            return self.cursor.execute(sql, params)
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise self.conn.wrap(exc, sql, params) from exc
            return self._wait(sql, params, exc)
        except sqlite3.Error as exc:
            raise self.conn.wrap(exc, sql, params) from exc

    def _wait(self, sql: str, params: Any, exc: sqlite3.OperationalError) -> sqlite3.Cursor:
        deadline, delay = time.monotonic() + self.conn.busy_timeout, 0.00025
        while time.monotonic() < deadline:
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.002)
            try:
                return self.cursor.execute(sql, params)
            except sqlite3.OperationalError as again:
                if not _busy(again):
                    raise self.conn.wrap(again, sql, params) from again
                exc = again
        raise self.conn.wrap(exc, sql, params) from exc

    def send(self, stmt: sa.TextClause, params: dict[str, Any]) -> None:
        """A write whose answer is not needed."""
        self.run(stmt.text, params)

    def query(self, *statements: Statement) -> list[tuple[Sequence[Any], int]]:
        """Each statement's rows and row count (a plain command as text: none)."""
        answers: list[tuple[Sequence[Any], int]] = []
        for stmt, params in statements:
            if isinstance(stmt, str):
                self.run(stmt, ())
                answers.append(((), -1))
            else:
                cursor = self.run(stmt.text, params)
                answers.append((cursor.fetchall() if cursor.description else (), cursor.rowcount))
        return answers

    def commit(self) -> None:
        self.run(COMMIT, ())

    def lock(self, study_id: int) -> list[Any]:
        """``BEGIN IMMEDIATE`` and the study's lock: the study's (version, state, n_trials)."""
        self.run(_BEGIN_WRITE, ())
        return self.run(_LOCK_SQL, {"sid": study_id}).fetchall()


def _busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (any extended code), where waiting can help: not
    SQLITE_BUSY_SNAPSHOT (517), which SQLite's own busy wait does not wait out either."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # Python < 3.11
        return "locked" in str(exc)
    return code & 0xFF in (5, 6) and code != 517


class RawConnection:
    """A kept ``sqlite3`` connection and its channel."""

    __slots__ = ("busy_timeout", "channel", "dbapi", "dialect", "generation", "invalid")

    def __init__(self, dbapi: sqlite3.Connection, dialect: Any, where: str, generation: int,
                 busy_timeout: float = 0.0) -> None:  # fmt: skip
        self.dbapi = dbapi
        #: Seconds a write that finds the database locked is tried again (see FastChannel).
        self.busy_timeout = busy_timeout
        #: SQLAlchemy's dialect of the storage's engine (its ``name`` is ``'sqlite'``).
        self.dialect = dialect
        self.generation = generation
        self.invalid = False
        self.channel = FastChannel(self, where)

    def wrap(self, exc: sqlite3.Error, sql: str, params: Any) -> BaseException:
        return sa.exc.DBAPIError.instance(sql, params, exc, sqlite3.Error, dialect=self.dialect)

    def exec_driver_sql(self, sql: str, params: Any = ()) -> _Result:
        try:
            return _Result(self.dbapi.execute(sql, params))
        except sqlite3.Error as exc:
            raise self.wrap(exc, sql, params) from exc

    def execute(self, stmt: sa.TextClause | str, params: Any = None) -> _Result:
        return self.exec_driver_sql(stmt if isinstance(stmt, str) else stmt.text, params or {})

    def invalidate(self, exc: BaseException | None = None) -> None:
        """Never hand this connection out again (closed when it is checked in)."""
        self.invalid = True


class RawPool:
    """A stack of kept ``sqlite3`` connections to one file, shared by a storage's threads.

    Args:
        connect: opens a new connection (the file, the driver's arguments).
        setup: run on each new connection (the storage's pragma listener).
        dialect: the engine's SQLAlchemy dialect (errors are wrapped as its).
        where: the database, for messages.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        setup: Callable[[Any, Any], None],
        dialect: Any,
        where: str,
        busy_timeout: float = 0.0,
    ) -> None:
        self._connect = connect
        self._setup = setup
        self._dialect = dialect
        self._where = where
        self._idle: list[RawConnection] = []
        self._lock = threading.Lock()
        self._generation = 0
        self._pid = os.getpid()
        #: Seconds :class:`FastChannel` waits for a locked database (SQLite's own is off).
        self.busy_timeout = busy_timeout

    def checkout(self) -> RawConnection:
        """An idle connection (the one used last), or a new one."""
        if self._pid != os.getpid():  # a forked child never uses its parent's connections
            self._pid, self._idle = os.getpid(), []
        try:
            return self._idle.pop()
        except IndexError:
            pass
        try:
            dbapi = self._connect()
        except sqlite3.Error as exc:
            raise sa.exc.DBAPIError.instance(
                None, None, exc, sqlite3.Error, dialect=self._dialect
            ) from exc
        try:
            dbapi.isolation_level = None  # autocommit: poptune's own BEGIN and COMMIT
            self._setup(dbapi, None)
            dbapi.execute("PRAGMA busy_timeout=0")  # waits are FastChannel's
        except sqlite3.Error as exc:
            dbapi.close()
            raise sa.exc.DBAPIError.instance(
                None, None, exc, sqlite3.Error, dialect=self._dialect
            ) from exc
        return RawConnection(dbapi, self._dialect, self._where, self._generation, self.busy_timeout)

    def checkin(self, conn: RawConnection) -> None:
        """Keep ``conn`` for the next checkout; close it instead if it was invalidated, is
        still in a transaction, or the pool was closed since it was opened."""
        if conn.invalid or conn.generation != self._generation or conn.dbapi.in_transaction:
            _close(conn)
            return
        self._idle.append(conn)

    def close(self) -> None:
        """Close the idle connections; those checked out are closed when checked in."""
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn)


class Joined:
    """The transaction already open in this thread, as a ``with`` block (nothing at its end)."""

    __slots__ = ("tx",)

    def __init__(self, tx: txn.Tx) -> None:
        self.tx = tx

    def __enter__(self) -> txn.Tx:
        return self.tx

    def __exit__(self, *exc: object) -> None:
        return None


class FastTransaction:
    """``SQLStorage._transaction`` on a writable SQLite file, where no transaction is open in
    this thread: a kept raw connection checked out, ``BEGIN IMMEDIATE`` and the study's lock
    (as ``storage._open`` takes it), the block, the algorithm state and trial count written if they
    changed, ``COMMIT``, the connection checked in, then the mirror given the writes. A
    failure rolls back (a lost connection is :class:`~poptune.storage._transaction.
    TransactionLost`) and a database error other than an IntegrityError is one StorageError,
    as in the generic path. A class, not a generator: it runs twice per trial."""

    __slots__ = ("conn", "n_trials", "sid", "storage", "tx")

    def __init__(self, storage: Any, study_id: int) -> None:
        self.storage = storage
        self.sid = study_id

    def __enter__(self) -> txn.Tx:
        storage, sid = self.storage, self.sid
        try:
            self.conn = conn = storage._fast.checkout()
        except (sa.exc.DatabaseError, sa.exc.InterfaceError) as exc:
            raise connection_error(storage._where, exc) from None
        channel, watch = conn.channel, storage.lock_watch
        try:  # what storage._open does, for this one channel
            rows = txn.acquire(channel, [], watch, storage._where, lambda: channel.lock(sid))
            if not rows:
                raise StudyNotFoundError(f"no study with id {sid!r} in {storage}")
        except BaseException as exc:
            self._abort(exc)
            raise
        version, state_json, self.n_trials = rows[0]
        self.tx = tx = txn.Tx(channel, sid, version, state_json, self.n_trials, watch)
        storage._local.tx = tx
        return tx

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        storage, tx = self.storage, self.tx
        storage._local.tx = None
        if kind is not None:
            self._abort(exc)  # type: ignore[arg-type]
            return
        try:
            state_json = tx.state_json
            if tx.state is not None:
                state_json = txn.dumps(tx.state, "the algorithm state")
            if state_json != tx.state_json or tx.n_trials != self.n_trials:
                tx.channel.run(SET_STATE.text, {"state": state_json, "n": tx.n_trials,
                                                "sid": self.sid})  # fmt: skip
            txn.commit(tx, None)
        except BaseException as failure:
            self._abort(failure)
            raise
        storage._fast.checkin(self.conn)
        storage._mirrors.commit(self.sid, tx.version, tx.on_commit)

    def _abort(self, exc: BaseException) -> None:
        """Roll back and check the connection in; raise what ``exc`` becomes (a lost
        connection, a database error as StorageError) or return (``exc`` goes on)."""
        storage, conn = self.storage, self.conn
        try:
            txn.rollback(conn)  # type: ignore[arg-type]
            txn.raise_if_lost(exc, storage._where, conn)  # type: ignore[arg-type]
            if isinstance(exc, (sa.exc.DatabaseError, sa.exc.InterfaceError)) and not isinstance(
                exc, sa.exc.IntegrityError
            ):
                raise StorageError(
                    f"database error on {storage._where}: {txn.first_line(exc)}"
                ) from exc
        finally:
            storage._fast.checkin(conn)


def _close(conn: RawConnection) -> None:
    try:
        conn.dbapi.close()  # rolls back a transaction left open
    except Exception:  # noqa: BLE001, S110 - closing what may already be broken
        pass


def fast_pool(
    engine: sa.Engine, engine_kwargs: dict[str, Any], setup: Callable[[Any, Any], None],
    where: str,
) -> RawPool:  # fmt: skip
    """The :class:`RawPool` of a writable SQLite storage's ``engine``: connections opened with
    the engine's own arguments (its ``creator`` if one was given), set up by ``setup``."""
    creator = engine_kwargs.get("creator")
    busy_timeout = float(engine_kwargs.get("connect_args", {}).get("timeout", 5.0))
    if creator is None:
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        cparams = {**cparams, **engine_kwargs.get("connect_args", {})}

        def creator() -> sqlite3.Connection:
            return sqlite3.connect(*cargs, **cparams)

    return RawPool(creator, setup, engine.dialect, where, busy_timeout)


def dispose(engine: sa.Engine, *others: Any) -> None:
    """Close a storage's connections: the engine's pool, then each of ``others`` that is not
    None (the kept raw connections, the SQLite file's poptune marker: ``close()``)."""
    engine.dispose()
    for other in others:
        if other is not None:
            other.close()
