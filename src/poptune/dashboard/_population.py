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
#: Most cells (trials) one answer holds: a wider window is narrowed to fit.
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
    study); a ``start`` past the newest generation shows the newest one. The window is
    narrowed so that it holds at most :data:`MAX_CELLS` trials (at least one generation).
    Only the window's trials are laid out (through the History's generation index): an
    answer costs what it shows, whatever the size of the study. Its lanes are the members
    with a trial in the window (every member, for PBT). ``since`` equal to the study's
    version answers only ``{'version': v, 'unchanged': True}``: a poll that finds nothing
    new costs nothing.

    Returns ``{'version', 'pbt', 'direction', 'value', 'lanes', 'members', 'window':
    {'start', 'end', 'first', 'last', 'count'}, 'range': [lo, hi] | None, 'parameters':
    [names], 'cells': {'trial', 'lane', 'generation', 'objective', 'status', 'parent',
    'attempts', 'values': [[value per parameter], ...]}, 'exploits': {'source', 'target',
    'from_lane', 'from_generation', 'to_lane', 'to_generation'}, 'skipped'}``: every
    ``cells``/``exploits`` entry is a list with one item per cell/arrow in the window (an
    arrow is in it when both its ends are). ``window.count`` is the number of generations
    shown, ``range`` spans the window's objectives and ``skipped`` counts the trials that
    are no PBT segment (no int ``generation``), drawn nowhere.

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
    """Lay out only the window's trials (read through the History's generation index), so
    an answer costs what it shows, not the size of the study."""
    from poptune.dashboard._data import _jsonable

    history = view.history
    gens = [g for g in history.generations if type(g) is int]
    first, last = (gens[0], gens[-1]) if gens else (None, None)
    lo = hi = None
    if first is not None and last is not None:
        if start is None:  # the newest generations, back to count of them or MAX_CELLS cells
            hi = last
            lo, cells = hi, len(history.generation(hi))
            while lo > first and hi - lo + 1 < count:
                more = len(history.generation(lo - 1))
                if cells + more > MAX_CELLS:
                    break
                lo, cells = lo - 1, cells + more
        else:  # a window past the newest generation shows the newest one
            lo = min(max(start, first), last)
            hi, cells = lo, len(history.generation(lo))
            while hi < last and hi - lo + 1 < count:
                more = len(history.generation(hi + 1))
                if cells + more > MAX_CELLS:
                    break
                hi, cells = hi + 1, cells + more
    shown = [] if lo is None or hi is None else [
        t for g in range(lo, hi + 1) for t in history.generation(g)]  # fmt: skip
    layout = layout_lanes(shown, view.lower_is_better, value)
    placed = sum(len(history.generation(g)) for g in gens)
    names = list(history.parameter_names)
    cells: dict[str, list[Any]] = {key: [] for key in
                                   ("trial", "lane", "generation", "objective", "status",
                                    "parent", "attempts", "values")}  # fmt: skip
    objectives = []
    for cell in layout.cells:
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
    for e in layout.exploits:  # both ends are in the window: the layout saw no other trial
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
        "window": {
            "start": lo,
            "end": hi,
            "first": first,
            "last": last,
            "count": None if lo is None or hi is None else hi - lo + 1,
        },  # fmt: skip
        "range": [min(objectives), max(objectives)] if objectives else None,
        "parameters": names,
        "cells": cells,
        "exploits": arrows,
        "skipped": history.n_trials - placed,
    }
