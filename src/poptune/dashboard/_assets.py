"""The dashboard's static files, served small and cached: each is read and gzip-compressed
once per process (Plotly.js: 4.8 MB, about 1.4 MB compressed), answered with an ETag (a
matching ``If-None-Match`` gets 304), compressed when the client accepts gzip, and, at its
versioned URL (``static/plotly-<hash>.min.js``), marked immutable so that a browser fetches
it once."""

from __future__ import annotations

import gzip
import hashlib
import threading
from pathlib import Path
from typing import Any

__all__ = ["IMMUTABLE", "Asset", "asset", "response_for"]

#: Cache-Control of a versioned URL: its content never changes.
IMMUTABLE = "public, max-age=31536000, immutable"
#: Cache-Control of an unversioned one: the browser revalidates (a 304 when unchanged).
REVALIDATE = "no-cache"

_CACHE: dict[tuple[str, int, int], Asset] = {}
_LOCK = threading.Lock()


class Asset:
    """One file: its bytes, their gzip (compressed on first use), media type and ETag
    (``tag``, a hash of the content, also names the versioned URL)."""

    def __init__(self, raw: bytes, media_type: str) -> None:
        self.raw = raw
        self.media_type = media_type
        self.tag = hashlib.sha256(raw).hexdigest()[:16]
        self._compressed: bytes | None = None
        self._lock = threading.Lock()

    @property
    def etag(self) -> str:
        return f'"{self.tag}"'

    @property
    def compressed(self) -> bytes:
        """The gzip of :attr:`raw`, computed once (about a second for Plotly.js)."""
        with self._lock:
            if self._compressed is None:
                self._compressed = gzip.compress(self.raw, compresslevel=9, mtime=0)
            return self._compressed


def asset(path: Path, media_type: str) -> Asset:
    """The file at ``path``, read the first time it is asked for (again only when its size or
    modification time changed)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _LOCK:
        found = _CACHE.get(key)
        if found is None:
            found = _CACHE[key] = Asset(path.read_bytes(), media_type)
        return found


def _accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` header accepts gzip (``gzip`` or ``*``, q above 0)."""
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() not in ("gzip", "*"):
            continue
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        return weight > 0
    return False


def response_for(request: Any, item: Asset, immutable: bool) -> Any:
    """The Starlette response serving ``item`` to ``request``: 304 when the client holds it
    already, gzip when it accepts it (``Vary: Accept-Encoding`` either way)."""
    from starlette.responses import Response

    headers = {
        "ETag": item.etag,
        "Cache-Control": IMMUTABLE if immutable else REVALIDATE,
        "Vary": "Accept-Encoding",
    }
    held = request.headers.get("if-none-match", "")
    if item.etag in [tag.strip().removeprefix("W/") for tag in held.split(",")]:
        return Response(status_code=304, headers=headers)
    if _accepts_gzip(request.headers.get("accept-encoding", "")):
        headers["Content-Encoding"] = "gzip"
        return Response(item.compressed, media_type=item.media_type, headers=headers)
    return Response(item.raw, media_type=item.media_type, headers=headers)
