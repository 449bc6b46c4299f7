"""Replay: the hyperparameter schedule that produced a PBT trial, and re-training along it.

A PBT model is the product of a chain of segments: the trial, the trial whose checkpoint it
loaded (its parent), that one's parent, and so on back to a founder. Each segment trained
with its own hyperparameters, so the chain is a *schedule*: "``lr`` 0.01 for the first
segment, then 0.008 for two more, then ...". :func:`poptune.lineage.schedule` reads it from
a study (it is re-exported here as ``poptune.algorithms.pbt.replay.schedule``), and
:class:`Replay` trains a fresh model along it (to reproduce the best model, or to train a
bigger one with the schedule PBT discovered).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from poptune._validation import reject
from poptune.algorithms.base import Algorithm, Suggestion, SuggestResult
from poptune.exceptions import ConfigurationError, InvalidParameterError
from poptune.history import History
from poptune.lineage import checkpoint_name, child_keys, schedule
from poptune.parameters import Parameter
from poptune.trial import AlgorithmState, Trial, TrialStatus

__all__ = ["Replay", "schedule"]

logger = logging.getLogger("poptune.pbt")

#: Key of Replay's bookkeeping in ``history.state``.
STATE_KEY = "replay"


class Replay(Algorithm):
    """Re-train one model along a hyperparameter schedule (from :func:`schedule`).

    Suggests one trial per segment, in order, each with that segment's ``parameters`` and
    PBT's bookkeeping: ``generation`` (the segment's, or its position 1, 2, ... if it has
    none), ``load_from`` (the previous replay trial's ``save_to``; '' for the first),
    ``save_to`` (its own id) and ``lineage`` (the previous replay trials' ids, each followed
    by a comma); ``trial.member`` is 0 and ``trial.parent`` the previous replay trial. It
    answers ``WAIT`` while the previous segment runs and ``DONE`` after the last segment. A
    segment that FAILED or was STOPPED ends the replay (``DONE``, logged as an error): what
    comes next would start from a checkpoint that does not exist; a study with
    ``retry_failed_trials`` re-runs a segment whose worker died instead (the re-queued trial
    counts as the segment). Train each segment for as many iterations as the original did
    (``iterations`` in its entry) to reproduce it.

    Its state is ``history.state['replay']``: the next segment (``next``) and the latest
    trial handed out (``last``), so any process sharing the study hands out the next segment
    exactly once.

    Args:
        schedule: the list :func:`schedule` returns (entries need at least ``parameters``).

    Raises:
        ConfigurationError: an empty schedule, an entry without a ``parameters`` dict, or
            (when the study is created) parameters that do not fit the study's.
    """

    reserved_keys = ("generation", "load_from", "save_to", "lineage")

    def __init__(self, schedule: Sequence[Mapping[str, Any]]) -> None:
        if isinstance(schedule, (str, bytes, Mapping)) or not isinstance(schedule, Sequence):
            reject("Replay", "schedule", "a list of segments", schedule, wrong_type=True)
        if not schedule:
            raise ConfigurationError("Replay: schedule must have at least one segment, got []")
        segments: list[dict[str, Any]] = []
        for i, entry in enumerate(schedule):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("parameters"), Mapping):
                what = "a dict with a 'parameters' dict"
                wrong_type = not isinstance(entry, Mapping)
                reject("Replay", f"schedule[{i}]", what, entry, wrong_type=wrong_type)
            generation = entry.get("generation")
            if generation is not None and (type(generation) is not int or generation < 1):
                # exactly an int (as stored): numpy integers are refused here
                reject("Replay", f"schedule[{i}]['generation']", "an int >= 1 or None",
                       generation, wrong_type=type(generation) is not int)  # fmt: skip
            segment = dict(entry)
            segment["parameters"] = dict(entry["parameters"])
            segments.append(segment)
        self.schedule = segments

    def setup(self, parameters: Sequence[Parameter], lower_is_better: bool) -> None:
        super().setup(parameters, lower_is_better)
        for i, entry in enumerate(self.schedule):
            given = entry["parameters"]
            for p in parameters:
                if p.name not in given:
                    raise ConfigurationError(
                        f"Replay: schedule[{i}] has no value for the study parameter {p.name!r}"
                    )
                try:
                    p.validate_value(given[p.name])
                except InvalidParameterError as exc:
                    raise ConfigurationError(
                        f"Replay: schedule[{i}]['parameters'][{p.name!r}] = {given[p.name]!r} "
                        f"does not fit the study: {exc}"
                    ) from None

    def get_config(self) -> dict[str, Any]:
        return {"schedule": [dict(e, parameters=dict(e["parameters"])) for e in self.schedule]}

    def pending_checkpoints(self, history: History) -> set[str]:
        state = history.state.get(STATE_KEY)
        if not state or state["next"] >= len(self.schedule) or state["last"] is None:
            return set()
        last = _latest_attempt(history, state["last"])
        return {checkpoint_name(last)} if last is not None else set()

    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        state = history.state.setdefault(STATE_KEY, {"next": 0, "last": None})
        k = state["next"]
        if state.get("ended"):
            return AlgorithmState.DONE
        previous: Trial | None = None
        if state["last"] is not None:
            previous = _latest_attempt(history, state["last"])
            if previous is None:  # pragma: no cover - ids are dense
                return AlgorithmState.WAIT
            if not previous.is_finished:
                return AlgorithmState.WAIT
            if previous.status is not TrialStatus.COMPLETED:
                logger.error(
                    "Replay: segment %d (trial %d) ended %s; the replay stops here",
                    k,
                    previous.id,
                    previous.status.value,
                )
                state["ended"] = True
                return AlgorithmState.DONE
        if k >= len(self.schedule):
            return AlgorithmState.DONE
        entry = self.schedule[k]
        given = entry["parameters"]
        config = {p.name: p.validate_value(given[p.name]) for p in history.parameters}
        tid = history.next_trial_id
        keys = child_keys(previous, entry.get("generation") or k + 1, tid)
        config.update(keys.parameters)
        meta: dict[str, Any] = {"member": 0, "replay_segment": k, **keys.meta}
        if entry.get("trial") is not None:
            meta["replay_of"] = entry["trial"]
        state["next"] = k + 1
        state["last"] = tid
        return Suggestion(config, meta)


def _latest_attempt(history: History, tid: int) -> Trial | None:
    """The trial ``tid``, or the latest re-queued copy of it (``meta['retry_of']``)."""
    latest = history.get(tid)
    for other in range(tid + 1, history.next_trial_id):
        trial = history.get(other)
        if trial is not None and trial.meta.get("retry_of") in (tid, latest.id if latest else None):
            latest = trial
    return latest
