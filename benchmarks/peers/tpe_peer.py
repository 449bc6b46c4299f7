"""Case 6 (model-based search), Optuna's side: ``TPESampler`` or ``GPSampler`` with their
defaults on Branin or Hartmann-6, one study per seed; the best value found by each and the
wall and CPU seconds a suggestion took. poptune's side (``TPE``, ``BayesianOptimization``)
runs in the harness's own process, on the same objectives (``benchmarks.problems``).

Case 10 (what a suggestion costs) runs here too, with ``n_past`` set: the CPU and wall time
of each of ``k`` suggestions once a study holds ``n_past`` completed trials (the same points
on both sides, ``problems.past_points``, added with ``study.add_trials``), after one untimed
ask (GPSampler warms its kernel-parameter cache there); each is told its value before the
next (the tell is not timed).

``GPSampler`` needs PyTorch and SciPy, and greenlet to run its optimizer restarts batched
(without greenlet Optuna warns and runs them one after the other); the virtualenv has all
three (``benchmarks/peers/optuna.txt``).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from benchmarks.peers import serve
from benchmarks.problems import PROBLEMS, past_points


def make_sampler(sampler: str, seed: int) -> Any:
    import optuna

    if sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    raise ValueError(f"sampler must be 'tpe' or 'gp', got {sampler!r}")


def run(
    problem: str,
    n: int = 0,
    seeds: list[int] | None = None,
    sampler: str = "tpe",
    n_past: int | None = None,
    k: int = 0,
) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective, box, _ = PROBLEMS[problem]
    if sampler == "gp":  # what GPSampler imports on first use, outside the timing
        import greenlet  # noqa: F401
        import scipy.optimize  # noqa: F401
        import torch  # noqa: F401
    if n_past is not None:
        return suggestion_cost(sampler, problem, n_past, k)
    best, seconds, cpu = [], 0.0, 0.0
    caught: list[str] = []
    for seed in seeds or [0]:
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            study = optuna.create_study(sampler=make_sampler(sampler, seed))
            values = []
            for _ in range(n):
                start, start_cpu = time.perf_counter(), time.process_time()
                trial = study.ask()
                p = {k: trial.suggest_float(k, lo, hi) for k, (lo, hi) in box.items()}
                seconds += time.perf_counter() - start
                cpu += time.process_time() - start_cpu
                value = objective(p)
                study.tell(trial, value)
                values.append(value)
        caught += [f"{r.category.__name__}: {r.message}" for r in records]
        best.append(min(values))
    return {
        "best": best,
        "s_per_suggestion": seconds / (n * len(best)),
        "cpu_s_per_suggestion": cpu / (n * len(best)),
        "warnings": sorted(set(caught))[:3],
    }


def suggestion_cost(sampler: str, problem: str, n_past: int, k: int, seed: int = 0) -> dict:
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    objective, box, _ = PROBLEMS[problem]
    distributions = {name: FloatDistribution(lo, hi) for name, (lo, hi) in box.items()}
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        study = optuna.create_study(sampler=make_sampler(sampler, seed))
        study.add_trials(
            [
                create_trial(params=p, distributions=distributions, value=objective(p))
                for p in past_points(problem, n_past, seed)
            ]
        )
        cpu: list[float] = []
        wall: list[float] = []
        for i in range(k + 1):
            start, start_cpu = time.perf_counter(), time.process_time()
            trial = study.ask()
            params = {name: trial.suggest_float(name, lo, hi) for name, (lo, hi) in box.items()}
            if i:  # the first ask is the untimed warm-up
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
            study.tell(trial, objective(params))
    caught = sorted({f"{r.category.__name__}: {r.message}" for r in records})
    return {"cpu_s": cpu, "wall_s": wall, "warnings": caught[:3]}


if __name__ == "__main__":
    serve(run)
