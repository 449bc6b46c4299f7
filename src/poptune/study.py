"""The Study: poptune's face, compatible with ``sherpa.Study``.

The study validates input, asks the algorithm for a suggestion inside a storage transaction
that holds the study lock, records observations and final statuses, and answers questions
(best result, results table). It holds no algorithm logic.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from poptune._config import object_from_config
from poptune._rng import SuggestionRNG
from poptune.algorithms.base import Algorithm, Suggestion, algorithm_from_config
from poptune.exceptions import (
    ConfigurationError,
    InvalidObservationError,
    InvalidParameterError,
    InvalidStatusError,
    ReadOnlyStudyError,
    StorageError,
    StudyMismatchError,
    StudyNotFoundError,
    UnknownTrialError,
)
from poptune.history import History
from poptune.parameters import Parameter
from poptune.results import RESERVED_COLUMNS, best_result, results_dataframe
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
_SAVE_FORMAT = "poptune.study"
_SAVE_VERSION = 1
_SCALARS = (str, int, float, bool, type(None))


def _default_seed() -> int:
    """A seed drawn from the module-level ``poptune.rng`` (seed it for reproducibility)."""
    return int(sys.modules["poptune"].rng.randint(0, 2**31 - 1))


def _objective(value: Any, trial_id: int) -> float:
    if type(value) is not float:
        if hasattr(value, "item") and not isinstance(value, numbers.Real):
            try:  # numpy 0-d arrays, torch scalar tensors
                value = value.item()
            except (TypeError, ValueError, RuntimeError):
                pass
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InvalidObservationError(
                f"trial {trial_id}: objective must be a finite number, got {value!r} "
                f"of type {type(value).__name__}"
            )
        value = float(value)
    if not math.isfinite(value):
        raise InvalidObservationError(
            f"trial {trial_id}: objective must be a finite number, got {value!r}; "
            "finalize the trial as FAILED if training diverged"
        )
    return value


def _iteration(value: Any, trial_id: int) -> int:
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidObservationError(
            f"trial {trial_id}: iteration must be an int, got {value!r} of type "
            f"{type(value).__name__}"
        )
    return int(value)


class Study:
    """A hyperparameter optimization study (``sherpa.Study`` compatible).

    Args:
        parameters: the :class:`~poptune.Parameter` list to tune (names must be unique).
        algorithm: a :class:`~poptune.algorithms.Algorithm`, e.g.
            ``algorithms.PopulationBasedTraining(...)``.
        lower_is_better: True to minimize the objective, False to maximize it.
        stopping_rule: optional :class:`~poptune.algorithms.StoppingRule` answering
            :meth:`should_trial_stop`.
        dashboard_port: SHERPA's dashboard port. The web dashboard is not part of this
            version: the argument is accepted and a warning is logged.
        disable_dashboard: accepted for SHERPA compatibility.
        output_dir: default directory of :meth:`save`.
        seed: makes the study reproducible: every suggestion draws from a generator derived
            from ``(seed, trial id)``. Default: drawn from ``poptune.rng`` (seed that
            ``numpy.random.RandomState`` for SHERPA-style reproducibility).
        storage: where trials live: None or ``"memory"`` (default, this process only) or a
            :class:`~poptune.storage.Storage`.
        study_name: name of the study in the storage. If a study of that name exists there,
            this object joins it (parameters, algorithm and direction must match).

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
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0
        ):
            raise ConfigurationError(f"seed must be an int >= 0 or None, got {seed!r}")
        if study_name is not None and (not isinstance(study_name, str) or not study_name):
            raise ConfigurationError(f"study_name must be a non-empty str, got {study_name!r}")
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
        if dashboard_port is not None and not disable_dashboard:
            logger.warning(
                "poptune: the web dashboard is not part of this version; "
                "dashboard_port=%r is ignored",
                dashboard_port,
            )

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
        self._check_writable()
        storage, sid, history = self._storage, self._study_id, self._history
        with self._lock:
            with storage.transaction(sid):
                history.sync(storage, sid)
                trial = storage.claim_queued_trial(sid)
                if trial is None:
                    history.state = storage.get_algorithm_state(sid)
                    number = history.next_trial_id
                    result = self.algorithm.suggest(history, self._rng.at(number))
                    if result is None or result is AlgorithmState.DONE:
                        return AlgorithmState.DONE
                    if result is AlgorithmState.WAIT:
                        return AlgorithmState.WAIT
                    params, meta = self._unpack(result)
                    trial = Trial(number, params, TrialStatus.RUNNING, meta)
                    storage.insert_trial(sid, trial)
                    storage.set_algorithm_state(sid, history.state)
            history.sync(storage, sid)
            return trial

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
        value = _objective(objective, tid)
        it = _iteration(iteration, tid)
        ctx = self._context(context, tid) if context else None
        self._storage.add_observation(self._study_id, tid, Observation(it, value, ctx or {}))

    def _context(self, context: Mapping[str, Any], trial_id: int) -> dict[str, Any]:
        if not isinstance(context, Mapping):
            raise InvalidObservationError(
                f"trial {trial_id}: context must be a dict, got {context!r}"
            )
        out: dict[str, Any] = {}
        for key, value in context.items():
            if not isinstance(key, str):
                raise InvalidObservationError(
                    f"trial {trial_id}: context keys must be str, got {key!r}"
                )
            if key in self._reserved_context:
                raise InvalidObservationError(
                    f"trial {trial_id}: context key {key!r} is a parameter name or a results "
                    "column; choose another name"
                )
            if type(value) not in _SCALARS:
                if isinstance(value, np.generic) or getattr(value, "ndim", None) == 0:
                    value = value.item()  # numpy scalars, 0-d arrays, scalar tensors
                elif isinstance(value, float):
                    value = float(value)
                elif isinstance(value, int) and not isinstance(value, bool):
                    value = int(value)
                if type(value) not in _SCALARS:
                    raise InvalidObservationError(
                        f"trial {trial_id}: context[{key!r}] must be a str, number, bool or "
                        f"None, got {value!r} of type {type(value).__name__}"
                    )
            out[key] = value
        return out

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
        self._storage.finish_trial(self._study_id, tid, final)

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

    def get_best_result(self) -> dict[str, Any]:
        """The best observation of a COMPLETED trial as a dict (``{}`` if there is none).

        Keys: ``Trial-ID``, ``Iteration``, the trial's parameters (with PBT's ``generation``,
        ``load_from``, ``save_to``, ``lineage``), ``Objective`` and the context keys.
        Unlike SHERPA, FAILED and STOPPED trials are not considered.
        """
        history = self.history
        return best_result(history.best_trial(), self.lower_is_better)

    @property
    def results(self) -> pd.DataFrame:
        """SHERPA's results table, built now (see :mod:`poptune.results` for its shape)."""
        return results_dataframe(self.history, self.lower_is_better)

    def __repr__(self) -> str:
        return (
            f"Study(name={self.name!r}, algorithm={self.algorithm!r}, "
            f"lower_is_better={self.lower_is_better}, trials={self._history.n_trials})"
        )

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
        target.mkdir(parents=True, exist_ok=True)
        storage, sid = self._storage, self._study_id
        with self._lock:
            history = self.history
            try:
                payload = json.dumps(
                    {
                        "format": _SAVE_FORMAT,
                        "version": _SAVE_VERSION,
                        "name": self.name,
                        "config": self._config(strict=True, seed=self.seed),
                        "algorithm_state": storage.get_algorithm_state(sid),
                        "trials": [t.to_dict() for t in history],
                    },
                    allow_nan=False,
                )
            except (TypeError, ValueError) as exc:  # InvalidParameterError is a ValueError
                raise StorageError(f"cannot save study {self.name!r} as JSON: {exc}") from None
            frame = results_dataframe(history, self.lower_is_better)
        _write_atomic(target / "study.json", payload)
        _write_atomic(target / "results.csv", frame.to_csv(index=False))
        return target

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
        file = Path(path)
        if file.is_dir():
            file = file / "study.json"
        if not file.is_file():
            raise StudyNotFoundError(f"no saved study at {str(path)!r} (looked for {file})")
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise StudyMismatchError(f"{file} is not a readable poptune study: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != _SAVE_FORMAT:
            raise StudyMismatchError(f"{file} is not a poptune study file")
        if data.get("version", 0) > _SAVE_VERSION:
            raise StudyMismatchError(
                f"{file} has format version {data['version']}; this poptune reads up to "
                f"{_SAVE_VERSION}: upgrade poptune"
            )
        config = data["config"]
        if algorithm is None:
            algorithm = algorithm_from_config(config["algorithm"])
        if stopping_rule is None and config.get("stopping_rule"):
            stopping_rule = object_from_config(config["stopping_rule"], {})
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
        trials = [Trial.from_dict(record) for record in data["trials"]]
        last_seq = max(
            [t.finished_seq for t in trials] + [rec[2] for t in trials for rec in t._obs.values()],
            default=0,
        )
        interrupted = []
        with storage.transaction(sid):
            for trial in trials:
                if trial.status is TrialStatus.RUNNING:
                    interrupted.append(trial.id)
                    last_seq += 1
                    trial.status = TrialStatus.FAILED
                    trial.finished_seq = last_seq
                    trial.meta["interrupted"] = True
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


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class _StoredAlgorithm(Algorithm):
    """Stands in for an algorithm that cannot be rebuilt here (a read-only study needs none)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._stored = dict(config)

    def to_config(self) -> dict[str, Any]:
        return dict(self._stored)

    def suggest(self, history: History, rng: np.random.Generator) -> AlgorithmState:
        raise ReadOnlyStudyError("this study's algorithm is not available in this process")


def load_study(storage: Storage | str, study_name: str) -> Study:
    """Open a stored study read-only, for analysis (results, best result, trials).

    Args:
        storage: a database URL (``sqlite:///runs.db``, ``postgresql://...``) or a storage.
        study_name: the study's name.

    Raises:
        StudyNotFoundError: no study of that name in the storage.
        StorageError, ConfigurationError: the storage cannot be opened.
    """
    store = get_storage(storage)
    config = store.get_study_config(store.get_study_id(study_name))
    parameters = [Parameter.from_dict(d) for d in config["parameters"]]
    try:
        algorithm: Algorithm = algorithm_from_config(config["algorithm"])
    except ConfigurationError:  # e.g. a custom algorithm that is not importable here
        algorithm = _StoredAlgorithm(config["algorithm"])
    study = Study(
        parameters,
        algorithm,
        config["lower_is_better"],
        storage=store,
        study_name=study_name,
    )
    study._read_only = True
    return study
