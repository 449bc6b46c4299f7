"""PostgreSQL connections lost mid-use (``pg_terminate_backend``, a lost acknowledgement) are
replaced and the transaction tried once more, with no trial or observation written twice.
Real worker processes and a real PostgreSQL server."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import sqlalchemy as sa

import poptune as pt
from poptune import Continuous, Study, TrialStatus, algorithms
from poptune.storage._postgres import Pipelined, Postgres
from poptune.storage.sql import SQLStorage

from .conftest import forget_storages, make_url

PARAMS = [Continuous("lr", [1e-4, 1e-2], "log")]
TOTAL = 160

WORKER = textwrap.dedent(
    f"""
    import json, sys, time
    from poptune import Continuous, Study, algorithms

    url, log = sys.argv[1:3]
    study = Study([Continuous("lr", [1e-4, 1e-2], "log")], algorithms.RandomSearch({TOTAL}),
                  True, storage=url, study_name="reconnect", seed=0,
                  heartbeat_interval=0.3, grace_period=5.0)
    with open(log, "a") as fh:
        for trial in study:
            time.sleep(0.01)
            study.add_observation(trial, trial.parameters["lr"], iteration=1)
            study.add_observation(trial, trial.parameters["lr"] / 2, iteration=2)
            study.finalize(trial)
            fh.write(json.dumps(trial.id) + "\\n")
            fh.flush()
    """
)


def _terminate_all(admin: sa.Engine) -> int:
    """``pg_terminate_backend`` every other connection to the test database; how many."""
    with admin.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).all()
    return len(rows)


def run_workers_terminating(
    url: str, source: str, tmp_path, pause: float, workers: int = 4, rounds: int = 6
) -> tuple[list, list[int], list[int], list[str]]:
    """Run ``source`` (a script taking the URL and its log file) in ``workers`` processes;
    once every one has logged a line, terminate every other connection to the database
    ``rounds`` times, ``pause`` seconds apart; wait for them to exit (killed if a test step
    fails). Returns their logs, the connections terminated per round, their exit codes and
    their stderr."""
    script = tmp_path / "worker.py"
    script.write_text(source)
    logs = [tmp_path / f"w{i}.log" for i in range(workers)]
    procs = [subprocess.Popen([sys.executable, str(script), url, str(log)],
                              stderr=subprocess.PIPE, text=True) for log in logs]  # fmt: skip
    admin = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                             poolclass=sa.pool.NullPool)  # fmt: skip
    terminated = []
    try:
        deadline = time.monotonic() + 60
        while not all(log.exists() and log.read_text() for log in logs):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.05)
        for _ in range(rounds):
            terminated.append(_terminate_all(admin))
            time.sleep(pause)
        errors = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        admin.dispose()
    return logs, terminated, [p.returncode for p in procs], errors


@pytest.fixture
def pg_url(tmp_path):
    yield make_url("postgres", tmp_path)
    forget_storages()


def test_every_connection_terminated_again_and_again_workers_survive(pg_url, tmp_path):
    """Four workers; every poptune connection to the database is terminated from the server
    six times while they run: each worker exits 0, the study completes, every trial once
    with its two observations."""
    Study(PARAMS, algorithms.RandomSearch(TOTAL), True, storage=pg_url, study_name="reconnect",
          seed=0)  # fmt: skip
    logs, terminated, codes, errors = run_workers_terminating(pg_url, WORKER, tmp_path, 0.4)
    print(f"\nconnections terminated per round: {terminated}")
    assert sum(terminated) >= 6  # the workers really lost connections
    assert codes == [0] * 4, "\n".join(e[-3000:] for e, c in zip(errors, codes, strict=True) if c)
    done = [json.loads(line) for log in logs for line in log.read_text().splitlines()]
    assert sorted(done) == list(range(1, TOTAL + 1))  # every trial once: no duplicate, no loss
    trials = pt.load_study(pg_url, "reconnect").trials
    assert len(trials) == TOTAL
    assert all(t.status is TrialStatus.COMPLETED and list(t.observations) == [1, 2]
               for t in trials)  # fmt: skip
    assert not any(t.meta.get("heartbeat_lost") for t in trials)


def _study(url, name="one"):
    storage = SQLStorage(url)
    return Study(PARAMS, algorithms.RandomSearch(10), True, storage=storage, study_name=name,
                 seed=0, heartbeat_interval=None)  # fmt: skip


def _count_trials(url) -> int:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                              poolclass=sa.pool.NullPool)  # fmt: skip
    with engine.connect() as conn:
        n = conn.exec_driver_sql("SELECT count(*) FROM poptune_trials").scalar()
    engine.dispose()
    return n


def _lost(statement: str) -> sa.exc.OperationalError:
    return sa.exc.OperationalError(statement, None, Exception("server closed the connection"),
                                   connection_invalidated=True)  # fmt: skip


def test_a_backend_terminated_mid_transaction_is_run_again_once(pg_url, monkeypatch, caplog):
    """The suggestion's backend is terminated just before its COMMIT: the server rolled it
    back, the whole transaction runs again on a new connection: one trial, not two."""
    study = _study(pg_url)
    real = Pipelined.commit
    calls = []

    def commit(self):
        if not calls:
            with self.postgres._engine.connect() as other:
                pid = self.driver.info.backend_pid
                other.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
            time.sleep(0.2)
        calls.append(1)
        return real(self)

    monkeypatch.setattr(Pipelined, "commit", commit)
    trial = study.get_suggestion()
    assert trial.id == 1 and len(calls) == 2
    assert "running the transaction again" in caplog.text
    assert _count_trials(pg_url) == 1
    assert [t.id for t in study.trials] == [1]
    assert study.get_suggestion().id == 2 and _count_trials(pg_url) == 2


def test_a_commit_whose_answer_is_lost_is_not_run_twice(pg_url, monkeypatch, caplog):
    """The COMMIT reached the server but its answer did not come back: poptune asks the server
    what became of the transaction (its id), learns it committed, and does not repeat it."""
    study = _study(pg_url)
    real = Pipelined.commit
    calls = []

    def commit(self):
        calls.append(1)
        real(self)
        if len(calls) == 1:
            raise _lost("COMMIT")

    monkeypatch.setattr(Pipelined, "commit", commit)
    trial = study.get_suggestion()
    assert trial.id == 1 and len(calls) == 1  # not run again
    assert "which had committed" in caplog.text
    assert _count_trials(pg_url) == 1
    assert study.get_suggestion().id == 2 and _count_trials(pg_url) == 2


def test_a_chained_suggestions_commit_whose_answer_is_lost_is_not_run_twice(
    pg_url, monkeypatch, caplog
):
    """In ``study.optimize``'s loop the next suggestion runs in the transaction the final write
    opened (its id read in that round trip): when that COMMIT's answer is lost, poptune asks
    the server, learns it committed, and neither repeats the suggestion nor loses a trial."""
    real_commit, real_take = Pipelined.commit, Postgres.take_held
    commits, taken, lost, armed = [], [], [], []  # armed: only in the second study

    def take_held(self, storage, study_id):
        held = real_take(self, storage, study_id)
        taken.append(held is not None)
        return held

    def commit(self):
        commits.append(1)
        real_commit(self)
        if armed and any(taken) and not lost:  # the first COMMIT of one a final write opened
            lost.append(1)
            raise _lost("COMMIT")

    monkeypatch.setattr(Pipelined, "commit", commit)
    monkeypatch.setattr(Postgres, "take_held", take_held)
    baseline = _study(pg_url, "baseline")
    baseline.optimize(lambda trial: trial.parameters["lr"], n_trials=3)
    expected, commits[:], taken[:] = len(commits), [], []
    armed.append(True)
    study = _study(pg_url)
    study.optimize(lambda trial: trial.parameters["lr"], n_trials=3)
    assert lost and "which had committed" in caplog.text
    assert len(commits) == expected  # the lost COMMIT was not sent again
    stored = pt.load_study(pg_url, "one")
    assert [(t.id, t.status) for t in stored.trials] == [
        (i, TrialStatus.COMPLETED) for i in (1, 2, 3)
    ]


def test_an_observation_and_final_status_whose_answer_is_lost_are_written_once(pg_url, monkeypatch):
    """A single-statement write (an observation, a final status) that committed before its
    connection died is recognized on the retry instead of failing as a duplicate."""
    study = _study(pg_url)
    trial = study.get_suggestion()
    real = Postgres.write_alone
    lost_once = []

    def write_alone(self, *args, **kwargs):
        answer = real(self, *args, **kwargs)
        if len(lost_once) < 2:  # the observation's, then the final status's answer is lost
            lost_once.append(1)
            raise _lost("INSERT")
        return answer

    monkeypatch.setattr(Postgres, "write_alone", write_alone)
    study.add_observation(trial, 0.5, iteration=1, context={"x": 1})
    study.finalize(trial)
    assert len(lost_once) == 2
    stored = pt.load_study(pg_url, "one").get_trial(trial.id)
    assert stored.status is TrialStatus.COMPLETED and list(stored.observations) == [1]
    other = study.get_suggestion()
    study.add_observation(other, 0.1, iteration=1)
    with pytest.raises(pt.DuplicateIterationError):  # a real duplicate is still one
        study.add_observation(other, 0.2, iteration=1)


def test_the_study_lock_wait_warns_and_goes_on(pg_url, caplog):
    """A wait for the lock that times out (``lock_timeout``) is tried again, not an error."""
    study = _study(pg_url)
    slow = SQLStorage(pg_url + "?lock_timeout=0.2")
    sid = slow.get_study_id("one")
    holder = SQLStorage(pg_url)
    with holder.transaction(sid):
        got = []
        thread = threading.Thread(target=lambda: got.append(slow.claim_queued_trial(sid, "w")))
        thread.start()
        time.sleep(1.0)
        assert not got  # still waiting, quietly retried
    thread.join(10)
    assert got == [None] and slow.lock_watch.stats()["timeouts"] >= 2
    assert "waiting for a study's lock" in caplog.text
    assert study.get_suggestion().id == 1
