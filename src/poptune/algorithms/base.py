"""The algorithm contract.

An algorithm is a pure decision maker. :class:`~poptune.Study` calls

* :meth:`Algorithm.setup` once, when the study is created or loaded, with the study's
  parameters and direction: check that the configuration fits the study there and raise
  :class:`~poptune.exceptions.ConfigurationError` otherwise;
* :meth:`Algorithm.suggest` each time a worker asks for a trial, inside the storage
  transaction that holds the study lock, with a :class:`~poptune.history.History` synced just
  before and a random generator positioned for this suggestion.

``suggest`` returns a parameter dict, a :class:`Suggestion` (parameters plus bookkeeping that
is not a parameter), ``AlgorithmState.WAIT`` or ``AlgorithmState.DONE``. It must not keep
counters in ``self``: whatever it needs to remember goes into ``history.state`` (a JSON dict
stored with the study), so that any worker in any process can make the next suggestion and a
resumed study carries on exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from poptune._config import object_from_config
from poptune.exceptions import ConfigurationError
from poptune.history import History
from poptune.parameters import Parameter
from poptune.trial import AlgorithmState, Trial

__all__ = ["Algorithm", "Suggestion", "algorithm_from_config", "ranked_best_trial", "ranks_own_way"]


class Suggestion:
    """What an algorithm suggests: the trial's ``parameters`` and its ``meta`` bookkeeping.

    ``parameters`` becomes ``trial.parameters`` (include SHERPA bookkeeping keys such as
    ``generation`` here); ``meta`` becomes ``trial.meta`` (JSON values: ``member``,
    ``parent``, ``explore``...).
    """

    __slots__ = ("meta", "parameters")

    def __init__(self, parameters: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        self.parameters = parameters
        self.meta = meta or {}

    def __repr__(self) -> str:
        return f"Suggestion(parameters={self.parameters!r}, meta={self.meta!r})"


SuggestResult = dict[str, Any] | Suggestion | AlgorithmState | None

_REGISTRY: dict[str, type[Algorithm]] = {}


class Algorithm:
    """Base class of search algorithms.

    Subclasses implement :meth:`suggest` and, to be saved and shared between processes,
    :meth:`get_config` (the constructor's keyword arguments as JSON).
    """

    #: Bookkeeping keys this algorithm adds to ``trial.parameters`` (a parameter of the
    #: study may not use these names).
    reserved_keys: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def setup(self, parameters: Sequence[Parameter], lower_is_better: bool) -> None:
        """Check the configuration against the study. Default: only the reserved keys."""
        clash = sorted({p.name for p in parameters} & set(self.reserved_keys))
        if clash:
            raise ConfigurationError(
                f"{type(self).__name__} adds the keys {list(self.reserved_keys)} to "
                f"trial.parameters; rename the parameter(s) {clash}"
            )

    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        """Return the next trial's parameters, a :class:`Suggestion`, WAIT or DONE."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """Constructor keyword arguments, JSON-serializable. Override in subclasses."""
        return {}

    def pending_checkpoints(self, history: History) -> set[str]:
        """Checkpoint names that trials this algorithm has decided on but not yet handed out
        will load (checkpoint garbage collection keeps them). Default: none."""
        return set()

    def best_trial(self, history: History, state: Mapping[str, Any]) -> Trial | None:
        """The trial :meth:`~poptune.Study.get_best_result` reports, given the history and the
        algorithm's stored JSON ``state``. Default: the COMPLETED trial holding the best single
        observation. ``Repeat(agg=True)`` answers with the best configuration by its mean.

        Only called for algorithms that override it (the default needs no state read).
        """
        return history.best_trial()

    def to_config(self) -> dict[str, Any]:
        """``{'type': <class name or module:Class>, **get_config()}``."""
        cls = type(self)
        name = cls.__name__
        if _REGISTRY.get(name) is not cls or not cls.__module__.startswith("poptune."):
            name = f"{cls.__module__}:{cls.__qualname__}"
        return {"type": name, **self.get_config()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def ranked_best_trial(
    algorithm: Algorithm | None,
    history: History,
    read_state: Callable[[], Mapping[str, Any]],
) -> Trial | None:
    """The trial ``get_best_result`` reports: ``history.best_trial()``, unless ``algorithm``
    ranks trials its own way (overrides :meth:`Algorithm.best_trial`, as ``Repeat(agg=True)``
    does); its state is then read with ``read_state()`` (only then: a storage read)."""
    if algorithm is None or not ranks_own_way(algorithm):
        return history.best_trial()
    return algorithm.best_trial(history, read_state())


def ranks_own_way(algorithm: Algorithm) -> bool:
    """Whether the algorithm overrides :meth:`Algorithm.best_trial`."""
    return type(algorithm).best_trial is not Algorithm.best_trial


def algorithm_from_config(config: Mapping[str, Any]) -> Algorithm:
    """Rebuild an algorithm from :meth:`Algorithm.to_config`'s output.

    Raises:
        ConfigurationError: unknown type or arguments that the class rejects.
    """
    algorithm = object_from_config(config, _REGISTRY, Algorithm)
    if not isinstance(algorithm, Algorithm):
        raise ConfigurationError(f"{config.get('type')!r} is not a poptune Algorithm")
    return algorithm
