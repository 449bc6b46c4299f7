"""The random streams a study's suggestions draw from (its config's ``rng_stream``).

* **Stream 2** (:class:`StudyStream`, every new study): one PCG64 generator, seeded once from
  the study seed and advanced continuously from suggestion to suggestion. Its position is kept
  in the algorithm's stored state under :data:`STATE_KEY` (written in the same transaction as
  the suggestion, hidden from the algorithm), so whichever worker, process or resumed session
  makes the next suggestion draws what an uninterrupted run would. A generator whose position
  is the stored one (this object wrote it) is used as it is: nothing is re-seeded or set.
* **Stream 1** (:class:`SuggestionRNG`, a study stored or saved without ``rng_stream``):
  every suggestion draws from a generator whose state is a hash of (study seed, trial
  number); one PCG64 generator is kept and its 128-bit state is *set* from a SplitMix64 hash.
  Old studies keep it, so they suggest exactly what they did.

The module-level :data:`rng` (SHERPA's ``sherpa.rng``, re-exported as ``poptune.rng``) gives a
study created without ``seed=`` its seed.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "STATE_KEY",
    "STREAMS",
    "STREAM_VERSION",
    "StudyStream",
    "SuggestionRNG",
    "check_stream",
    "default_seed",
    "rng",
    "stream_for",
]

#: The stream a new study draws from.
STREAM_VERSION = 2
#: The streams there are (1: per suggestion, 2: continuous).
STREAMS = (1, 2)
#: Where stream 2 keeps its position in the algorithm's stored state.
STATE_KEY = "_rng_stream"

_MASK64 = (1 << 64) - 1
#: A StudyStream's last written position while it is held back: equal to no stored one.
_UNWRITTEN = ["unwritten"]

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


def check_stream(stream: object) -> int:
    """``stream`` as a stream version (None: :data:`STREAM_VERSION`), or ConfigurationError
    naming the bad value."""
    if stream is None:
        return STREAM_VERSION
    if type(stream) is not int or stream not in STREAMS:
        from poptune.exceptions import ConfigurationError

        raise ConfigurationError(
            f"Study: rng_stream must be one of {list(STREAMS)} or None, got {stream!r}"
        )
    return stream


def stream_for(seed: int, stream: int) -> SuggestionRNG | StudyStream:
    """The generator source of a study with this seed and stream version."""
    return StudyStream(seed) if stream == 2 else SuggestionRNG(seed)


class SuggestionRNG:
    """Stream 1: a numpy Generator re-positioned deterministically for each (seed, number,
    salt)."""

    __slots__ = ("_bitgen", "_inc", "_state", "generator", "seed")
    stream = 1

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

    def begin(self, state: dict, number: int) -> np.random.Generator:
        """The generator suggestion ``number`` draws from (``state``: the stored algorithm
        state, unused by this stream)."""
        return self.at(number)

    def end(self, state: dict, new_state: dict) -> None:
        """After the suggestion: nothing to record for this stream."""


class StudyStream:
    """Stream 2: one generator, advanced continuously; its position travels in the stored
    algorithm state (:meth:`begin` takes it out, :meth:`end` puts the new one in)."""

    __slots__ = ("_bitgen", "_start", "_token", "generator", "seed")
    stream = 2

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._bitgen = np.random.PCG64(self.seed)
        self._start = self._bitgen.state
        self.generator = np.random.Generator(self._bitgen)
        self._token: list | None = None  # the position this object last wrote (None: start)

    def begin(self, state: dict, number: int) -> np.random.Generator:
        """The generator, at the position ``state`` records (taken out of it: the algorithm
        never sees it); set only when another writer moved the stream since this object's
        last suggestion (a worker, another Study object, a resumed session)."""
        token = state.pop(STATE_KEY, None)
        if token != self._token:
            if token is None:
                self._bitgen.state = self._start
            else:
                position, has_uint32, uinteger = token
                inner = {"state": int(position, 16), "inc": self._start["state"]["inc"]}
                self._bitgen.state = {
                    "bit_generator": "PCG64",
                    "state": inner,
                    "has_uint32": has_uint32,
                    "uinteger": uinteger,
                }
            self._token = token
        return self.generator

    def hold(self) -> None:
        """The generator moves on without its position being written (a MemoryStorage writes
        it when its state is read, with :meth:`end`): no stored position is this one's now."""
        self._token = _UNWRITTEN

    def end(self, state: dict, new_state: dict) -> None:
        """Record where the stream is now in ``state`` (the dict :meth:`begin` read) and in
        ``new_state`` (what the algorithm left as its state, if another dict)."""
        now = self._bitgen.state
        token = [format(now["state"]["state"], "x"), now["has_uint32"], now["uinteger"]]
        self._token = token
        state[STATE_KEY] = token
        if new_state is not state:
            new_state[STATE_KEY] = token
