"""The Quart application: health, the publishing point API, and ingest (via :mod:`origin.ingest_endpoint`).

API (Unified Origin's REST verbs on the publishing point URL):

- ``PUT /<path>/<name>.isml`` with a SMIL server manifest (or an empty body for the defaults) → 201
- ``GET /<path>/<name>.isml`` → the server manifest
- ``DELETE /<path>/<name>.isml`` → 204, removes the point and everything it stored
- ``GET /<path>/<name>.isml/state`` → lifecycle state and tracks (JSON)
- ``GET /<path>/<name>.isml/archive`` → the archived ranges of every track, UTC start/end (JSON)
"""

from __future__ import annotations

import logging
from typing import Any

from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from conf.logs import event
from conf.settings import Settings
from ingest.errors import PointNotFound
from ingest.points import PointRegistry, archive
from origin.errors import error_body, status_for
from origin.ingest_endpoint import IngestEndpoint
from origin.playout import PlayoutEndpoint
from storage.keys import PointId
from storage.points import PointStore
from storage.roots import open_store
from storage.server_manifest import ServerManifest, parse_server_manifest, write_server_manifest

log = logging.getLogger("headwater.api")
SMIL_TYPE = "application/smil+xml"


def build_registry(settings: Settings) -> PointRegistry:
    store = open_store(settings.root, settings.storage, spool=settings.ingest.enabled)
    return PointRegistry(
        PointStore(store),
        settings.points,
        auto_create=settings.ingest.auto_create,
        token=settings.ingest.token,
        follower=not settings.ingest.enabled,
    )


def create_app(settings: Settings, registry: PointRegistry | None = None) -> Quart:
    registry = registry or build_registry(settings)
    app = Quart("headwater")
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20  # API bodies; ingest bodies bypass Quart
    app.extensions["registry"] = registry

    async def existing(point: str) -> Any:
        pid = PointId.parse(point)
        found = await registry.get(pid)
        if found is None:
            raise PointNotFound(f"publishing point {str(pid)!r} does not exist")
        return found

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("ok\n", content_type="text/plain")

    @app.put("/<path:point>.isml")
    async def create_point(point: str) -> Response:
        pid = PointId.parse(point)
        body = await request.get_data(as_text=False)
        assert isinstance(body, bytes)
        options = parse_server_manifest(body, settings.points).options if body.strip() else None
        if options is not None:
            options.check_keys()  # reads a CPIX document it names, once, here
        created = await registry.create(pid, options)
        return Response(
            write_server_manifest(created.manifest, redact=True),
            status=201,
            content_type=SMIL_TYPE,
            headers={"Location": f"/{pid}.isml"},
        )

    @app.get("/<path:point>.isml")
    async def get_point(point: str) -> Response:
        found = await existing(point)
        manifest: ServerManifest = found.manifest
        return Response(write_server_manifest(manifest, redact=True), content_type=SMIL_TYPE)

    @app.delete("/<path:point>.isml")
    async def delete_point(point: str) -> Response:
        await registry.delete(PointId.parse(point))
        return Response(status=204)

    @app.get("/<path:point>.isml/state")
    async def point_state(point: str) -> Any:
        found = await existing(point)
        for name in list(found.tracks):  # an encoder may declare a track while timelines load
            await found.timeline(name)
        return found.describe()

    @app.get("/<path:point>.isml/archive")
    async def point_archive(point: str) -> Any:
        return await archive(await existing(point))

    @app.errorhandler(Exception)
    async def on_error(exc: Exception) -> Any:
        if isinstance(exc, HTTPException):
            code = exc.code or 500
            return {
                "status": code,
                "error": (exc.name or "error").lower().replace(" ", "_"),
                "message": exc.description or exc.name,
            }, code
        status = status_for(exc)
        body = error_body(exc, status)
        event(
            log,
            "api.error",
            logging.ERROR if status >= 500 else logging.INFO,
            path=request.path,
            method=request.method,
            status=status,
            reason=body["message"],
            exc=exc if status == 500 else None,
        )
        return body, status, {"Retry-After": "5"} if status == 503 else {}

    ingest = IngestEndpoint(app.asgi_app, registry, settings.ingest)  # type: ignore[arg-type]
    app.asgi_app = PlayoutEndpoint(ingest, registry, settings.playout, settings.locations)  # type: ignore[method-assign,assignment]
    return app
