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
    StoppingRule,
    Study,
    algorithms,
)
from poptune._config import object_from_config, trusting
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
    with pytest.raises(ConfigurationError, match="does not trust"):  # never imported
        algorithm_from_config({"type": "no.such.module:Algo"})
    with trusting(["no"]), pytest.raises(ConfigurationError, match="cannot import"):
        algorithm_from_config({"type": "no.such.module:Algo"})


#: One instance of every built-in algorithm (arguments off their defaults where there are any)
#: with the config it stores: the format saved studies and databases hold, which the configs
#: derived from ``__init__`` must keep.
BUILT_IN_CONFIGS = [
    (algorithms.RandomSearch(7), {"max_num_trials": 7}),
    (algorithms.GridSearch(4), {"num_grid_points": 4}),
    (algorithms.Iterate([{"x": 1}]), {"hp_iter": [{"x": 1}]}),
    (algorithms.Genetic(0.25, 30), {"mutation_rate": 0.25, "max_num_trials": 30}),
    (
        algorithms.LocalSearch({"x": 0.5}, (0.5, 2), repeat_trials=2),
        {"seed_configuration": {"x": 0.5}, "perturbation_factors": [0.5, 2.0], "repeat_trials": 2},
    ),  # fmt: skip
    (
        algorithms.SuccessiveHalving(r=2, R=50, eta=4, s=1, max_finished_configs=7),
        {"r": 2, "R": 50, "eta": 4, "s": 1, "max_finished_configs": 7},
    ),
    (
        algorithms.Hyperband(r=1, R=81, eta=3, max_finished_configs=5),
        {"r": 1, "R": 81, "eta": 3, "max_finished_configs": 5},
    ),
    (
        algorithms.Repeat(algorithms.RandomSearch(2), 3, wait_for_completion=True, agg=True),
        {
            "algorithm": {"type": "RandomSearch", "max_num_trials": 2},
            "num_times": 3,
            "wait_for_completion": True,
            "agg": True,
        },
    ),  # fmt: skip
    (
        algorithms.Chain([algorithms.GridSearch(3), algorithms.RandomSearch()]),
        {
            "algorithms": [
                {"type": "GridSearch", "num_grid_points": 3},
                {"type": "RandomSearch", "max_num_trials": None},
            ]
        },
    ),  # fmt: skip
    (algorithms.PopulationBasedTraining(3, 4), None),
    (algorithms.PB2(2, 4), None),
    (algorithms.Replay([{"parameters": {"x": 0.5}}]), None),
    (algorithms.BayesianOptimization(max_num_trials=5), None),
    (algorithms.GPyOpt(max_num_trials=5), None),
    (
        algorithms.TPE(5, 48, 0.1, 10, 2.0, 100, 30),
        {
            "n_startup_trials": 5,
            "n_ei_candidates": 48,
            "gamma": 0.1,
            "max_good": 10,
            "prior_weight": 2.0,
            "window": 100,
            "max_num_trials": 30,
            "multivariate": True,  # stored since the option exists; without it: False
        },
    ),  # fmt: skip
]


@pytest.mark.parametrize("algo, expected", BUILT_IN_CONFIGS, ids=lambda v: type(v).__name__)
def test_every_built_in_config_round_trips_in_its_stored_format(algo, expected):
    config = algo.to_config()
    assert config["type"] == type(algo).__name__
    if expected is not None:
        assert config == {"type": type(algo).__name__, **expected}
    again = algorithm_from_config(config)
    assert type(again) is type(algo) and again.to_config() == config


def test_the_registry_names_every_built_in_algorithm():
    from poptune._config import BUILTIN_ALGORITHMS

    built_in = {
        name
        for name in algorithms.__all__
        if name
        not in (
            "Algorithm",
            "Suggestion",
            "algorithm_from_config",
            "StoppingRule",
            "MedianStoppingRule",
            "bayesian_optimization",
            "core",
        )
    }  # fmt: skip (+ SHERPA's paths)
    assert set(BUILTIN_ALGORITHMS) == built_in
    assert {type(algo).__name__ for algo, _ in BUILT_IN_CONFIGS} == built_in
    for name in BUILTIN_ALGORITHMS:
        assert getattr(algorithms, name).__name__ == name


class RandomSearch(algorithms.Algorithm):
    """A user's algorithm that happens to share a built-in's name."""

    def __init__(self, max_num_trials=None):
        self.max_num_trials = max_num_trials

    def suggest(self, history, rng):
        return {p.name: 0.0 for p in history.parameters}


def test_a_user_class_named_like_a_built_in_never_replaces_it():
    mine = RandomSearch(3)
    config = mine.to_config()
    assert config == {"type": f"{__name__}:RandomSearch", "max_num_trials": 3}
    assert type(algorithm_from_config(config)) is RandomSearch  # its own module:Class
    stored = {"type": "RandomSearch", "max_num_trials": 3}  # a built-in's config
    assert type(algorithm_from_config(stored)) is algorithms.RandomSearch
    nested = {"type": "Repeat", "algorithm": stored, "num_times": 2}
    assert type(algorithm_from_config(nested).algorithm) is algorithms.RandomSearch


def test_a_module_class_that_is_not_an_algorithm_is_refused():
    for config in ({"type": "os:system", "command": "true"},
                   {"type": "poptune.stopping:MedianStoppingRule"},
                   {"type": "poptune.history:History"}):  # fmt: skip
        with pytest.raises(ConfigurationError, match="not a poptune.algorithms.base.Algorithm"):
            algorithm_from_config(config)


class MedianStoppingRule(StoppingRule):
    """A user's stopping rule that happens to share the built-in's name."""

    def __init__(self, patience=3):
        self.patience = patience

    def should_trial_stop(self, trial, history):
        return False


def test_stopping_rules_follow_the_algorithms_config_rule():
    built_in = algorithms.MedianStoppingRule(min_iterations=2, min_trials=3)
    assert built_in.get_config() == {"min_iterations": 2, "min_trials": 3}
    assert built_in.to_config()["type"] == "poptune.stopping:MedianStoppingRule"
    mine = MedianStoppingRule(5).to_config()
    assert mine == {"type": f"{__name__}:MedianStoppingRule", "patience": 5}
    assert type(object_from_config(mine, {}, StoppingRule)) is MedianStoppingRule
    with pytest.raises(ConfigurationError, match="not a poptune.stopping.StoppingRule"):
        object_from_config({"type": "poptune.algorithms.grid_search:GridSearch"}, {}, StoppingRule)


def test_suggest_is_abstract():
    class NoSuggest(algorithms.Algorithm):
        pass

    with pytest.raises(TypeError, match="abstract"):
        NoSuggest()
    with pytest.raises(TypeError, match="abstract"):
        algorithms.Algorithm()


def test_get_config_reads_the_init_parameters_from_attributes():
    class Mine(algorithms.Algorithm):
        def __init__(self, a, b=(1, 2), *args, hidden=0, **kwargs):
            self.a, self.b = a, b
            self._hidden = hidden  # stored under another name: left out

        def suggest(self, history, rng):
            return {}

    assert Mine(3).get_config() == {"a": 3, "b": [1, 2]}
    assert repr(Mine("z")) == "Mine(a='z', b=[1, 2])"

    class NoInit(algorithms.Algorithm):
        def suggest(self, history, rng):
            return {}

    assert NoInit().get_config() == {}


def test_a_stored_config_cannot_call_an_arbitrary_function(tmp_path):
    marker = tmp_path / "pwned"
    evil = {"type": "os:system", "command": f"touch {marker}"}
    with pytest.raises(ConfigurationError, match="'os:system' is not a poptune"):
        algorithm_from_config(evil)
    with pytest.raises(ConfigurationError, match="not a poptune.algorithms.base.Algorithm"):
        algorithm_from_config({"type": "collections:OrderedDict"})
    assert not marker.exists()
