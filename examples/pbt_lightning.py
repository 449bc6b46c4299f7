"""Population Based Training with PyTorch Lightning, in a few lines of poptune.

A small classifier (``LightningModule``) learns a generated two-class problem (no download).
PBT tunes the learning rate and momentum of its SGD optimizer: every member trains
``--epochs`` epochs per generation with ``Trainer.fit``; then the worst quarter copies the
weights and optimizer state of the best quarter and perturbs their hyperparameters.

All the PBT plumbing is one callback,
:class:`poptune.integrations.lightning.PoptuneCallback`: it loads the checkpoint the trial
starts from, applies the trial's (perturbed) learning rate and momentum to the optimizer
*after* loading, reports ``val_loss`` per epoch, stops ``fit`` when the trial should stop and
saves the checkpoint where the study wants it.

Run it with::

    pip install -e ".[lightning]" torch==2.13.0 && python examples/pbt_lightning.py

Options: ``--tiny`` (or ``POPTUNE_EXAMPLE_TINY=1``: 2 members, 2 generations, a few
batches, for tests), ``--workers N`` (N worker processes through ``study.optimize``, the
study in ``<output-dir>/study.db``), ``--output-dir``, ``--population-size``,
``--generations``, ``--epochs``, ``--seed`` and ``--quiet``. ``main(argv)`` runs it and
returns the finished study.
"""

from __future__ import annotations

import argparse
import logging
import os
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

import poptune as sherpa
from poptune.integrations.lightning import PoptuneCallback

_HERE = Path(__file__).resolve().parent

__all__ = ["LitClassifier", "main", "make_data", "objective"]


def make_data(n: int, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """A generated two-class problem in 8 dimensions: (train, validation), 3:1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = ((x[:, 0] * x[:, 1] + 0.5 * x[:, 2]) > 0).long()
    cut = 3 * n // 4
    return TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])


class LitClassifier(pl.LightningModule):
    """An MLP trained with SGD; its learning rate and momentum are PBT's to set."""

    def __init__(self, lr: float = 0.1, momentum: float = 0.9, hidden: int = 32) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum
        )


def _size() -> dict[str, int]:
    tiny = os.environ.get("POPTUNE_EXAMPLE_TINY", "") not in ("", "0")
    return {"samples": 96 if tiny else 2048, "batch": 32 if tiny else 64}


def objective(trial: sherpa.Trial) -> None:
    """One PBT segment: ``Trainer.fit`` for ``POPTUNE_EXAMPLE_EPOCHS`` epochs."""
    _quiet_lightning()  # in worker processes too
    size = _size()
    train, val = make_data(size["samples"])
    pl.seed_everything(trial.id, verbose=False)
    model = LitClassifier()  # lr and momentum come from the trial, through the callback
    trainer = pl.Trainer(
        max_epochs=int(os.environ.get("POPTUNE_EXAMPLE_EPOCHS", "1")),
        callbacks=[PoptuneCallback(trial, monitor="val_loss", context=["val_acc"])],
        accelerator="cpu", devices=1, log_every_n_steps=1, num_sanity_val_steps=0,
        enable_progress_bar=False, logger=False, enable_checkpointing=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(
        model,
        DataLoader(train, batch_size=size["batch"], shuffle=True),
        DataLoader(val, batch_size=256),
    )


def _quiet_lightning() -> None:
    """Lightning's advice about data-loader workers, its INFO lines, and a deprecation inside
    Lightning 2.6 (it calls torch's ``LeafSpec``), none of them this example's to act on."""
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*", FutureWarning)
    warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="PBT of a LightningModule on generated data.")
    parser.add_argument("--output-dir", default=str(_HERE / "output" / "pbt_lightning"))
    parser.add_argument("--tiny", action="store_true", help="a few seconds' run (tests)")
    parser.add_argument("--population-size", type=int, default=None)
    parser.add_argument("--generations", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per generation")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> sherpa.Study:
    args = parse_args(argv)
    if args.tiny:
        os.environ["POPTUNE_EXAMPLE_TINY"] = "1"  # seen by worker processes too
    os.environ["POPTUNE_EXAMPLE_EPOCHS"] = str(args.epochs)
    tiny = _size()["samples"] < 1000
    population = args.population_size or (2 if tiny else 4)
    generations = args.generations or (2 if tiny else 4)
    _quiet_lightning()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    parameters = [
        sherpa.Continuous("learning_rate", [1e-3, 0.3], "log"),
        sherpa.Continuous("momentum", [0.5, 0.95]),
    ]
    algorithm = sherpa.algorithms.PopulationBasedTraining(
        generations, population, quantile_fraction=0.25 if population >= 4 else 0.5
    )
    storage = None
    if args.workers > 1:
        db = out / "study.db"
        db.unlink(missing_ok=True)
        storage = f"sqlite:///{db}"
    study = sherpa.Study(
        parameters, algorithm, lower_is_better=True, seed=args.seed, storage=storage,
        study_name="pbt-lightning", checkpoint_dir=out / "models", keep_checkpoints=2,
    )  # fmt: skip
    study.optimize(objective, n_workers=args.workers, show_progress=not args.quiet)
    best = study.get_best_result()
    if not args.quiet:
        print("The best found hyperparameter configuration is:")
        for key in ("Trial-ID", "Objective", "val_acc", "learning_rate", "momentum"):
            print(f"  {key}: {best[key]}")
    return study


if __name__ == "__main__":
    main()
