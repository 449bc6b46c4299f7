"""The chaos soak: ``python -m tests.soak --seed 1 --duration 600``.

Repeats chaos runs (:mod:`tests.chaos_harness`: real worker processes SIGKILLed at random points,
PostgreSQL backends terminated from the server) for ``--duration`` seconds, alternating SQLite
and PostgreSQL (PostgreSQL when ``--postgres-url`` or ``POPTUNE_TEST_POSTGRES_URL`` names a
database it may write to), and prints one line per run and the totals: runs, kills,
backend terminations, faults survived (faults of runs whose every check held), acknowledged
observations and how many were lost, broken invariants. Run ``i`` uses seed
``seed * 100_000 + i``: a failing run is reproduced with ``--seed`` and ``--only``.
Exits 1 if any invariant broke.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.chaos_harness import RunResult, run_once


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--duration", type=float, default=600.0,
                        help="seconds to keep starting runs (default 600)")  # fmt: skip
    parser.add_argument("--postgres-url", default=os.environ.get("POPTUNE_TEST_POSTGRES_URL"),
                        help="PostgreSQL URL (default $POPTUNE_TEST_POSTGRES_URL)")  # fmt: skip
    parser.add_argument("--only", type=int, default=None, help="run just run number N")
    parser.add_argument("--backends", default=None,
                        help="sqlite,postgres (default: both if a URL)")  # fmt: skip
    parser.add_argument("--terminations", type=int, default=None,
                        help="terminate backends in every PostgreSQL run, N times "
                             "(default: in half the runs, twice)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    backends = ["sqlite"] + (["postgres"] if args.postgres_url else [])
    if args.backends:
        backends = args.backends.split(",")
        if "postgres" in backends and not args.postgres_url:
            parser.error("--backends postgres needs --postgres-url")
    results: list[RunResult] = []
    start = time.monotonic()
    i = 0 if args.only is None else args.only
    while True:
        backend = backends[i % len(backends)]
        seed = args.seed * 100_000 + i
        workdir = Path(tempfile.mkdtemp(prefix="poptune-soak-"))
        try:
            url = f"sqlite:///{workdir / 'soak.db'}" if backend == "sqlite" else args.postgres_url
            kw: dict[str, Any] = {}
            if args.terminations is not None:
                kw = {"terminate": args.terminations > 0, "terminations": args.terminations}
            result = run_once(seed, url, backend, workdir, **kw)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        results.append(result)
        print(f"run {i}: {result.describe()}", flush=True)
        i += 1
        if args.only is not None or time.monotonic() - start >= args.duration:
            break
    figures = summarize(results, time.monotonic() - start)
    print(json.dumps(figures, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if figures["runs_with_broken_invariants"] else 0


def summarize(results: list[RunResult], seconds: float) -> dict[str, Any]:
    """The soak's figures."""
    points: dict[str, int] = {}
    for r in results:
        for k, v in r.points.items():
            points[k] = points.get(k, 0) + v
    lost = sum(1 for r in results for p in r.problems if p.startswith("acknowledged"))
    return {
        "seconds": round(seconds, 1),
        "runs": len(results),
        "runs_by_backend": {
            b: sum(1 for r in results if r.backend == b)
            for b in sorted({r.backend for r in results})
        },  # fmt: skip
        "trials": sum(r.trials for r in results),
        "kills": sum(r.kills for r in results),
        "kills_by_point": dict(sorted(points.items())),
        "backend_terminations": sum(r.terminations for r in results),
        "worker_restarts": sum(r.restarts for r in results),
        "faults_survived": sum(r.faults for r in results if not r.problems),
        "acknowledged_observations": sum(r.acknowledged for r in results),
        "acknowledged_observations_lost": lost,
        "runs_with_broken_invariants": sum(1 for r in results if r.problems),
        "broken_invariants": [f"seed {r.seed}: {p}" for r in results for p in r.problems],
        "failures_on_a_terminated_connection": sum(len(r.connection_failures) for r in results),
    }


if __name__ == "__main__":
    sys.exit(main())
