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

Garbage collection (``keep_checkpoints=N``): after each finalize
(:meth:`CheckpointStore.collect_after_finalize`), inside the study lock, files
that nothing needs are deleted. Needed: the latest completed segment of every population
member (a possible donor), the checkpoint every queued or running trial starts from, the
checkpoint a running trial is writing, the checkpoints the algorithm has already planned to
load (PBT's next generation), and the ``N`` best completed trials' checkpoints.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import pickle
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import poptune._checkpoint_format as _checkpoint_format
from poptune._validation import check_bool, checkpoint_fields_problem, checkpoint_name_problem
from poptune.exceptions import CheckpointError, ConfigurationError, InvalidParameterError
from poptune.history import History
from poptune.lineage import checkpoint_name
from poptune.storage.base import Storage
from poptune.trial import Trial

__all__ = ["CheckpointStore", "check_parameter_names", "check_trial_names", "read_checkpoint"]


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


#: This machine (and pid namespace), in temporary file names.
_HOST = _host_id()


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


def read_checkpoint(path: str | os.PathLike[str], *, allow_pickle: bool = False) -> Any:
    """Read a checkpoint file written by :meth:`CheckpointStore.save` (or ``torch.save``),
    e.g. the best trial's, after a study: ``read_checkpoint(study.best_checkpoint())``.

    Raises:
        CheckpointError: missing, unreadable, or a pickle without ``allow_pickle=True``.
    """
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"checkpoint {file} does not exist")
    try:
        return _checkpoint_format.read(file, allow_pickle)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure means a corrupt file
        raise CheckpointError(
            f"checkpoint {file} cannot be read: {type(exc).__name__}: {exc}"
        ) from exc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or a number we cannot ask about): keep
    return True


class CheckpointStore:
    """Paths, atomic reads and writes, and garbage collection under one directory.

    Args:
        directory: the checkpoint directory (created if needed).
        allow_pickle: also write objects the pickle-free format cannot hold (with
            ``torch.save`` when PyTorch is installed, else ``pickle``) and read pickles and
            full PyTorch files. Default False: reading a pickle runs code its writer chose,
            so only allow it for a directory (and a database) that only you can write.
        orphan_age: seconds after which a temporary file from another machine (or one whose
            writer cannot be told) is taken as orphaned and removed. Default 3600.

    Raises:
        ConfigurationError: a bad ``allow_pickle`` or ``orphan_age``.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        allow_pickle: bool = False,
        orphan_age: float = 3600.0,
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
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._root = self.directory.resolve()
        self.remove_orphans()

    # -- paths ---------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """The file of checkpoint ``name`` (a trial's ``save_to``).

        Raises:
            CheckpointError: ``name`` is not a checkpoint name, or resolves (through a
                symbolic link) outside the directory.
        """
        problem = checkpoint_name_problem(name)
        if problem is not None:
            raise CheckpointError(f"checkpoint name {name!r} is refused: {problem}")
        path = self.directory / str(name)
        resolved = path.resolve()
        if resolved.parent != self._root:
            raise CheckpointError(
                f"checkpoint {name!r} resolves to {resolved}, outside the checkpoint directory "
                f"{self._root}; refused"
            )
        return path

    @staticmethod
    def name_of(trial: Trial) -> str:
        """The checkpoint name of ``trial`` (:func:`poptune.lineage.checkpoint_name`)."""
        return checkpoint_name(trial)

    def save_path(self, trial: Trial) -> Path:
        """Where ``trial`` saves. Raises CheckpointError (a bad ``save_to``)."""
        try:
            return self.path(self.name_of(trial))
        except CheckpointError as exc:
            raise CheckpointError(f"trial {trial.id}: save_to: {exc}") from None

    def load_path(self, trial: Trial) -> Path | None:
        """Where ``trial`` starts from: None for a fresh model.

        Raises:
            CheckpointError: the trial should start from a checkpoint that does not exist,
                or its ``load_from`` is not a checkpoint name.
        """
        load_from = trial.load_from
        if load_from is None or load_from == "":
            return None
        try:
            path = self.path(load_from)
        except CheckpointError as exc:
            raise CheckpointError(f"trial {trial.id}: load_from: {exc}") from None
        if not path.exists():
            raise CheckpointError(
                f"trial {trial.id} starts from checkpoint {load_from!r}, but {path} does not "
                "exist (was it saved with trial.save_checkpoint or to trial.checkpoint_path?)"
            )
        return path

    # -- reading and writing -------------------------------------------------------------
    def save(self, trial: Trial, obj: Any) -> Path:
        """Write ``obj`` as ``trial``'s checkpoint, atomically; return the path.

        Raises:
            CheckpointError: a bad ``save_to``, or ``obj`` holds something the pickle-free
                format cannot store (the message says what and where) and ``allow_pickle``
                is False.
        """
        target = self.save_path(trial)
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
        prefix = f".{target.name}.{_HOST}.{os.getpid()}."
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=prefix, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                if encoded is not None:
                    _checkpoint_format.write(fh, encoded)
                else:
                    _pickle(obj, fh)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return target

    def load(self, trial: Trial, weights_only: bool | None = None) -> Any:
        """Read the checkpoint ``trial`` starts from (None for a fresh model).

        ``weights_only``: None (default) reads pickles only when the store allows them;
        True never does; False insists on a full read, which needs ``allow_pickle``.

        Raises:
            CheckpointError: the file is missing, cannot be read, or needs pickle and pickle
                is not allowed (it is not unpickled); ``weights_only=False`` without
                ``allow_pickle``.
        """
        if weights_only is False and not self.allow_pickle:
            raise CheckpointError(
                f"trial {trial.id}: load_checkpoint(weights_only=False) unpickles the file: "
                f"{_checkpoint_format.PICKLE_HINT}"
            )
        path = self.load_path(trial)
        if path is None:
            return None
        allow = self.allow_pickle and weights_only is not True
        try:
            return _checkpoint_format.read(path, allow)
        except CheckpointError:
            raise
        except Exception as exc:  # noqa: BLE001 - any reader failure means a corrupt file
            raise CheckpointError(
                f"checkpoint {path} of trial {trial.load_from} cannot be read: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    # -- orphaned temporary files -------------------------------------------------------
    def remove_orphans(self) -> list[str]:
        """Delete the temporary files whose writer is gone (see the module docstring);
        return their names. Never one of a live process on this machine."""
        removed = []
        now = time.time()
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return removed
        for entry in entries:
            name = entry.name
            if not (name.startswith(".") and name.endswith(".tmp")) or not entry.is_file():
                continue
            parts = name[: -len(".tmp")].rsplit(".", 3)
            if len(parts) == 4 and parts[1] == _HOST and parts[2].isdigit():
                if _pid_alive(int(parts[2])):
                    continue
            else:
                try:
                    if now - entry.stat().st_mtime < self.orphan_age:
                        continue
                except FileNotFoundError:
                    continue
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
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

    def collect(self, history: History, keep_best: int, pending: set[str]) -> list[str]:
        """Delete the checkpoints nothing needs; return the deleted names.

        Only files named after a finished trial of this study are considered; anything else in
        the directory is left alone.
        """
        keep = self.needed(history, keep_best, pending)
        self.remove_orphans()
        deleted = []
        for entry in self.directory.iterdir():
            name = entry.name
            if name in keep or not name.isdigit():
                continue
            trial = history.get(int(name))
            if trial is None or not trial.is_finished:
                continue
            try:
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except FileNotFoundError:
                continue
            deleted.append(name)
        return deleted

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
        :meth:`collect`. The caller holds the lock that guards ``history``."""
        with storage.transaction(study_id):
            history.sync(storage, study_id)
            history.state = storage.get_algorithm_state(study_id)
            return self.collect(history, keep_best, pending_of(history))


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
