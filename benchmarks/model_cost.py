"""What a model-based suggestion costs as a study grows, beside Optuna, in one run.

* **Gaussian process.** poptune's ``BayesianOptimization`` (its defaults: ``refit_every=10``;
  and ``refit_every=1``, every suggestion refitting, as before the option) beside Optuna's
  ``GPSampler`` (its defaults, PyTorch CPU build and greenlet) on Branin, after 50, 200 and
  500 completed trials: the CPU time (``time.process_time``, every thread) and the wall time
  of each of the next ``k`` suggestions (each evaluated and finished before the next),
  mean per suggestion. ``k`` is one refit cycle (10), so the mean holds one fit.
* **TPE.** poptune's ``TPE`` beside Optuna's ``TPESampler``, likewise.
* **MedianStoppingRule.** The first call (which indexes the history) and a second one, on a
  history of 1,000 and 10,000 finished trials of 1 to 20 iterations each.
* **Quality** (full run only): the best value found on Hartmann-6 after 100 evaluations by
  ``BayesianOptimization`` with ``refit_every=10`` and ``refit_every=1``, mean ± standard
  error over 10 seeds, and the CPU time per suggestion.

The past trials are the same points on both sides (``model_cost_peer.past_points``), added as
finished trials (``Study.add_trial`` / Optuna's ``add_trials``); then one untimed suggestion
(poptune's algorithms make their one random one there, Optuna's GPSampler warms its kernel
cache) and the ``k`` timed ones. Optuna runs in its own virtualenv
(``benchmarks/peers/optuna.txt``), set up on demand in a full run; ``--quick`` (small sizes,
``k = 2``, for the smoke test) only uses it if it is already there.

    python -m benchmarks.model_cost            # the full run (~40 min on 2 busy cores)
    python -m benchmarks.model_cost --quick
    python -m benchmarks.model_cost --only gp tpe rule       # the cost tables (~20 min)
    python -m benchmarks.model_cost --only quality --quality branin 80 10

Each table is printed as soon as it is measured.

Prints Markdown tables (and writes JSON with ``--json PATH``). Absolute times on a shared
machine drift: compare the ratio columns, measured side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.harness import log, mean_se, ratio, table
from benchmarks.peers import run_script, setup
from benchmarks.peers.model_cost_peer import past_points
from benchmarks.problems import PROBLEMS

SIZES, QUICK_SIZES = (50, 200, 500), (20, 40)
RULE_SIZES, QUICK_RULE_SIZES = (1_000, 10_000), (200, 1_000)
QUALITY = ("hartmann6", 100, 10)  # problem, evaluations, seeds
SECTIONS = ("gp", "tpe", "rule", "quality")


def _params(problem: str) -> list[Any]:
    from poptune import Continuous

    return [Continuous(k, [lo, hi]) for k, (lo, hi) in PROBLEMS[problem][1].items()]


def poptune_cost(algorithm: Any, problem: str, n_past: int, k: int, seed: int = 0) -> dict:
    """CPU and wall seconds of each of ``k`` suggestions after ``n_past`` finished trials."""
    from poptune import Study

    objective = PROBLEMS[problem][0]
    study = Study(_params(problem), algorithm, True, seed=seed, disable_dashboard=True)
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
    from poptune import Study, algorithms

    objective = PROBLEMS[problem][0]
    best, cpu = [], 0.0
    for seed in seeds:
        algorithm = algorithms.BayesianOptimization(refit_every=refit_every)
        study = Study(_params(problem), algorithm, True, seed=seed, disable_dashboard=True)
        values = []
        for _ in range(n):
            start = time.process_time()
            trial = study.get_suggestion()
            cpu += time.process_time() - start
            values.append(objective(trial.parameters))
            study.add_observation(trial, values[-1])
            study.finalize(trial)
        best.append(min(values))
        log(f"  quality refit_every={refit_every} seed {seed}: best {best[-1]:.4f}")
    return {"best": best, "cpu_s_per_suggestion": cpu / (n * len(seeds))}


def _ms(values: Sequence[float] | None) -> str:
    return f"{statistics.fmean(values) * 1e3:.1f}" if values else "–"


def _mean(values: Sequence[float] | None) -> float:
    return statistics.fmean(values) if values else math.nan


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.model_cost", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, k = 2 (smoke test)")
    parser.add_argument("--no-peers", action="store_true", help="poptune's side only")
    parser.add_argument("--json", help="also write the figures as JSON to this file")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="run only these sections (default: all)")  # fmt: skip
    default = " ".join(map(str, QUALITY))
    parser.add_argument("--quality", nargs=3, metavar=("PROBLEM", "EVALUATIONS", "SEEDS"),
                        help=f"the quality section's run (default: {default})")  # fmt: skip
    args = parser.parse_args(argv)
    quick = args.quick
    sizes = QUICK_SIZES if quick else SIZES
    k = 2 if quick else 10
    problem = "branin"
    from poptune import algorithms
    from poptune.algorithms._gp import import_sklearn

    import_sklearn()  # imported before the timing, as Optuna's side imports torch
    import scipy.optimize  # noqa: F401

    optuna = None
    if not args.no_peers and {"gp", "tpe"} & set(args.only):
        optuna = setup("optuna", install=not quick, log=log)
        if not optuna.ok:
            log(f"Optuna: {optuna.error}")
            optuna = None
    results: dict[str, Any] = {"quick": quick, "k": k, "problem": problem}
    lines = ["# Model-based cost per suggestion", ""]
    if optuna is not None:
        lines.append(f"Optuna {optuna.versions.get('optuna', '?')} (its own virtualenv).")
    else:
        lines.append("Optuna was not run (its virtualenv is not set up, or --no-peers).")
    lines.append(f"{problem}; mean of {k} suggestions after the given number of finished trials.")
    lines.append("")

    def emit(more: list[str]) -> None:
        """Print the lines so far (each table as soon as it is measured) and the JSON."""
        print("\n".join([*lines, *more]), flush=True)
        lines.clear()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)

    def peer(sampler: str, n_past: int) -> dict | None:
        if optuna is None:
            return None
        got = run_script(
            str(optuna.python),
            "model_cost_peer",
            {"sampler": sampler, "problem": problem, "n_past": n_past, "k": k},
            1800,
            log,
        )
        return got.result if got.ok else None

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
        if sampler not in args.only:
            continue
        rows = []
        for n_past in sizes:
            log(f"{title}: {n_past} past trials")
            mine = poptune_cost(ours(), problem, n_past, k)
            before = poptune_cost(old(), problem, n_past, k) if old else None
            theirs = peer(sampler, n_past)
            results[f"{sampler}_{n_past}"] = {"poptune": mine, "refit_every_1": before,
                                              "optuna": theirs}  # fmt: skip
            row = [title, str(n_past), _ms(mine["cpu_s"]), _ms(mine["wall_s"])]
            if old:
                row.append(_ms(before["cpu_s"]) if before else "–")
            row += [_ms(theirs and theirs["cpu_s"]), _ms(theirs and theirs["wall_s"])]
            row.append(ratio(_mean(mine["cpu_s"]), _mean(theirs and theirs["cpu_s"])))
            rows.append(row)
        header = ["model", "past trials", "poptune CPU ms", "poptune wall ms"]
        if old:
            header.append("poptune refit_every=1 CPU ms")
        header += [f"Optuna {label} CPU ms", f"Optuna {label} wall ms", "CPU ratio"]
        emit([*table(header, rows), ""])

    rows = []
    for n_trials in (RULE_SIZES if not quick else QUICK_RULE_SIZES) if "rule" in args.only else ():
        log(f"MedianStoppingRule: {n_trials} trials")
        got = rule_cost(n_trials)
        results[f"median_{n_trials}"] = got
        rows.append(["MedianStoppingRule", str(n_trials), str(int(got["observations"])),
                     f"{got['first_cpu_s'] * 1e3:.1f}", f"{got['first_wall_s'] * 1e3:.1f}",
                     f"{got['second_cpu_s'] * 1e3:.2f}"])  # fmt: skip
    header = ["rule", "trials", "observations", "first call CPU ms", "first call wall ms",
              "second call CPU ms"]  # fmt: skip
    if rows:
        emit([*table(header, rows), ""])

    q_problem, q_n, q_seeds = ("branin", 8, 2) if quick else QUALITY
    if args.quality:
        q_problem, q_n, q_seeds = args.quality[0], int(args.quality[1]), int(args.quality[2])
    rows = []
    for refit in (10, 1) if "quality" in args.only else ():
        got = quality(q_problem, q_n, range(q_seeds), refit)
        results[f"quality_refit_{refit}"] = got
        rows.append(["BayesianOptimization", f"refit_every={refit}", q_problem, str(q_n),
                     str(q_seeds), mean_se(got["best"], 4),
                     f"{got['cpu_s_per_suggestion'] * 1e3:.0f}"])  # fmt: skip
    header = ["algorithm", "option", "problem", "evaluations", "seeds",
              "best (mean ± s.e.)", "CPU ms / suggestion"]  # fmt: skip
    if rows:
        emit([*table(header, rows), ""])
    return 0


if __name__ == "__main__":
    sys.exit(main())
