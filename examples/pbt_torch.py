"""Population Based Training of a plain PyTorch loop, with the whole training state in one call.

A small MLP learns a generated regression problem (no download). PBT tunes the learning
rate and weight decay of AdamW, whose ``StepLR`` schedule, AMP ``GradScaler``
(enabled on CUDA only), RNG states and epoch count all travel in the checkpoint:

* ``pt_torch.load_checkpoint(trial, model, optimizer, scheduler, scaler)`` loads what the
  trial starts from (nothing for a new member) and then writes the trial's (perturbed)
  ``learning_rate`` and ``weight_decay`` into the optimizer — after loading, so that the
  donor's saved param groups do not silently win — and checks that they are there;
* ``pt_torch.save_checkpoint(trial, ..., epoch=...)`` writes the state where the study wants
  it, atomically, in a file ``torch.load(weights_only=True)`` reads.

Run it with::

    pip install -e ".[torch]" torch==2.13.0 && python examples/pbt_torch.py

Options: ``--tiny`` (or ``POPTUNE_EXAMPLE_TINY=1``: 3 members, 2 generations, small data,
for tests), ``--workers N``, ``--output-dir``, ``--population-size``, ``--generations``,
``--epochs`` (per generation), ``--seed`` and ``--quiet``. ``main(argv)`` returns the study.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

import poptune as sherpa
from poptune.integrations import torch as pt_torch

_HERE = Path(__file__).resolve().parent

__all__ = ["main", "make_data", "objective"]


def _tiny() -> bool:
    return os.environ.get("POPTUNE_EXAMPLE_TINY", "") not in ("", "0")


def make_data(n: int) -> tuple[torch.Tensor, ...]:
    """``y = sin(x·w)`` plus noise in 10 dimensions: train and validation tensors, 3:1."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 10, generator=g)
    y = torch.sin(x @ torch.linspace(-1, 1, 10)).unsqueeze(1) + 0.05 * torch.randn(
        n, 1, generator=g
    )
    cut = 3 * n // 4
    return x[:cut], y[:cut], x[cut:], y[cut:]


def objective(trial: sherpa.Trial) -> float:
    """One PBT segment: ``POPTUNE_EXAMPLE_EPOCHS`` epochs from the trial's checkpoint."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x, y, x_val, y_val = (t.to(device) for t in make_data(256 if _tiny() else 4096))
    torch.manual_seed(trial.id)  # a new member's initial weights; a continuation's RNG is restored
    model = torch.nn.Sequential(
        torch.nn.Linear(10, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)
    ).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)  # PBT sets lr and weight_decay
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.5)
    scaler = torch.amp.GradScaler(device, enabled=device == "cuda")
    state = pt_torch.load_checkpoint(trial, model, optimizer, scheduler, scaler)
    epochs = int(os.environ.get("POPTUNE_EXAMPLE_EPOCHS", "1"))
    loss = float("nan")
    for epoch in range(state.epoch, state.epoch + epochs):
        model.train()
        for batch in torch.randperm(len(x), device=device).split(32):
            optimizer.zero_grad()
            with torch.autocast(device, enabled=device == "cuda"):
                train_loss = torch.nn.functional.mse_loss(model(x[batch]), y[batch])
            scaler.scale(train_loss).backward()
            scaler.step(optimizer)
            scaler.update()
        scheduler.step()
        model.eval()
        with torch.no_grad():
            loss = torch.nn.functional.mse_loss(model(x_val), y_val).item()
        trial.report(loss, iteration=epoch + 1, lr=optimizer.param_groups[0]["lr"])
        if trial.should_stop():
            break
    pt_torch.save_checkpoint(trial, model, optimizer, scheduler, scaler, epoch=epoch + 1)
    return loss


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="PBT of a PyTorch loop on generated data.")
    parser.add_argument("--output-dir", default=str(_HERE / "output" / "pbt_torch"))
    parser.add_argument("--tiny", action="store_true", help="a few seconds' run (tests)")
    parser.add_argument("--population-size", type=int, default=None)
    parser.add_argument("--generations", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per generation")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> sherpa.Study:
    args = parse_args(argv)
    if args.tiny:
        os.environ["POPTUNE_EXAMPLE_TINY"] = "1"  # seen by worker processes too
    os.environ["POPTUNE_EXAMPLE_EPOCHS"] = str(args.epochs)
    population = args.population_size or (3 if _tiny() else 6)
    generations = args.generations or (2 if _tiny() else 5)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    parameters = [
        sherpa.Continuous("learning_rate", [1e-4, 3e-2], "log"),
        sherpa.Continuous("weight_decay", [1e-5, 1e-1], "log"),
    ]
    algorithm = sherpa.algorithms.PopulationBasedTraining(
        generations, population, quantile_fraction=1 / 3 if population < 5 else 0.2
    )
    storage = None
    if args.workers > 1:
        db = out / "study.db"
        db.unlink(missing_ok=True)
        storage = f"sqlite:///{db}"
    study = sherpa.Study(
        parameters, algorithm, lower_is_better=True, seed=args.seed, storage=storage,
        study_name="pbt-torch", checkpoint_dir=out / "models", keep_checkpoints=2,
    )  # fmt: skip
    study.optimize(objective, n_workers=args.workers, show_progress=not args.quiet)
    best = study.get_best_result()
    if not args.quiet:
        print("The best found hyperparameter configuration is:")
        for key in ("Trial-ID", "Objective", "learning_rate", "weight_decay"):
            print(f"  {key}: {best[key]}")
    return study


if __name__ == "__main__":
    main()
