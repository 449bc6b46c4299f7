"""A Study in a MemoryStorage of its process takes a short path (``poptune/study/_in_memory.py``):
it must do what the general path does, for every storage, trial for trial."""

import pytest

from poptune import (
    Choice,
    Continuous,
    Discrete,
    DuplicateIterationError,
    NoObservationsError,
    Study,
    StudyNotFoundError,
    TrialFinishedError,
    UnknownTrialError,
    algorithms,
)
from poptune._rng import STATE_KEY
from poptune.storage import MemoryStorage

from .helpers import fingerprint, finish, run

P = [Continuous("lr", [1e-5, 1e-1], "log"), Discrete("units", [8, 256]),
     Choice("act", ["relu", "tanh", "sigmoid"])]  # fmt: skip


def value(trial):
    return round(trial.parameters["lr"] * 100 + trial.parameters["units"] / 256, 12)


def make(storage=None, name=None, n=10, stream=None, algorithm=None):
    algorithm = algorithm or algorithms.RandomSearch(max_num_trials=n)
    return Study(P, algorithm, True, seed=7, storage=storage, study_name=name,
                 rng_stream=stream, heartbeat_interval=None)  # fmt: skip


@pytest.mark.parametrize("stream", [1, 2])
def test_memory_and_sqlite_give_the_same_trials_and_state(tmp_path, stream):
    memory, general = make(stream=stream), make(stream=stream)
    general._mem = None  # the general path, on the same storage class
    sqlite = make(f"sqlite:///{tmp_path / 'a.db'}", "a", stream=stream)
    for study in (memory, general, sqlite):
        run(study, value)
    assert memory._mem is not None and sqlite._mem is None  # the short path, the general one
    assert fingerprint(memory) == fingerprint(general) == fingerprint(sqlite)
    stored = [s._storage.get_algorithm_state(s._study_id) for s in (memory, general, sqlite)]
    assert stored[0] == stored[1] == stored[2]


def test_two_study_objects_on_one_memory_storage_draw_one_stream():
    alone = make(n=12)
    run(alone, value)
    storage = MemoryStorage()
    a, b = make(storage, "s", n=12), make(storage, "s", n=12)
    for i in range(12):
        study = (a, b)[i % 3 == 1]  # b makes every third suggestion
        finish(study, study.get_suggestion(), 0.0)
    assert [t.parameters for t in a.trials] == [t.parameters for t in alone.trials]


def test_the_position_is_in_the_state_whenever_it_is_read():
    study = make()
    seen = []
    for _ in range(3):
        finish(study, study.get_suggestion(), 1.0)
        seen.append(list(study._storage.get_algorithm_state(study._study_id)[STATE_KEY]))
    assert len({tuple(s) for s in seen}) == 3  # it moved, and was there each time
    assert study.history.state[STATE_KEY] == seen[-1]  # the History shows it as stored
    again = make()  # an uninterrupted run reads the same positions
    for _ in range(3):
        finish(again, again.get_suggestion(), 1.0)
    assert again.history.state[STATE_KEY] == seen[-1]


def test_a_state_set_from_outside_replaces_the_held_position():
    study = make()
    finish(study, study.get_suggestion(), 1.0)
    storage, sid = study._storage, study._study_id
    saved = dict(storage.get_algorithm_state(sid))
    expected = study.get_suggestion().parameters
    storage.set_algorithm_state(sid, dict(saved))  # back to where it was: same draw again
    assert study.get_suggestion().parameters == expected


def test_queued_trials_still_come_first():
    study = make()
    first = study.get_suggestion()
    queued = study.add_trial({"lr": 0.01, "units": 10, "act": "tanh"})
    assert study.get_suggestion().id == queued.id
    assert study.get_suggestion().id == queued.id + 1 != first.id


def test_errors_are_the_general_paths_and_record_nothing():
    study = make()
    trial = study.get_suggestion()
    with pytest.raises(NoObservationsError):
        study.finalize(trial)
    study.add_observation(trial, 1.0, iteration=1)
    with pytest.raises(DuplicateIterationError):
        study.add_observation(trial, 2.0, iteration=1)
    with pytest.raises(UnknownTrialError):
        study.add_observation(99, 1.0)
    study.finalize(trial)
    with pytest.raises(TrialFinishedError):
        study.add_observation(trial, 1.0, iteration=2)
    with pytest.raises(TrialFinishedError):
        study.finalize(trial, "FAILED")
    assert [(o.iteration, o.objective) for o in study.trials[0].observations.values()] == [(1, 1.0)]
    assert study.trials[0].status.value == "COMPLETED"


@pytest.mark.parametrize("where", ["memory", "sqlite"])
def test_the_arguments_are_checked_alike(where, tmp_path):
    """What add_observation and finalize take and refuse, on the short path (memory) as on
    the general one (a file): numpy and int objectives, a status as a member or a string, a
    Trial from elsewhere by its id; NaN, inf, a bool, a float iteration, an unknown status."""
    import numpy as np

    from poptune import InvalidObservationError, InvalidStatusError, Trial, TrialStatus

    storage = None if where == "memory" else f"sqlite:///{tmp_path / 'a.db'}"
    study = make(storage, None if storage is None else "checks")
    first, second, third = (study.get_suggestion() for _ in range(3))
    study.add_observation(first, np.float32(0.5), iteration=np.int64(1))
    study.add_observation(first, 2, iteration=2)
    for bad in (float("nan"), float("inf"), True, "1.0"):
        with pytest.raises(InvalidObservationError, match="objective must be a finite number"):
            study.add_observation(first, bad, iteration=3)
    with pytest.raises(InvalidObservationError):
        study.add_observation(first, 1.0, iteration=3.5)
    with pytest.raises(InvalidStatusError, match="'DONE'"):
        study.finalize(first, "DONE")
    study.finalize(first, TrialStatus.COMPLETED)
    study.finalize(second.id, "FAILED", meta={"why": "test"})
    copy = Trial(third.id, third.parameters)  # not handed out by this object: checked, by id
    study.add_observation(copy, 1.5)
    study.finalize(copy, "STOPPED")
    got = {t.id: (t.status.value, [(o.iteration, o.objective) for o in t.observations.values()])
           for t in study.trials}  # fmt: skip
    assert got == {
        first.id: ("COMPLETED", [(1, 0.5), (2, 2.0)]),
        second.id: ("FAILED", []),
        third.id: ("STOPPED", [(1, 1.5)]),
    }
    assert study.get_trial(second.id).meta == {"why": "test"}
    assert type(study.get_trial(first.id).observations[1].objective) is float


def test_a_deleted_study_is_not_found():
    storage = MemoryStorage()
    study = make(storage, "gone")
    trial = study.get_suggestion()
    storage.delete_study("gone")
    for call in (study.get_suggestion, lambda: study.add_observation(trial, 1.0),
                 lambda: study.finalize(trial, "FAILED")):  # fmt: skip
        with pytest.raises(StudyNotFoundError):
            call()


class Boom(algorithms.RandomSearch):
    """Draws, notes it in its state, then fails on its third suggestion."""

    def suggest(self, history, rng):
        rng.random()
        history.state["calls"] = history.state.get("calls", 0) + 1
        if history.state["calls"] == 3:
            raise RuntimeError("boom")
        return super().suggest(history, rng)


def test_an_algorithm_that_raises_keeps_its_state_and_position():
    short, general = make(algorithm=Boom()), make(algorithm=Boom())
    general._mem = None  # the general path, on the same storage class
    for study in (short, general):
        for _ in range(2):
            finish(study, study.get_suggestion(), 1.0)
        with pytest.raises(RuntimeError, match="boom"):
            study.get_suggestion()
        finish(study, study.get_suggestion(), 1.0)
    assert fingerprint(short) == fingerprint(general)
    states = [s._storage.get_algorithm_state(s._study_id) for s in (short, general)]
    assert states[0] == states[1] and states[0]["calls"] == 4


def test_callbacks_and_the_general_path_see_every_event():
    events = []

    class Spy:
        def on_trial_start(self, study, trial):
            events.append(("start", trial.id))

        def on_observation(self, study, trial, observation):
            events.append(("obs", trial.id, observation.objective))

        def on_trial_end(self, study, trial, status):
            events.append(("end", trial.id, status.value))

    study = Study(P, algorithms.RandomSearch(max_num_trials=2), True, seed=7, callbacks=[Spy()])
    run(study, lambda t: 0.5)
    assert events == [("start", 1), ("obs", 1, 0.5), ("end", 1, "COMPLETED"),
                      ("start", 2), ("obs", 2, 0.5), ("end", 2, "COMPLETED")]  # fmt: skip
