"""The short path of a Study kept in a :class:`~poptune.storage.MemoryStorage` of this process.

The general path of a suggestion (``Study._suggest``: ``_retry.claim_or_suggest``, a
``WriteBlock``, ``_suggestion.new_trial``, ``Study._insert``) is written for every storage:
it retries a lost transaction, syncs the History, claims a queued trial, reads and writes
the algorithm state through the storage. In memory nothing of that can fail or needs
reading: the History shares the storage's indexes, the state is the storage's own dict. So
:func:`suggest` does the same steps, in the same order and under the same two locks (the
Study's, then the storage's study lock), on the storage's study record directly.

It also leaves the random stream's position (stream 2) unwritten until someone reads the
state (``MemoryStorage.get_algorithm_state``, :func:`settle`): the position is the
generator's, which moves only when the next suggestion draws from it, so what a reader
gets is what the general path would have written after the last suggestion.

It answers None where the general path must run: a queued trial to claim, a write block
already open in this thread (a nested suggestion), a study deleted from its storage. Where
it applies is decided when the Study is bound to its storage (:func:`record_of`): an exact
MemoryStorage, no heartbeat. :func:`observe` and :func:`finish` record on the same record
where no callback is to be told and no checkpoint collected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from poptune.storage.memory import MemoryStorage
from poptune.study._suggestion import checked_observation, final_status, trial_id, unpack
from poptune.trial import _RUNNING, AlgorithmState, Trial, TrialStatus

if TYPE_CHECKING:
    from poptune.study.study import Study

__all__ = ["finish", "observe", "record_of", "settle", "suggest"]

_DONE = AlgorithmState.DONE
_WAIT = AlgorithmState.WAIT


def record_of(study: Study) -> Any:
    """The storage's record of ``study`` where the short path applies, else None."""
    storage = study._storage
    if type(storage) is not MemoryStorage or study._heartbeat is not None:
        return None
    if study._history._ix is not storage.trial_index(study._study_id):
        return None  # a History that does not share the storage's indexes
    return storage.memory_study(study._study_id)


def settle(study: Study) -> None:
    """Write the random stream's position into the stored state now, if it is pending (what
    ``study.history.state`` shows between suggestions, as on the general path)."""
    record = study._mem
    if record is not None and record.pending is not None:
        with record.lock:
            record.settle()


def suggest(study: Study, max_trial_id: int | None) -> Trial | AlgorithmState | None:
    """``Study._suggest`` in memory: the algorithm's next trial inserted (its
    ``on_trial_start`` fired), WAIT or DONE; None where the general path must run."""
    record = study._mem
    history = study._history
    with study._lock, record.lock:
        if record.queue or not record.live or study._next_id is not None:
            return None
        trials, index = record.trials, record.index
        number = len(trials) + 1
        history.version = index.version
        history.next_trial_id = number
        if max_trial_id is not None and number > max_trial_id:
            return _DONE
        study._next_id = number
        try:
            stream = study._rng
            if record.pending is stream:  # stream 2, moved last by this generator: as _ask
                history.state = record.state
                try:
                    result = study.algorithm.suggest(history, stream.generator)
                finally:
                    record.pending = stream
                record.state = history.state
            else:
                result = _ask(study, record, history, number)
            if result is None or result is _DONE:
                return _DONE
            if result is _WAIT:
                return _WAIT
            params, meta = unpack(study, result)
            trial = Trial(number, params, _RUNNING, meta)
            trial._context = study._context
            record.add_new(trial)
        finally:
            study._next_id = None
            history.version = index.version
            history.next_trial_id = len(trials) + 1
        study._handed_out.add(number)
    if study._callbacks.items:
        study._callbacks.trial_started(study, trial)
    return trial


def _ask(study: Study, record: Any, history: Any, number: int) -> Any:
    """The algorithm's answer for trial ``number``; its state is stored whatever it answered
    (``_suggestion.new_trial``'s steps, on the record)."""
    stream = study._rng
    history.state = state = record.state
    if stream.stream == 2:
        pending = record.pending
        if pending is stream:  # this generator wrote the last position: it is there
            generator = stream.generator
        else:
            if pending is not None:  # another Study object's stream moved last
                record.settle()
            generator = stream.begin(state, number)
            stream.hold()  # from now on its position is written when the state is read
        try:
            result = study.algorithm.suggest(history, generator)
        finally:
            record.pending = stream
    else:
        generator = stream.begin(state, number)
        try:
            result = study.algorithm.suggest(history, generator)
        finally:
            stream.end(state, history.state)
    record.state = history.state
    return result


def observe(
    study: Study,
    trial: Trial | int,
    objective: Any,
    iteration: Any,
    context: Mapping[str, Any] | None,
) -> bool:
    """``Study.add_observation`` on the storage's record, where nothing else is to be done
    (writable, no callback to tell): checked and recorded, True (or its error raised); False
    where ``Study.add_observation`` takes the general path."""
    record = study._mem
    if study._read_only or not record.live or study._callbacks.items:
        return False
    tid, value, it, ctx = checked_observation(study, trial, objective, iteration, context)
    with record.lock:
        record.observe(tid, it, value, ctx)
    return True


def finish(study: Study, trial: Trial | int, status: TrialStatus | str, meta: Any) -> bool:
    """``Study.finalize`` on the storage's record, where nothing follows (writable, no
    callback, no checkpoints to collect): checked and finished, True (or its error raised);
    False where ``Study.finalize`` takes the general path."""
    record = study._mem
    if study._read_only or not record.live or study._callbacks.items:
        return False
    if study.keep_checkpoints is not None:
        return False
    tid = trial_id(study, trial)
    final = final_status(tid, status)
    with record.lock:
        record.finish(tid, final, meta)
    return True
