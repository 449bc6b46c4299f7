"""Case 2 (throughput), runs of one library: ``benchmarks/throughput.py``'s ``run_once`` for
each worker count asked for, in whichever virtualenv has the library (the protocol: the
package's docstring)."""

from __future__ import annotations

from typing import Any

from benchmarks.peers import serve


def run(
    library: str,
    storage: str,
    workers: list[int],
    total: int,
    sleep_s: float,
    seed: int,
    max_seconds: float,
    postgres_url: str,
) -> list[dict[str, Any]]:
    """One run per worker count, in order; ``total`` is per worker with a sleeping objective.

    ``library``: ``"poptune"`` or one of ``throughput.OPTUNA_CONFIGS`` (``"optuna"``: its RDB
    storage on the database's defaults; ``"optuna-wal"``, ``"optuna-journal"``: SQLite only).
    """
    from benchmarks import throughput

    backend = (
        throughput.SQLiteBackend()
        if storage == "sqlite"
        else throughput.PostgresBackend(postgres_url)
    )
    out = []
    try:
        for n in workers:
            trials = total * n if sleep_s else total
            result = throughput.run_once(backend, library, n, trials, sleep_s, seed, max_seconds)
            out.append(
                {
                    "workers": n,
                    "trials": result.trials,
                    "wall_s": result.wall_s,
                    "rate": result.rate,
                    "cpu_ms": result.cpu_ms_per_trial,
                    "capped": result.capped,
                    "error": result.error.splitlines()[0] if result.error else None,
                    "storage": backend.describe(),
                }
            )
    finally:
        backend.close()
    return out


if __name__ == "__main__":
    serve(run)
