"""PostgreSQL, ``study.optimize``'s worker loop: a trial's final write and the next
suggestion's lock travel in one round trip (``Postgres.finish_then_lock``), the final in a
transaction of its own, the suggestion's kept open for it. These tests hold it to that: two
round trips a trial, the final committed before the next lock, nothing held once the loop
ends, a callback that writes while it is held, and the faults (a lost answer after the final
committed, a loss before it did, a refused final, every connection terminated under four
worker processes)."""

from __future__ import annotations

import json
import textwrap
import time

import pytest
import sqlalchemy as sa

import poptune as pt
from poptune import Continuous, Study, TrialStatus, algorithms
from poptune.storage._postgres import Postgres
from poptune.storage._statements import DIALECTS, PG_FINISH_OBS
from poptune.storage.sql import SQLStorage
from poptune.study.callbacks import StudyCallback

from .conftest import forget_storages, make_url
from .test_reconnect import _lost, run_workers_terminating

PARAMS = [Continuous("x", [0.0, 1.0])]


@pytest.fixture
def pg_url(tmp_path):
    yield make_url("postgres", tmp_path)
    forget_storages()


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                            poolclass=sa.pool.NullPool)  # fmt: skip


def _study(url: str, n: int, **kwargs) -> Study:
    return Study(PARAMS, algorithms.RandomSearch(n), True, storage=SQLStorage(url),
                 study_name="chain", seed=0, heartbeat_interval=None, **kwargs)  # fmt: skip


def _rows(url: str, name: str = "chain") -> tuple[dict[int, str], dict[int, int]]:
    """Each trial's status and number of observations, read on a connection of its own."""
    engine = _engine(url)
    study = "(SELECT study_id FROM poptune_studies WHERE name = :name)"
    with engine.connect() as conn:
        status = dict(conn.execute(sa.text(
            f"SELECT trial_id, status FROM poptune_trials WHERE study_id = {study}"),
            {"name": name}).all())  # fmt: skip
        obs = dict(conn.execute(sa.text(
            f"SELECT trial_id, count(*) FROM poptune_observations WHERE study_id = {study} "
            "GROUP BY trial_id"), {"name": name}).all())  # fmt: skip
    engine.dispose()
    return status, obs


def _idle_in_transaction(url: str) -> int:
    engine = _engine(url)
    with engine.connect() as conn:
        n = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'poptune' AND starts_with(state, 'idle in transaction')"
        ).scalar()
    engine.dispose()
    return n


def _is_chained(batch) -> bool:
    stmts = [s for s, _ in batch]
    return PG_FINISH_OBS in stmts and DIALECTS["postgresql"].lock in stmts


def test_a_trial_is_two_round_trips_and_its_final_commits_before_the_next_lock(pg_url, monkeypatch):
    """20 trials of ``optimize``: from one trial's final to the next, 2 round trips (the
    final sent with the next suggestion's lock and reads, then its insert and COMMIT). While
    the next suggestion's transaction is held (in ``on_trial_end``), another connection
    already sees the trial COMPLETED with its value: the final committed on its own."""
    real = Postgres.pipeline
    batches: list[list] = []

    def pipeline(self, conn, driver, statements):
        batches.append(list(statements))
        return real(self, conn, driver, statements)

    monkeypatch.setattr(Postgres, "pipeline", pipeline)
    study = _study(pg_url, 20)
    batches.clear()
    study.optimize(lambda t: t.parameters["x"], show_progress=False)
    assert sum(map(_is_chained, batches)) == 20
    chained = [i for i, b in enumerate(batches) if _is_chained(b)]
    # from one final to the next: one more round trip (the insert and its COMMIT), no other
    assert [b - a for a, b in zip(chained, chained[1:], strict=False)] == [2] * 19
    assert all(str(batches[i + 1][0][0]).startswith("INSERT INTO poptune_trials")
               for i in chained[:-1])  # fmt: skip
    assert len(batches) <= 2 * 20 + 6  # the first suggestion, the syncs before and after
    status_rows, obs_rows = _rows(pg_url)
    assert set(status_rows.values()) == {"COMPLETED"} and set(obs_rows.values()) == {1}
    assert [t.status for t in study.trials] == [TrialStatus.COMPLETED] * 20
    assert study.get_best_result()["Objective"] == min(t.parameters["x"] for t in study.trials)

    seen: list[tuple[str, int]] = []

    class Look(StudyCallback):
        def on_trial_end(self, study, trial, status):  # runs while the next lock is held
            held = study._storage._local.held
            assert held is not None and held.tx.sid == study._study_id
            status_rows, obs_rows = _rows(pg_url, "look")
            seen.append((status_rows[trial.id], obs_rows.get(trial.id, 0)))

    more = Study(PARAMS, algorithms.RandomSearch(5), True, storage=SQLStorage(pg_url),
                 study_name="look", heartbeat_interval=None, callbacks=[Look()])  # fmt: skip
    more.optimize(lambda t: t.parameters["x"], show_progress=False)
    assert seen == [("COMPLETED", 1)] * 5


@pytest.mark.parametrize("how", ["done", "timeout", "n_trials", "raises"])
def test_nothing_is_held_once_the_loop_ends(pg_url, how):
    """However the loop ends (DONE, ``timeout``, ``n_trials``, the objective raising), no
    poptune session is left idle in a transaction and another storage takes the lock at
    once (a lock_timeout of 0.2 s: a held lock would show as a wait)."""
    n = 5 if how == "done" else 1000
    study = _study(pg_url, n)

    def objective(trial):
        if how == "raises" and trial.id == 3:
            raise KeyboardInterrupt
        return trial.parameters["x"]

    if how == "raises":
        with pytest.raises(KeyboardInterrupt):
            study.optimize(objective, show_progress=False)
    elif how == "timeout":
        study.optimize(objective, timeout=0.3, show_progress=False)
    else:
        study.optimize(objective, n_trials=5 if how == "n_trials" else None, show_progress=False)
    assert study._storage._local.held is None
    assert _idle_in_transaction(pg_url) == 0
    other = SQLStorage(pg_url, lock_timeout=0.2)
    joined = Study(PARAMS, algorithms.RandomSearch(n), True, storage=other,
                   study_name="chain", heartbeat_interval=None)  # fmt: skip
    added = joined.add_trial({"x": 0.5})
    assert added.status is TrialStatus.QUEUED and other.lock_watch.stats()["timeouts"] == 0
    if how == "raises":
        assert study.get_trial(3).meta.get("interrupted") is True


def test_a_callback_that_writes_while_the_lock_is_held_joins_it(pg_url):
    """``on_trial_end`` adds a trial while the next suggestion's transaction is held: the
    write goes into that transaction (no second lock, no wait), and the loop then runs it."""
    study = _study(pg_url, 6)

    class Adder(StudyCallback):
        def on_trial_end(self, study, trial, status):
            if trial.id == 1:
                study.add_trial({"x": 0.25})

    start = time.monotonic()
    study.optimize(lambda t: t.parameters["x"], show_progress=False, callbacks=[Adder()])
    assert time.monotonic() - start < 5  # lock_timeout retries would take far longer
    assert study._storage.lock_watch.stats()["timeouts"] == 0
    trials = study.trials
    assert [t.meta.get("source") for t in trials].count("add_trial") == 1
    assert all(t.status is TrialStatus.COMPLETED for t in trials)
    assert any(t.parameters["x"] == 0.25 for t in trials)


@pytest.mark.parametrize("committed", [True, False])
def test_a_chained_batch_that_fails_writes_the_final_exactly_once(
    pg_url, monkeypatch, caplog, committed
):
    """The connection is lost in the chained round trip, after the server ran it (the final
    committed: recognized, not written again) or before (then written by the ordinary path);
    either way every trial ends COMPLETED with one observation, and the study goes on."""
    study = _study(pg_url, 8)
    real = Postgres.pipeline
    failed: list[int] = []

    def pipeline(self, conn, driver, statements):
        if _is_chained(statements) and len(failed) < 2:
            failed.append(1)
            if committed:
                real(self, conn, driver, statements)
            conn.invalidate()
            raise _lost("chained final")
        return real(self, conn, driver, statements)

    monkeypatch.setattr(Postgres, "pipeline", pipeline)
    study.optimize(lambda t: t.parameters["x"], show_progress=False)
    assert len(failed) == 2
    assert "already finalized" not in caplog.text and "FAILED" not in caplog.text
    assert [t.status for t in study.trials] == [TrialStatus.COMPLETED] * 8
    status_rows, obs_rows = _rows(pg_url)
    assert len(status_rows) == 8 and set(status_rows.values()) == {"COMPLETED"}
    assert obs_rows == dict.fromkeys(range(1, 9), 1)
    assert _idle_in_transaction(pg_url) == 0


def test_a_refused_chained_final_holds_nothing_and_the_loop_goes_on(pg_url, caplog):
    """Trial 2 is marked FAILED from another storage while its objective runs (as a reaper
    would): its final is refused, the trial stays FAILED with that storage's meta, nothing
    is held, and the other trials complete."""
    study = _study(pg_url, 4)
    other = SQLStorage(pg_url)

    def objective(trial):
        if trial.id == 2:
            other.finish_trial(study._study_id, 2, TrialStatus.FAILED, {"reaped": True})
        return trial.parameters["x"]

    study.optimize(objective, show_progress=False)
    status_rows, obs_rows = _rows(pg_url)
    assert status_rows == {1: "COMPLETED", 2: "FAILED", 3: "COMPLETED", 4: "COMPLETED"}
    assert 2 not in obs_rows
    assert "trial 2's value is not recorded" in caplog.text
    assert pt.load_study(pg_url, "chain").get_trial(2).meta.get("reaped") is True
    assert study._storage._local.held is None and _idle_in_transaction(pg_url) == 0


WORKER = textwrap.dedent(
    """
    import json, sys, time
    from poptune import Continuous, Study, algorithms

    url, log = sys.argv[1:3]
    study = Study([Continuous("x", [0.0, 1.0])], algorithms.RandomSearch(160), True,
                  storage=url, study_name="chain", seed=0, heartbeat_interval=0.3,
                  grace_period=5.0)
    with open(log, "a") as fh:
        def objective(trial):
            time.sleep(0.01)
            fh.write(json.dumps(trial.id) + "\\n")
            fh.flush()
            return trial.parameters["x"]
        study.optimize(objective, show_progress=False)
    """
)


def test_four_optimize_workers_survive_every_connection_terminated(pg_url, tmp_path):
    """Four ``optimize`` processes on one study; every poptune connection is terminated from
    the server six times while they run: each exits 0 and every trial is COMPLETED once with
    one observation (a chained final lost mid-way is neither lost nor doubled)."""
    Study(PARAMS, algorithms.RandomSearch(160), True, storage=pg_url, study_name="chain", seed=0)
    logs, terminated, codes, errors = run_workers_terminating(pg_url, WORKER, tmp_path, 0.3)
    assert sum(terminated) >= 6
    assert codes == [0] * 4, "\n".join(e[-3000:] for e, c in zip(errors, codes, strict=True) if c)
    status_rows, obs_rows = _rows(pg_url)
    assert len(status_rows) == 160
    assert set(status_rows.values()) == {"COMPLETED"}, status_rows
    assert obs_rows == dict.fromkeys(range(1, 161), 1)
    ran = [json.loads(line) for log in logs for line in log.read_text().splitlines()]
    # a trial whose worker lost its connection mid-objective may run again only as a retry
    assert set(ran) == set(range(1, 161))
