"""Case 6 (TPE), Optuna's side: ``TPESampler`` with its defaults on Branin or Hartmann-6, one
study per seed; the best value found by each and the seconds a suggestion took. poptune's side
(``TPE``) runs in the harness's own process, on the same objectives (``benchmarks.problems``).

    python -m benchmarks.peers.tpe_peer --args '{"problem": "branin", "n": 30,
        "seeds": [0, 1]}' --out result.json
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.peers import serve
from benchmarks.problems import PROBLEMS


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
