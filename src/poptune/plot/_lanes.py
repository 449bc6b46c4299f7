"""The population-lanes figure of a PBT study: one lane per member over generations, coloured
by the objective, with the exploit arrows (the layout of :mod:`poptune.plot._layout`, which
the dashboard's population view draws too)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from poptune._validation import check_choice, reject
from poptune.exceptions import ConfigurationError
from poptune.history import History
from poptune.lineage import is_pbt
from poptune.plot._common import _check_axes, _new_figure, _require_matplotlib, _root_figure, _text
from poptune.plot._layout import layout_lanes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["population_lanes"]

#: Lanes labelled one by one up to this many (else every k-th).
_MAX_LANE_LABELS = 32


def population_lanes(
    study_or_history: Any,
    *,
    value: str = "last",
    scale: str = "study",
    arrows: bool = True,
    cmap: str = "viridis",
    ax: Axes | None = None,
) -> Figure:
    """The population of a Population Based Training study, one lane per member.

    x is the generation, y the population member (member 0 at the top); each cell is that
    member's segment of that generation, coloured by its objective, bright for better in
    either direction (the colour map is reversed when lower is better; the colour bar says
    which). A cell whose segment copied another member's weights (an exploit,
    :func:`poptune.lineage.is_exploit`) receives an arrow from the donor's cell, one
    generation earlier in the donor's lane. Empty cells (no observation yet, or no trial)
    are left grey. Readable at population 64 over 100 generations; for the trials' own
    values, hover the same view in the dashboard's "Population" tab.

    Args:
        study_or_history: a :class:`~poptune.Study` made by ``PopulationBasedTraining``
            (synchronous or not), ``PB2`` or ``Replay``, live or opened with
            :func:`poptune.load_study`, or its :class:`~poptune.history.History`.
        value: ``'last'`` (default: the segment's last observation, what PBT ranks by
            unless its ``rank_by`` says otherwise) or ``'best'`` (its best observation).
        scale: ``'study'`` (default: one linear colour scale for every cell), ``'log'`` (a
            logarithmic one: losses that fall by orders of magnitude; needs objectives > 0)
            or ``'generation'`` (each cell coloured by its objective's rank among its
            generation's, 1 the best and 0 the worst: who leads and who is replaced, when
            the whole population improves over time).
        arrows: draw the exploit arrows (default True).
        cmap: a matplotlib colour map name (default ``'viridis'``).
        ax: the Axes to draw on; None (default) makes a new Figure.

    Returns:
        The Figure (that of ``ax`` when given). The lanes are a ``QuadMesh`` whose gid is
        ``'population-lanes'`` (one row per lane), the arrows a ``Quiver`` whose gid is
        ``'exploit-arrows'`` (one arrow per exploit). Without trials the Axes is titled
        "no trials yet".

    Raises:
        MissingDependencyError: matplotlib is not installed (an ImportError).
        ArgumentTypeError: ``study_or_history`` is neither a Study nor a History, or ``ax``
            is not an Axes.
        ConfigurationError: the study is not a PBT study, ``value`` is not ``'last'`` or
            ``'best'``, ``scale`` not ``'study'``, ``'log'`` or ``'generation'`` (or
            ``'log'`` with an objective <= 0), or ``cmap`` is not a colour map.
    """
    _require_matplotlib()
    from matplotlib import colormaps

    history, name = _history_of(study_or_history)
    algorithm = getattr(study_or_history, "algorithm", None)
    if not is_pbt(history, history.parameter_names, getattr(algorithm, "reserved_keys", ())):
        raise ConfigurationError(
            f"poptune.plot.population_lanes() draws Population Based Training studies; "
            f"{name} has no PBT generations or lineage. Use poptune.plot.history() instead"
        )
    layout = layout_lanes(history, history.lower_is_better, value)
    check_choice("poptune.plot.population_lanes()", "scale", scale, ("study", "log", "generation"))
    if cmap not in colormaps:
        reject("poptune.plot.population_lanes()", "cmap", "a matplotlib colour map name", cmap,
               wrong_type=False)  # fmt: skip
    lower = history.lower_is_better
    ranked = scale == "generation"
    colours = colormaps[cmap].reversed() if lower and not ranked else colormaps[cmap]

    if ax is None:
        rows = max(1, len(layout.lanes))
        fig = _new_figure((12, min(30.0, max(4.0, 0.16 * rows + 2.0))))
        ax = fig.add_subplot()
    else:
        ax = _check_axes(ax, "population_lanes")
        fig = _root_figure(ax)
    if not layout.cells:
        ax.set_title("no trials yet")
        ax.set_xticks([])
        ax.set_yticks([])
        return fig

    import numpy as np

    first, last = layout.generations[0], layout.generations[-1]
    grid = np.full((len(layout.lanes), last - first + 1), np.nan)
    for cell in layout.cells:
        if cell.objective is not None:
            grid[cell.lane, cell.generation - first] = cell.objective
    if ranked:
        _rank_columns(grid, lower)
    xs = np.arange(first - 0.5, last + 1.0)
    ys = np.arange(-0.5, len(layout.lanes))
    colours = colours.with_extremes(bad="#e6e9ef")
    edge = 0.3 if grid.size <= 2_000 else 0.0
    norm = None
    if scale == "log":
        from matplotlib.colors import LogNorm

        if np.nanmin(grid, initial=np.inf) <= 0:
            reject("poptune.plot.population_lanes()", "scale", "'study' or 'generation' when "
                   "an objective is <= 0", scale, wrong_type=False)  # fmt: skip
        norm = LogNorm()
    mesh = ax.pcolormesh(
        xs, ys, np.ma.masked_invalid(grid), cmap=colours, norm=norm, shading="flat",
        edgecolors="white", linewidth=edge,
    )  # fmt: skip
    mesh.set_gid("population-lanes")
    bar = fig.colorbar(mesh, ax=ax, pad=0.01, fraction=0.04)
    if ranked:
        bar.set_ticks([0, 0.5, 1], labels=["worst", "median", "best"])
        bar.set_label(f"rank in its generation ({value} objective)")
    else:
        bar.set_label(f"{value} objective ({'lower' if lower else 'higher'} is better)")
        if lower:
            bar.ax.invert_yaxis()  # better (bright) at the top either way

    if arrows and layout.exploits:
        x0 = np.array([e.from_generation for e in layout.exploits], dtype=float)
        y0 = np.array([e.from_lane for e in layout.exploits], dtype=float)
        dx = np.array([e.to_generation for e in layout.exploits], dtype=float) - x0
        dy = np.array([e.to_lane for e in layout.exploits], dtype=float) - y0
        quiver = ax.quiver(
            x0, y0, dx, dy, angles="xy", scale_units="xy", scale=1, color="#e0102a",
            alpha=0.65, width=0.001, headwidth=5, headlength=6, headaxislength=5.5,
            label="exploit (copied weights)", zorder=3,
        )  # fmt: skip
        quiver.set_gid("exploit-arrows")
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), fontsize="small", frameon=False)

    ax.set_xlim(first - 0.5, last + 0.5)
    ax.set_ylim(len(layout.lanes) - 0.5, -0.5)  # member 0 at the top
    step = max(1, math.ceil(len(layout.lanes) / _MAX_LANE_LABELS))
    ticks = list(range(0, len(layout.lanes), step))
    ax.set_yticks(ticks, [_text(layout.lanes[i], 20) for i in ticks], fontsize="small")
    ax.set_xlabel("generation")
    ax.set_ylabel("population member")
    ax.set_title(
        f"{name}: {len(layout.lanes)} members × generations {first}–{last}, "
        f"{len(layout.exploits)} exploits",
        loc="right",
        fontsize="medium",
    )
    return fig


def _rank_columns(grid: Any, lower: bool) -> None:
    """Each column's values as their rank there, in place: 1 the best, 0 the worst."""
    import numpy as np

    for col in range(grid.shape[1]):
        rows = np.flatnonzero(~np.isnan(grid[:, col]))
        if rows.size == 0:
            continue
        values = grid[rows, col]
        order = np.argsort(-values if lower else values, kind="stable")  # worst first
        ranks = np.empty(rows.size)
        ranks[order] = np.arange(rows.size) / (rows.size - 1) if rows.size > 1 else 1.0
        grid[rows, col] = ranks


def _history_of(value: Any) -> tuple[History, str]:
    if isinstance(value, History):
        return value, "this history"
    history = getattr(value, "history", None)
    if not isinstance(history, History):
        what = "a poptune.Study (or one opened with poptune.load_study) or a History"
        reject("poptune.plot.population_lanes()", "study_or_history", what, value,
               wrong_type=True)  # fmt: skip
    return history, f"study {_text(getattr(value, 'name', ''))!r}"
