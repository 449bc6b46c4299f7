"""Population Based Training of a small PyTorch MLP: the SHERPA PBT notebook as a script.

This is SHERPA's "Population Based Training" example (Keras, MNIST) rewritten for poptune
and PyTorch. It tunes one hyperparameter, the learning rate of Adam, while the weights
train:

* generation 1 is ``--population-size`` models, each with a random learning rate drawn
  log-uniformly from [1e-4, 1e-2], trained for one epoch and saved to a checkpoint;
* every following generation, the best 80 % continue from their own checkpoint, and the
  bottom 20 % are replaced: they load the checkpoint (weights *and* optimizer state) of a
  top-20 % member and multiply its learning rate by 0.8 or 1.2 (explore);
* after ``--generations`` generations the best trial and its checkpoint are reported, and
  a two-panel figure shows validation accuracy and learning rate along every lineage, one
  colour per founding member (drawn by ``poptune.plot.lineage``).

To stay small and offline it uses scikit-learn's bundled 8x8 ``digits`` images (1,797
samples, a 75/25 stratified split) instead of downloading MNIST; the model is the notebook's
``Flatten -> Dense(64, relu) -> Dense(10, softmax)``. The default run (5 members, 5
generations, 25 trials of one epoch each) takes a few seconds on a laptop CPU.

Run it with::

    pip install -e ".[examples]" torch==2.13.0 && python examples/pbt_mnist_mlp.py

Options: ``--output-dir`` (default ``examples/output/pbt_mnist_mlp``, whatever the working
directory; it receives ``results.csv``, ``study.json``, ``pbt_lineage.png`` and the
checkpoints in ``models/``), ``--seed``, ``--population-size``, ``--generations`` and
``--quiet``. ``--workers 2`` trains members in two processes with ``study.optimize`` (the
library then owns the checkpoints: ``trial.load_checkpoint()``/``save_checkpoint()``), and
``--asynchronous`` uses asynchronous PBT (no generation barrier)::

    python examples/pbt_mnist_mlp.py --workers 2 --asynchronous

``main(argv)`` runs the example and returns the finished study.
``pbt_digits_numpy.py`` is the same example without PyTorch.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import poptune as sherpa
import poptune.plot

_HERE = str(Path(__file__).resolve().parent)

__all__ = ["build_model", "load_data", "main", "parse_args"]

BATCH_SIZE = 32


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Population Based Training of a PyTorch MLP on scikit-learn's digits."
    )
    parser.add_argument(
        "--output-dir",
        default=os.path.join(_HERE, "output", "pbt_mnist_mlp"),
        help="where results.csv, study.json, the figure and models/ go (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="study and training seed")
    parser.add_argument("--population-size", type=int, default=5, help="members per generation")
    parser.add_argument("--generations", type=int, default=5, help="number of generations")
    parser.add_argument("--quiet", action="store_true", help="no per-trial output")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="train members in this many worker processes with study.optimize (default 1: "
        "the notebook's own loop)",
    )
    parser.add_argument(
        "--asynchronous",
        action="store_true",
        help="asynchronous PBT (no generation barrier; runs with study.optimize)",
    )
    parser.add_argument(
        "--dashboard-port",
        type=int,
        default=None,
        help="watch the run live in the web dashboard on this port of 127.0.0.1 (the seed "
        "used 8997; needs poptune[dashboard])",
    )
    parser.add_argument(
        "--keep-dashboard",
        action="store_true",
        help="with --dashboard-port: keep serving after training until Ctrl-C",
    )
    return parser.parse_args(argv)


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits scaled to [0, 1] as float32 tensors (N, 8, 8), with a fixed stratified split."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    return (
        torch.from_numpy(x_train),
        torch.from_numpy(y_train),
        torch.from_numpy(x_val),
        torch.from_numpy(y_val),
    )


def build_model(learning_rate: float) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The notebook's MLP (softmax is part of the cross-entropy loss) and its Adam optimizer."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    return model, optimizer


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator,
) -> float:
    """One pass over the training set in shuffled mini-batches; returns the mean loss."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(len(x), generator=generator)
    total = 0.0
    for start in range(0, len(x), BATCH_SIZE):
        idx = order[start : start + BATCH_SIZE]
        optimizer.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(idx)
    return total / len(x)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Validation (loss, accuracy)."""
    model.eval()
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(dim=1) == y).double().mean().item()
    return loss, accuracy


@functools.lru_cache(maxsize=1)
def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return load_data()


def train_segment(trial: sherpa.Trial) -> None:
    """One PBT segment (one epoch) of one member, as ``study.optimize`` runs it.

    The library owns the checkpoints: ``trial.load_checkpoint()`` is the donor's (or the
    member's own) model and optimizer, or None for a founder; the trial's learning rate is
    set after loading, so an explored value is the one in effect.
    """
    torch.set_num_threads(1)  # one core per worker process
    x_train, y_train, x_val, y_val = _data()
    learning_rate = trial.parameters["learning_rate"]
    torch.manual_seed(trial.id)
    generator = torch.Generator().manual_seed(trial.id)
    model, optimizer = build_model(learning_rate)
    state = trial.load_checkpoint()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
    train_one_epoch(model, optimizer, x_train, y_train, generator)
    loss, accuracy = evaluate(model, x_val, y_val)
    trial.report(accuracy, iteration=trial.generation, loss=loss)
    trial.save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict()})


def run_parallel(args: argparse.Namespace, output_dir: Path, model_dir: Path) -> sherpa.Study:
    """The same study run by ``study.optimize`` in ``--workers`` processes."""
    database = output_dir / "study.db"
    for leftover in output_dir.glob("study.db*"):  # a fresh study each run
        leftover.unlink()
    algorithm = sherpa.algorithms.PopulationBasedTraining(
        population_size=args.population_size,
        num_generations=args.generations,
        perturbation_factors=(0.8, 1.2),
        parameter_range={"learning_rate": [1e-6, 1e-1]},
        synchronous=not args.asynchronous,
    )
    study = sherpa.Study(
        parameters=[sherpa.Continuous("learning_rate", [1e-4, 1e-2], "log")],
        algorithm=algorithm,
        lower_is_better=False,
        seed=args.seed,
        storage=f"sqlite:///{database}",
        study_name="pbt-digits",
        checkpoint_dir=model_dir,
        dashboard_port=args.dashboard_port,
        keep_dashboard=args.keep_dashboard,  # close() then serves on until Ctrl-C
    )
    study.optimize(train_segment, n_workers=args.workers, show_progress=not args.quiet)
    study.save(output_dir)
    return study


def main(argv: list[str] | None = None) -> sherpa.Study:
    """Run the example; returns the finished study."""
    args = parse_args(argv)
    if args.workers > 1 or args.asynchronous:
        started = time.perf_counter()
        output_dir = Path(args.output_dir)
        model_dir = output_dir / "models"
        model_dir.mkdir(parents=True, exist_ok=True)
        study = run_parallel(args, output_dir, model_dir)
        return _report(study, args, output_dir, model_dir, started)
    log = (lambda *a, **k: None) if args.quiet else print
    started = time.perf_counter()

    output_dir = Path(args.output_dir)
    model_dir = output_dir / "models"
    model_dir.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_val, y_val = load_data()

    # Sherpa setup: the notebook's, with a seed for a reproducible run.
    parameters = [sherpa.Continuous("learning_rate", [1e-4, 1e-2], "log")]
    algorithm = sherpa.algorithms.PopulationBasedTraining(
        population_size=args.population_size,
        num_generations=args.generations,
        perturbation_factors=(0.8, 1.2),
        parameter_range={"learning_rate": [1e-6, 1e-1]},
    )
    study = sherpa.Study(
        parameters=parameters,
        algorithm=algorithm,
        lower_is_better=False,
        seed=args.seed,
        dashboard_port=args.dashboard_port,
        keep_dashboard=args.keep_dashboard,  # close() then serves on until Ctrl-C
    )

    for trial in study:
        generation = trial.parameters["generation"]
        load_from = trial.parameters["load_from"]
        training_lr = trial.parameters["learning_rate"]
        # One seed per (run, trial): weight init of fresh models and batch order.
        torch.manual_seed(args.seed * 1_000_003 + trial.id)
        generator = torch.Generator().manual_seed(args.seed * 1_000_003 + trial.id)

        log("-" * 100)
        log(f"Generation {generation} (trial {trial.id})")

        if load_from == "":
            log(f"Creating new model with learning rate {training_lr}\n")
            model, optimizer = build_model(training_lr)
        else:
            checkpoint_path = os.path.join(model_dir, load_from)
            log(f"Loading model from {checkpoint_path}\n")
            model, optimizer = build_model(training_lr)
            checkpoint = torch.load(checkpoint_path, weights_only=True)
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])  # restores the saved lr
            current_lr = optimizer.param_groups[0]["lr"]
            if not math.isclose(current_lr, training_lr, rel_tol=1e-9):
                log(f"Perturbing learning rate from {current_lr} to {training_lr}")
            else:
                log(f"Continuing training with learning rate {training_lr}")
            for group in optimizer.param_groups:
                group["lr"] = training_lr

        # Train the model for one epoch, then evaluate it.
        train_loss = train_one_epoch(model, optimizer, x_train, y_train, generator)
        loss, accuracy = evaluate(model, x_val, y_val)
        log(f"Training loss: {train_loss:.4f}  validation loss: {loss:.4f}")
        log(f"Validation accuracy: {accuracy:.4f}")

        study.add_observation(
            trial=trial, iteration=generation, objective=accuracy, context={"loss": loss}
        )
        study.finalize(trial=trial)

        save_path = os.path.join(model_dir, trial.parameters["save_to"])
        log(f"Saving model at: {save_path}")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, save_path)
        study.save(output_dir)

    return _report(study, args, output_dir, model_dir, started)


def _report(
    study: sherpa.Study, args: argparse.Namespace, output_dir: Path, model_dir: Path, started: float
) -> sherpa.Study:
    best = study.get_best_result()
    print("\nThe best found hyperparameter configuration is:")
    print(best)
    if best:
        print("\nThis model is stored at:")
        print(os.path.join(model_dir, best["save_to"]))
    figure = poptune.plot.lineage(study, parameter="learning_rate")
    figure.axes[0].set_ylabel("Validation accuracy")
    figure.savefig(output_dir / "pbt_lineage.png", dpi=100)
    print(f"\nResults saved in {output_dir} (results.csv, study.json)")
    print(f"Lineage figure: {output_dir / 'pbt_lineage.png'}")
    print(f"Total time: {time.perf_counter() - started:.1f} s")
    study.close()  # with --keep-dashboard: prints the URL, serves on until Ctrl-C
    return study


if __name__ == "__main__":
    main()
