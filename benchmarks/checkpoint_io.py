"""What a checkpoint costs where it lives: MB/s writing and reading one training state.

The state is a dict of float32 arrays (``--mb`` MB in all, default 50), saved with
``trial.save_checkpoint`` and read with ``trial.load_checkpoint`` (poptune's pickle-free
format) through a study whose ``checkpoint_dir`` is each backend in turn:

* ``directory``: a local directory (the reference: a temporary file, fsync, rename);
* ``sqlite``: ``"database://"`` in the study's SQLite file (chunks in their own transactions,
  then the head row);
* ``postgres``: ``"database://"`` in a PostgreSQL database (``--postgres-url``; it creates and
  drops its own database ``poptune_ckpt_<pid>``; skipped when the server cannot be reached);
* ``s3``: ``s3://`` against moto's S3 server on 127.0.0.1 (``--s3``; a protocol check more
  than a figure: moto keeps objects in the Python process).

Each backend writes and reads ``--repeats`` times (default 3); the median is reported, with
the load average (figures on a shared machine are "measured under load").

Run from the repository root::

    python benchmarks/checkpoint_io.py                    # 50 MB, directory/sqlite/postgres
    python benchmarks/checkpoint_io.py --mb 10 --repeats 1 --s3
    python benchmarks/checkpoint_io.py --chunk-bytes 16777216   # 16 MiB database chunks
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

import poptune as pt  # noqa: E402

DEFAULT_POSTGRES = os.environ.get(
    "POPTUNE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def state_of(mb: float) -> dict[str, Any]:
    """A training-state-like dict: ten float32 arrays, ``mb`` MB in all."""
    per = int(mb * 1e6 / 4 / 10)
    rng = np.random.default_rng(0)
    return {f"layer{i}": rng.standard_normal(per, dtype=np.float32) for i in range(10)}


def _study(storage: str | None, checkpoint_dir: str, options: dict[str, Any] | None) -> pt.Study:
    return pt.Study([pt.Continuous("lr", [0.1, 1.0])], pt.algorithms.RandomSearch(10**6), True,
                    storage=storage, study_name=f"ckpt-{uuid.uuid4().hex[:6]}",
                    checkpoint_dir=checkpoint_dir, checkpoint_options=options,
                    heartbeat_interval=None)  # fmt: skip


def measure(study: pt.Study, state: dict[str, Any], repeats: int) -> tuple[float, float]:
    """Median seconds to save ``state`` and to load it back."""
    saving = study.get_suggestion()
    writes, reads = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        saving.save_checkpoint(state)
        writes.append(time.perf_counter() - start)
        saving.report(1.0, iteration=len(writes))
        loader = pt.Trial(10**6, {"load_from": str(saving.id)})
        start = time.perf_counter()
        loaded = study.checkpoints.load(loader)
        reads.append(time.perf_counter() - start)
        assert np.array_equal(loaded["layer0"], state["layer0"])
    return statistics.median(writes), statistics.median(reads)


def _postgres(url: str) -> tuple[str, Any] | None:
    import sqlalchemy as sa

    name = f"poptune_ckpt_{os.getpid()}"
    admin = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                             isolation_level="AUTOCOMMIT")  # fmt: skip
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except Exception as exc:  # noqa: BLE001 - no server: the case is skipped, saying why
        print(f"postgres: skipped ({type(exc).__name__}: {str(exc).splitlines()[0]})")
        return None
    return url.rsplit("/", 1)[0] + f"/{name}", (admin, name)


def _drop_postgres(handle: Any) -> None:
    admin, name = handle
    from poptune.storage import _CACHE, _CACHE_LOCK

    with _CACHE_LOCK:  # close the study's connections before dropping its database
        for cached in _CACHE.values():
            getattr(cached, "close", lambda: None)()
        _CACHE.clear()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50.0, help="size of the state (MB)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-bytes", type=int, default=None, help="database chunk size")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--s3", action="store_true", help="also moto's S3 server (127.0.0.1)")
    args = parser.parse_args(argv)
    state = state_of(args.mb)
    mb = sum(a.nbytes for a in state.values()) / 1e6
    db_options = None if args.chunk_bytes is None else {"chunk_bytes": args.chunk_bytes}
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="poptune-ckpt-bench-") as tmp:
        cases: list[tuple[str, Any]] = [
            ("directory", lambda: _study(None, f"{tmp}/ckpt", None)),
            ("sqlite", lambda: _study(f"sqlite:///{tmp}/study.db", "database://", db_options)),
        ]
        handle = None
        if not args.no_postgres:
            found = _postgres(args.postgres_url)
            if found is not None:
                pg_url, handle = found
                cases.append(("postgres", lambda: _study(pg_url, "database://", db_options)))
        server = None
        if args.s3:
            from moto.server import ThreadedMotoServer

            os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            s3 = {"endpoint_url": f"http://{host}:{port}", "key": "k", "secret": "s"}
            import s3fs

            s3fs.S3FileSystem(**s3).mkdir("bench")
            cases.append(("s3 (moto)", lambda: _study(None, "s3://bench/ckpt", s3)))
        try:
            for name, make in cases:
                write, read = measure(make(), state, args.repeats)
                rows.append((name, write, read))
                print(f"{name}: write {mb / write:.1f} MB/s, read {mb / read:.1f} MB/s",
                      flush=True)  # fmt: skip
        finally:
            if handle is not None:
                _drop_postgres(handle)
            if server is not None:
                server.stop()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{mb:.0f} MB state, median of {args.repeats}; measured under load, load average "
          f"{load:.1f} ({os.cpu_count()} CPUs)\n")  # fmt: skip
    print("| where | write (MB/s) | read (MB/s) | write (s) | read (s) |")
    print("|---|---:|---:|---:|---:|")
    for name, write, read in rows:
        print(f"| {name} | {mb / write:.1f} | {mb / read:.1f} | {write:.2f} | {read:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
