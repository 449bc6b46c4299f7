"""The last generation finishes (issue 17): a worker SIGKILLed in the last PBT generation or
among a search's last trials does not leave the study unfinished; the other workers wait,
reap its trial and run its retry or replacement; ``optimize`` warns about the lost worker and
raises only when work is left undone. And no study name becomes a path."""

import json
import logging
import os
import signal
import time
from pathlib import Path

import pytest

from poptune import Continuous, PoptuneError, Study, TrialStatus, algorithms

PARAMS = [Continuous("lr", [1e-3, 1e-1], "log")]
FAST = {"heartbeat_interval": 0.2, "grace_period": 2.0}  # generous: a loaded machine
GENERATIONS, POPULATION = 3, 4


# -- objectives run by worker processes (importable: tests.test_last_generation) --------------
def _die_once(trial) -> None:
    """SIGKILL this process the first time a trial gets here (the marker says which)."""
    marker = Path(os.environ["POPTUNE_TEST_MARKER"])
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(trial.id).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def segment(trial):
    """A PBT segment: JSON 'weights' from load_from, moved by lr, saved to save_to; the first
    trial of the last generation to start kills its worker."""
    weights = 0.0
    if trial.load_from:
        weights = json.loads(Path(trial.load_path).read_text())["w"]
    if trial.generation == GENERATIONS:
        _die_once(trial)
    time.sleep(0.05)
    weights += trial.parameters["lr"] * 10
    Path(trial.checkpoint_path).write_text(json.dumps({"w": weights}))
    trial.report(-abs(weights - 1.0), iteration=trial.generation)


def search_trial(trial):
    """A search trial: trial 10 (of 12) kills its worker the first time."""
    if trial.id == 10:
        _die_once(trial)
    time.sleep(0.05)
    return trial.parameters["lr"]


def always_dies(trial):
    os.kill(os.getpid(), signal.SIGKILL)


# -- checks ---------------------------------------------------------------------------------------
def assert_pbt_complete(study, lost_id):
    trials = study.trials
    assert all(t.is_finished for t in trials), [t.id for t in trials if not t.is_finished]
    lost = study.get_trial(lost_id)
    assert lost.generation == GENERATIONS
    assert lost.status is TrialStatus.FAILED and lost.meta["heartbeat_lost"] is True
    (again,) = [t for t in trials if t.meta.get("retry_of") == lost_id]
    assert again.status is TrialStatus.COMPLETED  # the member's final segment was run
    assert again.member == lost.member and again.load_from == lost.load_from
    for g in range(1, GENERATIONS + 1):  # every generation complete: each member's latest
        for m in range(POPULATION):  # attempt COMPLETED
            attempts = [t for t in trials if t.generation == g and t.member == m]
            assert attempts and attempts[-1].status is TrialStatus.COMPLETED, (g, m)
    assert len(trials) == GENERATIONS * POPULATION + 1


def pbt_study(url, name, **kw):
    return Study(PARAMS, algorithms.PopulationBasedTraining(GENERATIONS, POPULATION), False,
                 storage=url, study_name=name, seed=3, **FAST, **kw)  # fmt: skip


# -- tests ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("retries", [0, 1])
def test_a_worker_killed_in_the_last_pbt_generation(db_url, tmp_path, monkeypatch, caplog,
                                                    retries):  # fmt: skip
    marker = tmp_path / "marker"
    monkeypatch.setenv("POPTUNE_TEST_MARKER", str(marker))
    study = pbt_study(db_url, "last", checkpoint_dir=tmp_path / "ckpt",
                      retry_failed_trials=retries)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="poptune"):
        study.optimize(segment, n_workers=4, show_progress=False)  # returns: the study is done
    assert "1 of 4 worker(s) of study 'last' were lost" in caplog.text
    assert "killed by signal 9" in caplog.text
    assert_pbt_complete(study, int(marker.read_text()))


@pytest.mark.parametrize("retries", [0, 1])
def test_a_worker_killed_among_a_searchs_last_trials(db_url, tmp_path, monkeypatch, caplog,
                                                     retries):  # fmt: skip
    monkeypatch.setenv("POPTUNE_TEST_MARKER", str(tmp_path / "marker"))
    study = Study(PARAMS, algorithms.RandomSearch(12), True, storage=db_url,
                  study_name="search", retry_failed_trials=retries, **FAST)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="poptune"):
        study.optimize(search_trial, n_workers=3, show_progress=False)
    assert "1 of 3 worker(s) of study 'search' were lost" in caplog.text
    trials = study.trials
    assert all(t.is_finished for t in trials)
    lost = study.get_trial(10)
    assert lost.status is TrialStatus.FAILED and lost.meta["heartbeat_lost"] is True
    completed = [t for t in trials if t.status is TrialStatus.COMPLETED]
    if retries:  # 12 of 12: the retry ran
        assert len(trials) == 13 and len(completed) == 12
        assert trials[-1].meta["retry_of"] == 10
    else:  # no retries asked for: the lost trial stays FAILED, nothing is left RUNNING
        assert len(trials) == 12 and len(completed) == 11


def test_a_worker_started_at_once_waits_for_the_lost_trial(db_url, tmp_path, monkeypatch):
    """The issue's case: the dead worker's trial looks alive; a fresh worker must not exit at
    once but wait out the grace period, reap it and run the member's final segment."""
    marker = tmp_path / "marker"
    marker.write_text("none")  # nobody kills itself here
    monkeypatch.setenv("POPTUNE_TEST_MARKER", str(marker))
    ckpt = tmp_path / "ckpt"
    dead = pbt_study(db_url, "fresh", checkpoint_dir=ckpt)
    while True:
        trial = dead.get_suggestion()
        if trial.generation == GENERATIONS:
            break
        segment(trial)
        dead.finalize(trial)
    dead._heartbeat.stop()  # the worker dies holding a trial of the last generation
    fresh = pbt_study(db_url, "fresh", checkpoint_dir=ckpt)
    fresh.optimize(segment, show_progress=False)
    assert_pbt_complete(fresh, trial.id)


def test_optimize_raises_when_work_is_left_undone(tmp_path):
    url = f"sqlite:///{tmp_path / 'dead.db'}"
    study = Study(PARAMS, algorithms.RandomSearch(4), True, storage=url, study_name="dead",
                  **FAST)  # fmt: skip
    with pytest.raises(PoptuneError, match=r"2 worker process\(es\) failed .*killed by signal 9"):
        study.optimize(always_dies, n_workers=2, show_progress=False)


def test_no_study_name_becomes_a_path(tmp_path, monkeypatch, caplog):
    import tempfile

    from tests import objectives

    temp = tmp_path / "a" / "b" / "c" / "d" / "tmp"
    temp.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    study = Study(PARAMS, algorithms.RandomSearch(4), True, study_name="../../../../x/ESCAPED")
    with caplog.at_level(logging.WARNING, logger="poptune"):
        study.optimize(objectives.quadratic, n_workers=2, show_progress=False)
    assert len(study.trials) == 4 and all(t.status == "COMPLETED" for t in study.trials)
    logged = caplog.text.split("temporary SQLite file, ")[1].split(",")[0]
    folder = Path(logged).parent
    assert folder.parent == temp and folder.name.startswith("poptune-")
    assert Path(logged).name == "study.db" and "ESCAPED" not in logged
    outside = [p for p in tmp_path.rglob("*") if temp not in (p, *p.parents)]
    assert all(p.is_dir() and p in temp.parents for p in outside), outside  # nothing escaped
    assert not folder.exists()  # removed once the workers are done (tests/test_shipping.py)
