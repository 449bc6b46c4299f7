"""Case 1 (per-trial overhead), one run of one library: the same timed loop as
``benchmarks/overhead.py`` (its cases, its :class:`Laps` timing, a 200-trial warm-up first),
plus SHERPA's loop, run in whichever virtualenv has the library.

    python -m benchmarks.peers.overhead_peer --args '{"case": "optuna", "n": 1000,
        "seed": 1, "budget_s": 30}' --out result.json
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

from benchmarks import overhead
from benchmarks.overhead import ACTIVATIONS, LR_RANGE, UNITS_RANGE, Laps, objective, register
from benchmarks.peers import serve


@register("sherpa", library="sherpa", install="benchmarks/peers/sherpa.txt")
def sherpa_memory(n: int, seed: int) -> Laps:
    """SHERPA 1.0.6's own loop (its only storage is in memory; MongoDB for parallel runs)."""
    import sherpa

    logging.disable(logging.WARNING)  # sherpa logs every trial at INFO
    sherpa.core.rng.seed(seed)
    study = sherpa.Study(
        [
            sherpa.Continuous("lr", list(LR_RANGE), "log"),
            sherpa.Discrete("units", list(UNITS_RANGE)),
            sherpa.Choice("act", ACTIVATIONS),
        ],
        sherpa.algorithms.RandomSearch(max_num_trials=n),
        lower_is_better=True,
        disable_dashboard=True,
    )
    laps = Laps()
    lap = laps.start()
    for trial in study:
        p = trial.parameters
        study.add_observation(
            trial, iteration=1, objective=objective(p["lr"], p["units"], p["act"])
        )
        study.finalize(trial)
        lap()
    return laps.finish()


def run(
    case: str, n: int, seed: int, budget_s: float, warmup: int = overhead.WARMUP_TRIALS
) -> dict[str, Any]:
    chosen = overhead.CASES[case]
    caught: list[str] = []
    with overhead.GC_METER:
        overhead.measure(chosen, warmup, seed, caught)  # imports, caches
        result = overhead.measure(chosen, n, seed, caught, budget_s if budget_s else math.inf)
    out = dataclasses.asdict(result)
    out["stopped"] = result.n < n
    out["warnings"] = caught[:3]
    return out


if __name__ == "__main__":
    serve(run)
