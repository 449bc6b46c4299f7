"""Per-trial library overhead of poptune and its peers, measured side by side in one run.

The objective is trivial, so what is timed is the library: asking for a trial (sampling three
parameters: a log-scale float, an int and a categorical), reporting its objective and
finishing it, in memory and on an SQLite file (a fresh file per run). Each trial is timed
with ``time.perf_counter``; trial i spans from the end of trial i-1 to the end of its own
bookkeeping, so the time spent asking the library for the trial is included and nothing
between trials is lost. The libraries run alternately (poptune, optuna, poptune, optuna, ...)
and the median over repeats is reported.

Python's cyclic garbage collector stays enabled (it is part of a library's real cost); a
``gc.callbacks`` meter measures how much of each window it takes, in a second table.

Run from the repository root::

    python benchmarks/overhead.py                  # memory and SQLite, 3 repeats (~5 min)
    python -m benchmarks.overhead --quick          # n = 1,000 and 5,000; 1 repeat (~1 min)
    python benchmarks/overhead.py --storage memory --sizes 2000 20000 --repeats 5
    python benchmarks/overhead.py --storage sqlite --markdown sqlite.md

In memory the sizes are 1,000, 10,000 and 50,000 trials; on SQLite 1,000 and 10,000. A case
whose single run at a size would exceed ``--case-budget`` seconds (Optuna on SQLite costs
20-40 ms a trial: 10,000 trials take minutes) runs as many trials as fit in the budget, once,
and the table says how many.

Adding a case (a storage, a peer): write ``def case(n, seed) -> list[float]`` returning the
per-trial seconds (use :class:`Laps` to get the GC breakdown too) and decorate it with
:func:`register` (``storage=`` puts it in that storage's table). Case names are the table's
column labels.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

if importlib.util.find_spec("poptune") is None:  # a checkout that was not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

# -- the problem -----------------------------------------------------------------------------
LR_RANGE = (1e-5, 1e-1)
UNITS_RANGE = (8, 256)
ACTIVATIONS = ["relu", "tanh", "sigmoid"]

STORAGES = ("memory", "sqlite")
STORAGE_TITLES = {"memory": "In memory", "sqlite": "SQLite storage"}
DEFAULT_SIZES = {"memory": (1_000, 10_000, 50_000), "sqlite": (1_000, 10_000)}
QUICK_SIZES = {"memory": (1_000, 5_000), "sqlite": (1_000, 5_000)}
DEFAULT_REPEATS = 3
DEFAULT_SEED = 12345
WARMUP_TRIALS = 200
DEFAULT_CASE_BUDGET_S = 120.0
QUICK_CASE_BUDGET_S = 20.0


# -- targets (poptune, per storage) ------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """What poptune's case of one storage must meet.

    Attributes:
        case: poptune's case (the reference column; ratios are it over each peer).
        ms_per_trial: the most ms per trial at any size (median over repeats).
        growth: the most its last 10% may cost relative to its first 10%, at any size; with
            several sizes also the most its ms/trial may grow from the smallest to the largest.
        peer: a peer case, and ``max_ratio`` the largest poptune/peer ratio of ms per trial.
    """

    case: str
    ms_per_trial: float
    growth: float
    peer: str | None = None
    max_ratio: float | None = None


TARGETS = {
    "memory": Target("poptune", 0.05, 1.5),
    "sqlite": Target("poptune-sqlite", 3.0, 1.5, peer="optuna-sqlite", max_ratio=0.1),
}


def objective(lr: float, units: int, act: str) -> float:
    """A trivial objective; both libraries call it once per trial."""
    return (math.log10(lr) + 3.0) ** 2 + units / 256.0 + (0.0 if act == "relu" else 0.1)


# -- measuring -------------------------------------------------------------------------------
class GCMeter:
    """Cumulative time spent in Python's cyclic garbage collector (through ``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1

    def __enter__(self) -> GCMeter:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


GC_METER = GCMeter()


class BudgetSpent(Exception):
    """Raised by ``lap()`` once a run has used its time budget (long runs only)."""


class Laps(list):
    """Per-trial seconds (the list itself) and the GC seconds inside each trial.

    Call :meth:`start` just before the trial loop, ``lap()`` at the end of every trial and
    :meth:`finish` after the loop; return the object from the case function.

    For a run that may exceed ``--case-budget`` the runner sets :attr:`budget_s`; ``lap()``
    then raises :class:`BudgetSpent` at the first trial that ends past the budget, and the
    runner keeps the trials timed so far (:attr:`current`). Other runs time with a ``lap()``
    that has no check at all.
    """

    budget_s: ClassVar[float] = math.inf  # set by the runner around one run
    current: ClassVar[Laps | None] = None  # the Laps of the run in progress

    def __init__(self) -> None:
        super().__init__()
        Laps.current = self
        self.gc_seconds: list[float] = []
        self.cpu_seconds = math.nan  # process CPU time from start() to finish()
        self._cpu0 = math.nan
        stamps: list[float] = []
        gcs: list[float] = []
        self._stamps, self._gcs = stamps, gcs
        self._limit = [math.inf]  # perf_counter time after which lap() raises
        add_stamp, add_gc, clock, meter = stamps.append, gcs.append, time.perf_counter, GC_METER

        if Laps.budget_s == math.inf:

            def lap() -> None:
                add_gc(meter.seconds)
                add_stamp(clock())

        else:
            limit = self._limit

            def lap() -> None:
                add_gc(meter.seconds)
                now = clock()
                add_stamp(now)
                if now > limit[0]:
                    raise BudgetSpent

        self.lap: Callable[[], None] = lap

    def start(self) -> Callable[[], None]:
        """Take the first time stamp; returns ``lap``."""
        self._stamps.clear()
        self._gcs.clear()
        self._cpu0 = time.process_time()
        self.lap()
        self._limit[0] = self._stamps[0] + Laps.budget_s
        return self.lap

    def finish(self) -> Laps:
        if math.isnan(self.cpu_seconds):
            self.cpu_seconds = time.process_time() - self._cpu0
        s, g = self._stamps, self._gcs
        self[:] = [b - a for a, b in zip(s[:-1], s[1:], strict=True)]
        self.gc_seconds = [b - a for a, b in zip(g[:-1], g[1:], strict=True)]
        return self


# -- the case registry -----------------------------------------------------------------------
CaseFunc = Callable[[int, int], Sequence[float]]


@dataclass(frozen=True)
class Case:
    """One column of the table: a library in one configuration.

    Attributes:
        name: column label, e.g. ``"poptune"`` or ``"optuna"`` (later ``"poptune-sqlite"``).
        library: the module whose presence and version matter (the case is skipped if it
            cannot be imported).
        storage: ``"memory"`` here; a storage case says which (``"sqlite"``).
        run: ``run(n, seed)`` runs ``n`` trials and returns the per-trial seconds.
        install: what to tell the user when ``library`` is missing.
    """

    name: str
    library: str
    storage: str
    run: CaseFunc
    install: str = ""

    @property
    def available(self) -> bool:
        try:
            return importlib.util.find_spec(self.library) is not None
        except (ImportError, ValueError):
            return False


CASES: dict[str, Case] = {}


def register(
    name: str, library: str, storage: str = "memory", install: str = ""
) -> Callable[[CaseFunc], CaseFunc]:
    """Decorator adding ``run(n, seed) -> per-trial seconds`` to :data:`CASES`."""

    def decorate(run: CaseFunc) -> CaseFunc:
        if name in CASES:
            raise ValueError(f"benchmark case {name!r} is registered twice")
        CASES[name] = Case(name, library, storage, run, install)
        return run

    return decorate


def run_poptune(n: int, seed: int, **study_kwargs: Any) -> Laps:
    """n trials of a fresh poptune study (``study_kwargs``: storage and study name)."""
    import poptune
    from poptune import Choice, Continuous, Discrete

    study = poptune.Study(
        [
            Continuous("lr", list(LR_RANGE), "log"),
            Discrete("units", list(UNITS_RANGE)),
            Choice("act", ACTIVATIONS),
        ],
        poptune.algorithms.RandomSearch(max_num_trials=n),
        lower_is_better=True,
        seed=seed,
        **study_kwargs,
    )
    laps = Laps()
    lap = laps.start()
    for trial in study:
        p = trial.parameters
        study.add_observation(
            trial, objective=objective(p["lr"], p["units"], p["act"]), iteration=1
        )
        study.finalize(trial)
        lap()
    return laps.finish()


def run_optuna(n: int, seed: int, storage: Any = None) -> Laps:
    """n ask/tell trials of a fresh Optuna study (``storage``: a database URL, an Optuna storage
    object, or None for memory)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=seed))
    laps = Laps()
    lap = laps.start()
    for _ in range(n):
        t = study.ask()
        lr = t.suggest_float("lr", LR_RANGE[0], LR_RANGE[1], log=True)
        units = t.suggest_int("units", UNITS_RANGE[0], UNITS_RANGE[1])
        act = t.suggest_categorical("act", ACTIVATIONS)
        study.tell(t, objective(lr, units, act))
        lap()
    return laps.finish()


@register("poptune", library="poptune")
def poptune_memory(n: int, seed: int) -> Laps:
    return run_poptune(n, seed)


@register("optuna", library="optuna", install="pip install optuna")
def optuna_memory(n: int, seed: int) -> Laps:
    return run_optuna(n, seed)


# A fresh database file per run, in a temporary directory removed after the run; creating
# the study (and the file's tables) happens before the timed loop.
@register("poptune-sqlite", library="poptune", storage="sqlite")
def poptune_sqlite(n: int, seed: int) -> Laps:
    with tempfile.TemporaryDirectory(prefix="poptune-bench-", ignore_cleanup_errors=True) as tmp:
        url = f"sqlite:///{Path(tmp, 'poptune.db').as_posix()}"
        return run_poptune(n, seed, storage=url, study_name="overhead")


@register("optuna-sqlite", library="optuna", storage="sqlite", install="pip install optuna")
def optuna_sqlite(n: int, seed: int) -> Laps:
    """Optuna's RDB storage on SQLite's defaults (rollback journal, ``synchronous=FULL``)."""
    with tempfile.TemporaryDirectory(prefix="poptune-bench-", ignore_cleanup_errors=True) as tmp:
        return run_optuna(n, seed, storage=f"sqlite:///{Path(tmp, 'optuna.db').as_posix()}")


#: The SQLite settings poptune's SQLStorage uses (poptune.storage._statements.SQLITE_PRAGMAS:
#: a write-ahead log, fsync at checkpoints only, a 60 s busy wait), given to Optuna too so
#: that the two libraries are compared at the same durability. (foreign_keys=ON, poptune's
#: fourth pragma, is a cost poptune pays and Optuna's schema does not ask for.)
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=60000",
)


def optuna_rdb_with_pragmas(path: str | Path) -> Any:
    """Optuna's RDBStorage on the SQLite file ``path`` with :data:`SQLITE_PRAGMAS` set on every
    connection (through SQLAlchemy's ``creator``, passed in Optuna's ``engine_kwargs``)."""
    import sqlite3

    import optuna

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(str(path), timeout=60.0, check_same_thread=False)
        for pragma in SQLITE_PRAGMAS:
            conn.execute(pragma)
        return conn

    url = f"sqlite:///{Path(path).as_posix()}"
    return optuna.storages.RDBStorage(url, engine_kwargs={"creator": connect})


def optuna_journal(path: str | Path) -> Any:
    """Optuna's ``JournalStorage(JournalFileBackend(path))``: Optuna's recommended storage for
    several processes on one machine (an append-only log file, a symlink lock)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


@register("optuna-sqlite-wal", library="optuna", storage="sqlite", install="pip install optuna")
def optuna_sqlite_wal(n: int, seed: int) -> Laps:
    """Optuna's RDB storage on SQLite with poptune's pragmas (WAL, ``synchronous=NORMAL``)."""
    with tempfile.TemporaryDirectory(prefix="poptune-bench-", ignore_cleanup_errors=True) as tmp:
        return run_optuna(n, seed, storage=optuna_rdb_with_pragmas(Path(tmp, "optuna.db")))


@register("optuna-journal", library="optuna", storage="sqlite", install="pip install optuna")
def optuna_journal_file(n: int, seed: int) -> Laps:
    """Optuna's JournalStorage on a file (shown in the SQLite table: a file on one disk)."""
    with tempfile.TemporaryDirectory(prefix="poptune-bench-", ignore_cleanup_errors=True) as tmp:
        return run_optuna(n, seed, storage=optuna_journal(Path(tmp, "optuna.log")))


# -- statistics ------------------------------------------------------------------------------
@dataclass
class Run:
    """One run of one case: figures in ms per trial."""

    n: int
    total: float
    first: float
    last: float
    wall_s: float
    cpu_total: float = math.nan  # process CPU ms per trial (Laps cases; NaN otherwise)
    has_gc: bool = False  # the case returned Laps: the gc_* figures are measured
    gc_total: float = math.nan
    gc_first: float = math.nan
    gc_last: float = math.nan
    collections: tuple[int, int, int] = (0, 0, 0)

    @property
    def growth(self) -> float:
        return self.last / self.first

    @property
    def growth_without_gc(self) -> float:
        return (self.last - self.gc_last) / (self.first - self.gc_first)


def summarize(seconds: Sequence[float], n: int, wall_s: float, stopped: bool = False) -> Run:
    if len(seconds) != n and not (stopped and 0 < len(seconds) < n):
        raise RuntimeError(f"the case timed {len(seconds)} trials instead of {n}")
    n = len(seconds)
    k = max(1, n // 10)

    def ms(values: Sequence[float]) -> float:
        return 1e3 * math.fsum(values) / len(values)

    run = Run(n, ms(seconds), ms(seconds[:k]), ms(seconds[-k:]), wall_s)
    cpu = getattr(seconds, "cpu_seconds", math.nan)
    run.cpu_total = 1e3 * cpu / n
    gcs = getattr(seconds, "gc_seconds", None)
    if gcs is not None and len(gcs) == n:
        run.gc_total, run.gc_first, run.gc_last = ms(gcs), ms(gcs[:k]), ms(gcs[-k:])
        run.has_gc = True
    return run


def measure(case: Case, n: int, seed: int, caught: list[str], budget_s: float = math.inf) -> Run:
    """Run ``case`` once with a clean heap; warnings are collected into ``caught``.

    With a finite ``budget_s`` the run stops at the first trial ending past it (if the case
    times with :class:`Laps`); the returned run then has fewer than ``n`` trials.
    """
    gc.collect()
    before = list(GC_METER.collections)
    stopped = False
    Laps.budget_s, Laps.current = budget_s, None
    try:
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            started = time.perf_counter()
            try:
                seconds: Sequence[float] = case.run(n, seed)
            except BudgetSpent:
                if Laps.current is None:  # pragma: no cover - raised by another Laps?
                    raise
                seconds, stopped = Laps.current.finish(), True
            wall_s = time.perf_counter() - started
    finally:
        Laps.budget_s, Laps.current = math.inf, None
    caught.extend(f"{case.name}: {r.category.__name__}: {r.message}" for r in records)
    run = summarize(seconds, n, wall_s, stopped)
    after = GC_METER.collections
    run.collections = (after[0] - before[0], after[1] - before[1], after[2] - before[2])
    del seconds
    gc.collect()
    return run


@dataclass
class Results:
    cases: list[Case]
    sizes: dict[str, list[int]]  # per storage
    repeats: int
    runs: dict[tuple[str, int], list[Run]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)  # per storage
    warnings: list[str] = field(default_factory=list)

    def of(self, case: str, n: int) -> list[Run]:
        return self.runs.get((case, n), [])

    @property
    def storages(self) -> list[str]:
        return [s for s in STORAGES if any(c.storage == s for c in self.cases)]

    def cases_of(self, storage: str) -> list[Case]:
        return [c for c in self.cases if c.storage == storage]

    def note(self, storage: str, text: str) -> None:
        self.notes.setdefault(storage, []).append(text)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_all(
    cases: list[Case],
    sizes: dict[str, list[int]],
    repeats: int,
    seed: int,
    case_budget_s: float,
) -> Results:
    """Run every case of every storage at every size, the cases of a storage in turn.

    A case whose one run at a size is expected (from its latest run) to exceed
    ``case_budget_s`` runs once, with as many trials as fit in the budget (runs expected to
    take half the budget are stopped there too); a case whose repeats would exceed it runs
    fewer repeats.
    """
    results = Results(cases, sizes, repeats)
    with GC_METER:
        for storage in results.storages:
            chosen = results.cases_of(storage)
            ms_estimate = {}
            for case in chosen:  # imports, first-call caches: outside the measured runs
                ms_estimate[case.name] = measure(case, WARMUP_TRIALS, seed, results.warnings).total
            for n in sizes[storage]:
                allowed = {case.name: repeats for case in chosen}
                expected_s = {c.name: n * ms_estimate[c.name] / 1e3 for c in chosen}
                for case in chosen:
                    if expected_s[case.name] > case_budget_s:
                        allowed[case.name] = 1
                for r in range(repeats):
                    for case in chosen:
                        if r >= allowed[case.name]:
                            continue
                        # A run that may pass the budget is stopped there (see Laps).
                        limit = case_budget_s if expected_s[case.name] > case_budget_s / 2 else None
                        run = measure(case, n, seed + r, results.warnings, limit or math.inf)
                        results.runs.setdefault((case.name, n), []).append(run)
                        ms_estimate[case.name] = run.total
                        if run.n < n:  # no further repeat: each would take the budget
                            allowed[case.name] = r + 1
                            results.note(
                                storage,
                                f"{case.name} at n = {n:,} (repeat {r + 1}): stopped at "
                                f"--case-budget {case_budget_s:.0f} s after {run.n:,} of "
                                f"{n:,} trials (all {n:,} were expected to take "
                                f"~{expected_s[case.name]:.0f} s); its figures are those "
                                f"{run.n:,} trials'",
                            )
                        shown = f"{n:,}" if run.n == n else f"{run.n:,} of {n:,}"
                        progress(
                            f"  {storage:<6}  n={shown:>7}  repeat {r + 1}/{allowed[case.name]}"
                            f"  {case.name:<14} {run.total:8.4f} ms/trial  ({run.wall_s:.1f} s)"
                        )
                        if (
                            r == 0
                            and allowed[case.name] > 1
                            and run.wall_s * repeats > case_budget_s
                        ):
                            allowed[case.name] = max(1, int(case_budget_s // run.wall_s))
                for case in chosen:
                    runs = results.of(case.name, n)
                    if len(runs) < repeats and all(run.n == n for run in runs):
                        results.note(
                            storage,
                            f"{case.name} at n = {n:,}: {len(runs)} of {repeats} repeats "
                            f"(one took {max(run.wall_s for run in runs):.0f} s; --case-budget "
                            f"{case_budget_s:.0f} s per case and size)",
                        )
    return results


# -- the report ------------------------------------------------------------------------------
def fmt_ms(value: float) -> str:
    return f"{value:.4f}" if value < 1 else f"{value:.3f}" if value < 10 else f"{value:.1f}"


def fmt_ratio(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def version_of(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - not installed, or an odd install
        try:
            return str(importlib.import_module(module).__version__)
        except Exception:  # noqa: BLE001
            return "not installed"


def load_average() -> float | None:
    """The 1-minute load average (None where the system has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


LOAD_AT_START: list[float | None] = [None]


def environment_lines() -> list[str]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    start, end = LOAD_AT_START[0], load_average()
    load = (
        [
            f"- load average (1 min): {start:.1f} at the start, {end:.1f} at the end (other "
            "processes on the machine make the figures drift)"
        ]
        if start is not None and end is not None
        else []
    )
    return [
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"numpy {version_of('numpy')}, poptune {version_of('poptune')}, "
        f"optuna {version_of('optuna')}",
        f"- CPUs: {os.cpu_count()} (usable by this process: {usable}); "
        f"{platform.system()} {platform.machine()}",
        f"- gc thresholds {gc.get_threshold()}, cyclic GC enabled in all runs",
        *load,
    ]


def main_table(results: Results, storage: str) -> list[str]:
    cases = [c.name for c in results.cases_of(storage)]
    target = TARGETS[storage]
    ref = target.case if target.case in cases else None
    peers = [c for c in cases if c != ref]
    header = ["n"] + [f"{c} ms/trial (median [min–max])" for c in cases]
    header += [f"{c} CPU ms/trial" for c in cases]
    if ref is not None:
        header += [f"ratio {ref}/{p}" for p in peers]
    header += [f"{c} first 10% / last 10% ms (growth × [min–max])" for c in cases]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for n in results.sizes[storage]:
        row = [f"{n:,}"]
        for c in cases:
            runs = results.of(c, n)
            totals = [r.total for r in runs]
            extra = []
            if any(r.n != n for r in runs):
                done = ", ".join(f"{r.n:,}" for r in runs)
                extra.append(f"stopped by the budget: {done} of {n:,} trials")
            if len(runs) != results.repeats:
                extra.append(f"{len(runs)} rep.")
            row.append(
                f"{fmt_ms(median(totals))} [{fmt_ms(min(totals))}–{fmt_ms(max(totals))}]"
                + (f" ({'; '.join(extra)})" if extra else "")
            )
        for c in cases:
            row.append(fmt_ms(median([r.cpu_total for r in results.of(c, n)])))
        if ref is not None:
            mine = median([r.total for r in results.of(ref, n)])
            for p in peers:
                row.append(fmt_ratio(mine / median([r.total for r in results.of(p, n)])))
        for c in cases:
            runs = results.of(c, n)
            growths = [r.growth for r in runs]
            spread = f" [{min(growths):.2f}–{max(growths):.2f}]" if len(runs) > 1 else ""
            row.append(
                f"{fmt_ms(median([r.first for r in runs]))} / "
                f"{fmt_ms(median([r.last for r in runs]))} "
                f"({median(growths):.2f}×{spread})"
            )
        lines.append("| " + " | ".join(row) + " |")
    return lines


def gc_table(results: Results, storage: str) -> list[str]:
    header = [
        "n",
        "case",
        "GC µs/trial: first 10% / last 10%",
        "GC share of total time",
        "growth × / without GC ×",
        "collections gen0 / gen1 / gen2",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for n in results.sizes[storage]:
        for case in results.cases_of(storage):
            runs = [r for r in results.of(case.name, n) if r.has_gc]
            if not runs:
                continue
            gens = [median([r.collections[g] for r in runs]) for g in range(3)]
            lines.append(
                f"| {n:,} | {case.name} | "
                f"{1e3 * median([r.gc_first for r in runs]):.2f} / "
                f"{1e3 * median([r.gc_last for r in runs]):.2f} | "
                f"{100 * median([r.gc_total / r.total for r in runs]):.1f}% | "
                f"{median([r.growth for r in runs]):.2f} / "
                f"{median([r.growth_without_gc for r in runs]):.2f} | "
                + " / ".join(f"{g:g}" for g in gens)
                + " |"
            )
    return lines


def target_lines(results: Results, storage: str) -> list[str]:
    target = TARGETS[storage]
    where = "in memory" if storage == "memory" else f"on {STORAGE_TITLES[storage].split()[0]}"
    names = [c.name for c in results.cases_of(storage)]
    if target.case not in names:
        return [f"Targets: not evaluated ({target.case} was not run)."]
    sizes = results.sizes[storage]
    ms_of = {n: median([r.total for r in results.of(target.case, n)]) for n in sizes}
    growth_of = {n: median([r.growth for r in results.of(target.case, n)]) for n in sizes}
    parts, all_met = [], True

    def verdict(failures: list[str], met: str) -> str:
        nonlocal all_met
        if failures:
            all_met = False
            return "NOT met (" + "; ".join(failures) + ")"
        return f"met ({met})"

    speed = verdict(
        [f"n = {n:,}: {fmt_ms(ms_of[n])} ms" for n in sizes if ms_of[n] > target.ms_per_trial],
        f"worst median {fmt_ms(max(ms_of.values()))} ms",
    )
    parts.append(f"poptune {where} ≤ {target.ms_per_trial:g} ms per trial: {speed}")
    growth = verdict(
        [f"n = {n:,}: {growth_of[n]:.2f}×" for n in sizes if growth_of[n] > target.growth],
        f"worst median {max(growth_of.values()):.2f}×",
    )
    parts.append(f"poptune's last 10% no slower than {target.growth:g}× its first 10%: {growth}")
    if storage != "memory" and len(sizes) > 1:
        lo, hi = min(sizes), max(sizes)
        across = ms_of[hi] / ms_of[lo]
        flat = verdict([f"{across:.2f}×"] if across > target.growth else [], f"{across:.2f}×")
        parts.append(
            f"flat from {lo:,} to {hi:,} trials (ms/trial at {hi:,} ≤ {target.growth:g}× that "
            f"at {lo:,}): {flat}"
        )
    if target.peer is not None and target.max_ratio is not None:
        if target.peer in names:
            ratios = {
                n: ms_of[n] / median([r.total for r in results.of(target.peer, n)]) for n in sizes
            }
            ratio = verdict(
                [f"n = {n:,}: {fmt_ratio(v)}" for n, v in ratios.items() if v > target.max_ratio],
                f"worst {fmt_ratio(max(ratios.values()))}",
            )
        else:
            ratio = f"not evaluated ({target.peer} was not run)"
        parts.append(
            f"≤ {target.max_ratio:g}× {target.peer}'s ms per trial (ratio of medians): {ratio}"
        )
    met = "all targets met" if all_met else "targets NOT all met"
    return [f"**Targets ({met}):** " + "; ".join(parts) + "."]


def gc_notes(results: Results, storage: str) -> list[str]:
    """Say, for every case and size whose last 10% is notably slower, how much is GC."""
    notes = []
    for n in results.sizes[storage]:
        for case in results.cases_of(storage):
            runs = [r for r in results.of(case.name, n) if r.has_gc]
            growth = median([r.growth for r in runs]) if runs else 0.0
            if growth < 1.2:
                continue
            extra = 1e3 * median([r.last - r.first for r in runs])
            gc_extra = 1e3 * median([r.gc_last - r.gc_first for r in runs])
            without = median([r.growth_without_gc for r in runs])
            verdict = (
                "the growth is the cyclic GC's"
                if gc_extra >= 0.5 * extra
                else "the growth is not the GC's: the library itself, or machine noise if the "
                "repeats disagree"
            )
            notes.append(
                f"- {case.name}, n = {n:,}: the last 10% is {growth:.2f}× the first "
                f"({extra:+.1f} µs/trial), of which the GC takes {gc_extra:+.1f} µs/trial; "
                f"without GC time the growth is {without:.2f}×: {verdict}."
            )
    return notes


STORAGE_DESCRIPTIONS = {
    "memory": "in-memory storage (poptune's default; Optuna's `InMemoryStorage`)",
    "sqlite": "a fresh SQLite file per run in a temporary directory, created with the study "
    'before the timed loop: poptune `Study(..., storage="sqlite:///<tmp>/poptune.db", '
    "study_name=...)` with its default heartbeats (every 10 s); Optuna "
    '`create_study(storage="sqlite:///<tmp>/optuna.db", sampler=RandomSampler(seed))`, '
    "ask/tell",
}


def render(results: Results, skipped: list[str], args: argparse.Namespace) -> str:
    out = [
        "## Per-trial library overhead (trivial objective; 3 parameters: log-float, int, "
        "categorical)",
        "",
        *environment_lines(),
        f"- {results.repeats} repeat{'s' if results.repeats > 1 else ''} per case and size "
        f"(fewer, or fewer trials, where --case-budget {args.case_budget:g} s says so); "
        f"seed {args.seed}+repeat; the cases of a storage run in turn; each trial timed with "
        f"perf_counter (ask + objective + report)",
        *[f"- **Note: {note}**" for note in skipped],
    ]
    for storage in results.storages:
        sizes = results.sizes[storage]
        out += [
            "",
            f"### {STORAGE_TITLES[storage]}",
            "",
            f"- sizes {', '.join(f'{n:,}' for n in sizes)}; cases run in turn: "
            f"{', '.join(c.name for c in results.cases_of(storage))}",
            f"- {STORAGE_DESCRIPTIONS[storage]}",
            *[f"- Note: {note}" for note in results.notes.get(storage, [])],
            "",
            *main_table(results, storage),
            "",
            *target_lines(results, storage),
            "",
            "Time in Python's cyclic garbage collector (measured with `gc.callbacks`; included "
            "in the figures above):",
            "",
            *gc_table(results, storage),
        ]
        notes = gc_notes(results, storage)
        if notes:
            out += ["", *notes]
    if results.warnings:
        out += [
            "",
            f"- Note: {len(results.warnings)} warning(s) were raised during the runs "
            f"(first: {results.warnings[0]})",
        ]
    return "\n".join(out) + "\n"


# -- command line ----------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/overhead.py",
        description="Per-trial library overhead of poptune and its peers, side by side, in "
        "memory and on SQLite.",
    )
    parser.add_argument(
        "--storage",
        choices=["memory", "sqlite", "all"],
        default="all",
        help="which storage's cases to run (default: all)",
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        metavar="N",
        help="numbers of trials, for every storage run (default: memory 1000 10000 50000, "
        "SQLite 1000 10000; with --quick: 1000 5000)",
    )
    parser.add_argument(
        "--repeats", type=int, help="runs of each case per size (default 3; with --quick: 1)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="n = 1,000 and 5,000, one repeat, --case-budget 20 (a smoke run)",
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=sorted(CASES),
        help=f"cases to run, in this order (default: all of the chosen storages: "
        f"{', '.join(CASES)})",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="base seed (+ repeat)")
    parser.add_argument(
        "--case-budget",
        type=float,
        metavar="SECONDS",
        help="if one run of a case at a size would take longer than this, run it once with as "
        "many trials as fit; if its repeats would, run fewer (at least one); the report says "
        f"so (default {DEFAULT_CASE_BUDGET_S:g}; with --quick: {QUICK_CASE_BUDGET_S:g})",
    )
    parser.add_argument("--markdown", metavar="PATH", help="also write the report to this file")
    args = parser.parse_args(argv)
    storages = list(STORAGES) if args.storage == "all" else [args.storage]
    defaults = QUICK_SIZES if args.quick else DEFAULT_SIZES
    args.sizes_of = {s: list(args.sizes or defaults[s]) for s in storages}
    if args.repeats is None:
        args.repeats = 1 if args.quick else DEFAULT_REPEATS
    if args.case_budget is None:
        args.case_budget = QUICK_CASE_BUDGET_S if args.quick else DEFAULT_CASE_BUDGET_S
    if args.sizes is not None and any(n < 10 for n in args.sizes):
        parser.error("--sizes: every size must be at least 10 (the windows are 10% of it)")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.case_budget <= 0:
        parser.error("--case-budget must be positive")
    chosen = args.cases or list(CASES)
    args.chosen = [name for name in chosen if CASES[name].storage in storages]
    if not args.chosen:
        parser.error(f"none of the cases {chosen} uses the storage {args.storage!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    LOAD_AT_START[0] = load_average()
    cases, skipped = [], []
    for case in (CASES[name] for name in args.chosen):
        if case.available:
            cases.append(case)
        else:
            hint = f": `{case.install}` to compare" if case.install else ""
            skipped.append(f"{case.name} is not installed, so it was not run{hint}.")
    for note in skipped:
        print(f"note: {note}", file=sys.stderr)
    if not cases:
        print("error: none of the chosen cases can run", file=sys.stderr)
        return 1
    sizes = {s: n for s, n in args.sizes_of.items() if any(c.storage == s for c in cases)}
    print(
        f"running {', '.join(c.name for c in cases)}; "
        + "; ".join(f"{s}: n = {', '.join(f'{n:,}' for n in ns)}" for s, ns in sizes.items())
        + f"; {args.repeats} repeat(s), --case-budget {args.case_budget:g} s...",
        file=sys.stderr,
        flush=True,
    )
    results = run_all(cases, sizes, args.repeats, args.seed, args.case_budget)
    report = render(results, skipped, args)
    print(report, end="")
    if args.markdown:
        Path(args.markdown).write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
