"""The dashboard's population view: one lane per PBT member over a window of generations.

:func:`population` turns :func:`poptune.plot._layout.layout_lanes` (the layout
:func:`poptune.plot.population_lanes` draws too) into the JSON the page draws: columnar
arrays, one entry per cell, so 6,400 cells cost one small answer rather than 6,400 objects.
The answer is bounded: at most :data:`MAX_GENERATIONS` generations and :data:`MAX_CELLS`
cells (a window, paged with ``start``), and computed once per study version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from poptune._validation import check_choice, check_int
from poptune.lineage import is_pbt, parent_id
from poptune.plot._layout import VALUES, layout_lanes

if TYPE_CHECKING:
    from poptune.dashboard._data import _StudyView

__all__ = ["DEFAULT_GENERATIONS", "MAX_CELLS", "MAX_GENERATIONS", "population"]

#: Generations shown when the page does not ask for a number.
DEFAULT_GENERATIONS = 100
#: Most generations one answer holds.
MAX_GENERATIONS = 500
#: Most cells one answer holds (lanes x generations): a wider window is narrowed to fit.
MAX_CELLS = 25_000


def population(
    view: _StudyView,
    *,
    start: int | None = None,
    count: int = DEFAULT_GENERATIONS,
    value: str = "last",
    since: int | None = None,
) -> dict[str, Any]:
    """The population lanes of the window ``[start, start + count - 1]`` of generations.

    ``start=None`` shows the newest ``count`` generations (the window follows a running
    study). ``count`` is narrowed so that lanes x generations stays within
    :data:`MAX_CELLS`. ``since`` equal to the study's version answers only
    ``{'version': v, 'unchanged': True}``: a poll that finds nothing new costs nothing.

    Returns ``{'version', 'pbt', 'direction', 'value', 'lanes', 'members', 'window':
    {'start', 'end', 'first', 'last', 'count'}, 'range': [lo, hi] | None, 'parameters':
    [names], 'cells': {'trial', 'lane', 'generation', 'objective', 'status', 'parent',
    'attempts', 'values': [[value per parameter], ...]}, 'exploits': {'source', 'target',
    'from_lane', 'from_generation', 'to_lane', 'to_generation'}, 'skipped'}``: every
    ``cells``/``exploits`` entry is a list with one item per cell/arrow in the window (an
    arrow is in it when both its ends are). ``range`` spans the window's objectives.

    Raises:
        ConfigurationError: ``count`` outside 1..:data:`MAX_GENERATIONS`, ``start`` or
            ``since`` negative, ``value`` not ``'last'``/``'best'``.
    """
    check_int("dashboard", "count", count, 1, maximum=MAX_GENERATIONS)
    check_int("dashboard", "start", start, 0, allow_none=True)
    check_int("dashboard", "since", since, 0, allow_none=True)
    check_choice("dashboard", "value", value, VALUES)
    if since is not None and since == view.version:
        return {"version": view.version, "unchanged": True}

    def compute() -> dict[str, Any]:
        return _window(view, start, count, value)

    result: dict[str, Any] = view.cached(("population", start, count, value), compute)
    return result


def _window(view: _StudyView, start: int | None, count: int, value: str) -> dict[str, Any]:
    from poptune.dashboard._data import _jsonable

    history = view.history
    layout = view.cached(("lanes", value), lambda: layout_lanes(history, view.lower_is_better,
                                                                value))  # fmt: skip
    gens = layout.generations
    lanes = max(1, len(layout.lanes))
    count = max(1, min(count, MAX_CELLS // lanes))
    first, last = (gens[0], gens[-1]) if gens else (None, None)
    if first is None or last is None:
        lo = hi = None
    elif start is None:
        hi = last
        lo = max(first, last - count + 1)
    else:  # a window past the newest generation shows the newest one
        lo = min(max(start, first), last)
        hi = min(lo + count - 1, last)
    names = list(history.parameter_names)
    cells: dict[str, list[Any]] = {key: [] for key in
                                   ("trial", "lane", "generation", "objective", "status",
                                    "parent", "attempts", "values")}  # fmt: skip
    objectives = []
    for cell in layout.cells:
        if lo is None or hi is None or not lo <= cell.generation <= hi:
            continue
        trial = cell.trial
        params = trial.parameters
        cells["trial"].append(trial.id)
        cells["lane"].append(cell.lane)
        cells["generation"].append(cell.generation)
        cells["objective"].append(cell.objective)
        cells["status"].append(trial.status.value)
        cells["parent"].append(parent_id(trial))
        cells["attempts"].append(cell.attempts)
        cells["values"].append([_jsonable(params.get(n)) for n in names])
        if cell.objective is not None:
            objectives.append(cell.objective)
    arrows: dict[str, list[int]] = {key: [] for key in
                                    ("source", "target", "from_lane", "from_generation",
                                     "to_lane", "to_generation")}  # fmt: skip
    for e in layout.exploits:
        if lo is None or hi is None:
            break
        if lo <= e.from_generation <= hi and lo <= e.to_generation <= hi:
            for key, item in zip(arrows, (e.donor, e.receiver, e.from_lane, e.from_generation,
                                          e.to_lane, e.to_generation), strict=True):  # fmt: skip
                arrows[key].append(item)
    return {
        "version": view.version,
        "pbt": is_pbt(history, names),
        "direction": "minimize" if view.lower_is_better else "maximize",
        "value": value,
        "lanes": layout.lanes,
        "members": [_jsonable(m) for m in layout.members],
        "window": {"start": lo, "end": hi, "first": first, "last": last, "count": count},
        "range": [min(objectives), max(objectives)] if objectives else None,
        "parameters": names,
        "cells": cells,
        "exploits": arrows,
        "skipped": layout.skipped,
    }
