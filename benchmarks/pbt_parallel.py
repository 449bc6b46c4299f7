"""Asynchronous vs synchronous PBT on parallel workers: wall time and worker idle time.

A population of 8 members trains on 2 worker processes (``study.optimize(n_workers=2)``);
each segment sleeps a random 0.1-0.5 s (the same durations for both modes: drawn from the
trial's member and generation). Synchronous PBT waits at every generation for its slowest
member; asynchronous PBT hands a finished member its next segment at once.

Idle fraction = 1 - (time spent inside segments) / (workers x span), where the span runs from
the first segment's start to the last segment's end (process start-up is not counted).

Run from the repository root::

    python benchmarks/pbt_parallel.py            # population 8, 6 generations, 2 repeats
    python benchmarks/pbt_parallel.py --quick    # 4 generations, 1 repeat
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

if importlib.util.find_spec("poptune") is None:  # a checkout that was not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import poptune  # noqa: E402


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


def run(synchronous: bool, population: int, generations: int, workers: int, seed: int) -> dict:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--generations", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="4 generations, 1 repeat")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.generations, args.repeats = 4, 1
    results: dict[str, list[dict]] = {"synchronous": [], "asynchronous": []}
    for r in range(args.repeats):
        for mode in results:  # alternate the modes
            results[mode].append(
                run(mode == "synchronous", args.population, args.generations, args.workers, r)
            )
            print(f"repeat {r + 1}: {mode} done", file=sys.stderr)
    lines = [
        f"## PBT on {args.workers} workers: population {args.population}, "
        f"{args.generations} generations, segments of 0.1-0.5 s",
        "",
        f"Python {sys.version.split()[0]}, poptune {poptune.__version__}, {args.repeats} "
        "repeat(s), medians (min-max)",
        "",
        "| mode | segments | wall time (s) | worker idle fraction |",
        "|---|---|---|---|",
    ]
    for mode, runs in results.items():
        walls = [x["wall"] for x in runs]
        idles = [x["idle"] for x in runs]
        lines.append(
            f"| {mode} | {runs[0]['segments']} | {statistics.median(walls):.2f} "
            f"({min(walls):.2f}-{max(walls):.2f}) | {statistics.median(idles):.1%} "
            f"({min(idles):.1%}-{max(idles):.1%}) |"
        )
    idle_async = statistics.median(x["idle"] for x in results["asynchronous"])
    verdict = "met" if idle_async <= 0.05 else "NOT met"
    lines += ["", f"Target: asynchronous idle fraction <= 5%: {verdict} ({idle_async:.1%})."]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
