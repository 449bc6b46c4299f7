"""Read means read (issue 17, item 10): ``load_study``, the ``poptune`` read commands and the
dashboard opener never create tables in a foreign SQLite file, never migrate an old schema in
place (they say a migration is needed), never write, and work on a read-only file system.

The tests run as root, where file modes stop nothing: they check what was written instead
(the file's bytes and mtime, its tables, side files), and make a directory truly read-only
with ``chattr +i`` where the file system allows it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import poptune
from poptune import Continuous, Study, load_study
from poptune.algorithms import RandomSearch
from poptune.exceptions import ReadOnlyStudyError, StorageError
from poptune.storage import resolve
from poptune.storage.sql import SQLStorage
from tests.conftest import forget_storages

SRC = str(Path(poptune.__file__).resolve().parents[1])
DATA = Path(__file__).parent / "data"
SPACE = [Continuous("x", [0.0, 1.0])]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poptune.cli", *args], cwd=cwd, capture_output=True, text=True,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"}, timeout=120,
    )  # fmt: skip


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def tables(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master"))
    finally:
        conn.close()


def one_line(done: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert fragment in lines[0], lines[0]


def make_study(db: Path, trials: int = 3) -> None:
    study = Study(SPACE, RandomSearch(max_num_trials=trials), True, storage=f"sqlite:///{db}",
                  study_name="s", seed=0)  # fmt: skip
    for trial in study:
        study.add_observation(trial, trial.parameters["x"])
        study.finalize(trial)
    study.close()
    forget_storages()


def test_a_foreign_sqlite_file_gets_no_poptune_tables(tmp_path):
    foreign = tmp_path / "app.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.execute("INSERT INTO users VALUES ('ada')")
    conn.commit()
    conn.close()
    before = snapshot(foreign)
    for args in (("studies", str(foreign)), ("trials", str(foreign), "s"),
                 ("export", str(foreign), "s"), ("dashboard", str(foreign))):  # fmt: skip
        one_line(cli(*args, cwd=tmp_path), "holds no poptune tables: not a poptune database")
    with pytest.raises(StorageError, match="no poptune tables"):
        load_study(str(foreign), "s")
    assert snapshot(foreign) == before
    assert tables(foreign) == ["users"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]  # no -journal, -wal, -shm


def test_a_schema_v1_file_is_not_migrated_by_reading(tmp_path):
    old = tmp_path / "v1.db"
    shutil.copy(DATA / "schema_v1.db", old)
    before = snapshot(old)
    done = cli("studies", str(old), cwd=tmp_path)
    one_line(done, "has poptune schema version 1 and needs a migration to version 3")
    assert "opening it writable once" in done.stderr
    with pytest.raises(StorageError, match="needs a migration"):
        load_study(str(old), "legacy")
    assert snapshot(old) == before
    SQLStorage(f"sqlite:///{old}").close()  # opening it writable migrates it
    forget_storages()
    assert cli("studies", str(old), cwd=tmp_path).returncode == 0


def test_reading_changes_no_byte_of_the_database(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "runs.db"
    make_study(db)
    db.chmod(0o444)
    folder.chmod(0o555)
    try:
        before = snapshot(db)
        for args in (("studies", str(db)), ("trials", str(db), "s"), ("best", str(db), "s"),
                     ("export", str(db), "s", "--format", "json")):  # fmt: skip
            done = cli(*args, cwd=tmp_path)
            assert done.returncode == 0, done.stderr
        study = load_study(str(db), "s")
        assert len(study.trials) == 3
        with pytest.raises(ReadOnlyStudyError):
            study.add_trial({"x": 0.5})
        forget_storages()
        assert snapshot(db) == before
    finally:
        folder.chmod(0o755)
        db.chmod(0o644)


def test_a_read_only_storage_refuses_every_write(tmp_path):
    db = tmp_path / "runs.db"
    make_study(db)
    storage = resolve(str(db), must_exist=True, read_only=True)
    assert storage.read_only and storage.list_studies() == ["s"]
    with pytest.raises(StorageError, match="opened read-only"):
        storage.create_study("t", {"parameters": []})
    with pytest.raises(StorageError, match="opened read-only"):
        storage.delete_study("s")
    assert resolve(str(db), must_exist=True) is not storage  # writable openings are separate


def chattr(flag: str, *paths: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True)
    return done.returncode == 0


def test_a_database_on_a_read_only_file_system_is_readable(tmp_path):
    folder = tmp_path / "frozen"
    folder.mkdir()
    db = folder / "runs.db"
    make_study(db)
    assert sorted(os.listdir(folder)) == ["runs.db"]  # a WAL database, closed cleanly
    if not chattr("+i", db, folder):
        pytest.skip("chattr +i is not available here to make a directory read-only")
    try:
        with pytest.raises(OSError):
            (folder / "probe").write_text("x")  # truly read-only, even for root
        done = cli("trials", str(db), "s", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("COMPLETED") == 3
        assert len(load_study(str(db), "s").trials) == 3
        forget_storages()
    finally:
        chattr("-i", db, folder)


def test_the_dashboard_opener_reads_only_and_imports_nothing(tmp_path):
    from poptune.study._dashboard import open_for_dashboard

    db = tmp_path / "runs.db"
    make_study(db)
    study = open_for_dashboard(Study, str(db), None)
    assert study._storage.read_only and len(study.trials) == 3
    writable = open_for_dashboard(Study, str(db), None, writable=True)  # --allow-stop
    assert not writable._storage.read_only
    saved = tmp_path / "saved"
    custom = Study(SPACE, RandomSearch(max_num_trials=1), True, seed=0)
    custom.save(saved)
    text = (saved / "study.json").read_text().replace('"RandomSearch"', '"this:Zen"')
    (saved / "study.json").write_text(text)
    shown = open_for_dashboard(Study, str(saved), None)
    assert shown.algorithm.to_config()["type"] == "this:Zen"
    assert "this" not in sys.modules
