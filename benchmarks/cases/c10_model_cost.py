"""Case 10: what a model-based suggestion costs as a study grows (issue 14, item 5), beside
Optuna: ``BayesianOptimization`` (``refit_every`` 10, the default, and 1, as before the option)
beside ``GPSampler``, ``TPE`` beside ``TPESampler``, ``MedianStoppingRule``'s first call (it
indexes the history) and a second, and ``refit_every``'s cost in quality. The method is the page
text in :func:`run`; beyond it: past trials are added as finished ones (``add_trial(s)``), then
one untimed suggestion (poptune's random one; GPSampler warms its kernel cache) and ``k`` timed
ones (one refit cycle), each told, untimed, before the next; CPU time is ``time.process_time``
(every thread); the rule's trials have 1 to 20 iterations. Optuna runs in its virtualenv."""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.harness import Context, Section, fmt, log, mean, mean_se, ratio, spread, table
from benchmarks.peers import preimport
from benchmarks.problems import PROBLEMS, past_points, poptune_search, problem_study

TITLE = "10. What a model-based suggestion costs as the study grows (vs Optuna's samplers)"
SIZES, QUICK_SIZES = (50, 200, 500), (20, 40)
RULE_SIZES, QUICK_RULE_SIZES = (1_000, 10_000), (200, 1_000)
RULE_HISTORIES = 7  # fresh histories per size (2 in a quick run)
QUALITY, QUICK_QUALITY = ("hartmann6", 100, 10), ("branin", 8, 2)  # problem, evaluations, seeds
PROBLEM = "branin"
GP_TARGET, RULE_TARGET_MS = 0.5, 20.0  # at 500 past trials; the first call at 10,000 trials
#: (row label, poptune algorithm, options, old way's ``refit_every`` or None, peer's sampler)
MODELS = (
    ("Gaussian process", "BayesianOptimization", {"num_initial_data_points": 1}, 1, "gp"),
    ("TPE", "TPE", {"n_startup_trials": 1}, None, "tpe"),
)
RULE_TIMES = ("first_cpu_s", "first_wall_s", "second_cpu_s")
RULE_HEADER = (
    "rule | trials | observations (median) | first call CPU ms | first call wall ms | "
    "second call CPU ms"
)
QUALITY_HEADER = (
    "algorithm | option | problem | evaluations | seeds | best (mean ± s.e.) | CPU ms / suggestion"
)


def _cost(k: int, ask: Callable[[], Any], tell: Callable[[Any], None]) -> dict[str, list[float]]:
    """CPU and wall seconds of each of ``k`` ``ask()`` after an untimed one, each told."""
    cpu, wall = [], []
    for i in range(k + 1):
        start, start_cpu = time.perf_counter(), time.process_time()
        asked = ask()
        if i:  # the first one is the untimed warm-up
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        tell(asked)
    return {"cpu_s": cpu, "wall_s": wall}


def poptune_cost(algorithm: Any, problem: str, n_past: int, k: int, seed: int = 0) -> dict:
    """:func:`_cost` of poptune's ``algorithm`` after ``n_past`` finished trials."""
    objective = PROBLEMS[problem][0]
    study = problem_study(problem, algorithm, seed)

    def tell(trial: Any) -> None:
        study.add_observation(trial, objective(trial.parameters))
        study.finalize(trial)

    for p in past_points(problem, n_past, seed):
        study.add_trial(p)
        tell(study.get_suggestion())
    return _cost(k, study.get_suggestion, tell)


def peer(sampler: str, problem: str, n_past: int, k: int, seed: int = 0) -> dict[str, Any]:
    """Optuna's side: :func:`_cost` of its ``sampler`` ("tpe", "gp"), and the first warnings."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler == "gp":  # what GPSampler imports on first use, outside the timing
        preimport("greenlet", "scipy.optimize", "torch")
    objective, box, _ = PROBLEMS[problem]
    distributions = {name: FloatDistribution(lo, hi) for name, (lo, hi) in box.items()}
    make = {"tpe": optuna.samplers.TPESampler, "gp": optuna.samplers.GPSampler}[sampler]
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        study = optuna.create_study(sampler=make(seed=seed))
        past = past_points(problem, n_past, seed)
        study.add_trials(
            [create_trial(params=p, distributions=distributions, value=objective(p)) for p in past]
        )

        def ask() -> tuple[Any, dict[str, float]]:
            trial = study.ask()
            return trial, {
                name: trial.suggest_float(name, lo, hi) for name, (lo, hi) in box.items()
            }

        out: dict[str, Any] = _cost(k, ask, lambda asked: study.tell(asked[0], objective(asked[1])))
    caught = sorted({f"{r.category.__name__}: {r.message}" for r in records})
    return {**out, "warnings": caught[:3]}


def rule_cost(n_trials: int, seed: int = 0) -> dict[str, float]:
    """Seconds of MedianStoppingRule's first call (it indexes the history) and a second."""
    import numpy as np

    from poptune import Continuous
    from poptune.history import History
    from poptune.stopping import MedianStoppingRule
    from poptune.trial import Observation, Trial, TrialStatus

    rng = np.random.default_rng(seed)
    trials = []
    for tid in range(1, n_trials + 1):
        trial = Trial(tid, {"x": float(rng.random())}, TrialStatus.COMPLETED)
        for it, value in enumerate(rng.random(int(rng.integers(1, 21))), start=1):
            trial._record(Observation(it, float(value)))  # as a storage fills it
        trials.append(trial)
    subject = trials[-1]
    subject.status = TrialStatus.RUNNING
    history = History.from_trials([Continuous("x", [0, 1])], True, trials)
    rule = MedianStoppingRule()
    out: dict[str, float] = {"observations": float(sum(len(t.observations) for t in trials))}
    for name in ("first", "second"):
        start, start_cpu = time.perf_counter(), time.process_time()
        rule.should_trial_stop(subject, history)
        out[f"{name}_cpu_s"] = time.process_time() - start_cpu
        out[f"{name}_wall_s"] = time.perf_counter() - start
    return out


def _ms(values: Sequence[float] | None) -> str:
    return fmt(mean(values) * 1e3)


def run(ctx: Context) -> Section:
    from poptune import algorithms
    from poptune.algorithms._gp import import_sklearn

    section = Section("model_cost", TITLE)
    sizes, k = ctx.pick(SIZES, QUICK_SIZES), ctx.pick(10, 2)
    import_sklearn()  # imported before the timing, as Optuna's side imports torch
    import scipy.optimize  # noqa: F401

    optuna = ctx.usable("optuna", section)

    def optuna_cost(sampler: str, n_past: int) -> dict | None:
        args = {"sampler": sampler, "problem": PROBLEM, "n_past": n_past, "k": k}
        what = f"Optuna {sampler} at {n_past} past trials"
        return ctx.result(section, what, "optuna", "c10_model_cost", args, 1800) if optuna else None

    section.lines += [
        f"{PROBLEM}; mean of {k} suggestions (CPU and wall ms each) after the given number of "
        "finished trials (the same points on both sides).",
    ]
    for title, name, options, old, sampler in MODELS:
        rows, last_ratio, label = [], math.nan, f"{sampler.upper()}Sampler"
        make = getattr(algorithms, name)
        for n_past in sizes:
            log(f"  {title}: {n_past} past trials")
            mine = poptune_cost(make(**options), PROBLEM, n_past, k)
            before = old and poptune_cost(make(**options, refit_every=old), PROBLEM, n_past, k)
            theirs = optuna_cost(sampler, n_past) or {}
            row = [title, str(n_past), _ms(mine["cpu_s"]), _ms(mine["wall_s"])]
            row += [_ms(before["cpu_s"])] if before else []
            row += [_ms(theirs.get("cpu_s")), _ms(theirs.get("wall_s"))]
            last_ratio = mean(mine["cpu_s"]) / mean(theirs.get("cpu_s"))
            rows.append([*row, ratio(mean(mine["cpu_s"]), mean(theirs.get("cpu_s")))])
        header = "model | past trials | poptune CPU ms | poptune wall ms"
        header += " | poptune refit_every=1 CPU ms" if old else ""
        header += f" | Optuna {label} CPU ms | Optuna {label} wall ms | CPU ratio"
        section.lines += ["", *table(header, rows)]
        if old:
            what = f"BayesianOptimization at {sizes[-1]} past trials ≤ {GP_TARGET:g}× GPSampler's"
            what += " CPU per suggestion"
            section.target_of(what, last_ratio, last_ratio <= GP_TARGET, fmt(last_ratio, 2))

    rows, histories = [], ctx.pick(RULE_HISTORIES, 2)
    for n_trials in ctx.pick(RULE_SIZES, QUICK_RULE_SIZES):
        log(f"  MedianStoppingRule: {n_trials} trials, {histories} fresh histories")
        runs = [rule_cost(n_trials, seed) for seed in range(histories)]
        first_ms = statistics.median([r["first_cpu_s"] for r in runs]) * 1e3
        observations = fmt(statistics.median([r["observations"] for r in runs]), 6)
        times = [spread([r[key] * 1e3 for r in runs]) for key in RULE_TIMES]
        rows.append(["MedianStoppingRule", str(n_trials), observations, *times])
    what = f"MedianStoppingRule's first call at {rows[-1][1]} trials ≤ {RULE_TARGET_MS:g} ms CPU"
    what += f" (median of {histories} fresh histories)"
    section.target(what, first_ms <= RULE_TARGET_MS, f"{rows[-1][3]} ms")
    section.lines += [
        "",
        f"MedianStoppingRule: median [min–max] over {histories} fresh histories (seeds "
        f"0–{histories - 1}), each timed once: the first call's time varies run to run with "
        "allocation and garbage collection, so one timing is not a figure.",
        "",
        *table(RULE_HEADER, rows),
    ]

    problem, n, seeds = ctx.pick(QUALITY, QUICK_QUALITY)
    seeds = ctx.seeds_or(seeds, seeds)
    rows = []
    for refit in (10, 1):  # quality: the best value found, and the CPU time per suggestion
        best, cpu = [], 0.0
        for seed in range(seeds):
            algorithm = algorithms.BayesianOptimization(refit_every=refit)
            value, _, seconds = poptune_search(problem, algorithm, n, seed)
            best.append(value)
            cpu += seconds
            log(f"  quality refit_every={refit} seed {seed}: best {value:.4f}")
        row = ["BayesianOptimization", f"refit_every={refit}", problem, str(n), str(seeds)]
        rows.append([*row, mean_se(best, 4), fmt(cpu / (n * seeds) * 1e3)])
    section.lines += ["", *table(QUALITY_HEADER, rows)]
    return section
