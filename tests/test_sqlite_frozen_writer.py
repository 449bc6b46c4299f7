"""SQLite: a process frozen (``SIGSTOP``) while it holds the database's write lock.

A frozen *poptune* holder is ended (``SIGKILL``) by the waiting workers once it has been
frozen for ``stall_timeout``, and the others go on; a frozen holder that is *not* poptune's
is never signalled: the waiting write raises an error naming its pid. Real processes, a real
file; every wait has a deadline and every stopped process is resumed and killed in
``finally``, so a regression fails instead of hanging.
"""

from __future__ import annotations

import json
import logging
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
from poptune.storage._sqlite_locks import MARKER_SUFFIX, write_lock_holder
from poptune.storage._transaction import STOP_BEFORE_COMMIT_ENV
from poptune.storage.sql import SQLStorage

from .conftest import forget_storages
from .test_locks import WORKER, _completions, _longest_gap, _start, _stopped

pytestmark = pytest.mark.skipif(
    not Path("/proc/locks").exists(), reason="finding a lock's holder needs Linux /proc/locks"
)

# A holder of the write lock that stops itself (or, "hang", sleeps): plain sqlite3 (foreign)
# or, "poptune", a process that opened the database through poptune's storage first.
HOLDER = textwrap.dedent(
    """
    import os, signal, sqlite3, sys, time
    path, how, kind = sys.argv[1:4]
    if kind == "poptune":
        from poptune.storage.sql import SQLStorage
        storage = SQLStorage("sqlite:///" + path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE poptune_studies SET version = version + 1")
    open(path + ".locked", "w").close()
    if how == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    if how == "spin":  # working (a long suggestion) for 3 s, then done
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            pass
        conn.execute("COMMIT")
        sys.exit(0)
    time.sleep(120)
    """
)


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        except ProcessLookupError:
            pass
    proc.communicate(timeout=10)  # reaps it and closes its pipes


def _holder(path: Path, *, poptune: bool, how: str = "stop") -> subprocess.Popen:
    kind = "poptune" if poptune else "sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), how, kind])
    locked = Path(f"{path}.locked")
    deadline = time.monotonic() + 30
    while not (locked.exists() and (how != "stop" or _stopped(proc.pid))):
        assert proc.poll() is None, "the holder died before it froze"
        assert time.monotonic() < deadline, "the holder never froze"
        time.sleep(0.02)
    return proc


def _observe_in_thread(study, trial, value):
    """Record an observation in a thread; returns (thread, errors, done-at times)."""
    errors, done = [], []

    def run():
        try:
            study.add_observation(trial, value)
            done.append(time.monotonic())
        except Exception as exc:  # noqa: BLE001 - what the tests look at
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors, done


def _study(url):
    return pt.Study([pt.Continuous("lr", [1e-4, 1e-2], "log")], pt.algorithms.RandomSearch(50),
                    True, storage=SQLStorage(url), study_name="fw", seed=0,
                    heartbeat_interval=None)  # fmt: skip


def test_the_write_lock_holder_is_found_in_proc_locks(tmp_path):
    path = tmp_path / "h.db"
    SQLStorage(f"sqlite:///{path}").close()  # a poptune file (WAL mode)
    conn = sqlite3.connect(path, isolation_level=None)
    assert write_lock_holder(str(path)) is None
    conn.execute("BEGIN IMMEDIATE")
    assert write_lock_holder(str(path)) == os.getpid()
    conn.execute("ROLLBACK")
    assert write_lock_holder(str(path)) is None
    # a rollback-journal file: the RESERVED lock of the database file
    plain = tmp_path / "plain.db"
    other = sqlite3.connect(plain, isolation_level=None)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN IMMEDIATE")
    assert write_lock_holder(str(plain)) == os.getpid()
    other.execute("ROLLBACK")
    conn.close()
    other.close()


def test_the_marker_is_held_while_a_storage_is_open_and_removed_after(tmp_path):
    path = tmp_path / "m.db"
    marker = tmp_path / ("m.db" + MARKER_SUFFIX)
    a, b = SQLStorage(f"sqlite:///{path}"), SQLStorage(f"sqlite:///{path}")
    assert marker.exists()
    a.close()
    assert marker.exists()  # b still holds it
    b.close()
    assert not marker.exists()  # a database closed cleanly leaves only its file
    a.list_studies()  # a storage used again holds it again
    assert marker.exists()
    a.close()
    assert not marker.exists()
    SQLStorage(f"sqlite:///{path}", read_only=True).close()
    assert not marker.exists()  # a read-only opening takes none


def test_a_frozen_holder_that_is_not_poptune_is_named_never_killed(tmp_path):
    path = tmp_path / "f.db"
    url = f"sqlite:///{path}?lock_timeout=0.2&stall_timeout=1"
    study = _study(url)
    trial = study.get_suggestion()
    holder = _holder(path, poptune=False)
    try:
        started = time.monotonic()
        thread, errors, _ = _observe_in_thread(study, trial, 1.0)
        thread.join(20)
        assert not thread.is_alive(), "the write still waits for a frozen foreign holder"
        assert len(errors) == 1 and isinstance(errors[0], pt.StorageError), errors
        message = str(errors[0])
        assert f"process {holder.pid} holds the write lock" in message
        assert "not a poptune worker" in message and f"kill -CONT {holder.pid}" in message
        assert time.monotonic() - started >= 1.0  # only once it was frozen for stall_timeout
        assert holder.poll() is None and _stopped(holder.pid)  # not signalled
    finally:
        _end(holder)
    study.add_observation(trial, 1.0)  # once it is gone, writes go through
    assert list(study.get_trial(trial.id).observations) == [1]


@pytest.mark.parametrize("how", ["stop", "hang"])
def test_a_frozen_poptune_holder_is_killed_and_the_write_goes_on(tmp_path, caplog, how):
    """Stopped (SIGSTOP), or hanging (sleeping, using no CPU) while it holds the lock."""
    path = tmp_path / "p.db"
    url = f"sqlite:///{path}?lock_timeout=0.2&stall_timeout=1"
    study = _study(url)
    trial = study.get_suggestion()
    holder = _holder(path, poptune=True, how=how)
    try:
        frozen = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="poptune"):
            thread, errors, done = _observe_in_thread(study, trial, 2.0)
            thread.join(20)
        assert not thread.is_alive(), "the write still waits for a frozen poptune holder"
        assert not errors, errors
        holder.wait(timeout=10)
        assert holder.returncode == -signal.SIGKILL
        waited = done[0] - frozen
        print(f"\nSQLite: write went through {waited:.2f} s after the holder froze ({how}) "
              "(stall_timeout 1 s, lock_timeout 0.2 s)")  # fmt: skip
        assert waited >= 1.0
    finally:
        _end(holder)
    kills = [r for r in caplog.records if f"process {holder.pid} holds" in r.getMessage()]
    assert len(kills) == 1 and "SIGKILL" in kills[0].getMessage()
    assert ("stopped" if how == "stop" else "under 1% of a CPU") in kills[0].getMessage()
    assert list(study.get_trial(trial.id).observations) == [1]
    conn = sqlite3.connect(path)  # the killed holder's uncommitted change is gone
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


def test_a_holder_that_is_working_is_left_alone(tmp_path):
    """A poptune holder using the CPU for three stall_timeouts is not frozen: the write
    waits for it, and it commits and exits on its own."""
    path = tmp_path / "s.db"
    study = _study(f"sqlite:///{path}?lock_timeout=0.2&stall_timeout=1")
    trial = study.get_suggestion()
    holder = _holder(path, poptune=True, how="spin")
    try:
        thread, errors, _ = _observe_in_thread(study, trial, 3.0)
        thread.join(30)
        assert not thread.is_alive() and not errors, errors
        assert holder.wait(timeout=10) == 0  # it finished, never killed
    finally:
        _end(holder)
    assert list(study.get_trial(trial.id).observations) == [1]


def test_workers_go_on_after_a_frozen_worker_is_killed(tmp_path):
    """Three workers and a victim frozen right before a COMMIT: the others end it after
    ``stall_timeout`` and complete trials again; its trial is reaped as lost; no live
    worker's trial is lost, failed or marked ``heartbeat_lost``; every acknowledged trial
    is COMPLETED with its observation."""
    stall, lock, interval, grace = 2.0, 0.5, 0.3, 2.0
    url = f"sqlite:///{tmp_path / 'study.db'}?lock_timeout={lock}&stall_timeout={stall}"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    stop, trigger = tmp_path / "stop", tmp_path / "freeze-now"
    logs = [tmp_path / f"w{i}.log" for i in range(4)]  # the last one is the victim
    pt.Study([pt.Continuous("lr", [1e-4, 1e-2], "log")], pt.algorithms.RandomSearch(100000),
             True, storage=url, study_name="locks", seed=0)  # fmt: skip
    procs = [_start(script, url, log, stop, interval, grace) for log in logs[:-1]]
    victim = _start(script, url, logs[-1], stop, interval, grace,
                    env={STOP_BEFORE_COMMIT_ENV: str(trigger)})  # fmt: skip
    procs.append(victim)
    try:
        deadline = time.monotonic() + 60
        while len(_completions(logs)) < 20 or not all(log.exists() for log in logs):
            assert time.monotonic() < deadline, "the workers did not start"
            assert all(p.poll() is None for p in procs), [p.poll() for p in procs]
            time.sleep(0.1)
        trigger.touch()
        while not _stopped(victim.pid):
            assert time.monotonic() < deadline, "the victim never reached a COMMIT"
            time.sleep(0.01)
        frozen_at = time.time()
        victim.wait(timeout=30)  # ended by the others
        killed_at = time.time()
        assert victim.returncode == -signal.SIGKILL
        time.sleep(grace + 4.0)  # the others go on, and reap the victim's trial
        stop.touch()
        errors = [p.communicate(timeout=60)[1] for p in procs[:-1]]
    finally:
        for p in procs:
            _end(p)
    run = {"done": _completions(logs), "victim": 3}
    gap = _longest_gap(run, frozen_at, killed_at + 2.0)
    print(f"\nSQLite: victim killed {killed_at - frozen_at:.2f} s after it froze; longest stretch "
          f"without a completed trial: {gap:.2f} s (stall_timeout {stall} s, lock_timeout "
          f"{lock} s)")  # fmt: skip
    assert [p.returncode for p in procs[:-1]] == [0, 0, 0], "\n".join(e[-3000:] for e in errors)
    assert killed_at - frozen_at >= stall
    assert any(w != 3 and at > killed_at for _, at, w in run["done"])  # they went on
    # the bound: lock_timeout (first wait) + stall_timeout + a wait and a backoff (1.5 s),
    # with a margin for this loaded machine
    assert gap < lock + stall + lock + 1.5 + 3.0
    assert any("ended (SIGKILL)" in e for e in errors)
    _check_trials(url, run)
    forget_storages()


def _check_trials(url, run):
    done = [tid for tid, _, _ in run["done"]]
    assert len(done) == len(set(done))  # none completed twice
    trials = pt.load_study(url, "locks").trials
    assert [t.id for t in trials] == list(range(1, len(trials) + 1))  # ids dense: none lost
    by_id = {t.id: t for t in trials}
    for tid in done:  # every acknowledged trial and its observation are there
        assert by_id[tid].status is TrialStatus.COMPLETED
        assert list(by_id[tid].observations) == [1]
    others = [t for t in trials if t.id not in done]
    # at most the victim's own trial (frozen before its COMMIT) is left: reaped as lost
    assert len(others) <= 1, [(t.id, t.status, t.meta) for t in others]
    for t in others:
        assert t.status is TrialStatus.FAILED and t.meta.get("heartbeat_lost"), t.meta
    assert all("database is locked" not in json.dumps(t.meta) for t in trials)
