"""PBT's initial_population: given configurations or a search algorithm for the founders."""

import math

import pytest

from poptune import Choice, ConfigurationError, Continuous, Study
from poptune.algorithms import GridSearch, RandomSearch, algorithm_from_config
from poptune.algorithms import PopulationBasedTraining as PBT

from .helpers import fingerprint

MIXED = [Continuous("lr", [1e-4, 1e-2], "log"), Choice("act", ["relu", "tanh"])]


def founders(study, n):
    trials = [study.get_suggestion() for _ in range(n)]
    return {t.member: t for t in trials}


@pytest.mark.parametrize("synchronous", [True, False])
def test_initial_population_of_dicts(synchronous):
    given = [{"lr": 1e-3, "act": "tanh"}, {"lr": 2e-3}]  # member 1's act is drawn at random
    acts = set()
    for seed in range(8):
        algorithm = PBT(2, 4, initial_population=given, synchronous=synchronous)
        study = Study(MIXED, algorithm, False, seed=seed)
        f = founders(study, 4)
        assert f[0].parameters["lr"] == 1e-3 and f[0].parameters["act"] == "tanh"
        assert f[1].parameters["lr"] == 2e-3
        acts.add(f[1].parameters["act"])
        assert f[2].parameters["lr"] not in (1e-3, 2e-3)  # the rest are random
        assert all((t.generation, t.load_from, t.lineage) == (1, "", "") for t in f.values())
    assert acts == {"relu", "tanh"}


@pytest.mark.parametrize("synchronous", [True, False])
def test_initial_population_from_grid_search(synchronous):
    grid = [(lr, act) for lr in (1e-4, 1e-2) for act in ("relu", "tanh")]
    algorithm = PBT(2, 5, initial_population=GridSearch(2), synchronous=synchronous)
    study = Study(MIXED, algorithm, False, seed=0)
    f = founders(study, 5)
    assert [(f[m].parameters["lr"], f[m].parameters["act"]) for m in range(4)] == grid
    assert f[4].parameters["lr"] not in (1e-4, 1e-2)  # the grid is spent: random
    assert study.history.state["initial"] == {"i": 4}  # its state, apart from PBT's


@pytest.mark.parametrize("synchronous", [True, False])
def test_initial_population_from_random_search(synchronous):
    algorithm = PBT(2, 4, initial_population=RandomSearch(2), synchronous=synchronous)
    study = Study(MIXED, algorithm, False, seed=0)
    f = founders(study, 4)
    assert len({t.parameters["lr"] for t in f.values()}) == 4
    assert study.history.state["initial"] == {"n": 2}
    for trial in f.values():
        study.add_observation(trial, trial.parameters["lr"], iteration=1)
        study.finalize(trial)
    nxt = founders(study, 4)  # generation 2 is PBT's as usual
    assert all(t.generation == 2 and t.parent is not None for t in nxt.values())


def test_initial_population_resumes_mid_generation(tmp_path):
    def new(output_dir=None):
        return Study(MIXED, PBT(3, 4, initial_population=GridSearch(3)), False, seed=5,
                     output_dir=output_dir)  # fmt: skip

    def step(study, trial):
        study.add_observation(trial, -abs(math.log10(trial.parameters["lr"]) + 3), 1)
        study.finalize(trial)

    reference = new()
    for trial in reference:
        step(reference, trial)
    first = new(tmp_path)
    for n, trial in enumerate(first, start=1):
        step(first, trial)
        first.save()
        if n == 2:
            break
    resumed = Study.load(tmp_path)
    for trial in resumed:
        step(resumed, trial)
    assert fingerprint(resumed) == fingerprint(reference)


def test_initial_population_config_round_trip():
    for initial in ([{"lr": 1e-3}, {"lr": 2e-3, "act": "relu"}], GridSearch(3), None):
        config = PBT(2, 4, initial_population=initial).to_config()
        assert algorithm_from_config(config).to_config() == config
    nested = PBT(2, 4, initial_population=RandomSearch(3)).to_config()["initial_population"]
    assert nested == {"type": "RandomSearch", "max_num_trials": 3}
    rebuilt = algorithm_from_config(PBT(2, 4, initial_population=GridSearch(3)).to_config())
    assert isinstance(rebuilt.initial_population, GridSearch)


@pytest.mark.parametrize(
    "initial, fragment",
    [
        ([{"lr": 1e-3}] * 5, "has 5 configurations, more than population_size=4"),
        ([{"lr": 1e-3}, "relu"], r"initial_population\[1\] must be a dict"),
        ("lr", "initial_population must be a list of configurations"),
        ({"lr": 1e-3}, "got the dict"),
        ({"type": "NoSuchSearch"}, "unknown type 'NoSuchSearch'"),
    ],
)
def test_initial_population_arguments(initial, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        PBT(2, 4, initial_population=initial)


@pytest.mark.parametrize(
    "initial, fragment",
    [
        ([{"momentum": 0.9}], r"initial_population\[0\] names 'momentum', which is not a param"),
        ([{}, {"lr": 0.5}], r"initial_population\[1\]\['lr'\] = 0.5 is not a value"),
        ([{"act": "gelu"}], r"initial_population\[0\]\['act'\] = 'gelu'"),
    ],
)
def test_initial_population_checked_against_the_study(initial, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        Study(MIXED, PBT(2, 4, initial_population=initial), False)
