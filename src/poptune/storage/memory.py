"""In-memory storage: the default for a study that lives in one process.

Each study keeps a :class:`~poptune._trial_index.TrialIndex`, updated at every change under
the study's lock; the History of a Study in this process shares it (``History.bind``), so
nothing is logged for it. ``changes_since`` (the dashboard, other readers) counts every change
in ``version``; the log of which trial each change touched starts at the first
``changes_since`` call, and a reader whose version is older than the log's start gets every
trial (each once): a superset, which re-indexing takes in unchanged.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from poptune._trial_index import TrialIndex
from poptune.exceptions import (
    DuplicateIterationError,
    NoObservationsError,
    StorageError,
    StudyMismatchError,
    StudyNotFoundError,
    TrialFinishedError,
    UnknownTrialError,
)
from poptune.storage.base import Storage
from poptune.trial import _COMPLETED, _FINISHED, _QUEUED, Observation, Trial, TrialStatus

__all__ = ["MemoryStorage"]


class _MemoryStudy:
    __slots__ = (
        "changelog", "config", "index", "live", "lock", "log_base", "name", "pending", "queue",
        "seq", "state", "trials",
    )  # fmt: skip

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        self.name = name
        self.config = dict(config)
        self.trials: list[Trial] = []
        self.index = TrialIndex()  # index.version counts every change of the study
        # Trial id per change since version ``log_base``; None until a reader asks for one.
        self.changelog: list[int] | None = None
        self.log_base = 0
        self.queue: deque[int] = deque()
        self.seq = 0
        self.state: dict[str, Any] = {}
        # A random stream (poptune._rng.StudyStream) that has moved on since its position was
        # last written into ``state``: written when someone else reads the state (settle).
        self.pending: Any = None
        self.lock = threading.RLock()
        self.live = True  # False once deleted (a Study's short path then takes the long one)

    def settle(self) -> None:
        """Write the pending stream's position into ``state`` (what its ``end`` would have
        written after the suggestion that moved it last)."""
        stream, self.pending = self.pending, None
        if stream is not None:
            stream.end(self.state, self.state)

    def _count(self, trial_id: int) -> None:
        """Count one change of trial ``trial_id``: the study's version, and its changelog when
        a reader keeps one."""
        self.index.version += 1
        log = self.changelog
        if log is not None:
            log.append(trial_id)

    def changed(self, trial: Trial, reindex: bool) -> None:
        """Count a change of ``trial`` (``reindex``: its status is new)."""
        if reindex:
            self.index.index(trial)
        self._count(trial.id)

    def add_new(self, trial: Trial) -> None:
        """Append ``trial`` (the next id) and index it; the caller holds ``lock``."""
        self.trials.append(trial)
        self.index.add(trial)  # the index's short path for a trial it has not seen
        self._count(trial.id)
        if trial.status is _QUEUED:
            self.queue.append(trial.id)

    def running(self, trial_id: int) -> Trial:
        """The unfinished trial ``trial_id``; UnknownTrialError or TrialFinishedError."""
        trials = self.trials
        if type(trial_id) is int and 0 < trial_id <= len(trials):
            trial = trials[trial_id - 1]
            if trial.status not in _FINISHED:
                return trial
            raise TrialFinishedError(
                f"trial {trial_id} was already finalized with status {trial.status.value}"
            )
        raise UnknownTrialError(f"trial {trial_id!r} does not exist in study {self.name!r}")

    def observe(
        self, trial_id: int, iteration: int, objective: float, context: dict[str, Any] | None
    ) -> None:
        """Record an observation of trial ``trial_id`` (the caller holds ``lock``)."""
        trial = self.running(trial_id)
        obs = trial._obs
        if iteration in obs:
            raise DuplicateIterationError(
                f"trial {trial_id} already has an observation at iteration {iteration}"
            )
        self.seq = seq = self.seq + 1
        obs[iteration] = (objective, tuple(context.items()) if context else None, seq)
        self._count(trial_id)

    def finish(self, trial_id: int, status: TrialStatus, meta: dict[str, Any] | None) -> None:
        """Give trial ``trial_id`` its final status (the caller holds ``lock``)."""
        trial = self.running(trial_id)
        if status is _COMPLETED and not trial._obs:
            raise NoObservationsError(
                f"trial {trial_id} has no observation: call add_observation() before "
                "finalizing it as COMPLETED, or finalize it as FAILED"
            )
        self.seq += 1
        trial.finished_seq = self.seq
        trial.status = status
        if meta is not None:
            trial.meta = dict(meta)
        self.index.finished(trial)
        self._count(trial_id)


class MemoryStorage(Storage):
    """Studies kept in this process's memory; thread-safe; gone when the process exits.

    One instance can hold several studies and can be shared by several :class:`~poptune.Study`
    objects in different threads of one process.
    """

    def __init__(self) -> None:
        self._studies: list[_MemoryStudy] = []
        self._by_name: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- studies -------------------------------------------------------------------------
    def create_study(self, name: str, config: Mapping[str, Any]) -> int:
        with self._lock:
            if name in self._by_name:
                raise StudyMismatchError(f"a study named {name!r} already exists in this storage")
            self._studies.append(_MemoryStudy(name, config))
            self._by_name[name] = len(self._studies) - 1
            return len(self._studies) - 1

    def get_study_id(self, name: str) -> int:
        try:
            return self._by_name[name]
        except KeyError:
            raise StudyNotFoundError(f"no study named {name!r} in this storage") from None

    def _study(self, study_id: int) -> _MemoryStudy:
        try:
            study = self._studies[study_id]
        except (IndexError, TypeError):
            study = None
        if study is None:
            raise StudyNotFoundError(f"no study with id {study_id!r} in this storage")
        return study

    def get_study_config(self, study_id: int) -> dict[str, Any]:
        return dict(self._study(study_id).config)

    def list_studies(self) -> list[str]:
        return [s.name for s in self._studies if s is not None]

    def delete_study(self, name: str) -> None:
        with self._lock:
            study_id = self.get_study_id(name)
            self._studies[study_id].live = False
            self._studies[study_id] = None  # type: ignore[call-overload]
            del self._by_name[name]

    def transaction(self, study_id: int) -> AbstractContextManager[None]:
        return self._study(study_id).lock  # type: ignore[return-value]

    # -- trials ----------------------------------------------------------------------------
    def insert_trial(self, study_id: int, trial: Trial, worker: str | None = None) -> Trial:
        study = self._study(study_id)
        with study.lock:
            if trial.id != len(study.trials) + 1:
                raise StorageError(
                    f"trial id {trial.id} is not the next id {len(study.trials) + 1} "
                    f"of study {study.name!r}"
                )
            study.add_new(trial)
            # Restored trials carry their own sequence numbers.
            if trial._obs or trial.finished_seq:
                top = max([rec[2] for rec in trial._obs.values()] + [trial.finished_seq])
                study.seq = max(study.seq, top)
            return trial

    def claim_queued_trial(self, study_id: int, worker: str | None = None) -> Trial | None:
        study = self._study(study_id)
        with study.lock:
            while study.queue:
                trial = study.trials[study.queue.popleft() - 1]
                if trial.status is TrialStatus.QUEUED:
                    trial.status = TrialStatus.RUNNING
                    study.changed(trial, True)
                    return trial
            return None

    def add_observation(self, study_id: int, trial_id: int, observation: Observation) -> None:
        study = self._study(study_id)
        with study.lock:
            study.observe(trial_id, observation.iteration, observation.objective,
                          observation.context)  # fmt: skip

    def finish_trial(
        self,
        study_id: int,
        trial_id: int,
        status: TrialStatus,
        meta: dict[str, Any] | None = None,
    ) -> None:
        study = self._study(study_id)
        with study.lock:
            study.finish(trial_id, status, meta)

    def request_stop(self, study_id: int, trial_id: int) -> None:
        study = self._study(study_id)
        with study.lock:
            trial = study.running(trial_id)
            trial.stop_requested = True
            study.changed(trial, False)

    def get_trial(self, study_id: int, trial_id: int) -> Trial:
        study = self._study(study_id)
        if type(trial_id) is not int or not 0 < trial_id <= len(study.trials):
            raise UnknownTrialError(f"trial {trial_id!r} does not exist in study {study.name!r}")
        return study.trials[trial_id - 1]

    def changes_since(
        self, study_id: int, version: int, refresh: bool = True
    ) -> tuple[list[Trial], int]:
        study = self._study(study_id)
        with study.lock:
            now = study.index.version
            log = study.changelog
            if log is None:
                study.changelog, study.log_base = [], now
            if version >= now:
                return [], now
            trials = study.trials
            if version == 0 or version < study.log_base or log is None:
                return list(trials), now
            start = version - study.log_base
            return [trials[i - 1] for i in dict.fromkeys(log[start:])], now

    def trial_index(self, study_id: int) -> TrialIndex:
        return self._study(study_id).index

    # -- algorithm state -------------------------------------------------------------------
    def get_algorithm_state(self, study_id: int) -> dict[str, Any]:
        study = self._study(study_id)
        with study.lock:
            if study.pending is not None:
                study.settle()
            return study.state

    def set_algorithm_state(self, study_id: int, state: dict[str, Any]) -> None:
        study = self._study(study_id)
        with study.lock:
            study.pending = None  # ``state`` carries its own position
            study.state = state

    def memory_study(self, study_id: int) -> _MemoryStudy:
        """The study's own record (the short path of a Study in memory works on it)."""
        return self._study(study_id)
