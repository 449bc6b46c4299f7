"""The memory-floor benchmark's timed runs (``benchmarks/memory_floor.py``), one per process:
poptune's side runs with the harness's python, Optuna's with its virtualenv's.

    python -m benchmarks.peers.memory_floor_peer --args '{"library": "optuna", "case":
        "random", "n": 2000, "seed": 1}' --out result.json

Cases (in memory, a trivial objective of three parameters: a log-scale float, an int, a
categorical): ``random`` (an ask/tell loop: poptune's ``for trial in study`` with
RandomSearch, Optuna's ``ask``/``tell`` with RandomSampler), ``tpe`` (the same loop with
poptune's TPE and Optuna's default TPESampler), ``optimize`` (``study.optimize(objective,
n_trials=n)``, one worker, random search), ``growth`` (poptune's random loop, every trial
timed, with the cyclic GC's full collections metered) and ``objects`` (``len(gc.
get_objects())`` once the library is imported and ready to run a study).
"""

from __future__ import annotations

import gc
import math
import time
from typing import Any

from benchmarks.peers import serve

LR, UNITS, ACTS = (1e-5, 1e-1), (8, 256), ["relu", "tanh", "sigmoid"]
WARMUP = 200


def value(lr: float, units: int, act: str) -> float:
    return (math.log10(lr) + 3.0) ** 2 + units / 256.0 + (0.0 if act == "relu" else 0.1)


# -- poptune --------------------------------------------------------------------------------
def _poptune_study(algorithm: Any, seed: int) -> Any:
    import poptune
    from poptune import Choice, Continuous, Discrete

    space = [Continuous("lr", list(LR), "log"), Discrete("units", list(UNITS)),
             Choice("act", ACTS)]  # fmt: skip
    return poptune.Study(space, algorithm, True, seed=seed, disable_dashboard=True)


def _poptune_loop(study: Any, n: int) -> None:
    if n <= 0:
        return
    for k, trial in enumerate(study, 1):
        p = trial.parameters
        study.add_observation(trial, value(p["lr"], p["units"], p["act"]), iteration=1)
        study.finalize(trial)
        if k == n:
            return


def poptune_case(case: str, n: int, seed: int) -> dict[str, Any]:
    import poptune

    if case == "optimize":
        study = _poptune_study(poptune.algorithms.RandomSearch(), seed)

        def objective(trial: Any) -> float:
            p = trial.parameters
            return value(p["lr"], p["units"], p["act"])

        study.optimize(objective, n_trials=WARMUP, show_progress=False)
        return _timed(lambda: study.optimize(objective, n_trials=n, show_progress=False), n)
    if case == "growth":
        return _growth(n, seed)
    make = poptune.algorithms.TPE if case == "tpe" else poptune.algorithms.RandomSearch
    study = _poptune_study(make(), seed)
    _poptune_loop(study, WARMUP)
    return _timed(lambda: _poptune_loop(study, n), n)


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

    study = _poptune_study(poptune.algorithms.RandomSearch(), seed)
    k = max(1, n // 10)
    gc.callbacks.append(meter)
    try:
        first = _timed(lambda: _poptune_loop(study, k), k)
        _poptune_loop(study, n - 2 * k)
        last = _timed(lambda: _poptune_loop(study, k), k)
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


# -- Optuna ---------------------------------------------------------------------------------
def optuna_case(case: str, n: int, seed: int) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if case == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(sampler=sampler)

    def objective(t: Any) -> float:
        lr = t.suggest_float("lr", LR[0], LR[1], log=True)
        units = t.suggest_int("units", UNITS[0], UNITS[1])
        return value(lr, units, t.suggest_categorical("act", ACTS))

    def loop(count: int) -> None:
        for _ in range(count):
            t = study.ask()
            study.tell(t, objective(t))

    if case == "optimize":
        study.optimize(objective, n_trials=WARMUP)
        return _timed(lambda: study.optimize(objective, n_trials=n), n)
    loop(WARMUP)
    return _timed(lambda: loop(n), n)


# -- shared ---------------------------------------------------------------------------------
def _timed(run: Any, n: int) -> dict[str, Any]:
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    return {
        "n": n,
        "cpu_s": (time.process_time() - cpu) / n,
        "wall_s": (time.perf_counter() - wall) / n,
    }


def run(library: str, case: str, n: int = 0, seed: int = 1) -> dict[str, Any]:
    if library == "optuna":
        return optuna_case(case, n, seed)
    return poptune_case(case, n, seed)


if __name__ == "__main__":
    serve(run)
