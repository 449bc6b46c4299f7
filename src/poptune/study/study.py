"""The Study: poptune's face, compatible with ``sherpa.Study``: validates input, asks the
algorithm inside a transaction holding the study lock, records, answers (see "Driver seam")."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import poptune.study._in_memory as _in_memory
from poptune._rng import check_stream
from poptune.algorithms.base import Algorithm
from poptune.checkpoints import CheckpointStore, check_location
from poptune.exceptions import InvalidStatusError, ReadOnlyStudyError, UnknownTrialError
from poptune.history import History
from poptune.lineage import schedule as lineage_schedule
from poptune.parameters import Parameter
from poptune.results import RESERVED_COLUMNS, best_result, best_trial, results_dataframe
from poptune.stopping import StoppingRule
from poptune.storage import Storage, get_storage
from poptune.study import _dashboard, _keras, _open, _optimize, _retry, _saved, _suggestion, _worker
from poptune.study._best import BestResults, attached
from poptune.study._context import StudyContext, WriteBlock
from poptune.study._liveness import recover_lost_trials, requeue, start_liveness
from poptune.study._notebook import NotebookDisplay
from poptune.study.callbacks import Callbacks, check_callbacks
from poptune.trial import AlgorithmState, Observation, Trial, TrialStatus

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Study"]

_T = TypeVar("_T")


class Study(BestResults, NotebookDisplay):
    """A hyperparameter optimization study (``sherpa.Study`` compatible).

    Args:
        parameters: the :class:`~poptune.Parameter` list to tune (names must be unique).
        algorithm: a :class:`~poptune.algorithms.Algorithm`, e.g.
            ``algorithms.PopulationBasedTraining(...)``.
        lower_is_better: True to minimize the objective, False to maximize it.
        stopping_rule: optional :class:`~poptune.algorithms.StoppingRule` answering
            :meth:`should_trial_stop`.
        dashboard_port: start the live web dashboard (extra ``poptune[dashboard]``) on this
            port of 127.0.0.1 (0: a free one) in a daemon thread; its URL is printed and kept
            in :attr:`dashboard_url`. If it cannot start (port taken, extra missing) a warning
            is logged and the study goes on without it. Default None: no dashboard.
        disable_dashboard: True ignores ``dashboard_port`` (SHERPA's switch).
        keep_dashboard: keep the dashboard serving once the work is done: :meth:`close` (or
            the script's end) prints its URL and waits until Ctrl-C. Default False.
        output_dir: default directory of :meth:`save`.
        seed: makes the study reproducible: the suggestions draw from one generator seeded
            with it. Default: drawn from ``poptune.rng`` (seed that ``RandomState`` for
            SHERPA-style reproducibility).
        rng_stream: a new study's random stream (a stored one keeps its own): 2 (None, the
            default: one generator advanced on) or 1 (one per ``(seed, trial id)``).
        storage: where trials live: None or ``"memory"`` (default, this process only), a
            database URL, the path of an SQLite file, or a :class:`~poptune.storage.Storage`
            (see :func:`poptune.storage.resolve`).
        study_name: the study's name in the storage; one that exists is joined (parameters,
            algorithm, direction must match). Default: a re-run resumes (docs/topics/storage.md).
        heartbeat_interval: seconds between the heartbeats a worker writes for the trials it
            runs, on storages shared by processes (SQL); None: none. Default 10.
        grace_period: seconds without a heartbeat after which a RUNNING trial is marked
            FAILED by whichever worker notices (its worker died). Default 4 x
            ``heartbeat_interval``; must exceed it.
        retry_failed_trials: how many times a trial whose worker died is queued again (a
            new trial with the same parameters, ``meta['retry_of']`` naming the old one).
            Default 0: PBT replaces such a member by exploiting instead.
        checkpoint_dir: where the trials' checkpoints live (shared by all workers): a
            directory, an fsspec URL (``s3://bucket/run``) or ``"database://"`` (the study's
            SQL database); gives trials ``checkpoint_path``, ``load_path``,
            ``save_checkpoint`` and ``load_checkpoint`` (:mod:`poptune.checkpoints`).
        checkpoint_options: a URL's file system options (``endpoint_url``, credentials), or
            ``chunk_bytes`` / ``max_bytes`` for the database; given to workers, never stored.
        keep_checkpoints: None (default) keeps every checkpoint; an int ``N`` deletes, after
            each finalize, every checkpoint that no population member, queued or running
            trial needs, except those of the ``N`` best completed trials.
        trusted_modules: modules (and their submodules) a *stored* config may import to
            rebuild a custom algorithm, stopping rule or PBT hook, here and in this study's
            workers; those of the objects passed here are trusted (see :mod:`poptune._config`).
        allow_pickle: let checkpoints be pickles (default False: reading one runs code).
        callbacks: :class:`~poptune.StudyCallback` s told of every trial this object (and
            the workers of its ``optimize``) runs (:mod:`poptune.study.callbacks`).

    Raises:
        InvalidParameterError: duplicate or reserved parameter names.
        ConfigurationError: an argument of the wrong type or an algorithm that does not fit
            the parameters.
        StudyMismatchError: joining a study whose configuration differs.

    Driver seam: the modules of this package carry the bodies of the larger verbs and are
    the only code that uses these private members (everything else uses public methods):
    ``_storage``, ``_study_id``, ``_history`` (the synced History), ``_lock`` (an RLock
    guarding it, taken before the storage's lock, never after), ``_read_only``, ``_options``
    (this object's :class:`~poptune.study._open.WorkerOptions`), ``_rng``, ``_handed_out``,
    ``_context`` (the TrialContext of its trials), ``_dashboard``; ``_rebind(storage,
    study_id)``, the one way to move the study (``_optimize``); ``_writing()`` with
    ``_next_id``, and ``_append(make_trial)`` / ``_insert`` inside an open block: the one
    "lock, sync, next id, insert" path of every new trial; ``_suggest(max_trial_id)``
    (``_worker``); ``_heartbeat``, ``_grace``, ``_next_recovery`` (``_liveness``); ``_mem``
    (``_in_memory``'s short path); ``_check_writable()``, ``_trial_id(trial)``; ``_callbacks``.
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
        trusted_modules: Sequence[str] | None = None,
        allow_pickle: bool = False,
        checkpoint_options: Mapping[str, Any] | None = None,
        callbacks: Sequence[Any] | None = None,
        keep_dashboard: bool = False,
        rng_stream: int | None = None,
    ) -> None:
        self.parameters = _open.check_parameters(parameters)
        algorithm, lower_is_better, seed = _open.check_arguments(
            algorithm, lower_is_better, stopping_rule, seed, study_name
        )
        directory = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
        self._options = _open.WorkerOptions(heartbeat_interval, grace_period, retry_failed_trials,
            directory, keep_checkpoints, trusted_modules, allow_pickle,
            checkpoint_options)  # fmt: skip
        self.algorithm, self.stopping_rule = algorithm, stopping_rule
        self.lower_is_better = lower_is_better
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.dashboard_port, self.disable_dashboard = dashboard_port, disable_dashboard
        self.keep_dashboard = bool(keep_dashboard)
        algorithm.setup(self.parameters, self.lower_is_better)

        self._storage = get_storage(storage)
        self.name = study_name or ""  # none given: create_or_join picks (_open.default_name)
        self._reserved_context = frozenset(
            (*RESERVED_COLUMNS, *algorithm.reserved_keys, *(p.name for p in self.parameters))
        )
        config = _open.config_of(self, strict=self._storage.requires_json, seed=seed)
        config["rng_stream"] = check_stream(rng_stream)  # a stored study keeps its own
        self._study_id, self.seed = _open.create_or_join(self, config, seed)  # sets _rng
        self._history = History(self.parameters, self.lower_is_better)
        self._history.bind(self._storage, self._study_id)  # shares a MemoryStorage's indexes
        self._lock = threading.RLock()  # guards the History: taken before the storage lock
        self._next_id: int | None = None  # next free id while a _writing() block is open
        self._read_only = False
        self._context = StudyContext(self)
        self._handed_out: set[int] = set()  # ids this object handed out (to mark on Ctrl-C)
        self.checkpoint_dir = check_location(  # a Path, a URL or "database://" (str), None
            directory, checkpoint_options, self._storage
        )
        self.keep_checkpoints: int | None = self._options.keep_checkpoints
        self._checkpoints: CheckpointStore | None = None
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.retry_failed_trials: int = self._options.retry_failed_trials
        start_liveness(self)  # sets _heartbeat, _grace, _next_recovery and _mem
        self._dashboard: Any = None
        self._callbacks = Callbacks(check_callbacks("Study", callbacks))
        if dashboard_port is not None and not disable_dashboard:
            self._dashboard = _dashboard.start_for_study(self, dashboard_port, keep=keep_dashboard)

    def _check_writable(self) -> None:
        if self._read_only:
            raise ReadOnlyStudyError(
                f"study {self.name!r} was opened read-only with load_study(); open it with "
                "Study(..., storage=..., study_name=...) to add trials or observations"
            )

    def _rebind(self, storage: Storage, study_id: int) -> None:
        """Work on the copy of this study in ``storage`` from now on (a fresh History)."""
        with self._lock:
            self._storage, self._study_id = storage, study_id
            self._checkpoints = None  # a database's checkpoints follow the study
            self._history = History(self.parameters, self.lower_is_better)
            self._history.bind(storage, study_id) or self._history.sync(storage, study_id)
            start_liveness(self)

    def _writing(self) -> WriteBlock:
        """``with self._writing():`` both locks, the History synced (nested uses join it);
        inside, :meth:`_append` hands out consecutive ids (inserts show only once committed)."""
        return WriteBlock(self)

    def _append(self, make_trial: Callable[[int], _T], *, worker_id: str | None = None) -> _T:
        """Lock, sync, take the next id, insert: ``make_trial(next_id)`` builds the trial
        (anything but a :class:`Trial`, e.g. ``AlgorithmState.WAIT``, inserts nothing and is
        returned as it is). A RUNNING trial is recorded as run by ``worker_id``."""
        return _retry.append(self, make_trial, worker_id)

    def _insert(self, make_trial: Callable[[int], _T], worker_id: str | None) -> _T:
        """:meth:`_append`'s insert, inside an open :meth:`_writing` block."""
        trial = make_trial(self._next_id)  # type: ignore[arg-type]
        if isinstance(trial, Trial):
            self._storage.insert_trial(self._study_id, trial, worker_id)
            self._next_id += 1  # type: ignore[operator]
        return trial

    def get_suggestion(self) -> Trial | AlgorithmState:
        """The next trial to run, or ``AlgorithmState.WAIT`` / ``AlgorithmState.DONE``. Trials
        queued with :meth:`add_trial` come first. The suggestion is computed and recorded in
        one storage transaction holding the study lock."""
        return self._suggest(None)

    def _suggest(self, max_trial_id: int | None) -> Trial | AlgorithmState:
        """``get_suggestion``, answering DONE rather than make a trial above ``max_trial_id``."""
        self._check_writable()
        if self._mem is not None and (found := _in_memory.suggest(self, max_trial_id)) is not None:
            return found
        with self._lock:
            recover_lost_trials(self)
            trial = _retry.claim_or_suggest(self, max_trial_id)
            if not isinstance(trial, Trial):
                return trial
            if self._heartbeat is not None:
                self._heartbeat.start()
            trial._context = self._context
            self._handed_out.add(trial.id)
        return self._callbacks.trial_started(self, trial)  # outside the lock

    def __iter__(self) -> Iterator[Trial]:
        """Yield trials until the algorithm is DONE. On WAIT, if trials handed out elsewhere
        (another thread or worker) are running, wait for them (polling with backoff from 10 ms
        to 1 s); if the only unfinished trials are ones this loop yielded, nobody else can
        finish them: the loop ends with a warning naming them (SHERPA ends it on WAIT)."""
        return _worker.iterate(self)

    def add_trial(self, trial: Trial | Mapping[str, Any]) -> Trial:
        """Queue a trial of your own (a :class:`Trial`, whose id is ignored where SHERPA reused
        it, or a parameter dict); it is handed out before the algorithm's next suggestion.
        Returns the queued trial. Raises InvalidParameterError: a study parameter is missing
        or has a value outside its range, or ``load_from``/``save_to`` is not a checkpoint name
        (a file name inside ``checkpoint_dir``, never a path)."""
        self._check_writable()
        params = _suggestion.queued_parameters(self, trial)
        return self._append(
            lambda number: Trial(number, params, TrialStatus.QUEUED, {"source": "add_trial"})
        )

    def requeue(self, trial: Trial | int, *, max_attempts: int | None = None) -> Trial | None:
        """Queue a failed trial (or id) once more: a new QUEUED trial, same parameters (its
        own ``save_to``), ``meta['retry_of']`` naming the old one, ``meta['attempt']`` counting
        (1 for an original); PBT counts it as another attempt at the same slot, unlike
        :meth:`add_trial`. Returns it, or None when the trial's attempt number is already
        ``max_attempts`` (None: no limit). The one retry: a trial whose worker died
        (``retry_failed_trials=N`` is ``max_attempts=N + 1``) and a job that failed
        (``optimize(resubmit_failed_trials=True)`` is ``max_attempts=2``) both come here.
        Raises UnknownTrialError, or InvalidStatusError for a trial that is not FAILED or
        STOPPED.
        """
        self._check_writable()
        trial_id = self._trial_id(trial)
        status = self._storage.get_trial(self._study_id, trial_id).status
        if status not in (TrialStatus.FAILED, TrialStatus.STOPPED):
            raise InvalidStatusError(
                f"requeue: trial {trial_id} is {status.value}; only a FAILED or STOPPED trial "
                "can be queued again"
            )
        return requeue(self, trial_id, max_attempts)

    _trial_id = _suggestion.trial_id  # the id of a Trial or an int, checked

    def add_observation(
        self,
        trial: Trial | int,
        objective: float,
        iteration: int = 1,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Record the objective of a running trial at an iteration; nothing is recorded
        when an error is raised.

        Args:
            trial: the :class:`Trial` (or its id).
            objective: a finite number (Python, numpy or a scalar tensor).
            iteration: an int; each iteration once per trial. Default 1.
            context: other metrics, ``{'loss': 0.21}``: str keys (not a parameter name nor
                a results column) and scalar values (str, int, float, bool, None).
        Raises:
            InvalidObservationError: NaN/inf/non-numeric objective, non-int iteration, bad
                context. DuplicateIterationError, UnknownTrialError, TrialFinishedError.
        """
        if self._mem is not None and _in_memory.observe(self, trial, objective, iteration, context):
            return  # checked and recorded on the in-memory short path
        self._check_writable()
        tid, value, it, ctx = _suggestion.checked_observation(
            self, trial, objective, iteration, context
        )
        observation = Observation(it, value, ctx or {})
        self._storage.add_observation(self._study_id, tid, observation)
        self._callbacks.observed(self, trial, observation)

    def finalize(
        self,
        trial: Trial | int,
        status: TrialStatus | str = "COMPLETED",
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Give a trial (or id) its final status: ``'COMPLETED'`` (default), ``'FAILED'`` or
        ``'STOPPED'``; ``meta`` replaces the trial's meta (``{**trial.meta, 'error': ...}``).
        With ``keep_checkpoints``, the checkpoints nothing needs any more are deleted then.

        Raises:
            InvalidStatusError: any other status.
            NoObservationsError: COMPLETED without an observation.
            UnknownTrialError, TrialFinishedError.
        """
        if self._mem is not None and _in_memory.finish(self, trial, status, meta):
            return  # checked and finished on the in-memory short path
        self._check_writable()
        tid = self._trial_id(trial)
        final = _suggestion.final_status(tid, status)
        meta = None if meta is None else dict(meta)
        self._storage.finish_trial(self._study_id, tid, final, meta)
        _worker.after_finalize(self, tid, final)

    @property
    def checkpoints(self) -> CheckpointStore:
        """The :class:`~poptune.checkpoints.CheckpointStore` of this study's own folder in
        ``checkpoint_dir`` (:func:`poptune.study._open.checkpoint_store`: which, errors)."""
        if self._checkpoints is None:
            self._checkpoints = _open.checkpoint_store(self)
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
        self, trial: Trial | int, objective_name: str, context_names: Sequence[str] = (), *,
        checkpoints: bool = False, mapping: Mapping[str, str | None] | None = None,
    ) -> Any:  # fmt: skip
        """A Keras callback recording an observation at every epoch end (SHERPA's):
        ``iteration`` = the epoch number Keras gives (0-based, as SHERPA; pass
        ``initial_epoch`` to ``fit`` to continue a PBT member's count), ``objective`` =
        ``logs[objective_name]`` (e.g. ``'val_accuracy'``), ``context`` = the ``logs`` values
        named in ``context_names``. When :meth:`should_trial_stop` then says so, it sets
        ``model.stop_training``. ``checkpoints=True``: PBT's checkpoints, as the Keras
        integration's callback (load into the model and apply the hyperparameters by
        ``mapping`` at ``fit``'s start, save at its end; the epoch count goes on).

        Raises MissingDependencyError (no Keras 3) or, at an epoch end, ConfigurationError (a
        name is not among the metrics Keras logged)."""
        tid = self._trial_id(trial)
        return _keras.callback(self, tid, objective_name, list(context_names), checkpoints, mapping)

    def request_stop(self, trial: Trial | int) -> None:
        """Ask that a running trial stop: :meth:`should_trial_stop` then answers True."""
        self._check_writable()
        self._storage.request_stop(self._study_id, self._trial_id(trial))

    @property
    def history(self) -> History:
        """The study's :class:`~poptune.history.History`, synced now."""
        with self._lock:
            self._history.sync(self._storage, self._study_id)
            _in_memory.settle(self)  # the random stream's position in its state, as stored
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
        return attached(self, trial)  # its checkpoint_path and load_checkpoint() work

    def schedule(self, trial: Trial | int) -> list[dict[str, Any]]:
        """The hyperparameter schedule that produced ``trial``: its lineage, oldest segment
        first, each ``{'trial', 'generation', 'iterations', 'parameters', 'load_from',
        'explore'}``. Feed it to ``algorithms.Replay(schedule)`` to train that model again.
        Raises UnknownTrialError."""
        return lineage_schedule(self, trial)

    def get_best_result(self) -> dict[str, Any]:
        """The best observation of a COMPLETED trial as a dict (``{}`` if there is none):
        ``Trial-ID``, ``Iteration``, the trial's parameters (with PBT's ``generation``,
        ``load_from``, ``save_to``, ``lineage``), ``Objective`` and the context keys. Unlike
        SHERPA, FAILED and STOPPED trials are not considered. Under ``Repeat(agg=True)`` it is
        the best configuration by the mean over its repeats (``Trial-ID`` of its first repeat,
        the mean as ``Objective``, ``ObjectiveVar``, ``ObjectiveCount``, ``ObjectiveStdErr``):
        ranked from the trials and the ``'result_groups'`` key of the stored algorithm state
        (see :func:`poptune.results.best_trial`), never by asking the algorithm.
        """
        with self._lock:
            state = self._storage.get_algorithm_state(self._study_id)
            best = best_trial(self.history, state, self.algorithm.to_config())
        return best_result(best, self.lower_is_better)

    @property
    def results(self) -> pd.DataFrame:
        """SHERPA's results table, built now (see :mod:`poptune.results` for its shape).

        For a SHERPA-style algorithm (``get_suggestion``), the table it is given, brought up
        to date: one object while nothing changes, as SHERPA's ``study.results`` was."""
        with self._lock:
            history = self.history
            shared = self.algorithm.sherpa_results(history)
        if shared is not None:
            return shared
        return results_dataframe(history, self.lower_is_better)

    def optimize(
        self,
        objective: Callable[[Trial], Any],
        n_trials: int | None = None,
        timeout: float | None = None,
        n_workers: int = 1,
        executor: Any = None,
        show_progress: bool = True,
        *,
        max_consecutive_failures: int | None = 5,
        devices: int | Sequence[str | int] | None = None,
        resources: Mapping[str, float] | None = None,
        callbacks: Sequence[Any] | None = None,
    ) -> None:
        """Run ``objective(trial)`` on trials until the algorithm is done; log a summary (a
        WARNING naming the first error when a trial failed).

        The objective trains; it reports with ``trial.report(value, iteration=...,
        **context)`` and/or returns a final value, and may call ``trial.should_stop()``. The
        study finalizes each trial: COMPLETED, STOPPED (after ``should_stop()`` said so) or
        FAILED (the exception is recorded in ``trial.meta['error']`` and the study goes on).

        Args:
            objective: a function of one trial; with ``n_workers > 1`` or an executor it is
                sent by name, or by value (cloudpickle: a notebook cell's, a lambda, a closure).
            n_trials: stop once this call has made this many trials (default: until DONE).
            timeout: seconds after which no new trial is started (running ones finish).
            n_workers: worker processes (spawn) sharing the study; a study kept in memory
                lives in a temporary SQLite file while they run (logged; removed after).
            executor: a ``dask.distributed.Client`` (anything with ``submit``) running
                ``n_workers`` worker tasks, which connect to the study's storage URL (use one
                they can reach: PostgreSQL, or SQLite on a shared disk).
            show_progress: a progress bar: a widget in Jupyter, text in a terminal, none
                elsewhere; ``POPTUNE_PROGRESS=0`` or ``1`` in the environment forces it.
            max_consecutive_failures: stop once this many trials failed in a row (default
                5; None or 0: carry on). devices: a device per worker process, round-robin
                (``["cuda:0", "cuda:1"]`` or a GPU count; ``trial.device``). resources: with an
                executor, every task's ``submit`` resources (``{"GPU": 1}``). See
                ``docs/topics/failures-and-checkpoints.md`` and ``docs/topics/devices.md``.
            callbacks: more callbacks, for this call only (as :class:`Study`'s).

        Raises:
            TrialsFailingError: ``max_consecutive_failures`` trials failed in a row.
            ConfigurationError: bad arguments, or an objective that cannot be sent.
            KeyboardInterrupt: after Ctrl-C, once running trials are marked FAILED with
                ``meta['interrupted']``; run the study again to resume it.
        """
        _optimize.optimize(self, objective, n_trials, timeout, n_workers, executor,
                           show_progress, join=Study.join, resources=resources, devices=devices,
                           max_consecutive_failures=max_consecutive_failures,
                           callbacks=callbacks)  # fmt: skip

    @classmethod
    def join(cls, storage: Storage | str, study_name: str, **options: Any) -> Study:
        """Join a stored study from its stored configuration, with this process's own
        ``options`` (what workers do; see :func:`poptune.study.join_study`)."""
        return _open.join(cls, storage, study_name, **options)

    def save(self, output_dir: str | os.PathLike[str] | None = None) -> Path:
        """Write ``results.csv`` and ``study.json`` (everything needed to resume) to
        ``output_dir`` (created if needed; default: the study's) and return it. Raises
        ConfigurationError (no directory given here nor to the study) or StorageError (a
        value, e.g. a Choice value or a context, cannot be written as JSON)."""
        return _saved.save(self, output_dir)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        algorithm: Algorithm | None = None,
        stopping_rule: StoppingRule | None = None,
        *,
        trusted_modules: Sequence[str] | None = None,
        allow_pickle: bool = False,
    ) -> Study:
        """Load a study written by :meth:`save` (its directory or ``study.json``) and go on.

        The algorithm is rebuilt from the saved configuration with its saved state, so the
        resumed study suggests exactly what the uninterrupted one would have; ``algorithm``
        and ``stopping_rule`` replace the saved ones (the saved state is kept). Trials that
        were running when it was saved are marked FAILED (observations kept); PBT replaces
        such members by exploiting. ``checkpoint_dir`` and ``keep_checkpoints`` are restored;
        ``trusted_modules`` and ``allow_pickle`` (never saved): as for :class:`Study`.

        Raises:
            StudyNotFoundError: no saved study at ``path``.
            StudyMismatchError: the file is not a poptune study or has a newer format.
        """
        return _saved.load(cls, path, algorithm, stopping_rule, trusted_modules, allow_pickle)

    def start_dashboard(
        self, port: int = 8880, *, host: str = "127.0.0.1", allow_stop: bool = False
    ) -> str:
        """Serve the live dashboard of this study's storage in a background thread (what
        ``dashboard_port=`` does) on ``port`` (0: a free one) of ``host`` (default this machine
        only: it has no authentication); return its URL. ``allow_stop`` shows "Stop" buttons
        (its only write). One this object started before is stopped; :meth:`close` stops it.

        Raises:
            MissingDependencyError: ``poptune[dashboard]`` is not installed.
            ConfigurationError: the port cannot be bound.
        """
        return _dashboard.restart(self, port, host, allow_stop)

    @property
    def dashboard_url(self) -> str | None:
        """The address of this study's dashboard page, or None when none is running."""
        return None if self._dashboard is None else self._dashboard.url

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
        """Open a study read-only and start its dashboard (as :meth:`start_dashboard`) in a
        background thread; return the study (``dashboard_url``; ``close()`` stops it). ``path``
        is a directory written by :meth:`save` (or its ``study.json``), a database URL or an
        SQLite file; ``study_name`` may be left out when the database holds one study.

        Raises:
            StudyNotFoundError: nothing at ``path``, or no (single) study to open.
            ConfigurationError: the dashboard cannot start (extra missing, port in use).
        """
        return _dashboard.load(cls, path, study_name, port, host, allow_stop)

    @classmethod
    def run_dashboard(
        cls,
        path: str | os.PathLike[str],
        study_name: str | None = None,
        *,
        port: int = 8880,
        host: str = "127.0.0.1",
        allow_stop: bool = False,
        banner: Any = True,
    ) -> None:
        """Like :meth:`load_dashboard`, but serve in this thread until Ctrl-C. ``banner``: as
        for :func:`poptune.dashboard.run_dashboard` (True prints it on standard output)."""
        _dashboard.run(cls, path, study_name, port, host, allow_stop, banner)

    def close(self) -> None:
        """Stop this object's heartbeat thread (its running trials then look abandoned after
        ``grace_period``), waiting up to 10 s for a beat in flight, so that the heartbeat uses
        the storage no more once this returns; and the dashboard it started. The study stays
        in its storage, and a closed object still answers questions. Garbage collection stops
        the heartbeat too (without waiting)."""
        if self._heartbeat is not None:
            self._heartbeat.stop(wait=10.0)
        _dashboard.close_for_study(self)

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
