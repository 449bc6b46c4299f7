"""SQL storage through SQLAlchemy 2: SQLite files (the embedded default) and PostgreSQL.

How it keeps many processes correct and fast:

* **One lock per study.** Every write runs in a transaction that starts with
  ``UPDATE poptune_studies SET version = version + 1 ... RETURNING ...``: on PostgreSQL that
  locks the study's row, on SQLite the transaction is ``BEGIN IMMEDIATE`` (the database's
  write lock). Writers of one study are serialized; the new version numbers every change.
* **Incremental sync.** Each process keeps a *mirror* of every study it reads: the trials
  and observations it has seen, and the database version it is complete up to. Syncing reads
  only rows whose version is above that, in one consistent snapshot (SQLite ``BEGIN``,
  PostgreSQL ``REPEATABLE READ``). Inside a write transaction the mirror is brought up to the
  version before the lock, so an algorithm decides on everything committed before it.
* **Own writes** are applied to the mirror when their transaction commits (never before, so a
  rolled-back transaction leaves no trace), and the same rows read back later are applied
  again harmlessly: rows hold current state, observations are keyed by iteration.
* **Few round trips on PostgreSQL** (psycopg 3, whose pipeline mode sends several statements
  and waits once): a transaction opens with one round trip (``BEGIN``, the lock, and the
  changes after the mirror's version, read by statements that start once the lock is held,
  so they see every commit before it), and its writes wait to travel with the ``COMMIT``,
  or with the next statement whose answer is needed. A suggestion is two round trips; an
  observation and a final status are one statement each (a CTE that locks, numbers and
  writes; an observation's commit does not wait for the disk flush unless
  ``sync_observations=True``: the next flushed commit carries it); a sync outside
  transactions is one (a ``REPEATABLE READ`` snapshot). Pooled
  connections are checked without a round trip: a connection the server closed (restart,
  ``pg_terminate_backend``) has its socket readable and is replaced; one idle for longer
  than :data:`PING_AFTER_S` is pinged first (what ``pool_pre_ping`` did on every checkout).
  A final status also brings back the changes since the mirror's version, read with the
  lock held (the next suggestion, which usually follows, then has little left to apply while
  it holds the lock).
* **Statistics early.** The worker that creates a study's 500th (5,000th, 50,000th) trial runs
  ``ANALYZE`` on poptune's tables after its commit (:data:`ANALYZE_AT`). Without statistics,
  the plans that PostgreSQL caches for psycopg's prepared statements while a study is small
  looked one trial up through the version index, reading every trial of the study, so each
  observation cost more as the study grew (until autovacuum's first analyze, a minute or
  more later); with them it uses the primary key.
* **Dead workers are looked for without the lock.** Each worker looks once per heartbeat
  interval with one read (:meth:`SQLStorage.has_stale_trials`); only a stale trial found
  makes it take the study's lock to fail it.
* Values are stored as JSON text, never pickled.
"""

from __future__ import annotations

import json
import select
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from poptune.exceptions import (
    ConfigurationError,
    DuplicateIterationError,
    NoObservationsError,
    StorageError,
    StudyMismatchError,
    StudyNotFoundError,
    TrialFinishedError,
    UnknownTrialError,
)
from poptune.storage import _statements as st
from poptune.storage._schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    schema_version,
    set_schema_version,
)
from poptune.storage.base import Storage
from poptune.trial import _FINISHED, Observation, Trial, TrialStatus

__all__ = ["SQLStorage"]

_STATUS = {s.value: s for s in TrialStatus}

#: A pooled PostgreSQL connection unused for longer than this (seconds) is pinged before use;
#: a more recent one only has its socket checked, without a round trip.
PING_AFTER_S = 10.0
_CHECKED_IN = "poptune_checked_in"
#: PostgreSQL: trial ids whose creation is followed by ``ANALYZE`` of poptune's tables. Until a
#: table has statistics, the planner sees lookups of one trial through the primary key and
#: through the version index as equally cheap, and the plan psycopg's prepared statements keep
#: (made while the study was small) may scan every trial of the study for each observation and
#: final status. Statistics make it choose the primary key; autovacuum keeps them fresh later.
ANALYZE_AT = frozenset({500, 5_000, 50_000})


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StorageError(f"{what} cannot be stored as JSON: {exc} (value: {value!r})") from None


def _dumps_context(context: Mapping[str, Any]) -> str | None:
    if not context:
        return None
    # NaN and infinities are allowed in context (a diverged loss); Python's json reads them back
    return json.dumps(context, separators=(",", ":"))


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given
        return url


class _Mirror:
    """This process's copy of one study (see the module docstring)."""

    __slots__ = ("changelog", "db_version", "queued", "trials")

    def __init__(self) -> None:
        self.trials: dict[int, Trial] = {}
        self.changelog: list[int] = []
        self.db_version = 0
        self.queued: set[int] = set()

    def touch(self, trial: Trial) -> None:
        self.changelog.append(trial.id)
        if trial.status is TrialStatus.QUEUED:
            self.queued.add(trial.id)
        else:
            self.queued.discard(trial.id)

    def since(self, version: int) -> tuple[list[Trial], int]:
        log = self.changelog
        if version >= len(log):
            return [], len(log)
        if version == 0:
            return sorted(self.trials.values(), key=lambda t: t.id), len(log)
        trials = self.trials
        return [trials[i] for i in dict.fromkeys(log[version:])], len(log)


class _Tx:
    __slots__ = ("after", "analyze", "conn", "depth", "n_trials", "pending", "pg", "sid",
                 "state", "state_json", "version")  # fmt: skip

    def __init__(self, conn: sa.Connection, sid: int, version: int, state_json: str,
                 n_trials: int, pg: Any = None) -> None:  # fmt: skip
        self.conn = conn
        self.sid = sid
        self.version = version
        self.state_json = state_json
        self.state: dict[str, Any] | None = None
        self.n_trials = n_trials
        self.after: list[Any] = []
        self.analyze = False  # PostgreSQL: refresh the planner's statistics after the commit
        self.depth = 0
        # PostgreSQL with psycopg 3: the driver's connection, and the writes not sent yet
        # (they go with the next query or the COMMIT, in one round trip)
        self.pg = pg
        self.pending: list[tuple[Any, dict[str, Any] | None]] = []


class SQLStorage(Storage):
    """Studies in an SQLite file or a PostgreSQL database, shared by any number of processes.

    Args:
        url: ``sqlite:///path/to/file.db`` (relative to the working directory;
            ``sqlite:////abs/path.db`` for an absolute path) or
            ``postgresql://user:password@host:port/database`` (needs ``poptune[postgres]``,
            i.e. psycopg 3).
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

    Raises:
        ConfigurationError: the URL is not an SQLite or PostgreSQL URL, or the driver is not
            installed.
        StorageError: the database cannot be reached or opened.
    """

    requires_json = True
    supports_heartbeat = True

    def __init__(
        self,
        url: str,
        engine_kwargs: Mapping[str, Any] | None = None,
        *,
        sync_observations: bool = False,
    ) -> None:
        self.url = url
        self._add_obs = st.PG_ADD_OBS if sync_observations else st.PG_ADD_OBS_ASYNC
        try:
            parsed = make_url(url)
        except Exception:  # noqa: BLE001 - SQLAlchemy raises ArgumentError and others
            raise ConfigurationError(
                f"not a database URL: {url!r}; expected sqlite:///file.db or "
                "postgresql://user@host/database"
            ) from None
        backend = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"}
        if backend == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                raise ConfigurationError(
                    f"{url!r} is an in-memory SQLite database, which other processes cannot "
                    "see; use storage='memory', or a file: sqlite:///runs.db"
                )
            kwargs["connect_args"] = {"timeout": 60.0, "check_same_thread": False}
            self._sqlite = True
        elif backend == "postgresql":
            if parsed.get_driver_name() in ("psycopg2", "psycopg", "") and parsed.drivername in (
                "postgresql",
                "postgres",
            ):
                parsed = parsed.set(drivername="postgresql+psycopg")
            self._sqlite = False
        else:
            raise ConfigurationError(
                f"unsupported database {backend!r} in {safe_url(url)!r}: poptune stores studies "
                "in SQLite (sqlite:///file.db) or PostgreSQL (postgresql://...)"
            )
        # psycopg 3 (what postgresql:// means here): pipelined statements and a checkout check
        # without a round trip (see the module docstring); other drivers ping on checkout.
        self._psycopg = _psycopg_pipeline(parsed) if not self._sqlite else None
        if not self._sqlite and self._psycopg is None:
            kwargs["pool_pre_ping"] = True
        kwargs.update(engine_kwargs or {})
        try:
            self._engine = sa.create_engine(parsed, **kwargs)
        except ImportError as exc:
            raise ConfigurationError(
                f"the driver for {safe_url(url)!r} is not installed ({exc}); "
                "pip install 'poptune[postgres]'"
            ) from None
        if self._sqlite:
            sa.event.listen(self._engine, "connect", _sqlite_on_connect)
        elif self._psycopg is not None:
            sa.event.listen(self._engine, "checkout", _pg_on_checkout)
            sa.event.listen(self._engine, "checkin", _pg_on_checkin)
        self._pg_sql: dict[int, str] = {}  # id of a statement -> its SQL for psycopg
        now = st.NOW_SQL["sqlite" if self._sqlite else "postgresql"]
        self._ins_trial = sa.text(st.INS_TRIAL.format(now=now))
        self._claim = sa.text(st.CLAIM.format(now=now))
        self._heartbeat = sa.text(st.HEARTBEAT.format(now=now))
        self._stale = sa.text(st.STALE.format(now=now))
        self._any_stale = sa.text(st.ANY_STALE.format(now=now))
        if self._psycopg is not None:  # compiled now rather than, the first time, under a lock
            for stmt in (*vars(st).values(), *vars(self).values()):
                if isinstance(stmt, sa.TextClause):
                    self._sql(stmt)
        # Close the pooled connections when this storage is dropped (or at exit).
        self._finalizer = weakref.finalize(self, self._engine.dispose)
        self._local = threading.local()
        self._mirrors: dict[int, _Mirror] = {}
        self._mirror_lock = threading.RLock()
        self._migrate()

    def __repr__(self) -> str:
        return f"SQLStorage({safe_url(self.url)!r})"

    def close(self) -> None:
        """Close the database connections (the storage reconnects if used again)."""
        self._engine.dispose()

    # -- connections and transactions -------------------------------------------------------
    @contextmanager
    def _connection(self) -> Iterator[sa.Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except sa.exc.IntegrityError:
            raise
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise StorageError(
                f"database error on {safe_url(self.url)}: {_first_line(exc)}"
            ) from exc

    def _begin(self, conn: sa.Connection, write: bool) -> None:
        if self._sqlite:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
        else:
            conn.exec_driver_sql(
                "BEGIN" if write else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
            )

    @contextmanager
    def _raw_transaction(self, write: bool) -> Iterator[sa.Connection]:
        """A transaction not tied to a study (schema, creating and deleting studies)."""
        with self._connection() as conn:
            self._begin(conn, write)
            try:
                yield conn
                conn.exec_driver_sql("COMMIT")
            except BaseException:
                _rollback(conn)
                raise

    def transaction(self, study_id: int) -> AbstractContextManager[None]:  # type: ignore[override]
        # Whoever opens the study's lock syncs next (a suggestion, a reap, add_trial): on
        # PostgreSQL the changes come with the lock, in the same round trip.
        return self._transaction(study_id, prefetch=True)

    @contextmanager
    def _transaction(self, study_id: int, prefetch: bool) -> Iterator[None]:
        tx: _Tx | None = getattr(self._local, "tx", None)
        if tx is not None:
            if tx.sid != study_id:
                raise StorageError("a transaction on one study cannot open one on another")
            tx.depth += 1
            try:
                yield
            finally:
                tx.depth -= 1
            return
        with self._connection() as conn:
            try:
                tx = self._open(conn, study_id, prefetch)
                n_trials = tx.n_trials
                self._local.tx = tx
                yield
                writes = tx.pending
                if tx.state is not None:
                    state_json = _dumps(tx.state, "the algorithm state")
                    if state_json != tx.state_json or tx.n_trials != n_trials:
                        writes.append((st.SET_STATE, {"state": state_json, "n": tx.n_trials,
                                                      "sid": study_id}))  # fmt: skip
                elif tx.n_trials != n_trials:
                    writes.append((st.SET_STATE, {"state": tx.state_json, "n": tx.n_trials,
                                                  "sid": study_id}))  # fmt: skip
                if tx.pg is not None:
                    self._pipeline(conn, tx.pg, [*writes, ("COMMIT", None)])
                else:
                    for stmt, params in writes:
                        conn.execute(stmt, params)
                    conn.exec_driver_sql("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            finally:
                self._local.tx = None
        with self._mirror_lock:
            mirror = self._mirror(study_id)
            for apply in tx.after:
                apply(mirror)
            if mirror.db_version == tx.version - 1:
                mirror.db_version = tx.version
        if tx.analyze:
            self._analyze()

    def _analyze(self) -> None:
        """PostgreSQL: ``ANALYZE`` poptune's tables (see :data:`ANALYZE_AT`); best effort: a
        role that does not own them only gets a server warning, and a failure is ignored."""
        try:
            with self._connection() as conn:
                conn.exec_driver_sql("ANALYZE poptune_trials, poptune_observations")
        except Exception:  # noqa: BLE001, S110 - statistics are an optimization, never an error
            pass

    def _open(self, conn: sa.Connection, study_id: int, prefetch: bool) -> _Tx:
        """Begin a write transaction and take the study's lock (by bumping its version)."""
        pg = self._driver_connection(conn)
        if pg is None:
            self._begin(conn, write=True)
            row = conn.execute(st.LOCK, {"sid": study_id}).first()
            if row is None:
                raise StudyNotFoundError(f"no study with id {study_id!r} in {self}")
            return _Tx(conn, study_id, row[0], row[1], row[2])
        statements: list[tuple[Any, dict[str, Any] | None]] = [
            ("BEGIN", None), (st.LOCK, {"sid": study_id})
        ]  # fmt: skip
        if prefetch:
            # Executed after LOCK, so once the lock is held: they see every commit before it.
            with self._mirror_lock:
                mirror = self._mirror(study_id)
                bounds = {"sid": study_id, "lo": mirror.db_version}
            statements += [(st.SEL_TRIALS_AFTER, bounds), (st.SEL_OBS_AFTER, bounds)]
        cursors = self._pipeline(conn, pg, statements)
        row = cursors[-3 if prefetch else -1].fetchone()
        if row is None:
            raise StudyNotFoundError(f"no study with id {study_id!r} in {self}")
        tx = _Tx(conn, study_id, row[0], row[1], row[2], pg)
        if prefetch:
            upto = tx.version - 1
            with self._mirror_lock:
                # (unless the mirror was dropped meanwhile: then _pull reads what it needs)
                if self._mirrors.get(study_id) is mirror and mirror.db_version < upto:
                    _apply(mirror, cursors[-2].fetchall(), cursors[-1].fetchall(), upto)
        return tx

    def _driver_connection(self, conn: sa.Connection) -> Any:
        """The psycopg 3 connection under ``conn`` where statements can be pipelined."""
        return conn.connection.driver_connection if self._psycopg is not None else None

    def _pipeline(
        self, conn: sa.Connection, pg: Any, statements: list[tuple[Any, dict[str, Any] | None]]
    ) -> list[Any]:
        """PostgreSQL: run the statements in order, in one round trip; return their cursors.

        A failure raises the matching SQLAlchemy error (``IntegrityError``, ...) and skips
        the statements after it. Outside ``BEGIN`` ... ``COMMIT``, the statements of one call
        are one transaction (an implicit one, which commits after the last)."""
        cursors = []
        try:
            if len(statements) == 1:  # one statement: no pipeline needed (cheaper)
                stmt, params = statements[0]
                cursor = pg.cursor()
                cursor.execute(stmt if isinstance(stmt, str) else self._sql(stmt), params)
                return [cursor]
            with pg.pipeline():
                commands = None  # one cursor for the plain commands (BEGIN, COMMIT...)
                for stmt, params in statements:
                    if isinstance(stmt, str):
                        if commands is None:
                            commands = pg.cursor()
                        commands.execute(stmt)
                        cursors.append(commands)
                    else:
                        cursor = pg.cursor()
                        cursor.execute(self._sql(stmt), params)
                        cursors.append(cursor)
        except self._psycopg.Error as exc:
            dialect = self._engine.dialect
            lost = dialect.is_disconnect(exc, pg, None)
            if lost:
                conn.invalidate(exc)
            raise sa.exc.DBAPIError.instance(
                "; ".join(s if isinstance(s, str) else self._sql(s) for s, _ in statements),
                None, exc, self._psycopg.Error, connection_invalidated=lost, dialect=dialect,
            ) from exc  # fmt: skip
        return cursors

    def _one_statement(
        self, stmt: Any, params: dict[str, Any], pull: dict[str, Any] | None = None
    ) -> Any:
        """PostgreSQL: a write that is a transaction of its own, in one round trip; its first
        row.

        With ``pull`` (``{"sid", "lo"}``), the changes after version ``lo`` are read in the same
        transaction, after the write (so with the lock held: complete up to the write's
        version), into ``pull["rows"]`` and ``pull["obs"]``."""
        with self._connection() as conn:
            pg = self._driver_connection(conn)
            if pg is None:
                return conn.execute(stmt, params).first()
            if pull is None:
                return self._pipeline(conn, pg, [(stmt, params)])[0].fetchone()
            cursors = self._pipeline(conn, pg, [(stmt, params), (st.SEL_TRIALS_AFTER, pull),
                                                (st.SEL_OBS_AFTER, pull)])  # fmt: skip
            pull["rows"], pull["obs"] = cursors[1].fetchall(), cursors[2].fetchall()
            return cursors[0].fetchone()

    def _sql(self, stmt: Any) -> str:
        """A statement's SQL as psycopg takes it (``%(name)s`` parameters)."""
        sql = self._pg_sql.get(id(stmt))
        if sql is None:
            sql = self._pg_sql[id(stmt)] = str(stmt.compile(dialect=self._engine.dialect))
        return sql

    def _write(self, tx: _Tx, stmt: Any, params: dict[str, Any]) -> None:
        """A write in the transaction whose answer is not needed: on PostgreSQL it waits to
        travel with the next query or the COMMIT."""
        if tx.pg is not None:
            tx.pending.append((stmt, params))
        else:
            tx.conn.execute(stmt, params)

    def _query(self, tx: _Tx, stmt: Any, params: dict[str, Any]) -> tuple[list[Any], int]:
        """A statement in the transaction whose answer is needed: its rows and rowcount
        (the writes still pending go first, in the same round trip)."""
        if tx.pg is None:
            result = tx.conn.execute(stmt, params)
            return (result.all() if result.returns_rows else []), result.rowcount
        statements = [*tx.pending, (stmt, params)]
        tx.pending.clear()
        cursor = self._pipeline(tx.conn, tx.pg, statements)[-1]
        return (cursor.fetchall() if cursor.description else []), cursor.rowcount

    def _current(self, study_id: int) -> _Tx:
        """The transaction this thread holds on the study (call inside ``transaction``)."""
        tx = self._tx(study_id)
        if tx is None:  # pragma: no cover - a programming error inside this module
            raise RuntimeError("no transaction is open on this study")
        return tx

    def _tx(self, study_id: int) -> _Tx | None:
        tx: _Tx | None = getattr(self._local, "tx", None)
        return tx if tx is not None and tx.sid == study_id else None

    # -- schema ---------------------------------------------------------------------------------
    def _migrate(self) -> None:
        with self._raw_transaction(write=True) as conn:
            if not self._sqlite:
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7061797475)")  # 'poptu'
            version = schema_version(conn)
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"{safe_url(self.url)} has poptune schema version {version}; this poptune "
                    f"knows up to {SCHEMA_VERSION}: upgrade poptune"
                )
            for step in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[step](conn)
                set_schema_version(conn, step)

    @property
    def schema_version(self) -> int:
        """The schema version of the database (after opening, always the current one)."""
        with self._raw_transaction(write=False) as conn:
            return schema_version(conn)

    # -- studies --------------------------------------------------------------------------------
    def create_study(self, name: str, config: Mapping[str, Any]) -> int:
        config_json = _dumps(dict(config), "the study configuration")
        try:
            with self._raw_transaction(write=True) as conn:
                row = conn.execute(
                    sa.text(
                        "INSERT INTO poptune_studies (name, config, state, version, n_trials, "
                        "created_at) VALUES (:name, :config, '{}', 0, 0, :now) "
                        "RETURNING study_id"
                    ),
                    {"name": name, "config": config_json, "now": time.time()},
                ).first()
        except sa.exc.IntegrityError:
            raise StudyMismatchError(
                f"a study named {name!r} already exists in {safe_url(self.url)}"
            ) from None
        return int(row[0])  # type: ignore[index]

    def get_study_id(self, name: str) -> int:
        with self._connection() as conn:
            row = conn.execute(
                sa.text("SELECT study_id FROM poptune_studies WHERE name = :name"), {"name": name}
            ).first()
        if row is None:
            raise StudyNotFoundError(f"no study named {name!r} in {safe_url(self.url)}")
        return int(row[0])

    def _study_json(self, study_id: int, column: str) -> Any:
        """A JSON column (``config`` or ``state``) of a study, read outside transactions."""
        with self._connection() as conn:
            row = conn.execute(
                sa.text(f"SELECT {column} FROM poptune_studies WHERE study_id = :sid"),
                {"sid": study_id},
            ).first()
        if row is None:
            raise StudyNotFoundError(f"no study with id {study_id!r} in {safe_url(self.url)}")
        return json.loads(row[0])

    def get_study_config(self, study_id: int) -> dict[str, Any]:
        return self._study_json(study_id, "config")

    def list_studies(self) -> list[str]:
        with self._connection() as conn:
            rows = conn.execute(sa.text("SELECT name FROM poptune_studies ORDER BY study_id"))
            return [r[0] for r in rows]

    def delete_study(self, name: str) -> None:
        study_id = self.get_study_id(name)
        with self._raw_transaction(write=True) as conn:
            for table in ("poptune_observations", "poptune_trials", "poptune_studies"):
                conn.execute(sa.text(f"DELETE FROM {table} WHERE study_id = :sid"),
                             {"sid": study_id})  # fmt: skip
        with self._mirror_lock:
            self._mirrors.pop(study_id, None)

    # -- the mirror -------------------------------------------------------------------------------
    def _mirror(self, study_id: int) -> _Mirror:
        mirror = self._mirrors.get(study_id)
        if mirror is None:
            mirror = self._mirrors[study_id] = _Mirror()
        return mirror

    def _pull(self, study_id: int) -> _Mirror:
        """Bring the mirror up to date (call with the mirror lock held)."""
        mirror = self._mirror(study_id)
        tx = self._tx(study_id)
        if tx is not None:
            upto = tx.version - 1
            if mirror.db_version < upto:
                bounds = {"sid": study_id, "lo": mirror.db_version, "hi": upto}
                if tx.pg is not None:
                    statements = [*tx.pending, (st.SEL_TRIALS, bounds), (st.SEL_OBS, bounds)]
                    tx.pending.clear()
                    cursors = self._pipeline(tx.conn, tx.pg, statements)
                    rows, obs_rows = cursors[-2].fetchall(), cursors[-1].fetchall()
                else:
                    rows = tx.conn.execute(st.SEL_TRIALS, bounds).all()
                    obs_rows = tx.conn.execute(st.SEL_OBS, bounds).all()
                _apply(mirror, rows, obs_rows, upto)
            return mirror
        with self._connection() as conn:
            pg = self._driver_connection(conn)
            if pg is not None:
                return self._pull_pg(conn, pg, study_id, mirror)
            row = conn.execute(st.STUDY_VERSION, {"sid": study_id}).first()
            if row is None:
                raise StudyNotFoundError(f"no study with id {study_id!r} in {safe_url(self.url)}")
            if row[0] == mirror.db_version:  # nothing new: one round trip
                return mirror
            self._begin(conn, write=False)
            try:
                row = conn.execute(st.STUDY_VERSION, {"sid": study_id}).first()
                if row is None:
                    raise StudyNotFoundError(
                        f"no study with id {study_id!r} in {safe_url(self.url)}"
                    )
                if row[0] < mirror.db_version:  # the study was deleted and made again
                    mirror = self._mirrors[study_id] = _Mirror()
                if row[0] > mirror.db_version:
                    bounds = {"sid": study_id, "lo": mirror.db_version, "hi": row[0]}
                    rows = conn.execute(st.SEL_TRIALS, bounds).all()
                    _apply(mirror, rows, conn.execute(st.SEL_OBS, bounds).all(), row[0])
                conn.exec_driver_sql("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        return mirror

    def _pull_pg(self, conn: sa.Connection, pg: Any, study_id: int, mirror: _Mirror) -> _Mirror:
        """``_pull`` outside transactions on PostgreSQL: one round trip, one snapshot."""
        while True:
            bounds = {"sid": study_id, "lo": mirror.db_version}
            try:
                cursors = self._pipeline(conn, pg, [
                    ("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", None),
                    (st.STUDY_VERSION, {"sid": study_id}),
                    (st.SEL_TRIALS_AFTER, bounds), (st.SEL_OBS_AFTER, bounds),
                    ("COMMIT", None),
                ])  # fmt: skip
            except BaseException:
                _rollback(conn)
                raise
            row = cursors[1].fetchone()
            if row is None:
                raise StudyNotFoundError(f"no study with id {study_id!r} in {safe_url(self.url)}")
            if row[0] < mirror.db_version:  # the study was deleted and made again: read it all
                mirror = self._mirrors[study_id] = _Mirror()
                continue
            if row[0] > mirror.db_version:
                _apply(mirror, cursors[2].fetchall(), cursors[3].fetchall(), row[0])
            return mirror

    # -- trials ---------------------------------------------------------------------------------
    def changes_since(
        self, study_id: int, version: int, refresh: bool = True
    ) -> tuple[list[Trial], int]:
        with self._mirror_lock:
            mirror = self._pull(study_id) if refresh else self._mirror(study_id)
            return mirror.since(version)

    def get_trial(self, study_id: int, trial_id: int) -> Trial:
        with self._mirror_lock:
            trial = self._pull(study_id).trials.get(trial_id)  # type: ignore[arg-type]
        if trial is None:
            raise UnknownTrialError(f"trial {trial_id!r} does not exist in study {study_id}")
        return trial

    def insert_trial(self, study_id: int, trial: Trial, worker: str | None = None) -> Trial:
        params = _dumps(trial.parameters, f"trial {trial.id}'s parameters")
        meta = _dumps(trial.meta, f"trial {trial.id}'s metadata")
        with self._transaction(study_id, prefetch=False):
            tx = self._current(study_id)
            if trial.id != tx.n_trials + 1:
                raise StorageError(
                    f"trial id {trial.id} is not the next id {tx.n_trials + 1} of study {study_id}"
                )
            now = time.time()
            finished = trial.status in _FINISHED
            v = tx.version
            self._write(
                tx, self._ins_trial,
                {"sid": study_id, "tid": trial.id, "status": trial.status.value, "params": params,
                 "meta": meta, "stop": trial.stop_requested, "fseq": v if finished else 0,
                 "v": v, "now": now, "fat": now if finished else None,
                 "worker": worker if trial.status is TrialStatus.RUNNING else None},
            )  # fmt: skip
            for it, (objective, items, _seq) in trial._obs.items():
                self._write(
                    tx, st.INS_OBS,
                    {"sid": study_id, "tid": trial.id, "it": it, "obj": objective,
                     "ctx": _dumps_context(dict(items) if items else {}), "seq": v},
                )  # fmt: skip
            tx.n_trials += 1
            if trial.id in ANALYZE_AT and not self._sqlite:
                tx.analyze = True

            def apply(mirror: _Mirror) -> None:
                if finished:
                    trial.finished_seq = v
                trial._obs = {it: (o, c, v) for it, (o, c, _s) in trial._obs.items()}
                mirror.trials[trial.id] = trial
                mirror.touch(trial)

            tx.after.append(apply)
        return trial

    def claim_queued_trial(self, study_id: int, worker: str | None = None) -> Trial | None:
        with self.transaction(study_id):
            tx = self._current(study_id)
            with self._mirror_lock:
                mirror = self._pull(study_id)
                queued = sorted(mirror.queued)
            for tid in queued:
                params = {"v": tx.version, "sid": study_id, "tid": tid, "worker": worker}
                _, claimed = self._query(tx, self._claim, params)
                if claimed:
                    trial = mirror.trials[tid]

                    def apply(m: _Mirror, trial: Trial = trial) -> None:
                        trial.status = TrialStatus.RUNNING
                        m.touch(trial)

                    tx.after.append(apply)
                    return trial
        return None

    def _diagnose(self, study_id: int, trial_id: int) -> None:
        """After a guarded write changed nothing: raise why, if the trial is unknown or
        finished (outside a transaction)."""
        with self._connection() as conn:
            self._check_running(study_id, trial_id, conn=conn)

    def _check_running(
        self, study_id: int, trial_id: int, tx: _Tx | None = None, conn: sa.Connection | None = None
    ) -> None:
        """Raise unless the trial exists and is not finished (in ``tx``, or on ``conn``)."""
        if type(trial_id) is not int:
            raise UnknownTrialError(f"trial {trial_id!r} does not exist in study {study_id}")
        params = {"sid": study_id, "tid": trial_id}
        if tx is not None:
            rows, _ = self._query(tx, st.TRIAL_STATUS, params)
            row = rows[0] if rows else None
        else:
            row = conn.execute(st.TRIAL_STATUS, params).first()  # type: ignore[union-attr]
        if row is None:
            raise UnknownTrialError(f"trial {trial_id!r} does not exist in study {study_id}")
        if _STATUS[row[0]] in _FINISHED:
            raise TrialFinishedError(f"trial {trial_id} was already finalized with status {row[0]}")

    def _after_write(self, study_id: int, version: int, apply: Any) -> None:
        """Apply a committed single-statement write to the mirror."""
        with self._mirror_lock:
            mirror = self._mirror(study_id)
            apply(mirror)
            if mirror.db_version == version - 1:
                mirror.db_version = version

    def add_observation(self, study_id: int, trial_id: int, observation: Observation) -> None:
        context = _dumps_context(observation.context)
        if not self._sqlite and self._tx(study_id) is None:
            params = {"sid": study_id, "tid": trial_id, "it": observation.iteration,
                      "obj": observation.objective, "ctx": context}  # fmt: skip
            try:
                row = self._one_statement(self._add_obs, params)
            except sa.exc.IntegrityError:
                raise DuplicateIterationError(
                    f"trial {trial_id} already has an observation at iteration "
                    f"{observation.iteration}"
                ) from None
            if row is None:
                self._diagnose(study_id, trial_id)
            recorded = observation._replace(seq=row[0])  # type: ignore[index]

            def apply_one(mirror: _Mirror) -> None:
                trial = mirror.trials.get(trial_id)
                if trial is not None:
                    trial._record(recorded)
                    mirror.touch(trial)

            self._after_write(study_id, row[0], apply_one)  # type: ignore[index]
            return
        with self._transaction(study_id, prefetch=False):
            tx = self._current(study_id)
            v = tx.version
            try:
                _, inserted = self._query(
                    tx, st.INS_OBS_RUNNING,
                    {"sid": study_id, "tid": trial_id, "it": observation.iteration,
                     "obj": observation.objective, "ctx": context, "seq": v},
                )  # fmt: skip
            except sa.exc.IntegrityError:
                raise DuplicateIterationError(
                    f"trial {trial_id} already has an observation at iteration "
                    f"{observation.iteration}"
                ) from None
            if not inserted:
                self._check_running(study_id, trial_id, tx)  # raises: unknown or finished
            recorded = observation._replace(seq=v)

            def apply(mirror: _Mirror) -> None:
                trial = mirror.trials.get(trial_id)
                if trial is not None:
                    trial._record(recorded)
                    mirror.touch(trial)

            tx.after.append(apply)

    def finish_trial(
        self,
        study_id: int,
        trial_id: int,
        status: TrialStatus,
        meta: dict[str, Any] | None = None,
    ) -> None:
        meta_json = None if meta is None else _dumps(meta, f"trial {trial_id}'s metadata")
        if not self._sqlite and self._tx(study_id) is None:
            # The changes since the mirror's version come along (free: same round trip, read
            # with the lock held), as the next suggestion usually follows: the suggestion then
            # applies them outside the study's lock.
            with self._mirror_lock:
                mirror0 = self._mirror(study_id)
                pull: dict[str, Any] = {"sid": study_id, "lo": mirror0.db_version}
            row = self._one_statement(
                st.PG_FINISH,
                {"sid": study_id, "tid": trial_id, "status": status.value, "now": time.time(),
                 "needs_obs": int(status is TrialStatus.COMPLETED), "meta": meta_json},
                pull=pull,
            )  # fmt: skip
            if row is None:
                self._diagnose(study_id, trial_id)
                raise NoObservationsError(
                    f"trial {trial_id} has no observation: call add_observation() before "
                    "finalizing it as COMPLETED, or finalize it as FAILED"
                )
            v = row[0]

            def apply_one(mirror: _Mirror) -> None:
                trial = mirror.trials.get(trial_id)
                if trial is not None:
                    trial.status = status
                    trial.finished_seq = v
                    if meta is not None:
                        trial.meta = dict(meta)
                    mirror.touch(trial)

            with self._mirror_lock:
                mirror = self._mirror(study_id)
                apply_one(mirror)
                if mirror is mirror0 and "rows" in pull and mirror.db_version < v:
                    _apply(mirror, pull["rows"], pull["obs"], v)  # complete up to v
                elif mirror.db_version == v - 1:
                    mirror.db_version = v
            return
        with self._transaction(study_id, prefetch=False):
            tx = self._current(study_id)
            v = tx.version
            _, updated = self._query(
                tx, st.FINISH,
                {"status": status.value, "v": v, "now": time.time(), "sid": study_id,
                 "tid": trial_id, "needs_obs": int(status is TrialStatus.COMPLETED),
                 "meta": meta_json},
            )  # fmt: skip
            if not updated:
                self._check_running(study_id, trial_id, tx)  # raises if unknown or finished
                raise NoObservationsError(
                    f"trial {trial_id} has no observation: call add_observation() before "
                    "finalizing it as COMPLETED, or finalize it as FAILED"
                )

            def apply(mirror: _Mirror) -> None:
                trial = mirror.trials.get(trial_id)
                if trial is not None:
                    trial.status = status
                    trial.finished_seq = v
                    if meta is not None:
                        trial.meta = dict(meta)
                    mirror.touch(trial)

            tx.after.append(apply)

    def request_stop(self, study_id: int, trial_id: int) -> None:
        with self._transaction(study_id, prefetch=False):
            tx = self._current(study_id)
            self._check_running(study_id, trial_id, tx)
            self._write(tx, st.STOP, {"yes": True, "v": tx.version, "sid": study_id,
                                      "tid": trial_id})  # fmt: skip

            def apply(mirror: _Mirror) -> None:
                trial = mirror.trials.get(trial_id)
                if trial is not None:
                    trial.stop_requested = True
                    mirror.touch(trial)

            tx.after.append(apply)

    # -- liveness -----------------------------------------------------------------------------
    def heartbeat(self, study_id: int, worker: str) -> int:
        with self._raw_transaction(write=True) as conn:
            return int(conn.execute(self._heartbeat, {"sid": study_id, "worker": worker}).rowcount)

    def running_trials_of(self, study_id: int, worker: str) -> list[int]:
        with self._connection() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT trial_id FROM poptune_trials WHERE study_id = :sid "
                    "AND worker = :worker AND status = 'RUNNING' ORDER BY trial_id"
                ),
                {"sid": study_id, "worker": worker},
            )
            return [int(r[0]) for r in rows]

    def has_stale_trials(self, study_id: int, grace_period: float) -> bool:
        # One read, no lock and no commit: workers look every heartbeat interval, and a
        # locked transaction each time would queue them behind one another (all at once when
        # they start together).
        params = {"sid": study_id, "grace": grace_period}
        with self._connection() as conn:
            pg = self._driver_connection(conn)
            if pg is not None:
                return (
                    self._pipeline(conn, pg, [(self._any_stale, params)])[0].fetchone() is not None
                )
            return conn.execute(self._any_stale, params).first() is not None

    def fail_stale_trials(self, study_id: int, grace_period: float) -> list[int]:
        with self._transaction(study_id, prefetch=False):
            tx = self._current(study_id)
            stale, _ = self._query(tx, self._stale, {"sid": study_id, "grace": grace_period})
            v, now = tx.version, time.time()
            failed = []
            for tid, meta_json in stale:
                meta = {**json.loads(meta_json), "heartbeat_lost": True}
                self._write(
                    tx, st.FAIL_STALE,
                    {"meta": _dumps(meta, "trial metadata"), "v": v, "now": now, "sid": study_id,
                     "tid": tid},
                )  # fmt: skip
                failed.append((tid, meta))

            def apply(mirror: _Mirror) -> None:
                for tid, meta in failed:
                    trial = mirror.trials.get(tid)
                    if trial is not None:
                        trial.status = TrialStatus.FAILED
                        trial.meta = meta
                        trial.finished_seq = v
                        mirror.touch(trial)

            tx.after.append(apply)
        return [tid for tid, _ in failed]

    # -- algorithm state --------------------------------------------------------------------
    def get_algorithm_state(self, study_id: int) -> dict[str, Any]:
        tx = self._tx(study_id)
        if tx is not None:
            if tx.state is None:
                tx.state = json.loads(tx.state_json)
            return tx.state
        return self._study_json(study_id, "state")

    def set_algorithm_state(self, study_id: int, state: dict[str, Any]) -> None:
        with self._transaction(study_id, prefetch=False):
            tx = self._current(study_id)
            tx.state = state


def _apply(mirror: _Mirror, rows: list[Any], obs_rows: list[Any], upto: int) -> None:
    """Apply rows read from the database (trials, then observations in ``seq`` order) to the
    mirror, which is then complete up to version ``upto``."""
    trials = mirror.trials
    rows = sorted(rows, key=lambda r: r[0])
    for tid, status, params, meta, stop, fseq in rows:
        trial = trials.get(tid)
        if trial is None:
            trial = trials[tid] = Trial(tid, json.loads(params), _STATUS[status])
        else:
            trial.status = _STATUS[status]
        trial.meta = json.loads(meta)
        trial.stop_requested = bool(stop)
        trial.finished_seq = fseq
    for tid, it, objective, context, seq in obs_rows:
        trials[tid]._obs[it] = (
            objective,
            tuple(json.loads(context).items()) if context else None,
            seq,
        )
    for tid in dict.fromkeys([r[0] for r in rows] + [r[0] for r in obs_rows]):
        mirror.touch(trials[tid])
    mirror.db_version = upto


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def _rollback(conn: sa.Connection) -> None:
    try:
        conn.exec_driver_sql("ROLLBACK")
    except Exception:  # noqa: BLE001, S110 - the connection may be gone; the error that got us here matters
        pass


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _psycopg_pipeline(url: sa.URL) -> Any:
    """The psycopg module if ``url`` uses psycopg 3 and its libpq has pipeline mode, else None."""
    if url.get_driver_name() != "psycopg":
        return None
    try:
        import psycopg
    except ImportError:
        return None
    return psycopg if psycopg.Pipeline.is_supported() else None


def _pg_on_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info[_CHECKED_IN] = time.monotonic()


def _pg_on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Replace a pooled connection the server closed, without a round trip when it was used
    within :data:`PING_AFTER_S` (SQLAlchemy then connects again)."""
    checked_in = record.info.get(_CHECKED_IN)
    if checked_in is None:  # just connected
        return
    try:
        if time.monotonic() - checked_in > PING_AFTER_S:
            dbapi_connection.execute("SELECT 1")
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
