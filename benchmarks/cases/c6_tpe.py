"""Case 6: model-based search beside Optuna's, both with their defaults, one study per seed:
poptune's TPE beside ``TPESampler``, ``BayesianOptimization`` beside ``GPSampler``, random
search as the floor (the method: the page text below). poptune's side runs in the harness's
process, Optuna's in its virtualenv (``benchmarks/peers/tpe_peer.py``)."""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.harness import Context, Section, Target, log, mean_se, table
from benchmarks.peers import preimport
from benchmarks.problems import poptune_search

TITLE = "6. Model-based search: TPE and Bayesian optimization beside Optuna's samplers"
BUDGETS = {"branin": 30, "hartmann6": 50}
#: Seeds in a full run: TPE and random search are cheap; the Gaussian-process samplers cost
#: up to a second a suggestion on 2 cores, so they get 10 (``--seeds`` sets both).
SEEDS, GP_SEEDS = 20, 10
#: (library, algorithm) -> its row label; poptune's algorithms by class name, Optuna's by
#: ``tpe_peer``'s ``sampler`` argument.
ALGORITHMS = {
    ("poptune", "TPE"): "poptune TPE",
    ("optuna", "tpe"): "Optuna TPESampler",
    ("poptune", "BayesianOptimization"): "poptune BayesianOptimization",
    ("optuna", "gp"): "Optuna GPSampler",
    ("poptune", "RandomSearch"): "poptune RandomSearch",
}
GP_BASED = (("poptune", "BayesianOptimization"), ("optuna", "gp"))
PAIRS = (("poptune TPE", "Optuna TPESampler"), ("poptune BayesianOptimization", "Optuna GPSampler"))


#: What each side's model-based algorithms import on first use, imported before the timing.
POPTUNE_IMPORTS = ("sklearn.gaussian_process", "scipy.optimize")


def poptune_run(algorithm: str, problem: str, n: int, seeds: list[int]) -> dict[str, Any]:
    from poptune import algorithms

    preimport(*POPTUNE_IMPORTS)
    runs = [poptune_search(problem, getattr(algorithms, algorithm)(), n, s) for s in seeds]
    per = n * len(seeds)
    return {
        "best": [best for best, _, _ in runs],
        "s_per_suggestion": sum(wall for _, wall, _ in runs) / per,
        "cpu_s_per_suggestion": sum(cpu for _, _, cpu in runs) / per,
    }


def within_2se(mine: list[float], theirs: list[float]) -> tuple[bool, float]:
    """Whether mean(mine) − mean(theirs) ≤ 2 standard errors of the difference (minimising)."""

    def se2(v: list[float]) -> float:
        return (statistics.stdev(v) ** 2 / len(v)) if len(v) > 1 else 0.0

    gap = statistics.fmean(mine) - statistics.fmean(theirs)
    return gap <= 2 * (se2(mine) + se2(theirs)) ** 0.5, gap


def run(ctx: Context) -> Section:
    section = Section("tpe", TITLE)
    seeds = list(range(ctx.seeds_or(SEEDS, 2)))
    gp_seeds = list(range(ctx.seeds_or(GP_SEEDS, 2)))
    optuna_ok = ctx.peer("optuna") is not None
    rows, results = [], {}
    for problem, n in BUDGETS.items():
        n = ctx.pick(n, 15)
        got: dict[str, dict[str, Any]] = {}
        for (library, algorithm), label in ALGORITHMS.items():
            chosen = gp_seeds if (library, algorithm) in GP_BASED else seeds
            if library == "poptune":
                got[label] = poptune_run(algorithm, problem, n, chosen)
            elif optuna_ok:
                out = ctx.run_peer(
                    "optuna",
                    "tpe_peer",
                    {"problem": problem, "n": n, "seeds": chosen, "sampler": algorithm},
                    1800,
                )
                if out.ok:
                    got[label] = out.result
                    for warning in out.result.get("warnings", []):
                        section.notes.append(f"{label} on {problem} warned: {warning[:200]}")
                else:
                    section.notes.append(f"{label} on {problem} failed: {out.error}")
            if label in got:
                res = got[label]
                log(
                    f"  model-based {problem:<9} {label:<28} "
                    f"best {statistics.fmean(res['best']):.3f}"
                )
                rows.append(
                    [
                        problem,
                        str(n),
                        label,
                        str(len(res["best"])),
                        mean_se(res["best"]),
                        f"{res['s_per_suggestion'] * 1e3:.1f}",
                        f"{res.get('cpu_s_per_suggestion', float('nan')) * 1e3:.1f}",
                    ]
                )
        results[problem] = got
    if not optuna_ok:
        section.notes.append(ctx.peer_note("optuna"))
    section.lines += [
        "Best value found by the last evaluation, mean ± standard error over the seeds "
        "(minimum: Branin 0.398, Hartmann-6 −3.322); wall and CPU ms per suggestion (asking "
        "only: for the Gaussian-process samplers, fitting the model and maximising the "
        "acquisition; the libraries those import on first use — scikit-learn and SciPy, "
        "PyTorch — are imported before the timing). Every algorithm with its defaults; "
        "Optuna's GPSampler runs with "
        "PyTorch (CPU build) and greenlet, as Optuna recommends. Seeds 0, 1, …; the cost at "
        "a few dozen trials says nothing of the cost at hundreds (see the README's statement "
        "of each algorithm's cost).",
        "",
        *table(
            [
                "problem",
                "evaluations",
                "algorithm",
                "seeds",
                "best value (mean ± s.e.)",
                "wall ms / suggestion",
                "CPU ms / suggestion",
            ],
            rows,
        ),
    ]
    for problem, got in results.items():
        mine = got["poptune TPE"]["best"]
        floor = statistics.fmean(got["poptune RandomSearch"]["best"])
        section.targets.append(
            Target(
                f"{problem}: poptune's TPE beats random search (mean best)",
                statistics.fmean(mine) < floor,
                f"{statistics.fmean(mine):.3f} vs {floor:.3f}",
            )
        )
        for ours, theirs in PAIRS:
            if theirs not in got:
                continue
            a, b = got[ours]["best"], got[theirs]["best"]
            ok, gap = within_2se(a, b)
            section.targets.append(
                Target(
                    f"{problem}: {ours} within 2 standard errors of {theirs} (mean best)",
                    ok,
                    f"{statistics.fmean(a):.3f} vs {statistics.fmean(b):.3f} "
                    f"({len(a)} and {len(b)} seeds)",
                )
            )
    return section
