"""The storage contract (storage/base.py), run against every storage implementation."""

import os
import threading
import time

import pytest

from poptune import (
    Continuous,
    DuplicateIterationError,
    MemoryStorage,
    NoObservationsError,
    Observation,
    StorageError,
    Study,
    StudyMismatchError,
    StudyNotFoundError,
    Trial,
    TrialFinishedError,
    TrialStatus,
    UnknownTrialError,
    algorithms,
)
from poptune.history import History
from poptune.storage import _postgres
from poptune.storage.sql import SQLStorage

from .conftest import POSTGRES_ENV, make_url

CONFIG = {"parameters": [], "algorithm": {"type": "RandomSearch"}, "lower_is_better": True}


@pytest.fixture(params=["memory", "sqlite", "postgres", "postgres-unpipelined"])
def storage(request, tmp_path, monkeypatch):
    if request.param == "memory":
        yield MemoryStorage()
        return
    if request.param == "postgres-unpipelined":  # what a driver other than psycopg 3 gets
        monkeypatch.setattr(_postgres, "psycopg_with_pipeline", lambda url: None)
    sql = SQLStorage(make_url(request.param.split("-")[0], tmp_path))
    yield sql
    sql.close()


def test_studies_create_find_list_delete(storage):
    a = storage.create_study("a", CONFIG)
    b = storage.create_study("b", {**CONFIG, "seed": 3})
    assert storage.get_study_id("a") == a and storage.get_study_id("b") == b
    assert storage.get_study_config(b)["seed"] == 3
    assert storage.list_studies() == ["a", "b"]
    with pytest.raises(StudyMismatchError, match="'a' already exists"):
        storage.create_study("a", CONFIG)
    storage.delete_study("a")
    assert storage.list_studies() == ["b"]
    with pytest.raises(StudyNotFoundError, match="no study named 'a'"):
        storage.get_study_id("a")
    with pytest.raises(StudyNotFoundError):
        storage.delete_study("a")


def test_dense_ids_and_rejects_others(storage):
    sid = storage.create_study("s", CONFIG)
    storage.insert_trial(sid, Trial(1, {"x": 1}))
    with pytest.raises(StorageError, match="trial id 3 is not the next id 2"):
        storage.insert_trial(sid, Trial(3, {"x": 1}))
    storage.insert_trial(sid, Trial(2, {"x": 2}))
    assert [t.id for t in storage.iter_trials(sid)] == [1, 2]


def test_observations_and_finishing_rules(storage):
    sid = storage.create_study("s", CONFIG)
    storage.insert_trial(sid, Trial(1, {"x": 1}))
    storage.add_observation(sid, 1, Observation(1, 0.5, {"loss": 1.0}))
    with pytest.raises(DuplicateIterationError):
        storage.add_observation(sid, 1, Observation(1, 0.4))
    with pytest.raises(UnknownTrialError, match="trial 2 does not exist"):
        storage.add_observation(sid, 2, Observation(1, 0.4))
    storage.insert_trial(sid, Trial(2, {"x": 2}))
    with pytest.raises(NoObservationsError):
        storage.finish_trial(sid, 2, TrialStatus.COMPLETED)
    storage.finish_trial(sid, 2, TrialStatus.FAILED)
    storage.finish_trial(sid, 1, TrialStatus.COMPLETED)
    with pytest.raises(TrialFinishedError):
        storage.finish_trial(sid, 1, TrialStatus.COMPLETED)
    with pytest.raises(TrialFinishedError):
        storage.add_observation(sid, 1, Observation(2, 0.1))
    t1 = storage.get_trial(sid, 1)
    assert t1.status is TrialStatus.COMPLETED
    assert [(o.iteration, o.objective, o.context) for o in t1.observations.values()] == [
        (1, 0.5, {"loss": 1.0})
    ]
    # sequence numbers order events
    assert 0 < t1.observations[1].seq < storage.get_trial(sid, 2).finished_seq < t1.finished_seq


def test_queue_is_first_in_first_out(storage):
    sid = storage.create_study("s", CONFIG)
    storage.insert_trial(sid, Trial(1, {"x": 1}, TrialStatus.QUEUED))
    storage.insert_trial(sid, Trial(2, {"x": 2}, TrialStatus.RUNNING))
    storage.insert_trial(sid, Trial(3, {"x": 3}, TrialStatus.QUEUED))
    assert storage.claim_queued_trial(sid).id == 1
    assert storage.claim_queued_trial(sid).id == 3
    assert storage.claim_queued_trial(sid) is None
    assert storage.get_trial(sid, 3).status is TrialStatus.RUNNING


def test_changes_since_returns_only_changed_trials(storage):
    sid = storage.create_study("s", CONFIG)
    for i in range(1, 6):
        storage.insert_trial(sid, Trial(i, {"x": i}))
    trials, v1 = storage.changes_since(sid, 0)
    assert [t.id for t in trials] == [1, 2, 3, 4, 5]
    assert storage.changes_since(sid, v1) == ([], v1)
    storage.add_observation(sid, 4, Observation(1, 1.0))
    storage.add_observation(sid, 2, Observation(1, 1.0))
    storage.add_observation(sid, 4, Observation(2, 1.0))
    trials, v2 = storage.changes_since(sid, v1)
    assert sorted(t.id for t in trials) == [2, 4] and v2 > v1


def test_algorithm_state_round_trip(storage):
    sid = storage.create_study("s", CONFIG)
    assert storage.get_algorithm_state(sid) == {}
    storage.set_algorithm_state(sid, {"generation": 2, "plan": [{"a": 1}]})
    assert storage.get_algorithm_state(sid) == {"generation": 2, "plan": [{"a": 1}]}


def test_request_stop(storage):
    sid = storage.create_study("s", CONFIG)
    storage.insert_trial(sid, Trial(1, {"x": 1}))
    storage.request_stop(sid, 1)
    assert storage.get_trial(sid, 1).stop_requested is True


def test_history_indexes_follow_the_storage(storage):
    sid = storage.create_study("s", CONFIG)
    history = History([Continuous("x", [0, 10])], lower_is_better=True)
    storage.insert_trial(sid, Trial(1, {"x": 1, "generation": 1}))
    storage.insert_trial(sid, Trial(2, {"x": 2, "generation": 1}))
    history.sync(storage, sid)
    assert history.n_trials == 2 and history.next_trial_id == 3
    assert [t.id for t in history.unfinished] == [1, 2]
    storage.add_observation(sid, 2, Observation(1, 0.2))
    storage.finish_trial(sid, 2, TrialStatus.COMPLETED)
    storage.finish_trial(sid, 1, TrialStatus.FAILED)
    storage.insert_trial(sid, Trial(3, {"x": 3, "generation": 2}))
    history.sync(storage, sid)
    assert [t.id for t in history.completed] == [2]
    assert [t.id for t in history.unfinished] == [3]
    assert [t.id for t in history.generation(1)] == [1, 2]
    assert history.generations == [1, 2]
    assert history.best_trial().id == 2
    assert history.hyperparameters(history[3]) == {"x": 3}


def _second_handle(storage):
    """Another process's view of the same database (the same object for MemoryStorage)."""
    return SQLStorage(storage.url) if isinstance(storage, SQLStorage) else storage


def test_a_transaction_sees_what_was_committed_while_it_waited_for_the_lock(storage):
    sid = storage.create_study("s", CONFIG)
    other = _second_handle(storage)
    seen = {}

    def waiter():
        with other.transaction(sid):
            trials, _ = other.changes_since(sid, 0)
            seen["ids"] = sorted(t.id for t in trials)
            other.insert_trial(sid, Trial(len(trials) + 1, {"x": 2}))

    with storage.transaction(sid):
        storage.insert_trial(sid, Trial(1, {"x": 1}))
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.3)  # the waiter is blocked on the study's lock by now
        assert "ids" not in seen
    thread.join(30)
    assert seen["ids"] == [1]  # committed after the waiter asked for the lock, before it got it
    assert [t.id for t in storage.iter_trials(sid)] == [1, 2]
    if other is not storage:
        other.close()


def test_a_transaction_reads_its_own_writes(storage):
    sid = storage.create_study("s", CONFIG)
    with storage.transaction(sid):
        storage.insert_trial(sid, Trial(1, {"x": 1}))
        storage.request_stop(sid, 1)  # checks that trial 1 exists: written, not yet committed
        storage.add_observation(sid, 1, Observation(1, 0.5))
    storage.insert_trial(sid, Trial(2, {"x": 2}))
    with storage.transaction(sid):
        storage.add_observation(sid, 2, Observation(1, 0.5))
        storage.finish_trial(sid, 2, TrialStatus.COMPLETED)
        with pytest.raises(TrialFinishedError):
            storage.finish_trial(sid, 2, TrialStatus.FAILED)
        storage.insert_trial(sid, Trial(3, {"x": 3}))
        storage.set_algorithm_state(sid, {"n": 3})
    t1, t2, t3 = storage.iter_trials(sid)
    assert t1.stop_requested and list(t1.observations) == [1]
    assert t2.status is TrialStatus.COMPLETED and t3.parameters == {"x": 3}
    assert storage.get_algorithm_state(sid) == {"n": 3}


def test_an_error_inside_a_transaction_writes_nothing(tmp_path):
    for kind in ("sqlite", "postgres"):
        if kind == "postgres" and not os.environ.get(POSTGRES_ENV):
            continue
        storage = SQLStorage(make_url(kind, tmp_path))
        sid = storage.create_study("s", CONFIG)
        storage.insert_trial(sid, Trial(1, {"x": 1}))
        with pytest.raises(RuntimeError, match="boom"):
            with storage.transaction(sid):
                storage.insert_trial(sid, Trial(2, {"x": 2}))
                storage.request_stop(sid, 1)
                storage.set_algorithm_state(sid, {"n": 2})
                raise RuntimeError("boom")
        fresh = SQLStorage(storage.url)
        assert [(t.id, t.stop_requested) for t in fresh.iter_trials(sid)] == [(1, False)]
        assert fresh.get_algorithm_state(sid) == {}
        storage.insert_trial(sid, Trial(2, {"x": 2}))  # the id was not taken
        fresh.close()
        storage.close()


def test_a_postgres_suggestion_is_two_round_trips(tmp_path):
    """BEGIN + lock + changes in one round trip; the trial, the state and COMMIT in another;
    an observation and a final status one each (and no ping: the connection was just used)."""
    import sqlalchemy as sa

    url = make_url("postgres", tmp_path)
    storage, theirs_storage = SQLStorage(url), SQLStorage(url)
    study = Study([Continuous("x", [0, 1])], algorithms.RandomSearch(20), True, storage=storage,
                  study_name="rt", heartbeat_interval=None)  # fmt: skip
    other = Study([Continuous("x", [0, 1])], algorithms.RandomSearch(20), True,
                  storage=theirs_storage, study_name="rt", heartbeat_interval=None)  # fmt: skip
    trips = []
    sa.event.listen(storage._engine, "before_cursor_execute", lambda *a: trips.append("sql"))
    pipeline = storage._pg.pipeline
    storage._pg.pipeline = lambda *a: trips.append("pipeline") or pipeline(*a)
    pings = []  # per checkout: would it ping (idle too long)?

    def checkout(dbapi_connection, record, proxy):
        idle = time.monotonic() - record.info[_postgres.CHECKED_IN]
        pings.append(idle > _postgres.PING_AFTER_S)
        _postgres.on_checkout(dbapi_connection, record, proxy)

    sa.event.remove(storage._engine, "checkout", _postgres.on_checkout)
    sa.event.listen(storage._engine, "checkout", checkout)
    for _ in range(3):
        theirs = other.get_suggestion()  # another worker's changes, read with the lock
        other.add_observation(theirs, 0.5)
        other.finalize(theirs)
        trips.clear()
        trial = study.get_suggestion()
        assert trips == ["pipeline", "pipeline"]
        study.add_observation(trial, 0.5)
        study.finalize(trial)
        assert len(trips) == 4
        assert theirs.id in {t.id for t in study.history.completed}
    assert pings and not any(pings)
    storage.close()
    theirs_storage.close()


def test_postgres_plans_stay_index_lookups_as_the_study_grows(tmp_path):
    """Statements prepared while the study was tiny must not keep the plans made then: once
    the study has grown past ANALYZE_AT's first size, looking up one trial (an observation,
    a final status) goes through the primary key and reading the changes after a version
    through the version index. Regression: the generic plans made at a few trials looked the
    trial up through the version index, reading every trial of the study each time."""
    url = make_url("postgres", tmp_path)
    storage = SQLStorage(url, engine_kwargs={"pool_size": 1, "max_overflow": 0})
    n = min(_postgres.ANALYZE_AT) + 50
    study = Study([Continuous("x", [0, 1])], algorithms.RandomSearch(n), True, storage=storage,
                  study_name="plans", heartbeat_interval=None)  # fmt: skip
    for trial in study:  # every statement runs > 5 times: psycopg prepares it, PostgreSQL caches
        study.add_observation(trial, 0.5)
        study.finalize(trial)
    sid = study._study_id
    with storage._engine.connect() as conn:  # the pool's only connection: the one used above
        version = conn.exec_driver_sql(
            "SELECT version FROM poptune_studies WHERE study_id = %(sid)s", {"sid": sid}
        ).scalar()
        prepared = dict(
            conn.exec_driver_sql(
                "SELECT statement, name FROM pg_prepared_statements WHERE cardinality("
                "parameter_types) > 0"
            ).all()
        )

        def plan(start: str, args: str) -> str:
            names = [name for sql, name in prepared.items() if start in sql]
            assert len(names) == 1, f"{len(names)} prepared statements with {start!r}: {prepared}"
            rows = conn.exec_driver_sql(f"EXPLAIN EXECUTE {names[0]}({args})").all()
            return "\n".join(r[0] for r in rows)

        locked = "v AS (UPDATE poptune_studies SET version = version + 1 WHERE study_id = $1 "
        add_obs = plan(locked + "RETURNING version) INSERT", f"{sid}, 2, 0.5, NULL, {n}")
        assert "Index Scan using poptune_trials_pkey" in add_obs, add_obs
        finish = plan(locked + "RETURNING version) UPDATE", f"{sid}, 'FAILED', 0.5, NULL, 0, {n}")
        assert "Index Scan using poptune_trials_pkey" in finish, finish
        after = "FROM poptune_trials WHERE study_id = $1 AND version > $2"
        changes = plan("SELECT trial_id, status, parameters, meta, stop_requested, finished_seq "
                       + after, f"{sid}, {version}")  # fmt: skip
        assert "ix_poptune_trials_version" in changes and "Seq Scan" not in changes, changes
    storage.close()


@pytest.mark.parametrize("sync", [False, True])
def test_postgres_observations_skip_the_flush_wait_for_their_own_statement_only(tmp_path, sync):
    """By default an observation's statement commits without waiting for the WAL flush; the
    setting is local to that statement's transaction (the connection, reused for the final
    status and the next suggestion, still waits); sync_observations=True always waits."""
    url = make_url("postgres", tmp_path)
    storage = SQLStorage(url, engine_kwargs={"pool_size": 1, "max_overflow": 0},
                         sync_observations=sync)  # fmt: skip
    study = Study([Continuous("x", [0, 1])], algorithms.RandomSearch(3), True, storage=storage,
                  study_name="flush", heartbeat_interval=None)  # fmt: skip
    sent = []
    write_alone = storage._pg.write_alone
    storage._pg.write_alone = lambda channel, stmt, *a: (
        sent.append(str(stmt)) or write_alone(channel, stmt, *a)
    )
    trial = study.get_suggestion()
    study.add_observation(trial, 0.25, iteration=1)
    assert ("set_config('synchronous_commit', 'off', true)" in sent[-1]) is (not sync)
    with storage._engine.connect() as conn:  # the pool's only connection: the one just used
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    study.finalize(trial)
    other = SQLStorage(url)  # another process's view: the observation is there
    assert [o.objective for o in other.get_trial(study._study_id, trial.id).observations.values()
            ] == [0.25]  # fmt: skip
    other.close()
    storage.close()


def test_threads_sharing_one_study_never_share_a_trial():
    storage = MemoryStorage()
    Study([Continuous("x", [0, 1])], algorithms.RandomSearch(400), True, storage=storage,
          study_name="t", seed=0)  # fmt: skip
    seen: list[int] = []
    lock = threading.Lock()

    def worker():
        study = Study([Continuous("x", [0, 1])], algorithms.RandomSearch(400), True,
                      storage=storage, study_name="t")  # fmt: skip
        for trial in study:
            study.add_observation(trial, trial.parameters["x"])
            study.finalize(trial)
            with lock:
                seen.append(trial.id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 401))
