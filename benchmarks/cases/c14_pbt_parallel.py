"""Case 14: asynchronous PBT, which hands a finished member its next segment at once, against
synchronous PBT, which waits for the slowest member at every generation, on parallel worker
processes: the wall and worker idle time. The method is the page text in :func:`run`."""

from __future__ import annotations

import random
import statistics
import tempfile
import time

import poptune
from benchmarks.harness import Context, Section, log, spread, table

TITLE = "14. PBT on parallel workers: asynchronous against synchronous (wall time, idle time)"
POPULATION, WORKERS, MAX_IDLE = 8, 2, 0.05


def segment(trial: poptune.Trial) -> None:
    """Sleep 0.1-0.5 s (fixed per member and generation), then report; records its times."""
    start = time.time()
    score = (trial.load_checkpoint() or 0.0) + trial.parameters["lr"]
    time.sleep(random.Random(f"{trial.member}-{trial.generation}").uniform(0.1, 0.5))
    trial.save_checkpoint(score)
    trial.report(score, iteration=trial.generation, start=start, end=time.time())


def run_mode(synchronous: bool, generations: int, seed: int) -> dict[str, float]:
    """One run of POPULATION members on WORKERS processes: span, idle fraction, segments."""
    from poptune.algorithms import PopulationBasedTraining

    algorithm = PopulationBasedTraining(generations, POPULATION, synchronous=synchronous)
    params = [poptune.Continuous("lr", [1e-3, 1e-1], "log")]
    with tempfile.TemporaryDirectory() as tmp:
        where = {"storage": f"sqlite:///{tmp}/pbt.db", "checkpoint_dir": f"{tmp}/ckpt"}
        study = poptune.Study(params, algorithm, False, seed=seed, study_name="bench", **where)
        study.optimize(segment, n_workers=WORKERS, show_progress=False)
        contexts = [t.observations[t.generation].context for t in study.trials]
        spans = [(c["start"], c["end"]) for c in contexts]
        study.close()
    wall = max(e for _, e in spans) - min(s for s, _ in spans)  # process start-up not counted
    busy = sum(e - s for s, e in spans)
    return {"wall": wall, "idle": 1.0 - busy / (WORKERS * wall), "segments": len(spans)}


def run(ctx: Context) -> Section:
    section = Section("pbt_parallel", TITLE)
    generations, repeats = ctx.pick(6, 4), ctx.repeats_or(2, 1)
    results: dict[str, list[dict]] = {"synchronous": [], "asynchronous": []}
    for r in range(repeats):
        for mode in results:  # alternate the modes
            results[mode].append(run_mode(mode == "synchronous", generations, r))
            log(f"  repeat {r + 1}: {mode} done")
    rows = []
    for mode, runs in results.items():
        wall, idle = spread([x["wall"] for x in runs]), spread([100 * x["idle"] for x in runs], 2)
        rows.append([mode, str(runs[0]["segments"]), wall, idle])
    section.lines += [
        f"Population {POPULATION} on {WORKERS} worker processes, {generations} generations, "
        f"segments of 0.1-0.5 s; median [min–max] of {repeats} repeat(s).",
        "",
        *table("mode | segments | wall time (s) | worker idle %", rows),
    ]
    idle = statistics.median(x["idle"] for x in results["asynchronous"])
    section.target(f"asynchronous idle fraction ≤ {MAX_IDLE:.0%}", idle <= MAX_IDLE, f"{idle:.1%}")
    return section
