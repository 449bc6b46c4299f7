"""The in-job Client as the TrialContext of its trial, and its reserved context keys."""

import pytest

from poptune import (
    Client,
    ConfigurationError,
    Continuous,
    InvalidObservationError,
    Study,
    algorithms,
)

PARAMS = [Continuous("lr", [1e-4, 1e-2], "log")]


def _job(monkeypatch, tmp_path, algorithm):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = Study(PARAMS, algorithm, True, storage=url, study_name="s", seed=0,
                  heartbeat_interval=None)  # fmt: skip
    trial = study.get_suggestion()
    monkeypatch.setenv("POPTUNE_STORAGE", url)
    monkeypatch.setenv("POPTUNE_STUDY", "s")
    monkeypatch.setenv("POPTUNE_TRIAL_ID", str(trial.id))
    return study, trial, Client()


def test_a_jobs_trial_reports_through_its_client(monkeypatch, tmp_path):
    study, trial, client = _job(monkeypatch, tmp_path, algorithms.RandomSearch(2))
    got = client.get_trial()
    got.report(0.25, loss=0.5)
    got.report(0.2)
    assert [o.objective for o in study.get_trial(trial.id).observations.values()] == [0.25, 0.2]
    assert list(got.observations) == [1, 2]
    assert got.should_stop() is False
    study.request_stop(trial)
    assert got.should_stop() is True
    with pytest.raises(ConfigurationError, match="checkpoint_dir"):
        got.checkpoint_path  # noqa: B018


def test_client_reserves_the_keys_add_observation_reserves(monkeypatch, tmp_path):
    pbt = algorithms.PopulationBasedTraining(2, 2)
    study, trial, client = _job(monkeypatch, tmp_path, pbt)
    got = client.get_trial()
    for key in ("Objective", "lr", "generation", "load_from"):
        with pytest.raises(InvalidObservationError, match="parameter name"):
            study.add_observation(trial, 0.1, context={key: 1})
        with pytest.raises(InvalidObservationError, match="parameter name"):
            client.send_metrics(got, 1, 0.1, context={key: 1})


def test_a_test_mode_trial_reports_too(monkeypatch):
    monkeypatch.delenv("POPTUNE_STORAGE", raising=False)
    trial = Client(test_mode=True, parameters={"lr": 0.1}).get_trial()
    trial.report(0.3)
    assert trial.observations[1].objective == 0.3
