"""The one wait-and-ask-again policy: ``for trial in study``, the worker loop and the job runner.

Each of them asks for a suggestion and, when the algorithm answers WAIT (a PBT generation still
running elsewhere, a job still running), sleeps before asking again. :class:`Backoff` is that
sleep: it starts at ``first`` seconds, grows by ``factor`` after every wait up to ``cap``, and
starts again from ``first`` once something came (:meth:`Backoff.reset`). A fixed interval (the
job runner's ``poll_interval``) is ``Backoff(first=interval, cap=interval)``.
"""

from __future__ import annotations

import time

__all__ = ["Backoff"]


class Backoff:
    """Sleeps ``first``, then ``factor`` times longer each time, at most ``cap`` seconds.

    Args:
        first: the first (and, after :meth:`reset`, the next) sleep in seconds.
        cap: the longest sleep.
        factor: how much longer each sleep is than the one before.
    """

    __slots__ = ("cap", "delay", "factor", "first")

    def __init__(self, first: float = 0.01, cap: float = 1.0, factor: float = 1.5) -> None:
        self.first = float(first)
        self.cap = float(cap)
        self.factor = float(factor)
        self.delay = self.first

    def reset(self) -> None:
        """Something came: the next wait is short again."""
        self.delay = self.first

    def wait(self, deadline: float | None = None) -> None:
        """Sleep the current delay (never past ``deadline``, a ``time.monotonic()`` value),
        then lengthen it."""
        delay = self.delay
        if deadline is not None:
            delay = max(0.0, min(delay, deadline - time.monotonic()))
        time.sleep(delay)
        self.delay = min(self.delay * self.factor, self.cap)
