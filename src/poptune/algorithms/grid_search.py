"""Grid search."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from poptune._validation import check_int
from poptune.algorithms.base import Algorithm, SuggestResult
from poptune.history import History
from poptune.parameters import Continuous, Discrete, Parameter
from poptune.trial import AlgorithmState

__all__ = ["GridSearch"]


def grid_values(parameter: Parameter, num_grid_points: int) -> list[Any]:
    """The grid of one parameter: every Choice/Ordinal value, or ``num_grid_points``
    evenly spaced numbers (log-spaced for log scale) with both ends included; integer
    grids are rounded and de-duplicated."""
    if isinstance(parameter, Continuous):
        space = np.geomspace if parameter.scale == "log" else np.linspace
        values = [float(v) for v in space(parameter.low, parameter.high, num_grid_points)]
        values[0], values[-1] = parameter.low, parameter.high  # exact ends
        return values
    if isinstance(parameter, Discrete):
        space = np.geomspace if parameter.scale == "log" else np.linspace
        raw = space(parameter.low, parameter.high, num_grid_points)
        return list(dict.fromkeys(int(round(float(v))) for v in raw))
    return list(parameter.range)


class GridSearch(Algorithm):
    """Every combination of parameter values, the last parameter varying fastest, then DONE.

    Args:
        num_grid_points: points per Continuous/Discrete parameter (>= 2, ends included).

    The grid is never built in full: the i-th combination is decoded from i, so a grid of
    millions of points costs nothing up front.
    """

    def __init__(self, num_grid_points: int = 2) -> None:
        self.num_grid_points = check_int("GridSearch", "num_grid_points", num_grid_points, 2)
        self._grids: list[tuple[str, list[Any]]] | None = None

    def setup(self, parameters: Sequence[Parameter], lower_is_better: bool) -> None:
        super().setup(parameters, lower_is_better)
        self._grids = [(p.name, grid_values(p, self.num_grid_points)) for p in parameters]

    @property
    def size(self) -> int:
        """Number of grid points (after :meth:`setup`)."""
        assert self._grids is not None, "GridSearch.setup() has not been called"
        return math.prod(len(values) for _, values in self._grids)

    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        if self._grids is None:
            self.setup(history.parameters, history.lower_is_better)
        grids = self._grids
        assert grids is not None
        i = history.state.get("i", 0)
        if i >= self.size:
            return AlgorithmState.DONE
        history.state["i"] = i + 1
        out: dict[str, Any] = {}
        for name, values in reversed(grids):
            i, k = divmod(i, len(values))
            out[name] = values[k]
        return {name: out[name] for name, _ in grids}
