"""Experiment tracking: study callbacks (in worker processes too, and in the SHERPA loop), the
MLflow callback against a real local tracking server (SQLite backend) started here, and
TensorBoard event files read back with TensorBoard's own reader."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

import poptune as pt
from poptune import (
    ArgumentTypeError,
    ConfigurationError,
    Continuous,
    Study,
    StudyCallback,
    TrialStatus,
    algorithms,
)
from poptune.exceptions import MissingDependencyError
from poptune.lineage import parent_id

PARAMS = [Continuous("lr", [1e-3, 1e-1], "log")]
STEPS = 3  # observations per PBT segment


def segment(trial):
    """A PBT segment of STEPS iterations: a scalar 'weight' moved toward 3 by lr."""
    state = trial.load_checkpoint()
    weight = 0.0 if state is None else state["weight"]
    first = (trial.generation - 1) * STEPS + 1
    for iteration in range(first, first + STEPS):
        weight += trial.parameters["lr"] * 10
        trial.report(-abs(weight - 3.0), iteration=iteration, loss=abs(weight - 3.0))
    trial.save_checkpoint({"weight": weight})


def pbt_study(tmp_path, name, callbacks=(), generations=3, population=3):
    algorithm = algorithms.PopulationBasedTraining(generations, population)
    return Study(PARAMS, algorithm, False, seed=3, storage=f"sqlite:///{tmp_path / 's.db'}",
                 study_name=name, checkpoint_dir=tmp_path / "ckpt",
                 callbacks=list(callbacks))  # fmt: skip


class Journal(StudyCallback):
    """Appends one JSON line per hook call, with the pid, to a file (shared by processes)."""

    def __init__(self, path):
        self.path = str(path)

    def _write(self, hook, trial=None, **more):
        line = {"hook": hook, "pid": os.getpid(), "trial": trial, **more}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")

    def on_study_start(self, study):
        self._write("study_start")

    def on_trial_start(self, study, trial):
        self._write("trial_start", trial.id, member=trial.member)

    def on_observation(self, study, trial, observation):
        self._write("observation", trial.id, iteration=observation.iteration)

    def on_trial_end(self, study, trial, status):
        self._write("trial_end", trial.id, status=status.value, stored=trial.status.value)

    def on_study_end(self, study):
        self._write("study_end")


def read_journal(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


class Raising(StudyCallback):
    """Raises in every hook."""

    def _boom(self, *args):
        raise RuntimeError("tracking is down")

    on_study_start = on_trial_start = on_observation = on_trial_end = on_study_end = _boom


# -- the callback mechanism ------------------------------------------------------------------
def test_callbacks_fire_in_the_worker_processes_and_the_study_hooks_here(tmp_path):
    journal = tmp_path / "journal.jsonl"
    study = pbt_study(tmp_path, "journal", [Journal(journal)], generations=2, population=2)
    study.optimize(segment, n_workers=2, show_progress=False)
    lines = read_journal(journal)
    here = os.getpid()
    assert lines[0] == {"hook": "study_start", "pid": here, "trial": None}
    assert lines[-1] == {"hook": "study_end", "pid": here, "trial": None}
    work = lines[1:-1]
    assert work and all(line["pid"] != here for line in work)  # the workers did the work
    for trial in study.trials:
        mine = [line for line in work if line["trial"] == trial.id]
        assert [line["hook"] for line in mine] == ["trial_start"] + ["observation"] * STEPS + [
            "trial_end"
        ]
        assert [line["iteration"] for line in mine[1:-1]] == list(trial.observations)
        assert mine[0]["member"] == trial.member
        assert mine[-1]["status"] == mine[-1]["stored"] == "COMPLETED"
        assert len({line["pid"] for line in mine}) == 1  # one process ran the trial


def test_callbacks_travel_to_dask_tasks(tmp_path):
    distributed = pytest.importorskip("distributed", reason="pip install 'poptune[dask]'")
    journal = tmp_path / "journal.jsonl"
    study = pbt_study(tmp_path, "dask", generations=2, population=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:  # fmt: skip
        with distributed.Client(cluster) as client:
            study.optimize(segment, n_workers=2, executor=client, show_progress=False,
                           callbacks=[Journal(journal)])  # fmt: skip
    lines = read_journal(journal)
    ends = {line["trial"]: line for line in lines if line["hook"] == "trial_end"}
    assert sorted(ends) == [t.id for t in study.trials] == [1, 2, 3, 4]
    assert all(line["pid"] != os.getpid() for line in ends.values())
    assert [lines[0]["hook"], lines[-1]["hook"]] == ["study_start", "study_end"]


def test_callbacks_of_one_optimize_call_are_for_that_call_only(tmp_path):
    journal = tmp_path / "journal.jsonl"
    study = Study(PARAMS, algorithms.RandomSearch(2), True, seed=0)
    study.optimize(lambda t: t.parameters["lr"], n_trials=1, show_progress=False,
                   callbacks=[Journal(journal)])  # fmt: skip
    study.optimize(lambda t: t.parameters["lr"], n_trials=1, show_progress=False)
    hooks = [(line["hook"], line["trial"]) for line in read_journal(journal)]
    assert hooks == [("study_start", None), ("trial_start", 1), ("observation", 1),
                     ("trial_end", 1), ("study_end", None)]  # fmt: skip


def test_the_sherpa_loop_fires_every_hook_in_order(tmp_path):
    journal = tmp_path / "journal.jsonl"
    study = Study(PARAMS, algorithms.RandomSearch(3), True, seed=0, callbacks=[Journal(journal)])
    for trial in study:
        study.add_observation(trial, 1.0, iteration=1)
        study.add_observation(trial.id, 0.5, iteration=2)  # by id: the trial is read back
        study.finalize(trial, "STOPPED" if trial.id == 2 else "COMPLETED")
    hooks = [(line["hook"], line["trial"]) for line in read_journal(journal)]
    expected = [("study_start", None)]
    for tid in (1, 2, 3):
        expected += [("trial_start", tid), ("observation", tid), ("observation", tid),
                     ("trial_end", tid)]  # fmt: skip
    assert hooks == expected + [("study_end", None)]
    ends = [line for line in read_journal(journal) if line["hook"] == "trial_end"]
    assert [e["status"] for e in ends] == ["COMPLETED", "STOPPED", "COMPLETED"]


def test_leaving_the_loop_with_break_does_not_end_the_study(tmp_path):
    journal = tmp_path / "journal.jsonl"
    study = Study(PARAMS, algorithms.RandomSearch(3), True, seed=0, callbacks=[Journal(journal)])
    loop = iter(study)
    trial = next(loop)
    study.add_observation(trial, 1.0)
    study.finalize(trial)
    loop.close()  # what `break` does to the generator
    assert [line["hook"] for line in read_journal(journal)][-1] == "trial_end"


def test_a_raising_callback_loses_nothing_and_is_named(tmp_path, caplog):
    journal = tmp_path / "journal.jsonl"
    study = Study(PARAMS, algorithms.RandomSearch(3), True, seed=0,
                  callbacks=[Raising(), Journal(journal)])  # fmt: skip
    loop = Study(PARAMS, algorithms.RandomSearch(2), True, seed=1, callbacks=[Raising()])
    with caplog.at_level(logging.WARNING, logger="poptune"):
        study.optimize(lambda t: t.parameters["lr"], show_progress=False)
        for trial in loop:
            loop.add_observation(trial, 0.5, iteration=1)
            loop.finalize(trial)
    assert [t.status for t in study.trials] == [TrialStatus.COMPLETED] * 3
    assert [(t.status, t.observations[1].objective) for t in loop.trials] == [
        (TrialStatus.COMPLETED, 0.5)
    ] * 2
    assert all(t.observations[1].objective == t.parameters["lr"] for t in study.trials)
    messages = [r.getMessage() for r in caplog.records]
    raised = [m for m in messages if "test_tracking.Raising raised in" in m]
    for hook in ("on_study_start", "on_trial_start", "on_observation", "on_trial_end",
                 "on_study_end"):  # fmt: skip
        assert any(f"in {hook}" in m and "tracking is down" in m for m in raised), hook
    assert any("in on_observation for trial 2" in m for m in raised)
    # the callback after the raising one still ran every time
    assert len([x for x in read_journal(journal) if x["hook"] == "trial_end"]) == 3


def test_a_raising_callback_in_worker_processes_loses_nothing(tmp_path):
    study = pbt_study(tmp_path, "raising", [Raising()], generations=2, population=2)
    study.optimize(segment, n_workers=2, show_progress=False)
    assert [t.status for t in study.trials] == [TrialStatus.COMPLETED] * 4
    assert all(list(t.observations) == [1, 2, 3] or list(t.observations) == [4, 5, 6]
               for t in study.trials)  # fmt: skip


def test_bad_callbacks_are_refused_naming_them():
    with pytest.raises(ArgumentTypeError, match="callbacks must be .*got <object object"):
        Study(PARAMS, algorithms.RandomSearch(1), True, callbacks=[object()])
    with pytest.raises(ArgumentTypeError, match="callbacks must be a list"):
        Study(PARAMS, algorithms.RandomSearch(1), True, callbacks="on_trial_end")
    study = Study(PARAMS, algorithms.RandomSearch(1), True)
    with pytest.raises(ArgumentTypeError, match="optimize: callbacks must be"):
        study.optimize(lambda t: 1.0, callbacks=[42], show_progress=False)
    assert study.trials == []  # refused before any trial ran


def test_a_callback_that_cannot_travel_is_refused_before_workers_start(tmp_path):
    class Local(StudyCallback):  # cloudpickle sends a local class by value: give it a lock
        lock = None

    callback = Local()
    callback.lock = threading.Lock()
    study = pbt_study(tmp_path, "unsendable", [callback], generations=1, population=2)
    with pytest.raises(ConfigurationError, match="callback .*Local.* cannot be sent"):
        study.optimize(segment, n_workers=2, show_progress=False)


# -- optional dependencies -------------------------------------------------------------------
def test_without_mlflow_the_import_says_what_to_install(monkeypatch):
    monkeypatch.delitem(sys.modules, "poptune.integrations.mlflow", raising=False)
    for name in ("mlflow", "mlflow.tracking"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependencyError, match=r'pip install "poptune\[mlflow\]"'):
        importlib.import_module("poptune.integrations.mlflow")


def test_without_tensorboard_the_import_says_what_to_install(monkeypatch):
    monkeypatch.delitem(sys.modules, "poptune.integrations.tensorboard", raising=False)
    for name in ("torch.utils.tensorboard", "torch.utils.tensorboard.summary", "tensorboardX"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependencyError, match=r'pip install "poptune\[tensorboard\]"'):
        importlib.import_module("poptune.integrations.tensorboard")


# -- MLflow, against a real tracking server ------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` with an SQLite backend on a free port of 127.0.0.1; its URL."""
    pytest.importorskip("mlflow")  # the test extra has it; the import test above covers none
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    script = Path(sys.executable).with_name("mlflow")
    command = [str(script)] if script.exists() else [shutil.which("mlflow") or "mlflow"]
    command += ["server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                "--default-artifact-root", str(root / "artifacts"),
                "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root,
                              start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # slow to start on a loaded machine (~50 s seen)
    try:
        while not _answers(url):
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (root / "server.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"mlflow server did not start (exit {server.poll()}):\n{tail}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:  # it may linger over open connections
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(30)
        log.close()


def _runs(client, experiment_name, study_name, role):
    experiment = client.get_experiment_by_name(experiment_name)
    query = f"tags.`poptune.study` = '{study_name}' AND tags.`poptune.role` = '{role}'"
    return list(client.search_runs([experiment.experiment_id], query, max_results=1000))


def test_mlflow_a_trial_failed_by_another_worker_has_its_run_ended_at_study_end(
    tmp_path, mlflow_server
):
    """A worker that fails another's lost trial does not go through its callback: the study's
    end gives that trial's run its status, error and end (it stayed RUNNING before)."""
    from poptune.integrations.mlflow import MLflowCallback

    experiment = f"lost-{uuid.uuid4().hex[:8]}"
    callback = MLflowCallback(mlflow_server, experiment_name=experiment)
    url = f"sqlite:///{tmp_path / 'lost.db'}"
    study = Study(PARAMS, algorithms.RandomSearch(3), False, seed=0, storage=url,
                  study_name="lost", callbacks=[callback])  # fmt: skip
    other = Study.join(url, "lost")  # another worker, with no callback of its own
    for trial in study:
        if trial.id == 1:  # its worker "died": the other one fails it (as its reaper does)
            other.finalize(trial.id, "FAILED", meta={"heartbeat_lost": True, "error": "lost"})
            continue
        study.add_observation(trial, 0.5, iteration=1)
        study.finalize(trial)
    client = callback.client
    children = {int(r.data.tags["poptune.trial"]): r for r in _runs(client, experiment, "lost",
                                                                     "trial")}  # fmt: skip
    assert sorted(children) == [1, 2, 3]
    lost = children[1]
    assert lost.info.status == "FAILED" and lost.data.tags["poptune.status"] == "FAILED"
    assert lost.data.tags["poptune.error"] == "lost" and lost.info.end_time
    assert all(children[i].info.status == "FINISHED" for i in (2, 3))


@pytest.mark.slow
def test_mlflow_a_pbt_study_with_two_worker_processes(tmp_path, mlflow_server):
    from poptune.integrations.mlflow import MLflowCallback

    experiment = f"pbt-{uuid.uuid4().hex[:8]}"
    callback = MLflowCallback(mlflow_server, experiment_name=experiment, tags={"team": "t1"})
    study = pbt_study(tmp_path, "pbt-mlflow", [callback])
    study.optimize(segment, n_workers=2, show_progress=False)
    trials = study.trials
    assert len(trials) == 9 and all(t.status is TrialStatus.COMPLETED for t in trials)
    assert any(t.explore for t in trials)  # the study exploited: the tags below mean something

    client = callback.client
    parents = _runs(client, experiment, study.name, "study")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.info.run_name == study.name
    children = {int(r.data.tags["poptune.trial"]): r for r in
                _runs(client, experiment, study.name, "trial")}  # fmt: skip
    assert sorted(children) == [t.id for t in trials]
    for trial in trials:
        run = children[trial.id]
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_name == f"trial-{trial.id}" and run.info.status == "FINISHED"
        assert run.data.params == {"lr": str(trial.parameters["lr"])}
        assert tags["team"] == "t1" and tags["poptune.status"] == "COMPLETED"
        assert tags["poptune.member"] == str(trial.member)
        assert tags["poptune.generation"] == str(trial.generation)
        parent_trial = parent_id(trial)
        assert tags["poptune.parent"] == ("" if parent_trial is None else str(parent_trial))
        assert tags.get("poptune.explore", "") == trial.explore
        assert tags["poptune.lineage"] == trial.lineage
        history = client.get_metric_history(run.info.run_id, "objective")
        points = sorted((m.step, m.value) for m in history)
        assert points == [(it, o.objective) for it, o in sorted(trial.observations.items())]
        losses = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id,
                                                                               "loss"))  # fmt: skip
        assert losses == [(it, o.context["loss"]) for it, o in sorted(trial.observations.items())]
    # the lineage read back from MLflow alone is the study's own
    for trial in trials:
        parent_tag = children[trial.id].data.tags["poptune.parent"]
        if parent_tag:
            assert children[int(parent_tag)].info.run_id  # a run of the same study
            assert trial.ancestors[-1] == int(parent_tag)


@pytest.mark.slow
def test_mlflow_the_sherpa_loop_and_a_resumed_study_keep_one_parent(tmp_path, mlflow_server):
    from poptune.integrations.mlflow import MLflowCallback

    experiment = f"loop-{uuid.uuid4().hex[:8]}"
    callback = MLflowCallback(mlflow_server, experiment_name=experiment, metric_name="val_acc")
    url = f"sqlite:///{tmp_path / 'loop.db'}"
    study = Study(PARAMS, algorithms.RandomSearch(2), False, seed=0, storage=url,
                  study_name="loop", callbacks=[callback])  # fmt: skip
    for trial in study:
        for iteration in (1, 2):
            study.add_observation(trial, 0.1 * iteration, iteration=iteration, context={"n": 4})
        study.finalize(trial, "FAILED" if trial.id == 2 else "COMPLETED",
                       meta={"error": "ValueError: bad"} if trial.id == 2 else None)  # fmt: skip
    # a new process resumes the study with a fresh callback: it finds the same parent
    fresh = MLflowCallback(mlflow_server, experiment_name=experiment, metric_name="val_acc")
    again = Study(PARAMS, algorithms.RandomSearch(2), False, seed=0, storage=url,
                  study_name="loop", callbacks=[fresh])  # fmt: skip
    queued = again.add_trial({"lr": 0.01})  # the search is done: one more trial of our own
    for trial in again:
        again.add_observation(trial, 0.5, iteration=1)
        again.finalize(trial)
    client = callback.client
    parents = _runs(client, experiment, "loop", "study")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = {int(r.data.tags["poptune.trial"]): r for r in _runs(client, experiment, "loop",
                                                                     "trial")}  # fmt: skip
    assert sorted(children) == [1, 2, queued.id]
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
               for r in children.values())  # fmt: skip
    failed = children[2]
    assert failed.info.status == "FAILED" and failed.data.tags["poptune.status"] == "FAILED"
    assert failed.data.tags["poptune.error"] == "ValueError: bad"
    assert "poptune.member" not in failed.data.tags  # not a PBT segment
    steps = [(m.step, m.value) for m in client.get_metric_history(children[1].info.run_id,
                                                                    "val_acc")]  # fmt: skip
    assert sorted(steps) == [(1, pytest.approx(0.1)), (2, pytest.approx(0.2))]
    assert [m.value for m in client.get_metric_history(children[1].info.run_id, "n")] == [4, 4]


@pytest.mark.slow
def test_mlflow_without_nesting_trial_runs_are_top_level(mlflow_server):
    from poptune.integrations.mlflow import MLflowCallback

    experiment = f"flat-{uuid.uuid4().hex[:8]}"
    callback = MLflowCallback(mlflow_server, experiment_name=experiment, nested=False)
    study = Study(PARAMS, algorithms.RandomSearch(2), True, seed=0, study_name="flat",
                  callbacks=[callback])  # fmt: skip
    study.optimize(lambda t: t.parameters["lr"], show_progress=False)
    assert _runs(callback.client, experiment, "flat", "study") == []
    runs = _runs(callback.client, experiment, "flat", "trial")
    assert sorted(r.info.run_name for r in runs) == ["trial-1", "trial-2"]
    assert all("mlflow.parentRunId" not in r.data.tags for r in runs)
    assert {r.info.status for r in runs} == {"FINISHED"}


@pytest.mark.slow
def test_mlflow_processes_creating_the_parent_at_once_settle_on_one(mlflow_server):
    from poptune.integrations.mlflow import MLflowCallback

    barrier = threading.Barrier(2, timeout=60)

    class Racing(MLflowCallback):
        """Both see no parent, then both create one: the race, made certain."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.first = True

        def _search(self, experiment, query):
            found = super()._search(experiment, query)
            if self.first and "'study'" in query:
                self.first = False
                barrier.wait()
            return found

    experiment = f"race-{uuid.uuid4().hex[:8]}"
    study = Study(PARAMS, algorithms.RandomSearch(1), True, seed=0, study_name="race")
    racers = [Racing(mlflow_server, experiment_name=experiment) for _ in range(2)]
    MLflowCallback(mlflow_server, experiment_name=experiment).experiment_id(study)
    found = [None, None]

    def run(i):
        found[i] = racers[i].parent_run_id(study)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert found[0] is not None and found[0] == found[1]
    parents = _runs(racers[0].client, experiment, "race", "study")
    assert [r.info.run_id for r in parents] == [found[0]]  # the other one was deleted


def test_mlflow_callback_refuses_bad_arguments():
    from poptune.integrations.mlflow import MLflowCallback

    with pytest.raises(ConfigurationError, match="metric_name must be .*got 'a\\*b'"):
        MLflowCallback(metric_name="a*b")
    with pytest.raises(ArgumentTypeError, match="nested must be True or False, got 'yes'"):
        MLflowCallback(nested="yes")
    with pytest.raises(ArgumentTypeError, match="tags must be a mapping"):
        MLflowCallback(tags=["a"])


# -- TensorBoard ---------------------------------------------------------------------------------
def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def _hparams(accumulator):
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    out = {}
    for name, value in info.hparams.items():
        kind = value.WhichOneof("kind")
        out[name] = getattr(value, kind)
    return out


def test_tensorboard_event_files_per_trial_from_two_worker_processes(tmp_path):
    from poptune.integrations.tensorboard import TensorBoardCallback, trial_log_dir

    log_dir = tmp_path / "tb"
    study = pbt_study(tmp_path, "pbt-tb", [TensorBoardCallback(log_dir)])
    study.optimize(segment, n_workers=2, show_progress=False)
    trials = study.trials
    assert len(trials) == 9
    assert sorted(int(p.name) for p in (log_dir / "pbt-tb").iterdir()) == [t.id for t in trials]
    for trial in trials:
        folder = trial_log_dir(log_dir, study.name, trial.id)
        assert folder == log_dir / "pbt-tb" / str(trial.id)
        events = _events(folder)
        observed = sorted(trial.observations.items())
        assert [(e.step, e.value) for e in events.Scalars("objective")] == [
            (it, pytest.approx(o.objective, rel=1e-6)) for it, o in observed
        ]
        assert [e.step for e in events.Scalars("loss")] == [it for it, _ in observed]
        hparams = _hparams(events)
        assert hparams["lr"] == pytest.approx(trial.parameters["lr"])
        assert hparams["status"] == "COMPLETED"
        assert hparams["member"] == trial.member and hparams["generation"] == trial.generation
        parent = parent_id(trial)
        assert hparams["parent"] == (-1 if parent is None else parent)
        texts = events.Tags()["tensors"]
        assert ("poptune/explore/text_summary" in texts) == bool(trial.explore)


def test_tensorboard_in_the_sherpa_loop_and_an_unsafe_study_name(tmp_path):
    from poptune.integrations.tensorboard import TensorBoardCallback, trial_log_dir

    callback = TensorBoardCallback(tmp_path / "tb", metric_name="acc")
    study = Study(PARAMS, algorithms.RandomSearch(2), False, seed=0, study_name="../x y",
                  callbacks=[callback])  # fmt: skip
    for trial in study:
        study.add_observation(trial, 0.25, iteration=5)
        study.finalize(trial)
    folder = trial_log_dir(tmp_path / "tb", "../x y", 1)
    assert folder.parent.parent == tmp_path / "tb" and folder.parent.name.startswith("x_y-")
    events = _events(folder)
    assert [(e.step, e.value) for e in events.Scalars("acc")] == [(5, 0.25)]
    assert _hparams(events)["status"] == "COMPLETED" and "member" not in _hparams(events)


def test_tensorboard_callback_refuses_bad_arguments():
    from poptune.integrations.tensorboard import TensorBoardCallback

    with pytest.raises(ArgumentTypeError, match="log_dir must be a folder path, got 3"):
        TensorBoardCallback(3)
    with pytest.raises(ArgumentTypeError, match="metric_name"):
        TensorBoardCallback("tb", metric_name=None)


def test_callback_is_exported():
    assert pt.StudyCallback is StudyCallback
    assert pt.study.StudyCallback is StudyCallback
