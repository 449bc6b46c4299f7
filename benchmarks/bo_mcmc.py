"""Bayesian optimization with the kernel hyperparameters fitted (plain GP, GPyOpt's ``'GP'``)
against sampled from their posterior (``hyperparameters='mcmc'``, GPyOpt's ``'GP_MCMC'`` with
``'EI_MCMC'``): quality and cost.

Quality: the best value found after N evaluations on Branin (30) and Hartmann-6 (50), one
``Study(..., seed=s)`` per seed, mean ± standard error over the seeds; every other argument
is BayesianOptimization's default (EI, GPyOpt's n_samples=10, n_burnin=100,
subsample_interval=10 for the chain). Cost: the CPU time (``time.process_time``) of one
model-based suggestion after 20, 50 and 100 completed random trials, mean over studies.

    python -m benchmarks.bo_mcmc            # the full run (~5 min CPU on one core)
    python -m benchmarks.bo_mcmc --quick    # a smoke run: 2 seeds, small budgets

Run it under ``nice`` on a shared machine. Prints a Markdown table (and writes JSON with
``--json PATH``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.harness import mean_se
from benchmarks.problems import PROBLEMS

BUDGETS = {"branin": 30, "hartmann6": 50}
COST_SIZES = (20, 50, 100)
MODES = {"GP (fit)": "fit", "GP_MCMC": "mcmc"}


def _params(problem: str) -> list[Any]:
    from poptune import Continuous

    _, box, _ = PROBLEMS[problem]
    return [Continuous(k, [lo, hi]) for k, (lo, hi) in box.items()]


def best_after(problem: str, mode: str, n: int, seed: int) -> tuple[float, float]:
    """The best value after ``n`` evaluations and the CPU seconds spent suggesting."""
    from poptune import Study, algorithms

    objective = PROBLEMS[problem][0]
    algorithm = algorithms.BayesianOptimization(max_num_trials=n, hyperparameters=mode)
    study = Study(_params(problem), algorithm, True, seed=seed, disable_dashboard=True)
    best, cpu = math.inf, 0.0
    for _ in range(n):
        start = time.process_time()
        trial = study.get_suggestion()
        cpu += time.process_time() - start
        value = objective(trial.parameters)
        study.add_observation(trial, objective=value)
        study.finalize(trial)
        best = min(best, value)
    return best, cpu


def suggestion_cost(problem: str, mode: str, n_past: int, seed: int) -> float:
    """CPU seconds of the first model-based suggestion after ``n_past`` random trials."""
    from poptune import Study, algorithms

    objective = PROBLEMS[problem][0]
    algorithm = algorithms.BayesianOptimization(
        num_initial_data_points=n_past, hyperparameters=mode
    )
    study = Study(_params(problem), algorithm, True, seed=seed, disable_dashboard=True)
    for _ in range(n_past):
        trial = study.get_suggestion()
        study.add_observation(trial, objective=objective(trial.parameters))
        study.finalize(trial)
    start = time.process_time()
    trial = study.get_suggestion()
    cpu = time.process_time() - start
    assert trial.meta.get("phase") == "model", trial.meta
    return cpu


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bo_mcmc", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 seeds, small budgets")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 20)")
    parser.add_argument("--cost-repeats", type=int, default=None, help="studies per cost cell")
    parser.add_argument("--json", default=None, help="also write the raw figures here")
    args = parser.parse_args(argv)
    seeds = list(range(args.seeds or (2 if args.quick else 20)))
    repeats = args.cost_repeats or (1 if args.quick else 5)
    budgets = {p: (16 if args.quick else n) for p, n in BUDGETS.items()}
    sizes = (20,) if args.quick else COST_SIZES
    raw: dict[str, Any] = {"seeds": seeds, "budgets": budgets, "quality": {}, "cost": {}}

    lines = [
        f"Best value after N evaluations, mean ± standard error over seeds {seeds[0]}–"
        f"{seeds[-1]}; CPU ms per suggestion over the whole run in brackets.",
        "",
        "| problem (minimum) | N | " + " | ".join(MODES) + " | GP_MCMC − GP, paired | "
        "GP_MCMC better / worse |",
        "|---|---|" + "---|" * (len(MODES) + 2),
    ]
    for problem, n in budgets.items():
        cells = []
        for name, mode in MODES.items():
            runs = [best_after(problem, mode, n, s) for s in seeds]
            best = [b for b, _ in runs]
            ms = 1e3 * sum(c for _, c in runs) / (n * len(seeds))
            raw["quality"][f"{problem}/{mode}"] = {"best": best, "ms_per_suggestion": ms}
            cells.append(f"{mean_se(best)} ({ms:.0f} ms)")
            print(f"  {problem} {name}: {cells[-1]}", file=sys.stderr, flush=True)
        fit, mcmc = (raw["quality"][f"{problem}/{m}"]["best"] for m in MODES.values())
        diff = [b - a for a, b in zip(fit, mcmc, strict=True)]
        cells.append(mean_se(diff))
        cells.append(f"{sum(d < 0 for d in diff)} / {sum(d > 0 for d in diff)}")
        minimum = PROBLEMS[problem][2]
        lines.append(f"| {problem} ({minimum:.3f}) | {n} | " + " | ".join(cells) + " |")

    lines += [
        "",
        f"CPU ms of one model-based suggestion after n completed random trials (mean of "
        f"{repeats} studies):",
        "",
        "| problem | model | " + " | ".join(f"n = {k}" for k in sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    for problem in budgets:
        for name, mode in MODES.items():
            cells = []
            for size in sizes:
                cpu = [suggestion_cost(problem, mode, size, s) for s in range(repeats)]
                ms = 1e3 * statistics.fmean(cpu)
                raw["cost"][f"{problem}/{mode}/{size}"] = ms
                cells.append(f"{ms:.0f}")
            print(f"  cost {problem} {name}: {cells}", file=sys.stderr, flush=True)
            lines.append(f"| {problem} | {name} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(raw, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
