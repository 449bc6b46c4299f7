"""The Keras callback behind ``Study.keras_callback`` and ``Client.keras_send_metrics``: one
observation per epoch end, and ``model.stop_training`` when the trial should stop; with a
``segment`` (:class:`poptune.integrations.keras.Segment`), PBT's checkpoint handling too:
load and apply the hyperparameters when ``fit`` begins, save when it ends.

Keras is an optional extra, so the class is built once Keras imports. Both callers hand it two
functions, so neither the Study nor SHERPA's in-job Client has to know the other."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from poptune.exceptions import ConfigurationError, MissingDependencyError

__all__ = ["epoch_callback"]


def epoch_callback(
    caller: str,
    report: Callable[[float, int, dict[str, float | None]], None],
    should_stop: Callable[[], bool],
    objective_name: str,
    names: Sequence[str],
    pbt_trial: Any = None,
    mapping: Mapping[str, str | None] | None = None,
) -> Any:
    """A ``keras.callbacks.Callback`` calling ``report(logs[objective_name], epoch, context)``
    at each epoch end (``context`` = the ``names`` taken from ``logs``), then setting
    ``model.stop_training`` when ``should_stop()`` says so.

    With a ``pbt_trial``, PBT's checkpoints (:class:`poptune.integrations.keras.Segment`):
    when ``fit`` begins its ``load_from`` checkpoint is loaded into the model and its
    hyperparameters applied by ``mapping`` (the epochs trained so far offset the epochs
    reported); when ``fit`` ends the model is saved as its ``save_to``.

    Raises MissingDependencyError (no Keras 3) or, at an epoch end, ConfigurationError naming
    a metric Keras did not log."""
    try:
        import keras
    except ImportError:
        raise MissingDependencyError(
            f"{caller} needs Keras: pip install keras (with a backend: torch, jax or tensorflow)"
        ) from None
    if not isinstance(objective_name, str):
        raise ConfigurationError(
            f"{caller}: objective_name must be a metric name (str), got {objective_name!r}"
        )
    names = list(names)
    segment = None
    if pbt_trial is not None:
        from poptune.integrations.keras import Segment  # Keras is imported by now

        segment = Segment(pbt_trial, mapping)
    elif mapping is not None:
        raise ConfigurationError(f"{caller}: mapping applies with checkpoints=True")
    for name in names:
        if not isinstance(name, str):
            raise ConfigurationError(
                f"{caller}: context_names must be metric names (str), got {name!r}"
            )

    class _PoptuneCallback(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
        offset = 0  # epochs trained before this fit (from the checkpoint)
        done = 0  # epochs of this fit

        def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
            self.done = 0
            if segment is not None:
                self.offset = segment.begin(self.model).epoch

        def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
            if segment is not None:
                segment.end(self.model, self.done)

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            logs = dict(logs or {})
            missing = [n for n in (objective_name, *names) if n not in logs]
            if missing:
                raise ConfigurationError(
                    f"{caller}: {missing[0]!r} is not among the metrics Keras "
                    f"logged: {sorted(logs)}"
                )
            # A diverged metric (NaN, inf) is reported as None: contexts are finite or None.
            context = {n: _finite_or_none(float(logs[n])) for n in names}
            # Keras's epoch number (SHERPA's iteration); with a segment, the member's count.
            iteration = int(epoch) if segment is None else self.offset + self.done
            self.done += 1
            report(float(logs[objective_name]), iteration, context)
            if should_stop():
                self.model.stop_training = True

    return _PoptuneCallback()


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
