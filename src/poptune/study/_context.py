"""The :class:`~poptune.trial.TrialContext` a Study gives the trials it hands out."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from poptune.checkpoints import CheckpointStore
from poptune.exceptions import PoptuneError

if TYPE_CHECKING:
    from poptune.study.study import Study
    from poptune.trial import Trial

__all__ = ["StudyContext"]


class StudyContext:
    """Reports go to the study, ``should_stop`` asks it, checkpoints live in its
    ``checkpoint_dir``. It holds the study weakly: a trial kept after its study is gone must
    not keep the study (and its storage) alive."""

    __slots__ = ("__weakref__", "_study")

    def __init__(self, study: Study) -> None:
        self._study = weakref.ref(study)

    def _live(self, trial: Trial) -> Study:
        study = self._study()
        if study is None:
            raise PoptuneError(
                f"trial {trial.id} is not attached to a live study here: report through "
                "study.add_observation(trial, ...), or client.send_metrics(...) in a script "
                "run by poptune.optimize"
            )
        return study

    def report(
        self, trial: Trial, objective: float, iteration: int, context: Mapping[str, Any] | None
    ) -> None:
        self._live(trial).add_observation(trial, objective, iteration, context)

    def should_stop(self, trial: Trial) -> bool:
        return self._live(trial).should_trial_stop(trial)

    @property
    def checkpoints(self) -> CheckpointStore:
        study = self._study()
        if study is None:
            raise PoptuneError("the study these trials came from is gone")
        return study.checkpoints
