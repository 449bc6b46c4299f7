"""Hugging Face Transformers: PBT around ``Trainer.train`` with one callback.

::

    from poptune.integrations.transformers import PoptuneCallback, training_arguments

    def objective(trial):
        model = BertForSequenceClassification(config)
        args = training_arguments(trial, output_dir="out", num_train_epochs=1,
                                  eval_strategy="epoch")
        trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                          callbacks=[PoptuneCallback(trial, metric="eval_loss")])
        trainer.train()

:func:`training_arguments` builds ``TrainingArguments`` with the trial's hyperparameters in
place: every trial parameter named like a ``TrainingArguments`` field (``learning_rate``,
``weight_decay``, ``warmup_steps``, ``adam_beta1``, ``per_device_train_batch_size``...) or
mapped to one (``lr`` → ``learning_rate`` by default).

:class:`PoptuneCallback`, when training begins (the Trainer has built its optimizer and
schedule from those arguments), checks that the arguments carry the trial's values, loads the
checkpoint the trial starts from (``trial.load_path``: weights, optimizer state, RNG states,
steps and epochs so far; read with ``weights_only=True``) while keeping the optimizer's
freshly built hyperparameters, and verifies that the optimizer's learning rate is the trial's
(:func:`poptune.integrations.apply_hyperparameters`). Each evaluation reports ``metric``
(``iteration``: optimizer steps in total, across segments) and ends training when
``trial.should_stop()`` says so; the end of training saves the state to
``trial.checkpoint_path``. Each segment's LR schedule starts afresh from the
``TrainingArguments`` (``lr_scheduler_type="constant"`` is classic PBT); the Trainer's own
checkpoints are not needed (``save_strategy="no"`` is the default here).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from poptune.exceptions import ArgumentTypeError, ConfigurationError, MissingDependencyError

try:
    import transformers
except ImportError as exc:  # pragma: no cover - exercised by simulating a missing transformers
    raise MissingDependencyError(
        f"poptune.integrations.transformers needs Hugging Face Transformers ({exc.name} is not "
        'installed): pip install "poptune[transformers]" torch==2.13.0'
    ) from None

from poptune.integrations import torch as pt_torch  # noqa: E402 - after the dependency check
from poptune.integrations._hyperparameters import (  # noqa: E402
    HyperparameterNotAppliedError,
    check_callback_arguments,
    parameters_of,
)

__all__ = ["DEFAULT_ARGUMENT_NAMES", "PoptuneCallback", "argument_names", "training_arguments"]

#: Trial parameter names that are not ``TrainingArguments`` fields but mean one.
DEFAULT_ARGUMENT_NAMES: Mapping[str, str] = {"lr": "learning_rate"}

#: Keywords :func:`training_arguments` sets unless given: poptune owns the checkpoints and the
#: reports.
_DEFAULTS: Mapping[str, Any] = {"save_strategy": "no", "report_to": "none"}


#: PBT's bookkeeping keys in ``trial.parameters``: never arguments.
_BOOKKEEPING = frozenset({"generation", "load_from", "save_to", "lineage"})


def _fields() -> set[str]:
    return {f.name for f in dataclasses.fields(transformers.TrainingArguments) if f.init}


def argument_names(
    parameters: Any, mapping: Mapping[str, str | None] | None = None
) -> dict[str, str]:
    """``{trial parameter: TrainingArguments field}`` for the trial's parameters.

    A parameter named like a field maps to it; :data:`DEFAULT_ARGUMENT_NAMES` and ``mapping``
    add names (``{"lr_peak": "learning_rate"}``) or, with None, leave one out.

    Raises:
        ConfigurationError: ``mapping`` names a field ``TrainingArguments`` does not have.
        ArgumentTypeError: ``mapping`` is not a dict of str to str or None.
    """
    fields = _fields()
    names = dict(DEFAULT_ARGUMENT_NAMES)
    if mapping is not None:
        if not isinstance(mapping, Mapping):
            raise ArgumentTypeError(
                f"training_arguments: mapping must be a dict parameter -> field, got {mapping!r}"
            )
        for name, target in mapping.items():
            if not isinstance(name, str) or not (target is None or isinstance(target, str)):
                raise ArgumentTypeError(
                    f"training_arguments: mapping must map str to str or None, got "
                    f"{name!r}: {target!r}"
                )
            if target is not None and target not in fields:
                raise ConfigurationError(
                    f"training_arguments: mapping[{name!r}] = {target!r} is not a field of "
                    "TrainingArguments"
                )
    out: dict[str, str] = {}
    for name in parameters_of(parameters):
        if mapping is not None and name in mapping:
            target = mapping[name]
        elif name in names:
            target = names[name]
        elif name in fields and name not in _BOOKKEEPING:
            target = name
        else:
            target = None
        if target is not None:
            out[name] = target
    return out


def training_arguments(
    trial: Any, *, mapping: Mapping[str, str | None] | None = None, **kwargs: Any
) -> Any:
    """``transformers.TrainingArguments(**kwargs)`` with the trial's hyperparameters applied.

    Args:
        trial: the trial (or its parameters dict).
        mapping: see :func:`argument_names`.
        **kwargs: any ``TrainingArguments`` keyword (``output_dir``, ``num_train_epochs``,
            ``eval_strategy``...); the trial's values win over them. ``save_strategy``
            defaults to ``"no"`` and ``report_to`` to ``"none"``.

    Raises:
        ConfigurationError: a keyword given here conflicts with the trial's value, or the
            mapping names an unknown field.
    """
    params = parameters_of(trial)
    names = argument_names(params, mapping)
    applied = {target: params[name] for name, target in names.items()}
    for target, value in applied.items():
        if target in kwargs and kwargs[target] != value:
            raise ConfigurationError(
                f"training_arguments: {target}={kwargs[target]!r} was given, but the trial's "
                f"value is {value!r}; leave it out (the trial sets it)"
            )
    return transformers.TrainingArguments(**{**_DEFAULTS, **kwargs, **applied})


class PoptuneCallback(transformers.TrainerCallback):
    """Load, verify, report, stop and save a PBT segment of ``Trainer.train``.

    Args:
        trial: the trial this ``train()`` trains (its study needs a ``checkpoint_dir``).
        metric: the evaluation metric reported as the objective; ``"loss"`` and
            ``"eval_loss"`` both name ``metrics["eval_loss"]`` (default ``"eval_loss"``).
            Set ``eval_strategy`` so that the Trainer evaluates.
        context: other evaluation metrics reported beside it.
        mapping: as given to :func:`training_arguments`, so that the check agrees with it.
        restore_rng: as :func:`poptune.integrations.torch.load_checkpoint`.
        checkpoints: False to neither load nor save (reporting and stopping only).

    Raises (during ``train``):
        HyperparameterNotAppliedError: the Trainer's arguments or optimizer do not carry the
            trial's value (build the arguments with :func:`training_arguments`).
        ConfigurationError: ``metric`` (or a ``context`` name) is not among the evaluation's.
        CheckpointError: the checkpoint to start from is missing or unreadable.
    """

    def __init__(
        self,
        trial: Any,
        metric: str = "eval_loss",
        *,
        context: Sequence[str] = (),
        mapping: Mapping[str, str | None] | None = None,
        restore_rng: bool | None = None,
        checkpoints: bool = True,
    ) -> None:
        check_callback_arguments(trial, "metric", metric, "a name", context)
        self.trial = trial
        self.metric = metric
        self.context = list(context)
        self.mapping = mapping
        self.restore_rng = restore_rng
        self.checkpoints = bool(checkpoints)
        #: What the start of training loaded (a TrainingState).
        self.state = pt_torch.TrainingState()
        self._reported: set[int] = set()

    # -- the Trainer's events ------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._reported = set()
        params = parameters_of(self.trial)
        for name, target in argument_names(params, self.mapping).items():
            got = getattr(args, target)
            if got != params[name]:
                raise HyperparameterNotAppliedError(
                    f"{name}={params[name]!r} did not reach the Trainer: its arguments have "
                    f"{target}={got!r}; build them with training_arguments(trial, ...)"
                )
        model, optimizer = kwargs.get("model"), kwargs.get("optimizer")
        scheduler = kwargs.get("lr_scheduler")
        if optimizer is None:
            raise HyperparameterNotAppliedError(
                "the Trainer has no optimizer when training begins (DeepSpeed or FSDP create it "
                "later), so the trial's learning rate cannot be checked"
            )
        self.state = pt_torch.TrainingState()
        path = self.trial.load_path if self.checkpoints else None
        if path is not None:
            fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
            self.state = pt_torch.load_checkpoint(
                _NoParameters(self.trial), model, optimizer, restore_rng=self.restore_rng
            )
            for group, kept in zip(optimizer.param_groups, fresh, strict=True):
                group.update(kept)  # the schedule and arguments built for this trial stand
        self.state.hyperparameters = pt_torch.apply_hyperparameters(
            optimizer, {"learning_rate": args.learning_rate}, None, schedulers=scheduler
        )

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Mapping[str, float] | None = None,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        metrics = dict(metrics or {})
        names = [self._key(n, metrics) for n in (self.metric, *self.context)]
        missing = [n for n, key in zip((self.metric, *self.context), names, strict=True) if not key]
        if missing:
            raise ConfigurationError(
                f"PoptuneCallback: {missing[0]!r} is not among the evaluation's metrics: "
                f"{sorted(metrics)}"
            )
        iteration = self.state.step + int(state.global_step)
        if iteration in self._reported:  # evaluated twice at one step (e.g. at the end)
            return
        self._reported.add(iteration)
        if state.is_world_process_zero:
            self.trial.report(
                float(metrics[names[0]]),
                iteration=iteration,
                **{n: float(metrics[key]) for n, key in zip(self.context, names[1:], strict=True)},
            )
        if self.trial.should_stop():
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self.checkpoints or not state.is_world_process_zero:
            return
        pt_torch.save_checkpoint(
            self.trial, kwargs["model"], kwargs.get("optimizer"),
            epoch=self.state.epoch + round(state.epoch or 0),
            step=self.state.step + int(state.global_step),
        )  # fmt: skip

    @staticmethod
    def _key(name: str, metrics: Mapping[str, Any]) -> str | None:
        for key in (name, f"eval_{name}"):
            if key in metrics:
                return key
        return None


class _NoParameters:
    """The trial as load_checkpoint sees it here: no hyperparameters to apply (the Trainer's
    fresh optimizer already has them; the callback checks the learning rate itself)."""

    def __init__(self, trial: Any) -> None:
        self._trial = trial
        self.parameters: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)
