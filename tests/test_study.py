import logging
import math

import numpy as np
import pandas as pd
import pytest

import poptune as pt
from poptune import (
    AlgorithmState,
    Choice,
    ConfigurationError,
    Continuous,
    Discrete,
    DuplicateIterationError,
    InvalidObservationError,
    InvalidParameterError,
    InvalidStatusError,
    NoObservationsError,
    Study,
    Trial,
    TrialFinishedError,
    TrialStatus,
    UnknownTrialError,
    algorithms,
)

PARAMS = [
    Continuous("lr", [1e-4, 1e-1], "log"),
    Discrete("units", [8, 64]),
    Choice("act", ["relu", "tanh"]),
]


def make_study(n=10, lower_is_better=True, **kw):
    return Study(PARAMS, algorithms.RandomSearch(n), lower_is_better=lower_is_better, seed=0, **kw)


def run_all(study, objective=lambda t: t.parameters["lr"], iterations=(1,)):
    for trial in study:
        for it in iterations:
            study.add_observation(trial, objective(t=trial) * it, iteration=it)
        study.finalize(trial)


def snapshot(study):
    return [
        (t.id, t.status, dict(t.parameters), list(t.observations.values())) for t in study.trials
    ]


# -- construction --------------------------------------------------------------------------
def test_sherpa_positional_signature_and_loop():
    study = Study(PARAMS, algorithms.RandomSearch(5), True)
    ids = []
    for trial in study:
        assert set(trial.parameters) == {"lr", "units", "act"}
        assert 1e-4 <= trial.parameters["lr"] <= 1e-1
        study.add_observation(trial=trial, iteration=1, objective=0.5, context={"loss": 0.1})
        study.finalize(trial=trial)
        ids.append(trial.id)
    assert ids == [1, 2, 3, 4, 5]
    assert study.get_suggestion() is AlgorithmState.DONE
    assert AlgorithmState.DONE == "DONE"


def test_duplicate_parameter_names_rejected():
    with pytest.raises(InvalidParameterError, match="duplicate parameter name 'lr'"):
        Study([Continuous("lr", [0, 1]), Discrete("lr", [1, 2])], algorithms.RandomSearch(), True)


def test_reserved_parameter_names_rejected():
    with pytest.raises(InvalidParameterError, match="'Objective' is reserved"):
        Study([Continuous("Objective", [0, 1])], algorithms.RandomSearch(), True)
    with pytest.raises(ConfigurationError, match=r"rename the parameter\(s\) \['generation'\]"):
        Study(
            [Discrete("generation", [1, 3])],
            algorithms.PopulationBasedTraining(num_generations=2, population_size=2),
            True,
        )


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"algorithm": "random"}, "algorithm must be"),
        ({"lower_is_better": "yes"}, "lower_is_better must be True or False, got 'yes'"),
        ({"seed": -1}, "seed must be an int >= 0"),
        ({"seed": 1.5}, "seed must be an int >= 0"),
        ({"stopping_rule": 3}, "stopping_rule must be"),
        ({"study_name": ""}, "study_name"),
        ({"storage": "redis://x"}, "unsupported database .redis."),
        ({"storage": "runs.db"}, "unknown storage .runs.db."),
        ({"storage": 3}, "unknown storage 3"),
    ],
)
def test_bad_study_arguments(kwargs, fragment):
    args = {"parameters": PARAMS, "algorithm": algorithms.RandomSearch(), "lower_is_better": True}
    args.update(kwargs)
    with pytest.raises(ConfigurationError, match=fragment):
        Study(**args)


def test_parameters_must_be_parameter_objects():
    with pytest.raises(InvalidParameterError, match="Parameter objects"):
        Study([{"name": "lr"}], algorithms.RandomSearch(), True)


def test_disable_dashboard_ignores_the_port(caplog):
    with caplog.at_level(logging.WARNING, logger="poptune"):
        study = Study(PARAMS, algorithms.RandomSearch(), True, dashboard_port=0,
                      disable_dashboard=True)  # fmt: skip
    assert study.dashboard_url is None and caplog.text == ""


# -- reproducibility ---------------------------------------------------------------------------
def test_same_seed_same_trials_different_seed_different_trials():
    def params(seed):
        s = Study(PARAMS, algorithms.RandomSearch(20), True, seed=seed)
        run_all(s)
        return [t.parameters for t in s.trials]

    assert params(7) == params(7)
    assert params(7) != params(8)


def test_module_rng_makes_unseeded_studies_reproducible():
    def params():
        s = Study(PARAMS, algorithms.RandomSearch(5), True)
        run_all(s)
        return [t.parameters for t in s.trials]

    pt.rng.seed(123)
    a = params()
    pt.rng.seed(123)
    assert params() == a


# -- observations: bad input changes nothing --------------------------------------------------
@pytest.mark.parametrize(
    "objective, fragment",
    [
        (float("nan"), "finite number, got nan"),
        (float("inf"), "finite number, got inf"),
        (-np.inf, "finite number, got -inf"),
        ("0.9", "finite number, got '0.9'"),
        (None, "got None"),
        (True, "got True"),
        ([0.9], "got [0.9]"),
    ],
)
def test_bad_objective_rejected_and_nothing_recorded(objective, fragment):
    study = make_study()
    trial = study.get_suggestion()
    study.add_observation(trial, 0.5, iteration=1)
    before = snapshot(study)
    with pytest.raises(InvalidObservationError) as info:
        study.add_observation(trial, objective, iteration=2)
    assert fragment in str(info.value)
    assert f"trial {trial.id}" in str(info.value)
    assert snapshot(study) == before


def test_numeric_objectives_of_other_types_are_accepted():
    study = make_study()
    trial = study.get_suggestion()
    study.add_observation(trial, np.float32(0.5), iteration=1)
    study.add_observation(trial, 2, iteration=2)
    study.add_observation(trial, np.array(0.25), iteration=np.int64(3))
    assert [type(o.objective) for o in trial.observations.values()] == [float] * 3
    assert [o.iteration for o in trial.observations.values()] == [1, 2, 3]


def test_bad_iteration_and_duplicate_iteration():
    study = make_study()
    trial = study.get_suggestion()
    study.add_observation(trial, 0.1, iteration=1)
    before = snapshot(study)
    with pytest.raises(DuplicateIterationError, match="already has an observation at iteration 1"):
        study.add_observation(trial, 0.2, iteration=1)
    with pytest.raises(InvalidObservationError, match="iteration must be an int, got 1.5"):
        study.add_observation(trial, 0.2, iteration=1.5)
    with pytest.raises(InvalidObservationError, match="iteration must be an int"):
        study.add_observation(trial, 0.2, iteration="2")
    assert snapshot(study) == before
    assert trial.observations[1].objective == 0.1


def test_bad_context_rejected():
    study = make_study()
    trial = study.get_suggestion()
    for context, fragment in [
        ({"loss": [1, 2]}, "context['loss'] must be a str, number"),
        ({3: 1.0}, "context keys must be str"),
        ({"Objective": 1.0}, "context key 'Objective'"),
        ({"lr": 1.0}, "context key 'lr'"),
        ("loss", "context must be a dict"),
    ]:
        with pytest.raises(InvalidObservationError, match=fragment.replace("[", r"\[")):
            study.add_observation(trial, 0.5, context=context)
    assert trial.observations == {}
    study.add_observation(trial, 0.5, context={"loss": np.float64(0.25), "note": "ok", "n": None})
    ctx = trial.observations[1].context
    assert ctx == {"loss": 0.25, "note": "ok", "n": None} and type(ctx["loss"]) is float


def test_unknown_and_finalized_trials():
    study = make_study()
    trial = study.get_suggestion()
    with pytest.raises(UnknownTrialError, match="trial 99 does not exist"):
        study.add_observation(99, 0.5)
    with pytest.raises(KeyError):
        study.finalize(99)
    with pytest.raises(UnknownTrialError, match="expected a Trial or a trial id"):
        study.add_observation("1", 0.5)
    study.add_observation(trial, 0.5)
    study.finalize(trial)
    before = snapshot(study)
    with pytest.raises(TrialFinishedError, match="already finalized with status COMPLETED"):
        study.add_observation(trial, 0.6, iteration=2)
    with pytest.raises(TrialFinishedError):
        study.finalize(trial, "FAILED")
    assert snapshot(study) == before


def test_trial_missing_a_study_parameter_is_rejected():
    study = make_study()
    study.get_suggestion()
    with pytest.raises(InvalidObservationError, match="no value for study parameter 'units'"):
        study.add_observation(Trial(1, {"lr": 0.01, "act": "relu"}), 0.5)


def test_finalize_status_rules():
    study = make_study()
    t1, t2, t3, t4 = (study.get_suggestion() for _ in range(4))
    with pytest.raises(InvalidStatusError, match="unknown final status 'DONE'"):
        study.finalize(t1, "DONE")
    with pytest.raises(InvalidStatusError, match="INTERMEDIATE"):
        study.finalize(t1, TrialStatus.INTERMEDIATE)
    with pytest.raises(NoObservationsError, match="trial 1 has no observation"):
        study.finalize(t1)
    assert t1.status is TrialStatus.RUNNING
    study.finalize(t2, "FAILED")  # a crash before any metric
    study.add_observation(t3, 0.3)
    study.finalize(t3, TrialStatus.STOPPED)
    study.add_observation(t4, 0.4)
    study.finalize(t4, "COMPLETED")
    assert [t.status for t in study.trials] == ["RUNNING", "FAILED", "STOPPED", "COMPLETED"]


# -- results and best result ---------------------------------------------------------------------
def test_results_dataframe_columns_and_rows():
    study = make_study(n=3)
    t1 = study.get_suggestion()
    study.add_observation(t1, 0.5, iteration=1, context={"loss": 1.0})
    study.add_observation(t1, 0.3, iteration=2, context={"loss": 0.8, "acc": 0.7})
    t2 = study.get_suggestion()
    study.add_observation(t2, 0.9, iteration=1)
    study.add_observation(t1, 0.4, iteration=3, context={"loss": 0.7})
    study.finalize(t1)
    study.finalize(t2, "FAILED")
    t3 = study.get_suggestion()
    study.finalize(t3, "FAILED")
    df = study.results
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == [
        "Trial-ID", "Status", "Iteration", "act", "lr", "units", "Objective", "acc", "loss",
    ]  # fmt: skip
    assert df["Trial-ID"].tolist() == [1, 1, 2, 1, 1, 2, 3]  # event order
    assert df["Status"].tolist() == ["INTERMEDIATE"] * 4 + ["COMPLETED", "FAILED", "FAILED"]
    final = df[df["Status"] == "COMPLETED"].iloc[0]
    # best objective (minimizing) with its context, at the trial's highest iteration
    assert (final["Objective"], final["loss"], final["acc"], final["Iteration"]) == (
        0.3,
        0.8,
        0.7,
        3,
    )
    failed_empty = df.iloc[-1]
    assert failed_empty["Iteration"] == 0 and math.isnan(failed_empty["Objective"])
    assert df.loc[0, "lr"] == t1.parameters["lr"]
    assert study.results.query("Status == 'COMPLETED'")["Trial-ID"].tolist() == [1]


def test_results_of_empty_study():
    df = make_study().results
    assert len(df) == 0
    assert list(df.columns) == ["Trial-ID", "Status", "Iteration", "Objective"]


@pytest.mark.parametrize("lower_is_better, expected", [(True, 0.1), (False, 0.9)])
def test_best_result_only_counts_completed_trials(lower_is_better, expected):
    study = make_study(lower_is_better=lower_is_better)
    assert study.get_best_result() == {}
    a, b, c = (study.get_suggestion() for _ in range(3))
    study.add_observation(a, 0.5, iteration=1, context={"loss": 5.0})
    study.add_observation(a, expected, iteration=2, context={"loss": 1.0})
    study.finalize(a)
    study.add_observation(b, 0.5)
    study.finalize(b)
    # FAILED and running trials hold better values but do not count (SHERPA counted them)
    study.add_observation(c, -100.0 if lower_is_better else 100.0)
    assert study.get_best_result()["Trial-ID"] == 1
    study.finalize(c, "FAILED")
    best = study.get_best_result()
    assert best == {
        "Trial-ID": 1,
        "Iteration": 2,
        "lr": a.parameters["lr"],
        "units": a.parameters["units"],
        "act": a.parameters["act"],
        "Objective": expected,
        "loss": 1.0,
    }


# -- add_trial --------------------------------------------------------------------------------
def test_add_trial_gets_a_fresh_id_and_comes_first():
    study = make_study(n=3)
    t1 = study.get_suggestion()
    queued = study.add_trial(Trial(id=1, parameters={"lr": 0.01, "units": 16, "act": "tanh"}))
    assert queued.id == 2 and queued.status is TrialStatus.QUEUED
    nxt = study.get_suggestion()
    assert nxt.id == 2 and nxt.parameters == {"lr": 0.01, "units": 16, "act": "tanh"}
    assert nxt.status is TrialStatus.RUNNING
    assert study.get_suggestion().id == 3 and t1.id == 1


def test_add_trial_validates_values():
    study = make_study()
    with pytest.raises(InvalidParameterError, match="no value for parameter 'act'"):
        study.add_trial({"lr": 0.01, "units": 16})
    with pytest.raises(InvalidParameterError, match="outside its range"):
        study.add_trial({"lr": 5.0, "units": 16, "act": "relu"})
    with pytest.raises(InvalidParameterError, match="not one of"):
        study.add_trial({"lr": 0.01, "units": 16, "act": "gelu"})
    assert study.trials == []


# -- loop and WAIT ---------------------------------------------------------------------------
def test_loop_ends_with_a_warning_when_own_trials_are_not_finalized(caplog):
    algorithm = algorithms.PopulationBasedTraining(num_generations=2, population_size=2)
    study = Study([Continuous("lr", [0.1, 1])], algorithm, True, seed=0)
    seen = []
    with caplog.at_level(logging.WARNING, logger="poptune"):
        for trial in study:
            seen.append(trial.id)  # never finalized
    assert seen == [1, 2]
    assert "trial(s) [1, 2]" in caplog.text and "never finalized" in caplog.text


def test_loop_waits_for_trials_running_in_another_thread():
    import threading

    algorithm = algorithms.PopulationBasedTraining(num_generations=2, population_size=2)
    study = Study([Continuous("lr", [0.1, 1])], algorithm, True, seed=0)
    other = study.get_suggestion()  # handed out "elsewhere"

    def finish_later():
        import time

        time.sleep(0.2)
        study.add_observation(other, 0.5)
        study.finalize(other)

    thread = threading.Thread(target=finish_later)
    thread.start()
    seen = []
    for trial in study:
        seen.append(trial.id)
        study.add_observation(trial, 0.1)
        study.finalize(trial)
    thread.join()
    assert seen == [2, 3, 4]  # waited for trial 1, then generation 2


def test_should_trial_stop_and_request_stop():
    class StopAfterTwo(pt.StoppingRule):
        def should_trial_stop(self, trial, history):
            return len(trial.observations) >= 2

    study = make_study(stopping_rule=StopAfterTwo())
    trial = study.get_suggestion()
    study.add_observation(trial, 0.5, iteration=1)
    assert study.should_trial_stop(trial) is False
    study.add_observation(trial, 0.4, iteration=2)
    assert study.should_trial_stop(trial) is True
    other = study.get_suggestion()
    assert make_study().should_trial_stop is not None
    plain = make_study()
    t = plain.get_suggestion()
    assert plain.should_trial_stop(t) is False
    plain.request_stop(t)
    assert plain.should_trial_stop(t.id) is True
    with pytest.raises(UnknownTrialError):
        study.should_trial_stop(42)
    assert other.id == 2


def test_algorithm_returning_garbage_is_a_clear_error():
    class Broken(algorithms.Algorithm):
        def suggest(self, history, rng):
            return 42

    class Missing(algorithms.Algorithm):
        def suggest(self, history, rng):
            return {"lr": 0.5}

    with pytest.raises(ConfigurationError, match="Broken.suggest returned 42"):
        Study(PARAMS, Broken(), True).get_suggestion()
    with pytest.raises(ConfigurationError, match="gave no value for parameter 'units'"):
        Study(PARAMS, Missing(), True).get_suggestion()


def test_shared_memory_storage_joins_by_name_and_checks_config():
    storage = pt.MemoryStorage()
    a = Study(PARAMS, algorithms.RandomSearch(4), True, storage=storage, study_name="s", seed=3)
    b = Study(PARAMS, algorithms.RandomSearch(4), True, storage=storage, study_name="s")
    assert b.seed == 3
    t = a.get_suggestion()
    assert b.get_suggestion().id == t.id + 1  # one id sequence, one algorithm state
    with pytest.raises(pt.StudyMismatchError, match="different algorithm"):
        Study(PARAMS, algorithms.RandomSearch(5), True, storage=storage, study_name="s")
    with pytest.raises(pt.StudyMismatchError, match="different lower_is_better"):
        Study(PARAMS, algorithms.RandomSearch(4), False, storage=storage, study_name="s")
    with pytest.raises(pt.StudyMismatchError, match="different parameters"):
        Study(PARAMS[:2], algorithms.RandomSearch(4), True, storage=storage, study_name="s")
