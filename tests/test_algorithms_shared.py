"""LocalSearch, ASHA, Hyperband, Genetic and Repeat on a study shared by two processes (two
Study objects on one SQLite file) and resumed after an interruption: the same trials as one
uninterrupted run in one process."""

import pytest

from poptune import AlgorithmState, Choice, Continuous, Ordinal, Study, Trial, TrialStatus
from poptune.algorithms.chain import Chain
from poptune.algorithms.genetic import Genetic
from poptune.algorithms.hyperband import Hyperband
from poptune.algorithms.iterate import Iterate
from poptune.algorithms.local_search import LocalSearch
from poptune.algorithms.repeat import Repeat
from poptune.algorithms.successive_halving import SuccessiveHalving
from poptune.storage.sql import SQLStorage

from .conftest import forget_storages
from .helpers import fingerprint, finish, run

PAIR = [Continuous("x", [0.0, 1.0]), Ordinal("o", [1, 2, 4, 8]), Choice("c", ["a", "b"])]


def objective(trial):
    p = trial.parameters
    return (p["x"] - 0.3) ** 2 + 0.1 * p["o"] + (p["c"] == "b") - 0.01 * p.get("resource", 0)


FACTORIES = {
    "local": lambda: LocalSearch({"x": 0.5, "o": 4, "c": "b"}),
    "asha": lambda: SuccessiveHalving(max_finished_configs=3),
    "hyperband": lambda: Hyperband(R=9, max_finished_configs=4),
    "genetic": lambda: Genetic(mutation_rate=0.2, max_num_trials=15),
    "repeat": lambda: Repeat(
        Chain([Iterate([{"x": 0.2, "o": 1, "c": "a"}]), Genetic(max_num_trials=6)]), 2, agg=True
    ),  # fmt: skip
}


def interleave(a, b, max_steps=400):
    """Ask a and b in turn, keep up to 3 trials running, finish the oldest first."""
    running = []
    for step in range(max_steps):
        study = (a, b)[step % 2]
        got = study.get_suggestion()
        if isinstance(got, Trial):
            running.append((study, got))
            if len(running) < 3:
                continue
        elif not running:
            assert got is AlgorithmState.DONE
            return
        owner, trial = running.pop(0)
        finish(owner, trial, objective(trial))
    raise AssertionError("the algorithm never finished")


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_two_processes_sharing_a_sqlite_study(tmp_path, name):
    make = FACTORIES[name]
    reference = Study(PAIR, make(), True, seed=5)
    interleave(reference, reference)
    url = f"sqlite:///{tmp_path / 's.db'}"
    try:
        a = Study(PAIR, make(), True, seed=5, storage=url, study_name="shared")
        b = Study(PAIR, make(), True, storage=SQLStorage(url), study_name="shared")
        interleave(a, b)
        trials = b.trials
        assert fingerprint(b) == fingerprint(a) == fingerprint(reference)
        assert all(t.status is TrialStatus.COMPLETED for t in trials)
        if name == "local":
            configs = [(t.parameters["x"], t.parameters["o"], t.parameters["c"]) for t in trials]
            assert len(configs) == len(set(configs)) > 5
        if name in ("asha", "hyperband"):
            promoted = [t.parameters["load_from"] for t in trials if t.parameters["load_from"]]
            assert promoted and len(promoted) == len(set(promoted))
        a.close()
        b.close()
    finally:
        forget_storages()


@pytest.mark.parametrize("name", ["local", "asha"])
@pytest.mark.parametrize("stop_after", [1, 4, 9])
def test_resume_ends_where_an_uninterrupted_run_would(tmp_path, name, stop_after):
    make = FACTORIES[name]
    reference = Study(PAIR, make(), True, seed=11)
    run(reference, objective)
    first = Study(PAIR, make(), True, seed=11, output_dir=tmp_path)
    for n, trial in enumerate(first, start=1):
        finish(first, trial, objective(trial))
        first.save()
        if n == stop_after:
            break
    resumed = Study.load(tmp_path)
    run(resumed, objective)
    assert fingerprint(resumed) == fingerprint(reference)
