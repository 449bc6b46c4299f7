"""SHERPA's in-job reporter: :class:`Client` (``sherpa.Client``), run inside a job that
:func:`poptune.optimize` started.

It is a different process from the runner, with different needs: poptune and the database,
not the algorithm's code. It reads the study's storage, name and the trial id from the
environment variables the runner sets:

==================== ===================================================================
``POPTUNE_STORAGE``  the study's database URL
``POPTUNE_STUDY``    the study's name
``POPTUNE_TRIAL_ID`` the trial's id
``SHERPA_TRIAL_ID``  the same id, under SHERPA's name
``SHERPA_OUTPUT_DIR`` the output directory
==================== ===================================================================

The trial :meth:`Client.get_trial` returns can report itself too (``trial.report(value,
iteration=...)``): the client is its :class:`~poptune.trial.TrialContext`.
"""

from __future__ import annotations

import logging
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from poptune._keras import epoch_callback
from poptune._validation import check_context, check_iteration, check_objective
from poptune.exceptions import ConfigurationError, DuplicateIterationError, UnknownTrialError
from poptune.results import RESERVED_COLUMNS
from poptune.storage import Storage, resolve
from poptune.trial import Observation, Trial

if TYPE_CHECKING:
    from poptune.checkpoints import CheckpointStore

__all__ = ["ENV_STORAGE", "ENV_STUDY", "ENV_TRIAL_ID", "Client"]

logger = logging.getLogger("poptune")

ENV_STORAGE = "POPTUNE_STORAGE"
ENV_STUDY = "POPTUNE_STUDY"
ENV_TRIAL_ID = "POPTUNE_TRIAL_ID"
_SHERPA_TRIAL_ID = "SHERPA_TRIAL_ID"
_SHERPA_OUTPUT_DIR = "SHERPA_OUTPUT_DIR"


class Client:
    """Reports a trial's metrics from inside a job started by :func:`poptune.optimize`
    (``sherpa.Client``).

    It reads the study's storage, name and the trial id from the environment variables
    ``POPTUNE_STORAGE``, ``POPTUNE_STUDY`` and ``POPTUNE_TRIAL_ID`` that :func:`optimize` sets,
    and writes observations straight to the storage (the algorithm's code is not needed).

    Args:
        host, port: SHERPA's MongoDB address; not used (the storage URL comes from the
            environment).
        test_mode: run the script outside :func:`optimize` (to debug it): :meth:`get_trial`
            returns ``Trial(1, parameters)`` with the ``parameters`` keyword's dict (default
            empty), and :meth:`send_metrics` checks the values and keeps them on that trial.

    Raises:
        ConfigurationError: the script is not running under :func:`optimize` (a variable is
            missing) and ``test_mode`` is False.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        test_mode: bool = False,
        **kwargs: Any,
    ) -> None:
        self.test_mode = bool(test_mode)
        self._trial_cache: dict[int, Trial] = {}
        if host is not None or port is not None:
            logger.info("poptune: Client(host=..., port=...) is not used; reporting to %s",
                        os.environ.get(ENV_STORAGE, "the storage in POPTUNE_STORAGE"))  # fmt: skip
        if self.test_mode:
            params = kwargs.pop("parameters", None) or {}
            self._test_trial = Trial(1, dict(params))
            self._test_trial._context = self
            self._storage: Storage | None = None
            self._study_id = 0
            self.trial_id = 1
            self.study_name = ""
            self.storage_url = ""
            self._config: dict[str, Any] = {"parameters": []}
            return
        url = os.environ.get(ENV_STORAGE)
        if not url:
            raise ConfigurationError(
                f"this script is not running under poptune.optimize: {ENV_STORAGE} is not set "
                "(use Client(test_mode=True) to run it on its own)"
            )
        name = os.environ.get(ENV_STUDY)
        if not name:
            raise ConfigurationError(
                f"this script is not running under poptune.optimize: {ENV_STUDY} is not set"
            )
        raw_id = os.environ.get(ENV_TRIAL_ID) or os.environ.get(_SHERPA_TRIAL_ID)
        if not raw_id:
            raise ConfigurationError(
                f"this script is not running under poptune.optimize: {ENV_TRIAL_ID} is not set"
            )
        try:
            self.trial_id = int(raw_id)
        except ValueError:
            raise ConfigurationError(
                f"{ENV_TRIAL_ID}={raw_id!r} is not a trial id (an int)"
            ) from None
        self.storage_url = url
        self.study_name = name
        self._storage = resolve(url)
        self._study_id = self._storage.get_study_id(name)
        self._config = self._storage.get_study_config(self._study_id)

    def get_trial(self) -> Trial:
        """This job's trial (``trial.id``, ``trial.parameters``, PBT's ``load_from`` ...)."""
        if self._storage is None:
            return self._test_trial
        trial = self._storage.get_trial(self._study_id, self.trial_id)
        trial._context = self
        self._trial_cache[trial.id] = trial
        return trial

    def _reserved(self, tid: int) -> frozenset[str]:
        """The context keys a report may not use: Study.add_observation's rule (the results
        columns, the study's parameters and the algorithm's bookkeeping keys, which the
        trial's parameters carry: the algorithm itself is not importable here)."""
        return frozenset((*RESERVED_COLUMNS, *self._parameter_keys(tid)))

    def _parameter_keys(self, tid: int) -> set[str]:
        keys = {d["name"] for d in self._config.get("parameters", ()) if isinstance(d, dict)}
        trial = self._trial_cache.get(tid)
        if trial is None and self._storage is not None:
            trial = self._storage.get_trial(self._study_id, tid)  # UnknownTrialError if none
            self._trial_cache[tid] = trial
        if trial is not None:
            keys.update(trial.parameters)  # PBT's generation, load_from, save_to, lineage
        return keys

    def send_metrics(
        self,
        trial: Trial | int,
        iteration: int,
        objective: float,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Record the trial's objective at ``iteration`` (SHERPA's ``send_metrics``).

        Same checks and errors as :meth:`poptune.Study.add_observation`:
        ``InvalidObservationError`` for a NaN, infinite or non-numeric objective, a non-int
        iteration or a bad context; ``DuplicateIterationError``; ``UnknownTrialError``;
        ``TrialFinishedError`` (e.g. the trial was stopped).
        """
        if isinstance(trial, Trial):
            tid = trial.id
        elif isinstance(trial, numbers.Integral) and not isinstance(trial, bool):
            tid = int(trial)
        else:
            raise UnknownTrialError(f"expected a Trial or a trial id, got {trial!r}")
        value = check_objective(objective, tid)
        it = check_iteration(iteration, tid)
        ctx: dict[str, Any] | None = None
        if context:
            ctx = check_context(context, tid, self._reserved(tid))
        observation = Observation(it, value, ctx or {})
        if self._storage is None:
            target = self._test_trial
            if tid != target.id:
                raise UnknownTrialError(f"trial {tid!r}: test mode has only trial 1")
            if it in target.observations:
                raise DuplicateIterationError(
                    f"trial {tid} already has an observation at iteration {it}"
                )
            target._record(observation)
            logger.info("poptune (test mode): trial %d iteration %d objective %r %s",
                        tid, it, value, ctx or "")  # fmt: skip
            return
        self._storage.add_observation(self._study_id, tid, observation)
        if trial is self._trial_cache.get(tid):
            trial._record(observation)  # so get_trial()'s trial shows what was sent

    def keras_send_metrics(
        self,
        trial: Trial | int,
        objective_name: str,
        context_names: Sequence[str] = (),
    ) -> Any:
        """A Keras callback sending the trial's metrics at every epoch end (SHERPA's
        ``Client.keras_send_metrics``): ``iteration`` = the epoch number Keras gives
        (0-based, as SHERPA), ``objective`` = ``logs[objective_name]`` (e.g. ``'val_loss'``),
        ``context`` = the ``logs`` values named in ``context_names``. When a stop was requested
        for the trial (:meth:`should_stop`), it sets ``model.stop_training``.

        Raises MissingDependencyError (Keras 3 is not installed), UnknownTrialError (not a
        Trial or an id), ConfigurationError (a name that is not a str; at an epoch end, a
        metric Keras did not log), and at an epoch end what :meth:`send_metrics` raises."""
        if isinstance(trial, Trial):
            target = trial
        elif isinstance(trial, numbers.Integral) and not isinstance(trial, bool):
            target = self._trial_cache.get(int(trial)) or self.get_trial()
            if target.id != int(trial):
                raise UnknownTrialError(
                    f"keras_send_metrics: trial {trial!r} is not this job's trial {self.trial_id}"
                )
        else:
            raise UnknownTrialError(f"expected a Trial or a trial id, got {trial!r}")

        def report(value: float, epoch: int, context: dict[str, float]) -> None:
            self.send_metrics(target, epoch, value, context)

        return epoch_callback(
            "keras_send_metrics",
            report,
            lambda: self.should_stop(target),
            objective_name,
            list(context_names),
        )

    # -- the TrialContext of the trial get_trial() returns ---------------------------------
    def report(
        self, trial: Trial, objective: float, iteration: int, context: Mapping[str, Any] | None
    ) -> None:
        """``trial.report(...)``: :meth:`send_metrics`."""
        self.send_metrics(trial, iteration, objective, context)

    def should_stop(self, trial: Trial) -> bool:
        """``trial.should_stop()``: whether a stop was requested for the trial (the runner
        itself kills a job its stopping rule stops)."""
        if self._storage is None:
            return False
        return bool(self._storage.get_trial(self._study_id, trial.id).stop_requested)

    @property
    def checkpoints(self) -> CheckpointStore:
        """A job has no checkpoint store of poptune's: it saves where its script decides."""
        raise ConfigurationError(
            "a job run by poptune.optimize has no checkpoint_dir: save to a path of your own"
        )

    def __repr__(self) -> str:
        return f"Client(study={self.study_name!r}, trial_id={self.trial_id})"
