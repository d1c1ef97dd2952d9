"""HTTP ingest as a raw ASGI endpoint: ``POST``/``PUT …/<name>.isml/Streams(<id>)`` (Smooth and
CMAF) and the empty-body probe ``POST …/<name>.isml``.

It asks the server for the next piece of body only once the previous one is parsed and its
fragments are stored, so a slow store slows the encoder down (TCP back-pressure) instead of
filling memory; the parser holds at most one box.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from conf.logs import event
from conf.settings import IngestSettings
from ingest.errors import (
    BackwardsTimestamp,
    BodyTooLarge,
    IngestTimeout,
    Overloaded,
    PointNotFound,
    ShuttingDown,
)
from ingest.fmp4 import Event, Fmp4Receiver, FragmentReceived, StreamEnded, TracksDeclared
from ingest.parts import PartCutter
from ingest.points import PointRegistry, PublishingPoint
from media.model import TrackKind
from media.timeline import Verdict
from origin.errors import error_body, status_for
from storage.keys import PointId, check_stream

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STREAM_PATH = re.compile(r"/(?P<point>.+)\.isml/Streams\((?P<stream>[^()/]*)\)")
POINT_PATH = re.compile(r"/(?P<point>.+)\.isml")

log = logging.getLogger("headwater.ingest")


class _Disconnected(Exception):
    """The encoder closed the connection before the end of the body."""


class IngestEndpoint:
    """ASGI middleware: takes ingest requests, passes everything else to ``app``."""

    def __init__(self, app: ASGIApp, registry: PointRegistry, settings: IngestSettings) -> None:
        self.app = app
        self.registry = registry
        self.settings = settings
        self.active = 0  # ingest requests in progress

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT"):
            path = scope["path"]
            match = STREAM_PATH.fullmatch(path)
            if match:
                if self.active >= self.settings.max_connections:
                    await self._respond(
                        send,
                        self._failure(
                            Overloaded(
                                f"{self.active} ingest requests in progress, the limit "
                                "(ingest.max_connections); retry later"
                            ),
                            match["point"],
                            match["stream"],
                        ),
                    )
                    return
                self.active += 1
                try:
                    await self._respond(
                        send, await self._ingest(scope, receive, match["point"], match["stream"])
                    )
                finally:
                    self.active -= 1
                return
            match = POINT_PATH.fullmatch(path)
            if match and scope["method"] == "POST":
                await self._respond(send, await self._probe(receive, match["point"]))
                return
        await self.app(scope, receive, send)

    async def _respond(self, send: Send, result: tuple[int, dict[str, Any]] | None) -> None:
        if result is None:  # the client is gone
            return
        status, body = result
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if status == 503:
            headers.append((b"retry-after", b"5"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _probe(self, receive: Receive, point: str) -> tuple[int, dict[str, Any]]:
        """An encoder testing the URL: 200 when the point exists or may be created; nothing is created."""
        try:
            pid = PointId.parse(point)
            message = await asyncio.wait_for(receive(), self.settings.read_timeout)
            if message.get("body") or message.get("more_body"):
                return 400, {
                    "status": 400,
                    "error": "bad_request",
                    "message": f"POST media to /{pid}.isml/Streams(<stream name>), not to the point itself",
                }
            if not await self.registry.may_ingest(pid):
                raise PointNotFound(
                    f"publishing point {str(pid)!r} does not exist; create it first (PUT /{pid}.isml)"
                )
            return 200, {"status": 200, "point": str(pid)}
        except Exception as exc:
            return self._failure(exc, point, "")

    async def _ingest(
        self, scope: Scope, receive: Receive, point: str, stream: str
    ) -> tuple[int, dict[str, Any]] | None:
        peer = "{}:{}".format(*scope["client"]) if scope.get("client") else "?"
        stored = duplicates = 0
        receiver: Fmp4Receiver | None = None
        target: PublishingPoint | None = None
        salvage: Callable[[], Awaitable[None]] | None = None
        try:
            pid = PointId.parse(point)
            check_stream(stream)
            if self.registry.closed.is_set():
                raise ShuttingDown("the server is shutting down; reconnect to another origin")
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            await self.registry.authorize(pid, (query.get("t") or [""])[0])
            if not await self.registry.may_ingest(pid):
                raise PointNotFound(
                    f"publishing point {str(pid)!r} does not exist; create it first (PUT /{pid}.isml)"
                )
            target = await self.registry.get(pid)
            if target is not None:
                target.connections += 1  # counted from the start, so DELETE cannot race the first write
            known = await target.ingest_header(stream) if target else None
            receiver = Fmp4Receiver(stream, self.settings.max_box_size, known)

            declared: TracksDeclared | None = None
            parts: dict[str, PartCutter] = {}  # low-latency points: the stream cut into parts

            async def apply(receiver: Fmp4Receiver, events: list[Event]) -> None:
                nonlocal target
                for raw in events:
                    if target is None:
                        target = await self.registry.for_ingest(pid)
                        target.connections += 1
                    for ev in await _parts(target, receiver, parts, raw):
                        await apply_one(receiver, target, ev)

            async def apply_one(receiver: Fmp4Receiver, point: PublishingPoint, ev: Event) -> None:
                nonlocal target, stored, duplicates, declared
                if isinstance(ev, TracksDeclared):
                    declared = ev
                restart = point.options.restart_on_encoder_reconnect and declared is not None
                restart = restart and point.connections == 1 and not stored and not duplicates
                try:
                    verdict = await self._apply(point, receiver, stream, ev)
                except BackwardsTimestamp:
                    if not restart:
                        raise
                    verdict = Verdict.BACKWARDS
                if restart and verdict is not None and verdict is not Verdict.NEW and declared:
                    # An encoder that starts over (its first fragment is not new): with
                    # restart_on_encoder_reconnect the point starts again, as on RTMP.
                    point.connections -= 1
                    target = point = await self.registry.restart(point)
                    point.connections += 1
                    await point.declare(stream, declared.tracks, declared.header)
                    verdict = await self._apply(point, receiver, stream, ev)
                stored += verdict is Verdict.NEW
                duplicates += verdict is Verdict.DUPLICATE

            async def keep_held() -> None:
                """Store the samples a low-latency point's part cutters hold: complete samples
                the encoder sent, kept however the request ends."""
                if target is not None and parts and receiver is not None:
                    for ev in await _flush(target, parts):
                        await apply_one(receiver, target, ev)
                    parts.clear()

            salvage = keep_held
            event(log, "ingest.started", channel=str(pid), stream=stream, peer=peer)
            total = 0
            more = True
            while more:
                message = await self._next(receive)
                if message["type"] == "http.disconnect":
                    raise _Disconnected()
                chunk = message.get("body", b"")
                more = bool(message.get("more_body"))
                total += len(chunk)
                if self.settings.max_body_size and total > self.settings.max_body_size:
                    raise BodyTooLarge(
                        f"request body exceeds the limit of {self.settings.max_body_size} bytes "
                        "(ingest.max_body_size)"
                    )
                # Events before a bad box are applied first; the error comes with the next call.
                await apply(receiver, receiver.feed(chunk) if chunk else [])
                if not more:
                    await apply(receiver, receiver.close())
                    await keep_held()  # the body ended: its last part is whole
            event(
                log,
                "ingest.finished",
                channel=str(pid),
                stream=stream,
                peer=peer,
                bytes=total,
                stored=stored,
                duplicates=duplicates,
                ended=receiver.ended,
            )
            return 200, {"status": 200, "stored": stored, "duplicates": duplicates}
        except _Disconnected:
            await _salvaged(salvage)
            event(
                log,
                "ingest.disconnected",
                logging.WARNING,
                channel=point,
                stream=stream,
                peer=peer,
                stored=stored,
                partial_bytes=receiver.buffered if receiver else 0,
            )
            return None
        except Exception as exc:
            await _salvaged(salvage)
            return self._failure(exc, point, stream, peer=peer, stored=stored)
        finally:
            if target is not None:
                target.connections -= 1

    async def _next(self, receive: Receive) -> MutableMapping[str, Any]:
        """The next ASGI message, or an error when the encoder stalls or the server stops."""
        recv = asyncio.ensure_future(receive())
        closing = asyncio.ensure_future(self.registry.closed.wait())
        try:
            done, _ = await asyncio.wait(
                {recv, closing}, timeout=self.settings.read_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            recv.cancel()
            raise
        finally:
            closing.cancel()
        if recv in done:
            return recv.result()
        recv.cancel()
        if closing in done:
            raise ShuttingDown("the server is shutting down; reconnect to another origin")
        raise IngestTimeout(
            f"no data from the encoder for {self.settings.read_timeout:g} s (ingest.read_timeout)"
        )

    @staticmethod
    async def _apply(
        point: PublishingPoint, receiver: Fmp4Receiver, stream: str, ev: Event
    ) -> Verdict | None:
        if isinstance(ev, TracksDeclared):
            await point.declare(stream, ev.tracks, ev.header)
        elif isinstance(ev, FragmentReceived):
            return await point.accept(ev.fragment)
        elif isinstance(ev, StreamEnded):
            await point.end([t.name for t in receiver.tracks], ev.reason)
        return None

    def _failure(self, exc: Exception, point: str, stream: str, **fields: Any) -> tuple[int, dict[str, Any]]:
        status = status_for(exc)
        body = error_body(exc, status)
        level = logging.ERROR if status >= 500 else logging.WARNING
        event(
            log,
            "ingest.rejected",
            level,
            channel=point,
            stream=stream,
            status=status,
            reason=body["message"],
            exc=exc if status == 500 else None,
            **fields,
        )
        return status, body


async def _parts(
    point: PublishingPoint, receiver: Fmp4Receiver, parts: dict[str, PartCutter], ev: Event
) -> list[Event]:
    """``ev`` as a low-latency point stores it: audio and video fragments re-cut into parts of
    its part target (:mod:`ingest.parts`), the held ones flushed when the stream ends. Other
    points, and text tracks, store the encoder's fragments as sent."""
    options = point.options
    if not options.low_latency:
        return [ev]
    if isinstance(ev, FragmentReceived):
        cutter = parts.get(ev.fragment.track)
        if cutter is None:
            track = next(t for t in receiver.tracks if t.name == ev.fragment.track)
            if track.kind is TrackKind.TEXT:
                return [ev]
            cutter = parts[track.name] = PartCutter(track, options.part_duration)
        stored = await _stored_end(point, ev.fragment.track)
        return [FragmentReceived(f) for f in cutter.push(ev.fragment, stored)]
    if isinstance(ev, StreamEnded):
        return [*await _flush(point, parts), ev]
    return [ev]


async def _salvaged(salvage: Callable[[], Awaitable[None]] | None) -> None:
    """After a request broke off: the complete samples it sent that a part cutter holds, stored
    if the point can still take them (a failure is left to the error being reported)."""
    if salvage is not None:
        with contextlib.suppress(Exception):
            await salvage()


async def _flush(point: PublishingPoint, parts: dict[str, PartCutter]) -> list[Event]:
    """The parts held back, stored as they are (the stream ended or broke off)."""
    out: list[Event] = []
    for name, cutter in parts.items():
        out += [FragmentReceived(f) for f in cutter.flush(await _stored_end(point, name))]
    return out


async def _stored_end(point: PublishingPoint, track: str) -> int:
    if track not in point.tracks:
        return 0
    return (await point.timeline(track)).end
