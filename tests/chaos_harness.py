"""Chaos runs: real worker processes SIGKILLed at chosen or random points, PostgreSQL backends
terminated from the server, and the invariants checked after every run.

One run (:func:`run_once`) is one small study (PBT, synchronous or asynchronous, or a random
search) on SQLite or PostgreSQL, worked by 2-3 worker processes (``Study.join`` and the
worker loop, what ``poptune worker`` runs). Everything random about a run comes from its
seed: the study, which faults are injected where, which dead workers are restarted. A run's
faults are:

* ``suggestion``: a worker SIGKILLs itself inside the suggestion's transaction (after the
  trial row was inserted, before COMMIT);
* ``observation``: inside ``add_observation``'s write, or right after it was acknowledged;
* ``finalize``: inside the finalizing write;
* ``checkpoint``: halfway through writing a checkpoint (a temporary file left behind);
* ``last``: during a trial of the last PBT generation (or a random search's last trials);
* ``external``: the controller SIGKILLs a random live worker at a random moment;
* ``terminate``: the controller runs ``pg_terminate_backend`` on the workers' connections
  (PostgreSQL only).

A killed worker is started again with probability 1/2 (always when none is left). After the
run, :func:`check` asserts: every acknowledged observation is stored; no trial started twice
(a trial's work is re-run only as a new trial with ``meta['retry_of']``); no trial is left
QUEUED or RUNNING; every PBT generation is complete (every member's latest attempt finished,
the last generation's COMPLETED unless every allowed attempt lost its worker); every
``load_from`` names a COMPLETED segment whose checkpoint file exists; and the run ended
(no worker hung).

``python -m tests.soak`` repeats runs for a duration and prints the figures; the small
CI version is ``tests/test_chaos.py``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POINTS = ("suggestion", "observation", "finalize", "checkpoint", "last", "external")
ALGORITHMS = ("pbt", "pbt-async", "random")
POPULATION, GENERATIONS, RANDOM_TRIALS = 4, 3, 10
HEARTBEAT, GRACE = 0.2, 1.2


@dataclass
class RunResult:
    """What one chaos run did and what its checks found."""

    seed: int
    backend: str
    algorithm: str
    retries: int
    kills: int = 0
    terminations: int = 0
    restarts: int = 0
    trials: int = 0
    acknowledged: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    #: trials that FAILED with an error (not a lost worker) in a run with backend
    #: terminations: the objective's report or finalize met the terminated connection
    connection_failures: list[str] = field(default_factory=list)
    points: Counter = field(default_factory=Counter)

    @property
    def faults(self) -> int:
        return self.kills + self.terminations

    def describe(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.points.items())) or "none"
        state = "OK" if not self.problems else "FAILED: " + "; ".join(self.problems)
        if self.connection_failures:
            n = len(self.connection_failures)
            state += f" ({n} trial or worker failure(s) on a terminated connection)"
        return (
            f"seed {self.seed} {self.backend} {self.algorithm} retries={self.retries}: "
            f"{self.trials} trials, {self.acknowledged} acknowledged observations, "
            f"{self.kills} kills ({kinds}), {self.terminations} backend terminations, "
            f"{self.restarts} restarts, {self.seconds:.1f} s: {state}"
        )


# -- the study -----------------------------------------------------------------------------------
def make_study(url: str, name: str, algorithm: str, retries: int, checkpoint_dir: Path) -> Any:
    from poptune import Continuous, Study, algorithms

    params = [Continuous("lr", [1e-3, 1e-1], "log")]
    if algorithm == "random":
        algo: Any = algorithms.RandomSearch(RANDOM_TRIALS)
    else:
        algo = algorithms.PopulationBasedTraining(
            GENERATIONS, POPULATION, synchronous=algorithm == "pbt"
        )
    return Study(params, algo, False, storage=url, study_name=name, seed=1,
                 **options(retries, checkpoint_dir))  # fmt: skip


def options(retries: int, checkpoint_dir: Path) -> dict[str, Any]:
    return {"heartbeat_interval": HEARTBEAT, "grace_period": GRACE,
            "retry_failed_trials": retries, "checkpoint_dir": str(checkpoint_dir)}  # fmt: skip


# -- a worker process ----------------------------------------------------------------------------
def _log(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class _Faults:
    """Decides, in a worker, whether to die at a point (each point fires with probability
    ``rate``, while the run's kill budget, a counter of files in ``dir``, lasts)."""

    def __init__(self, spec: dict[str, Any], worker_seed: int) -> None:
        self.rng = random.Random(worker_seed)
        self.points = set(spec["points"])
        self.rate = spec["rate"]
        self.dir = Path(spec["dir"])
        self.budget = spec["max_kills"]

    def maybe_die(self, point: str) -> None:
        if point not in self.points or self.rng.random() >= self.rate:
            return
        for k in range(self.budget):
            try:
                fd = os.open(self.dir / f"kill-{k}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                continue
            os.write(fd, point.encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
        # budget spent: live on


_FAULTS: _Faults | None = None


def _die(point: str) -> None:
    if _FAULTS is not None:
        _FAULTS.maybe_die(point)


def _install_hooks() -> None:
    """Wrap the SQL storage's writes so that a worker can die inside them."""
    from poptune.storage.sql import SQLStorage

    def wrap(name: str, point: str, after: bool) -> None:
        original = getattr(SQLStorage, name)

        def hooked(self: Any, *args: Any, **kwargs: Any) -> Any:
            if not after:
                _die(point)
            result = original(self, *args, **kwargs)
            if after:
                _die(point)
            return result

        setattr(SQLStorage, name, hooked)

    wrap("insert_trial", "suggestion", True)  # inside the suggestion's transaction
    wrap("claim_queued_trial", "suggestion", True)
    wrap("add_observation", "observation", False)
    wrap("finish_trial", "finalize", False)


def objective(trial: Any) -> None:
    """A segment (PBT) or a trial: reads its checkpoint, reports twice, writes a checkpoint.
    Logs its start and each acknowledged observation to the run's directory."""
    logs = Path(os.environ["POPTUNE_CHAOS_DIR"])
    _log(logs / "starts.log", f"{trial.id} {os.getpid()}")
    last = int(os.environ["POPTUNE_CHAOS_LAST"])
    generation = trial.generation
    is_last = generation == last if generation is not None else trial.id > last
    weights = 0.0
    source = trial.load_path if trial.load_from else None
    if source is not None:
        weights = json.loads(Path(source).read_text())["w"]
    lr = trial.parameters["lr"]
    rng = random.Random(trial.id)
    for step in (1, 2):
        time.sleep(rng.uniform(0.02, 0.12))
        if is_last:
            _die("last")
        weights += lr * 10
        iteration = (generation or 1) * 10 + step if generation is not None else step
        value = -abs(weights - 2.0)
        trial.report(value, iteration=iteration)
        _log(logs / "acks.log", f"{trial.id} {iteration} {value!r}")
        _die("observation")
    if trial.save_to:
        target = Path(trial.checkpoint_path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as fh:
            fh.write(json.dumps({"w": weights})[:5])
            fh.flush()
            _die("checkpoint")  # a half-written temporary file, never the checkpoint itself
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"w": weights}))
        os.replace(tmp, target)


def worker(spec: dict[str, Any], worker_seed: int) -> None:
    """A worker process: join the study and run trials until it is DONE."""
    global _FAULTS
    os.environ["POPTUNE_CHAOS_DIR"] = spec["dir"]
    os.environ["POPTUNE_CHAOS_LAST"] = str(spec["last"])
    _FAULTS = _Faults(spec, worker_seed)
    _install_hooks()
    from poptune import Study

    study = Study.join(spec["url"], spec["name"], **options(spec["retries"], spec["ckpt"]))
    study.optimize(objective, show_progress=False)


# -- the controller ------------------------------------------------------------------------------
def _terminate_backends(url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            rows = conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"
            ).fetchall()
    finally:
        engine.dispose()
    return sum(1 for (ok,) in rows if ok)


def run_once(
    seed: int,
    url: str,
    backend: str,
    directory: Path,
    *,
    points: tuple[str, ...] | None = None,
    algorithm: str | None = None,
    terminate: bool | None = None,
    terminations: int = 2,
    timeout: float = 120.0,
) -> RunResult:
    """One chaos run on a fresh study in ``url`` (wiped by the caller); returns its result
    with ``problems`` listing every broken invariant (empty: all held). ``points``,
    ``algorithm`` and ``terminate`` (``pg_terminate_backend`` ``terminations`` times, 0.5-3 s
    apart) default to a draw from ``seed``; ``timeout`` seconds without the run ending is a
    hang."""
    rnd = random.Random(seed)
    algorithm = algorithm or rnd.choice(ALGORITHMS)
    retries = rnd.choice((0, 1))
    if points is None:
        points = tuple(p for p in POINTS if rnd.random() < 0.5) or ("external",)
    if terminate is None:
        terminate = backend == "postgres" and rnd.random() < 0.5
    result = RunResult(seed, backend, algorithm, retries)
    directory.mkdir(parents=True, exist_ok=True)
    ckpt = directory / "ckpt"
    ckpt.mkdir(exist_ok=True)
    name = f"chaos-{seed}-{uuid.uuid4().hex[:8]}"  # a fresh study, even in a used database
    make_study(url, name, algorithm, retries, ckpt)
    last = GENERATIONS if algorithm != "random" else RANDOM_TRIALS - 3
    spec = {"url": url, "name": name, "retries": retries, "ckpt": str(ckpt),
            "dir": str(directory), "last": last, "points": [p for p in points if p != "external"],
            "rate": 0.08, "max_kills": 3}  # fmt: skip
    ctx = multiprocessing.get_context("spawn")
    n_workers = rnd.choice((2, 3))
    procs: list[Any] = []

    def start() -> None:
        p = ctx.Process(target=worker, args=(spec, rnd.randrange(2**31)), daemon=True)
        p.start()
        procs.append(p)

    for _ in range(n_workers):
        start()
    t0 = time.monotonic()
    seen_dead: set[int] = set()
    next_external = t0 + rnd.uniform(0.5, 3.0)
    next_terminate = t0 + rnd.uniform(0.5, 3.0)
    external_left = 2 if "external" in points else 0
    terminate_left = terminations if terminate else 0
    hung = False
    while True:
        for i, p in enumerate(procs):
            if i in seen_dead or p.is_alive() or p.exitcode is None:
                continue
            seen_dead.add(i)
            if p.exitcode != 0 and (rnd.random() < 0.5 or not any(q.is_alive() for q in procs)):
                result.restarts += 1
                start()
        if not any(p.is_alive() for p in procs):
            break
        now = time.monotonic()
        if now - t0 > timeout:
            hung = True
            break
        alive = [p for p in procs if p.is_alive()]
        if external_left and now >= next_external and alive:
            os.kill(rnd.choice(alive).pid, signal.SIGKILL)
            result.kills += 1
            result.points["external"] += 1
            external_left -= 1
            next_external = now + rnd.uniform(0.5, 3.0)
        if terminate_left and now >= next_terminate:
            result.terminations += _terminate_backends(url)
            terminate_left -= 1
            next_terminate = now + rnd.uniform(0.5, 3.0)
        time.sleep(0.05)
    for p in procs:
        if p.is_alive():
            p.kill()
        p.join(5)
    result.seconds = time.monotonic() - t0
    for marker in directory.glob("kill-*"):
        result.kills += 1
        result.points[marker.read_text() or "?"] += 1
    if hung:
        result.problems.append(f"the run did not end within {timeout:g} s (a worker hung)")
    crashed = [p.exitcode for p in procs if p.exitcode not in (0, -signal.SIGKILL)]
    if crashed:  # a worker that raised: with terminations, a connection it could not replace
        line = f"worker(s) exited with codes {crashed}"
        (result.connection_failures if result.terminations else result.problems).append(line)
    check(result, url, name, directory, ckpt, algorithm, retries)
    return result


# -- the invariants ------------------------------------------------------------------------------
def check(
    result: RunResult, url: str, name: str, directory: Path, ckpt: Path, algorithm: str,
    retries: int,
) -> None:  # fmt: skip
    """Append to ``result.problems`` every invariant the stored study breaks."""
    import poptune as pt
    from poptune.trial import TrialStatus

    study = pt.load_study(url, name)
    trials = {t.id: t for t in study.trials}
    result.trials = len(trials)
    problems = result.problems

    # 1. every acknowledged observation is stored, with its value
    acks = _lines(directory / "acks.log")
    result.acknowledged = len(acks)
    for tid, iteration, value in (line.split() for line in acks):
        trial = trials.get(int(tid))
        obs = None if trial is None else trial.observations.get(int(iteration))
        if obs is None or obs.objective != float(value):
            problems.append(f"acknowledged observation lost: trial {tid} iteration {iteration}")

    # 2. no trial ran twice: a re-run is a new trial that names the one it retries
    starts = Counter(int(line.split()[0]) for line in _lines(directory / "starts.log"))
    for tid, n in starts.items():
        if n > 1:
            problems.append(f"trial {tid} was started {n} times")
    for t in trials.values():
        old = t.meta.get("retry_of")
        if old is not None and (old not in trials or trials[old].status is not TrialStatus.FAILED):
            problems.append(f"trial {t.id} retries trial {old}, which is not a FAILED trial")

    # 3. nothing left QUEUED or RUNNING
    unfinished = [t.id for t in trials.values() if not t.is_finished]
    if unfinished:
        problems.append(f"trial(s) {unfinished} left unfinished")

    # 4. every generation complete / every trial of the search finished
    allowed = retries + 1
    if algorithm == "random":
        originals = [t for t in trials.values() if "retry_of" not in t.meta]
        if len(originals) != RANDOM_TRIALS:
            problems.append(f"{len(originals)} of {RANDOM_TRIALS} trials were made")
        for t in originals:
            _check_chain(result, trials, t, allowed, f"trial {t.id}")
    else:
        for g in range(1, GENERATIONS + 1):
            for m in range(POPULATION):
                slot = [t for t in trials.values() if t.member == m and t.generation == g]
                firsts = [t for t in slot if "retry_of" not in t.meta]
                if len(firsts) != 1:
                    problems.append(f"generation {g} member {m} has {len(firsts)} first attempts")
                    continue
                # the last generation: a lost segment is retried, or run again once
                final = max(allowed, 2) if g == GENERATIONS else 0
                _check_chain(result, trials, firsts[0], final, f"generation {g} member {m}")

    # 5. every load_from is a COMPLETED segment whose checkpoint exists (in the study's own
    #    folder of checkpoint_dir)
    from poptune.study._open import folder_name

    folder = ckpt / folder_name(name)
    saved = list(folder.iterdir()) if folder.is_dir() else []
    for t in trials.values():
        source = t.parameters.get("load_from")
        if not source:
            continue
        parent = trials.get(int(source))
        if parent is None or parent.status is not TrialStatus.COMPLETED:
            problems.append(f"trial {t.id} loads from trial {source}, which is not COMPLETED")
        elif not any(f.name == source or f.name.startswith(source + ".") for f in saved):
            problems.append(f"trial {t.id} loads checkpoint {source}, which does not exist")
        if t.meta.get("checkpoint_missing"):
            problems.append(f"trial {t.id} failed: its checkpoint was missing")


def _check_chain(result: RunResult, trials: dict[int, Any], first: Any, allowed: int,
                 what: str) -> None:  # fmt: skip
    """Follow ``first``'s retries: one retry per attempt at most; with ``allowed`` > 0 the last
    attempt must be COMPLETED unless all ``allowed`` attempts lost their worker."""
    from poptune.trial import TrialStatus

    chain = [first]
    while True:
        nxt = [t for t in trials.values() if t.meta.get("retry_of") == chain[-1].id]
        if len(nxt) > 1:
            result.problems.append(f"{what}: trial {chain[-1].id} was retried {len(nxt)} times")
        if not nxt:
            break
        chain.append(nxt[0])
    latest = chain[-1]
    if not latest.is_finished or allowed == 0 or latest.status is TrialStatus.COMPLETED:
        return
    if latest.meta.get("heartbeat_lost"):
        if len(chain) < allowed:
            result.problems.append(f"{what}: trial {latest.id} lost its worker, not retried")
        return  # every allowed attempt was lost: the study gave up on it, as configured
    error = f"{what}: trial {latest.id} is {latest.status.value} ({latest.meta.get('error')})"
    if result.terminations:
        result.connection_failures.append(error)
    else:
        result.problems.append(error)


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line.strip()]
