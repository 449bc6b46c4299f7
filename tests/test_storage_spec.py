"""storage.resolve, the one reader of a storage spec, and storage.copy_study."""

import pytest

from poptune import Continuous, Study, algorithms
from poptune.exceptions import ConfigurationError, StorageError
from poptune.storage import MemoryStorage, copy_study, get_storage, resolve

PARAMS = [Continuous("lr", [1e-4, 1e-2], "log")]


def test_memory_and_storage_objects():
    assert isinstance(resolve(None), MemoryStorage)
    assert isinstance(resolve("memory"), MemoryStorage)
    mine = MemoryStorage()
    assert resolve(mine) is mine
    assert get_storage(mine) is mine


def test_urls_and_sqlite_files_name_one_storage_per_process(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    storage = resolve(url)
    assert resolve(url) is storage
    assert resolve(tmp_path / "runs.db").url == storage.url  # an existing file is SQLite


@pytest.mark.parametrize(
    "spec, error, message",
    [
        ("no-such.db", ConfigurationError, "unknown storage 'no-such.db'"),
        (3, ConfigurationError, "unknown storage 3"),
    ],
)
def test_bad_specs_are_named(spec, error, message):
    with pytest.raises(error, match=message):
        resolve(spec)


def test_must_exist_never_creates_a_database(tmp_path):
    missing = tmp_path / "missing.db"
    with pytest.raises(StorageError, match="no SQLite database file at"):
        resolve(str(missing), must_exist=True)
    with pytest.raises(StorageError, match="no SQLite database file at"):
        resolve(f"sqlite:///{missing}", must_exist=True)
    assert not missing.exists()


def test_a_directory_is_not_a_storage(tmp_path):
    with pytest.raises(ConfigurationError, match="Study.load"):
        resolve(tmp_path)


def test_copy_study_copies_trials_observations_and_state(tmp_path):
    study = Study(PARAMS, algorithms.RandomSearch(4), True, seed=3, study_name="orig")
    for _ in range(3):
        trial = study.get_suggestion()
        study.add_observation(trial, 0.5, context={"loss": 0.1})
        study.finalize(trial)
    study.get_suggestion()  # one still running
    dst = resolve(f"sqlite:///{tmp_path / 'copy.db'}")
    new_id = copy_study(study._storage, study._study_id, dst)
    assert dst.list_studies() == ["orig"]
    copied, _ = dst.changes_since(new_id, 0)

    def record(trial):  # what is copied; seq numbers are the new storage's own
        obs = [(o.iteration, o.objective, o.context) for o in trial.observations.values()]
        return trial.id, trial.parameters, trial.status, trial.meta, obs

    assert [record(t) for t in sorted(copied, key=lambda t: t.id)] == [
        record(t) for t in study.trials
    ]
    assert dst.get_algorithm_state(new_id) == study._storage.get_algorithm_state(study._study_id)
    assert dst.get_study_config(new_id)["seed"] == 3
