"""Case 11: asynchronous PBT's ``ranking='latest'`` against ``'equal_progress'`` with 1, 2 and
population-size workers: does ranking at equal progress change what it finds? The method is the page
text in :func:`run`, which leaves the rest to this docstring.

Problems: ``toy-2``, case 3's toy problem as case 3 runs it, ``toy-6`` with random founders (h
uniform in [0, 1]²), scored by the best Q any segment reached; ``pbt_function-4`` / ``-8``, case 4's
problem as it runs it, scored by the best member's accuracy after its last segment.

**How the workers are simulated.** A discrete-event simulation, in one process, of W workers sharing
one in-memory study: at time 0 every worker asks for a trial; one that gets a trial is busy for the
segment's duration (U(0.5, 1.5) time units, drawn from the seed, the member and the generation: both
rankings see the same durations); when a segment ends (the earliest first, ties by worker index) its
observation is reported and the trial finalized, then every idle worker asks again (one answered
WAIT stays idle until the next segment ends). A segment trains when it is handed out: it depends
only on its hyperparameters and the checkpoint it loads, so this changes nothing the algorithm sees.
This is the order of events of ``study.optimize(n_workers=W)`` with those segment times, without
processes or real time, so 40 seeds take seconds (~15 s of CPU).

Decisions = segments after a member's first; exploits = those that copied a donor
(``trial.meta['replaced']``). "Best model's segments" = how many segments the weights that hold the
score were trained for (their lineage's and their own: a member that copies a donor trained further
can exceed the number of generations). "equal_progress is": see :func:`verdict`.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np

import poptune
from benchmarks import problems
from benchmarks.harness import Context, Section, log, mean_and_se, mean_se, table
from poptune import Continuous
from poptune.algorithms import PopulationBasedTraining

TITLE = '11. Asynchronous PBT: `ranking="latest"` against `"equal_progress"` (simulated workers)'
RANKINGS = ("latest", "equal_progress")
PF_STEPS = 5
PF_QUANTILE = 0.25  # as case 4 (`peer()` in benchmarks/cases/c4_pbt_function.py)
RESAMPLE = 0.25  # cases 3 and 4
HEADER = (
    "problem | workers | score, latest | score, equal_progress | difference | equal_progress is"
    " | exploits % (latest) | exploits % (equal_progress) | best model's segments (latest) | "
    "best model's segments (equal_progress)"
)


# -- the problems -----------------------------------------------------------------------------
class Problem:
    """A PBT problem: ``study(ranking, seed)``, a fresh study (asynchronous PBT with
    ``ranking``, or synchronous PBT for None); ``train(trial, seed)``, a segment's objective
    and checkpoint (the checkpoints it loads: ``self.checkpoints``, by ``save_to``);
    ``score(study)``, the run's score and the segment that holds it."""

    kind: str  # the problem's name, less its population

    def __init__(self, population: int, generations: int) -> None:
        self.name = f"{self.kind}-{population}"
        self.population, self.generations = population, generations
        self.checkpoints: dict[str, Any] = {}

    def pbt_study(
        self, params: list[Continuous], ranking: str | None, seed: int, **pbt: Any
    ) -> poptune.Study:
        """The study both problems run; ``pbt``: the problem's own PBT keywords."""
        self.checkpoints = {}
        sync = ranking is None
        pbt.update(resample_probability=RESAMPLE, synchronous=sync, ranking=ranking or "latest")
        algorithm = PopulationBasedTraining(self.generations, self.population, **pbt)
        return poptune.Study(params, algorithm, False, seed=seed, disable_dashboard=True)


def best(pairs: Any) -> tuple[float, poptune.Trial]:
    """The best (objective, trial) pair; ties go to the earliest trial."""
    return max(pairs, key=lambda pair: (pair[0], -pair[1].id))


class Toy(Problem):
    kind = "toy"

    def study(self, ranking: str | None, seed: int) -> poptune.Study:
        founders = [dict(f) for f in problems.TOY_FOUNDERS] if self.population == 2 else None
        params = [Continuous("h0", [0, 1]), Continuous("h1", [0, 1])]
        return self.pbt_study(params, ranking, seed, initial_population=founders)

    def train(self, trial: poptune.Trial, seed: int) -> tuple[float, Any]:
        start = self.checkpoints.get(trial.load_from, problems.TOY_THETA0)
        h = np.array([trial.parameters["h0"], trial.parameters["h1"]])
        theta = problems.toy_steps(np.array(start), h, problems.TOY_READY)
        return problems.toy_q(theta), theta

    def score(self, study: poptune.Study) -> tuple[float, poptune.Trial]:
        return best((o.objective, t) for t in study.trials for o in t.observations.values())


class PbtFunction(Problem):
    kind = "pbt_function"

    def study(self, ranking: str | None, seed: int) -> poptune.Study:
        params = [Continuous("lr", list(problems.PF_LR_RANGE))]
        return self.pbt_study(params, ranking, seed, quantile_fraction=PF_QUANTILE)

    def train(self, trial: poptune.Trial, seed: int) -> tuple[float, Any]:
        state = self.checkpoints.get(trial.load_from) or {"accuracy": 0.0, "step": 0}
        member = f"{trial.member}-{trial.id}"  # as case 4's segment
        args = (state["accuracy"], trial.parameters["lr"], seed, member, state["step"], PF_STEPS)
        accuracy = problems.pf_train(*args)[-1]
        return accuracy, {"accuracy": accuracy, "step": state["step"] + PF_STEPS}

    def score(self, study: poptune.Study) -> tuple[float, poptune.Trial]:
        last: dict[int, poptune.Trial] = {}  # each member's last segment
        for trial in study.trials:
            if trial.member not in last or trial.generation > last[trial.member].generation:
                last[trial.member] = trial
        return best((t.observations[max(t.observations)].objective, t) for t in last.values())


# -- the simulation ---------------------------------------------------------------------------
def duration(seed: int, trial: poptune.Trial) -> float:
    """A segment's cost in time units: U(0.5, 1.5), fixed by seed, member and generation."""
    return 0.5 + float(np.random.default_rng([seed, trial.member, trial.generation]).random())


def simulate(study: poptune.Study, problem: Problem, workers: int, seed: int) -> float:
    """Run ``study`` on ``workers`` simulated workers (the module docstring): the wall time."""
    idle = list(range(workers))
    running: list[tuple[float, int, poptune.Trial, float, Any]] = []  # a heap by end time
    now = 0.0
    while True:
        while idle:
            got = study.get_suggestion()
            if not isinstance(got, poptune.Trial):
                break  # WAIT (until a segment ends) or DONE
            objective, checkpoint = problem.train(got, seed)
            end = now + duration(seed, got)
            heapq.heappush(running, (end, idle.pop(0), got, objective, checkpoint))
        if not running:
            if got is not poptune.AlgorithmState.DONE:  # pragma: no cover - a deadlock
                raise RuntimeError(f"{got!r} with no segment running")
            return now
        now, worker, trial, objective, checkpoint = heapq.heappop(running)
        problem.checkpoints[trial.save_to] = checkpoint
        study.add_observation(trial, objective, iteration=trial.generation)
        study.finalize(trial)
        idle.append(worker)
        idle.sort()


def run_one(problem: Problem, ranking: str | None, workers: int, seed: int) -> dict[str, float]:
    """One simulated run (``ranking`` None: synchronous PBT)."""
    study = problem.study(ranking, seed)
    simulate(study, problem, workers, seed)
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
    return "better" if mean > 2 * se else "worse" if mean < -2 * se else "same (within 2 s.e.)"


def summary(runs: list[dict[str, float]]) -> tuple[str, str]:
    """Exploits % and the best model's segments of ``runs``, mean ± standard error."""
    exploits = mean_se([100 * x["exploits"] for x in runs], 1)
    return exploits, mean_se([x["progress"] for x in runs], 1)


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
        sync_score = mean_se([x["score"] for x in sync], digits)
        sync_rows.append([problem.name, sync_score, *summary(sync)])
        for workers in sorted({1, 2, problem.population}):
            got: dict[str, list[dict[str, float]]] = {r: [] for r in RANKINGS}
            for seed in range(seeds):
                for ranking in RANKINGS:
                    got[ranking].append(run_one(problem, ranking, workers, seed))
            latest, equal = ([x["score"] for x in got[r]] for r in RANKINGS)
            diff = [b - a for a, b in zip(latest, equal, strict=True)]
            scores = [mean_se(v, digits) for v in (latest, equal, diff)]
            exploits, progress = zip(*(summary(got[r]) for r in RANKINGS), strict=True)
            rows.append([problem.name, str(workers), *scores, verdict(diff), *exploits, *progress])
            log(f"  {' | '.join(rows[-1])}")
    section.lines += [
        f"Simulated workers (see `benchmarks/cases/c11_async_ranking.py`). Means ± standard "
        f"errors over seeds 0-{seeds - 1}; difference = equal_progress − latest, paired by "
        "seed; higher scores are better.",
        "",
        *table(HEADER, rows),
        "",
        "For reference, synchronous PBT on the same problems and seeds (a generation barrier, "
        "so every member is compared at equal progress and the worker count changes nothing "
        "the algorithm decides):",
        "",
        *table("problem | score, synchronous | exploits % | best model's segments", sync_rows),
    ]
    return section
