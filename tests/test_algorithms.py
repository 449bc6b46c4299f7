import itertools

import numpy as np
import pytest

from poptune import (
    AlgorithmState,
    Choice,
    ConfigurationError,
    Continuous,
    Discrete,
    Ordinal,
    Study,
    algorithms,
)
from poptune.algorithms import algorithm_from_config


def drain(study, objective=lambda t: 0.0):
    trials = []
    for trial in study:
        study.add_observation(trial, objective(trial))
        study.finalize(trial)
        trials.append(trial)
    return trials


# -- RandomSearch --------------------------------------------------------------------------
def test_random_search_stops_after_max_and_samples_each_type():
    params = [
        Continuous("x", [0, 1]),
        Discrete("n", [1, 3]),
        Choice("c", ["a", "b"]),
        Ordinal("o", [1, 2, 4]),
    ]
    trials = drain(Study(params, algorithms.RandomSearch(200), True, seed=1))
    assert len(trials) == 200
    assert {t.parameters["n"] for t in trials} == {1, 2, 3}
    assert {t.parameters["c"] for t in trials} == {"a", "b"}
    assert {t.parameters["o"] for t in trials} == {1, 2, 4}
    xs = [t.parameters["x"] for t in trials]
    assert len(set(xs)) == 200 and 0 <= min(xs) and max(xs) <= 1


def test_random_search_unbounded_keeps_going():
    study = Study([Continuous("x", [0, 1])], algorithms.RandomSearch(), True, seed=0)
    for _ in range(50):
        trial = study.get_suggestion()
        study.add_observation(trial, 1.0)
        study.finalize(trial)
    assert len(study.trials) == 50


@pytest.mark.parametrize("bad", [0, -1, 2.5, "10", True])
def test_random_search_rejects_bad_max(bad):
    with pytest.raises(ConfigurationError, match="max_num_trials must be an int >= 1"):
        algorithms.RandomSearch(bad)


# -- GridSearch ----------------------------------------------------------------------------
def test_grid_search_covers_the_product_with_ends_included():
    params = [
        Continuous("lr", [1e-4, 1e-2], "log"),
        Continuous("m", [0.0, 1.0]),
        Discrete("n", [1, 10]),
        Choice("act", ["relu", "tanh"]),
    ]
    trials = drain(Study(params, algorithms.GridSearch(num_grid_points=3), True, seed=0))
    lrs = sorted({t.parameters["lr"] for t in trials})
    assert np.allclose(lrs, [1e-4, 1e-3, 1e-2])  # log-spaced
    assert sorted({t.parameters["m"] for t in trials}) == [0.0, 0.5, 1.0]
    assert sorted({t.parameters["n"] for t in trials}) == [1, 6, 10]  # 5.5 rounds to 6
    combos = [(t.parameters["lr"], t.parameters["m"], t.parameters["n"], t.parameters["act"])
              for t in trials]  # fmt: skip
    assert len(trials) == 3 * 3 * 3 * 2 == len(set(combos))
    # the last parameter varies fastest, like itertools.product
    assert [t.parameters["act"] for t in trials[:4]] == ["relu", "tanh", "relu", "tanh"]


def test_grid_search_deduplicates_integer_points_and_is_done_after():
    study = Study([Discrete("n", [1, 2])], algorithms.GridSearch(num_grid_points=5), True)
    assert [t.parameters["n"] for t in drain(study)] == [1, 2]
    assert study.get_suggestion() is AlgorithmState.DONE


def test_grid_search_huge_grid_is_not_materialized():
    params = [Discrete(f"p{i}", [0, 9]) for i in range(8)]  # 10**8 points
    algo = algorithms.GridSearch(num_grid_points=10)
    study = Study(params, algo, True)
    first = study.get_suggestion()
    assert algo.size == 10**8
    assert first.parameters == {f"p{i}": 0 for i in range(8)}
    assert study.get_suggestion().parameters["p7"] == 1


def test_grid_search_matches_itertools_product():
    params = [Ordinal("a", [1, 2, 3]), Choice("b", ["x", "y"]), Discrete("c", [0, 1])]
    trials = drain(Study(params, algorithms.GridSearch(), True))
    got = [(t.parameters["a"], t.parameters["b"], t.parameters["c"]) for t in trials]
    assert got == list(itertools.product([1, 2, 3], ["x", "y"], [0, 1]))


def test_grid_search_rejects_one_point():
    with pytest.raises(ConfigurationError, match="num_grid_points must be an int >= 2, got 1"):
        algorithms.GridSearch(num_grid_points=1)


# -- Iterate ---------------------------------------------------------------------------------
def test_iterate_in_order_then_done():
    configs = [{"x": 0.1, "n": 2}, {"x": 0.9, "n": 1, "extra": "kept"}]
    study = Study([Continuous("x", [0, 1]), Discrete("n", [1, 3])], algorithms.Iterate(configs),
                  True)  # fmt: skip
    trials = drain(study)
    assert [t.parameters for t in trials] == configs
    assert study.get_suggestion() is AlgorithmState.DONE


def test_iterate_checks_configs():
    with pytest.raises(ConfigurationError, match="element 1 of hp_iter must be a dict"):
        algorithms.Iterate([{"x": 1}, 3])
    with pytest.raises(ConfigurationError, match="has no value for parameter 'n'"):
        Study([Continuous("x", [0, 1]), Discrete("n", [1, 3])], algorithms.Iterate([{"x": 1}]),
              True)  # fmt: skip


# -- configs ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "algo",
    [
        algorithms.RandomSearch(7),
        algorithms.GridSearch(4),
        algorithms.Iterate([{"x": 1}]),
        algorithms.PopulationBasedTraining(
            3, 4, {"x": [0, 2]}, (0.5, 2.0), resample_probability=0.25, rank_by="best"
        ),
    ],
)
def test_algorithm_config_round_trip(algo):
    config = algo.to_config()
    again = algorithm_from_config(config)
    assert type(again) is type(algo) and again.to_config() == config


def test_unknown_algorithm_config():
    with pytest.raises(ConfigurationError, match="unknown type 'Nope'"):
        algorithm_from_config({"type": "Nope"})
    with pytest.raises(ConfigurationError, match="cannot import"):
        algorithm_from_config({"type": "no.such.module:Algo"})


def test_a_stored_config_cannot_call_an_arbitrary_function(tmp_path):
    marker = tmp_path / "pwned"
    evil = {"type": "os:system", "command": f"touch {marker}"}
    with pytest.raises(ConfigurationError, match="'os:system' is not a poptune"):
        algorithm_from_config(evil)
    with pytest.raises(ConfigurationError, match="not a poptune.algorithms.base.Algorithm"):
        algorithm_from_config({"type": "collections:OrderedDict"})
    assert not marker.exists()
