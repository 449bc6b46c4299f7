"""The Keras callback behind ``Study.keras_callback`` and ``Client.keras_send_metrics``: one
observation per epoch end, and ``model.stop_training`` when the trial should stop.

Keras is an optional extra, so the class is built once Keras imports. Both callers hand it two
functions, so neither the Study nor SHERPA's in-job Client has to know the other."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from poptune.exceptions import ConfigurationError, MissingDependencyError

__all__ = ["epoch_callback"]


def epoch_callback(
    caller: str,
    report: Callable[[float, int, dict[str, float]], None],
    should_stop: Callable[[], bool],
    objective_name: str,
    names: Sequence[str],
) -> Any:
    """A ``keras.callbacks.Callback`` calling ``report(logs[objective_name], epoch, context)``
    at each epoch end (``context`` = the ``names`` taken from ``logs``), then setting
    ``model.stop_training`` when ``should_stop()`` says so.

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
    for name in names:
        if not isinstance(name, str):
            raise ConfigurationError(
                f"{caller}: context_names must be metric names (str), got {name!r}"
            )

    class _PoptuneCallback(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            logs = dict(logs or {})
            missing = [n for n in (objective_name, *names) if n not in logs]
            if missing:
                raise ConfigurationError(
                    f"{caller}: {missing[0]!r} is not among the metrics Keras "
                    f"logged: {sorted(logs)}"
                )
            report(float(logs[objective_name]), int(epoch), {n: float(logs[n]) for n in names})
            if should_stop():
                self.model.stop_training = True

    return _PoptuneCallback()
