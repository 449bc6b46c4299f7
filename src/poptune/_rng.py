"""Reproducible per-suggestion random generators.

Every suggestion draws from a generator whose state is a hash of (study seed, trial number),
so a study gives the same trials whichever worker, process or resumed session made each
suggestion. Building a ``numpy.random.Generator`` from a ``SeedSequence`` costs ~10 µs; here
one PCG64 generator is kept and its 128-bit state is *set* from a SplitMix64 hash (~1 µs).

The module-level :data:`rng` (SHERPA's ``sherpa.rng``, re-exported as ``poptune.rng``) gives a
study created without ``seed=`` its seed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SuggestionRNG", "default_seed", "rng"]

_MASK64 = (1 << 64) - 1

#: Module-level generator (SHERPA's ``sherpa.rng``): a study created without ``seed=``
#: draws its seed from it, so ``poptune.rng.seed(0)`` makes a script reproducible.
rng: np.random.RandomState = np.random.RandomState()


def default_seed() -> int:
    """A study seed drawn from :data:`rng` (seed it for reproducibility)."""
    return int(rng.randint(0, 2**31 - 1))


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class SuggestionRNG:
    """A numpy Generator re-positioned deterministically for each (seed, number, salt)."""

    __slots__ = ("_bitgen", "_inc", "_state", "generator", "seed")

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._bitgen = np.random.PCG64(self.seed)
        self._inc = self._bitgen.state["state"]["inc"]
        self.generator = np.random.Generator(self._bitgen)
        # The state given to the bit generator, reused (only its 128-bit state changes)
        self._state: dict = {
            "bit_generator": "PCG64",
            "state": {"state": 0, "inc": self._inc},
            "has_uint32": 0,
            "uinteger": 0,
        }

    def at(self, number: int, salt: int = 0) -> np.random.Generator:
        """The generator positioned for suggestion ``number`` (and an optional ``salt``)."""
        a = _splitmix64(self.seed ^ _splitmix64(number * 0x9E3779B1 + salt))
        b = _splitmix64(a ^ 0xD1B54A32D192ED03)
        state = self._state
        state["state"]["state"] = (a << 64) | b
        self._bitgen.state = state
        return self.generator
