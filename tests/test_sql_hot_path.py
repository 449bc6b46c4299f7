"""The SQL hot path (docs/topics/sql-hot-path.md): SQLite's per-trial statements on kept raw
sqlite3 connections, and a trial's returned value with its final status in one write."""

import sqlite3
import threading

import pytest
import sqlalchemy as sa

from poptune import (
    Continuous,
    DuplicateIterationError,
    Observation,
    Study,
    Trial,
    TrialFinishedError,
    TrialStatus,
    UnknownTrialError,
    algorithms,
)
from poptune.storage.memory import MemoryStorage
from poptune.storage.sql import SQLStorage

from .conftest import make_url

CONFIG = {"parameters": [], "algorithm": {"type": "RandomSearch"}, "lower_is_better": True}


@pytest.fixture(params=["sqlite", "postgres"])
def storage(request, tmp_path):
    sql = SQLStorage(make_url(request.param, tmp_path))
    yield sql
    sql.close()


def _fresh_view(storage, sid):
    other = SQLStorage(storage.url)
    try:
        return {t.id: (t.status, {i: o.objective for i, o in t.observations.items()})
                for t in other.iter_trials(sid)}  # fmt: skip
    finally:
        other.close()


@pytest.mark.parametrize("inside", [False, True], ids=["alone", "in-transaction"])
def test_the_last_observation_and_the_final_status_are_one_change(storage, inside):
    sid = storage.create_study("w", CONFIG)
    storage.insert_trial(sid, Trial(1, {"x": 1}))
    storage.add_observation(sid, 1, Observation(1, 0.5))
    _, before = storage.changes_since(sid, 0)
    version = storage._mirrors.get(sid).db_version

    def write():
        storage.finish_with_observation(sid, 1, Observation(2, 0.25), TrialStatus.COMPLETED)

    if inside:
        with storage.transaction(sid):
            write()
    else:
        write()
    trial = storage.get_trial(sid, 1)
    assert trial.status is TrialStatus.COMPLETED
    assert trial.observations[2].seq == trial.finished_seq  # numbered by one version
    assert storage._mirrors.get(sid).db_version == version + 1  # one locked write
    assert _fresh_view(storage, sid) == {1: (TrialStatus.COMPLETED, {1: 0.5, 2: 0.25})}


def test_a_refused_last_observation_changes_nothing(storage):
    sid = storage.create_study("w", CONFIG)
    storage.insert_trial(sid, Trial(1, {"x": 1}))
    storage.insert_trial(sid, Trial(2, {"x": 2}))
    storage.add_observation(sid, 1, Observation(1, 0.5))
    storage.finish_trial(sid, 2, TrialStatus.FAILED)
    with pytest.raises(DuplicateIterationError):
        storage.finish_with_observation(sid, 1, Observation(1, 0.9), TrialStatus.COMPLETED)
    with pytest.raises(TrialFinishedError):
        storage.finish_with_observation(sid, 2, Observation(1, 0.9), TrialStatus.COMPLETED)
    with pytest.raises(UnknownTrialError):
        storage.finish_with_observation(sid, 7, Observation(1, 0.9), TrialStatus.COMPLETED)
    expected = {1: (TrialStatus.RUNNING, {1: 0.5}), 2: (TrialStatus.FAILED, {})}
    assert _fresh_view(storage, sid) == expected
    storage.changes_since(sid, 0)
    assert {t.id: t.status for t in storage.iter_trials(sid)} == {
        1: TrialStatus.RUNNING, 2: TrialStatus.FAILED
    }  # fmt: skip


def test_memory_storage_records_both_too():
    storage = MemoryStorage()
    sid = storage.create_study("m", CONFIG)
    storage.insert_trial(sid, Trial(1, {"x": 1}))
    storage.finish_with_observation(sid, 1, Observation(3, 0.1), TrialStatus.STOPPED)
    trial = storage.get_trial(sid, 1)
    assert trial.status is TrialStatus.STOPPED and list(trial.observations) == [3]


def test_the_worker_loop_writes_a_returned_value_with_the_final_status(tmp_path):
    storage = SQLStorage(make_url("sqlite", tmp_path))
    study = Study([Continuous("x", [0, 1])], algorithms.RandomSearch(5), True, storage=storage,
                  study_name="loop", heartbeat_interval=None)  # fmt: skip
    calls = []
    finish = storage.finish_with_observation
    storage.finish_with_observation = lambda *a, **k: calls.append(a) or finish(*a, **k)
    study.optimize(lambda t: t.parameters["x"], show_progress=False)
    assert len(calls) == 5
    assert all(t.status is TrialStatus.COMPLETED for t in study.trials)
    assert [t.observations[1].objective for t in study.trials] == [
        t.parameters["x"] for t in study.trials
    ]
    # a bad returned value still fails the trial, and nothing of it is written
    bad = Study([Continuous("x", [0, 1])], algorithms.RandomSearch(1), True, storage=storage,
                study_name="bad", heartbeat_interval=None)  # fmt: skip
    bad.optimize(lambda t: float("nan"), show_progress=False, max_consecutive_failures=None)
    (trial,) = bad.trials
    assert trial.status is TrialStatus.FAILED and not trial.observations
    assert "InvalidObservationError" in trial.meta["error"]
    storage.close()


def test_sqlite_trials_go_through_one_kept_raw_connection(tmp_path):
    """SQLite's per-trial statements skip SQLAlchemy: none reaches the engine, and one
    thread keeps reusing the same sqlite3 connection (its statement cache)."""
    storage = SQLStorage(make_url("sqlite", tmp_path))
    study = Study([Continuous("x", [0, 1])], algorithms.RandomSearch(20), True, storage=storage,
                  study_name="raw", heartbeat_interval=None)  # fmt: skip
    through_engine = []
    sa.event.listen(storage._engine, "before_cursor_execute",
                    lambda *a: through_engine.append(a[2]))  # fmt: skip
    connections = set()
    checkout = storage._fast.checkout

    def spy():
        conn = checkout()
        connections.add(id(conn.dbapi))
        return conn

    storage._fast.checkout = spy
    for trial in study:
        study.add_observation(trial, 0.5)
        study.finalize(trial)
    assert study.history.n_completed == 20
    assert through_engine == [] and len(connections) == 1
    conn = next(iter(storage._fast._idle)).dbapi
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 0  # poptune's own wait
    assert storage._fast.busy_timeout == 10.0  # lock_timeout
    storage.close()
    assert storage._fast._idle == []
    assert study.get_suggestion() is not None  # reopens after close()


def test_sqlite_heartbeat_is_one_statement_and_waits_out_a_busy_database(tmp_path):
    path = tmp_path / "hb.db"
    storage = SQLStorage(f"sqlite:///{path}?lock_timeout=0.1")
    sid = storage.create_study("hb", CONFIG)
    storage.insert_trial(sid, Trial(1, {"x": 1}), worker="w1")
    assert storage.heartbeat(sid, "w1") == 1 and storage.heartbeat(sid, "w2") == 0
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    beats = []
    thread = threading.Thread(target=lambda: beats.append(storage.heartbeat(sid, "w1")))
    thread.start()
    thread.join(0.6)
    assert thread.is_alive() and beats == []  # waiting (tried again), not failed
    blocker.execute("ROLLBACK")
    thread.join(10)
    assert beats == [1] and storage.lock_watch.stats()["timeouts"] >= 1
    blocker.close()
    storage.close()


def test_a_postgres_session_that_lost_its_prepared_statements_is_replaced(tmp_path):
    """psycopg remembers which statements it prepared on a session; when the server's copy is
    gone (an error inside a pipeline can do that; DEALLOCATE here), the next write fails
    with "prepared statement ... does not exist" (26000). The storage replaces that connection
    and runs the write again: no error reaches the worker, nothing is written twice."""
    storage = SQLStorage(make_url("postgres", tmp_path))
    try:
        sid = storage.create_study("prepared", CONFIG)
        for tid in range(1, 9):  # enough executions for every fixed statement to be prepared
            storage.insert_trial(sid, Trial(tid, {"x": tid}))
            storage.add_observation(sid, tid, Observation(1, float(tid)))
        with storage._engine.connect() as conn:  # the pool hands back the last one used (LIFO)
            names = conn.exec_driver_sql("SELECT name FROM pg_prepared_statements").scalars()
            names = list(names)
            for name in names:  # one by one: psycopg would notice DEALLOCATE ALL
                conn.exec_driver_sql(f'DEALLOCATE "{name}"')
            conn.commit()
        assert names  # the fixed statements were prepared on this session
        storage.insert_trial(sid, Trial(9, {"x": 9}))
        storage.finish_with_observation(sid, 9, Observation(1, 9.0), TrialStatus.COMPLETED)
        assert _fresh_view(storage, sid)[9] == (TrialStatus.COMPLETED, {1: 9.0})
        assert len(_fresh_view(storage, sid)) == 9
    finally:
        storage.close()
