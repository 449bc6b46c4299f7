"""Per-trial library overhead of poptune and its peers, measured side by side in one run.

The objective is trivial, so what is timed is the library: asking for a trial (sampling three
parameters: a log-scale float, an int and a categorical), reporting its objective and
finishing it. Each trial is timed with ``time.perf_counter``; trial i spans from the end of
trial i-1 to the end of its own bookkeeping, so the time spent asking the library for the trial
is included and nothing between trials is lost. The libraries run alternately (poptune, optuna,
poptune, optuna, ...) and the median over repeats is reported.

Python's cyclic garbage collector stays enabled (it is part of a library's real cost); a
``gc.callbacks`` meter measures how much of each window it takes, in a second table.

Run from the repository root::

    python benchmarks/overhead.py                  # n = 1,000, 10,000, 50,000; 3 repeats
    python -m benchmarks.overhead --quick          # n = 1,000 and 5,000; 1 repeat
    python benchmarks/overhead.py --sizes 2000 20000 --repeats 5 --markdown overhead.md

Adding a case (a storage, a peer): write ``def case(n, seed) -> list[float]`` returning the
per-trial seconds (use :class:`Laps` to get the GC breakdown too) and decorate it with
:func:`register`. Case names are the table's column labels.
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
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if importlib.util.find_spec("poptune") is None:  # a checkout that was not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

# -- the problem -----------------------------------------------------------------------------
LR_RANGE = (1e-5, 1e-1)
UNITS_RANGE = (8, 256)
ACTIVATIONS = ["relu", "tanh", "sigmoid"]

DEFAULT_SIZES = (1_000, 10_000, 50_000)
QUICK_SIZES = (1_000, 5_000)
DEFAULT_REPEATS = 3
DEFAULT_SEED = 12345
WARMUP_TRIALS = 200

# -- targets (poptune, in memory) --------------------------------------------------------------
REFERENCE_CASE = "poptune"
TARGET_MS_PER_TRIAL = 0.05
TARGET_GROWTH = 1.5


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


class Laps(list):
    """Per-trial seconds (the list itself) and the GC seconds inside each trial.

    Call :meth:`start` just before the trial loop, ``lap()`` at the end of every trial and
    :meth:`finish` after the loop; return the object from the case function.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gc_seconds: list[float] = []
        stamps: list[float] = []
        gcs: list[float] = []
        self._stamps, self._gcs = stamps, gcs
        add_stamp, add_gc, clock, meter = stamps.append, gcs.append, time.perf_counter, GC_METER

        def lap() -> None:
            add_gc(meter.seconds)
            add_stamp(clock())

        self.lap: Callable[[], None] = lap

    def start(self) -> Callable[[], None]:
        """Take the first time stamp; returns ``lap``."""
        self._stamps.clear()
        self._gcs.clear()
        self.lap()
        return self.lap

    def finish(self) -> Laps:
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


@register("poptune", library="poptune")
def poptune_memory(n: int, seed: int) -> Laps:
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


@register("optuna", library="optuna", install="pip install optuna")
def optuna_memory(n: int, seed: int) -> Laps:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
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


# -- statistics ------------------------------------------------------------------------------
@dataclass
class Run:
    """One run of one case: figures in ms per trial."""

    n: int
    total: float
    first: float
    last: float
    wall_s: float
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


def summarize(seconds: Sequence[float], n: int, wall_s: float) -> Run:
    if len(seconds) != n:
        raise RuntimeError(f"the case timed {len(seconds)} trials instead of {n}")
    k = max(1, n // 10)

    def ms(values: Sequence[float]) -> float:
        return 1e3 * math.fsum(values) / len(values)

    run = Run(n, ms(seconds), ms(seconds[:k]), ms(seconds[-k:]), wall_s)
    gcs = getattr(seconds, "gc_seconds", None)
    if gcs is not None and len(gcs) == n:
        run.gc_total, run.gc_first, run.gc_last = ms(gcs), ms(gcs[:k]), ms(gcs[-k:])
        run.has_gc = True
    return run


def measure(case: Case, n: int, seed: int, caught: list[str]) -> Run:
    """Run ``case`` once with a clean heap; warnings are collected into ``caught``."""
    gc.collect()
    before = list(GC_METER.collections)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        started = time.perf_counter()
        seconds = case.run(n, seed)
        wall_s = time.perf_counter() - started
    caught.extend(f"{case.name}: {r.category.__name__}: {r.message}" for r in records)
    run = summarize(seconds, n, wall_s)
    after = GC_METER.collections
    run.collections = (after[0] - before[0], after[1] - before[1], after[2] - before[2])
    del seconds
    gc.collect()
    return run


@dataclass
class Results:
    cases: list[Case]
    sizes: list[int]
    repeats: int
    runs: dict[tuple[str, int], list[Run]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def of(self, case: str, n: int) -> list[Run]:
        return self.runs.get((case, n), [])


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_all(
    cases: list[Case], sizes: list[int], repeats: int, seed: int, case_budget_s: float
) -> Results:
    results = Results(cases, sizes, repeats)
    with GC_METER:
        for case in cases:  # imports, first-call caches: outside the measured runs
            measure(case, WARMUP_TRIALS, seed, results.warnings)
        for n in sizes:
            allowed = {case.name: repeats for case in cases}
            for r in range(repeats):
                for case in cases:
                    if r >= allowed[case.name]:
                        continue
                    run = measure(case, n, seed + r, results.warnings)
                    results.runs.setdefault((case.name, n), []).append(run)
                    progress(
                        f"  n={n:>7,}  repeat {r + 1}/{allowed[case.name]}  {case.name:<10} "
                        f"{run.total:8.4f} ms/trial  ({run.wall_s:.1f} s)"
                    )
                    if r == 0 and repeats > 1 and run.wall_s * repeats > case_budget_s:
                        allowed[case.name] = max(1, int(case_budget_s // run.wall_s))
                        if allowed[case.name] < repeats:
                            results.notes.append(
                                f"{case.name} at n = {n:,}: {allowed[case.name]} of {repeats} "
                                f"repeats (one took {run.wall_s:.0f} s; --case-budget "
                                f"{case_budget_s:.0f} s per case and size)"
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


def environment_lines() -> list[str]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return [
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"numpy {version_of('numpy')}, poptune {version_of('poptune')}, "
        f"optuna {version_of('optuna')}",
        f"- CPUs: {os.cpu_count()} (usable by this process: {usable}); "
        f"{platform.system()} {platform.machine()}",
        f"- gc thresholds {gc.get_threshold()}, cyclic GC enabled in all runs",
    ]


def main_table(results: Results) -> list[str]:
    cases = [c.name for c in results.cases]
    ref = REFERENCE_CASE if REFERENCE_CASE in cases else None
    peers = [c for c in cases if c != ref]
    header = ["n"] + [f"{c} ms/trial (median [min–max])" for c in cases]
    if ref is not None:
        header += [f"ratio {ref}/{p}" for p in peers]
    header += [f"{c} first 10% / last 10% ms (growth × [min–max])" for c in cases]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for n in results.sizes:
        row = [f"{n:,}"]
        for c in cases:
            runs = results.of(c, n)
            totals = [r.total for r in runs]
            row.append(
                f"{fmt_ms(median(totals))} [{fmt_ms(min(totals))}–{fmt_ms(max(totals))}]"
                + ("" if len(runs) == results.repeats else f" ({len(runs)} rep.)")
            )
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


def gc_table(results: Results) -> list[str]:
    header = [
        "n",
        "case",
        "GC µs/trial: first 10% / last 10%",
        "GC share of total time",
        "growth × / without GC ×",
        "collections gen0 / gen1 / gen2",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for n in results.sizes:
        for case in results.cases:
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


def target_lines(results: Results) -> list[str]:
    if REFERENCE_CASE not in [c.name for c in results.cases]:
        return ["Targets: not evaluated (poptune was not run)."]
    speed_fail, growth_fail, worst_ms, worst_growth = [], [], 0.0, 0.0
    for n in results.sizes:
        runs = results.of(REFERENCE_CASE, n)
        ms, growth = median([r.total for r in runs]), median([r.growth for r in runs])
        worst_ms, worst_growth = max(worst_ms, ms), max(worst_growth, growth)
        if ms > TARGET_MS_PER_TRIAL:
            speed_fail.append(f"n = {n:,}: {fmt_ms(ms)} ms")
        if growth > TARGET_GROWTH:
            growth_fail.append(f"n = {n:,}: {growth:.2f}×")
    speed = (
        f"met (worst median {fmt_ms(worst_ms)} ms)"
        if not speed_fail
        else "NOT met (" + "; ".join(speed_fail) + ")"
    )
    growth = (
        f"met (worst median {worst_growth:.2f}×)"
        if not growth_fail
        else "NOT met (" + "; ".join(growth_fail) + ")"
    )
    met = "all targets met" if not speed_fail and not growth_fail else "targets NOT all met"
    return [
        f"**Targets ({met}):** poptune in memory ≤ {TARGET_MS_PER_TRIAL} ms per trial: {speed}; "
        f"poptune's last 10% no slower than {TARGET_GROWTH}× its first 10%: {growth}."
    ]


def gc_notes(results: Results) -> list[str]:
    """Say, for every case and size whose last 10% is notably slower, how much is GC."""
    notes = []
    for n in results.sizes:
        for case in results.cases:
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
                f"(+{extra:.1f} µs/trial), of which the GC takes +{gc_extra:.1f} µs/trial; "
                f"without GC time the growth is {without:.2f}×: {verdict}."
            )
    return notes


def render(results: Results, skipped: list[str], args: argparse.Namespace) -> str:
    out = [
        "## Per-trial library overhead (trivial objective; 3 parameters: log-float, int, "
        "categorical)",
        "",
        *environment_lines(),
        f"- sizes {', '.join(f'{n:,}' for n in results.sizes)}; {results.repeats} "
        f"repeat{'s' if results.repeats > 1 else ''}, "
        f"cases run in turn: {', '.join(c.name for c in results.cases)}; seed {args.seed}+repeat; "
        f"in-memory storage; each trial timed with perf_counter (ask + objective + report)",
        *[f"- **Note: {note}**" for note in skipped],
        "",
    ]
    out += main_table(results)
    out += ["", *target_lines(results), ""]
    out += [
        "Time in Python's cyclic garbage collector (measured with `gc.callbacks`; included "
        "in the figures above):",
        "",
        *gc_table(results),
    ]
    notes = gc_notes(results)
    if notes:
        out += ["", *notes]
    if results.notes or results.warnings:
        out += [""]
        out += [f"- Note: {note}" for note in results.notes]
        if results.warnings:
            out.append(
                f"- Note: {len(results.warnings)} warning(s) were raised during the runs "
                f"(first: {results.warnings[0]})"
            )
    return "\n".join(out) + "\n"


# -- command line ----------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/overhead.py",
        description="Per-trial library overhead of poptune and its peers, side by side.",
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        metavar="N",
        help="numbers of trials (default: 1000 10000 50000; with --quick: 1000 5000)",
    )
    parser.add_argument(
        "--repeats", type=int, help="runs of each case per size (default 3; with --quick: 1)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="n = 1,000 and 5,000, one repeat (a smoke run)"
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=sorted(CASES),
        help=f"cases to run, in this order (default: all: {', '.join(CASES)})",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="base seed (+ repeat)")
    parser.add_argument(
        "--case-budget",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="if repeats of one case at one size would take longer than this, run fewer "
        "(at least one) and say so (default 120)",
    )
    parser.add_argument("--markdown", metavar="PATH", help="also write the report to this file")
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    if args.repeats is None:
        args.repeats = 1 if args.quick else DEFAULT_REPEATS
    if any(n < 10 for n in args.sizes):
        parser.error("--sizes: every size must be at least 10 (the windows are 10% of it)")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = [CASES[name] for name in (args.cases or CASES)]
    cases, skipped = [], []
    for case in chosen:
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
    print(
        f"running {', '.join(c.name for c in cases)} at n = "
        f"{', '.join(f'{n:,}' for n in args.sizes)}, {args.repeats} repeat(s)...",
        file=sys.stderr,
        flush=True,
    )
    results = run_all(cases, list(args.sizes), args.repeats, args.seed, args.case_budget)
    report = render(results, skipped, args)
    print(report, end="")
    if args.markdown:
        Path(args.markdown).write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
