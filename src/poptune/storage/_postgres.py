"""What :class:`~poptune.storage.sql.SQLStorage` does differently on PostgreSQL: its measured
optimizations (README, "Performance"). SQLite never imports this module.

* **Few round trips** (psycopg 3, whose pipeline mode sends several statements and waits
  once; :class:`Pipelined`): a transaction opens with one round trip (``BEGIN``, the lock, and
  the changes after the mirror's version, read by statements that start once the lock is
  held, so they see every commit before it), and its writes wait to travel with the
  ``COMMIT``, or with the next statement whose answer is needed. A suggestion is two round
  trips; a sync outside transactions is one (a ``REPEATABLE READ`` snapshot).
* **Single-statement writes** (any driver; :attr:`Postgres.alone`): an observation and a final
  status recorded outside a transaction are one statement each, a CTE that locks, numbers and
  writes. An observation's commit does not wait for the disk flush unless
  ``sync_observations=True`` (``synchronous_commit`` off inside that statement's transaction
  only): the next flushed commit carries it. A final status also brings back the changes
  since the mirror's version, read with the lock held (the next suggestion, which usually
  follows, then has little left to apply while it holds the lock).
* **Pooled connections are checked without a round trip** (:func:`on_checkout`): a connection
  the server closed (restart, ``pg_terminate_backend``) has its socket readable and is
  replaced; one idle for longer than :data:`PING_AFTER_S` is pinged first (what
  ``pool_pre_ping`` did on every checkout, and still does for drivers other than psycopg 3).
* **Statistics early** (:data:`ANALYZE_AT`): the worker that creates a study's 500th (5,000th,
  50,000th) trial runs ``ANALYZE`` on poptune's tables after its commit.
"""

from __future__ import annotations

import select
import time
from typing import Any

import sqlalchemy as sa

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
    PG_PING,
    Statement,
    every_statement,
)

__all__ = ["ANALYZE_AT", "PING_AFTER_S", "Pipelined", "Postgres"]

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

    def __init__(self, url: sa.URL, sync_observations: bool) -> None:
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
        #: A write in a transaction -> the same write as one statement that takes the lock
        #: and numbers itself (``RETURNING`` its version), and whether the changes after the
        #: mirror's version come back with it.
        self.alone: dict[sa.TextClause, tuple[sa.TextClause, bool]] = {
            INS_OBS_RUNNING: (PG_ADD_OBS if sync_observations else PG_ADD_OBS_ASYNC, False),
            FINISH: (PG_FINISH, True),
        }
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
                cursor.execute(stmt if isinstance(stmt, str) else self.sql(stmt), params)
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
                        cursor.execute(self.sql(stmt), params)
                        cursors.append(cursor)
        except self.psycopg.Error as exc:  # type: ignore[union-attr]
            dialect = conn.dialect
            lost = dialect.is_disconnect(exc, driver, None)
            if lost:
                conn.invalidate(exc)
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


def _readable(fd: int) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # Windows


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
