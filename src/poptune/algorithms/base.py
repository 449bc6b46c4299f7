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

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from poptune._config import BUILTIN_ALGORITHMS, config_type, init_config, object_from_config
from poptune.exceptions import ConfigurationError
from poptune.history import History
from poptune.parameters import Parameter
from poptune.trial import AlgorithmState

__all__ = ["Algorithm", "Suggestion", "algorithm_from_config"]


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


class Algorithm(abc.ABC):
    """Base class of search algorithms.

    Subclasses implement :meth:`suggest`. To be saved and shared between processes, an
    algorithm is rebuilt from :meth:`to_config`: its ``__init__`` should store each argument
    under the argument's own name (then :meth:`get_config` needs no override), or the class
    overrides :meth:`get_config`.
    """

    #: Bookkeeping keys this algorithm adds to ``trial.parameters`` (a parameter of the
    #: study may not use these names).
    reserved_keys: ClassVar[tuple[str, ...]] = ()

    def setup(self, parameters: Sequence[Parameter], lower_is_better: bool) -> None:
        """Check the configuration against the study. Default: only the reserved keys."""
        clash = sorted({p.name for p in parameters} & set(self.reserved_keys))
        if clash:
            raise ConfigurationError(
                f"{type(self).__name__} adds the keys {list(self.reserved_keys)} to "
                f"trial.parameters; rename the parameter(s) {clash}"
            )

    @abc.abstractmethod
    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        """Return the next trial's parameters, a :class:`Suggestion`, WAIT or DONE."""

    def get_config(self) -> dict[str, Any]:
        """Constructor keyword arguments, JSON-serializable.

        Default: every named parameter of ``__init__`` read from the attribute of the same
        name (scikit-learn's ``get_params`` convention; tuples as lists). Override it where an
        argument is stored differently, or holds another algorithm (its ``to_config()``).
        """
        return init_config(self)

    def pending_checkpoints(self, history: History) -> set[str]:
        """Checkpoint names that trials this algorithm has decided on but not yet handed out
        will load (checkpoint garbage collection keeps them). Default: none."""
        return set()

    def to_config(self) -> dict[str, Any]:
        """``{'type': <built-in name or module:Class>, **get_config()}``.

        The short name is used only for poptune's own classes (the explicit registry
        :data:`poptune._config.BUILTIN_ALGORITHMS`); any other class, even one named like a
        built-in, is written as ``module:Class``.
        """
        return {"type": config_type(type(self), BUILTIN_ALGORITHMS), **self.get_config()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def algorithm_from_config(config: Mapping[str, Any]) -> Algorithm:
    """Rebuild an algorithm from :meth:`Algorithm.to_config`'s output.

    Raises:
        ConfigurationError: unknown type, a ``module:Class`` that is not an Algorithm, or
            arguments that the class rejects.
    """
    algorithm = object_from_config(config, BUILTIN_ALGORITHMS, Algorithm)
    if not isinstance(algorithm, Algorithm):
        raise ConfigurationError(f"{config.get('type')!r} is not a poptune Algorithm")
    return algorithm
