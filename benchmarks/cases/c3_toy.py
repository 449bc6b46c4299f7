"""Case 3: PBT's quality on the paper's toy problem (Jaderberg et al. 2017, Fig. 2): does poptune's
``PopulationBasedTraining`` do as well as a plain numpy loop of the paper's procedure, and what do
exploit and explore each add? Q and Q̂: :mod:`benchmarks.problems`; the method: :func:`run`."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from benchmarks.harness import Context, Section, figure, gap_and_se, log, mean_se, style, table
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
VARIANTS = ("PBT", "explore only", "exploit only", "no PBT")  # the numpy reference's
POPTUNE_VARIANTS = ("PBT (sync)", "PBT (async)", "explore only", "exploit only", "no PBT")
EXPLORE_SIGMA = 0.1
RESAMPLE = 0.25


def reference_of(variant: str) -> str:
    """The numpy reference's variant for a poptune variant ("PBT (sync)" -> "PBT")."""
    return variant.split(" (")[0]


def best_by_checkpoint(best_at: dict[int, float]) -> dict[int, float]:
    """{t: the best Q reached by step t} at TOY_CHECKPOINTS, from the best Q at each ready step."""
    best, out = -np.inf, {}
    for t in range(TOY_READY, TOY_STEPS + 1, TOY_READY):
        best = max(best, best_at.get(t, -np.inf))
        if t in TOY_CHECKPOINTS:
            out[t] = best
    return out


# -- the numpy reference ------------------------------------------------------------------------
def reference_run(variant: str, seed: int) -> dict[int, float]:
    """The paper's loop for one seed: best Q by each step of TOY_CHECKPOINTS."""
    exploit, explore = variant in ("PBT", "exploit only"), variant in ("PBT", "explore only")
    rng = np.random.default_rng(seed)
    theta = [np.array(TOY_THETA0), np.array(TOY_THETA0)]
    h = [np.array([f["h0"], f["h1"]]) for f in TOY_FOUNDERS]
    best_at = {}
    for t in range(TOY_READY, TOY_STEPS + 1, TOY_READY):
        theta = [toy_steps(theta[i], h[i], TOY_READY) for i in range(2)]
        q = [toy_q(x) for x in theta]
        best_at[t] = max(q)
        worse, better = (0, 1) if q[0] < q[1] else (1, 0)
        movers = [0, 1]
        if exploit:  # the worse member copies the better one's θ and h
            theta[worse], h[worse] = theta[better].copy(), h[better].copy()
            movers = [worse]
        if explore:
            for i in movers:
                h[i] = np.clip(h[i] + rng.normal(0.0, EXPLORE_SIGMA, 2), 0.0, 1.0)
    return best_by_checkpoint(best_at)


# -- poptune ----------------------------------------------------------------------------------
def _explore_only_class() -> type:
    from poptune.algorithms import PopulationBasedTraining

    class ExploreOnly(PopulationBasedTraining):
        """Every member continues its own θ and explores its own h (no exploit)."""

        def _plan(self, history, members, generation, rng):  # noqa: ANN001, ANN202
            plan = []
            for trial in sorted(members, key=lambda t: t.member):
                config, records = self._explore(history, trial, generation, rng, list)
                note = "; ".join(records)
                plan.append(self._entry(history, trial, trial, generation, config, note))
            return plan

    return ExploreOnly


def poptune_algorithm(variant: str) -> Any:
    """``variant``'s PBT on the two founders (50 segments of TOY_READY steps; no PBT: one)."""
    from poptune.algorithms import PopulationBasedTraining as PBT

    founders = [dict(f) for f in TOY_FOUNDERS]
    if variant == "no PBT":
        return PBT(1, 2, initial_population=founders)
    options: dict[str, Any] = {"resample_probability": RESAMPLE, "initial_population": founders}
    if variant == "PBT (async)":
        options["synchronous"] = False
    if variant == "exploit only":  # copies θ and h, changes nothing
        options.update(perturbation_factors=(1.0,), resample_probability=0.0)
    cls = _explore_only_class() if variant == "explore only" else PBT
    return cls(TOY_STEPS // TOY_READY, 2, **options)


def poptune_run(variant: str, seed: int) -> dict[int, float]:
    """One poptune study of ``variant``: best Q by each step of TOY_CHECKPOINTS."""
    from poptune import Continuous, Study

    params = [Continuous("h0", [0, 1]), Continuous("h1", [0, 1])]
    study = Study(params, poptune_algorithm(variant), False, seed=seed)
    steps = TOY_STEPS if variant == "no PBT" else TOY_READY  # per segment
    thetas: dict[str, np.ndarray] = {}  # by checkpoint name, as poptune's tests do
    best_at: dict[int, float] = {}  # the best Q observed at each ready step
    for trial in study:
        theta = thetas[trial.load_from] if trial.load_from else np.array(TOY_THETA0)
        h = np.array([trial.parameters["h0"], trial.parameters["h1"]])
        start = (trial.generation - 1) * steps
        for t in range(start + TOY_READY, start + steps + 1, TOY_READY):  # report every 4 steps
            theta = toy_steps(theta, h, TOY_READY)
            study.add_observation(trial, toy_q(theta), iteration=t)
            best_at[t] = max(best_at.get(t, -np.inf), toy_q(theta))
        thetas[trial.save_to] = theta
        study.finalize(trial)
    return best_by_checkpoint(best_at)


RUNS = (("numpy", VARIANTS, reference_run), ("poptune", POPTUNE_VARIANTS, poptune_run))


def run(ctx: Context) -> Section:
    section = Section("toy", TITLE)
    seeds = ctx.seeds_or(50, 10)
    results: dict[tuple[str, str], list[dict[int, float]]] = {}
    wall: dict[str, float] = {"numpy": 0.0, "poptune": 0.0}
    cpu: dict[str, float] = {"numpy": 0.0, "poptune": 0.0}
    for seed in range(seeds):  # alternate: the reference, then poptune, seed by seed
        for source, variants, run_variant in RUNS:
            start, start_cpu = time.perf_counter(), time.process_time()
            for variant in variants:
                results.setdefault((source, variant), []).append(run_variant(variant, seed))
            wall[source] += time.perf_counter() - start
            cpu[source] += time.process_time() - start_cpu
    log(f"  toy: {seeds} seeds, numpy {wall['numpy']:.1f} s, poptune {wall['poptune']:.1f} s")

    def at(source: str, variant: str, t: int = TOY_STEPS) -> list[float]:
        return [r[t] for r in results[(source, variant)]]

    def mean(source: str, variant: str, t: int = TOY_STEPS) -> float:
        return statistics.fmean(at(source, variant, t))

    rows = []
    order = [(s, v) for s, variants, _ in RUNS for v in variants]
    for source, variant in sorted(order, key=lambda sv: VARIANTS.index(reference_of(sv[1]))):
        last = at(source, variant)
        ratio = mean(source, variant) / mean("numpy", reference_of(variant))
        rows.append(
            [variant, "numpy reference" if source == "numpy" else "poptune"]
            + [mean_se(at(source, variant, t)) for t in TOY_CHECKPOINTS]
            + [f"{min(last):.3f}–{max(last):.3f}", "" if source == "numpy" else f"{ratio:.3f}"]
        )
    header = ["variant", "implementation", *[f"t = {t}" for t in TOY_CHECKPOINTS]]
    header += [f"min–max at t = {TOY_STEPS}", "ratio poptune/reference"]
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
        *table(header, rows),
    ]

    def draw(plt: Any) -> None:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        ts = list(TOY_CHECKPOINTS)
        colors = {"PBT": "C0", "explore only": "C2", "exploit only": "C3", "no PBT": "C7"}
        for source, variant in order:  # the reference's dashed, poptune's with markers
            vals = [at(source, variant, t) for t in ts]
            marker = "--" if source == "numpy" else "s-" if variant == "PBT (async)" else "o-"
            color, alpha = colors[reference_of(variant)], None if source == "numpy" else 0.8
            ys = [statistics.fmean(v) for v in vals]
            ax.plot(ts, ys, marker, color=color, label=f"{source}: {variant}", alpha=alpha)
            if (source, variant) == ("poptune", "PBT (sync)"):
                lows, highs = [min(v) for v in vals], [max(v) for v in vals]
                ax.fill_between(ts, lows, highs, color=color, alpha=0.15)
        ax.axhline(1.2, color="k", linewidth=0.8, linestyle=":")
        ylabel = f"best Q so far (mean over {seeds} seeds)"
        title = "Toy problem: poptune against the numpy reference"
        style(ax, "step", ylabel, title, legend=7, ncol=2, loc="lower right")

    section.lines += figure(ctx, "toy", draw, "best Q against steps on the toy problem")
    for variant in ("PBT (sync)", "PBT (async)"):
        diff, se = gap_and_se(at("poptune", variant), at("numpy", "PBT"))
        text = f"poptune {variant} within noise of the numpy reference at t = {TOY_STEPS} (mean "
        text += "not below the reference's by more than 2 standard errors)"
        detail = f"{mean('poptune', variant):.4f} against {mean('numpy', 'PBT'):.4f}, "
        detail += f"difference {diff:+.4f}, 2 standard errors {2 * se:.4f}"
        section.target(text, diff >= -2 * se - 1e-3, detail)
    return section
