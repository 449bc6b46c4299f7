"""Where studies live: :class:`MemoryStorage` now; SQL storages share the same contract."""

from __future__ import annotations

from poptune.exceptions import ConfigurationError
from poptune.storage.base import Storage
from poptune.storage.memory import MemoryStorage

__all__ = ["MemoryStorage", "Storage", "get_storage"]


def get_storage(storage: Storage | str | None) -> Storage:
    """Resolve the ``storage=`` argument of :class:`~poptune.Study`.

    ``None`` and ``"memory"`` give a new :class:`MemoryStorage`; a :class:`Storage` instance
    is used as it is.

    Raises:
        ConfigurationError: any other value.
    """
    if storage is None or storage == "memory":
        return MemoryStorage()
    if isinstance(storage, Storage):
        return storage
    raise ConfigurationError(
        f"unknown storage {storage!r}: expected None, 'memory' or a poptune.storage.Storage"
    )
