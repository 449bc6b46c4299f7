"""The figures of any study: the objective over trials and parallel coordinates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from poptune._validation import reject
from poptune.parameters import Parameter
from poptune.plot._common import (
    _MAX_CATEGORY_LABELS,
    StudyLike,
    _best,
    _check_axes,
    _check_study,
    _completed,
    _direction,
    _empty,
    _is_numeric,
    _new_figure,
    _objective,
    _parameter,
    _position,
    _require_matplotlib,
    _root_figure,
    _text,
    _use_log,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["history", "parallel_coordinates"]


# -- history -------------------------------------------------------------------------------------
def history(study: StudyLike, *, ax: Axes | None = None) -> Figure:
    """The objective of each completed trial in trial-id order, and the best so far.

    Draws one point per COMPLETED trial at (trial id, objective: its best observation), and
    a step line labelled ``"best so far"``: the running minimum (``lower_is_better``) or
    maximum of those objectives. The best trial is starred.

    Args:
        study: any study, live or opened with :func:`poptune.load_study`.
        ax: the Axes to draw on; default a new Figure.

    Returns:
        The Figure (that of ``ax`` when given). Without completed trials the axes are empty
        and titled "no completed trials".

    Raises:
        MissingDependencyError: matplotlib is not installed (an ImportError).
        ConfigurationError: ``study`` is not a Study or ``ax`` not an Axes.
    """
    _require_matplotlib()
    study = _check_study(study, "history")
    if ax is None:
        fig = _new_figure((8, 4.5))
        ax = fig.subplots()
    else:
        ax = _check_axes(ax, "history")
        fig = _root_figure(ax)
    completed = sorted(_completed(study.history.trials), key=lambda t: t.id)
    if not completed:
        _empty(ax)
        return fig
    lower = study.lower_is_better
    ids = [t.id for t in completed]
    values = [_objective(t, lower) for t in completed]
    running: list[float] = []
    for v in values:
        running.append(v if not running else (min if lower else max)(running[-1], v))
    ax.scatter(ids, values, s=18, color="tab:blue", alpha=0.7, label="completed trial")
    ax.plot(ids, running, drawstyle="steps-post", color="tab:red", linewidth=2,
            label="best so far")  # fmt: skip
    b = _best(values, lower)
    ax.scatter([ids[b]], [values[b]], marker="*", s=200, color="gold", edgecolors="black",
               zorder=5, label=f"best: trial {ids[b]}")  # fmt: skip
    ax.set_xlabel("trial id")
    ax.set_ylabel(f"objective ({_direction(study)})")
    ax.set_title(
        f"Study {_text(study.name)}: best {values[b]:.4g} (trial {ids[b]}) "
        f"of {len(completed)} completed"
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    return fig


# -- parallel coordinates ------------------------------------------------------------------------
def parallel_coordinates(
    study: StudyLike,
    *,
    parameters: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Completed trials across the parameters and the objective (parallel coordinates).

    One vertical axis per parameter, then one for the objective (each trial's best
    observation). Each COMPLETED trial is one polyline through its normalised values,
    coloured by its objective (the colour bar; the best values are the bright end whichever
    the direction, and the best trials are drawn on top). Numeric axes span the parameter's
    range widened to every value seen (PBT may explore beyond it), log-scaled parameters
    normalised in log space, and are labelled with their ends; a Choice or Ordinal parameter
    puts its values at evenly spaced positions, labelled with the values. The trials are a
    single ``LineCollection`` (gid ``"trials"``) holding one polyline per trial.

    Args:
        study: any study, live or opened with :func:`poptune.load_study`.
        parameters: names of the parameters to show, in this order. Default: all of them.
        ax: the Axes to draw on; default a new Figure.

    Returns:
        The Figure (that of ``ax`` when given). Without completed trials the axes are empty
        and titled "no completed trials".

    Raises:
        MissingDependencyError: matplotlib is not installed (an ImportError).
        InvalidParameterError: a name in ``parameters`` is not a parameter of the study.
        ConfigurationError: ``study`` is not a Study, ``parameters`` not a list of names, or
            ``ax`` not an Axes.
    """
    _require_matplotlib()
    study = _check_study(study, "parallel_coordinates")
    if parameters is None:
        params = list(study.parameters)
    elif isinstance(parameters, str) or not isinstance(parameters, Sequence):
        owner = "poptune.plot.parallel_coordinates()"
        reject(owner, "parameters", "a list of parameter names", parameters, wrong_type=True)
    else:
        params = [_parameter(study, name) for name in parameters]
    if ax is None:
        fig = _new_figure((max(6.0, 1.6 * (len(params) + 1) + 2), 5))
        ax = fig.subplots()
    else:
        ax = _check_axes(ax, "parallel_coordinates")
        fig = _root_figure(ax)
    completed = sorted(_completed(study.history.trials), key=lambda t: t.id)
    if not completed:
        _empty(ax)
        return fig

    from matplotlib import colormaps
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    lower = study.lower_is_better
    objectives = [_objective(t, lower) for t in completed]
    columns: list[list[float]] = []
    for i, p in enumerate(params):
        raw = [_position(p, t.parameters.get(p.name)) for t in completed]
        column, labels = _normalise(p, raw)
        columns.append(column)
        for y, text in labels:
            ax.text(i + 0.04, y, text, fontsize=7, va="center", ha="left", clip_on=False)
    lo, hi = _span(objectives)
    columns.append([(v - lo) / (hi - lo) for v in objectives])
    n = len(columns)
    for y, v in ((0.0, lo), (1.0, hi)):
        ax.text(n - 1 + 0.04, y, f"{v:.4g}", fontsize=7, va="center", ha="left", clip_on=False)

    order = sorted(range(len(completed)), key=lambda k: objectives[k], reverse=lower)
    segments = [[(x, columns[x][k]) for x in range(n)] for k in order]
    cmap = colormaps["viridis_r" if lower else "viridis"]
    lines = LineCollection(segments, cmap=cmap, norm=Normalize(lo, hi), linewidths=1.3, alpha=0.8)
    lines.set_array([objectives[k] for k in order])
    lines.set_gid("trials")
    ax.add_collection(lines, autolim=False)
    ax.vlines(range(n), 0, 1, colors="0.3", linewidths=1)
    ax.set_xlim(-0.3, n - 1 + 0.6)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([])
    ax.set_xticks(range(n), [_text(p.name, 30) for p in params] + ["objective"])
    for spine in ("left", "right", "top"):
        ax.spines[spine].set_visible(False)
    fig.colorbar(lines, ax=ax, label=f"objective ({_direction(study)})")
    ax.set_title(f"Study {_text(study.name)}: {len(completed)} completed trials")
    return fig


def _span(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    if hi <= lo:
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    return lo, hi


def _normalise(
    parameter: Parameter, raw: list[float]
) -> tuple[list[float], list[tuple[float, str]]]:
    """Values in [0, 1] and the (position, label) pairs of the axis."""
    if not _is_numeric(parameter):
        k = len(parameter.range)
        spot = (lambda i: 0.5) if k == 1 else (lambda i: i / (k - 1))
        shown = range(k) if k <= _MAX_CATEGORY_LABELS else (0, k - 1)
        labels = [(spot(i), _text(parameter.range[i], 25)) for i in shown]
        return [math.nan if math.isnan(v) else spot(v) for v in raw], labels
    low, high = float(parameter.range[0]), float(parameter.range[1])
    log = _use_log(parameter, raw)
    seen = [v for v in raw if not math.isnan(v)]
    lo, hi = min([low, *seen]), max([high, *seen])
    f = math.log10 if log else (lambda v: v)
    a, b = f(lo), f(hi)
    column = [math.nan if math.isnan(v) else (f(v) - a) / (b - a) for v in raw]
    return column, [(0.0, f"{lo:.3g}"), (1.0, f"{hi:.3g}" + (" (log)" if log else ""))]
