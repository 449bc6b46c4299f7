"""Population Based Training of a Hugging Face ``Trainer``, with a tiny BERT and no download.

The model is ``BertForSequenceClassification`` built from a small ``BertConfig`` (random
weights); the data are generated token sequences (the label: does token 7 occur?), so no
tokenizer, weights or data set is downloaded. PBT tunes ``learning_rate`` and
``weight_decay``:

* ``training_arguments(trial, ...)`` builds the ``TrainingArguments`` with the trial's
  values in place;
* ``PoptuneCallback(trial, metric="eval_loss")`` loads the checkpoint the trial starts from
  (weights and optimizer state) when training begins, checks that the optimizer trains with
  the trial's learning rate, reports the evaluation loss, stops training when the trial
  should stop and saves the checkpoint where the study wants it.

Run it with::

    pip install -e ".[transformers]" torch==2.13.0 && python examples/pbt_transformers.py

Options: ``--tiny`` (or ``POPTUNE_EXAMPLE_TINY=1``: 2 members, 2 generations, a few
batches, for tests), ``--workers N``, ``--output-dir``, ``--population-size``,
``--generations``, ``--seed`` and ``--quiet``. ``main(argv)`` returns the study.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here downloads
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

import poptune as sherpa  # noqa: E402
from poptune.integrations.transformers import PoptuneCallback, training_arguments  # noqa: E402

_HERE = Path(__file__).resolve().parent

__all__ = ["TokenData", "main", "objective"]

CONFIG = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
          "intermediate_size": 32, "vocab_size": 50, "max_position_embeddings": 16,
          "num_labels": 2}  # fmt: skip


def _tiny() -> bool:
    return os.environ.get("POPTUNE_EXAMPLE_TINY", "") not in ("", "0")


class TokenData(torch.utils.data.Dataset):
    """``n`` generated sequences of 12 token ids in [1, 50); label 1 when token 7 occurs."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 50, (n, 12), generator=g)
        self.labels = (self.ids == 7).any(dim=1).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(12, dtype=torch.long),
                "labels": self.labels[i]}  # fmt: skip


def objective(trial: sherpa.Trial) -> None:
    """One PBT segment: one epoch of ``Trainer.train`` from the trial's checkpoint."""
    torch.manual_seed(trial.id)
    model = transformers.BertForSequenceClassification(transformers.BertConfig(**CONFIG))
    args = training_arguments(
        trial, output_dir=str(trial.checkpoint_path.parent.parent / "trainer"), num_train_epochs=1,
        eval_strategy="epoch", lr_scheduler_type="constant", per_device_train_batch_size=16,
        per_device_eval_batch_size=64, logging_strategy="no", disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
    )  # fmt: skip
    n = 64 if _tiny() else 2048
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=TokenData(n, 0), eval_dataset=TokenData(n // 4, 1),
        callbacks=[PoptuneCallback(trial, metric="eval_loss")],
    )  # fmt: skip
    trainer.remove_callback(transformers.PrinterCallback)  # poptune shows the progress
    trainer.train()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="PBT of a tiny BERT with Trainer.")
    parser.add_argument("--output-dir", default=str(_HERE / "output" / "pbt_transformers"))
    parser.add_argument("--tiny", action="store_true", help="a few seconds' run (tests)")
    parser.add_argument("--population-size", type=int, default=None)
    parser.add_argument("--generations", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> sherpa.Study:
    args = parse_args(argv)
    if args.tiny:
        os.environ["POPTUNE_EXAMPLE_TINY"] = "1"  # seen by worker processes too
    transformers.logging.set_verbosity_error()
    population = args.population_size or (2 if _tiny() else 4)
    generations = args.generations or (2 if _tiny() else 4)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    parameters = [
        sherpa.Continuous("learning_rate", [1e-4, 1e-2], "log"),
        sherpa.Continuous("weight_decay", [0.0, 0.1]),
    ]
    algorithm = sherpa.algorithms.PopulationBasedTraining(
        generations, population, quantile_fraction=0.5 if population < 4 else 0.25
    )
    storage = None
    if args.workers > 1:
        db = out / "study.db"
        db.unlink(missing_ok=True)
        storage = f"sqlite:///{db}"
    study = sherpa.Study(
        parameters, algorithm, lower_is_better=True, seed=args.seed, storage=storage,
        study_name="pbt-transformers", checkpoint_dir=out / "models", keep_checkpoints=2,
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
