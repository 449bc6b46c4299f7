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
* Values are stored as JSON text, never pickled.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
    __slots__ = ("after", "conn", "depth", "n_trials", "sid", "state", "state_json", "version")

    def __init__(self, conn: sa.Connection, sid: int, version: int, state_json: str,
                 n_trials: int) -> None:  # fmt: skip
        self.conn = conn
        self.sid = sid
        self.version = version
        self.state_json = state_json
        self.state: dict[str, Any] | None = None
        self.n_trials = n_trials
        self.after: list[Any] = []
        self.depth = 0


class SQLStorage(Storage):
    """Studies in an SQLite file or a PostgreSQL database, shared by any number of processes.

    Args:
        url: ``sqlite:///path/to/file.db`` (relative to the working directory;
            ``sqlite:////abs/path.db`` for an absolute path) or
            ``postgresql://user:password@host:port/database`` (needs ``poptune[postgres]``,
            i.e. psycopg 3).
        engine_kwargs: extra keyword arguments for :func:`sqlalchemy.create_engine`.

    Raises:
        ConfigurationError: the URL is not an SQLite or PostgreSQL URL, or the driver is not
            installed.
        StorageError: the database cannot be reached or opened.
    """

    requires_json = True
    supports_heartbeat = True

    def __init__(self, url: str, engine_kwargs: Mapping[str, Any] | None = None) -> None:
        self.url = url
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
            kwargs["pool_pre_ping"] = True
            self._sqlite = False
        else:
            raise ConfigurationError(
                f"unsupported database {backend!r} in {safe_url(url)!r}: poptune stores studies "
                "in SQLite (sqlite:///file.db) or PostgreSQL (postgresql://...)"
            )
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
        now = st.NOW_SQL["sqlite" if self._sqlite else "postgresql"]
        self._ins_trial = sa.text(st.INS_TRIAL.format(now=now))
        self._claim = sa.text(st.CLAIM.format(now=now))
        self._heartbeat = sa.text(st.HEARTBEAT.format(now=now))
        self._stale = sa.text(st.STALE.format(now=now))
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

    @contextmanager
    def transaction(self, study_id: int) -> Iterator[None]:  # type: ignore[override]
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
            self._begin(conn, write=True)
            try:
                row = conn.execute(st.LOCK, {"sid": study_id}).first()
                if row is None:
                    raise StudyNotFoundError(f"no study with id {study_id!r} in {self}")
                tx = _Tx(conn, study_id, row[0], row[1], row[2])
                self._local.tx = tx
                yield
                if tx.state is not None:
                    state_json = _dumps(tx.state, "the algorithm state")
                    if state_json != tx.state_json or tx.n_trials != row[2]:
                        conn.execute(
                            st.SET_STATE, {"state": state_json, "n": tx.n_trials, "sid": study_id}
                        )
                elif tx.n_trials != row[2]:
                    conn.execute(
                        st.SET_STATE, {"state": tx.state_json, "n": tx.n_trials, "sid": study_id}
                    )
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
                self._apply_rows(tx.conn, study_id, mirror, upto)
            return mirror
        with self._connection() as conn:
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
                    self._apply_rows(conn, study_id, mirror, row[0])
                conn.exec_driver_sql("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        return mirror

    @staticmethod
    def _apply_rows(conn: sa.Connection, study_id: int, mirror: _Mirror, upto: int) -> None:
        bounds = {"sid": study_id, "lo": mirror.db_version, "hi": upto}
        rows = sorted(conn.execute(st.SEL_TRIALS, bounds).all(), key=lambda r: r[0])
        obs_rows = conn.execute(st.SEL_OBS, bounds).all()
        trials = mirror.trials
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
        with self.transaction(study_id):
            tx = self._current(study_id)
            if trial.id != tx.n_trials + 1:
                raise StorageError(
                    f"trial id {trial.id} is not the next id {tx.n_trials + 1} of study {study_id}"
                )
            now = time.time()
            finished = trial.status in _FINISHED
            v = tx.version
            tx.conn.execute(
                self._ins_trial,
                {"sid": study_id, "tid": trial.id, "status": trial.status.value, "params": params,
                 "meta": meta, "stop": trial.stop_requested, "fseq": v if finished else 0,
                 "v": v, "now": now, "fat": now if finished else None,
                 "worker": worker if trial.status is TrialStatus.RUNNING else None},
            )  # fmt: skip
            for it, (objective, items, _seq) in trial._obs.items():
                tx.conn.execute(
                    st.INS_OBS,
                    {"sid": study_id, "tid": trial.id, "it": it, "obj": objective,
                     "ctx": _dumps_context(dict(items) if items else {}), "seq": v},
                )  # fmt: skip
            tx.n_trials += 1

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
                claimed = tx.conn.execute(
                    self._claim, {"v": tx.version, "sid": study_id, "tid": tid, "worker": worker}
                ).rowcount
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
            self._check_running(conn, study_id, trial_id)

    def _check_running(self, conn: sa.Connection, study_id: int, trial_id: int) -> None:
        """Raise unless the trial exists and is not finished."""
        if type(trial_id) is not int:
            raise UnknownTrialError(f"trial {trial_id!r} does not exist in study {study_id}")
        row = conn.execute(st.TRIAL_STATUS, {"sid": study_id, "tid": trial_id}).first()
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
                with self._connection() as conn:
                    row = conn.execute(st.PG_ADD_OBS, params).first()
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
        with self.transaction(study_id):
            tx = self._current(study_id)
            v = tx.version
            try:
                inserted = tx.conn.execute(
                    st.INS_OBS_RUNNING,
                    {"sid": study_id, "tid": trial_id, "it": observation.iteration,
                     "obj": observation.objective, "ctx": context, "seq": v},
                ).rowcount  # fmt: skip
            except sa.exc.IntegrityError:
                raise DuplicateIterationError(
                    f"trial {trial_id} already has an observation at iteration "
                    f"{observation.iteration}"
                ) from None
            if not inserted:
                self._check_running(tx.conn, study_id, trial_id)  # raises: unknown or finished
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
            with self._connection() as conn:
                row = conn.execute(
                    st.PG_FINISH,
                    {"sid": study_id, "tid": trial_id, "status": status.value, "now": time.time(),
                     "needs_obs": int(status is TrialStatus.COMPLETED), "meta": meta_json},
                ).first()  # fmt: skip
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

            self._after_write(study_id, v, apply_one)
            return
        with self.transaction(study_id):
            tx = self._current(study_id)
            v = tx.version
            updated = tx.conn.execute(
                st.FINISH,
                {"status": status.value, "v": v, "now": time.time(), "sid": study_id,
                 "tid": trial_id, "needs_obs": int(status is TrialStatus.COMPLETED),
                 "meta": meta_json},
            ).rowcount  # fmt: skip
            if not updated:
                self._check_running(tx.conn, study_id, trial_id)  # raises if unknown or finished
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
        with self.transaction(study_id):
            tx = self._current(study_id)
            self._check_running(tx.conn, study_id, trial_id)
            tx.conn.execute(st.STOP, {"yes": True, "v": tx.version, "sid": study_id,
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

    def fail_stale_trials(self, study_id: int, grace_period: float) -> list[int]:
        with self.transaction(study_id):
            tx = self._current(study_id)
            stale = tx.conn.execute(self._stale, {"sid": study_id, "grace": grace_period}).all()
            v, now = tx.version, time.time()
            failed = []
            for tid, meta_json in stale:
                meta = {**json.loads(meta_json), "heartbeat_lost": True}
                tx.conn.execute(
                    st.FAIL_STALE,
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
        with self.transaction(study_id):
            tx = self._current(study_id)
            tx.state = state


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
