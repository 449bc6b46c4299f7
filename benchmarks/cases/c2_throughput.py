"""Case 2: trials per second with 1–8 worker processes (spawned) sharing one study of case 1's
problem, on SQLite and on PostgreSQL, poptune beside Optuna; the method is the page text in
:func:`run`. :func:`run_once` is one run (case 8 reuses it); :func:`peer`, a library's runs."""

from __future__ import annotations

import gc
import math
import multiprocessing as mp
import os
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.cases.c1_overhead import optuna_storage, optuna_value, poptune_study, trial_value
from benchmarks.harness import Context, Section, figure, fmt, log, med, ratio, spread, style, table

TITLE = "2. Throughput: worker processes sharing one study (vs Optuna, same machine)"
SLEEP_S = 0.05  # the "50 ms" objective
SETUP_TIMEOUT_S = 300.0  # spawning and importing, before the barrier


# -- the workers (spawned processes) -----------------------------------------------------------
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

    library: str  # "poptune", "poptune-optimize" or an Optuna configuration (case 1's)
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
            study.add_observation(trial, objective=trial_value(trial), iteration=1)
            study.finalize(trial)
            if report.lap() >= stop_at:
                break

    return loop


def _poptune_optimize_loop(job: Job, index: int, counter: Any, report: WorkerReport) -> Callable:
    """``study.optimize`` (one write a trial), recording each locked transaction's hold of the
    study's lock (``lock_watch``: from the answer to the lock statement to the COMMIT's) and each
    final write's round trip; the clock stops at the end of the last objective (case 8)."""
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
            value = optuna_value(t)
            if job.sleep_s:
                time.sleep(job.sleep_s)
            study.tell(t, value)
            if report.lap() >= stop_at:
                break

    return loop


LOOPS = {"poptune": _poptune_loop, "poptune-optimize": _poptune_optimize_loop}


def worker_main(job: Job, index: int, barrier: Any, counter: Any, reports: Any) -> None:
    """A worker process: open the study, collect the imports' garbage, wait at the barrier, run
    the loop on the clock; put a :class:`WorkerReport`. (Without the collection every worker ran
    CPython's first full one, ~15 ms, at once a few hundred trials in, blocking the study while
    it held the lock: 0.2-0.3 s per worker, a 5% loss in a 5 s run.)"""
    import warnings

    report = WorkerReport(index)
    warnings.simplefilter("ignore")  # kept out of the workers' output
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


# -- the databases -------------------------------------------------------------------------------
class SQLiteBackend:
    """A fresh database file per run, in one temporary directory for the whole benchmark."""

    description = "a fresh SQLite file per run (local disk, in a temporary directory)"

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="poptune-tp-", ignore_cleanup_errors=True)
        self._runs = 0

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


SHOW = ("server_version", "synchronous_commit")


class PostgresBackend:
    """A fresh database per run, ``poptune_bench_<pid>`` (``..._<configuration>`` for Optuna)."""

    def __init__(self, admin_url: str) -> None:
        import psycopg
        from sqlalchemy.engine import make_url

        self._psycopg, self._url = psycopg, make_url(admin_url)
        if self._url.get_backend_name() != "postgresql":
            raise ValueError(f"--postgres-url is not a PostgreSQL URL: {admin_url!r}")
        self._conninfo = self._url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        with self._admin() as conn:  # reachable? (raises otherwise)
            version, sync = (conn.execute(f"SHOW {v}").fetchone()[0] for v in SHOW)
        self.description = (
            f"a fresh PostgreSQL {version} database per run on {self._url.host or 'localhost'}"
            f" (synchronous_commit={sync}), created and dropped by the script"
        )
        self._created: set[str] = set()

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
        mine = library.startswith("poptune")
        name = f"poptune_bench_{os.getpid()}" + ("" if mine else f"_{library.replace('-', '_')}")
        with self._admin() as conn:
            self._drop(conn, name)
            conn.execute(f'CREATE DATABASE "{name}"')
            self._created.add(name)
        # poptune maps postgresql:// to psycopg 3 itself; SQLAlchemy (Optuna) needs the driver.
        url = self._url.set(drivername="postgresql" if mine else "postgresql+psycopg")
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with self._admin() as conn:
                self._drop(conn, name)

    def close(self) -> None:
        if self._created:
            with self._admin() as conn:
                for name in list(self._created):
                    self._drop(conn, name)


# -- one run -------------------------------------------------------------------------------------
@dataclass
class Run:
    trials: int
    wall_s: float
    capped: bool  # stopped by max_seconds before the total
    error: str | None = None
    cpu_s: float = math.nan  # the workers' CPU time, summed (not the database server's)
    holds: list[float] = field(default_factory=list)  # every worker's, "poptune-optimize"
    finals: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.trials / self.wall_s if self.wall_s > 0 else math.nan


def precreate(library: str, url: str, name: str, total: int, seed: int) -> Callable[[], None]:
    """Create the study in the parent (workers only join it); returns what closes its storage."""
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
        barrier, counter, queue = ctx.Barrier(workers + 1), ctx.Value("l", 0), ctx.Queue()
        procs = [
            ctx.Process(
                target=worker_main,
                args=(job, i, barrier, counter, queue),
                daemon=True,
                name=f"{library}-worker-{i}",
            )  # fmt: skip
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
                reports.append(queue.get(timeout=max(1.0, deadline - time.monotonic())))
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
    return Run(
        trials=trials,
        wall_s=max(r.last for r in ok) - min(r.start for r in ok) if ok else math.nan,
        capped=trials < total,
        error=errors[0] if errors else None,
        cpu_s=sum(r.cpu_s for r in ok),
        holds=[h for r in ok for h in r.holds],
        finals=[f for r in ok for f in r.finals],
    )


def peer(
    library: str, storage: str, workers: list[int], total: int, sleep_s: float, seed: int,
    max_seconds: float, postgres_url: str,
) -> list[dict[str, Any]]:  # fmt: skip
    """One run per worker count, in order (``total``: per worker with a sleeping objective)."""
    backend = SQLiteBackend() if storage == "sqlite" else PostgresBackend(postgres_url)
    out = []
    try:
        for n in workers:
            trials = total * n if sleep_s else total
            run = run_once(backend, library, n, trials, sleep_s, seed, max_seconds)
            cpu_ms = 1e3 * run.cpu_s / run.trials if run.trials else math.nan
            error = run.error.splitlines()[0] if run.error else None
            res = {"workers": n, "trials": run.trials, "rate": run.rate, "cpu_ms": cpu_ms}
            res.update(capped=run.capped, error=error, storage=backend.description)
            out.append(res)
    finally:
        backend.close()
    return out


# -- the case ------------------------------------------------------------------------------------
STORAGES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
#: What runs on each storage, poptune first; Optuna's configurations are case 1's (on SQLite
#: its JournalStorage is a file beside the database's).
CONFIGS = {
    "sqlite": ("poptune", "optuna-rdb", "optuna-wal", "optuna-journal"),
    "postgres": ("poptune", "optuna-rdb"),
}
LABEL = {
    "poptune": "poptune",
    "optuna-rdb": "Optuna RDB (the database's defaults)",
    "optuna-wal": "Optuna RDB (poptune's pragmas: WAL, synchronous=NORMAL)",
    "optuna-journal": "Optuna JournalStorage (JournalFileBackend, a file)",
}
TARGET = ("50 ms", 8, 0.90)  # objective, workers, efficiency (issue 14, item 3)
TARGET_STORAGES = ("postgres", "sqlite")


def run(ctx: Context) -> Section:
    section = Section("throughput", TITLE)
    workers_list = ctx.pick((1, 2, 4, 8), (2,))
    objectives = ctx.pick(("trivial", "50 ms"), ("50 ms",))
    repeats, trivial_total = ctx.repeats_or(2, 1), ctx.pick(600, 200)
    # 100 × 50 ms a worker (5 s): shorter runs weigh the start (every worker asking for its
    # first trial at once) more than a study ever does.
    sleep_per_worker, max_seconds = ctx.pick(100, 15), ctx.pick(8.0, 1.5)
    optuna_ok = ctx.usable("optuna", section)
    runs: dict[tuple[str, str, int, str], list[dict[str, Any]]] = {}
    errors: dict[tuple[str, str], str] = {}  # (configuration, storage) -> first error
    described: dict[str, str] = {}
    for storage in STORAGES:
        configs = [c for c in CONFIGS[storage] if c == "poptune" or optuna_ok]
        for objective in objectives:
            sleep = SLEEP_S if objective == "50 ms" else 0.0
            for r in range(repeats):
                for config in configs:  # every worker count in one process, in turn
                    if (config, storage) in errors:
                        continue
                    args = {"library": config, "storage": storage, "workers": list(workers_list)}
                    args.update(total=sleep_per_worker if sleep else trivial_total, sleep_s=sleep)
                    args.update(seed=2000 + r, max_seconds=max_seconds)
                    args["postgres_url"] = ctx.postgres_url
                    timeout = (max_seconds * 4 + 120) * len(workers_list) + 120
                    out = ctx.run_peer(config.split("-")[0], "c2_throughput", args, timeout)
                    results = out.result if out.ok else [{"error": out.error or "failed"}]
                    for res in results:
                        if res["error"]:
                            errors.setdefault((config, storage), res["error"])
                            log(f"  throughput {config} {storage}: FAILED {res['error']}")
                            continue
                        described[storage], workers = res["storage"], res["workers"]
                        runs.setdefault((storage, objective, workers, config), []).append(res)
                        log(
                            f"  throughput {storage:<8} {objective:<7} {workers} workers "
                            f"repeat {r + 1}/{repeats} {config:<14} {res['rate']:8.1f} trials/s, "
                            f"CPU {res.get('cpu_ms', math.nan):.2f} ms/trial"
                            + (" (capped)" if res["capped"] else "")
                        )
    for (config, storage), error in errors.items():
        section.notes.append(f"{LABEL[config]} on {STORAGES[storage]} failed: {error}")

    def rates(storage: str, objective: str, workers: int, lib: str, key: str = "rate") -> list:
        done = runs.get((storage, objective, workers, lib), [])
        return [x[key] for x in done if x.get(key) is not None]

    rows = []
    for storage in STORAGES:
        for objective in objectives:
            for workers in workers_list:
                p, ideal = med(rates(storage, objective, workers, "poptune")), workers / SLEEP_S
                for config in CONFIGS[storage]:
                    done = runs.get((storage, objective, workers, config), [])
                    if not done:
                        continue
                    o = med(rates(storage, objective, workers, config))
                    cell = spread([x["rate"] for x in done])
                    if any(x["capped"] for x in done):
                        most = min(x["trials"] for x in done)
                        cell += f" (stopped at {max_seconds:g} s: {most:,}+ trials)"
                    eff = f"{o / ideal:.0%}" if objective == "50 ms" and math.isfinite(o) else ""
                    cpu = spread(rates(storage, objective, workers, config, "cpu_ms"))
                    vs = "" if config == "poptune" else ratio(p, o)
                    row = [STORAGES[storage], objective, str(workers), LABEL[config]]
                    rows.append([*row, cell, eff, cpu, vs])
    section.lines += [
        f"Workers: separate processes (spawn) on one study; a fresh database per run; timed "
        f"from a barrier every worker reaches after opening the study (and collecting its "
        f"imports' garbage, so that CPython's first full collection does not fall in the run "
        f"of every worker at once) to the last finished trial. Trivial objective: "
        f"{trivial_total:,} trials a run; 50 ms objective "
        f"(`time.sleep(0.05)`): {sleep_per_worker} × workers trials (ideally "
        f"{sleep_per_worker * SLEEP_S:g} s). A run hands out no trial after {max_seconds:g} s. "
        f"poptune: RandomSearch, `for trial in study`; Optuna: ask/tell, RandomSampler, "
        f"`load_if_exists`, in three configurations on SQLite — its RDB storage on SQLite's "
        "defaults (rollback journal, `synchronous=FULL`), the same with poptune's pragmas "
        "(WAL, `synchronous=NORMAL`, `busy_timeout`), and `JournalStorage(JournalFileBackend)` "
        "on a file in the same folder, which Optuna recommends for several processes on one "
        "machine — and its RDB storage on PostgreSQL. "
        f"Median [min–max] of {repeats} alternating repeat(s); efficiency = trials/s ÷ "
        "(workers / 0.05 s); CPU ms/trial = the workers' CPU time (user + system, from the "
        "barrier to their last trial, summed) / trials — the database server's CPU "
        "(PostgreSQL) is not in it; the ratio is poptune's trials/s over the row's (above 1: "
        "poptune is faster).",
        *[f"- {STORAGES[s]}: {d}" for s, d in described.items()],
        "",
        *table(
            "storage | objective | workers | library (configuration) | trials/s | efficiency | "
            "workers' CPU ms/trial | ratio poptune/this, trials/s",
            rows,
        ),
    ]

    def draw(plt: Any) -> None:
        _, axes = plt.subplots(1, len(STORAGES), figsize=(10, 4), sharey=True)
        for ax, storage in zip(axes, STORAGES, strict=True):
            for i, lib in enumerate(CONFIGS[storage]):
                for objective in objectives:
                    xs = [w for w in workers_list if rates(storage, objective, w, lib)]
                    ys = [med(rates(storage, objective, w, lib)) for w in xs]
                    line = "o-" if objective == "trivial" else "o--"
                    if xs:
                        ax.plot(xs, ys, line, color=f"C{i}", label=f"{LABEL[lib]}, {objective}")
            if "50 ms" in objectives:
                ideal = [w / SLEEP_S for w in workers_list]
                ax.plot(workers_list, ideal, ":", color="grey", label="ideal, 50 ms")
            first = ax is axes[0]
            ylabel = "trials per second (median)" if first else ""
            style(ax, "worker processes", ylabel, STORAGES[storage], logy=True,
                  legend=6 if first else None)  # fmt: skip
            ax.set_xticks(list(workers_list))

    section.lines += figure(ctx, "throughput", draw, "trials per second against workers")

    objective, workers, goal = TARGET
    for storage in TARGET_STORAGES:
        what = (
            f"poptune ≥ {goal:.0%} of the ideal throughput with the 50 ms objective and "
            f"{workers} workers on {STORAGES[storage]}"
        )
        got = rates(storage, objective, workers, "poptune")
        if not got:
            section.target(what, None, "that configuration was not run")
            continue
        eff = med(got) / (workers / SLEEP_S)
        detail = f"{eff:.1%} of ideal ({fmt(med(got))} trials/s)"  # 89.96% is not 90%
        if eff < goal:
            detail += (
                f"; on {ctx.cpus} cores the {workers} workers, the database server and "
                "the harness share the CPU"
            )
        section.target(what, eff >= goal, detail)
    return section
