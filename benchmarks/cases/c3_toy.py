"""Case 3: PBT's quality on the paper's toy problem (Jaderberg et al. 2017, Fig. 2).

Maximise Q(θ) = 1.2 − (θ0² + θ1²). Each member does gradient ascent (step 0.01) on the
surrogate Q̂(θ|h) = 1.2 − (h0θ0² + h1θ1²) from θ = (0.9, 0.9); the population is two members
with h = (1, 0) and (0, 1); every 4 steps a member is *ready*: exploit (the worse member copies
the better one's θ and h) and/or explore (perturb h).

Two implementations, same seeds:

* a plain numpy loop of the paper's procedure (explore adds N(0, 0.1²) to each h, kept in
  [0, 1], the range the poptune study declares), for every variant: PBT, explore only,
  exploit only, no PBT; its figures are the reference;
* poptune's real algorithms: ``PopulationBasedTraining`` synchronous and asynchronous
  (50 segments of 4 steps; explore ×0.8/×1.2, resampling with probability 0.25; founders
  from ``initial_population``), θ carried through ``load_from``/``save_to`` in a dict keyed
  by the trial's checkpoint name (as poptune's tests do). The ablations: exploit only =
  ``perturbation_factors=(1.0,)`` and no resampling (copies θ and h, changes nothing);
  explore only = a subclass whose plan makes every member explore its own h and continue
  its own θ; no PBT = one generation of 200 steps (the same founders trained alone).

Best Q at step t = the best Q(θ) any member reached by step t (evaluated every 4 steps).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from benchmarks.harness import Context, Section, Target, figure, log, mean_se, table
from benchmarks.problems import (
    TOY_CHECKPOINTS,
    TOY_FOUNDERS,
    TOY_READY,
    TOY_STEPS,
    TOY_THETA0,
    toy_q,
    toy_steps,
)

TITLE = "3. PBT quality on the paper's toy problem (Jaderberg et al. 2017, Fig. 2)"
VARIANTS = ("PBT", "explore only", "exploit only", "no PBT")
EXPLORE_SIGMA = 0.1
RESAMPLE = 0.25


# -- the numpy reference ------------------------------------------------------------------------
def reference_run(seed: int, exploit: bool, explore: bool) -> dict[int, float]:
    """The paper's loop for one seed: best Q by each step of TOY_CHECKPOINTS."""
    rng = np.random.default_rng(seed)
    theta = [np.array(TOY_THETA0), np.array(TOY_THETA0)]
    h = [np.array([f["h0"], f["h1"]]) for f in TOY_FOUNDERS]
    best, out = -np.inf, {}
    for t in range(TOY_READY, TOY_STEPS + 1, TOY_READY):
        theta = [toy_steps(theta[i], h[i], TOY_READY) for i in range(2)]
        q = [toy_q(x) for x in theta]
        best = max(best, *q)
        if t in TOY_CHECKPOINTS:
            out[t] = best
        worse, better = (0, 1) if q[0] < q[1] else (1, 0)
        movers = [0, 1]
        if exploit:
            theta[worse], h[worse] = theta[better].copy(), h[better].copy()
            movers = [worse]
        if explore:
            for i in movers:
                h[i] = np.clip(h[i] + rng.normal(0.0, EXPLORE_SIGMA, 2), 0.0, 1.0)
    return out


REFERENCE = {
    "PBT": (True, True),
    "explore only": (False, True),
    "exploit only": (True, False),
    "no PBT": (False, False),
}


# -- poptune ----------------------------------------------------------------------------------
def _explore_only_class() -> type:
    from poptune.algorithms import PopulationBasedTraining

    class ExploreOnly(PopulationBasedTraining):
        """Every member continues its own θ and explores its own h (no exploit)."""

        def _plan(self, history, members, generation, rng):  # noqa: ANN001, ANN202
            plan = []
            for trial in sorted(members, key=lambda t: t.member):
                config, records = self._explore(history, trial, generation, rng, list)
                plan.append(
                    self._entry(history, trial, trial, generation, config, "; ".join(records))
                )
            return plan

    return ExploreOnly


def poptune_run(variant: str, seed: int) -> dict[int, float]:
    import poptune
    from poptune import Continuous
    from poptune.algorithms import PopulationBasedTraining as PBT

    founders = [dict(f) for f in TOY_FOUNDERS]
    segments, steps = TOY_STEPS // TOY_READY, TOY_READY
    if variant == "PBT (sync)":
        algorithm = PBT(segments, 2, resample_probability=RESAMPLE, initial_population=founders)
    elif variant == "PBT (async)":
        algorithm = PBT(
            segments, 2, resample_probability=RESAMPLE, initial_population=founders,
            synchronous=False,
        )  # fmt: skip
    elif variant == "exploit only":
        algorithm = PBT(
            segments, 2, perturbation_factors=(1.0,), resample_probability=0.0,
            initial_population=founders,
        )  # fmt: skip
    elif variant == "explore only":
        algorithm = _explore_only_class()(
            segments, 2, resample_probability=RESAMPLE, initial_population=founders
        )
    elif variant == "no PBT":
        algorithm = PBT(1, 2, initial_population=founders)
        segments, steps = 1, TOY_STEPS
    else:
        raise ValueError(variant)
    study = poptune.Study(
        [Continuous("h0", [0, 1]), Continuous("h1", [0, 1])], algorithm, False, seed=seed
    )
    thetas: dict[str, np.ndarray] = {}
    for trial in study:
        theta = thetas[trial.load_from] if trial.load_from else np.array(TOY_THETA0)
        h = np.array([trial.parameters["h0"], trial.parameters["h1"]])
        start = (trial.generation - 1) * steps
        for k in range(steps // TOY_READY):  # report every 4 steps
            theta = toy_steps(theta, h, TOY_READY)
            study.add_observation(trial, toy_q(theta), iteration=start + (k + 1) * TOY_READY)
        thetas[trial.save_to] = theta
        study.finalize(trial)
    best, out = -np.inf, {}
    by_step: dict[int, float] = {}
    for trial in study.trials:
        for it, obs in trial.observations.items():
            by_step[it] = max(by_step.get(it, -np.inf), obs.objective)
    for t in range(TOY_READY, TOY_STEPS + 1, TOY_READY):
        best = max(best, by_step.get(t, -np.inf))
        if t in TOY_CHECKPOINTS:
            out[t] = best
    return out


POPTUNE_VARIANTS = ("PBT (sync)", "PBT (async)", "explore only", "exploit only", "no PBT")
REFERENCE_OF = {
    "PBT (sync)": "PBT",
    "PBT (async)": "PBT",
    "explore only": "explore only",
    "exploit only": "exploit only",
    "no PBT": "no PBT",
}


def run(ctx: Context) -> Section:
    section = Section("toy", TITLE)
    seeds = ctx.seeds_or(50, 10)
    results: dict[tuple[str, str], list[dict[int, float]]] = {}
    wall: dict[str, float] = {"numpy": 0.0, "poptune": 0.0}
    cpu: dict[str, float] = {"numpy": 0.0, "poptune": 0.0}
    for seed in range(seeds):  # alternate: the reference, then poptune, seed by seed
        start, start_cpu = time.perf_counter(), time.process_time()
        for variant, (exploit, explore) in REFERENCE.items():
            results.setdefault(("numpy", variant), []).append(reference_run(seed, exploit, explore))
        wall["numpy"] += time.perf_counter() - start
        cpu["numpy"] += time.process_time() - start_cpu
        start, start_cpu = time.perf_counter(), time.process_time()
        for variant in POPTUNE_VARIANTS:
            results.setdefault(("poptune", variant), []).append(poptune_run(variant, seed))
        wall["poptune"] += time.perf_counter() - start
        cpu["poptune"] += time.process_time() - start_cpu
    log(f"  toy: {seeds} seeds, numpy {wall['numpy']:.1f} s, poptune {wall['poptune']:.1f} s")

    def at(source: str, variant: str, t: int) -> list[float]:
        return [r[t] for r in results[(source, variant)]]

    rows = []
    order = [("numpy", v) for v in VARIANTS] + [("poptune", v) for v in POPTUNE_VARIANTS]
    for source, variant in sorted(order, key=lambda sv: _rank(sv[1])):
        last = at(source, variant, TOY_STEPS)
        ref = at("numpy", REFERENCE_OF.get(variant, variant), TOY_STEPS)
        rows.append(
            [
                variant,
                "numpy reference" if source == "numpy" else "poptune",
                *[mean_se(at(source, variant, t)) for t in TOY_CHECKPOINTS],
                f"{min(last):.3f}–{max(last):.3f}",
                ""
                if source == "numpy"
                else f"{statistics.fmean(last) / statistics.fmean(ref):.3f}",
            ]
        )
    section.lines += [
        f"Population 2 (h = (1, 0) and (0, 1)), θ from (0.9, 0.9), gradient step 0.01, ready "
        f"every {TOY_READY} steps, {TOY_STEPS} steps; best Q reached by step t, mean ± s.e. over "
        f"{seeds} seeds (the same seeds for both); the last columns: the range at t = "
        f"{TOY_STEPS} and poptune's mean over the reference's. The reference is a plain numpy "
        "loop of the paper's procedure (explore: h + N(0, 0.1²), kept in [0, 1]); poptune runs "
        "its `PopulationBasedTraining` (explore ×0.8/×1.2, resample with probability 0.25). "
        "Explore only in poptune is a 10-line subclass that makes every member explore its own "
        "h; exploit only is `perturbation_factors=(1.0,)` without resampling; no PBT is one "
        f"{TOY_STEPS}-step generation. Wall (CPU) time for all seeds and variants: numpy "
        f"{wall['numpy']:.1f} s ({cpu['numpy']:.1f} s), poptune {wall['poptune']:.1f} s "
        f"({cpu['poptune']:.1f} s).",
        "",
        *table(
            [
                "variant",
                "implementation",
                *[f"t = {t}" for t in TOY_CHECKPOINTS],
                f"min–max at t = {TOY_STEPS}",
                "ratio poptune/reference",
            ],  # fmt: skip
            rows,
        ),
    ]

    def draw(plt: Any) -> None:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        ts = list(TOY_CHECKPOINTS)
        colors = {"PBT": "C0", "explore only": "C2", "exploit only": "C3", "no PBT": "C7"}
        for variant in VARIANTS:
            ys = [statistics.fmean(at("numpy", variant, t)) for t in ts]
            ax.plot(ts, ys, "--", color=colors[variant], label=f"numpy: {variant}")
        for variant in POPTUNE_VARIANTS:
            ref = REFERENCE_OF[variant]
            vals = [at("poptune", variant, t) for t in ts]
            ys = [statistics.fmean(v) for v in vals]
            style = "o-" if variant != "PBT (async)" else "s-"
            ax.plot(ts, ys, style, color=colors[ref], label=f"poptune: {variant}", alpha=0.8)
            if variant == "PBT (sync)":
                ax.fill_between(ts, [min(v) for v in vals], [max(v) for v in vals],
                                color=colors[ref], alpha=0.15)  # fmt: skip
        ax.axhline(1.2, color="k", linewidth=0.8, linestyle=":")
        ax.set_xlabel("step")
        ax.set_ylabel(f"best Q so far (mean over {seeds} seeds)")
        ax.set_title("Toy problem: poptune against the numpy reference")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, ncol=2, loc="lower right")

    section.lines += figure(ctx, "toy", draw, "best Q against steps on the toy problem")

    ref = at("numpy", "PBT", TOY_STEPS)
    for variant in ("PBT (sync)", "PBT (async)"):
        mine = at("poptune", variant, TOY_STEPS)
        diff = statistics.fmean(mine) - statistics.fmean(ref)
        se = (
            (statistics.variance(mine) / len(mine) + statistics.variance(ref) / len(ref)) ** 0.5
            if len(mine) > 1
            else 0.0
        )
        met = diff >= -2 * se - 1e-3
        section.targets.append(
            Target(
                f"poptune {variant} within noise of the numpy reference at t = {TOY_STEPS} "
                "(mean not below the reference's by more than 2 standard errors)",
                met,
                f"{statistics.fmean(mine):.4f} against {statistics.fmean(ref):.4f}, difference "
                f"{diff:+.4f}, 2 standard errors {2 * se:.4f}",
            )
        )
    return section


def _rank(variant: str) -> int:
    for i, name in enumerate(VARIANTS):
        if variant.startswith(name):
            return i
    return len(VARIANTS)
