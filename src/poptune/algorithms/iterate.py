"""Iterate over given configurations."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from poptune._validation import check_instance
from poptune.algorithms.base import Algorithm, SuggestResult
from poptune.exceptions import ConfigurationError
from poptune.history import History
from poptune.parameters import Choice, Parameter
from poptune.trial import AlgorithmState

__all__ = ["Iterate"]


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same type (``1`` and ``True`` are two values)."""
    return type(a) is type(b) and bool(a == b)


class Iterate(Algorithm):
    """Suggest the given parameter dicts in order, then DONE.

    Args:
        hp_iter: an iterable of dicts; each must give a value for every study parameter
            (checked when the study is created).

    Raises:
        ConfigurationError: an element is not a dict, or misses a study parameter.
    """

    def __init__(self, hp_iter: Iterable[Mapping[str, Any]]) -> None:
        configs = list(hp_iter)
        for i, config in enumerate(configs):
            check_instance("Iterate", f"element {i} of hp_iter", config, Mapping, "a dict")
        self.hp_iter = [dict(c) for c in configs]

    def setup(self, parameters, lower_is_better):  # type: ignore[no-untyped-def]
        super().setup(parameters, lower_is_better)
        for i, config in enumerate(self.hp_iter):
            for p in parameters:
                if p.name not in config:
                    raise ConfigurationError(
                        f"Iterate: element {i} of hp_iter ({config!r}) has no value for "
                        f"parameter {p.name!r}"
                    )

    def get_parameters(self) -> list[Parameter]:
        """SHERPA's ``Iterate.get_parameters()``: one :class:`~poptune.Choice` per key of the
        dicts (in the order keys first appear), over the distinct values it takes (in the order
        they first appear), e.g. to create the Study:
        ``Study(alg.get_parameters(), alg, lower_is_better=True)``.

        Raises:
            InvalidParameterError: a key with a value that is not a valid Choice value.
        """
        values: dict[str, list[Any]] = {}
        for config in self.hp_iter:
            for key, value in config.items():
                seen = values.setdefault(key, [])
                if not any(_same(value, v) for v in seen):
                    seen.append(value)
        return [Choice(key, vals) for key, vals in values.items()]

    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        i = history.state.get("i", 0)
        if i >= len(self.hp_iter):
            return AlgorithmState.DONE
        history.state["i"] = i + 1
        return dict(self.hp_iter[i])
