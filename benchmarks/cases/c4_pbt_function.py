"""Case 4: PBT and PB2 against Ray Tune's on Ray's own ``pbt_function`` problem (a
learning-rate schedule whose optimum moves as the model trains; re-implemented in
:mod:`benchmarks.problems`), at equal budgets; both sides run
``benchmarks/peers/pbt_function_peer.py``. The method (seeds, budgets, what a cut-off Ray run
means) is the page text below."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from benchmarks.harness import (
    Context,
    Section,
    Target,
    figure,
    fmt,
    log,
    mean_and_se,
    mean_se,
    table,
)

TITLE = "4. PBT vs Ray Tune on Ray's `pbt_function` problem (moving optimum)"
STEPS = 5
SEEDS, QUICK_SEEDS = 10, 2
FIRST_SEED = 100
#: Ray's time budget per fit: generous, so that a full run is not cut off (population 8 with
#: PB2 took 157 s here, and 150 s cut it off at 1,005 of 1,200 steps).
TIME_BUDGET_S, QUICK_TIME_BUDGET_S = 900.0, 60.0
#: No new seed is started past this (Ray takes ~5 minutes a seed for the four configurations
#: on 2 cores; poptune seconds).
CASE_LIMIT_S, QUICK_CASE_LIMIT_S = 75 * 60.0, 90.0
LABELS = ("poptune", "poptune async", "Ray Tune")


def comparable(res: dict[str, Any]) -> bool:
    """A run that trained every member for the whole budget (none cut off by a time budget)."""
    return not res.get("short") and res.get("final") is not None


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def run(ctx: Context) -> Section:
    section = Section("pbt_function", TITLE)
    populations = ctx.pick((4, 8), (4,))
    generations = ctx.pick(30, 10)
    n_seeds = ctx.seeds_or(SEEDS, QUICK_SEEDS)
    time_budget = ctx.pick(TIME_BUDGET_S, QUICK_TIME_BUDGET_S)
    limit = ctx.pick(CASE_LIMIT_S, QUICK_CASE_LIMIT_S)
    configs = [[a, p] for p in populations for a in ("pbt", "pb2")]
    ray_ok = ctx.peer("ray") is not None
    if not ray_ok:
        section.notes.append(ctx.peer_note("ray"))
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}  # label -> config -> runs
    startup: dict[str, list[float]] = {}
    failures: list[str] = []

    def record(label: str, out: Any) -> None:
        if not out.ok:
            failures.append(f"{label}: {out.error}")
            log(f"  pbt_function {label}: FAILED {out.error}")
            return
        startup.setdefault(label, []).append(out.result["startup_s"])
        for config, results in out.result["runs"].items():
            runs.setdefault(label, {}).setdefault(config, []).extend(results)
            for res in results[:3]:
                log(
                    f"  pbt_function {label:<14} {config:<6} final {fmt(res['final'] or 0)} "
                    f"({res['iterations']} of {res.get('budget_steps', '?')} steps, "
                    f"{res['wall_s']:.2f} s, CPU {res.get('cpu_s', math.nan):.2f} s)"
                )

    base = {"configs": configs, "generations": generations, "steps": STEPS}
    deadline = time.monotonic() + limit
    last_seed_s, seeds = 0.0, []
    for r in range(n_seeds):
        if r and time.monotonic() + last_seed_s > deadline:
            section.notes.append(
                f"only {r} of {n_seeds} seeds: the next one would have run past the case's "
                f"time limit ({limit / 60:.0f} min; the last seed took {last_seed_s:.0f} s)"
                + (" — **fewer than 10 seeds: not figures for a headline**" if r < 10 else "")
            )
            break
        seed_start = time.monotonic()
        seed = FIRST_SEED + r
        seeds.append(seed)
        mine = {**base, "library": "poptune", "seeds": [seed]}
        record("poptune", ctx.run_peer("poptune", "pbt_function_peer", mine, 600))
        if ray_ok and not any(f.startswith("Ray Tune") for f in failures):
            record(
                "Ray Tune",
                ctx.run_peer(
                    "ray",
                    "pbt_function_peer",
                    {**base, "library": "ray", "seeds": [seed], "time_budget_s": time_budget},
                    timeout_s=time_budget * len(configs) + 300,
                ),
            )
        last_seed_s = time.monotonic() - seed_start
    async_configs = [c for c in configs if c[0] == "pbt"]
    mine_async = {**base, "configs": async_configs, "library": "poptune", "synchronous": False}
    mine_async["seeds"] = seeds
    record("poptune async", ctx.run_peer("poptune", "pbt_function_peer", mine_async, 900))
    section.notes += failures

    def kept(label: str, config: str) -> list[dict[str, Any]]:
        return [x for x in runs.get(label, {}).get(config, []) if comparable(x)]

    def values(label: str, config: str, key: str) -> list[float]:
        return [x[key] for x in kept(label, config) if x.get(key) is not None]

    def rat(label: str, config: str, key: str) -> str:
        theirs = mean(values("Ray Tune", config, key))
        mine = mean(values(label, config, key))
        return fmt(mine / theirs, 2) if theirs else "–"

    rows = []
    for p in populations:
        for algorithm in ("pbt", "pb2"):
            config = f"{algorithm}-{p}"
            ray_full = kept("Ray Tune", config)
            for label in LABELS:
                done = runs.get(label, {}).get(config, [])
                if not done:
                    continue
                cut = [x for x in done if not comparable(x)]
                finals = values(label, config, "final")
                note = ""
                if cut:
                    steps = ", ".join(
                        f"{x['iterations']:,} of {x.get('budget_steps', 0):,}" for x in cut
                    )
                    note = (
                        f" — {len(cut)} run(s) cut off by the time budget (steps trained: "
                        f"{steps}): **not comparable**, left out"
                    )
                errors = sum(x.get("errors", 0) for x in done)
                if errors:
                    note += f" ({errors} trial error(s))"
                versus = label != "Ray Tune" and bool(ray_full) and bool(finals)
                ratios = [
                    rat(label, config, key) if versus else ("" if label == "Ray Tune" else "–")
                    for key in ("final", "wall_s", "cpu_s")
                ]
                rows.append(
                    [
                        str(p),
                        algorithm.upper(),
                        label + (" (sync)" if label == "poptune" else ""),
                        f"{len(finals)} of {len(done)}" + note,
                        mean_se(finals, 1) if finals else "not comparable",
                        mean_se(values(label, config, "best"), 1),
                        mean_se(values(label, config, "wall_s"), 2),
                        mean_se(values(label, config, "cpu_s"), 2),
                        *ratios,
                    ]
                )
    section.lines += [
        f"Population 4 and 8; each member trains {generations} segments of {STEPS} steps "
        f"({generations * STEPS} steps); both libraries report once per segment (Ray: one "
        "`training_iteration` with a checkpoint, which keeps Ray's per-report cost down); "
        "learning rate uniform in [1e-4, 0.02]; a perturbation after every segment; "
        "quantile 25%; PBT resamples with probability 0.25 and multiplies by 0.8/1.2; PB2 "
        "explores within [1e-4, 0.02]. Score = the best member's accuracy after its last "
        "segment (best = the best accuracy ever reported). Seeds "
        f"{', '.join(str(s) for s in seeds[:3])}{', …' if len(seeds) > 3 else ''} "
        f"({len(seeds)}); every figure is the mean ± standard error over the seeds' runs, "
        "ratios are poptune's mean over Ray's. "
        "Wall time = creating the study/tuner and running it, without imports and `ray.init` "
        f"(start-up: poptune {mean_se(startup.get('poptune', []), 2)} s, Ray "
        f"{mean_se(startup.get('Ray Tune', []), 2)} s); CPU time = the same span's CPU "
        "(user + system) of the process and every process under it (Ray's raylet, GCS and "
        "workers). poptune: `study.optimize` in one process with checkpoints on disk "
        "(`checkpoint_dir`, `trial.save_checkpoint`), synchronous by default. Ray Tune: "
        "function trainable, a checkpoint directory with every report, `reuse_actors=True` "
        "(Ray's advice for PBT), every member running at once on a fraction of the CPUs, "
        f"checkpoints kept, `time_budget_s={time_budget:g}` per fit. A run cut off by that "
        "budget is not comparable with a full one: it is left out of the means and its row "
        "says so.",
        "",
        "**The wall and CPU ratios measure framework overhead on a trivial function:** the "
        "`pbt_function` step is a few arithmetic operations, so these times are almost "
        "entirely the libraries' own (scheduling, reporting, checkpointing, processes). They "
        "say how much each library costs on top of training, not how long a real training "
        "run would take: with steps that take seconds, both libraries' times are dominated "
        "by the training itself and the ratios move towards 1.",
        "",
        *table(
            [
                "population",
                "algorithm",
                "library",
                "comparable runs",
                "final score (mean ± s.e.)",
                "best score",
                "wall time s",
                "CPU time s",
                "score ratio poptune/Ray",
                "wall ratio poptune/Ray",
                "CPU ratio poptune/Ray",
            ],
            rows,
        ),
    ]

    def draw(plt: Any) -> None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        configs_shown = [f"{a}-{p}" for p in populations for a in ("pbt", "pb2")]
        shown = [lab for lab in LABELS if lab in runs]
        width = 0.8 / max(1, len(shown))

        for i, label in enumerate(shown):
            xs = [k + i * width for k in range(len(configs_shown))]
            for ax, key in ((axes[0], "final"), (axes[1], "cpu_s")):
                got = [values(label, c, key) for c in configs_shown]
                ax.bar(
                    xs,
                    [mean(v) for v in got],
                    width,
                    yerr=[mean_and_se(v)[1] if len(v) > 1 else 0.0 for v in got],
                    label=label,
                    color=f"C{i}",
                    capsize=2,
                )
        for ax in axes:
            ax.set_xticks(
                [k + 0.4 - width / 2 for k in range(len(configs_shown))],
                [c.upper().replace("-", ", pop ") for c in configs_shown],
            )
            ax.grid(True, axis="y", alpha=0.3)
        axes[0].set_ylabel("final score (mean ± s.e.)")
        axes[1].set_ylabel("CPU time, s (mean ± s.e., log scale)")
        axes[1].set_yscale("log")
        axes[0].legend(fontsize=8)
        axes[0].set_title("Score (higher is better)")
        axes[1].set_title("CPU time: framework overhead (lower is better)")

    section.lines += figure(ctx, "pbt_function", draw, "score and CPU time against Ray Tune")

    what = (
        "poptune's mean score ≥ Ray Tune's at ≤ 0.1× its wall time (each algorithm and "
        "population with comparable runs)"
    )
    if "Ray Tune" not in runs:
        reason = ctx.peer_note("ray") if not ray_ok else "Ray Tune's runs failed"
        section.targets.append(Target(what, None, reason))
        return section
    parts, met, judged = [], True, 0
    for config in runs["Ray Tune"]:
        if not values("Ray Tune", config, "final") or not values("poptune", config, "final"):
            parts.append(f"{config.upper()}: not comparable (Ray cut off by its time budget)")
            continue
        judged += 1
        mine, theirs = values("poptune", config, "final"), values("Ray Tune", config, "final")
        wall = mean(values("poptune", config, "wall_s")) / mean(
            values("Ray Tune", config, "wall_s")
        )
        ok = mean(mine) >= mean(theirs) and wall <= 0.1
        met = met and ok
        parts.append(
            f"{config.upper()}: score {mean_se(mine, 1)} vs {mean_se(theirs, 1)}, wall ratio "
            f"{fmt(wall, 2)}" + ("" if ok else " (missed)")
        )
    verdict = (met if judged else None) if len(seeds) >= 10 or ctx.quick else None
    detail = "; ".join(parts) + (
        "" if len(seeds) >= 10 else f"; only {len(seeds)} seed(s): not judged"
    )
    section.targets.append(Target(what, None if ctx.quick else verdict, detail))
    return section
