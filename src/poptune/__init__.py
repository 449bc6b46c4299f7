"""poptune: Population Based Training and hyperparameter optimization.

A SHERPA script runs unchanged with ``import poptune as sherpa``::

    import poptune as sherpa

    parameters = [sherpa.Continuous("learning_rate", [1e-4, 1e-2], "log")]
    algorithm = sherpa.algorithms.PopulationBasedTraining(num_generations=5, population_size=5)
    study = sherpa.Study(parameters, algorithm, lower_is_better=False, seed=0)
    for trial in study:
        ...  # train from trial.load_from, save to trial.save_to
        study.add_observation(trial, objective=accuracy, iteration=trial.generation)
        study.finalize(trial)
    print(study.get_best_result())

The library logs through the ``poptune`` logger and never configures logging itself: without
a logging configuration, Python shows its warnings on stderr; configure logging (or
``logging.getLogger("poptune")``) to see its INFO messages or to silence it.
"""

from poptune import (  # SHERPA's sherpa.core / sherpa.database paths
    algorithms,
    core,
    database,
    schedulers,
)
from poptune._rng import rng
from poptune._sherpa_alias import install_sherpa_alias
from poptune._version import __version__
from poptune.algorithms import StoppingRule
from poptune.exceptions import (
    ArgumentTypeError,
    CheckpointError,
    ConfigurationError,
    DuplicateIterationError,
    InvalidObservationError,
    InvalidParameterError,
    InvalidStatusError,
    NoObservationsError,
    PoptuneError,
    ReadOnlyStudyError,
    StorageError,
    StudyMismatchError,
    StudyNotFoundError,
    TrialFinishedError,
    UnknownTrialError,
)
from poptune.execution.client import Client
from poptune.execution.jobs import optimize
from poptune.history import History
from poptune.parameters import Choice, Continuous, Discrete, Ordinal, Parameter
from poptune.storage import MemoryStorage, Storage
from poptune.study import Study, load_study
from poptune.trial import AlgorithmState, Observation, Trial, TrialStatus

__all__ = [
    "AlgorithmState",
    "ArgumentTypeError",
    "CheckpointError",
    "Choice",
    "Client",
    "ConfigurationError",
    "Continuous",
    "Discrete",
    "DuplicateIterationError",
    "History",
    "InvalidObservationError",
    "InvalidParameterError",
    "InvalidStatusError",
    "MemoryStorage",
    "NoObservationsError",
    "Observation",
    "Ordinal",
    "Parameter",
    "PoptuneError",
    "ReadOnlyStudyError",
    "StoppingRule",
    "Storage",
    "StorageError",
    "Study",
    "StudyMismatchError",
    "StudyNotFoundError",
    "Trial",
    "TrialFinishedError",
    "TrialStatus",
    "UnknownTrialError",
    "__version__",
    "algorithms",
    "core",
    "database",
    "install_sherpa_alias",
    "load_study",
    "optimize",
    "rng",
    "schedulers",
]
