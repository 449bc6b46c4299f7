"""Case 1: per-trial library overhead and its growth with the number of trials, poptune beside
Optuna (in memory and on SQLite) and SHERPA (in memory, its only single-process storage).

Every run is a fresh process (``benchmarks/peers/overhead_peer.py`` with the library's
python) doing a 200-trial warm-up and then ``n`` timed trials of ``benchmarks/overhead.py``'s
loop; the libraries alternate run by run (poptune, Optuna, SHERPA, poptune, ...). A run that
would take longer than the per-run budget stops there and reports the trials it got through;
it is not repeated, nor run at larger sizes.
"""

from __future__ import annotations

import math
from typing import Any

from benchmarks.harness import Context, Section, Target, figure, fmt, log, med, ratio, spread, table

TITLE = "1. Per-trial overhead and scale (trivial objective; vs Optuna and SHERPA)"
SIZES = {"memory": (1_000, 10_000, 100_000), "sqlite": (1_000, 10_000)}
QUICK_SIZES = {"memory": (1_000, 5_000), "sqlite": (1_000,)}
LIBS = {"memory": ("poptune", "optuna", "sherpa"), "sqlite": ("poptune", "optuna")}
CASE_NAME = {  # overhead.py's case names
    ("poptune", "memory"): "poptune",
    ("optuna", "memory"): "optuna",
    ("sherpa", "memory"): "sherpa",
    ("poptune", "sqlite"): "poptune-sqlite",
    ("optuna", "sqlite"): "optuna-sqlite",
}
BUDGET_S, QUICK_BUDGET_S = 30.0, 4.0
STORAGE_TITLE = {"memory": "in memory", "sqlite": "SQLite file"}
MAX_RATIO, MAX_GROWTH = 0.1, 1.5


def run(ctx: Context) -> Section:
    section = Section("overhead", TITLE)
    sizes = ctx.pick(SIZES, QUICK_SIZES)
    repeats = ctx.repeats_or(3, 1)
    budget = ctx.pick(BUDGET_S, QUICK_BUDGET_S)
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    failed: dict[tuple[str, str], str] = {}
    capped: dict[tuple[str, str], int] = {}  # (lib, storage) -> the size whose run hit the budget
    usable = {
        lib: lib == "poptune" or ctx.peer(lib) is not None
        for lib in ("poptune", "optuna", "sherpa")
    }
    for lib in ("optuna", "sherpa"):
        if not usable[lib]:
            section.notes.append(ctx.peer_note(lib))
    for storage, ns in sizes.items():
        for n in ns:
            for r in range(repeats):
                for lib in LIBS[storage]:
                    key = (lib, storage)
                    if not usable[lib] or key in failed:
                        continue
                    if key in capped and (capped[key] < n or len(runs.get((*key, n), [])) > 0):
                        continue
                    out = ctx.run_peer(
                        lib,
                        "overhead_peer",
                        {"case": CASE_NAME[key], "n": n, "seed": 1000 + r, "budget_s": budget},
                        timeout_s=budget * 3 + 180,
                    )
                    if not out.ok:
                        failed[key] = out.error or "failed"
                        log(f"  overhead {lib} {storage} n={n}: FAILED {out.error}")
                        continue
                    res = out.result
                    runs.setdefault((*key, n), []).append(res)
                    if res["stopped"]:
                        capped[key] = n
                    log(
                        f"  overhead {storage:<6} n={n:>7,} repeat {r + 1}/{repeats} {lib:<8}"
                        f" {res['total']:9.4f} ms/trial"
                        + (f" (stopped after {res['n']:,} trials)" if res["stopped"] else "")
                    )
    for (lib, storage), error in failed.items():
        section.notes.append(f"{lib} ({STORAGE_TITLE[storage]}) failed: {error}")

    def ms(lib: str, storage: str, n: int) -> list[float]:
        return [x["total"] for x in runs.get((lib, storage, n), [])]

    rows = []
    for storage, ns in sizes.items():
        peers = [lib for lib in LIBS[storage] if lib != "poptune"]
        for n in ns:
            row = [STORAGE_TITLE[storage], f"{n:,}"]
            for lib in ("poptune", "optuna", "sherpa"):
                if lib not in LIBS[storage]:
                    row.append("(no such storage)")
                    continue
                cell = spread(ms(lib, storage, n))
                done = runs.get((lib, storage, n), [])
                if done and done[0]["stopped"]:
                    cell += f" (budget: {done[0]['n']:,} of {n:,} trials)"
                elif not done and (lib, storage) in capped:
                    cell = f"not run (the budget stopped n = {capped[(lib, storage)]:,})"
                row.append(cell)
            for lib in ("optuna", "sherpa"):
                row.append(
                    ratio(med(ms("poptune", storage, n)), med(ms(lib, storage, n)))
                    if lib in peers
                    else ""
                )
            g = [x["last"] / x["first"] for x in runs.get(("poptune", storage, n), [])]
            row.append(spread(g, 2))
            rows.append(row)
    section.lines += [
        f"Per trial: ask for a trial (3 parameters: log-float, int, categorical), report a "
        f"trivial objective, finish it — poptune `for trial in study` + `add_observation` + "
        f"`finalize` (RandomSearch), Optuna ask/tell (RandomSampler), SHERPA's own loop "
        f"(RandomSearch). Each run is a fresh process with a 200-trial warm-up; ms/trial = "
        f"total time / trials; median [min–max] of {repeats} alternating repeat(s). A run "
        f"longer than {budget:g} s stops there (it is then run once, and not at larger n). "
        "SHERPA has no SQLite storage (it shares studies through MongoDB).",
        "",
        *table(
            [
                "storage",
                "n trials",
                "poptune ms/trial",
                "Optuna ms/trial",
                "SHERPA ms/trial",
                "ratio poptune/Optuna",
                "ratio poptune/SHERPA",
                "poptune growth (last 10% / first 10%)",
            ],
            rows,
        ),
    ]

    def draw(plt: Any) -> None:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        styles = {"poptune": "C0", "optuna": "C1", "sherpa": "C2"}
        for storage, ns in sizes.items():
            for lib in LIBS[storage]:
                xs = [n for n in ns if ms(lib, storage, n)]
                if not xs:
                    continue
                ys = [med(ms(lib, storage, n)) for n in xs]
                lo = [y - min(ms(lib, storage, n)) for y, n in zip(ys, xs, strict=True)]
                hi = [max(ms(lib, storage, n)) - y for y, n in zip(ys, xs, strict=True)]
                ax.errorbar(
                    xs,
                    ys,
                    yerr=[lo, hi],
                    marker="o" if storage == "memory" else "s",
                    linestyle="-" if storage == "memory" else "--",
                    color=styles[lib],
                    capsize=3,
                    label=f"{lib}, {STORAGE_TITLE[storage]}",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("trials in the study (n)")
        ax.set_ylabel("ms per trial (median, min–max)")
        ax.set_title("Per-trial library overhead")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)

    section.lines += figure(ctx, "overhead", draw, "ms per trial against n")

    # targets
    for storage in sizes:
        ns = [n for n in sizes[storage] if ms("poptune", storage, n)]
        peer_ns = [n for n in ns if ms("optuna", storage, n)]
        what = f"poptune {STORAGE_TITLE[storage]} ≤ {MAX_RATIO:g}× Optuna's ms/trial"
        if not peer_ns:
            reason = (
                f"Optuna failed: {failed[('optuna', storage)]}"
                if ("optuna", storage) in failed
                else ctx.peer_note("optuna")
            )
            section.targets.append(Target(what, None, reason))
        else:
            ratios = {
                n: med(ms("poptune", storage, n)) / med(ms("optuna", storage, n)) for n in peer_ns
            }
            worst = max(ratios, key=lambda n: ratios[n])
            detail = ", ".join(f"n = {n:,}: {fmt(v, 2)}" for n, v in ratios.items())
            met = ratios[worst] <= MAX_RATIO
            if not met:
                detail += (
                    f"; at n = {worst:,} poptune takes {fmt(med(ms('poptune', storage, worst)))} "
                    f"ms and Optuna {fmt(med(ms('optuna', storage, worst)))} ms a trial"
                )
            section.targets.append(Target(what, met, detail))
        if storage == "memory" and ns:
            lo, hi = min(ns), max(ns)
            across = med(ms("poptune", storage, hi)) / med(ms("poptune", storage, lo))
            growth = med([x["last"] / x["first"] for x in runs[("poptune", storage, hi)]])
            met = across <= MAX_GROWTH and growth <= MAX_GROWTH
            section.targets.append(
                Target(
                    f"poptune in memory flat in n (ms/trial at n = {hi:,} ≤ {MAX_GROWTH:g}× that "
                    f"at {lo:,}, and in the {hi:,}-trial study the last 10% of trials ≤ "
                    f"{MAX_GROWTH:g}× the first 10%)",
                    met,
                    f"{fmt(across, 2)}× from {lo:,} to {hi:,}; last/first 10% at {hi:,}: "
                    f"{fmt(growth, 2)}×",
                )
            )
    if any(math.isnan(med(ms("poptune", s, n))) for s, ns in sizes.items() for n in ns):
        section.notes.append("some poptune runs did not complete (see the notes above)")
    return section
