"""Where studies live.

* :class:`MemoryStorage` — this process only (the default for a study without ``storage=``);
* :class:`~poptune.storage.sql.SQLStorage` — an SQLite file (``sqlite:///runs.db``, the
  embedded default whenever a study must survive the process or be shared by processes on
  one machine) or a PostgreSQL database (``postgresql://user@host/db``, many machines).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from poptune.exceptions import ConfigurationError
from poptune.storage.base import Storage
from poptune.storage.memory import MemoryStorage

if TYPE_CHECKING:
    from poptune.storage.sql import SQLStorage

__all__ = ["MemoryStorage", "SQLStorage", "Storage", "get_storage"]

_CACHE: dict[tuple[str, int], Storage] = {}
_CACHE_LOCK = threading.Lock()


def get_storage(storage: Storage | str | None) -> Storage:
    """Resolve the ``storage=`` argument of :class:`~poptune.Study`.

    ``None`` and ``"memory"`` give a new :class:`MemoryStorage`; a :class:`Storage` instance
    is used as it is; a database URL (``sqlite:///file.db``, ``postgresql://...``) gives the
    process's :class:`~poptune.storage.sql.SQLStorage` for that URL (one per URL and process,
    so studies in one process share its connections and its synced view).

    Raises:
        ConfigurationError: any other value, or a URL poptune cannot use.
        StorageError: the database cannot be reached.
    """
    if storage is None or storage == "memory":
        return MemoryStorage()
    if isinstance(storage, Storage):
        return storage
    if isinstance(storage, (str, os.PathLike)):
        url = os.fspath(storage)
        if "://" not in url:
            raise ConfigurationError(
                f"unknown storage {url!r}: expected 'memory', sqlite:///file.db or "
                "postgresql://user@host/database"
            )
        key = (url, os.getpid())
        with _CACHE_LOCK:
            cached = _CACHE.get(key)
            if cached is None:
                from poptune.storage.sql import SQLStorage

                cached = _CACHE[key] = SQLStorage(url)
            return cached
    raise ConfigurationError(
        f"unknown storage {storage!r}: expected None, 'memory', a database URL or a "
        "poptune.storage.Storage"
    )


def __getattr__(name: str) -> object:
    if name == "SQLStorage":
        from poptune.storage.sql import SQLStorage

        return SQLStorage
    raise AttributeError(name)
