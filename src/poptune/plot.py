"""Figures of a study, drawn with matplotlib.

Four functions, each taking a :class:`~poptune.Study` (also one opened read-only with
:func:`poptune.load_study`) and returning a :class:`matplotlib.figure.Figure`:

* :func:`lineage`: a Population Based Training study's family tree, the objective and one
  hyperparameter along every founder-to-leaf path (SHERPA's PBT notebook figure);
* :func:`schedule`: the hyperparameter schedule that produced one trial;
* :func:`history`: the objective of each completed trial and the best so far;
* :func:`parallel_coordinates`: every completed trial across the parameters and the objective.

matplotlib is an optional dependency (``pip install "poptune[plot]"``): it is imported when a
function is called, not when this module is imported, and a missing matplotlib raises
:class:`MissingDependencyError`. Only the object-oriented API is used: figures are built with
``matplotlib.figure.Figure``, never registered with ``pyplot``, so nothing pops up and no
global state changes. Save one with ``fig.savefig("lineage.png")``; in a notebook, display it
by leaving it as the cell's last expression.

The objective of a trial is its best observation (respecting ``study.lower_is_better``), the
value of its ``COMPLETED`` row in ``study.results``. Parameter names and values are shown as
plain text: dollar signs are escaped, so ``$x$`` is not read as mathtext.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from poptune.algorithms.pbt.replay import _parent_id
from poptune.exceptions import (
    ConfigurationError,
    InvalidParameterError,
    MissingDependencyError,
)
from poptune.parameters import Continuous, Discrete, Parameter
from poptune.study import Study
from poptune.trial import Trial, TrialStatus

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["MissingDependencyError", "history", "lineage", "parallel_coordinates", "schedule"]

_INSTALL_HINT = 'poptune.plot needs matplotlib: pip install "poptune[plot]"'
_NO_TRIALS = "no completed trials"
#: Founders named one by one in the lineage legend up to this many.
_MAX_LEGEND_FOUNDERS = 10
#: Categorical values labelled one by one up to this many (else first and last only).
_MAX_CATEGORY_LABELS = 20


# -- shared helpers ------------------------------------------------------------------------------
def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"{_INSTALL_HINT} ({exc})") from exc


def _check_study(study: Any, function: str) -> Study:
    if not isinstance(study, Study):
        raise ConfigurationError(
            f"poptune.plot.{function}() expects a poptune.Study (or one opened with "
            f"poptune.load_study), got {study!r}"
        )
    return study


def _new_figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _check_axes(ax: Any, function: str) -> Axes:
    from matplotlib.axes import Axes

    if not isinstance(ax, Axes):
        raise ConfigurationError(
            f"poptune.plot.{function}(): ax must be a matplotlib Axes, got {ax!r}"
        )
    return ax


def _root_figure(ax: Axes) -> Figure:
    """The top-level Figure of ``ax`` (not a SubFigure)."""
    fig: Any = ax.figure
    while fig.figure is not fig:
        fig = fig.figure
    return fig


def _text(value: Any, limit: int = 60) -> str:
    """``value`` as a label matplotlib shows verbatim (``$`` escaped), at most ``limit`` chars."""
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text.replace("$", r"\$")


def _objective(trial: Trial, lower_is_better: bool) -> float:
    """The trial's best objective (its COMPLETED row in ``study.results``); NaN if none."""
    best = trial.best_observation(lower_is_better)
    return math.nan if best is None else float(best.objective)


def _completed(trials: Sequence[Trial]) -> list[Trial]:
    return [t for t in trials if t.status is TrialStatus.COMPLETED and len(t.observations)]


def _direction(study: Study) -> str:
    return "lower is better" if study.lower_is_better else "higher is better"


def _best(values: Sequence[float], lower_is_better: bool) -> int:
    """Index of the best finite value (the first one on ties)."""
    best = -1
    for i, value in enumerate(values):
        if math.isnan(value):
            continue
        if best < 0 or (value < values[best] if lower_is_better else value > values[best]):
            best = i
    return best


def _parameter(study: Study, name: Any) -> Parameter:
    for p in study.parameters:
        if p.name == name:
            return p
    raise InvalidParameterError(
        f"study {study.name!r} has no parameter {name!r}; its parameters are "
        f"{[p.name for p in study.parameters]}"
    )


def _is_numeric(parameter: Parameter) -> bool:
    return isinstance(parameter, (Continuous, Discrete))


def _float(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def _position(parameter: Parameter, value: Any) -> float:
    """Where ``value`` sits on the parameter's axis: the number itself, or for a Choice or
    Ordinal its index in the range (NaN when it is missing or not a valid value)."""
    if _is_numeric(parameter):
        return _float(value)
    try:
        return float(parameter.index(value))  # type: ignore[attr-defined]
    except InvalidParameterError:
        return math.nan


def _use_log(parameter: Parameter, values: Sequence[float]) -> bool:
    return parameter.scale == "log" and all(v > 0 for v in values if not math.isnan(v))


def _category_ticks(ax: Axes, parameter: Parameter) -> None:
    """Label a categorical parameter's positions with its values on the y axis."""
    values = list(parameter.range)
    positions = list(range(len(values)))
    if len(values) > _MAX_CATEGORY_LABELS:
        positions = [0, len(values) - 1]
    ax.set_yticks(positions, [_text(values[i], 25) for i in positions])


def _empty(ax: Axes, message: str = _NO_TRIALS) -> None:
    ax.set_title(message)
    ax.set_xticks([])
    ax.set_yticks([])


# -- lineage -------------------------------------------------------------------------------------
@dataclass
class _Path:
    """One founder-to-leaf path of a PBT family tree (completed trials, oldest first)."""

    trials: list[Trial]
    exploited: list[bool]  # exploited[i]: trials[i] loaded another member's weights

    @property
    def founder(self) -> int:
        return self.trials[0].id


def _is_pbt(study: Study) -> bool:
    if "lineage" in getattr(study.algorithm, "reserved_keys", ()):
        return True
    # An algorithm that cannot be rebuilt in this process (load_study): look at the trials.
    names = {p.name for p in study.parameters}
    if "lineage" in names or "generation" in names:
        return False
    return any("lineage" in t.parameters and "generation" in t.parameters for t in study.trials)


def _exploited(trial: Trial, parent: Trial | None) -> bool:
    """Whether ``trial`` started from the weights of a different population member."""
    if parent is None:
        return False
    if trial.member is not None and parent.member is not None:
        return trial.member != parent.member
    return bool(trial.explore) or "replaced" in trial.meta


def _lineage_paths(trials: Sequence[Trial]) -> list[_Path]:
    """One path per leaf: a completed trial that no completed trial continues from, preceded
    by its completed ancestors (parent links). Ordered by leaf id."""
    by_id = {t.id: t for t in trials}
    completed = {t.id: t for t in _completed(trials)}
    continued = {_parent_id(t) for t in completed.values()}
    paths = []
    for tid in sorted(completed):
        if tid in continued:
            continue
        chain: list[Trial] = []
        exploited: list[bool] = []
        current: Trial | None = completed[tid]
        while current is not None:
            pid = _parent_id(current)
            parent = by_id.get(pid) if pid is not None and pid < current.id else None
            if current.id in completed:
                chain.append(current)
                exploited.append(_exploited(current, parent))
            current = parent
        chain.reverse()
        exploited.reverse()
        exploited[0] = False  # nothing is drawn before the first point
        paths.append(_Path(chain, exploited))
    return paths


def _generations(path: _Path) -> list[float]:
    return [
        float(t.generation) if isinstance(t.generation, (int, float)) else float(i + 1)
        for i, t in enumerate(path.trials)
    ]


def lineage(
    study: Study,
    *,
    parameter: str | None = None,
    ax: Axes | Sequence[Axes] | None = None,
) -> Figure:
    """The lineage figure of a Population Based Training study (SHERPA's PBT notebook).

    Left panel: the objective of each completed trial (y) at its generation (x), along every
    branch of the population's family tree. Each completed trial that no completed trial
    continues from (a leaf) gives one line, from its founder (the oldest completed ancestor,
    following parent links) to the leaf, coloured by founder, so every completed trial lies
    on a line and shared prefixes are drawn in the same colour. An *exploit* edge, where a
    trial loaded the weights of a different population member, is overdrawn as a dashed
    black segment ending in a diamond. The study's best trial (``study.lower_is_better``) is
    starred.

    Right panel: the value of ``parameter`` along the same lines (a log axis for a
    log-scaled parameter; a Choice or Ordinal parameter is drawn at the positions of its
    values, labelled with them).

    Args:
        study: a study made by ``PopulationBasedTraining`` (synchronous or not), ``PB2`` or
            ``Replay``, live or opened with :func:`poptune.load_study`.
        parameter: the hyperparameter of the right panel. Default: the study's first
            Continuous or Discrete parameter (its first parameter if none is numeric).
        ax: None (default) draws both panels on a new Figure; one Axes draws only the
            objective panel there; a pair of Axes draws the two panels there.

    Returns:
        The Figure (that of ``ax`` when given). Without completed trials the panels are
        empty and titled "no completed trials".

    Raises:
        MissingDependencyError: matplotlib is not installed (an ImportError).
        ConfigurationError: ``study`` is not a PBT study (the message names it) or not a
            Study, or ``ax`` is not an Axes or a pair of Axes.
        InvalidParameterError: the study has no parameter named ``parameter``.
    """
    _require_matplotlib()
    study = _check_study(study, "lineage")
    if not _is_pbt(study):
        raise ConfigurationError(
            f"poptune.plot.lineage() draws Population Based Training studies; study "
            f"{study.name!r} was made by {type(study.algorithm).__name__}, whose trials have no "
            "lineage. Use poptune.plot.history() or parallel_coordinates() instead"
        )
    param = _parameter(study, parameter) if parameter is not None else _default_parameter(study)

    created = ax is None
    if ax is None:
        fig = _new_figure((14, 5))
        obj_ax, par_ax = fig.subplots(ncols=2)
    else:
        from matplotlib.axes import Axes

        if isinstance(ax, Axes):
            obj_ax, par_ax = ax, None
        else:
            pair = list(ax) if isinstance(ax, Iterable) else []
            if len(pair) != 2:
                raise ConfigurationError(
                    f"poptune.plot.lineage(): ax must be an Axes or a pair of Axes, got {ax!r}"
                )
            obj_ax, par_ax = (_check_axes(a, "lineage") for a in pair)
        fig = _root_figure(obj_ax)

    trials = study.trials
    paths = _lineage_paths(trials)
    if not paths:
        _empty(obj_ax)
        if par_ax is not None:
            _empty(par_ax)
        return fig
    if created:
        fig.suptitle(f"Study {_text(study.name)}: Population Based Training lineage")
    colour_of = _founder_colours(paths)
    objective = {t.id: _objective(t, study.lower_is_better) for p in paths for t in p.trials}

    def value(trial: Trial) -> float:
        assert param is not None
        return _position(param, trial.parameters.get(param.name))

    _draw_paths(obj_ax, paths, colour_of, lambda t: objective[t.id])
    best = study.history.best_trial()
    if best is not None and best.id in objective:
        x_of = {t.id: g for p in paths for t, g in zip(p.trials, _generations(p), strict=True)}
        x = x_of[best.id]
        obj_ax.scatter(
            [x], [objective[best.id]], marker="*", s=220, color="gold", edgecolors="black",
            zorder=5, label=f"best: trial {best.id}",
        )  # fmt: skip
    obj_ax.set_ylabel(f"objective ({_direction(study)})")
    obj_ax.set_title("Objective along each lineage")
    _legend(obj_ax, paths, colour_of)

    if par_ax is not None:
        if param is None:
            _empty(par_ax, "no hyperparameters")
            return fig
        values = [value(t) for p in paths for t in p.trials]
        _draw_paths(par_ax, paths, colour_of, value)
        if _is_numeric(param):
            if _use_log(param, values):
                par_ax.set_yscale("log")
        else:
            _category_ticks(par_ax, param)
        label = _text(param.name)
        par_ax.set_ylabel(label + (" (log scale)" if par_ax.get_yscale() == "log" else ""))
        par_ax.set_title(f"{label} along each lineage")
    return fig


def _default_parameter(study: Study) -> Parameter | None:
    numeric = [p for p in study.parameters if _is_numeric(p)]
    if numeric:
        return numeric[0]
    return study.parameters[0] if study.parameters else None


def _founder_colours(paths: list[_Path]) -> dict[int, Any]:
    from matplotlib import colormaps

    founders = sorted({p.founder for p in paths})
    cmap = colormaps["rainbow"]
    n = len(founders)
    return {f: cmap(0.5 if n == 1 else i / (n - 1)) for i, f in enumerate(founders)}


def _draw_paths(ax: Axes, paths: list[_Path], colour_of: dict[int, Any], y_of: Any) -> None:
    """One Line2D per path, then the exploit edges (deduplicated) on top."""
    from matplotlib.collections import LineCollection

    edges: dict[tuple[int, int], tuple[tuple[float, float], tuple[float, float]]] = {}
    arrivals: dict[int, tuple[float, float, Any]] = {}
    generations: set[float] = set()
    for path in paths:
        xs = _generations(path)
        ys = [y_of(t) for t in path.trials]
        generations.update(xs)
        ax.plot(
            xs, ys, "-", color=colour_of[path.founder], linewidth=2, marker="o", markersize=3.5,
            label=f"_lineage of trial {path.trials[-1].id}",
        )  # fmt: skip
        for i in range(1, len(xs)):
            if path.exploited[i]:
                key = (path.trials[i - 1].id, path.trials[i].id)
                edges[key] = ((xs[i - 1], ys[i - 1]), (xs[i], ys[i]))
                arrivals[path.trials[i].id] = (xs[i], ys[i], colour_of[path.founder])
    if edges:
        ax.add_collection(
            LineCollection(
                list(edges.values()),
                colors="black",
                linestyles="--",
                linewidths=1.2,
                zorder=3,
                label="_exploit edges",
            ),  # fmt: skip
            autolim=False,
        )
        ax.scatter(
            [a[0] for a in arrivals.values()], [a[1] for a in arrivals.values()], marker="D",
            s=30, c=[a[2] for a in arrivals.values()], edgecolors="black", zorder=4,
            label="_exploit arrivals",
        )  # fmt: skip
    ax.set_xlabel("generation")
    ticks = sorted(generations)
    if ticks and len(ticks) <= 30 and all(float(g).is_integer() for g in ticks):
        ax.set_xticks(ticks)
    ax.grid(True, alpha=0.3)


def _legend(ax: Axes, paths: list[_Path], colour_of: dict[int, Any]) -> None:
    from matplotlib.lines import Line2D

    handles: list[Any] = []
    labels: list[str] = []
    founders = sorted(colour_of)
    if len(founders) <= _MAX_LEGEND_FOUNDERS:
        for f in founders:
            handles.append(Line2D([], [], color=colour_of[f], linewidth=2))
            labels.append(f"founder trial {f}")
    if any(any(p.exploited) for p in paths):
        handles.append(
            Line2D([], [], color="black", linestyle="--", marker="D", markerfacecolor="white")
        )
        labels.append("exploit (another member's weights)")
    for artist in ax.collections:
        label = artist.get_label()
        if label.startswith("best: "):
            handles.append(artist)
            labels.append(label)
    if handles:
        ax.legend(handles, labels, fontsize="small", loc="best")


# -- schedule ------------------------------------------------------------------------------------
def schedule(study: Study, trial: Trial | int) -> Figure:
    """The hyperparameter schedule that produced ``trial``, one segment per step.

    Uses :meth:`Study.schedule <poptune.Study.schedule>` (the trial's parent links back to
    its founder, oldest segment first). One subplot per study hyperparameter, in the study's
    order, draws its value per segment as steps (``Axes.stairs``; a log axis for a
    log-scaled parameter; a Choice or Ordinal at the positions of its values, labelled with
    them); a last subplot draws the objective of each segment (its best observation). The x
    axis is the generation when the segments' generations run 1 by 1, else the segment
    number; segment ``x`` spans ``[x - 0.5, x + 0.5]``. Dashed vertical lines mark segments
    that exploited (loaded another member's weights) or were explored. A trial that is not a
    PBT segment gives a one-segment schedule.

    Args:
        study: any study, live or opened with :func:`poptune.load_study`.
        trial: the trial or its id.

    Returns:
        A new Figure. Segments without observations leave gaps in the objective subplot; if
        none has one, that subplot is titled "no completed trials on this schedule".

    Raises:
        MissingDependencyError: matplotlib is not installed (an ImportError).
        UnknownTrialError: no such trial (or an ancestor is missing) in the study.
        ConfigurationError: ``study`` is not a Study.
    """
    _require_matplotlib()
    study = _check_study(study, "schedule")
    entries = study.schedule(trial)
    by_id = {t.id: t for t in study.trials}
    segments = [by_id[e["trial"]] for e in entries]
    gens = [e["generation"] for e in entries]
    by_generation = all(isinstance(g, int) and not isinstance(g, bool) for g in gens) and all(
        b == a + 1 for a, b in zip(gens, gens[1:], strict=False)
    )
    xs = [float(g) for g in gens] if by_generation else [float(i + 1) for i in range(len(gens))]
    edges = [x - 0.5 for x in xs] + [xs[-1] + 0.5]
    changed = [
        i
        for i in range(1, len(entries))
        if entries[i]["explore"] or _exploited(segments[i], segments[i - 1])
    ]

    params = study.parameters
    fig = _new_figure((8, 1.9 * (len(params) + 1) + 1))
    axes = fig.subplots(nrows=len(params) + 1, sharex=True, squeeze=False)[:, 0]
    tid = entries[-1]["trial"]
    fig.suptitle(f"Schedule of trial {tid} (study {_text(study.name)})")
    for ax, p in zip(axes[:-1], params, strict=True):
        values = [_position(p, e["parameters"].get(p.name)) for e in entries]
        ax.stairs(values, edges, baseline=None, color="tab:blue", linewidth=2, label=p.name)
        if _is_numeric(p):
            if _use_log(p, values):
                ax.set_yscale("log")
        else:
            _category_ticks(ax, p)
        ax.set_ylabel(_text(p.name, 30))
    obj_ax = axes[-1]
    objectives = [_objective(t, study.lower_is_better) for t in segments]
    obj_ax.plot(xs, objectives, "o-", color="tab:green", label="objective")
    obj_ax.set_ylabel(f"objective\n({_direction(study)})")
    if all(math.isnan(v) for v in objectives):
        obj_ax.set_title("no completed trials on this schedule")
    for ax in axes:
        for i in changed:
            ax.axvline(edges[i], color="0.4", linestyle="--", linewidth=1, label="_explored")
        ax.grid(True, alpha=0.3)
    obj_ax.set_xlim(edges[0], edges[-1])
    if len(xs) <= 25:
        obj_ax.set_xticks(xs, [f"{x:g}\n#{e['trial']}" for x, e in zip(xs, entries, strict=True)])
    obj_ax.set_xlabel(("generation" if by_generation else "segment") + " (#trial)")
    return fig


# -- history -------------------------------------------------------------------------------------
def history(study: Study, *, ax: Axes | None = None) -> Figure:
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
    completed = sorted(_completed(study.trials), key=lambda t: t.id)
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
    study: Study,
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
        raise ConfigurationError(
            "poptune.plot.parallel_coordinates(): parameters must be a list of parameter "
            f"names, got {parameters!r}"
        )
    else:
        params = [_parameter(study, name) for name in parameters]
    if ax is None:
        fig = _new_figure((max(6.0, 1.6 * (len(params) + 1) + 2), 5))
        ax = fig.subplots()
    else:
        ax = _check_axes(ax, "parallel_coordinates")
        fig = _root_figure(ax)
    completed = sorted(_completed(study.trials), key=lambda t: t.id)
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
