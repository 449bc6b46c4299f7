"""``poptune fail-stale STORAGE STUDY`` (issue 18, §5): fail by hand the RUNNING trials whose
worker died (here: a real worker process, SIGKILLed), with the workers' own rule; a trial
whose worker still beats is left alone, and when nothing is stale nothing is written."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import poptune
from poptune.cli import main
from poptune.trial import TrialStatus
from tests.conftest import forget_storages

ROOT = Path(__file__).resolve().parent.parent

# A worker that takes a trial, then hangs until it is killed (heartbeat every 0.5 s).
WORKER = """
import sys, time
import poptune

study = poptune.Study(
    [poptune.Continuous("x", [0.0, 1.0])],
    poptune.algorithms.RandomSearch(max_num_trials=100),
    lower_is_better=True,
    storage=sys.argv[1],
    study_name="s",
    heartbeat_interval=0.5,
)
trial = study.get_suggestion()
print(trial.id, flush=True)
time.sleep(600)
"""


def _study(db: str, heartbeat: float) -> poptune.Study:
    return poptune.Study(
        [poptune.Continuous("x", [0.0, 1.0])],
        poptune.algorithms.RandomSearch(max_num_trials=100),
        lower_is_better=True,
        storage=db,
        study_name="s",
        heartbeat_interval=heartbeat,
    )


@pytest.fixture
def db(tmp_path):
    yield f"sqlite:///{tmp_path / 'runs.db'}"
    forget_storages()


def _files(db: str) -> dict[str, tuple[int, int]]:
    path = Path(db.removeprefix("sqlite:///"))
    return {
        p.name: (p.stat().st_mtime_ns, p.stat().st_size)
        for p in path.parent.iterdir()
        if p.name.startswith(path.name)
    }


def _killed_worker_trial(db: str) -> int:
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, db], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        line = worker.stdout.readline()
        assert line.strip(), "the worker took no trial"
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=60)
        worker.stdout.close()
    return int(line)


def test_fail_stale_fails_the_dead_workers_trial_only(db, capsys):
    dead = _killed_worker_trial(db)
    killed_at = time.monotonic()
    alive = _study(db, heartbeat=0.5)  # this process: a worker that keeps beating
    running = alive.get_suggestion()
    time.sleep(max(0.0, 6.0 - (time.monotonic() - killed_at)))  # dead: > 5 s without a beat
    assert main(["fail-stale", db, "s", "--older-than", "5", "--yes"]) == 0
    out = capsys.readouterr().out
    assert f"marked FAILED (no heartbeat for 5 s, meta heartbeat_lost): trial(s) {dead} " in out
    stored = poptune.load_study(db, "s")
    assert stored.get_trial(dead).status is TrialStatus.FAILED
    assert stored.get_trial(dead).meta["heartbeat_lost"] is True
    assert stored.get_trial(running.id).status is TrialStatus.RUNNING
    # Again: nothing is stale now, and the command says so.
    assert main(["fail-stale", db, "s", "--older-than", "5", "--yes"]) == 0
    assert "nothing changed" in capsys.readouterr().out
    alive.add_observation(running, objective=0.5)
    alive.finalize(running)


def test_nothing_stale_writes_nothing(db, capsys):
    study = _study(db, heartbeat=3600.0)  # beats at its insert, then not within the test
    study.get_suggestion()
    forget_storages()
    before = _files(db)
    time.sleep(0.05)
    assert main(["fail-stale", db, "s"]) == 0  # default 40 s: the trial just started
    assert "is without a heartbeat for 40 s: nothing changed" in capsys.readouterr().out
    after = _files(db)  # the file unchanged (a WAL reader may create its side files)
    assert after["runs.db"] == before["runs.db"]
    assert after.get("runs.db-wal", (0, 0))[1] == 0
    assert poptune.load_study(db, "s").trials[0].status is TrialStatus.RUNNING


def test_it_asks_before_failing_and_checks_its_arguments(db, capsys, monkeypatch):
    dead = _killed_worker_trial(db)
    time.sleep(2.5)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # not a terminal
    assert main(["fail-stale", db, "s", "--older-than", "2"]) == 1
    assert "needs --yes when not interactive" in capsys.readouterr().err
    assert poptune.load_study(db, "s").get_trial(dead).status is TrialStatus.RUNNING
    assert main(["fail-stale", db, "s", "--older-than", "0", "--yes"]) == 1
    assert "--older-than must be a positive number of seconds, got 0.0" in capsys.readouterr().err
    assert main(["fail-stale", db, "nope", "--yes"]) == 1
    assert "nope" in capsys.readouterr().err
    assert main(["fail-stale", db, "s", "--older-than", "2", "-y"]) == 0
    assert poptune.load_study(db, "s").get_trial(dead).status is TrialStatus.FAILED
