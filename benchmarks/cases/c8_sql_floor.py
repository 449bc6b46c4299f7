"""Case 8: how close poptune's SQL hot path is to its floor (issue 14, item 3), side by side;
the method is the page text in :func:`run`. ``study.optimize`` writes a trial's value and final
status in one write, the ask/tell loop in two. The replay records what every ``sqlite3`` cursor
executes (SQLAlchemy's and poptune's raw connections alike) in an optimize run, on a file whose
state before the loop was copied (``sqlite3`` backup), then executes it in order on the copy.
"""

from __future__ import annotations

import math
import sqlite3
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.cases.c1_overhead import poptune_study, trial_value
from benchmarks.cases.c2_throughput import SLEEP_S, PostgresBackend, SQLiteBackend, run_once
from benchmarks.harness import Clock, Context, Section, fmt, log, med, ratio, spread, table

TITLE = "8. The SQL hot path near its floor (vs its own statements through bare sqlite3)"
SEED = 12345
JOURNAL_TARGET, REPLAY_TARGET, EFFICIENCY_TARGET = 0.3, 2.0, 0.90  # CPU ratios; of ideal
OPTUNA_CASES = (  # case 1's configurations on a file
    ("optuna-journal", "Optuna JournalStorage(JournalFileBackend)"),
    ("optuna-rdb", "Optuna RDB, SQLite defaults"),
    ("optuna-wal", "Optuna RDB, SQLite WAL + synchronous=NORMAL"),
)
#: trials per one-process case, worker processes, 50 ms trials per worker
SIZES, QUICK_SIZES = (2000, 8, 100), (300, 8, 15)
#: throughput runs per storage and worker count (alternating), for the full and quick pages
REPEATS = (3, 1)
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON")


@dataclass
class PerTrial:
    label: str
    cpu_ms: float = math.nan
    wall_ms: float = math.nan
    n: int = 0
    note: str = ""

    def row(self) -> list[str]:
        return [self.label, fmt(self.cpu_ms), fmt(self.wall_ms), str(self.n or "–"), self.note]


# -- 1. poptune in one process ----------------------------------------------------------------
def _new_study(path: Path, n: int) -> Any:
    from poptune.storage.sql import SQLStorage

    storage = SQLStorage(f"sqlite:///{path.as_posix()}")
    return poptune_study(n, SEED, storage=storage, study_name="floor")


def _per_trial(label: str, clock: Clock, n: int, note: str = "") -> PerTrial:
    return PerTrial(label, 1e3 * clock.cpu / n, 1e3 * clock.wall / n, n, note)


def poptune_optimize(path: Path, n: int) -> PerTrial:
    study = _new_study(path, n)
    with Clock() as clock:
        study.optimize(trial_value, show_progress=False)
    done = study.history.n_completed
    study.close()
    return _per_trial("poptune, SQLite file, study.optimize", clock, done)


def poptune_ask_tell(path: Path, n: int) -> PerTrial:
    study, done = _new_study(path, n), 0
    with Clock() as clock:
        for trial in study:
            study.add_observation(trial, trial_value(trial), iteration=1)
            study.finalize(trial)
            done += 1
    study.close()
    label = "poptune, SQLite file, ask/tell (add_observation + finalize)"
    return _per_trial(label, clock, done)


# -- 2. recording poptune's statements and replaying them -------------------------------------
RECORDED: list[tuple[str, Any]] = []
_RECORDING = [False]


class _RecordingCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        if _RECORDING[0]:
            kept = dict(parameters) if isinstance(parameters, dict) else tuple(parameters)
            RECORDED.append((sql, kept))
        return super().execute(sql, parameters)


class _RecordingConnection(sqlite3.Connection):
    def cursor(self, factory: Any = _RecordingCursor) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        return self.cursor().execute(sql, parameters)


def record(path: Path, copy: Path, n: int) -> list[tuple[str, Any]]:
    """What the optimize case executes in sqlite3; the file before the loop goes to ``copy``."""
    connect = sqlite3.connect

    def recording_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", _RecordingConnection)
        return connect(*args, **kwargs)

    sqlite3.connect = sqlite3.dbapi2.connect = recording_connect  # type: ignore[misc]
    try:
        study = _new_study(path, n)
        src, dst = connect(str(path)), connect(str(copy))
        src.backup(dst)
        src.close()
        dst.close()
        RECORDED.clear()
        _RECORDING[0] = True
        try:
            study.optimize(trial_value, show_progress=False)
        finally:
            _RECORDING[0] = False
        study.close()
    finally:
        sqlite3.connect = sqlite3.dbapi2.connect = connect  # type: ignore[misc]
    return list(RECORDED)


def replay(copy: Path, statements: list[tuple[str, Any]], n: int) -> PerTrial:
    """Execute ``statements`` in order on ``copy`` through one bare sqlite3 connection."""
    conn = sqlite3.connect(str(copy), isolation_level=None, timeout=10.0)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    cursor, failed = conn.cursor(), 0
    with Clock() as clock:
        for sql, params in statements:
            try:
                cursor.execute(sql, params)
                if cursor.description:
                    cursor.fetchall()
            except sqlite3.Error:
                failed += 1  # what failed when recorded fails again (a ROLLBACK, none open)
    conn.close()
    begins = sum(sql.startswith("BEGIN") for sql, _ in statements)
    note = f"{len(statements) / n:.1f} statements and {begins / n:.1f} transactions per trial"
    note += f"; {failed} failed as when recorded" if failed else ""
    return _per_trial("its statements replayed through bare sqlite3", clock, n, note)


# -- 3. Optuna (its virtualenv) -------------------------------------------------------------------
def optuna_rows(ctx: Context, n: int) -> list[PerTrial]:
    if not ctx.usable("optuna"):
        note = ctx.peer_note("optuna")
        return [PerTrial(label, note=note) for _, label in OPTUNA_CASES]
    version = ctx.peers["optuna"].versions.get("optuna", "?")
    rows = []
    for case, label in OPTUNA_CASES:
        rdb = case != "optuna-journal"  # 30-50 ms a trial: fewer trials, a short warm-up
        args = {"case": case, "n": max(50, n // 10) if rdb else n, "seed": SEED}
        args.update(budget_s=ctx.pick(60.0, 15.0), warmup=20 if rdb else 200)
        log(f"  {label} ...")
        outcome = ctx.run_peer("optuna", "c1_overhead", args, 600.0)
        if not outcome.ok:
            rows.append(PerTrial(label, note=f"failed: {outcome.error}"))
            continue
        r = outcome.result
        rows.append(PerTrial(label, r["cpu_total"], r["total"], r["n"], f"Optuna {version}"))
    return rows


# -- 4. throughput with the lock's hold times -------------------------------------------------
def _p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "–"
    return f"{fmt(1e3 * statistics.fmean(values))} / {fmt(1e3 * _p95(values))}"


def throughput_rows(
    ctx: Context, workers: int, per_worker: int, repeats: int
) -> tuple[list[list[str]], dict[str, tuple[float, str]]]:
    """Per storage, one worker and then ``workers`` workers, ``repeats`` times (the storages
    alternating): a row per storage and worker count, its figures as median [min–max]; and per
    storage, the median efficiency at ``workers`` (NaN if not measured) and its row's notes.
    One worker has no one to wait for: its loss from ideal is what a trial's own round trips
    and CPU cost, and the gap to the row below it is what sharing the study costs."""
    backends: list[tuple[str, Any]] = [("SQLite", SQLiteBackend)]
    if ctx.postgres_url:
        backends.append(("PostgreSQL", lambda: PostgresBackend(ctx.postgres_url)))
    opened, runs, failed = {}, {}, {}
    try:
        for label, make in backends:
            try:
                opened[label] = make()
            except Exception as exc:  # noqa: BLE001 - an unreachable server is a row, not a crash
                failed[label] = f"{type(exc).__name__}: {exc}"[:200]
        for r in range(repeats):
            for label, backend in opened.items():
                for n in sorted({1, workers}):
                    log(f"  throughput: {label}, {n} × {SLEEP_S * 1e3:g} ms, "
                        f"repeat {r + 1}/{repeats} ...")  # fmt: skip
                    run = run_once(
                        backend, "poptune-optimize", n, n * per_worker, SLEEP_S, SEED + r, 30.0
                    )
                    runs.setdefault((label, n), []).append(run)
    finally:
        for backend in opened.values():
            backend.close()
    rows = [[label, "", "0", *["–"] * 5, error] for label, error in failed.items()]
    judged = {label: (math.nan, error) for label, error in failed.items()}
    for (label, n), done in runs.items():
        ok = [run for run in done if run.trials]
        effs = [100 * run.rate / (n / SLEEP_S) for run in ok]
        holds = [1e3 * sum(run.holds) / run.trials for run in ok]
        pooled = [h for run in ok for h in run.holds], [f for run in ok for f in run.finals]
        errors = [run.error.splitlines()[0][:200] for run in done if run.error]
        total = [str(sum(run.trials for run in done)), spread([run.rate for run in ok])]
        rows.append([
            label, f"{n} × {SLEEP_S * 1e3:g} ms", *total, spread(effs), spread(holds),
            _ms(pooled[0]), _ms(pooled[1]), errors[0] if errors else "",
        ])  # fmt: skip
        if n == workers:
            judged[label] = (med(effs) / 100, rows[-1][-1])
    return rows, judged


def run(ctx: Context) -> Section:
    section = Section("sql_floor", TITLE)
    n, workers, per_worker = ctx.pick(SIZES, QUICK_SIZES)
    with tempfile.TemporaryDirectory(prefix="poptune-floor-") as tmp:
        d = Path(tmp)
        log("  warming up ...")
        poptune_optimize(d / "warm.db", min(200, n))
        rows = [poptune_optimize(d / "optimize.db", n), poptune_ask_tell(d / "asktell.db", n)]
        log("  recording its statements, replaying them through bare sqlite3 ...")
        statements = record(d / "recorded.db", d / "replay.db", n)
        rows.append(replay(d / "replay.db", statements, n))
    rows += optuna_rows(ctx, n)
    repeats = ctx.repeats_or(*REPEATS)
    tp_rows, judged = throughput_rows(ctx, workers, per_worker, repeats)
    mine, asked, replayed, journal = rows[:4]
    compared = {  # the ratio's row: (poptune's row, the other row, the target)
        "poptune optimize / Optuna JournalStorage": (mine, journal, JOURNAL_TARGET),
        "poptune optimize / its statements through bare sqlite3": (mine, replayed, REPLAY_TARGET),
        "poptune ask/tell / Optuna JournalStorage": (asked, journal, None),
    }
    ratio_rows = [
        [what, ratio(x.cpu_ms, y.cpu_ms), f"≤ {goal:g}" if goal else ""]
        for what, (x, y, goal) in compared.items()
    ]
    section.lines += [
        f"{n:,} trials per one-process case (after a {min(200, n)}-trial warm-up study); "
        "RandomSearch, 3 parameters, trivial objective. The replay runs the statements one "
        "optimize run sent to sqlite3 (recorded at the driver) on a copy of the file as it "
        "was before that run, through one bare sqlite3 connection with poptune's pragmas. "
        "Optuna runs case 1's ask/tell loop (RandomSampler): JournalStorage "
        f"on {n:,} trials, its RDB storage on {max(50, n // 10):,} (30-50 ms a trial).",
        "",
        *table("case | CPU ms/trial | wall ms/trial | trials | notes", [r.row() for r in rows]),
        "",
        *table("ratio (CPU per trial) | measured | target", ratio_rows),
        "",
        f"Throughput: 1 and {workers} worker processes × a {SLEEP_S * 1e3:g} ms objective, "
        f"{per_worker} trials each, `study.optimize` (case 2's workers and databases), "
        f"{repeats} run(s) of each (storages and worker counts alternating): median "
        "[min–max] of the runs; the target is judged on the median. One worker waits for no "
        "one: its loss from ideal is what a trial's own round trips and CPU cost, and the gap "
        f"between its row and the {workers}-worker row is what sharing the study costs. Lock "
        "held: from the answer to the lock statement to the COMMIT's, summed over a trial's "
        "locked transactions; on PostgreSQL the final write is one statement whose lock is "
        "held inside the server, sent in one round trip with the next suggestion's lock "
        "(which that round trip waits for): its column is that round trip.",
        "",
        *table(
            "storage | workers × objective | trials | trials/s | % of ideal | "
            "lock held per trial, ms | per locked transaction, ms (mean / p95) | "
            "final write round trip, ms (mean / p95) | notes",
            tp_rows,
        ),
    ]
    for got, peer, goal in list(compared.values())[:2]:
        what = f"poptune optimize ≤ {goal:g}× {peer.label}'s CPU per trial"
        value = got.cpu_ms / peer.cpu_ms if math.isfinite(peer.cpu_ms) else math.nan
        section.target_of(what, value, value <= goal, fmt(value, 2), peer.note)
    for label, (eff, notes) in judged.items():
        what = f"≥ {EFFICIENCY_TARGET:.0%} of ideal at {workers} × {SLEEP_S * 1e3:g} ms on {label}"
        detail = f"{fmt(100 * eff)}% (median of {repeats})"
        section.target_of(what, eff, eff >= EFFICIENCY_TARGET, detail, notes or "not measured")
    return section
