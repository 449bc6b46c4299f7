"""The throughput workload of case 2 (``python -m benchmarks --cases 2``): worker processes
(spawned) sharing one study on a fresh SQLite file or PostgreSQL database, poptune beside
Optuna, timed from a barrier after every worker opened the study to the last trial (the
method is in ``benchmarks/README.md`` and on the page). This module only measures:
``benchmarks/cases/c2_throughput.py`` runs it through ``benchmarks/peers/throughput_peer.py``.
"""

from __future__ import annotations

import gc
import math
import multiprocessing as mp
import os
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# -- the problem: overhead.py's three parameters and trivial objective ----------------------
from benchmarks.overhead import (
    ACTIVATIONS,
    LR_RANGE,
    UNITS_RANGE,
    objective,
    optuna_journal,
    optuna_rdb_with_pragmas,
    poptune_study,
    trial_value,
)

SLEEP_S = 0.05  # the "50 ms" objective

SETUP_TIMEOUT_S = 300.0  # spawning and importing, before the barrier


# -- the workers (run in spawned processes) ---------------------------------------------------
@dataclass
class WorkerReport:
    index: int
    trials: int = 0
    start: float = math.nan  # time.monotonic() at the barrier's release
    last: float = math.nan  # time.monotonic() at the end of its last trial
    cpu_s: float = 0.0  # the worker's CPU time (user + system) from the barrier to its end
    error: str | None = None
    holds: list[float] = field(default_factory=list)  # "poptune-optimize": each lock hold, s
    finals: list[float] = field(default_factory=list)  # and each final write's round trip, s

    def lap(self) -> float:
        """Count a finished trial; the time it ended."""
        self.trials += 1
        self.last = time.monotonic()
        return self.last


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


def _poptune_loop(job: Job, index: int, counter: Any, report: WorkerReport) -> Callable:
    """``for trial in study`` with ``add_observation`` and ``finalize`` (two writes)."""
    study = poptune_study(job.total, job.seed, storage=job.url, study_name=job.study_name)

    def loop(stop_at: float) -> None:
        for trial in study:
            if job.sleep_s:
                time.sleep(job.sleep_s)
            value = trial_value(trial)
            study.add_observation(trial, objective=value, iteration=1)
            study.finalize(trial)
            if report.lap() >= stop_at:
                break

    return loop


def _poptune_optimize_loop(job: Job, index: int, counter: Any, report: WorkerReport) -> Callable:
    """``study.optimize`` (a trial's value and final status in one write), recording how long
    each locked transaction held the study's lock (the storage's ``lock_watch``: from the
    answer to the lock statement to the COMMIT's) and each final write's round trip; the
    clock stops at the end of the last objective (case 8)."""
    from poptune.storage.sql import SQLStorage

    storage = SQLStorage(job.url)
    study = poptune_study(job.total, job.seed, storage=storage, study_name=job.study_name)
    watch, held = storage.lock_watch, storage.lock_watch.held
    watch.held = lambda s: (report.holds.append(s), held(s))[1]  # type: ignore[method-assign]
    final = storage.finish_with_observation

    def timed_final(*args: Any, **kwargs: Any) -> None:
        t = time.perf_counter()
        try:
            final(*args, **kwargs)
        finally:
            report.finals.append(time.perf_counter() - t)

    storage.finish_with_observation = timed_final  # type: ignore[method-assign]

    def sleepy(trial: Any) -> float:
        time.sleep(job.sleep_s)
        value = trial_value(trial)
        report.lap()
        return value

    def loop(stop_at: float) -> None:
        study.optimize(sleepy, timeout=job.max_seconds, show_progress=False)

    loop.close = study.close  # type: ignore[attr-defined]
    return loop


#: Optuna's configurations: the RDB storage on the database's defaults ("optuna"), the RDB
#: storage on SQLite with poptune's pragmas ("optuna-wal"), and JournalStorage on a file next
#: to the run's SQLite file ("optuna-journal", Optuna's recommendation for several processes
#: on one machine). The last two are SQLite-only.
OPTUNA_CONFIGS = ("optuna", "optuna-wal", "optuna-journal")


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


def _optuna_loop(job: Job, index: int, counter: Any, report: WorkerReport) -> Callable:
    """ask/tell on a study the parent created, taking trials from the shared counter."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=job.study_name,
        storage=optuna_storage(job.library, job.url),
        sampler=optuna.samplers.RandomSampler(seed=job.seed + index),
        load_if_exists=True,
    )

    def loop(stop_at: float) -> None:
        while True:
            with counter.get_lock():  # hand out the fixed total on demand, like poptune does
                if counter.value >= job.total:
                    break
                counter.value += 1
            t = study.ask()
            lr = t.suggest_float("lr", LR_RANGE[0], LR_RANGE[1], log=True)
            units = t.suggest_int("units", UNITS_RANGE[0], UNITS_RANGE[1])
            act = t.suggest_categorical("act", ACTIVATIONS)
            if job.sleep_s:
                time.sleep(job.sleep_s)
            study.tell(t, objective(lr, units, act))
            if report.lap() >= stop_at:
                break

    return loop


LOOPS = {"poptune": _poptune_loop, "poptune-optimize": _poptune_optimize_loop}


def worker_main(job: Job, index: int, barrier: Any, counter: Any, reports: Any) -> None:
    """Entry point of a worker process: open the study, then (after collecting the imports'
    garbage) wait at the barrier and run the loop on the clock; put a :class:`WorkerReport`.

    The garbage collection ends the start-up before the clock starts: importing a library
    leaves tens of thousands of objects that CPython's collector has not yet examined; its
    first full collection (~15 ms in one process) then runs a few hundred trials into the
    loop. With every worker started at the same moment, all of them run it at once, each
    blocking the study while it holds the study's lock: 0.2-0.3 s lost per worker, a one-off
    of process start-up that a 5 s run would count as a 5% loss."""
    report = WorkerReport(index)
    with warnings.catch_warnings(record=True):  # kept out of the workers' output
        warnings.simplefilter("always")
        try:
            loop = LOOPS.get(job.library, _optuna_loop)(job, index, counter, report)
            gc.collect()
            barrier.wait(timeout=SETUP_TIMEOUT_S)
            report.start = report.last = time.monotonic()
            report.cpu_s = -time.process_time()
            loop(report.start + job.max_seconds)
            report.cpu_s += time.process_time()
            getattr(loop, "close", lambda: None)()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which says so
            barrier.abort()
            report.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            report.error += "\n" + traceback.format_exc(limit=-3)
    reports.put(report)


# -- storages ---------------------------------------------------------------------------------
class SQLiteBackend:
    """A fresh database file per run, in one temporary directory for the whole benchmark."""

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
        name = f"poptune_bench_{os.getpid()}"
        name += "" if library.startswith("poptune") else f"_{library}"
        with self._admin() as conn:
            self._drop(conn, name)
            conn.execute(f'CREATE DATABASE "{name}"')
            self._created.add(name)
        # poptune maps postgresql:// to psycopg 3 itself; SQLAlchemy (Optuna) needs the driver.
        driver = "postgresql" if library.startswith("poptune") else "postgresql+psycopg"
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
    capped: bool  # stopped by --max-seconds before the total
    error: str | None = None
    cpu_s: float = math.nan  # the workers' CPU time, summed (not the database server's)
    holds: list[float] = field(default_factory=list)  # every worker's, "poptune-optimize"
    finals: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.trials / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def cpu_ms_per_trial(self) -> float:
        """The workers' CPU milliseconds per trial (the database server's not included)."""
        return 1e3 * self.cpu_s / self.trials if self.trials else math.nan


def precreate(library: str, url: str, name: str, total: int, seed: int) -> Callable[[], None]:
    """Create the study in the parent (so workers only join it); returns what closes the
    parent's connections."""
    if library.startswith("poptune"):
        from poptune.storage import SQLStorage

        storage = SQLStorage(url)
        poptune_study(total, seed, storage=storage, study_name=name)
        return storage.close
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = optuna_storage(library, url)
    optuna.create_study(study_name=name, storage=rdb, sampler=optuna.samplers.RandomSampler(seed))
    return rdb.engine.dispose if hasattr(rdb, "engine") else lambda: None


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
        close()
    errors = [r.error for r in reports if r.error]
    ok = [r for r in reports if not math.isnan(r.start)]
    trials = sum(r.trials for r in reports)
    wall = max(r.last for r in ok) - min(r.start for r in ok) if ok else math.nan
    return Run(
        trials=trials,
        wall_s=wall,
        cpu_s=sum(r.cpu_s for r in ok),
        capped=trials < total,
        error=errors[0] if errors else None,
        holds=[h for r in ok for h in r.holds],
        finals=[f for r in ok for f in r.finals],
    )
