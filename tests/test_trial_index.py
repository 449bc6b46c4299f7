"""A History bound to a MemoryStorage shares the storage's indexes (no changelog between
them), and the storage still answers ``changes_since`` for every other reader."""

from poptune import Continuous
from poptune.history import History
from poptune.storage import MemoryStorage
from poptune.storage.sql import SQLStorage
from poptune.trial import Observation, Trial, TrialStatus

P = [Continuous("x", [0.0, 1.0])]


def _storage_with(n):
    storage = MemoryStorage()
    sid = storage.create_study("s", {})
    for tid in range(1, n + 1):
        storage.insert_trial(sid, Trial(tid, {"x": tid / 10, "generation": 1 + tid % 2}))
    return storage, sid


def test_a_bound_history_follows_every_change_without_a_sync():
    storage, sid = _storage_with(3)
    history = History(P, True)
    assert history.bind(storage, sid)
    assert history.n_trials == 3 and history.n_unfinished == 3 and history.next_trial_id == 4
    storage.add_observation(sid, 2, Observation(1, 0.5))
    storage.finish_trial(sid, 2, TrialStatus.COMPLETED)
    storage.finish_trial(sid, 3, TrialStatus.FAILED)
    storage.insert_trial(sid, Trial(4, {"x": 0.4}, TrialStatus.QUEUED))
    assert [t.id for t in history.completed] == [2]
    assert [t.id for t in history.unfinished] == [1, 4]
    assert [t.id for t in history.generation(1)] == [2] and history.generations == [1, 2]
    assert history.best_trial().id == 2
    assert history.sync(storage, sid) == [] and history.next_trial_id == 5
    view = history.scoped({})
    assert view.n_trials == 4 and view.completed == history.completed


def test_iterating_a_bound_history_survives_a_trial_added_meanwhile():
    storage, sid = _storage_with(3)
    history = History(P, True)
    history.bind(storage, sid)
    seen = []
    for trial in history:
        seen.append(trial.id)
        if trial.id == 1:
            storage.insert_trial(sid, Trial(4, {"x": 0.4}))
    assert seen == [1, 2, 3] and history.n_trials == 4


def test_changes_since_answers_readers_after_the_log_starts_late():
    storage, sid = _storage_with(3)  # no reader yet: no log kept
    all_trials, version = storage.changes_since(sid, 0)
    assert [t.id for t in all_trials] == [1, 2, 3] and version == 3
    assert storage.changes_since(sid, version) == ([], 3)
    storage.add_observation(sid, 2, Observation(1, 0.5))
    storage.request_stop(sid, 3)
    storage.add_observation(sid, 2, Observation(2, 0.4))
    changed, now = storage.changes_since(sid, version)
    assert [t.id for t in changed] == [2, 3] and now == 6
    # A version from before the log began: every trial (each once), a superset.
    older, _ = storage.changes_since(sid, 1)
    assert [t.id for t in older] == [1, 2, 3]
    # An unbound History (the dashboard's) reads the same through changes_since.
    reader = History(P, True)
    reader.sync(storage, sid)
    storage.finish_trial(sid, 2, TrialStatus.COMPLETED)
    assert [t.id for t in reader.sync(storage, sid)] == [2]
    assert [t.id for t in reader.completed] == [2]


def test_a_database_storage_keeps_no_index(tmp_path):
    storage = SQLStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    sid = storage.create_study("s", {"parameters": [], "algorithm": {}, "lower_is_better": True})
    history = History(P, True)
    assert storage.trial_index(sid) is None and not history.bind(storage, sid)
