"""Search algorithms. ``poptune.algorithms.X`` mirrors ``sherpa.algorithms.X``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poptune.algorithms import bayesian_optimization, core
    from poptune.algorithms.base import Algorithm, Suggestion, algorithm_from_config
    from poptune.algorithms.bayesian import BayesianOptimization, GPyOpt
    from poptune.algorithms.chain import Chain
    from poptune.algorithms.genetic import Genetic
    from poptune.algorithms.grid_search import GridSearch
    from poptune.algorithms.hyperband import Hyperband
    from poptune.algorithms.iterate import Iterate
    from poptune.algorithms.local_search import LocalSearch
    from poptune.algorithms.pbt import PB2, PopulationBasedTraining, Replay
    from poptune.algorithms.random_search import RandomSearch
    from poptune.algorithms.repeat import Repeat
    from poptune.algorithms.successive_halving import SuccessiveHalving
    from poptune.algorithms.tpe import TPE
    from poptune.stopping import MedianStoppingRule, StoppingRule

#: Where each public name lives: it is imported on first use (a study that runs random search
#: never imports the Gaussian processes, TPE or PBT; ``docs/topics/memory-floor.md``).
_WHERE = {
    "Algorithm": "poptune.algorithms.base",
    "BayesianOptimization": "poptune.algorithms.bayesian",
    "Chain": "poptune.algorithms.chain",
    "GPyOpt": "poptune.algorithms.bayesian",
    "Genetic": "poptune.algorithms.genetic",
    "GridSearch": "poptune.algorithms.grid_search",
    "Hyperband": "poptune.algorithms.hyperband",
    "Iterate": "poptune.algorithms.iterate",
    "LocalSearch": "poptune.algorithms.local_search",
    "MedianStoppingRule": "poptune.stopping",
    "PB2": "poptune.algorithms.pbt",
    "PopulationBasedTraining": "poptune.algorithms.pbt",
    "RandomSearch": "poptune.algorithms.random_search",
    "Repeat": "poptune.algorithms.repeat",
    "Replay": "poptune.algorithms.pbt",
    "StoppingRule": "poptune.stopping",
    "SuccessiveHalving": "poptune.algorithms.successive_halving",
    "Suggestion": "poptune.algorithms.base",
    "TPE": "poptune.algorithms.tpe",
    "algorithm_from_config": "poptune.algorithms.base",
}
_MODULES = ("bayesian_optimization", "core")  # SHERPA's module paths


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"poptune.algorithms.{name}")
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'poptune.algorithms' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Algorithm",
    "BayesianOptimization",
    "Chain",
    "GPyOpt",
    "Genetic",
    "GridSearch",
    "Hyperband",
    "Iterate",
    "LocalSearch",
    "MedianStoppingRule",
    "PB2",
    "PopulationBasedTraining",
    "RandomSearch",
    "Repeat",
    "Replay",
    "StoppingRule",
    "SuccessiveHalving",
    "Suggestion",
    "TPE",
    "algorithm_from_config",
    "bayesian_optimization",
    "core",
]
