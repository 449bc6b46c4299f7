"""Checkpoints owned by the library.

When a study has a ``checkpoint_dir``, every trial knows where its weights go
(``trial.checkpoint_path``, named by ``save_to``: the trial's id) and, for a PBT trial that
continues or exploits a member, where the weights to start from are (``trial.load_path``).
``trial.save_checkpoint(obj)`` writes atomically (a temporary file, then a rename, so a reader
never sees half a file); ``trial.load_checkpoint()`` reads it back.

**Names are names.** ``load_from`` and ``save_to`` come from algorithms, from
``study.add_trial`` and from rows of a database anyone with write access to it may have
crafted. A name is one file name directly inside the directory
(:func:`poptune._validation.checkpoint_name_problem`: no ``/`` or ``\\``, no ``..``, no NUL,
not absolute, not empty); :meth:`CheckpointStore.path` refuses any other with a
:class:`~poptune.exceptions.CheckpointError` naming it, and checks that the resolved path
(symbolic links followed) is inside the directory. The worker loop checks a trial's names
before it runs the objective (:func:`check_trial_names`), so a crafted row fails its trial
and touches no file.

**Checkpoints are not code.** By default checkpoints are written in a format whose reader
cannot run code (:mod:`poptune._checkpoint_format`: JSON plus numpy ``.npy`` arrays plus
tensors read with ``torch.load(weights_only=True)``), which holds PyTorch ``state_dict`` s,
dicts and lists of numpy arrays, numbers and str; PyTorch files written by the user are read
with ``weights_only=True``. A pickle, which runs its writer's code when read, is written and
read only with ``allow_pickle=True`` (on the Study, or this store): otherwise saving an object
the format cannot hold, or loading a pickle, raises a ``CheckpointError`` that names the
option, and the file is never unpickled.

A checkpoint that should be there and is not is a :class:`~poptune.exceptions.CheckpointError`
naming the file — never a silent fresh start.

**Orphaned temporary files.** A writer killed mid-write leaves its temporary file
(``.<name>.<host>.<pid>.<random>.tmp``). Opening the store and each garbage collection remove
those whose writer is gone: on this machine (same host name, boot and pid namespace), a file
whose process no longer exists; from another machine or container (or an older poptune), one
not modified for ``orphan_age`` seconds (default one hour). A live writer's file is never
removed on its own machine.

**Where.** ``checkpoint_dir`` is a local directory, any fsspec URL (``s3://bucket/run``,
``gs://bucket/run``, ``memory://run``; options such as ``endpoint_url`` and credentials in
``checkpoint_options`` or fsspec's own configuration) or ``"database://"`` (the study's own
SQLite or PostgreSQL database, :mod:`poptune.storage._blobs`). The bytes are handled by a
backend (:mod:`poptune._checkpoint_files`); every rule here holds for each: names checked,
atomic writes through a temporary name, a missing checkpoint an error, orphans and garbage
collection. For a URL or the database, ``trial.checkpoint_path`` / ``load_path`` are location
strings, not local files: write with ``trial.save_checkpoint`` (or the torch integration).

Garbage collection (``keep_checkpoints=N``): after each finalize
(:meth:`CheckpointStore.collect_after_finalize`), inside the study lock, files
that nothing needs are deleted. Needed: the latest completed segment of every population
member (a possible donor), the checkpoint every queued or running trial starts from, the
checkpoint a running trial is writing, the checkpoints the algorithm has already planned to
load (PBT's next generation), and the ``N`` best completed trials' checkpoints.
"""

from __future__ import annotations

import heapq
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

import poptune._checkpoint_format as _checkpoint_format
from poptune._checkpoint_files import (
    HOST,
    Backend,
    FsspecBackend,
    LocalBackend,
    is_url,
    now,
    pid_alive,
    temporary_name,
)
from poptune._validation import check_bool, checkpoint_fields_problem, checkpoint_name_problem
from poptune.exceptions import CheckpointError, ConfigurationError, InvalidParameterError
from poptune.history import History
from poptune.lineage import checkpoint_name
from poptune.storage.base import Storage
from poptune.trial import Trial

__all__ = [
    "IN_DATABASE",
    "CheckpointStore",
    "check_location",
    "check_parameter_names",
    "check_trial_names",
    "location_of",
    "read_checkpoint",
]

#: ``checkpoint_dir=IN_DATABASE`` keeps the checkpoints in the study's own database.
IN_DATABASE = "database://"
#: The options of ``checkpoint_dir="database://"``.
_DATABASE_OPTIONS = ("chunk_bytes", "max_bytes")

_T = TypeVar("_T")


def location_of(value: str | os.PathLike[str]) -> Path | str:
    """A ``checkpoint_dir`` as the store keeps it: a :class:`~pathlib.Path` for a local
    directory (a ``file://`` URL included), the string itself for another URL
    (``s3://bucket/run``, ``memory://run``) and for :data:`IN_DATABASE`."""
    text = os.fspath(value)
    if not isinstance(text, str):
        raise ConfigurationError(f"checkpoint_dir must be a str or a path, got {value!r}")
    if text.startswith("file://"):
        return Path(text[len("file://") :])
    if text.rstrip("/") == IN_DATABASE.rstrip("/"):
        return IN_DATABASE
    return text if is_url(text) else Path(text)


def check_location(
    value: str | os.PathLike[str] | None,
    options: Mapping[str, Any] | None,
    storage: Storage | None,
) -> Any:
    """:func:`location_of` (None for None), checked where a Study is made: a URL's file
    system is known and installed, options are a dict with str keys that fit the location,
    and :data:`IN_DATABASE` has a database to live in. Raises ConfigurationError."""
    if value is None:
        return None
    location = location_of(value)
    if options is not None and (
        not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options)
    ):
        raise ConfigurationError(
            f"checkpoint_options must be a dict of str keys (the file system's keyword "
            f"arguments), got {options!r}"
        )
    if location == IN_DATABASE:
        _database_options(options)
        if storage is not None:
            from poptune.storage._blobs import DatabaseBackend

            DatabaseBackend(storage, 0)  # raises when the study has no database
    elif isinstance(location, Path):
        if options:
            raise ConfigurationError(
                f"checkpoint_options {dict(options)!r} apply to a URL or 'database://'; "
                f"checkpoint_dir {str(location)!r} is a local directory"
            )
    else:
        from fsspec.core import split_protocol

        protocol = split_protocol(location)[0]
        FsspecBackend.check_protocol(location, protocol)
    return location


def _database_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    unknown = sorted(set(options or {}) - set(_DATABASE_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"checkpoint_options for 'database://' are {', '.join(_DATABASE_OPTIONS)}; got "
            f"{unknown[0]!r}"
        )
    return dict(options or {})


def check_trial_names(trial: Trial) -> None:
    """Raise :class:`~poptune.exceptions.CheckpointError` naming the field and the value when
    ``trial``'s ``load_from`` or ``save_to`` is not a checkpoint name (a row read from storage
    is checked here, when it is about to be run)."""
    problem = checkpoint_fields_problem(trial.parameters)
    if problem is not None:
        raise CheckpointError(f"trial {trial.id}: {problem}")


def check_parameter_names(
    parameters: Mapping[str, Any], owner: str, error: type[Exception] = InvalidParameterError
) -> None:
    """Raise ``error`` (``owner: load_from '../x' is not a checkpoint name: ...``) when a new
    trial's ``load_from`` or ``save_to`` is not a checkpoint name: how ``add_trial`` and the
    algorithms' suggestions are checked where they enter."""
    problem = checkpoint_fields_problem(parameters)
    if problem is not None:
        raise error(f"{owner}: {problem}")


def read_checkpoint(
    path: str | os.PathLike[str],
    *,
    allow_pickle: bool = False,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """Read a checkpoint written by :meth:`CheckpointStore.save` (or ``torch.save``), e.g.
    the best trial's, after a study: ``read_checkpoint(study.best_checkpoint())``, or
    ``read_checkpoint('s3://bucket/run/17', options={...})`` (``options``: the file system's,
    as ``checkpoint_options``). A checkpoint kept in the database is read with
    ``study.checkpoints.read('17')``.

    Raises:
        CheckpointError: missing, unreadable, or a pickle without ``allow_pickle=True``.
    """
    location = location_of(path)
    if location == IN_DATABASE or str(location).startswith(IN_DATABASE):
        raise CheckpointError(
            f"{str(path)!r}: a checkpoint kept in the database is read through its study: "
            "study.checkpoints.read(name)"
        )
    if isinstance(location, Path):
        if not location.is_file():
            raise CheckpointError(f"checkpoint {location} does not exist")
        return _read(lambda: _opened(location), str(location), allow_pickle)
    parent, _, name = location.rstrip("/").rpartition("/")
    backend = FsspecBackend(parent, options)
    return _read(lambda: backend.read(name), location, allow_pickle)


def _opened(path: Path) -> Any:
    return open(path, "rb")


def _read(
    opener: Callable[[], Any],
    where: str,
    allow_pickle: bool,
    missing: Callable[[], CheckpointError] | None = None,
) -> Any:
    """Read poptune's format (or a PyTorch file, or an allowed pickle) from ``opener()``;
    every failure is a CheckpointError naming ``where`` (``missing()`` when it is not there)."""
    try:
        with opener() as fh:
            return _checkpoint_format.read(fh, allow_pickle, where)
    except CheckpointError:
        raise
    except FileNotFoundError:
        if missing is not None:
            raise missing() from None
        raise CheckpointError(f"checkpoint {where} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure means a corrupt file
        raise CheckpointError(
            f"checkpoint {where} cannot be read: {type(exc).__name__}: {exc}"
        ) from exc


class CheckpointStore:
    """Names, atomic reads and writes, orphans and garbage collection of one study's
    checkpoints, wherever they live.

    Args:
        directory: where: a local directory (created if needed; ``file://`` URLs too), an
            fsspec URL (``s3://bucket/run``, ``gs://bucket/run``, ``memory://run``) or
            ``"database://"`` (:data:`IN_DATABASE`: the study's SQL database, which needs
            ``storage`` and ``study_id``).
        allow_pickle: also write objects the pickle-free format cannot hold (with
            ``torch.save`` when PyTorch is installed, else ``pickle``) and read pickles and
            full PyTorch files. Default False: reading a pickle runs code its writer chose,
            so only allow it for a directory (and a database) that only you can write.
        orphan_age: seconds after which a temporary file from another machine (or one whose
            writer cannot be told) is taken as orphaned and removed. Default 3600.
        options: for a URL, the file system's keyword arguments (``endpoint_url``, ``key``,
            ``secret``, ``anon``, ...; fsspec's own configuration applies too); for the
            database, ``chunk_bytes`` (default 4 MiB) and ``max_bytes`` (default 1 GiB).
            Never stored with the study (they may hold credentials).
        storage, study_id: the study's storage and id, for ``"database://"``.

    Raises:
        ConfigurationError: a bad ``allow_pickle``, ``orphan_age`` or option; an unknown or
            not installed fsspec protocol; ``"database://"`` without an SQL storage.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        allow_pickle: bool = False,
        orphan_age: float = 3600.0,
        options: Mapping[str, Any] | None = None,
        storage: Storage | None = None,
        study_id: int | None = None,
    ) -> None:
        self.allow_pickle = check_bool("CheckpointStore", "allow_pickle", allow_pickle)
        if isinstance(orphan_age, bool) or not isinstance(orphan_age, (int, float)):
            raise ConfigurationError(
                f"CheckpointStore: orphan_age must be a number of seconds, got {orphan_age!r}"
            )
        if not orphan_age > 0:
            raise ConfigurationError(
                f"CheckpointStore: orphan_age must be > 0 seconds, got {orphan_age!r}"
            )
        self.orphan_age = float(orphan_age)
        location = check_location(directory, options, None)
        #: The local directory (a Path), or the URL / ``"database://"`` (a str).
        self.directory: Path | str = location
        self._backend: Backend
        #: Whether deletions wait until the study's transaction has committed (the database:
        #: SQLite has one writer at a time, and that transaction is it).
        self._delete_after_commit = False
        if location == IN_DATABASE:
            from poptune.storage._blobs import DatabaseBackend

            if storage is None or study_id is None:
                raise ConfigurationError(
                    "CheckpointStore('database://') needs the study's storage and study_id"
                )
            self._backend = DatabaseBackend(storage, study_id, **_database_options(options))
            self._delete_after_commit = True
        elif isinstance(location, Path):
            self._backend = LocalBackend(location)
        else:
            self._backend = FsspecBackend(location, options)
        if not getattr(self._backend, "_read_only", False):
            self.remove_orphans()

    def __repr__(self) -> str:
        return f"CheckpointStore({str(self.directory)!r})"

    # -- paths ---------------------------------------------------------------------------------
    def path(self, name: str) -> Path | str:
        """Where checkpoint ``name`` (a trial's ``save_to``) lives: a local Path, or for a URL
        or the database a location string (``s3://bucket/run/17``, ``database://3/17``) that
        only this store reads and writes.

        Raises:
            CheckpointError: ``name`` is not a checkpoint name, or resolves (through a
                symbolic link) outside the directory.
        """
        problem = checkpoint_name_problem(name)
        if problem is not None:
            raise CheckpointError(f"checkpoint name {name!r} is refused: {problem}")
        return self._backend.location(str(name))

    @staticmethod
    def name_of(trial: Trial) -> str:
        """The checkpoint name of ``trial`` (:func:`poptune.lineage.checkpoint_name`)."""
        return checkpoint_name(trial)

    def save_path(self, trial: Trial) -> Path | str:
        """Where ``trial`` saves. Raises CheckpointError (a bad ``save_to``)."""
        try:
            return self.path(self.name_of(trial))
        except CheckpointError as exc:
            raise CheckpointError(f"trial {trial.id}: save_to: {exc}") from None

    def _load_name(self, trial: Trial) -> str | None:
        load_from = trial.load_from
        if load_from is None or load_from == "":
            return None
        try:
            self.path(load_from)
        except CheckpointError as exc:
            raise CheckpointError(f"trial {trial.id}: load_from: {exc}") from None
        return str(load_from)

    def _missing(self, trial: Trial, name: str) -> CheckpointError:
        return CheckpointError(
            f"trial {trial.id} starts from checkpoint {name!r}, but {self.path(name)} does not "
            "exist (was it saved with trial.save_checkpoint or to trial.checkpoint_path?)"
        )

    def load_path(self, trial: Trial) -> Path | str | None:
        """Where ``trial`` starts from: None for a fresh model.

        Raises:
            CheckpointError: the trial should start from a checkpoint that does not exist,
                or its ``load_from`` is not a checkpoint name.
        """
        name = self._load_name(trial)
        if name is None:
            return None
        if not self._backend.exists(name):
            raise self._missing(trial, name)
        return self.path(name)

    # -- reading and writing -------------------------------------------------------------
    def save_with(self, trial: Trial, write: Callable[[IO[bytes]], None]) -> Path | str:
        """Store whatever ``write(fh)`` writes to the binary file ``fh`` as ``trial``'s
        checkpoint, atomically (how :mod:`poptune.integrations.torch` saves with
        ``torch.save``); return its location. Raises CheckpointError (a bad ``save_to``)."""
        target = self.save_path(trial)
        name = self.name_of(trial)
        self._backend.write(name, temporary_name(name), write)
        return target

    def load_with(self, trial: Trial, read: Callable[[IO[bytes]], _T]) -> _T | None:
        """``read(fh)`` on the checkpoint ``trial`` starts from (a seekable binary file), or
        None for a fresh model. The caller's reader decides what may be unpickled.

        Raises:
            CheckpointError: missing (never a silent fresh start), or a bad ``load_from``.
        """
        name = self._load_name(trial)
        if name is None:
            return None
        try:
            with self._backend.read(name) as fh:
                return read(fh)
        except FileNotFoundError:
            raise self._missing(trial, name) from None

    def read_with(self, name: str, read: Callable[[IO[bytes]], _T]) -> _T:
        """``read(fh)`` on stored checkpoint ``name`` (a seekable binary file): a checkpoint
        in a framework's own format, e.g. the best trial's Keras model after the study.

        Raises:
            CheckpointError: a bad name, or no such checkpoint.
        """
        where = self.path(name)
        try:
            with self._backend.read(str(name)) as fh:
                return read(fh)
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {where} does not exist") from None

    def save(self, trial: Trial, obj: Any) -> Path | str:
        """Write ``obj`` as ``trial``'s checkpoint, atomically; return its location.

        Raises:
            CheckpointError: a bad ``save_to``, or ``obj`` holds something the pickle-free
                format cannot store (the message says what and where) and ``allow_pickle``
                is False.
        """
        self.save_path(trial)  # a bad name: refused before anything is encoded
        try:
            encoded: Any = _checkpoint_format.encode(obj)
        except _checkpoint_format.UnsupportedValue as exc:
            if not self.allow_pickle:
                raise _checkpoint_format.UnsupportedValue(
                    f"trial {trial.id}: cannot save the checkpoint without pickle: {exc}; "
                    "convert it to tensors, arrays and plain containers (e.g. a state_dict), "
                    f"or {_checkpoint_format.PICKLE_HINT}"
                ) from None
            encoded = None

        def write(fh: IO[bytes]) -> None:
            if encoded is not None:
                _checkpoint_format.write(fh, encoded)
            else:
                _pickle(obj, fh)

        return self.save_with(trial, write)

    def load(self, trial: Trial, weights_only: bool | None = None) -> Any:
        """Read the checkpoint ``trial`` starts from (None for a fresh model).

        ``weights_only``: None (default) reads pickles only when the store allows them;
        True never does; False insists on a full read, which needs ``allow_pickle``.

        Raises:
            CheckpointError: the checkpoint is missing, cannot be read, or needs pickle and
                pickle is not allowed (it is not unpickled); ``weights_only=False`` without
                ``allow_pickle``.
        """
        if weights_only is False and not self.allow_pickle:
            raise CheckpointError(
                f"trial {trial.id}: load_checkpoint(weights_only=False) unpickles the file: "
                f"{_checkpoint_format.PICKLE_HINT}"
            )
        name = self._load_name(trial)
        if name is None:
            return None
        allow = self.allow_pickle and weights_only is not True
        where = f"{self.path(name)} of trial {trial.load_from}"
        missing = lambda: self._missing(trial, name)  # noqa: E731
        return _read(lambda: self._backend.read(name), where, allow, missing)

    def read(self, name: str, *, allow_pickle: bool | None = None) -> Any:
        """Read checkpoint ``name`` (e.g. the best trial's id, after the study); pickles only
        with ``allow_pickle`` (default: the store's).

        Raises:
            CheckpointError: a bad name, missing, unreadable or a pickle not allowed.
        """
        where = self.path(name)
        allow = self.allow_pickle if allow_pickle is None else bool(allow_pickle)
        return _read(lambda: self._backend.read(str(name)), str(where), allow)

    def exists(self, name: str) -> bool:
        """Whether checkpoint ``name`` is stored (whole). Raises CheckpointError (bad name)."""
        self.path(name)
        return self._backend.exists(str(name))

    def names(self) -> list[str]:
        """The names of the checkpoints stored (temporary files excluded), sorted."""
        return sorted(self._backend.names())

    # -- orphaned temporary files -------------------------------------------------------
    def remove_orphans(self) -> list[str]:
        """Delete the temporary files whose writer is gone (see the module docstring);
        return their names. Never one of a live process on this machine."""
        removed = []
        clock = now()
        for name, modified in self._backend.temporaries():
            parts = name[: -len(".tmp")].rsplit(".", 3)
            if len(parts) == 4 and parts[1] == HOST and parts[2].isdigit():
                if pid_alive(int(parts[2])):
                    continue
            elif modified is None or clock - modified < self.orphan_age:
                continue
            self._backend.remove_temporary(name)
            removed.append(name)
        return removed

    # -- garbage collection ------------------------------------------------------------------
    def needed(self, history: History, keep_best: int, pending: set[str]) -> set[str]:
        """Checkpoint names that must be kept (see the module docstring); ``pending`` are
        those the algorithm's planned but not yet created trials will load."""
        keep: set[str] = set(pending)
        latest: dict[Any, Trial] = {}
        for trial in history.completed:
            member = trial.member
            if member is not None and (member not in latest or trial.id > latest[member].id):
                latest[member] = trial
        keep.update(self.name_of(t) for t in latest.values())
        for trial in history.unfinished:
            keep.add(self.name_of(trial))
            if trial.load_from:
                keep.add(trial.load_from)
        if keep_best > 0:
            lower = history.lower_is_better
            scored = []
            for t in history.completed:
                obs = t.best_observation(lower)
                if obs is not None:
                    scored.append((obs.objective if lower else -obs.objective, t.id, t))
            keep.update(self.name_of(t) for _, _, t in heapq.nsmallest(keep_best, scored))
        return keep

    def unneeded(self, history: History, keep_best: int, pending: set[str]) -> list[str]:
        """The stored checkpoints :meth:`collect` deletes: named after a finished trial of
        this study and not :meth:`needed`."""
        keep = self.needed(history, keep_best, pending)
        doomed = []
        for name in sorted(self._backend.names()):
            if name in keep or not name.isdigit():
                continue
            trial = history.get(int(name))
            if trial is not None and trial.is_finished:
                doomed.append(name)
        return doomed

    def _delete(self, names: list[str]) -> list[str]:
        self.remove_orphans()
        return [name for name in names if self._backend.delete(name)]

    def collect(self, history: History, keep_best: int, pending: set[str]) -> list[str]:
        """Delete the checkpoints nothing needs; return the deleted names.

        Only checkpoints named after a finished trial of this study are considered; anything
        else there is left alone.
        """
        return self._delete(self.unneeded(history, keep_best, pending))

    def collect_after_finalize(
        self,
        storage: Storage,
        study_id: int,
        history: History,
        keep_best: int,
        pending_of: Callable[[History], set[str]],
    ) -> list[str]:
        """The GC's trigger, run after each finalize (``keep_checkpoints=keep_best``): in one
        storage transaction (the study's lock), sync ``history``, give it the algorithm's
        state, ask ``pending_of(history)`` (the algorithm's ``pending_checkpoints``) and
        :meth:`collect`. The caller holds the lock that guards ``history``. Checkpoints in
        the database are deleted just after that transaction commits (what to delete was
        decided under the lock: finished trials' checkpoints nothing needs or plans to)."""
        with storage.transaction(study_id):
            history.sync(storage, study_id)
            history.state = storage.get_algorithm_state(study_id)
            doomed = self.unneeded(history, keep_best, pending_of(history))
            if not self._delete_after_commit:
                return self._delete(doomed)
        return self._delete(doomed)


def _pickle(obj: Any, fh: Any) -> None:
    """Write ``obj`` with pickle (``torch.save`` when PyTorch is installed): allow_pickle."""
    torch = _checkpoint_format.loaded_torch()
    if torch is None:
        try:
            import torch
        except ImportError:
            torch = None
    if torch is not None:
        torch.save(obj, fh)
    else:
        pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
