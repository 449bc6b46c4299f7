"""``Study.keras_callback``: the shared epoch callback (:mod:`poptune._keras`) bound to a
study's trial."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from poptune._keras import epoch_callback

if TYPE_CHECKING:
    from poptune.study.study import Study

__all__ = ["callback"]


def callback(
    study: Study,
    trial_id: int,
    objective_name: str,
    names: Sequence[str],
    checkpoints: bool = False,
    mapping: Mapping[str, str | None] | None = None,
) -> Any:
    """A ``keras.callbacks.Callback`` reporting ``logs[objective_name]`` (and the ``names``
    as context) for ``trial_id`` at each epoch end; with ``checkpoints``, loading the trial's
    ``load_from`` checkpoint into the model (hyperparameters applied through ``mapping``) when
    ``fit`` begins and saving ``save_to`` when it ends (:mod:`poptune.integrations.keras`).
    See ``Study.keras_callback``."""

    def report(value: float, epoch: int, context: dict[str, float | None]) -> None:
        study.add_observation(trial_id, value, epoch, context)

    return epoch_callback(
        "keras_callback",
        report,
        lambda: study.should_trial_stop(trial_id),
        objective_name,
        names,
        study.get_trial(trial_id) if checkpoints else None,
        mapping,
    )
