"""Case 14: asynchronous vs synchronous PBT on parallel workers: wall time and worker idle time.

A population of 8 members trains on 2 worker processes (``study.optimize(n_workers=2)``);
each segment sleeps a random 0.1-0.5 s (the same durations for both modes: drawn from the
trial's member and generation). Synchronous PBT waits at every generation for its slowest
member; asynchronous PBT hands a finished member its next segment at once.

Idle fraction = 1 - (time spent inside segments) / (workers x span), where the span runs from
the first segment's start to the last segment's end (process start-up is not counted).

``python -m benchmarks --cases 14``: population 8, 6 generations, 2 repeats (``--repeats``);
``--quick``: 4 generations, 1 repeat.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time

import poptune
from benchmarks.harness import Context, Section, Target, log, spread, table

TITLE = "14. PBT on parallel workers: asynchronous against synchronous (wall time, idle time)"
POPULATION, WORKERS, MAX_IDLE = 8, 2, 0.05


def segment(trial: poptune.Trial) -> float:
    """Sleep 0.1-0.5 s (fixed per member and generation), then report; records its times."""
    start = time.time()
    state = trial.load_checkpoint()
    score = (state or 0.0) + trial.parameters["lr"]
    rng = random.Random(f"{trial.member}-{trial.generation}")
    time.sleep(rng.uniform(0.1, 0.5))
    trial.save_checkpoint(score)
    trial.report(score, iteration=trial.generation, start=start, end=time.time())
    return None


def run_mode(synchronous: bool, population: int, generations: int, workers: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        study = poptune.Study(
            [poptune.Continuous("lr", [1e-3, 1e-1], "log")],
            poptune.algorithms.PopulationBasedTraining(
                generations, population, synchronous=synchronous
            ),
            lower_is_better=False,
            seed=seed,
            storage=f"sqlite:///{tmp}/pbt.db",
            study_name="bench",
            checkpoint_dir=f"{tmp}/ckpt",
        )
        study.optimize(segment, n_workers=workers, show_progress=False)
        spans = []
        for trial in study.trials:
            obs = trial.observations[trial.generation]
            spans.append((obs.context["start"], obs.context["end"]))
        study.close()
    begin = min(s for s, _ in spans)
    end = max(e for _, e in spans)
    busy = sum(e - s for s, e in spans)
    wall = end - begin
    return {"wall": wall, "idle": 1.0 - busy / (workers * wall), "segments": len(spans)}


def run(ctx: Context) -> Section:
    section = Section("pbt_parallel", TITLE)
    generations, repeats = ctx.pick(6, 4), ctx.repeats_or(2, 1)
    results: dict[str, list[dict]] = {"synchronous": [], "asynchronous": []}
    for r in range(repeats):
        for mode in results:  # alternate the modes
            got = run_mode(mode == "synchronous", POPULATION, generations, WORKERS, r)
            results[mode].append(got)
            log(f"  repeat {r + 1}: {mode} done")
    rows = [
        [
            mode,
            str(runs[0]["segments"]),
            spread([x["wall"] for x in runs]),
            spread([100 * x["idle"] for x in runs], 2),
        ]
        for mode, runs in results.items()
    ]
    section.lines += [
        f"Population {POPULATION} on {WORKERS} worker processes, {generations} generations, "
        f"segments of 0.1-0.5 s; median [min–max] of {repeats} repeat(s).",
        "",
        *table(["mode", "segments", "wall time (s)", "worker idle %"], rows),
    ]
    idle = statistics.median(x["idle"] for x in results["asynchronous"])
    section.targets.append(
        Target(f"asynchronous idle fraction ≤ {MAX_IDLE:.0%}", idle <= MAX_IDLE, f"{idle:.1%}")
    )
    return section
