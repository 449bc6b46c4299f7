"""LocalSearch, Repeat, Chain, Genetic, SuccessiveHalving (ASHA) and Hyperband."""

import math
import time

import pytest

from poptune import (
    AlgorithmState,
    Choice,
    ConfigurationError,
    Continuous,
    Discrete,
    Ordinal,
    Study,
    Trial,
    TrialStatus,
    algorithms,
)
from poptune.algorithms.base import Algorithm, algorithm_from_config
from poptune.algorithms.chain import Chain
from poptune.algorithms.genetic import Genetic
from poptune.algorithms.grid_search import GridSearch
from poptune.algorithms.hyperband import Hyperband
from poptune.algorithms.iterate import Iterate
from poptune.algorithms.local_search import LocalSearch, neighbours
from poptune.algorithms.random_search import RandomSearch
from poptune.algorithms.repeat import AggregatedHistory, Repeat
from poptune.algorithms.successive_halving import SuccessiveHalving
from poptune.storage.sql import SQLStorage

from .conftest import forget_storages

X = [Continuous("x", [0.0, 1.0])]


def finish(study, trial, value, status="COMPLETED"):
    study.add_observation(trial, value)
    study.finalize(trial, status)


def run(study, objective):
    trials = []
    for trial in study:
        finish(study, trial, objective(trial))
        trials.append(trial)
    return trials


def fingerprint(study):
    return [
        (t.id, t.status.value, t.parameters, t.meta,
         [(o.iteration, o.objective) for o in t.observations.values()])
        for t in study.trials
    ]  # fmt: skip


# -- LocalSearch -------------------------------------------------------------------------------
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


# -- Repeat ------------------------------------------------------------------------------------
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
    # without agg, the best single observation wins, as for any other algorithm
    plain = Study(X, Repeat(RandomSearch(2), 3), True, seed=0)
    trials = [plain.get_suggestion() for _ in range(6)]
    for t, value in zip(trials, (0.0, 4.0, 5.0, 2.0, 2.0, 2.0), strict=True):
        finish(plain, t, value)
    assert plain.get_best_result()["Trial-ID"] == trials[0].id
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
    state['groups']."""
    groups = state["result_groups"] + [g for g in state["groups"] if len(g) < num_times]
    return {"inner": state["inner"], "groups": groups}


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


# -- Genetic -----------------------------------------------------------------------------------
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


# -- SuccessiveHalving (ASHA) ------------------------------------------------------------------
# objective of each trial id; a trial's rung comes from the algorithm
TABLE = {1: 5, 2: 3, 3: 8, 4: 2.5, 5: 1, 6: 1.5, 7: 4, 8: 2, 9: 2.2, 10: 1.4, 11: 7, 12: 0.5,
         13: 0.8, 14: 0.7, 15: 6, 16: 3, 17: 9}  # fmt: skip

# (trial id, rung, resource, load_from) of every promotion, worked out by hand from the rule:
# rungs checked from the top down; a rung's COMPLETED trials ranked by objective; the best of
# its top floor(n / 3) not promoted yet is promoted; otherwise a new configuration on rung 0.
PROMOTIONS = {
    # lower is better: rung 0 = 1..3 -> top 1 is trial 2 (3.0) -> trial 4 on rung 1; after
    # trial 5 (1.0) the top 1 of 4 is 5 -> trial 6; 6 done -> top 2 = 5, 8 -> 9; rung 1 then
    # has 3 (2.5, 1.5, 2.2) -> its best, 6, goes to rung 2 as 10; 12 (0.5) enters the top 2 of
    # 8 -> 13; rung 1 of 4 -> top 1 = 13 (0.8) -> 14 on rung 2: two finished configs, DONE.
    True: [(4, 1, 3, "2"), (6, 1, 3, "5"), (9, 1, 3, "8"), (10, 2, 9, "6"), (13, 1, 3, "12"),
           (14, 2, 9, "13")],
    # higher is better: 3 (8) -> 4; top 2 of 6 = 3, 1 -> 8; top 3 of 9 = 3, 11, 1 -> 12;
    # rung 1 = 2.5, 2, 0.5 -> 4 -> 13 (rung 2); 15 (6) pushes 1 out of the top 3 of 11 and is
    # promoted -> 16; rung 1 of 4 -> top 1 = 16 (3) -> 17 on rung 2: DONE.
    False: [(4, 1, 3, "3"), (8, 1, 3, "1"), (12, 1, 3, "11"), (13, 2, 9, "4"), (16, 1, 3, "15"),
            (17, 2, 9, "16")],
}  # fmt: skip


@pytest.mark.parametrize("lower", [True, False])
def test_asha_promotes_exactly_as_specified(lower):
    study = Study(X, SuccessiveHalving(r=1, R=9, eta=3, max_finished_configs=2), lower, seed=0)
    trials = []
    while True:
        trial = study.get_suggestion()
        if trial is AlgorithmState.DONE:
            break
        if trial.parameters["rung"] == 2 and sum(t.parameters["rung"] == 2 for t in trials):
            assert study.get_suggestion() is AlgorithmState.WAIT  # the last config is running
        finish(study, trial, TABLE[trial.id])
        trials.append(trial)
    got = [(t.id, t.parameters["rung"], t.parameters["resource"], t.parameters["load_from"])
           for t in trials if t.parameters["load_from"]]  # fmt: skip
    assert got == PROMOTIONS[lower]
    for t in trials:
        assert t.parameters["save_to"] == str(t.id)
        if t.parameters["rung"] == 0:
            assert t.parameters["resource"] == 1 and t.parameters["load_from"] == ""
        else:
            parent = study.get_trial(t.parent)
            assert parent.parameters["rung"] == t.parameters["rung"] - 1
            assert parent.parameters["x"] == t.parameters["x"]
    assert len(trials) == max(PROMOTIONS[lower])[0]


def test_asha_state_is_per_rung_and_pending_checkpoints():
    algo = SuccessiveHalving(max_finished_configs=2)
    study = Study(X, algo, True, seed=0)
    run(study, lambda t: TABLE[t.id])
    state = study.history.state["bracket"]
    assert state["rungs"] == [[1, 2, 3, 5, 7, 8, 11, 12], [4, 6, 9, 13], [10, 14]]
    assert state["promoted"] == [[2, 5, 8, 12], [6, 13]]
    assert algo.pending_checkpoints(study.history) == {"1", "3", "7", "11", "4", "9"}


def test_asha_resources_and_budget():
    assert SuccessiveHalving(r=1, R=27, eta=3, s=1).resources == [3, 9, 27]
    assert SuccessiveHalving(r=1, R=10, eta=3).resources == [1, 3, 9]
    assert SuccessiveHalving(r=0.5, R=2, eta=2).resources == [0.5, 1.0, 2.0]
    # s = s_max: one rung, every configuration is finished at once
    study = Study(X, SuccessiveHalving(R=9, s=2, max_finished_configs=2), True, seed=0)
    a, b = study.get_suggestion(), study.get_suggestion()
    assert a.parameters["resource"] == b.parameters["resource"] == 9
    assert study.get_suggestion() is AlgorithmState.WAIT
    finish(study, a, 1.0)
    finish(study, b, 1.0, "FAILED")  # a failed top-rung trial does not count
    c = study.get_suggestion()
    assert c.id == 3 and c.parameters["rung"] == 0
    finish(study, c, 2.0)
    assert study.get_suggestion() is AlgorithmState.DONE


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"eta": 1}, "eta must be an int >= 2, got 1"),
        ({"eta": 2.5}, "eta must be an int >= 2, got 2.5"),
        ({"r": 10, "R": 9}, r"R must be >= r \(r=10\), got R=9"),
        ({"r": 0}, "r must be a number > 0, got 0"),
        ({"s": 3}, r"s must be <= 2 .* got s=3"),
        ({"max_finished_configs": 0}, "max_finished_configs must be an int >= 1, got 0"),
    ],
)
def test_asha_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        SuccessiveHalving(**kwargs)
    if "s" not in kwargs:
        with pytest.raises(ConfigurationError, match=message.replace("SuccessiveHalving", "")):
            Hyperband(**kwargs)


def test_asha_reserved_keys_clash_with_a_parameter():
    with pytest.raises(ConfigurationError, match=r"rename the parameter\(s\) \['resource'\]"):
        Study([Discrete("resource", [1, 3])], SuccessiveHalving(), True)
    with pytest.raises(ConfigurationError, match=r"rename the parameter\(s\) \['rung'\]"):
        Study([Discrete("rung", [1, 3])], Repeat(Chain([RandomSearch(), Hyperband()])), True)


# -- Hyperband ---------------------------------------------------------------------------------
def test_hyperband_takes_brackets_in_turn_and_promotes_within_a_bracket():
    study = Study(X, Hyperband(r=1, R=9, eta=3, max_finished_configs=5), True, seed=0)
    trials = run(study, lambda t: t.parameters["x"])
    brackets = [t.meta["bracket"] for t in trials]
    assert brackets == [0, 1, 2] * (len(trials) // 3) + [0, 1, 2][: len(trials) % 3]
    assert [t.parameters["resource"] for t in trials[:9]] == [1, 3, 9] * 3
    # turn 4 of bracket 0: rung 0 holds 1, 4, 7 -> the best goes to rung 1 (resource 3)
    best0 = min(trials[0:9:3], key=lambda t: t.parameters["x"])
    assert (trials[9].parameters["rung"], trials[9].parameters["resource"]) == (1, 3)
    assert trials[9].parameters["load_from"] == str(best0.id)
    best1 = min(trials[1:9:3], key=lambda t: t.parameters["x"])
    assert (trials[10].parameters["rung"], trials[10].parameters["resource"]) == (1, 9)
    assert trials[10].parameters["load_from"] == str(best1.id)
    assert trials[11].parameters["resource"] == 9 and trials[11].parameters["load_from"] == ""
    # DONE after 5 configurations trained with R, whichever bracket they came from
    assert sum(t.parameters["resource"] == 9 for t in trials) == 5 and len(trials) == 12
    assert study.get_suggestion() is AlgorithmState.DONE


def test_asha_adopts_a_retried_trial(tmp_path):
    url = f"sqlite:///{tmp_path / 'retry.db'}"
    fast = {"heartbeat_interval": 0.1, "grace_period": 0.3, "retry_failed_trials": 1}
    try:
        a = Study(X, SuccessiveHalving(R=9, s=2, max_finished_configs=1), True, seed=0,
                  storage=SQLStorage(url), study_name="r", **fast)  # fmt: skip
        b = Study(X, SuccessiveHalving(R=9, s=2, max_finished_configs=1), True,
                  storage=SQLStorage(url), study_name="r", **fast)  # fmt: skip
        lost = a.get_suggestion()
        assert b.get_suggestion() is AlgorithmState.WAIT  # the top rung is full
        a.close()  # its worker dies: no more heartbeats
        time.sleep(0.6)
        retry = b.get_suggestion()
        assert retry.meta["retry_of"] == lost.id and retry.parameters["rung"] == 0
        assert b.get_suggestion() is AlgorithmState.WAIT  # the retry fills the top rung
        finish(b, retry, 1.0)
        assert b.get_suggestion() is AlgorithmState.DONE
    finally:
        forget_storages()


# -- configs -----------------------------------------------------------------------------------
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


# -- shared by two processes, and resumed ------------------------------------------------------
PAIR = [Continuous("x", [0.0, 1.0]), Ordinal("o", [1, 2, 4, 8]), Choice("c", ["a", "b"])]


def objective(trial):
    p = trial.parameters
    return (p["x"] - 0.3) ** 2 + 0.1 * p["o"] + (p["c"] == "b") - 0.01 * p.get("resource", 0)


FACTORIES = {
    "local": lambda: LocalSearch({"x": 0.5, "o": 4, "c": "b"}),
    "asha": lambda: SuccessiveHalving(max_finished_configs=3),
    "hyperband": lambda: Hyperband(R=9, max_finished_configs=4),
    "genetic": lambda: Genetic(mutation_rate=0.2, max_num_trials=15),
    "repeat": lambda: Repeat(
        Chain([Iterate([{"x": 0.2, "o": 1, "c": "a"}]), Genetic(max_num_trials=6)]), 2, agg=True
    ),  # fmt: skip
}


def interleave(a, b, max_steps=400):
    """Ask a and b in turn, keep up to 3 trials running, finish the oldest first."""
    running = []
    for step in range(max_steps):
        study = (a, b)[step % 2]
        got = study.get_suggestion()
        if isinstance(got, Trial):
            running.append((study, got))
            if len(running) < 3:
                continue
        elif not running:
            assert got is AlgorithmState.DONE
            return
        owner, trial = running.pop(0)
        finish(owner, trial, objective(trial))
    raise AssertionError("the algorithm never finished")


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_two_processes_sharing_a_sqlite_study(tmp_path, name):
    make = FACTORIES[name]
    reference = Study(PAIR, make(), True, seed=5)
    interleave(reference, reference)
    url = f"sqlite:///{tmp_path / 's.db'}"
    try:
        a = Study(PAIR, make(), True, seed=5, storage=url, study_name="shared")
        b = Study(PAIR, make(), True, storage=SQLStorage(url), study_name="shared")
        interleave(a, b)
        trials = b.trials
        assert fingerprint(b) == fingerprint(a) == fingerprint(reference)
        assert all(t.status is TrialStatus.COMPLETED for t in trials)
        if name == "local":
            configs = [(t.parameters["x"], t.parameters["o"], t.parameters["c"]) for t in trials]
            assert len(configs) == len(set(configs)) > 5
        if name in ("asha", "hyperband"):
            promoted = [t.parameters["load_from"] for t in trials if t.parameters["load_from"]]
            assert promoted and len(promoted) == len(set(promoted))
        a.close()
        b.close()
    finally:
        forget_storages()


@pytest.mark.parametrize("name", ["local", "asha"])
@pytest.mark.parametrize("stop_after", [1, 4, 9])
def test_resume_ends_where_an_uninterrupted_run_would(tmp_path, name, stop_after):
    make = FACTORIES[name]
    reference = Study(PAIR, make(), True, seed=11)
    run(reference, objective)
    first = Study(PAIR, make(), True, seed=11, output_dir=tmp_path)
    for n, trial in enumerate(first, start=1):
        finish(first, trial, objective(trial))
        first.save()
        if n == stop_after:
            break
    resumed = Study.load(tmp_path)
    run(resumed, objective)
    assert fingerprint(resumed) == fingerprint(reference)


def test_repeat_without_agg_refuses_pbt_with_a_clear_error():
    pbt = algorithms.PopulationBasedTraining(population_size=2, num_generations=2)
    with pytest.raises(ConfigurationError, match="PopulationBasedTraining needs agg=True"):
        Repeat(pbt, 2)
    Repeat(algorithms.PopulationBasedTraining(population_size=2, num_generations=2), 2, agg=True)
