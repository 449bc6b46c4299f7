"""Case 6 (TPE), Optuna's side: ``TPESampler`` with its defaults on Branin or Hartmann-6, one
study per seed; the best value found by each and the seconds a suggestion took. poptune's side
(``TPE``) runs in the harness's own process, on the same objectives (defined here, numpy only).

    python -m benchmarks.peers.tpe_peer --args '{"problem": "branin", "n": 30,
        "seeds": [0, 1]}' --out result.json
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from benchmarks.peers import serve

_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_A = np.array(
    [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ]
)
_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def branin(p: dict[str, float]) -> float:
    """Branin on [-5, 10] x [0, 15]; minimum 0.397887."""
    x1, x2 = p["x"], p["y"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def hartmann6(p: dict[str, float]) -> float:
    """Hartmann-6 on [0, 1]^6; minimum -3.32237."""
    x = np.array([p[f"x{i}"] for i in range(6)])
    return float(-np.sum(_ALPHA * np.exp(-np.sum(_A * (x - _P) ** 2, axis=1))))


#: problem -> (objective, {name: (low, high)}, minimum)
PROBLEMS: dict[str, Any] = {
    "branin": (branin, {"x": (-5.0, 10.0), "y": (0.0, 15.0)}, 0.397887),
    "hartmann6": (hartmann6, {f"x{i}": (0.0, 1.0) for i in range(6)}, -3.32237),
}


def run(problem: str, n: int, seeds: list[int]) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective, box, _ = PROBLEMS[problem]
    best, seconds = [], 0.0
    for seed in seeds:
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
        values = []
        for _ in range(n):
            start = time.perf_counter()
            trial = study.ask()
            p = {k: trial.suggest_float(k, lo, hi) for k, (lo, hi) in box.items()}
            seconds += time.perf_counter() - start
            value = objective(p)
            study.tell(trial, value)
            values.append(value)
        best.append(min(values))
    return {"best": best, "s_per_suggestion": seconds / (n * len(seeds))}


if __name__ == "__main__":
    serve(run)
