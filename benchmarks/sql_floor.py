"""How close poptune's SQL hot path is to its floor, in one run, side by side.

1. **Per trial, one process, an SQLite file** (RandomSearch, three parameters, a trivial
   objective): poptune through ``study.optimize`` (the worker loop: a suggestion, then the
   returned value and the final status in one write) and through an ask/tell loop
   (``add_observation`` + ``finalize``, two writes); CPU (``time.process_time``) and wall
   milliseconds per trial, after a warm-up study.
2. **Its own statements replayed through bare sqlite3.** The same optimize run is repeated
   with every ``sqlite3`` cursor recording what it executes (SQL text and parameters, as they
   reached the driver: SQLAlchemy's and poptune's raw connections alike), on a file whose
   state before the loop was copied (``sqlite3`` backup). The recorded statements are then
   executed in order on the copy, through one bare ``sqlite3`` connection with poptune's
   pragmas: what the database work of a trial costs with no library around it.
3. **Optuna** (5.0, RandomSampler, ask/tell), run in its own virtualenv
   (:mod:`benchmarks.peers`): JournalStorage(JournalFileBackend), its recommendation for
   several processes on one machine; the RDB storage on SQLite's defaults; and the RDB
   storage with poptune's pragmas (WAL, ``synchronous=NORMAL``).
4. **Throughput, N worker processes × a 50 ms objective** (spawned; each joins the study,
   waits at a barrier, runs ``study.optimize``) on a fresh SQLite file and on PostgreSQL:
   trials per second as a percentage of the ideal (workers / 50 ms), and how long the
   study's lock was held: each locked transaction, from the answer to its lock statement to
   the answer to its COMMIT (the storage's ``lock_watch``), per trial (summed) and per
   transaction (mean, p95). On PostgreSQL a trial's last write is one statement that takes
   the lock inside the server: its round trip (an upper bound of its hold, waits included)
   is shown beside.

Run from the repository root::

    python -m benchmarks.sql_floor                 # 2,000 trials, 8 workers (~3 min)
    python -m benchmarks.sql_floor --quick         # a smoke run (~1 min)
    python -m benchmarks.sql_floor --no-peers --workers 4 --postgres-url postgresql://...

Never a pass/fail: the targets are printed with the figures. Timings on a shared machine
drift; compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import fmt, log, ratio, table
from benchmarks.overhead import objective as trivial_objective
from benchmarks.peers import run_script, setup
from benchmarks.throughput import make_poptune_study

SEED = 12345
SLEEP_S = 0.05
TARGET_JOURNAL_RATIO = 0.3
TARGET_REPLAY_RATIO = 2.0
TARGET_EFFICIENCY = 0.90
OPTUNA_CASES = (
    ("optuna-journal", "Optuna JournalStorage(JournalFileBackend)"),
    ("optuna-sqlite", "Optuna RDB, SQLite defaults"),
    ("optuna-sqlite-wal", "Optuna RDB, SQLite WAL + synchronous=NORMAL"),
)
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON")


@dataclass
class PerTrial:
    label: str
    cpu_ms: float = math.nan
    wall_ms: float = math.nan
    n: int = 0
    note: str = ""


# -- 1. poptune in one process ----------------------------------------------------------------
def _objective(trial: Any) -> float:
    p = trial.parameters
    return trivial_objective(p["lr"], p["units"], p["act"])


def _new_study(path: Path, n: int, name: str = "floor") -> Any:
    from poptune.storage.sql import SQLStorage

    return make_poptune_study(SQLStorage(f"sqlite:///{path.as_posix()}"), name, n, SEED)


def poptune_optimize(path: Path, n: int) -> PerTrial:
    study = _new_study(path, n)
    cpu, wall = time.process_time(), time.perf_counter()
    study.optimize(_objective, show_progress=False)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = study.history.n_completed
    study.close()
    return PerTrial("poptune, SQLite file, study.optimize", 1e3 * cpu / done, 1e3 * wall / done,
                    done)  # fmt: skip


def poptune_ask_tell(path: Path, n: int) -> PerTrial:
    study = _new_study(path, n)
    cpu, wall = time.process_time(), time.perf_counter()
    done = 0
    for trial in study:
        study.add_observation(trial, _objective(trial), iteration=1)
        study.finalize(trial)
        done += 1
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    study.close()
    return PerTrial("poptune, SQLite file, ask/tell (add_observation + finalize)",
                    1e3 * cpu / done, 1e3 * wall / done, done)  # fmt: skip


# -- 2. recording poptune's statements and replaying them -------------------------------------
RECORDED: list[tuple[str, Any]] = []
_RECORDING = [False]


class _RecordingCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        if _RECORDING[0]:
            RECORDED.append((sql, dict(parameters) if isinstance(parameters, dict) else
                             tuple(parameters)))  # fmt: skip
        return super().execute(sql, parameters)


class _RecordingConnection(sqlite3.Connection):
    def cursor(self, factory: Any = _RecordingCursor) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        return self.cursor().execute(sql, parameters)


def record(path: Path, copy: Path, n: int) -> list[tuple[str, Any]]:
    """Run the optimize case with every sqlite3 connection recording what it executes; the
    file's state before the loop is copied to ``copy`` (for the replay)."""
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
            study.optimize(_objective, show_progress=False)
        finally:
            _RECORDING[0] = False
        study.close()
    finally:
        sqlite3.connect = sqlite3.dbapi2.connect = connect  # type: ignore[misc]
    return list(RECORDED)


def replay(copy: Path, statements: list[tuple[str, Any]], n: int) -> tuple[PerTrial, int]:
    """Execute ``statements`` in order on ``copy`` through one bare sqlite3 connection."""
    conn = sqlite3.connect(str(copy), isolation_level=None, timeout=10.0)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    cursor, failed = conn.cursor(), 0
    cpu, wall = time.process_time(), time.perf_counter()
    for sql, params in statements:
        try:
            cursor.execute(sql, params)
            if cursor.description:
                cursor.fetchall()
        except sqlite3.Error:
            failed += 1  # what failed when recorded fails again (a ROLLBACK with nothing open)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    conn.close()
    begins = sum(sql.startswith("BEGIN") for sql, _ in statements)
    note = (f"{len(statements) / n:.1f} statements and {begins / n:.1f} transactions per trial"
            + (f"; {failed} failed as when recorded" if failed else ""))  # fmt: skip
    return PerTrial("its statements replayed through bare sqlite3", 1e3 * cpu / n,
                    1e3 * wall / n, n, note), failed  # fmt: skip


# -- 3. Optuna (its virtualenv) -------------------------------------------------------------------
def optuna_rows(n: int, quick: bool, install: bool) -> list[PerTrial]:
    peer = setup("optuna", install, log)
    if not peer.ok:
        return [PerTrial(label, note=f"not run: {peer.error}") for _, label in OPTUNA_CASES]
    rows = []
    for case, label in OPTUNA_CASES:
        rdb = case != "optuna-journal"  # 30-50 ms a trial: fewer trials, a short warm-up
        args = {"case": case, "n": max(50, n // 10) if rdb else n, "seed": SEED,
                "budget_s": 15.0 if quick else 60.0, "warmup": 20 if rdb else 200}  # fmt: skip
        log(f"  {label} ...")
        outcome = run_script(str(peer.python), "overhead_peer", args, 600.0, log)
        if not outcome.ok:
            rows.append(PerTrial(label, note=f"failed: {outcome.error}"))
            continue
        r = outcome.result
        rows.append(PerTrial(label, r["cpu_total"], r["total"], r["n"],
                             f"Optuna {peer.versions.get('optuna', '?')}"))  # fmt: skip
    return rows


# -- 4. throughput: worker processes × a 50 ms objective ----------------------------------------
@dataclass
class WorkerResult:
    trials: int = 0
    start: float = math.nan
    end: float = math.nan
    holds: list[float] = field(default_factory=list)  # each locked transaction's hold, s
    finals: list[float] = field(default_factory=list)  # each final write's round trip, s
    error: str | None = None


def _sleepy(trial: Any) -> float:
    time.sleep(SLEEP_S)
    return _objective(trial)


def _worker(url: str, name: str, total: int, max_s: float, barrier: Any, out: Any) -> None:
    result = WorkerResult()
    try:
        from poptune.storage.sql import SQLStorage

        storage = SQLStorage(url)
        study = make_poptune_study(storage, name, total, SEED)
        watch, held = storage.lock_watch, storage.lock_watch.held
        watch.held = lambda s: (result.holds.append(s), held(s))[1]  # type: ignore[method-assign]
        final = storage.finish_with_observation

        def timed_final(*args: Any, **kwargs: Any) -> None:
            t = time.perf_counter()
            try:
                final(*args, **kwargs)
            finally:
                result.finals.append(time.perf_counter() - t)

        storage.finish_with_observation = timed_final  # type: ignore[method-assign]
        ends: list[float] = []

        def objective(trial: Any) -> float:
            value = _sleepy(trial)
            ends.append(time.monotonic())
            return value

        import gc

        gc.collect()
        barrier.wait(timeout=300)
        result.start = time.monotonic()
        study.optimize(objective, timeout=max_s, show_progress=False)
        result.trials, result.end = len(ends), (ends[-1] if ends else math.nan)
        study.close()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        barrier.abort()
        result.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}"
    out.put(result)


@dataclass
class Throughput:
    storage: str
    workers: int
    trials: int = 0
    wall_s: float = math.nan
    holds: list[float] = field(default_factory=list)
    finals: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def efficiency(self) -> float:
        return self.trials / self.wall_s / (self.workers / SLEEP_S) if self.trials else math.nan


def throughput(storage: str, url: str, workers: int, per_worker: int, max_s: float) -> Throughput:
    ctx = mp.get_context("spawn")
    total = workers * per_worker
    name = f"sql-floor-{os.getpid()}-{time.time_ns()}"
    make_poptune_study(url, name, total, SEED).close()  # created once, joined by the workers
    barrier, out = ctx.Barrier(workers + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, name, total, max_s, barrier, out),
                         daemon=True) for _ in range(workers)]  # fmt: skip
    for p in procs:
        p.start()
    result = Throughput(storage, workers)
    try:
        barrier.wait(timeout=300)
    except threading.BrokenBarrierError:
        pass
    reports = []
    for _ in procs:
        try:
            reports.append(out.get(timeout=300 + 10 * max_s))
        except Exception:  # noqa: BLE001 - queue.Empty: a worker died without a report
            reports.append(WorkerResult(error="a worker died without a report"))
    for p in procs:
        p.join(timeout=30)
    errors = [r.error for r in reports if r.error]
    ok = [r for r in reports if r.trials]
    result.error = errors[0] if errors else None
    if ok:
        result.trials = sum(r.trials for r in ok)
        result.wall_s = max(r.end for r in ok) - min(r.start for r in ok)
        result.holds = [h for r in ok for h in r.holds]
        result.finals = [f for r in ok for f in r.finals]
    _drop(url, name)
    return result


def _drop(url: str, name: str) -> None:
    from poptune.storage.sql import SQLStorage

    storage = SQLStorage(url)
    try:
        storage.delete_study(name)
    except Exception:  # noqa: BLE001, S110 - cleaning up is best effort
        pass
    storage.close()


def _p95(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "–"
    return f"{fmt(1e3 * statistics.fmean(values))} / {fmt(1e3 * _p95(values))}"


# -- the report ---------------------------------------------------------------------------------
def _load() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sql_floor", description=__doc__
                                     .split("\n\n")[0])  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a smoke run: few trials")
    parser.add_argument("--trials", type=int, help="trials per one-process case (2000; quick 300)")
    parser.add_argument("--workers", type=int, default=8, help="worker processes (default 8)")
    parser.add_argument("--per-worker", type=int, help="50 ms trials per worker (100; quick 15)")
    parser.add_argument("--postgres-url", default=os.environ.get("POPTUNE_TEST_POSTGRES_URL"),
                        help="a PostgreSQL database to run the throughput case in (default: "
                        "$POPTUNE_TEST_POSTGRES_URL; none: not run)")  # fmt: skip
    parser.add_argument("--no-peers", action="store_true", help="do not run Optuna")
    parser.add_argument(
        "--setup-peers",
        action="store_true",
        help="create Optuna's virtualenv if it is missing (a few minutes)",
    )
    args = parser.parse_args(argv)
    n = args.trials or (300 if args.quick else 2000)
    per_worker = args.per_worker or (15 if args.quick else 100)
    if n < 10 or args.workers < 1 or per_worker < 1:
        parser.error("--trials must be at least 10, --workers and --per-worker at least 1")
    load_start = _load()
    rows: list[PerTrial] = []
    with tempfile.TemporaryDirectory(prefix="poptune-floor-") as tmp:
        d = Path(tmp)
        log("warming up ...")
        poptune_optimize(d / "warm.db", min(200, n))
        log("poptune on an SQLite file ...")
        rows.append(poptune_optimize(d / "optimize.db", n))
        rows.append(poptune_ask_tell(d / "asktell.db", n))
        log("recording its statements, replaying them through bare sqlite3 ...")
        statements = record(d / "recorded.db", d / "replay.db", n)
        replayed, _ = replay(d / "replay.db", statements, n)
        rows.append(replayed)
        if args.no_peers:
            rows += [PerTrial(label, note="not run (--no-peers)") for _, label in OPTUNA_CASES]
        else:
            log("Optuna ...")
            rows += optuna_rows(n, args.quick, args.setup_peers)
        runs = []
        backends = [("SQLite", f"sqlite:///{(d / 'tp.db').as_posix()}")]
        if args.postgres_url:
            backends.append(("PostgreSQL", args.postgres_url))
        for label, url in backends:
            log(f"throughput: {label}, {args.workers} workers x {SLEEP_S * 1e3:g} ms ...")
            runs.append(throughput(label, url, args.workers, per_worker, 30.0))
        shutil.rmtree(d, ignore_errors=True)
    print(render(rows, runs, args, n, load_start), end="")
    return 0


def render(rows: list[PerTrial], runs: list[Throughput], args: argparse.Namespace, n: int,
           load_start: str) -> str:  # fmt: skip
    out = ["## SQL hot path near its floor", "",
           f"- load average (1/5/15 min): {load_start} at the start, {_load()} at the end "
           "(a shared machine: absolute figures drift, compare the ratios)",
           f"- {n:,} trials per one-process case; RandomSearch, 3 parameters, trivial objective",
           ""]  # fmt: skip
    out += table(["case", "CPU ms/trial", "wall ms/trial", "trials", "notes"],
                 [[r.label, fmt(r.cpu_ms), fmt(r.wall_ms), str(r.n or "–"), r.note]
                  for r in rows])  # fmt: skip
    mine, replayed = rows[0], rows[2]
    journal = next(r for r in rows if r.label.startswith("Optuna Journal"))
    out += ["", *table(["ratio (CPU per trial)", "measured", "target"], [
        ["poptune optimize / Optuna JournalStorage", ratio(mine.cpu_ms, journal.cpu_ms),
         f"≤ {TARGET_JOURNAL_RATIO:g}"],
        ["poptune optimize / its statements through bare sqlite3",
         ratio(mine.cpu_ms, replayed.cpu_ms), f"≤ {TARGET_REPLAY_RATIO:g}"],
        ["poptune ask/tell / Optuna JournalStorage", ratio(rows[1].cpu_ms, journal.cpu_ms), ""],
    ])]  # fmt: skip
    header = ["storage", "workers × objective", "trials", "trials/s", "% of ideal (target ≥ 90)",
              "lock held per trial, ms", "per locked transaction, ms (mean / p95)",
              "final write round trip, ms (mean / p95)", "notes"]  # fmt: skip
    body = []
    for r in runs:
        rate = r.trials / r.wall_s if r.trials else math.nan
        per_trial = 1e3 * sum(r.holds) / r.trials if r.trials else math.nan
        body.append([r.storage, f"{r.workers} × {SLEEP_S * 1e3:g} ms", str(r.trials), fmt(rate),
                     fmt(100 * r.efficiency), fmt(per_trial), _ms(r.holds), _ms(r.finals),
                     (r.error or "").splitlines()[0][:200] if r.error else ""])  # fmt: skip
    if runs:
        out += ["", *table(header, body)]
        out += [
            "",
            "(lock held: from the answer to the lock statement to the COMMIT's, summed "
            "over a trial's locked transactions; on PostgreSQL the final write is one "
            "statement whose lock is held inside the server, shown as its round trip)",
        ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
