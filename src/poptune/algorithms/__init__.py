"""Search algorithms. ``poptune.algorithms.X`` mirrors ``sherpa.algorithms.X``."""

from poptune.algorithms import bayesian_optimization, core  # SHERPA's module paths
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
