"""SHERPA's algorithm protocol, both ways (issue 13, item 1), tested the way SHERPA's own suite
exercises algorithms: stand-alone ``get_suggestion`` calls with a hand-built results
DataFrame, and a mocked or user-written algorithm driven by a Study."""

from __future__ import annotations

import math
import random
from unittest import mock

import numpy as np
import pandas as pd
import pytest

import poptune as sherpa
from poptune import AlgorithmState, ConfigurationError, Study, algorithms
from poptune.algorithms.base import SherpaAlgorithm
from poptune.exceptions import ArgumentTypeError
from poptune.history import History
from poptune.results import ResultsTable, history_from_results, results_dataframe
from poptune.study import join_study
from poptune.trial import Observation, Trial, TrialStatus

PARAMS = [
    sherpa.Continuous("lr", [1e-4, 1e-2], "log"),
    sherpa.Discrete("n", [1, 4]),
    sherpa.Choice("act", ["relu", "tanh"]),
]


def completed_table(rows):
    """A hand-built SHERPA results table of COMPLETED rows: (id, lr, n, act, objective)."""
    return pd.DataFrame(
        [
            {"Trial-ID": i, "Status": "COMPLETED", "Iteration": 1, "lr": lr, "n": n,
             "act": act, "Objective": obj}
            for i, lr, n, act, obj in rows
        ]
    )  # fmt: skip


class Counting(algorithms.Algorithm):
    """SHERPA's documented way to write an algorithm: only get_suggestion, state in self."""

    def __init__(self, max_num_trials=4):
        self.max_num_trials = max_num_trials
        self.count = 0
        self.seen = []

    def get_suggestion(self, parameters, results, lower_is_better):
        self.seen.append(results.copy())
        if self.count >= self.max_num_trials:
            return None
        self.count += 1
        return {p.name: p.sample() for p in parameters}


class Duck:
    """Not an Algorithm at all: only the method."""

    def __init__(self):
        self.calls = 0

    def get_suggestion(self, parameters, results=None, lower_is_better=True):
        self.calls += 1
        return None if self.calls > 3 else {"lr": 1e-3, "n": self.calls, "act": "relu"}


def run(study, objective=lambda t: t.parameters["lr"], iterations=1):
    for trial in study:
        for it in range(1, iterations + 1):
            study.add_observation(trial, objective=objective(trial) * it, iteration=it)
        study.finalize(trial)


# -- stand-alone: every built-in algorithm answers get_suggestion -------------------------
def test_random_search_stand_alone_like_sherpa():
    sherpa.rng.seed(0)
    rs = algorithms.RandomSearch(max_num_trials=5)
    configs = [rs.get_suggestion(PARAMS) for _ in range(5)]
    assert all(set(c) == {"lr", "n", "act"} for c in configs)
    assert all(1e-4 <= c["lr"] <= 1e-2 and c["n"] in (1, 2, 3, 4) for c in configs)
    assert len({c["lr"] for c in configs}) == 5
    assert rs.get_suggestion(PARAMS) is None  # SHERPA's answer once done
    # the module-level rng reproduces the calls
    sherpa.rng.seed(0)
    again = algorithms.RandomSearch(max_num_trials=5)
    assert [again.get_suggestion(PARAMS) for _ in range(5)] == configs


def test_grid_search_stand_alone_covers_the_grid_then_none():
    gs = algorithms.GridSearch(num_grid_points=2)
    seen = []
    while (config := gs.get_suggestion(PARAMS)) is not None:
        seen.append((config["lr"], config["n"], config["act"]))
    assert len(seen) == len(set(seen)) == 8
    assert {s[0] for s in seen} == {1e-4, 1e-2} and {s[1] for s in seen} == {1, 4}


def test_iterate_get_parameters_and_get_suggestion():
    hp_iter = [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}, {"a": 1, "b": "y"}]
    alg = algorithms.Iterate(hp_iter)
    parameters = alg.get_parameters()
    assert [(p.name, p.range) for p in parameters] == [("a", [1, 2]), ("b", ["x", "y"])]
    assert all(isinstance(p, sherpa.Choice) for p in parameters)
    assert [alg.get_suggestion(parameters) for _ in range(4)] == [*hp_iter, None]
    study = Study(algorithms.Iterate(hp_iter).get_parameters(), algorithms.Iterate(hp_iter), True)
    assert [t.parameters for t in study] == hp_iter


def test_parameter_sample_without_rng_uses_the_module_rng():
    for p in PARAMS:
        sherpa.rng.seed(3)
        first = [p.sample() for _ in range(5)]
        sherpa.rng.seed(3)
        assert [p.sample() for _ in range(5)] == first
        assert all(p.contains(v) for v in first)
    # a Generator works as before, and a RandomState too
    gen_values = [PARAMS[0].sample(np.random.default_rng(1)) for _ in range(2)]
    assert gen_values[0] == gen_values[1]
    assert PARAMS[1].sample(np.random.RandomState(0)) in (1, 2, 3, 4)


def test_local_search_stand_alone_reads_the_table():
    seed = {"lr": 1e-3, "n": 2, "act": "relu"}
    ls = algorithms.LocalSearch(seed, perturbation_factors=(0.5, 2.0))
    assert ls.get_suggestion(PARAMS, None, True) == seed
    results = completed_table([(1, 1e-3, 2, "relu", 0.5)])
    neighbour = ls.get_suggestion(PARAMS, results, True)
    changed = [k for k in seed if neighbour[k] != seed[k]]
    assert len(changed) == 1  # one parameter at a time around the best configuration
    if changed == ["lr"]:
        assert neighbour["lr"] in (5e-4, 2e-3)


def test_genetic_stand_alone_crosses_top_third_parents():
    rows = [(i, 10 ** -(1 + i % 3), 1 + i % 4, "relu" if i % 2 else "tanh", float(i))
            for i in range(1, 10)]  # fmt: skip
    results = completed_table(rows)
    genetic = algorithms.Genetic(mutation_rate=0.0)
    for _ in range(10):  # trials 10.. of a study whose first nine are in the table
        child = genetic.get_suggestion(PARAMS, results, lower_is_better=True)
        top = {(r[1], r[2], r[3]) for r in rows[:3]}
        assert child["lr"] in {t[0] for t in top} and child["n"] in {t[1] for t in top}


def test_successive_halving_stand_alone_promotes_from_the_table():
    asha = algorithms.SuccessiveHalving(r=1, R=9, eta=3, max_finished_configs=5)
    first = [asha.get_suggestion(PARAMS, None, True) for _ in range(3)]
    assert all(c["resource"] == 1 and c["rung"] == 0 for c in first)
    results = pd.DataFrame(
        [{"Trial-ID": i + 1, "Status": "COMPLETED", "Iteration": 1, **c, "Objective": v}
         for i, (c, v) in enumerate(zip(first, (3.0, 1.0, 2.0), strict=True))]
    )  # fmt: skip
    promoted = asha.get_suggestion(PARAMS, results, True)
    assert promoted["rung"] == 1 and promoted["resource"] == 3
    assert promoted["load_from"] == "2" and promoted["lr"] == first[1]["lr"]


def test_pbt_stand_alone_waits_for_its_generation_then_builds_the_next():
    pbt = algorithms.PopulationBasedTraining(num_generations=2, population_size=5)
    founders = [pbt.get_suggestion(PARAMS) for _ in range(5)]
    assert [f["generation"] for f in founders] == [1] * 5
    assert pbt.get_suggestion(PARAMS) is AlgorithmState.WAIT
    results = pd.DataFrame(
        [{"Trial-ID": i + 1, "Status": "COMPLETED", "Iteration": 1, **f, "Objective": float(i)}
         for i, f in enumerate(founders)]
    )  # fmt: skip
    nxt = [pbt.get_suggestion(PARAMS, results, lower_is_better=True) for _ in range(5)]
    assert [c["generation"] for c in nxt] == [2] * 5
    assert {c["load_from"] for c in nxt} <= {"1", "2", "3", "4", "5"}
    assert pbt.get_suggestion(PARAMS, results, True) is None  # the last generation is out


def test_repeat_and_chain_stand_alone():
    repeat = algorithms.Repeat(algorithms.RandomSearch(2), num_times=3)
    configs = [repeat.get_suggestion(PARAMS) for _ in range(7)]
    assert configs[0] == configs[1] == configs[2] != configs[3] == configs[4] == configs[5]
    assert configs[6] is None
    chain = algorithms.Chain([algorithms.Iterate([{"lr": 1e-3, "n": 1, "act": "relu"}]),
                              algorithms.RandomSearch(1)])  # fmt: skip
    got = [chain.get_suggestion(PARAMS) for _ in range(3)]
    assert got[0] == {"lr": 1e-3, "n": 1, "act": "relu"} and got[1] is not None
    assert got[2] is None


def test_bayesian_stand_alone():
    pytest.importorskip("sklearn")
    bo = algorithms.BayesianOptimization(num_initial_data_points=2, max_num_trials=4,
                                         n_candidates=50)  # fmt: skip
    rows, results = [], None
    for i in range(4):
        config = bo.get_suggestion(PARAMS, results, True)
        assert PARAMS[0].contains(config["lr"])
        rows.append((i + 1, config["lr"], config["n"], config["act"], math.log(config["lr"])))
        results = completed_table(rows)
    assert bo.get_suggestion(PARAMS, results, True) is None


# -- reading SHERPA's table --------------------------------------------------------------
def test_history_from_results_reads_sherpa_rows():
    table = pd.DataFrame(
        [
            {"Trial-ID": 1, "Status": "INTERMEDIATE", "Iteration": 1, "lr": 1e-3, "n": 2.0,
             "act": "relu", "Objective": 0.5, "loss": 1.0},
            {"Trial-ID": 1, "Status": "INTERMEDIATE", "Iteration": 2, "lr": 1e-3, "n": 2.0,
             "act": "relu", "Objective": 0.7, "loss": np.nan},
            {"Trial-ID": 2, "Status": "INTERMEDIATE", "Iteration": 1, "lr": 2e-3, "n": np.nan,
             "act": "tanh", "Objective": 0.1, "loss": 2.0},
            {"Trial-ID": 1, "Status": "COMPLETED", "Iteration": 2, "lr": 1e-3, "n": 2.0,
             "act": "relu", "Objective": 0.5, "loss": 1.0},
            {"Trial-ID": 3, "Status": "FAILED", "Iteration": 4, "lr": 5e-3, "n": 3,
             "act": "tanh", "Objective": 0.9, "loss": np.nan},
        ]
    )  # fmt: skip
    history = history_from_results(table, PARAMS, lower_is_better=True)
    one, two, three = history[1], history[2], history[3]
    assert one.status is TrialStatus.COMPLETED and two.status is TrialStatus.RUNNING
    assert three.status is TrialStatus.FAILED
    # the final row is a status, not an observation, where INTERMEDIATE rows exist
    assert [(o.iteration, o.objective) for o in one.observations.values()] == [(1, 0.5), (2, 0.7)]
    assert one.observations[1].context == {"loss": 1.0} and one.observations[2].context == {}
    assert one.parameters == {"lr": 1e-3, "n": 2, "act": "relu"}
    assert type(one.parameters["n"]) is int  # a Discrete read as float is an int again
    assert "n" not in two.parameters  # an empty cell is left out
    # a trial known only by its final row: that row is its observation
    assert [(o.iteration, o.objective) for o in three.observations.values()] == [(4, 0.9)]
    assert [t.id for t in history.completed] == [1] and history.next_trial_id == 4
    assert history_from_results(None, PARAMS, True).n_trials == 0


def test_results_table_is_the_study_table_and_incremental():
    study = Study(PARAMS, algorithms.RandomSearch(), True, seed=1)
    table = ResultsTable()
    rnd = random.Random(0)
    running, last = [], None
    for step in range(120):
        action = rnd.random()
        if action < 0.4 or not running:
            running.append(study.get_suggestion())
        elif action < 0.8:
            trial = rnd.choice(running)
            study.add_observation(
                trial,
                objective=rnd.random(),
                iteration=len(trial.observations) + 1,
                context={"acc": rnd.random()} if rnd.random() < 0.5 else {},
            )
        else:
            trial = running.pop(rnd.randrange(len(running)))
            status = "FAILED" if rnd.random() < 0.2 else "COMPLETED"
            if status == "COMPLETED" and not trial.observations:
                study.add_observation(trial, objective=1.0)
            study.finalize(trial, status)
        if step % 7 == 0:
            frame = table.frame(study.history)
            expected = results_dataframe(study.history.trials, True)
            pd.testing.assert_frame_equal(frame.reset_index(drop=True), expected)
            if last is not None and len(last) == len(frame):
                assert frame is last  # nothing changed: the same frame
            last = frame
    # a table shown another study's history starts over
    other = Study(PARAMS, algorithms.RandomSearch(1), True, seed=2)
    run(other)
    pd.testing.assert_frame_equal(
        table.frame(other.history), results_dataframe(other.history.trials, True)
    )


# -- a Study runs a SHERPA-style algorithm -----------------------------------------------
def test_a_mocked_algorithm_drives_the_study():
    mock_algorithm = mock.MagicMock()
    mock_algorithm.get_suggestion.return_value = {"lr": 1e-3, "n": 2, "act": "relu"}
    study = Study(PARAMS, mock_algorithm, lower_is_better=True, disable_dashboard=True)
    trial = study.get_suggestion()
    assert trial.id == 1 and trial.parameters == {"lr": 1e-3, "n": 2, "act": "relu"}
    parameters, results, lower = mock_algorithm.get_suggestion.call_args.args
    assert parameters == study.parameters and lower is True
    assert isinstance(results, pd.DataFrame) and len(results) == 0
    assert list(results.columns) == ["Trial-ID", "Status", "Iteration", "act", "lr", "n",
                                     "Objective"]  # fmt: skip
    # SHERPA's own test: study.results is the very table the algorithm was given
    mock_algorithm.get_suggestion.assert_called_with(
        study.parameters, study.results, study.lower_is_better
    )
    study.add_observation(trial, objective=0.3, iteration=1, context={"acc": 0.9})
    study.finalize(trial)
    study.get_suggestion()
    mock_algorithm.get_suggestion.assert_called_with(
        study.parameters, study.results, study.lower_is_better
    )
    results = mock_algorithm.get_suggestion.call_args.args[1]
    assert results["Status"].tolist() == ["INTERMEDIATE", "COMPLETED"]
    pd.testing.assert_frame_equal(study.results, results_dataframe(study.trials, True))
    mock_algorithm.get_suggestion.return_value = AlgorithmState.WAIT
    assert study.get_suggestion() is AlgorithmState.WAIT
    mock_algorithm.get_suggestion.return_value = None
    assert study.get_suggestion() in (None, AlgorithmState.DONE)
    assert isinstance(study.algorithm, SherpaAlgorithm)
    assert study.algorithm.algorithm is mock_algorithm


def test_a_sherpa_style_subclass_runs_and_sees_the_results():
    alg = Counting(max_num_trials=4)
    study = Study(PARAMS, alg, lower_is_better=True, seed=0)
    run(study, iterations=2)
    assert len(study.trials) == 4
    assert [len(r) for r in alg.seen] == [0, 3, 6, 9, 12]  # 2 observations + final row each
    pd.testing.assert_frame_equal(alg.seen[-1], study.results)
    assert study.algorithm.to_config() == {"type": f"{__name__}:Counting", "max_num_trials": 4}
    # seeded: the same trials again, though the algorithm draws from the module-level rng
    again = Study(PARAMS, Counting(max_num_trials=4), lower_is_better=True, seed=0)
    run(again, iterations=2)
    assert [t.parameters for t in again.trials] == [t.parameters for t in study.trials]


def test_a_class_that_implements_neither_method_fails_clearly():
    class Nothing(algorithms.Algorithm):
        pass

    with pytest.raises(TypeError, match="suggest.*get_suggestion"):
        Nothing()
    with pytest.raises(ArgumentTypeError, match="get_suggestion"):
        Study(PARAMS, object(), True)


def test_a_bad_answer_names_get_suggestion():
    class Bad(algorithms.Algorithm):
        def get_suggestion(self, parameters, results, lower_is_better):
            return 42

    with pytest.raises(ConfigurationError, match="Bad.get_suggestion returned 42"):
        Study(PARAMS, Bad(), True).get_suggestion()

    class Partial(algorithms.Algorithm):
        def get_suggestion(self, parameters, results, lower_is_better):
            return {"lr": 1e-3}

    with pytest.raises(ConfigurationError, match="Partial.get_suggestion gave no value"):
        Study(PARAMS, Partial(), True).get_suggestion()


def test_under_repeat_agg_it_sees_the_aggregated_columns():
    alg = Counting(max_num_trials=3)
    study = Study(PARAMS, algorithms.Repeat(alg, num_times=2, agg=True), True, seed=0)
    values = iter([1.0, 3.0, 2.0, 2.0, 5.0, 7.0])
    run(study, objective=lambda t: next(values))
    last = alg.seen[-1]
    completed = last[last["Status"] == "COMPLETED"]
    assert list(completed["Trial-ID"]) == [1, 3, 5]
    assert list(completed["Objective"]) == [2.0, 2.0, 6.0]  # means of the repeats
    assert list(completed["ObjectiveVar"]) == [2.0, 0.0, 2.0]
    assert list(completed["ObjectiveCount"]) == [2, 2, 2]
    assert completed["ObjectiveStdErr"].tolist() == [1.0, 0.0, 1.0]
    assert study.get_best_result()["Objective"] == 2.0


def test_under_chain_and_repeat_without_agg():
    duck = Duck()
    study = Study(PARAMS, algorithms.Chain([algorithms.Repeat(duck, num_times=2),
                                            algorithms.RandomSearch(1)]), True)  # fmt: skip
    run(study)
    assert [t.parameters["n"] for t in study.trials[:6]] == [1, 1, 2, 2, 3, 3]
    assert [t.meta["chain"] for t in study.trials] == [0] * 6 + [1]


@pytest.mark.parametrize("algorithm", ["subclass", "duck"])
def test_on_shared_storage(db_url, algorithm):
    make = (lambda: Counting(max_num_trials=3)) if algorithm == "subclass" else Duck
    study = Study(PARAMS, make(), True, storage=db_url, study_name="s", seed=0)
    trial = study.get_suggestion()
    study.add_observation(trial, objective=0.5)
    study.finalize(trial)
    # another Study object (another worker) joins with an object of the same kind
    other = Study(PARAMS, make(), True, storage=db_url, study_name="s")
    second = other.get_suggestion()
    assert second.id == 2
    seen = study.algorithm.sherpa_results(study.history)
    assert seen is None or isinstance(seen, pd.DataFrame)
    other.add_observation(second, objective=0.25)
    other.finalize(second)
    third = study.get_suggestion()  # the first one's table has the second's rows now
    assert third.id == 3
    assert study.results["Trial-ID"].tolist() == [1, 1, 2, 2]
    if algorithm == "subclass":
        joined = join_study(db_url, "s")
        assert type(joined.algorithm) is Counting
        assert study.algorithm.seen[-1]["Trial-ID"].tolist() == [1, 1, 2, 2]
    else:
        assert other.algorithm.to_config() == {"type": f"{__name__}:Duck"}
        with pytest.raises(ConfigurationError, match="not a poptune"):
            join_study(db_url, "s")
        viewer = sherpa.load_study(db_url, "s")  # read-only: needs no algorithm
        assert [t.id for t in viewer.trials] == [1, 2, 3]


def test_a_duck_typed_study_resumes_with_the_object(tmp_path):
    study = Study(PARAMS, Duck(), True, seed=0)
    first = study.get_suggestion()
    study.add_observation(first, objective=0.5)
    study.finalize(first)
    study.save(tmp_path / "run")
    with pytest.raises(ConfigurationError):
        Study.load(tmp_path / "run")  # the object cannot be rebuilt from the saved config
    resumed = Study.load(tmp_path / "run", algorithm=Duck())
    assert resumed.get_suggestion().id == 2
    assert resumed.results["Trial-ID"].tolist() == [1, 1]


def test_a_table_without_trial_ids_is_refused():
    with pytest.raises(ConfigurationError, match="Trial-ID"):
        algorithms.RandomSearch().get_suggestion(PARAMS, pd.DataFrame({"Objective": [1.0]}))


# -- stopping and the best result as SHERPA defines them --------------------------------
def test_median_stopping_rule_with_a_dataframe():
    study = Study(PARAMS, algorithms.RandomSearch(), True, seed=0)
    trials = [study.get_suggestion() for _ in range(4)]
    curves = {0: [1.0, 0.9, 0.8], 1: [1.0, 0.8, 0.6], 2: [0.9, 0.7], 3: [1.5, 1.4]}
    for k, curve in curves.items():
        for it, value in enumerate(curve, start=1):
            study.add_observation(trials[k], objective=value, iteration=it)
    for k in (0, 1):
        study.finalize(trials[k])
    rule = algorithms.MedianStoppingRule(min_iterations=2, min_trials=1)
    df = study.results
    for trial in trials:
        expected = rule.should_trial_stop(trial, study.history)
        assert rule.should_trial_stop(trial, results=df, lower_is_better=True) is expected
        assert rule.should_trial_stop(trial, df, True) is expected
        assert rule.should_trial_stop(trial.id, results=df, lower_is_better=True) is expected
    assert rule.should_trial_stop(trials[3], results=df, lower_is_better=True) is True
    assert rule.should_trial_stop(trials[2], results=df, lower_is_better=True) is False
    # the other direction flips the answer for the worst trial
    assert rule.should_trial_stop(trials[3], results=df, lower_is_better=False) is False
    assert rule.should_trial_stop(trials[0], results=pd.DataFrame(), lower_is_better=True) is False


def test_get_best_result_under_repeat_without_agg_waits_for_all_repeats():
    study = Study(PARAMS, algorithms.Repeat(algorithms.RandomSearch(2), num_times=3), True)
    trials = [study.get_suggestion() for _ in range(6)]
    for trial, value in zip(trials[:5], (0.1, 5.0, 5.0, 1.0, 1.0), strict=True):
        study.add_observation(trial, objective=value)
        study.finalize(trial)
    best = study.get_best_result()  # the second configuration is not finished yet
    assert best["Trial-ID"] == 1 and best["Objective"] == pytest.approx(10.1 / 3)
    assert best["ObjectiveCount"] == 3
    study.add_observation(trials[5], objective=1.0)
    study.finalize(trials[5])
    best = study.get_best_result()
    assert best["Trial-ID"] == 4 and best["Objective"] == 1.0 and best["ObjectiveVar"] == 0.0
    fresh = Study(PARAMS, algorithms.Repeat(algorithms.RandomSearch(1), num_times=2), True)
    first = fresh.get_suggestion()
    fresh.add_observation(first, objective=0.0)
    fresh.finalize(first)
    assert fresh.get_best_result() == {}  # nothing until a configuration's repeats finished


def test_legacy_agg_false_state_is_ranked_from_the_meta():
    study = Study(PARAMS, algorithms.Repeat(algorithms.RandomSearch(3), num_times=2), True)
    trials = [study.get_suggestion() for _ in range(4)]
    for trial, value in zip(trials, (0.0, 4.0, 1.0, 1.0), strict=True):
        study.add_observation(trial, objective=value)
        study.finalize(trial)
    state = {"groups": [[3, 4]], "inner": {"n": 2}}  # as a state stored before issue 13
    from poptune.results import best_trial

    best = best_trial(study.history, state, study.algorithm.to_config())
    assert best is not None and best.id == 3


def test_history_built_by_hand_matches_the_study_view():
    history = History(PARAMS, True)
    trial = Trial(1, {"lr": 1e-3, "n": 1, "act": "relu"}, TrialStatus.COMPLETED)
    trial._record(Observation(1, 0.5, {}, 1))
    trial.finished_seq = 2
    history._index(trial)
    history.next_trial_id = 2
    frame = ResultsTable().frame(history)
    assert frame["Status"].tolist() == ["INTERMEDIATE", "COMPLETED"]
