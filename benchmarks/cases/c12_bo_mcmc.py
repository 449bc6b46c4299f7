"""Case 12: Bayesian optimization with the kernel hyperparameters fitted (plain GP,
GPyOpt's ``'GP'``) against sampled from their posterior (``hyperparameters='mcmc'``,
GPyOpt's ``'GP_MCMC'`` with ``'EI_MCMC'``): quality and cost.

Quality: the best value found after N evaluations on Branin (30) and Hartmann-6 (50), one
``Study(..., seed=s)`` per seed, mean ± standard error over the seeds; every other argument
is BayesianOptimization's default (EI, GPyOpt's n_samples=10, n_burnin=100,
subsample_interval=10 for the chain). Cost: the CPU time (``time.process_time``) of one
model-based suggestion after 20, 50 and 100 completed random trials, mean over studies.

``python -m benchmarks --cases 12`` is the full run (~5 min CPU on one core; ``--seeds``
sets the seeds, ``--repeats`` the studies per cost cell); ``--quick`` 2 seeds, small budgets.
"""

from __future__ import annotations

import statistics
import time

from benchmarks.harness import Context, Section, log, mean_se, table
from benchmarks.problems import PROBLEMS, poptune_search, problem_study

TITLE = "12. Bayesian optimization: GP_MCMC beside plain GP (fitted kernel hyperparameters)"
BUDGETS = {"branin": 30, "hartmann6": 50}
COST_SIZES = (20, 50, 100)
MODES = {"GP (fit)": "fit", "GP_MCMC": "mcmc"}


def suggestion_cost(problem: str, mode: str, n_past: int, seed: int) -> float:
    """CPU seconds of the first model-based suggestion after ``n_past`` random trials."""
    from poptune import algorithms

    objective = PROBLEMS[problem][0]
    algorithm = algorithms.BayesianOptimization(
        num_initial_data_points=n_past, hyperparameters=mode
    )
    study = problem_study(problem, algorithm, seed)
    for _ in range(n_past):
        trial = study.get_suggestion()
        study.add_observation(trial, objective=objective(trial.parameters))
        study.finalize(trial)
    start = time.process_time()
    trial = study.get_suggestion()
    cpu = time.process_time() - start
    assert trial.meta.get("phase") == "model", trial.meta
    return cpu


def run(ctx: Context) -> Section:
    from poptune import algorithms

    section = Section("bo_mcmc", TITLE)
    seeds = list(range(ctx.seeds_or(20, 2)))
    repeats = ctx.repeats_or(5, 1)
    budgets = {p: ctx.pick(n, 16) for p, n in BUDGETS.items()}
    sizes = ctx.pick(COST_SIZES, (20,))
    rows = []
    for problem, n in budgets.items():
        cells, best = [], {}
        for name, mode in MODES.items():
            runs = []
            for s in seeds:
                algorithm = algorithms.BayesianOptimization(max_num_trials=n, hyperparameters=mode)
                runs.append(poptune_search(problem, algorithm, n, s))
            best[mode] = [b for b, _, _ in runs]
            ms = 1e3 * sum(c for _, _, c in runs) / (n * len(seeds))
            cells.append(f"{mean_se(best[mode])} ({ms:.0f} ms)")
            log(f"  {problem} {name}: {cells[-1]}")
        diff = [b - a for a, b in zip(best["fit"], best["mcmc"], strict=True)]
        cells.append(mean_se(diff))
        cells.append(f"{sum(d < 0 for d in diff)} / {sum(d > 0 for d in diff)}")
        rows.append([f"{problem} ({PROBLEMS[problem][2]:.3f})", str(n), *cells])
    section.lines += [
        f"Best value after N evaluations, mean ± standard error over seeds {seeds[0]}–"
        f"{seeds[-1]}; CPU ms per suggestion over the whole run in brackets.",
        "",
        *table(
            ["problem (minimum)", "N", *MODES, "GP_MCMC − GP, paired", "GP_MCMC better / worse"],
            rows,
        ),
    ]
    rows = []
    for problem in budgets:
        for name, mode in MODES.items():
            cells = []
            for size in sizes:
                cpu = [suggestion_cost(problem, mode, size, s) for s in range(repeats)]
                cells.append(f"{1e3 * statistics.fmean(cpu):.0f}")
            log(f"  cost {problem} {name}: {cells}")
            rows.append([problem, name, *cells])
    section.lines += [
        "",
        f"CPU ms of one model-based suggestion after n completed random trials (mean of "
        f"{repeats} studies):",
        "",
        *table(["problem", "model", *[f"n = {k}" for k in sizes]], rows),
    ]
    return section
