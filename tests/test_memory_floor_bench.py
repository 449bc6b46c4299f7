"""Smoke test of ``benchmarks/memory_floor.py``: its quick run prints every row (the figures
themselves are never checked: they depend on the machine and its load)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_quick_run_prints_every_row():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory_floor", "--quick"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("memory floor: quick run") and "load average" in lines[0]
    cases = {line.split()[0]: line.split() for line in lines if line.split()[:1]}
    for case in ("random", "tpe", "optimize"):
        row = cases[case]
        float(row[2])  # poptune's CPU per trial is always measured
        assert len(row) >= 5, row  # Optuna's figures, or why there are none
    for clock in ("cpu", "wall"):
        growth = [line for line in lines if line.startswith(f"growth: {clock}: first 10%")]
        assert len(growth) == 1 and "last/first" in growth[0] and "full GC" in growth[0]
    counts = [line for line in lines if line.startswith("gc objects after import:")]
    assert [line.split(":")[1].strip() for line in counts] == ["numpy", "poptune", "optuna"]
    assert int(counts[1].split(":")[2].split()[0]) > 0
