"""Studies kept in SQLite files and PostgreSQL: the same behaviour as in memory, shared."""

import math
import subprocess
import sys
import textwrap
import time

import pytest

import poptune as pt
from poptune import (
    AlgorithmState,
    ConfigurationError,
    Continuous,
    Discrete,
    DuplicateIterationError,
    InvalidObservationError,
    NoObservationsError,
    ReadOnlyStudyError,
    StorageError,
    Study,
    StudyMismatchError,
    StudyNotFoundError,
    TrialFinishedError,
    UnknownTrialError,
    algorithms,
)
from poptune.storage.sql import SQLStorage

from .conftest import make_url

PARAMS = [Continuous("learning_rate", [1e-4, 1e-2], "log"), Discrete("batch", [8, 64])]


def pbt():
    return algorithms.PopulationBasedTraining(4, 5, resample_probability=0.2)


def objective(trial):
    return -abs(math.log10(trial.parameters["learning_rate"]) + 3) + 0.01 * trial.generation


def step(study, trial):
    study.add_observation(trial, objective(trial), iteration=trial.generation,
                          context={"loss": 0.5, "note": "x"})  # fmt: skip
    study.finalize(trial)


def fingerprint(study):
    return [
        (t.id, t.status.value, t.parameters, t.meta,
         [(o.iteration, o.objective, o.context) for o in t.observations.values()])
        for t in study.trials
    ]  # fmt: skip


def run_all(study):
    for trial in study:
        step(study, trial)
    return study


def test_pbt_on_a_database_matches_the_same_run_in_memory(db_url):
    reference = run_all(Study(PARAMS, pbt(), False, seed=7))
    stored = run_all(Study(PARAMS, pbt(), False, seed=7, storage=db_url, study_name="pbt"))
    assert fingerprint(stored) == fingerprint(reference)
    assert stored.get_best_result() == reference.get_best_result()
    df, ref = stored.results, reference.results
    assert list(df.columns) == list(ref.columns)
    assert df["Trial-ID"].tolist() == ref["Trial-ID"].tolist()
    assert df["Status"].tolist() == ref["Status"].tolist()


def test_a_second_process_sees_everything_and_continues(db_url, tmp_path):
    """Half the run in a child process that exits, the rest here: as if uninterrupted."""
    reference = run_all(Study(PARAMS, pbt(), False, seed=3))
    script = tmp_path / "half.py"
    script.write_text(
        textwrap.dedent(f"""
        import math, poptune as pt
        from poptune import Continuous, Discrete, algorithms
        PARAMS = [Continuous("learning_rate", [1e-4, 1e-2], "log"), Discrete("batch", [8, 64])]
        study = pt.Study(PARAMS, algorithms.PopulationBasedTraining(4, 5, resample_probability=0.2),
                         False, seed=3, storage={db_url!r}, study_name="shared")
        for n, trial in enumerate(study, 1):
            lr = trial.parameters["learning_rate"]
            value = -abs(math.log10(lr) + 3) + 0.01 * trial.generation
            study.add_observation(trial, value, iteration=trial.generation,
                                  context={{"loss": 0.5, "note": "x"}})
            study.finalize(trial)
            if n == 8:
                break
    """)
    )
    subprocess.run([sys.executable, str(script)], check=True, timeout=120)
    resumed = Study(PARAMS, pbt(), False, storage=db_url, study_name="shared")
    assert resumed.seed == 3 and len(resumed.trials) == 8
    run_all(resumed)
    assert fingerprint(resumed) == fingerprint(reference)


def test_two_workers_share_ids_and_the_pbt_barrier(db_url):
    a = Study(PARAMS, pbt(), False, seed=1, storage=SQLStorage(db_url), study_name="s")
    b = Study(PARAMS, pbt(), False, storage=SQLStorage(db_url), study_name="s")
    got = [a.get_suggestion(), b.get_suggestion(), a.get_suggestion(), b.get_suggestion(),
           a.get_suggestion()]  # fmt: skip
    assert [t.id for t in got] == [1, 2, 3, 4, 5]
    assert b.get_suggestion() is AlgorithmState.WAIT
    for t in got[:4]:
        step(a, t)
    assert a.get_suggestion() is AlgorithmState.WAIT  # trial 5 still runs in "b"
    step(b, got[4])
    nxt = a.get_suggestion()
    assert nxt.id == 6 and nxt.generation == 2 and 1 <= int(nxt.load_from) <= 5
    assert b.get_trial(6).parameters == nxt.parameters  # b syncs what a did


def test_bad_input_changes_nothing_in_the_database(db_url):
    study = Study(PARAMS, algorithms.RandomSearch(5), True, storage=db_url, study_name="bad")
    trial = study.get_suggestion()
    study.add_observation(trial, 0.5, iteration=1, context={"loss": 0.25})
    before = fingerprint(study)
    with pytest.raises(InvalidObservationError, match="must be finite"):
        study.add_observation(trial, 0.4, iteration=2, context={"loss": float("nan")})
    with pytest.raises(DuplicateIterationError):
        study.add_observation(trial, 0.4, iteration=1)
    with pytest.raises(InvalidObservationError):
        study.add_observation(trial, float("inf"), iteration=2)
    with pytest.raises(UnknownTrialError):
        study.add_observation(77, 0.4)
    with pytest.raises(UnknownTrialError):
        study.finalize(77)
    second = study.get_suggestion()
    with pytest.raises(NoObservationsError):
        study.finalize(second)
    study.finalize(trial)
    with pytest.raises(TrialFinishedError):
        study.add_observation(trial, 0.1, iteration=3)
    with pytest.raises(TrialFinishedError):
        study.finalize(trial, "FAILED")
    fresh = Study(PARAMS, algorithms.RandomSearch(5), True, storage=SQLStorage(db_url),
                  study_name="bad")  # fmt: skip
    t1 = fresh.get_trial(1)
    assert t1.status == "COMPLETED" and list(t1.observations) == [1]
    assert t1.observations[1].context == {"loss": 0.25}  # the refused NaN left no trace
    assert fresh.get_trial(2).status == "RUNNING"
    assert [(t.id, t.parameters) for t in fresh.trials] == [(t[0], t[2]) for t in before] + [
        (2, second.parameters)
    ]


def test_joining_checks_the_configuration(db_url):
    Study(PARAMS, pbt(), False, seed=5, storage=db_url, study_name="cfg")
    with pytest.raises(StudyMismatchError, match="different algorithm"):
        Study(PARAMS, algorithms.RandomSearch(), False, storage=db_url, study_name="cfg")
    with pytest.raises(StudyMismatchError, match="different parameters"):
        Study(PARAMS[:1], pbt(), False, storage=db_url, study_name="cfg")
    with pytest.raises(StudyMismatchError, match="different lower_is_better"):
        Study(PARAMS, pbt(), True, storage=db_url, study_name="cfg")
    with pytest.raises(StudyMismatchError, match="seed 5, given 6"):
        Study(PARAMS, pbt(), False, seed=6, storage=db_url, study_name="cfg")
    assert Study(PARAMS, pbt(), False, storage=db_url, study_name="cfg").seed == 5


def test_load_study_is_read_only(db_url):
    study = run_all(Study(PARAMS, pbt(), False, seed=2, storage=db_url, study_name="done"))
    seen = pt.load_study(db_url, "done")
    assert seen.get_best_result() == study.get_best_result()
    assert len(seen.results) == len(study.results)
    for call in (seen.get_suggestion, lambda: seen.add_observation(1, 0.5, iteration=9),
                 lambda: seen.finalize(1), lambda: seen.add_trial({"learning_rate": 1e-3,
                 "batch": 8})):  # fmt: skip
        with pytest.raises(ReadOnlyStudyError, match="read-only"):
            call()
    with pytest.raises(StudyNotFoundError, match="no study named 'nope'"):
        pt.load_study(db_url, "nope")


def test_load_study_without_the_custom_algorithm(db_url):
    class Mine(algorithms.Algorithm):
        def suggest(self, history, rng):
            return {p.name: p.sample(rng) for p in history.parameters}

    study = Study(PARAMS, Mine(), True, storage=db_url, study_name="custom")
    t = study.get_suggestion()
    study.add_observation(t, 1.0)
    study.finalize(t)
    seen = pt.load_study(db_url, "custom")  # the class is local: not importable
    assert seen.get_best_result()["Trial-ID"] == 1


def test_values_that_json_cannot_hold_are_refused_up_front(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(pt.InvalidParameterError, match="cannot be stored as JSON"):
        Study([pt.Choice("f", [len, abs])], algorithms.RandomSearch(), True, storage=url)


def test_queued_trials_are_claimed_once(db_url):
    a = Study(PARAMS, algorithms.RandomSearch(), True, storage=SQLStorage(db_url), study_name="q")
    b = Study(PARAMS, algorithms.RandomSearch(), True, storage=SQLStorage(db_url), study_name="q")
    a.add_trial({"learning_rate": 1e-3, "batch": 16})
    a.add_trial({"learning_rate": 2e-3, "batch": 32})
    first, second = b.get_suggestion(), a.get_suggestion()
    assert (first.id, first.parameters["batch"]) == (1, 16)
    assert (second.id, second.parameters["batch"]) == (2, 32)
    assert a.get_suggestion().id == 3 and "source" not in a.get_trial(3).meta


@pytest.mark.parametrize(
    "url, error, fragment",
    [
        ("mysql://u@h/db", ConfigurationError, "unsupported database 'mysql'"),
        ("sqlite://", ConfigurationError, "in-memory SQLite"),
        ("not a url", ConfigurationError, "unknown storage 'not a url'"),
        ("postgresql://postgres@127.0.0.1:1/none", StorageError, "database error on"),
        ("sqlite:////no/such/dir/x.db", StorageError, "unable to open database file"),
    ],
)
def test_bad_storage_urls_give_one_clear_error(url, error, fragment):
    with pytest.raises(error, match=fragment):
        Study(PARAMS, algorithms.RandomSearch(), True, storage=url)


def test_storage_password_is_hidden_in_errors():
    with pytest.raises(StorageError) as info:
        SQLStorage("postgresql://user:secret@127.0.0.1:1/db")
    assert "secret" not in str(info.value) and "***" in str(info.value)


def _kill_other_connections(url):
    """What a PostgreSQL restart does to a process's pooled connections: the server ends
    them (pg_terminate_backend), and they are gone before anyone uses them again."""
    import sqlalchemy as sa

    engine = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as conn:  # (autocommit: pg_stat_activity is read afresh each time)
        pids = (
            conn.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                )
            )
            .scalars()
            .all()
        )
        kill = sa.text("SELECT pg_terminate_backend(pid) FROM unnest(:p) AS pid")
        conn.execute(kill, {"p": pids})
        for _ in range(200):
            alive = conn.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:p)"), {"p": pids}
            ).scalar()
            if not alive:
                break
            time.sleep(0.05)
    engine.dispose()
    return pids


@pytest.mark.parametrize("idle", [False, True], ids=["just-used", "idle"])
def test_postgres_connections_killed_by_the_server_are_replaced(tmp_path, monkeypatch, idle):
    """Pooled connections are checked at checkout: by their socket (no round trip) when just
    used, by a ping when idle longer than PING_AFTER_S; either way a closed one is replaced."""
    from poptune.storage import _postgres

    url = make_url("postgres", tmp_path)
    if idle:
        monkeypatch.setattr(_postgres, "PING_AFTER_S", 0.0)
    storage = SQLStorage(url)
    try:
        study = Study(PARAMS, algorithms.RandomSearch(6), True, storage=storage, study_name="k",
                      heartbeat_interval=None)  # fmt: skip
        reader = SQLStorage(url)
        for round_ in range(3):
            trial = study.get_suggestion()
            assert _kill_other_connections(url)  # this storage's and the reader's
            study.add_observation(trial, 0.5)
            _kill_other_connections(url)
            study.finalize(trial)
            _kill_other_connections(url)
            assert reader.get_trial(study._study_id, trial.id).status == "COMPLETED"
            assert [t.id for t in study.trials] == list(range(1, round_ + 2))
        reader.close()
    finally:
        storage.close()
