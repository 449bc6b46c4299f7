"""Case 13: what a checkpoint costs where it lives: MB/s saving and loading a training state
(poptune's pickle-free format) through each ``checkpoint_dir``: a directory (the reference: a
temporary file, fsync, rename), ``"database://"`` in SQLite (chunks in their own transactions, then
the head row) and in PostgreSQL. The method is the page text in :func:`run` (and a load average)."""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np

import poptune as pt
from benchmarks.harness import Clock, Context, Section, log, table

DB = "database://"  # checkpoints in the study's own database
TITLE = "13. What a checkpoint costs where it lives (MB/s writing and reading a training state)"


def state_of(mb: float) -> dict[str, Any]:
    """A training-state-like dict: ten float32 arrays, ``mb`` MB in all."""
    per = int(mb * 1e6 / 4 / 10)
    rng = np.random.default_rng(0)
    return {f"layer{i}": rng.standard_normal(per, dtype=np.float32) for i in range(10)}


def _study(storage: str | None, checkpoint_dir: str) -> pt.Study:
    """A fresh study whose checkpoints live in ``checkpoint_dir`` (chunks of the default size)."""
    params, algorithm = [pt.Continuous("lr", [0.1, 1.0])], pt.algorithms.RandomSearch(10**6)
    where = {"storage": storage, "checkpoint_dir": checkpoint_dir}
    name = f"ckpt-{uuid.uuid4().hex[:6]}"
    return pt.Study(params, algorithm, True, study_name=name, heartbeat_interval=None, **where)


def measure(study: pt.Study, state: dict[str, Any], repeats: int) -> tuple[float, float]:
    """Median seconds to save ``state`` (``trial.save_checkpoint``) and to load it back."""
    saving = study.get_suggestion()
    writes, reads = [], []
    for _ in range(repeats):
        with Clock() as write:
            saving.save_checkpoint(state)
        writes.append(write.wall)
        saving.report(1.0, iteration=len(writes))
        loader = pt.Trial(10**6, {"load_from": str(saving.id)})
        with Clock() as read:
            loaded = study.checkpoints.load(loader)
        reads.append(read.wall)
        assert np.array_equal(loaded["layer0"], state["layer0"])
    return statistics.median(writes), statistics.median(reads)


@contextlib.contextmanager
def postgres_database(url: str, notes: list[str]) -> Iterator[str | None]:
    """The URL of a fresh database ``poptune_ckpt_<pid>`` at ``url``, dropped afterwards; None
    (and why, on ``notes``) when the server cannot be reached."""
    import sqlalchemy as sa

    from poptune.storage import _CACHE, _CACHE_LOCK

    name = f"poptune_ckpt_{os.getpid()}"
    driver_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    admin = sa.create_engine(driver_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except Exception as exc:  # noqa: BLE001 - no server: the case is skipped, saying why
        notes.append(f"postgres: skipped ({type(exc).__name__}: {str(exc).splitlines()[0]})")
        yield None
        return
    try:
        yield url.rsplit("/", 1)[0] + f"/{name}"
    finally:
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
    with (
        tempfile.TemporaryDirectory(prefix="poptune-ckpt-bench-") as tmp,
        postgres_database(ctx.postgres_url, section.notes) as pg_url,
    ):
        backends = {"directory": (None, f"{tmp}/ckpt"), "sqlite": (f"sqlite:///{tmp}/study.db", DB)}
        if pg_url is not None:
            backends["postgres"] = (pg_url, DB)
        for name, (storage, checkpoint_dir) in backends.items():
            write, read = measure(_study(storage, checkpoint_dir), state, repeats)
            rates = [f"{mb / write:.1f}", f"{mb / read:.1f}"]
            rows.append([name, *rates, f"{write:.2f}", f"{read:.2f}"])
            log(f"  {name}: write {rates[0]} MB/s, read {rates[1]} MB/s")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    section.lines += [
        f"{mb:.0f} MB state, median of {repeats}; load average {load:.1f} at the end of the "
        f"case ({os.cpu_count()} CPUs).",
        "",
        *table("where | write (MB/s) | read (MB/s) | write (s) | read (s)", rows),
    ]
    return section
