"""Case 5: real training — the seed example's task (a PyTorch MLP on scikit-learn's bundled
digits, CPU, one thread): PBT against random search, ASHA and Bayesian optimization, all
poptune, at an equal number of training epochs, final test accuracy over several seeds.

Data: the 1,797 8×8 digits split 60/20/20 (train / validation / test, stratified, fixed).
Model: 64 → 64 (ReLU) → 10, SGD with momentum, batch 64. Tuned: the learning rate (log,
[1e-3, 1]) and the momentum ([0, 0.99]) — PBT changes them while the weights train. Each
algorithm chooses its model by validation accuracy; the table reports that model's accuracy
on the test set, which no algorithm sees.

Budget per run: ``E`` epochs in all. PBT: population P × G generations × k epochs (P·G·k =
E), so each member trains G·k epochs. Random search and BO: E / (G·k) configurations trained
G·k epochs each (the same depth as PBT's members). ASHA (``SuccessiveHalving``, eta 2, rungs
up to G·k epochs; a promoted trial continues from its checkpoint, so it trains only the
extra epochs): trials are run until the next one would overrun E.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from benchmarks.harness import Context, Section, Target, figure, log, table

TITLE = "5. Real training: MLP on digits (PyTorch CPU) — PBT vs random search, ASHA and BO"
ALGORITHMS = ("PBT", "random search", "ASHA", "BO")
BATCH = 64
LR_RANGE = (1e-3, 1.0)
MOMENTUM_RANGE = (0.0, 0.99)


class Task:
    """The data (as tensors) and the training primitives; one instance per process."""

    def __init__(self) -> None:
        import torch
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        torch.set_num_threads(1)
        self.torch = torch
        digits = load_digits()
        x = (digits.images.reshape(len(digits.images), -1) / 16.0).astype(np.float32)
        y = digits.target.astype(np.int64)
        x_rest, x_test, y_rest, y_test = train_test_split(
            x, y, test_size=0.2, random_state=0, stratify=y
        )
        x_train, x_val, y_train, y_val = train_test_split(
            x_rest, y_rest, test_size=0.25, random_state=0, stratify=y_rest
        )
        t = torch.from_numpy
        self.train = (t(x_train), t(y_train))
        self.val = (t(x_val), t(y_val))
        self.test = (t(x_test), t(y_test))
        self.epochs = 0
        model, optimizer = self.build(0, 0.01, 0.9)  # warm PyTorch up outside the timed runs
        self.train_epochs(model, optimizer, 2, 0)
        self.epochs = 0

    def build(self, seed: int, lr: float, momentum: float) -> tuple[Any, Any]:
        torch = self.torch
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
        )
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        return model, optimizer

    def load(self, state: dict[str, Any], lr: float, momentum: float) -> tuple[Any, Any]:
        model, optimizer = self.build(0, lr, momentum)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:  # the (perhaps explored) hyperparameters
            group["lr"], group["momentum"] = lr, momentum
        return model, optimizer

    def start(
        self, trial: Any, checkpoints: dict[str, dict[str, Any]], seed: int, lr: float,
        momentum: float,
    ) -> tuple[Any, Any, int]:  # fmt: skip
        """A trial's model and optimizer, from its ``load_from`` checkpoint or fresh, and the
        epochs it has already trained."""
        if trial.load_from:
            parent = checkpoints[trial.load_from]
            model, optimizer = self.load(parent, lr, momentum)
            return model, optimizer, parent["epochs"]
        model, optimizer = self.build(seed * 1000 + trial.id, lr, momentum)
        return model, optimizer, 0

    @staticmethod
    def save(model: Any, optimizer: Any, epochs: int, val: float, test: float) -> dict:
        import copy

        return {
            "model": copy.deepcopy(model.state_dict()),
            "optimizer": copy.deepcopy(optimizer.state_dict()),
            "epochs": epochs,
            "val": val,
            "test": test,
        }

    def train_epochs(self, model: Any, optimizer: Any, epochs: int, seed: int) -> None:
        torch = self.torch
        x, y = self.train
        generator = torch.Generator().manual_seed(seed)
        loss_fn = torch.nn.CrossEntropyLoss()
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), BATCH):
                idx = order[start : start + BATCH]
                optimizer.zero_grad()
                loss = loss_fn(model(x[idx]), y[idx])
                if not torch.isfinite(loss):
                    return  # diverged: the accuracy will say so
                loss.backward()
                optimizer.step()
            self.epochs += 1

    def accuracy(self, model: Any, split: tuple[Any, Any]) -> float:
        with self.torch.no_grad():
            model.eval()
            logits = model(split[0])
            return float((logits.argmax(dim=1) == split[1]).double().mean())


def parameters() -> list[Any]:
    from poptune import Continuous

    return [Continuous("lr", list(LR_RANGE), "log"), Continuous("momentum", list(MOMENTUM_RANGE))]


def run_pbt(task: Task, seed: int, population: int, generations: int, per_gen: int) -> dict:
    import poptune
    from poptune.algorithms import PopulationBasedTraining

    study = poptune.Study(
        parameters(),
        PopulationBasedTraining(generations, population, quantile_fraction=0.25),
        lower_is_better=False,
        seed=seed,
    )
    checkpoints: dict[str, dict[str, Any]] = {}
    for trial in study:
        lr, momentum = trial.parameters["lr"], trial.parameters["momentum"]
        model, optimizer, done = task.start(trial, checkpoints, seed, lr, momentum)
        task.train_epochs(model, optimizer, per_gen, seed * 1000 + trial.id)
        val, test = task.accuracy(model, task.val), task.accuracy(model, task.test)
        checkpoints[trial.save_to] = task.save(model, optimizer, done + per_gen, val, test)
        study.add_observation(trial, val, iteration=trial.generation)
        study.finalize(trial)
    last = [t for t in study.trials if t.generation == generations and t.status == "COMPLETED"]
    best = max(last, key=lambda t: checkpoints[t.save_to]["val"])
    chosen = checkpoints[best.save_to]
    return {"val": chosen["val"], "test": chosen["test"]}


def run_independent(task: Task, seed: int, algorithm: Any, epochs: int) -> dict:
    """Random search or BO: each configuration trained ``epochs`` epochs from scratch."""
    import poptune

    study = poptune.Study(parameters(), algorithm, lower_is_better=False, seed=seed)
    results = []
    for trial in study:
        model, optimizer = task.build(
            seed * 1000 + trial.id, trial.parameters["lr"], trial.parameters["momentum"]
        )
        task.train_epochs(model, optimizer, epochs, seed * 1000 + trial.id)
        val, test = task.accuracy(model, task.val), task.accuracy(model, task.test)
        results.append((val, test))
        study.add_observation(trial, val, iteration=epochs)
        study.finalize(trial)
    val, test = max(results)
    return {"val": val, "test": test}


def run_asha(task: Task, seed: int, max_epochs: int, budget: int) -> dict:
    import poptune
    from poptune.algorithms import SuccessiveHalving

    algorithm = SuccessiveHalving(r=1, R=max_epochs, eta=2, max_finished_configs=10**6)
    study = poptune.Study(parameters(), algorithm, lower_is_better=False, seed=seed)
    checkpoints: dict[str, dict[str, Any]] = {}
    spent = 0
    for trial in study:
        lr, momentum = trial.parameters["lr"], trial.parameters["momentum"]
        target = int(round(trial.parameters["resource"]))
        model, optimizer, done = task.start(trial, checkpoints, seed, lr, momentum)
        extra = max(0, target - done)
        if spent + extra > budget:
            study.finalize(trial, status="STOPPED")
            break
        task.train_epochs(model, optimizer, extra, seed * 1000 + trial.id)
        spent += extra
        val, test = task.accuracy(model, task.val), task.accuracy(model, task.test)
        checkpoints[trial.save_to] = task.save(model, optimizer, target, val, test)
        study.add_observation(trial, val, iteration=target)
        study.finalize(trial)
    best = max(checkpoints.values(), key=lambda c: (c["val"], c["epochs"]))
    return {"val": best["val"], "test": best["test"], "epochs": spent}


def run(ctx: Context) -> Section:
    section = Section("digits", TITLE)
    try:
        import torch  # noqa: F401
    except ImportError:
        section.error = "PyTorch is not installed (pip install -e '.[examples]' torch)"
        return section
    seeds = ctx.seeds_or(10, 1)
    population, generations, per_gen = ctx.pick((10, 12, 2), (4, 4, 1))
    depth = generations * per_gen  # epochs per PBT member = per independent configuration
    budget = population * depth
    n_configs = budget // depth
    task = Task()
    from poptune.algorithms import BayesianOptimization, RandomSearch

    results: dict[str, list[dict[str, Any]]] = {a: [] for a in ALGORITHMS}
    for seed in range(seeds):
        for name in ALGORITHMS:  # the same seed for every algorithm, in turn
            task.epochs = 0
            start, start_cpu = time.perf_counter(), time.process_time()
            if name == "PBT":
                res = run_pbt(task, seed, population, generations, per_gen)
            elif name == "random search":
                res = run_independent(task, seed, RandomSearch(max_num_trials=n_configs), depth)
            elif name == "BO":
                res = run_independent(
                    task, seed, BayesianOptimization(max_num_trials=n_configs), depth
                )
            else:
                res = run_asha(task, seed, depth, budget)
            res["wall_s"] = time.perf_counter() - start
            res["cpu_s"] = time.process_time() - start_cpu
            res["epochs"] = task.epochs
            results[name].append(res)
            log(
                f"  digits seed {seed} {name:<13} test {res['test']:.4f} val {res['val']:.4f}"
                f" ({res['epochs']} epochs, {res['wall_s']:.1f} s)"
            )

    def vals(name: str, key: str) -> list[float]:
        return [r[key] for r in results[name]]

    def acc(values: list[float]) -> str:
        if len(values) == 1:
            return f"{values[0]:.2%}"
        se = statistics.stdev(values) / len(values) ** 0.5
        return f"{statistics.fmean(values):.2%} ± {se:.2%} [{min(values):.2%}–{max(values):.2%}]"

    rows = []
    rs_mean = statistics.fmean(vals("random search", "test"))
    for name in ALGORITHMS:
        test = vals(name, "test")
        rows.append(
            [
                name,
                acc(test),
                acc(vals(name, "val")),
                f"{statistics.fmean(test) / rs_mean:.3f}",
                f"{statistics.fmean(vals(name, 'epochs')):.0f}",
                f"{statistics.fmean(vals(name, 'wall_s')):.1f}",
                f"{statistics.fmean(vals(name, 'cpu_s')):.1f}",
            ]
        )
    section.lines += [
        f"{seeds} seed(s); budget {budget} epochs per run: PBT population {population} × "
        f"{generations} generations × {per_gen} epoch(s) (quantile 25%, explore ×0.8/×1.2); "
        f"random search and BO (`BayesianOptimization`, GP + expected improvement) "
        f"{n_configs} configurations × {depth} epochs; ASHA `SuccessiveHalving(r=1, "
        f"R={depth}, eta=2)` until the budget is spent. Test accuracy of the model each "
        "algorithm picks by validation accuracy: mean ± standard error [min–max] over the "
        "seeds. PyTorch on one thread; the algorithms take turns on each seed; wall and CPU "
        "seconds per run are means.",
        "",
        *table(
            [
                "algorithm",
                "test accuracy",
                "validation accuracy",
                "mean test accuracy / random search's",
                "epochs trained",
                "wall s per run",
                "CPU s per run",
            ],
            rows,
        ),
    ]

    def draw(plt: Any) -> None:
        fig, ax = plt.subplots(figsize=(7, 4))
        for i, name in enumerate(ALGORITHMS):
            test = vals(name, "test")
            ax.scatter([i] * len(test), test, color=f"C{i}", alpha=0.7)
            ax.hlines(statistics.fmean(test), i - 0.25, i + 0.25, color=f"C{i}")
        ax.set_xticks(range(len(ALGORITHMS)), ALGORITHMS)
        ax.set_ylabel("test accuracy (dots: seeds; bar: mean)")
        ax.set_title(f"Digits MLP, {budget} epochs per run")
        ax.grid(True, axis="y", alpha=0.3)

    section.lines += figure(ctx, "digits", draw, "test accuracy per algorithm")
    pbt_mean = statistics.fmean(vals("PBT", "test"))
    section.targets.append(
        Target(
            "PBT's mean test accuracy ≥ random search's at an equal number of epochs",
            pbt_mean >= rs_mean,
            f"PBT {pbt_mean:.2%}, random search {rs_mean:.2%} over {seeds} seed(s)",
        )
    )
    return section
