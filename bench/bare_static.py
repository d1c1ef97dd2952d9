"""The reference for bench/playout.py: a bare ASGI app on the same Hypercorn that answers fixed
bytes for fixed paths with the headers Headwater sent for them, doing nothing else (no parsing of
the path, no conditional requests, no ranges): the cost of HTTP alone.

What it serves is read once, at import, from ``$BARE_STATIC_ROUTES``: a JSON object mapping each
URL path to ``{"file": <path of the body>, "headers": [[name, value], ...]}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

Route = tuple[list[tuple[bytes, bytes]], bytes]


def load(path: str) -> dict[str, Route]:
    routes: dict[str, Route] = {}
    for url, spec in json.loads(Path(path).read_text()).items():
        body = Path(spec["file"]).read_bytes()
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in spec["headers"]]
        headers.append((b"content-length", str(len(body)).encode()))
        routes[url] = (headers, body)
    return routes


ROUTES = load(os.environ["BARE_STATIC_ROUTES"]) if "BARE_STATIC_ROUTES" in os.environ else {}
NOT_FOUND: Route = ([(b"content-length", b"0")], b"")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers, body = ROUTES.get(scope["path"], NOT_FOUND)
    status = 200 if body else 404
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
