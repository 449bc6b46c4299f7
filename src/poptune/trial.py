"""Trials, their status and their observations.

A :class:`Trial` is one training run with fixed hyperparameters. For Population Based
Training a trial is one *segment* of one population member: it may start from another
trial's checkpoint (``load_from``) and its own checkpoint goes to ``save_to``.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from poptune.exceptions import PoptuneError

__all__ = [
    "AlgorithmState",
    "Observation",
    "ObservationMap",
    "Trial",
    "TrialContext",
    "TrialStatus",
]


class TrialStatus(str, enum.Enum):
    """Status of a trial, and the ``Status`` column of the results table.

    SHERPA's four values are there: ``INTERMEDIATE`` marks a row of the results table that
    holds an observation of a trial that is still running (a row kind, never the status of a
    trial: no trial is ever INTERMEDIATE); ``COMPLETED``, ``FAILED`` and
    ``STOPPED`` are the final statuses given to :meth:`~poptune.Study.finalize`. poptune adds
    ``QUEUED`` (made, not yet handed out) and ``RUNNING`` (handed out, not finalized).

    Members compare equal to their names, so ``status == 'COMPLETED'`` works.
    """

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    INTERMEDIATE = "INTERMEDIATE"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"

    def __str__(self) -> str:
        return self.value

    @property
    def is_finished(self) -> bool:
        """True for COMPLETED, FAILED and STOPPED."""
        return self in _FINISHED


#: The finished (final) statuses: the one set every module asks.
_FINISHED = frozenset({TrialStatus.COMPLETED, TrialStatus.FAILED, TrialStatus.STOPPED})
#: Members for the per-trial paths: on Python 3.11 every class attribute of an Enum costs about
#: 70 ns (``EnumType.__getattr__`` routes each lookup through Python), a module constant 5.
_QUEUED, _RUNNING, _COMPLETED = TrialStatus.QUEUED, TrialStatus.RUNNING, TrialStatus.COMPLETED


class AlgorithmState(str, enum.Enum):
    """What an algorithm answers when it has no trial to offer.

    ``WAIT``: a trial may come once running trials finish (e.g. a PBT generation is not
    complete). ``DONE``: the algorithm will never suggest another trial.
    """

    DONE = "DONE"
    WAIT = "WAIT"

    def __str__(self) -> str:
        return self.value


class Observation(NamedTuple):
    """One reported value of the objective (an immutable tuple).

    Attributes:
        iteration: the step at which it was measured (an int, e.g. the epoch).
        objective: a finite float.
        context: extra metrics (``{'loss': 0.2}``), str keys and scalar values.
        seq: position of this event in the study's history (orders the results table);
            set by the storage.
    """

    iteration: int
    objective: float
    context: dict[str, Any] = {}  # never mutated: the storage stores a fresh dict
    seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "objective": self.objective,
            "context": self.context,
            "seq": self.seq,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Observation:
        return cls(d["iteration"], d["objective"], d.get("context") or {}, d.get("seq", 0))


class TrialCheckpoints(Protocol):
    """What a trial asks of a checkpoint store (:class:`poptune.checkpoints.CheckpointStore`
    is one); declared here so that the record does not import the store."""

    def save_path(self, trial: Trial) -> Path | str:
        """Where ``trial`` saves its checkpoint (a str for a URL or the database)."""

    def load_path(self, trial: Trial) -> Path | str | None:
        """Where ``trial`` loads its checkpoint from (None: it starts fresh)."""

    def save(self, trial: Trial, obj: Any) -> Path | str:
        """Write ``obj`` atomically to ``trial``'s checkpoint; returns its path."""

    def load(self, trial: Trial, weights_only: bool | None = None) -> Any:
        """Read the checkpoint ``trial`` starts from (None for a fresh model; CheckpointError
        when it is missing, or a pickle the store does not allow)."""


class TrialContext(Protocol):
    """What a trial that was handed out works through: whoever handed it out sets it.

    :class:`~poptune.Study` gives its trials one (reports go to the study, ``should_stop``
    asks its stopping rule, checkpoints live in its ``checkpoint_dir``);
    :class:`~poptune.Client` gives the trial of a job one (reports go to the storage). A
    trial nobody handed out has none, and working through it raises ``PoptuneError``.
    """

    def report(
        self, trial: Trial, objective: float, iteration: int, context: Mapping[str, Any] | None
    ) -> None:
        """Record ``objective`` of ``trial`` at ``iteration`` with ``context``."""

    def should_stop(self, trial: Trial) -> bool:
        """Whether ``trial`` should stop now."""

    @property
    def checkpoints(self) -> TrialCheckpoints:
        """The trials' checkpoint store (ConfigurationError when there is none)."""


#: ``meta`` keys that describe how an attempt failed; a retry does not inherit them.
_FAILURE_KEYS = frozenset(
    {"heartbeat_lost", "error", "traceback", "interrupted", "checkpoint_missing", "job_id",
     "job_status"}
)  # fmt: skip

#: How a trial stores one observation: (objective, context items or None, seq).
_Record = tuple[float, "tuple[tuple[str, Any], ...] | None", int]


class Trial:
    """One trial: an id, its parameters and what was observed.

    ``trial.parameters`` is SHERPA's dict: the hyperparameters plus, for algorithms that
    manage checkpoints, their bookkeeping keys (PBT: ``generation``, ``load_from``,
    ``save_to``, ``lineage``). The same bookkeeping is available as typed attributes.

    Users create trials only to queue them with :meth:`~poptune.Study.add_trial`
    (``Trial(id=..., parameters={...})``; the study gives it a fresh id).

    A trial is a record: :meth:`report`, :meth:`should_stop` and the checkpoint helpers work
    through the :class:`TrialContext` that whoever handed the trial out set on it (the Study,
    or a job's Client); the record itself never calls a study.

    Attributes:
        id: 1, 2, 3, ... dense within a study.
        parameters: the dict the training code reads.
        status: a :class:`TrialStatus`.
        observations: ``{iteration: Observation}`` in the order they were reported.
        meta: algorithm bookkeeping that is not a parameter (``member``, ``parent``,
            ``explore``, ...). JSON values only.
    """

    __slots__ = (
        "_context",
        "_meta",
        "_obs",
        "_stop_seen",
        "finished_seq",
        "id",
        "parameters",
        "status",
        "stop_requested",
    )

    def __init__(
        self,
        id: int,  # noqa: A002 - SHERPA's keyword
        parameters: Mapping[str, Any],
        status: TrialStatus = TrialStatus.RUNNING,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.id = id
        self.parameters: dict[str, Any] = dict(parameters)
        self.status = status if type(status) is TrialStatus else TrialStatus(status)
        # None until someone reads or sets it (most trials of a search never have any): one
        # object less per trial for the cyclic GC's full collections to visit (benchmark case 9).
        self._meta: dict[str, Any] | None = dict(meta) if meta else None
        # iteration -> (objective, context items or None, seq): plain tuples of atoms, which
        # the cyclic garbage collector stops tracking (a dict inside would keep them tracked),
        # so a study of 100k trials costs it one object per trial (benchmark case 1).
        self._obs: dict[int, _Record] = {}
        self.finished_seq = 0
        self.stop_requested = False
        self._context: TrialContext | None = None  # set by whoever hands the trial out
        self._stop_seen = False

    @property
    def meta(self) -> dict[str, Any]:
        """Algorithm bookkeeping that is not a parameter (``member``, ``parent``, ``explore``,
        ...; JSON values only): a dict that can be changed in place, ``{}`` when there is none."""
        meta = self._meta
        if meta is None:
            meta = self._meta = {}
        return meta

    @meta.setter
    def meta(self, value: dict[str, Any]) -> None:
        self._meta = value

    # -- PBT bookkeeping, typed ---------------------------------------------------------
    @property
    def generation(self) -> int | None:
        """PBT generation (1, 2, ...), or None for trials not made by PBT."""
        return self.parameters.get("generation")

    @property
    def load_from(self) -> str | None:
        """Checkpoint name to load before training ('' for a fresh model), or None."""
        return self.parameters.get("load_from")

    @property
    def save_to(self) -> str | None:
        """Checkpoint name to save to after training (the trial id as a str), or None."""
        return self.parameters.get("save_to")

    @property
    def lineage(self) -> str | None:
        """Ancestor trial ids, each followed by a comma (``'1,6,12,'``); '' for founders."""
        return self.parameters.get("lineage")

    @property
    def parent(self) -> int | None:
        """Id of the trial whose checkpoint this trial starts from, or None."""
        meta = self._meta
        return None if meta is None else meta.get("parent")

    @property
    def member(self) -> int | None:
        """Index of the PBT population member (0-based) this trial trains, or None."""
        meta = self._meta
        return None if meta is None else meta.get("member")

    @property
    def explore(self) -> str:
        """What explore changed, e.g. ``'learning_rate: 0.003391 -> 0.004069 (x1.2)'``.

        Empty for trials that were not explored.
        """
        meta = self._meta
        return "" if meta is None else meta.get("explore", "")

    @property
    def ancestors(self) -> list[int]:
        """The lineage as a list of ids, oldest first."""
        lineage = self.lineage
        return [int(x) for x in lineage.split(",") if x] if lineage else []

    # -- observations -------------------------------------------------------------------
    @property
    def is_finished(self) -> bool:
        return self.status in _FINISHED

    @property
    def device(self) -> str | None:
        """The device this process's worker was given (``optimize(devices=...)``, ``poptune
        worker --device``), as this process names it: ``"cuda:0"`` for the one GPU a worker
        sees, ``"cpu"``, ...; None when none was (environment variable ``POPTUNE_DEVICE``)."""
        return os.environ.get("POPTUNE_DEVICE") or None

    @property
    def observations(self) -> ObservationMap:
        """``{iteration: Observation}`` in the order reported (a read-only view)."""
        return ObservationMap(self._obs)

    @property
    def last_observation(self) -> Observation | None:
        """The observation with the highest iteration, or None."""
        if not self._obs:
            return None
        it = max(self._obs)
        return _observation(it, self._obs[it])

    def _best_iteration(self, lower_is_better: bool) -> int | None:
        best_it: int | None = None
        best = 0.0
        for it, (objective, _, _) in self._obs.items():
            if best_it is None or (objective < best if lower_is_better else objective > best):
                best_it, best = it, objective
        return best_it

    def best_observation(self, lower_is_better: bool) -> Observation | None:
        """The observation with the best objective (first one on ties), or None."""
        it = self._best_iteration(lower_is_better)
        return None if it is None else _observation(it, self._obs[it])

    def score(self, lower_is_better: bool, rank_by: str = "last") -> float:
        """Objective used to rank this trial: the last or the best one; NaN if none."""
        if not self._obs:
            return math.nan
        it = max(self._obs) if rank_by == "last" else self._best_iteration(lower_is_better)
        return self._obs[it][0]  # type: ignore[index]

    def _record(self, observation: Observation, seq: int | None = None) -> None:
        """Store an observation (storages call this; users call Study.add_observation), with
        ``seq`` in place of its own when given."""
        context = observation.context
        self._obs[observation.iteration] = (
            observation.objective,
            tuple(context.items()) if context else None,
            observation.seq if seq is None else seq,
        )

    # -- working on the trial (a trial handed out by a study) -----------------------------
    def _ctx(self) -> TrialContext:
        if self._context is None:
            raise PoptuneError(
                f"trial {self.id} is not attached to a live study here: report through "
                "study.add_observation(trial, ...), or client.send_metrics(...) in a script "
                "run by poptune.optimize"
            )
        return self._context

    def report(self, objective: float, iteration: int | None = None, **context: Any) -> None:
        """Record the objective at ``iteration`` (default: the next one, 1 for the first).

        ``context`` keywords are extra metrics (``trial.report(acc, iteration=3, loss=0.2)``).
        Same checks as :meth:`~poptune.Study.add_observation`.
        """
        if iteration is None:
            iteration = max(self._obs) + 1 if self._obs else 1
        self._ctx().report(self, objective, iteration, context or None)

    def should_stop(self) -> bool:
        """Whether the study's stopping rule, or a stop request, says to stop this trial now.

        When it says so and the objective returns, :meth:`~poptune.Study.optimize` finalizes
        the trial as STOPPED.
        """
        stop = bool(self._ctx().should_stop(self))
        self._stop_seen = self._stop_seen or stop
        return stop

    @property
    def checkpoint_store(self) -> Any:
        """The :class:`~poptune.checkpoints.CheckpointStore` of this trial's study (what the
        integrations save and load through). Raises ConfigurationError without one."""
        return self._ctx().checkpoints

    @property
    def checkpoint_path(self) -> Path:
        """Where this trial's checkpoint goes: ``<checkpoint_dir>/<save_to>`` (for a URL or
        ``"database://"`` a location str: save with :meth:`save_checkpoint`).

        Raises:
            ConfigurationError: the study has no ``checkpoint_dir``.
        """
        return self._ctx().checkpoints.save_path(self)

    @property
    def load_path(self) -> Path | None:
        """The checkpoint to start from, or None for a fresh model.

        Raises:
            CheckpointError: it should exist and does not.
            ConfigurationError: the study has no ``checkpoint_dir``.
        """
        return self._ctx().checkpoints.load_path(self)

    def save_checkpoint(self, obj: Any) -> Path:
        """Write ``obj`` (e.g. ``{'model': model.state_dict(), 'optimizer': ...}``) to
        :attr:`checkpoint_path` atomically and return the path.

        Written without pickle (:mod:`poptune.checkpoints`): PyTorch tensors and
        ``state_dict`` s, numpy arrays, numbers, str, bytes, and dicts, lists and tuples of
        them. Anything else needs the study's ``allow_pickle=True``.

        Raises:
            CheckpointError: ``obj`` holds something that only pickle stores (the message
                says where) and pickle is not allowed; or ``save_to`` is not a checkpoint
                name.
        """
        return self._ctx().checkpoints.save(self, obj)

    def load_checkpoint(self, weights_only: bool | None = None) -> Any:
        """Read the checkpoint this trial starts from (None for a fresh model).

        Reading never runs code unless the study has ``allow_pickle=True``: checkpoints
        written by :meth:`save_checkpoint` and PyTorch files (``torch.load(...,
        weights_only=True)``) read back; a pickle is refused. ``weights_only=True`` refuses
        pickles even when they are allowed; ``weights_only=False`` insists on a full read and
        needs ``allow_pickle``.

        Raises:
            CheckpointError: the file is missing, unreadable, or a pickle that is not allowed
                (never unpickled) — never a silent fresh start.
        """
        return self._ctx().checkpoints.load(self, weights_only)

    def _retry(self, new_id: int) -> Trial:
        """A QUEUED copy that runs this trial again under ``new_id``: same parameters (its own
        ``save_to``), ``meta['retry_of']`` naming this one and ``meta['attempt']`` counting."""
        attempt = int(self.meta.get("attempt", 1))
        params = dict(self.parameters)
        if params.get("save_to") == str(self.id):
            params["save_to"] = str(new_id)
        meta = {k: v for k, v in self.meta.items() if k not in _FAILURE_KEYS}
        meta.update(retry_of=self.id, attempt=attempt + 1)
        return Trial(new_id, params, TrialStatus.QUEUED, meta)

    # -- serialization ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "parameters": self.parameters,
            "status": self.status.value,
            "meta": self.meta,
            "observations": [o.to_dict() for o in self.observations.values()],
            "finished_seq": self.finished_seq,
            "stop_requested": self.stop_requested,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Trial:
        trial = cls(d["id"], d["parameters"], TrialStatus(d["status"]), d.get("meta"))
        for od in d.get("observations", ()):
            trial._record(Observation.from_dict(od))
        trial.finished_seq = d.get("finished_seq", 0)
        trial.stop_requested = bool(d.get("stop_requested", False))
        return trial

    def __repr__(self) -> str:
        return f"Trial(id={self.id}, status={self.status.value}, parameters={self.parameters!r})"


def _observation(iteration: int, record: _Record) -> Observation:
    objective, context, seq = record
    return Observation(iteration, objective, dict(context) if context else {}, seq)


class ObservationMap(Mapping[int, Observation]):
    """Read-only ``{iteration: Observation}`` view of a trial's observations."""

    __slots__ = ("_obs",)

    def __init__(self, records: dict[int, _Record]) -> None:
        self._obs = records

    def __getitem__(self, iteration: int) -> Observation:
        return _observation(iteration, self._obs[iteration])

    def __iter__(self) -> Iterator[int]:
        return iter(self._obs)

    def __len__(self) -> int:
        return len(self._obs)

    def __contains__(self, iteration: object) -> bool:
        return iteration in self._obs

    def __repr__(self) -> str:
        return repr(dict(self.items()))
