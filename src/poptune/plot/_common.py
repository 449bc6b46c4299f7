"""What the figures share: the study they read, matplotlib's lazy import and axis helpers."""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from poptune._validation import check_instance, reject
from poptune.exceptions import InvalidParameterError, MissingDependencyError
from poptune.history import History
from poptune.parameters import Continuous, Discrete, Parameter
from poptune.trial import Trial, TrialStatus

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


class StudyLike(Protocol):
    """What the figures read of a study: a :class:`~poptune.Study`, live or opened with
    :func:`poptune.load_study`, or anything else with these members."""

    name: str
    parameters: Sequence[Parameter]
    lower_is_better: bool

    @property
    def history(self) -> History: ...


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


def _check_study(study: Any, function: str) -> StudyLike:
    if not isinstance(getattr(study, "history", None), History) or not all(
        hasattr(study, name) for name in ("name", "parameters", "lower_is_better")
    ):
        what = "a poptune.Study (or one opened with poptune.load_study)"
        reject(f"poptune.plot.{function}()", "study", what, study, wrong_type=True)
    return study


def _new_figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    # Shown inline as a notebook cell's value even without pyplot (which registers a PNG
    # printer for figures only once it is imported): IPython asks the object for a PNG.
    figure._repr_png_ = functools.partial(_png, figure)  # type: ignore[attr-defined]
    return figure


def _png(figure: Figure) -> bytes:
    """The figure as PNG bytes (what a notebook displays)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _check_axes(ax: Any, function: str) -> Axes:
    from matplotlib.axes import Axes

    return check_instance(f"poptune.plot.{function}()", "ax", ax, Axes, "a matplotlib Axes")


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


def _direction(study: StudyLike) -> str:
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


def _parameter(study: StudyLike, name: Any) -> Parameter:
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
