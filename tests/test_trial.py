import gc

import pytest

from poptune import Continuous, Observation, Study, Trial, TrialStatus, algorithms


def test_observations_view_reads_like_a_dict_and_is_read_only():
    study = Study([Continuous("x", [0, 1])], algorithms.RandomSearch(3), True, seed=0)
    trial = study.get_suggestion()
    study.add_observation(trial, 0.5, iteration=1, context={"loss": 2.0})
    study.add_observation(trial, 0.25, iteration=3)
    obs = trial.observations
    assert list(obs) == [1, 3] and len(obs) == 2 and 3 in obs and 2 not in obs
    assert obs[1] == Observation(1, 0.5, {"loss": 2.0}, obs[1].seq)
    assert obs[3].context == {}
    assert trial.last_observation.iteration == 3
    assert trial.best_observation(lower_is_better=True).objective == 0.25
    assert trial.best_observation(lower_is_better=False).context == {"loss": 2.0}
    assert trial.score(True, "last") == 0.25 and trial.score(False, "best") == 0.5
    with pytest.raises(TypeError):
        obs[5] = Observation(5, 1.0)  # type: ignore[index]
    obs[1].context["loss"] = 99.0  # a copy: the stored observation does not change
    assert trial.observations[1].context == {"loss": 2.0}


def test_trial_dict_round_trip():
    params = {"x": 0.5, "generation": 2, "load_from": "1", "save_to": "4", "lineage": "1,"}
    trial = Trial(4, params, TrialStatus.RUNNING, {"member": 0, "parent": 1})
    trial._record(Observation(2, 0.7, {"loss": 0.1}, seq=9))
    again = Trial.from_dict(trial.to_dict())
    assert again.to_dict() == trial.to_dict()
    assert (again.generation, again.load_from, again.save_to, again.lineage) == (2, "1", "4", "1,")
    assert (again.parent, again.member, again.ancestors, again.explore) == (1, 0, [1], "")
    assert repr(again).startswith("Trial(id=4, status=RUNNING")


def test_a_finished_trial_leaves_one_object_for_the_garbage_collector():
    # The cost of Python's full collections grows with the number of tracked objects; a
    # trial must leave one (itself), not one per observation, or overhead grows with n.
    study = Study([Continuous("x", [0, 1])], algorithms.RandomSearch(300), True, seed=0)
    for trial in study:
        study.add_observation(trial, 0.5, iteration=1, context={"loss": 0.1, "tag": "a"})
        study.add_observation(trial, 0.4, iteration=2)
        study.finalize(trial)
    for _ in range(3):  # nested tuples are untracked one level per collection
        gc.collect()
    trial = study.trials[-1]
    # no meta dict for the full collections to visit (a search's trials have none), until read
    assert sum(type(r) is dict for r in gc.get_referents(trial)) == 2  # parameters, observations
    assert not gc.is_tracked(trial._obs)
    assert not gc.is_tracked(trial.parameters)
    assert not gc.is_tracked(trial.meta)


def test_meta_is_made_when_first_read_and_changes_in_place_stay():
    import copy
    import pickle

    trial = Trial(1, {"x": 0.5})
    assert (trial.parent, trial.member, trial.explore) == (None, None, "")
    assert trial.meta == {}
    trial.meta["member"] = 3
    assert trial.member == 3 and trial.to_dict()["meta"] == {"member": 3}
    trial.meta = {"parent": 2}
    assert (trial.parent, trial.member) == (2, None)
    for again in (pickle.loads(pickle.dumps(trial)), copy.deepcopy(trial)):
        assert again.meta == {"parent": 2} and again.parent == 2
    assert pickle.loads(pickle.dumps(Trial(2, {"x": 0.1}))).meta == {}
    assert Trial.from_dict(Trial(3, {"x": 0.2}).to_dict()).meta == {}


def test_history_scoped_shares_trials_but_not_state():
    from poptune import Continuous, History

    params = [Continuous("x", [0, 1])]
    history = History(params, lower_is_better=True)
    history.state["outer"] = {"inner": 1}
    inner = history.state["outer"]
    view = history.scoped(inner)
    assert isinstance(view, History)
    assert view.state is inner and history.state["outer"] is inner
    view.state["seen"] = True
    assert history.state == {"outer": {"inner": 1, "seen": True}}
    assert view.parameters is history.parameters
    assert view.lower_is_better is True
