"""Connecting for :class:`~poptune.storage.sql.SQLStorage`: URLs and driver errors as
messages show them, what every new SQLite connection runs, and SQLite's read-only opening
(``mode=ro``, never changing the file)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from poptune.exceptions import StorageError
from poptune.storage._statements import SQLITE_PRAGMAS
from poptune.storage._transaction import first_line

__all__ = [
    "canonical_url",
    "connection_error",
    "on_connect_read_only",
    "read_only_connect",
    "safe_url",
]


def read_only_connect(database: str, query: Mapping[str, Any]) -> Callable[[], Any]:
    """The connect function of a read-only SQLite storage: ``mode=ro``, or ``mode=ro&
    immutable=1`` where SQLite cannot open the file even for reading (a WAL-mode file whose
    ``-shm`` cannot be created: a read-only file system, where no writer can exist)."""
    target = database
    if not (query.get("uri") and database.startswith("file:")):
        target = Path(database).resolve().as_uri()  # percent-encoded, absolute
    sep = "&" if "?" in target else "?"

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(f"{target}{sep}mode=ro", uri=True, timeout=60.0,
                               check_same_thread=False)  # fmt: skip
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            conn.close()
            if "unable to open" not in str(exc):
                raise
            conn = sqlite3.connect(f"{target}{sep}mode=ro&immutable=1", uri=True,
                                   timeout=60.0, check_same_thread=False)  # fmt: skip
        return conn

    return connect


def on_connect_read_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        if "journal_mode" not in pragma:  # changing it writes the file's header
            cursor.execute(pragma)
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def canonical_url(url: str) -> str:
    """``url`` with PostgreSQL's other scheme spelled as SQLAlchemy knows it:
    ``postgres://`` (what Heroku, ``psql`` and many hosting services print) and
    ``postgres+DRIVER://`` become ``postgresql://`` and ``postgresql+DRIVER://``; any other
    URL is returned as it is."""
    scheme, sep, rest = url.partition("://")
    if sep and (scheme == "postgres" or scheme.startswith("postgres+")):
        return f"postgresql{scheme[len('postgres') :]}://{rest}"
    return url


def connection_error(where: str, exc: BaseException) -> StorageError:
    """The one error a failed connection raises (server down, wrong host, port or database,
    refused credentials): a :class:`~poptune.exceptions.StorageError` naming ``where`` (the
    URL without its password) and the driver's first line. The SQLAlchemy error is kept as
    its ``cause`` attribute (its ``orig``, the driver's own error); raise it ``from None`` so
    a traceback shows this error only, not the driver's and SQLAlchemy's chain."""
    error = StorageError(f"database error on {where}: cannot connect: {first_line(exc)}")
    error.cause = exc  # type: ignore[attr-defined]
    return error


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given
        return url
