"""Dead workers (heartbeats), retries, and the schema migration from version 1."""

import logging
import shutil
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import poptune as pt
from poptune import AlgorithmState, ConfigurationError, Continuous, Study, TrialStatus, algorithms
from poptune.storage._schema import METADATA, SCHEMA_VERSION
from poptune.storage.sql import SQLStorage

PARAMS = [Continuous("lr", [1e-4, 1e-2], "log")]
FAST = {"heartbeat_interval": 0.1, "grace_period": 0.5}


def pbt(generations=2, population=3):
    return algorithms.PopulationBasedTraining(generations, population)


def worker(url, **kw):
    return Study(PARAMS, pbt(), False, storage=SQLStorage(url), study_name="hb", **kw)


def finish(study, trial, value=None):
    study.add_observation(trial, value if value is not None else trial.parameters["lr"],
                          iteration=trial.generation or 1)  # fmt: skip
    study.finalize(trial)


def test_a_live_worker_keeps_its_trial(db_url):
    a = worker(db_url, seed=0, **FAST)
    b = worker(db_url, **FAST)
    mine = a.get_suggestion()
    time.sleep(1.0)  # twice the grace period: a's heartbeat thread keeps the trial alive
    for _ in range(2):
        b.get_suggestion()
    assert b.get_trial(mine.id).status is TrialStatus.RUNNING
    assert a._heartbeat.alive


def test_a_dead_workers_trial_fails_and_pbt_replaces_the_member(db_url, caplog):
    a = worker(db_url, seed=0, **FAST)
    b = worker(db_url, **FAST)
    t1 = a.get_suggestion()
    a._heartbeat.stop()  # a dies: no more heartbeats
    others = [b.get_suggestion(), b.get_suggestion()]
    for t in others:
        finish(b, t)
    assert b.get_suggestion() is AlgorithmState.WAIT  # trial 1 looks alive for now
    time.sleep(0.8)
    with caplog.at_level(logging.WARNING, logger="poptune"):
        nxt = b.get_suggestion()
    assert "trial(s) [1] of study 'hb' lost their worker" in caplog.text
    dead = b.get_trial(t1.id)
    assert dead.status is TrialStatus.FAILED and dead.meta["heartbeat_lost"] is True
    assert nxt.generation == 2
    gen2 = [nxt] + [b.get_suggestion() for _ in range(2)]
    assert t1.id in {t.meta.get("replaced") for t in gen2}
    assert all(t.parent != t1.id for t in gen2)
    with pytest.raises(pt.TrialFinishedError):  # the dead worker cannot report any more
        a.add_observation(t1, 0.5)


def test_retry_failed_trials_queues_the_trial_again(db_url):
    a = worker(db_url, seed=0, retry_failed_trials=1, **FAST)
    b = worker(db_url, retry_failed_trials=1, **FAST)
    t1 = a.get_suggestion()
    a._heartbeat.stop()
    for t in (b.get_suggestion(), b.get_suggestion()):
        finish(b, t)
    time.sleep(0.8)
    retry = b.get_suggestion()
    assert retry.id == 4 and retry.meta["retry_of"] == t1.id and retry.meta["attempt"] == 2
    assert retry.parameters["lr"] == t1.parameters["lr"] and retry.member == t1.member
    assert retry.save_to == "4" and retry.generation == 1
    assert b.get_suggestion() is AlgorithmState.WAIT  # generation 1 waits for the retry
    finish(b, retry)
    gen2 = [b.get_suggestion() for _ in range(3)]
    assert [t.generation for t in gen2] == [2, 2, 2]
    assert {int(t.load_from) for t in gen2} <= {2, 3, 4}  # the retry stands for member 0


def test_heartbeat_arguments_are_checked():
    for kwargs, fragment in [
        ({"heartbeat_interval": 0}, "heartbeat_interval must be a number > 0"),
        ({"grace_period": -1}, "grace_period must be a number > 0"),
        ({"heartbeat_interval": 5, "grace_period": 5}, "must be longer than heartbeat_interval"),
        ({"retry_failed_trials": -1}, "retry_failed_trials must be an int >= 0"),
    ]:
        with pytest.raises(ConfigurationError, match=fragment):
            Study(PARAMS, pbt(), False, **kwargs)


def test_memory_studies_do_not_beat():
    study = Study(PARAMS, pbt(), False)
    study.get_suggestion()
    assert study._heartbeat is None


# -- migrations -----------------------------------------------------------------------------
V1_DB = Path(__file__).parent / "data" / "schema_v1.db"


def columns(url):
    engine = sa.create_engine(url)
    inspector = sa.inspect(engine)
    out = {t: sorted(c["name"] for c in inspector.get_columns(t)) for t in METADATA.tables}
    engine.dispose()
    return out


def test_a_database_written_by_schema_version_1_opens_and_continues(tmp_path):
    path = tmp_path / "old.db"
    shutil.copy(V1_DB, path)
    url = f"sqlite:///{path}"
    storage = SQLStorage(url)
    assert storage.schema_version == SCHEMA_VERSION == 3
    expected = {t.name: sorted(c.name for c in t.columns) for t in METADATA.tables.values()}
    assert columns(url) == expected
    assert storage.list_studies() == ["pbt-v1", "random-v1"]

    old = pt.load_study(storage, "random-v1")
    assert [t.status.value for t in old.trials] == ["COMPLETED", "COMPLETED", "FAILED", "COMPLETED"]
    assert old.get_best_result()["Objective"] == 1.0

    study = Study([Continuous("lr", [1e-4, 1e-2], "log"), pt.Discrete("batch", [8, 64])],
                  algorithms.PopulationBasedTraining(3, 3), False, storage=storage,
                  study_name="pbt-v1")  # fmt: skip
    assert study.seed == 11 and len(study.trials) == 5
    running = study.get_trial(5)
    assert running.status is TrialStatus.RUNNING and list(running.observations) == [1]
    study.finalize(running)  # its worker is gone; finish it by hand, then carry on
    for trial in study:
        finish(study, trial)
    assert [len(study.history.generation(g)) for g in (1, 2, 3)] == [3, 3, 3]


def test_a_newer_schema_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    SQLStorage(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE poptune_meta SET value = '99' WHERE key = 'schema_version'")
    engine.dispose()
    with pytest.raises(pt.StorageError, match="schema version 99; this poptune knows up to 3"):
        SQLStorage(url)


def test_a_fresh_worker_reaps_and_retries_a_trial_it_never_saw(db_url):
    a = worker(db_url, seed=0, retry_failed_trials=1, **FAST)
    lost = a.get_suggestion()
    a._heartbeat.stop()
    time.sleep(0.8)
    b = worker(db_url, retry_failed_trials=1, **FAST)  # its first call reaps trial 1
    retry = b.get_suggestion()
    assert b.get_trial(lost.id).status is TrialStatus.FAILED
    assert retry.meta["retry_of"] == lost.id and retry.parameters["lr"] == lost.parameters["lr"]


def test_looking_for_dead_workers_takes_the_lock_only_when_one_is_found(db_url):
    """Every worker looks once per heartbeat interval: with every worker alive, the look is one
    read (no locked transaction, which would queue the workers behind one another)."""
    a = worker(db_url, seed=0, **FAST)
    b = worker(db_url, **FAST)
    storage = b._storage
    mine = a.get_suggestion()
    assert not storage.has_stale_trials(b._study_id, FAST["grace_period"])
    reaped = []
    fail_stale = storage.fail_stale_trials
    storage.fail_stale_trials = lambda *args: reaped.append(args) or fail_stale(*args)
    b._next_recovery = 0.0
    theirs = b.get_suggestion()
    assert reaped == []  # nothing stale: no locked reaping transaction
    a._heartbeat.stop()
    time.sleep(0.8)
    assert storage.has_stale_trials(b._study_id, FAST["grace_period"])
    b._next_recovery = 0.0
    b.get_suggestion()
    assert reaped == [(b._study_id, FAST["grace_period"])]
    assert b.get_trial(mine.id).status is TrialStatus.FAILED
    assert b.get_trial(theirs.id).status is TrialStatus.RUNNING  # b's own heartbeat is alive
    assert not storage.has_stale_trials(b._study_id, FAST["grace_period"])
