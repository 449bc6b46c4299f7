"""``Study.keras_callback``: a Keras callback reporting every epoch (Keras is an optional extra,
so the class is built once Keras imports)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from poptune.exceptions import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    from poptune.study.study import Study

__all__ = ["callback"]


def callback(study: Study, trial_id: int, objective_name: str, names: Sequence[str]) -> Any:
    """A ``keras.callbacks.Callback`` reporting ``logs[objective_name]`` (and the ``names``
    as context) for ``trial_id`` at each epoch end; see ``Study.keras_callback``."""
    try:
        import keras
    except ImportError:
        raise MissingDependencyError(
            "keras_callback needs Keras: pip install keras (with a backend: torch, jax "
            "or tensorflow)"
        ) from None
    names = list(names)

    class _PoptuneCallback(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            logs = dict(logs or {})
            missing = [n for n in (objective_name, *names) if n not in logs]
            if missing:
                raise ConfigurationError(
                    f"keras_callback: {missing[0]!r} is not among the metrics Keras "
                    f"logged: {sorted(logs)}"
                )
            # A diverged metric (NaN, inf) is recorded as None: contexts are finite or None.
            context = {n: _finite_or_none(float(logs[n])) for n in names}
            study.add_observation(trial_id, float(logs[objective_name]), int(epoch), context)
            if study.should_trial_stop(trial_id):
                self.model.stop_training = True

    return _PoptuneCallback()


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
