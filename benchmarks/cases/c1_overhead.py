"""Case 1: per-trial library overhead and its growth with the number of trials, poptune beside
Optuna (in memory and on an SQLite file) and SHERPA (in memory); the method is the page text
in :func:`run`. Each run is :func:`peer` in a fresh process of the library's virtualenv, each
trial timed by :class:`Laps`. Cases 2, 8 and 9 reuse the problem, the study and the storages.
"""

from __future__ import annotations

import gc
import math
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from benchmarks.harness import (
    Context,
    Section,
    figure,
    fmt,
    log,
    med,
    quiet_threads,
    ratio,
    spread,
    style,
    table,
)

TITLE = "1. Per-trial overhead and scale (trivial objective; vs Optuna and SHERPA)"

# -- the problem -----------------------------------------------------------------------------
LR_RANGE, UNITS_RANGE, ACTIVATIONS = (1e-5, 1e-1), (8, 256), ["relu", "tanh", "sigmoid"]
WARMUP_TRIALS = 200


def objective(lr: float, units: int, act: str) -> float:
    """The trivial objective every library calls once per trial."""
    return (math.log10(lr) + 3.0) ** 2 + units / 256.0 + (0.0 if act == "relu" else 0.1)


def trial_value(trial: Any) -> float:
    """:func:`objective` of a poptune (or SHERPA) trial's parameters."""
    p = trial.parameters
    return objective(p["lr"], p["units"], p["act"])


def optuna_value(t: Any) -> float:
    """Sample the three parameters on an Optuna trial; :func:`objective` of them."""
    lr = t.suggest_float("lr", LR_RANGE[0], LR_RANGE[1], log=True)
    units = t.suggest_int("units", UNITS_RANGE[0], UNITS_RANGE[1])
    return objective(lr, units, t.suggest_categorical("act", ACTIVATIONS))


def space(lib: Any) -> list[Any]:
    """The three parameters in ``lib``'s classes (the ``poptune`` or ``sherpa`` module)."""
    return [
        lib.Continuous("lr", list(LR_RANGE), "log"),
        lib.Discrete("units", list(UNITS_RANGE)),
        lib.Choice("act", ACTIVATIONS),
    ]


def poptune_study(total: int, seed: int, **study_kwargs: Any) -> Any:
    """A RandomSearch study of the three parameters (``study_kwargs``: storage, study name)."""
    import poptune

    algorithm = poptune.algorithms.RandomSearch(max_num_trials=total)
    return poptune.Study(space(poptune), algorithm, lower_is_better=True, seed=seed, **study_kwargs)


#: poptune's SQLite settings (``poptune.storage._statements.SQLITE_PRAGMAS``, less
#: ``foreign_keys=ON``, which Optuna's schema does not ask for), given to ``optuna-wal``.
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=60000",
)


def optuna_storage(config: str, url: str) -> Any:
    """Optuna's storage in configuration ``config`` (see :data:`LABEL`) for the database ``url``;
    ``optuna-wal`` sets :data:`SQLITE_PRAGMAS` on every connection (SQLAlchemy's ``creator``),
    ``optuna-journal`` keeps its journal beside the SQLite file."""
    import optuna

    if config == "optuna-rdb":
        return optuna.storages.RDBStorage(url)
    path = url.removeprefix("sqlite:///")
    if path == url:
        raise ValueError(f"{config} runs on a local SQLite file only, not on {url!r}")
    if config == "optuna-journal":
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(f"{path}.log"))
    if config != "optuna-wal":
        raise ValueError(f"unknown Optuna configuration {config!r}")

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=60.0, check_same_thread=False)
        for pragma in SQLITE_PRAGMAS:
            conn.execute(pragma)
        return conn

    return optuna.storages.RDBStorage(url, engine_kwargs={"creator": connect})


# -- timing ------------------------------------------------------------------------------------
class BudgetSpent(Exception):
    """Raised by ``lap()`` at the first trial that ends past the run's budget."""


class Laps(list):
    """Per-trial seconds (the list: from the end of the previous trial to the end of this one's
    bookkeeping, so nothing between trials is lost) and the loop's process CPU seconds.
    ``laps, lap = Laps().start()`` before the loop, ``lap()`` after every trial, ``finish()``
    after it; with a finite :attr:`budget_s` (:func:`measure` sets it), ``lap()`` raises
    :class:`BudgetSpent` at the first trial that ends past it."""

    budget_s: ClassVar[float] = math.inf
    current: ClassVar[Laps | None] = None  # the Laps of the run in progress

    def __init__(self) -> None:
        super().__init__()
        Laps.current = self
        self.cpu_seconds = math.nan
        self._stamps: list[float] = []

    def start(self) -> tuple[Laps, Callable[[], None]]:
        stamps, clock = self._stamps, time.perf_counter
        add = stamps.append
        self._cpu0 = time.process_time()
        add(clock())
        limit = stamps[0] + Laps.budget_s
        if limit == math.inf:
            return self, lambda: add(clock())

        def lap() -> None:
            now = clock()
            add(now)
            if now > limit:
                raise BudgetSpent

        return self, lap

    def finish(self) -> Laps:
        if math.isnan(self.cpu_seconds):
            self.cpu_seconds = time.process_time() - self._cpu0
        s = self._stamps
        self[:] = [b - a for a, b in zip(s[:-1], s[1:], strict=True)]
        return self


# -- the loops ---------------------------------------------------------------------------------
def poptune_loop(n: int, seed: int, **study_kwargs: Any) -> Laps:
    """``for trial in study`` + ``add_observation`` + ``finalize``, RandomSearch."""
    study = poptune_study(n, seed, **study_kwargs)
    laps, lap = Laps().start()
    for trial in study:
        study.add_observation(trial, objective=trial_value(trial), iteration=1)
        study.finalize(trial)
        lap()
    return laps.finish()


def optuna_loop(n: int, seed: int, storage: Any = None) -> Laps:
    """Optuna's ask/tell with RandomSampler (``storage``: an Optuna storage; None: memory)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=seed))
    laps, lap = Laps().start()
    for _ in range(n):
        t = study.ask()
        study.tell(t, optuna_value(t))
        lap()
    return laps.finish()


def sherpa_loop(n: int, seed: int) -> Laps:
    """SHERPA 1.0.6's own loop (its only storage is in memory; MongoDB for parallel runs)."""
    import logging

    import sherpa

    logging.disable(logging.WARNING)  # sherpa logs every trial at INFO
    sherpa.core.rng.seed(seed)
    algorithm = sherpa.algorithms.RandomSearch(max_num_trials=n)
    study = sherpa.Study(space(sherpa), algorithm, lower_is_better=True, disable_dashboard=True)
    laps, lap = Laps().start()
    for trial in study:
        study.add_observation(trial, iteration=1, objective=trial_value(trial))
        study.finalize(trial)
        lap()
    return laps.finish()


def loop(config: str, n: int, seed: int) -> Laps:
    """``n`` timed trials of ``config`` (a key of :data:`LABEL`; on a file: a fresh one)."""
    if config not in LABEL:
        raise ValueError(f"unknown case 1 configuration {config!r}; known: {', '.join(LABEL)}")
    in_memory = {"poptune": poptune_loop, "optuna": optuna_loop, "sherpa": sherpa_loop}
    if config in in_memory:
        return in_memory[config](n, seed)
    with tempfile.TemporaryDirectory(prefix="poptune-bench-", ignore_cleanup_errors=True) as tmp:
        url = f"sqlite:///{Path(tmp, 'study.db').as_posix()}"
        if config == "poptune-sqlite":
            return poptune_loop(n, seed, storage=url, study_name="overhead")
        return optuna_loop(n, seed, optuna_storage(config, url))


def measure(config: str, n: int, seed: int, budget_s: float = math.inf) -> dict[str, Any]:
    """One run with a clean heap: ms per trial in all (wall, CPU) and its first and last 10%."""
    gc.collect()
    quiet_threads()  # the start-up threads of numpy's OpenBLAS asleep (harness.quiet_threads)
    Laps.budget_s, Laps.current = budget_s, None
    try:
        seconds = loop(config, n, seed)
    except BudgetSpent:
        assert Laps.current is not None
        seconds = Laps.current.finish()
    finally:
        Laps.budget_s, Laps.current = math.inf, None
    got = len(seconds)
    if got != n and not (budget_s < math.inf and 0 < got < n):
        raise RuntimeError(f"{config} timed {got} trials instead of {n}")
    k = max(1, got // 10)

    def ms(values: list[float]) -> float:
        return 1e3 * math.fsum(values) / len(values)

    out = {"n": got, "total": ms(seconds), "first": ms(seconds[:k]), "last": ms(seconds[-k:])}
    out.update(cpu_total=1e3 * seconds.cpu_seconds / got, stopped=got < n)
    gc.collect()
    return out


def peer(case: str, n: int, seed: int, budget_s: float = 0.0, warmup: int = WARMUP_TRIALS) -> dict:
    """One run of ``case`` after an untimed ``warmup``-trial one; ``budget_s`` (0: none)."""
    measure(case, warmup, seed)
    return measure(case, n, seed, budget_s or math.inf)


# -- the case ----------------------------------------------------------------------------------
SIZES = {"memory": (1_000, 10_000, 100_000), "sqlite": (1_000, 10_000)}
QUICK_SIZES = {"memory": (1_000, 5_000), "sqlite": (1_000,)}
#: The configurations on each storage, poptune's first, each named after its library.
CONFIGS = {
    "memory": ("poptune", "optuna", "sherpa"),
    "sqlite": ("poptune-sqlite", "optuna-rdb", "optuna-wal", "optuna-journal"),
}
LABEL = {
    "poptune": "poptune (MemoryStorage)",
    "optuna": "Optuna (InMemoryStorage)",
    "sherpa": "SHERPA (in memory)",
    "poptune-sqlite": "poptune (SQLite: WAL, synchronous=NORMAL)",
    "optuna-rdb": "Optuna RDB (SQLite defaults: rollback journal, synchronous=FULL)",
    "optuna-wal": "Optuna RDB (SQLite with poptune's pragmas: WAL, synchronous=NORMAL)",
    "optuna-journal": "Optuna JournalStorage (JournalFileBackend)",
}
BUDGET_S, QUICK_BUDGET_S = 30.0, 4.0
WARMUP, QUICK_WARMUP = 200, 50  # untimed trials before the timed ones, in the same process
STORAGE_TITLE = {"memory": "in memory", "sqlite": "on a file"}
#: Targets (issue 14, items 3 and 4): poptune's CPU per trial over this peer configuration's.
TARGET_PEER = {"memory": ("optuna", 0.05), "sqlite": ("optuna-journal", 0.3)}
MAX_GROWTH_ACROSS, MAX_GROWTH_WITHIN = 1.5, 1.2


def run(ctx: Context) -> Section:
    section = Section("overhead", TITLE)
    sizes, repeats = ctx.pick(SIZES, QUICK_SIZES), ctx.repeats_or(3, 1)
    budget, warmup = ctx.pick(BUDGET_S, QUICK_BUDGET_S), ctx.pick(WARMUP, QUICK_WARMUP)
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}  # (config, n) -> runs
    failed: dict[str, str] = {}
    capped: dict[str, int] = {}  # config -> the size whose run hit the budget
    usable = {"poptune": True, **{lib: ctx.usable(lib, section) for lib in ("optuna", "sherpa")}}
    for storage, ns in sizes.items():
        for n in ns:
            for r in range(repeats):
                for config in CONFIGS[storage]:
                    lib = config.split("-")[0]
                    if not usable[lib] or config in failed:
                        continue
                    if config in capped and (capped[config] < n or runs.get((config, n))):
                        continue
                    args = {"case": config, "n": n, "seed": 1000 + r, "budget_s": budget}
                    args["warmup"] = warmup
                    out = ctx.run_peer(lib, "c1_overhead", args, timeout_s=budget * 3 + 180)
                    if not out.ok:
                        failed[config] = out.error or "failed"
                        log(f"  overhead {config} n={n}: FAILED {out.error}")
                        continue
                    res = out.result
                    runs.setdefault((config, n), []).append(res)
                    if res["stopped"]:
                        capped[config] = n
                    log(
                        f"  overhead n={n:>7,} repeat {r + 1}/{repeats} {config:<18}"
                        f" {res['total']:9.4f} ms/trial, CPU {res['cpu_total']:9.4f} ms"
                        + (f" (stopped after {res['n']:,} trials)" if res["stopped"] else "")
                    )
    section.notes += [f"{LABEL[config]} failed: {error}" for config, error in failed.items()]

    def ms(config: str, n: int, key: str = "total") -> list[float]:
        return [x[key] for x in runs.get((config, n), []) if x.get(key) is not None]

    def cpu(config: str, n: int) -> float:
        return med(ms(config, n, "cpu_total"))

    rows = []
    for storage, ns in sizes.items():
        mine = CONFIGS[storage][0]
        for n in ns:
            for config in CONFIGS[storage]:
                done = runs.get((config, n), [])
                if not done and config not in capped:
                    continue
                wall = spread(ms(config, n))
                if done and done[0]["stopped"]:
                    wall += f" (budget: {done[0]['n']:,} of {n:,} trials)"
                elif not done:
                    wall = f"not run (the budget stopped n = {capped[config]:,})"
                ratios = ["", ""]
                if config != mine:
                    ratios = [ratio(med(ms(mine, n)), med(ms(config, n)))]
                    ratios.append(ratio(cpu(mine, n), cpu(config, n)))
                growth = spread([x["last"] / x["first"] for x in done], 2)
                row = [STORAGE_TITLE[storage], f"{n:,}", LABEL[config], wall]
                rows.append([*row, spread(ms(config, n, "cpu_total")), *ratios, growth])
    section.lines += [
        f"Per trial: ask for a trial (3 parameters: log-float, int, categorical), report a "
        f"trivial objective, finish it — poptune `for trial in study` + `add_observation` + "
        f"`finalize` (RandomSearch), Optuna ask/tell (RandomSampler), SHERPA's own loop "
        f"(RandomSearch). Each run is a fresh process with a {warmup}-trial warm-up, timed "
        "once the process's other threads are idle (numpy's OpenBLAS worker spins for about "
        "0.1 s of CPU after numpy loads: a start-up cost, case 7's); "
        f"wall ms/trial = total time / trials, CPU ms/trial = the process's CPU time "
        f"(user + system) / trials; "
        f"median [min–max] of {repeats} alternating repeat(s). A run longer than {budget:g} s "
        "stops there (it is then run once, and not at larger n). On a file, Optuna runs in "
        "three configurations: its RDB storage on SQLite's defaults (rollback journal, "
        "`synchronous=FULL`: an fsync per commit), the same with poptune's pragmas "
        "(`journal_mode=WAL`, `synchronous=NORMAL`, `busy_timeout`; set on every connection "
        "through `RDBStorage(url, engine_kwargs={'creator': ...})`), and "
        "`JournalStorage(JournalFileBackend(path))`, which Optuna recommends for several "
        "processes on one machine. SHERPA has no file storage (it shares studies through "
        "MongoDB). Ratios are poptune's figure over the row's (below 1: poptune is cheaper); "
        "growth = the mean cost of the last 10% of trials over the first 10%.",
        "",
        *table(
            "storage | n trials | library (configuration) | wall ms/trial | CPU ms/trial | "
            "ratio poptune/this, wall | ratio poptune/this, CPU | growth (last 10% / first 10%)",
            rows,
        ),
    ]

    def draw(plt: Any) -> None:
        _, ax = plt.subplots(figsize=(7.5, 4.5))
        pairs = [(storage, config) for storage in sizes for config in CONFIGS[storage]]
        for i, (storage, config) in enumerate(pairs):
            xs = [n for n in sizes[storage] if ms(config, n, "cpu_total")]
            line = "o-" if storage == "memory" else "s--"
            if xs:
                ax.plot(xs, [cpu(config, n) for n in xs], line, color=f"C{i}", label=LABEL[config])
        style(ax, "trials in the study (n)", "CPU ms per trial (median)",
              "Per-trial library overhead", logx=True, logy=True, legend=6)  # fmt: skip

    section.lines += figure(ctx, "overhead", draw, "CPU ms per trial against n")

    for storage in sizes:
        mine, (peer_config, goal) = CONFIGS[storage][0], TARGET_PEER[storage]
        ns = [n for n in sizes[storage] if ms(mine, n)]
        peer_ns = [n for n in ns if ms(peer_config, n, "cpu_total")]
        what = f"poptune {STORAGE_TITLE[storage]} ≤ {goal:g}× {LABEL[peer_config]}'s CPU per trial"
        if not peer_ns:
            reason = ctx.peer_note(peer_config.split("-")[0])
            if peer_config in failed:
                reason = f"it failed: {failed[peer_config]}"
            section.target(what, None, reason)
        else:
            ratios = {n: cpu(mine, n) / cpu(peer_config, n) for n in peer_ns}
            detail = ", ".join(f"n = {n:,}: {fmt(v, 2)}" for n, v in ratios.items())
            section.target(what, max(ratios.values()) <= goal, detail)
        if storage == "memory" and ns:
            lo, hi = min(ns), max(ns)
            across = cpu(mine, hi) / cpu(mine, lo)
            growth = med([x["last"] / x["first"] for x in runs[(mine, hi)]])
            section.target(
                f"poptune in memory flat in n (CPU ms/trial at n = {hi:,} ≤ "
                f"{MAX_GROWTH_ACROSS:g}× that at {lo:,}, and in the {hi:,}-trial study the "
                f"last 10% of trials ≤ {MAX_GROWTH_WITHIN:g}× the first 10%, in wall time)",
                across <= MAX_GROWTH_ACROSS and growth <= MAX_GROWTH_WITHIN,
                # two decimals: a growth of 1.23 must not read as the limit's 1.2
                f"{across:.2f}× from {lo:,} to {hi:,}; last/first 10% at {hi:,}: "
                f"{growth:.2f}× (median of the repeats; case 9 measures it in CPU time)",
            )
    if any(math.isnan(med(ms(CONFIGS[s][0], n))) for s, ns in sizes.items() for n in ns):
        section.notes.append("some poptune runs did not complete (see the notes above)")
    return section
