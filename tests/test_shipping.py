"""Objectives that cannot be imported by name (a notebook cell's, an interactive session's,
a lambda, a closure) in worker processes and on Dask; the one-line error when one cannot be
sent at all; the temporary folder of an in-memory study removed however the run ends."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

import poptune as pt
from poptune import ConfigurationError, Continuous, PoptuneError, Study, TrialStatus, algorithms
from poptune.study import _optimize, _shipping

from . import objectives

ROOT = Path(__file__).resolve().parent.parent
PARAMS = [Continuous("lr", [1e-4, 1e-2], "log")]


def random_study(n=6, **kw):
    return Study(PARAMS, algorithms.RandomSearch(n), True, seed=0, **kw)


def _temporary_folder(text: str) -> Path:
    found = re.search(r"temporary SQLite file, (\S+)/study\.db", text)
    assert found is not None, text
    return Path(found.group(1))


# -- what travels how -------------------------------------------------------------------------
def test_a_module_level_function_travels_by_reference():
    shipped = _shipping.ship(objectives.quadratic, remote=False)
    assert not shipped.by_value and shipped.load() is objectives.quadratic
    assert shipped.name == "'quadratic' (from tests.objectives)"


def test_lambdas_closures_and_local_functions_travel_by_value():
    scale = 3.0

    def local(trial):
        return scale * trial.parameters["lr"]

    for objective in (lambda trial: 1.0, local):
        shipped = _shipping.ship(objective, remote=False)
        assert shipped.by_value
    trial = pt.Trial(1, {"lr": 0.5})
    assert _shipping.ship(local, remote=True).load()(trial) == 1.5


def test_a_function_of_an_interactive_main_travels_by_value(monkeypatch):
    """``__main__`` without a file (a notebook, a REPL): pickle by reference would work here
    and fail in the spawned process ("Can't get attribute 'objective' on <module '__main__'>")."""
    main = types.ModuleType("__main__")  # as IPython's user module: no __file__, no __spec__
    exec("def objective(trial):\n    return 2.0\n", main.__dict__)  # noqa: S102
    monkeypatch.setitem(sys.modules, "__main__", main)
    shipped = _shipping.ship(main.objective, remote=False)
    assert shipped.by_value and "from __main__" in shipped.name
    main.__file__ = __file__  # a script: spawn re-imports it
    assert not _shipping.ship(main.objective, remote=False).by_value
    assert _shipping.ship(main.objective, remote=True).by_value  # Dask workers: never


def test_a_function_of_a_module_made_at_run_time_travels_by_value(monkeypatch):
    made = types.ModuleType("made_at_run_time")
    exec("def objective(trial):\n    return 2.0\n", made.__dict__)  # noqa: S102
    made.objective.__module__ = "made_at_run_time"
    monkeypatch.setitem(sys.modules, "made_at_run_time", made)
    assert _shipping.ship(made.objective, remote=False).by_value


# -- what cannot travel -----------------------------------------------------------------------
def test_an_objective_closing_over_a_lock_is_refused_in_one_line_naming_it(tmp_path):
    lock = threading.Lock()

    def objective(trial):
        with lock:
            return 1.0

    study = random_study(4, storage=f"sqlite:///{tmp_path / 'x.db'}", study_name="x")
    with pytest.raises(ConfigurationError) as info:
        study.optimize(objective, n_workers=2, show_progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("objective 'test_an_objective_closing_over_a_lock_is_refused")
    assert "its variable 'lock' (a _thread.lock) cannot be pickled" in message
    assert "n_workers=1" in message
    assert study.trials == []


def test_an_objective_using_an_open_file_is_refused_naming_the_global(tmp_path):
    log = open(tmp_path / "log.txt", "w")  # noqa: SIM115
    namespace = {"log": log}
    exec("def objective(trial):\n    log.write('x')\n    return 1.0\n", namespace)  # noqa: S102
    try:
        with pytest.raises(ConfigurationError, match=r"its global 'log' \(a _io.TextIOWrapper\)"):
            _shipping.ship(namespace["objective"], remote=True)
    finally:
        log.close()


def test_an_objective_that_cannot_be_loaded_in_the_worker_fails_in_one_line(capfd, monkeypatch):
    """Whatever breaks while a worker loads the objective: one line per worker naming it,
    never the raw tracebacks of spawned processes."""
    broken = _shipping.ShippedObjective("'objective' (from __main__)", b"not a pickle", True)
    monkeypatch.setattr(_optimize, "ship", lambda objective, remote: broken)
    study = random_study(4)
    with pytest.raises(PoptuneError) as info:
        study.optimize(objectives.quadratic, n_workers=2, show_progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert "objective 'objective' (from __main__) could not be loaded in worker process" in message
    assert "Traceback" not in capfd.readouterr().err
    with pytest.raises(ConfigurationError, match="sent by value"):
        broken.load()


# -- in worker processes and on Dask ----------------------------------------------------------
def test_a_lambda_and_a_closure_run_in_worker_processes_and_the_folder_goes(caplog):
    offset = 10.0
    study = random_study(6)
    with caplog.at_level(logging.WARNING, logger="poptune"):
        study.optimize(lambda trial: offset + trial.parameters["lr"], n_workers=2,
                       show_progress=False)  # fmt: skip
    trials = study.trials
    assert len(trials) == 6 and all(t.status is TrialStatus.COMPLETED for t in trials)
    assert all(t.observations[1].objective == offset + t.parameters["lr"] for t in trials)
    assert not _temporary_folder(caplog.text).exists()
    assert type(study._storage).__name__ == "MemoryStorage"  # back in memory, all there
    assert study.get_best_result()["Objective"] == min(offset + t.parameters["lr"] for t in trials)


def test_an_interactive_session_objective_runs_in_worker_processes(tmp_path):
    """What a notebook cell does: ``__main__`` has no file (here: ``python -c``)."""
    script = (
        "import poptune as pt\n"
        "study = pt.Study([pt.Continuous('lr', [1e-4, 1e-2], 'log')],\n"
        "                 pt.algorithms.RandomSearch(4), True, seed=0)\n"
        "def objective(trial):\n"
        "    return trial.parameters['lr']\n"
        "study.optimize(objective, n_workers=2, show_progress=False)\n"
        "print('statuses', sorted({t.status.value for t in study.trials}), len(study.trials))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "statuses ['COMPLETED'] 4" in result.stdout
    assert "Can't get attribute" not in result.stderr and "Traceback" not in result.stderr
    assert not _temporary_folder(result.stderr).exists()


@pytest.mark.parametrize("how", ["failure", "interrupt"])
def test_the_temporary_folder_goes_on_failure_and_ctrl_c(how, caplog, monkeypatch):
    def workers_end_badly(plan, n_workers, progress, *rest):
        assert Path(plan.url.removeprefix("sqlite:///")).exists()
        raise KeyboardInterrupt if how == "interrupt" else RuntimeError("the machine broke")

    monkeypatch.setattr(_optimize, "_run_processes", workers_end_badly)
    study = random_study(4)
    study.add_trial({"lr": 0.001})
    with caplog.at_level(logging.WARNING, logger="poptune"):
        with pytest.raises(KeyboardInterrupt if how == "interrupt" else RuntimeError):
            study.optimize(objectives.quadratic, n_workers=2, show_progress=False)
    assert not _temporary_folder(caplog.text).exists()
    assert type(study._storage).__name__ == "MemoryStorage"
    assert [t.parameters["lr"] for t in study.trials] == [0.001]  # nothing lost
    study.optimize(objectives.quadratic, show_progress=False)  # and it goes on
    assert len(study.trials) > 1 and all(t.status is TrialStatus.COMPLETED for t in study.trials)


@pytest.mark.slow
def test_a_closure_runs_on_dask(tmp_path):
    distributed = pytest.importorskip("distributed", reason="pip install 'poptune[dask]'")
    scale = 2.0

    def objective(trial):
        return scale * trial.parameters["lr"]

    study = random_study(4)  # in memory: a temporary SQLite file the local workers reach
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:  # fmt: skip
        with distributed.Client(cluster) as client:
            study.optimize(objective, n_workers=2, executor=client, show_progress=False)
    trials = study.trials
    assert len(trials) == 4 and all(t.status is TrialStatus.COMPLETED for t in trials)
    assert all(t.observations[1].objective == scale * t.parameters["lr"] for t in trials)


@pytest.mark.slow
def test_ctrl_c_in_an_interactive_session_leaves_no_temporary_folder(tmp_path):
    """A real Ctrl-C (to the whole process group, as a terminal sends it) while two workers
    run a lambda of an in-memory study: the run stops, and its temporary folder goes."""
    import signal
    import time

    script = (
        "import time, poptune as pt\n"
        "study = pt.Study([pt.Continuous('lr', [1e-4, 1e-2], 'log')],\n"
        "                 pt.algorithms.RandomSearch(400), True, seed=0)\n"
        "study.optimize(lambda t: time.sleep(0.2) or t.parameters['lr'], n_workers=2,\n"
        "               show_progress=False)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    err = tmp_path / "err.txt"
    with open(err, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL,
                                stderr=sink, env=env, cwd=tmp_path,
                                start_new_session=True)  # fmt: skip
        deadline = time.time() + 120
        while "temporary SQLite file" not in err.read_text() and time.time() < deadline:
            time.sleep(0.2)
        folder = _temporary_folder(err.read_text())
        time.sleep(3)  # the workers have started and run trials
        assert folder.exists()
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err.read_text()
    assert not folder.exists()


def test_the_dashboard_of_an_in_memory_study_follows_it_to_its_temporary_home(monkeypatch):
    pytest.importorskip("uvicorn", reason='pip install "poptune[dashboard]"')
    seen = []

    def workers_in_this_process(plan, n_workers, progress, *rest):
        _optimize.worker_main(plan)
        seen.append(study._dashboard.data.study_summary(study.name)["counts"]["COMPLETED"])
        return _optimize.WorkerOutcome(n_workers, n_workers, [])

    monkeypatch.setattr(_optimize, "_run_processes", workers_in_this_process)
    study = random_study(5, study_name="followed")
    try:
        study.show_dashboard()
        study.optimize(objectives.quadratic, n_workers=2, show_progress=False)
        assert seen == [5]  # live, while the study was in the temporary SQLite file
        data = study._dashboard.data
        assert data.storage is study._storage and data.study_summary("followed")["trials"] == 5
    finally:
        study.close()
