"""The figures of a Population Based Training study: its family tree and one trial's
schedule, drawn from the parent links of :mod:`poptune.lineage`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from poptune._validation import reject
from poptune.exceptions import ConfigurationError
from poptune.lineage import is_exploit, is_pbt, parent_id
from poptune.lineage import schedule as schedule_of
from poptune.parameters import Parameter
from poptune.plot._common import (
    _MAX_LEGEND_FOUNDERS,
    StudyLike,
    _category_ticks,
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
from poptune.trial import Trial

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["lineage", "schedule"]


# -- lineage -------------------------------------------------------------------------------------
@dataclass
class _Path:
    """One founder-to-leaf path of a PBT family tree (completed trials, oldest first)."""

    trials: list[Trial]
    exploited: list[bool]  # exploited[i]: trials[i] loaded another member's weights

    @property
    def founder(self) -> int:
        return self.trials[0].id


def _lineage_paths(trials: Sequence[Trial]) -> list[_Path]:
    """One path per leaf: a completed trial that no completed trial continues from, preceded
    by its completed ancestors (parent links). Ordered by leaf id."""
    by_id = {t.id: t for t in trials}
    completed = {t.id: t for t in _completed(trials)}
    continued = {parent_id(t) for t in completed.values()}
    paths = []
    for tid in sorted(completed):
        if tid in continued:
            continue
        chain: list[Trial] = []
        exploited: list[bool] = []
        current: Trial | None = completed[tid]
        while current is not None:
            pid = parent_id(current)
            parent = by_id.get(pid) if pid is not None and pid < current.id else None
            if current.id in completed:
                chain.append(current)
                exploited.append(is_exploit(current, parent))
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
    study: StudyLike,
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
    trials = study.history.trials
    names = [p.name for p in study.parameters]
    algorithm = getattr(study, "algorithm", None)
    if not is_pbt(trials, names, getattr(algorithm, "reserved_keys", ())):
        raise ConfigurationError(
            f"poptune.plot.lineage() draws Population Based Training studies; study "
            f"{study.name!r} was made by {type(algorithm).__name__}, whose trials have no "
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
                owner = "poptune.plot.lineage()"
                reject(owner, "ax", "an Axes or a pair of Axes", ax, wrong_type=True)
            obj_ax, par_ax = (_check_axes(a, "lineage") for a in pair)
        fig = _root_figure(obj_ax)

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


def _default_parameter(study: StudyLike) -> Parameter | None:
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
def schedule(study: StudyLike, trial: Trial | int) -> Figure:
    """The hyperparameter schedule that produced ``trial``, one segment per step.

    Uses :func:`poptune.lineage.schedule`, what :meth:`Study.schedule
    <poptune.Study.schedule>` returns (the trial's parent links back to its founder, oldest
    segment first). One subplot per study hyperparameter, in the study's
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
    entries = schedule_of(study.history, trial)
    by_id = {t.id: t for t in study.history.trials}
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
        if entries[i]["explore"] or is_exploit(segments[i], segments[i - 1])
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
