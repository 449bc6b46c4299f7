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

SHERPA's protocol works both ways (see docs/algorithms/custom.md, "Porting a SHERPA algorithm"):

* every algorithm answers SHERPA's stand-alone call :meth:`Algorithm.get_suggestion`
  ``(parameters, results=None, lower_is_better=True)``, reading SHERPA's results DataFrame;
* a subclass that implements only ``get_suggestion`` (SHERPA's way to write an algorithm), or
  any object with such a method (:class:`SherpaAlgorithm` wraps it), runs in a Study: its
  :meth:`Algorithm.suggest` hands it the study's results table, kept up to date incrementally.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

import poptune._rng as _rng
from poptune._config import BUILTIN_ALGORITHMS, config_type, init_config, object_from_config
from poptune._validation import reject
from poptune.exceptions import ConfigurationError
from poptune.history import History
from poptune.parameters import Parameter
from poptune.results import ResultsTable, history_from_results
from poptune.trial import AlgorithmState

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Algorithm",
    "SherpaAlgorithm",
    "Suggestion",
    "algorithm_from_config",
    "as_algorithm",
    "protocol_name",
]


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


class _StandAlone:
    """What an algorithm remembers between SHERPA-style stand-alone calls (on the object, as
    SHERPA's algorithms kept it): its JSON state, what it suggested under which trial id, and
    the study it was set up for."""

    __slots__ = ("setup_for", "state", "suggested")

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.suggested: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        self.setup_for: tuple[Any, ...] | None = None


class Algorithm(abc.ABC):  # noqa: B024 - abstract by __new__: suggest or get_suggestion
    """Base class of search algorithms.

    Subclasses implement :meth:`suggest` (poptune's protocol) or, as in SHERPA,
    :meth:`get_suggestion` only; a class that implements neither cannot be instantiated. To
    be saved and shared between processes, an
    algorithm is rebuilt from :meth:`to_config`: its ``__init__`` should store each argument
    under the argument's own name (then :meth:`get_config` needs no override), or the class
    overrides :meth:`get_config`.
    """

    #: Bookkeeping keys this algorithm adds to ``trial.parameters`` (a parameter of the
    #: study may not use these names).
    reserved_keys: ClassVar[tuple[str, ...]] = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> Algorithm:
        if cls.suggest is Algorithm.suggest and cls.get_suggestion is Algorithm.get_suggestion:
            raise TypeError(
                f"Can't instantiate abstract class {cls.__name__}: implement "
                "suggest(history, rng) (poptune's protocol) or get_suggestion(parameters, "
                "results, lower_is_better) (SHERPA's)"
            )
        return super().__new__(cls)

    def setup(self, parameters: Sequence[Parameter], lower_is_better: bool) -> None:
        """Check the configuration against the study. Default: only the reserved keys."""
        clash = sorted({p.name for p in parameters} & set(self.reserved_keys))
        if clash:
            raise ConfigurationError(
                f"{type(self).__name__} adds the keys {list(self.reserved_keys)} to "
                f"trial.parameters; rename the parameter(s) {clash}"
            )

    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        """Return the next trial's parameters, a :class:`Suggestion`, WAIT or DONE.

        Subclasses implement it. For a SHERPA-style subclass (one that implements only
        :meth:`get_suggestion`) this default calls ``get_suggestion(history.parameters,
        results, history.lower_is_better)`` with ``results`` the study's results DataFrame
        (as :attr:`~poptune.Study.results` has it, or, under ``Repeat(agg=True)``, one trial
        per configuration with the aggregated columns), kept on the object and extended by
        the rows that changed since the previous call (an empty table with the columns
        ``Trial-ID``, ``Status``, ``Iteration``, the parameters and ``Objective`` before the
        first result). The module-level :data:`poptune.rng` is seeded from ``rng`` first, so a
        seeded study is reproducible with an algorithm that draws from it
        (``parameter.sample()``). ``None`` and ``AlgorithmState.DONE`` mean DONE.
        """
        table = self.__dict__.get("_poptune_results")
        if table is None:
            table = self.__dict__["_poptune_results"] = ResultsTable()
        results = table.frame(history)
        _rng.rng.seed(int(rng.integers(0, 2**32)))
        answer = self.get_suggestion(history.parameters, results, history.lower_is_better)
        return _from_sherpa(answer, self)

    def sherpa_results(self, history: History) -> pd.DataFrame | None:
        """For a SHERPA-style algorithm that reads ``history``'s study: the results DataFrame
        it was given, brought up to date (the same object while nothing changed, as SHERPA's
        ``study.results`` was one object); None otherwise. :attr:`~poptune.Study.results`
        answers with it, so ``study.results`` is the table the algorithm saw."""
        table = self.__dict__.get("_poptune_results")
        if table is None or not table.follows(history):
            return None
        return table.frame(history)

    def get_suggestion(
        self,
        parameters: Sequence[Parameter],
        results: pd.DataFrame | None = None,
        lower_is_better: bool = True,
    ) -> dict[str, Any] | AlgorithmState | None:
        """SHERPA's stand-alone call: the next parameter dict, ``AlgorithmState.WAIT``, or
        ``None`` once the algorithm is done (SHERPA's algorithms answered ``None`` then).

        ``results`` is SHERPA's results DataFrame (columns as in
        :attr:`~poptune.Study.results`; see :func:`poptune.results.history_from_results` for
        how it is read) or None. The algorithm's state stays on the object between calls, as
        in SHERPA: the k-th dict it returns is taken to be trial k (SHERPA's Study numbers
        trials that way), so a trial that the table does not mention yet counts as running.
        The draws come from the module-level :data:`poptune.rng` (``poptune.rng.seed(n)``
        reproduces a sequence of calls). :meth:`setup` runs on the first call and whenever
        the parameters or the direction change.

        A SHERPA-style subclass overrides this method instead of :meth:`suggest`.
        """
        if type(self).suggest is Algorithm.suggest:
            raise NotImplementedError(f"{type(self).__name__} implements no get_suggestion")
        params = list(parameters)
        memo: _StandAlone | None = self.__dict__.get("_poptune_standalone")
        if memo is None:
            memo = self.__dict__["_poptune_standalone"] = _StandAlone()
        key = (tuple(repr(p.to_dict()) for p in params), bool(lower_is_better))
        if memo.setup_for != key:
            self.setup(params, bool(lower_is_better))
            memo.setup_for = key
        history = history_from_results(
            results, params, bool(lower_is_better), memo.suggested, self.reserved_keys
        )
        history.state = memo.state
        generator = np.random.Generator(np.random.PCG64(int(_rng.rng.randint(0, 2**31 - 1))))
        answer = self.suggest(history, generator)
        memo.state = history.state
        if answer is AlgorithmState.WAIT:
            return AlgorithmState.WAIT
        if answer is None or answer is AlgorithmState.DONE:
            return None
        if isinstance(answer, Suggestion):
            suggested, meta = dict(answer.parameters), dict(answer.meta)
        elif isinstance(answer, dict):
            suggested, meta = dict(answer), {}
        else:
            raise ConfigurationError(f"{protocol_name(self)} returned {answer!r}")
        memo.suggested[history.next_trial_id] = (suggested, meta)
        return dict(suggested)

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


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _from_sherpa(answer: Any, algorithm: Any) -> SuggestResult:
    """A SHERPA ``get_suggestion`` answer as :meth:`Algorithm.suggest` gives it: None or DONE
    is DONE, WAIT is WAIT, a mapping is a parameter dict (numpy scalars made plain)."""
    if answer is None or (isinstance(answer, str) and answer == AlgorithmState.DONE):
        return AlgorithmState.DONE
    if isinstance(answer, str) and answer == AlgorithmState.WAIT:
        return AlgorithmState.WAIT
    if isinstance(answer, Mapping):
        return {str(k): _plain(v) for k, v in answer.items()}
    raise ConfigurationError(
        f"{protocol_name(algorithm)} returned {answer!r}; expected a dict of parameter "
        "values, AlgorithmState.WAIT, AlgorithmState.DONE or None"
    )


def protocol_name(algorithm: Any) -> str:
    """``'Class.suggest'``, or ``'Class.get_suggestion'`` for a SHERPA-style algorithm: the
    method an error about a suggestion names."""
    if isinstance(algorithm, SherpaAlgorithm):
        return f"{type(algorithm.algorithm).__name__}.get_suggestion"
    method = "get_suggestion" if type(algorithm).suggest is Algorithm.suggest else "suggest"
    return f"{type(algorithm).__name__}.{method}"


class SherpaAlgorithm(Algorithm):
    """Runs any object with SHERPA's ``get_suggestion(parameters, results, lower_is_better)``
    method (a duck-typed or mocked algorithm) as an :class:`Algorithm`: a Study, ``Repeat``
    and ``Chain`` wrap such an object in it (:func:`as_algorithm`).

    ``algorithm`` is the object; each suggestion calls its ``get_suggestion`` as
    :meth:`Algorithm.suggest` describes. Its config is ``{'type': 'module:Class'}`` of the
    object's class (no arguments): a study stores it to check that every process joining it
    passes the same kind of object, but it is never rebuilt from a stored configuration (the
    class is not an Algorithm, and the trust rule of :mod:`poptune._config` builds nothing
    else), so a process joining or resuming the study passes the object again
    (``Study(..., algorithm=obj)``, ``Study.load(path, algorithm=obj)``); ``load_study``
    opens it read-only. Subclass :class:`Algorithm` instead to have it rebuilt.
    """

    def __init__(self, algorithm: Any) -> None:
        if isinstance(algorithm, Algorithm) or not callable(
            getattr(algorithm, "get_suggestion", None)
        ):
            what = "an object with a get_suggestion method that is not an Algorithm"
            reject("SherpaAlgorithm", "algorithm", what, algorithm, wrong_type=True)
        self.algorithm = algorithm

    def get_suggestion(
        self,
        parameters: Sequence[Parameter],
        results: pd.DataFrame | None = None,
        lower_is_better: bool = True,
    ) -> Any:
        return self.algorithm.get_suggestion(parameters, results, lower_is_better)

    def to_config(self) -> dict[str, Any]:
        cls = type(self.algorithm)
        return {"type": f"{cls.__module__}:{cls.__qualname__}"}

    def get_config(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        return f"SherpaAlgorithm({self.algorithm!r})"


def as_algorithm(owner: str, algorithm: Any, name: str = "algorithm") -> Algorithm:
    """``algorithm`` as an :class:`Algorithm`: itself, or an object with a ``get_suggestion``
    method wrapped in :class:`SherpaAlgorithm`; ArgumentTypeError (naming ``owner`` and the
    argument ``name``) otherwise."""
    if isinstance(algorithm, Algorithm):
        return algorithm
    if callable(getattr(algorithm, "get_suggestion", None)):
        return SherpaAlgorithm(algorithm)
    note = "(or an object with SHERPA's get_suggestion method)"
    what = "a poptune.algorithms.Algorithm"
    reject(owner, name, what, algorithm, wrong_type=True, note=note)


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
