"""The chaos suite (issue 17, small version; the soak is ``python -m tests.soak``).

Real worker processes are SIGKILLed at chosen points (inside a suggestion's transaction, an
observation's write or right after it was acknowledged, a finalize, halfway through a
checkpoint write, the last generation, at random moments from outside) on SQLite and
PostgreSQL, and PostgreSQL backends are terminated from the server. After every run
:func:`tests.chaos_harness.check` asserts: no acknowledged observation lost, no trial started
twice (a re-run is a new trial with ``retry_of``), none left QUEUED or RUNNING, every PBT
generation complete, every ``load_from`` a COMPLETED segment whose checkpoint exists, and no
worker hung. Randomness is seeded: ``POPTUNE_CHAOS_SEED`` (default 17) shifts every run's
seed, which each failure message names.
"""

import os

import pytest

from tests.chaos_harness import run_once
from tests.conftest import forget_storages, make_url

BASE = int(os.environ.get("POPTUNE_CHAOS_SEED", "17")) * 1000

# (seed offset, algorithm, kill points)
SQLITE_RUNS = [
    (1, "pbt", ("suggestion", "observation", "external")),
    (2, "pbt-async", ("finalize", "checkpoint", "last")),
    (3, "random", ("last", "suggestion", "external")),
]
POSTGRES_RUNS = [
    (5, "pbt", ("suggestion", "observation", "finalize", "checkpoint", "last")),
]


def _run(kind, tmp_path, offset, algorithm, points, terminate=False):
    seed = BASE + offset
    print(f"chaos seed {seed}")
    url = make_url(kind, tmp_path)
    try:
        result = run_once(seed, url, kind, tmp_path / "run", points=points,
                          algorithm=algorithm, terminate=terminate, timeout=90)  # fmt: skip
    finally:
        forget_storages()
    print(result.describe())
    assert not result.problems, result.describe()
    return result


@pytest.mark.parametrize(("offset", "algorithm", "points"), SQLITE_RUNS)
def test_chaos_sqlite(tmp_path, offset, algorithm, points):
    _run("sqlite", tmp_path, offset, algorithm, points)


@pytest.mark.parametrize(("offset", "algorithm", "points"), POSTGRES_RUNS)
def test_chaos_postgres(tmp_path, offset, algorithm, points):
    _run("postgres", tmp_path, offset, algorithm, points)


def test_chaos_postgres_backends_terminated(tmp_path):
    """``pg_terminate_backend`` on every worker connection, twice, plus SIGKILLs: the data
    invariants hold and the study completes with the workers left or restarted. A worker
    whose connection is cut may still fail a trial or exit (reconnect-and-retry is issue 17,
    item 8); such trials are counted in ``connection_failures``, not hidden."""
    result = _run("postgres", tmp_path, 7, "pbt", ("external", "last"), terminate=True)
    assert result.terminations > 0, "no backend was terminated: the test tested nothing"
