"""Case 10: what a model-based suggestion costs as a study grows (issue 14, item 5), beside
Optuna, in one run.

* **Gaussian process.** poptune's ``BayesianOptimization`` (its defaults: ``refit_every=10``;
  and ``refit_every=1``, every suggestion refitting, as before the option) beside Optuna's
  ``GPSampler`` (its defaults, PyTorch CPU build and greenlet) on Branin, after 50, 200 and
  500 completed trials: the CPU time (``time.process_time``, every thread) and the wall time
  of each of the next ``k`` suggestions (each evaluated and finished before the next),
  mean per suggestion. ``k`` is one refit cycle (10), so the mean holds one fit.
* **TPE.** poptune's ``TPE`` beside Optuna's ``TPESampler``, likewise.
* **MedianStoppingRule.** The first call (which indexes the history) and a second one, on a
  history of 1,000 and 10,000 finished trials of 1 to 20 iterations each: median [min–max]
  over 7 fresh histories (seeds 0-6), the target judged on the median.
* **Quality**: the best value found on Hartmann-6 after 100 evaluations by
  ``BayesianOptimization`` with ``refit_every=10`` and ``refit_every=1``, mean ± standard
  error over 10 seeds, and the CPU time per suggestion.

The past trials are the same points on both sides (``problems.past_points``), added as
finished trials (``Study.add_trial`` / Optuna's ``add_trials``); then one untimed suggestion
(poptune's algorithms make their one random one there, Optuna's GPSampler warms its kernel
cache) and the ``k`` timed ones. poptune's side runs in the harness's process, Optuna's in its
virtualenv (case 6's ``benchmarks/peers/tpe_peer.py`` with ``n_past`` set).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.harness import (
    Context,
    Section,
    Target,
    fmt,
    log,
    mean_se,
    med,
    ratio,
    spread,
    table,
)
from benchmarks.problems import PROBLEMS, past_points, poptune_search, problem_study

TITLE = "10. What a model-based suggestion costs as the study grows (vs Optuna's samplers)"
SIZES, QUICK_SIZES = (50, 200, 500), (20, 40)
RULE_SIZES, QUICK_RULE_SIZES = (1_000, 10_000), (200, 1_000)
RULE_HISTORIES = 7  # fresh histories per size (2 in a quick run)
QUALITY, QUICK_QUALITY = ("hartmann6", 100, 10), ("branin", 8, 2)  # problem, evaluations, seeds
PROBLEM = "branin"
GP_TARGET, RULE_TARGET_MS = 0.5, 20.0  # at 500 past trials; the first call at 10,000 trials


def poptune_cost(algorithm: Any, problem: str, n_past: int, k: int, seed: int = 0) -> dict:
    """CPU and wall seconds of each of ``k`` suggestions after ``n_past`` finished trials."""
    objective = PROBLEMS[problem][0]
    study = problem_study(problem, algorithm, seed)
    for p in past_points(problem, n_past, seed):
        study.add_trial(p)
        trial = study.get_suggestion()
        study.add_observation(trial, objective(trial.parameters))
        study.finalize(trial)
    cpu, wall = [], []
    for i in range(k + 1):
        start, start_cpu = time.perf_counter(), time.process_time()
        trial = study.get_suggestion()
        if i:  # the first one is the untimed warm-up (a random suggestion)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        study.add_observation(trial, objective(trial.parameters))
        study.finalize(trial)
    return {"cpu_s": cpu, "wall_s": wall}


def rule_cost(n_trials: int, seed: int = 0) -> dict[str, float]:
    """Seconds of MedianStoppingRule's first call (it indexes the history) and a second."""
    import numpy as np

    from poptune import Continuous
    from poptune.history import History
    from poptune.stopping import MedianStoppingRule
    from poptune.trial import Observation, Trial, TrialStatus

    rng = np.random.default_rng(seed)
    trials = []
    for tid in range(1, n_trials + 1):
        trial = Trial(tid, {"x": float(rng.random())}, TrialStatus.COMPLETED)
        for it, value in enumerate(rng.random(int(rng.integers(1, 21))), start=1):
            trial._record(Observation(it, float(value)))  # as a storage fills it
        trials.append(trial)
    subject = trials[-1]
    subject.status = TrialStatus.RUNNING
    history = History.from_trials([Continuous("x", [0, 1])], True, trials)
    rule = MedianStoppingRule()
    out: dict[str, float] = {"observations": float(sum(len(t.observations) for t in trials))}
    for name in ("first", "second"):
        start, start_cpu = time.perf_counter(), time.process_time()
        rule.should_trial_stop(subject, history)
        out[f"{name}_cpu_s"] = time.process_time() - start_cpu
        out[f"{name}_wall_s"] = time.perf_counter() - start
    return out


def quality(problem: str, n: int, seeds: Sequence[int], refit_every: int) -> dict[str, Any]:
    from poptune import algorithms

    best, cpu = [], 0.0
    for seed in seeds:
        algorithm = algorithms.BayesianOptimization(refit_every=refit_every)
        value, _, seconds = poptune_search(problem, algorithm, n, seed)
        best.append(value)
        cpu += seconds
        log(f"  quality refit_every={refit_every} seed {seed}: best {best[-1]:.4f}")
    return {"best": best, "cpu_s_per_suggestion": cpu / (n * len(seeds))}


def _mean(values: Sequence[float] | None) -> float:
    return statistics.fmean(values) if values else math.nan


def _ms(values: Sequence[float] | None) -> str:
    return fmt(_mean(values) * 1e3)


def run(ctx: Context) -> Section:
    from poptune import algorithms
    from poptune.algorithms._gp import import_sklearn

    section = Section("model_cost", TITLE)
    sizes, k = ctx.pick(SIZES, QUICK_SIZES), ctx.pick(10, 2)
    import_sklearn()  # imported before the timing, as Optuna's side imports torch
    import scipy.optimize  # noqa: F401

    optuna = ctx.peer("optuna") is not None
    if not optuna:
        section.notes.append(ctx.peer_note("optuna"))

    def peer(sampler: str, n_past: int) -> dict | None:
        if not optuna:
            return None
        args = {"sampler": sampler, "problem": PROBLEM, "n_past": n_past, "k": k}
        got = ctx.run_peer("optuna", "tpe_peer", args, 1800)
        if not got.ok:
            section.notes.append(f"Optuna {sampler} at {n_past} past trials: {got.error}")
        return got.result if got.ok else None

    section.lines += [
        f"{PROBLEM}; mean of {k} suggestions (CPU and wall ms each) after the given number of "
        "finished trials (the same points on both sides).",
    ]
    for title, ours, old, sampler, label in (
        (
            "Gaussian process",
            lambda: algorithms.BayesianOptimization(num_initial_data_points=1),
            lambda: algorithms.BayesianOptimization(num_initial_data_points=1, refit_every=1),
            "gp",
            "GPSampler",
        ),
        ("TPE", lambda: algorithms.TPE(n_startup_trials=1), None, "tpe", "TPESampler"),
    ):
        rows, last_ratio = [], math.nan
        for n_past in sizes:
            log(f"  {title}: {n_past} past trials")
            mine = poptune_cost(ours(), PROBLEM, n_past, k)
            before = poptune_cost(old(), PROBLEM, n_past, k) if old else None
            theirs = peer(sampler, n_past) or {}
            row = [title, str(n_past), _ms(mine["cpu_s"]), _ms(mine["wall_s"])]
            row += [_ms(before["cpu_s"])] if before else []
            row += [_ms(theirs.get("cpu_s")), _ms(theirs.get("wall_s"))]
            last_ratio = _mean(mine["cpu_s"]) / _mean(theirs.get("cpu_s"))
            row.append(ratio(_mean(mine["cpu_s"]), _mean(theirs.get("cpu_s"))))
            rows.append(row)
        header = ["model", "past trials", "poptune CPU ms", "poptune wall ms"]
        header += ["poptune refit_every=1 CPU ms"] if old else []
        header += [f"Optuna {label} CPU ms", f"Optuna {label} wall ms", "CPU ratio"]
        section.lines += ["", *table(header, rows)]
        if old:
            section.targets.append(
                Target(
                    f"BayesianOptimization at {sizes[-1]} past trials ≤ {GP_TARGET:g}× "
                    "GPSampler's CPU per suggestion",
                    None if math.isnan(last_ratio) else last_ratio <= GP_TARGET,
                    fmt(last_ratio, 2) if not math.isnan(last_ratio) else "not measured",
                )
            )

    rows, histories = [], ctx.pick(RULE_HISTORIES, 2)
    for n_trials in ctx.pick(RULE_SIZES, QUICK_RULE_SIZES):
        log(f"  MedianStoppingRule: {n_trials} trials, {histories} fresh histories")
        runs = [rule_cost(n_trials, seed) for seed in range(histories)]
        first_ms = med([r["first_cpu_s"] for r in runs]) * 1e3
        rows.append(
            [
                "MedianStoppingRule",
                str(n_trials),
                fmt(med([r["observations"] for r in runs]), 6),
                *(
                    spread([r[key] * 1e3 for r in runs])
                    for key in ("first_cpu_s", "first_wall_s", "second_cpu_s")
                ),
            ]  # fmt: skip
        )
    section.targets.append(
        Target(
            f"MedianStoppingRule's first call at {rows[-1][1]} trials ≤ {RULE_TARGET_MS:g} ms CPU "
            f"(median of {histories} fresh histories)",
            first_ms <= RULE_TARGET_MS,
            f"{rows[-1][3]} ms",
        )
    )
    header = ["rule", "trials", "observations (median)", "first call CPU ms",
              "first call wall ms", "second call CPU ms"]  # fmt: skip
    section.lines += [
        "",
        f"MedianStoppingRule: median [min–max] over {histories} fresh histories (seeds "
        f"0–{histories - 1}), each timed once: the first call's time varies run to run with "
        "allocation and garbage collection, so one timing is not a figure.",
        "",
        *table(header, rows),
    ]

    problem, n, seeds = ctx.pick(QUALITY, QUICK_QUALITY)
    seeds = ctx.seeds_or(seeds, seeds)
    rows = []
    for refit in (10, 1):
        got = quality(problem, n, range(seeds), refit)
        rows.append(
            [
                "BayesianOptimization",
                f"refit_every={refit}",
                problem,
                str(n),
                str(seeds),
                mean_se(got["best"], 4),
                fmt(got["cpu_s_per_suggestion"] * 1e3),
            ]
        )
    header = ["algorithm", "option", "problem", "evaluations", "seeds",
              "best (mean ± s.e.)", "CPU ms / suggestion"]  # fmt: skip
    section.lines += ["", *table(header, rows)]
    return section
