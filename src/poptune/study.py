"""The Study: poptune's face, compatible with ``sherpa.Study``.

The study validates input, asks the algorithm for a suggestion inside a storage transaction
that holds the study lock, records observations and final statuses, and answers questions
(best result, results table). It holds no algorithm logic.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import socket
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from poptune._config import object_from_config
from poptune._heartbeat import Heartbeat, reap
from poptune._rng import SuggestionRNG
from poptune._saved import read_saved, saved_trials, write_saved
from poptune._validation import (
    check_context,
    check_int,
    check_iteration,
    check_objective,
    check_positive,
)
from poptune.algorithms.base import (
    Algorithm,
    Suggestion,
    algorithm_from_config,
)
from poptune.checkpoints import CheckpointStore
from poptune.exceptions import (
    ConfigurationError,
    InvalidObservationError,
    InvalidParameterError,
    InvalidStatusError,
    MissingDependencyError,
    PoptuneError,
    ReadOnlyStudyError,
    StorageError,
    StudyMismatchError,
    StudyNotFoundError,
    UnknownTrialError,
)
from poptune.history import History
from poptune.lineage import schedule as lineage_schedule
from poptune.parameters import Parameter
from poptune.results import RESERVED_COLUMNS, best_result, best_trial, results_dataframe
from poptune.stopping import StoppingRule
from poptune.storage import Storage, get_storage
from poptune.trial import AlgorithmState, Observation, Trial, TrialStatus

__all__ = ["Study"]

logger = logging.getLogger("poptune")

_FINAL = {
    "COMPLETED": TrialStatus.COMPLETED,
    "FAILED": TrialStatus.FAILED,
    "STOPPED": TrialStatus.STOPPED,
}


def _default_seed() -> int:
    """A seed drawn from the module-level ``poptune.rng`` (seed it for reproducibility)."""
    return int(sys.modules["poptune"].rng.randint(0, 2**31 - 1))


class Study:
    """A hyperparameter optimization study (``sherpa.Study`` compatible).

    Args:
        parameters: the :class:`~poptune.Parameter` list to tune (names must be unique).
        algorithm: a :class:`~poptune.algorithms.Algorithm`, e.g.
            ``algorithms.PopulationBasedTraining(...)``.
        lower_is_better: True to minimize the objective, False to maximize it.
        stopping_rule: optional :class:`~poptune.algorithms.StoppingRule` answering
            :meth:`should_trial_stop`.
        dashboard_port: start the live web dashboard (extra ``poptune[dashboard]``) on this
            port of 127.0.0.1, in a background thread that never keeps the script from
            exiting; its URL is printed and kept in :attr:`dashboard_url` (0 picks a free
            port). If it cannot start (port taken, extra missing) a warning is logged and the
            study goes on without it. Default None: no dashboard.
        disable_dashboard: True ignores ``dashboard_port`` (SHERPA's switch).
        output_dir: default directory of :meth:`save`.
        seed: makes the study reproducible: every suggestion draws from a generator derived
            from ``(seed, trial id)``. Default: drawn from ``poptune.rng`` (seed that
            ``numpy.random.RandomState`` for SHERPA-style reproducibility).
        storage: where trials live: None or ``"memory"`` (default, this process only) or a
            :class:`~poptune.storage.Storage`.
        study_name: name of the study in the storage. If a study of that name exists there,
            this object joins it (parameters, algorithm and direction must match).
        heartbeat_interval: seconds between the heartbeats a worker writes for the trials it
            runs, on storages shared by processes (SQL); None turns heartbeats off.
            Default 10.
        grace_period: seconds without a heartbeat after which a RUNNING trial is marked
            FAILED by whichever worker notices (its worker died). Default 4 x
            ``heartbeat_interval``; must exceed it.
        retry_failed_trials: how many times a trial whose worker died is queued again (a
            new trial with the same parameters, ``meta['retry_of']`` naming the old one).
            Default 0: PBT replaces such a member by exploiting instead.
        checkpoint_dir: directory of the trials' checkpoints (shared by all workers); gives
            trials ``checkpoint_path``, ``load_path``, ``save_checkpoint`` and
            ``load_checkpoint`` (see :mod:`poptune.checkpoints`).
        keep_checkpoints: None (default) keeps every checkpoint; an int ``N`` deletes, after
            each finalize, every checkpoint that no population member, queued or running
            trial needs, except those of the ``N`` best completed trials.

    Raises:
        InvalidParameterError: duplicate or reserved parameter names.
        ConfigurationError: an argument of the wrong type or an algorithm that does not fit
            the parameters.
        StudyMismatchError: joining a study whose configuration differs.
    """

    def __init__(
        self,
        parameters: Sequence[Parameter],
        algorithm: Algorithm,
        lower_is_better: bool,
        stopping_rule: StoppingRule | None = None,
        dashboard_port: int | None = None,
        disable_dashboard: bool = False,
        output_dir: str | os.PathLike[str] | None = None,
        *,
        seed: int | None = None,
        storage: Storage | str | None = None,
        study_name: str | None = None,
        heartbeat_interval: float | None = 10.0,
        grace_period: float | None = None,
        retry_failed_trials: int = 0,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        keep_checkpoints: int | None = None,
    ) -> None:
        self.parameters = self._check_parameters(parameters)
        if not isinstance(algorithm, Algorithm):
            raise ConfigurationError(
                f"algorithm must be a poptune.algorithms.Algorithm, got {algorithm!r}"
            )
        if not isinstance(lower_is_better, (bool, np.bool_)):
            raise ConfigurationError(
                f"lower_is_better must be True or False, got {lower_is_better!r}"
            )
        if stopping_rule is not None and not isinstance(stopping_rule, StoppingRule):
            raise ConfigurationError(
                f"stopping_rule must be a poptune StoppingRule or None, got {stopping_rule!r}"
            )
        seed = check_int("Study", "seed", seed, 0, allow_none=True)
        if study_name is not None and (not isinstance(study_name, str) or not study_name):
            raise ConfigurationError(f"study_name must be a non-empty str, got {study_name!r}")
        heartbeat_interval = check_positive(
            "Study", "heartbeat_interval", heartbeat_interval, allow_none=True
        )
        grace_period = check_positive("Study", "grace_period", grace_period, allow_none=True)
        if grace_period is None and heartbeat_interval is not None:
            grace_period = 4.0 * heartbeat_interval
        if heartbeat_interval is not None and grace_period <= heartbeat_interval:  # type: ignore[operator]
            raise ConfigurationError(
                f"grace_period ({grace_period!r} s) must be longer than heartbeat_interval "
                f"({heartbeat_interval!r} s)"
            )
        retry_failed_trials = check_int("Study", "retry_failed_trials", retry_failed_trials, 0)
        keep_checkpoints = check_int(
            "Study", "keep_checkpoints", keep_checkpoints, 0, allow_none=True
        )
        if keep_checkpoints is not None and checkpoint_dir is None:
            raise ConfigurationError("keep_checkpoints needs a checkpoint_dir")
        self.algorithm = algorithm
        self.lower_is_better = bool(lower_is_better)
        self.stopping_rule = stopping_rule
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.dashboard_port = dashboard_port
        self.disable_dashboard = disable_dashboard
        algorithm.setup(self.parameters, self.lower_is_better)

        self._storage = get_storage(storage)
        self.name = study_name or f"study-{uuid.uuid4().hex[:12]}"
        self._reserved_context = frozenset(
            (*RESERVED_COLUMNS, *algorithm.reserved_keys, *(p.name for p in self.parameters))
        )
        config = self._config(strict=self._storage.requires_json, seed=seed)
        self._study_id = self._create_or_join(config, seed)
        self._rng = SuggestionRNG(self.seed)
        self._history = History(self.parameters, self.lower_is_better)
        # Guards the History: taken before the storage lock, never after it.
        self._lock = threading.RLock()
        self._read_only = False
        self._self_ref = weakref.ref(self)
        self._handed_out: set[int] = set()  # ids this object handed out (to mark on Ctrl-C)
        self._options = {
            "heartbeat_interval": heartbeat_interval,
            "grace_period": grace_period,
            "retry_failed_trials": int(retry_failed_trials),
            "checkpoint_dir": None if checkpoint_dir is None else os.fspath(checkpoint_dir),
            "keep_checkpoints": keep_checkpoints,
        }
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.keep_checkpoints = keep_checkpoints
        self._checkpoints: CheckpointStore | None = None
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.retry_failed_trials = int(retry_failed_trials)
        self._heartbeat: Heartbeat | None = None
        self._grace: float | None = None
        self._next_reap = 0.0
        self._start_liveness()
        self._dashboard: Any = None
        if dashboard_port is not None and not disable_dashboard:
            from poptune.dashboard import _start_for_study

            self._dashboard = _start_for_study(self, dashboard_port)

    # -- construction helpers ------------------------------------------------------------
    def _check_writable(self) -> None:
        if self._read_only:
            raise ReadOnlyStudyError(
                f"study {self.name!r} was opened read-only with load_study(); open it with "
                "Study(..., storage=..., study_name=...) to add trials or observations"
            )

    @staticmethod
    def _check_parameters(parameters: Sequence[Parameter]) -> list[Parameter]:
        if isinstance(parameters, Parameter) or not isinstance(parameters, Sequence):
            raise InvalidParameterError(
                f"parameters must be a list of Parameter objects, got {parameters!r}"
            )
        seen: set[str] = set()
        for p in parameters:
            if not isinstance(p, Parameter):
                raise InvalidParameterError(
                    f"parameters must be Parameter objects (Continuous, Discrete, Choice, "
                    f"Ordinal), got {p!r}"
                )
            if p.name in seen:
                raise InvalidParameterError(f"duplicate parameter name {p.name!r}")
            if p.name in RESERVED_COLUMNS:
                raise InvalidParameterError(
                    f"parameter name {p.name!r} is reserved for the results table; "
                    f"reserved: {list(RESERVED_COLUMNS)}"
                )
            seen.add(p.name)
        return list(parameters)

    def _config(self, strict: bool, seed: int | None) -> dict[str, Any]:
        params = []
        for p in self.parameters:
            try:
                params.append(p.to_dict())
            except InvalidParameterError:
                if strict:
                    raise
                params.append(
                    {"name": p.name, "type": p.type, "range": repr(p.range), "scale": p.scale}
                )
        return {
            "parameters": params,
            "algorithm": self.algorithm.to_config(),
            "lower_is_better": self.lower_is_better,
            "stopping_rule": None if self.stopping_rule is None else self.stopping_rule.to_config(),
            "seed": seed,
        }

    def _create_or_join(self, config: dict[str, Any], seed: int | None) -> int:
        storage = self._storage
        for _ in range(2):  # another process may create it between our look and our insert
            try:
                study_id = storage.get_study_id(self.name)
            except StudyNotFoundError:
                self.seed = int(seed) if seed is not None else _default_seed()
                try:
                    return storage.create_study(self.name, {**config, "seed": self.seed})
                except StudyMismatchError:
                    continue
            stored = storage.get_study_config(study_id)
            self._check_same(stored, config)
            self.seed = int(stored["seed"])
            return study_id
        raise StudyMismatchError(f"study {self.name!r} could not be created nor found")

    def _check_same(self, stored: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        stored = {**stored, "algorithm": _normalized(stored.get("algorithm"))}
        for key in ("parameters", "algorithm", "lower_is_better"):
            if json.dumps(stored.get(key), sort_keys=True, default=repr) != json.dumps(
                config.get(key), sort_keys=True, default=repr
            ):
                raise StudyMismatchError(
                    f"study {self.name!r} already exists with a different {key}: "
                    f"stored {stored.get(key)!r}, given {config.get(key)!r}"
                )
        if config.get("seed") is not None and config["seed"] != stored.get("seed"):
            raise StudyMismatchError(
                f"study {self.name!r} already exists with seed {stored.get('seed')!r}, "
                f"given {config['seed']!r}"
            )

    # -- suggestions ---------------------------------------------------------------------
    def get_suggestion(self) -> Trial | AlgorithmState:
        """The next trial to run, or ``AlgorithmState.WAIT`` / ``AlgorithmState.DONE``.

        Trials queued with :meth:`add_trial` come first. The suggestion is computed and
        recorded in one storage transaction holding the study lock.
        """
        return self._suggest(None)

    def _suggest(self, max_trial_id: int | None) -> Trial | AlgorithmState:
        """``get_suggestion``, answering DONE rather than make a trial above ``max_trial_id``."""
        self._check_writable()
        storage, sid, history = self._storage, self._study_id, self._history
        with self._lock:
            reap(self)
            with storage.transaction(sid):
                history.sync(storage, sid)
                trial = storage.claim_queued_trial(sid, self.worker_id)
                if trial is None:
                    if max_trial_id is not None and history.next_trial_id > max_trial_id:
                        return AlgorithmState.DONE
                    history.state = storage.get_algorithm_state(sid)
                    number = history.next_trial_id
                    result = self.algorithm.suggest(history, self._rng.at(number))
                    # What the algorithm noted is kept whatever it answered, on every storage.
                    storage.set_algorithm_state(sid, history.state)
                    if result is None or result is AlgorithmState.DONE:
                        return AlgorithmState.DONE
                    if result is AlgorithmState.WAIT:
                        return AlgorithmState.WAIT
                    params, meta = self._unpack(result)
                    trial = Trial(number, params, TrialStatus.RUNNING, meta)
                    storage.insert_trial(sid, trial, self.worker_id)
            history.sync(storage, sid, refresh=False)
            if self._heartbeat is not None:
                self._heartbeat.start()
            trial._owner = self._self_ref
            self._handed_out.add(trial.id)
            return trial

    def close(self) -> None:
        """Stop this object's heartbeat thread (its running trials then look abandoned after
        ``grace_period``) and its dashboard, if it started one. The study itself stays in its
        storage; a closed object can still answer questions. Also happens (heartbeat only)
        when the object is garbage-collected."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self._dashboard is not None:
            self._dashboard.stop()
            self._dashboard = None

    def start_dashboard(
        self, port: int = 8880, *, host: str = "127.0.0.1", allow_stop: bool = False
    ) -> str:
        """Serve the live web dashboard of this study's storage in a background thread
        (what ``dashboard_port=`` does, with more options); return its URL. A dashboard this
        object started before is stopped first; :meth:`close` stops it.

        Args:
            port: TCP port; 0 picks a free one. Default 8880.
            host: address to bind. Default 127.0.0.1 (this machine only; the dashboard has
                no authentication).
            allow_stop: show "Stop" buttons on running trials (the dashboard's only write;
                :meth:`should_trial_stop` then answers True for a stopped trial).

        Raises:
            MissingDependencyError: ``poptune[dashboard]`` is not installed.
            ConfigurationError: the port cannot be bound.
        """
        from poptune.dashboard import start_dashboard

        if self._dashboard is not None:
            self._dashboard.stop()
            self._dashboard = None
        self._dashboard = start_dashboard(
            self._storage, port=port, host=host, allow_stop=allow_stop, study_name=self.name
        )
        return self._dashboard.url

    @property
    def dashboard_url(self) -> str | None:
        """The address of this study's dashboard page, or None when none is running."""
        return None if self._dashboard is None else self._dashboard.url

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _mark_interrupted(self) -> list[int]:
        """After Ctrl-C: mark FAILED (meta ``interrupted``) every trial this object handed out
        that is still running; return their ids."""
        marked = []
        mine = self._handed_out | set(self._storage.running_trials_of(self._study_id,
                                                                       self.worker_id))  # fmt: skip
        for tid in sorted(mine):
            trial = self.history.get(tid)
            if trial is None or trial.is_finished:
                continue
            try:
                self._finish(tid, TrialStatus.FAILED, {**trial.meta, "interrupted": True})
            except PoptuneError:
                continue
            marked.append(tid)
        self._handed_out.clear()
        return marked

    def _start_liveness(self) -> None:
        """Heartbeats for this worker's trials, on storages shared by processes."""
        interval = self._options["heartbeat_interval"]
        if self._storage.supports_heartbeat and interval is not None:
            self._heartbeat = Heartbeat(self._storage, self._study_id, self.worker_id, interval)
            weakref.finalize(self, self._heartbeat.stop)
            self._grace = float(self._options["grace_period"])

    def _unpack(self, result: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
        if isinstance(result, Suggestion):
            params, meta = result.parameters, result.meta
        elif isinstance(result, dict):
            params, meta = result, None
        else:
            raise ConfigurationError(
                f"{type(self.algorithm).__name__}.suggest returned {result!r}; expected a "
                "dict, a Suggestion, AlgorithmState.WAIT or AlgorithmState.DONE"
            )
        for name in self._history.parameter_names:
            if name not in params:
                raise ConfigurationError(
                    f"{type(self.algorithm).__name__}.suggest gave no value for "
                    f"parameter {name!r}: {params!r}"
                )
        return params, meta

    def __iter__(self) -> Iterator[Trial]:
        """Yield trials until the algorithm is DONE.

        On WAIT, if trials handed out elsewhere (another thread or worker) are running, wait
        for them (polling with backoff from 10 ms to 1 s). If the only unfinished trials are
        ones this loop yielded, nobody else can finish them: the loop ends with a warning
        naming them (SHERPA ends the loop on WAIT).
        """
        mine: set[int] = set()
        delay = 0.01
        while True:
            suggestion = self.get_suggestion()
            if isinstance(suggestion, Trial):
                mine.add(suggestion.id)
                delay = 0.01
                yield suggestion
                continue
            if suggestion is AlgorithmState.DONE:
                return
            unfinished = self._history.unfinished
            if all(t.id in mine for t in unfinished):
                logger.warning(
                    "poptune: the algorithm waits for trial(s) %s, which this loop handed out "
                    "but which were never finalized; ending the loop. Call study.finalize(trial) "
                    "for every trial.",
                    [t.id for t in unfinished],
                )
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def add_trial(self, trial: Trial | Mapping[str, Any]) -> Trial:
        """Queue a trial of your own; it is handed out before the algorithm's next suggestion.

        Args:
            trial: a :class:`Trial` (its id is ignored: the study gives a fresh one, where
                SHERPA reused ids) or a parameter dict.

        Returns:
            The queued trial.

        Raises:
            InvalidParameterError: a study parameter is missing or has a value outside its
                range.
        """
        self._check_writable()
        params = dict(trial.parameters if isinstance(trial, Trial) else trial)
        for p in self.parameters:
            if p.name not in params:
                raise InvalidParameterError(
                    f"add_trial: no value for parameter {p.name!r} in {params!r}"
                )
            params[p.name] = p.validate_value(params[p.name])
        storage, sid = self._storage, self._study_id
        with self._lock:
            with storage.transaction(sid):
                self._history.sync(storage, sid)
                queued = Trial(
                    self._history.next_trial_id, params, TrialStatus.QUEUED, {"source": "add_trial"}
                )
                storage.insert_trial(sid, queued)
            self._history.sync(storage, sid)
            return queued

    # -- reporting -----------------------------------------------------------------------
    def _trial_id(self, trial: Trial | int) -> int:
        if isinstance(trial, Trial):
            if trial._owner is self._self_ref:  # handed out by this study: checked then
                return trial.id
            params = trial.parameters
            for name in self._history.parameter_names:
                if name not in params:
                    raise InvalidObservationError(
                        f"trial {trial.id} has no value for study parameter {name!r}"
                    )
            return trial.id
        if isinstance(trial, numbers.Integral) and not isinstance(trial, bool):
            return int(trial)
        raise UnknownTrialError(f"expected a Trial or a trial id, got {trial!r}")

    def add_observation(
        self,
        trial: Trial | int,
        objective: float,
        iteration: int = 1,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Record the objective of a running trial at an iteration.

        Args:
            trial: the :class:`Trial` (or its id).
            objective: a finite number (Python, numpy or a scalar tensor).
            iteration: an int; each iteration once per trial. Default 1.
            context: other metrics, ``{'loss': 0.21}``: str keys (not a parameter name nor
                a results column) and scalar values (str, int, float, bool, None).

        Raises:
            InvalidObservationError: NaN/inf/non-numeric objective, non-int iteration,
                bad context.
            DuplicateIterationError: the trial already has this iteration.
            UnknownTrialError: no such trial in this study.
            TrialFinishedError: the trial was already finalized.

        Nothing is recorded when an error is raised.
        """
        self._check_writable()
        tid = self._trial_id(trial)
        value = check_objective(objective, tid)
        it = check_iteration(iteration, tid)
        ctx = check_context(context, tid, self._reserved_context) if context else None
        self._storage.add_observation(self._study_id, tid, Observation(it, value, ctx or {}))

    def finalize(self, trial: Trial | int, status: TrialStatus | str = "COMPLETED") -> None:
        """Give a trial its final status: ``'COMPLETED'`` (default), ``'FAILED'`` or ``'STOPPED'``.

        Raises:
            InvalidStatusError: any other status.
            NoObservationsError: COMPLETED without an observation.
            UnknownTrialError, TrialFinishedError.
        """
        self._check_writable()
        tid = self._trial_id(trial)
        final = _FINAL.get(status.value if isinstance(status, TrialStatus) else status)  # type: ignore[arg-type]
        if final is None:
            raise InvalidStatusError(
                f"trial {tid}: unknown final status {status!r}; expected 'COMPLETED', "
                "'FAILED' or 'STOPPED'"
            )
        self._finish(tid, final)

    def _finish(self, tid: int, status: TrialStatus, meta: dict[str, Any] | None = None) -> None:
        self._storage.finish_trial(self._study_id, tid, status, meta)
        if self.keep_checkpoints is not None:
            with self._lock, self._storage.transaction(self._study_id):
                history = self._history
                history.sync(self._storage, self._study_id)
                history.state = self._storage.get_algorithm_state(self._study_id)
                pending = self.algorithm.pending_checkpoints(history)
                self._checkpoint_store().collect(history, self.keep_checkpoints, pending)

    def _checkpoint_store(self) -> CheckpointStore:
        if self._checkpoints is None:
            if self.checkpoint_dir is None:
                raise ConfigurationError(
                    f"study {self.name!r} has no checkpoint_dir: pass Study(..., "
                    "checkpoint_dir='checkpoints') to use trial checkpoints"
                )
            self._checkpoints = CheckpointStore(self.checkpoint_dir)
        return self._checkpoints

    def should_trial_stop(self, trial: Trial | int) -> bool:
        """True if a stop was requested for the trial or the stopping rule says so."""
        tid = self._trial_id(trial)
        with self._lock:
            self._history.sync(self._storage, self._study_id)
            current = self._history.get(tid)
            if current is None:
                raise UnknownTrialError(f"trial {tid!r} does not exist in study {self.name!r}")
            if current.stop_requested:
                return True
            if self.stopping_rule is None:
                return False
            return bool(self.stopping_rule.should_trial_stop(current, self._history))

    def keras_callback(
        self, trial: Trial | int, objective_name: str, context_names: Sequence[str] = ()
    ) -> Any:
        """A Keras callback that records an observation at the end of every epoch (SHERPA's).

        At each epoch end it calls :meth:`add_observation` with ``iteration`` = the epoch
        number Keras gives (0-based, as SHERPA recorded it; pass ``initial_epoch`` to
        ``fit`` to continue a PBT member's count), ``objective`` = ``logs[objective_name]``
        (e.g. ``'val_accuracy'``) and ``context`` = the ``logs`` values named in
        ``context_names``. If :meth:`should_trial_stop` then says so (stopping rule, or the
        dashboard's Stop), it sets ``model.stop_training`` so ``fit`` ends after this epoch.

        Raises:
            MissingDependencyError: Keras (3, any backend) is not installed.
            ConfigurationError (at an epoch end): ``objective_name`` or a context name is not
                among the metrics Keras logged; the message lists those.
        """
        try:
            import keras
        except ImportError:
            raise MissingDependencyError(
                "keras_callback needs Keras: pip install keras (with a backend: torch, jax "
                "or tensorflow)"
            ) from None
        study, tid, names = self, self._trial_id(trial), list(context_names)

        class _PoptuneCallback(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
            def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
                logs = dict(logs or {})
                missing = [n for n in (objective_name, *names) if n not in logs]
                if missing:
                    raise ConfigurationError(
                        f"keras_callback: {missing[0]!r} is not among the metrics Keras "
                        f"logged: {sorted(logs)}"
                    )
                context = {n: float(logs[n]) for n in names}
                study.add_observation(tid, float(logs[objective_name]), int(epoch), context)
                if study.should_trial_stop(tid):
                    self.model.stop_training = True

        return _PoptuneCallback()

    def request_stop(self, trial: Trial | int) -> None:
        """Ask that a running trial stop: :meth:`should_trial_stop` then answers True."""
        self._check_writable()
        self._storage.request_stop(self._study_id, self._trial_id(trial))

    # -- questions -----------------------------------------------------------------------
    @property
    def history(self) -> History:
        """The study's :class:`~poptune.history.History`, synced now."""
        with self._lock:
            self._history.sync(self._storage, self._study_id)
        return self._history

    @property
    def trials(self) -> list[Trial]:
        """Every trial, in id order."""
        return self.history.trials

    def get_trial(self, trial_id: int) -> Trial:
        """The trial with this id. Raises UnknownTrialError."""
        trial = self.history.get(trial_id)
        if trial is None:
            raise UnknownTrialError(f"trial {trial_id!r} does not exist in study {self.name!r}")
        return trial

    def schedule(self, trial: Trial | int) -> list[dict[str, Any]]:
        """The hyperparameter schedule that produced ``trial``: its lineage, oldest segment
        first, each ``{'trial', 'generation', 'iterations', 'parameters', 'load_from',
        'explore'}``. Feed it to ``algorithms.Replay(schedule)`` to train that model again.

        Raises:
            UnknownTrialError: no such trial.
        """
        return lineage_schedule(self, trial)

    def get_best_result(self) -> dict[str, Any]:
        """The best observation of a COMPLETED trial as a dict (``{}`` if there is none).

        Keys: ``Trial-ID``, ``Iteration``, the trial's parameters (with PBT's ``generation``,
        ``load_from``, ``save_to``, ``lineage``), ``Objective`` and the context keys.
        Unlike SHERPA, FAILED and STOPPED trials are not considered. Under
        ``Repeat(agg=True)`` it is the best configuration by the mean over its repeats
        (``Trial-ID`` of its first repeat, the mean as ``Objective``, and ``ObjectiveVar``,
        ``ObjectiveCount``, ``ObjectiveStdErr``): ranked from the trials and the
        ``'result_groups'`` key of the stored algorithm state (see
        :func:`poptune.results.best_trial`), never by asking the algorithm.
        """
        with self._lock:
            state = self._storage.get_algorithm_state(self._study_id)
            best = best_trial(self.history, state, self.algorithm.to_config())
        return best_result(best, self.lower_is_better)

    @property
    def results(self) -> pd.DataFrame:
        """SHERPA's results table, built now (see :mod:`poptune.results` for its shape)."""
        return results_dataframe(self.history, self.lower_is_better)

    def __repr__(self) -> str:
        return (
            f"Study(name={self.name!r}, algorithm={self.algorithm!r}, "
            f"lower_is_better={self.lower_is_better}, trials={self._history.n_trials})"
        )

    # -- running trials ------------------------------------------------------------------
    def optimize(
        self,
        objective: Callable[[Trial], Any],
        n_trials: int | None = None,
        timeout: float | None = None,
        n_workers: int = 1,
        executor: Any = None,
        show_progress: bool = True,
    ) -> None:
        """Run ``objective(trial)`` on trials until the algorithm is done.

        The objective trains; it reports with ``trial.report(value, iteration=...,
        **context)`` and/or returns a final value, and may call ``trial.should_stop()``. The
        study finalizes each trial: COMPLETED, STOPPED (after ``should_stop()`` said so) or
        FAILED (the exception is recorded in ``trial.meta['error']`` and the study goes on).

        Args:
            objective: a function of one trial. With ``n_workers > 1`` or an executor it is
                sent to other processes: define it at module level (picklable).
            n_trials: stop once this call has made this many trials (default: until DONE).
            timeout: seconds after which no new trial is started (running ones finish).
            n_workers: worker processes (spawn) sharing the study. A study kept in memory
                moves to a temporary SQLite file first (said in the log); pass
                ``storage='sqlite:///...'`` to keep it.
            executor: a ``dask.distributed.Client`` (or anything with ``submit``): runs
                ``n_workers`` worker tasks on the cluster; they connect to the study's storage
                URL, so use one they can reach (PostgreSQL, or SQLite on a shared disk).
            show_progress: a progress bar (trials done, best objective, PBT generation) on
                stderr when it is a terminal.

        Raises:
            ConfigurationError: bad arguments.
            KeyboardInterrupt: after Ctrl-C, once running trials are marked FAILED with
                ``meta['interrupted']``; run the study again to resume it.
        """
        from poptune.execution import optimize

        optimize(self, objective, n_trials, timeout, n_workers, executor, show_progress)

    @classmethod
    def join(cls, storage: Storage | str, study_name: str, **options: Any) -> Study:
        """Join a stored study from its stored configuration (what workers do).

        ``options`` are this process's keyword arguments (``checkpoint_dir``,
        ``heartbeat_interval``, ``grace_period``, ``retry_failed_trials``,
        ``keep_checkpoints``). See :func:`poptune._open.join_study`.
        """
        from poptune._open import join_study

        return join_study(storage, study_name, **options)

    def _worker_options(self) -> dict[str, Any]:
        return dict(self._options)

    # -- saving and resuming ---------------------------------------------------------------
    def save(self, output_dir: str | os.PathLike[str] | None = None) -> Path:
        """Write ``results.csv`` and ``study.json`` (everything needed to resume) to a directory.

        Args:
            output_dir: the directory (created if needed); default: the study's ``output_dir``.

        Returns:
            The directory written to.

        Raises:
            ConfigurationError: no directory given here nor to the study.
            StorageError: a value (Choice value, context) cannot be written as JSON.
        """
        target = Path(output_dir) if output_dir is not None else self.output_dir
        if target is None:
            raise ConfigurationError(
                "save() needs a directory: pass output_dir here or to Study(...)"
            )
        try:
            config = self._config(strict=True, seed=self.seed)
        except InvalidParameterError as exc:
            raise StorageError(f"cannot save study {self.name!r} as JSON: {exc}") from None
        with self._lock:
            history = self.history
            return write_saved(
                target,
                name=self.name,
                config=config,
                algorithm_state=self._storage.get_algorithm_state(self._study_id),
                trials=history,
                results=results_dataframe(history, self.lower_is_better),
            )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        algorithm: Algorithm | None = None,
        stopping_rule: StoppingRule | None = None,
    ) -> Study:
        """Load a study written by :meth:`save` and continue it.

        The algorithm is rebuilt from the saved configuration with its saved state, so the
        resumed study suggests exactly what the uninterrupted one would have. Trials that
        were running when the study was saved are marked FAILED (their observations are
        kept); PBT replaces such members by exploiting.

        Args:
            path: the directory given to :meth:`save` (or its ``study.json``).
            algorithm: use this algorithm instead of the saved one (e.g. a custom class, or
                more generations); its saved state is kept.
            stopping_rule: use this stopping rule instead of the saved one.

        Raises:
            StudyNotFoundError: no saved study at ``path``.
            StudyMismatchError: the file is not a poptune study or has a newer format.
        """
        file, data = read_saved(path)
        config = data["config"]
        if algorithm is None:
            algorithm = algorithm_from_config(config["algorithm"])
        if stopping_rule is None and config.get("stopping_rule"):
            stopping_rule = object_from_config(config["stopping_rule"], {}, StoppingRule)
        study = cls(
            [Parameter.from_dict(d) for d in config["parameters"]],
            algorithm,
            config["lower_is_better"],
            stopping_rule=stopping_rule,
            output_dir=file.parent,
            seed=config["seed"],
            study_name=data.get("name"),
        )
        storage, sid = study._storage, study._study_id
        trials, interrupted = saved_trials(data)
        with storage.transaction(sid):
            for trial in trials:
                storage.insert_trial(sid, trial)
            storage.set_algorithm_state(sid, data.get("algorithm_state") or {})
        study._history.sync(storage, sid)
        if interrupted:
            logger.warning(
                "poptune: trial(s) %s were running when study %r was saved; marked FAILED",
                interrupted,
                study.name,
            )
        return study

    # -- the dashboard of a saved or stored study (SHERPA's load_dashboard/run_dashboard) ----
    @classmethod
    def load_dashboard(
        cls,
        path: str | os.PathLike[str],
        study_name: str | None = None,
        *,
        port: int = 8880,
        host: str = "127.0.0.1",
        allow_stop: bool = False,
    ) -> Study:
        """Open a study read-only and start its dashboard in a background thread.

        Args:
            path: a directory written by :meth:`save` (or its ``study.json``), a database URL
                (``sqlite:///runs.db``, ``postgresql://...``) or the path of an SQLite file.
            study_name: the study to open in a database (may be left out when it holds one).
            port: TCP port of the dashboard (0: a free one). Default 8880.
            host: address to bind. Default 127.0.0.1 (this machine only).
            allow_stop: enable its "Stop" buttons (only useful for a study still running).

        Returns:
            The read-only study; ``study.dashboard_url`` is where to look, ``study.close()``
            stops the dashboard.

        Raises:
            StudyNotFoundError: nothing at ``path``, or no (single) study to open.
            ConfigurationError: the dashboard cannot start (extra missing, port in use).
        """
        from poptune.dashboard import start_dashboard

        study = _open_for_dashboard(path, study_name)
        study._dashboard = start_dashboard(
            study._storage, port=port, host=host, allow_stop=allow_stop, study_name=study.name
        )
        return study

    @classmethod
    def run_dashboard(
        cls,
        path: str | os.PathLike[str],
        study_name: str | None = None,
        *,
        port: int = 8880,
        host: str = "127.0.0.1",
        allow_stop: bool = False,
    ) -> None:
        """Like :meth:`load_dashboard`, but serve in this thread until Ctrl-C."""
        from poptune.dashboard import run_dashboard

        study = _open_for_dashboard(path, study_name)
        run_dashboard(
            study._storage, port=port, host=host, allow_stop=allow_stop, study_name=study.name
        )


def _open_for_dashboard(path: str | os.PathLike[str], study_name: str | None) -> Study:
    """A read-only study from a saved directory, a database URL or an SQLite file."""
    from poptune._open import load_study

    text = os.fspath(path)
    if "://" not in text and (Path(text).is_dir() or text.endswith(".json")):
        study = Study.load(text)
        study._read_only = True
        return study
    if "://" not in text:
        if not Path(text).is_file():
            raise StudyNotFoundError(f"no saved study, database URL or SQLite file at {text!r}")
        text = f"sqlite:///{Path(text).resolve()}"
    storage = get_storage(text)
    if study_name is None:
        names = storage.list_studies()
        if len(names) != 1:
            raise StudyNotFoundError(f"{text} holds {len(names)} studies {names}: pass study_name")
        study_name = names[0]
    return load_study(storage, study_name)


def _normalized(config: Any) -> Any:
    """An algorithm config as this version writes it: a study stored before an algorithm got
    a new argument (with a default) still matches."""
    if not isinstance(config, Mapping):
        return config
    try:
        return algorithm_from_config(config).to_config()
    except PoptuneError:  # not importable here: compare it as stored
        return config
