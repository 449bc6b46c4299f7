"""Where studies live.

* :class:`MemoryStorage` — this process only (the default for a study without ``storage=``);
* :class:`~poptune.storage.sql.SQLStorage` — an SQLite file (``sqlite:///runs.db``, the
  embedded default whenever a study must survive the process or be shared by processes on
  one machine) or a PostgreSQL database (``postgresql://user@host/db``, many machines).

:func:`resolve` is the one reader of a *storage spec* (what ``Study(storage=...)``, the
``poptune`` command, the dashboard and ``poptune.optimize`` accept); :func:`copy_study`
copies a study with its trials and algorithm state from one storage into another.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poptune.exceptions import ArgumentTypeError, ConfigurationError, StorageError
from poptune.storage.base import Storage
from poptune.storage.memory import MemoryStorage
from poptune.trial import Trial

if TYPE_CHECKING:
    from poptune.storage.sql import SQLStorage

__all__ = ["MemoryStorage", "SQLStorage", "Storage", "copy_study", "get_storage", "resolve"]

_CACHE: dict[tuple[str, int, bool], Storage] = {}
_CACHE_LOCK = threading.Lock()
_SQLITE = "sqlite:///"
_EXPECTED = (
    "expected 'memory', sqlite:///file.db, the path of an SQLite file or "
    "postgresql://user@host/database"
)


def sqlite_file(spec: str) -> Path | None:
    """The file an SQLite storage spec names: a path (no ``://``) as it is, an ``sqlite:///``
    URL without its ``?options``; None for any other spec (PostgreSQL, ``sqlite://`` in
    memory). Only reads the text: the file need not exist."""
    if "://" not in spec:
        return Path(spec)
    if spec.startswith(_SQLITE):
        return Path(spec[len(_SQLITE) :].split("?", 1)[0])
    return None


def resolve(
    spec: Storage | str | os.PathLike[str] | None,
    *,
    must_exist: bool = False,
    read_only: bool = False,
) -> Storage:
    """The storage a *storage spec* names; the one parser of every ``storage`` argument.

    ============================== ==========================================================
    ``None`` or ``"memory"``       a new :class:`MemoryStorage`
    a :class:`Storage`             itself
    a URL (``sqlite:///f.db``,     the process's :class:`~poptune.storage.sql.SQLStorage`
    ``postgresql://...``)          for that URL (one per URL and process, so studies in one
                                   process share its connections and its synced view)
    the path of an existing file   that file as an SQLite database
    ============================== ==========================================================

    ``postgres://`` (and ``postgres+DRIVER://``) is read as ``postgresql://``
    (``postgresql+DRIVER://``), naming the same storage.

    A directory written by ``Study.save`` is not a storage: open it with ``Study.load``.

    Args:
        spec: the spec.
        must_exist: never create a database: an SQLite URL or path must name an existing
            file (what the ``poptune`` command and the dashboard opener want).
        read_only: open a database URL or file for reading only (``load_study``, the
            ``poptune`` read commands, the dashboard): nothing is created, migrated or
            written (see :class:`~poptune.storage.sql.SQLStorage`'s ``read_only``); a
            storage object is returned as it is.

    Raises:
        StorageError: ``must_exist`` and there is no SQLite file there; the database cannot
            be reached (one short error naming the URL without its password and the driver's
            first line; the driver's error is its ``cause`` attribute).
        ConfigurationError: anything else, naming the spec.
    """
    if spec is None or (isinstance(spec, str) and spec == "memory"):
        return MemoryStorage()
    if isinstance(spec, Storage):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        # The "unknown storage <spec>" wording of every spec that is not understood; a TypeError.
        raise ArgumentTypeError(
            f"unknown storage {spec!r}: expected None, 'memory', a database URL, the path of "
            "an SQLite file or a poptune.storage.Storage"
        )
    url = os.fspath(spec)
    if "://" not in url:
        path = Path(url)
        if path.is_file():
            url = f"{_SQLITE}{path.resolve()}"
        elif must_exist:
            raise StorageError(f"no SQLite database file at {url!r}")
        elif path.is_dir():
            raise ConfigurationError(
                f"storage {url!r} is a directory; a study saved there opens with Study.load"
            )
        else:
            raise ConfigurationError(f"unknown storage {url!r}: {_EXPECTED}")
    else:
        from poptune.storage._connect import canonical_url  # sqlalchemy once a URL is used

        url = canonical_url(url)  # postgres:// and postgresql:// name one storage
    file = sqlite_file(url) if must_exist else None  # without ?lock_timeout=... options
    if file is not None and not file.is_file():
        raise StorageError(f"no SQLite database file at {str(file)!r}")
    key = (url, os.getpid(), read_only)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is None:
            from poptune.storage.sql import SQLStorage  # sqlalchemy only once a URL is used

            cached = _CACHE[key] = SQLStorage(url, read_only=read_only)
        return cached


def get_storage(storage: Storage | str | None) -> Storage:
    """Resolve the ``storage=`` argument of :class:`~poptune.Study`: :func:`resolve`.

    Raises:
        ConfigurationError: a value :func:`resolve` does not accept, or a URL poptune cannot
            use.
        StorageError: the database cannot be reached.
    """
    return resolve(storage)


def copy_study(
    src: Storage,
    study_id: int,
    dst: Storage | str,
    *,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
) -> int:
    """Copy a study (configuration, every trial with its observations, the algorithm's state)
    from ``src`` into ``dst``; return its id in ``dst``.

    Args:
        src: the storage the study is in.
        study_id: its id there.
        dst: the storage (or a spec :func:`resolve` accepts) to copy it into.
        name: its name in ``dst``; default its name in ``src``.
        config: the configuration to store; default the one stored in ``src``.

    Raises:
        StudyMismatchError: ``dst`` already holds a study of that name.
        StorageError: a value cannot be stored in ``dst`` (e.g. not JSON for a database).
    """
    target = resolve(dst)
    with src.transaction(study_id):
        if name is None:
            name = next(n for n in src.list_studies() if src.get_study_id(n) == study_id)
        if config is None:
            config = src.get_study_config(study_id)
        changed, _version = src.changes_since(study_id, 0)
        trials = sorted(changed, key=lambda t: t.id)
        state = src.get_algorithm_state(study_id)
    new_id = target.create_study(name, config)
    with target.transaction(new_id):
        for trial in trials:
            target.insert_trial(new_id, Trial.from_dict(trial.to_dict()))
        target.set_algorithm_state(new_id, state)
    return new_id


def __getattr__(name: str) -> object:
    if name == "SQLStorage":
        from poptune.storage.sql import SQLStorage

        return SQLStorage
    raise AttributeError(name)
