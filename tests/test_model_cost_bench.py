"""Smoke test of ``python -m benchmarks.model_cost --quick``: it runs and prints every row.

Only the rows are checked, never a speed (timings on a shared machine mean nothing in a test).
Optuna's cells are filled when its benchmark virtualenv is already set up, else a dash.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NUMBER = r"\d+(\.\d+)?"


@pytest.mark.slow
def test_quick_run_prints_every_row(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.model_cost", "--quick", "--json", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ")]
    rows = [[cell.strip() for cell in row] for row in rows]
    by_first = {}
    for row in rows:
        by_first.setdefault(row[0], []).append(row)
    gp = by_first["Gaussian process"]
    assert [row[1] for row in gp] == ["20", "40"]
    for row in gp:  # poptune CPU, wall, refit_every=1 CPU: numbers; Optuna's: numbers or "–"
        assert all(re.fullmatch(NUMBER, cell) for cell in row[2:5]), row
        assert all(re.fullmatch(NUMBER, cell) or cell == "–" for cell in row[5:]), row
    tpe = by_first["TPE"]
    assert [row[1] for row in tpe] == ["20", "40"]
    assert all(re.fullmatch(NUMBER, cell) for row in tpe for cell in row[2:4])
    rule = by_first["MedianStoppingRule"]
    assert [row[1] for row in rule] == ["200", "1000"]
    assert all(re.fullmatch(NUMBER, cell) for row in rule for cell in row[2:])
    quality = by_first["BayesianOptimization"]
    assert [row[1] for row in quality] == ["refit_every=10", "refit_every=1"]
    assert all("±" in row[5] for row in quality)
    figures = json.loads(out.read_text())
    assert len(figures["gp_20"]["poptune"]["cpu_s"]) == figures["k"] == 2
    assert len(figures["quality_refit_1"]["best"]) == 2
