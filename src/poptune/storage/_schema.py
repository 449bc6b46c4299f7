"""The SQL schema and its migrations.

The schema version lives in ``poptune_meta`` (key ``schema_version``). A database is brought
to :data:`SCHEMA_VERSION` by running, in order, every migration step above its version, in
one transaction that holds a lock (SQLite ``BEGIN IMMEDIATE``; PostgreSQL an advisory lock),
so several processes opening a new database at once migrate it once.

Each step is written against the tables *as they were* at that version, never against the
current :data:`METADATA`, so old steps keep working after the schema moves on.

Versions:

1. studies, trials, observations, meta.
2. trials.heartbeat (database time of the worker's last sign of life, seconds since the epoch)
   and trials.worker (who runs the trial), for detecting dead workers.
3. checkpoints kept in the database (``checkpoint_dir="database://"``,
   :mod:`poptune.storage._blobs`): poptune_checkpoints (one row per whole checkpoint of a
   study) and poptune_checkpoint_chunks (its bytes, in chunks), both deleted with their study.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from poptune.exceptions import CorruptRowError, StorageError

SCHEMA_VERSION = 3

METADATA = sa.MetaData()

studies = sa.Table(
    "poptune_studies",
    METADATA,
    sa.Column("study_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(512), nullable=False, unique=True),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("n_trials", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sqlite_autoincrement=True,  # never reuse a deleted study's id
)

trials = sa.Table(
    "poptune_trials",
    METADATA,
    sa.Column(
        "study_id",
        sa.Integer,
        sa.ForeignKey("poptune_studies.study_id", ondelete="CASCADE"),
        primary_key=True,
    ),  # fmt: skip
    sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("parameters", sa.Text, nullable=False),
    sa.Column("meta", sa.Text, nullable=False),
    sa.Column("stop_requested", sa.Boolean, nullable=False),
    sa.Column("finished_seq", sa.BigInteger, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("finished_at", sa.Double, nullable=True),
    sa.Column("heartbeat", sa.Double, nullable=True),
    sa.Column("worker", sa.String(128), nullable=True),
    sa.Index("ix_poptune_trials_version", "study_id", "version"),
    sa.Index("ix_poptune_trials_status", "study_id", "status"),
)

observations = sa.Table(
    "poptune_observations",
    METADATA,
    sa.Column("study_id", sa.Integer, primary_key=True),
    sa.Column("trial_id", sa.Integer, primary_key=True),
    sa.Column("iteration", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("objective", sa.Double, nullable=False),
    sa.Column("context", sa.Text, nullable=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.ForeignKeyConstraint(
        ["study_id", "trial_id"],
        ["poptune_trials.study_id", "poptune_trials.trial_id"],
        ondelete="CASCADE",
    ),
    sa.Index("ix_poptune_observations_seq", "study_id", "seq"),
)

meta = sa.Table(
    "poptune_meta",
    METADATA,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


def _checkpoint_tables(m: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """The tables of checkpoints kept in the database (version 3; frozen)."""

    def study() -> sa.ForeignKey:
        return sa.ForeignKey("poptune_studies.study_id", ondelete="CASCADE")

    heads = sa.Table(
        "poptune_checkpoints", m,
        sa.Column("study_id", sa.Integer, study(), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("upload", sa.String(320), nullable=False),  # the chunks' key
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("chunks", sa.Integer, nullable=False),
        sa.Column("written_at", sa.Double, nullable=False),
    )  # fmt: skip
    chunks = sa.Table(
        "poptune_checkpoint_chunks", m,
        sa.Column("upload", sa.String(320), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("study_id", sa.Integer, study(), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Index("ix_poptune_checkpoint_chunks_study", "study_id"),
    )  # fmt: skip
    return heads, chunks


checkpoints, checkpoint_chunks = _checkpoint_tables(METADATA)


def _v1(conn: sa.Connection) -> None:
    """Version 1: meta, studies, trials, observations (as first released; frozen)."""
    m = sa.MetaData()
    sa.Table("poptune_meta", m, sa.Column("key", sa.String(64), primary_key=True),
             sa.Column("value", sa.Text, nullable=False))  # fmt: skip
    sa.Table(
        "poptune_studies", m,
        sa.Column("study_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(512), nullable=False, unique=True),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("n_trials", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sqlite_autoincrement=True,
    )  # fmt: skip
    sa.Table(
        "poptune_trials", m,
        sa.Column("study_id", sa.Integer, sa.ForeignKey("poptune_studies.study_id",
                  ondelete="CASCADE"), primary_key=True),
        sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("parameters", sa.Text, nullable=False),
        sa.Column("meta", sa.Text, nullable=False),
        sa.Column("stop_requested", sa.Boolean, nullable=False),
        sa.Column("finished_seq", sa.BigInteger, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("finished_at", sa.Double, nullable=True),
        sa.Index("ix_poptune_trials_version", "study_id", "version"),
        sa.Index("ix_poptune_trials_status", "study_id", "status"),
    )  # fmt: skip
    sa.Table(
        "poptune_observations", m,
        sa.Column("study_id", sa.Integer, primary_key=True),
        sa.Column("trial_id", sa.Integer, primary_key=True),
        sa.Column("iteration", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("objective", sa.Double, nullable=False),
        sa.Column("context", sa.Text, nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(["study_id", "trial_id"],
                                ["poptune_trials.study_id", "poptune_trials.trial_id"],
                                ondelete="CASCADE"),
        sa.Index("ix_poptune_observations_seq", "study_id", "seq"),
    )  # fmt: skip
    m.create_all(conn)


def _v2(conn: sa.Connection) -> None:
    """Version 2: heartbeats. Existing running trials get no heartbeat (never reaped)."""
    double = sa.Double().compile(dialect=conn.dialect)
    conn.exec_driver_sql(f"ALTER TABLE poptune_trials ADD COLUMN heartbeat {double}")
    conn.exec_driver_sql("ALTER TABLE poptune_trials ADD COLUMN worker VARCHAR(128)")


def _v3(conn: sa.Connection) -> None:
    """Version 3: checkpoints in the database (two new tables; nothing else changes)."""
    m = sa.MetaData()
    sa.Table("poptune_studies", m, sa.Column("study_id", sa.Integer, primary_key=True))
    heads, chunks = _checkpoint_tables(m)
    heads.create(conn)
    chunks.create(conn)


#: ``MIGRATIONS[v]`` brings a database from version ``v - 1`` to ``v``.
MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {1: _v1, 2: _v2, 3: _v3}


def schema_version(conn: sa.Connection) -> int:
    """The database's schema version (0: no poptune tables yet)."""
    if not sa.inspect(conn).has_table("poptune_meta"):
        return 0
    row = conn.execute(
        sa.text("SELECT value FROM poptune_meta WHERE key = 'schema_version'")
    ).first()
    return int(row[0]) if row else 0


def set_schema_version(conn: sa.Connection, version: int) -> None:
    """Record the schema version reached by a migration."""
    updated = conn.execute(
        sa.text("UPDATE poptune_meta SET value = :v WHERE key = 'schema_version'"),
        {"v": str(version)},
    ).rowcount
    if not updated:
        conn.execute(
            sa.text("INSERT INTO poptune_meta (key, value) VALUES ('schema_version', :v)"),
            {"v": str(version)},
        )


def migrate(conn: sa.Connection, where: str) -> None:
    """Bring the database on ``conn`` (in a transaction holding the lock) to
    :data:`SCHEMA_VERSION`; ``where`` names it in messages.

    Raises:
        StorageError: the database has a newer schema than this poptune knows.
    """
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{where} has poptune schema version {version}; this poptune "
            f"knows up to {SCHEMA_VERSION}: upgrade poptune"
        )
    for step in range(version + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[step](conn)
        set_schema_version(conn, step)


def read_version(conn: sa.Connection, where: str) -> int:
    """:func:`schema_version`, or CorruptRowError when the stored version is not a number."""
    try:
        return schema_version(conn)
    except (ValueError, TypeError):
        raise CorruptRowError(
            f"{where}: poptune_meta's 'schema_version' is not an integer"
        ) from None


class NoTablesError(StorageError):
    """A read-only opening found no poptune tables (e.g. an SQLite file a study is creating
    right now: ``poptune dashboard FILE --study NAME`` waits for them)."""


def check_readable(version: int, where: str) -> None:
    """Raise StorageError unless a database at schema ``version`` can be read as it is (a
    read-only opening creates and migrates nothing), saying what to do."""
    if version == 0:
        raise NoTablesError(
            f"{where} holds no poptune tables: not a poptune database (nothing was changed; "
            "storing a study there creates them)"
        )
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{where} has poptune schema version {version}; this poptune knows up to "
            f"{SCHEMA_VERSION}: upgrade poptune"
        )
    if version < SCHEMA_VERSION:
        raise StorageError(
            f"{where} has poptune schema version {version} and needs a migration to version "
            f"{SCHEMA_VERSION}, which a read-only opening does not make; migrate it by opening "
            f'it writable once: python -c "from poptune.storage.sql import SQLStorage; '
            f'SQLStorage({where!r})"'
        )
