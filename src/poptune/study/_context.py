"""The two contexts a Study works in: :class:`StudyContext`, the
:class:`~poptune.trial.TrialContext` it gives the trials it hands out, and :class:`WriteBlock`,
what ``Study._writing()`` returns."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from poptune.checkpoints import CheckpointStore
from poptune.exceptions import PoptuneError

if TYPE_CHECKING:
    from poptune.study.study import Study
    from poptune.trial import Trial

__all__ = ["StudyContext", "WriteBlock"]


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


class WriteBlock:
    """``with study._writing():``: hold the Study lock, then (unless this thread already holds
    an open block, which a nested one joins) the storage's study lock, with the History
    synced and ``study._next_id`` set to the next free trial id; on a clean exit the History
    takes in this process's own inserts.

    A class rather than a generator-based context manager: it is on the path of every
    suggestion, where ``contextlib.contextmanager`` would cost about 1 µs of the ~14.
    """

    __slots__ = ("_study", "_tx")

    def __init__(self, study: Study) -> None:
        self._study = study
        self._tx: Any = None

    def __enter__(self) -> None:
        study = self._study
        study._lock.acquire()
        if study._next_id is not None:  # nested: the open block's transaction and ids
            return
        try:
            tx = study._storage.transaction(study._study_id)
            tx.__enter__()
            try:
                # Sync first: inside the transaction a storage shows what was committed
                # before it, and what is written here is stamped with its version.
                study._history.sync(study._storage, study._study_id)
            except BaseException as exc:
                tx.__exit__(type(exc), exc, exc.__traceback__)
                raise
            study._next_id = study._history.next_trial_id
            self._tx = tx
        except BaseException:
            study._lock.release()
            raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        study, tx = self._study, self._tx
        try:
            if tx is not None:
                self._tx = None
                study._next_id = None
                tx.__exit__(kind, exc, tb)  # commits, or rolls back on an error
                if kind is None:
                    study._history.sync(study._storage, study._study_id, refresh=False)
        finally:
            study._lock.release()
