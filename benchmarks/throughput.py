"""Trials per second with several worker processes sharing one study, poptune beside Optuna.

Every worker is a separate process (``multiprocessing``, start method *spawn*) that opens the
shared study, waits at a barrier until all workers (and the parent) are ready, then loops::

    for trial in study:                       # poptune, RandomSearch
        objective(...)                        # trivial, or time.sleep(0.05) first
        study.add_observation(trial, objective=..., iteration=1)
        study.finalize(trial)

Optuna's workers do the same with ask/tell (``RandomSampler``, ``create_study(...,
load_if_exists=True)`` on a study the parent created), taking trials from a shared counter so
that both libraries split a fixed total of trials between their workers on demand.

The wall time runs from the barrier's release (process start-up, imports and a garbage
collection after them are not counted)
to the end of the last ``finalize``/``tell`` of any worker; trials/s = trials / wall time.
For the 50 ms objective, efficiency = measured trials/s / ideal, ideal = workers / 0.05 s.
Storages: a fresh SQLite file and a fresh PostgreSQL database for every run (created and
dropped by the script), poptune and Optuna run alternately.

Run from the repository root::

    python benchmarks/throughput.py                          # workers 1 2 4 8; 2 repeats (~12 min)
    python -m benchmarks.throughput --quick                  # workers 1 and 4; 1 repeat (~2 min)
    python benchmarks/throughput.py --workers 2 8 --storages postgres --markdown tp.md
    python benchmarks/throughput.py --postgres-url postgresql://me:pw@db:5432/postgres
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if importlib.util.find_spec("poptune") is None:  # a checkout that was not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
if importlib.util.find_spec("benchmarks") is None:  # run as `python benchmarks/throughput.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# -- the problem: overhead.py's three parameters and trivial objective ----------------------
from benchmarks.overhead import (  # noqa: E402
    ACTIVATIONS,
    LR_RANGE,
    UNITS_RANGE,
    load_average,
    objective,
    optuna_journal,
    optuna_rdb_with_pragmas,
    progress,
    version_of,
)

SLEEP_S = 0.05  # the "50 ms" objective

OBJECTIVES = ("trivial", "50 ms")
STORAGES = ("sqlite", "postgres")
LIBRARIES = ("poptune", "optuna")
DEFAULT_WORKERS = (1, 2, 4, 8)
QUICK_WORKERS = (1, 4)
DEFAULT_REPEATS = 2
TRIVIAL_TOTAL = 2_000  # trials per run, trivial objective
QUICK_TRIVIAL_TOTAL = 500
SLEEP_TRIALS_PER_WORKER = 100  # 50 ms objective: 100 x workers trials (ideally 5 s a run)
QUICK_SLEEP_TRIALS_PER_WORKER = 40
MAX_SECONDS = 10.0  # a run stops handing out trials after this (Optuna's slow runs)
QUICK_MAX_SECONDS = 6.0
DEFAULT_SEED = 12345
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SETUP_TIMEOUT_S = 300.0  # spawning and importing, before the barrier

# -- target (poptune) ---------------------------------------------------------------------------
TARGET_STORAGE = "postgres"
TARGET_OBJECTIVE = "50 ms"
TARGET_WORKERS = 8
TARGET_EFFICIENCY = 0.90


# -- the workers (run in spawned processes) ---------------------------------------------------
@dataclass
class WorkerReport:
    index: int
    trials: int = 0
    start: float = math.nan  # time.monotonic() at the barrier's release
    last: float = math.nan  # time.monotonic() at the end of its last trial
    cpu_s: float = 0.0  # the worker's CPU time (user + system) from the barrier to its end
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Job:
    """What a worker needs (pickled to the spawned process)."""

    library: str
    url: str
    study_name: str
    total: int
    sleep_s: float
    seed: int
    max_seconds: float


def make_poptune_study(url: Any, study_name: str, total: int, seed: int) -> Any:
    import poptune
    from poptune import Choice, Continuous, Discrete

    return poptune.Study(
        [
            Continuous("lr", list(LR_RANGE), "log"),
            Discrete("units", list(UNITS_RANGE)),
            Choice("act", ACTIVATIONS),
        ],
        poptune.algorithms.RandomSearch(max_num_trials=total),
        lower_is_better=True,
        seed=seed,
        storage=url,
        study_name=study_name,
    )


def _settle() -> None:
    """End the start-up before the clock starts: collect the garbage of the imports.

    Importing a library leaves tens of thousands of objects that CPython's collector has not
    yet examined; its first full collection (~15 ms in one process) then runs a few hundred
    trials into the loop. With every worker started at the same moment, all of them run it
    at once, each blocking the study while it holds the study's lock: 0.2-0.3 s lost per
    worker, a one-off of process start-up that a 5 s run would count as a 5% loss. Both
    libraries' workers do this."""
    gc.collect()


def _poptune_loop(job: Job, index: int, barrier: Any, counter: Any, report: WorkerReport) -> None:
    study = make_poptune_study(job.url, job.study_name, job.total, job.seed)
    _settle()
    barrier.wait(timeout=SETUP_TIMEOUT_S)
    clock, sleep_s = time.monotonic, job.sleep_s
    report.start = report.last = clock()
    report.cpu_s = -time.process_time()
    stop_at = report.start + job.max_seconds
    for trial in study:
        p = trial.parameters
        if sleep_s:
            time.sleep(sleep_s)
        study.add_observation(
            trial, objective=objective(p["lr"], p["units"], p["act"]), iteration=1
        )
        study.finalize(trial)
        report.trials += 1
        report.last = clock()
        if report.last >= stop_at:
            break
    report.cpu_s += time.process_time()


#: Optuna's configurations: the RDB storage on the database's defaults ("optuna"), the RDB
#: storage on SQLite with poptune's pragmas ("optuna-wal"), and JournalStorage on a file next
#: to the run's SQLite file ("optuna-journal", Optuna's recommendation for several processes
#: on one machine). The last two are SQLite-only.
OPTUNA_CONFIGS = ("optuna", "optuna-wal", "optuna-journal")
FILE_ONLY = ("optuna-wal", "optuna-journal")


def optuna_storage(library: str, url: str) -> Any:
    """The Optuna storage object of configuration ``library`` for the run's database ``url``."""
    import optuna

    if library == "optuna":
        return optuna.storages.RDBStorage(url)
    if not url.startswith("sqlite:///"):
        raise ValueError(f"{library} runs on a local file only, not on {url!r}")
    path = url[len("sqlite:///") :]
    if library == "optuna-wal":
        return optuna_rdb_with_pragmas(path)
    if library == "optuna-journal":
        return optuna_journal(f"{path}.log")
    raise ValueError(f"unknown Optuna configuration {library!r}")


def _optuna_loop(job: Job, index: int, barrier: Any, counter: Any, report: WorkerReport) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=job.study_name,
        storage=optuna_storage(job.library, job.url),
        sampler=optuna.samplers.RandomSampler(seed=job.seed + index),
        load_if_exists=True,
    )
    _settle()
    barrier.wait(timeout=SETUP_TIMEOUT_S)
    clock, sleep_s, total = time.monotonic, job.sleep_s, job.total
    report.start = report.last = clock()
    report.cpu_s = -time.process_time()
    stop_at = report.start + job.max_seconds
    while True:
        with counter.get_lock():  # hand out the fixed total on demand, like poptune does
            if counter.value >= total:
                break
            counter.value += 1
        t = study.ask()
        lr = t.suggest_float("lr", LR_RANGE[0], LR_RANGE[1], log=True)
        units = t.suggest_int("units", UNITS_RANGE[0], UNITS_RANGE[1])
        act = t.suggest_categorical("act", ACTIVATIONS)
        if sleep_s:
            time.sleep(sleep_s)
        study.tell(t, objective(lr, units, act))
        report.trials += 1
        report.last = clock()
        if report.last >= stop_at:
            break
    report.cpu_s += time.process_time()


def worker_main(job: Job, index: int, barrier: Any, counter: Any, reports: Any) -> None:
    """Entry point of a worker process: run the loop, put a :class:`WorkerReport`."""
    report = WorkerReport(index)
    loop = _poptune_loop if job.library == "poptune" else _optuna_loop
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            loop(job, index, barrier, counter, report)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which says so
            barrier.abort()
            report.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            report.error += "\n" + traceback.format_exc(limit=-3)
    report.warnings = [f"{w.category.__name__}: {w.message}" for w in caught]
    reports.put(report)


# -- storages ---------------------------------------------------------------------------------
class SQLiteBackend:
    """A fresh database file per run, in one temporary directory for the whole benchmark."""

    name = "sqlite"
    label = "SQLite"

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="poptune-tp-", ignore_cleanup_errors=True)
        self._runs = 0

    def describe(self) -> str:
        return "a fresh SQLite file per run (local disk, in a temporary directory)"

    @contextmanager
    def fresh(self, library: str) -> Iterator[str]:
        self._runs += 1
        path = Path(self._dir.name, f"{library}-{self._runs}.db")
        try:
            yield f"sqlite:///{path.as_posix()}"
        finally:
            for suffix in ("", "-wal", "-shm", "-journal", ".log", ".log.lock"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        self._dir.cleanup()


class PostgresBackend:
    """A fresh database per run: ``poptune_bench_<pid>`` (``..._optuna`` for Optuna), created
    before the run and dropped after it through the admin URL."""

    name = "postgres"
    label = "PostgreSQL"

    def __init__(self, admin_url: str) -> None:
        import psycopg
        from sqlalchemy.engine import make_url

        self._psycopg = psycopg
        self._url = make_url(admin_url)
        if self._url.get_backend_name() != "postgresql":
            raise ValueError(f"--postgres-url is not a PostgreSQL URL: {admin_url!r}")
        self._conninfo = self._url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self.safe_url = self._url.render_as_string(hide_password=True)
        with self._admin() as conn:  # reachable? (raises otherwise)
            self.version = str(conn.execute("SHOW server_version").fetchone()[0])
            self.sync_commit = str(conn.execute("SHOW synchronous_commit").fetchone()[0])
        self._created: set[str] = set()

    def describe(self) -> str:
        return (
            f"a fresh PostgreSQL {self.version} database per run on {self._url.host or 'localhost'}"
            f" (synchronous_commit={self.sync_commit}), created and dropped by the script"
        )

    def _admin(self) -> Any:
        return self._psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5)

    def _drop(self, conn: Any, name: str) -> None:
        try:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except self._psycopg.errors.SyntaxError:  # PostgreSQL before 13
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        self._created.discard(name)

    @contextmanager
    def fresh(self, library: str) -> Iterator[str]:
        name = f"poptune_bench_{os.getpid()}" + ("" if library == "poptune" else f"_{library}")
        with self._admin() as conn:
            self._drop(conn, name)
            conn.execute(f'CREATE DATABASE "{name}"')
            self._created.add(name)
        # poptune maps postgresql:// to psycopg 3 itself; SQLAlchemy (Optuna) needs the driver.
        driver = "postgresql" if library == "poptune" else "postgresql+psycopg"
        url = self._url.set(drivername=driver, database=name)
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            with self._admin() as conn:
                self._drop(conn, name)

    def close(self) -> None:
        if self._created:
            with self._admin() as conn:
                for name in list(self._created):
                    self._drop(conn, name)


# -- one run ----------------------------------------------------------------------------------
@dataclass
class Run:
    trials: int
    wall_s: float
    stored: int  # completed trials found in the database afterwards
    capped: bool  # stopped by --max-seconds before the total
    error: str | None = None
    cpu_s: float = math.nan  # the workers' CPU time, summed (not the database server's)
    warnings: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.trials / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def cpu_ms_per_trial(self) -> float:
        """The workers' CPU milliseconds per trial (the database server's not included)."""
        return 1e3 * self.cpu_s / self.trials if self.trials else math.nan


def precreate(library: str, url: str, name: str, total: int, seed: int) -> Any:
    """Create the study in the parent (so workers only join it); returns a closer that
    counts the completed trials stored and closes the parent's connections."""
    if library == "poptune":
        from poptune.storage import SQLStorage

        storage = SQLStorage(url)
        study = make_poptune_study(storage, name, total, seed)

        def close() -> int:
            try:
                return study.history.n_completed
            finally:
                storage.close()

        return close
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = optuna_storage(library, url)
    optuna.create_study(study_name=name, storage=rdb, sampler=optuna.samplers.RandomSampler(seed))

    def close_optuna() -> int:
        try:
            study = optuna.load_study(study_name=name, storage=rdb)
            return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        finally:
            if hasattr(rdb, "engine"):
                rdb.engine.dispose()

    return close_optuna


def run_once(
    backend: Any, library: str, workers: int, total: int, sleep_s: float, seed: int,
    max_seconds: float,
) -> Run:  # fmt: skip
    """One run: a fresh database, ``workers`` processes sharing one study of ``total`` trials."""
    ctx = mp.get_context("spawn")
    with backend.fresh(library) as url:
        name = f"throughput-{library}"
        close = precreate(library, url, name, total, seed)
        job = Job(library, url, name, total, sleep_s, seed, max_seconds)
        barrier = ctx.Barrier(workers + 1)
        counter = ctx.Value("l", 0)
        reports_q = ctx.Queue()
        procs = [
            ctx.Process(
                target=worker_main,
                args=(job, i, barrier, counter, reports_q),
                name=f"{library}-worker-{i}",
                daemon=True,
            )
            for i in range(workers)
        ]
        for p in procs:
            p.start()
        try:
            barrier.wait(timeout=SETUP_TIMEOUT_S)
        except threading.BrokenBarrierError:
            pass  # a worker failed before the start: its report says why
        reports: list[WorkerReport] = []
        deadline = time.monotonic() + SETUP_TIMEOUT_S + 10 * max_seconds
        while len(reports) < workers:
            try:
                reports.append(reports_q.get(timeout=max(1.0, deadline - time.monotonic())))
            except Exception:  # noqa: BLE001 - queue.Empty: a worker died without a report
                dead = [p.name for p in procs if not p.is_alive() and p.exitcode]
                reports.append(WorkerReport(-1, error=f"no report from a worker (dead: {dead})"))
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
        stored = close()
    errors = [r.error for r in reports if r.error]
    ok = [r for r in reports if not math.isnan(r.start)]
    trials = sum(r.trials for r in reports)
    wall = max(r.last for r in ok) - min(r.start for r in ok) if ok else math.nan
    return Run(
        trials=trials,
        wall_s=wall,
        stored=stored,
        cpu_s=sum(r.cpu_s for r in ok),
        capped=trials < total,
        error=errors[0] if errors else None,
        warnings=[w for r in reports for w in r.warnings],
    )


# -- the whole benchmark ----------------------------------------------------------------------
@dataclass
class Results:
    workers: list[int]
    repeats: int
    runs: dict[tuple[str, str, int, str], list[Run]] = field(default_factory=dict)
    backends: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    load_at_start: float | None = None

    def of(self, storage: str, objective_name: str, workers: int, library: str) -> list[Run]:
        return self.runs.get((storage, objective_name, workers, library), [])


def totals_for(args: argparse.Namespace, objective_name: str, workers: int) -> int:
    if objective_name == "trivial":
        return args.trivial_total
    return args.sleep_trials_per_worker * workers


def run_all(args: argparse.Namespace, backends: list[Any], libraries: list[str]) -> Results:
    results = Results(list(args.workers), args.repeats, backends=backends)
    results.load_at_start = load_average()
    for backend in backends:
        for objective_name in args.objectives:
            sleep_s = SLEEP_S if objective_name == "50 ms" else 0.0
            for workers in args.workers:
                total = totals_for(args, objective_name, workers)
                for r in range(args.repeats):
                    for library in libraries:
                        run = run_once(
                            backend, library, workers, total, sleep_s, args.seed + r,
                            args.max_seconds,
                        )  # fmt: skip
                        key = (backend.name, objective_name, workers, library)
                        results.runs.setdefault(key, []).append(run)
                        state = f" ERROR {run.error.splitlines()[0]}" if run.error else ""
                        progress(
                            f"  {backend.label:<10} {objective_name:<7} workers={workers}  "
                            f"repeat {r + 1}/{args.repeats}  {library:<7} "
                            f"{run.trials:>5} trials in {run.wall_s:6.2f} s = "
                            f"{run.rate:8.1f} trials/s{' (capped)' if run.capped else ''}{state}"
                        )
                        if run.stored != run.trials and not run.error:
                            results.notes.append(
                                f"{library} on {backend.label}, {objective_name}, {workers} "
                                f"workers: the workers counted {run.trials} trials but the "
                                f"database holds {run.stored} completed ones"
                            )
    return results


# -- the report -------------------------------------------------------------------------------
def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cell_rate(runs: list[Run]) -> str:
    good = [r for r in runs if not r.error]
    if not good:
        return "failed" if runs else "–"
    rates = [r.rate for r in good]
    text = f"{statistics.median(rates):.1f}"
    if len(good) > 1:
        text += f" [{min(rates):.1f}–{max(rates):.1f}]"
    extra = []
    if any(r.capped for r in good):
        extra.append(f"{statistics.median([r.trials for r in good]):,.0f} trials")
    if len(good) < len(runs):
        extra.append(f"{len(runs) - len(good)} run(s) failed")
    return text + (f" ({'; '.join(extra)})" if extra else "")


def median_rate(runs: list[Run]) -> float:
    good = [r.rate for r in runs if not r.error]
    return statistics.median(good) if good else math.nan


def efficiency(runs: list[Run], workers: int) -> float:
    return median_rate(runs) / (workers / SLEEP_S)


def fmt_pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{100 * value:.0f}%"


def table(results: Results, libraries: list[str], objectives: Sequence[str]) -> list[str]:
    both = "optuna" in libraries
    header = ["storage", "objective", "workers", "poptune trials/s (median [min–max])"]
    if both:
        header += ["optuna trials/s (median [min–max])", "ratio poptune/optuna"]
    header += ["poptune efficiency (50 ms)"]
    if both:
        header += ["optuna efficiency (50 ms)"]
    header += ["poptune workers' CPU ms/trial"] + (["optuna workers' CPU ms/trial"] if both else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for backend in results.backends:
        for objective_name in objectives:
            for workers in results.workers:
                mine = results.of(backend.name, objective_name, workers, "poptune")
                theirs = results.of(backend.name, objective_name, workers, "optuna")
                row = [backend.label, objective_name, str(workers), cell_rate(mine)]
                if both:
                    ratio = median_rate(mine) / median_rate(theirs)
                    row += [cell_rate(theirs), "–" if math.isnan(ratio) else f"{ratio:.1f}"]
                sleepy = objective_name == "50 ms"
                row.append(fmt_pct(efficiency(mine, workers)) if sleepy else "n/a")
                if both:
                    row.append(fmt_pct(efficiency(theirs, workers)) if sleepy else "n/a")
                for runs in (mine, theirs) if both else (mine,):
                    cpu = [r.cpu_ms_per_trial for r in runs if not r.error]
                    row.append(f"{statistics.median(cpu):.2f}" if cpu else "–")
                lines.append("| " + " | ".join(row) + " |")
    return lines


def target_line(results: Results) -> str:
    goal = (
        f"poptune reaches ≥ {TARGET_EFFICIENCY:.0%} of the ideal throughput "
        f"({TARGET_WORKERS} / {SLEEP_S * 1e3:.0f} ms = {TARGET_WORKERS / SLEEP_S:.0f} trials/s) "
        f"with the {TARGET_OBJECTIVE} objective and {TARGET_WORKERS} workers on PostgreSQL"
    )
    runs = results.of(TARGET_STORAGE, TARGET_OBJECTIVE, TARGET_WORKERS, "poptune")
    if not runs or all(r.error for r in runs):
        seen = ""
        for workers in sorted(results.workers, reverse=True):
            done = results.of(TARGET_STORAGE, TARGET_OBJECTIVE, workers, "poptune")
            if any(not r.error for r in done):
                eff = fmt_pct(efficiency(done, workers))
                seen = (
                    f"; for reference, with {workers} worker{'s' * (workers != 1)}: {eff} of ideal"
                )
                break
        return f"**Target (not evaluated: that configuration was not run{seen}):** {goal}."
    eff = efficiency(runs, TARGET_WORKERS)
    verdict = "met" if eff >= TARGET_EFFICIENCY else "NOT met"
    return (
        f"**Target ({verdict}):** {goal}: measured {median_rate(runs):.1f} trials/s = "
        f"{fmt_pct(eff)} of ideal."
    )


def render(
    results: Results, args: argparse.Namespace, libraries: list[str], skipped: list[str]
) -> str:
    cpus = usable_cpus()
    start, end = results.load_at_start, load_average()
    load = (
        [
            f"- load average (1 min): {start:.1f} at the start, {end:.1f} at the end (other "
            "processes on the machine make the figures drift)"
        ]
        if start is not None and end is not None
        else []
    )
    out = [
        "## Throughput: worker processes sharing one study (3 parameters; RandomSearch / "
        "RandomSampler)",
        "",
        f"- Python {platform.python_version()}, poptune {version_of('poptune')}, "
        f"optuna {version_of('optuna')}, SQLAlchemy {version_of('sqlalchemy')}, "
        f"psycopg {version_of('psycopg')}; {platform.system()} {platform.machine()}",
        *load,
        f"- CPUs usable: {cpus}. **With more worker processes than cores the trivial "
        f"objective is CPU-bound**: the workers (and the PostgreSQL server) share {cpus} "
        "cores, so those rows measure contention for the CPU as much as the storage. The "
        "50 ms objective sleeps, so its workers mostly wait, as real training would.",
        f"- Per run: a fresh study; trivial objective {args.trivial_total:,} trials in total; "
        f"50 ms objective {args.sleep_trials_per_worker} × workers trials (ideally "
        f"{args.sleep_trials_per_worker * SLEEP_S:g} s); a run hands out no new trial after "
        f"--max-seconds {args.max_seconds:g} s (its trials/s are then over the trials it ran, "
        "shown in the cell)",
        "- Timed from the release of a barrier that every worker reaches after opening the "
        "study (process start-up not counted) to the last finalize/tell; trials/s = trials / "
        "that wall time; efficiency = trials/s ÷ (workers / 0.05 s)",
        f"- poptune: `for trial in study: ...; study.add_observation(...); "
        f"study.finalize(trial)`, default heartbeats; Optuna: ask/tell with "
        f"`create_study(..., load_if_exists=True)` on a pre-created study; libraries run "
        f"alternately; {args.repeats} repeat(s), median [min–max]",
        *[f"- Storage: {b.describe()}" for b in results.backends],
        *[f"- **Note: {note}**" for note in skipped],
        "",
        *table(results, libraries, args.objectives),
        "",
        target_line(results),
    ]
    notes = list(results.notes)
    for key, runs in results.runs.items():
        for run in runs:
            if run.error:
                notes.append(
                    f"{key[3]} on {key[0]}, {key[1]}, {key[2]} workers failed: "
                    f"{run.error.splitlines()[0]}"
                )
    n_warnings = sum(len(r.warnings) for runs in results.runs.values() for r in runs)
    if n_warnings:
        first = next(w for runs in results.runs.values() for r in runs for w in r.warnings)
        notes.append(f"{n_warnings} warning(s) were raised in the workers (first: {first})")
    if notes:
        out += ["", *[f"- Note: {note}" for note in notes]]
    return "\n".join(out) + "\n"


# -- command line -----------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/throughput.py",
        description="Trials per second of worker processes sharing one study on SQLite and "
        "PostgreSQL, poptune beside Optuna.",
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", metavar="N", help="worker counts (default 1 2 4 8)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"workers {' '.join(map(str, QUICK_WORKERS))}, {QUICK_TRIVIAL_TOTAL} trivial "
        f"trials, {QUICK_SLEEP_TRIALS_PER_WORKER} × workers 50 ms trials, --max-seconds "
        f"{QUICK_MAX_SECONDS:g}, one repeat",
    )
    parser.add_argument(
        "--repeats", type=int, help=f"runs per configuration (default {DEFAULT_REPEATS})"
    )
    parser.add_argument(
        "--storages",
        nargs="+",
        choices=STORAGES,
        default=list(STORAGES),
        help="storages to run (default: sqlite postgres)",
    )
    parser.add_argument(
        "--objectives",
        nargs="+",
        choices=["trivial", "50ms"],
        default=["trivial", "50ms"],
        help="objectives to run (default: both)",
    )
    parser.add_argument(
        "--libraries",
        nargs="+",
        choices=LIBRARIES,
        default=list(LIBRARIES),
        help="libraries to run (default: poptune optuna)",
    )
    parser.add_argument(
        "--trivial-total",
        type=int,
        help=f"trials per run with the trivial objective (default {TRIVIAL_TOTAL})",
    )
    parser.add_argument(
        "--sleep-trials-per-worker",
        type=int,
        help=f"50 ms objective: trials per run = this × workers "
        f"(default {SLEEP_TRIALS_PER_WORKER})",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        help=f"stop handing out trials after this many seconds of a run (default {MAX_SECONDS:g})",
    )
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="admin URL of the PostgreSQL server; the script creates and drops the database "
        f"poptune_bench_<pid> (and ..._optuna) there (default {DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="base seed (+ repeat)")
    parser.add_argument("--markdown", metavar="PATH", help="also write the report to this file")
    args = parser.parse_args(argv)
    quick = args.quick
    if args.workers is None:
        args.workers = list(QUICK_WORKERS if quick else DEFAULT_WORKERS)
    if args.repeats is None:
        args.repeats = 1 if quick else DEFAULT_REPEATS
    if args.trivial_total is None:
        args.trivial_total = QUICK_TRIVIAL_TOTAL if quick else TRIVIAL_TOTAL
    if args.sleep_trials_per_worker is None:
        args.sleep_trials_per_worker = (
            QUICK_SLEEP_TRIALS_PER_WORKER if quick else SLEEP_TRIALS_PER_WORKER
        )
    if args.max_seconds is None:
        args.max_seconds = QUICK_MAX_SECONDS if quick else MAX_SECONDS
    args.objectives = [o for o in OBJECTIVES if o.replace(" ", "") in args.objectives]
    if any(w < 1 for w in args.workers) or args.repeats < 1:
        parser.error("--workers and --repeats must be at least 1")
    if args.trivial_total < 1 or args.sleep_trials_per_worker < 1 or args.max_seconds <= 0:
        parser.error("--trivial-total, --sleep-trials-per-worker and --max-seconds must be > 0")
    return args


def open_backends(args: argparse.Namespace, skipped: list[str]) -> list[Any]:
    backends: list[Any] = []
    for name in args.storages:
        if name == "sqlite":
            backends.append(SQLiteBackend())
            continue
        try:
            backends.append(PostgresBackend(args.postgres_url))
        except ImportError as exc:
            skipped.append(f"PostgreSQL skipped: its driver is not installed ({exc}); "
                           "pip install 'poptune[postgres]'")  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - unreachable server, bad URL, no rights
            from sqlalchemy.engine import make_url

            try:
                shown = make_url(args.postgres_url).render_as_string(hide_password=True)
            except Exception:  # noqa: BLE001
                shown = "the given URL"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            skipped.append(
                f"PostgreSQL skipped: {shown} is unreachable or refused ({first}); pass a "
                "server's admin URL with --postgres-url"
            )
    return backends


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    skipped: list[str] = []
    libraries = []
    for library in args.libraries:
        if importlib.util.find_spec(library) is None:
            skipped.append(f"{library} is not installed, so it was not run")
        else:
            libraries.append(library)
    if "poptune" not in libraries:
        print("error: poptune cannot be imported", file=sys.stderr)
        return 1
    backends = open_backends(args, skipped)
    for note in skipped:
        print(f"note: {note}", file=sys.stderr)
    if not backends:
        print("error: no storage to run on", file=sys.stderr)
        return 1
    progress(
        f"running {', '.join(libraries)} on {', '.join(b.label for b in backends)}; "
        f"objectives {', '.join(args.objectives)}; workers {args.workers}; "
        f"{args.repeats} repeat(s)..."
    )
    started = time.monotonic()
    try:
        results = run_all(args, backends, libraries)
    finally:
        for backend in backends:
            backend.close()
    report = render(results, args, libraries, skipped)
    print(report, end="")
    progress(f"done in {time.monotonic() - started:.0f} s")
    if args.markdown:
        Path(args.markdown).write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
