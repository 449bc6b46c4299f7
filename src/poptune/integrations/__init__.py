"""Training-framework integrations: checkpoint plumbing and hyperparameters for PBT, and
experiment tracking (study callbacks, :mod:`poptune.study.callbacks`).

One module per framework, each importing its framework only when it is itself imported
(``import poptune`` never imports this package):

* :mod:`poptune.integrations.torch` — save and load a whole PyTorch training state in one
  call (model, optimizers, LR schedulers, AMP scaler, RNG states, epoch and step), and apply
  the trial's hyperparameters to the optimizer *after* loading, verified.
* :mod:`poptune.integrations.lightning` — a Lightning ``Callback`` doing the same around
  ``Trainer.fit``, reporting a monitored metric per epoch and stopping when the trial should.
* :mod:`poptune.integrations.transformers` — a Hugging Face ``TrainerCallback`` and
  ``training_arguments(trial, ...)`` for ``Trainer``.
* :mod:`poptune.integrations.mlflow` — a study callback logging each trial as an MLflow run
  (params, a metric per iteration, PBT tags) nested under one parent run per study.
* :mod:`poptune.integrations.tensorboard` — a study callback writing TensorBoard event files
  per trial (scalars per iteration, hparams at the end).
* :mod:`poptune.integrations.keras` — Keras 3: a ``Callback`` loading and saving whole
  ``.keras`` models through the study's checkpoints, the trial's hyperparameters set on the
  optimizer after loading and read back; ``save_model``/``load_model`` for SHERPA's loop.

Without the framework installed, importing its module raises
:class:`~poptune.exceptions.MissingDependencyError` with the command that installs it.
"""

from __future__ import annotations

from poptune.integrations._hyperparameters import (
    DEFAULT_OPTIMIZER_KEYS,
    HyperparameterNotAppliedError,
    apply_hyperparameters,
)

__all__ = ["DEFAULT_OPTIMIZER_KEYS", "HyperparameterNotAppliedError", "apply_hyperparameters"]
