"""All the SQL that SQLStorage runs, as fixed text (compiled once per dialect by SQLAlchemy's
cache; psycopg's form once per storage, see :mod:`poptune.storage._postgres`). The schema and
its migrations are in :mod:`poptune.storage._schema`.

Every write starts with :data:`LOCK`, which bumps the study's version and so takes its lock;
rows record the version of their last change (see :mod:`poptune.storage.sql`). The few
statements that differ by database are in :data:`DIALECTS`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import sqlalchemy as sa

#: A statement and its parameters (a plain command as text: no parameters).
Statement = tuple[Any, "dict[str, Any] | None"]

COMMIT = "COMMIT"
ROLLBACK = "ROLLBACK"

LOCK = sa.text(
    "UPDATE poptune_studies SET version = version + 1 WHERE study_id = :sid "
    "RETURNING version, state, n_trials"
)
STUDY_VERSION = sa.text("SELECT version FROM poptune_studies WHERE study_id = :sid")
SET_STATE = sa.text(
    "UPDATE poptune_studies SET state = :state, n_trials = :n WHERE study_id = :sid"
)
SEL_TRIALS = sa.text(
    "SELECT trial_id, status, parameters, meta, stop_requested, finished_seq "
    "FROM poptune_trials WHERE study_id = :sid AND version > :lo AND version <= :hi"
)
SEL_OBS = sa.text(
    "SELECT trial_id, iteration, objective, context, seq FROM poptune_observations "
    "WHERE study_id = :sid AND seq > :lo AND seq <= :hi ORDER BY seq"
)
# PostgreSQL reads the changes after version :lo with no upper bound where the bound is implied:
# in the transaction that holds the lock, after LOCK (or after PG_FINISH, which takes it):
# nothing above the version before the lock can be committed; or in one REPEATABLE READ
# snapshot with STUDY_VERSION, which then bounds every row that snapshot sees.
SEL_TRIALS_AFTER = sa.text(
    "SELECT trial_id, status, parameters, meta, stop_requested, finished_seq "
    "FROM poptune_trials WHERE study_id = :sid AND version > :lo"
)
SEL_OBS_AFTER = sa.text(
    "SELECT trial_id, iteration, objective, context, seq FROM poptune_observations "
    "WHERE study_id = :sid AND seq > :lo ORDER BY seq"
)
_INS_TRIAL = (
    "INSERT INTO poptune_trials (study_id, trial_id, status, parameters, meta, stop_requested, "
    "finished_seq, version, created_at, finished_at, heartbeat, worker) VALUES (:sid, :tid, "
    ":status, :params, :meta, :stop, :fseq, :v, :now, :fat, {now}, :worker)"
)
INS_OBS = sa.text(
    "INSERT INTO poptune_observations (study_id, trial_id, iteration, objective, context, seq) "
    "VALUES (:sid, :tid, :it, :obj, :ctx, :seq)"
)
TRIAL_STATUS = sa.text(
    "SELECT status FROM poptune_trials WHERE study_id = :sid AND trial_id = :tid"
)
INS_OBS_RUNNING = sa.text(
    "INSERT INTO poptune_observations (study_id, trial_id, iteration, objective, context, seq) "
    "SELECT study_id, trial_id, CAST(:it AS BIGINT), CAST(:obj AS DOUBLE PRECISION), "
    "CAST(:ctx AS TEXT), CAST(:v AS BIGINT) FROM poptune_trials "
    "WHERE study_id = :sid AND trial_id = :tid AND status IN ('QUEUED', 'RUNNING')"
)
FINISH = sa.text(
    "UPDATE poptune_trials SET status = :status, finished_seq = :v, finished_at = :now, "
    "version = :v, meta = COALESCE(:meta, meta) "
    "WHERE study_id = :sid AND trial_id = :tid AND status IN ('QUEUED', 'RUNNING') "
    "AND (:needs_obs = 0 OR EXISTS (SELECT 1 FROM poptune_observations o "
    "WHERE o.study_id = :sid AND o.trial_id = :tid))"
)
# PostgreSQL: an observation or a final status in one statement (one round trip) that takes
# the study lock, numbers the change and writes it; autocommit makes it its own transaction.
_PG_ADD_OBS = (
    "WITH {sync}v AS (UPDATE poptune_studies SET version = version + 1 WHERE study_id = :sid "
    "RETURNING version) INSERT INTO poptune_observations (study_id, trial_id, iteration, "
    "objective, context, seq) SELECT t.study_id, t.trial_id, CAST(:it AS BIGINT), "
    "CAST(:obj AS DOUBLE PRECISION), CAST(:ctx AS TEXT), v.version FROM poptune_trials t, v{a} "
    "WHERE t.study_id = :sid AND t.trial_id = :tid AND t.status IN ('QUEUED', 'RUNNING') "
    "RETURNING seq"
)
PG_ADD_OBS = sa.text(_PG_ADD_OBS.format(sync="", a=""))
# The same, committed without waiting for the WAL flush (``synchronous_commit`` off for this
# statement's transaction only; see SQLStorage's ``sync_observations``).
PG_ADD_OBS_ASYNC = sa.text(
    _PG_ADD_OBS.format(
        sync="a AS (SELECT set_config('synchronous_commit', 'off', true)), ", a=", a"
    )
)
PG_FINISH = sa.text(
    "WITH v AS (UPDATE poptune_studies SET version = version + 1 WHERE study_id = :sid "
    "RETURNING version) UPDATE poptune_trials t SET status = :status, "
    "finished_seq = v.version, finished_at = :now, version = v.version, "
    "meta = COALESCE(CAST(:meta AS TEXT), t.meta) FROM v "
    "WHERE t.study_id = :sid AND t.trial_id = :tid AND t.status IN ('QUEUED', 'RUNNING') "
    "AND (:needs_obs = 0 OR EXISTS (SELECT 1 FROM poptune_observations o "
    "WHERE o.study_id = :sid AND o.trial_id = :tid)) RETURNING v.version"
)
# A trial's last observation and its final status in one statement (one round trip, one
# flushed commit): the final status is set only where the observation went in (FROM o).
PG_FINISH_OBS = sa.text(
    "WITH v AS (UPDATE poptune_studies SET version = version + 1 WHERE study_id = :sid "
    "RETURNING version), o AS (INSERT INTO poptune_observations (study_id, trial_id, "
    "iteration, objective, context, seq) SELECT t.study_id, t.trial_id, CAST(:it AS BIGINT), "
    "CAST(:obj AS DOUBLE PRECISION), CAST(:ctx AS TEXT), v.version FROM poptune_trials t, v "
    "WHERE t.study_id = :sid AND t.trial_id = :tid AND t.status IN ('QUEUED', 'RUNNING') "
    "RETURNING seq) UPDATE poptune_trials t SET status = :status, finished_seq = v.version, "
    "finished_at = :now, version = v.version, meta = COALESCE(CAST(:meta AS TEXT), t.meta) "
    "FROM v, o WHERE t.study_id = :sid AND t.trial_id = :tid "
    "AND t.status IN ('QUEUED', 'RUNNING') RETURNING v.version"
)
_CLAIM = (
    "UPDATE poptune_trials SET status = 'RUNNING', version = :v, heartbeat = {now}, "
    "worker = :worker WHERE study_id = :sid AND trial_id = :tid AND status = 'QUEUED'"
)
_HEARTBEAT = (
    "UPDATE poptune_trials SET heartbeat = {now} "
    "WHERE study_id = :sid AND worker = :worker AND status = 'RUNNING'"
)
_STALE_WHERE = (
    "FROM poptune_trials WHERE study_id = :sid AND status = 'RUNNING' "
    "AND heartbeat IS NOT NULL AND heartbeat < {now} - :grace"
)
_STALE = "SELECT trial_id, meta " + _STALE_WHERE + " ORDER BY trial_id"
_ANY_STALE = "SELECT 1 " + _STALE_WHERE + " LIMIT 1"
FAIL_STALE = sa.text(
    "UPDATE poptune_trials SET status = 'FAILED', meta = :meta, finished_seq = :v, "
    "finished_at = :now, version = :v WHERE study_id = :sid AND trial_id = :tid"
)
STOP = sa.text(
    "UPDATE poptune_trials SET stop_requested = :yes, version = :v "
    "WHERE study_id = :sid AND trial_id = :tid"
)
RUNNING_TRIALS_OF = sa.text(
    "SELECT trial_id FROM poptune_trials WHERE study_id = :sid "
    "AND worker = :worker AND status = 'RUNNING' ORDER BY trial_id"
)

# -- studies ---------------------------------------------------------------------------------
CREATE_STUDY = sa.text(
    "INSERT INTO poptune_studies (name, config, state, version, n_trials, created_at) "
    "VALUES (:name, :config, '{}', 0, 0, :now) RETURNING study_id"
)
STUDY_ID = sa.text("SELECT study_id FROM poptune_studies WHERE name = :name")
STUDY_NAME = sa.text("SELECT name FROM poptune_studies WHERE study_id = :sid")
STUDY_CONFIG = sa.text("SELECT config FROM poptune_studies WHERE study_id = :sid")
STUDY_STATE = sa.text("SELECT state FROM poptune_studies WHERE study_id = :sid")
LIST_STUDIES = sa.text("SELECT name FROM poptune_studies ORDER BY study_id")
#: Deleting a study: its observations, its trials, then the study.
DELETE_STUDY = (
    sa.text("DELETE FROM poptune_observations WHERE study_id = :sid"),
    sa.text("DELETE FROM poptune_trials WHERE study_id = :sid"),
    sa.text("DELETE FROM poptune_studies WHERE study_id = :sid"),
)

# -- per database ----------------------------------------------------------------------------
#: The database's clock, in seconds since the epoch (heartbeats use one clock for all workers).
NOW_SQL = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "postgresql": "EXTRACT(EPOCH FROM clock_timestamp())",
}


class Dialect(NamedTuple):
    """The statements whose text depends on the database (its clock, how it begins)."""

    #: A write transaction: SQLite's takes the database's write lock at once.
    begin_write: str
    #: A read-only snapshot (PostgreSQL ``REPEATABLE READ``).
    begin_read: str
    #: :data:`LOCK`; on PostgreSQL its row also holds the transaction's id (what
    #: ``pg_current_xact_id()`` says, as text), asked for in the same statement rather than
    #: a statement of its own.
    lock: sa.TextClause
    insert_trial: sa.TextClause
    claim: sa.TextClause
    heartbeat: sa.TextClause
    stale: sa.TextClause
    any_stale: sa.TextClause


DIALECTS = {
    name: Dialect(
        begin_write=begin_write,
        begin_read=begin_read,
        lock=lock,
        insert_trial=sa.text(_INS_TRIAL.format(now=now)),
        claim=sa.text(_CLAIM.format(now=now)),
        heartbeat=sa.text(_HEARTBEAT.format(now=now)),
        stale=sa.text(_STALE.format(now=now)),
        any_stale=sa.text(_ANY_STALE.format(now=now)),
    )
    for name, begin_write, begin_read, lock, now in (
        ("sqlite", "BEGIN IMMEDIATE", "BEGIN", LOCK, NOW_SQL["sqlite"]),
        (
            "postgresql",
            "BEGIN",
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            sa.text(f"{LOCK.text}, CAST(pg_current_xact_id() AS TEXT)"),
            NOW_SQL["postgresql"],
        ),
    )  # fmt: skip
}

#: Run on every new SQLite connection. (Its busy timeout is the driver's ``timeout``, set from
#: ``lock_timeout``.)
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
)
#: PostgreSQL: the advisory lock that serializes migrations ('poptu').
PG_MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(7061797475)"
#: PostgreSQL: refresh the planner's statistics of poptune's growing tables.
PG_ANALYZE = "ANALYZE poptune_trials, poptune_observations"
#: PostgreSQL: a ping of a connection idle for a while.
PG_PING = "SELECT 1"

# -- PostgreSQL: stalled holders and lost connections (see poptune.storage._postgres) -------
#: What became of a transaction: 'committed', 'aborted' or 'in progress'.
PG_XACT_STATUS = sa.text("SELECT pg_xact_status(CAST(:xid AS xid8))")
#: Ends the sessions of this application (poptune's) on this database that have sat in an
#: open transaction, without a word, for longer than ``:stall`` seconds: frozen or hung lock
#: holders. (``idle_in_transaction_session_timeout`` does not catch a pipelined session:
#: after a pipeline psycopg's last message is a flush, which disarms the server's timer.)
PG_UNSTALL = sa.text(
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND application_name = current_setting('application_name') "
    "AND state IN ('idle in transaction', 'idle in transaction (aborted)') "
    "AND state_change < clock_timestamp() - CAST(:stall AS DOUBLE PRECISION) * INTERVAL '1 second'"
)
#: An observation already recorded (to recognize a write whose acknowledgement was lost).
PG_OBS_AT = sa.text(
    "SELECT objective, context FROM poptune_observations "
    "WHERE study_id = :sid AND trial_id = :tid AND iteration = :it"
)


def every_statement(dialect: str) -> list[sa.TextClause]:
    """Every statement above that runs on ``dialect`` (to compile them ahead of use)."""
    values = (*globals().values(), *DELETE_STUDY, *DIALECTS[dialect])
    return [v for v in values if isinstance(v, sa.TextClause)]
