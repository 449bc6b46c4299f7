"""Objects (algorithms, stopping rules) to and from their JSON config.

A config is ``{'type': name, **kwargs}``. ``name`` is a key of :data:`BUILTIN_ALGORITHMS` for
poptune's own algorithms, else ``module:Class``. The registry is an explicit, literal dict: a
user's class that happens to share a built-in's name never replaces the built-in when a
stored config is rebuilt (it is written, and rebuilt, as ``module:Class``).

**Trust.** A stored config comes from a file (a database, a saved study) that may not be
trusted, and importing a module runs its top-level code. So a stored ``module:Class`` (or a
PBT hook's ``module:function``, :mod:`poptune.algorithms.pbt.hooks`) is resolved only when its
module is already imported in this process (resolving it then runs no module code) or is
*trusted* in the current context (:func:`trusting`): named by the user (``trusted_modules=
[...]`` on a Study, ``join_study``, ``Study.load``; ``poptune worker --trust-module``; a
package trusts its submodules), or the module of an object the user passed
(:func:`modules_of_config` of the config the user's own algorithm wrote, which a study hands
on to the worker processes it starts). poptune's built-ins
are rebuilt from the explicit registries (:data:`BUILTIN_ALGORITHMS`,
:data:`BUILTIN_STOPPING_RULES`) by name or by their exact ``module:Class``, whatever the trust.
Anything else raises :class:`~poptune.exceptions.UntrustedModuleError` *before* importing.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from poptune.exceptions import ConfigurationError, UntrustedModuleError

__all__ = [
    "BUILTIN_ALGORITHMS",
    "BUILTIN_STOPPING_RULES",
    "config_type",
    "import_stored",
    "init_config",
    "is_builtin_path",
    "modules_of_config",
    "object_from_config",
    "trusted_modules",
    "trusting",
]

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

#: poptune's stopping rules (stored as their ``module:Class``; rebuilt without any trust).
BUILTIN_STOPPING_RULES: dict[str, str] = {
    "MedianStoppingRule": "poptune.stopping:MedianStoppingRule",
}

#: The modules a stored ``module:...`` may be imported from in this context (see the module
#: docstring); a context variable, so each thread and task has its own.
_TRUSTED: ContextVar[frozenset[str]] = ContextVar("poptune_trusted_modules", default=frozenset())

_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_STORED_NAME = re.compile(rf"({_MODULE.pattern}):({_MODULE.pattern})")


def check_trusted_modules(owner: str, modules: Any) -> tuple[str, ...]:
    """``trusted_modules`` as a tuple of dotted module names, or ArgumentTypeError /
    ConfigurationError naming ``owner`` and the bad value (None: none)."""
    from poptune._validation import reject

    if modules is None:
        return ()
    if isinstance(modules, str) or not isinstance(modules, Iterable):
        reject(owner, "trusted_modules", "a list of module names", modules, wrong_type=True)
    out = []
    for name in modules:
        if not isinstance(name, str) or not _MODULE.fullmatch(name):
            raise ConfigurationError(
                f"{owner}: trusted_modules must hold dotted module names such as 'mypkg' or "
                f"'mypkg.algorithms', got {name!r}"
            )
        out.append(name)
    return tuple(out)


def trusted_modules() -> frozenset[str]:
    """The modules trusted in the current context."""
    return _TRUSTED.get()


@contextmanager
def trusting(modules: Iterable[str], *, replace: bool = False) -> Iterator[None]:
    """Trust ``modules`` (and their submodules) while the block runs: on top of what is
    already trusted, or (``replace``) instead of it (``trusting((), replace=True)``: none)."""
    base = frozenset() if replace else _TRUSTED.get()
    token = _TRUSTED.set(base | frozenset(modules))
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def is_trusted(module: str) -> bool:
    """Whether a stored name may import ``module`` here."""
    return any(module == m or module.startswith(m + ".") for m in _TRUSTED.get())


def is_builtin_path(path: str) -> bool:
    """Whether ``module:Class`` is one of poptune's registered built-ins."""
    return path in _BUILTIN_PATHS


def modules_of_config(config: Any) -> set[str]:
    """The modules of every ``module:qualname`` text in ``config`` (a config written by an
    object the user passed) that this process has already imported: that object came from
    them, so rebuilding it imports nothing new."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, str) and _STORED_NAME.fullmatch(value):
            module = value.partition(":")[0]
            if module in sys.modules:
                found.add(module)

    walk(config)
    return found


def import_stored(path: str, what: str, prefix: str = "cannot import") -> Any:
    """The object a stored ``module:qualname`` names: one of poptune's registered built-ins,
    or of a module already imported, or trusted here (:func:`trusting`); nothing else is
    imported.

    Raises:
        UntrustedModuleError: the module is not trusted (nothing was imported).
        ConfigurationError: it cannot be imported, or has no such attribute.
    """
    module = path.partition(":")[0]
    if not (is_builtin_path(path) or module in sys.modules or is_trusted(module)):
        top = module.split(".")[0]
        raise UntrustedModuleError(
            f"{what} {path!r} names module {module!r}, which this process does not trust, so "
            f"it was not imported (importing runs its code). If you trust it, pass "
            f"trusted_modules=[{top!r}] (Study, join_study, Study.load) or "
            f"--trust-module {top} (poptune worker), or pass the object itself"
        )
    return import_path(path, prefix)


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
    :data:`BUILTIN_ALGORITHMS` holds); ``module:Class`` is imported by :func:`import_stored`
    (a registered built-in, or a trusted module; see the module docstring). Either way the
    class must be a subclass of ``base``: a stored config (a database, a saved study) comes
    from a file that may not be trusted, and must not be able to call an arbitrary function
    (``os:system``) by naming it. A class with a ``from_config`` classmethod builds itself.

    Raises:
        UntrustedModuleError: ``module:Class`` of a module not trusted here (not imported).
        ConfigurationError: no type, unknown type, not a subclass of ``base``, or arguments
            the class rejects.
    """
    kwargs = dict(config)
    kind = kwargs.pop("type", None)
    if not isinstance(kind, str):
        raise ConfigurationError(f"config without a 'type': {dict(config)!r}")
    cls: Any
    if ":" in kind:
        cls = import_stored(kind, f"the stored {base.__qualname__} type", "cannot import")
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


_BUILTIN_PATHS = frozenset((*BUILTIN_ALGORITHMS.values(), *BUILTIN_STOPPING_RULES.values()))
