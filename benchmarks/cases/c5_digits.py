"""Case 5: real training, the seed example's task: does PBT beat random search, ASHA and Bayesian
optimization (all poptune) at an equal number of epochs? The method is the page text in :func:`run`;
the data (split 60/20/20, no algorithm sees the test set) and the model: :class:`Task`.
"""

from __future__ import annotations

import copy
import math
import statistics
from typing import Any

import numpy as np

from benchmarks.harness import Clock, Context, Section, figure, log, style, table

TITLE = "5. Real training: MLP on digits (PyTorch CPU) — PBT vs random search, ASHA and BO"
ALGORITHMS = ("PBT", "random search", "ASHA", "BO")
BATCH = 64
LR_RANGE = (1e-3, 1.0)
MOMENTUM_RANGE = (0.0, 0.99)
HEADER = (
    "algorithm | test accuracy | validation accuracy | mean test accuracy / random search's | "
    "epochs trained | wall s per run | CPU s per run"
)


class Task:
    """The data (the 1,797 8×8 digits split 60/20/20: train / validation / test, stratified,
    fixed) and the training primitives; ``epochs`` counts the epochs trained (reset per run)."""

    def __init__(self) -> None:
        import torch
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        torch.set_num_threads(1)
        self.torch = torch
        digits = load_digits()
        x = (digits.images.reshape(len(digits.images), -1) / 16.0).astype(np.float32)
        y = digits.target.astype(np.int64)
        split = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
        x_rest, x_test, y_rest, y_test = split
        split = train_test_split(x_rest, y_rest, test_size=0.25, random_state=0, stratify=y_rest)
        x_train, x_val, y_train, y_val = split
        parts = ((x_train, y_train), (x_val, y_val), (x_test, y_test))
        t = torch.from_numpy
        self.train, self.val, self.test = [(t(a), t(b)) for a, b in parts]
        self.epochs = 0
        model, optimizer = self.build(0, 0.01, 0.9)  # warm PyTorch up outside the timed runs
        self.train_epochs(model, optimizer, 2, 0)
        self.epochs = 0

    def build(self, seed: int, lr: float, momentum: float) -> tuple[Any, Any]:
        nn = self.torch.nn
        self.torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        return model, self.torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)

    def start(self, trial: Any, checkpoints: dict[str, dict], seed: int) -> tuple[Any, Any, int]:
        """A trial's model and optimizer (from ``load_from`` or fresh), epochs already trained."""
        lr, momentum = trial.parameters["lr"], trial.parameters["momentum"]
        if not trial.load_from:
            return *self.build(seed * 1000 + trial.id, lr, momentum), 0
        parent = checkpoints[trial.load_from]
        model, optimizer = self.build(0, lr, momentum)
        model.load_state_dict(parent["model"])
        optimizer.load_state_dict(parent["optimizer"])
        for group in optimizer.param_groups:  # the (perhaps explored) hyperparameters
            group["lr"], group["momentum"] = lr, momentum
        return model, optimizer, parent["epochs"]

    def save(self, model: Any, optimizer: Any, epochs: int) -> dict[str, Any]:
        """A checkpoint: copies of the states, the epochs trained and the accuracies."""
        val, test = self.accuracy(model, self.val), self.accuracy(model, self.test)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
        return {**copy.deepcopy(state), "epochs": epochs, "val": val, "test": test}

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
            return float((model(split[0]).argmax(dim=1) == split[1]).double().mean())


def tune(task: Task, seed: int, algorithm: Any, plan: Any, budget: float = math.inf) -> list:
    """(trial, checkpoint) pairs of a study (maximising) of ``algorithm``: each trial trains to
    ``plan(trial, epochs it has) = (total epochs, iteration reported)`` until ``budget`` epochs."""
    from poptune import Continuous, Study

    params = [Continuous("lr", list(LR_RANGE), "log"), Continuous("momentum", list(MOMENTUM_RANGE))]
    study = Study(params, algorithm, lower_is_better=False, seed=seed)
    checkpoints: dict[str, dict[str, Any]] = {}
    spent, out = 0, []
    for trial in study:
        model, optimizer, done = task.start(trial, checkpoints, seed)
        target, iteration = plan(trial, done)
        extra = max(0, target - done)
        if spent + extra > budget:
            study.finalize(trial, status="STOPPED")
            break
        task.train_epochs(model, optimizer, extra, seed * 1000 + trial.id)
        spent += extra
        checkpoints[trial.save_to] = checkpoint = task.save(model, optimizer, target)
        study.add_observation(trial, checkpoint["val"], iteration=iteration)
        study.finalize(trial)
        out.append((trial, checkpoint))
    return out


def run(ctx: Context) -> Section:
    section = Section("digits", TITLE)
    try:
        import torch  # noqa: F401
    except ImportError:
        section.error = "PyTorch is not installed (pip install -e '.[examples]' torch)"
        return section
    from poptune.algorithms import BayesianOptimization as BO
    from poptune.algorithms import PopulationBasedTraining as PBT
    from poptune.algorithms import RandomSearch, SuccessiveHalving

    seeds = ctx.seeds_or(10, 1)
    population, generations, per_gen = ctx.pick((10, 12, 2), (4, 4, 1))
    depth = generations * per_gen  # epochs per PBT member = per independent configuration
    budget = population * depth
    n_configs = budget // depth
    task = Task()

    def rung(trial: Any, done: int) -> tuple[int, int]:  # ASHA: train to the trial's rung
        return (int(round(trial.parameters["resource"])),) * 2

    def run_one(name: str, seed: int) -> dict[str, Any]:
        """``name``'s run: the checkpoint of the model it picks by validation accuracy."""
        if name == "PBT":  # the best member of the last generation
            pbt = PBT(generations, population, quantile_fraction=0.25)
            runs = tune(task, seed, pbt, lambda t, done: (done + per_gen, t.generation))
            return max((c for t, c in runs if t.generation == generations), key=lambda c: c["val"])
        if name == "ASHA":  # a promoted trial trains only its extra epochs
            asha = SuccessiveHalving(r=1, R=depth, eta=2, max_finished_configs=10**6)
            runs = tune(task, seed, asha, rung, budget)
            return max((c for _, c in runs), key=lambda c: (c["val"], c["epochs"]))
        cls = RandomSearch if name == "random search" else BO
        runs = tune(task, seed, cls(max_num_trials=n_configs), lambda t, done: (depth, depth))
        return max((c for _, c in runs), key=lambda c: (c["val"], c["test"]))

    results: dict[str, list[dict[str, Any]]] = {a: [] for a in ALGORITHMS}
    for seed in range(seeds):
        for name in ALGORITHMS:  # the same seed for every algorithm, in turn
            task.epochs = 0
            with Clock() as clock:
                got = run_one(name, seed)
            res = {"val": got["val"], "test": got["test"], "wall_s": clock.wall}
            res.update(cpu_s=clock.cpu, epochs=task.epochs)
            results[name].append(res)
            log(
                f"  digits seed {seed} {name:<13} test {res['test']:.4f} val {res['val']:.4f}"
                f" ({res['epochs']} epochs, {res['wall_s']:.1f} s)"
            )

    def vals(name: str, key: str) -> list[float]:
        return [r[key] for r in results[name]]

    def mean(name: str, key: str) -> float:
        return statistics.fmean(vals(name, key))

    def acc(values: list[float]) -> str:
        if len(values) == 1:
            return f"{values[0]:.2%}"
        se = statistics.stdev(values) / len(values) ** 0.5
        return f"{statistics.fmean(values):.2%} ± {se:.2%} [{min(values):.2%}–{max(values):.2%}]"

    rs_mean = mean("random search", "test")
    rows = []
    for name in ALGORITHMS:
        ratio = f"{mean(name, 'test') / rs_mean:.3f}"
        means = [f"{mean(name, k):.{d}f}" for k, d in (("epochs", 0), ("wall_s", 1), ("cpu_s", 1))]
        rows.append([name, acc(vals(name, "test")), acc(vals(name, "val")), ratio, *means])
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
        *table(HEADER, rows),
    ]

    def draw(plt: Any) -> None:
        fig, ax = plt.subplots(figsize=(7, 4))
        for i, name in enumerate(ALGORITHMS):
            test = vals(name, "test")
            ax.scatter([i] * len(test), test, color=f"C{i}", alpha=0.7)
            ax.hlines(statistics.fmean(test), i - 0.25, i + 0.25, color=f"C{i}")
        ax.set_xticks(range(len(ALGORITHMS)), ALGORITHMS)
        ylabel = "test accuracy (dots: seeds; bar: mean)"
        style(ax, "", ylabel, f"Digits MLP, {budget} epochs per run", grid="y")

    section.lines += figure(ctx, "digits", draw, "test accuracy per algorithm")
    pbt_mean = mean("PBT", "test")
    text = "PBT's mean test accuracy ≥ random search's at an equal number of epochs"
    detail = f"PBT {pbt_mean:.2%}, random search {rs_mean:.2%} over {seeds} seed(s)"
    section.target(text, pbt_mean >= rs_mean, detail)
    return section
