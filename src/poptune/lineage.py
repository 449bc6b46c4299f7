"""Lineage: how the trials of a Population Based Training study descend from one another.

A PBT model is the product of a chain of *segments*: a trial, the trial whose checkpoint it
loaded (its *parent*), that one's parent, and so on back to a *founder*, a trial that started
from a fresh model. The bookkeeping that records the chain is SHERPA's: every segment's
parameters carry ``generation``, ``load_from`` (the checkpoint it starts from, '' for a fresh
model), ``save_to`` (the checkpoint it writes) and ``lineage`` (its ancestors' ids, each
followed by a comma); its ``meta`` carries ``member`` (the population slot), ``parent`` and,
for an exploit, ``explore``/``replaced``.

This module is the one place these rules are written. The algorithms that make segments
(PBT in both modes, PB2, :class:`~poptune.algorithms.Replay`), the one that promotes
checkpoints (ASHA), the checkpoint store, the dashboard and :mod:`poptune.plot` all read and
build the bookkeeping through it. It sits just above the trial record: it imports trials,
the :class:`~poptune.history.History` read view and exceptions, never an algorithm, a
storage or the study.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from poptune._validation import reject
from poptune.exceptions import UnknownTrialError
from poptune.history import History
from poptune.trial import Trial

__all__ = [
    "ChildKeys",
    "checkpoint_name",
    "child_keys",
    "founder_id",
    "is_exploit",
    "is_pbt",
    "parent_id",
    "schedule",
]


def parent_id(trial: Trial) -> int | None:
    """The id of the trial whose checkpoint ``trial`` started from, or None.

    ``trial.parent`` (``meta['parent']``) when it is an int; for a trial without that record
    (e.g. one queued with ``add_trial`` copying PBT's keys), the last id of its ``lineage``;
    None for a founder or a trial outside any lineage.
    """
    parent = trial.parent
    if type(parent) is int:
        return parent
    ancestors = trial.ancestors if trial.lineage else []
    return ancestors[-1] if ancestors else None


def founder_id(trial: Trial) -> int:
    """The id of the founder ``trial`` descends from, read from the trial alone.

    The first id of its ``lineage``; without one, its parent (:func:`parent_id`); without a
    parent, the trial itself.
    """
    ancestors = trial.ancestors if trial.lineage else []
    if ancestors:
        return ancestors[0]
    parent = parent_id(trial)
    return trial.id if parent is None else parent


def checkpoint_name(trial: Trial) -> str:
    """The name of the checkpoint ``trial`` saves to: its ``save_to``, else its id.

    ``save_to`` missing (None) and ``save_to == ''`` both mean "not named": the name is then
    ``str(trial.id)``. An empty name is never returned, because a child whose ``load_from``
    is '' starts from a fresh model: reading '' as a name would silently drop the weights it
    should inherit. A ``save_to`` that is not a str (a user's ``add_trial``) is given as str.
    """
    save_to = trial.save_to
    if save_to is None or save_to == "":
        return str(trial.id)
    return str(save_to)


class ChildKeys(NamedTuple):
    """The bookkeeping of a segment, from :func:`child_keys`."""

    #: ``generation``, ``load_from``, ``save_to`` (left out when the id is not known yet)
    #: and ``lineage``, in this order.
    parameters: dict[str, Any]
    #: ``{'parent': donor.id}``, or ``{}`` for a fresh model.
    meta: dict[str, Any]


def child_keys(donor: Trial | None, generation: int, next_id: int | None) -> ChildKeys:
    """The bookkeeping of a new segment of ``generation`` that continues from ``donor``.

    ``load_from`` is the donor's :func:`checkpoint_name` and ``lineage`` the donor's lineage
    followed by the donor's id; ``meta['parent']`` is the donor's id. ``donor=None`` is a
    fresh model: ``load_from`` and ``lineage`` are '' and there is no parent. ``save_to`` is
    ``str(next_id)``, the new trial's own id; ``next_id=None`` (a plan made before the trial
    ids are known) leaves ``save_to`` out, for the caller to add when the trial is made.

    Args:
        donor: the trial whose checkpoint the segment loads (the member's own previous
            segment when it continues, the copied member's when it exploits), or None.
        generation: the segment's ``generation`` (1, 2, ...).
        next_id: the id the new trial will get, or None.
    """
    if donor is None:
        load_from, lineage, meta = "", "", {}
    else:
        load_from = checkpoint_name(donor)
        lineage = f"{donor.lineage or ''}{donor.id},"
        meta = {"parent": donor.id}
    parameters: dict[str, Any] = {"generation": generation, "load_from": load_from}
    if next_id is not None:
        parameters["save_to"] = str(next_id)
    parameters["lineage"] = lineage
    return ChildKeys(parameters, meta)


def is_exploit(trial: Trial, parent: Trial | None) -> bool:
    """Whether ``trial`` started from the weights of a different population member.

    False without a parent. When both trials name their member (``trial.member``), whether
    the members differ. Otherwise (a trial queued with ``add_trial``, or a parent outside
    the population) the trial's own record decides: it was explored (``trial.explore``) or
    replaced a member (``meta['replaced']``), which PBT writes on every exploit.
    """
    if parent is None:
        return False
    if trial.member is not None and parent.member is not None:
        return trial.member != parent.member
    return bool(trial.explore) or "replaced" in trial.meta


def is_pbt(
    trials: Iterable[Trial],
    parameter_names: Iterable[str] = (),
    reserved_keys: Iterable[str] = (),
) -> bool:
    """Whether a study's trials are PBT segments (PBT, PB2 or Replay made them).

    True when the study's algorithm declares PBT's bookkeeping (``'lineage'`` in its
    ``reserved_keys``; pass them when the algorithm is at hand, so an empty PBT study counts),
    or when some trial carries both ``generation`` and ``lineage`` as bookkeeping: a study
    with a parameter of either name (``parameter_names``) is not a PBT study, since the keys
    are then its own hyperparameters.

    Args:
        trials: the study's trials.
        parameter_names: the study's parameter names.
        reserved_keys: the ``reserved_keys`` of the study's algorithm, if known.
    """
    if "lineage" in tuple(reserved_keys):
        return True
    names = set(parameter_names)
    if "lineage" in names or "generation" in names:
        return False
    return any("lineage" in t.parameters and "generation" in t.parameters for t in trials)


def schedule(study_or_history: Any, trial: Trial | int) -> list[dict[str, Any]]:
    """The hyperparameter schedule that produced ``trial``, oldest segment first.

    Follows parent links (:func:`parent_id`) back to the founder. One entry per segment::

        {'trial': 7, 'generation': 3, 'iterations': [3, 3],
         'parameters': {'lr': 0.0081}, 'load_from': '4',
         'explore': 'lr: 0.01012 -> 0.0081 (x0.8)'}

    ``iterations`` is ``[first, last]`` of the segment's observed iterations (None if it has
    none), ``parameters`` the study parameters only (no bookkeeping keys), ``load_from`` the
    checkpoint it started from ('' for the founder), ``explore`` what explore changed when
    the segment was made ('' if nothing). A trial that is not a PBT segment gives one entry.
    :meth:`poptune.Study.schedule`, :func:`poptune.plot.schedule` and the dashboard use it;
    :class:`~poptune.algorithms.Replay` trains a fresh model along it.

    Args:
        study_or_history: a :class:`~poptune.Study` (synced now) or a
            :class:`~poptune.history.History`.
        trial: the trial or its id.

    Raises:
        TypeError: ``study_or_history`` is neither.
        UnknownTrialError: the trial (or an ancestor) is not in the study.
    """
    history = study_or_history if isinstance(study_or_history, History) else None
    if history is None:
        history = getattr(study_or_history, "history", None)
        if not isinstance(history, History):
            owner = "poptune.lineage.schedule()"
            what = "a Study or a History"
            reject(owner, "study_or_history", what, study_or_history, wrong_type=True)
    tid = trial.id if isinstance(trial, Trial) else trial
    current = history.get(tid) if isinstance(tid, int) and not isinstance(tid, bool) else None
    if current is None:
        raise UnknownTrialError(f"trial {trial!r} is not in the study")
    chain: list[Trial] = []
    while current is not None:
        chain.append(current)
        parent = parent_id(current)
        if parent is None:
            break
        if parent >= current.id:  # parents are always created before their children
            raise UnknownTrialError(f"trial {current.id} names a later trial {parent} as parent")
        nxt = history.get(parent)
        if nxt is None:
            raise UnknownTrialError(
                f"trial {current.id} loads trial {parent}, which is not in the study"
            )
        current = nxt
    return [_segment(history, t) for t in reversed(chain)]


def _segment(history: History, trial: Trial) -> dict[str, Any]:
    iterations = list(trial.observations)
    return {
        "trial": trial.id,
        "generation": trial.generation,
        "iterations": [min(iterations), max(iterations)] if iterations else None,
        "parameters": history.hyperparameters(trial),
        "load_from": trial.load_from or "",
        "explore": trial.explore,
    }
