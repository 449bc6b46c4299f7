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

import typing

from poptune._version import __version__
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

# Everything else is imported when first used (PEP 562), so `import poptune` costs little more
# than numpy: a spawned worker, a CLI call or a script that needs one algorithm does not pay for
# the whole package. The names are the same objects as in their modules.
_LAZY = {
    "AlgorithmState": "poptune.trial",
    "Choice": "poptune.parameters",
    "Client": "poptune.execution.client",
    "Continuous": "poptune.parameters",
    "Discrete": "poptune.parameters",
    "History": "poptune.history",
    "MemoryStorage": "poptune.storage",
    "Observation": "poptune.trial",
    "Ordinal": "poptune.parameters",
    "Parameter": "poptune.parameters",
    "StoppingRule": "poptune.stopping",
    "Storage": "poptune.storage",
    "Study": "poptune.study",
    "StudyCallback": "poptune.study.callbacks",
    "Trial": "poptune.trial",
    "TrialStatus": "poptune.trial",
    "load_study": "poptune.study",
    "optimize": "poptune.execution.jobs",
    "rng": "poptune._rng",
    "install_sherpa_alias": "poptune._sherpa_alias",
}
_SUBMODULES = ("algorithms", "core", "database", "schedulers")  # SHERPA's paths too

if typing.TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from poptune import algorithms, core, database, schedulers
    from poptune._rng import rng
    from poptune._sherpa_alias import install_sherpa_alias
    from poptune.execution.client import Client
    from poptune.execution.jobs import optimize
    from poptune.history import History
    from poptune.parameters import Choice, Continuous, Discrete, Ordinal, Parameter
    from poptune.stopping import StoppingRule
    from poptune.storage import MemoryStorage, Storage
    from poptune.study import Study, load_study
    from poptune.study.callbacks import StudyCallback
    from poptune.trial import AlgorithmState, Observation, Trial, TrialStatus


def __getattr__(name: str) -> typing.Any:
    import importlib

    if name in _SUBMODULES:
        value: typing.Any = importlib.import_module(f"poptune.{name}")
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'poptune' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
    "StudyCallback",
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
