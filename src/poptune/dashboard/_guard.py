"""What keeps the dashboard from hurting the process it runs in (often a training script).

uvicorn alone keeps every accepted connection open until its client sends a whole request:
a thousand half-sent requests hold a thousand file descriptors of the training process, and
its ``limit_concurrency`` answers 503 only once a request has arrived. So the dashboard's
HTTP protocol (uvicorn's h11 one, subclassed) adds:

* a cap on open connections (:data:`MAX_CONNECTIONS`): past it, the connection that has
  waited longest for its request headers is closed to make room, or the new one is refused
  when every connection is busy answering a request;
* a deadline for a request's headers (:data:`HEADER_TIMEOUT` seconds from the connection or
  from the first byte of the next request on a kept-alive connection): a slow-loris client
  is disconnected;
* uvicorn's own limits: idle keep-alive connections close after ``timeout_keep_alive`` and
  headers are capped at ``h11_max_incomplete_event_size`` bytes.

And :class:`QuietLog` lets through at most a few messages per interval from the server's
event loop and from uvicorn's error logger, then one line saying how many were suppressed,
so a flood of bad clients cannot fill the training log.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

__all__ = ["HEADER_TIMEOUT", "MAX_CONNECTIONS", "QuietLog", "guarded_protocol", "quiet_uvicorn"]

#: Default cap on the dashboard's open connections (a browser tab uses one to six).
MAX_CONNECTIONS = 64
#: Default seconds a client has to send a request's headers.
HEADER_TIMEOUT = 10.0

#: Where the server's event loop reports its errors (rate-limited).
logger = logging.getLogger("poptune.dashboard.server")


class QuietLog(logging.Filter):
    """A rate limit: at most ``burst`` records per ``interval`` seconds pass, then a note of
    how many were dropped when the next interval starts."""

    def __init__(self, burst: int = 5, interval: float = 60.0) -> None:
        super().__init__("poptune.dashboard.quiet")
        self.burst = burst
        self.interval = interval
        self._lock = threading.Lock()
        self._window = -1.0
        self._passed = 0
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._window >= self.interval:
                if self.dropped:
                    text = record.getMessage()
                    record.msg = f"%s (and {self.dropped} similar message(s) suppressed)"
                    record.args = (text,)
                    record.exc_info = record.exc_text = None
                self._window, self._passed, self.dropped = now, 0, 0
            if self._passed >= self.burst:
                self.dropped += 1
                return False
            self._passed += 1
            if record.exc_info and self._passed > 1:  # one traceback per interval is enough
                record.exc_info = record.exc_text = None
            return True


_UVICORN_FILTER = QuietLog()
_LOOP_FILTER = QuietLog()
_installed = threading.Lock()


def quiet_uvicorn() -> None:
    """Rate-limit uvicorn's error log (invalid requests, refused connections), once per
    process."""
    with _installed:
        log = logging.getLogger("uvicorn.error")
        if _UVICORN_FILTER not in log.filters:
            log.addFilter(_UVICORN_FILTER)
        if _LOOP_FILTER not in logger.filters:
            logger.addFilter(_LOOP_FILTER)


def loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The dashboard loop's exception handler: asyncio's errors (``accept`` failing with
    'Too many open files', a transport error) go to ``poptune.dashboard``, rate-limited."""
    exc = context.get("exception")
    message = context.get("message", "error in the dashboard's event loop")
    if exc is not None:
        logger.warning("dashboard: %s: %s", message, exc)
    else:
        logger.warning("dashboard: %s", message)


def guarded_protocol(max_connections: int, header_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a connection cap and a header deadline."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _waiting_since = 0.0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._waiting_since = time.monotonic()
            self._arm()
            if len(self.connections) > max_connections and not self._make_room():
                self._drop("refused: the dashboard has %d open connections", len(self.connections))

        def _awaiting_request(self) -> bool:
            return self.conn.their_state is h11.IDLE and self.cycle_done()

        def cycle_done(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _make_room(self) -> bool:
            """Close the connection waiting longest for its headers (maybe this one)."""
            waiting = [c for c in self.connections
                       if isinstance(c, GuardedH11Protocol) and c._awaiting_request()]  # fmt: skip
            if not waiting:
                return False
            oldest = min(waiting, key=lambda c: c._waiting_since)
            if oldest is self:
                return False
            oldest._drop("closed: the longest-waiting of %d connections", len(self.connections))
            return True

        def _drop(self, why: str, *args: Any) -> None:
            self._disarm()
            self.connections.discard(self)
            if self.transport is not None and not self.transport.is_closing():
                self.transport.abort()
            self.logger.warning("dashboard connection " + why, *args)

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if self._awaiting_request():
                self._drop("closed: no request headers within %g s", header_timeout)

        def data_received(self, data: bytes) -> None:
            if self._awaiting_request():
                if self._header_timer is None:
                    self._waiting_since = time.monotonic()
                self._arm()
            super().data_received(data)
            if not self._awaiting_request():
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedH11Protocol
