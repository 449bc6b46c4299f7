"""SQLStorage's one write path (storage/sql.py ``_execute_write``): every write reaches the
process's mirror once it commits and never before, whichever way it travels (PostgreSQL's
single statement outside transactions, or in a transaction: sent at once or pipelined)."""

import pytest

from poptune import (
    DuplicateIterationError,
    NoObservationsError,
    Observation,
    Trial,
    TrialFinishedError,
    TrialStatus,
    UnknownTrialError,
)
from poptune.storage import _postgres
from poptune.storage.sql import SQLStorage

from .conftest import make_url

CONFIG = {"parameters": [], "algorithm": {"type": "RandomSearch"}, "lower_is_better": True}


@pytest.fixture(params=["sqlite", "postgres", "postgres-unpipelined"])
def storage(request, tmp_path, monkeypatch):
    if request.param == "postgres-unpipelined":  # what a driver other than psycopg 3 gets
        monkeypatch.setattr(_postgres, "psycopg_with_pipeline", lambda url: None)
    sql = SQLStorage(make_url(request.param.split("-")[0], tmp_path))
    yield sql
    sql.close()


def _seen(storage, sid):
    """What the mirror holds, without reading the database."""
    trials, _ = storage.changes_since(sid, 0, refresh=False)
    return {
        t.id: (t.status, t.stop_requested, {i: o.objective for i, o in t.observations.items()})
        for t in trials
    }


def _database_version(storage, sid):
    other = SQLStorage(storage.url)  # another process's view
    try:
        _, version = other.changes_since(sid, 0)
        return other._mirrors.get(sid).db_version, version
    finally:
        other.close()


def test_writes_in_a_transaction_that_rolls_back_leave_the_mirror_unchanged(storage):
    sid = storage.create_study("w", CONFIG)
    storage.insert_trial(sid, Trial(1, {"x": 1}))
    storage.insert_trial(sid, Trial(2, {"x": 2}))
    before = _seen(storage, sid)
    with pytest.raises(RuntimeError, match="undo"):
        with storage.transaction(sid):
            storage.add_observation(sid, 1, Observation(1, 0.5))
            storage.finish_trial(sid, 1, TrialStatus.COMPLETED)
            storage.request_stop(sid, 2)
            storage.insert_trial(sid, Trial(3, {"x": 3}))
            assert _seen(storage, sid) == before  # not before the commit either
            raise RuntimeError("undo")
    assert _seen(storage, sid) == before
    assert _seen(storage, sid) == {
        1: (TrialStatus.RUNNING, False, {}), 2: (TrialStatus.RUNNING, False, {})
    }  # fmt: skip
    fresh = SQLStorage(storage.url)
    assert _seen(fresh, sid) == {} and fresh.get_trial(sid, 1).observations == {}
    fresh.close()
    storage.insert_trial(sid, Trial(3, {"x": 3}))  # the id was not taken


@pytest.mark.parametrize("inside", [False, True], ids=["alone", "in-transaction"])
def test_a_committed_write_is_applied_to_the_mirror_without_reading_back(storage, inside):
    sid = storage.create_study("w", CONFIG)
    storage.insert_trial(sid, Trial(1, {"x": 1}))
    storage.insert_trial(sid, Trial(2, {"x": 2}))
    storage.insert_trial(sid, Trial(3, {"x": 3}, TrialStatus.QUEUED))
    storage.changes_since(sid, 0)

    def write():
        storage.add_observation(sid, 1, Observation(1, 0.25))
        storage.add_observation(sid, 2, Observation(1, 0.75))
        storage.finish_trial(sid, 2, TrialStatus.COMPLETED)
        storage.request_stop(sid, 1)
        assert storage.claim_queued_trial(sid).id == 3

    if inside:
        with storage.transaction(sid):
            write()
    else:
        write()
    assert _seen(storage, sid) == {
        1: (TrialStatus.RUNNING, True, {1: 0.25}),
        2: (TrialStatus.COMPLETED, False, {1: 0.75}),
        3: (TrialStatus.RUNNING, False, {}),
    }
    # the mirror knows it is complete up to the database's version: nothing is read again
    db_version, _ = _database_version(storage, sid)
    assert storage._mirrors.get(sid).db_version == db_version
    finished = storage.get_trial(sid, 2)
    # (one transaction numbers all its writes with its version)
    assert 0 < finished.observations[1].seq <= finished.finished_seq <= db_version


@pytest.mark.parametrize("inside", [False, True], ids=["alone", "in-transaction"])
def test_refused_writes_raise_why_either_way_and_change_nothing(storage, inside):
    sid = storage.create_study("w", CONFIG)
    storage.insert_trial(sid, Trial(1, {"x": 1}))
    storage.insert_trial(sid, Trial(2, {"x": 2}))
    storage.add_observation(sid, 1, Observation(1, 0.5))
    storage.finish_trial(sid, 1, TrialStatus.COMPLETED)
    before = _seen(storage, sid)
    refused = [
        (lambda: storage.add_observation(sid, 1, Observation(2, 0.1)), TrialFinishedError),
        (lambda: storage.finish_trial(sid, 1, TrialStatus.FAILED), TrialFinishedError),
        (lambda: storage.add_observation(sid, 9, Observation(1, 0.1)), UnknownTrialError),
        (lambda: storage.finish_trial(sid, 9, TrialStatus.FAILED), UnknownTrialError),
        (lambda: storage.finish_trial(sid, 2, TrialStatus.COMPLETED), NoObservationsError),
    ]
    for call, error in refused:
        with pytest.raises(error):
            if inside:
                with storage.transaction(sid):
                    call()
            else:
                call()
    storage.add_observation(sid, 2, Observation(1, 0.5))
    with pytest.raises(DuplicateIterationError):
        if inside:
            with storage.transaction(sid):
                storage.add_observation(sid, 2, Observation(1, 0.9))
        else:
            storage.add_observation(sid, 2, Observation(1, 0.9))
    assert _seen(storage, sid) == {**before, 2: (TrialStatus.RUNNING, False, {1: 0.5})}
    assert _seen(storage, sid) == _seen_fresh(storage, sid)  # the database agrees


def _seen_fresh(storage, sid):
    other = SQLStorage(storage.url)
    try:
        other.changes_since(sid, 0)
        return _seen(other, sid)
    finally:
        other.close()


def test_postgres_writes_outside_transactions_are_single_statements(tmp_path):
    """Outside a transaction an observation and a final status take the single-statement path
    (one round trip each); inside one they join the transaction instead."""
    storage = SQLStorage(make_url("postgres", tmp_path))
    sid = storage.create_study("w", CONFIG)
    storage.insert_trial(sid, Trial(1, {"x": 1}))
    storage.insert_trial(sid, Trial(2, {"x": 2}))
    alone = []
    write_alone = storage._pg.write_alone
    storage._pg.write_alone = lambda channel, stmt, *a: (
        alone.append(stmt) or write_alone(channel, stmt, *a)
    )
    storage.add_observation(sid, 1, Observation(1, 0.5))
    storage.finish_trial(sid, 1, TrialStatus.COMPLETED)
    assert len(alone) == 2
    with storage.transaction(sid):
        storage.add_observation(sid, 2, Observation(1, 0.5))
        storage.finish_trial(sid, 2, TrialStatus.COMPLETED)
    assert len(alone) == 2
    assert _seen(storage, sid) == _seen_fresh(storage, sid)
    storage.close()


def test_sqlite_never_imports_the_postgres_fast_path(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from poptune import Continuous, Study, algorithms\n"
        f"s = Study([Continuous('x', [0, 1])], algorithms.RandomSearch(2), True,\n"
        f"          storage='sqlite:///{tmp_path / 'p.db'}', study_name='p')\n"
        "for t in s:\n"
        "    s.add_observation(t, 0.5); s.finalize(t)\n"
        "print(sorted(m for m in sys.modules if 'postgres' in m or 'psycopg' in m))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
