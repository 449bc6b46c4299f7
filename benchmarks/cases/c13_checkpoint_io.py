"""Case 13: what a checkpoint costs where it lives: MB/s writing and reading one training state.

The state is a dict of float32 arrays (50 MB in all; 5 with ``--quick``), saved with
``trial.save_checkpoint`` and read with ``trial.load_checkpoint`` (poptune's pickle-free
format) through a study whose ``checkpoint_dir`` is each backend in turn:

* ``directory``: a local directory (the reference: a temporary file, fsync, rename);
* ``sqlite``: ``"database://"`` in the study's SQLite file (chunks in their own transactions,
  then the head row);
* ``postgres``: ``"database://"`` in a PostgreSQL database (``--postgres-url``; it creates and
  drops its own database ``poptune_ckpt_<pid>``; skipped when the server cannot be reached).

Each backend writes and reads ``--repeats`` times (default 3; 1 with ``--quick``); the median
is reported, with the load average (figures on a shared machine are "measured under load").
The database chunks are the default size (``checkpoint_options={"chunk_bytes": ...}`` sets
another).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from typing import Any

import numpy as np

import poptune as pt
from benchmarks.harness import Context, Section, log, table

TITLE = "13. What a checkpoint costs where it lives (MB/s writing and reading a training state)"


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


def _postgres(url: str) -> tuple[str, Any] | str:
    """(the database's URL, a handle to drop it), or why there is none."""
    import sqlalchemy as sa

    name = f"poptune_ckpt_{os.getpid()}"
    admin = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                             isolation_level="AUTOCOMMIT")  # fmt: skip
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except Exception as exc:  # noqa: BLE001 - no server: the case is skipped, saying why
        return f"postgres: skipped ({type(exc).__name__}: {str(exc).splitlines()[0]})"
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


def run(ctx: Context) -> Section:
    section = Section("checkpoint_io", TITLE)
    repeats = ctx.repeats_or(3, 1)
    state = state_of(ctx.pick(50.0, 5.0))
    mb = sum(a.nbytes for a in state.values()) / 1e6
    rows = []
    with tempfile.TemporaryDirectory(prefix="poptune-ckpt-bench-") as tmp:
        cases: list[tuple[str, Any]] = [
            ("directory", lambda: _study(None, f"{tmp}/ckpt", None)),
            ("sqlite", lambda: _study(f"sqlite:///{tmp}/study.db", "database://", None)),
        ]
        found = _postgres(ctx.postgres_url)
        handle = None
        if isinstance(found, str):
            section.notes.append(found)
        else:
            pg_url, handle = found
            cases.append(("postgres", lambda: _study(pg_url, "database://", None)))
        try:
            for name, make in cases:
                write, read = measure(make(), state, repeats)
                rows.append([name, f"{mb / write:.1f}", f"{mb / read:.1f}"])
                rows[-1] += [f"{write:.2f}", f"{read:.2f}"]
                log(f"  {name}: write {mb / write:.1f} MB/s, read {mb / read:.1f} MB/s")
        finally:
            if handle is not None:
                _drop_postgres(handle)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    section.lines += [
        f"{mb:.0f} MB state, median of {repeats}; load average {load:.1f} at the end of the "
        f"case ({os.cpu_count()} CPUs).",
        "",
        *table(["where", "write (MB/s)", "read (MB/s)", "write (s)", "read (s)"], rows),
    ]
    return section
