"""Case 1 (per-trial overhead), one run of one library: ``benchmarks/overhead.py``'s timed loop
(its cases, its :class:`Laps` timing, a warm-up first), plus SHERPA's loop, in whichever
virtualenv has the library. With ``floor`` set it runs case 9's in-memory floor instead
(``random``, ``tpe``, ``optimize``, ``growth``: see :mod:`benchmarks.cases.c9_memory_floor`).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
import time
from typing import Any

from benchmarks import overhead
from benchmarks.overhead import (
    ACTIVATIONS,
    LR_RANGE,
    UNITS_RANGE,
    Laps,
    optuna_value,
    poptune_space,
    register,
    trial_value,
)
from benchmarks.peers import serve


@register("sherpa")
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
        study.add_observation(trial, iteration=1, objective=trial_value(trial))
        study.finalize(trial)
        lap()
    return laps.finish()


def run(
    case: str = "",
    n: int = 0,
    seed: int = 1,
    budget_s: float = 0.0,
    warmup: int = overhead.WARMUP_TRIALS,
    floor: str = "",
    library: str = "",
) -> dict[str, Any]:
    if floor:
        return (
            optuna_floor(floor, n, seed) if library == "optuna" else poptune_floor(floor, n, seed)
        )
    caught: list[str] = []
    with overhead.GC_METER:
        overhead.measure(case, warmup, seed, caught)  # imports, caches
        result = overhead.measure(case, n, seed, caught, budget_s if budget_s else math.inf)
    out = dataclasses.asdict(result)
    out["stopped"] = result.n < n
    out["warnings"] = caught[:3]
    return out


# -- case 9: in memory near its floor ----------------------------------------------------------
def _timed(body: Any, n: int) -> dict[str, Any]:
    cpu, wall = time.process_time(), time.perf_counter()
    body()
    return {
        "n": n,
        "cpu_s": (time.process_time() - cpu) / n,
        "wall_s": (time.perf_counter() - wall) / n,
    }


def _floor_study(algorithm: Any, seed: int) -> Any:
    import poptune

    return poptune.Study(poptune_space(), algorithm, True, seed=seed, disable_dashboard=True)


def _floor_loop(study: Any, n: int) -> None:
    if n <= 0:
        return
    for k, trial in enumerate(study, 1):
        study.add_observation(trial, trial_value(trial), iteration=1)
        study.finalize(trial)
        if k == n:
            return


def poptune_floor(case: str, n: int, seed: int) -> dict[str, Any]:
    import poptune

    if case == "optimize":
        study = _floor_study(poptune.algorithms.RandomSearch(), seed)
        study.optimize(trial_value, n_trials=overhead.WARMUP_TRIALS, show_progress=False)
        return _timed(lambda: study.optimize(trial_value, n_trials=n, show_progress=False), n)
    if case == "growth":
        return _growth(n, seed)
    make = poptune.algorithms.TPE if case == "tpe" else poptune.algorithms.RandomSearch
    study = _floor_study(make(), seed)
    _floor_loop(study, overhead.WARMUP_TRIALS)
    return _timed(lambda: _floor_loop(study, n), n)


def _growth(n: int, seed: int) -> dict[str, Any]:
    """One run of ``n`` trials: wall and CPU seconds per trial of its first and last 10%, and
    the wall and CPU seconds of each full collection of the cyclic GC in it."""
    import poptune

    pauses: list[tuple[float, float]] = []
    started = [0.0, 0.0]

    def meter(phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started[:] = [time.perf_counter(), time.process_time()]
        else:
            pauses.append((time.perf_counter() - started[0], time.process_time() - started[1]))

    study = _floor_study(poptune.algorithms.RandomSearch(), seed)
    k = max(1, n // 10)
    gc.callbacks.append(meter)
    try:
        first = _timed(lambda: _floor_loop(study, k), k)
        _floor_loop(study, n - 2 * k)
        last = _timed(lambda: _floor_loop(study, k), k)
    finally:
        gc.callbacks.remove(meter)
    return {
        "n": n,
        "first_s": first["wall_s"],
        "last_s": last["wall_s"],
        "first_cpu_s": first["cpu_s"],
        "last_cpu_s": last["cpu_s"],
        "full_gc_pauses_s": [wall for wall, _ in pauses],
        "full_gc_pauses_cpu_s": [cpu for _, cpu in pauses],
    }


def optuna_floor(case: str, n: int, seed: int) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if case == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(sampler=sampler)

    def loop(count: int) -> None:
        for _ in range(count):
            t = study.ask()
            study.tell(t, optuna_value(t))

    if case == "optimize":
        study.optimize(optuna_value, n_trials=overhead.WARMUP_TRIALS)
        return _timed(lambda: study.optimize(optuna_value, n_trials=n), n)
    loop(overhead.WARMUP_TRIALS)
    return _timed(lambda: loop(n), n)


if __name__ == "__main__":
    serve(run)
