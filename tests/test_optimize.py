"""study.optimize: finalization rules, checkpoints, worker processes, Dask, the worker CLI."""

import logging
import math
from pathlib import Path

import numpy as np
import pytest

import poptune as pt
from poptune import (
    AlgorithmState,
    CheckpointError,
    ConfigurationError,
    Continuous,
    Study,
    TrialStatus,
    algorithms,
)
from poptune.checkpoints import read_checkpoint

from . import objectives

PARAMS = [Continuous("lr", [1e-4, 1e-2], "log")]


def random_study(n=10, **kw):
    return Study(PARAMS, algorithms.RandomSearch(n), True, seed=0, **kw)


def pbt_study(generations=3, population=4, **kw):
    algorithm = algorithms.PopulationBasedTraining(generations, population)
    return Study(PARAMS, algorithm, False, seed=1, **kw)


# -- finalization rules ------------------------------------------------------------------------
def test_returned_values_complete_the_trials():
    study = random_study(12)
    study.optimize(objectives.quadratic, show_progress=False)
    trials = study.trials
    assert len(trials) == 12 and all(t.status is TrialStatus.COMPLETED for t in trials)
    assert all(t.observations[1].objective == objectives.quadratic(t) for t in trials)
    assert study.get_suggestion() is AlgorithmState.DONE


def test_the_worker_loop_runs_inside_the_storages_trial_loop_block():
    """``Storage.trial_loop`` is the hook a storage gets around a worker's loop (PostgreSQL
    chains a trial's final write with the next suggestion in it): entered once, left once,
    every trial run inside it; the base class's default changes nothing."""
    from contextlib import contextmanager

    from poptune.storage import MemoryStorage

    events = []

    class Watching(MemoryStorage):
        @contextmanager
        def trial_loop(self, study_id):
            events.append(("enter", study_id))
            yield
            events.append(("exit", study_id))

        def finish_with_observation(self, study_id, trial_id, *args, **kwargs):
            events.append(("finish", trial_id))
            return super().finish_with_observation(study_id, trial_id, *args, **kwargs)

    study = random_study(3, storage=Watching())
    study.optimize(objectives.quadratic, show_progress=False)
    sid = study._study_id
    assert events == [("enter", sid), ("finish", 1), ("finish", 2), ("finish", 3), ("exit", sid)]
    with MemoryStorage().trial_loop(1):  # the default: a block that does nothing
        pass


def test_reported_values_and_context():
    study = random_study(3)
    study.optimize(objectives.reporting, show_progress=False)
    t = study.trials[0]
    assert list(t.observations) == [1, 2, 3] and t.observations[2].context == {"loss": 0.2}
    assert t.status is TrialStatus.COMPLETED


def test_a_failing_objective_fails_its_trial_and_the_study_goes_on(caplog):
    def objective(trial):
        if trial.id == 2:
            raise ValueError("diverged at step 7")
        return 1.0

    study = random_study(4)
    with caplog.at_level(logging.WARNING, logger="poptune"):
        study.optimize(objective, show_progress=False)
    statuses = [t.status.value for t in study.trials]
    assert statuses == ["COMPLETED", "FAILED", "COMPLETED", "COMPLETED"]
    failed = study.get_trial(2)
    assert failed.meta["error"] == "ValueError: diverged at step 7"
    assert "diverged at step 7" in failed.meta["traceback"]
    assert "trial 2 failed: ValueError: diverged at step 7" in caplog.text


@pytest.mark.parametrize(
    "returned, error",
    [
        (None, "the objective returned None and reported nothing"),
        (float("nan"), "InvalidObservationError: trial 1: objective must be a finite number"),
        ("good", "objective must be a finite number, got 'good'"),
    ],
)
def test_bad_return_values_fail_the_trial(returned, error):
    study = random_study(1)
    study.optimize(lambda trial: returned, show_progress=False)
    trial = study.get_trial(1)
    assert trial.status is TrialStatus.FAILED and error in trial.meta["error"]


def test_should_stop_makes_a_stopped_trial():
    class StopAtTwo(pt.StoppingRule):
        def should_trial_stop(self, trial, history):
            return 2 in trial.observations

    def objective(trial):
        for it in range(1, 10):
            trial.report(1.0 / it, iteration=it)
            if trial.should_stop():
                return None
        return None

    study = Study(PARAMS, algorithms.RandomSearch(2), True, stopping_rule=StopAtTwo())
    study.optimize(objective, show_progress=False)
    assert [(t.status.value, list(t.observations)) for t in study.trials] == [
        ("STOPPED", [1, 2]), ("STOPPED", [1, 2])
    ]  # fmt: skip


def test_pbt_returned_value_goes_to_the_generation_iteration():
    study = pbt_study(generations=2, population=2)
    study.optimize(lambda trial: trial.parameters["lr"], show_progress=False)
    assert [list(t.observations) for t in study.trials] == [[1], [1], [2], [2]]


def test_n_trials_and_timeout():
    study = random_study(100)
    study.optimize(objectives.quadratic, n_trials=7, show_progress=False)
    assert len(study.trials) == 7
    study.optimize(objectives.quadratic, n_trials=3, show_progress=False)
    assert len(study.trials) == 10
    study.optimize(objectives.slow_quadratic, timeout=0.2, show_progress=False)
    assert 10 < len(study.trials) < 30


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"n_trials": 0}, "n_trials must be an int >= 1"),
        ({"timeout": -1}, "timeout must be a number > 0"),
        ({"n_workers": 0}, "n_workers must be an int >= 1"),
        ({"executor": object()}, "executor must be None or an object with a submit() method"),
    ],
)
def test_bad_optimize_arguments(kwargs, fragment):
    with pytest.raises(ConfigurationError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        random_study().optimize(objectives.quadratic, **kwargs)
    with pytest.raises(ConfigurationError, match="objective must be callable"):
        random_study().optimize("quadratic")


def test_ctrl_c_marks_the_trial_and_the_study_resumes(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    calls = []

    def objective(trial):
        calls.append(trial.id)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return 1.0

    study = random_study(6, storage=url, study_name="int")
    with pytest.raises(KeyboardInterrupt):
        study.optimize(objective, show_progress=False)
    interrupted = study.get_trial(3)
    assert interrupted.status is TrialStatus.FAILED and interrupted.meta["interrupted"] is True
    again = random_study(6, storage=url, study_name="int")  # e.g. the script run again
    again.optimize(objective, show_progress=False)
    assert [t.status.value for t in again.trials] == ["COMPLETED"] * 2 + ["FAILED"] + [
        "COMPLETED"
    ] * 3


# -- checkpoints -----------------------------------------------------------------------------
def test_exploited_trials_start_from_the_donors_weights(tmp_path):
    study = pbt_study(generations=4, population=4, checkpoint_dir=tmp_path / "ckpt")
    study.optimize(objectives.pbt_weights, show_progress=False)
    ckpt = study.checkpoints.directory  # the study's own folder in checkpoint_dir
    assert ckpt == tmp_path / "ckpt" / study.name
    trials = {t.id: t for t in study.trials}
    assert len(trials) == 16
    exploited = [t for t in trials.values() if t.explore]
    assert exploited
    for t in trials.values():
        saved = read_checkpoint(ckpt / t.save_to)
        if t.generation == 1:
            assert saved["loaded_from"] is None
            continue
        assert saved["loaded_from"] == t.parent  # started from the donor's checkpoint
        donor = read_checkpoint(ckpt / t.load_from)
        step = t.parameters["lr"] * 100.0
        assert np.allclose(saved["weights"], donor["weights"] + step)  # donor's weights + step
        assert saved["lr"] == t.parameters["lr"]  # the explored value is the one in effect
        if t.explore:
            assert t.parameters["lr"] != trials[t.parent].parameters["lr"]


def test_a_missing_checkpoint_fails_loudly_and_pbt_replaces_the_member(tmp_path):
    study = pbt_study(generations=3, population=3, checkpoint_dir=tmp_path / "ckpt")
    ckpt = study.checkpoints.directory
    first = [study.get_suggestion() for _ in range(3)]
    for t in first:
        objectives.pbt_weights(t)
        study.finalize(t)
    (ckpt / "1").unlink()  # someone deleted member 0's checkpoint
    study.optimize(objectives.pbt_weights, show_progress=False)
    broken = [t for t in study.trials if t.load_from == "1"]
    assert broken and all(t.status is TrialStatus.FAILED for t in broken)
    assert all(t.meta["checkpoint_missing"] for t in broken)
    assert (
        "CheckpointError" in broken[0].meta["error"] and str(ckpt / "1") in broken[0].meta["error"]
    )
    gen3 = [t for t in study.trials if t.generation == 3]
    assert len(gen3) == 3 and broken[0].id in {t.meta.get("replaced") for t in gen3}


def test_checkpoint_errors_name_the_file(tmp_path):
    study = pbt_study(generations=2, population=2, checkpoint_dir=tmp_path)
    tmp_path = study.checkpoints.directory  # the study's folder
    for t in (study.get_suggestion(), study.get_suggestion()):
        assert t.load_path is None and t.load_checkpoint() is None
        t.save_checkpoint({"w": 1})
        t.report(float(t.id), iteration=1)
        study.finalize(t)
    nxt = study.get_suggestion()
    assert nxt.load_path == tmp_path / nxt.load_from
    (tmp_path / nxt.load_from).write_bytes(b"\x80garbage")
    with pytest.raises(CheckpointError, match=f"checkpoint {tmp_path / nxt.load_from}"):
        nxt.load_checkpoint()
    (tmp_path / nxt.load_from).unlink()
    with pytest.raises(CheckpointError, match="does not exist"):
        nxt.load_path  # noqa: B018
    plain = random_study()
    with pytest.raises(ConfigurationError, match="has no checkpoint_dir"):
        plain.get_suggestion().checkpoint_path  # noqa: B018


def test_checkpoints_are_written_atomically(tmp_path):
    study = random_study(1, checkpoint_dir=tmp_path)
    tmp_path = study.checkpoints.directory
    trial = study.get_suggestion()
    path = trial.save_checkpoint({"w": np.arange(3)})
    assert path == trial.checkpoint_path == tmp_path / "1"
    assert [p.name for p in tmp_path.iterdir() if p.name != ".poptune-study.json"] == ["1"]


def test_garbage_collection_keeps_what_is_needed(tmp_path):
    study = pbt_study(generations=5, population=4, checkpoint_dir=tmp_path, keep_checkpoints=1)
    study.optimize(objectives.pbt_weights, show_progress=False)
    kept = sorted(int(p.name) for p in study.checkpoints.directory.iterdir() if p.name.isdigit())
    last_gen = sorted(t.id for t in study.trials if t.generation == 5)
    best = study.get_best_result()["Trial-ID"]
    assert set(kept) == set(last_gen) | {best}
    with pytest.raises(ConfigurationError, match="keep_checkpoints needs a checkpoint_dir"):
        random_study(keep_checkpoints=2)


def test_garbage_collection_never_deletes_a_checkpoint_about_to_be_loaded(tmp_path):
    study = pbt_study(generations=3, population=4, checkpoint_dir=tmp_path, keep_checkpoints=0)
    ckpt = study.checkpoints.directory
    seen_missing = []

    def objective(trial):
        if trial.load_from and not (ckpt / trial.load_from).exists():
            seen_missing.append(trial.id)
        objectives.pbt_weights(trial)

    study.optimize(objective, show_progress=False)
    assert seen_missing == [] and all(t.status is TrialStatus.COMPLETED for t in study.trials)


# -- worker processes, Dask, the worker command ------------------------------------------------
def test_worker_processes_share_a_memory_study_through_a_temporary_file(caplog):
    study = random_study(40)
    with caplog.at_level(logging.WARNING, logger="poptune"):
        study.optimize(objectives.quadratic, n_workers=2, show_progress=False)
    assert "lives in memory; its worker processes share a temporary SQLite file" in caplog.text
    trials = study.trials
    assert len(trials) == 40 and all(t.status is TrialStatus.COMPLETED for t in trials)
    assert math.isclose(study.get_best_result()["Objective"],
                        min(objectives.quadratic(t) for t in trials))  # fmt: skip


def test_worker_processes_run_pbt_on_a_database(db_url, tmp_path):
    study = pbt_study(generations=3, population=4, storage=db_url, study_name="pbt",
                      checkpoint_dir=tmp_path / "ckpt")  # fmt: skip
    study.optimize(objectives.pbt_weights, n_workers=3, show_progress=False)
    trials = study.trials
    assert len(trials) == 12 and all(t.status is TrialStatus.COMPLETED for t in trials)
    by_id = {t.id: t for t in trials}
    for t in trials:
        if t.generation > 1:
            assert by_id[int(t.load_from)].generation == t.generation - 1


def test_objectives_for_workers_must_be_picklable(tmp_path):
    """(A lambda or closure goes by value: tests/test_shipping.py; a lock cannot go.)"""
    import threading

    lock = threading.Lock()
    study = random_study(4, storage=f"sqlite:///{tmp_path / 'x.db'}", study_name="x")
    with pytest.raises(ConfigurationError, match="cannot be sent to worker processes"):
        study.optimize(lambda trial: lock.locked() or 1.0, n_workers=2, show_progress=False)
    assert study.trials == []


def test_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed", reason="pip install 'poptune[dask]'")
    url = f"sqlite:///{tmp_path / 'dask.db'}"
    study = pbt_study(generations=3, population=4, storage=url, study_name="dask",
                      checkpoint_dir=tmp_path / "ckpt")  # fmt: skip
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:  # fmt: skip
        with distributed.Client(cluster) as client:
            study.optimize(objectives.pbt_weights, n_workers=2, executor=client,
                           show_progress=False)  # fmt: skip
    assert len(study.trials) == 12
    assert all(t.status is TrialStatus.COMPLETED for t in study.trials)


def test_a_lost_dask_worker_has_its_trial_retried(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed", reason="pip install 'poptune[dask]'")
    monkeypatch.setenv("POPTUNE_TEST_MARKER", str(tmp_path / "marker"))
    url = f"sqlite:///{tmp_path / 'lost.db'}"
    study = Study(PARAMS, algorithms.RandomSearch(6), True, storage=url, study_name="lost",
                  heartbeat_interval=0.2, grace_period=1.0, retry_failed_trials=1)  # fmt: skip
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:  # fmt: skip
        with distributed.Client(cluster) as client:
            study.optimize(objectives.dies_once, n_workers=2, executor=client,
                           show_progress=False)  # fmt: skip
    lost = study.get_trial(2)
    assert lost.status is TrialStatus.FAILED and lost.meta["heartbeat_lost"] is True
    retry = [t for t in study.trials if t.meta.get("retry_of") == 2]
    assert len(retry) == 1 and retry[0].status is TrialStatus.COMPLETED
    assert retry[0].parameters == lost.parameters


def test_the_worker_command(tmp_path):
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    random_study(8, storage=url, study_name="cli")
    result = subprocess.run(
        [sys.executable, "-m", "poptune", "worker", url, "cli", "tests.objectives:quadratic",
         "--n-trials", "5"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "worker ran 5 trial(s) of study 'cli'" in result.stdout
    study = pt.load_study(url, "cli")
    assert len(study.trials) == 5 and all(t.status == "COMPLETED" for t in study.trials)
    bad = subprocess.run([sys.executable, "-m", "poptune", "worker", url, "cli", "nomodule:f"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 1 and "cannot import objective 'nomodule:f'" in bad.stderr


def test_ctrl_c_with_worker_processes(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    url = f"sqlite:///{tmp_path / 'ctrlc.db'}"
    script = tmp_path / "run.py"
    script.write_text(
        "import poptune as pt\n"
        "from tests import objectives\n"
        "if __name__ == '__main__':\n"
        "    study = pt.Study([pt.Continuous('lr', [1e-4, 1e-2], 'log')],\n"
        "                     pt.algorithms.RandomSearch(400), True, seed=0,\n"
        f"                     storage={url!r}, study_name='c')\n"
        "    study.optimize(objectives.sleepy, n_workers=2, show_progress=False)\n"
    )
    root = str(Path(__file__).resolve().parent.parent)
    # 400 trials of 0.3 s on 2 workers: a minute, so even a machine too loaded to read the
    # study for a while interrupts it mid-run (with 40 it sometimes finished first)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ,
                                 "PYTHONPATH": os.pathsep.join([f"{root}/src", root])},
                            start_new_session=True)  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            done = [t for t in pt.load_study(url, "c").trials if t.is_finished]
        except pt.PoptuneError:
            continue
        if len(done) >= 4:
            break
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "interrupted" in err
    study = pt.load_study(url, "c")
    interrupted = [t for t in study.trials if t.meta.get("interrupted")]
    # (under heavy load Ctrl-C can land between two trials, when none is running)
    assert all(t.status is TrialStatus.FAILED for t in interrupted)
    assert all(t.is_finished for t in study.trials)  # nothing left RUNNING
    resumed = random_study(400, storage=url, study_name="c")
    resumed.optimize(objectives.quadratic, show_progress=False)
    assert len(resumed.trials) == 400 and all(t.is_finished for t in resumed.trials)
