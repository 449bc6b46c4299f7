"""The package's functions that open a stored study by name: :func:`load_study` (read-only),
:func:`join_study` (as a worker) and :func:`run_worker` (join, then run trials here)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from poptune.storage import Storage
from poptune.study import _open, _worker
from poptune.study.study import Study
from poptune.trial import Trial

__all__ = ["join_study", "load_study", "run_worker"]


def load_study(
    storage: Storage | str,
    study_name: str,
    *,
    checkpoint_dir: str | os.PathLike[str] | None = None,
) -> Study:
    """Open a stored study read-only, for analysis (results, best result, trials).

    Args:
        storage: a database URL (``sqlite:///runs.db``, ``postgresql://...``) or a storage.
        study_name: the study's name.
        checkpoint_dir: the ``checkpoint_dir`` the study ran with: then its trials'
            ``checkpoint_path`` and ``load_checkpoint()``, and ``best_checkpoint()``, work.

    Raises:
        StudyNotFoundError: no study of that name in the storage.
        StorageError, ConfigurationError: the storage cannot be opened.
    """
    return _open.read_only(Study, storage, study_name, checkpoint_dir)


def join_study(storage: Storage | str, study_name: str, **options: Any) -> Study:
    """Join a stored study as a worker, rebuilding it from its stored configuration.

    The parameters, algorithm, direction, seed and stopping rule come from the storage; the
    algorithm (and stopping rule) class must be importable in this process. ``options`` are
    this worker's own :class:`~poptune.Study` keyword arguments (``checkpoint_dir``,
    ``heartbeat_interval``, ``grace_period``, ``retry_failed_trials``, ``keep_checkpoints``).

    Raises:
        StudyNotFoundError: no such study.
        ConfigurationError: the algorithm cannot be rebuilt here.
    """
    return _open.join(Study, storage, study_name, **options)


def run_worker(
    storage: Storage | str,
    study_name: str,
    objective: Callable[[Trial], Any],
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    **options: Any,
) -> int:
    """Join a stored study and run ``objective`` on its trials here (``poptune worker``).

    Args:
        storage, study_name, options: as for :func:`join_study`.
        objective: as for :meth:`Study.optimize`.
        n_trials: stop once the study has this many more trials than when this worker joined.
        timeout: seconds after which no new trial is started.

    Returns:
        How many trials this worker ran.
    """
    study = join_study(storage, study_name, **options)
    max_trial_id = None if n_trials is None else study.history.n_trials + n_trials
    return _worker.run_worker(study, objective, max_trial_id, _worker.deadline_in(timeout))
