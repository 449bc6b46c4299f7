"""No worker can stall the study: a worker frozen (``SIGSTOP``) while it holds a study's lock,
with real worker processes on a real SQLite file and a real PostgreSQL database.

The freeze is placed with the storage's test hook (``POPTUNE_TEST_STOP_BEFORE_COMMIT``): the
victim stops itself right before the ``COMMIT`` of a transaction that holds the study lock.
Timeouts are short (set in the storage URL) so each test runs in well under 30 s.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import poptune as pt
from poptune import TrialStatus
from poptune.storage._transaction import STOP_BEFORE_COMMIT_ENV, LockSettings
from poptune.storage.sql import SQLStorage

from .conftest import forget_storages, make_url

# One worker process: runs trials until the stop file appears; logs every completed trial.
WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    import poptune as pt
    from poptune import Continuous, Study, algorithms

    url, log, stop, interval, grace = sys.argv[1:6]
    study = Study([Continuous("lr", [1e-4, 1e-2], "log")], algorithms.RandomSearch(100000),
                  True, storage=url, study_name="locks", seed=0,
                  heartbeat_interval=float(interval), grace_period=float(grace))
    with open(log, "a") as fh:
        for trial in study:
            time.sleep(0.02)
            study.add_observation(trial, trial.parameters["lr"], iteration=1)
            study.finalize(trial)
            fh.write(json.dumps([trial.id, time.time()]) + "\\n")
            fh.flush()
            if os.path.exists(stop):
                break
    print(json.dumps(study._storage.lock_watch.stats()), file=sys.stderr)
    """
)


def _start(script, url, log, stop, interval, grace, env=None):
    return subprocess.Popen(
        [sys.executable, str(script), url, str(log), str(stop), str(interval), str(grace)],
        env={**os.environ, **(env or {})},
        stderr=subprocess.PIPE,
        text=True,
    )


def _stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (state T in /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


def _completions(logs):
    """(trial id, wall time, worker index) of every completed trial, in time order."""
    done = []
    for i, log in enumerate(logs):
        if log.exists():
            for line in log.read_text().splitlines():
                tid, at = json.loads(line)
                done.append((tid, at, i))
    return sorted(done, key=lambda d: d[1])


def _freeze_run(url, tmp_path, *, freeze_s, interval, grace, healthy=4):
    """Start ``healthy`` workers and a victim, freeze the victim holding the study lock for
    ``freeze_s`` seconds, resume it, stop everyone; return what happened."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    stop, trigger = tmp_path / "stop", tmp_path / "freeze-now"
    logs = [tmp_path / f"w{i}.log" for i in range(healthy + 1)]  # the last one is the victim
    pt.Study([pt.Continuous("lr", [1e-4, 1e-2], "log")], pt.algorithms.RandomSearch(100000),
             True, storage=url, study_name="locks", seed=0)  # fmt: skip
    procs = [_start(script, url, log, stop, interval, grace) for log in logs[:-1]]
    victim = _start(script, url, logs[-1], stop, interval, grace,
                    env={STOP_BEFORE_COMMIT_ENV: str(trigger)})  # fmt: skip
    procs.append(victim)
    try:
        deadline = time.monotonic() + 60
        while len(_completions(logs)) < 20 or not all(log.exists() for log in logs):
            assert time.monotonic() < deadline, "the workers did not start"  # all under way
            assert all(p.poll() is None for p in procs), [p.poll() for p in procs]
            time.sleep(0.1)
        trigger.touch()
        while not _stopped(victim.pid):
            assert time.monotonic() < deadline, "the victim never reached a COMMIT"
            time.sleep(0.01)
        frozen_at = time.time()
        time.sleep(freeze_s)
        resumed_at = time.time()
        os.kill(victim.pid, signal.SIGCONT)
        time.sleep(2.0)
        stop.touch()
        errors = [p.communicate(timeout=60)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
                p.wait()
    return {
        "codes": [p.returncode for p in procs],
        "errors": errors,
        "done": _completions(logs),
        "frozen_at": frozen_at,
        "resumed_at": resumed_at,
        "victim": healthy,
    }


def _check_no_loss_no_duplicate(url, run):
    failed = [e[-4000:] for e, code in zip(run["errors"], run["codes"], strict=True) if code]
    assert run["codes"] == [0] * len(run["codes"]), "\n".join(failed)
    done_ids = [tid for tid, _, _ in run["done"]]
    assert len(done_ids) == len(set(done_ids))  # no trial completed twice
    study = pt.load_study(url, "locks")
    trials = study.trials
    assert [t.id for t in trials] == list(range(1, len(trials) + 1))  # ids dense: none lost
    by_status = {}
    for t in trials:
        by_status.setdefault(t.status, []).append(t)
    assert not by_status.get(TrialStatus.FAILED), [t.meta for t in by_status[TrialStatus.FAILED]]
    assert not any(t.meta.get("heartbeat_lost") for t in trials)
    assert all("database is locked" not in json.dumps(t.meta) for t in trials)
    # every trial completed, except at most one per worker still running when it stopped
    completed = {t.id for t in by_status.get(TrialStatus.COMPLETED, [])}
    assert completed == set(done_ids)
    assert len(by_status.get(TrialStatus.RUNNING, [])) <= len(run["codes"])
    return study


def _longest_gap(run, start, end):
    """The longest stretch, in seconds, between ``start`` and ``end`` in which no healthy
    worker completed a trial (a stall of the whole study shows as one gap from ``start``)."""
    times = [at for _, at, w in run["done"] if w != run["victim"] and start < at < end]
    marks = [start, *times, end]
    return max(b - a for a, b in zip(marks, marks[1:], strict=False))


def test_postgres_frozen_lock_holder_is_cut_off_and_the_others_go_on(tmp_path):
    """PostgreSQL: the server ends the frozen holder's session after ``stall_timeout``; the
    healthy workers complete trials again within that bound (plus a retry's backoff) while
    the victim is still frozen; the victim, resumed, finds its connection gone, runs its
    transaction again and carries on; nothing is lost or duplicated."""
    stall = 2.0
    url = make_url("postgres", tmp_path) + f"?lock_timeout=0.5&stall_timeout={stall}"
    try:
        run = _freeze_run(url, tmp_path, freeze_s=8.0, interval=0.5, grace=6.0)
        gap = _longest_gap(run, run["frozen_at"], run["resumed_at"])
        print(f"\nPostgreSQL: longest stretch without a completed trial during the 8 s freeze: "
              f"{gap:.2f} s (stall_timeout {stall} s, lock_timeout 0.5 s)")  # fmt: skip
        # the bound: stall_timeout + lock_timeout + 1.5 s of backoff (and a margin for load);
        # it also says they kept completing trials until the victim was resumed
        assert gap < stall + 0.5 + 1.5 + 2.5
        assert "running the transaction again" in run["errors"][run["victim"]]
        assert any(w == run["victim"] and at > run["resumed_at"] for _, at, w in run["done"])
        _check_no_loss_no_duplicate(url, run)
    finally:
        forget_storages()


def test_sqlite_frozen_lock_holder_stalls_nobody_into_failure(tmp_path):
    """SQLite, a freeze shorter than ``stall_timeout`` (60 s here; a longer one ends the
    holder: tests/test_sqlite_frozen_writer.py): the others wait until it resumes — but they
    wait without failing: no trial FAILED with 'database is locked', no live worker's trial
    marked heartbeat_lost though nobody could write a heartbeat for longer than the grace
    period; after SIGCONT everything goes on."""
    url = make_url("sqlite", tmp_path) + "?lock_timeout=0.5"
    try:
        run = _freeze_run(url, tmp_path, freeze_s=5.0, interval=0.3, grace=3.0)
        frozen = _longest_gap(run, run["frozen_at"], run["resumed_at"])
        resumed = _longest_gap(run, run["resumed_at"], run["resumed_at"] + 2.0)
        print(f"\nSQLite: longest stretch without a completed trial: {frozen:.2f} s of the 5 s "
              f"freeze, {resumed:.2f} s of the 2 s after SIGCONT")  # fmt: skip
        assert resumed < 3.0  # they resume at once (backoff at most 1.5 s, margin for load)
        assert any(w == run["victim"] and at > run["resumed_at"] for _, at, w in run["done"])
        _check_no_loss_no_duplicate(url, run)
        # the others' waits timed out (busy_timeout) and were tried again, never an error
        assert any('"timeouts": 0' not in e for e in run["errors"][: run["victim"]])
    finally:
        forget_storages()


def test_lock_settings_come_from_arguments_or_the_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    storage = SQLStorage(url + "?lock_timeout=0.25")
    assert storage._locks == LockSettings(0.25, 60.0)
    with storage._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 250
    storage.close()
    assert SQLStorage(url, lock_timeout=3, stall_timeout=7)._locks == LockSettings(3.0, 7.0)
    for bad in ("0", "-1", "nan", "soon"):
        with pytest.raises(pt.ConfigurationError, match=f"lock_timeout must be a positive .*{bad}"):
            SQLStorage(f"{url}?lock_timeout={bad}")


def test_postgres_sessions_get_the_timeouts(tmp_path):
    url = make_url("postgres", tmp_path)
    storage = SQLStorage(url, lock_timeout=1.5, stall_timeout=4)
    try:
        with storage._engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "1500ms"
            assert conn.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar() == "4s"
    finally:
        storage.close()


def _sqlite_study(url, name, **kw):
    return pt.Study([pt.Continuous("lr", [1e-4, 1e-2], "log")], pt.algorithms.RandomSearch(50),
                    True, storage=SQLStorage(url), study_name=name, seed=0, **kw)  # fmt: skip


def test_a_sqlite_wait_past_busy_timeout_is_tried_again_not_failed(tmp_path, caplog):
    path = tmp_path / "w.db"
    study = _sqlite_study(f"sqlite:///{path}?lock_timeout=0.2", "w", heartbeat_interval=None)
    trial = study.get_suggestion()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    errors = []

    def observe():
        try:
            study.add_observation(trial, 1.0)
        except Exception as exc:  # noqa: BLE001 - what the test looks for
            errors.append(exc)

    thread = threading.Thread(target=observe)
    thread.start()
    time.sleep(1.0)  # five busy_timeouts
    assert thread.is_alive() and not errors  # still waiting, not failed
    blocker.execute("ROLLBACK")
    thread.join(10)
    assert not thread.is_alive() and not errors
    assert list(study.get_trial(trial.id).observations) == [1]
    assert study._storage.lock_watch.stats()["timeouts"] >= 2
    assert "waiting for a study's lock" in caplog.text
    blocker.close()


def test_a_heartbeat_the_busy_database_held_back_does_not_look_lost(tmp_path):
    """The database is locked (by another process) for twice the grace period: nobody can
    write a heartbeat; once it is free, the reaper sees an old heartbeat but knows the
    database was blocked, and waits a grace period, in which the live owner beats again."""
    path = tmp_path / "hb.db"
    url = f"sqlite:///{path}?lock_timeout=0.1"
    fast = {"heartbeat_interval": 0.1, "grace_period": 1.0}
    a, b = _sqlite_study(url, "hb", **fast), _sqlite_study(url, "hb", **fast)
    mine, theirs = a.get_suggestion(), b.get_suggestion()  # both beat from now on
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    time.sleep(2.0)
    blocker.execute("ROLLBACK")
    blocker.close()
    assert b._storage.has_stale_trials(b._study_id, 1.0)  # a's heartbeat is old...
    b.add_observation(theirs, 0.1)
    b.finalize(theirs)
    b._next_recovery = 0.0  # look now
    b.get_suggestion()  # ...but b does not reap it: the database was blocked
    assert b.get_trial(mine.id).status is TrialStatus.RUNNING
    time.sleep(1.5)  # a grace period later a has beaten again
    b._next_recovery = 0.0
    b.get_suggestion()
    assert b.get_trial(mine.id).status is TrialStatus.RUNNING
    a.close()  # now a really stops beating: reaped after a grace period
    time.sleep(1.6)
    b._next_recovery = 0.0
    b.get_suggestion()
    assert b.get_trial(mine.id).status is TrialStatus.FAILED
    b.close()
