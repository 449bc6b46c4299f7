"""Where checkpoint bytes live: a local directory or any fsspec URL (the backends of
:class:`poptune.checkpoints.CheckpointStore`; the database's is
:mod:`poptune.storage._blobs`).

A backend stores named blobs under one root and knows nothing of trials, names' validity or
formats (the store checks names before they get here, and encodes and decodes). Each one
guarantees:

* **atomic writes**: the bytes go to a temporary name first (``.<name>.<host>.<pid>.<random>
  .tmp``), which is then renamed (a local ``os.replace``; fsspec's ``mv``, on an object store a
  server-side copy, so the final key appears whole or not at all);
* **a missing blob is** ``FileNotFoundError`` from :meth:`read`;
* **temporaries are listed** with their age, for the store's orphan rule.

Options of an fsspec URL (``endpoint_url``, ``key``, ``anon``, ...) are the file system's own
keyword arguments, given as ``checkpoint_options`` or through fsspec's configuration
(``FSSPEC_S3_ENDPOINT_URL=...`` in the environment, or fsspec's config file).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

from poptune.exceptions import CheckpointError, ConfigurationError

__all__ = [
    "SPOOL_BYTES",
    "Backend",
    "FsspecBackend",
    "LocalBackend",
    "is_url",
    "pid_alive",
    "temporary_name",
    "write_file_atomically",
]

#: Bytes a blob copied from an object store or a database is kept in memory before it is
#: spilled to a temporary file.
SPOOL_BYTES = 64 * 2**20

#: Protocols whose directories must be created before a file is written in them.
_MAKES_DIRECTORIES = frozenset({"file", "local", "sftp", "ssh", "ftp", "smb", "webdav"})

Writer = Callable[[IO[bytes]], None]
#: Reads of a blob that keeps being replaced while it is read, before giving up.
_READ_ATTEMPTS = 5


def _host_id() -> str:
    """Who can tell whether a writer's pid is alive: this host name, boot and pid namespace
    (two containers with one host name but their own pids differ), as hex (no dots)."""
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass  # not Linux: the host name alone
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:12]


#: This machine (and pid namespace), in temporary names.
HOST = _host_id()


def temporary_name(name: str) -> str:
    """A fresh temporary name for a blob ``name``: ``.<name>.<host>.<pid>.<random>.tmp``."""
    return f".{name}.{HOST}.{os.getpid()}.{os.urandom(4).hex()}.tmp"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists here (someone else's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or a number we cannot ask about): keep
    return True


def is_url(location: str) -> bool:
    """Whether ``location`` names a file system by URL (``s3://...``) rather than a path."""
    return "://" in location


def spool() -> Any:
    """A binary temporary file, in memory up to :data:`SPOOL_BYTES`."""
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+b")


def write_file_atomically(target: Path, write: Writer, tmp_name: str | None = None) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``target``, flush it to disk and rename
    it over ``target`` (a reader sees the old file or the new one, never half of one)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / (tmp_name or temporary_name(target.name))
    try:
        with open(tmp, "xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


class Backend(Protocol):
    """Named blobs under one root (see the module docstring)."""

    #: The root, for messages (a path, a URL, or the database's safe URL).
    where: str

    def location(self, name: str) -> Path | str:
        """Where blob ``name`` lives: a local path, or a URL / a description."""

    def exists(self, name: str) -> bool:
        """Whether blob ``name`` is there (written whole)."""

    def write(self, name: str, tmp_name: str, write: Writer) -> None:
        """Store what ``write(fh)`` writes as blob ``name``, atomically, through the
        temporary ``tmp_name`` (:func:`temporary_name`)."""

    def read(self, name: str) -> Any:
        """A context manager giving blob ``name`` as a seekable binary file;
        FileNotFoundError when it is not there."""

    def names(self) -> list[str]:
        """The names of the blobs stored (not temporaries)."""

    def delete(self, name: str) -> bool:
        """Delete blob ``name``; whether it was there."""

    def temporaries(self) -> list[tuple[str, float | None]]:
        """Temporary names and their last modification (seconds since the epoch; None if
        unknown)."""

    def remove_temporary(self, tmp: str) -> None:
        """Delete a temporary (gone already: nothing)."""


class LocalBackend:
    """A local directory (created if needed). A name that resolves, through a symbolic link,
    outside it is refused."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._root = self.directory.resolve()
        self.where = str(self.directory)

    def location(self, name: str) -> Path:
        path = self.directory / name
        resolved = path.resolve()
        if resolved.parent != self._root:
            raise CheckpointError(
                f"checkpoint {name!r} resolves to {resolved}, outside the checkpoint directory "
                f"{self._root}; refused"
            )
        return path

    def exists(self, name: str) -> bool:
        return self.location(name).exists()

    def write(self, name: str, tmp_name: str, write: Writer) -> None:
        write_file_atomically(self.location(name), write, tmp_name)

    @contextmanager
    def read(self, name: str) -> Iterator[IO[bytes]]:
        with open(self.location(name), "rb") as fh:
            yield fh

    def names(self) -> list[str]:
        try:
            return [e.name for e in os.scandir(self.directory) if not e.name.startswith(".")]
        except FileNotFoundError:
            return []

    def delete(self, name: str) -> bool:
        path = self.directory / name
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            return False
        return True

    def temporaries(self) -> list[tuple[str, float | None]]:
        out: list[tuple[str, float | None]] = []
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return out
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file():
                try:
                    out.append((entry.name, entry.stat().st_mtime))
                except FileNotFoundError:
                    continue
        return out

    def remove_temporary(self, tmp: str) -> None:
        (self.directory / tmp).unlink(missing_ok=True)


class FsspecBackend:
    """Any fsspec file system by URL: ``s3://bucket/run``, ``gs://...``, ``memory://run``.

    ``options`` are the file system's keyword arguments (merged over fsspec's configuration).
    Listings are read afresh each time (other processes write there too). Nothing is created
    for an object store's prefix (no bucket is ever made); directory-based file systems get
    their root directory created.

    Raises:
        ConfigurationError: the protocol is unknown, or its package (``s3fs``, ``gcsfs``) is
            not installed (the message names the extra to install).
    """

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        import fsspec
        from fsspec.core import split_protocol

        protocol, _ = split_protocol(url)
        cls = self.check_protocol(url, protocol)
        try:
            self.fs = fsspec.filesystem(protocol, **dict(options or {}))
        except TypeError as exc:
            raise ConfigurationError(
                f"checkpoint_options {dict(options or {})!r} do not fit {cls.__name__}: {exc}"
            ) from None
        self.url = url.rstrip("/")
        self.root = cls._strip_protocol(url).rstrip("/")
        self.where = self.url
        if protocol in _MAKES_DIRECTORIES:
            self.fs.makedirs(self.root, exist_ok=True)

    @staticmethod
    def check_protocol(url: str, protocol: str | None) -> Any:
        """The file system class of ``url``'s protocol; ConfigurationError when fsspec, the
        protocol or its package is missing (naming the extra to install)."""
        try:
            import fsspec
        except ImportError:
            raise ConfigurationError(
                f"checkpoint_dir {url!r} is a URL, which needs fsspec: "
                'pip install "poptune[s3]" (or "poptune[gcs]")'
            ) from None
        try:
            return fsspec.get_filesystem_class(protocol)
        except ValueError:
            raise ConfigurationError(
                f"checkpoint_dir {url!r}: fsspec knows no file system {protocol!r}"
            ) from None
        except ImportError as exc:
            extra = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}.get(protocol or "")
            hint = f'pip install "poptune[{extra}]"' if extra else f"install {exc.name}"
            raise ConfigurationError(
                f"checkpoint_dir {url!r} needs a package that is not installed ({exc}): {hint}"
            ) from None

    def _key(self, name: str) -> str:
        return f"{self.root}/{name}"

    def location(self, name: str) -> str:
        return f"{self.url}/{name}"

    def _fresh(self) -> None:
        self.fs.invalidate_cache(self.root)

    def exists(self, name: str) -> bool:
        self._fresh()
        return bool(self.fs.exists(self._key(name)))

    def write(self, name: str, tmp_name: str, write: Writer) -> None:
        tmp = self._key(tmp_name)
        with spool() as fh:
            write(fh)
            fh.seek(0)
            try:
                with self.fs.open(tmp, "wb") as out:
                    shutil.copyfileobj(fh, out, 2**22)
                self.fs.mv(tmp, self._key(name))
            except BaseException:
                try:
                    self.fs.rm(tmp)
                except Exception:  # noqa: BLE001, S110 - gone or never written: nothing to do
                    pass
                raise
        self._fresh()

    @contextmanager
    def read(self, name: str) -> Iterator[IO[bytes]]:
        """A copy of the blob; one replaced while it was being read (an object store reads in
        ranges: s3fs's ``FileExpired``) is read again from the start, so the copy is one
        version."""
        self._fresh()
        with spool() as fh:
            for attempt in range(_READ_ATTEMPTS):
                fh.seek(0)
                fh.truncate()
                try:
                    with self.fs.open(self._key(name), "rb") as src:
                        shutil.copyfileobj(src, fh, 2**22)
                    break
                except OSError as exc:
                    if type(exc).__name__ != "FileExpired" or attempt == _READ_ATTEMPTS - 1:
                        raise
                    self._fresh()
            fh.seek(0)
            yield fh

    def _entries(self) -> list[dict[str, Any]]:
        self._fresh()
        try:
            return list(self.fs.ls(self.root, detail=True))
        except FileNotFoundError:
            return []

    def names(self) -> list[str]:
        names = (e["name"].rstrip("/").rsplit("/", 1)[-1] for e in self._entries())
        return [n for n in names if n and not n.startswith(".")]

    def delete(self, name: str) -> bool:
        try:
            self.fs.rm(self._key(name), recursive=True)
        except FileNotFoundError:
            return False
        finally:
            self._fresh()
        return True

    def temporaries(self) -> list[tuple[str, float | None]]:
        out: list[tuple[str, float | None]] = []
        for entry in self._entries():
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if name.startswith(".") and name.endswith(".tmp"):
                out.append((name, _modified(entry)))
        return out

    def remove_temporary(self, tmp: str) -> None:
        try:
            self.fs.rm(self._key(tmp))
        except FileNotFoundError:
            pass
        self._fresh()


def _modified(entry: Mapping[str, Any]) -> float | None:
    """The modification time of an fsspec listing entry, as seconds since the epoch."""
    for key in ("LastModified", "mtime", "updated", "created", "last_modified"):
        value = entry.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        if isinstance(value, (int, float)):
            return float(value)
        try:
            from datetime import datetime

            return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
    return None


def now() -> float:
    """The clock temporaries' ages are measured with."""
    return time.time()
