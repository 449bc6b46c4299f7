"""Every row read from a database is checked (issue 17, item 7).

A corrupt row is a one-line :class:`CorruptRowError` (a StorageError) naming the study, the
trial and the field. The rule chosen: a study with a corrupt trial (or observation) row is
refused as a whole, loudly — never read with the row silently left out — while the other
studies of the storage stay readable. The ``poptune`` command prints it as one line.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

import poptune
from poptune import Continuous, Study, load_study
from poptune.algorithms import RandomSearch
from poptune.exceptions import CorruptRowError, StorageError
from poptune.study import join_study
from tests.conftest import forget_storages

SRC = str(Path(poptune.__file__).resolve().parents[1])
SPACE = [Continuous("x", [0.0, 1.0])]


def two_studies(url: str) -> None:
    for name in ("bad", "good"):
        study = Study(SPACE, RandomSearch(max_num_trials=3), True, storage=url,
                      study_name=name, seed=0)  # fmt: skip
        for trial in study:
            study.add_observation(trial, trial.parameters["x"], context={"loss": 1.0})
            study.finalize(trial)
        study.close()
    forget_storages()


def execute(url: str, sql: str) -> None:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text(sql))
    engine.dispose()


BAD = "(SELECT study_id FROM poptune_studies WHERE name = 'bad')"

CORRUPTIONS = {
    "status": (
        f"UPDATE poptune_trials SET status = 'PWNED' WHERE trial_id = 2 AND study_id = {BAD}",
        "trial 2: field 'status' is 'PWNED', not a trial status",
    ),
    "meta": (
        f"UPDATE poptune_trials SET meta = '{{not json' WHERE trial_id = 2 AND study_id = {BAD}",
        "trial 2: field 'meta' is not valid JSON",
    ),
    "parameters": (
        f"UPDATE poptune_trials SET parameters = '[1, 2]' WHERE trial_id = 3 AND study_id = {BAD}",
        "trial 3: field 'parameters' holds list '[1, 2]', expected a JSON object",
    ),
    "context": (
        f"UPDATE poptune_observations SET context = '{{not json' WHERE trial_id = 1 "
        f"AND study_id = {BAD}",
        "trial 1: field 'context (iteration 1)' is not valid JSON",
    ),
}


@pytest.mark.parametrize("field", sorted(CORRUPTIONS))
def test_a_corrupt_row_is_one_error_naming_study_trial_and_field(db_url, field):
    two_studies(db_url)
    sql, message = CORRUPTIONS[field]
    execute(db_url, sql)
    study = load_study(db_url, "bad")
    with pytest.raises(CorruptRowError) as info:
        study.trials  # noqa: B018 - reading is what fails
    text = str(info.value)
    assert "\n" not in text and isinstance(info.value, StorageError)
    assert text.startswith("study 'bad' in ") and message in text, text
    good = load_study(db_url, "good")  # the other study stays readable
    assert len(good.trials) == 3 and good.get_best_result()["Trial-ID"] in (1, 2, 3)


def test_a_corrupt_row_refuses_a_worker_too_and_changes_nothing(db_url):
    two_studies(db_url)
    execute(db_url, CORRUPTIONS["status"][0])
    worker = join_study(db_url, "bad")
    with pytest.raises(CorruptRowError, match="'PWNED'"):
        worker.get_suggestion()
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT status FROM poptune_trials WHERE study_id = {BAD} "
                                    "ORDER BY trial_id")).all()  # fmt: skip
    engine.dispose()
    assert [r[0] for r in rows] == ["COMPLETED", "PWNED", "COMPLETED"]  # nothing written


def test_a_corrupt_config_names_the_study_and_the_field(db_url):
    two_studies(db_url)
    execute(db_url, "UPDATE poptune_studies SET config = '{not json' WHERE name = 'bad'")
    with pytest.raises(CorruptRowError, match="study 'bad' in .*: field 'config' is not valid"):
        load_study(db_url, "bad")
    execute(db_url, """UPDATE poptune_studies SET config = '{"seed": 1}' WHERE name = 'bad'""")
    with pytest.raises(CorruptRowError, match="field 'config' lacks"):
        load_study(db_url, "bad")
    assert len(load_study(db_url, "good").trials) == 3


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poptune.cli", *args], cwd=cwd, capture_output=True, text=True,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"}, timeout=120,
    )  # fmt: skip


def assert_one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("poptune: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_cli_prints_a_corrupt_row_as_one_line(tmp_path):
    db = tmp_path / "runs.db"
    two_studies(f"sqlite:///{db}")
    execute(f"sqlite:///{db}", CORRUPTIONS["status"][0])
    assert_one_line_error(cli("trials", str(db), "bad", cwd=tmp_path), "'PWNED'", "trial 2")
    done = cli("trials", str(db), "good", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.count("COMPLETED") == 3


def test_cli_studies_lists_the_readable_studies_beside_a_corrupt_one(tmp_path):
    db = tmp_path / "runs.db"
    two_studies(f"sqlite:///{db}")
    execute(f"sqlite:///{db}", CORRUPTIONS["status"][0])
    done = cli("studies", str(db), cwd=tmp_path)
    assert done.returncode == 1  # something could not be read, said on stderr
    assert "good" in done.stdout and "bad" not in done.stdout
    assert_one_line_error(done, "'PWNED'", "trial 2")


def test_a_file_that_is_not_a_database_is_one_line(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n" * 40)
    before = passwd.read_bytes()
    for command in ("studies", "dashboard"):
        done = cli(command, str(passwd), cwd=tmp_path)
        assert_one_line_error(done, "file is not a database")
    assert passwd.read_bytes() == before
    with pytest.raises(StorageError, match="file is not a database"):
        Study(SPACE, RandomSearch(), True, storage=f"sqlite:///{passwd}", study_name="s")


def test_a_missing_column_is_one_line(tmp_path):
    db = tmp_path / "runs.db"
    two_studies(f"sqlite:///{db}")
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE poptune_trials DROP COLUMN meta")
    conn.commit()
    conn.close()
    assert_one_line_error(cli("studies", str(db), cwd=tmp_path), "no such column: meta")
    with pytest.raises(StorageError, match="no such column: meta"):
        load_study(str(db), "good").trials  # noqa: B018


def test_a_newer_schema_is_refused_read_only_and_writable(db_url, tmp_path):
    two_studies(db_url)
    execute(db_url, "UPDATE poptune_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StorageError, match="schema version 99; this poptune knows up to 3"):
        load_study(db_url, "good")
    with pytest.raises(StorageError, match="upgrade poptune"):
        Study(SPACE, RandomSearch(), True, storage=db_url, study_name="good")
    if db_url.startswith("sqlite"):
        assert_one_line_error(cli("studies", db_url, cwd=tmp_path), "upgrade poptune")
    execute(db_url, "UPDATE poptune_meta SET value = 'two' WHERE key = 'schema_version'")
    forget_storages()
    with pytest.raises(CorruptRowError, match="'schema_version' is not an integer"):
        load_study(db_url, "good")
