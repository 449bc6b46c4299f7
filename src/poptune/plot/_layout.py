"""The population-lanes layout of a PBT study, as data: which trial sits in which lane at
which generation, and which segments copied another member's weights.

One lane per population member (``trial.member``), one column per generation: the cell at
(lane, generation) is that member's segment of that generation. An *exploit* (the segment
loaded another member's checkpoint, :func:`poptune.lineage.is_exploit`) is an arrow from the
donor's cell to the receiver's. Parent links and the exploit rule come from
:mod:`poptune.lineage`; nothing here re-derives them. Both :func:`poptune.plot.population_lanes`
(matplotlib) and the dashboard's population view (``/api/studies/{name}/population``) draw
this layout, so the two always agree. No matplotlib here: the dashboard imports it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from poptune._validation import check_choice
from poptune.lineage import is_exploit, parent_id
from poptune.trial import Trial

__all__ = ["LaneCell", "LaneExploit", "PopulationLayout", "VALUES", "layout_lanes"]

#: What a cell's colour shows: the segment's last observation (what PBT ranks by, unless
#: its ``rank_by`` says otherwise) or its best one.
VALUES = ("last", "best")


@dataclass(frozen=True)
class LaneCell:
    """One member's segment of one generation."""

    trial: Trial
    lane: int  # index into PopulationLayout.lanes
    generation: int
    objective: float | None  # None: no (finite) observation yet
    attempts: int  # trials made for this (member, generation): 2+ after a retry


@dataclass(frozen=True)
class LaneExploit:
    """A segment that started from another member's weights: an arrow donor -> receiver."""

    donor: int  # trial id
    receiver: int  # trial id
    from_lane: int
    from_generation: int
    to_lane: int
    to_generation: int


@dataclass
class PopulationLayout:
    """The lanes of a study (see :func:`layout_lanes`)."""

    #: Lane labels, top to bottom: ``'member 3'``, or ``'trial 17'`` for a lane of trials
    #: without a member record (one queued with ``add_trial``) that started a line of its own.
    lanes: list[str] = field(default_factory=list)
    #: The member id of each lane (None for a ``'trial N'`` lane).
    members: list[Any] = field(default_factory=list)
    #: Every generation that has a cell, ascending.
    generations: list[int] = field(default_factory=list)
    #: One per (lane, generation) that has a trial, in lane then generation order.
    cells: list[LaneCell] = field(default_factory=list)
    #: One per cell whose segment exploited, in receiver id order.
    exploits: list[LaneExploit] = field(default_factory=list)
    #: Trials not drawn: without an int ``generation`` (not PBT segments).
    skipped: int = 0


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _objective(trial: Trial, value: str, lower_is_better: bool) -> float | None:
    obs = trial.last_observation if value == "last" else trial.best_observation(lower_is_better)
    return None if obs is None else _finite(obs.objective)


def _generation(trial: Trial) -> int | None:
    generation = trial.generation
    if isinstance(generation, int) and not isinstance(generation, bool):
        return generation
    return None


def layout_lanes(
    trials: Iterable[Trial], lower_is_better: bool, value: str = "last"
) -> PopulationLayout:
    """Lay out a PBT study's trials in lanes.

    A trial's lane is its member (``trial.member``); a trial without one continues its
    parent's lane when it did not exploit (:func:`poptune.lineage.is_exploit`), else opens a
    lane of its own. Lanes are ordered by member id, then the member-less ones by trial id.
    When a (lane, generation) holds several trials (a failed segment and its retry), the
    newest one is the cell and ``attempts`` counts them. Exploit arrows are those of the
    cells: donor cell -> receiver cell.

    Args:
        trials: the study's trials (e.g. ``study.history``), any order.
        lower_is_better: the study's direction (for ``value='best'``).
        value: ``'last'`` (default) or ``'best'``: which observation colours a cell.

    Raises:
        ConfigurationError: ``value`` is not one of :data:`VALUES`.
    """
    check_choice("poptune.plot.population_lanes()", "value", value, VALUES)
    by_id = {t.id: t for t in trials}
    keys: dict[int, tuple[int, Any]] = {}  # trial id -> lane key
    gen_of: dict[int, int] = {}
    skipped = 0
    for tid in sorted(by_id):
        trial = by_id[tid]
        generation = _generation(trial)
        if generation is None:
            skipped += 1
            continue
        gen_of[tid] = generation
        member = trial.member
        if member is not None and not isinstance(member, (dict, list)):
            keys[tid] = (0, member)
            continue
        pid = parent_id(trial)
        parent = by_id.get(pid) if pid is not None else None
        if parent is not None and pid in keys and not is_exploit(trial, parent):
            keys[tid] = keys[pid]
        else:
            keys[tid] = (1, tid)
    order = sorted(set(keys.values()), key=lambda k: (k[0], _sortable(k[1])))
    index = {key: i for i, key in enumerate(order)}
    layout = PopulationLayout(skipped=skipped)
    layout.lanes = [f"member {k[1]}" if k[0] == 0 else f"trial {k[1]}" for k in order]
    layout.members = [k[1] if k[0] == 0 else None for k in order]

    where: dict[int, tuple[int, int]] = {}  # trial id -> (lane, generation)
    slots: dict[tuple[int, int], list[int]] = {}  # (lane, generation) -> trial ids, ascending
    for tid, key in keys.items():
        slot = where[tid] = (index[key], gen_of[tid])
        slots.setdefault(slot, []).append(tid)
    for slot in sorted(slots):
        attempts = slots[slot]
        trial = by_id[attempts[-1]]  # the newest
        objective = _objective(trial, value, lower_is_better)
        layout.cells.append(LaneCell(trial, slot[0], slot[1], objective, len(attempts)))
    layout.generations = sorted({slot[1] for slot in slots})
    for tid in sorted(slots[slot][-1] for slot in slots):
        trial = by_id[tid]
        pid = parent_id(trial)
        if pid is None or pid not in where or not is_exploit(trial, by_id[pid]):
            continue
        from_lane, from_generation = where[pid]
        to_lane, to_generation = where[tid]
        layout.exploits.append(
            LaneExploit(pid, tid, from_lane, from_generation, to_lane, to_generation)
        )
    return layout


def _sortable(value: Any) -> tuple[int, Any]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))
