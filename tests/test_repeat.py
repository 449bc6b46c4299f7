"""Repeat (and its aggregated history) and Chain, alone and nested in each other."""

import math

import pytest

from poptune import AlgorithmState, ConfigurationError, Study, algorithms
from poptune._rng import STATE_KEY
from poptune.algorithms.base import Algorithm
from poptune.algorithms.chain import Chain
from poptune.algorithms.genetic import Genetic
from poptune.algorithms.iterate import Iterate
from poptune.algorithms.local_search import LocalSearch
from poptune.algorithms.random_search import RandomSearch
from poptune.algorithms.repeat import AggregatedHistory, Repeat

from .conftest import forget_storages
from .helpers import X, fingerprint, finish, run


class Spy(Algorithm):
    """Notes, in its own state, what it sees of the completed trials; samples at random."""

    def suggest(self, history, rng):
        seen = [[t.id, t.last_observation.objective, t.last_observation.context]
                for t in history.completed]  # fmt: skip
        history.state.setdefault("seen", []).append(seen)
        return {p.name: p.sample(rng) for p in history.parameters}


def test_repeat_hands_out_each_configuration_num_times():
    study = Study(X, Repeat(RandomSearch(3), num_times=4), True, seed=0)
    trials = run(study, lambda t: t.parameters["x"])
    assert len(trials) == 12
    for g in range(3):
        group = trials[4 * g : 4 * g + 4]
        assert len({t.parameters["x"] for t in group}) == 1
        assert [t.meta["repeat"] for t in group] == [0, 1, 2, 3]
        assert {t.meta["repeat_group"] for t in group} == {group[0].id}
    assert len({t.parameters["x"] for t in trials}) == 3
    assert study.history.state["inner"] == {"n": 3}  # RandomSearch's state, nested
    assert study.get_suggestion() is AlgorithmState.DONE


def test_repeat_wait_for_completion():
    study = Study(X, Repeat(RandomSearch(), 2, wait_for_completion=True), True, seed=0)
    a, b = study.get_suggestion(), study.get_suggestion()
    assert a.parameters == b.parameters
    assert study.get_suggestion() is AlgorithmState.WAIT
    finish(study, a, 1.0)
    assert study.get_suggestion() is AlgorithmState.WAIT
    finish(study, b, 1.0, "FAILED")
    c = study.get_suggestion()
    assert c.parameters != a.parameters and c.meta["repeat"] == 0
    # without waiting, the next configuration comes at once
    free = Study(X, Repeat(RandomSearch(), 2), True, seed=0)
    got = [free.get_suggestion() for _ in range(3)]
    assert [t.meta["repeat"] for t in got] == [0, 1, 0]


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_get_best_result_under_repeat_agg_is_the_best_mean(storage, tmp_path):
    url = None if storage == "memory" else f"sqlite:///{tmp_path / 'agg.db'}"
    study = Study(X, Repeat(RandomSearch(2), 3, agg=True), True, seed=0, storage=url)
    first = [study.get_suggestion() for _ in range(3)]
    for t, value in zip(first, (0.0, 4.0, 5.0), strict=True):  # mean 3, holds the best single
        finish(study, t, value)
    second = [study.get_suggestion() for _ in range(3)]
    for t, value in zip(second, (2.0, 2.0, 2.0), strict=True):  # mean 2: the best mean
        finish(study, t, value)
    best = study.get_best_result()
    assert best["Trial-ID"] == second[0].id and best["Objective"] == 2.0
    assert best["ObjectiveCount"] == 3 and best["ObjectiveVar"] == 0.0
    assert best["x"] == second[0].parameters["x"]
    # without agg too (issue 13, SHERPA's definition): the best mean, not the luckiest
    # single repeat (trial 1's 0.0)
    plain = Study(X, Repeat(RandomSearch(2), 3), True, seed=0)
    trials = [plain.get_suggestion() for _ in range(6)]
    for t, value in zip(trials, (0.0, 4.0, 5.0, 2.0, 2.0, 2.0), strict=True):
        finish(plain, t, value)
    assert plain.get_best_result()["Trial-ID"] == trials[3].id
    assert plain.get_best_result()["Objective"] == 2.0
    forget_storages()


def test_repeat_agg_shows_the_mean_objective_to_the_wrapped_algorithm():
    study = Study(X, Repeat(Spy(), 3, agg=True), True, seed=0)
    first = [study.get_suggestion() for _ in range(3)]
    for t, value in zip(first, (1.0, 2.0, 6.0), strict=True):
        finish(study, t, value)
    second = [study.get_suggestion() for _ in range(3)]
    finish(study, second[0], 4.0)
    finish(study, second[1], 0.0)
    study.get_suggestion()  # group 2 is not complete: the spy does not see it
    finish(study, second[2], 5.0, "FAILED")
    for _ in range(3):  # the last two repeats of group 3, then the spy is asked again
        study.get_suggestion()
    seen = study.history.state["inner"]["seen"]
    assert seen[0] == []
    assert seen[1] == [[1, 3.0, {"ObjectiveVar": 7.0, "ObjectiveCount": 3,
                                 "ObjectiveStdErr": math.sqrt(7 / 3)}]]  # fmt: skip
    assert seen[2] == seen[1]
    assert seen[3][1] == [4, 2.0, {"ObjectiveVar": 8.0, "ObjectiveCount": 2,
                                   "ObjectiveStdErr": 2.0}]  # fmt: skip
    assert [len(s) for s in seen] == [0, 1, 1, 2]


def test_repeat_agg_publishes_its_groups_at_the_top_of_the_state_even_in_a_chain():
    values = [0.0, 4.0, 5.0, 2.0, 2.0, 2.0, 9.0, 9.0, 9.0]  # means 3, 2, 9; best single: 0
    for wrap in (lambda a: a, lambda a: Chain([a]), lambda a: Chain([Iterate([]), a])):
        study = Study(X, wrap(Repeat(RandomSearch(3), 3, agg=True)), True, seed=0)
        trials = [study.get_suggestion() for _ in range(9)]
        for t, value in zip(trials, values, strict=True):
            finish(study, t, value)
        assert study.history.state["result_groups"] == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
        best = study.get_best_result()
        assert best["Trial-ID"] == 4 and best["Objective"] == 2.0
        assert best["ObjectiveCount"] == 3


def test_two_repeats_in_a_chain_keep_their_own_configurations():
    chain = Chain([Repeat(Iterate([{"x": 0.1}, {"x": 0.2}]), 2, agg=True),
                   Repeat(Spy(), 2, agg=True)])  # fmt: skip
    study = Study(X, chain, True, seed=0)
    for _ in range(8):
        trial = study.get_suggestion()
        finish(study, trial, 0.5 if trial.id > 4 else trial.parameters["x"])
    state = study.history.state
    assert state["result_groups"] == [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert [s["first_group"] for s in state["chain"]] == [0, 2]
    seen = state["chain"][1]["inner"]["seen"]
    assert seen[0] == [] and [t[0] for t in seen[1]] == [5]  # never the first Repeat's
    assert study.get_best_result()["Trial-ID"] == 1  # all four configurations ranked


class Seer(Algorithm):
    """Notes the class of the history it is shown and how many trials it holds."""

    def suggest(self, history, rng):
        history.state.setdefault("seen", []).append([type(history).__name__, len(history)])
        return {p.name: p.sample(rng) for p in history.parameters}


def test_a_chain_inside_repeat_agg_sees_the_aggregated_history():
    study = Study(X, Repeat(Chain([Iterate([{"x": 0.5}]), Seer()]), 2, agg=True), True, seed=0)
    for _ in range(6):
        finish(study, study.get_suggestion(), 1.0)
    state = study.history.state
    assert state["inner"]["chain"][1]["seen"] == [["AggregatedHistory", 1],
                                                  ["AggregatedHistory", 2]]  # fmt: skip
    assert state["result_groups"] == [[1, 2], [3, 4], [5, 6]]
    assert study.get_best_result()["ObjectiveCount"] == 2


def test_scoped_views_keep_the_study_state():
    from poptune.history import History

    history = History(X, True)
    history.state = {"chain": [{}]}
    view = history.scoped(history.state["chain"][0])
    deeper = view.scoped({})
    assert view.study_state is history.state and deeper.study_state is history.state
    assert history.study_state is history.state
    view.study_state["result_groups"] = [[1]]
    assert history.state["result_groups"] == [[1]]
    aggregated = AggregatedHistory(view, {}, [[1]])
    assert aggregated.study_state is history.state
    again = aggregated.scoped({"own": 1})
    assert type(again) is AggregatedHistory and again.state == {"own": 1}
    assert again.n_trials == 1 and again.study_state is history.state


def _legacy(state, num_times):
    """A Repeat(agg=True) state as poptune wrote it before result_groups: every group in
    state['groups'] (the random stream's position kept: it is the study's, not Repeat's)."""
    groups = state["result_groups"] + [g for g in state["groups"] if len(g) < num_times]
    kept = {k: v for k, v in state.items() if k == STATE_KEY}
    return {"inner": state["inner"], "groups": groups, **kept}


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_a_repeat_state_stored_before_result_groups_ranks_and_resumes_the_same(storage, tmp_path):
    def make(name):
        url = None if storage == "memory" else f"sqlite:///{tmp_path / name}.db"
        algorithm = Repeat(Genetic(max_num_trials=7), 2, agg=True)
        return Study(X, algorithm, True, seed=3, storage=url, study_name=name)

    def value(trial):
        return round((trial.parameters["x"] - 0.4) ** 2 + 0.01 * (trial.id % 3), 12)

    reference = make("reference")
    run(reference, value)
    part = make("part")
    for n, trial in enumerate(part, 1):
        finish(part, trial, value(trial))
        if n == 8:
            break
    part.get_suggestion()  # trial 9 is handed out and left running: a partial group
    best = part.get_best_result()
    assert best["ObjectiveCount"] == 2
    state = part._storage.get_algorithm_state(part._study_id)
    part._storage.set_algorithm_state(part._study_id, _legacy(state, 2))
    assert "result_groups" not in part._storage.get_algorithm_state(part._study_id)
    assert part.get_best_result() == best  # derived from the stored config and state
    assert _legacy(state, 2)["groups"][-1] == [9]
    finish(part, part.get_trial(9), value(part.get_trial(9)))
    run(part, value)  # the first suggestion moves the groups to result_groups
    assert fingerprint(part) == fingerprint(reference)
    assert part.get_best_result() == reference.get_best_result()
    assert part.history.state["result_groups"] == reference.history.state["result_groups"]
    forget_storages()


def test_repeat_rejects_bad_arguments():
    with pytest.raises(ConfigurationError, match="algorithm must be a poptune.algorithms."
                       "Algorithm, got 3"):  # fmt: skip
        Repeat(3)
    with pytest.raises(ConfigurationError, match="num_times must be an int >= 1, got 0"):
        Repeat(RandomSearch(), num_times=0)
    with pytest.raises(ConfigurationError, match="agg must be True or False, got 'yes'"):
        Repeat(RandomSearch(), agg="yes")


# -- Chain -------------------------------------------------------------------------------------
def test_chain_runs_algorithms_in_order():
    chain = Chain([Iterate([{"x": 0.1}, {"x": 0.2}]), RandomSearch(2), Iterate([{"x": 0.9}])])
    study = Study(X, chain, True, seed=0)
    trials = run(study, lambda t: t.parameters["x"])
    xs = [t.parameters["x"] for t in trials]
    assert xs[:2] == [0.1, 0.2] and xs[4] == 0.9 and len(trials) == 5
    assert [t.meta["chain"] for t in trials] == [0, 0, 1, 1, 2]
    assert study.history.state["chain"] == [{"i": 2}, {"n": 2}, {"i": 1}]
    assert study.get_suggestion() is AlgorithmState.DONE


def test_chain_passes_wait_on():
    study = Study(X, Chain([LocalSearch({"x": 0.5}), RandomSearch(1)]), True, seed=0)
    seed = study.get_suggestion()
    assert study.get_suggestion() is AlgorithmState.WAIT
    finish(study, seed, 1.0)
    trials = run(study, lambda t: 2.0)
    assert [t.meta["chain"] for t in trials] == [0, 0, 1]


def test_chain_rejects_bad_arguments():
    with pytest.raises(ConfigurationError, match=r"must not be empty, got \[\]"):
        Chain([])
    with pytest.raises(ConfigurationError, match="element 1 of algorithms must be a poptune"):
        Chain([RandomSearch(), "grid"])
    with pytest.raises(ConfigurationError, match="must be a list of Algorithm objects"):
        Chain(RandomSearch())


def test_repeat_without_agg_refuses_pbt_with_a_clear_error():
    pbt = algorithms.PopulationBasedTraining(population_size=2, num_generations=2)
    with pytest.raises(ConfigurationError, match="PopulationBasedTraining needs agg=True"):
        Repeat(pbt, 2)
    Repeat(algorithms.PopulationBasedTraining(population_size=2, num_generations=2), 2, agg=True)
