"""The model-cost benchmark (``benchmarks/model_cost.py``), Optuna's side: the CPU and wall
time of one suggestion of ``GPSampler`` or ``TPESampler`` (their defaults, one seed) once a
study holds ``n_past`` completed trials.

The past trials are the same points on both sides (:func:`past_points`, numpy only, seeded),
evaluated on one of ``benchmarks.problems``' functions and added with ``study.add_trials``.
Then one untimed ask (Optuna's GPSampler warms its kernel-parameter cache there, poptune's
algorithms make their one random suggestion), and ``k`` timed asks, each told its value
before the next (the tell is not timed).

    python -m benchmarks.peers.model_cost_peer --args '{"sampler": "gp", "problem":
        "branin", "n_past": 50, "k": 3, "seed": 0}' --out result.json
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from benchmarks.peers import serve
from benchmarks.problems import PROBLEMS


def past_points(problem: str, n: int, seed: int) -> list[dict[str, float]]:
    """``n`` points drawn uniformly from ``problem``'s box (the same on every side)."""
    _, box, _ = PROBLEMS[problem]
    rng = np.random.default_rng([seed, n])
    draws = rng.random((n, len(box)))
    return [
        {
            name: float(lo + u * (hi - lo))
            for (name, (lo, hi)), u in zip(box.items(), row, strict=True)
        }
        for row in draws
    ]


def run(sampler: str, problem: str, n_past: int, k: int, seed: int = 0) -> dict[str, Any]:
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective, box, _ = PROBLEMS[problem]
    if sampler == "gp":  # what GPSampler imports on first use, outside the timing
        import greenlet  # noqa: F401
        import scipy.optimize  # noqa: F401
        import torch  # noqa: F401

        chosen: Any = optuna.samplers.GPSampler(seed=seed)
    elif sampler == "tpe":
        chosen = optuna.samplers.TPESampler(seed=seed)
    else:
        raise ValueError(f"sampler must be 'gp' or 'tpe', got {sampler!r}")
    distributions = {name: FloatDistribution(lo, hi) for name, (lo, hi) in box.items()}
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        study = optuna.create_study(sampler=chosen)
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
    caught += [f"{r.category.__name__}: {r.message}" for r in records]
    return {"cpu_s": cpu, "wall_s": wall, "warnings": sorted(set(caught))[:3]}


if __name__ == "__main__":
    serve(run)
