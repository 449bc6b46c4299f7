"""The SQL storage's transaction plumbing: a write described once, the channel that runs
it, and the state of one thread's write transaction on a study.

:class:`~poptune.storage.sql.SQLStorage` holds the contract; what a write *is*
(:class:`Write`) and how its statements reach the database (:class:`Direct`, or
:class:`~poptune.storage._postgres.Pipelined` with psycopg 3) live here, so each contract
method is one description handed to one executor.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa

from poptune.exceptions import StorageError
from poptune.storage._mirror import Apply
from poptune.storage._statements import COMMIT, Dialect, Statement

if TYPE_CHECKING:
    from poptune.storage._postgres import Pipelined

__all__ = ["Direct", "Tx", "Write", "dumps", "dumps_context"]


def dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StorageError(f"{what} cannot be stored as JSON: {exc} (value: {value!r})") from None


def dumps_context(context: Mapping[str, Any]) -> str | None:
    if not context:
        return None
    # NaN and infinities are allowed in context (a diverged loss); Python's json reads them back
    return json.dumps(context, separators=(",", ":"))


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

    __slots__ = ("analyze", "channel", "n_trials", "on_commit", "sid", "state", "state_json",
                 "version")  # fmt: skip

    def __init__(self, channel: Direct | Pipelined, sid: int, version: int, state_json: str,
                 n_trials: int) -> None:  # fmt: skip
        self.channel = channel
        self.sid = sid
        self.version = version
        self.state_json = state_json
        self.state: dict[str, Any] | None = None
        self.n_trials = n_trials
        #: The mirror's changes, applied once the transaction commits.
        self.on_commit: list[Apply] = []
        self.analyze = False  # PostgreSQL: refresh the planner's statistics after the commit


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
