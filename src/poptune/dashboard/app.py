"""The dashboard's ASGI application: a JSON API over a storage, and one page.

API (every answer JSON; errors ``{"error": "..."}`` with 400, 403, 404 or 409)::

    GET  /api/info                                   poptune version, allow_stop, storage
    GET  /api/studies                                every study's summary
    GET  /api/studies/{name}                         summary + parameters + algorithm config
    GET  /api/studies/{name}/trials                  ?since=V&status=S&generation=G
                                                     &sort=K&order=asc|desc
                                                     &offset=O&limit=L&observations=0|1
    GET  /api/studies/{name}/curves                  ?top=N&recent=M&points=P
    GET  /api/studies/{name}/trials/{id}             one trial with its schedule
    GET  /api/studies/{name}/lineage                 PBT nodes and edges
    GET  /api/studies/{name}/population              ?start=G&count=N&value=last|best&since=V
                                                     PBT lanes: one per member, a window of
                                                     generations, exploit arrows
    POST /api/studies/{name}/trials/{id}/stop        only with allow_stop; header X-Poptune: stop

The page (``/``) is static HTML and JavaScript from :mod:`poptune.dashboard`'s ``static``
folder; Plotly.js is served from the installed ``plotly`` package (no CDN), gzip-compressed
once per process, at a versioned URL (``/api/info``'s ``plotly``) that browsers cache for good
(:mod:`poptune.dashboard._assets`).
"""

from __future__ import annotations

import importlib.util
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

from poptune._validation import check_choice, reject
from poptune._version import __version__
from poptune.dashboard._assets import asset, response_for
from poptune.dashboard._data import (
    CURVES_POINTS,
    CURVES_RECENT,
    CURVES_TOP,
    DashboardData,
    StopNotAllowedError,
)
from poptune.dashboard._population import DEFAULT_GENERATIONS
from poptune.exceptions import (
    ConfigurationError,
    MissingDependencyError,
    PoptuneError,
    StudyNotFoundError,
    TrialFinishedError,
    UnknownTrialError,
)

__all__ = ["create_app", "host_of", "is_loopback_host", "plotly_js_path"]

STATIC = Path(__file__).parent / "static"

#: Passed as ``trusted_hosts``: answer to every loopback Host (:func:`is_loopback_host`) and
#: nothing else (a DNS rebinding guard for a dashboard bound to a loopback address).
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


def host_of(value: str) -> str:
    """The host name of an HTTP ``Host`` header (or a bind address), without its port or
    the brackets of an IPv6 literal, in lower case: ``[::1]:8880`` -> ``::1``."""
    text = value.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        return text[1:end] if end > 0 else text
    if text.count(":") == 1:  # name:port (more colons: a bare IPv6 address)
        text = text.split(":", 1)[0]
    return text.rstrip(".")


def is_loopback_host(value: str) -> bool:
    """Whether a ``Host`` header (or a bind address) names this machine only: ``localhost``
    and ``*.localhost`` (RFC 6761), any address of 127.0.0.0/8, ``::1`` and an IPv4-mapped
    loopback address, with or without a port."""
    host = host_of(value)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


class _HostGuard:
    """ASGI middleware answering 400 to a request whose Host header is not trusted."""

    def __init__(self, app: Any, allowed: Callable[[str], bool]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = ""
            for key, value in scope["headers"]:
                if key == b"host":
                    host = value.decode("latin-1")
                    break
            if not self.allowed(host):
                from starlette.responses import JSONResponse

                response = JSONResponse({"error": "invalid host header"}, status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


def plotly_js_path() -> Path:
    """The ``plotly.min.js`` bundled with the installed ``plotly`` package.

    Raises:
        MissingDependencyError: plotly is not installed (``pip install "poptune[dashboard]"``).
    """
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError('the dashboard needs plotly: pip install "poptune[dashboard]"')
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise ConfigurationError(f"the installed plotly package has no {path.name} at {path}")
    return path


def _int_arg(params: Any, key: str, default: int | None, minimum: int = 0) -> int | None:
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    value: int | None
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        reject("dashboard", f"query parameter {key}", f"an int >= {minimum}", raw, wrong_type=False)
    return value


def _flag(params: Any, key: str, default: bool) -> bool:
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    if raw not in ("0", "1", "true", "false"):
        reject("dashboard", f"query parameter {key}", "0 or 1", raw, wrong_type=False)
    return raw in ("1", "true")


def create_app(data: DashboardData, *, trusted_hosts: list[str] | None = None) -> Any:
    """The Starlette application serving ``data``.

    Args:
        data: what to serve (a storage and whether stopping trials is allowed).
        trusted_hosts: host names the app answers to, whatever the port (None: any). A
            dashboard bound to a loopback address passes :data:`LOOPBACK_HOSTS`, which means
            every loopback name and address (:func:`is_loopback_host`), so a web page
            elsewhere cannot reach it through DNS rebinding.

    Raises:
        MissingDependencyError: Starlette or plotly is not installed.
    """
    try:
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.requests import Request
        from starlette.responses import FileResponse, JSONResponse, Response
        from starlette.routing import Route
    except ImportError:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            'the dashboard needs starlette and uvicorn: pip install "poptune[dashboard]"'
        ) from None
    plotly_js = plotly_js_path()
    plotly_url = f"static/plotly-{asset(plotly_js, 'text/javascript').tag}.min.js"

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def api(handler: Callable[[Request], Any]) -> Callable[[Request], Response]:
        """Map poptune errors to HTTP statuses; runs in Starlette's thread pool."""

        def endpoint(request: Request) -> Response:
            try:
                result = handler(request)
            except StopNotAllowedError as exc:
                return error(403, str(exc))
            except (StudyNotFoundError, UnknownTrialError) as exc:
                return error(404, exc.args[0] if exc.args else str(exc))
            except TrialFinishedError as exc:
                return error(409, str(exc))
            except ConfigurationError as exc:
                return error(400, str(exc))
            except PoptuneError as exc:
                return error(500, str(exc))
            if isinstance(result, Response):
                return result
            return JSONResponse(result, headers={"Cache-Control": "no-store"})

        return endpoint

    def info(request: Request) -> dict[str, Any]:
        return {"poptune": __version__, "allow_stop": data.allow_stop, "storage": data.label,
                "plotly": plotly_url}  # fmt: skip

    def studies(request: Request) -> list[dict[str, Any]]:
        return data.studies()

    def study(request: Request) -> dict[str, Any]:
        return data.study(request.path_params["name"])

    def trials(request: Request) -> dict[str, Any]:
        q = request.query_params
        order = q.get("order", "asc")
        check_choice("dashboard", "query parameter order", order, ("asc", "desc"))
        return data.trials(
            request.path_params["name"],
            since=_int_arg(q, "since", 0) or 0,
            status=q.get("status") or None,
            generation=_int_arg(q, "generation", None),
            sort=q.get("sort", "id"),
            descending=order == "desc",
            offset=_int_arg(q, "offset", 0) or 0,
            limit=_int_arg(q, "limit", None, minimum=1),
            observations=_flag(q, "observations", True),
        )

    def curves(request: Request) -> dict[str, Any]:
        q = request.query_params
        return data.curves(
            request.path_params["name"],
            top=_int_arg(q, "top", CURVES_TOP) or 0,
            recent=_int_arg(q, "recent", CURVES_RECENT) or 0,
            max_points=_int_arg(q, "points", CURVES_POINTS, minimum=2) or CURVES_POINTS,
        )

    def trial(request: Request) -> dict[str, Any]:
        return data.trial(request.path_params["name"], request.path_params["tid"])

    def lineage(request: Request) -> dict[str, Any]:
        return data.lineage(request.path_params["name"])

    def lanes(request: Request) -> dict[str, Any]:
        q = request.query_params
        return data.population(
            request.path_params["name"],
            start=_int_arg(q, "start", None),
            count=_int_arg(q, "count", DEFAULT_GENERATIONS, minimum=1) or DEFAULT_GENERATIONS,
            value=q.get("value") or "last",
            since=_int_arg(q, "since", None),
        )

    def stop(request: Request) -> Response:
        if request.method != "POST":  # routed here so that a GET is not taken for a study name
            return error(405, f"method {request.method} not allowed: POST to stop a trial")
        # A custom header makes a cross-site form post impossible (it would need a CORS
        # preflight, which this app never grants).
        if request.headers.get("x-poptune") != "stop":
            return error(403, "stop requests need the header 'X-Poptune: stop'")
        name, tid = request.path_params["name"], request.path_params["tid"]
        data.request_stop(name, tid)
        return JSONResponse({"study": name, "trial": tid, "stop_requested": True})

    def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    files = {
        "app.js": (STATIC / "app.js", "text/javascript"),
        "style.css": (STATIC / "style.css", "text/css"),
        "favicon.svg": (STATIC / "favicon.svg", "image/svg+xml"),
        "plotly.min.js": (plotly_js, "text/javascript"),
    }

    def static(request: Request) -> Response:
        name = request.path_params["file"]
        versioned = name == plotly_url.removeprefix("static/")
        entry = files.get("plotly.min.js" if versioned else name)
        if entry is None:
            return error(404, f"no static file {name!r}")
        return response_for(request, asset(*entry), immutable=versioned)

    def not_found(request: Request, exc: Exception) -> Response:
        return error(404, f"no such page: {request.url.path}")

    def bad_method(request: Request, exc: Exception) -> Response:
        return error(405, f"method {request.method} not allowed on {request.url.path}")

    async def headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    from starlette.middleware.base import BaseHTTPMiddleware

    middleware = [Middleware(BaseHTTPMiddleware, dispatch=headers)]
    if trusted_hosts is not None:
        if trusted_hosts == LOOPBACK_HOSTS:
            allowed: Callable[[str], bool] = is_loopback_host
        else:
            names = {host_of(h) for h in trusted_hosts}
            allowed = lambda header: host_of(header) in names  # noqa: E731
        middleware.insert(0, Middleware(_HostGuard, allowed=allowed))
    routes = [
        Route("/", page),
        Route("/static/{file}", static),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/api/info", api(info)),
        Route("/api/studies", api(studies)),
        Route("/api/studies/{name:path}/trials/{tid:int}/stop", api(stop), methods=["GET", "POST"]),
        Route("/api/studies/{name:path}/trials/{tid:int}", api(trial)),
        Route("/api/studies/{name:path}/trials", api(trials)),
        Route("/api/studies/{name:path}/lineage", api(lineage)),
        Route("/api/studies/{name:path}/curves", api(curves)),
        Route("/api/studies/{name:path}/population", api(lanes)),
        Route("/api/studies/{name:path}", api(study)),
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={404: not_found, 405: bad_method},
    )
