"""The benchmark problems shared by poptune's side and the peers' side (numpy and stdlib only:
the peers' virtualenvs import this module too)."""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from benchmarks.harness import Clock

# -- the paper's toy problem (Jaderberg et al. 2017, Fig. 2) -----------------------------------
TOY_THETA0 = (0.9, 0.9)
TOY_STEP = 0.01
TOY_READY = 4  # steps between two exploit/explore decisions (one poptune segment)
TOY_STEPS = 200
TOY_CHECKPOINTS = (40, 80, 120, 160, 200)
TOY_FOUNDERS = ({"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0})


def toy_q(theta: np.ndarray) -> float:
    """The true objective Q(θ) = 1.2 − (θ0² + θ1²); its maximum is 1.2 at θ = 0."""
    return 1.2 - float(theta @ theta)


def toy_steps(theta: np.ndarray, h: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` steps of gradient ascent on the surrogate Q̂(θ|h) = 1.2 − (h0θ0² + h1θ1²)."""
    for _ in range(steps):
        theta = theta + TOY_STEP * (-2.0 * h * theta)
    return theta


# -- a learning-rate schedule problem whose optimum moves (Ray Tune's ``pbt_function``) ----------
# Re-implemented from the problem's description (see shared/BENCHMARKS.md): the best learning
# rate follows a triangle wave of the model's own accuracy, 0.001 at accuracy 0, 0.01 at 100
# and 0.001 again at 200; a learning rate within a factor 3 of it gains U(0, 1)/q, a rate
# three or more times too high loses (q − 3)·U(0, 1), and every step adds N(0, 2²) noise; the
# accuracy never goes below 0.
PF_LR_RANGE = (1e-4, 0.02)
PF_LR_LOW, PF_LR_PEAK, PF_MIDPOINT = 0.001, 0.01, 100.0
PF_TOLERANCE = 3.0
PF_NOISE = 2.0


def pf_optimal_lr(accuracy: float) -> float:
    """The learning rate that trains best at this accuracy (the moving optimum)."""
    distance = abs(accuracy - PF_MIDPOINT) / PF_MIDPOINT  # 1 at 0 and 200, 0 at the peak
    return PF_LR_PEAK - (PF_LR_PEAK - PF_LR_LOW) * min(1.0, distance)


def pf_step(accuracy: float, lr: float, rng: np.random.Generator) -> float:
    """One training iteration of the ``pbt_function`` problem."""
    optimal = pf_optimal_lr(accuracy)
    q = max(lr, optimal) / min(lr, optimal)
    if q < PF_TOLERANCE:
        accuracy += rng.random() / q
    elif lr > optimal:
        accuracy -= (q - PF_TOLERANCE) * rng.random()
    accuracy += rng.normal(0.0, PF_NOISE)
    return max(0.0, accuracy)


def pf_rng(seed: int, member: str, step: int) -> np.random.Generator:
    """The noise of one step of one member: reproducible whichever library runs it."""
    return np.random.default_rng([seed, zlib.crc32(member.encode()), step])


def pf_train(accuracy: float, lr: float, seed: int, member: str, start: int, steps: int) -> list:
    """``steps`` iterations from ``accuracy`` (after ``start`` iterations): the accuracies."""
    out = []
    for k in range(start, start + steps):
        accuracy = pf_step(accuracy, lr, pf_rng(seed, member, k))
        out.append(accuracy)
    return out


# -- optimisation test functions (case 6: TPE beside Optuna's TPESampler) ---------------------
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


def past_points(problem: str, n: int, seed: int) -> list[dict[str, float]]:
    """``n`` uniform points in ``problem``'s box: case 10's past trials (the same on every side)."""
    box = PROBLEMS[problem][1]
    lo, hi = np.array(list(box.values())).T
    draws = np.random.default_rng([seed, n]).random((n, len(box)))
    return [dict(zip(box, map(float, lo + u * (hi - lo)), strict=True)) for u in draws]


def problem_study(problem: str, algorithm: Any, seed: int) -> Any:
    """A fresh poptune study (minimising) of ``problem``'s box with ``algorithm``."""
    from poptune import Continuous, Study

    params = [Continuous(k, [lo, hi]) for k, (lo, hi) in PROBLEMS[problem][1].items()]
    return Study(params, algorithm, True, seed=seed, disable_dashboard=True)


def poptune_search(problem: str, algorithm: Any, n: int, seed: int) -> tuple[float, float, float]:
    """``n`` evaluations of ``problem`` by a fresh poptune study with ``algorithm``: the best
    value, and the wall and CPU seconds its suggestions took (``get_suggestion`` alone)."""
    objective = PROBLEMS[problem][0]
    study = problem_study(problem, algorithm, seed)
    best, clock = math.inf, Clock()
    for _ in range(n):
        with clock:
            trial = study.get_suggestion()
        value = objective(trial.parameters)
        study.add_observation(trial, value)
        study.finalize(trial)
        best = min(best, value)
    return best, clock.wall, clock.cpu
