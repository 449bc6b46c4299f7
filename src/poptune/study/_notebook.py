"""How a Study shows itself: a short ``repr``, a few lines for IPython's pretty printer, an
HTML summary as a notebook cell's value, and the live dashboard embedded in a notebook.

:class:`NotebookDisplay` is a base of :class:`~poptune.Study`. Nothing here imports IPython:
Jupyter finds ``_repr_html_`` and ``_repr_pretty_`` by name. Every value shown in HTML is
escaped (parameter values, names and errors are user data).
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from poptune.exceptions import ConfigurationError
from poptune.study import _dashboard
from poptune.study._progress import planned_trials

if TYPE_CHECKING:
    from poptune.study.study import Study
    from poptune.trial import Trial

__all__ = ["DashboardFrame", "NotebookDisplay", "summary"]

#: How many of the latest trials the summaries list.
LAST_TRIALS = 5
_STATUSES = ("COMPLETED", "RUNNING", "QUEUED", "STOPPED", "FAILED")


def _number(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.6g}"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _params(trial: Trial | dict[str, Any], names: list[str]) -> str:
    values = trial.parameters if not isinstance(trial, dict) else trial
    return ", ".join(f"{n}={_number(values[n])}" for n in names if n in values)


def _storage(study: Study) -> str:
    url = getattr(study._storage, "url", None)
    if url is None:
        return "memory"
    return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", str(url))  # never a password


def _algorithm(study: Study) -> str:
    algorithm = study.algorithm
    name = type(algorithm).__name__
    population = getattr(algorithm, "population_size", None)
    generations = getattr(algorithm, "num_generations", None)
    if isinstance(population, int) and isinstance(generations, int):
        return f"{name} (population {population} × {generations} generations)"
    planned = planned_trials(algorithm)
    return f"{name} ({planned} trials)" if planned is not None else name


def summary(study: Study) -> dict[str, Any]:
    """What the displays show: name, direction, algorithm, storage, trials by status, the
    best result (``get_best_result()``) and the last :data:`LAST_TRIALS` trials, each
    ``(id, status, best objective or None, parameters text)``."""
    trials = study.trials
    counts = Counter(t.status.value for t in trials)
    lower = study.lower_is_better
    last = []
    for trial in trials[-LAST_TRIALS:]:
        best = trial.best_observation(lower)
        shown = [p.name for p in study.parameters]
        last.append((trial.id, trial.status.value, None if best is None else best.objective,
                     _params(trial, shown)))  # fmt: skip
    return {
        "name": study.name,
        "direction": "minimize" if lower else "maximize",
        "algorithm": _algorithm(study),
        "storage": _storage(study),
        "n_trials": len(trials),
        "by_status": {s: counts[s] for s in _STATUSES if counts[s]},
        "best": study.get_best_result(),
        "parameters": [p.name for p in study.parameters],
        "last": last,
        "dashboard": study.dashboard_url,
    }


def _statuses(info: dict[str, Any]) -> str:
    parts = [f"{n} {s}" for s, n in info["by_status"].items()]
    return f"{info['n_trials']} trial(s)" + (f" ({', '.join(parts)})" if parts else "")


def _best_line(info: dict[str, Any]) -> str:
    best = info["best"]
    if not best:
        return "no completed trial yet"
    return (f"{_number(best['Objective'])} (trial {best['Trial-ID']}, iteration "
            f"{best['Iteration']}: {_params(best, info['parameters'])})")  # fmt: skip


def text(study: Study) -> str:
    """A few lines: name, direction and algorithm; trials by status; the best result."""
    info = summary(study)
    return "\n".join([
        f"Study {info['name']!r}: {info['direction']}, {info['algorithm']}",
        f"  {_statuses(info)}",
        f"  best: {_best_line(info)}",
    ])  # fmt: skip


def to_html(study: Study) -> str:
    """The summary as an HTML fragment, every value escaped."""
    info = summary(study)
    e = html.escape
    rows = "".join(
        f"<tr><td>{tid}</td><td>{e(status)}</td>"
        f"<td>{'' if value is None else e(_number(value))}</td><td>{e(params)}</td></tr>"
        for tid, status, value, params in info["last"]
    )
    last = (
        "<table><thead><tr><th>trial</th><th>status</th><th>best objective</th>"
        f"<th>parameters</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else ""
    )
    dashboard = info["dashboard"]
    link = f'<div>dashboard: <a href="{e(dashboard)}">{e(dashboard)}</a></div>' if dashboard else ""
    return (
        '<div class="poptune-study">'
        f"<strong>Study {e(info['name'])}</strong> · {e(info['direction'])} · "
        f"{e(info['algorithm'])}<br>"
        f"<div>storage: <code>{e(info['storage'])}</code></div>"
        f"<div>{e(_statuses(info))}</div>"
        f"<div>best: {e(_best_line(info))}</div>"
        f"{link}{last}</div>"
    )


@dataclass(frozen=True)
class DashboardFrame:
    """The live dashboard in a notebook cell: an ``<iframe>`` of ``url`` (``width``: CSS, e.g.
    ``"100%"``; ``height`` in pixels). Shows as that frame where HTML is displayed and as its
    URL elsewhere."""

    url: str
    width: str = "100%"
    height: int = 640

    def _repr_html_(self) -> str:
        e = html.escape
        return (f'<iframe src="{e(self.url)}" width="{e(str(self.width))}" '
                f'height="{int(self.height)}" style="border:0" '
                'title="poptune dashboard"></iframe>')  # fmt: skip

    def __str__(self) -> str:
        return self.url


class NotebookDisplay:
    """The displays of a :class:`~poptune.Study` (a base class of it)."""

    def __repr__(self: Study) -> str:  # type: ignore[misc]
        return (f"Study({self.name!r}, {type(self.algorithm).__name__}, "
                f"{'minimize' if self.lower_is_better else 'maximize'}, "
                f"trials={self._history.n_trials})")  # fmt: skip

    def _repr_pretty_(self: Study, printer: Any, cycle: bool) -> None:  # type: ignore[misc]
        """IPython's plain-text display: :func:`text`."""
        printer.text(repr(self) if cycle else text(self))

    def _repr_html_(self: Study) -> str:  # type: ignore[misc]
        """A notebook's display: direction, algorithm, storage, trials by status, the best
        result and the last trials (:func:`to_html`)."""
        return to_html(self)

    def show_dashboard(  # type: ignore[misc]
        self: Study,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        height: int = 640,
        width: str = "100%",
    ) -> DashboardFrame:
        """Embed this study's live dashboard in a notebook: leave the result as the cell's
        value. Starts the dashboard (as :meth:`start_dashboard`, on ``port`` of ``host``;
        default 0, a free port) unless this object already runs one, which is reused.

        Args:
            port: the port to serve on when one is started (0: a free one).
            host: the interface to serve on (default this machine only; the browser showing
                the notebook must reach it).
            height: the frame's height in pixels (default 640).
            width: the frame's width, as CSS (default ``"100%"``).

        Returns:
            a :class:`DashboardFrame` (``url``, ``_repr_html_``).

        Raises:
            MissingDependencyError: ``poptune[dashboard]`` is not installed.
            ConfigurationError: the port cannot be bound, or a bad height.
        """
        if not isinstance(height, int) or isinstance(height, bool) or height < 1:
            raise ConfigurationError(f"show_dashboard: height must be an int >= 1, got {height!r}")
        if self._dashboard is None:
            _dashboard.restart(self, port, host, allow_stop=False)
        return DashboardFrame(str(self.dashboard_url), width, height)
