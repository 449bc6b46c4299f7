"""Hyperparameter definitions: Continuous, Discrete, Choice and Ordinal.

A parameter is a validated value object: it is checked when it is built, it can sample a
value, tell whether a value belongs to it, clip a number into its range, and round-trip
through JSON (:meth:`Parameter.to_dict` / :meth:`Parameter.from_dict`). The signatures are
SHERPA's: ``Continuous(name, range, scale='linear')``.

Differences from SHERPA (on purpose): ``Discrete`` samples its upper bound too (the range is
inclusive), and every bad definition raises :class:`~poptune.exceptions.InvalidParameterError`
naming the bad value instead of failing an ``assert`` or silently treating an unknown scale as
linear.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

import poptune._rng as _rng
from poptune.exceptions import InvalidParameterError

__all__ = ["Choice", "Continuous", "Discrete", "Ordinal", "Parameter"]

_SCALES = ("linear", "log")


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidParameterError(
            f"parameter name must be a str, got {name!r} of type {type(name).__name__}"
        )
    if not name:
        raise InvalidParameterError("parameter name must be a non-empty str, got ''")
    return name


class Parameter:
    """Base class of the four parameter types.

    Attributes:
        name: the key of the parameter in ``trial.parameters``.
        range: ``[low, high]`` for numeric parameters, the list of values otherwise.
        scale: ``'linear'`` or ``'log'`` (numeric parameters only; ``'linear'`` otherwise).
    """

    type: ClassVar[str] = ""
    name: str
    range: list[Any]
    scale: str

    def sample(self, rng: np.random.Generator | np.random.RandomState | None = None) -> Any:
        """Draw one value uniformly (in log space for log scale) using ``rng``.

        Without ``rng`` (SHERPA's ``parameter.sample()``) the value comes from the
        module-level :data:`poptune.rng`, so ``poptune.rng.seed(n)`` reproduces it; a
        ``numpy.random.RandomState`` works as well as a ``Generator``.
        """
        raise NotImplementedError

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a valid value of this parameter."""
        raise NotImplementedError

    def validate_value(self, value: Any) -> Any:
        """Return ``value`` in its canonical Python type, or raise InvalidParameterError."""
        raise NotImplementedError

    # -- serialization -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable description: ``{'name', 'type', 'range', 'scale'}``.

        Raises:
            InvalidParameterError: a Choice/Ordinal value cannot be written as JSON.
        """
        out = {"name": self.name, "type": self.type, "range": list(self.range), "scale": self.scale}
        try:
            json.dumps(out["range"], allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(
                f"parameter {self.name!r}: values {self.range!r} cannot be stored as JSON ({exc})"
            ) from None
        return out

    @staticmethod
    def from_dict(config: Mapping[str, Any]) -> Parameter:
        """Build a parameter from ``{'name', 'type', 'range'[, 'scale']}``.

        ``type`` is one of ``'continuous'``, ``'discrete'``, ``'choice'``, ``'ordinal'``
        (case-insensitive). ``scale`` defaults to ``'linear'``.

        Raises:
            InvalidParameterError: a key is missing or the type is unknown.
        """
        if not isinstance(config, Mapping):
            raise InvalidParameterError(f"Parameter.from_dict expects a dict, got {config!r}")
        missing = [k for k in ("name", "type", "range") if k not in config]
        if missing:
            raise InvalidParameterError(
                f"Parameter.from_dict: missing key(s) {missing} in {dict(config)!r}"
            )
        kind = str(config["type"]).lower()
        cls = _TYPES.get(kind)
        if cls is None:
            raise InvalidParameterError(
                f"Parameter.from_dict: unknown type {config['type']!r}; "
                f"expected one of {sorted(_TYPES)}"
            )
        scale = config.get("scale", "linear")
        if cls in (Choice, Ordinal):
            if scale not in (None, "linear"):
                raise InvalidParameterError(
                    f"parameter {config['name']!r}: scale {scale!r} is meaningless for "
                    f"type {kind!r}; use 'linear' or leave it out"
                )
            return cls(config["name"], config["range"])
        return cls(config["name"], config["range"], scale)

    @staticmethod
    def grid(parameter_grid: Mapping[str, Sequence[Any]]) -> list[Parameter]:
        """Turn ``{'name': [values...], ...}`` into a list of :class:`Choice` parameters."""
        if not isinstance(parameter_grid, Mapping):
            raise InvalidParameterError(
                f"Parameter.grid expects a dict of name -> values, got {parameter_grid!r}"
            )
        return [Choice(name, list(values)) for name, values in parameter_grid.items()]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Parameter):
            return NotImplemented
        return (
            type(self) is type(other)
            and self.name == other.name
            and self.scale == other.scale
            and list(self.range) == list(other.range)
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.name))

    def __repr__(self) -> str:
        scale = f", scale={self.scale!r}" if self.scale != "linear" else ""
        return f"{type(self).__name__}(name={self.name!r}, range={self.range!r}{scale})"


class _Numeric(Parameter):
    low: float
    high: float

    def __init__(self, name: str, range: Sequence[float], scale: str = "linear") -> None:  # noqa: A002
        self.name = _check_name(name)
        if scale not in _SCALES:
            raise InvalidParameterError(
                f"parameter {name!r}: unknown scale {scale!r}; expected 'linear' or 'log'"
            )
        self.scale = scale
        if isinstance(range, (str, bytes)) or not isinstance(range, Iterable):
            raise InvalidParameterError(
                f"parameter {name!r}: range must be [low, high], got {range!r}"
            )
        bounds = list(range)
        if len(bounds) != 2 or not all(_is_real(b) for b in bounds):
            raise InvalidParameterError(
                f"parameter {name!r}: range must be two numbers [low, high], got {range!r}"
            )
        low, high = bounds
        if not (math.isfinite(low) and math.isfinite(high)):
            raise InvalidParameterError(
                f"parameter {name!r}: range bounds must be finite, got {range!r}"
            )
        if low >= high:
            raise InvalidParameterError(
                f"parameter {name!r}: low must be < high, got range {range!r}"
            )
        if scale == "log" and low <= 0:
            raise InvalidParameterError(
                f"parameter {name!r}: log scale needs bounds > 0, got range {range!r}"
            )
        self._set_bounds(low, high)

    def _set_bounds(self, low: float, high: float) -> None:
        raise NotImplementedError

    def clip(self, value: float, bounds: Sequence[float] | None = None) -> Any:
        """Clip ``value`` into ``bounds`` (default: the parameter's own range)."""
        low, high = (self.low, self.high) if bounds is None else bounds
        return min(max(value, low), high)

    def contains(self, value: Any) -> bool:
        try:
            self.validate_value(value)
        except InvalidParameterError:
            return False
        return True


class Continuous(_Numeric):
    """A real-valued parameter sampled uniformly in ``[low, high]``.

    Args:
        name: key in ``trial.parameters``.
        range: ``[low, high]`` with ``low < high``, both finite.
        scale: ``'linear'`` (uniform) or ``'log'`` (uniform in log space; needs ``low > 0``).

    Raises:
        InvalidParameterError: on a non-str name, unknown scale, ``low >= high`` (also as
            floats), a NaN or infinite bound, a span ``high - low`` that overflows, or a log
            bound ``<= 0``.
    """

    type = "continuous"

    def _set_bounds(self, low: float, high: float) -> None:
        self.low = float(low)
        self.high = float(high)
        if not self.low < self.high:  # distinct ints that are one float: [10**20, 10**20 + 1]
            raise InvalidParameterError(
                f"parameter {self.name!r}: range {[low, high]!r} is a single float value "
                f"{self.low!r}; give bounds that differ as floats"
            )
        if not math.isfinite(self.high - self.low):
            raise InvalidParameterError(
                f"parameter {self.name!r}: range {[low, high]!r} is wider than a float can "
                "hold (high - low overflows); narrow it or use scale='log'"
            )
        self.range = [self.low, self.high]
        if self.scale == "log":
            self._log_low = math.log(self.low)
            self._log_span = math.log(self.high) - self._log_low

    def sample(self, rng: np.random.Generator | np.random.RandomState | None = None) -> float:
        # None: poptune.rng, looked up now
        return self._from_uniform((_rng.rng if rng is None else rng).random())

    def _from_uniform(self, u: float) -> float:
        """The value :meth:`sample` gives for the uniform draw ``u`` in [0, 1)."""
        if self.scale == "log":
            value = math.exp(self._log_low + u * self._log_span)
        else:
            value = self.low + u * (self.high - self.low)
        # min(max(value, low), high), without the two calls (NaN stays NaN, as there)
        return self.low if value < self.low else self.high if value > self.high else value

    def validate_value(self, value: Any) -> float:
        if not _is_real(value) or not math.isfinite(value):
            raise InvalidParameterError(
                f"parameter {self.name!r}: expected a finite number in {self.range}, got {value!r}"
            )
        if not self.low <= value <= self.high:
            raise InvalidParameterError(
                f"parameter {self.name!r}: value {value!r} is outside its range {self.range}"
            )
        return float(value)


class Discrete(_Numeric):
    """An integer parameter sampled uniformly in ``[low, high]``, both ends included.

    Args:
        name: key in ``trial.parameters``.
        range: ``[low, high]`` integers with ``low < high``.
        scale: ``'linear'`` or ``'log'`` (sampled in log space then rounded; ``low > 0``).

    Raises:
        InvalidParameterError: as for :class:`Continuous`, and for non-integral bounds.
    """

    type = "discrete"

    def _set_bounds(self, low: float, high: float) -> None:
        if int(low) != low or int(high) != high:
            raise InvalidParameterError(
                f"parameter {self.name!r}: Discrete bounds must be integers, got {[low, high]!r}"
            )
        self.low = int(low)
        self.high = int(high)
        self.range = [self.low, self.high]
        if self.scale == "log":
            # Round in log space over [low - 0.5, high + 0.5] so both ends are as likely.
            self._log_low = math.log(self.low - 0.5) if self.low > 0.5 else math.log(self.low)
            self._log_span = math.log(self.high + 0.5) - self._log_low

    def sample(self, rng: np.random.Generator | np.random.RandomState | None = None) -> int:
        # None: poptune.rng, looked up now
        return self._from_uniform((_rng.rng if rng is None else rng).random())

    def _from_uniform(self, u: float) -> int:
        """The value :meth:`sample` gives for the uniform draw ``u`` in [0, 1)."""
        if self.scale == "log":
            value = int(round(math.exp(self._log_low + u * self._log_span)))
        else:
            value = self.low + int(u * (self.high - self.low + 1))
        return self.low if value < self.low else self.high if value > self.high else value

    def validate_value(self, value: Any) -> int:
        if not _is_real(value) or not math.isfinite(value) or int(value) != value:
            raise InvalidParameterError(
                f"parameter {self.name!r}: expected an integer in {self.range}, got {value!r}"
            )
        if not self.low <= value <= self.high:
            raise InvalidParameterError(
                f"parameter {self.name!r}: value {value!r} is outside its range {self.range}"
            )
        return int(value)

    def clip(self, value: float, bounds: Sequence[float] | None = None) -> int:
        low, high = (self.low, self.high) if bounds is None else bounds
        return int(min(max(round(value), math.ceil(low)), math.floor(high)))


class _Categorical(Parameter):
    def __init__(self, name: str, range: Sequence[Any], scale: str = "linear") -> None:  # noqa: A002
        self.name = _check_name(name)
        if scale != "linear":
            raise InvalidParameterError(
                f"parameter {name!r}: scale {scale!r} is meaningless for "
                f"{type(self).__name__}; leave it out"
            )
        self.scale = "linear"
        if isinstance(range, (str, bytes, Mapping)) or not isinstance(range, Iterable):
            raise InvalidParameterError(
                f"parameter {name!r}: range must be a list of values, got {range!r}"
            )
        values = list(range)
        if not values:
            raise InvalidParameterError(f"parameter {name!r}: range must not be empty")
        for i, v in enumerate(values):
            if not _same(v, v):
                raise InvalidParameterError(
                    f"parameter {name!r}: value {v!r} in range {values!r} is not equal to "
                    "itself (NaN), so no suggestion of it could be recognized"
                )
            for w in values[:i]:
                if _same(v, w):
                    raise InvalidParameterError(
                        f"parameter {name!r}: duplicate value {v!r} in range {values!r}"
                    )
        self.range = values

    def sample(self, rng: np.random.Generator | np.random.RandomState | None = None) -> Any:
        return self._from_uniform((_rng.rng if rng is None else rng).random())

    def _from_uniform(self, u: float) -> Any:
        """The value :meth:`sample` gives for the uniform draw ``u`` in [0, 1)."""
        values = self.range
        n = len(values)
        i = int(u * n)  # n only where u * n rounds up to n (u a hair below 1)
        return values[i] if i < n else values[n - 1]

    def index(self, value: Any) -> int:
        """Position of ``value`` in the range; raises InvalidParameterError if absent."""
        for i, v in enumerate(self.range):
            if _same(v, value):
                return i
        raise InvalidParameterError(
            f"parameter {self.name!r}: value {value!r} is not one of {self.range!r}"
        )

    def contains(self, value: Any) -> bool:
        return any(_same(v, value) for v in self.range)

    def validate_value(self, value: Any) -> Any:
        return self.range[self.index(value)]


def _same(a: Any, b: Any) -> bool:
    """Equality that tells 1 from True and 1.0 from '1', and never raises."""
    if type(a) is not type(b) and (isinstance(a, bool) or isinstance(b, bool)):
        return False
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - arrays and odd objects: fall back to identity
        return a is b


class Choice(_Categorical):
    """An unordered set of values, sampled uniformly.

    Args:
        name: key in ``trial.parameters``.
        range: the values (non-empty, no duplicates, no NaN). Any Python objects work in memory;
            storing a study in a file or database needs JSON values (str, numbers, bool,
            None, lists, dicts).

    PBT and local search treat a Choice as unordered: exploring resamples it.
    """

    type = "choice"


class Ordinal(_Categorical):
    """An ordered list of values (e.g. batch sizes ``[16, 32, 64]``), sampled uniformly.

    Local search and PBT move an Ordinal one step up or down its list.
    """

    type = "ordinal"


#: The ``sample`` methods that draw one ``random()`` and map it with ``_from_uniform``.
_ONE_DRAW = (Continuous.sample, Discrete.sample, _Categorical.sample)


def uniform_makers(parameters: Sequence[Parameter]) -> list[Any] | None:
    """Each parameter's ``_from_uniform``, where every one samples by one ``random()`` draw
    mapped by it (so ``rng.random(len(parameters))`` gives what sampling each in turn gives);
    None where one samples otherwise (a subclass with its own ``sample``)."""
    if not all(type(p).sample in _ONE_DRAW for p in parameters):
        return None
    return [p._from_uniform for p in parameters]  # type: ignore[attr-defined]


_TYPES: dict[str, type[Parameter]] = {
    "continuous": Continuous,
    "discrete": Discrete,
    "choice": Choice,
    "ordinal": Ordinal,
}
