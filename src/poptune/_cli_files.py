"""The files the ``poptune`` command writes (``export --output``): never over a study's
database or its WAL, journal or shared-memory siblings, never over another SQLite database,
an existing file only with ``--force``; written through a temporary file renamed into place.

Split from :mod:`poptune.cli` (which keeps the commands) so that each module stays small."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from poptune.exceptions import PoptuneError
from poptune.storage import Storage

__all__ = ["check_output", "write_atomically"]
_SQLITE_HEADER = b"SQLite format 3\x00"
_SQLITE_SIBLINGS = ("-wal", "-shm", "-journal")


def _sqlite_file(storage: Storage) -> Path | None:
    """The file of an SQLite storage (None for any other storage)."""
    url = getattr(storage, "url", None)
    if not isinstance(url, str) or not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _is_sqlite_database(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER
    except OSError:
        return False


def _same_file(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:  # one of them does not exist
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_output(path: Path, storage: Storage, *, force: bool) -> None:
    """Refuse an output path that would overwrite a study, or an existing file without
    ``force``; a missing directory is one clear error."""
    database = _sqlite_file(storage)
    if database is not None:
        for sibling in ("", *_SQLITE_SIBLINGS):
            if _same_file(path, Path(str(database) + sibling)):
                which = f"file ({sibling[1:]})" if sibling else "file"
                raise PoptuneError(
                    f"--output {str(path)!r} is the storage's own {which}: export never "
                    "overwrites a study"
                )
    for sibling in _SQLITE_SIBLINGS:  # the WAL of some other database
        if path.name.endswith(sibling) and _is_sqlite_database(
            path.with_name(path.name[: -len(sibling)])
        ):
            raise PoptuneError(f"--output {str(path)!r} belongs to an SQLite database: refused")
    if path.is_dir():
        raise PoptuneError(f"--output {str(path)!r} is a directory: name a file")
    if _is_sqlite_database(path):
        raise PoptuneError(
            f"--output {str(path)!r} is an SQLite database: export never overwrites one "
            "(not even with --force)"
        )
    if path.exists() and not force:
        raise PoptuneError(f"--output {str(path)!r} exists: pass --force to overwrite it")
    parent = path.parent
    if not parent.is_dir():
        raise PoptuneError(f"cannot write {str(path)!r}: no directory {str(parent)!r}")


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory, renamed
    into place: a reader (or a crash) never sees half a file."""
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
