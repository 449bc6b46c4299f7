"""The storage contract.

A storage keeps studies: their configuration, their trials with observations, and the
algorithm's JSON state. It is deliberately narrow so that an in-memory dict, an SQLite file
and a PostgreSQL server can all implement it.

Contract, for every implementation:

* **Study lock.** ``transaction(study_id)`` is a context manager that holds the study's lock
  (re-entrant within one thread). :class:`~poptune.Study` computes a suggestion and records it
  inside one transaction, so two workers never receive the same slot. Every mutating method
  may also be called outside a transaction; it then takes the lock for itself.
* **Dense ids.** Trial ids are 1, 2, 3, ... per study. ``insert_trial`` takes the id the caller
  computed from a history synced inside the transaction and rejects any other.
* **Versions.** Every change to a study bumps its version. ``changes_since(study_id, v)``
  returns the trials changed after version ``v`` and the current version, so a reader's cost
  is proportional to what changed, not to the size of the study.
* **Authoritative checks.** ``add_observation`` and ``finish_trial`` enforce the rules that
  depend on shared state (unknown trial, finished trial, duplicate iteration, COMPLETED
  without observations) and raise the matching :mod:`poptune.exceptions` error without
  changing anything.
* **Shared indexes.** ``trial_index(study_id)`` may return the
  :class:`~poptune._trial_index.TrialIndex` the storage itself keeps of the study, updated in
  the same locked step as every change (:class:`MemoryStorage`); a
  :class:`~poptune.history.History` in the same process then shares it instead of replaying
  ``changes_since``. Storages that keep none (database storages) return None.
* **A worker's loop.** ``trial_loop(study_id)`` is the block a worker's loop of trials runs
  in; a storage may use it to send a trial's final write with the next suggestion's opening
  (:class:`SQLStorage` on PostgreSQL). The default does nothing.
* **Returned objects** are owned by the storage for :class:`MemoryStorage` (no copies, for
  speed) and are fresh copies for database storages. Callers must treat them as read-only and
  change them only through the storage's methods.
* **Rows read are checked.** A storage that reads rows back from a file or a server checks
  each one (status, JSON, shape) and raises :class:`~poptune.exceptions.CorruptRowError`
  (a StorageError) naming the study, the trial and the field instead of a ``KeyError`` or
  ``JSONDecodeError``; a corrupt trial makes its study unreadable (never silently dropped),
  not the other studies.
* **Read-only.** ``read_only`` is True for a storage opened for reading only (``load_study``,
  the ``poptune`` read commands, the dashboard): it creates, migrates and writes nothing, and
  every mutating method raises StorageError.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from poptune._trial_index import TrialIndex
from poptune.trial import Observation, Trial, TrialStatus

__all__ = ["LOST_TRANSACTION_RETRIES", "Storage"]

#: How many times an operation whose connection was lost is run again (once is the rule; the
#: second covers a replacement connection that the same server-side event had ended too).
#: Here, not beside the SQL code, so that a Study in memory imports no SQLAlchemy for it.
LOST_TRANSACTION_RETRIES = 2


class Storage(abc.ABC):
    """Abstract base class of study storages. See the module docstring for the contract."""

    #: Whether values must be JSON (True for database storages).
    requires_json: bool = False
    #: Whether this storage was opened for reading only (see the module docstring).
    read_only: bool = False

    # -- studies -------------------------------------------------------------------------
    @abc.abstractmethod
    def create_study(self, name: str, config: Mapping[str, Any]) -> int:
        """Create a study and return its id.

        Raises:
            StudyMismatchError: a study with this name already exists (use
                :meth:`get_study_id` to join it).
        """

    @abc.abstractmethod
    def get_study_id(self, name: str) -> int:
        """Id of the study named ``name``.

        Raises:
            StudyNotFoundError: no such study.
        """

    @abc.abstractmethod
    def get_study_config(self, study_id: int) -> dict[str, Any]:
        """The configuration the study was created with."""

    @abc.abstractmethod
    def list_studies(self) -> list[str]:
        """Names of all studies, oldest first."""

    @abc.abstractmethod
    def delete_study(self, name: str) -> None:
        """Delete a study and everything in it.

        Raises:
            StudyNotFoundError: no such study.
        """

    # -- locking ---------------------------------------------------------------------------
    @abc.abstractmethod
    def transaction(self, study_id: int) -> AbstractContextManager[None]:
        """Hold the study's lock for the duration of the ``with`` block (re-entrant)."""

    # -- trials ----------------------------------------------------------------------------
    @abc.abstractmethod
    def insert_trial(self, study_id: int, trial: Trial, worker: str | None = None) -> Trial:
        """Store a new trial whose ``id`` is the next dense id; return the stored trial.

        A RUNNING trial is recorded as run by ``worker`` (see :meth:`heartbeat`).

        Raises:
            StorageError: ``trial.id`` is not the next id.
        """

    @abc.abstractmethod
    def claim_queued_trial(self, study_id: int, worker: str | None = None) -> Trial | None:
        """Move the oldest QUEUED trial to RUNNING (run by ``worker``) and return it, or None."""

    @abc.abstractmethod
    def add_observation(self, study_id: int, trial_id: int, observation: Observation) -> None:
        """Record an observation (its ``seq`` is set here).

        Raises:
            UnknownTrialError, TrialFinishedError, DuplicateIterationError.
        """

    @abc.abstractmethod
    def finish_trial(
        self,
        study_id: int,
        trial_id: int,
        status: TrialStatus,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Give a running trial its final status (and, if given, replace its ``meta``:
        e.g. the error that failed it).

        Raises:
            UnknownTrialError, TrialFinishedError, NoObservationsError (COMPLETED without
            observations).
        """

    def finish_with_observation(
        self,
        study_id: int,
        trial_id: int,
        observation: Observation,
        status: TrialStatus,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """A running trial's last observation and its final status, together: what
        :meth:`add_observation` then :meth:`finish_trial` do (this default calls them in
        turn). The SQL storages write both in one transaction (PostgreSQL: one statement), so
        a trial costs one lock and one commit fewer and no reader sees the observation
        without the status. Raises what those two raise; a refused observation changes
        nothing (the trial is not finished)."""
        self.add_observation(study_id, trial_id, observation)
        self.finish_trial(study_id, trial_id, status, meta)

    @abc.abstractmethod
    def request_stop(self, study_id: int, trial_id: int) -> None:
        """Ask the trial's worker to stop it (``should_trial_stop`` then answers True)."""

    @abc.abstractmethod
    def get_trial(self, study_id: int, trial_id: int) -> Trial:
        """One trial. Raises UnknownTrialError."""

    @abc.abstractmethod
    def changes_since(
        self, study_id: int, version: int, refresh: bool = True
    ) -> tuple[list[Trial], int]:
        """Trials changed after ``version`` (each once, by id) and the current version.

        ``version`` counts this storage object's view of the study (0: nothing seen yet).
        ``refresh=False`` skips asking the database for other processes' changes (used right
        after this process's own write, whose effect is already known).
        """

    def trial_index(self, study_id: int) -> TrialIndex | None:
        """The indexes this storage keeps of the study in this process, always current (see
        the module docstring, "Shared indexes"), or None (the default: it keeps none)."""
        return None

    def trial_loop(self, study_id: int) -> AbstractContextManager[None]:
        """The block a worker's loop of trials runs in (``study.optimize``'s workers,
        ``poptune worker``): inside it a storage may send a trial's final write together with
        the opening of the next suggestion's transaction (PostgreSQL: one round trip fewer a
        trial). The default does nothing; nothing a storage does here may change what is
        stored."""
        return nullcontext()

    def iter_trials(self, study_id: int) -> Iterator[Trial]:
        """All trials of the study in id order."""
        trials, _ = self.changes_since(study_id, 0)
        return iter(sorted(trials, key=lambda t: t.id))

    # -- liveness --------------------------------------------------------------------------
    #: Whether :meth:`heartbeat` and :meth:`fail_stale_trials` do anything (a storage shared
    #: by processes); in one process a dead worker takes the whole study with it.
    supports_heartbeat: bool = False

    def heartbeat(self, study_id: int, worker: str) -> int:
        """Record that ``worker`` is alive; return how many RUNNING trials it runs."""
        return 0

    def running_trials_of(self, study_id: int, worker: str) -> list[int]:
        """Ids of the RUNNING trials recorded as run by ``worker`` (empty where workers are
        not recorded)."""
        return []

    def has_stale_trials(self, study_id: int, grace_period: float) -> bool:
        """Whether :meth:`fail_stale_trials` may find something to fail: a cheap look without
        the study's lock (a hint: the answer may be stale by the time it is read). The default
        says True, so that callers always take the locked path."""
        return True

    def fail_stale_trials(self, study_id: int, grace_period: float) -> list[int]:
        """Mark FAILED every RUNNING trial whose worker's last heartbeat is older than
        ``grace_period`` seconds (by the storage's clock); return their ids."""
        return []

    # -- algorithm state -------------------------------------------------------------------
    @abc.abstractmethod
    def get_algorithm_state(self, study_id: int) -> dict[str, Any]:
        """The algorithm's JSON state (``{}`` for a new study)."""

    @abc.abstractmethod
    def set_algorithm_state(self, study_id: int, state: dict[str, Any]) -> None:
        """Replace the algorithm's JSON state."""
