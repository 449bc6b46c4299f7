"""Case 6: poptune's TPE against Optuna's TPESampler (both with their defaults) on Branin (30
evaluations) and Hartmann-6 (50), one study per seed; random search as the floor.

The figure of merit is the best value found by the last evaluation, mean ± standard deviation
over seeds, and the time a suggestion takes. poptune's side runs in the harness's process;
Optuna's in its virtualenv (``benchmarks/peers/tpe_peer.py``, which defines both objectives).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.harness import Context, Section, Target, log, mean_sd, table
from benchmarks.problems import PROBLEMS

TITLE = "6. TPE: poptune's against Optuna's TPESampler on Branin and Hartmann-6"
BUDGETS = {"branin": 30, "hartmann6": 50}


def poptune_run(algorithm: str, problem: str, n: int, seeds: list[int]) -> dict[str, Any]:
    from poptune import Continuous, Study, algorithms

    objective, box, _ = PROBLEMS[problem]
    params = [Continuous(k, [lo, hi]) for k, (lo, hi) in box.items()]
    best, seconds = [], 0.0
    for seed in seeds:
        make = algorithms.TPE if algorithm == "TPE" else algorithms.RandomSearch
        study = Study(params, make(), True, seed=seed, disable_dashboard=True)
        values = []
        for _ in range(n):
            start = time.perf_counter()
            trial = study.get_suggestion()
            seconds += time.perf_counter() - start
            value = objective(trial.parameters)
            study.add_observation(trial, value)
            study.finalize(trial)
            values.append(value)
        best.append(min(values))
    return {"best": best, "s_per_suggestion": seconds / (n * len(seeds))}


def run(ctx: Context) -> Section:
    section = Section("tpe", TITLE)
    seeds = list(range(ctx.seeds_or(20, 2)))
    rows, results = [], {}
    for problem, n in BUDGETS.items():
        n = ctx.pick(n, 15)
        got = {
            "poptune TPE": poptune_run("TPE", problem, n, seeds),
            "poptune RandomSearch": poptune_run("RandomSearch", problem, n, seeds),
        }
        if ctx.peer("optuna") is not None:
            out = ctx.run_peer(
                "optuna", "tpe_peer", {"problem": problem, "n": n, "seeds": seeds}, 600
            )
            if out.ok:
                got["Optuna TPESampler"] = out.result
            else:
                section.notes.append(f"Optuna on {problem} failed: {out.error}")
        for name, res in got.items():
            log(f"  tpe {problem:<9} {name:<20} best {statistics.fmean(res['best']):.3f}")
            rows.append(
                [
                    problem,
                    str(n),
                    name,
                    mean_sd(res["best"]),
                    f"{res['s_per_suggestion'] * 1e3:.1f}",
                ]
            )
        results[problem] = got
    if ctx.peer("optuna") is None:
        section.notes.append(ctx.peer_note("optuna"))
    section.lines += [
        f"Best value found by the last evaluation, mean ± sd over {len(seeds)} seeds "
        "(minimum: Branin 0.398, Hartmann-6 −3.322); ms per suggestion (asking only).",
        "",
        *table(["problem", "evaluations", "algorithm", "best value", "ms / suggestion"], rows),
    ]
    for problem, got in results.items():
        mine, peer = got["poptune TPE"]["best"], got.get("Optuna TPESampler", {}).get("best")
        floor = statistics.fmean(got["poptune RandomSearch"]["best"])
        section.targets.append(
            Target(
                f"{problem}: poptune's TPE beats random search (mean best)",
                None if ctx.quick else statistics.fmean(mine) < floor,
                f"{statistics.fmean(mine):.3f} vs {floor:.3f}",
            )
        )
        if peer:
            sd = (statistics.stdev(mine) if len(mine) > 1 else 0.0) / len(mine) ** 0.5
            sd_peer = (statistics.stdev(peer) if len(peer) > 1 else 0.0) / len(peer) ** 0.5
            gap = statistics.fmean(mine) - statistics.fmean(peer)
            section.targets.append(
                Target(
                    f"{problem}: poptune's TPE within 2 standard errors of Optuna's TPESampler",
                    None if ctx.quick else gap <= 2 * (sd**2 + sd_peer**2) ** 0.5,
                    f"{statistics.fmean(mine):.3f} vs {statistics.fmean(peer):.3f}",
                )
            )
    return section
