"""Checkpoints owned by the library.

When a study has a ``checkpoint_dir``, every trial knows where its weights go
(``trial.checkpoint_path``, named by ``save_to``: the trial's id) and, for a PBT trial that
continues or exploits a member, where the weights to start from are (``trial.load_path``).
``trial.save_checkpoint(obj)`` writes atomically (a temporary file, then a rename, so a reader
never sees half a file); ``trial.load_checkpoint()`` reads it back. PyTorch's ``torch.save`` is
used when PyTorch is installed (tensors and modules' ``state_dict``), ``pickle`` otherwise;
loading recognises either.

A checkpoint that should be there and is not is a :class:`~poptune.exceptions.CheckpointError`
naming the file — never a silent fresh start.

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
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from poptune.exceptions import CheckpointError
from poptune.history import History
from poptune.lineage import checkpoint_name
from poptune.storage.base import Storage
from poptune.trial import Trial

__all__ = ["CheckpointStore"]

_TORCH_MAGIC = b"PK"  # torch.save writes a zip archive


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


class CheckpointStore:
    """Paths, atomic reads and writes, and garbage collection under one directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    # -- paths ---------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """The file of checkpoint ``name`` (a trial's ``save_to``)."""
        return self.directory / name

    @staticmethod
    def name_of(trial: Trial) -> str:
        """The checkpoint name of ``trial`` (:func:`poptune.lineage.checkpoint_name`)."""
        return checkpoint_name(trial)

    def save_path(self, trial: Trial) -> Path:
        return self.path(self.name_of(trial))

    def load_path(self, trial: Trial) -> Path | None:
        """Where ``trial`` starts from: None for a fresh model.

        Raises:
            CheckpointError: the trial should start from a checkpoint that does not exist.
        """
        load_from = trial.load_from
        if not load_from:
            return None
        path = self.path(load_from)
        if not path.exists():
            raise CheckpointError(
                f"trial {trial.id} starts from checkpoint {load_from!r}, but {path} does not "
                "exist (was it saved with trial.save_checkpoint or to trial.checkpoint_path?)"
            )
        return path

    # -- reading and writing -------------------------------------------------------------
    def save(self, trial: Trial, obj: Any) -> Path:
        """Write ``obj`` as ``trial``'s checkpoint, atomically; return the path."""
        target = self.save_path(trial)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                torch = _torch()
                if torch is not None:
                    torch.save(obj, fh)
                else:
                    pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return target

    def load(self, trial: Trial, weights_only: bool = False) -> Any:
        """Read the checkpoint ``trial`` starts from (None for a fresh model).

        Raises:
            CheckpointError: the file is missing or cannot be read.
        """
        path = self.load_path(trial)
        if path is None:
            return None
        try:
            with open(path, "rb") as fh:
                head = fh.read(2)
                fh.seek(0)
                if head == _TORCH_MAGIC:
                    torch = _torch()
                    if torch is None:
                        raise CheckpointError(f"{path} was written by torch.save; install torch")
                    return torch.load(fh, weights_only=weights_only)
                return pickle.load(fh)
        except CheckpointError:
            raise
        except Exception as exc:  # noqa: BLE001 - any reader failure means a corrupt file
            raise CheckpointError(
                f"checkpoint {path} of trial {trial.load_from} cannot be read: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

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
