"""schedule() of a PBT trial's lineage and the Replay algorithm that trains it again."""

import pytest

from poptune import ConfigurationError, Study, TrialStatus, UnknownTrialError
from poptune.algorithms import PopulationBasedTraining as PBT
from poptune.algorithms import algorithm_from_config
from poptune.algorithms.pbt.replay import Replay, schedule
from poptune.storage.sql import SQLStorage

from .conftest import forget_storages
from .helpers import DONE, WAIT, H, drive, toy_run, toy_segment


def test_schedule_follows_parents_back_to_the_founder():
    study = toy_run(PBT(6, 4, quantile_fraction=0.25, resample_probability=0.25), seed=2)
    for trial in study.trials[-4:]:
        entries = schedule(study, trial)
        assert [e["trial"] for e in entries] == [*trial.ancestors, trial.id]  # the lineage
        assert [e["generation"] for e in entries] == list(range(1, 7))
        assert entries[0]["load_from"] == ""
        for before, entry in zip(entries, entries[1:], strict=False):
            assert entry["load_from"] == str(before["trial"])
        for entry in entries:
            segment = study.get_trial(entry["trial"])
            assert entry["parameters"] == {"h0": segment.parameters["h0"],
                                           "h1": segment.parameters["h1"]}  # fmt: skip
            assert entry["iterations"] == [segment.generation] * 2
            assert entry["explore"] == segment.explore
        assert schedule(study.history, trial.id) == entries
    assert any(e["explore"] for t in study.trials[-4:] for e in schedule(study, t))
    with pytest.raises(UnknownTrialError):
        schedule(study, 999)


def test_replay_reproduces_the_best_trial():
    """The toy objective is deterministic: replaying the best trial's schedule (same h per
    segment, same 4 steps, each segment from the previous one's θ) gives the same Q."""
    study = toy_run(PBT(12, 4, quantile_fraction=0.25, resample_probability=0.25), seed=4)
    best = study.get_best_result()
    plan = schedule(study, best["Trial-ID"])
    assert len(plan) == best["generation"] and any(e["explore"] for e in plan)

    replay = Study(H, Replay(plan), False, seed=0)
    checkpoints, replayed = {}, []
    while True:
        trial = replay.get_suggestion()
        if trial is DONE:
            break
        assert replay.get_suggestion() is WAIT  # the next segment waits for this one
        k = len(replayed)
        assert trial.parameters["generation"] == plan[k]["generation"]
        assert {n: trial.parameters[n] for n in ("h0", "h1")} == plan[k]["parameters"]
        expected_load = replayed[-1].save_to if replayed else ""
        assert (trial.load_from, trial.save_to) == (expected_load, str(trial.id))
        assert trial.lineage == "".join(f"{t.id}," for t in replayed)
        assert trial.meta["replay_of"] == plan[k]["trial"]
        replay.add_observation(trial, toy_segment(trial, checkpoints), iteration=trial.generation)
        replay.finalize(trial)
        replayed.append(trial)
    assert len(replayed) == len(plan)
    assert replay.trials[-1].observations[best["Iteration"]].objective == best["Objective"]
    assert schedule(replay, replayed[-1])[-1]["parameters"] == plan[-1]["parameters"]


def test_replay_ends_on_a_failed_segment_and_checks_its_schedule(caplog):
    plan = [{"parameters": {"h0": 0.5, "h1": 0.5}}, {"parameters": {"h0": 1.0, "h1": 0.5}}]
    study = Study(H, Replay(plan), False, seed=0)
    first = study.get_suggestion()
    assert first.generation == 1 and first.load_from == ""
    study.finalize(first, "FAILED")
    assert study.get_suggestion() is DONE
    assert "ended FAILED" in caplog.text
    config = Replay(plan).to_config()
    assert algorithm_from_config(config).to_config() == config == {"type": "Replay",
                                                                   "schedule": plan}  # fmt: skip
    with pytest.raises(ConfigurationError, match="at least one segment"):
        Replay([])
    with pytest.raises(ConfigurationError, match=r"schedule\[0\] must be a dict with"):
        Replay([{"h0": 1.0}])
    with pytest.raises(ConfigurationError, match=r"schedule\[0\] has no value for .*'h1'"):
        Study(H, Replay([{"parameters": {"h0": 1.0}}]), False)
    with pytest.raises(ConfigurationError, match=r"\['h0'\] = 2.0 does not fit the study"):
        Study(H, Replay([{"parameters": {"h0": 2.0, "h1": 0.0}}]), False)


def test_replay_shared_by_two_study_objects(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    kw = {"heartbeat_interval": None, "study_name": "replay"}
    plan = [{"parameters": {"h0": 0.1 * k, "h1": 1.0}, "generation": k} for k in range(1, 6)]
    try:
        a = Study(H, Replay(plan), False, seed=0, storage=url, **kw)
        b = Study(H, Replay(plan), False, storage=SQLStorage(url), **kw)
        trials = drive([a, b, b], schedule_seed=2, workers=2)
        assert [t.generation for t in trials] == [1, 2, 3, 4, 5]  # each segment once
        assert [t.load_from for t in trials] == ["", "1", "2", "3", "4"]
        assert [t.id for t in a.trials] == [1, 2, 3, 4, 5]
        assert all(t.status is TrialStatus.COMPLETED for t in b.trials)
        assert a.get_suggestion() is DONE and b.get_suggestion() is DONE
    finally:
        forget_storages()


def test_study_schedule_is_the_replay_schedule():
    from poptune import Continuous, Study, algorithms
    from poptune.algorithms.pbt.replay import schedule

    study = Study([Continuous("lr", [1e-3, 1e-1], "log")],
                  algorithms.PopulationBasedTraining(3, 3), False, seed=0)  # fmt: skip
    for t in study:
        study.add_observation(t, t.parameters["lr"], iteration=t.generation)
        study.finalize(t)
    last = study.trials[-1]
    assert study.schedule(last) == schedule(study, last)
    assert [entry["trial"] for entry in study.schedule(last.id)] == last.ancestors + [last.id]
