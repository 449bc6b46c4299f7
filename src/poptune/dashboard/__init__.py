"""The live web dashboard (extra ``poptune[dashboard]``: Starlette, uvicorn, plotly).

It shows every study of a storage: the study list, a sortable and filterable trials table,
learning curves, parallel coordinates, the PBT family tree (lineage) and the hyperparameter
schedules, and updates within a second or two of a new observation. It reads the storage and
writes nothing, unless started with ``allow_stop=True``: then a "Stop" button asks a running
trial to stop (``study.should_trial_stop`` / ``trial.should_stop()`` answer True).

Start it

* from a script: ``Study(..., dashboard_port=8880)`` (a background thread of the script's
  process that never keeps it from exiting) or :func:`start_dashboard`;
* from a shell: ``poptune dashboard sqlite:///runs.db --port 8880`` (or a PostgreSQL URL, an
  SQLite file path, or a directory written by ``Study.save``);
* for a saved study: ``Study.load_dashboard(path)`` / ``Study.run_dashboard(path)``.

It binds 127.0.0.1 unless told otherwise (``host="0.0.0.0"`` shares it with the network: it has
no authentication, so do that only on a network you trust). It cannot starve the process it
runs in: at most :data:`MAX_CONNECTIONS` open connections, request headers within
:data:`HEADER_TIMEOUT` seconds, idle keep-alive connections closed after 5 s, and its error
log rate-limited (:mod:`poptune.dashboard._guard`).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import socket
import sys
import threading
import time
import urllib.parse
from typing import TextIO

from poptune._validation import check_int, check_number
from poptune.dashboard._data import DashboardData, StopNotAllowedError
from poptune.dashboard._guard import (
    HEADER_TIMEOUT,
    MAX_CONNECTIONS,
    guarded_protocol,
    loop_exception_handler,
    quiet_uvicorn,
)
from poptune.exceptions import ConfigurationError, MissingDependencyError
from poptune.storage import Storage, resolve

__all__ = [
    "HEADER_TIMEOUT",
    "MAX_CONNECTIONS",
    "DashboardData",
    "DashboardServer",
    "StopNotAllowedError",
    "run_dashboard",
    "start_dashboard",
]

logger = logging.getLogger("poptune.dashboard")

#: Default port (SHERPA's dashboard used 8880 too).
DEFAULT_PORT = 8880


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); port 0 picks a free one."""
    check_int("dashboard", "port", port, 0, maximum=65535)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigurationError(f"dashboard host {host!r} cannot be resolved: {exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"the dashboard cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    sock.setblocking(False)
    return sock


class DashboardServer:
    """A dashboard over one storage, served by uvicorn.

    Use :func:`start_dashboard` (background thread) or :func:`run_dashboard` (blocking)
    rather than this class directly.

    Args:
        max_connections: open connections at most (default :data:`MAX_CONNECTIONS`); past
            it the connection that has waited longest for its request is closed, or the new
            one refused.
        header_timeout: seconds a client has to send a request's headers (default
            :data:`HEADER_TIMEOUT`); a slower one is disconnected.
        (the others as in :func:`start_dashboard`)

    Attributes:
        host, port: where it listens (``port`` is the real one when 0 was asked for).
        url: the address to open in a browser (the study's page when a study was named).
    """

    def __init__(
        self,
        storage: Storage | str,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        allow_stop: bool = False,
        study_name: str | None = None,
        max_connections: int = MAX_CONNECTIONS,
        header_timeout: float = HEADER_TIMEOUT,
    ) -> None:
        check_int("dashboard", "max_connections", max_connections, 1)
        check_number("dashboard", "header_timeout", header_timeout, minimum=0.001)
        try:
            import uvicorn
        except ImportError:
            raise MissingDependencyError(
                'the dashboard needs uvicorn and starlette: pip install "poptune[dashboard]"'
            ) from None
        from poptune.dashboard.app import LOOPBACK_HOSTS, create_app, is_loopback_host

        self.data = DashboardData(resolve(storage), allow_stop=allow_stop)
        self.loopback = is_loopback_host(host)
        trusted = LOOPBACK_HOSTS if self.loopback else None
        app = create_app(self.data, trusted_hosts=trusted)
        self._socket = _bind(host, port)
        self.host = host
        self.port = int(self._socket.getsockname()[1])
        shown = f"[{host}]" if ":" in host else host
        base = f"http://{shown}:{self.port}/"
        page = f"#/study/{urllib.parse.quote(study_name, safe='')}" if study_name else ""
        self.url = base + page
        config = uvicorn.Config(
            app,
            log_level="warning",
            log_config=None,  # never configure the application's logging
            access_log=False,
            lifespan="off",
            ws="none",
            http=guarded_protocol(max_connections, header_timeout),
            loop="asyncio",
            timeout_keep_alive=5,
            h11_max_incomplete_event_size=16 * 1024,
            backlog=64,
        )
        quiet_uvicorn()
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self.keep = False  # start_dashboard(keep=True): serve on at exit until Ctrl-C

    # -- running ---------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> DashboardServer:
        """Serve in a daemon thread (it never keeps the process from exiting); return once
        the server answers."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(
            target=self._run,
            name=f"poptune-dashboard-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._warm_up()
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if not self._server.started:
            raise ConfigurationError(f"the dashboard did not start on {self.url}")
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until Ctrl-C (or :meth:`stop` from another thread)."""
        self._warm_up()
        self._run()

    def _warm_up(self) -> None:
        """Read every study once and compress Plotly.js in the background, so that the first
        page opened waits for neither (about a second each for 16,000 trials and for the
        compression)."""

        def read() -> None:
            try:
                from poptune.dashboard._assets import asset
                from poptune.dashboard.app import plotly_js_path

                _ = asset(plotly_js_path(), "text/javascript").compressed  # compressed once, now
                self.data.studies()
            except Exception as exc:  # the page will show the error; nothing to do here
                logger.debug("dashboard warm-up failed: %s", exc)

        threading.Thread(target=read, name=f"poptune-dashboard-warm-{self.port}",
                         daemon=True).start()  # fmt: skip

    def _run(self) -> None:
        async def serve() -> None:
            asyncio.get_running_loop().set_exception_handler(loop_exception_handler)
            await self._server.serve(sockets=[self._socket])

        asyncio.run(serve())

    def keep_serving(self, out: TextIO | None = None) -> None:
        """Serve on until Ctrl-C (SIGINT) or until the server ends, then :meth:`stop`: what a
        dashboard started with ``keep=True`` does once the script's work is done (at its
        :func:`atexit`, or ``Study.close``). Prints where it serves to ``out`` (default
        standard output) first. Returns at once when the server is not running."""
        atexit.unregister(self.keep_serving)
        if self.running:
            stream = sys.stdout if out is None else out
            stream.write(f"poptune dashboard still serving at {self.url} (Ctrl-C stops it)\n")
            stream.flush()
            try:
                while self.running:
                    time.sleep(0.2)
            except KeyboardInterrupt:
                pass
        self.stop()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and wait (at most ``timeout`` seconds) for the server to end."""
        atexit.unregister(self.keep_serving)
        self._server.should_exit = True
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        try:
            self._socket.close()
        except OSError:  # pragma: no cover
            pass
        atexit.unregister(self.stop)

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None and self._thread.is_alive() and self._server.started

    def banner(self) -> str:
        """The lines printed when the dashboard starts (SHERPA printed a similar banner)."""
        line = "-" * 63
        where = (
            "this machine only; host 0.0.0.0 would share it, without authentication"
            if self.loopback
            else f"listening on {self.host}: anyone who can reach this port can see it"
        )
        mode = "stop buttons enabled" if self.data.allow_stop else "read-only"
        return f"{line}\npoptune dashboard running ({mode}). Open\n{self.url}\n({where})\n{line}\n"

    def __repr__(self) -> str:
        return f"DashboardServer(url={self.url!r}, running={self.running})"


def start_dashboard(
    storage: Storage | str,
    *,
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    allow_stop: bool = False,
    study_name: str | None = None,
    banner: TextIO | bool = True,
    keep: bool = False,
) -> DashboardServer:
    """Start a dashboard over ``storage`` in a background thread and return it.

    Args:
        storage: a storage, a database URL (``sqlite:///runs.db``, ``postgresql://...``) or
            the path of an SQLite file (:func:`poptune.storage.resolve`).
        port: TCP port; 0 picks a free one (read it back from ``server.port``). Default 8880.
        host: address to bind. Default 127.0.0.1 (this machine only).
        allow_stop: enable the "Stop" buttons (the dashboard's only write). Default False.
        study_name: the study whose page :attr:`DashboardServer.url` opens (every study of
            the storage is shown either way).
        banner: True (default) prints the banner with the URL to standard output, a file
            object prints it there, False prints nothing.
        keep: True keeps serving once the script's work is done: at the interpreter's exit
            (or :meth:`DashboardServer.keep_serving`) it prints the URL and waits until
            Ctrl-C. Default False: the dashboard ends with the script.

    Raises:
        MissingDependencyError: the ``dashboard`` extra is not installed.
        ConfigurationError: the port cannot be bound (in use, or a privileged port).
    """
    server = DashboardServer(
        storage, host=host, port=port, allow_stop=allow_stop, study_name=study_name
    ).start()
    server.keep = bool(keep)
    if keep:
        atexit.unregister(server.stop)
        atexit.register(server.keep_serving)
    _print_banner(server, banner)
    logger.info("poptune dashboard at %s", server.url)
    return server


def run_dashboard(
    storage: Storage | str,
    *,
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    allow_stop: bool = False,
    study_name: str | None = None,
    banner: TextIO | bool = True,
) -> None:
    """Serve a dashboard over ``storage`` in this thread until Ctrl-C.

    Same arguments and errors as :func:`start_dashboard`.
    """
    server = DashboardServer(
        storage, host=host, port=port, allow_stop=allow_stop, study_name=study_name
    )
    _print_banner(server, banner)
    server.serve_forever()


def _print_banner(server: DashboardServer, banner: TextIO | bool) -> None:
    out = sys.stdout if banner is True else banner
    if out is False or out is None:
        return
    out.write(server.banner())  # type: ignore[union-attr]
    out.flush()  # type: ignore[union-attr]
