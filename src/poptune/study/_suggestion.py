"""Asking the algorithm for the next trial (``Study.get_suggestion``'s inner step).

:func:`new_trial` runs inside ``Study._writing()`` (the Study lock, the storage's study lock,
a synced History): the algorithm reads the History and its JSON state, answers, and what it
noted in its state is written back whatever it answered.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from poptune._validation import (
    CHECKPOINT_FIELDS,
    check_context,
    check_iteration,
    check_objective,
    checkpoint_fields_problem,
)
from poptune.algorithms.base import Suggestion, protocol_name
from poptune.checkpoints import check_parameter_names
from poptune.exceptions import (
    ConfigurationError,
    InvalidObservationError,
    InvalidParameterError,
    InvalidStatusError,
    UnknownTrialError,
)
from poptune.trial import _FINISHED, AlgorithmState, Trial, TrialStatus

if TYPE_CHECKING:
    from poptune.study.study import Study

__all__ = [
    "checked_observation",
    "final_status",
    "new_trial",
    "queued_parameters",
    "trial_id",
    "unpack",
]

_CHECKPOINT_FIELDS = frozenset(CHECKPOINT_FIELDS)


def new_trial(study: Study, number: int, max_trial_id: int | None) -> Trial | AlgorithmState:
    """The algorithm's trial ``number`` (RUNNING, not stored yet), WAIT or DONE; DONE rather
    than a trial above ``max_trial_id``."""
    if max_trial_id is not None and number > max_trial_id:
        return AlgorithmState.DONE
    storage, sid, history, stream = study._storage, study._study_id, study._history, study._rng
    history.state = state = storage.get_algorithm_state(sid)
    generator = stream.begin(state, number)  # stream 2: its position, out of the state
    try:
        result = study.algorithm.suggest(history, generator)
    finally:
        stream.end(state, history.state)
    # What the algorithm noted is kept whatever it answered, on every storage.
    storage.set_algorithm_state(sid, history.state)
    if result is None or result is AlgorithmState.DONE:
        return AlgorithmState.DONE
    if result is AlgorithmState.WAIT:
        return AlgorithmState.WAIT
    params, meta = unpack(study, result)
    return Trial(number, params, TrialStatus.RUNNING, meta)


def unpack(study: Study, result: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A suggestion's parameters and meta, or ConfigurationError naming the algorithm."""
    if type(result) is dict:  # the common answer, checked in two set operations
        if study._history.parameter_set <= result.keys() and _CHECKPOINT_FIELDS.isdisjoint(result):
            return result, None
        params, meta = result, None
    elif isinstance(result, Suggestion):
        params, meta = result.parameters, result.meta
    elif isinstance(result, dict):
        params, meta = result, None
    else:
        raise ConfigurationError(
            f"{protocol_name(study.algorithm)} returned {result!r}; expected a dict, a "
            "Suggestion, AlgorithmState.WAIT or AlgorithmState.DONE"
        )
    for parameter in study._history.parameter_names:
        if parameter not in params:
            raise ConfigurationError(
                f"{protocol_name(study.algorithm)} gave no value for parameter {parameter!r}: "
                f"{params!r}"
            )
    if not _CHECKPOINT_FIELDS.isdisjoint(params):  # checked where given
        problem = checkpoint_fields_problem(params)  # the algorithm is named only in an error
        if problem is not None:
            raise ConfigurationError(f"{protocol_name(study.algorithm)}: {problem}")
    return params, meta


def queued_parameters(study: Study, trial: Trial | Mapping[str, Any]) -> dict[str, Any]:
    """``add_trial``'s parameters, checked: every study parameter given and in its range, and
    ``load_from`` / ``save_to`` checkpoint names (never paths); else InvalidParameterError."""
    params = dict(trial.parameters if isinstance(trial, Trial) else trial)
    for p in study.parameters:
        if p.name not in params:
            raise InvalidParameterError(
                f"add_trial: no value for parameter {p.name!r} in {params!r}"
            )
        params[p.name] = p.validate_value(params[p.name])
    check_parameter_names(params, "add_trial")
    return params


def trial_id(study: Study, trial: Trial | int) -> int:
    """``Study._trial_id``: the id of ``trial`` (a Trial or an int). A Trial this study did
    not hand out must carry every study parameter. Raises InvalidObservationError (one is
    missing) or UnknownTrialError (neither a Trial nor an int)."""
    if isinstance(trial, Trial):
        if trial._context is study._context:  # handed out by this study: checked then
            return trial.id
        params = trial.parameters
        for name in study._history.parameter_names:
            if name not in params:
                raise InvalidObservationError(
                    f"trial {trial.id} has no value for study parameter {name!r}"
                )
        return trial.id
    if isinstance(trial, numbers.Integral) and not isinstance(trial, bool):
        return int(trial)
    raise UnknownTrialError(f"expected a Trial or a trial id, got {trial!r}")


def checked_observation(
    study: Study,
    trial: Trial | int,
    objective: Any,
    iteration: Any,
    context: Mapping[str, Any] | None,
) -> tuple[int, float, int, dict[str, Any] | None]:
    """``Study.add_observation``'s arguments checked: the trial id, the objective as a finite
    float, the iteration as an int, the context (None when empty); the errors it documents."""
    tid = trial_id(study, trial)
    value = check_objective(objective, tid)
    it = iteration if type(iteration) is int else check_iteration(iteration, tid)
    ctx = check_context(context, tid, study._reserved_context) if context else None
    return tid, value, it, ctx


#: A final status by its value; TrialStatus is a str enum, so a member finds itself too.
_FINAL = {status.value: status for status in _FINISHED}


def final_status(tid: int, status: TrialStatus | str) -> TrialStatus:
    """``Study.finalize``'s status checked: COMPLETED, FAILED or STOPPED (a member or its
    value), else InvalidStatusError naming it."""
    final = _FINAL.get(status)  # type: ignore[call-overload]
    if final is None:
        raise InvalidStatusError(
            f"trial {tid}: unknown final status {status!r}; expected 'COMPLETED', "
            "'FAILED' or 'STOPPED'"
        )
    return final
