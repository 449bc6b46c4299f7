"""Case 4 (PBT on Ray Tune's ``pbt_function`` problem), one library, every configuration asked
for, in one process: Ray Tune's PBT and PB2 (in Ray's virtualenv, one ``ray.init`` for all of
them) or poptune's. Both libraries report once per segment (Ray: one ``training_iteration``
with a checkpoint; reporting every step instead, Ray's PBT with population 8 took 83 s in one
run here). Per configuration: :func:`_result`'s figures; library start-up (``import``,
``ray.init``) is in neither time and is reported apart. The method: case 4's page text.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

from benchmarks.peers import preimport, serve, tree_cpu_seconds
from benchmarks.problems import PF_LR_RANGE, pf_train

QUANTILE = 0.25
RESAMPLE = 0.25
METRIC = "mean_accuracy"


def _result(
    finals: list[float], best: list[float], iterations: int, wall_s: float, cpu_s: float,
    budget_steps: int, errors: int, short: int,
) -> dict[str, Any]:  # fmt: skip
    """One run's figures, the same on both sides (``short``: members cut off by the budget)."""
    return {
        "final": max(finals) if finals else None,
        "best": max(best) if best else None,
        "iterations": iterations,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "budget_steps": budget_steps,
        "errors": errors,
        "short": short,
    }


# -- Ray Tune -----------------------------------------------------------------------------
def _ray_trainable(seed: int, steps: int) -> Any:
    from ray import tune

    def trainable(config: dict[str, Any]) -> None:
        accuracy, step = 0.0, 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                with open(os.path.join(folder, "state.json")) as f:
                    state = json.load(f)
            accuracy, step = state["accuracy"], state["step"]
        member = tune.get_context().get_trial_id()
        while True:  # one training_iteration = one segment of ``steps`` steps
            accuracy = pf_train(accuracy, config["lr"], seed, member, step, steps)[-1]
            step += steps
            with tempfile.TemporaryDirectory() as folder:
                with open(os.path.join(folder, "state.json"), "w") as f:
                    json.dump({"accuracy": accuracy, "step": step}, f)
                tune.report(
                    {METRIC: accuracy, "lr": config["lr"]},
                    checkpoint=tune.Checkpoint.from_directory(folder),
                )

    return trainable


def run_ray(
    configs: list[tuple[str, int]], generations: int, steps: int, seed: int, time_budget_s: float
) -> dict[str, Any]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1e9")
    started = time.perf_counter()
    import ray
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.schedulers.pb2 import PB2

    cpus = os.cpu_count() or 2
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    startup_s = time.perf_counter() - started
    out: dict[str, Any] = {"startup_s": startup_s, "runs": {}}
    try:
        for algorithm, population in configs:
            with tempfile.TemporaryDirectory(prefix="poptune-bench-ray-") as storage:
                t0, cpu0 = time.perf_counter(), tree_cpu_seconds()
                if algorithm == "pbt":
                    scheduler = PopulationBasedTraining(
                        time_attr="training_iteration",
                        perturbation_interval=1,
                        hyperparam_mutations={"lr": tune.uniform(*PF_LR_RANGE)},
                        quantile_fraction=QUANTILE,
                        resample_probability=RESAMPLE,
                    )
                else:
                    scheduler = PB2(
                        time_attr="training_iteration",
                        perturbation_interval=1,
                        hyperparam_bounds={"lr": list(PF_LR_RANGE)},
                        quantile_fraction=QUANTILE,
                    )
                tuner = tune.Tuner(
                    # all members at once (the machine's CPUs shared between them)
                    tune.with_resources(_ray_trainable(seed, steps), {"cpu": cpus / population}),
                    param_space={"lr": tune.uniform(*PF_LR_RANGE)},
                    tune_config=tune.TuneConfig(
                        scheduler=scheduler,
                        metric=METRIC,
                        mode="max",
                        num_samples=population,
                        reuse_actors=True,  # Ray's advice for PBT; without it ~6x slower
                        time_budget_s=time_budget_s,
                    ),
                    run_config=tune.RunConfig(
                        name=f"{algorithm}-{population}",
                        storage_path=storage,
                        stop={"training_iteration": generations},
                        verbose=0,
                    ),
                )
                grid = tuner.fit()
                wall, cpu = time.perf_counter() - t0, tree_cpu_seconds() - cpu0
                finals, best, iterations, errors = [], [], 0, grid.num_errors
                for result in grid:
                    if result.metrics and METRIC in result.metrics:
                        finals.append(float(result.metrics[METRIC]))
                        iterations += steps * int(result.metrics.get("training_iteration", 0))
                    frame = result.metrics_dataframe
                    if frame is not None and METRIC in frame:
                        best.append(float(frame[METRIC].max()))
                short = sum(
                    1
                    for result in grid
                    if not result.metrics
                    or result.metrics.get("training_iteration", 0) < generations
                )
                budget = population * generations * steps
                out["runs"][f"{algorithm}-{population}"] = [
                    _result(finals, best, iterations, wall, cpu, budget, errors, short)
                ]
    finally:
        ray.shutdown()
    return out


# -- poptune ----------------------------------------------------------------------------------
def run_poptune(
    configs: list[tuple[str, int]],
    generations: int,
    steps: int,
    seeds: list[int],
    synchronous: bool,
) -> dict[str, Any]:
    started = time.perf_counter()
    import poptune
    from poptune.algorithms import PB2, PopulationBasedTraining

    # Imports outside the timed runs, as Ray's are: poptune saves checkpoints with torch.save
    # when PyTorch is there, and its PB2 fits scikit-learn's GaussianProcessRegressor.
    preimport("torch", "sklearn.gaussian_process", "scipy.optimize")
    out: dict[str, Any] = {"startup_s": time.perf_counter() - started, "runs": {}}

    seed = 0

    def segment(trial: Any) -> None:
        state = trial.load_checkpoint() or {"accuracy": 0.0, "step": 0}
        member = f"{trial.member}-{trial.id}"
        accuracies = pf_train(
            state["accuracy"], trial.parameters["lr"], seed, member, state["step"], steps
        )
        trial.report(accuracies[-1], iteration=state["step"] + steps)  # once a segment
        trial.save_checkpoint({"accuracy": accuracies[-1], "step": state["step"] + steps})

    for seed, (algorithm, population) in [(s, c) for s in seeds for c in configs]:
        with tempfile.TemporaryDirectory(prefix="poptune-bench-pf-") as tmp:
            t0, cpu0 = time.perf_counter(), tree_cpu_seconds()
            if algorithm == "pbt":
                algo = PopulationBasedTraining(
                    generations,
                    population,
                    quantile_fraction=QUANTILE,
                    resample_probability=RESAMPLE,
                    synchronous=synchronous,
                )
            else:
                algo = PB2(
                    generations,
                    population,
                    parameter_range={"lr": list(PF_LR_RANGE)},
                    quantile_fraction=QUANTILE,
                    synchronous=synchronous,
                )
            study = poptune.Study(
                [poptune.Continuous("lr", list(PF_LR_RANGE))],
                algo,
                lower_is_better=False,
                seed=seed,
                checkpoint_dir=os.path.join(tmp, "checkpoints"),
            )
            study.optimize(segment, show_progress=False)
            wall, cpu = time.perf_counter() - t0, tree_cpu_seconds() - cpu0
            last: dict[int, Any] = {}  # member -> its latest segment
            best, iterations = [], 0
            for trial in study.trials:
                if not trial.observations:
                    continue
                best.append(max(o.objective for o in trial.observations.values()))
                iterations += steps * len(trial.observations)
                m = trial.member
                if m not in last or trial.generation > last[m].generation:
                    last[m] = trial
            finals = [t.observations[max(t.observations)].objective for t in last.values()]
            failed = sum(1 for t in study.trials if t.status != "COMPLETED")
            budget = population * generations * steps
            out["runs"].setdefault(f"{algorithm}-{population}", []).append(
                _result(finals, best, iterations, wall, cpu, budget, failed, 0)
            )
    return out


def run(
    library: str,
    configs: list[list[Any]],
    generations: int,
    steps: int,
    seeds: list[int],
    time_budget_s: float = 600.0,
    synchronous: bool = True,
) -> dict[str, Any]:
    """Every configuration for every seed (Ray: one seed per process)."""
    pairs = [(str(a), int(p)) for a, p in configs]
    if library == "ray":
        (seed,) = seeds
        return run_ray(pairs, generations, steps, seed, time_budget_s)
    return run_poptune(pairs, generations, steps, seeds, synchronous)


if __name__ == "__main__":
    serve(run)
