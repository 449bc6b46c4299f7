"""Population Based Training: the algorithm, its exploit and its explore steps, PB2,
replaying a trial's hyperparameter schedule, and :func:`pbt_hook` (marks a function that a
stored configuration may name as an ``explore_fn`` or a resample distribution)."""

from poptune.algorithms.pbt.algorithm import PopulationBasedTraining
from poptune.algorithms.pbt.exploit import quantile_size, rank_members, truncation_selection
from poptune.algorithms.pbt.explore import explore
from poptune.algorithms.pbt.hooks import pbt_hook
from poptune.algorithms.pbt.pb2 import PB2
from poptune.algorithms.pbt.replay import Replay, schedule

__all__ = [
    "PB2",
    "PopulationBasedTraining",
    "Replay",
    "explore",
    "pbt_hook",
    "quantile_size",
    "rank_members",
    "schedule",
    "truncation_selection",
]
