"""Checkpoints kept in the study's own database (``checkpoint_dir="database://"``): for
machines that share nothing but the database.

Two tables (schema version 3, :mod:`poptune.storage._schema`):

* ``poptune_checkpoint_chunks(upload, seq, study_id, created_at, data)``: the bytes, in
  chunks of ``chunk_bytes`` (default 4 MiB), each written in its own short transaction, so a
  large checkpoint never holds the database's write lock (SQLite) for long;
* ``poptune_checkpoints(study_id, name, upload, size, sha256, chunks, written_at)``: one row
  per *whole* checkpoint. A checkpoint exists once this row is committed, in one transaction
  after all its chunks: a reader sees the old checkpoint or the new one, never part of one.
  The chunks of the checkpoint it replaced (or of one deleted) are then deleted one chunk per
  transaction.

An upload's key is its temporary name (``.<name>.<host>.<pid>.<random>.tmp``): chunks no
row points to are an upload in progress or one whose writer died, which the store's orphan
rule removes (:meth:`DatabaseBackend.temporaries`). Reading takes one snapshot (SQLite
``BEGIN``, PostgreSQL ``REPEATABLE READ``) and checks the chunk count, the size and the
SHA-256, so a corrupt row is a ``CheckpointError``, never a silently different state.
Deleting a study deletes its checkpoints (``ON DELETE CASCADE``).

Limits: ``max_bytes`` (default 1 GiB) per checkpoint, checked before anything is written
(``CheckpointError`` naming the size and the option). This module uses only the storage's
engine, URL and ``read_only`` flag: its statements are its own.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import sqlalchemy as sa

from poptune.exceptions import CheckpointError, ConfigurationError, StorageError
from poptune.storage._schema import checkpoint_chunks as chunks_table
from poptune.storage._schema import checkpoints as heads_table

__all__ = ["DEFAULT_CHUNK_BYTES", "DEFAULT_MAX_BYTES", "DatabaseBackend"]

#: Bytes per chunk row (option ``chunk_bytes``).
DEFAULT_CHUNK_BYTES = 4 * 2**20
#: The largest checkpoint kept in the database (option ``max_bytes``): 1 GiB.
DEFAULT_MAX_BYTES = 2**30
#: PostgreSQL's bytea and SQLite's default SQLITE_MAX_LENGTH both stop near 1e9 bytes per value.
_MAX_CHUNK = 256 * 2**20

Writer = Callable[[IO[bytes]], None]


def _check_size(option: str, value: Any, default: int, low: int, high: int | None) -> int:
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ConfigurationError(
            f"checkpoint_options: {option} must be an int number of bytes ({bound}), got {value!r}"
        )
    return value


class DatabaseBackend:
    """Blobs of one study in its SQL storage (see the module docstring).

    Args:
        storage: the study's :class:`~poptune.storage.sql.SQLStorage`.
        study_id: the study.
        chunk_bytes: bytes per chunk row (default 4 MiB; 1 KiB to 256 MiB).
        max_bytes: the largest checkpoint accepted (default 1 GiB).

    Raises:
        ConfigurationError: ``storage`` is not an SQL storage (a study in memory has no
            database to keep checkpoints in), or a bad size option.
    """

    def __init__(
        self,
        storage: Any,
        study_id: int,
        *,
        chunk_bytes: int | None = None,
        max_bytes: int | None = None,
    ) -> None:
        engine = getattr(storage, "_engine", None)
        if not isinstance(engine, sa.engine.Engine):
            raise ConfigurationError(
                "checkpoint_dir='database://' keeps checkpoints in the study's database, but "
                f"this study lives in {type(storage).__name__} (memory): pass "
                "storage='sqlite:///runs.db' (or a PostgreSQL URL), or a directory or URL as "
                "checkpoint_dir"
            )
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._read_only = bool(getattr(storage, "read_only", False))
        self.study_id = int(study_id)
        self.chunk_bytes = _check_size("chunk_bytes", chunk_bytes, DEFAULT_CHUNK_BYTES, 1024,
                                       _MAX_CHUNK)  # fmt: skip
        self.max_bytes = _check_size("max_bytes", max_bytes, DEFAULT_MAX_BYTES, 1, None)
        self.where = f"the database {getattr(storage, '_where', storage)} (study id {study_id})"

    # -- transactions ---------------------------------------------------------------------------
    @contextmanager
    def _begin(self, write: bool) -> Iterator[sa.Connection]:
        if write and self._read_only:
            raise StorageError(
                f"{self.where} was opened read-only: no checkpoint can be written or deleted"
            )
        if write:
            begin = "BEGIN IMMEDIATE" if self._sqlite else "BEGIN"
        else:
            begin = "BEGIN" if self._sqlite else "BEGIN ISOLATION LEVEL REPEATABLE READ"
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql(begin)
                try:
                    yield conn
                    conn.exec_driver_sql("COMMIT")
                except BaseException:
                    try:
                        conn.exec_driver_sql("ROLLBACK")
                    except Exception:  # noqa: BLE001 - gone already; the first error matters
                        conn.invalidate()
                    raise
        except sa.exc.IntegrityError:
            raise
        except (sa.exc.DatabaseError, sa.exc.InterfaceError) as exc:
            first = str(getattr(exc, "orig", exc)).strip().splitlines()
            raise StorageError(
                f"checkpoints in {self.where}: {first[0] if first else type(exc).__name__}"
            ) from exc

    def _head(self, conn: sa.Connection, name: str) -> Any:
        h = heads_table.c
        return conn.execute(
            sa.select(h.upload, h.size, h.sha256, h.chunks).where(
                h.study_id == self.study_id, h.name == name
            )
        ).first()

    # -- the backend protocol (poptune._checkpoint_files.Backend) --------------------------------
    def location(self, name: str) -> str:
        return f"database://{self.study_id}/{name}"

    def exists(self, name: str) -> bool:
        with self._begin(write=False) as conn:
            return self._head(conn, name) is not None

    def write(self, name: str, tmp_name: str, write: Writer) -> None:
        """Spool ``write``'s bytes, check the size, insert the chunks (one transaction each)
        under the upload key ``tmp_name``, then commit the head row (see the module)."""
        if self._read_only:
            raise StorageError(f"{self.where} was opened read-only: no checkpoint can be written")
        with _spool() as fh:
            write(fh)
            size = fh.tell()
            if size > self.max_bytes:
                raise CheckpointError(
                    f"checkpoint {name!r} is {size / 2**20:.1f} MiB, more than the "
                    f"{self.max_bytes / 2**20:.1f} MiB a checkpoint kept in the database may "
                    "be: raise checkpoint_options={'max_bytes': ...} or keep checkpoints in a "
                    "directory or an object store (checkpoint_dir='s3://...')"
                )
            fh.seek(0)
            digest = hashlib.sha256()
            seq = 0
            try:
                while True:
                    data = fh.read(self.chunk_bytes)
                    if not data and seq > 0:
                        break
                    digest.update(data)
                    with self._begin(write=True) as conn:
                        conn.execute(sa.insert(chunks_table).values(
                            upload=tmp_name, seq=seq, study_id=self.study_id,
                            created_at=time.time(), data=data,
                        ))  # fmt: skip
                    seq += 1
                    if not data:
                        break
                self._commit(name, tmp_name, size, digest.hexdigest(), seq)
            except BaseException:
                try:
                    self.remove_temporary(tmp_name)
                except Exception:  # noqa: BLE001, S110 - the orphan rule removes it later
                    pass
                raise

    def _commit(self, name: str, upload: str, size: int, sha: str, n: int) -> None:
        h, c = heads_table.c, chunks_table.c
        values = {"upload": upload, "size": size, "sha256": sha, "chunks": n,
                  "written_at": time.time()}  # fmt: skip
        for attempt in range(2):
            try:
                with self._begin(write=True) as conn:
                    count = sa.select(sa.func.count()).select_from(chunks_table)
                    found = conn.execute(count.where(c.upload == upload)).scalar_one()
                    if found != n:
                        raise CheckpointError(
                            f"checkpoint {name!r}: {n - found} of its {n} chunks in {self.where} "
                            "were removed before it was committed (taken for an orphan?); "
                            "it was not written"
                        )
                    where = (h.study_id == self.study_id) & (h.name == name)
                    old = conn.execute(
                        sa.select(h.upload).where(where).with_for_update()
                    ).scalar_one_or_none()
                    if old is None:
                        conn.execute(sa.insert(heads_table).values(
                            study_id=self.study_id, name=name, **values))  # fmt: skip
                    else:
                        conn.execute(sa.update(heads_table).where(where).values(**values))
                if old is not None:
                    self._drop(old)
                return
            except sa.exc.IntegrityError:
                if attempt:  # a concurrent first write of the same name won twice
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def read(self, name: str) -> Iterator[IO[bytes]]:
        c = chunks_table.c
        with _spool() as fh:
            with self._begin(write=False) as conn:
                head = self._head(conn, name)
                if head is None:
                    raise FileNotFoundError(self.location(name))
                upload, size, sha, n = head
                digest = hashlib.sha256()
                for seq in range(n):
                    data = conn.execute(
                        sa.select(c.data).where(c.upload == upload, c.seq == seq)
                    ).scalar_one_or_none()
                    if data is None:
                        raise CheckpointError(
                            f"checkpoint {name!r} in {self.where} lacks chunk {seq} of {n}"
                        )
                    data = bytes(data)
                    digest.update(data)
                    fh.write(data)
            if fh.tell() != size or digest.hexdigest() != sha:
                raise CheckpointError(
                    f"checkpoint {name!r} in {self.where} is corrupt: {fh.tell()} bytes read, "
                    f"{size} written, or its SHA-256 differs"
                )
            fh.seek(0)
            yield fh

    def names(self) -> list[str]:
        h = heads_table.c
        with self._begin(write=False) as conn:
            rows = conn.execute(sa.select(h.name).where(h.study_id == self.study_id))
            return [r[0] for r in rows]

    def delete(self, name: str) -> bool:
        h = heads_table.c
        with self._begin(write=True) as conn:
            where = (h.study_id == self.study_id) & (h.name == name)
            old = conn.execute(sa.select(h.upload).where(where)).scalar_one_or_none()
            if old is None:
                return False
            conn.execute(sa.delete(heads_table).where(where))
        self._drop(old)
        return True

    def _drop(self, upload: str) -> None:
        """Delete the chunks of an upload no row points to any more, one chunk per
        transaction (a 1 GiB checkpoint never holds SQLite's write lock for long). A reader
        already in a snapshot that holds the old row keeps seeing them; a crash half-way
        leaves an unreferenced upload, which the orphan rule removes."""
        c = chunks_table.c
        with self._begin(write=False) as conn:
            seqs = [r[0] for r in conn.execute(sa.select(c.seq).where(c.upload == upload))]
        for seq in seqs:
            with self._begin(write=True) as conn:
                conn.execute(sa.delete(chunks_table).where(c.upload == upload, c.seq == seq))

    def temporaries(self) -> list[tuple[str, float | None]]:
        """Uploads no checkpoint row points to, with their first chunk's time."""
        h, c = heads_table.c, chunks_table.c
        referenced = sa.select(h.upload).where(h.study_id == self.study_id)
        query = (
            sa.select(c.upload, sa.func.min(c.created_at))
            .where(c.study_id == self.study_id, c.upload.not_in(referenced))
            .group_by(c.upload)
        )
        with self._begin(write=False) as conn:
            return [(r[0], float(r[1])) for r in conn.execute(query)]

    def remove_temporary(self, tmp: str) -> None:
        h, c = heads_table.c, chunks_table.c
        with self._begin(write=True) as conn:
            used = conn.execute(sa.select(h.name).where(h.upload == tmp)).first()
            if used is None:  # committed meanwhile: a checkpoint now, not a temporary
                conn.execute(sa.delete(chunks_table).where(c.upload == tmp))


def _spool() -> Any:
    """A binary temporary file, in memory up to 64 MiB."""
    return tempfile.SpooledTemporaryFile(max_size=64 * 2**20, mode="w+b")
