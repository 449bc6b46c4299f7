"""The best model: ``best_params``, ``best_value``, ``best_trial``, ``best_checkpoint()``, and
the checkpoints of finished trials read from a study.

A trial read from a study (``study.get_trial(id)``, ``study.best_trial``), from the study that
ran it or from ``load_study(..., checkpoint_dir=...)``, is given a :class:`RecordContext`: its
``checkpoint_path`` is where it saved, and for a *finished* trial ``load_checkpoint()`` reads
that checkpoint, what it saved (a running trial still reads what it starts from).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poptune.exceptions import CheckpointError, NoCompletedTrialError, PoptuneError
from poptune.trial import Trial, TrialStatus

if TYPE_CHECKING:
    from poptune.checkpoints import CheckpointStore
    from poptune.study.study import Study

__all__ = [
    "BestResults",
    "RecordContext",
    "attached",
    "best_checkpoint",
    "best_params",
    "best_result",
    "best_trial",
]


class _OwnCheckpoint:
    """The study's store, except that ``load`` of a finished trial reads that trial's own
    checkpoint; everything else (``save``, ``save_path``, ``save_with``, ``path``, ...) is the
    store's own."""

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def load(self, trial: Trial, weights_only: bool | None = None) -> Any:
        if not trial.is_finished:
            return self.store.load(trial, weights_only)
        # Read it as the start of a trial continuing from it: the store's own reader and
        # checks, whatever file system it is on.
        name = self.store.name_of(trial)
        reader = Trial(trial.id, {**trial.parameters, "load_from": name}, TrialStatus.RUNNING)
        try:
            return self.store.load(reader, weights_only)
        except CheckpointError as exc:
            raise CheckpointError(
                f"trial {trial.id} is {trial.status.value}, but its checkpoint {name!r} cannot "
                f"be read (never saved, or deleted by keep_checkpoints?): {exc}"
            ) from None


class RecordContext:
    """The :class:`~poptune.trial.TrialContext` of a trial read from a study: reports and stop
    questions go to the study (a finished trial refuses them, as the study does); checkpoints
    are the study's, a finished trial loading its own (:class:`_OwnCheckpoint`)."""

    __slots__ = ("__weakref__", "_study")

    def __init__(self, study: Study) -> None:
        self._study = weakref.ref(study)

    def _live(self) -> Study:
        study = self._study()
        if study is None:
            raise PoptuneError("the study this trial was read from is gone")
        return study

    def report(
        self, trial: Trial, objective: float, iteration: int, context: Mapping[str, Any] | None
    ) -> None:
        self._live().add_observation(trial, objective, iteration, context)

    def should_stop(self, trial: Trial) -> bool:
        return self._live().should_trial_stop(trial)

    @property
    def checkpoints(self) -> _OwnCheckpoint:
        return _OwnCheckpoint(self._live().checkpoints)


def attached(study: Study, trial: Trial) -> Trial:
    """``trial`` working through a :class:`RecordContext` of ``study`` (in place of none, or of
    the study's own: the same answers, except what a finished trial's ``load_checkpoint()``
    reads); a context someone else gave it (a job's Client) is kept."""
    if trial._context is None or trial._context is study._context:
        context = getattr(study, "_record_context", None)
        if context is None:
            context = study._record_context = RecordContext(study)  # type: ignore[attr-defined]
        trial._context = context
    return trial


def _no_result(study: Study) -> NoCompletedTrialError:
    trials = study.history.trials
    failed = [t for t in trials if t.status is TrialStatus.FAILED]
    first = (f"; the first failure, trial {failed[0].id}: "
             f"{failed[0].meta.get('error', 'no error recorded')}") if failed else ""  # fmt: skip
    return NoCompletedTrialError(
        f"study {study.name!r} has no COMPLETED trial with an observation yet ({len(trials)} "
        f"trial(s), {len(failed)} FAILED{first})"
    )


def best_result(study: Study) -> dict[str, Any]:
    """``study.get_best_result()``, or NoCompletedTrialError when it is ``{}``."""
    best = study.get_best_result()
    if not best:
        raise _no_result(study)
    return best


def best_params(study: Study) -> dict[str, Any]:
    """The study parameters of the best result (no PBT bookkeeping keys)."""
    best = best_result(study)
    return {p.name: best[p.name] for p in study.parameters if p.name in best}


def best_trial(study: Study) -> Trial:
    """The trial of the best result (under ``Repeat(agg=True)``: its first repeat)."""
    return study.get_trial(int(best_result(study)["Trial-ID"]))


def best_checkpoint(study: Study) -> Path:
    """The file of the best trial's checkpoint (:meth:`~poptune.Study.best_checkpoint`)."""
    trial = best_trial(study)
    store = study.checkpoints
    path = store.save_path(trial)
    exists = getattr(path, "exists", None)
    if callable(exists) and not exists():
        raise CheckpointError(
            f"the best trial of study {study.name!r}, trial {trial.id}, has no checkpoint at "
            f"{path} (it never saved one, or keep_checkpoints deleted it: keep_checkpoints=N "
            "keeps the N best)"
        )
    return path


class BestResults:
    """``Study``'s answers about its best result (a base class of :class:`~poptune.Study`)."""

    @property
    def best_params(self: Study) -> dict[str, Any]:  # type: ignore[misc]
        """The study parameters of ``get_best_result()`` (no PBT bookkeeping keys).

        Raises:
            NoCompletedTrialError: no COMPLETED trial with an observation yet (the message
                says how many trials failed, and the first error).
        """
        return best_params(self)

    @property
    def best_value(self: Study) -> float:  # type: ignore[misc]
        """The objective of ``get_best_result()``. Raises NoCompletedTrialError."""
        return float(best_result(self)["Objective"])

    @property
    def best_trial(self: Study) -> Trial:  # type: ignore[misc]
        """The trial of ``get_best_result()`` (its ``checkpoint_path`` and
        ``load_checkpoint()`` give its model). Raises NoCompletedTrialError."""
        return best_trial(self)

    def best_checkpoint(self: Study) -> Path:  # type: ignore[misc]
        """The file of the best trial's checkpoint; read it with
        ``study.best_trial.load_checkpoint()`` or :func:`poptune.checkpoints.read_checkpoint`.

        Raises:
            NoCompletedTrialError: no result yet.
            ConfigurationError: the study has no ``checkpoint_dir``.
            CheckpointError: the best trial saved no checkpoint, or ``keep_checkpoints``
                deleted it.
        """
        return best_checkpoint(self)
