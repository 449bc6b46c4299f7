"""The per-trial overhead workload of case 1 (``python -m benchmarks --cases 1``): poptune's
and its peers' loops on a trivial three-parameter problem, and how each trial is timed
(:class:`Laps`; the method is in ``benchmarks/README.md`` and on the page). This module only
measures: ``benchmarks/cases/c1_overhead.py`` runs it through
``benchmarks/peers/overhead_peer.py`` in each library's virtualenv. A new configuration is a
``def case(n, seed) -> Laps`` decorated with :func:`register` (and named in case 1's ``CONFIGS``).
"""

from __future__ import annotations

import gc
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

# -- the problem -----------------------------------------------------------------------------
LR_RANGE = (1e-5, 1e-1)
UNITS_RANGE = (8, 256)
ACTIVATIONS = ["relu", "tanh", "sigmoid"]

WARMUP_TRIALS = 200


def objective(lr: float, units: int, act: str) -> float:
    """A trivial objective; both libraries call it once per trial."""
    return (math.log10(lr) + 3.0) ** 2 + units / 256.0 + (0.0 if act == "relu" else 0.1)


def trial_value(trial: Any) -> float:
    """:func:`objective` of a poptune (or SHERPA) trial's parameters."""
    p = trial.parameters
    return objective(p["lr"], p["units"], p["act"])


def optuna_value(t: Any) -> float:
    """Sample the three parameters on an Optuna trial and return :func:`objective` of them."""
    lr = t.suggest_float("lr", LR_RANGE[0], LR_RANGE[1], log=True)
    units = t.suggest_int("units", UNITS_RANGE[0], UNITS_RANGE[1])
    return objective(lr, units, t.suggest_categorical("act", ACTIVATIONS))


def poptune_space() -> list[Any]:
    """The three parameters as poptune parameters."""
    from poptune import Choice, Continuous, Discrete

    return [
        Continuous("lr", list(LR_RANGE), "log"),
        Discrete("units", list(UNITS_RANGE)),
        Choice("act", ACTIVATIONS),
    ]


def poptune_study(total: int, seed: int, **study_kwargs: Any) -> Any:
    """A poptune study of the three parameters, ``RandomSearch(max_num_trials=total)``
    (``study_kwargs``: storage and study name)."""
    import poptune

    return poptune.Study(
        poptune_space(),
        poptune.algorithms.RandomSearch(max_num_trials=total),
        lower_is_better=True,
        seed=seed,
        **study_kwargs,
    )


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


#: name -> ``run(n, seed)``: one library in one configuration, ``n`` trials, per-trial seconds
CASES: dict[str, CaseFunc] = {}


def register(name: str) -> Callable[[CaseFunc], CaseFunc]:
    """Decorator adding ``run(n, seed) -> per-trial seconds`` to :data:`CASES` as ``name``."""

    def decorate(run: CaseFunc) -> CaseFunc:
        if name in CASES:
            raise ValueError(f"benchmark case {name!r} is registered twice")
        CASES[name] = run
        return run

    return decorate


def run_poptune(n: int, seed: int, **study_kwargs: Any) -> Laps:
    """n trials of a fresh poptune study (``study_kwargs``: storage and study name)."""
    study = poptune_study(n, seed, **study_kwargs)
    laps = Laps()
    lap = laps.start()
    for trial in study:
        study.add_observation(trial, objective=trial_value(trial), iteration=1)
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
        study.tell(t, optuna_value(t))
        lap()
    return laps.finish()


@register("poptune")
def poptune_memory(n: int, seed: int) -> Laps:
    return run_poptune(n, seed)


@register("optuna")
def optuna_memory(n: int, seed: int) -> Laps:
    return run_optuna(n, seed)


# A fresh database file per run, in a temporary directory removed after the run; creating
# the study (and the file's tables) happens before the timed loop.
@register("poptune-sqlite")
def poptune_sqlite(n: int, seed: int) -> Laps:
    with tempfile.TemporaryDirectory(prefix="poptune-bench-", ignore_cleanup_errors=True) as tmp:
        url = f"sqlite:///{Path(tmp, 'poptune.db').as_posix()}"
        return run_poptune(n, seed, storage=url, study_name="overhead")


@register("optuna-sqlite")
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


@register("optuna-sqlite-wal")
def optuna_sqlite_wal(n: int, seed: int) -> Laps:
    """Optuna's RDB storage on SQLite with poptune's pragmas (WAL, ``synchronous=NORMAL``)."""
    with tempfile.TemporaryDirectory(prefix="poptune-bench-", ignore_cleanup_errors=True) as tmp:
        return run_optuna(n, seed, storage=optuna_rdb_with_pragmas(Path(tmp, "optuna.db")))


@register("optuna-journal")
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


def measure(case: str, n: int, seed: int, caught: list[str], budget_s: float = math.inf) -> Run:
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
                seconds: Sequence[float] = CASES[case](n, seed)
            except BudgetSpent:
                if Laps.current is None:  # pragma: no cover - raised by another Laps?
                    raise
                seconds, stopped = Laps.current.finish(), True
            wall_s = time.perf_counter() - started
    finally:
        Laps.budget_s, Laps.current = math.inf, None
    caught.extend(f"{case}: {r.category.__name__}: {r.message}" for r in records)
    run = summarize(seconds, n, wall_s, stopped)
    after = GC_METER.collections
    run.collections = (after[0] - before[0], after[1] - before[1], after[2] - before[2])
    del seconds
    gc.collect()
    return run
