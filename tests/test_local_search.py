"""LocalSearch: its neighbourhood moves, following the best, repeats and argument checks."""

import pytest

from poptune import AlgorithmState, Choice, ConfigurationError, Continuous, Discrete, Ordinal, Study
from poptune.algorithms.local_search import LocalSearch, neighbours

from .helpers import X, finish, run

MIXED = [
    Continuous("x", [0.0, 10.0]),
    Discrete("n", [1, 10]),
    Ordinal("o", [1, 2, 4, 8]),
    Choice("c", ["a", "b", "c"]),
]
SEED = {"x": 5.0, "n": 1, "o": 2, "c": "a"}


def test_local_search_moves_one_parameter_per_type_and_never_repeats():
    study = Study(MIXED, LocalSearch(SEED), True, seed=0)
    # the seed stays best: its whole neighbourhood is tried once, then DONE
    trials = run(study, lambda t: 1.0 if t.parameters == SEED else 2.0)
    assert trials[0].parameters == SEED and trials[0].id == 1
    moves = set()
    for t in trials[1:]:
        changed = [k for k in SEED if t.parameters[k] != SEED[k]]
        assert len(changed) == 1
        moves.add((changed[0], t.parameters[changed[0]]))
    # x: 5 x 0.8, 5 x 1.2; n: 1 x 0.8 rounds to 1 -> moves down -> clipped: no move, 1 x 1.2
    # rounds to 1 -> moves up to 2; o: one step each way; c: every other value
    assert moves == {("x", 4.0), ("x", 6.0), ("n", 2), ("o", 1), ("o", 4), ("c", "b"),
                     ("c", "c")}  # fmt: skip
    assert len(trials) == 1 + len(moves)
    assert study.get_suggestion() is AlgorithmState.DONE
    assert "x: 5 -> 6 (x1.2)" in {t.explore for t in trials}


def test_local_search_follows_the_best_and_waits_for_running_configurations():
    study = Study(X, LocalSearch({"x": 0.5}), True, seed=3)
    seed = study.get_suggestion()
    assert study.get_suggestion() is AlgorithmState.WAIT  # nothing finished yet
    finish(study, seed, 1.0)
    a, b = study.get_suggestion(), study.get_suggestion()
    assert {a.parameters["x"], b.parameters["x"]} == {0.4, 0.6}
    assert study.get_suggestion() is AlgorithmState.WAIT  # neighbourhood used, two running
    finish(study, a, (a.parameters["x"] - 0.8) ** 2)
    finish(study, b, (b.parameters["x"] - 0.8) ** 2)
    up = study.get_suggestion()  # around 0.6 now: 0.48 and 0.72
    assert up.parameters["x"] in (pytest.approx(0.48), pytest.approx(0.72))
    finish(study, up, (up.parameters["x"] - 0.8) ** 2)
    trials = [seed, a, b, up] + run(study, lambda t: (t.parameters["x"] - 0.8) ** 2)
    keys = [round(t.parameters["x"], 9) for t in trials]
    assert len(keys) == len(set(keys))  # no configuration twice
    best = min(trials, key=lambda t: (t.parameters["x"] - 0.8) ** 2)
    assert best.parameters["x"] == pytest.approx(0.864)  # 0.5 -> 0.6 -> 0.72 -> 0.864


def test_local_search_repeats_each_configuration():
    study = Study(X, LocalSearch({"x": 0.5}, repeat_trials=2), False, seed=1)
    trials = run(study, lambda t: t.parameters["x"] + 0.01 * t.id)
    xs = [t.parameters["x"] for t in trials]
    assert xs[0::2] == xs[1::2] and len(set(xs)) == len(xs) // 2
    assert [t.meta["repeat"] for t in trials[:4]] == [0, 1, 0, 1]


def test_local_search_neighbours_of_zero_and_bounds():
    params = [Continuous("w", [-1.0, 1.0]), Discrete("k", [0, 3])]
    got = sorted((c["w"], c["k"]) for c, _ in neighbours({"w": 0.0, "k": 3}, params, (0.5, 2.0)))
    # 0 moves by (factor - 1) x 10% of the width; k=3 x 2 is clipped to 3 (no move)
    assert got == [(-0.1, 3), (0.0, 2), (0.2, 3)]


def test_local_search_ends_when_the_seed_fails(caplog):
    study = Study(X, LocalSearch({"x": 0.5}), True, seed=0)
    study.finalize(study.get_suggestion(), "FAILED")
    assert study.get_suggestion() is AlgorithmState.DONE
    assert "no trial of the seed configuration" in caplog.text


@pytest.mark.parametrize(
    "seed, message",
    [
        ({"x": 2.0}, "value 2.0 is outside its range"),
        ({}, "has no value for parameter 'x'"),
        ({"x": 0.5, "y": 1}, r"names \['y'\], which are not parameters"),
    ],
)
def test_local_search_checks_the_seed_against_the_study(seed, message):
    with pytest.raises(ConfigurationError, match=message):
        Study(X, LocalSearch(seed), True)


def test_local_search_rejects_bad_arguments():
    with pytest.raises(ConfigurationError, match="seed_configuration must be a dict"):
        LocalSearch([0.5])
    with pytest.raises(ConfigurationError, match=r"numbers > 0, got -1 in \(0.8, -1\)"):
        LocalSearch({"x": 0.5}, perturbation_factors=(0.8, -1))
    with pytest.raises(ConfigurationError, match="repeat_trials must be an int >= 1, got 0"):
        LocalSearch({"x": 0.5}, repeat_trials=0)
