"""SQLite: a holder of the database's write lock that stopped answering, found and ended.

SQLite has no server that could abort a frozen writer's transaction: the write lock is a
POSIX ``fcntl`` lock of the holder's process, and only that process can give it up — or the
operating system, when the process dies (SQLite then ignores the dead writer's uncommitted
WAL frames, or rolls back its hot journal). So a waiting worker whose wait for the lock timed
out (``busy_timeout``) calls :meth:`FrozenWriters.check`, which (on Linux):

1. reads ``/proc/locks`` for the process holding the write lock of this database file: in WAL
   mode an exclusive lock on byte 120 of the ``-shm`` file (``WAL_WRITE_LOCK``), in
   rollback-journal mode the ``RESERVED`` byte of the database file (matched by device and
   inode);
2. reads its state and CPU time (``/proc/<pid>/stat``): a holder that is stopped (``T``,
   ``t``) or has used less than 1% of a CPU, while it held the lock, for longer than
   ``stall_timeout`` seconds has stopped answering (as seen from the first wait that timed
   out: the bound counts from there);
3. ends it with ``SIGKILL`` if it is a poptune process of this database on this machine —
   the same user, and it holds the *marker*: a shared ``fcntl`` lock on the file
   ``<database>-poptune`` that every poptune storage writing to this database takes when it
   opens it (the operating system drops it when the process dies; the last storage closed
   removes the file) — logging one warning
   naming the pid. A holder that is not poptune's (an ``sqlite3`` shell, another program) is
   never signalled: :class:`~poptune.exceptions.StorageError` names its pid instead.

The killed worker's trial keeps its old heartbeat and is reaped as lost by the others
(the study package's liveness module), then retried or replaced as usual. Where ``/proc/locks`` is
not available (not Linux) nothing is checked and the others wait for the holder to resume.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from poptune.exceptions import StorageError

try:
    import fcntl
except ImportError:  # Windows: no POSIX locks to look at, no marker to take
    fcntl = None  # type: ignore[assignment]

__all__ = ["MARKER_SUFFIX", "FrozenWriters", "mark", "unmark", "write_lock_holder"]

logger = logging.getLogger("poptune")

#: The marker file next to the database that poptune's writers hold a shared lock on.
MARKER_SUFFIX = "-poptune"
#: WAL mode: the writer's exclusive lock, byte 120 of ``-shm`` (SQLite's ``UNIX_SHM_BASE``).
_SHM_WRITE_BYTE = 120
#: Rollback-journal mode: the ``RESERVED`` lock byte of the database file.
_RESERVED_BYTE = 0x40000001
_PROC_LOCKS = "/proc/locks"

# The marker files this process holds, by database path (kept open for its lifetime: closing
# any descriptor of a file drops all of this process's locks on it).
_markers: dict[str, list[int]] = {}  # database: [descriptor, holds]
_markers_lock = threading.Lock()


class _Lock(NamedTuple):
    pid: int
    write: bool
    file: tuple[int, int, int]  # major, minor, inode
    start: int
    end: int  # inclusive; EOF means to the end of the file


def _file_id(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return os.major(st.st_dev), os.minor(st.st_dev), st.st_ino


def _posix_locks() -> list[_Lock] | None:
    """The granted POSIX locks of this machine, or None where ``/proc/locks`` is missing."""
    try:
        text = Path(_PROC_LOCKS).read_text()
    except OSError:
        return None
    locks = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8 or fields[1] != "POSIX":  # '->' lines are waiters, not holders
            continue
        try:
            major, minor, inode = fields[5].split(":")
            end = -1 if fields[7] == "EOF" else int(fields[7])
            locks.append(_Lock(int(fields[4]), fields[3] == "WRITE",
                               (int(major, 16), int(minor, 16), int(inode)),
                               int(fields[6]), end))  # fmt: skip
        except ValueError:
            continue
    return locks


def _covers(lock: _Lock, byte: int) -> bool:
    return lock.start <= byte and (lock.end < 0 or byte <= lock.end)


def write_lock_holder(database: str, locks: list[_Lock] | None = None) -> int | None:
    """The pid of the process holding the write lock of the SQLite file ``database`` (0 for
    one outside this process's pid namespace), or None: nobody, or not knowable here."""
    locks = _posix_locks() if locks is None else locks
    if not locks:
        return None
    shm, db = _file_id(database + "-shm"), _file_id(database)
    for lock in locks:
        if lock.write and (
            (lock.file == shm and _covers(lock, _SHM_WRITE_BYTE))
            or (lock.file == db and _covers(lock, _RESERVED_BYTE))
        ):
            return max(lock.pid, 0)
    return None


def _stat(pid: int) -> tuple[str, int] | None:
    """Process ``pid``'s state letter and CPU time (clock ticks), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return fields[0], int(fields[11]) + int(fields[12])  # state, utime + stime


def _holds_marker(pid: int, database: str, locks: list[_Lock]) -> bool:
    marker = _file_id(database + MARKER_SUFFIX)
    return marker is not None and any(k.pid == pid and k.file == marker for k in locks)


def _same_user(pid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}").st_uid == os.getuid()
    except OSError:
        return False


class _Seen(NamedTuple):
    pid: int
    cpu: int  # its CPU time (clock ticks) when last looked at
    at: float  # time.monotonic() when last looked at
    since: float  # time.monotonic() since which it holds the lock without using the CPU


#: A holder using less than this share of one CPU between two looks makes no progress (a
#: process whose main thread hangs while a helper thread wakes now and then).
_IDLE_CPU_SHARE = 0.01
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


class FrozenWriters:
    """One SQLite storage's watch over the holder of its database's write lock.

    Args:
        database: the database file's path.
        stall_timeout: seconds a holder may hold the lock while stopped or without using any
            CPU time before it counts as frozen.
    """

    def __init__(self, database: str, stall_timeout: float) -> None:
        self.database = str(Path(database).resolve())
        self.stall_timeout = stall_timeout
        self._lock = threading.Lock()
        self._seen: _Seen | None = None
        self._held = False
        self.hold()

    def hold(self) -> None:
        """Hold the database's marker (idempotent): when it opens a connection."""
        with self._lock:
            if not self._held:
                mark(self.database)
                self._held = True

    def release(self) -> None:
        """Let go of the marker (idempotent): when its storage is closed."""
        with self._lock:
            if self._held:
                unmark(self.database)
                self._held = False

    close = release

    def around(self, setup: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        """A new connection's ``setup`` (its pragmas), the marker held again first: a storage
        used after ``close()`` holds it again."""

        def hold_then_setup(dbapi_connection: Any, record: Any) -> None:
            self.hold()
            setup(dbapi_connection, record)

        return hold_then_setup

    def check(self) -> None:
        """Called after a wait for the write lock timed out: end the holder if it is a
        poptune process that has stopped answering for longer than ``stall_timeout``.

        Raises:
            StorageError: the frozen holder is not a poptune process of this database of
                this user (it is never signalled); the message names its pid.
        """
        locks = _posix_locks()
        if not locks:
            return
        pid = write_lock_holder(self.database, locks)
        stat = _stat(pid) if pid else None
        now = time.monotonic()
        with self._lock:
            seen = self._seen
            if pid is None or pid == os.getpid() or stat is None:
                self._seen = None  # free, held by this process, or gone meanwhile
                return
            if seen is None or seen.pid != pid:
                self._seen = _Seen(pid, stat[1], now, now)
                return
            used = (stat[1] - seen.cpu) * _TICK_S
            since = now if used > _IDLE_CPU_SHARE * (now - seen.at) else seen.since
            self._seen = seen = _Seen(pid, stat[1], now, since)
            if now - since <= self.stall_timeout:
                return
            self._seen = None
        state = "stopped" if stat[0] in ("T", "t") else "using under 1% of a CPU"
        stalled = (
            f"process {pid} holds the write lock of {self.database} and has been {state} "
            f"for {now - seen.since:.1f} s (stall_timeout {self.stall_timeout:g} s)"
        )
        if not (_same_user(pid) and _holds_marker(pid, self.database, locks)):
            raise StorageError(
                f"{stalled}; it is not a poptune worker of this database of this user, so "
                f"poptune will not end it: resume it (kill -CONT {pid}) or end it"
            )
        if write_lock_holder(self.database) != pid:  # it let go meanwhile
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        logger.warning(
            "poptune: %s; it is a poptune worker, so it was ended (SIGKILL) to release the "
            "lock: its trial will be reaped as lost",
            stalled,
        )


def _take(path: str) -> int | None:
    """An open descriptor of the marker file ``path`` with this process's shared lock on it,
    or None (it cannot be created or locked). The lock is on the file the path names now:
    one that a last holder removed meanwhile is opened again."""
    for _ in range(5):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            return None
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 0)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except OSError:  # a last holder removing it holds it exclusively: try again
            pass
        os.close(fd)
        time.sleep(0.01)
    return None


def mark(database: str) -> None:
    """Hold ``database``'s marker (counted: once per process and database however many
    storages hold it; quietly nothing where the file cannot be created)."""
    with _markers_lock:
        if fcntl is None:
            return
        held = _markers.get(database)
        if held is not None:
            held[1] += 1
            return
        fd = _take(database + MARKER_SUFFIX)
        if fd is not None:
            _markers[database] = [fd, 1]


def unmark(database: str) -> None:
    """Let go of one hold of ``database``'s marker; the last one of this process drops its
    lock, and removes the file when no other process holds it (a database closed cleanly
    leaves no marker behind)."""
    with _markers_lock:
        held = _markers.get(database)
        if held is None:
            return
        held[1] -= 1
        if held[1] > 0:
            return
        fd = held[0]
        del _markers[database]
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)  # nobody else holds it
            os.unlink(database + MARKER_SUFFIX)
        except OSError:
            pass
        os.close(fd)


def _after_fork() -> None:
    # fcntl locks are not inherited: a forked child takes its own markers.
    global _markers_lock  # noqa: PLW0603 - the parent's lock may have been held at the fork
    _markers_lock = threading.Lock()
    held = {database: count for database, (_, count) in _markers.items()}
    for fd, _ in _markers.values():
        os.close(fd)
    _markers.clear()
    for database, count in held.items():
        fd = _take(database + MARKER_SUFFIX)
        if fd is not None:
            _markers[database] = [fd, count]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
