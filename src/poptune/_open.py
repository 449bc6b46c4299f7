"""Opening a stored study: read-only for analysis, or joined by a worker from its config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from poptune._config import object_from_config
from poptune.algorithms.base import Algorithm, algorithm_from_config
from poptune.exceptions import ConfigurationError, ReadOnlyStudyError
from poptune.history import History
from poptune.parameters import Parameter
from poptune.stopping import StoppingRule
from poptune.storage import Storage, get_storage
from poptune.study import Study
from poptune.trial import AlgorithmState

__all__ = ["join_study", "load_study"]


class _StoredAlgorithm(Algorithm):
    """Stands in for an algorithm that cannot be rebuilt here (a read-only study needs none)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._stored = dict(config)

    def to_config(self) -> dict[str, Any]:
        return dict(self._stored)

    def suggest(self, history: History, rng: np.random.Generator) -> AlgorithmState:
        raise ReadOnlyStudyError("this study's algorithm is not available in this process")


def load_study(storage: Storage | str, study_name: str) -> Study:
    """Open a stored study read-only, for analysis (results, best result, trials).

    Args:
        storage: a database URL (``sqlite:///runs.db``, ``postgresql://...``) or a storage.
        study_name: the study's name.

    Raises:
        StudyNotFoundError: no study of that name in the storage.
        StorageError, ConfigurationError: the storage cannot be opened.
    """
    store = get_storage(storage)
    config = store.get_study_config(store.get_study_id(study_name))
    parameters = [Parameter.from_dict(d) for d in config["parameters"]]
    try:
        algorithm: Algorithm = algorithm_from_config(config["algorithm"])
    except ConfigurationError:  # e.g. a custom algorithm that is not importable here
        algorithm = _StoredAlgorithm(config["algorithm"])
    study = Study(
        parameters,
        algorithm,
        config["lower_is_better"],
        storage=store,
        study_name=study_name,
    )
    study._read_only = True
    return study


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
    store = get_storage(storage)
    config = store.get_study_config(store.get_study_id(study_name))
    stopping = config.get("stopping_rule")
    return Study(
        [Parameter.from_dict(d) for d in config["parameters"]],
        algorithm_from_config(config["algorithm"]),
        config["lower_is_better"],
        stopping_rule=object_from_config(stopping, {}, StoppingRule) if stopping else None,
        storage=store,
        study_name=study_name,
        **options,
    )
