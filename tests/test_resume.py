import json
import math

import pandas as pd
import pytest

from poptune import (
    Choice,
    ConfigurationError,
    Continuous,
    Discrete,
    StorageError,
    Study,
    StudyMismatchError,
    StudyNotFoundError,
    TrialStatus,
    algorithms,
)


def objective(trial):
    lr = trial.parameters["learning_rate"]
    return -abs(math.log10(lr) + 3) + 0.01 * (trial.parameters.get("generation") or 0)


def pbt_study(tmp_path=None):
    parameters = [Continuous("learning_rate", [1e-4, 1e-2], "log"), Discrete("batch", [8, 64])]
    algorithm = algorithms.PopulationBasedTraining(
        num_generations=4, population_size=5, resample_probability=0.25
    )
    return Study(parameters, algorithm, lower_is_better=False, seed=42, output_dir=tmp_path)


def step(study, trial):
    study.add_observation(trial, objective(trial), iteration=trial.generation or 1,
                          context={"loss": 1.0})  # fmt: skip
    study.finalize(trial)


def fingerprint(study):
    return [
        (t.id, t.status.value, t.parameters, t.meta,
         [(o.iteration, o.objective, o.context) for o in t.observations.values()])
        for t in study.trials
    ]  # fmt: skip


@pytest.mark.parametrize("stop_after", [3, 5, 7, 12, 19])
def test_resume_mid_generation_ends_where_an_uninterrupted_run_would(tmp_path, stop_after):
    reference = pbt_study()
    for trial in reference:
        step(reference, trial)

    first = pbt_study(tmp_path)
    for n, trial in enumerate(first, start=1):
        step(first, trial)
        first.save()
        if n == stop_after:
            break
    del first

    resumed = Study.load(tmp_path)
    assert len(resumed.trials) == stop_after
    for trial in resumed:
        step(resumed, trial)
    assert fingerprint(resumed) == fingerprint(reference)
    assert resumed.get_best_result() == reference.get_best_result()


def test_resume_random_and_grid_search(tmp_path):
    params = [Continuous("x", [0, 1]), Choice("c", ["a", "b"])]
    for i, algo in enumerate((algorithms.RandomSearch(10), algorithms.GridSearch(3))):
        ref = Study(params, algo, True, seed=1)
        for t in ref:
            ref.add_observation(t, t.parameters["x"])
            ref.finalize(t)
        part = Study(params, type(algo)(**algo.get_config()), True, seed=1)
        for n, t in enumerate(part, 1):
            part.add_observation(t, t.parameters["x"])
            part.finalize(t)
            if n == 4:
                break
        part.save(tmp_path / str(i))
        resumed = Study.load(tmp_path / str(i))
        for t in resumed:
            resumed.add_observation(t, t.parameters["x"])
            resumed.finalize(t)
        assert fingerprint(resumed) == fingerprint(ref)


def test_running_trials_at_save_are_failed_on_load_and_replaced(tmp_path, caplog):
    study = pbt_study(tmp_path)
    gen1 = [study.get_suggestion() for _ in range(5)]
    for t in gen1[:4]:
        step(study, t)
    study.add_observation(gen1[4], 0.5, iteration=1)  # still running, one observation
    study.save()
    resumed = Study.load(tmp_path / "study.json")
    assert "trial(s) [5] were running" in caplog.text
    t5 = resumed.get_trial(5)
    assert t5.status is TrialStatus.FAILED and t5.meta["interrupted"] is True
    assert t5.observations[1].objective == 0.5  # observation kept
    gen2 = []
    for trial in resumed:
        step(resumed, trial)
        if trial.generation == 2:
            gen2.append(trial)
    assert len(gen2) == 5
    assert 5 in {t.meta.get("replaced") for t in gen2}
    assert all(t.parent != 5 for t in gen2)


def test_save_writes_results_csv_and_config(tmp_path):
    study = pbt_study()
    for trial in study:
        step(study, trial)
    out = study.save(tmp_path / "out")
    csv = pd.read_csv(out / "results.csv", keep_default_na=False)
    df = study.results
    assert list(csv.columns) == list(df.columns)
    assert len(csv) == len(df) == 40
    assert csv["Objective"].tolist() == pytest.approx(df["Objective"].tolist())
    data = json.loads((out / "study.json").read_text())
    assert data["format"] == "poptune.study" and data["config"]["seed"] == 42
    assert data["config"]["algorithm"]["type"] == "PopulationBasedTraining"
    assert [p["name"] for p in data["config"]["parameters"]] == ["learning_rate", "batch"]


def test_save_needs_a_directory_and_json_values(tmp_path):
    study = Study([Continuous("x", [0, 1])], algorithms.RandomSearch(2), True)
    with pytest.raises(ConfigurationError, match="save\\(\\) needs a directory"):
        study.save()
    odd = Study([Choice("f", [len, abs])], algorithms.RandomSearch(2), True)
    t = odd.get_suggestion()
    odd.add_observation(t, 1.0)
    with pytest.raises(StorageError, match="cannot be stored as JSON"):
        odd.save(tmp_path)
    assert t.observations[1].objective == 1.0


def test_load_errors(tmp_path):
    with pytest.raises(StudyNotFoundError, match="no saved study at"):
        Study.load(tmp_path / "missing")
    (tmp_path / "study.json").write_text("{not json")
    with pytest.raises(StudyMismatchError, match="not a readable poptune study"):
        Study.load(tmp_path)
    (tmp_path / "study.json").write_text('{"format": "other"}')
    with pytest.raises(StudyMismatchError, match="not a poptune study file"):
        Study.load(tmp_path)
    (tmp_path / "study.json").write_text('{"format": "poptune.study", "version": 99}')
    with pytest.raises(StudyMismatchError, match="format version 99"):
        Study.load(tmp_path)


def test_load_with_a_different_algorithm_extends_pbt(tmp_path):
    study = pbt_study(tmp_path)
    for trial in study:
        step(study, trial)
    study.save()
    longer = algorithms.PopulationBasedTraining(
        num_generations=6, population_size=5, resample_probability=0.25
    )
    resumed = Study.load(tmp_path, algorithm=longer)
    more = []
    for trial in resumed:
        step(resumed, trial)
        more.append(trial)
    assert [t.generation for t in more] == [5] * 5 + [6] * 5


def test_read_results_keeps_pbt_columns_as_text(tmp_path):
    from poptune.results import read_results

    study = pbt_study()
    for trial in study:
        step(study, trial)
    study.save(tmp_path)
    frame = read_results(tmp_path / "results.csv")
    df = study.results
    assert frame["load_from"].tolist() == df["load_from"].tolist()
    assert frame["lineage"].tolist() == df["lineage"].tolist()
    assert frame["save_to"].tolist() == df["save_to"].tolist()
    assert frame["Objective"].tolist() == pytest.approx(df["Objective"].tolist())
    assert frame["batch"].dtype.kind == "i"
