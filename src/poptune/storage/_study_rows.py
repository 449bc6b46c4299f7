"""The studies table of :class:`~poptune.storage.sql.SQLStorage` (a mixin it inherits):
the schema check on opening (migrate, or for a read-only opening refuse what needs one),
creating, finding, listing and deleting studies, reading their JSON columns, naming a
study in the message of a corrupt row, and saying why a guarded write changed nothing."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from poptune.exceptions import (
    CorruptRowError,
    NoObservationsError,
    StorageError,
    StudyMismatchError,
    StudyNotFoundError,
    TrialFinishedError,
    UnknownTrialError,
)
from poptune.storage._mirror import check_config, decode_json, decode_status
from poptune.storage._schema import check_readable, migrate, read_version, schema_version
from poptune.storage._statements import (
    CREATE_STUDY,
    DELETE_STUDY,
    LIST_STUDIES,
    PG_MIGRATION_LOCK,
    STUDY_CONFIG,
    STUDY_ID,
    STUDY_NAME,
    TRIAL_STATUS,
)
from poptune.storage._transaction import dumps, retried

if TYPE_CHECKING:
    from poptune.storage._mirror import Mirrors

__all__ = ["StudyRows"]


class _Naming:
    """``StudyRows._naming``'s block (a class: it is entered on every suggestion)."""

    __slots__ = ("rows", "study_id")

    def __init__(self, rows: StudyRows, study_id: int) -> None:
        self.rows = rows
        self.study_id = study_id

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if kind is not None and issubclass(kind, CorruptRowError):
            raise CorruptRowError(f"{self.rows._study_label(self.study_id)}: {exc}") from None


class StudyRows:
    """Study-level methods of SQLStorage (see there); uses its ``_connection``,
    ``_raw_transaction``, ``_where``, ``_pg`` and ``_mirrors``."""

    _where: str
    _pg: Any
    _mirrors: Mirrors

    def _connection(self) -> Any:  # pragma: no cover - SQLStorage's
        raise NotImplementedError

    def _raw_transaction(self, write: bool) -> Any:  # pragma: no cover - SQLStorage's
        raise NotImplementedError

    def _naming(self, study_id: int) -> _Naming:
        """A CorruptRowError raised in the block names the study (and this database)."""
        return _Naming(self, study_id)

    def _study_label(self, study_id: int) -> str:
        try:
            with self._connection() as conn:
                row = conn.execute(STUDY_NAME, {"sid": study_id}).first()
        except StorageError:
            row = None
        name = f"study {row[0]!r}" if row is not None else f"study id {study_id}"
        return f"{name} in {self._where}"

    # -- schema -----------------------------------------------------------------------------
    def _migrate(self) -> None:
        with self._raw_transaction(write=True) as conn:
            if self._pg is not None:  # several processes opening a new database migrate it once
                conn.exec_driver_sql(PG_MIGRATION_LOCK)
            read_version(conn, self._where)  # a corrupt version: one line, before migrating
            migrate(conn, self._where)

    def _check_schema(self) -> None:
        """A read-only opening: the database must hold poptune's tables at this version."""
        with self._raw_transaction(write=False) as conn:
            check_readable(read_version(conn, self._where), self._where)

    @property
    def schema_version(self) -> int:
        """The schema version of the database (after opening, always the current one)."""
        with self._raw_transaction(write=False) as conn:
            return schema_version(conn)

    # -- studies ----------------------------------------------------------------------------
    def create_study(self, name: str, config: Mapping[str, Any]) -> int:
        config_json = dumps(dict(config), "the study configuration")
        try:
            with self._raw_transaction(write=True) as conn:
                row = conn.execute(
                    CREATE_STUDY, {"name": name, "config": config_json, "now": time.time()}
                ).first()
        except sa.exc.IntegrityError:
            raise StudyMismatchError(
                f"a study named {name!r} already exists in {self._where}"
            ) from None
        return int(row[0])  # type: ignore[index]

    @retried(reads=True)
    def get_study_id(self, name: str) -> int:
        with self._connection() as conn:
            row = conn.execute(STUDY_ID, {"name": name}).first()
        if row is None:
            raise StudyNotFoundError(f"no study named {name!r} in {self._where}")
        return int(row[0])

    @retried(reads=True)
    def _study_json(self, study_id: int, select: sa.TextClause) -> Any:
        """A JSON column of a study (:data:`STUDY_CONFIG`, :data:`STUDY_STATE`), read outside
        transactions."""
        with self._connection() as conn:
            row = conn.execute(select, {"sid": study_id}).first()
        if row is None:
            raise StudyNotFoundError(f"no study with id {study_id!r} in {self._where}")
        field = "config" if select is STUDY_CONFIG else "state"
        with self._naming(study_id):
            return decode_json(row[0], field)

    def get_study_config(self, study_id: int) -> dict[str, Any]:
        config = self._study_json(study_id, STUDY_CONFIG)
        with self._naming(study_id):
            return check_config(config)

    @retried(reads=True)
    def list_studies(self) -> list[str]:
        with self._connection() as conn:
            return [r[0] for r in conn.execute(LIST_STUDIES)]

    def delete_study(self, name: str) -> None:
        study_id = self.get_study_id(name)
        with self._raw_transaction(write=True) as conn:
            for delete in DELETE_STUDY:
                conn.execute(delete, {"sid": study_id})
        self._mirrors.drop(study_id)

    # -- a guarded write that changed nothing ---------------------------------------------
    def _check_running(
        self, study_id: int, trial_id: int | None, channel: Any,
        refused: str | None = None,
    ) -> None:  # fmt: skip
        """Raise unless the trial exists and is not finished (nothing if ``trial_id`` is None);
        then, with ``refused``, raise :class:`NoObservationsError` for it."""
        if trial_id is None:
            return
        if type(trial_id) is not int:
            raise UnknownTrialError(f"trial {trial_id!r} does not exist in study {study_id}")
        rows = channel.query((TRIAL_STATUS, {"sid": study_id, "tid": trial_id}))[0][0]
        if not rows:
            raise UnknownTrialError(f"trial {trial_id!r} does not exist in study {study_id}")
        status = rows[0][0]
        with self._naming(study_id):
            finished = decode_status(status, trial_id).is_finished
        if finished:
            raise TrialFinishedError(
                f"trial {trial_id} was already finalized with status {rows[0][0]}"
            )
        if refused is not None:
            raise NoObservationsError(f"trial {trial_id} {refused}")
