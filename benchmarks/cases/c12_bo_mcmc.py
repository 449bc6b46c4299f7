"""Case 12: Bayesian optimization with the kernel hyperparameters fitted (plain GP, GPyOpt's
``'GP'``) against sampled from their posterior (``hyperparameters='mcmc'``, GPyOpt's ``'GP_MCMC'``
with ``'EI_MCMC'``): what the chain buys and costs. The method is the page text in :func:`run`;
every other argument is the default (EI; GPyOpt's n_samples=10, n_burnin=100, subsample_interval=10
for the chain). Full run: ~5 min CPU on one core."""

from __future__ import annotations

import statistics

from benchmarks.harness import Clock, Context, Section, log, mean_se, table
from benchmarks.problems import PROBLEMS, poptune_search, problem_study
from poptune.algorithms import BayesianOptimization as BO

TITLE = "12. Bayesian optimization: GP_MCMC beside plain GP (fitted kernel hyperparameters)"
BUDGETS = {"branin": 30, "hartmann6": 50}
COST_SIZES = (20, 50, 100)
MODES = {"GP (fit)": "fit", "GP_MCMC": "mcmc"}


def suggestion_cost(problem: str, mode: str, n_past: int, seed: int) -> float:
    """CPU seconds of the first model-based suggestion after ``n_past`` random trials."""
    objective = PROBLEMS[problem][0]
    study = problem_study(problem, BO(hyperparameters=mode, num_initial_data_points=n_past), seed)
    for _ in range(n_past):
        trial = study.get_suggestion()
        study.add_observation(trial, objective=objective(trial.parameters))
        study.finalize(trial)
    with Clock() as clock:
        trial = study.get_suggestion()
    assert trial.meta.get("phase") == "model", trial.meta
    return clock.cpu


def run(ctx: Context) -> Section:
    section = Section("bo_mcmc", TITLE)
    seeds = list(range(ctx.seeds_or(20, 2)))
    repeats = ctx.repeats_or(5, 1)
    budgets = {p: ctx.pick(n, 16) for p, n in BUDGETS.items()}
    sizes = ctx.pick(COST_SIZES, (20,))
    rows = []
    for problem, n in budgets.items():
        cells, best = [], {}
        for name, mode in MODES.items():
            runs = [
                poptune_search(problem, BO(hyperparameters=mode, max_num_trials=n), n, s)
                for s in seeds
            ]
            best[mode] = [b for b, _, _ in runs]
            ms = 1e3 * sum(c for _, _, c in runs) / (n * len(seeds))
            cells.append(f"{mean_se(best[mode])} ({ms:.0f} ms)")
            log(f"  {problem} {name}: {cells[-1]}")
        diff = [b - a for a, b in zip(best["fit"], best["mcmc"], strict=True)]
        cells += [mean_se(diff), f"{sum(d < 0 for d in diff)} / {sum(d > 0 for d in diff)}"]
        rows.append([f"{problem} ({PROBLEMS[problem][2]:.3f})", str(n), *cells])
    header = ["problem (minimum)", "N", *MODES, "GP_MCMC − GP, paired", "GP_MCMC better / worse"]
    section.lines += [
        f"Best value after N evaluations, mean ± standard error over seeds {seeds[0]}–"
        f"{seeds[-1]}; CPU ms per suggestion over the whole run in brackets.",
        "",
        *table(header, rows),
    ]
    rows = []
    for problem in budgets:
        for name, mode in MODES.items():
            cpu = [[suggestion_cost(problem, mode, k, s) for s in range(repeats)] for k in sizes]
            cells = [f"{1e3 * statistics.fmean(c):.0f}" for c in cpu]
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
