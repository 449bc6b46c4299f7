"""The progress bar of ``study.optimize``: trials done out of those planned, the best
objective and the PBT generation.

Where it shows: in a Jupyter notebook (an IPython kernel) tqdm's notebook widget
(``tqdm.notebook``, which needs ipywidgets; without them, tqdm's text bar in the cell's
output); in a terminal (standard error is a TTY) tqdm's text bar; nowhere else (a log file, CI)
unless ``POPTUNE_PROGRESS=1``. ``show_progress=False`` or ``POPTUNE_PROGRESS=0`` turns it off.

Its total: ``n_trials`` when the call was given one; otherwise what the algorithm plans
(``population_size x num_generations`` for Population Based Training, ``max_num_trials`` for
the searches that have one), counted over the whole study so a resumed run starts where the
last one stopped; none (a bare count) when the algorithm plans no number.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poptune.study.study import Study

__all__ = ["Progress", "in_notebook", "planned_trials", "wanted"]

ENV = "POPTUNE_PROGRESS"


def in_notebook() -> bool:
    """True in a Jupyter kernel (IPython is asked only when something imported it)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - a half-imported IPython: no notebook
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def wanted(enabled: bool) -> bool:
    """Whether to show a bar: asked for, not turned off by ``POPTUNE_PROGRESS=0``, and in a
    notebook, a terminal, or forced by ``POPTUNE_PROGRESS=1``."""
    setting = os.environ.get(ENV, "").strip().lower()
    if not enabled or setting in ("0", "false", "off", "no"):
        return False
    if setting in ("1", "true", "on", "yes"):
        return True
    return in_notebook() or sys.stderr.isatty()


def planned_trials(algorithm: Any) -> int | None:
    """How many trials ``algorithm`` plans in all: population x generations for PBT, its
    ``max_num_trials``, or None when it plans no number (a wrapper's inner algorithm is
    asked through its ``algorithm`` attribute, times ``num_times`` for ``Repeat``)."""
    times = 1
    for _ in range(4):  # a wrapper of a wrapper at most
        population = getattr(algorithm, "population_size", None)
        generations = getattr(algorithm, "num_generations", None)
        if isinstance(population, int) and isinstance(generations, int):
            return times * population * generations
        limit = getattr(algorithm, "max_num_trials", None)
        if isinstance(limit, int):
            return times * limit
        repeats = getattr(algorithm, "num_times", 1)
        times *= repeats if isinstance(repeats, int) else 1
        algorithm = getattr(algorithm, "algorithm", None)
        if algorithm is None:
            break
    return None


def _bar(notebook: bool, **options: Any) -> Any:
    if notebook:
        from tqdm import notebook as widgets

        if getattr(widgets, "IProgress", None) is not None:  # else no ipywidgets: text
            return widgets.tqdm(**options)
    from tqdm.std import tqdm as text_bar

    return text_bar(file=sys.stderr, dynamic_ncols=True, **options)


class Progress:
    """One ``optimize`` call's bar (or nothing, when :func:`wanted` says no).

    Args:
        study: the study being optimized.
        n_trials: the call's ``n_trials`` (its total), or None (the algorithm's plan).
        start: how many trials the study had before the call.
        enabled: the call's ``show_progress``.
    """

    def __init__(self, study: Study, n_trials: int | None, start: int, enabled: bool) -> None:
        self.study = study
        self.bar: Any = None
        self.total = n_trials if n_trials is not None else planned_trials(study.algorithm)
        # With n_trials, this call's trials; with the algorithm's plan, the whole study's.
        self.start = start if n_trials is not None else 0
        if wanted(enabled):
            done = self._done() if n_trials is None else 0
            self.bar = _bar(in_notebook(), total=self.total, initial=done, unit="trial",
                            desc=study.name or "study")  # fmt: skip

    def _done(self) -> int:
        return sum(1 for t in self.study.history.trials[self.start :] if t.is_finished)

    def refresh(self) -> None:
        if self.bar is None:
            return
        history = self.study.history
        done = sum(1 for t in history.trials[self.start :] if t.is_finished)
        best = self.study.get_best_result()
        info = []
        if best:
            info.append(f"best={best['Objective']:.4g}")
        if history.generations:
            info.append(f"generation={history.generations[-1]}")
        if self.bar.total is not None and done > self.bar.total:
            self.bar.total = done  # retries and replacements of lost trials
        self.bar.n = done
        self.bar.set_postfix_str(" ".join(info), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.refresh()
            self.bar.close()
