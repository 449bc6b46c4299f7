"""The SQL that SQLStorage runs, as text (compiled once per dialect by SQLAlchemy's cache).

Every write starts with :data:`LOCK`, which bumps the study's version and so takes its lock;
rows record the version of their last change (see :mod:`poptune.storage.sql`).
"""

from __future__ import annotations

import sqlalchemy as sa

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
INS_TRIAL = (
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
    "CAST(:ctx AS TEXT), CAST(:seq AS BIGINT) FROM poptune_trials "
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
CLAIM = (
    "UPDATE poptune_trials SET status = 'RUNNING', version = :v, heartbeat = {now}, "
    "worker = :worker WHERE study_id = :sid AND trial_id = :tid AND status = 'QUEUED'"
)
HEARTBEAT = (
    "UPDATE poptune_trials SET heartbeat = {now} "
    "WHERE study_id = :sid AND worker = :worker AND status = 'RUNNING'"
)
_STALE_WHERE = (
    "FROM poptune_trials WHERE study_id = :sid AND status = 'RUNNING' "
    "AND heartbeat IS NOT NULL AND heartbeat < {now} - :grace"
)
STALE = "SELECT trial_id, meta " + _STALE_WHERE + " ORDER BY trial_id"
ANY_STALE = "SELECT 1 " + _STALE_WHERE + " LIMIT 1"
FAIL_STALE = sa.text(
    "UPDATE poptune_trials SET status = 'FAILED', meta = :meta, finished_seq = :v, "
    "finished_at = :now, version = :v WHERE study_id = :sid AND trial_id = :tid"
)
#: The database's clock, in seconds since the epoch (heartbeats use one clock for all workers).
NOW_SQL = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "postgresql": "EXTRACT(EPOCH FROM clock_timestamp())",
}
STOP = sa.text(
    "UPDATE poptune_trials SET stop_requested = :yes, version = :v "
    "WHERE study_id = :sid AND trial_id = :tid"
)
