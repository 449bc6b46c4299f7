"""Smoke test of ``python -m benchmarks.sql_floor --quick``: it runs and prints its rows
(never a speed assertion)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_sql_floor_quick_runs_and_prints_every_row():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
    cmd = [sys.executable, "-m", "benchmarks.sql_floor", "--quick", "--no-peers",
           "--trials", "60", "--workers", "2", "--per-worker", "3"]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for row in (
        "| poptune, SQLite file, study.optimize |",
        "| poptune, SQLite file, ask/tell (add_observation + finalize) |",
        "| its statements replayed through bare sqlite3 |",
        "| Optuna JournalStorage(JournalFileBackend) |",
        "| Optuna RDB, SQLite defaults |",
        "| Optuna RDB, SQLite WAL + synchronous=NORMAL |",
        "| poptune optimize / Optuna JournalStorage |",
        "| poptune optimize / its statements through bare sqlite3 |",
        "| SQLite | 2 × 50 ms | 6 |",
        "load average",
    ):
        assert row in out, out
    replay = next(line for line in out.splitlines() if "replayed through bare" in line)
    assert "statements and 2.0 transactions per trial" in replay  # recorded, then replayed
    if os.environ.get("POPTUNE_TEST_POSTGRES_URL"):
        assert "| PostgreSQL | 2 × 50 ms |" in out
