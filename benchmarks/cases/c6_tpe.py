"""Case 6: model-based search beside Optuna's (TPE beside ``TPESampler``, ``BayesianOptimization``
beside ``GPSampler``, random search as the floor): as good a best value, at what cost a suggestion?
The method is the page text in :func:`run`. One study per seed; poptune runs in the harness's
process, Optuna in its virtualenv (:func:`peer`), whose greenlet lets ``GPSampler`` batch its
optimizer restarts (without it Optuna warns and runs them one after the other).
"""

from __future__ import annotations

import math
import statistics
import warnings
from typing import Any

from benchmarks.harness import Clock, Context, Section, gap_and_se, log, mean_se, table
from benchmarks.peers import preimport
from benchmarks.problems import PROBLEMS, poptune_search

TITLE = "6. Model-based search: TPE and Bayesian optimization beside Optuna's samplers"
BUDGETS = {"branin": 30, "hartmann6": 50}
#: Seeds in a full run (``--seeds`` sets both): fewer for the GP samplers' 1 s a suggestion.
SEEDS, GP_SEEDS = 20, 10
#: (library, algorithm: poptune's class name, or :func:`peer`'s ``sampler``) -> row label
ALGORITHMS = {
    ("poptune", "TPE"): "poptune TPE",
    ("optuna", "tpe"): "Optuna TPESampler",
    ("poptune", "BayesianOptimization"): "poptune BayesianOptimization",
    ("optuna", "gp"): "Optuna GPSampler",
    ("poptune", "RandomSearch"): "poptune RandomSearch",
}
GP_BASED = (("poptune", "BayesianOptimization"), ("optuna", "gp"))
PAIRS = (("poptune TPE", "Optuna TPESampler"), ("poptune BayesianOptimization", "Optuna GPSampler"))
#: What each side's model-based algorithms import on first use, imported before the timing.
POPTUNE_IMPORTS = ("sklearn.gaussian_process", "scipy.optimize")
OPTUNA_GP_IMPORTS = ("greenlet", "scipy.optimize", "torch")
PER_SUGGESTION = ("s_per_suggestion", "cpu_s_per_suggestion")  # seconds: wall, CPU
HEADER = (
    "problem | evaluations | algorithm | seeds | best value (mean ± s.e.) | "
    "wall ms / suggestion | CPU ms / suggestion"
)


def summary(best: list[float], wall_s: float, cpu_s: float, asked: int) -> dict[str, Any]:
    """One algorithm's figures, both sides: each study's best, wall and CPU s per suggestion."""
    return {"best": best, "s_per_suggestion": wall_s / asked, "cpu_s_per_suggestion": cpu_s / asked}


def poptune_run(algorithm: str, problem: str, n: int, seeds: list[int]) -> dict[str, Any]:
    from poptune import algorithms

    preimport(*POPTUNE_IMPORTS)
    runs = [poptune_search(problem, getattr(algorithms, algorithm)(), n, s) for s in seeds]
    best, wall, cpu = zip(*runs, strict=True)
    return summary(list(best), sum(wall), sum(cpu), n * len(seeds))


def run(ctx: Context) -> Section:
    section = Section("tpe", TITLE)
    seeds = list(range(ctx.seeds_or(SEEDS, 2)))
    gp_seeds = list(range(ctx.seeds_or(GP_SEEDS, 2)))
    optuna_ok = ctx.usable("optuna", section)
    rows, results = [], {}
    for problem, n in BUDGETS.items():
        n = ctx.pick(n, 15)
        got: dict[str, dict[str, Any]] = {}
        for (library, algorithm), label in ALGORITHMS.items():
            chosen = gp_seeds if (library, algorithm) in GP_BASED else seeds
            if library == "poptune":
                got[label] = poptune_run(algorithm, problem, n, chosen)
            elif optuna_ok:
                args = {"problem": problem, "n": n, "seeds": chosen, "sampler": algorithm}
                res = ctx.result(section, f"{label} on {problem}", "optuna", "c6_tpe", args, 1800)
                if res is None:
                    continue
                got[label] = res
                for warning in res.get("warnings", []):
                    section.notes.append(f"{label} on {problem} warned: {warning[:200]}")
            else:
                continue
            best = got[label]["best"]
            log(f"  model-based {problem:<9} {label:<28} best {statistics.fmean(best):.3f}")
            ms = [f"{got[label].get(k, math.nan) * 1e3:.1f}" for k in PER_SUGGESTION]
            rows.append([problem, str(n), label, str(len(best)), mean_se(best), *ms])
        results[problem] = got
    section.lines += [
        "Best value found by the last evaluation, mean ± standard error over the seeds "
        "(minimum: Branin 0.398, Hartmann-6 −3.322); wall and CPU ms per suggestion (asking "
        "only: for the Gaussian-process samplers, fitting the model and maximising the "
        "acquisition; the libraries those import on first use — scikit-learn and SciPy, "
        "PyTorch — are imported before the timing). Every algorithm with its defaults; Optuna's "
        "GPSampler runs with PyTorch (CPU build) and greenlet, as Optuna recommends. Seeds 0, "
        "1, …; the cost at a few dozen trials says nothing of the cost at hundreds (see the "
        "README's statement of each algorithm's cost).",
        "",
        *table(HEADER, rows),
    ]
    for problem, got in results.items():
        mine = statistics.fmean(got["poptune TPE"]["best"])
        floor = statistics.fmean(got["poptune RandomSearch"]["best"])
        what = f"{problem}: poptune's TPE beats random search (mean best)"
        section.target(what, mine < floor, f"{mine:.3f} vs {floor:.3f}")
        for ours, theirs in PAIRS:
            if theirs not in got:
                continue
            a, b = got[ours]["best"], got[theirs]["best"]
            gap, se = gap_and_se(a, b)  # minimising: within if gap ≤ 2 standard errors
            what = f"{problem}: {ours} within 2 standard errors of {theirs} (mean best)"
            detail = f"{statistics.fmean(a):.3f} vs {statistics.fmean(b):.3f}"
            detail += f" ({len(a)} and {len(b)} seeds)"
            section.target(what, gap <= 2 * se, detail)
    return section


def peer(problem: str, n: int, seeds: list[int], sampler: str) -> dict[str, Any]:
    """Optuna's side (``sampler``: "tpe" or "gp"): :func:`summary`'s figures, first warnings."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective, box, _ = PROBLEMS[problem]
    if sampler == "gp":
        preimport(*OPTUNA_GP_IMPORTS)
    make = {"tpe": optuna.samplers.TPESampler, "gp": optuna.samplers.GPSampler}[sampler]
    best, clock, caught = [], Clock(), []
    for seed in seeds:
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            study, values = optuna.create_study(sampler=make(seed=seed)), []
            for _ in range(n):
                with clock:
                    trial = study.ask()
                    p = {k: trial.suggest_float(k, lo, hi) for k, (lo, hi) in box.items()}
                values.append(objective(p))
                study.tell(trial, values[-1])
        caught += [f"{r.category.__name__}: {r.message}" for r in records]
        best.append(min(values))
    figures = summary(best, clock.wall, clock.cpu, n * len(best))
    return {**figures, "warnings": sorted(set(caught))[:3]}
