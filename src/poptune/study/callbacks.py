"""Study callbacks: code of yours told about a study's trials as they start, report and end.

::

    class Printer(poptune.StudyCallback):
        def on_observation(self, study, trial, observation):
            print(trial.id, observation.iteration, observation.objective)

    study = poptune.Study(parameters, algorithm, True, callbacks=[Printer()])
    study.optimize(objective, n_workers=2)  # or study.optimize(..., callbacks=[Printer()])

The hooks (every one optional; subclass :class:`StudyCallback` or write any object with
some of these methods):

* ``on_study_start(study)``: an ``optimize`` call or a ``for trial in study`` loop begins, in
  the process that called it (before any worker process starts).
* ``on_trial_start(study, trial)``: this process was handed ``trial`` (``get_suggestion``,
  the loop, a worker of ``optimize``).
* ``on_observation(study, trial, observation)``: an observation of ``trial`` was recorded
  by this process (``trial.report``, ``study.add_observation``).
* ``on_trial_end(study, trial, status)``: this process finalized ``trial`` with ``status``
  (``trial`` is read back from the storage: its final meta, e.g. ``meta['error']``).
* ``on_study_end(study)``: the ``optimize`` call or the loop ended (also after an error or
  Ctrl-C), in the process that called it.

**Where they run.** In the process that does the work: with ``optimize(n_workers>1)`` or
an executor each worker process gets its own copy of every callback (sent as the objective
is, by reference or with cloudpickle: :mod:`poptune.study._shipping`), made after
``on_study_start`` ran here, so what that hook set up (a run id, a folder) travels with it;
the trial hooks then fire in the workers, ``on_study_end`` in the calling process. Workers
started by hand (``poptune worker``, ``join_study``) run the callbacks their own
``Study(..., callbacks=...)`` or ``join_study(..., callbacks=...)`` was given.

**A callback that raises** loses nothing: the trial, its observation or its status is
recorded first; the error is logged (a WARNING of the ``poptune`` logger naming the
callback, its hook and the trial) and the study carries on; the other callbacks still run.
Only ``KeyboardInterrupt`` and ``SystemExit`` pass through. Hooks run synchronously, outside
the study's locks: a slow one (a network call) slows the trial that triggered it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from poptune._validation import reject
from poptune.trial import Observation, Trial, TrialStatus

if TYPE_CHECKING:
    from poptune.study.study import Study

__all__ = ["HOOKS", "Callbacks", "StudyCallback", "check_callbacks"]

logger = logging.getLogger("poptune")

#: The hook names a callback may define.
HOOKS = ("on_study_start", "on_trial_start", "on_observation", "on_trial_end", "on_study_end")


class StudyCallback:
    """Base class of study callbacks: every hook does nothing; override those you need.

    Subclassing is optional: any object with one or more of the methods in :data:`HOOKS` is
    a callback. A callback given to ``optimize(n_workers>1)`` must be picklable (by
    reference or with cloudpickle): drop what cannot travel (clients, open files) in
    ``__getstate__`` and make it again lazily.
    """

    def on_study_start(self, study: Study) -> None:
        """An ``optimize`` call or a ``for trial in study`` loop begins (calling process)."""

    def on_trial_start(self, study: Study, trial: Trial) -> None:
        """This process was handed ``trial`` (RUNNING; PBT bookkeeping in its parameters
        and meta: ``trial.member``, ``trial.generation``, ``trial.parent``,
        ``trial.explore``)."""

    def on_observation(self, study: Study, trial: Trial, observation: Observation) -> None:
        """``observation`` (iteration, objective, context) of ``trial`` was recorded."""

    def on_trial_end(self, study: Study, trial: Trial, status: TrialStatus) -> None:
        """``trial`` was finalized with ``status`` (COMPLETED, FAILED or STOPPED)."""

    def on_study_end(self, study: Study) -> None:
        """The ``optimize`` call or the loop ended (calling process)."""


def is_callback(obj: Any) -> bool:
    """Whether ``obj`` has at least one of the hooks (:data:`HOOKS`) a callback needs."""
    return any(callable(getattr(obj, hook, None)) for hook in HOOKS)


def check_callbacks(owner: str, callbacks: Any) -> list[Any]:
    """``callbacks`` as a list, checked: None or an iterable of objects with at least one
    hook. Raises ConfigurationError naming the bad value."""
    if callbacks is None:
        return []
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Iterable):
        what = "a list of callbacks (objects with on_trial_start, on_observation, ...)"
        reject(owner, "callbacks", what, callbacks, wrong_type=True)
    found = list(callbacks)
    for callback in found:
        if not is_callback(callback):
            what = f"callbacks: objects with at least one of {', '.join(HOOKS)}"
            reject(owner, "callbacks", what, callback, wrong_type=True)
    return found


def _name(callback: Any) -> str:
    kind = type(callback)
    return f"{kind.__module__}.{kind.__qualname__}"


class Callbacks:
    """A study object's callbacks and the one place their hooks are called (``Study.
    _callbacks``). Every call is guarded: an exception is logged, never raised (see the
    module's docstring). Cheap when empty: every method returns at once."""

    __slots__ = ("items",)

    def __init__(self, callbacks: Iterable[Any] = ()) -> None:
        self.items: list[Any] = list(callbacks)

    def __bool__(self) -> bool:
        return bool(self.items)

    def _call(self, hook: str, study: Study, *args: Any, about: str = "") -> None:
        for callback in list(self.items):
            method = getattr(callback, hook, None)
            if method is None:
                continue
            try:
                method(study, *args)
            except Exception as exc:  # noqa: BLE001 - a user's callback: log it, go on
                logger.warning(
                    "poptune: callback %s raised in %s%s: %s: %s (ignored; the study goes on "
                    "and nothing it recorded is lost)",
                    _name(callback),
                    hook,
                    about,
                    type(exc).__name__,
                    exc,
                )

    def study_started(self, study: Study) -> None:
        if self.items:
            self._call("on_study_start", study)

    def study_ended(self, study: Study) -> None:
        if self.items:
            self._call("on_study_end", study)

    def trial_started(self, study: Study, trial: Any) -> Any:
        """Fire ``on_trial_start`` when ``trial`` is a Trial; return ``trial`` (so that a
        suggestion passes through: ``return callbacks.trial_started(study, trial)``)."""
        if self.items and isinstance(trial, Trial):
            self._call("on_trial_start", study, trial, about=f" for trial {trial.id}")
        return trial

    def observed(self, study: Study, trial: Trial | int, observation: Observation) -> None:
        if self.items:
            record = trial if isinstance(trial, Trial) else _stored(study, int(trial))
            about = f" for trial {record.id}"
            self._call("on_observation", study, record, observation, about=about)

    def finished(self, study: Study, trial_id: int, status: TrialStatus) -> None:
        if self.items:
            record = _stored(study, trial_id)
            self._call("on_trial_end", study, record, status, about=f" for trial {trial_id}")

    @contextmanager
    def added(self, extra: Iterable[Any]) -> Iterator[list[Any]]:
        """``with callbacks.added(more):`` these too while the block runs (an ``optimize``
        call's own); yields the list of all of them."""
        extra = [c for c in extra if c not in self.items]
        self.items.extend(extra)
        try:
            yield list(self.items)
        finally:
            for callback in extra:
                self.items.remove(callback)


def _stored(study: Study, trial_id: int) -> Trial:
    """The trial as the storage has it now (its final status and meta)."""
    return study._storage.get_trial(study._study_id, trial_id)
