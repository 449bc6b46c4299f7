"""Shared fixtures: real SQLite files and, when configured, a real PostgreSQL database.

PostgreSQL tests read the server's URL from ``POPTUNE_TEST_POSTGRES_URL`` (``.ci/run`` creates
a fresh database and sets it). Without it they skip, saying so; in CI they always run.
"""

from __future__ import annotations

import os
import threading

import pytest
import sqlalchemy as sa

POSTGRES_ENV = "POPTUNE_TEST_POSTGRES_URL"
POSTGRES_SKIP = (
    f"PostgreSQL tests need {POSTGRES_ENV}=postgresql://user@host/database "
    "(a database they may wipe); .ci/run sets it"
)


def postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(POSTGRES_SKIP)
    return url


def wipe_postgres(url: str) -> None:
    """Drop poptune's tables so a test starts from an empty database."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        for table in ("poptune_checkpoint_chunks", "poptune_checkpoints", "poptune_observations",
                      "poptune_trials", "poptune_studies", "poptune_meta"):  # fmt: skip
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table} CASCADE")
    engine.dispose()


def make_url(kind: str, tmp_path) -> str:
    """A fresh database URL of the given kind ('sqlite' or 'postgres')."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    url = postgres_url()
    wipe_postgres(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """A fresh SQLite file or PostgreSQL database (the latter skips without the server)."""
    yield make_url(request.param, tmp_path)
    forget_storages()


def forget_storages() -> None:
    """Close the storages Study(storage=url) cached in this process (tests reuse URLs).

    First the Study objects a test dropped are collected (their finalizers stop their
    heartbeats) and their heartbeat threads are waited for: a beat in flight while the pool is
    disposed would check its connection into the old pool, whose connections are then only
    garbage-collected, unclosed (psycopg warns, and warnings are errors here)."""
    import gc

    from poptune import storage
    from poptune.study._liveness import Heartbeat

    gc.collect()
    for thread in threading.enumerate():
        beat = getattr(getattr(thread, "_target", None), "__self__", None)  # Thread's own
        if isinstance(beat, Heartbeat) and beat._stop.is_set():  # stopped: it ends at once
            thread.join(5.0)
    with storage._CACHE_LOCK:
        for cached in storage._CACHE.values():
            close = getattr(cached, "close", None)
            if close is not None:
                close()
        storage._CACHE.clear()


# -- the dashboard's browser tests: Debian's Chromium, driven by Playwright (never downloaded)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for one test module (the module checks Playwright and CHROMIUM)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield chromium
        chromium.close()
