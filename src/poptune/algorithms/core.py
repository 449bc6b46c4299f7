"""SHERPA's ``sherpa.algorithms.core``: the algorithms and stopping rules SHERPA defined there,
for scripts that import them from this path. The same classes as :mod:`poptune.algorithms`."""

from poptune.algorithms.base import Algorithm
from poptune.algorithms.chain import Chain
from poptune.algorithms.genetic import Genetic
from poptune.algorithms.grid_search import GridSearch
from poptune.algorithms.iterate import Iterate
from poptune.algorithms.local_search import LocalSearch
from poptune.algorithms.pbt import PopulationBasedTraining
from poptune.algorithms.random_search import RandomSearch
from poptune.algorithms.repeat import Repeat
from poptune.stopping import MedianStoppingRule, StoppingRule

__all__ = [
    "Algorithm",
    "Chain",
    "Genetic",
    "GridSearch",
    "Iterate",
    "LocalSearch",
    "MedianStoppingRule",
    "PopulationBasedTraining",
    "RandomSearch",
    "Repeat",
    "StoppingRule",
]
