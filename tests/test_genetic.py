"""Genetic: random until three trials completed, parents from the top third, mutation rate."""

import pytest

from poptune import AlgorithmState, ConfigurationError, Continuous, Study
from poptune.algorithms.genetic import Genetic

from .helpers import X, finish, run

FIVE = [Continuous(f"p{i}", [0.0, 1.0]) for i in range(5)]


def genetic_study(mutation_rate, lower, completed=9):
    study = Study(FIVE, Genetic(mutation_rate), lower, seed=4)
    done = [study.get_suggestion() for _ in range(completed)]
    for t in done:
        finish(study, t, t.parameters["p0"])
    ranked = sorted(done, key=lambda t: t.parameters["p0"], reverse=not lower)
    return study, ranked


def test_genetic_samples_at_random_until_three_trials_completed():
    study, parents = genetic_study(0.0, True, completed=2)
    values = {v for t in parents for v in t.parameters.values()}
    for _ in range(20):
        child = study.get_suggestion()
        assert not values & set(child.parameters.values()) and "parents" not in child.meta


@pytest.mark.parametrize("lower", [True, False])
def test_genetic_parents_come_from_the_top_third(lower):
    study, ranked = genetic_study(0.0, lower)
    top = ranked[:3]
    top_ids = {t.id for t in top}
    sources, mixed = set(), 0
    for _ in range(150):  # children stay running: the completed trials do not change
        child = study.get_suggestion()
        a, b = child.meta["parents"]
        assert a != b and {a, b} <= top_ids
        origin = set()
        for name, value in child.parameters.items():
            owners = [t.id for t in top if t.parameters[name] == value]
            assert owners and set(owners) <= {a, b}
            origin.update(owners)
        sources.update(origin)
        mixed += len(origin) == 2
    assert sources == top_ids and mixed > 50  # uniform crossover mixes both parents


def test_genetic_mutation_rate_statistically():
    study, ranked = genetic_study(0.3, True)
    top_values = {t.parameters[p.name] for t in ranked[:3] for p in FIVE}
    mutated = total = 0
    for _ in range(400):
        child = study.get_suggestion()
        for value in child.parameters.values():
            mutated += value not in top_values
            total += 1
    assert abs(mutated / total - 0.3) < 0.04  # 2000 draws: sd 0.01


def test_genetic_is_done_after_max_num_trials_and_checks_arguments():
    study = Study(X, Genetic(max_num_trials=7), True, seed=0)
    assert len(run(study, lambda t: t.parameters["x"])) == 7
    assert study.get_suggestion() is AlgorithmState.DONE
    for bad in (1.5, -0.1, "0.2", True):
        with pytest.raises(ConfigurationError, match=r"mutation_rate must be a number in \[0.0"):
            Genetic(bad)
    with pytest.raises(ConfigurationError, match="max_num_trials must be an int >= 1"):
        Genetic(max_num_trials=0)
