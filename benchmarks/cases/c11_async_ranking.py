"""Case 11: asynchronous PBT's two rankings side by side: ``ranking='latest'`` against
``ranking='equal_progress'``, with 1, 2 and population-size workers.

Problems (the benchmark page's own):

* ``toy-2``: the paper's toy problem as case 3 runs it (:mod:`benchmarks.cases.c3_toy`):
  population 2 seeded with h = (1, 0) and (0, 1), 50 segments of 4 gradient steps,
  ``resample_probability=0.25``; score = the best Q any segment reached (case 3's figure at
  t = 200; 1.2 is the optimum);
* ``toy-6``: the same problem with population 6 and random founders (h uniform in [0, 1]²),
  25 segments of 4 steps, the same score;
* ``pbt_function-4`` / ``pbt_function-8``: Ray Tune's ``pbt_function`` as case 4 runs it
  (:mod:`benchmarks.cases.c4_pbt_function`): learning rate uniform in [1e-4, 0.02], 30
  segments of 5 steps, quantile 25%, resampling with probability 0.25; score = the best
  member's accuracy after its last segment (case 4's "final score").

**How the workers are simulated.** One process, a discrete-event simulation of W workers
sharing one in-memory study: at time 0 every worker asks for a trial; a worker that gets one
is busy for the segment's duration (drawn uniformly in [0.5, 1.5) time units from the seed,
the member and the generation, so both rankings see the same schedule of durations); when a
segment ends (the earliest end first, ties by worker index) its observation is reported and
the trial finalized at that moment, then every idle worker asks again (a worker answered
WAIT stays idle until the next segment ends). The segment's training runs when it is handed
out: it depends only on the checkpoint it loads, a finished segment, and its
hyperparameters, so computing it early changes nothing the algorithm sees. This is the
order of events of ``study.optimize(n_workers=W)`` with those segment times, without
processes and with time simulated, so 40 seeds take seconds.

Decisions = segments after a member's first; exploits = those that copied a donor
(``trial.meta['replaced']``). "Best model's segments" = how many segments the weights that
hold the score were trained for (their lineage and themselves; a member that copies a donor
trained further than itself holds weights trained longer than its own segment count, so
this can exceed the number of generations). Means ± standard errors over the seeds (the
same seeds for both rankings); "difference" is equal_progress − latest, paired by seed, ±
its standard error; "equal_progress is" says better/worse when that difference is more than
two standard errors from 0. Synchronous PBT on the same problems and seeds is printed below
for reference (with a barrier the worker count does not change its decisions).

``python -m benchmarks --cases 11`` runs 40 seeds (~15 s of CPU); ``--quick`` 4 seeds and
smaller problems.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

import numpy as np

import poptune
from benchmarks.harness import Context, Section, log, mean_and_se, mean_se, table
from benchmarks.problems import (
    PF_LR_RANGE,
    TOY_FOUNDERS,
    TOY_READY,
    TOY_THETA0,
    pf_train,
    toy_q,
    toy_steps,
)
from poptune import Continuous
from poptune.algorithms import PopulationBasedTraining

TITLE = '11. Asynchronous PBT: `ranking="latest"` against `"equal_progress"` (simulated workers)'
RANKINGS = ("latest", "equal_progress")
PF_STEPS = 5
PF_QUANTILE = 0.25  # as case 4 (benchmarks/peers/pbt_function_peer.py)
RESAMPLE = 0.25  # cases 3 and 4


# -- the problems -----------------------------------------------------------------------------
class Problem:
    """A PBT problem: its study, how a segment trains and what the run scores."""

    name: str
    population: int
    generations: int

    def study(self, ranking: str | None, seed: int) -> poptune.Study:
        """A fresh study: asynchronous PBT with ``ranking``, or synchronous PBT (None)."""
        raise NotImplementedError

    def pbt_study(
        self, params: list[Continuous], ranking: str | None, seed: int, **pbt: Any
    ) -> poptune.Study:
        """The study both problems run; ``pbt``: the problem's own PBT keywords."""
        self.checkpoints: dict[str, Any] = {}
        algorithm = PopulationBasedTraining(
            self.generations,
            self.population,
            resample_probability=RESAMPLE,
            synchronous=ranking is None,
            ranking=ranking or "latest",
            **pbt,
        )
        return poptune.Study(params, algorithm, False, seed=seed, disable_dashboard=True)

    def train(self, trial: poptune.Trial, seed: int) -> tuple[float, Any]:
        """(the segment's objective, its checkpoint), from ``self.checkpoints``."""
        raise NotImplementedError

    def score(self, study: poptune.Study) -> tuple[float, poptune.Trial]:
        """The run's score and the segment that holds it."""
        raise NotImplementedError


class Toy(Problem):
    def __init__(self, population: int, generations: int) -> None:
        self.name = f"toy-{population}"
        self.population, self.generations = population, generations
        self.checkpoints: dict[str, np.ndarray] = {}

    def study(self, ranking: str | None, seed: int) -> poptune.Study:
        founders = [dict(f) for f in TOY_FOUNDERS] if self.population == 2 else None
        params = [Continuous("h0", [0, 1]), Continuous("h1", [0, 1])]
        return self.pbt_study(params, ranking, seed, initial_population=founders)

    def train(self, trial: poptune.Trial, seed: int) -> tuple[float, Any]:
        theta = self.checkpoints[trial.load_from] if trial.load_from else np.array(TOY_THETA0)
        h = np.array([trial.parameters["h0"], trial.parameters["h1"]])
        theta = toy_steps(theta, h, TOY_READY)
        return toy_q(theta), theta

    def score(self, study: poptune.Study) -> tuple[float, poptune.Trial]:
        return max(
            ((o.objective, t) for t in study.trials for o in t.observations.values()),
            key=lambda pair: (pair[0], -pair[1].id),
        )


class PbtFunction(Problem):
    def __init__(self, population: int, generations: int) -> None:
        self.name = f"pbt_function-{population}"
        self.population, self.generations = population, generations
        self.checkpoints: dict[str, dict[str, float]] = {}

    def study(self, ranking: str | None, seed: int) -> poptune.Study:
        params = [Continuous("lr", list(PF_LR_RANGE))]
        return self.pbt_study(params, ranking, seed, quantile_fraction=PF_QUANTILE)

    def train(self, trial: poptune.Trial, seed: int) -> tuple[float, Any]:
        state = self.checkpoints.get(trial.load_from) or {"accuracy": 0.0, "step": 0}
        member = f"{trial.member}-{trial.id}"  # as case 4's segment
        accuracies = pf_train(
            state["accuracy"], trial.parameters["lr"], seed, member, state["step"], PF_STEPS
        )
        return accuracies[-1], {"accuracy": accuracies[-1], "step": state["step"] + PF_STEPS}

    def score(self, study: poptune.Study) -> tuple[float, poptune.Trial]:
        last: dict[int, poptune.Trial] = {}
        for trial in study.trials:
            m = trial.member
            if m not in last or trial.generation > last[m].generation:
                last[m] = trial
        return max(
            ((t.observations[max(t.observations)].objective, t) for t in last.values()),
            key=lambda pair: (pair[0], -pair[1].id),
        )


# -- the simulation ---------------------------------------------------------------------------
def duration(seed: int, trial: poptune.Trial) -> float:
    """A segment's cost in time units: U(0.5, 1.5), fixed by seed, member and generation."""
    return 0.5 + float(np.random.default_rng([seed, trial.member, trial.generation]).random())


def simulate(
    study: poptune.Study,
    workers: int,
    train: Callable[[poptune.Trial], tuple[float, Any]],
    cost: Callable[[poptune.Trial], float],
    checkpoints: dict[str, Any],
) -> float:
    """Run ``study`` on ``workers`` simulated workers (see the module docstring); returns the
    simulated wall time."""
    idle = list(range(workers))
    running: list[tuple[float, int, poptune.Trial, float, Any]] = []  # a heap by end time
    now = 0.0
    while True:
        while idle:
            got = study.get_suggestion()
            if not isinstance(got, poptune.Trial):
                break  # WAIT (until a segment ends) or DONE
            objective, checkpoint = train(got)
            heapq.heappush(running, (now + cost(got), idle.pop(0), got, objective, checkpoint))
        if not running:
            if got is not poptune.AlgorithmState.DONE:  # pragma: no cover - a deadlock
                raise RuntimeError(f"{got!r} with no segment running")
            return now
        now, worker, trial, objective, checkpoint = heapq.heappop(running)
        checkpoints[trial.save_to] = checkpoint
        study.add_observation(trial, objective, iteration=trial.generation)
        study.finalize(trial)
        idle.append(worker)
        idle.sort()


def run_one(problem: Problem, ranking: str | None, workers: int, seed: int) -> dict[str, float]:
    """One simulated run (``ranking`` None: synchronous PBT)."""
    study = problem.study(ranking, seed)
    simulate(
        study,
        workers,
        lambda t: problem.train(t, seed),
        lambda t: duration(seed, t),
        problem.checkpoints,  # type: ignore[attr-defined]
    )
    decisions = [t for t in study.trials if t.generation > 1]
    exploits = sum(1 for t in decisions if "replaced" in t.meta)
    score, holder = problem.score(study)
    progress = holder.lineage.count(",") + 1  # segments its weights trained for
    return {"score": score, "exploits": exploits / len(decisions), "progress": progress}


# -- the table --------------------------------------------------------------------------------
def verdict(diff: list[float]) -> str:
    """'better' / 'worse' when the paired difference is more than 2 standard errors from 0."""
    mean, se = mean_and_se(diff)
    se = 0.0 if math.isnan(se) else se
    if mean > 2 * se:
        return "better"
    if mean < -2 * se:
        return "worse"
    return "same (within 2 s.e.)"


def run(ctx: Context) -> Section:
    section = Section("async_ranking", TITLE)
    seeds = ctx.seeds_or(40, 4)
    problems: list[Problem] = ctx.pick(
        [Toy(2, 50), Toy(6, 25), PbtFunction(4, 30), PbtFunction(8, 30)],
        [Toy(2, 20), Toy(6, 10), PbtFunction(4, 10)],
    )
    rows, sync_rows = [], []
    for problem in problems:
        digits = 4 if problem.name.startswith("toy") else 1
        sync = [run_one(problem, None, 1, seed) for seed in range(seeds)]
        sync_rows.append(
            [
                problem.name,
                mean_se([x["score"] for x in sync], digits),
                mean_se([100 * x["exploits"] for x in sync], 1),
                mean_se([x["progress"] for x in sync], 1),
            ]
        )
        for workers in sorted({1, 2, problem.population}):
            got: dict[str, list[dict[str, float]]] = {r: [] for r in RANKINGS}
            for seed in range(seeds):
                for ranking in RANKINGS:
                    got[ranking].append(run_one(problem, ranking, workers, seed))
            scores = {r: [x["score"] for x in got[r]] for r in RANKINGS}
            diff = [b - a for a, b in zip(scores["latest"], scores["equal_progress"], strict=True)]
            rows.append(
                [
                    problem.name,
                    str(workers),
                    mean_se(scores["latest"], digits),
                    mean_se(scores["equal_progress"], digits),
                    mean_se(diff, digits),
                    verdict(diff),
                    *[mean_se([100 * x["exploits"] for x in got[r]], 1) for r in RANKINGS],
                    *[mean_se([x["progress"] for x in got[r]], 1) for r in RANKINGS],
                ]
            )
            log(f"  {' | '.join(rows[-1])}")
    header = [
        "problem",
        "workers",
        "score, latest",
        "score, equal_progress",
        "difference",
        "equal_progress is",
        "exploits % (latest)",
        "exploits % (equal_progress)",
        "best model's segments (latest)",
        "best model's segments (equal_progress)",
    ]
    section.lines += [
        f"Simulated workers (see `benchmarks/cases/c11_async_ranking.py`). Means ± standard "
        f"errors over seeds 0-{seeds - 1}; difference = equal_progress − latest, paired by "
        "seed; higher scores are better.",
        "",
        *table(header, rows),
        "",
        "For reference, synchronous PBT on the same problems and seeds (a generation barrier, "
        "so every member is compared at equal progress and the worker count changes nothing "
        "the algorithm decides):",
        "",
        *table(["problem", "score, synchronous", "exploits %", "best model's segments"], sync_rows),
    ]
    return section
