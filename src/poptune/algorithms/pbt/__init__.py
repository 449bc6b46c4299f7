"""Population Based Training: the algorithm, its exploit and its explore steps, PB2 and
replaying a trial's hyperparameter schedule."""

from poptune.algorithms.pbt.algorithm import PopulationBasedTraining
from poptune.algorithms.pbt.exploit import quantile_size, rank_members, truncation_selection
from poptune.algorithms.pbt.explore import explore
from poptune.algorithms.pbt.pb2 import PB2
from poptune.algorithms.pbt.replay import Replay, schedule

__all__ = [
    "PB2",
    "PopulationBasedTraining",
    "Replay",
    "explore",
    "quantile_size",
    "rank_members",
    "schedule",
    "truncation_selection",
]
