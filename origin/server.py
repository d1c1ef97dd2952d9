"""Run the application under Hypercorn, with the RTMP listeners in the same event loop, until
SIGTERM/SIGINT, then stop cleanly: refuse new ingest, let requests in flight finish and RTMP
publishers store what they buffered (up to ``shutdown_timeout``), wait for writes in flight, exit 0."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from hypercorn.asyncio import serve
from hypercorn.config import Config

from conf.logs import event
from conf.settings import Settings
from ingest.rtmp.server import RtmpServer
from origin.app import build_registry, create_app

log = logging.getLogger("headwater.server")


async def run(settings: Settings) -> None:
    registry = build_registry(settings)
    app = create_app(settings, registry)
    host, port = settings.http_address
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.graceful_timeout = settings.shutdown_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = 30

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def shutdown_trigger() -> None:
        await stop.wait()
        event(log, "server.stopping")
        registry.closed.set()

    await registry.store.store.check()
    rtmp = RtmpServer(registry, settings)
    listeners = await rtmp.start() if settings.ingest.enabled else []
    # Settings, registry and imports live as long as the process: keep them out of every collection.
    gc.freeze()
    event(
        log,
        "server.started",
        http=f"{host}:{port}",
        rtmp=listeners,
        root=registry.store.store.describe(),
        auto_create=settings.ingest.auto_create,
        ingest=settings.ingest.enabled,
    )
    # The ingesting node purges its archive; a follower follows what it stores.
    background = asyncio.create_task(
        registry.purge_forever(settings.storage.purge_interval)
        if settings.ingest.enabled
        else registry.follow_forever(settings.storage.follow_interval, settings.storage.purge_interval)
    )
    await serve(app, config, shutdown_trigger=shutdown_trigger)
    background.cancel()
    await rtmp.stop(settings.shutdown_timeout)
    try:
        await asyncio.wait_for(registry.writes.wait_idle(), settings.shutdown_timeout)
    except TimeoutError:
        event(log, "server.writes_abandoned", logging.ERROR)
    await registry.store.store.close()
    event(log, "server.stopped")
