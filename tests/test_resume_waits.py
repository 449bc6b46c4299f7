"""Resume means resume (issue 18 §5, the rest): a resumed study says which stale trials it waits
for and until when, and a finished study run again with n_workers>1 returns without starting
any worker process."""

from __future__ import annotations

import logging

import pytest

from poptune import Continuous, Study, TrialStatus, algorithms
from poptune.study import _optimize

from . import objectives

PARAMS = [Continuous("lr", [1e-4, 1e-2], "log")]
SLOW_GRACE = {"heartbeat_interval": 0.5, "grace_period": 4.0}  # wide window on a loaded machine


def study_on(url, name="s", n=3, **kw):
    return Study(PARAMS, algorithms.RandomSearch(n), True, seed=0, storage=url, study_name=name,
                 **kw)  # fmt: skip


def killed_run(url, n=3):
    """A run whose worker died (SIGKILL) holding trial 1: RUNNING, no more heartbeats."""
    dead = study_on(url, n=n, **SLOW_GRACE)
    trial = dead.get_suggestion()
    dead._heartbeat.stop()
    return trial


@pytest.mark.parametrize("retries", [0, 1])
def test_a_resumed_study_says_what_it_waits_for_and_until_when(tmp_path, caplog, retries):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    lost = killed_run(url)
    study = study_on(url, retry_failed_trials=retries, **SLOW_GRACE)
    with caplog.at_level(logging.WARNING, logger="poptune"):
        study.optimize(objectives.quadratic, show_progress=False)
    messages = [r.getMessage() for r in caplog.records]
    (notice,) = [m for m in messages if "This worker waits for them" in m]
    assert f"trial(s) [{lost.id}] are RUNNING in another worker" in notice
    assert "sent no heartbeat for over 1 s" in notice
    assert "grace_period=4 s is marked FAILED then" in notice
    assert "poptune fail-stale" in notice
    reaped = [i for i, m in enumerate(messages) if "lost their worker" in m]
    assert reaped and reaped[0] > messages.index(notice)  # said before, done after grace
    statuses = [t.status for t in study.trials]
    assert study.get_trial(lost.id).status is TrialStatus.FAILED
    if retries:
        assert "queued again (retry_failed_trials=1)" in notice
        assert statuses.count(TrialStatus.COMPLETED) == 3  # the lost trial ran again
    else:
        assert "pass retry_failed_trials=1" in notice
        assert statuses.count(TrialStatus.COMPLETED) == 2


def test_live_workers_are_not_announced(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    other = study_on(url, n=2, **SLOW_GRACE)
    held = other.get_suggestion()  # alive: its heartbeat goes on
    study = study_on(url, n=2, **SLOW_GRACE)
    with caplog.at_level(logging.WARNING, logger="poptune"):
        study.optimize(objectives.quadratic, show_progress=False, timeout=2.5)
    assert "This worker waits for them" not in caplog.text
    other.add_observation(held, 1.0)
    other.finalize(held)


# -- a finished study run again ----------------------------------------------------------------
def test_a_finished_study_rerun_with_workers_starts_no_process(tmp_path, monkeypatch, caplog):
    url = f"sqlite:///{tmp_path / 'done.db'}"
    study_on(url, n=4).optimize(objectives.quadratic, n_workers=2, show_progress=False)
    started = []
    monkeypatch.setattr(_optimize, "_run_processes", lambda *a, **k: started.append(a))
    again = study_on(url, n=4)
    state = again._storage.get_algorithm_state(again._study_id)
    with caplog.at_level(logging.INFO, logger="poptune"):
        again.optimize(objectives.quadratic, n_workers=4, show_progress=False)
    assert started == []  # no worker process was spawned
    assert "is done; no worker started" in caplog.text
    # the look changed nothing: nothing inserted, the algorithm's state as it was
    assert len(again.trials) == 4
    assert again._storage.get_algorithm_state(again._study_id) == state


def test_a_study_with_work_left_still_starts_its_workers(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'left.db'}"
    study_on(url, n=6).optimize(objectives.quadratic, n_trials=2, show_progress=False)
    started = []
    real = _optimize._run_processes

    def spy(*args, **kwargs):
        started.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(_optimize, "_run_processes", spy)
    again = study_on(url, n=6)
    again.optimize(objectives.quadratic, n_workers=2, show_progress=False)
    assert started == [2] and len(again.trials) == 6
    assert all(t.status is TrialStatus.COMPLETED for t in again.trials)


def test_the_look_leaves_a_memory_study_untouched(monkeypatch):
    study = Study(PARAMS, algorithms.GridSearch(num_grid_points=2), True, seed=0)
    study.optimize(objectives.quadratic, show_progress=False)
    state = study._storage.get_algorithm_state(study._study_id)
    no_copy = lambda self: pytest.fail("copied the study")  # noqa: E731
    monkeypatch.setattr(_optimize.TemporaryHome, "url", no_copy)
    study.optimize(objectives.quadratic, n_workers=2, show_progress=False)
    assert study._storage.get_algorithm_state(study._study_id) == state
    assert len(study.trials) == 2
