"""Checkpoints and the best model (issue 18 §4): a folder per study in ``checkpoint_dir``, the
layout of older studies kept (and refused where two of them would collide), finished trials'
checkpoints from the study and from ``load_study``, ``best_checkpoint()``, ``best_params``,
``best_value`` and ``best_trial``."""

from __future__ import annotations

import json
import sqlite3

import pytest

from poptune import (
    CheckpointError,
    ConfigurationError,
    Continuous,
    Study,
    TrialStatus,
    algorithms,
    load_study,
)
from poptune.checkpoints import CheckpointStore, read_checkpoint
from poptune.exceptions import NoCompletedTrialError
from poptune.study._open import FLAT_MARKER, LAYOUT_KEY, folder_name

from . import objectives
from .conftest import forget_storages

PARAMS = [Continuous("lr", [1e-4, 1e-2], "log")]


def pbt(url, name, root, **kw):
    algorithm = algorithms.PopulationBasedTraining(2, 3)
    return Study(PARAMS, algorithm, False, seed=1, storage=url, study_name=name,
                 checkpoint_dir=root, **kw)  # fmt: skip


def random_study(url, name, root, n=4):
    return Study(PARAMS, algorithms.RandomSearch(n), True, seed=0, storage=url, study_name=name,
                 checkpoint_dir=root)  # fmt: skip


def saving(trial):
    trial.save_checkpoint({"trial": trial.id, "lr": trial.parameters["lr"]})
    return objectives.quadratic(trial)


def strip_layout(db, name):
    """Make ``name`` look like a study an older poptune created (no layout in its config)."""
    with sqlite3.connect(db) as conn:
        (config,) = conn.execute(
            "SELECT config FROM poptune_studies WHERE name = ?", (name,)
        ).fetchone()
        config = json.loads(config)
        del config[LAYOUT_KEY]
        conn.execute("UPDATE poptune_studies SET config = ? WHERE name = ?",
                     (json.dumps(config), name))  # fmt: skip
    forget_storages()


# -- a folder per study ----------------------------------------------------------------------
def test_two_studies_in_one_checkpoint_dir_keep_their_checkpoints_apart(tmp_path):
    url, root = f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "ckpt"
    a, b = pbt(url, "a", root), pbt(url, "b", root)
    a.optimize(objectives.pbt_weights, show_progress=False)
    b.optimize(objectives.pbt_weights, show_progress=False)
    assert a.checkpoints.directory == root / "a" and b.checkpoints.directory == root / "b"
    for study in (a, b):
        for trial in study.trials:  # each file is its own trial's: nothing overwritten
            saved = study.get_trial(trial.id).load_checkpoint()
            assert saved["trial"] == trial.id and saved["lr"] == trial.parameters["lr"]
    assert sorted(p.name for p in root.iterdir()) == ["a", "b"]


def test_worker_processes_of_a_memory_study_share_its_folder(tmp_path):
    algorithm = algorithms.PopulationBasedTraining(2, 3)
    study = Study(PARAMS, algorithm, False, seed=1, checkpoint_dir=tmp_path)
    study.optimize(objectives.pbt_weights, n_workers=2, show_progress=False)
    assert all(t.status is TrialStatus.COMPLETED for t in study.trials)  # donors were found
    folder = tmp_path / study.name
    assert sorted(p.name for p in folder.iterdir() if p.name.isdigit()) == [
        str(i) for i in range(1, 7)
    ]


def test_study_names_never_become_paths(tmp_path):
    for name in ("../../escape", "a/b", "17", "with space", "x" * 200):
        folder = folder_name(name)
        assert "/" not in folder and not folder.startswith(".") and not folder.isdigit()
        assert len(folder) <= 80
    url = f"sqlite:///{tmp_path / 'x.db'}"
    study = random_study(url, "../../escape", tmp_path / "ckpt")
    directory = study.checkpoints.directory
    assert directory.parent == tmp_path / "ckpt" and directory.name.startswith("escape-")
    assert folder_name("plain-name_1.0") == "plain-name_1.0"
    assert folder_name("a/b") != folder_name("a_b")  # cleaned alike, told apart by the hash


def test_a_folder_claimed_by_another_study_is_refused(tmp_path):
    # what a case-insensitive disk does to 'abc' and 'ABC'
    (tmp_path / "ckpt" / "abc").mkdir(parents=True)
    (tmp_path / "ckpt" / "abc" / ".poptune-study.json").write_text('{"study": "ABC"}')
    study = random_study(f"sqlite:///{tmp_path / 'x.db'}", "abc", tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="belongs to study 'ABC', not 'abc'"):
        _ = study.checkpoints


# -- studies created before folders per study -------------------------------------------------
def old_study(tmp_path, name="old", n=4):
    """A study as an older poptune left it: no layout in its config, and its checkpoints
    directly in checkpoint_dir, named by trial id."""
    db, root = tmp_path / "old.db", tmp_path / "ckpt"
    url = f"sqlite:///{db}"
    study = random_study(url, name, None, n)
    trials = [study.get_suggestion() for _ in range(2)]
    store = CheckpointStore(root)  # the old layout: the directory itself
    for trial in trials:
        store.save(trial, {"trial": trial.id, "study": name})
        study.add_observation(trial, float(trial.id))
        study.finalize(trial)
    study.close()
    strip_layout(db, name)
    return url, root


def test_an_old_study_still_finds_its_checkpoints(tmp_path):
    url, root = old_study(tmp_path)
    study = random_study(url, "old", root)
    assert study.checkpoints.directory == root
    trial = study.get_trial(1)
    assert trial.checkpoint_path == root / "1"
    assert trial.load_checkpoint() == {"trial": 1, "study": "old"}
    study.optimize(saving, show_progress=False)  # goes on in the same layout
    assert read_checkpoint(root / "4")["trial"] == 4
    assert json.loads((root / FLAT_MARKER).read_text()) == {"study": "old"}
    reread = load_study(url, "old", checkpoint_dir=root)
    assert reread.get_trial(2).load_checkpoint() == {"trial": 2, "study": "old"}


def test_a_new_study_beside_an_old_one_takes_a_folder_of_its_own(tmp_path):
    url, root = old_study(tmp_path)
    random_study(url, "old", root).checkpoints  # noqa: B018 - the old one claims the directory
    new = random_study(url, "new", root)
    new.optimize(saving, show_progress=False)
    assert new.checkpoints.directory == root / "new"
    assert read_checkpoint(root / "1") == {"trial": 1, "study": "old"}  # untouched
    assert read_checkpoint(root / "new" / "1")["trial"] == 1


def test_two_old_studies_in_one_directory_are_refused_loudly(tmp_path):
    url, root = old_study(tmp_path, "old")
    random_study(url, "old", root).checkpoints  # noqa: B018
    other = random_study(f"sqlite:///{tmp_path / 'other.db'}", "other", root)
    strip_layout(tmp_path / "other.db", "other")
    other = random_study(f"sqlite:///{tmp_path / 'other.db'}", "other", root)
    with pytest.raises(CheckpointError, match="holds the checkpoints of study 'old' directly"):
        _ = other.checkpoints


def test_study_load_of_an_old_save_keeps_the_old_layout(tmp_path):
    url, root = old_study(tmp_path)
    random_study(url, "old", root).save(tmp_path / "saved")
    saved = tmp_path / "saved" / "study.json"
    data = json.loads(saved.read_text())
    data["config"].pop(LAYOUT_KEY, None)  # a file an older poptune wrote
    saved.write_text(json.dumps(data))
    loaded = Study.load(tmp_path / "saved")
    assert loaded.checkpoints.directory == root
    assert loaded.get_trial(1).load_checkpoint() == {"trial": 1, "study": "old"}


def test_study_load_of_a_new_save_keeps_the_folder(tmp_path):
    study = random_study(f"sqlite:///{tmp_path / 'x.db'}", "s", tmp_path / "ckpt")
    study.optimize(saving, show_progress=False)
    study.save(tmp_path / "saved")
    loaded = Study.load(tmp_path / "saved")
    assert loaded.checkpoints.directory == tmp_path / "ckpt" / "s"
    assert loaded.best_trial.load_checkpoint()["trial"] == study.best_trial.id


# -- the best model ------------------------------------------------------------------------------
def test_best_params_value_trial_and_checkpoint(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    study = random_study(url, "best", tmp_path / "ckpt", n=6)
    study.optimize(saving, show_progress=False)
    best = study.get_best_result()
    assert study.best_params == {"lr": best["lr"]}
    assert study.best_value == best["Objective"]
    assert study.best_trial.id == best["Trial-ID"]
    path = study.best_checkpoint()
    assert path == study.get_trial(best["Trial-ID"]).checkpoint_path
    assert read_checkpoint(path) == {"trial": best["Trial-ID"], "lr": best["lr"]}
    # from load_study, given the checkpoint_dir
    reread = load_study(url, "best", checkpoint_dir=tmp_path / "ckpt")
    assert reread.best_checkpoint() == path
    assert reread.best_trial.load_checkpoint()["trial"] == best["Trial-ID"]
    assert reread.get_trial(1).checkpoint_path == tmp_path / "ckpt" / "best" / "1"
    # what the integrations use of a trial's store is there for a trial read from a study
    store = study.best_trial.checkpoint_store
    assert store.path("1") == tmp_path / "ckpt" / "best" / "1"
    assert store.save_path(study.best_trial) == path


def test_best_answers_when_there_is_none(tmp_path):
    study = random_study(None, None, None, n=2)
    with pytest.raises(NoCompletedTrialError, match="0 trial"):
        _ = study.best_value
    study.optimize(objectives.quadratic, show_progress=False)
    with pytest.raises(ConfigurationError, match="has no checkpoint_dir"):
        study.best_checkpoint()
    unsaved = random_study(None, None, tmp_path, n=2)
    unsaved.optimize(objectives.quadratic, show_progress=False)
    with pytest.raises(CheckpointError, match="has no checkpoint at"):
        unsaved.best_checkpoint()
    with pytest.raises(CheckpointError, match="never saved, or deleted by keep_checkpoints"):
        unsaved.best_trial.load_checkpoint()


def test_a_finished_trial_refuses_more_reports(tmp_path):
    study = random_study(None, None, tmp_path, n=1)
    study.optimize(saving, show_progress=False)
    trial = study.get_trial(1)
    with pytest.raises(Exception, match="finalized|finished"):
        trial.report(1.0, iteration=5)
