"""A study with ``storage=`` but no ``study_name`` (issue 18, §5): re-running the same script
resumes its study (the one matching stored study, else a name derived from the
configuration); a different configuration is a different study; several matching studies
are an error that lists them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import poptune
from poptune.exceptions import StudyMismatchError
from poptune.storage import MemoryStorage, resolve
from tests.conftest import forget_storages

ROOT = Path(__file__).resolve().parent.parent

# A user's script: no study_name; runs 3 more trials each time it is run.
SCRIPT = """
import json, sys
import poptune
from poptune.storage import MemoryStorage, resolve

low = float(sys.argv[2])
study = poptune.Study(
    [poptune.Continuous("x", [low, 1.0])],
    poptune.algorithms.RandomSearch(max_num_trials=100),
    lower_is_better=True,
    storage=sys.argv[1],
)
for _ in range(3):
    trial = study.get_suggestion()
    study.add_observation(trial, objective=trial.parameters["x"])
    study.finalize(trial)
print(json.dumps({"name": study.name, "trials": len(study.trials), "seed": study.seed}))
"""


def _start(db: str, low: float = 0.0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, db, str(low)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str]) -> dict:
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _run(db: str, low: float = 0.0) -> dict:
    return _finish(_start(db, low))


@pytest.fixture
def db(tmp_path):
    yield f"sqlite:///{tmp_path / 'runs.db'}"
    forget_storages()


def _study(db: str, low: float = 0.0, name: str | None = None, **kwargs) -> poptune.Study:
    return poptune.Study(
        [poptune.Continuous("x", [low, 1.0])],
        poptune.algorithms.RandomSearch(max_num_trials=100),
        lower_is_better=True,
        storage=db,
        study_name=name,
        **kwargs,
    )


def test_rerunning_the_same_script_continues_the_same_study(db_url):
    db = db_url  # an SQLite file, and a PostgreSQL database
    first = _run(db)
    second = _run(db)
    assert first["name"] == second["name"]
    assert first["name"].startswith("study-")
    assert (first["trials"], second["trials"]) == (3, 6)
    assert first["seed"] == second["seed"]  # the stored seed, not a new draw
    assert resolve(db).list_studies() == [first["name"]]


def test_a_different_configuration_is_a_different_study(db):
    first = _run(db, low=0.0)
    other = _run(db, low=0.5)
    assert other["name"] != first["name"] and other["trials"] == 3
    again = _run(db, low=0.5)  # and each one resumes
    assert (again["name"], again["trials"]) == (other["name"], 6)
    assert sorted(resolve(db).list_studies()) == sorted([first["name"], other["name"]])


def test_concurrent_first_runs_make_one_study(db):
    processes = [_start(db), _start(db)]
    results = [_finish(p) for p in processes]
    assert results[0]["name"] == results[1]["name"]
    assert resolve(db).list_studies() == [results[0]["name"]]
    assert len(poptune.load_study(db, results[0]["name"]).trials) == 6


def test_the_one_matching_named_study_is_joined(db):
    named = _study(db, name="my-run")
    named.add_observation(named.get_suggestion(), objective=0.5)
    _study(db, low=0.25, name="other")  # a different configuration: not a candidate
    assert _study(db).name == "my-run"
    assert _run(db)["name"] == "my-run"


def test_a_given_seed_must_match_too(db):
    seeded = _study(db, seed=7)
    assert _study(db, seed=7).name == seeded.name
    assert _study(db).name == seeded.name  # no seed given: any seed matches
    assert _study(db, seed=8).name != seeded.name


def test_several_matching_studies_ask_for_a_name(db):
    _study(db, name="a")
    _study(db, name="b")
    with pytest.raises(StudyMismatchError, match=r"2 studies .*\['a', 'b'\].*study_name="):
        _study(db)
    assert _study(db, name="b").name == "b"  # naming one still works


def test_memory_studies_keep_random_names():
    storage = MemoryStorage()
    first = _study(storage)
    second = _study(storage)
    assert first.name != second.name
