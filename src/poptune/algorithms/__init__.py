"""Search algorithms. ``poptune.algorithms.X`` mirrors ``sherpa.algorithms.X``."""

from poptune.algorithms.base import Algorithm, Suggestion, algorithm_from_config
from poptune.algorithms.grid_search import GridSearch
from poptune.algorithms.iterate import Iterate
from poptune.algorithms.pbt import PopulationBasedTraining
from poptune.algorithms.random_search import RandomSearch
from poptune.stopping import StoppingRule

__all__ = [
    "Algorithm",
    "GridSearch",
    "Iterate",
    "PopulationBasedTraining",
    "RandomSearch",
    "StoppingRule",
    "Suggestion",
    "algorithm_from_config",
]
