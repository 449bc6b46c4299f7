"""Smoke tests of the floor cases of ``python -m benchmarks`` (8: the SQL hot path, 9: in
memory, 10: a model-based suggestion's cost): each runs at tiny sizes, poptune alone, and its
section has every row and target line. Only the rows are checked, never a speed (timings on a
shared machine mean nothing in a test)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("numpy")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.cases import c8_sql_floor, c9_memory_floor, c10_model_cost  # noqa: E402
from benchmarks.cases.c2_throughput import Run  # noqa: E402
from benchmarks.harness import Context  # noqa: E402

NUMBER = r"[\d,]+(\.\d+)?"


def quick_context(tmp_path: Path, postgres_url: str = "") -> Context:
    return Context(
        quick=True,
        repeats=None,
        seeds=None,
        peers={},
        no_peers=True,
        images=tmp_path / "images",
        image_link="images",
        postgres_url=postgres_url,
    )


def cells(lines: list[str], first: str) -> list[list[str]]:
    rows = [line.split("|")[1:-1] for line in lines if line.startswith(f"| {first}")]
    return [[c.strip() for c in row] for row in rows]


def test_case_8_prints_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(c8_sql_floor, "QUICK_SIZES", (60, 2, 3))
    url = os.environ.get("POPTUNE_TEST_POSTGRES_URL", "")
    section = c8_sql_floor.run(quick_context(tmp_path, postgres_url=url))
    text = "\n".join(section.lines)
    for row in (
        "| poptune, SQLite file, study.optimize |",
        "| poptune, SQLite file, ask/tell (add_observation + finalize) |",
        "| its statements replayed through bare sqlite3 |",
        "| Optuna JournalStorage(JournalFileBackend) |",
        "| Optuna RDB, SQLite defaults |",
        "| Optuna RDB, SQLite WAL + synchronous=NORMAL |",
        "| poptune optimize / Optuna JournalStorage |",
        "| poptune optimize / its statements through bare sqlite3 |",
        "| SQLite | 1 × 50 ms | 3 |",  # the floor: a trial's own cost, no one to wait for
        "| SQLite | 2 × 50 ms | 6 |",
    ):
        assert row in text, text
    replay = next(line for line in section.lines if "replayed through bare" in line)
    assert "statements and 2.0 transactions per trial" in replay  # recorded, then replayed
    if url:
        assert "| PostgreSQL | 1 × 50 ms | 3 |" in text and "| PostgreSQL | 2 × 50 ms | 6 |" in text
    journal, replayed, *efficiency = section.targets
    assert journal.met is None and "--no-peers" in journal.detail  # no Optuna, no verdict
    assert replayed.met is not None
    # One efficiency target per storage, at the page's worker count only (not at 1 worker).
    assert [t.text for t in efficiency] == [
        f"≥ 90% of ideal at 2 × 50 ms on {label}"
        for label in ["SQLite", "PostgreSQL"][: 1 + bool(url)]
    ]
    assert all("(median of 1)" in t.detail for t in efficiency)


def test_case_8_repeats_each_throughput_run_and_judges_the_median(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three alternating runs per worker count: the row gives median [min–max] of the runs'
    efficiencies and the target is judged on that median, not on the best run."""
    calls: list[int] = []
    effs = iter([0.97, 0.80, 0.97, 0.95, 0.97, 0.85])  # 1 worker, 2 workers, 1, 2, 1, 2

    def fake_run(backend, library, n, total, sleep_s, seed, max_seconds):
        calls.append(n)
        rate = next(effs) * n / sleep_s
        return Run(
            trials=total, wall_s=total / rate, capped=False, error=None, cpu_s=0.01,
            holds=[0.001] * total, finals=[0.002] * total,
        )  # fmt: skip

    monkeypatch.setattr(c8_sql_floor, "run_once", fake_run)
    rows, judged = c8_sql_floor.throughput_rows(quick_context(tmp_path), 2, 3, 3)
    assert calls == [1, 2, 1, 2, 1, 2]
    assert [r[:5] for r in rows] == [
        ["SQLite", "1 × 50 ms", "9", "19.4 [19.4–19.4]", "97.0 [97.0–97.0]"],
        ["SQLite", "2 × 50 ms", "18", "34.0 [32.0–38.0]", "85.0 [80.0–95.0]"],
    ]
    assert judged == {"SQLite": (pytest.approx(0.85), "")}


def test_case_9_prints_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = {"random": 300, "tpe": 30, "optimize": 100, "growth": 1_000}
    monkeypatch.setattr(c9_memory_floor, "QUICK_SIZES", sizes)
    section = c9_memory_floor.run(quick_context(tmp_path))
    for case in ("random", "tpe", "optimize"):
        (row,) = cells(section.lines, case)
        assert re.fullmatch(NUMBER, row[2]) and row[3] == "–", row  # poptune's CPU; no Optuna
    (growth,) = cells(section.lines, "1 ")  # run 1, the only one (quick: one repeat)
    assert all(re.fullmatch(NUMBER, cell) for cell in growth[1:5]), growth
    objects = {
        row[0]: row for row in cells(section.lines, "numpy") + cells(section.lines, "poptune")
    }
    assert set(objects) == {"numpy", "poptune"} and objects["poptune"][2].startswith("+")
    assert [t.met is None for t in section.targets] == [True, False]  # no Optuna: no ratio


@pytest.mark.slow
def test_case_10_prints_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(c10_model_cost, "QUICK_SIZES", (20, 40))
    section = c10_model_cost.run(quick_context(tmp_path))
    gp = cells(section.lines, "Gaussian process")
    assert [row[1] for row in gp] == ["20", "40"]
    for row in gp:  # poptune CPU, wall, refit_every=1 CPU: numbers; Optuna's: "–"
        assert all(re.fullmatch(NUMBER, cell) for cell in row[2:5]), row
        assert row[5:] == ["–", "–", "–"], row
    tpe = cells(section.lines, "TPE")
    assert [row[1] for row in tpe] == ["20", "40"]
    rule = cells(section.lines, "MedianStoppingRule")
    assert [row[1] for row in rule] == ["200", "1000"]
    spread = rf"{NUMBER} \[{NUMBER}–{NUMBER}\]"  # median [min–max] over 2 fresh histories
    assert all(re.fullmatch(NUMBER, row[2]) for row in rule)
    assert all(re.fullmatch(spread, cell) for row in rule for cell in row[3:]), rule
    quality = cells(section.lines, "BayesianOptimization")
    assert [row[1] for row in quality] == ["refit_every=10", "refit_every=1"]
    assert all("±" in row[5] for row in quality)
    assert len(section.targets) == 2 and section.targets[0].met is None


def test_a_quick_run_judges_no_target_but_keeps_the_measurement() -> None:
    from benchmarks.harness import Section, Target

    section = Section("x", "x")
    section.targets += [Target("a", True, "0.2"), Target("b", None, "no peer")]
    section.not_evaluated("quick sizes")
    assert [t.met for t in section.targets] == [None, None]
    assert section.targets[0].line() == ("- Target: a: not evaluated (quick sizes; measured: 0.2).")
    assert section.targets[1].detail == "no peer"  # already unjudged: its reason stays


def test_a_timed_stretch_waits_for_a_thread_that_still_spins() -> None:
    """What numpy's OpenBLAS threads do after numpy loads (about 0.1 s of CPU on another core),
    stood in for by a thread that spins for 0.3 s: ``quiet_threads`` returns once it stopped,
    with the CPU it saw it spend; with no such thread it returns at its first look."""
    import threading
    import time

    from benchmarks.harness import quiet_threads

    def spin() -> None:
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    seen = quiet_threads(limit_s=30.0)
    spinner.join()
    assert seen > 0.05
    assert quiet_threads(limit_s=30.0) < 0.01


def test_async_ranking_case_pairs_the_rankings_by_seed(tmp_path: Path) -> None:
    from benchmarks.cases import c11_async_ranking

    section = c11_async_ranking.run(quick_context(tmp_path))
    rows = cells(section.lines, "toy-2")
    assert [r[1] for r in rows[:2]] == ["1", "2"]  # 1 and 2 workers (population 2)
    for row in rows[:2]:
        assert " ± " in row[2] and " ± " in row[3]
        assert row[5] in ("better", "worse", "same (within 2 s.e.)")
    assert len(cells(section.lines, "pbt_function-4")) == 4  # 3 worker counts + synchronous
