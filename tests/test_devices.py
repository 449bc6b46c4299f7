"""One device per worker (issue 15 item 6), tested through the environment each worker sees:
``optimize(devices=...)``, ``trial.device``, ``poptune worker --device``, and Dask resources."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
from collections import defaultdict

import pytest

from poptune import ConfigurationError, Continuous, Study, algorithms, load_study
from poptune.study._devices import assign, check_devices, environment

from . import objectives

PARAMS = [Continuous("lr", [1e-4, 1e-2], "log")]


def study_on(url, name="dev", n=8):
    return Study(PARAMS, algorithms.RandomSearch(n), True, seed=0, storage=url, study_name=name)


# -- the rules ---------------------------------------------------------------------------------
def test_devices_are_a_count_or_a_list():
    assert check_devices(2, None) == ["cuda:0", "cuda:1"]
    assert check_devices(["cuda:1", 3, "cpu", "mps"], None) == ["cuda:1", "cuda:3", "cpu", "mps"]
    assert check_devices(["cuda:GPU-8a1b2c3d"], None) == ["cuda:GPU-8a1b2c3d"]
    assert check_devices(None, None) is None


@pytest.mark.parametrize("bad", [0, -1, [], "cuda:0", ["cuda"], ["cuda:0,1"], [1.5], [None]])
def test_bad_devices_are_refused_by_name(bad):
    with pytest.raises(ConfigurationError, match="device"):
        check_devices(bad, None)


def test_devices_with_an_executor_point_to_resources():
    with pytest.raises(ConfigurationError, match=r"resources=\{'GPU': 1\}"):
        check_devices(2, object())


def test_round_robin_when_workers_outnumber_devices():
    assert assign(["cuda:0", "cuda:1"], 5) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert assign(None, 2) == [None, None]


def test_the_environment_of_each_kind_of_device():
    assert environment("cuda:1") == {"CUDA_VISIBLE_DEVICES": "1", "POPTUNE_DEVICE": "cuda:0",
                                     "POPTUNE_DEVICE_ASSIGNED": "cuda:1"}  # fmt: skip
    assert environment("cpu")["CUDA_VISIBLE_DEVICES"] == ""  # no GPU at all
    assert environment("mps") == {"POPTUNE_DEVICE": "mps", "POPTUNE_DEVICE_ASSIGNED": "mps"}
    assert environment(None) == {}


# -- what the workers see ------------------------------------------------------------------------
def seen_by_worker(study):
    """{pid: set of (device, CUDA_VISIBLE_DEVICES, assigned)} from the trials' reports."""
    seen = defaultdict(set)
    for trial in study.trials:
        ctx = trial.observations[1].context
        seen[ctx["pid"]].add((ctx["device"], ctx["cuda_visible"], ctx["assigned"]))
    return seen


def test_four_workers_on_two_gpus_get_one_each_round_robin(tmp_path, monkeypatch):
    monkeypatch.setenv("POPTUNE_TEST_BARRIER", str(tmp_path / "barrier"))
    monkeypatch.setenv("POPTUNE_TEST_BARRIER_N", "4")
    before = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "POPTUNE_DEVICE")}
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    study = study_on(url, n=8)
    study.optimize(objectives.device_barrier, n_workers=4, devices=["cuda:0", "cuda:1"],
                   show_progress=False)  # fmt: skip
    seen = seen_by_worker(load_study(url, "dev"))
    assert len(seen) == 4  # the barrier made every worker run a trial
    per_worker = [next(iter(s)) for s in seen.values()]
    assert all(len(s) == 1 for s in seen.values())  # a worker keeps its device
    assert sorted(v for _, v, _ in per_worker) == ["0", "0", "1", "1"]  # two per GPU
    for device, visible, assigned in per_worker:
        assert device == "cuda:0"  # the one GPU a worker sees is its cuda:0
        assert assigned == f"cuda:{visible}"
    assert {k: os.environ.get(k) for k in before} == before  # the caller's env untouched


def test_one_worker_in_this_process_is_told_its_device(tmp_path):
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    study_on(url, n=3).optimize(objectives.device_seen, n_workers=1, devices=["cpu"],
                                show_progress=False)  # fmt: skip
    seen = seen_by_worker(load_study(url, "dev"))
    # one worker in the calling process: POPTUNE_DEVICE only (CUDA may be initialized here)
    assert {d for s in seen.values() for d, _, _ in s} == {"cpu"}
    assert os.environ.get("POPTUNE_DEVICE") is None  # set for the call only


def test_no_devices_no_device():
    study = Study(PARAMS, algorithms.RandomSearch(1), True, seed=0)
    seen = []
    study.optimize(lambda t: seen.append(t.device) or 1.0, show_progress=False)
    assert seen == [None]


def test_the_worker_command_takes_a_device(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    study_on(url, name="cli", n=2)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    result = subprocess.run(
        [sys.executable, "-m", "poptune", "worker", url, "cli", "tests.objectives:device_seen",
         "--device", "cuda:1"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ((device, visible, assigned),) = {x for s in seen_by_worker(load_study(url, "cli")).values()
                                      for x in s}  # fmt: skip
    assert (device, visible, assigned) == ("cuda:0", "1", "cuda:1")
    bad = subprocess.run(
        [sys.executable, "-m", "poptune", "worker", url, "cli", "tests.objectives:device_seen",
         "--device", "cuda"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 1 and "device must be 'cuda:N'" in bad.stderr


# -- Dask: resources per task ---------------------------------------------------------------------
class RecordingExecutor:
    """Runs each task at once, in this process, and keeps the keyword arguments of submit."""

    def __init__(self):
        self.kwargs = []

    def submit(self, fn, *args, **kwargs):
        self.kwargs.append(kwargs)
        future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001
            future.set_exception(exc)
        return future


def test_an_executor_is_asked_for_resources_per_task(tmp_path):
    url = f"sqlite:///{tmp_path / 'dask.db'}"
    study = study_on(url, n=4)
    executor = RecordingExecutor()
    study.optimize(objectives.quadratic, n_workers=2, executor=executor,
                   resources={"GPU": 1}, show_progress=False)  # fmt: skip
    assert executor.kwargs == [{"resources": {"GPU": 1}}] * 2
    assert len(load_study(url, "dev").trials) == 4


def test_resources_need_an_executor():
    study = Study(PARAMS, algorithms.RandomSearch(1), True, seed=0)
    with pytest.raises(ConfigurationError, match="resources must be"):
        study.optimize(objectives.quadratic, resources={"GPU": 1}, show_progress=False)
