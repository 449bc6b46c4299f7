"""The storage contract (storage/base.py), run against every storage implementation."""

import threading

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
from poptune.storage.sql import SQLStorage

from .conftest import make_url

CONFIG = {"parameters": [], "algorithm": {"type": "RandomSearch"}, "lower_is_better": True}


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def storage(request, tmp_path):
    if request.param == "memory":
        yield MemoryStorage()
        return
    sql = SQLStorage(make_url(request.param, tmp_path))
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
