"""The SQL storage's transaction plumbing: a write described once, the channel that runs
it, and the state of one thread's write transaction on a study.

:class:`~poptune.storage.sql.SQLStorage` holds the contract; what a write *is*
(:class:`Write`) and how its statements reach the database (:class:`Direct`, or
:class:`~poptune.storage._postgres.Pipelined` with psycopg 3) live here, so each contract
method is one description handed to one executor.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import sqlalchemy as sa

from poptune.exceptions import ConfigurationError, StorageError
from poptune.storage._mirror import Apply
from poptune.storage._statements import COMMIT, ROLLBACK, SQLITE_PRAGMAS, Dialect, Statement
from poptune.storage.base import LOST_TRANSACTION_RETRIES
from poptune.trial import Observation, TrialStatus

if TYPE_CHECKING:
    from poptune.storage._postgres import Pipelined

__all__ = [
    "DEFAULT_LOCK_TIMEOUT", "DEFAULT_STALL_TIMEOUT", "RETRIES", "STOP_BEFORE_COMMIT_ENV",
    "Direct", "LockSettings", "LockWatch", "TransactionLost", "Tx", "Write", "acquire",
    "commit", "dumps", "dumps_context", "final_params", "is_busy", "is_lost", "obs_params",
    "raise_if_lost", "retried",
]  # fmt: skip

logger = logging.getLogger("poptune")
F = TypeVar("F", bound=Callable[..., Any])


def _kept_encoder(allow_nan: bool) -> Callable[[Any], str]:
    """``json.dumps(value, allow_nan=allow_nan, separators=(",", ":"))`` without building an
    encoder per call (what ``json.dumps`` with options does): the C encoder, made once, where
    this Python has it and it writes what ``json.dumps`` writes; else a kept JSONEncoder.
    The kept C encoder does not look for cycles (a cyclic value fails as RecursionError)."""
    encoder = json.JSONEncoder(allow_nan=allow_nan, separators=(",", ":"))
    try:
        kept = json.encoder.c_make_encoder(  # type: ignore[attr-defined, misc]
            None, encoder.default, json.encoder.encode_basestring_ascii, None, ":", ",",
            False, False, allow_nan,
        )  # fmt: skip
        sample = {"a": [1.5, "é", None, True, 2], "b": {}}
        if "".join(kept(sample, 0)) != encoder.encode(sample):
            raise ValueError("not what json.dumps writes")
    except Exception:  # noqa: BLE001 - no C encoder, or another signature: the plain one
        return encoder.encode
    join = "".join
    return lambda value: join(kept(value, 0))


# Kept encoders: ``json.dumps`` with options builds a new JSONEncoder at every call.
_ENCODE = _kept_encoder(allow_nan=False)
# NaN and infinities are allowed in context (a diverged loss); Python's json reads them back
_ENCODE_CONTEXT = _kept_encoder(allow_nan=True)


def dumps(value: Any, what: str) -> str:
    if type(value) is dict and not value:
        return "{}"
    try:
        return _ENCODE(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise StorageError(f"{what} cannot be stored as JSON: {exc} (value: {value!r})") from None


def dumps_context(context: Mapping[str, Any]) -> str | None:
    if not context:
        return None
    return _ENCODE_CONTEXT(context)


class Direct:
    """A connection whose statements go one at a time through SQLAlchemy (SQLite, and
    PostgreSQL through a driver other than psycopg 3). The same methods as
    :class:`~poptune.storage._postgres.Pipelined`."""

    pipelined = False
    __slots__ = ("conn", "dialect", "where")

    def __init__(self, conn: sa.Connection, dialect: Dialect, where: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self.where = where

    def send(self, stmt: sa.TextClause, params: dict[str, Any]) -> None:
        """A write whose answer is not needed."""
        self.conn.execute(stmt, params)

    def query(self, *statements: Statement) -> list[tuple[Sequence[Any], int]]:
        """Each statement's rows and row count (a plain command as text: none)."""
        answers: list[tuple[Sequence[Any], int]] = []
        for stmt, params in statements:
            if isinstance(stmt, str):
                self.conn.exec_driver_sql(stmt)
                answers.append(((), -1))
            else:
                result = self.conn.execute(stmt, params)
                answers.append((result.all() if result.returns_rows else (), result.rowcount))
        return answers

    def commit(self) -> None:
        self.conn.exec_driver_sql(COMMIT)


class Tx:
    """This thread's write transaction on a study."""

    __slots__ = ("analyze", "channel", "locked_at", "n_trials", "on_commit", "sid", "state",
                 "state_json", "version", "watch", "xid")  # fmt: skip

    def __init__(self, channel: Direct | Pipelined, sid: int, version: int, state_json: str,
                 n_trials: int, watch: LockWatch | None = None, xid: str | None = None,
                 ) -> None:  # fmt: skip
        self.channel = channel
        self.sid = sid
        self.version = version
        self.state_json = state_json
        self.state: dict[str, Any] | None = None
        self.n_trials = n_trials
        #: The mirror's changes, applied once the transaction commits.
        self.on_commit: list[Apply] = []
        self.analyze = False  # PostgreSQL: refresh the planner's statistics after the commit
        #: Where the lock hold is recorded, and since when (``time.monotonic()``) it is held.
        self.watch = watch
        self.locked_at = time.monotonic() if watch is not None else None
        #: PostgreSQL: the transaction's id, to learn its fate if the COMMIT's answer is lost.
        self.xid = xid


class Write(NamedTuple):
    """One write to a study's trials, described once (run by ``SQLStorage._execute_write``)."""

    #: Run in order in the study's transaction, with ``:v`` bound to its version.
    statements: Sequence[tuple[sa.TextClause, dict[str, Any]]]
    #: What the write does to the mirror once it commits, given its version.
    apply: Apply
    #: The last statement's answer is awaited: when it changed no row, nothing is written.
    answered: bool = False
    #: A write guarded by a trial's status that changed nothing raises why: the trial
    #: ``guard`` is unknown or finished or, if neither, ``refused`` (NoObservationsError).
    guard: int | None = None
    refused: str | None = None


# -- bounded waits, lost connections ---------------------------------------------------------
#: Default longest single wait for a study's lock (seconds): PostgreSQL ``lock_timeout``,
#: SQLite ``busy_timeout``. A wait that times out is retried with backoff, never an error.
DEFAULT_LOCK_TIMEOUT = 10.0
#: Default longest time (seconds) a PostgreSQL session of poptune may sit in an open
#: transaction without sending anything (``idle_in_transaction_session_timeout``): the server
#: then ends that session, which releases the study lock of a frozen or hung holder.
DEFAULT_STALL_TIMEOUT = 60.0
#: Test hook: with this environment variable naming a file, the process stops itself
#: (``SIGSTOP``) right before the ``COMMIT`` of a study-lock transaction once that file
#: exists (and deletes it), so tests can freeze a lock holder at a known point.
STOP_BEFORE_COMMIT_ENV = "POPTUNE_TEST_STOP_BEFORE_COMMIT"
_STOP_FILE = os.environ.get(STOP_BEFORE_COMMIT_ENV)
RETRIES = LOST_TRANSACTION_RETRIES


class LockSettings(NamedTuple):
    """How long one wait for a study's lock lasts and how long a holder may stall before it is
    cut off (PostgreSQL: its session ended; SQLite: a poptune process killed)."""

    lock_timeout: float
    stall_timeout: float

    @classmethod
    def take(
        cls, url: sa.URL, lock_timeout: float | None, stall_timeout: float | None
    ) -> tuple[sa.URL, LockSettings]:
        """The settings given as arguments, else as the URL's query parameters
        (``?lock_timeout=2&stall_timeout=5``, seconds), else the defaults; and the URL
        without those parameters (the driver does not know them)."""
        query = dict(url.query)
        values = []
        for name, given, default in (
            ("lock_timeout", lock_timeout, DEFAULT_LOCK_TIMEOUT),
            ("stall_timeout", stall_timeout, DEFAULT_STALL_TIMEOUT),
        ):
            in_url = query.pop(name, None)
            if isinstance(in_url, tuple):
                in_url = in_url[-1]
            value = given if given is not None else in_url if in_url is not None else default
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                seconds = math.nan
            if not (math.isfinite(seconds) and seconds > 0):
                raise ConfigurationError(
                    f"{name} must be a positive number of seconds, got {value!r}"
                )
            values.append(seconds)
        return url.set(query=query), cls(*values)

    def sqlite_on_connect(self) -> Callable[[Any, Any], None]:
        """The listener that sets up every new SQLite connection (pragmas, busy timeout)."""

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            for pragma in SQLITE_PRAGMAS:  # the busy timeout is the connection's ``timeout``
                cursor.execute(pragma)
            cursor.close()

        return on_connect


class TransactionLost(StorageError):
    """The connection was lost before the transaction committed (or the server reports it
    aborted): nothing of it was written, so it can be run again from the start."""

    #: What the retries look for (``StorageError`` carries no such attribute).
    rolled_back = True


class LockWatch:
    """One storage's record of its study-lock transactions: how long each held the lock (from
    the answer to the lock to the ``COMMIT``'s), how many waits timed out, and when the
    database was last seen blocked (the reaper's evidence that it was not writable): a wait
    of this process that timed out, or a transaction of its own that held the lock longer
    than ``lock_timeout`` (others' waits then timed out: a process that was itself frozen
    holding the lock learns so here)."""

    def __init__(self, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.lock_timeout = lock_timeout
        self._lock = threading.Lock()
        self.held_n = 0
        self.held_total_s = 0.0
        self.held_max_s = 0.0
        self.timeouts = 0
        self._blocked_at: float | None = None  # time.monotonic() of the last timed-out wait
        #: SQLite: called after a wait timed out, to end a frozen holder of the write lock
        #: (:meth:`~poptune.storage._sqlite_locks.FrozenWriters.check`).
        self.unstall: Callable[[], None] | None = None

    def held(self, seconds: float) -> None:
        with self._lock:
            self.held_n += 1
            self.held_total_s += seconds
            self.held_max_s = max(self.held_max_s, seconds)
            if seconds > self.lock_timeout:
                self._blocked_at = time.monotonic()

    def blocked(self) -> None:
        """A write could not get the lock (a wait timed out, a heartbeat failed or was late)."""
        with self._lock:
            self.timeouts += 1
            self._blocked_at = time.monotonic()

    def blocked_within(self, seconds: float) -> bool:
        """Whether a write of this process was blocked in the last ``seconds``."""
        at = self._blocked_at
        return at is not None and time.monotonic() - at < seconds

    def stats(self) -> dict[str, float]:
        """``held_n``, ``held_mean_s``, ``held_max_s`` (lock hold per transaction), ``timeouts``."""
        with self._lock:
            n = self.held_n
            return {"held_n": n, "held_mean_s": self.held_total_s / n if n else 0.0,
                    "held_max_s": self.held_max_s, "timeouts": self.timeouts}  # fmt: skip


def is_busy(exc: BaseException) -> bool:
    """A wait for a lock that timed out: SQLite ``database is locked`` (``SQLITE_BUSY``),
    PostgreSQL ``lock_not_available`` (``lock_timeout``)."""
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "sqlstate", None) == "55P03":
        return True
    if getattr(orig, "sqlite_errorcode", None) in (5, 6):  # SQLITE_BUSY, SQLITE_LOCKED
        return True
    return type(orig).__module__.startswith("sqlite3") and "locked" in str(orig)


def is_lost(exc: BaseException | None) -> bool:
    """The connection under ``exc`` (or an error it was raised from) is gone, or may be: on
    PostgreSQL any operational error of the driver but a lock timeout (psycopg does not always
    flag a connection the server ended mid-pipeline: "cannot exit pipeline mode while busy"),
    and a prepared statement the server no longer has (``26000``: psycopg's cache of prepared
    statements out of step with its session, as after an error inside a pipeline): such a
    connection is replaced like a lost one, and its transaction, which failed, is run again."""
    seen = 0
    while exc is not None and seen < 4:
        if isinstance(exc, sa.exc.DisconnectionError):
            return True
        if getattr(getattr(exc, "orig", exc), "sqlstate", None) == "26000":
            return True
        if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
            return True
        if (
            isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError))
            and type(exc.orig).__module__.startswith("psycopg")
            and not is_busy(exc)
        ):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def acquire(
    channel: Direct | Pipelined, statements: list[Statement], watch: LockWatch, where: str,
    run: Callable[[], Any] | None = None,
) -> Any:  # fmt: skip
    """Run the statements that begin a transaction and take the study lock (or ``run()``, a
    statement that takes it alone); a wait that times out (``lock_timeout`` /
    ``busy_timeout``) is rolled back and tried again, with backoff from 20 ms to 1 s, for as
    long as it takes: never an error. Between tries, a channel that can (PostgreSQL's
    :class:`~poptune.storage._postgres.Pipelined`) ends sessions stalled in a transaction
    (``unstall``), which is what releases a frozen holder's lock; on SQLite the watch's
    ``unstall`` ends a frozen poptune holder (:mod:`poptune.storage._sqlite_locks`), or
    raises StorageError naming a frozen holder that is not poptune's."""
    delay, since = 0.02, None
    while True:
        try:
            return run() if run is not None else channel.query(*statements)
        except sa.exc.DBAPIError as exc:
            if not is_busy(exc):
                raise
            rollback(channel.conn)
        watch.blocked()
        unstall = getattr(channel, "unstall", None) or watch.unstall
        if unstall is not None:
            unstall()
        if since is None:
            since = time.monotonic()
            logger.warning("poptune: waiting for a study's lock on %s (held elsewhere)", where)
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, 1.0)


def commit(tx: Tx, outcome: Callable[[str], str | None] | None) -> None:
    """``COMMIT`` the transaction. If its connection is lost meanwhile, ask ``outcome`` (on a
    new connection: ``'committed'``, ``'aborted'`` or None, unknown) what became of it:
    committed is success (only the acknowledgement was lost); aborted raises
    :class:`TransactionLost` (to be run again); unknown raises :class:`StorageError`."""
    pause_before_commit()
    try:
        tx.channel.commit()
    except BaseException as exc:
        if not is_lost(exc):
            raise
        try:  # closed, so that a transaction still open on it ends (the server aborts it)
            tx.channel.conn.invalidate()
        except Exception:  # noqa: BLE001, S110 - already gone
            pass
        status = outcome(tx.xid) if outcome is not None and tx.xid else None
        if status == "committed":
            logger.warning("poptune: connection lost during COMMIT, which had committed")
        elif status == "aborted":
            raise TransactionLost(
                f"connection to {tx.channel.where} lost before COMMIT: {first_line(exc)}"
            ) from exc
        else:
            raise StorageError(
                f"connection to {tx.channel.where} lost during COMMIT, which may or may not "
                f"have committed: {first_line(exc)}"
            ) from exc
    if tx.watch is not None and tx.locked_at is not None:
        tx.watch.held(time.monotonic() - tx.locked_at)


def raise_if_lost(exc: BaseException, where: str, conn: sa.Connection) -> None:
    """In a transaction that failed with ``exc``: raise :class:`TransactionLost` if its
    connection went away (the server rolls the transaction back); else return."""
    if not isinstance(exc, StorageError) and is_lost(exc):
        try:  # closed, so that the transaction still open on it ends (the server aborts it)
            conn.invalidate()
        except Exception:  # noqa: BLE001, S110 - already gone
            pass
        raise TransactionLost(
            f"connection to {where} lost in a transaction: {first_line(exc)}"
        ) from exc


def retried(reads: bool) -> Callable[[F], F]:
    """Decorate a storage method that, when no transaction is open in this thread, runs again
    after a lost connection (at most :data:`RETRIES` times, 0.1 s apart): any lost connection
    for ``reads``, only a :class:`TransactionLost` (known not committed) otherwise."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(self._local, "tx", None) is not None:
                return method(self, *args, **kwargs)
            for _ in range(RETRIES):
                try:
                    return method(self, *args, **kwargs)
                except Exception as exc:
                    if not (getattr(exc, "rolled_back", False) or (reads and is_lost(exc))):
                        raise
                    logger.warning("poptune: %s; trying again", first_line(exc))
                time.sleep(0.1)
            return method(self, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def pause_before_commit() -> None:
    """The test hook of :data:`STOP_BEFORE_COMMIT_ENV` (nothing unless it is set)."""
    if _STOP_FILE is None:
        return
    try:
        os.unlink(_STOP_FILE)
    except OSError:
        return
    os.kill(os.getpid(), signal.SIGSTOP)


def rollback(conn: sa.Connection) -> None:
    """``ROLLBACK``, quietly. On PostgreSQL a connection that cannot roll back is broken: it
    is invalidated, so that the pool discards it rather than fail resetting it (which would
    hide the error that got us here). SQLite refuses a ROLLBACK with no transaction: benign."""
    try:
        conn.exec_driver_sql(ROLLBACK)
    except Exception:  # noqa: BLE001 - the connection may be gone; the error that got us here matters
        if conn.dialect.name != "sqlite":
            try:
                conn.invalidate()
            except Exception:  # noqa: BLE001, S110 - nothing more to do with it
                pass


def first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def obs_params(sid: int, tid: int, observation: Observation) -> dict[str, Any]:
    """An observation's parameters (INS_OBS_RUNNING and the like)."""
    return {"sid": sid, "tid": tid, "it": observation.iteration, "obj": observation.objective,
            "ctx": dumps_context(observation.context)}  # fmt: skip


def final_params(
    sid: int, tid: int, status: TrialStatus, meta: dict[str, Any] | None
) -> dict[str, Any]:
    """A final status's parameters (FINISH and the like)."""
    meta_json = None if meta is None else dumps(meta, f"trial {tid}'s metadata")
    return {"sid": sid, "tid": tid, "status": status._value_, "now": time.time(),
            "needs_obs": int(status is TrialStatus.COMPLETED), "meta": meta_json}  # fmt: skip
