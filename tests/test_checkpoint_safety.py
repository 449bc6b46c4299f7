"""Checkpoints are names and data, never paths or code (issue 17, items 1, 2 and part of 10).

* a ``load_from`` / ``save_to`` is one file name inside ``checkpoint_dir``: refused where a
  trial enters (an algorithm's suggestion, ``add_trial``), and a crafted row read from storage
  fails its trial with a message naming the value, touching no file — through
  ``study.optimize`` and through ``poptune worker`` in a real process;
* checkpoints are written and read without pickle; a pickle (or a PyTorch file holding
  objects) is refused unless ``allow_pickle=True``, and its payload never runs;
* a writer killed mid-write leaves a temporary file that the next store removes, while a live
  writer's is never touched;
* ``Study.load`` keeps ``checkpoint_dir`` and ``keep_checkpoints``;
* NaN / inf in an observation's context is refused at ``add_observation``.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from poptune import (
    CheckpointError,
    ConfigurationError,
    Continuous,
    InvalidObservationError,
    InvalidParameterError,
    Study,
    TrialStatus,
    algorithms,
    load_study,
)
from poptune.algorithms.base import Algorithm
from poptune.checkpoints import CheckpointStore, read_checkpoint
from poptune.storage import get_storage
from poptune.trial import Trial

from .conftest import forget_storages, make_url

REPO = Path(__file__).resolve().parents[1]
BAD_NAMES = ["/abs/path/evil.pkl", "../x", "../../x", "a/b", "a\\b", "..", "a\x00b", ".hidden",
             "C:evil"]  # fmt: skip


class _Marker:
    """A pickle payload: unpickling it creates the file ``path`` (code ran)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "the payload ran"))


def evil_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps(_Marker(str(marker))))
    return path


def load_and_save(trial):
    """A worker objective that uses its checkpoints as any PBT objective does."""
    state = trial.load_checkpoint()
    trial.save_checkpoint({"w": np.zeros(2), "from": repr(state)})
    return 1.0


def _params():
    return [Continuous("lr", [0.1, 1.0])]


# -- 1. names are names -----------------------------------------------------------------------
@pytest.mark.parametrize("name", BAD_NAMES + ["", "x" * 256])
def test_the_store_refuses_a_name_that_is_not_a_file_name(tmp_path, name):
    store = CheckpointStore(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="is refused") as info:
        store.path(name)
    assert repr(name)[:40] in str(info.value)
    with pytest.raises(CheckpointError, match="load_from"):
        store.load_path(Trial(3, {"load_from": name or "/"}))
    if name:
        with pytest.raises(CheckpointError, match="save_to"):
            store.save(Trial(3, {"save_to": name}), {"w": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # nothing written anywhere
    assert list((tmp_path / "ckpt").iterdir()) == []


@pytest.mark.parametrize("name", ["1", "17", "best-model_3", "member 2 (copy)", 5])
def test_ordinary_names_are_files_inside_the_directory(tmp_path, name):
    store = CheckpointStore(tmp_path)
    assert store.path(name) == tmp_path / str(name)


def test_a_name_whose_link_points_outside_is_refused(tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"secret")
    store = CheckpointStore(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "4").symlink_to(outside)
    with pytest.raises(CheckpointError, match="outside the checkpoint directory"):
        store.load(Trial(5, {"load_from": "4"}))
    with pytest.raises(CheckpointError, match="outside the checkpoint directory"):
        store.save(Trial(4, {"save_to": "4"}), {"w": 1})
    assert outside.read_bytes() == b"secret"


@pytest.mark.parametrize("field", ["load_from", "save_to"])
def test_add_trial_refuses_a_path_as_a_checkpoint_name(tmp_path, field):
    study = Study(_params(), algorithms.RandomSearch(3), True, checkpoint_dir=tmp_path)
    with pytest.raises(InvalidParameterError, match=rf"add_trial: {field} '\.\./evil\.pkl'"):
        study.add_trial({"lr": 0.5, field: "../evil.pkl"})
    assert study.trials == []
    queued = study.add_trial({"lr": 0.5, "load_from": "", "save_to": "mine"})
    assert queued.save_to == "mine"


class _PathSuggester(Algorithm):
    """An algorithm with a bug: it names a path as the checkpoint to write."""

    def suggest(self, history, rng):
        return {"lr": 0.5, "load_from": "", "save_to": "../../x"}


def test_an_algorithm_suggesting_a_path_is_a_configuration_error(tmp_path):
    study = Study(_params(), _PathSuggester(), True, checkpoint_dir=tmp_path)
    with pytest.raises(ConfigurationError, match=r"save_to '\.\./\.\./x' is not a checkpoint"):
        study.get_suggestion()
    assert study.trials == []


def _crafted_study(url: str, name: str, ckpt: Path, evil: Path) -> None:
    """A stored study with one crafted QUEUED row, written as an attacker with access to the
    database would: straight through the storage, past every check of the Study."""
    Study(_params(), algorithms.RandomSearch(2), True, storage=url, study_name=name).close()
    store = get_storage(url)
    sid = store.get_study_id(name)
    with store.transaction(sid):
        store.insert_trial(
            sid, Trial(1, {"lr": 0.5, "load_from": str(evil), "save_to": "../x"}, "QUEUED")
        )


def _check_crafted_trial_failed(url: str, name: str, tmp_path: Path, evil: Path) -> None:
    forget_storages()
    study = Study(_params(), algorithms.RandomSearch(2), True, storage=url, study_name=name)
    crafted = study.get_trial(1)
    assert crafted.status is TrialStatus.FAILED
    assert f"load_from {str(evil)!r} is not a checkpoint name" in crafted.meta["error"]
    assert not (tmp_path / "marker").exists()  # the pickle was never read
    assert not (tmp_path / "x").exists()  # nothing written outside checkpoint_dir
    later = [t.status for t in study.trials[1:]]
    assert later and set(later) == {TrialStatus.COMPLETED}  # the study went on
    study.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_crafted_row_fails_its_trial_under_optimize(tmp_path, kind):
    url = make_url(kind, tmp_path)
    ckpt = tmp_path / "ckpt"
    evil = evil_pickle(tmp_path / "evil.pkl", tmp_path / "marker")
    _crafted_study(url, "crafted", ckpt, evil)
    study = Study(_params(), algorithms.RandomSearch(2), True, storage=url,
                  study_name="crafted", checkpoint_dir=ckpt)  # fmt: skip
    study.optimize(load_and_save, show_progress=False)
    study.close()
    _check_crafted_trial_failed(url, "crafted", tmp_path, evil)
    forget_storages()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_crafted_row_fails_its_trial_under_poptune_worker(tmp_path, kind):
    url = make_url(kind, tmp_path)
    ckpt = tmp_path / "ckpt"
    evil = evil_pickle(tmp_path / "evil.pkl", tmp_path / "marker")
    _crafted_study(url, "crafted", ckpt, evil)
    forget_storages()
    result = subprocess.run(
        [sys.executable, "-m", "poptune", "worker", url, "crafted",
         "tests.test_checkpoint_safety:load_and_save", "--checkpoint-dir", str(ckpt)],
        cwd=REPO, capture_output=True, text=True, timeout=180,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "is not a checkpoint name" in result.stderr  # the worker's log says why
    _check_crafted_trial_failed(url, "crafted", tmp_path, evil)
    forget_storages()


def test_the_worker_loop_checks_names_without_a_checkpoint_dir(tmp_path):
    """SHERPA-style code builds its own paths from save_to: a crafted one fails the trial."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    _crafted_study(url, "plain", tmp_path / "unused", tmp_path / "evil.pkl")
    seen = []
    study = Study(_params(), algorithms.RandomSearch(2), True, storage=url, study_name="plain")
    study.optimize(lambda t: seen.append(t.id) or 1.0, show_progress=False)
    assert 1 not in seen and seen  # the objective never saw the crafted trial
    assert "is not a checkpoint name" in study.get_trial(1).meta["error"]
    study.close()
    forget_storages()


# -- 2. checkpoints are not code ----------------------------------------------------------------
def _store_and_trials(tmp_path, **kwargs):
    store = CheckpointStore(tmp_path / "ckpt", **kwargs)
    return store, Trial(1, {"save_to": "1"}), Trial(2, {"load_from": "1", "save_to": "2"})


def _assert_not_a_pickle(path: Path) -> None:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        index = json.loads(zf.read("poptune-checkpoint.json"))
    assert index["format"] == "poptune.checkpoint"
    assert all(n == "poptune-checkpoint.json" or n.startswith("arrays/") or n == "tensors.pt"
               for n in names)  # fmt: skip


def test_numpy_state_round_trips_without_pickle(tmp_path):
    store, first, second = _store_and_trials(tmp_path)
    state = {
        "weights": [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(3)],  # Keras' list
        "step": 7, "lr": 0.01, "best": float("nan"), "worst": -math.inf, "name": "m0",
        "np_scalar": np.float32(2.5), "flag": True, "none": None, "blob": b"\x00\x01",
        3: {"int key": (1, 2.0, "three")}, "ints": np.array([1, 2], dtype=np.int64),
        "empty": {}, "bools": np.array([True, False]),
    }  # fmt: skip
    path = store.save(first, state)
    _assert_not_a_pickle(path)
    back = store.load(second)
    assert back.keys() == state.keys()
    assert [w.dtype for w in back["weights"]] == [np.float32, np.float64]
    assert all(np.array_equal(a, b) for a, b in zip(back["weights"], state["weights"], strict=True))
    assert back["step"] == 7 and type(back["step"]) is int and back["lr"] == 0.01
    assert math.isnan(back["best"]) and back["worst"] == -math.inf
    assert back["np_scalar"] == np.float32(2.5) and type(back["np_scalar"]) is np.float32
    assert back[3] == {"int key": (1, 2.0, "three")} and back["blob"] == b"\x00\x01"
    assert back["flag"] is True and back["none"] is None and back["empty"] == {}
    assert np.array_equal(back["ints"], state["ints"]) and back["bools"].dtype == bool
    store.save(Trial(3, {"save_to": "3"}), 0.75)  # a bare number (benchmarks save a score)
    assert store.load(Trial(4, {"load_from": "3"})) == 0.75


def test_torch_state_dicts_round_trip_without_pickle(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    store, first, second = _store_and_trials(tmp_path)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 2,
             "mask": np.array([1, 0])}  # fmt: skip
    _assert_not_a_pickle(store.save(first, state))
    back = store.load(second)
    assert isinstance(back["model"], OrderedDict)
    assert back["model"]._metadata == state["model"]._metadata  # module versions kept
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    fresh.load_state_dict(back["model"])
    for a, b in zip(fresh.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=0.5)
    fresh_opt.load_state_dict(back["optimizer"])
    assert fresh_opt.param_groups[0]["lr"] == 0.01
    assert fresh_opt.param_groups[0]["betas"] == (0.9, 0.999)
    assert torch.equal(fresh_opt.state_dict()["state"][0]["exp_avg"],
                       optimizer.state_dict()["state"][0]["exp_avg"])  # fmt: skip
    assert back["epoch"] == 2 and np.array_equal(back["mask"], [1, 0])


def test_a_torch_file_of_the_users_loads_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    store, first, second = _store_and_trials(tmp_path)
    torch.save({"w": torch.ones(2)}, store.path("1"))  # the user wrote checkpoint_path
    assert torch.equal(store.load(second)["w"], torch.ones(2))
    torch.save({"payload": _Marker(str(tmp_path / "marker"))}, store.path("1"))
    with pytest.raises(CheckpointError, match=r"PyTorch file .*allow_pickle=True"):
        store.load(second)
    assert not (tmp_path / "marker").exists()


def test_a_pickle_is_never_read_without_allow_pickle(tmp_path):
    store, _, second = _store_and_trials(tmp_path)
    marker = tmp_path / "marker"
    evil_pickle(store.path("1"), marker)
    with pytest.raises(CheckpointError) as info:
        store.load(second)
    assert str(store.path("1")) in str(info.value) and "allow_pickle=True" in str(info.value)
    with pytest.raises(CheckpointError, match="allow_pickle"):
        read_checkpoint(store.path("1"))
    with pytest.raises(CheckpointError, match="allow_pickle"):
        store.load(second, weights_only=False)
    assert not marker.exists()
    trusting = CheckpointStore(tmp_path / "ckpt", allow_pickle=True)
    with pytest.raises(CheckpointError):
        trusting.load(second, weights_only=True)  # weights_only=True refuses pickles anyway
    assert not marker.exists()
    trusting.load(second)  # the user opted in: the payload runs, as pickle does
    assert marker.exists()


class _Custom:
    def __init__(self, value):
        self.value = value


def test_saving_an_object_that_needs_pickle_says_so(tmp_path):
    store, first, second = _store_and_trials(tmp_path)
    with pytest.raises(CheckpointError) as info:
        store.save(first, {"model": {"head": _Custom(3)}})
    message = str(info.value)
    assert "['model']['head']" in message and "_Custom" in message
    assert "allow_pickle=True" in message
    assert list(store.directory.iterdir()) == []  # no file, no temporary file
    trusting = CheckpointStore(tmp_path / "ckpt", allow_pickle=True)
    trusting.save(first, {"model": {"head": _Custom(3)}})
    assert trusting.load(second)["model"]["head"].value == 3
    with pytest.raises(CheckpointError, match="allow_pickle"):
        store.load(second)  # the default store still refuses the pickle it wrote
    with pytest.raises(CheckpointError, match="object"):
        store.save(first, np.array([_Custom(1)], dtype=object))


def test_allow_pickle_reaches_the_trials_of_a_study_and_its_workers(tmp_path):
    study = Study(_params(), algorithms.RandomSearch(2), True, checkpoint_dir=tmp_path,
                  allow_pickle=True)  # fmt: skip
    assert study.checkpoints.allow_pickle and study._options.as_kwargs()["allow_pickle"]
    trial = study.get_suggestion()
    trial.save_checkpoint(_Custom(1))
    with pytest.raises(ConfigurationError, match="allow_pickle"):
        Study(_params(), algorithms.RandomSearch(2), True, allow_pickle="yes")
    default = Study(_params(), algorithms.RandomSearch(2), True, checkpoint_dir=tmp_path / "d")
    with pytest.raises(CheckpointError, match="allow_pickle"):
        default.get_suggestion().save_checkpoint(_Custom(1))


# -- orphaned temporary files -------------------------------------------------------------------
_WRITER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from poptune.checkpoints import CheckpointStore
    from poptune.trial import Trial

    os.replace = lambda *a: time.sleep(3600)  # stop between the write and the rename
    CheckpointStore(sys.argv[1]).save(Trial(7, {"save_to": "7"}), {"w": np.zeros(1000)})
    """
)


def _temporary_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_a_killed_writers_temporary_file_is_removed_and_a_live_ones_kept(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(ckpt)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not _temporary_files(ckpt):
            assert writer.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)  # it is now between the write and the rename
        old = time.time() - 10 * 24 * 3600
        for name in _temporary_files(ckpt):
            os.utime(ckpt / name, (old, old))  # even very old: its writer lives
        assert CheckpointStore(ckpt).remove_orphans() == []
        assert len(_temporary_files(ckpt)) == 1
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert CheckpointStore(ckpt) is not None  # opening the store collects it
    assert _temporary_files(ckpt) == []


def test_other_machines_temporary_files_are_removed_only_once_stale(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    fresh = ckpt / ".5.0123456789ab.4242.abcdef.tmp"  # another machine's writer
    stale = ckpt / ".6.0123456789ab.4242.ghijkl.tmp"
    legacy = ckpt / ".7.q1w2e3.tmp"  # an older poptune's name
    keep = ckpt / "5"  # a checkpoint, not a temporary file
    for path in (fresh, stale, legacy, keep):
        path.write_bytes(b"x")
    old = time.time() - 7200
    for path in (stale, legacy, keep):
        os.utime(path, (old, old))
    store = CheckpointStore(ckpt, orphan_age=3600)
    assert sorted(p.name for p in ckpt.iterdir()) == sorted([fresh.name, "5"])
    assert store.remove_orphans() == []
    with pytest.raises(ConfigurationError, match="orphan_age"):
        CheckpointStore(ckpt, orphan_age=0)


# -- Study.save / Study.load keep the checkpoint settings --------------------------------------
def test_study_load_keeps_checkpoint_dir_and_keep_checkpoints(tmp_path):
    ckpt = tmp_path / "ckpt"
    pbt = algorithms.PopulationBasedTraining(population_size=2, num_generations=3)
    study = Study(_params(), pbt, True, checkpoint_dir=ckpt, keep_checkpoints=1, seed=3)
    for _ in range(2):
        trial = study.get_suggestion()
        load_and_save(trial)
        study.add_observation(trial, 1.0, iteration=1)
        study.finalize(trial)
    study.save(tmp_path / "saved")
    loaded = Study.load(tmp_path / "saved")
    assert loaded.checkpoint_dir == ckpt.resolve() and loaded.keep_checkpoints == 1
    assert not loaded.checkpoints.allow_pickle
    nxt = loaded.get_suggestion()
    assert nxt.load_path is not None and nxt.load_checkpoint()["w"].shape == (2,)
    assert Study.load(tmp_path / "saved", allow_pickle=True).checkpoints.allow_pickle
    saved = json.loads((tmp_path / "saved" / "study.json").read_text())
    assert "allow_pickle" not in saved["options"]
    saved["options"] = {"checkpoint_dir": 5}
    (tmp_path / "saved" / "study.json").write_text(json.dumps(saved))
    with pytest.raises(Exception, match="options"):
        Study.load(tmp_path / "saved")


def test_a_study_saved_without_options_loads_without_checkpoints(tmp_path):
    study = Study(_params(), algorithms.RandomSearch(2), True)
    study.save(tmp_path)
    saved = json.loads((tmp_path / "study.json").read_text())
    del saved["options"]  # a file of an older poptune
    (tmp_path / "study.json").write_text(json.dumps(saved))
    loaded = Study.load(tmp_path)
    assert loaded.checkpoint_dir is None and loaded.keep_checkpoints is None


# -- NaN / inf in contexts ---------------------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), math.inf, -math.inf, np.float32("nan")])
def test_a_non_finite_context_value_is_refused_and_nothing_recorded(tmp_path, bad):
    study = Study(_params(), algorithms.RandomSearch(2), True)
    trial = study.get_suggestion()
    with pytest.raises(InvalidObservationError, match=r"context\['loss'\] must be finite"):
        study.add_observation(trial, 1.0, iteration=1, context={"loss": bad})
    assert study.get_trial(trial.id).observations == {}
    study.add_observation(trial, 1.0, iteration=1, context={"loss": None, "note": "nan"})
    study.finalize(trial)
    study.save(tmp_path)  # what was accepted is valid JSON
    assert json.loads((tmp_path / "study.json").read_text())["trials"][0]["observations"]


def test_the_keras_callback_records_a_diverged_context_metric_as_none():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("torch", reason="Keras runs on the PyTorch backend here")
    pytest.importorskip("keras", reason="keras_callback needs Keras")
    study = Study(_params(), algorithms.RandomSearch(2), False)
    trial = study.get_suggestion()
    callback = study.keras_callback(trial, "accuracy", context_names=["loss"])
    callback.on_epoch_end(0, {"accuracy": 0.3, "loss": float("nan")})
    assert study.get_trial(trial.id).observations[0].context == {"loss": None}


class _NotPlainData:
    """An object only pickle can store (module level, so the worker can unpickle it)."""

    def __init__(self, value: float) -> None:
        self.value = value


def load_pickled_state(trial):
    """`poptune worker`'s objective: continue from the pickled state of trial 1."""
    return trial.load_checkpoint().value


@pytest.mark.parametrize("allow", [False, True])
def test_poptune_worker_reads_a_pickle_checkpoint_only_with_allow_pickle(tmp_path, allow):
    url = f"sqlite:///{tmp_path / 's.db'}"
    ckpt = tmp_path / "ckpt"
    study = Study(_params(), algorithms.RandomSearch(1), True, storage=url, study_name="p",
                  checkpoint_dir=ckpt, allow_pickle=True)  # fmt: skip
    first = study.get_suggestion()
    first.save_checkpoint(_NotPlainData(0.25))
    study.add_observation(first, 1.0, iteration=1)
    study.finalize(first)
    study.add_trial({"lr": 0.5, "load_from": str(first.id), "save_to": "next"})
    study.close()
    forget_storages()
    command = [sys.executable, "-m", "poptune", "worker", url, "p",
               "tests.test_checkpoint_safety:load_pickled_state", "--checkpoint-dir", str(ckpt),
               "--n-trials", "0"] + (["--allow-pickle"] if allow else [])  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                [str(REPO / "src"), str(REPO)])})  # fmt: skip
    assert result.returncode == 0, result.stderr
    done = load_study(url, "p").get_trial(2)
    if allow:
        assert done.status is TrialStatus.COMPLETED
        assert done.best_observation(True).objective == 0.25
    else:
        assert done.status is TrialStatus.FAILED
        assert "allow_pickle" in done.meta["error"]
    forget_storages()
