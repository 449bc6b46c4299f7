"""Population Based Training of a Keras 3 model (PyTorch backend), in a few lines of poptune.

A small Keras classifier learns a generated three-class problem (no download). PBT tunes the
learning rate and momentum of its SGD optimizer: every member trains ``--epochs`` epochs per
generation with ``model.fit``; then the worst members copy the whole model (weights and
optimizer state) of the best and perturb its hyperparameters.

All the PBT plumbing is one callback, :class:`poptune.integrations.keras.PoptuneCallback`: it
loads the model the trial starts from (a ``.keras`` file in the study's checkpoints), applies
the trial's (perturbed) learning rate and momentum to the optimizer *after* loading and reads
them back, reports ``val_accuracy`` per epoch, stops ``fit`` when the trial should stop and
saves the model where the study wants it.

Run it with::

    pip install -e ".[keras]" torch==2.13.0 && python examples/pbt_keras.py

Options: ``--tiny`` (or ``POPTUNE_EXAMPLE_TINY=1``: 2 members, 2 generations, a few
batches, for tests), ``--workers N`` (N worker processes through ``study.optimize``, the
study in ``<output-dir>/study.db``), ``--output-dir``, ``--population-size``,
``--generations``, ``--epochs``, ``--seed`` and ``--quiet``. ``main(argv)`` runs it and
returns the finished study.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported; workers inherit it

import keras  # noqa: E402
import numpy as np  # noqa: E402

import poptune as sherpa  # noqa: E402
from poptune.integrations.keras import PoptuneCallback, read_model  # noqa: E402

_HERE = Path(__file__).resolve().parent

__all__ = ["main", "make_data", "make_model", "objective"]


def make_data(n: int, seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """A generated three-class problem in 8 dimensions: (train, validation), 3:1."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    score = x[:, 0] * x[:, 1] + 0.8 * x[:, 2] - 0.5 * x[:, 3]
    y = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3])).astype("int64")
    cut = 3 * n // 4
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def make_model(hidden: int = 32) -> keras.Model:
    """An MLP compiled with SGD; its learning rate and momentum are PBT's to set (the values
    given here are replaced by the trial's before the first step)."""
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _size() -> dict[str, int]:
    tiny = os.environ.get("POPTUNE_EXAMPLE_TINY", "") not in ("", "0")
    return {"samples": 128 if tiny else 4096, "batch": 32 if tiny else 64}


def objective(trial: sherpa.Trial) -> None:
    """One PBT segment: ``model.fit`` for ``POPTUNE_EXAMPLE_EPOCHS`` epochs."""
    size = _size()
    (x, y), validation = make_data(size["samples"])
    keras.utils.set_random_seed(trial.id)
    model = make_model()
    model.fit(
        x, y, validation_data=validation, batch_size=size["batch"], verbose=0,
        epochs=int(os.environ.get("POPTUNE_EXAMPLE_EPOCHS", "1")),
        callbacks=[PoptuneCallback(trial, monitor="val_accuracy", context=["val_loss"])],
    )  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="PBT of a Keras model on generated data.")
    parser.add_argument("--output-dir", default=str(_HERE / "output" / "pbt_keras"))
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
    population = args.population_size or (2 if tiny else 6)
    generations = args.generations or (2 if tiny else 5)
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
        parameters, algorithm, lower_is_better=False, seed=args.seed, storage=storage,
        study_name="pbt-keras", checkpoint_dir=out / "models", keep_checkpoints=2,
    )  # fmt: skip
    study.optimize(objective, n_workers=args.workers, show_progress=not args.quiet)
    best = study.get_best_result()
    if not args.quiet:
        print("The best found hyperparameter configuration is:")
        for key in ("Trial-ID", "Objective", "val_loss", "learning_rate", "momentum"):
            print(f"  {key}: {best[key]}")
        model = read_model(study)  # the best trial's whole model, from the checkpoints
        _, validation = make_data(_size()["samples"])
        print("  its model's validation accuracy:", model.evaluate(*validation, verbose=0)[1])
    return study


if __name__ == "__main__":
    main()
