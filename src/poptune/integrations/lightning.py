"""PyTorch Lightning: PBT around ``Trainer.fit`` with one callback.

::

    from poptune.integrations.lightning import PoptuneCallback

    def objective(trial):
        model = LitNet(lr=trial.parameters["learning_rate"])
        trainer = lightning.Trainer(
            max_epochs=2, callbacks=[PoptuneCallback(trial, monitor="val_loss")],
            enable_checkpointing=False, logger=False,
        )
        trainer.fit(model, train_loader, val_loader)

    study.optimize(objective, n_workers=2)

:class:`PoptuneCallback`, at the start of ``fit``, loads the checkpoint the trial starts from
(``trial.load_path``: weights, every optimizer and LR scheduler, RNG states, epochs so far)
and applies the trial's hyperparameters to every optimizer, verified
(:func:`poptune.integrations.apply_hyperparameters`); after each training epoch it reports
``trainer.callback_metrics[monitor]`` (``iteration``: epochs trained in total, across
segments) and ends ``fit`` when ``trial.should_stop()`` says so; at the end of ``fit`` it saves
the state to ``trial.checkpoint_path`` (:mod:`poptune.integrations.torch`'s format, read back
with ``weights_only=True``). Lightning's own checkpointing is not needed for PBT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from poptune.exceptions import ConfigurationError, MissingDependencyError

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - exercised by simulating a missing lightning
    raise MissingDependencyError(
        f"poptune.integrations.lightning needs PyTorch Lightning ({exc.name} is not "
        'installed): pip install "poptune[lightning]" torch==2.13.0'
    ) from None

from poptune.integrations import torch as pt_torch  # noqa: E402 - after the dependency check
from poptune.integrations._hyperparameters import check_callback_arguments  # noqa: E402

__all__ = ["PoptuneCallback"]


class PoptuneCallback(pl.Callback):
    """Report, stop, load and save a PBT segment, and apply its hyperparameters.

    Args:
        trial: the trial this ``fit`` trains (from ``study.optimize`` or ``for trial in
            study``; its study needs a ``checkpoint_dir`` for PBT).
        monitor: the logged metric reported as the objective (``self.log("val_loss", ...)``
            in the LightningModule), read from ``trainer.callback_metrics`` after every
            training epoch (validation, when it runs that epoch, is over by then).
        context: other logged metrics reported beside it (``trial.report(..., loss=...)``).
        mapping: trial parameter name → param-group key, over
            :data:`poptune.integrations.DEFAULT_OPTIMIZER_KEYS` (``learning_rate`` → ``lr``).
        restore_rng: as :func:`poptune.integrations.torch.load_checkpoint` (None: restore the
            RNG states when continuing the same member, not when exploiting another).
        checkpoints: False to neither load nor save (reporting and stopping only).

    Raises (during ``fit``):
        ConfigurationError: ``monitor`` (or a ``context`` name) was not logged.
        HyperparameterNotAppliedError: a mapped hyperparameter did not reach an optimizer.
        CheckpointError: the checkpoint to start from is missing or unreadable.
    """

    def __init__(
        self,
        trial: Any,
        monitor: str,
        *,
        context: Sequence[str] = (),
        mapping: Mapping[str, str | None] | None = None,
        restore_rng: bool | None = None,
        checkpoints: bool = True,
    ) -> None:
        check_callback_arguments(trial, "monitor", monitor, "a metric name", context)
        self.trial = trial
        self.monitor = monitor
        self.context = list(context)
        self.mapping = mapping
        self.restore_rng = restore_rng
        self.checkpoints = bool(checkpoints)
        #: What the start of ``fit`` loaded (a :class:`~poptune.integrations.torch.TrainingState`).
        self.state: pt_torch.TrainingState | None = None
        self._epochs = 0

    @staticmethod
    def _schedulers(trainer: pl.Trainer) -> list[Any]:
        return [config.scheduler for config in trainer.lr_scheduler_configs]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epochs = 0
        if self.checkpoints:
            self.state = pt_torch.load_checkpoint(
                self.trial, pl_module, trainer.optimizers, self._schedulers(trainer),
                mapping=self.mapping, restore_rng=self.restore_rng,
            )  # fmt: skip
        else:
            self.state = pt_torch.TrainingState()
            self.state.hyperparameters = pt_torch.apply_hyperparameters(
                trainer.optimizers, self.trial, self.mapping, schedulers=self._schedulers(trainer)
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._epochs += 1
        metrics = trainer.callback_metrics
        missing = [name for name in (self.monitor, *self.context) if name not in metrics]
        if missing:
            raise ConfigurationError(
                f"PoptuneCallback: {missing[0]!r} was not logged this epoch; logged: "
                f"{sorted(metrics)} (log it with self.log({missing[0]!r}, value))"
            )
        epoch0 = self.state.epoch if self.state is not None else 0
        if trainer.is_global_zero:
            self.trial.report(
                float(metrics[self.monitor]),
                iteration=epoch0 + self._epochs,
                **{name: float(metrics[name]) for name in self.context},
            )
        if self.trial.should_stop():
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.checkpoints or not trainer.is_global_zero:
            return
        start = self.state if self.state is not None else pt_torch.TrainingState()
        pt_torch.save_checkpoint(
            self.trial, pl_module, trainer.optimizers, self._schedulers(trainer),
            epoch=start.epoch + self._epochs, step=start.step + int(trainer.global_step),
        )  # fmt: skip
