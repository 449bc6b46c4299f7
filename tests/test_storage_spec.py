"""storage.resolve, the one reader of a storage spec, and storage.copy_study."""

import traceback

import pytest

from poptune import Continuous, Study, algorithms, load_study
from poptune.exceptions import ConfigurationError, StorageError
from poptune.storage import MemoryStorage, copy_study, get_storage, resolve
from tests.conftest import forget_storages, postgres_url, wipe_postgres

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


# -- postgres:// is postgresql:// ---------------------------------------------------------------
@pytest.mark.parametrize(
    "given, meant",
    [
        ("postgres://u@h/db", "postgresql://u@h/db"),
        ("postgres+psycopg://u:pw@h:5433/db", "postgresql+psycopg://u:pw@h:5433/db"),
        (
            "postgres+psycopg2://u@h/db?sslmode=require",
            "postgresql+psycopg2://u@h/db?sslmode=require",
        ),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:///postgres://x.db", "sqlite:///postgres://x.db"),
        ("postgresx://u@h/db", "postgresx://u@h/db"),
    ],
)
def test_postgres_scheme_is_read_as_postgresql(given, meant):
    from poptune.storage._connect import canonical_url

    assert canonical_url(given) == meant


def test_a_postgres_url_is_not_refused_as_unsupported():
    # No server needed: the URL is accepted, then the (closed) port refuses the connection.
    with pytest.raises(
        StorageError, match="database error on postgresql://u:\\*\\*\\*@127.0.0.1:1/db"
    ):
        resolve("postgres://u:secret@127.0.0.1:1/db")


def test_postgres_and_postgresql_urls_open_the_same_database():
    url = postgres_url()
    wipe_postgres(url)
    try:
        alias = "postgres://" + url.split("://", 1)[1]
        study = Study(PARAMS, algorithms.RandomSearch(2), True, storage=alias, study_name="pg")
        trial = study.get_suggestion()
        study.add_observation(trial, 0.25)
        study.finalize(trial)
        assert resolve(alias) is resolve(url)  # one storage per database and process
        forget_storages()
        loaded = load_study(url, "pg")  # postgresql:// sees what postgres:// wrote
        assert [t.status.name for t in loaded.trials] == ["COMPLETED"]
    finally:
        forget_storages()


# -- a failed connection is one short error ---------------------------------------------------
BAD_URLS = [
    pytest.param("postgresql://postgres:hunter2@127.0.0.1:1/db", "127.0.0.1:1", id="down"),
    pytest.param(
        "postgresql://postgres:hunter2@no-such-host.invalid/db", "no-such-host", id="bad-host"
    ),  # fmt: skip
]


def _check_short(error: StorageError, where: str) -> None:
    text = "".join(traceback.format_exception(error))
    assert "hunter2" not in text and "hunter2" not in str(error)
    assert where in str(error)
    assert "The above exception" not in text and "During handling" not in text
    assert len(text.splitlines()) < 30, text  # was 124 lines of chained tracebacks
    assert error.__cause__ is None and error.__suppress_context__
    driver = error.cause.orig  # the SQLAlchemy error, then the driver's own
    assert type(driver).__module__.startswith("psycopg")
    assert str(driver).strip().splitlines()[0] in str(error)


@pytest.mark.parametrize("url, where", BAD_URLS)
def test_a_failed_connection_is_one_short_error_with_its_cause_kept(url, where):
    with pytest.raises(StorageError, match="cannot connect: ") as info:
        resolve(url)
    _check_short(info.value, where)


def test_a_wrong_database_name_is_one_short_error():
    url = postgres_url()
    base = url.rsplit("/", 1)[0]
    with pytest.raises(StorageError, match="cannot connect: ") as info:
        resolve(f"{base}/poptune_no_such_database")
    _check_short(info.value, "poptune_no_such_database")
    assert "does not exist" in str(info.value)
