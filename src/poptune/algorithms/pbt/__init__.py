"""Population Based Training: the algorithm, its exploit and its explore steps."""

from poptune.algorithms.pbt.algorithm import PopulationBasedTraining
from poptune.algorithms.pbt.exploit import quantile_size, rank_members, truncation_selection
from poptune.algorithms.pbt.explore import explore

__all__ = [
    "PopulationBasedTraining",
    "explore",
    "quantile_size",
    "rank_members",
    "truncation_selection",
]
