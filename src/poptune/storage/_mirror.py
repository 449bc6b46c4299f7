"""A process's synced copy of the studies it reads from an SQL database (the *mirror*).

Each study's :class:`Mirror` holds the trials and observations this process has seen and the
database version it is complete up to. This module opens no connections: :class:`~poptune.
storage.sql.SQLStorage` hands it a *channel* (a connection it opened, see
:class:`~poptune.storage._transaction.Direct`) to read the rows changed after that version
(:func:`read_locked`, :func:`read_snapshot`) as :class:`Changes`, applied by
:meth:`Mirrors.refresh`; and applies its own writes once they commit (:meth:`Mirrors.commit`,
never before: a rolled-back transaction leaves no trace). Rows hold
current state and observations are keyed by iteration, so the same change applied twice (an
own write, then read back) is harmless.

Thread safety: a storage's threads share its :class:`Mirrors`; every read and change of a
mirror happens with :attr:`Mirrors.lock` held. The :class:`~poptune.trial.Trial` objects are
shared, not copied: callers read them and never change them.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa

from poptune.exceptions import CorruptRowError, StudyNotFoundError
from poptune.storage._statements import (
    COMMIT,
    SEL_OBS,
    SEL_OBS_AFTER,
    SEL_TRIALS,
    SEL_TRIALS_AFTER,
    STUDY_VERSION,
)
from poptune.trial import Observation, Trial, TrialStatus

__all__ = [
    "Changes",
    "Mirror",
    "Mirrors",
    "check_config",
    "decode_json",
    "decode_status",
    "read_locked",
    "read_snapshot",
    "reads_after",
]

_STATUS = {s.value: s for s in TrialStatus}


def _where(trial_id: Any, field: str) -> str:
    return f"trial {trial_id!r}: field {field!r}" if trial_id is not None else f"field {field!r}"


def decode_json(text: Any, field: str, trial_id: Any = None, *, kind: type = dict) -> Any:
    """A JSON column read back: a ``kind`` (a dict by default), or CorruptRowError naming the
    trial and the field (and showing the start of the bad text)."""
    if not isinstance(text, str):
        raise CorruptRowError(f"{_where(trial_id, field)} is {text!r}, not JSON text")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CorruptRowError(
            f"{_where(trial_id, field)} is not valid JSON ({exc}): {text[:80]!r}"
        ) from None
    if not isinstance(value, kind):
        raise CorruptRowError(
            f"{_where(trial_id, field)} holds {type(value).__name__} {text[:80]!r}, "
            f"expected a JSON {'object' if kind is dict else kind.__name__}"
        )
    return value


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """A study's stored configuration, or CorruptRowError naming what it lacks."""
    missing = [k for k in ("parameters", "algorithm", "lower_is_better") if k not in config]
    if missing or not isinstance(config["parameters"], list):
        what = missing or "a list of parameters"
        raise CorruptRowError(f"field 'config' lacks {what}: {str(config)[:80]}")
    return config


def decode_status(value: Any, trial_id: Any) -> TrialStatus:
    """A status column read back, or CorruptRowError naming the trial and the value."""
    status = _STATUS.get(value) if isinstance(value, str) else None
    if status is None:
        raise CorruptRowError(
            f"{_where(trial_id, 'status')} is {value!r}, not a trial status ({', '.join(_STATUS)})"
        )
    return status


def _decode_int(value: Any, field: str, trial_id: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CorruptRowError(f"{_where(trial_id, field)} is {value!r}, not an integer")
    return value


_Row = tuple[int, TrialStatus, Any, Any, bool, int]


def _decode_trial(row: Sequence[Any]) -> _Row:
    if len(row) != 6:
        raise CorruptRowError(f"a trial row has {len(row)} columns, expected 6: {row!r}")
    tid, status, params, meta, stop, fseq = row
    tid = _decode_int(tid, "trial_id", tid)
    if stop not in (0, 1, True, False):
        raise CorruptRowError(f"{_where(tid, 'stop_requested')} is {stop!r}, not a boolean")
    return (
        tid,
        decode_status(status, tid),
        decode_json(params, "parameters", tid),
        decode_json(meta, "meta", tid),
        bool(stop),
        _decode_int(fseq, "finished_seq", tid),
    )


def _decode_observation(row: Sequence[Any], known: Any) -> tuple[int, int, float, Any, int]:
    if len(row) != 5:
        raise CorruptRowError(f"an observation row has {len(row)} columns, expected 5: {row!r}")
    tid, it, objective, context, seq = row
    tid = _decode_int(tid, "trial_id", tid)
    if tid not in known:
        raise CorruptRowError(f"an observation of trial {tid} names no trial of the study")
    it = _decode_int(it, "iteration", tid)
    if isinstance(objective, bool) or not isinstance(objective, (int, float)):
        raise CorruptRowError(
            f"{_where(tid, 'objective')} at iteration {it} is {objective!r}, not a number"
        )
    if not math.isfinite(objective):
        raise CorruptRowError(f"{_where(tid, 'objective')} at iteration {it} is {objective!r}")
    items = None
    if context:
        items = tuple(decode_json(context, f"context (iteration {it})", tid).items())
    return tid, it, float(objective), items, _decode_int(seq, "seq", tid)


class Changes(NamedTuple):
    """Rows read from the database: everything a study changed up to ``version``."""

    #: The mirror is complete up to this version once the rows are applied.
    version: int
    #: ``(trial_id, status, parameters, meta, stop_requested, finished_seq)``, any order.
    trials: Sequence[Sequence[Any]]
    #: ``(trial_id, iteration, objective, context, seq)``, in ``seq`` order.
    observations: Sequence[Sequence[Any]]


#: What a write does to the mirror once it commits, given the write's version.
Apply = Callable[["Mirror", int], None]


class Mirror:
    """This process's copy of one study."""

    __slots__ = ("changelog", "db_version", "queued", "trials")

    def __init__(self) -> None:
        self.trials: dict[int, Trial] = {}
        #: Trial ids in the order of their changes here (``changes_since`` counts in it).
        self.changelog: list[int] = []
        #: The database version this copy is complete up to.
        self.db_version = 0
        self.queued: set[int] = set()

    def touch(self, trial: Trial) -> None:
        """Log a change of ``trial``."""
        self.changelog.append(trial.id)
        if trial.status is TrialStatus.QUEUED:
            self.queued.add(trial.id)
        else:
            self.queued.discard(trial.id)

    def since(self, version: int) -> tuple[list[Trial], int]:
        """The trials changed after local version ``version``, and the current one."""
        log = self.changelog
        if version >= len(log):
            return [], len(log)
        if version == 0:
            return sorted(self.trials.values(), key=lambda t: t.id), len(log)
        trials = self.trials
        return [trials[i] for i in dict.fromkeys(log[version:])], len(log)

    def apply(self, changes: Changes) -> None:
        """Apply rows read from the database; the mirror is then complete up to their version.

        Every row is checked before any is applied (:func:`decode_json`, :func:`decode_status`):
        a corrupt one raises :class:`~poptune.exceptions.CorruptRowError` naming the trial and
        the field, and leaves the mirror as it was.

        Raises:
            CorruptRowError: a row that cannot be read back.
        """
        trials = self.trials
        rows = sorted((_decode_trial(r) for r in changes.trials), key=lambda r: r[0])
        known = trials.keys() | {r[0] for r in rows}
        obs_rows = [_decode_observation(r, known) for r in changes.observations]
        for tid, status, params, meta, stop, fseq in rows:
            trial = trials.get(tid)
            if trial is None:
                trial = trials[tid] = Trial(tid, params, status)
            else:
                trial.status = status
            trial.meta = meta
            trial.stop_requested = stop
            trial.finished_seq = fseq
        for tid, it, objective, items, seq in obs_rows:
            trials[tid]._obs[it] = (objective, items, seq)
        for tid in dict.fromkeys([r[0] for r in rows] + [r[0] for r in obs_rows]):
            self.touch(trials[tid])
        self.db_version = changes.version

    # -- this process's own writes, once committed (each an :data:`Apply`) ---------------------
    def insert(self, trial: Trial, version: int) -> None:
        """A new trial (its observations and a final status are numbered ``version``)."""
        if trial.status.is_finished:
            trial.finished_seq = version
        trial._obs = {it: (o, c, version) for it, (o, c, _s) in trial._obs.items()}
        self.trials[trial.id] = trial
        self.touch(trial)

    def claim(self, trial: Trial, version: int) -> None:
        """A queued trial now running."""
        trial.status = TrialStatus.RUNNING
        self.touch(trial)

    def record(self, trial_id: int, observation: Observation, version: int) -> None:
        """An observation (numbered ``version``)."""
        trial = self.trials.get(trial_id)
        if trial is not None:
            trial._record(observation, version)
            self.touch(trial)

    def finish(
        self, trial_id: int, status: TrialStatus, meta: dict[str, Any] | None, version: int
    ) -> None:
        """A final status (and metadata, unless None)."""
        trial = self.trials.get(trial_id)
        if trial is not None:
            trial.status = status
            trial.finished_seq = version
            if meta is not None:
                trial.meta = dict(meta)
            self.touch(trial)

    def stop(self, trial_id: int, version: int) -> None:
        """A stop request."""
        trial = self.trials.get(trial_id)
        if trial is not None:
            trial.stop_requested = True
            self.touch(trial)


class Mirrors:
    """The mirrors of one storage's studies, shared by its threads."""

    def __init__(self) -> None:
        self._mirrors: dict[int, Mirror] = {}
        #: Held for every read and change of a mirror (re-entrant).
        self.lock = threading.RLock()

    def get(self, study_id: int) -> Mirror:
        """The study's mirror as it is (empty if none yet)."""
        mirror = self._mirrors.get(study_id)  # one dict read: no lock needed to find it
        if mirror is not None:
            return mirror
        with self.lock:
            mirror = self._mirrors.get(study_id)
            if mirror is None:
                mirror = self._mirrors[study_id] = Mirror()
            return mirror

    def complete(self, study_id: int, version: int) -> Mirror | None:
        """The study's mirror if it is complete up to ``version`` (nothing to read), else None."""
        mirror = self._mirrors.get(study_id)
        return mirror if mirror is not None and mirror.db_version >= version else None

    def drop(self, study_id: int) -> None:
        """Forget a study (deleted)."""
        with self.lock:
            self._mirrors.pop(study_id, None)

    def refresh(self, study_id: int, read: Callable[[int], Changes | None]) -> Mirror:
        """Bring the study's mirror up to date with ``read(version)``: the changes after that
        version, or None if there are none. Changes up to an older version than the mirror's
        mean the study was deleted and made again: the mirror starts over."""
        with self.lock:
            mirror = self.get(study_id)
            while True:
                changes = read(mirror.db_version)
                if changes is None or changes.version == mirror.db_version:
                    return mirror
                if changes.version < mirror.db_version:
                    mirror = self._mirrors[study_id] = Mirror()
                    continue
                mirror.apply(changes)
                return mirror

    def catch_up(self, study_id: int, base: Mirror, changes: Changes) -> None:
        """Apply changes read after ``base``'s version, unless it was replaced meanwhile (then
        the next refresh reads what it needs) or has moved past them."""
        with self.lock:
            if self._mirrors.get(study_id) is base and base.db_version < changes.version:
                base.apply(changes)

    def commit(
        self, study_id: int, version: int, applies: Iterable[Apply],
        changes: Changes | None = None, base: Mirror | None = None,
    ) -> None:  # fmt: skip
        """A transaction that made version ``version`` committed: apply its writes. With
        ``changes`` (read in it, after its writes, so complete up to ``version``) and ``base``
        (the mirror they were read after), the mirror catches up with them too."""
        with self.lock:
            mirror = self.get(study_id)
            for apply in applies:
                apply(mirror, version)
            if changes is not None and mirror is base and mirror.db_version < changes.version:
                mirror.apply(changes)
            elif mirror.db_version == version - 1:
                mirror.db_version = version


# -- reading the changes (through a channel the storage opened) -------------------------------
def reads_after(study_id: int, lo: int) -> list[tuple[sa.TextClause, dict[str, Any]]]:
    """The reads of a study's changes after version ``lo``, with no upper bound: where one is
    implied (after the study's lock, nothing above the version before it is committed; in a
    ``REPEATABLE READ`` snapshot, the study's version read in it bounds every row it sees)."""
    bounds = {"sid": study_id, "lo": lo}
    return [(SEL_TRIALS_AFTER, bounds), (SEL_OBS_AFTER, bounds)]


def read_locked(channel: Any, study_id: int, lo: int, upto: int) -> Changes | None:
    """In the transaction that holds the study's lock: the changes after version ``lo`` up to
    ``upto``, the version before the lock (None if there are none)."""
    if lo >= upto:
        return None
    bounds = {"sid": study_id, "lo": lo, "hi": upto}
    (trials, _), (obs, _) = channel.query((SEL_TRIALS, bounds), (SEL_OBS, bounds))
    return Changes(upto, trials, obs)


def read_snapshot(channel: Any, study_id: int, lo: int) -> Changes | None:
    """Outside transactions: the changes after version ``lo``, read in one snapshot (None if
    there are none). Pipelined, one round trip; else one when nothing changed, and otherwise
    a snapshot bounded by the study's version."""
    sid = {"sid": study_id}
    if channel.pipelined:
        answers = channel.query(
            (channel.dialect.begin_read, None), (STUDY_VERSION, sid), *reads_after(study_id, lo),
            (COMMIT, None),
        )  # fmt: skip
        rows, trials, obs = answers[1][0], answers[2][0], answers[3][0]
    else:
        rows = channel.query((STUDY_VERSION, sid))[0][0]
        if rows and rows[0][0] == lo:
            return None
        answers = channel.query((channel.dialect.begin_read, None), (STUDY_VERSION, sid))
        rows = answers[1][0]
        trials = obs = ()
        if rows and rows[0][0] > lo:
            bounds = {"sid": study_id, "lo": lo, "hi": rows[0][0]}
            (trials, _), (obs, _) = channel.query((SEL_TRIALS, bounds), (SEL_OBS, bounds))
        channel.query((COMMIT, None))
    if not rows:
        raise StudyNotFoundError(f"no study with id {study_id!r} in {channel.where}")
    return Changes(rows[0][0], trials, obs)
