"""Rebuild objects (algorithms, stopping rules) from their JSON config."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from poptune.exceptions import ConfigurationError


def object_from_config(config: Mapping[str, Any], registry: Mapping[str, Any], base: type) -> Any:
    """Build ``cls(**kwargs)`` from ``{'type': name or 'module:Class', **kwargs}``.

    ``name`` is looked up in ``registry``; ``module:Class`` is imported, and must name a
    subclass of ``base``: a stored config (a database, a saved study) comes from a file that
    may not be trusted, and must not be able to call an arbitrary function (``os:system``) by
    naming it. A class with a ``from_config`` classmethod builds itself.

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
        module, _, qualname = kind.partition(":")
        try:
            cls = importlib.import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(f"cannot import {kind!r}: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise ConfigurationError(
                f"{kind!r} is not a {base.__module__}.{base.__qualname__} subclass: refusing "
                "to build it from a stored configuration"
            )
    else:
        cls = registry.get(kind)
        if cls is None:
            raise ConfigurationError(f"unknown type {kind!r}; known: {sorted(registry)}")
    if hasattr(cls, "from_config"):
        return cls.from_config(kwargs)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigurationError(f"cannot rebuild {kind} from {kwargs!r}: {exc}") from None
