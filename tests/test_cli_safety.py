"""The command line never destroys a study and reports every error in one line.

``export -o`` refuses the storage's own file (and its -wal/-shm siblings), any SQLite
database and, without --force, any existing file, and writes through a temporary file
renamed into place; ``delete`` refuses a study with RUNNING trials unless --force; errors of
poptune, of the operating system and of the database driver are one line with exit status 1
(``--debug`` / ``POPTUNE_DEBUG=1`` adds the traceback).
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import poptune as pt
from poptune.cli import main

from .conftest import forget_storages

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "runs.db"
    study = pt.Study([pt.Continuous("x", [0, 1])], pt.algorithms.RandomSearch(), True,
                     storage=f"sqlite:///{path}", study_name="s", seed=0)  # fmt: skip
    for _ in range(3):
        t = study.get_suggestion()
        study.add_observation(t, t.parameters["x"])
        study.finalize(t)
    forget_storages()
    yield path
    forget_storages()


def run(*argv):
    out = io.StringIO()
    code = main([str(a) for a in argv], out=out)
    return code, out.getvalue()


def cli(*argv, env=None, cwd=None):
    """The real command, in a subprocess: what a shell user sees."""
    environ = {**os.environ, **(env or {})}
    environ["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + environ.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "poptune", *map(str, argv)], env=environ,
                          cwd=cwd, capture_output=True, text=True, timeout=120)  # fmt: skip


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert err.startswith("poptune: error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def study_is_intact(path: Path) -> None:
    assert path.read_bytes()[:16] == b"SQLite format 3\x00"
    assert len(pt.load_study(f"sqlite:///{path}", "s").trials) == 3
    forget_storages()


# -- export never overwrites a study ------------------------------------------------------------
@pytest.mark.parametrize("spelling", ["path", "url", "relative", "symlink"])
def test_export_refuses_the_storage_file_itself(db, capsys, spelling, monkeypatch):
    monkeypatch.chdir(db.parent)
    storage = {"path": db, "url": f"sqlite:///{db}", "relative": "runs.db", "symlink": db}[spelling]
    output = db
    if spelling == "relative":
        output = Path("./sub/../runs.db")
        (db.parent / "sub").mkdir()
    elif spelling == "symlink":
        output = db.parent / "link.csv"
        output.symlink_to(db)
    before = db.read_bytes()
    code, _ = run("export", storage, "s", "-o", output, "--force")
    assert code == 1
    assert_one_line_error(capsys.readouterr().err, "storage's own file")
    assert db.read_bytes() == before
    study_is_intact(db)


@pytest.mark.parametrize("sibling", ["-wal", "-shm", "-journal"])
def test_export_refuses_the_storage_files_siblings(db, capsys, sibling):
    target = Path(str(db) + sibling)
    code, _ = run("export", db, "s", "-o", target, "--force")
    assert code == 1
    assert_one_line_error(capsys.readouterr().err, "storage's own file")
    study_is_intact(db)


def test_export_refuses_any_sqlite_database_even_with_force(db, tmp_path, capsys):
    other = tmp_path / "other.data"  # a database whatever its name
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE precious (x)")
        conn.execute("INSERT INTO precious VALUES (42)")
    conn.close()
    before = other.read_bytes()
    code, _ = run("export", db, "s", "-o", other, "--force")
    assert code == 1
    assert_one_line_error(capsys.readouterr().err, "is an SQLite database")
    assert other.read_bytes() == before


def test_export_refuses_an_existing_file_without_force(db, tmp_path, capsys):
    target = tmp_path / "results.csv"
    target.write_text("keep me\n")
    code, _ = run("export", db, "s", "-o", target)
    assert code == 1
    assert_one_line_error(capsys.readouterr().err, "exists", "--force")
    assert target.read_text() == "keep me\n"
    target.chmod(0o640)
    code, text = run("export", db, "s", "-o", target, "--force")
    assert code == 0 and f"wrote {target}" in text
    assert set(pd.read_csv(target)["Trial-ID"]) == {1, 2, 3}
    assert target.stat().st_mode & 0o777 == 0o640  # the file it replaced kept its mode


def test_export_writes_atomically_and_leaves_no_temporary_file(db, tmp_path):
    target = tmp_path / "out" / "results.json"
    target.parent.mkdir()
    code, _ = run("export", db, "s", "--format", "json", "-o", target)
    assert code == 0
    assert len(json.loads(target.read_text())["trials"]) == 3
    assert os.listdir(target.parent) == ["results.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_a_failed_write_leaves_the_old_file_and_no_temporary(db, tmp_path, monkeypatch):
    target = tmp_path / "results.csv"
    target.write_text("old\n")

    def broken(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(os, "replace", broken)
    code, _ = run("export", db, "s", "-o", target, "--force")
    assert code == 1
    assert target.read_text() == "old\n"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_export_dash_means_standard_output(db):
    code, text = run("export", db, "s", "-o", "-")
    assert code == 0 and set(pd.read_csv(io.StringIO(text))["Trial-ID"]) == {1, 2, 3}


@pytest.mark.parametrize("where", ["missing-dir", "directory"])
def test_export_bad_output_paths_are_one_line(db, tmp_path, where):
    target = {"missing-dir": "/missing/dir/x.csv", "directory": tmp_path}[where]
    result = cli("export", db, "s", "-o", target)
    assert result.returncode == 1
    fragment = "no directory '/missing/dir'" if where == "missing-dir" else "is a directory"
    assert_one_line_error(result.stderr, fragment)


def test_the_reported_case_export_runs_db_to_runs_db(db):
    """``poptune export runs.db s -o runs.db``, from the database's directory."""
    result = cli("export", "runs.db", "s", "-o", "runs.db", cwd=db.parent)
    assert result.returncode == 1
    assert_one_line_error(result.stderr, "storage's own file")
    study_is_intact(db)


# -- one-line errors ----------------------------------------------------------------------------
def test_a_file_that_is_not_a_database_is_one_line(tmp_path):
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0:root:/root:/bin/bash\n" * 50)
    result = cli("studies", target)
    assert result.returncode == 1
    assert_one_line_error(result.stderr, str(target))
    assert "SELECT" not in result.stderr and "sqlalche.me" not in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    target = tmp_path / "passwd"
    target.write_text("not a database\n" * 100)
    for how in (["--debug"], []):
        env = {} if how else {"POPTUNE_DEBUG": "1"}
        result = cli(*how, "studies", target, env=env)
        assert result.returncode == 1
        assert "Traceback" in result.stderr
        assert result.stderr.rstrip().splitlines()[-1].startswith("poptune: error: ")


def test_an_unreadable_file_is_one_line(tmp_path, db, monkeypatch, capsys):
    """What the operating system refuses (here: reading the file) is one line. The refusal is
    made by the test, because CI runs as root, whom chmod does not stop."""
    from poptune import cli as cli_module

    def refused(spec, **kwargs):
        raise PermissionError(13, "Permission denied", str(db))

    monkeypatch.setattr(cli_module, "resolve", refused)
    assert cli_module.main(["studies", str(db)]) == 1
    err = capsys.readouterr().err
    assert_one_line_error(err, "Permission denied", str(db))


# -- delete refuses a study that workers are running --------------------------------------------
def test_delete_refuses_while_a_worker_runs_a_trial(tmp_path):
    path = tmp_path / "runs.db"
    url = f"sqlite:///{path}"
    study = pt.Study([pt.Continuous("x", [0, 1])], pt.algorithms.RandomSearch(max_num_trials=1),
                     True, storage=url, study_name="busy")  # fmt: skip
    forget_storages()
    (tmp_path / "slow.py").write_text(
        "import time\n\ndef objective(trial):\n    time.sleep(60)\n    return 1.0\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "poptune", "worker", url, "busy", "slow:objective",
         "--heartbeat-interval", "0.5"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not any(t.status == "RUNNING" for t in pt.load_study(url, "busy").trials):
            assert worker.poll() is None, "the worker died"
            assert time.monotonic() < deadline, "the worker started no trial"
            time.sleep(0.2)
        forget_storages()
        result = cli("delete", url, "busy", "--yes")
        assert result.returncode == 1
        assert_one_line_error(result.stderr, "RUNNING trial", "--force")
        assert "busy" in pt.storage.resolve(url).list_studies()
        forget_storages()
        result = cli("delete", url, "busy", "--yes", "--force")
        assert result.returncode == 0, result.stderr
        assert "busy" not in pt.storage.resolve(url).list_studies()
    finally:
        worker.kill()
        worker.wait(timeout=30)
        forget_storages()
    del study
