"""Case 9: poptune in memory near its floor (issue 14, item 4), beside Optuna, in one run: the
steady state per trial (random search, TPE, ``study.optimize``), the growth over a long run with
the cyclic GC's full collections, and the objects that GC tracks once a library is ready to run
a study (poptune's import is lazy: it counts as ready with Study and RandomSearch loaded). The
method is the page text in :func:`run`; every figure comes from a fresh process (:func:`peer`).
"""

from __future__ import annotations

import gc
import subprocess
import time
from typing import Any

from benchmarks import peers
from benchmarks.cases.c1_overhead import WARMUP_TRIALS, optuna_value, space, trial_value
from benchmarks.harness import (
    Clock,
    Context,
    Section,
    fmt,
    log,
    med,
    quiet_threads,
    ratio,
    spread,
    table,
)


# -- the peer side ---------------------------------------------------------------------------
def _timed(body: Any, n: int) -> dict[str, Any]:
    quiet_threads()  # the start-up threads of numpy's OpenBLAS asleep (harness.quiet_threads)
    with Clock() as clock:
        body()
    return {"cpu_s": clock.cpu / n, "wall_s": clock.wall / n}


def _loop(study: Any, n: int) -> None:
    """``n`` trials of poptune's ask/tell loop."""
    for k, trial in enumerate(study if n > 0 else (), 1):
        study.add_observation(trial, trial_value(trial), iteration=1)
        study.finalize(trial)
        if k >= n:
            return


def _growth(study: Any, n: int) -> dict[str, Any]:
    """One run of ``n`` trials, per clock: s/trial of its first and last 10%, its full GC pauses."""
    pauses: list[tuple[float, float]] = []
    started = [0.0, 0.0]

    def meter(phase: str, info: dict[str, Any]) -> None:
        if info["generation"] == 2 and phase == "start":
            started[:] = [time.perf_counter(), time.process_time()]
        elif info["generation"] == 2:
            pauses.append((time.perf_counter() - started[0], time.process_time() - started[1]))

    k = max(1, n // 10)
    gc.callbacks.append(meter)
    try:
        first = _timed(lambda: _loop(study, k), k)
        _loop(study, n - 2 * k)
        last = _timed(lambda: _loop(study, k), k)
    finally:
        gc.callbacks.remove(meter)
    return {
        "CPU": [first["cpu_s"], last["cpu_s"], [cpu for _, cpu in pauses]],
        "wall": [first["wall_s"], last["wall_s"], [wall for wall, _ in pauses]],
    }


def peer(floor: str, library: str, n: int, seed: int) -> dict[str, Any]:
    """Case ``floor`` (``random``, ``tpe``, ``optimize`` or ``growth``) of ``library``."""
    if library == "optuna":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        samplers = optuna.samplers
        sampler = samplers.TPESampler(seed=seed) if floor == "tpe" else samplers.RandomSampler(seed)
        study = optuna.create_study(sampler=sampler)
        if floor == "optimize":
            study.optimize(optuna_value, n_trials=WARMUP_TRIALS)
            return _timed(lambda: study.optimize(optuna_value, n_trials=n), n)

        def loop(count: int) -> None:
            for _ in range(count):
                t = study.ask()
                study.tell(t, optuna_value(t))

        loop(WARMUP_TRIALS)
        return _timed(lambda: loop(n), n)
    import poptune

    algorithm = poptune.algorithms.TPE() if floor == "tpe" else poptune.algorithms.RandomSearch()
    study = poptune.Study(space(poptune), algorithm, True, seed=seed, disable_dashboard=True)
    if floor == "growth":
        return _growth(study, n)
    if floor == "optimize":
        study.optimize(trial_value, n_trials=WARMUP_TRIALS, show_progress=False)
        return _timed(lambda: study.optimize(trial_value, n_trials=n, show_progress=False), n)
    _loop(study, WARMUP_TRIALS)
    return _timed(lambda: _loop(study, n), n)


# -- the case --------------------------------------------------------------------------------
TITLE = "9. In memory near its floor: steady state, growth over 100,000 trials, GC objects"
SIZES = {"random": 20_000, "tpe": 1_000, "optimize": 20_000, "growth": 100_000}
QUICK_SIZES = {"random": 2_000, "tpe": 100, "optimize": 1_000, "growth": 10_000}
CPU_RATIO_TARGET = 0.05
GROWTH_TARGET = 1.2
TIMEOUT_S = 900.0
REPEATS = 5  # fresh processes per library and case (--repeats; --quick: 1)

#: What each library runs before ``len(gc.get_objects())`` is read (a bare interpreter).
READY = {
    "numpy": "import numpy",
    "poptune": "import numpy, poptune\n"
    "poptune.Study, poptune.algorithms.RandomSearch, poptune.Continuous",
    "optuna": "import optuna\noptuna.create_study",
}


def gc_objects(python: str, library: str) -> int | None:
    """Tracked objects in a fresh ``python`` once :data:`READY` ``[library]`` ran."""
    code = READY[library] + "\nimport gc\nprint(len(gc.get_objects()))\n"
    try:
        done = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=300,
            env=peers.child_env(), cwd=peers.REPO,
        )  # fmt: skip
        return int(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError):
        return None


def us(seconds: float) -> str:
    return fmt(seconds * 1e6)


def spread_us(runs: list[dict[str, Any]], key: str) -> str:
    """``median [min–max]`` of ``key`` over ``runs``, in µs."""
    return spread([got[key] * 1e6 for got in runs])


def run(ctx: Context) -> Section:
    section = Section("memory_floor", TITLE)
    sizes, repeats = ctx.pick(SIZES, QUICK_SIZES), ctx.repeats_or(REPEATS, 1)
    optuna = ctx.usable("optuna", section)

    def measure(library: str, case: str, r: int) -> dict[str, Any] | None:
        args = {"floor": case, "library": library, "n": sizes[case], "seed": 1 + r}
        log(f"  memory floor: {library} {case}, n = {sizes[case]:,}, repeat {r + 1}/{repeats}")
        return ctx.result(section, f"{library} {case}", library, "c9_memory_floor", args, TIMEOUT_S)

    rows, ratios = [], {}
    for case in ("random", "tpe", "optimize"):
        runs: dict[str, list[dict[str, Any]]] = {"poptune": [], "optuna": []}
        for r in range(repeats):  # alternating: a slow spell of the machine hits both sides
            for library in ("poptune", "optuna") if optuna else ("poptune",):
                got = measure(library, case, r)
                if got:
                    runs[library].append(got)
        row = [case, f"{sizes[case]:,}"]
        for key in ("cpu_s", "wall_s"):
            a, b = (med([got[key] for got in runs[lib]]) for lib in ("poptune", "optuna"))
            row += [spread_us(runs["poptune"], key), spread_us(runs["optuna"], key), ratio(a, b)]
            ratios[(case, key)] = a / b if runs["poptune"] and runs["optuna"] else float("nan")
        rows.append(row)
    section.lines += [
        f"Per trial in memory, µs: median [min–max] of {repeats} fresh process(es) per library, "
        "poptune's and Optuna's alternating, each a 200-trial warm-up then one timed stretch "
        "(CPU = `time.process_time`), started once the process's other threads are idle "
        "(numpy's OpenBLAS worker spins for about 0.1 s of CPU after numpy loads); ratio = "
        "poptune's median / Optuna's. random: the ask/tell loop (RandomSearch / "
        "RandomSampler); tpe: the same with TPE / TPESampler; optimize: "
        "`study.optimize`, one worker, random search. Both sides move from run to run (a "
        "process's CPU per trial varies by 10-30% here between runs of the same code): the "
        "median of alternating repeats is what a re-run should land near, not one stretch.",
        "",
        *table(
            "case | n | poptune CPU | Optuna CPU | CPU ratio | poptune wall | Optuna wall | "
            "wall ratio",
            rows,
        ),
    ]
    cpu_ratio = ratios[("random", "cpu_s")]
    what = f"random loop: poptune's CPU per trial ≤ {CPU_RATIO_TARGET:g}× Optuna's (medians)"
    missing = "not measured" if optuna else ctx.peer_note("optuna")
    section.target_of(what, cpu_ratio, cpu_ratio <= CPU_RATIO_TARGET, fmt(cpu_ratio, 3), missing)

    n = sizes["growth"]
    grown = [got for r in range(repeats) if (got := measure("poptune", "growth", r))]
    rows = []
    for r, got in enumerate(grown, 1):
        (a, b, pauses), (wa, wb, _) = got["CPU"], got["wall"]
        shown = ", ".join(f"{p * 1e3:.1f}" for p in pauses) or "none"
        rows.append([str(r), us(a), us(b), fmt(b / a, 2), fmt(wb / wa, 2), shown])
    if grown:
        growth = med([got["CPU"][1] / got["CPU"][0] for got in grown])
        what = (
            f"in a {n:,}-trial run, the last 10% ≤ {GROWTH_TARGET:g}× the first 10% "
            f"(CPU, median of {len(grown)} runs)"
        )
        section.target(what, growth <= GROWTH_TARGET, f"{fmt(growth, 3)}×")
    section.lines += [
        "",
        f"Growth: poptune's random loop, {n:,} trials in one run, µs per trial, in {repeats} "
        "fresh process(es). The cyclic GC's full collections walk every trial (about 0.3 µs "
        "each here), at about every 25% growth of the tracked objects: whether one falls in "
        "the last tenth depends on what the process held before the run, and one that does "
        "adds its pause (about 30 ms at 100,000 trials) to that tenth.",
        "",
        *table(
            "run | first 10%, CPU | last 10%, CPU | last / first, CPU | last / first, wall | "
            "full GC collections (CPU ms)",
            rows,
        ),
    ]

    counts = {lib: gc_objects(ctx.python, lib) for lib in ("numpy", "poptune")}
    if optuna:
        counts["optuna"] = gc_objects(ctx.peers["optuna"].python or "", "optuna")
    base = counts["numpy"]
    rows = []
    for lib, count in counts.items():
        extra = f"{count - base:+,}" if count and base and lib != "numpy" else ""
        rows.append([lib, f"{count:,}" if count is not None else "n/a", extra])
    section.lines += [
        "",
        "Objects the cyclic GC tracks once a library is ready to run a study (a fresh "
        "interpreter; numpy alone for reference).",
        "",
        *table("library | GC-tracked objects | over numpy alone", rows),
    ]
    return section
