"""Case 6 (model-based search), Optuna's side: ``TPESampler`` or ``GPSampler`` with their
defaults on Branin or Hartmann-6, one study per seed; the best value found by each and the
wall and CPU seconds a suggestion took. poptune's side (``TPE``, ``BayesianOptimization``)
runs in the harness's own process, on the same objectives (``benchmarks.problems``).

    python -m benchmarks.peers.tpe_peer --args '{"problem": "branin", "n": 30,
        "seeds": [0, 1], "sampler": "gp"}' --out result.json

``GPSampler`` needs PyTorch and SciPy, and greenlet to run its optimizer restarts batched
(without greenlet Optuna warns and runs them one after the other); the virtualenv has all
three (``benchmarks/peers/optuna.txt``).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from benchmarks.peers import serve
from benchmarks.problems import PROBLEMS


def run(problem: str, n: int, seeds: list[int], sampler: str = "tpe") -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective, box, _ = PROBLEMS[problem]
    if sampler == "gp":  # what GPSampler imports on first use, outside the timing
        import greenlet  # noqa: F401
        import scipy.optimize  # noqa: F401
        import torch  # noqa: F401
    best, seconds, cpu = [], 0.0, 0.0
    caught: list[str] = []
    for seed in seeds:
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            if sampler == "tpe":
                chosen = optuna.samplers.TPESampler(seed=seed)
            elif sampler == "gp":
                chosen = optuna.samplers.GPSampler(seed=seed)
            else:
                raise ValueError(f"sampler must be 'tpe' or 'gp', got {sampler!r}")
            study = optuna.create_study(sampler=chosen)
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
        "s_per_suggestion": seconds / (n * len(seeds)),
        "cpu_s_per_suggestion": cpu / (n * len(seeds)),
        "warnings": sorted(set(caught))[:3],
    }


if __name__ == "__main__":
    serve(run)
