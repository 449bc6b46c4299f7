"""Objects (algorithms, stopping rules) to and from their JSON config.

A config is ``{'type': name, **kwargs}``. ``name`` is a key of :data:`BUILTIN_ALGORITHMS` for
poptune's own algorithms, else ``module:Class``. The registry is an explicit, literal dict: a
user's class that happens to share a built-in's name never replaces the built-in when a
stored config is rebuilt (it is written, and rebuilt, as ``module:Class``).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from poptune.exceptions import ConfigurationError

__all__ = ["BUILTIN_ALGORITHMS", "config_type", "init_config", "object_from_config"]

#: poptune's algorithms by the name a stored config gives them, as ``module:Class``. The
#: modules are imported when a config naming them is rebuilt (they are poptune's own, so
#: naming them in a database cannot run anything else).
BUILTIN_ALGORITHMS: dict[str, str] = {
    "BayesianOptimization": "poptune.algorithms.bayesian:BayesianOptimization",
    "Chain": "poptune.algorithms.chain:Chain",
    "GPyOpt": "poptune.algorithms.bayesian:GPyOpt",
    "Genetic": "poptune.algorithms.genetic:Genetic",
    "GridSearch": "poptune.algorithms.grid_search:GridSearch",
    "Hyperband": "poptune.algorithms.hyperband:Hyperband",
    "Iterate": "poptune.algorithms.iterate:Iterate",
    "LocalSearch": "poptune.algorithms.local_search:LocalSearch",
    "PB2": "poptune.algorithms.pbt.pb2:PB2",
    "PopulationBasedTraining": "poptune.algorithms.pbt.algorithm:PopulationBasedTraining",
    "RandomSearch": "poptune.algorithms.random_search:RandomSearch",
    "Repeat": "poptune.algorithms.repeat:Repeat",
    "Replay": "poptune.algorithms.pbt.replay:Replay",
    "SuccessiveHalving": "poptune.algorithms.successive_halving:SuccessiveHalving",
    "TPE": "poptune.algorithms.tpe:TPE",
}


def import_path(path: str, prefix: str = "cannot import") -> Any:
    """The object ``module:qualname`` names, importing the module: a ConfigurationError
    ``"<prefix> '<path>': <why>"`` if it does not exist. The one importer of stored and
    command-line names; callers apply their trust rule to what it returns."""
    module, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"{prefix} {path!r}: {exc}") from None
    return obj


def config_type(cls: type, registry: Mapping[str, str]) -> str:
    """The ``type`` a config of ``cls`` carries: its name when ``registry`` maps that name to
    ``cls`` itself, else ``module:Class``."""
    path = registry.get(cls.__name__)
    if path is not None and import_path(path) is cls:
        return cls.__name__
    return f"{cls.__module__}:{cls.__qualname__}"


def init_config(obj: Any) -> dict[str, Any]:
    """``obj``'s constructor arguments, read back from its attributes: each named parameter
    of ``type(obj).__init__`` (not ``*args``/``**kwargs``) that ``obj`` has an attribute of
    the same name for, in signature order; tuples become lists (as JSON stores them).

    An ``__init__`` that stores its arguments under their own names (scikit-learn's
    ``get_params`` convention) gets its config for free; a parameter stored differently is
    left out, and its class overrides ``get_config``.
    """
    out: dict[str, Any] = {}
    init = type(obj).__init__
    if init is object.__init__:
        return out
    for name, parameter in inspect.signature(init).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        try:
            value = getattr(obj, name)
        except AttributeError:
            continue
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


def object_from_config(config: Mapping[str, Any], registry: Mapping[str, Any], base: type) -> Any:
    """Build ``cls(**kwargs)`` from ``{'type': name or 'module:Class', **kwargs}``.

    ``name`` is looked up in ``registry`` (a class, or ``module:Class`` text such as
    :data:`BUILTIN_ALGORITHMS` holds); ``module:Class`` is imported. Either way the class must
    be a subclass of ``base``: a stored config (a database, a saved study) comes from a file
    that may not be trusted, and must not be able to call an arbitrary function
    (``os:system``) by naming it. A class with a ``from_config`` classmethod builds itself.

    Raises:
        ConfigurationError: no type, unknown type, not a subclass of ``base``, or arguments
            the class rejects.
    """
    kwargs = dict(config)
    kind = kwargs.pop("type", None)
    if not isinstance(kind, str):
        raise ConfigurationError(f"config without a 'type': {dict(config)!r}")
    cls: Any
    if ":" in kind:
        cls = import_path(kind)
    else:
        cls = registry.get(kind)
        if cls is None:
            raise ConfigurationError(f"unknown type {kind!r}; known: {sorted(registry)}")
        if isinstance(cls, str):
            cls = import_path(cls)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigurationError(
            f"{kind!r} is not a {base.__module__}.{base.__qualname__} subclass: refusing "
            "to build it from a stored configuration"
        )
    if hasattr(cls, "from_config"):
        return cls.from_config(kwargs)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigurationError(f"cannot rebuild {kind} from {kwargs!r}: {exc}") from None
