"""Configs of LocalSearch, Genetic, SuccessiveHalving, Hyperband, Repeat and Chain, nested."""

import pytest

from poptune import ConfigurationError
from poptune.algorithms.base import algorithm_from_config
from poptune.algorithms.chain import Chain
from poptune.algorithms.genetic import Genetic
from poptune.algorithms.grid_search import GridSearch
from poptune.algorithms.hyperband import Hyperband
from poptune.algorithms.iterate import Iterate
from poptune.algorithms.local_search import LocalSearch
from poptune.algorithms.random_search import RandomSearch
from poptune.algorithms.repeat import Repeat
from poptune.algorithms.successive_halving import SuccessiveHalving


@pytest.mark.parametrize(
    "algo",
    [
        LocalSearch({"x": 0.5, "c": "a"}, (0.5, 2), repeat_trials=2),
        Genetic(0.25, 30),
        SuccessiveHalving(r=2, R=50, eta=4, s=1, max_finished_configs=7),
        Hyperband(r=1, R=81, eta=3, max_finished_configs=5),
        Repeat(GridSearch(3), 2, wait_for_completion=True, agg=True),
        Chain([Iterate([{"x": 0.1}]), Repeat(Chain([RandomSearch(3), Genetic()]), 3)]),
    ],
)
def test_config_round_trip(algo):
    config = algo.to_config()
    again = algorithm_from_config(config)
    assert type(again) is type(algo) and again.to_config() == config


def test_nested_configs_are_rebuilt():
    config = Chain([Repeat(LocalSearch({"x": 0.5}), 2), SuccessiveHalving()]).to_config()
    assert config["algorithms"][0]["algorithm"]["type"] == "LocalSearch"
    again = algorithm_from_config(config)
    assert isinstance(again.algorithms[0].algorithm, LocalSearch)
    assert again.reserved_keys == SuccessiveHalving.reserved_keys
    with pytest.raises(ConfigurationError, match="config without 'algorithm'"):
        algorithm_from_config({"type": "Repeat", "num_times": 2})
    with pytest.raises(ConfigurationError, match="unknown type 'Nope'"):
        algorithm_from_config({"type": "Chain", "algorithms": [{"type": "Nope"}]})
