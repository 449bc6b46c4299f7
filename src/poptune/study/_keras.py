"""``Study.keras_callback``: the shared epoch callback (:mod:`poptune._keras`) bound to a
study's trial."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from poptune._keras import epoch_callback

if TYPE_CHECKING:
    from poptune.study.study import Study

__all__ = ["callback"]


def callback(study: Study, trial_id: int, objective_name: str, names: Sequence[str]) -> Any:
    """A ``keras.callbacks.Callback`` reporting ``logs[objective_name]`` (and the ``names``
    as context) for ``trial_id`` at each epoch end; see ``Study.keras_callback``."""

    def report(value: float, epoch: int, context: dict[str, float]) -> None:
        study.add_observation(trial_id, value, epoch, context)

    return epoch_callback(
        "keras_callback",
        report,
        lambda: study.should_trial_stop(trial_id),
        objective_name,
        names,
    )
