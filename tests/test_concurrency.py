"""Many real processes (spawn) on one study in a real SQLite file or PostgreSQL database."""

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest

import poptune as pt
from poptune import Continuous, Discrete, Study, TrialStatus, algorithms

PARAMS = [Continuous("lr", [1e-4, 1e-2], "log"), Discrete("units", [8, 64])]
CTX = multiprocessing.get_context("spawn")


def _random_worker(url: str, total: int, log: str) -> None:
    study = Study(PARAMS, algorithms.RandomSearch(total), True, storage=url, study_name="rs",
                  seed=0)  # fmt: skip
    ids = []
    for trial in study:
        study.add_observation(trial, trial.parameters["lr"], context={"pid": os.getpid()})
        study.finalize(trial)
        ids.append(trial.id)
    Path(log).write_text(json.dumps(ids))


def _pbt_worker(url: str, log: str, die: bool = False, **study_kw) -> None:
    algorithm = algorithms.PopulationBasedTraining(num_generations=5, population_size=8)
    study = Study(PARAMS, algorithm, False, storage=url, study_name="pbt", seed=1, **study_kw)
    rng = random.Random(os.getpid())
    done = []
    for trial in study:
        study.add_observation(trial, -abs(trial.parameters["lr"] - 3e-3), iteration=1)
        if die:  # dies mid-trial, before finalizing: what a lost machine looks like
            Path(log).write_text(json.dumps([trial.id]))
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(rng.uniform(0.0, 0.02))
        study.add_observation(trial, -abs(trial.parameters["lr"] - 3e-3) + 0.001, iteration=2)
        study.finalize(trial)
        done.append(trial.id)
    Path(log).write_text(json.dumps(done))


def _run(target, args_list, timeout=600):
    procs = [CTX.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    return procs


def test_8_workers_1000_trials_each_no_duplicate_no_loss(db_url, tmp_path):
    total = 8 * 1000
    Study(PARAMS, algorithms.RandomSearch(total), True, storage=db_url, study_name="rs", seed=0)
    logs = [str(tmp_path / f"w{i}.json") for i in range(8)]
    procs = _run(_random_worker, [(db_url, total, log) for log in logs])
    assert [p.exitcode for p in procs] == [0] * 8
    handed = [tid for log in logs for tid in json.loads(Path(log).read_text())]
    assert sorted(handed) == list(range(1, total + 1))  # every trial once, ids dense
    assert sum(1 for log in logs if json.loads(Path(log).read_text())) >= 2  # really shared
    study = pt.load_study(db_url, "rs")
    trials = study.trials
    assert len(trials) == total
    assert all(t.status is TrialStatus.COMPLETED and list(t.observations) == [1] for t in trials)
    assert len(study.results) == 2 * total
    reference = Study(PARAMS, algorithms.RandomSearch(total), True, seed=0)
    for t, ref in zip(trials[:50], reference, strict=False):  # same seed, same trials
        assert t.parameters == ref.parameters
        reference.add_observation(ref, 0.0)
        reference.finalize(ref)


def test_synchronous_pbt_with_8_workers(db_url, tmp_path):
    logs = [str(tmp_path / f"w{i}.json") for i in range(8)]
    procs = _run(_pbt_worker, [(db_url, log) for log in logs])
    assert [p.exitcode for p in procs] == [0] * 8
    study = pt.load_study(db_url, "pbt")
    trials = study.trials
    assert len(trials) == 40 and all(t.status is TrialStatus.COMPLETED for t in trials)
    by_id = {t.id: t for t in trials}
    for g in range(1, 6):
        gen = [t for t in trials if t.generation == g]
        assert len(gen) == 8 and sorted(t.member for t in gen) == list(range(8))
    for t in trials:
        if t.generation > 1:
            assert by_id[int(t.load_from)].generation == t.generation - 1
            assert t.lineage == by_id[t.parent].lineage + f"{t.parent},"
    handed = sorted(tid for log in logs for tid in json.loads(Path(log).read_text()))
    assert handed == list(range(1, 41))


def test_a_worker_killed_mid_trial_is_replaced(db_url, tmp_path):
    fast = {"heartbeat_interval": 0.2, "grace_period": 1.0}
    logs = [str(tmp_path / f"w{i}.json") for i in range(3)]
    args = [(db_url, logs[0], True), (db_url, logs[1], False), (db_url, logs[2], False)]
    procs = [CTX.Process(target=_pbt_worker, args=a, kwargs=fast) for a in args]
    procs[0].start()  # the victim first, so that it dies in generation 1
    procs[0].join(120)
    for p in procs[1:]:
        p.start()
    for p in procs[1:]:
        p.join(600)
    assert procs[0].exitcode == -signal.SIGKILL
    assert [p.exitcode for p in procs[1:]] == [0, 0]
    (victim,) = json.loads(Path(logs[0]).read_text())
    study = pt.load_study(db_url, "pbt")
    dead = study.get_trial(victim)
    assert dead.generation == 1
    assert dead.status is TrialStatus.FAILED and dead.meta.get("heartbeat_lost") is True
    assert list(dead.observations) == [1]  # what it reported before dying is kept
    gen2 = [t for t in study.trials if t.generation == 2]
    assert len(gen2) == 8 and victim in {t.meta.get("replaced") for t in gen2}
    assert all(t.parent != victim for t in gen2)
    assert [len([t for t in study.trials if t.generation == g]) for g in range(1, 6)] == [8] * 5


def _slow_worker(url: str, log: str) -> None:
    study = Study(PARAMS, algorithms.RandomSearch(200), True, storage=url, study_name="crash",
                  seed=2, heartbeat_interval=0.2, grace_period=1.0)  # fmt: skip
    with open(log, "a") as fh:
        for trial in study:
            for it in (1, 2):
                study.add_observation(trial, trial.parameters["lr"] * it, iteration=it)
                fh.write(json.dumps(["obs", trial.id, it]) + "\n")
                fh.flush()
            study.finalize(trial)
            fh.write(json.dumps(["done", trial.id]) + "\n")
            fh.flush()
            time.sleep(0.005)


def test_every_process_killed_then_resumed(db_url, tmp_path):
    Study(PARAMS, algorithms.RandomSearch(200), True, storage=db_url, study_name="crash", seed=2)
    logs = [str(tmp_path / f"w{i}.log") for i in range(2)]
    procs = [CTX.Process(target=_slow_worker, args=(db_url, log)) for log in logs]
    for p in procs:
        p.start()
    deadline = time.time() + 120
    while (
        time.time() < deadline
        and sum(Path(log).exists() and Path(log).read_text().count("done") for log in logs) < 30
    ):
        time.sleep(0.05)
    for p in procs:
        os.kill(p.pid, signal.SIGKILL)
        p.join()
    events = [  # a worker killed before it started has no log
        json.loads(line)
        for log in logs
        if Path(log).exists()
        for line in Path(log).read_text().splitlines()
    ]
    assert sum(e[0] == "done" for e in events) >= 30

    study = Study(PARAMS, algorithms.RandomSearch(200), True, storage=db_url,
                  study_name="crash", heartbeat_interval=0.2, grace_period=1.0)  # fmt: skip
    for kind, tid, *rest in events:  # everything acknowledged before the kill is stored
        trial = study.get_trial(tid)
        if kind == "done":
            assert trial.status is TrialStatus.COMPLETED
        else:
            assert rest[0] in trial.observations
    finished_before = {t.id for t in study.trials if t.is_finished}
    for trial in study:
        study.add_observation(trial, 1.0)
        study.finalize(trial)
    time.sleep(1.2)  # past the grace period: the killed workers' trials are now stale
    assert study.get_suggestion() is pt.AlgorithmState.DONE  # and this call reaps them
    trials = study.trials
    assert len(trials) == 200
    assert all(t.is_finished for t in trials)
    lost = [t for t in trials if t.status is TrialStatus.FAILED]
    assert all(t.meta.get("heartbeat_lost") for t in lost) and len(lost) <= 2
    assert finished_before <= {t.id for t in trials if t.is_finished}


@pytest.mark.parametrize("kind", ["sqlite"])
def test_many_processes_create_the_same_study_at_once(kind, tmp_path):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    logs = [str(tmp_path / f"w{i}.json") for i in range(4)]
    procs = _run(_random_worker, [(url, 40, log) for log in logs])
    assert [p.exitcode for p in procs] == [0] * 4
    handed = sorted(tid for log in logs for tid in json.loads(Path(log).read_text()))
    assert handed == list(range(1, 41))
