"""Case 2: trials per second with 1–8 worker processes sharing one study, on SQLite and on
PostgreSQL, poptune beside Optuna; the method is the page text below (each run
``benchmarks/throughput.py``'s ``run_once`` in a fresh ``benchmarks/peers/throughput_peer.py``
process)."""

from __future__ import annotations

import math
from typing import Any

from benchmarks.harness import (
    Context,
    Section,
    Target,
    figure,
    fmt,
    log,
    med,
    ratio,
    spread,
    table,
    usable_cpus,
)

TITLE = "2. Throughput: worker processes sharing one study (vs Optuna, same machine)"
STORAGES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
#: What runs on each storage, poptune first (``throughput.OPTUNA_CONFIGS``): on SQLite, Optuna's
#: RDB storage on SQLite's defaults and with poptune's pragmas, and Optuna's JournalStorage on a
#: file (its recommendation for several processes on one machine; shown in the SQLite rows).
CONFIGS = {
    "sqlite": ("poptune", "optuna", "optuna-wal", "optuna-journal"),
    "postgres": ("poptune", "optuna"),
}
LABEL = {
    "poptune": "poptune",
    "optuna": "Optuna RDB (the database's defaults)",
    "optuna-wal": "Optuna RDB (poptune's pragmas: WAL, synchronous=NORMAL)",
    "optuna-journal": "Optuna JournalStorage (JournalFileBackend, a file)",
}
SLEEP_S = 0.05
TARGET = ("50 ms", 8, 0.90)  # objective, workers, efficiency (issue 14, item 3)
TARGET_STORAGES = ("postgres", "sqlite")


def run(ctx: Context) -> Section:
    section = Section("throughput", TITLE)
    workers_list = ctx.pick((1, 2, 4, 8), (2,))
    objectives = ctx.pick(("trivial", "50 ms"), ("50 ms",))
    repeats = ctx.repeats_or(2, 1)
    trivial_total = ctx.pick(600, 200)
    # 100 × 50 ms a worker (5 s), as benchmarks/throughput.py: shorter runs weigh the start
    # (every worker asking for its first trial at once) more than a study ever does.
    sleep_per_worker = ctx.pick(100, 15)
    max_seconds = ctx.pick(8.0, 1.5)
    optuna_ok = ctx.peer("optuna") is not None
    if not optuna_ok:
        section.notes.append(ctx.peer_note("optuna"))
    runs: dict[tuple[str, str, int, str], list[dict[str, Any]]] = {}
    errors: dict[tuple[str, str], str] = {}  # (configuration, storage) -> first error
    described: dict[str, str] = {}
    for storage in STORAGES:
        configs = [c for c in CONFIGS[storage] if c == "poptune" or optuna_ok]
        for objective in objectives:
            for r in range(repeats):
                for config in configs:  # every worker count in one process, in turn
                    if (config, storage) in errors:
                        continue
                    lib = "poptune" if config == "poptune" else "optuna"
                    sleep = SLEEP_S if objective == "50 ms" else 0.0
                    out = ctx.run_peer(
                        lib,
                        "throughput_peer",
                        {
                            "library": config,
                            "storage": storage,
                            "workers": list(workers_list),
                            "total": sleep_per_worker if sleep else trivial_total,
                            "sleep_s": sleep,
                            "seed": 2000 + r,
                            "max_seconds": max_seconds,
                            "postgres_url": ctx.postgres_url,
                        },
                        timeout_s=(max_seconds * 4 + 120) * len(workers_list) + 120,
                    )
                    if not out.ok:
                        errors[(config, storage)] = out.error or "failed"
                        log(f"  throughput {config} {storage}: FAILED {out.error}")
                        continue
                    for res in out.result:
                        if res["error"]:
                            errors.setdefault((config, storage), res["error"])
                            log(f"  throughput {config} {storage}: FAILED {res['error']}")
                            continue
                        described[storage] = res["storage"]
                        workers = res["workers"]
                        runs.setdefault((storage, objective, workers, config), []).append(res)
                        log(
                            f"  throughput {storage:<8} {objective:<7} {workers} workers "
                            f"repeat {r + 1}/{repeats} {config:<14} {res['rate']:8.1f} trials/s, "
                            f"CPU {res.get('cpu_ms', math.nan):.2f} ms/trial"
                            + (" (capped)" if res["capped"] else "")
                        )
    for (config, storage), error in errors.items():
        section.notes.append(f"{LABEL[config]} on {STORAGES[storage]} failed: {error}")

    def rates(storage: str, objective: str, workers: int, lib: str, key: str = "rate") -> list:
        done = runs.get((storage, objective, workers, lib), [])
        return [x[key] for x in done if x.get(key) is not None]

    def cell(storage: str, objective: str, workers: int, lib: str) -> str:
        done = runs.get((storage, objective, workers, lib), [])
        text = spread([x["rate"] for x in done])
        if any(x["capped"] for x in done):
            text += f" (stopped at {max_seconds:g} s: {min(x['trials'] for x in done):,}+ trials)"
        return text

    rows = []
    for storage in STORAGES:
        for objective in objectives:
            for workers in workers_list:
                p = med(rates(storage, objective, workers, "poptune"))
                ideal = workers / SLEEP_S
                for config in CONFIGS[storage]:
                    if not runs.get((storage, objective, workers, config)):
                        continue
                    o = med(rates(storage, objective, workers, config))
                    rows.append(
                        [
                            STORAGES[storage],
                            objective,
                            str(workers),
                            LABEL[config],
                            cell(storage, objective, workers, config),
                            f"{o / ideal:.0%}" if objective == "50 ms" and math.isfinite(o) else "",
                            spread(rates(storage, objective, workers, config, "cpu_ms")),
                            "" if config == "poptune" else ratio(p, o),
                        ]
                    )
    section.lines += [
        f"Workers: separate processes (spawn) on one study; a fresh database per run; timed "
        f"from a barrier every worker reaches after opening the study (and collecting its "
        f"imports' garbage, so that CPython's first full collection does not fall in the run "
        f"of every worker at once) to the last finished trial. Trivial objective: "
        f"{trivial_total:,} trials a run; 50 ms objective "
        f"(`time.sleep(0.05)`): {sleep_per_worker} × workers trials (ideally "
        f"{sleep_per_worker * SLEEP_S:g} s). A run hands out no trial after {max_seconds:g} s. "
        f"poptune: RandomSearch, `for trial in study`; Optuna: ask/tell, RandomSampler, "
        f"`load_if_exists`, in three configurations on SQLite — its RDB storage on SQLite's "
        "defaults (rollback journal, `synchronous=FULL`), the same with poptune's pragmas "
        "(WAL, `synchronous=NORMAL`, `busy_timeout`), and `JournalStorage(JournalFileBackend)` "
        "on a file in the same folder, which Optuna recommends for several processes on one "
        "machine — and its RDB storage on PostgreSQL. "
        f"Median [min–max] of {repeats} alternating repeat(s); efficiency = trials/s ÷ "
        "(workers / 0.05 s); CPU ms/trial = the workers' CPU time (user + system, from the "
        "barrier to their last trial, summed) / trials — the database server's CPU "
        "(PostgreSQL) is not in it; the ratio is poptune's trials/s over the row's (above 1: "
        "poptune is faster).",
        *[f"- {STORAGES[s]}: {d}" for s, d in described.items()],
        "",
        *table(
            [
                "storage",
                "objective",
                "workers",
                "library (configuration)",
                "trials/s",
                "efficiency",
                "workers' CPU ms/trial",
                "ratio poptune/this, trials/s",
            ],
            rows,
        ),
    ]

    def draw(plt: Any) -> None:
        fig, axes = plt.subplots(1, len(STORAGES), figsize=(10, 4), sharey=True)
        for ax, storage in zip(axes, STORAGES, strict=True):
            for i, lib in enumerate(CONFIGS[storage]):
                color = f"C{i}"
                for objective in objectives:
                    xs = [w for w in workers_list if rates(storage, objective, w, lib)]
                    if not xs:
                        continue
                    ys = [med(rates(storage, objective, w, lib)) for w in xs]
                    ax.plot(
                        xs,
                        ys,
                        marker="o",
                        color=color,
                        linestyle="-" if objective == "trivial" else "--",
                        label=f"{LABEL[lib]}, {objective}",
                    )
            if "50 ms" in objectives:
                ax.plot(
                    workers_list,
                    [w / SLEEP_S for w in workers_list],
                    color="grey",
                    linestyle=":",
                    label="ideal, 50 ms",
                )
            ax.set_title(STORAGES[storage])
            ax.set_xlabel("worker processes")
            ax.set_xticks(list(workers_list))
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
        axes[0].set_ylabel("trials per second (median)")
        axes[0].legend(fontsize=6)

    section.lines += figure(ctx, "throughput", draw, "trials per second against workers")

    for storage in TARGET_STORAGES:
        objective, workers, goal = TARGET
        what = (
            f"poptune ≥ {goal:.0%} of the ideal throughput with the 50 ms objective and "
            f"{workers} workers on {STORAGES[storage]}"
        )
        got = rates(storage, objective, workers, "poptune")
        if got:
            eff = med(got) / (workers / SLEEP_S)
            detail = f"{eff:.0%} of ideal ({fmt(med(got))} trials/s)"
            if eff < goal:
                detail += (
                    f"; on {usable_cpus()} cores the {workers} workers, the database server and "
                    "the harness share the CPU"
                )
            section.targets.append(Target(what, eff >= goal, detail))
        else:
            section.targets.append(Target(what, None, "that configuration was not run"))
    return section
