"""Case 1: per-trial library overhead and its growth with the number of trials, poptune beside
Optuna (in memory and on SQLite) and SHERPA (in memory); the method is the page text below
(each run a fresh ``benchmarks/peers/overhead_peer.py`` process, ``benchmarks/overhead.py``'s
loop)."""

from __future__ import annotations

import math
from typing import Any

from benchmarks.harness import Context, Section, Target, figure, fmt, log, med, ratio, spread, table

TITLE = "1. Per-trial overhead and scale (trivial objective; vs Optuna and SHERPA)"
SIZES = {"memory": (1_000, 10_000, 100_000), "sqlite": (1_000, 10_000)}
QUICK_SIZES = {"memory": (1_000, 5_000), "sqlite": (1_000,)}
#: The configurations run on each storage, poptune's first: overhead.py's case names, each
#: starting with its library's name. On a file, Optuna runs with its defaults (RDB on SQLite's
#: defaults), with poptune's SQLite pragmas, and with JournalStorage (its recommendation for
#: several processes on one machine).
CONFIGS = {
    "memory": ("poptune", "optuna", "sherpa"),
    "sqlite": ("poptune-sqlite", "optuna-sqlite", "optuna-sqlite-wal", "optuna-journal"),
}
LIBRARIES = ("poptune", "optuna", "sherpa")
LABEL = {
    "poptune": "poptune (MemoryStorage)",
    "optuna": "Optuna (InMemoryStorage)",
    "sherpa": "SHERPA (in memory)",
    "poptune-sqlite": "poptune (SQLite: WAL, synchronous=NORMAL)",
    "optuna-sqlite": "Optuna RDB (SQLite defaults: rollback journal, synchronous=FULL)",
    "optuna-sqlite-wal": "Optuna RDB (SQLite with poptune's pragmas: WAL, synchronous=NORMAL)",
    "optuna-journal": "Optuna JournalStorage (JournalFileBackend)",
}
BUDGET_S, QUICK_BUDGET_S = 30.0, 4.0
WARMUP, QUICK_WARMUP = 200, 50  # untimed trials before the timed ones, in the same process
STORAGE_TITLE = {"memory": "in memory", "sqlite": "on a file"}
#: Targets (issue 14, items 3 and 4), in CPU time per trial: poptune over the peer's
#: configuration named here, and the growth of poptune's last 10% of trials over its first.
TARGET_PEER = {"memory": ("optuna", 0.05), "sqlite": ("optuna-journal", 0.3)}
MAX_GROWTH_ACROSS, MAX_GROWTH_WITHIN = 1.5, 1.2


def run(ctx: Context) -> Section:
    section = Section("overhead", TITLE)
    sizes = ctx.pick(SIZES, QUICK_SIZES)
    repeats = ctx.repeats_or(3, 1)
    budget = ctx.pick(BUDGET_S, QUICK_BUDGET_S)
    warmup = ctx.pick(WARMUP, QUICK_WARMUP)
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}  # (config, n) -> runs
    failed: dict[str, str] = {}
    capped: dict[str, int] = {}  # config -> the size whose run hit the budget
    usable = {lib: lib == "poptune" or ctx.peer(lib) is not None for lib in LIBRARIES}
    for lib in ("optuna", "sherpa"):
        if not usable[lib]:
            section.notes.append(ctx.peer_note(lib))
    for storage, ns in sizes.items():
        for n in ns:
            for r in range(repeats):
                for config in CONFIGS[storage]:
                    lib = config.split("-")[0]
                    if not usable[lib] or config in failed:
                        continue
                    if config in capped and (capped[config] < n or runs.get((config, n))):
                        continue
                    out = ctx.run_peer(
                        lib,
                        "overhead_peer",
                        {
                            "case": config,
                            "n": n,
                            "seed": 1000 + r,
                            "budget_s": budget,
                            "warmup": warmup,
                        },
                        timeout_s=budget * 3 + 180,
                    )
                    if not out.ok:
                        failed[config] = out.error or "failed"
                        log(f"  overhead {config} n={n}: FAILED {out.error}")
                        continue
                    res = out.result
                    runs.setdefault((config, n), []).append(res)
                    if res["stopped"]:
                        capped[config] = n
                    log(
                        f"  overhead n={n:>7,} repeat {r + 1}/{repeats} {config:<18}"
                        f" {res['total']:9.4f} ms/trial, CPU {res['cpu_total']:9.4f} ms"
                        + (f" (stopped after {res['n']:,} trials)" if res["stopped"] else "")
                    )
    for config, error in failed.items():
        section.notes.append(f"{LABEL[config]} failed: {error}")

    def ms(config: str, n: int, key: str = "total") -> list[float]:
        return [x[key] for x in runs.get((config, n), []) if x.get(key) is not None]

    rows = []
    for storage, ns in sizes.items():
        mine = CONFIGS[storage][0]
        for n in ns:
            for config in CONFIGS[storage]:
                done = runs.get((config, n), [])
                if not done and config not in capped:
                    continue
                wall, cpu = spread(ms(config, n)), spread(ms(config, n, "cpu_total"))
                if done and done[0]["stopped"]:
                    wall += f" (budget: {done[0]['n']:,} of {n:,} trials)"
                elif not done:
                    wall = f"not run (the budget stopped n = {capped[config]:,})"
                growth = [x["last"] / x["first"] for x in done]
                rows.append(
                    [
                        STORAGE_TITLE[storage],
                        f"{n:,}",
                        LABEL[config],
                        wall,
                        cpu,
                        "" if config == mine else ratio(med(ms(mine, n)), med(ms(config, n))),
                        ""
                        if config == mine
                        else ratio(med(ms(mine, n, "cpu_total")), med(ms(config, n, "cpu_total"))),
                        spread(growth, 2),
                    ]
                )
    section.lines += [
        f"Per trial: ask for a trial (3 parameters: log-float, int, categorical), report a "
        f"trivial objective, finish it — poptune `for trial in study` + `add_observation` + "
        f"`finalize` (RandomSearch), Optuna ask/tell (RandomSampler), SHERPA's own loop "
        f"(RandomSearch). Each run is a fresh process with a {warmup}-trial warm-up; "
        f"wall ms/trial = total time / trials, CPU ms/trial = the process's CPU time "
        f"(user + system) / trials; "
        f"median [min–max] of {repeats} alternating repeat(s). A run longer than {budget:g} s "
        "stops there (it is then run once, and not at larger n). On a file, Optuna runs in "
        "three configurations: its RDB storage on SQLite's defaults (rollback journal, "
        "`synchronous=FULL`: an fsync per commit), the same with poptune's pragmas "
        "(`journal_mode=WAL`, `synchronous=NORMAL`, `busy_timeout`; set on every connection "
        "through `RDBStorage(url, engine_kwargs={'creator': ...})`), and "
        "`JournalStorage(JournalFileBackend(path))`, which Optuna recommends for several "
        "processes on one machine. SHERPA has no file storage (it shares studies through "
        "MongoDB). Ratios are poptune's figure over the row's (below 1: poptune is cheaper); "
        "growth = the mean cost of the last 10% of trials over the first 10%.",
        "",
        *table(
            [
                "storage",
                "n trials",
                "library (configuration)",
                "wall ms/trial",
                "CPU ms/trial",
                "ratio poptune/this, wall",
                "ratio poptune/this, CPU",
                "growth (last 10% / first 10%)",
            ],
            rows,
        ),
    ]

    def draw(plt: Any) -> None:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        for i, (storage, config) in enumerate(
            (st, c) for st in sizes for c in CONFIGS[st]
        ):  # fmt: skip
            xs = [n for n in sizes[storage] if ms(config, n, "cpu_total")]
            if not xs:
                continue
            ys = [med(ms(config, n, "cpu_total")) for n in xs]
            ax.plot(
                xs,
                ys,
                marker="o" if storage == "memory" else "s",
                linestyle="-" if storage == "memory" else "--",
                color=f"C{i}",
                label=LABEL[config],
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("trials in the study (n)")
        ax.set_ylabel("CPU ms per trial (median)")
        ax.set_title("Per-trial library overhead")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)

    section.lines += figure(ctx, "overhead", draw, "CPU ms per trial against n")

    for storage in sizes:
        mine = CONFIGS[storage][0]
        peer, goal = TARGET_PEER[storage]
        ns = [n for n in sizes[storage] if ms(mine, n)]
        peer_ns = [n for n in ns if ms(peer, n, "cpu_total")]
        what = f"poptune {STORAGE_TITLE[storage]} ≤ {goal:g}× {LABEL[peer]}'s CPU per trial"
        if not peer_ns:
            reason = (
                f"it failed: {failed[peer]}"
                if peer in failed
                else ctx.peer_note(peer.split("-")[0])
            )
            section.targets.append(Target(what, None, reason))
        else:
            ratios = {
                n: med(ms(mine, n, "cpu_total")) / med(ms(peer, n, "cpu_total")) for n in peer_ns
            }
            detail = ", ".join(f"n = {n:,}: {fmt(v, 2)}" for n, v in ratios.items())
            section.targets.append(Target(what, max(ratios.values()) <= goal, detail))
        if storage == "memory" and ns:
            lo, hi = min(ns), max(ns)
            across = med(ms(mine, hi, "cpu_total")) / med(ms(mine, lo, "cpu_total"))
            growth = med([x["last"] / x["first"] for x in runs[(mine, hi)]])
            section.targets.append(
                Target(
                    f"poptune in memory flat in n (CPU ms/trial at n = {hi:,} ≤ "
                    f"{MAX_GROWTH_ACROSS:g}× that at {lo:,}, and in the {hi:,}-trial study the "
                    f"last 10% of trials ≤ {MAX_GROWTH_WITHIN:g}× the first 10%, in wall time)",
                    across <= MAX_GROWTH_ACROSS and growth <= MAX_GROWTH_WITHIN,
                    # two decimals: a growth of 1.23 must not read as the limit's 1.2
                    f"{across:.2f}× from {lo:,} to {hi:,}; last/first 10% at {hi:,}: "
                    f"{growth:.2f}× (median of the repeats; case 9 measures it in CPU time)",
                )
            )
    if any(math.isnan(med(ms(CONFIGS[s][0], n))) for s, ns in sizes.items() for n in ns):
        section.notes.append("some poptune runs did not complete (see the notes above)")
    return section
