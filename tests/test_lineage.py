"""poptune.lineage: the one home of PBT's lineage rules, and the modules that must use it."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from poptune import Continuous, Study, algorithms
from poptune.exceptions import UnknownTrialError
from poptune.history import History
from poptune.lineage import (
    ChildKeys,
    checkpoint_name,
    child_keys,
    founder_id,
    is_exploit,
    is_pbt,
    parent_id,
    schedule,
)
from poptune.storage import MemoryStorage
from poptune.trial import Observation, Trial, TrialStatus

SRC = Path(__file__).resolve().parents[1] / "src" / "poptune"
LR = [Continuous("lr", [1e-4, 1e-1], "log")]


def _segment(tid, *, lineage="", member=None, parent=None, save_to=None, **extra):
    params = {"lr": 0.01, "generation": lineage.count(",") + 1, "load_from": "",
              "lineage": lineage}  # fmt: skip
    if save_to is not None:
        params["save_to"] = save_to
    meta = dict(extra)
    if member is not None:
        meta["member"] = member
    if parent is not None:
        meta["parent"] = parent
    return Trial(tid, params, meta=meta)


def _history(trials):
    storage = MemoryStorage()
    sid = storage.create_study("s", {"parameters": [p.to_dict() for p in LR],
                                     "algorithm": {"type": "RandomSearch"},
                                     "lower_is_better": True})  # fmt: skip
    for trial in trials:
        storage.insert_trial(sid, Trial(trial.id, trial.parameters, meta=trial.meta))
        storage.add_observation(sid, trial.id, Observation(trial.id, 1.0 / trial.id))
        storage.finish_trial(sid, trial.id, TrialStatus.COMPLETED)
    history = History(LR, lower_is_better=True)
    history.sync(storage, sid)
    return history


# -- parent and founder ------------------------------------------------------------------------
def test_parent_is_the_meta_record_else_the_last_lineage_id():
    assert parent_id(_segment(5, lineage="1,3,", parent=4)) == 4
    assert parent_id(_segment(5, lineage="1,3,")) == 3  # queued with add_trial: no meta
    assert parent_id(_segment(5, lineage="1,3,", parent="3")) == 3  # not an int: lineage
    assert parent_id(_segment(1)) is None
    assert parent_id(Trial(2, {"x": 1})) is None


def test_founder_is_the_first_lineage_id_else_the_parent_else_the_trial():
    assert founder_id(_segment(9, lineage="2,5,", parent=5)) == 2
    assert founder_id(Trial(4, {"load_from": "3"}, meta={"parent": 3})) == 3  # ASHA-like
    assert founder_id(_segment(7)) == 7


# -- checkpoint names --------------------------------------------------------------------------
def test_checkpoint_name_is_save_to_else_the_id():
    assert checkpoint_name(_segment(3, save_to="3")) == "3"
    assert checkpoint_name(_segment(3, save_to="custom")) == "custom"
    assert checkpoint_name(_segment(3)) == "3"
    assert checkpoint_name(_segment(3, save_to=8)) == "8"  # a user's add_trial


def test_an_empty_save_to_names_the_trial_by_its_id():
    # The two old readings disagreed here: '' would have become a child's load_from, which
    # means "start from a fresh model".
    donor = _segment(3, save_to="")
    assert checkpoint_name(donor) == "3"
    assert child_keys(donor, 2, 4).parameters["load_from"] == "3"


def test_the_checkpoint_store_names_checkpoints_the_same_way():
    from poptune.checkpoints import CheckpointStore

    for trial in (_segment(3, save_to=""), _segment(3, save_to="x"), _segment(3)):
        assert CheckpointStore.name_of(trial) == checkpoint_name(trial)


# -- child keys --------------------------------------------------------------------------------
def test_child_keys_of_a_fresh_model():
    keys = child_keys(None, 1, 5)
    assert isinstance(keys, ChildKeys)
    assert keys.parameters == {"generation": 1, "load_from": "", "save_to": "5", "lineage": ""}
    assert list(keys.parameters) == ["generation", "load_from", "save_to", "lineage"]
    assert keys.meta == {}


def test_child_keys_continue_from_the_donor():
    donor = _segment(4, lineage="1,", save_to="4", parent=1)
    keys = child_keys(donor, 3, 9)
    assert keys.parameters == {"generation": 3, "load_from": "4", "save_to": "9",
                               "lineage": "1,4,"}  # fmt: skip
    assert keys.meta == {"parent": 4}
    founder = _segment(2, save_to="2")
    assert child_keys(founder, 2, 6).parameters["lineage"] == "2,"


def test_child_keys_without_an_id_leave_save_to_out():
    keys = child_keys(_segment(4, save_to="4"), 2, None)
    assert list(keys.parameters) == ["generation", "load_from", "lineage"]


# -- exploit edges -----------------------------------------------------------------------------
def test_exploit_when_the_members_differ():
    parent = _segment(1, member=0)
    assert is_exploit(_segment(3, lineage="1,", member=1, parent=1), parent)
    assert not is_exploit(_segment(3, lineage="1,", member=0, parent=1), parent)
    assert not is_exploit(_segment(3, lineage="1,", member=1), None)


def test_exploit_without_a_member_reads_the_trials_record():
    # The dashboard used to call any edge from a member into a trial without one an exploit,
    # and never one from a trial without a member; the plot read the explore record. Now both
    # read the record when a member is missing.
    parent = _segment(1, member=0)
    queued = _segment(3, lineage="1,")  # add_trial copying PBT's keys: no member
    assert not is_exploit(queued, parent)
    assert is_exploit(_segment(3, lineage="1,", explore="lr: 0.01 -> 0.012 (x1.2)"), parent)
    no_member = _segment(1)
    assert is_exploit(_segment(3, lineage="1,", member=1, replaced=2), no_member)
    assert not is_exploit(_segment(3, lineage="1,", member=1), no_member)


# -- is this a PBT study? ----------------------------------------------------------------------
def test_is_pbt_needs_both_bookkeeping_keys():
    assert is_pbt([_segment(1)])
    assert not is_pbt([])
    assert not is_pbt([Trial(1, {"lr": 0.1})])
    # The dashboard used to say PBT for any trial with a generation.
    assert not is_pbt([Trial(1, {"lr": 0.1, "generation": 2})])


def test_is_pbt_when_the_keys_are_the_studys_own_parameters_is_false():
    assert not is_pbt([_segment(1)], ["lr", "generation"])
    assert not is_pbt([_segment(1)], ["lineage"])


def test_is_pbt_for_an_empty_study_of_a_pbt_algorithm():
    pbt = algorithms.PopulationBasedTraining(2, 2)
    assert is_pbt([], (), pbt.reserved_keys)
    assert not is_pbt([], (), algorithms.RandomSearch().reserved_keys)


# -- schedules ---------------------------------------------------------------------------------
def _chain():
    return _history([
        _segment(1, member=0, save_to="1"),
        _segment(2, member=1, save_to="2"),
        _segment(3, lineage="1,", member=1, parent=1, save_to="3", explore="lr: x"),
        _segment(4, lineage="1,3,", member=1, parent=3, save_to="4"),
    ])  # fmt: skip


def test_schedule_follows_parents_to_the_founder():
    history = _chain()
    entries = schedule(history, 4)
    assert [e["trial"] for e in entries] == [1, 3, 4]
    assert [e["generation"] for e in entries] == [1, 2, 3]
    assert entries[1]["explore"] == "lr: x" and entries[0]["load_from"] == ""
    assert entries[0]["parameters"] == {"lr": 0.01}
    assert entries[0]["iterations"] == [1, 1]
    assert schedule(history, history[4]) == entries
    assert [e["trial"] for e in schedule(history, 2)] == [2]


def test_schedule_reads_a_study_like_object_and_rejects_others():
    history = _chain()

    class Holder:
        pass

    holder = Holder()
    holder.history = history
    assert schedule(holder, 3)[-1]["trial"] == 3
    with pytest.raises(TypeError, match="Study or a History"):
        schedule(object(), 3)


def test_schedule_of_missing_or_inconsistent_trials():
    history = _history([_segment(1, parent=0), _segment(2, parent=5)])
    with pytest.raises(UnknownTrialError, match="not in the study"):
        schedule(history, 99)
    with pytest.raises(UnknownTrialError, match="not in the study"):
        schedule(history, True)
    with pytest.raises(UnknownTrialError, match="loads trial 0"):
        schedule(history, 1)
    with pytest.raises(UnknownTrialError, match="later trial 5"):
        schedule(history, 2)


def test_the_old_schedule_paths_still_work():
    from poptune.algorithms.pbt import schedule as from_package
    from poptune.algorithms.pbt.replay import schedule as from_replay

    assert from_package is schedule and from_replay is schedule


# -- PBT's modes and the explore hook ----------------------------------------------------------
class _Doubling(algorithms.PopulationBasedTraining):
    """Explores by doubling lr: proves both modes call the hook a subclass overrides."""

    calls: list[tuple[int, int]]

    def explore(self, history, donor, generation, rng, running):
        self.calls = getattr(self, "calls", [])
        self.calls.append((donor.id, generation))
        assert all(isinstance(g, int) and isinstance(c, dict) for g, c in running())
        config = history.hyperparameters(donor)
        config["lr"] = min(config["lr"] * 2, 0.1)
        return config, [f"lr: doubled to {config['lr']:.4g}"]


@pytest.mark.parametrize("synchronous", [True, False])
def test_both_modes_call_the_overridden_explore_hook(synchronous):
    pbt = _Doubling(4, 4, synchronous=synchronous)
    study = Study(LR, pbt, lower_is_better=True, seed=3, disable_dashboard=True)
    for trial in study:
        study.add_observation(trial, objective=abs(np.log10(trial.parameters["lr"]) + 2),
                              iteration=trial.generation)  # fmt: skip
        study.finalize(trial)
    explored = [t for t in study.trials if t.explore]
    assert explored and len(pbt.calls) == len(explored)
    assert all(t.explore.startswith("lr: doubled") for t in explored)
    for t in explored:
        assert t.parent in {donor for donor, _ in pbt.calls}
        assert t.load_from == checkpoint_name(study.get_trial(t.parent))


def test_pb2_overrides_the_explore_hook():
    assert algorithms.PB2.explore is not algorithms.PopulationBasedTraining.explore
    assert not hasattr(algorithms.PopulationBasedTraining, "_explore")


# -- who may import what -----------------------------------------------------------------------
def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_lineage_imports_no_algorithm_storage_or_study():
    banned = ("poptune.algorithms", "poptune.storage", "poptune.study")
    assert not [m for m in _imports(SRC / "lineage.py") if m.startswith(banned)]


def test_plot_imports_neither_algorithms_nor_the_study():
    for path in (SRC / "plot").glob("*.py"):
        banned = ("poptune.algorithms", "poptune.study")
        assert not [m for m in _imports(path) if m.startswith(banned)], path.name


def test_dashboard_lineage_comes_from_poptune_lineage():
    imports = _imports(SRC / "dashboard" / "_data.py")
    assert not [m for m in imports if m.startswith("poptune.algorithms.pbt")]
    assert "poptune.lineage" in imports


def test_pbt_modes_import_neither_each_other_nor_the_algorithm():
    pbt = SRC / "algorithms" / "pbt"
    for mode, other in (("synchronous", "asynchronous"), ("asynchronous", "synchronous")):
        imports = _imports(pbt / f"{mode}.py")
        banned = (f"poptune.algorithms.pbt.{other}", "poptune.algorithms.pbt.algorithm")
        assert not [m for m in imports if m.startswith(banned)], mode


# -- the dashboard follows the same rules ------------------------------------------------------
def _finished_pbt_study(storage):
    study = Study(LR, algorithms.PopulationBasedTraining(2, 2), lower_is_better=True,
                  storage=storage, study_name="pbt", seed=1, disable_dashboard=True)  # fmt: skip
    for trial in study:
        study.add_observation(trial, objective=trial.parameters["lr"], iteration=1)
        study.finalize(trial)
    return study


def test_dashboard_edges_of_a_trial_without_a_member_follow_is_exploit():
    from poptune.dashboard._data import DashboardData

    storage = MemoryStorage()
    study = _finished_pbt_study(storage)
    donor = study.trials[-1]
    keys = child_keys(donor, donor.generation + 1, None).parameters
    queued = study.add_trial({"lr": 0.01, **keys})  # a user's segment: no member, no parent
    data = DashboardData(storage)
    edges = {e["target"]: e for e in data.lineage("pbt")["edges"]}
    assert edges[queued.id]["source"] == donor.id
    assert edges[queued.id]["exploit"] is False  # the old dashboard rule said True
    for trial in study.trials:
        if trial.id in edges:
            parent = study.get_trial(edges[trial.id]["source"])
            assert edges[trial.id]["exploit"] is is_exploit(trial, parent)
    assert data.study_summary("pbt")["pbt"] is True


def test_dashboard_does_not_call_a_study_with_a_generation_parameter_pbt():
    from poptune import Discrete
    from poptune.dashboard._data import DashboardData

    storage = MemoryStorage()
    params = [*LR, Discrete("generation", [1, 3])]
    study = Study(params, algorithms.RandomSearch(max_num_trials=2), lower_is_better=True,
                  storage=storage, study_name="plain", seed=1, disable_dashboard=True)  # fmt: skip
    for trial in study:
        study.add_observation(trial, objective=1.0, iteration=1)
        study.finalize(trial)
    assert all(t.generation is not None for t in study.trials)  # the old rule's input
    assert DashboardData(storage).study_summary("plain")["pbt"] is False
