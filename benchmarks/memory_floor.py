"""poptune in memory near its floor (issue 14, item 4), measured in one run.

Prints, each figure from a fresh process (``benchmarks/peers/memory_floor_peer.py``):

* steady-state CPU and wall time per trial of poptune and Optuna in memory, after a 200-trial
  warm-up, and their ratio: an ask/tell loop with random search (Optuna's RandomSampler), the
  same loop with TPE (Optuna's default TPESampler), and ``study.optimize`` with one worker;
* the last 10% of a long poptune run (100,000 trials) against its first 10%, in the same run,
  with the cyclic GC's full collections (count and longest pause);
* the objects Python's cyclic GC tracks once a library is ready to run a study, against numpy
  alone (poptune's import itself is lazy: it is counted ready, with Study and RandomSearch).

Targets (``docs/topics/memory-floor.md``): CPU per trial at most 0.05x Optuna's (random loop),
last 10% at most 1.2x the first 10%. They are printed beside the figures, never enforced: the
figures depend on the machine and its load (printed first).

Run from the repository root::

    python -m benchmarks.memory_floor             # full sizes (~2 min, sets up Optuna's venv)
    python -m benchmarks.memory_floor --quick     # small sizes; Optuna only if already set up
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

from benchmarks import peers

SIZES = {"random": 20_000, "tpe": 1_000, "optimize": 20_000, "growth": 100_000}
QUICK_SIZES = {"random": 2_000, "tpe": 100, "optimize": 1_000, "growth": 10_000}
CPU_RATIO_TARGET = 0.05
GROWTH_TARGET = 1.2
TIMEOUT_S = 900.0

#: What each library runs before ``len(gc.get_objects())`` is read (a bare interpreter).
READY = {
    "numpy": "import numpy",
    "poptune": "import numpy, poptune\n"
    "poptune.Study, poptune.algorithms.RandomSearch, poptune.Continuous",
    "optuna": "import optuna\noptuna.create_study",
}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


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


def measure(python: str, library: str, case: str, n: int) -> dict[str, Any] | str:
    """One case of one library in a fresh process: its result, or why there is none."""
    args = {"library": library, "case": case, "n": n, "seed": 1}
    outcome = peers.run_script(python, "memory_floor_peer", args, TIMEOUT_S, log)
    return outcome.result if outcome.ok else f"n/a ({outcome.error})"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--no-peers", action="store_true", help="poptune only")
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else SIZES
    me = sys.executable
    optuna: str | None = None
    why = "not run (--no-peers)"
    if not args.no_peers:
        peer = peers.setup("optuna", install=not args.quick, log=log)
        optuna, why = (peer.python, "") if peer.ok else (None, f"n/a ({peer.error})")

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"memory floor: {'quick' if args.quick else 'full'} run, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip
    print()
    print("steady-state per trial, in memory (us; ratio = poptune / Optuna)")
    header = ("case", "n", "poptune cpu", "optuna cpu", "cpu ratio", "poptune wall",
              "optuna wall", "wall ratio")  # fmt: skip
    rows = [header]
    for case in ("random", "tpe", "optimize"):
        n = sizes[case]
        mine = measure(me, "poptune", case, n)
        theirs = measure(optuna, "optuna", case, n) if optuna else why
        row = [case, str(n)]
        for key in ("cpu_s", "wall_s"):
            a = mine[key] if isinstance(mine, dict) else None
            b = theirs[key] if isinstance(theirs, dict) else None
            row += [us(a) if a is not None else str(mine), us(b) if b is not None else str(theirs)]
            row.append(f"{a / b:.3f}" if a is not None and b is not None else "-")
        rows.append(tuple(row))
    _print_table(rows)
    print(f"target: random-loop cpu ratio <= {CPU_RATIO_TARGET}")
    print()

    n = sizes["growth"]
    grown = measure(me, "poptune", "growth", n)
    print(f"growth: poptune random loop, {n} trials in one run")
    if isinstance(grown, dict):
        pauses, cpu_pauses = grown["full_gc_pauses_s"], grown["full_gc_pauses_cpu_s"]
        for clock, a, b, gcs in (
            ("cpu", grown["first_cpu_s"], grown["last_cpu_s"], cpu_pauses),
            ("wall", grown["first_s"], grown["last_s"], pauses),
        ):
            shown = ", ".join(f"{p * 1e3:.1f}" for p in gcs) or "none"
            print(f"growth: {clock}: first 10% {us(a)} us/trial, last 10% {us(b)} us/trial, "
                  f"last/first {b / a:.2f} (target <= {GROWTH_TARGET}); full GC "
                  f"collections (ms): {shown}")  # fmt: skip
    else:
        print(f"growth: {grown}")
    print()

    counts = {lib: gc_objects(me, lib) for lib in ("numpy", "poptune")}
    counts["optuna"] = gc_objects(optuna, "optuna") if optuna else None
    base = counts["numpy"]
    for lib, count in counts.items():
        extra = ""
        if count and base and lib != "numpy":
            extra = f" ({count - base:+d} over numpy alone)"
        shown = count if count is not None else (why or "n/a")
        print(f"gc objects after import: {lib}: {shown}{extra}")
    return 0


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    raise SystemExit(main())
