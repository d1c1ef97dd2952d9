"""The asyncio side of RTMP ingest: listeners (plain and TLS), one task per connection moving bytes
between the socket and :class:`~ingest.rtmp.session.ServerSession`, and publishes feeding
:class:`~ingest.flv.FlvReceiver` output into publishing points.

``rtmp://host/<app>/<name>[_<n>][?t=<token>]`` publishes to the point ``<path>/<name>.isml``, where
``<path>`` is ``<app>`` or what ``ingest.rtmp_apps`` maps it to; ``_<n>`` (one or two digits) makes
the stream a rendition of ``<name>`` with tracks ``video_<n>``/``audio_<n>``.

Reading waits until the previous piece is stored, so a slow store slows the encoder through TCP
instead of filling memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from urllib.parse import parse_qs

from conf.logs import event
from conf.settings import Settings, parse_app_paths
from ingest.errors import BackwardsTimestamp, IngestError, Unauthorized
from ingest.flv import FlvReceiver
from ingest.fmp4 import Event as MediaEvent
from ingest.fmp4 import FragmentReceived, TracksDeclared
from ingest.points import PointRegistry, PublishingPoint, now_ms
from ingest.rtmp import chunks
from ingest.rtmp.clock import PointClock, TimestampMapper, choose_offset
from ingest.rtmp.errors import RtmpError
from ingest.rtmp.session import (
    Connected,
    MediaReceived,
    MetadataReceived,
    PlayRefused,
    PublishRequested,
    ServerSession,
    Unpublished,
)
from media.errors import MediaError
from media.timeline import Verdict
from storage.errors import InvalidName, StorageError
from storage.keys import PointId

log = logging.getLogger("headwater.rtmp")
TAKEOVER_IDLE = 3.0  # seconds without media after which a publisher may be replaced by a new one
TAKEOVER_WAIT = 10.0  # seconds a replaced publisher gets to store its buffered media
WATCHDOG_PERIOD = 0.25  # seconds between checks for stalled connections
TOKEN_QUERY = re.compile(r"([?&]t=)[^&/]*")

RENDITION = re.compile(r"(?P<base>.+)_(?P<number>\d{1,2})")
READ_SIZE = 1 << 16
BAD_NAME = "NetStream.Publish.BadName"
UNAUTHORIZED = "NetStream.Publish.Unauthorized"


class Refused(Exception):
    """A publish the server will not take: the onStatus code and the reason told to the encoder."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class StreamName:
    """What a publish names: the point, the stream (``name_2``), the track suffix and the token."""

    pid: PointId
    stream: str
    suffix: str
    token: str


def parse_publish(app: str, name: str, apps: dict[str, str]) -> StreamName:
    """Map ``connect``'s app and ``publish``'s name to a point; the token may be a ``t`` query on
    either (``rtmp://host/live?t=…`` with key ``name``, or key ``name?t=…``)."""
    app, _, app_query = app.partition("?")
    stream, _, stream_query = name.partition("?")
    tokens = parse_qs(stream_query).get("t") or parse_qs(app_query).get("t") or [""]
    app = app.strip("/")
    match = RENDITION.fullmatch(stream)
    base, suffix = (match["base"], f"_{match['number']}") if match else (stream, "")
    path = apps.get(app, app)
    try:
        pid = PointId.parse(f"{path}/{base}" if path else base)
    except InvalidName as exc:
        raise Refused(BAD_NAME, f"{exc}") from None
    return StreamName(pid, stream, suffix, tokens[0])


def fragment_target(point: PublishingPoint) -> Fraction:
    """The shortest non-zero minimum fragment length of the point's outputs; 0 = every keyframe."""
    options = point.options
    lengths = [
        options.hls_minimum_fragment_length,
        options.mpd_minimum_fragment_length,
        options.iss_minimum_fragment_length,
    ]
    return min((x for x in lengths if x > 0), default=Fraction(0))


@dataclass
class Publish:
    """One accepted publish: where it goes, and its media state."""

    name: StreamName
    point: PublishingPoint
    receiver: FlvReceiver
    clock: PointClock
    redundant: bool  # the point takes several encoders: one behind the others is skipped, not refused
    connection: Connection
    mapper: TimestampMapper | None = None
    last_media: float = field(default_factory=time.monotonic)
    resumed: set[str] = field(default_factory=set)  # tracks whose first fragment follows a break
    stored: int = 0
    duplicates: int = 0
    dropped: int = 0


class RtmpServer:
    """RTMP listeners and their connections, sharing the HTTP origin's publishing points."""

    def __init__(self, registry: PointRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self.ingest = settings.ingest
        self.apps = parse_app_paths(settings.ingest.rtmp_apps)
        self.servers: list[asyncio.Server] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.connections: set[Connection] = set()
        self._watch: asyncio.Task[None] | None = None
        self._dog: asyncio.Task[None] | None = None
        self.active: dict[tuple[PointId, str], list[Publish]] = {}  # publishers per (point, stream)
        self.per_point: dict[PointId, int] = {}  # publishers per point
        self.offsets: weakref.WeakKeyDictionary[PublishingPoint, int] = weakref.WeakKeyDictionary()
        self._opening: dict[PointId, tuple[asyncio.Lock, int]] = {}  # per point, with its users

    async def start(self) -> list[str]:
        """Open the configured listeners; returns their addresses."""
        opened = []
        address = self.settings.rtmp_address
        if address is not None:
            server = await asyncio.start_server(self._accept, address[0], address[1], limit=READ_SIZE)
            self.servers.append(server)
            opened.append(_bound(server, "rtmp"))
        self._watch = asyncio.ensure_future(self._close_on_shutdown())
        self._dog = asyncio.ensure_future(self._watchdog())
        tls_address = self.settings.rtmps_address
        if tls_address is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.ingest.tls_cert, self.ingest.tls_key)
            server = await asyncio.start_server(
                self._accept,
                tls_address[0],
                tls_address[1],
                ssl=context,
                ssl_handshake_timeout=self.ingest.rtmp_handshake_timeout,
                limit=READ_SIZE,
            )
            self.servers.append(server)
            opened.append(_bound(server, "rtmps"))
        return opened

    async def _watchdog(self) -> None:
        """Close connections that stalled: no publish within the handshake timeout, or a read that
        waited longer than ``ingest.read_timeout``. One timer for all connections, checked four
        times a second."""
        while True:
            await asyncio.sleep(WATCHDOG_PERIOD)
            now = time.monotonic()
            for connection in list(self.connections):
                reason = connection.overdue(now)
                if reason and not connection.ending:
                    connection.evict(reason, logging.WARNING)

    async def _close_on_shutdown(self) -> None:
        """When the server starts stopping (``registry.closed``), stop listening and close every
        connection; each stores what it buffered first."""
        await self.registry.closed.wait()
        for server in self.servers:
            server.close()
        for connection in list(self.connections):
            connection.evict("the server is shutting down")

    async def stop(self, timeout: float) -> None:
        """Close the listeners and connections (the registry stops taking ingest), wait up to
        ``timeout`` for the connections to finish storing, then cancel the rest."""
        self.registry.closed.set()
        await self._close_on_shutdown()
        for task in (self._watch, self._dog):
            if task is not None:
                task.cancel()
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=timeout)
            for task in pending:
                task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self.tasks) >= self.ingest.rtmp_max_connections:
            peer = writer.get_extra_info("peername")
            event(
                log,
                "rtmp.closed",
                logging.WARNING,
                peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
                reason=f"{len(self.tasks)} RTMP connections open, the limit (ingest.rtmp_max_connections)",
                bytes=0,
            )
            writer.close()
            return
        self.tasks.add(task)
        connection = Connection(self, reader, writer)
        self.connections.add(connection)
        try:
            if self.registry.closed.is_set():
                connection.evict("the server is shutting down")
            await connection.run()
        finally:
            self.connections.discard(connection)
            self.tasks.discard(task)

    # -- publishes ------------------------------------------------------------------------------

    @asynccontextmanager
    async def _point_lock(self, pid: PointId) -> AsyncIterator[None]:
        """Publishes to one point open one at a time (two cannot both take a stream name or both
        restart the point); other points are not held up."""
        lock, users = self._opening.get(pid, (asyncio.Lock(), 0))
        self._opening[pid] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._opening[pid]
            if users > 1:
                self._opening[pid] = (lock, users - 1)
            else:
                del self._opening[pid]

    async def open_publish(self, app: str, name: str, connection: Connection) -> Publish:
        """Check and register a publish; raises :class:`Refused` with what to tell the encoder."""
        if self.registry.closed.is_set():
            raise Refused(BAD_NAME, "the server is shutting down; reconnect to another origin")
        stream = parse_publish(app, name, self.apps)
        async with self._point_lock(stream.pid):
            try:
                await self.registry.authorize(stream.pid, stream.token)
            except Unauthorized as exc:
                raise Refused(UNAUTHORIZED, f"Unauthorized: {exc}") from None
            point = await self.registry.get(stream.pid)
            if point is None:
                if not self.registry.auto_create:
                    raise Refused(BAD_NAME, f"publishing point {str(stream.pid)!r} does not exist")
                point = await self.registry.for_ingest(stream.pid)
            key = (stream.pid, stream.stream)
            if self.active.get(key) and not point.options.redundant_encoders:
                await self._take_over(key, connection.peer)
            alone = not self.per_point.get(stream.pid)
            if point.options.restart_on_encoder_reconnect and alone and point.tracks:
                if point.connections:
                    raise Refused(
                        BAD_NAME, f"{str(stream.pid)!r} is receiving HTTP ingest; cannot restart it"
                    )
                point = await self.registry.restart(point)
            own = {f"video{stream.suffix}", f"audio{stream.suffix}"}
            clock = await _point_clock(point, own)
            options = point.options
            receiver = FlvReceiver(
                stream.suffix,
                fragment_target(point),
                max_fragment_bytes=self.ingest.max_box_size,
                part=options.part_duration if options.low_latency else None,
            )
            resumed = {name for name in own if name in point.tracks}
            publish = Publish(
                stream, point, receiver, clock, point.options.redundant_encoders, connection, resumed=resumed
            )
            self.active.setdefault(key, []).append(publish)
            self.per_point[stream.pid] = self.per_point.get(stream.pid, 0) + 1
            point.connections += 1
        return publish

    async def _take_over(self, key: tuple[PointId, str], peer: str) -> None:
        """A second publisher of a stream is refused, unless the first one is on its way out: its
        connection is closing, or it sent no media for ``TAKEOVER_IDLE`` seconds (an encoder that
        reconnects after a network drop finds its old, dead connection still open). That one is
        closed, and its buffered media stored, before the new publish starts."""
        now = time.monotonic()
        current = self.active.get(key, [])
        if any(not p.connection.ending and now - p.last_media < TAKEOVER_IDLE for p in current):
            raise Refused(BAD_NAME, f"stream {key[1]!r} of {str(key[0])!r} is already being published")
        for publish in list(current):
            publish.connection.evict(f"taken over by a new publisher of the stream from {peer}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(publish.connection.done.wait(), TAKEOVER_WAIT)
        if self.active.get(key):
            raise Refused(BAD_NAME, f"stream {key[1]!r} of {str(key[0])!r} is still closing; retry")

    def close_publish(self, publish: Publish) -> None:
        key = (publish.name.pid, publish.name.stream)
        publishers = self.active.get(key, [])
        if publish in publishers:
            publishers.remove(publish)
        if not publishers:
            self.active.pop(key, None)
        left = self.per_point.get(publish.name.pid, 0) - 1
        if left > 0:
            self.per_point[publish.name.pid] = left
        else:
            self.per_point.pop(publish.name.pid, None)
        publish.point.connections -= 1

    def map_time(self, publish: Publish, raw: int, track: int) -> int:
        if publish.mapper is None:
            previous = self.offsets.get(publish.point, 0)
            offset = choose_offset(raw, previous, publish.clock)
            self.offsets[publish.point] = offset
            publish.mapper = TimestampMapper(raw, offset)
        return publish.mapper.map(raw, track)


async def _point_clock(point: PublishingPoint, own: set[str]) -> PointClock:
    floor: int | None = None
    latest: int | None = None
    now = now_ms()
    for name, track in list(point.tracks.items()):  # tracks may be declared meanwhile
        last = (await point.timeline(name)).last
        if last is None:
            continue
        end_ms = -(-last.end * 1000 // track.timescale)
        if name in own:
            floor = max(floor or 0, end_ms)
        projected = end_ms + max(0, now - last.wallclock_ms) if last.wallclock_ms else end_ms
        latest = max(latest or 0, projected)
    return PointClock(floor, latest)


def _redacted(text: str) -> str:
    """``live?t=secret`` -> ``live?t=****``: publish tokens stay out of the logs."""
    return TOKEN_QUERY.sub(r"\1****", text)


def _bound(server: asyncio.Server, scheme: str) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"{scheme}://{host}:{port}"


class Connection:
    """One client: reads, feeds the session, acts on its events, writes its replies."""

    def __init__(
        self, server: RtmpServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        ingest = server.ingest
        self.session = ServerSession(
            chunk_size=ingest.rtmp_chunk_size,
            max_chunk_size=ingest.rtmp_max_chunk_size,
            max_message_size=ingest.rtmp_max_message_size,
        )
        self.publishes: dict[int, Publish] = {}
        self.app = ""
        self.started = time.monotonic()
        self.published = False  # a publish was accepted: from then on, read_timeout applies
        self.closing = ""  # why the server ends the connection itself
        self.closing_level = logging.INFO
        self.reading_since: float | None = None  # when the read in progress began
        self.ending = False  # the read loop ended: publishes are being finished
        self.done = asyncio.Event()  # set once the connection's publishes are finished

    async def run(self) -> None:
        reason = "the encoder closed the connection"
        level = logging.INFO
        try:
            while not self.closing:
                data = await self._read()
                if not data:
                    break
                for ev in self.session.receive(data):
                    await self._on_event(ev)
                await self._flush()
                if self.session.error is not None:
                    raise self.session.error
            if self.closing:
                reason, level = self.closing, self.closing_level
        except (RtmpError, MediaError, Refused) as exc:
            reason, level = str(exc), logging.WARNING
        except BackwardsTimestamp as exc:
            reason, level = str(exc), logging.WARNING
        except (IngestError, StorageError) as exc:
            reason, level = str(exc), logging.ERROR
        except TimeoutError as exc:
            reason, level = str(exc) or "timed out", logging.WARNING
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            reason, level = f"connection lost: {exc}", logging.WARNING
        finally:
            await self._finish_all(reason, level)

    async def _read(self) -> bytes:
        """The next piece from the socket (empty at its end). The server's watchdog ends reads that
        wait too long (:meth:`RtmpServer._watchdog`), and a stopping server ends the connection
        from outside (:meth:`evict`): no timer per read."""
        self.reading_since = time.monotonic()
        try:
            return await self.reader.read(READ_SIZE)
        finally:
            self.reading_since = None

    def overdue(self, now: float) -> str:
        """Why the watchdog should close this connection now, or ""."""
        ingest = self.server.ingest
        if not self.published and now - self.started > ingest.rtmp_handshake_timeout:
            return (
                f"no publish within {ingest.rtmp_handshake_timeout:g} s of connecting "
                "(ingest.rtmp_handshake_timeout)"
            )
        waiting = self.reading_since
        if self.published and waiting is not None and now - waiting > ingest.read_timeout:
            return f"no data from the encoder for {ingest.read_timeout:g} s (ingest.read_timeout)"
        return ""

    async def _flush(self) -> None:
        """Send the session's replies; a peer that does not read them is dropped after
        ``ingest.read_timeout`` instead of holding the connection (and its stream name)."""
        out = self.session.data_to_send()
        if out:
            self.writer.write(out)
            timeout = self.server.ingest.read_timeout
            try:
                await asyncio.wait_for(self.writer.drain(), timeout)
            except TimeoutError:
                raise TimeoutError(f"the encoder read no replies for {timeout:g} s") from None

    async def _on_event(self, ev: object) -> None:
        if isinstance(ev, MediaReceived):
            publish = self.publishes[ev.stream_id]
            publish.last_media = time.monotonic()
            time_ms = self.server.map_time(publish, ev.timestamp, ev.type_id)
            receiver = publish.receiver
            if ev.type_id == chunks.VIDEO:
                media = receiver.video_message(time_ms, ev.payload)
            else:
                media = receiver.audio_message(time_ms, ev.payload)
            if media:
                await self._store(publish, media)
        elif isinstance(ev, MetadataReceived):
            if ev.stream_id in self.publishes:
                self.publishes[ev.stream_id].receiver.metadata(ev.values)
        elif isinstance(ev, Connected):
            self.app = ev.app
            event(
                log,
                "rtmp.connected",
                peer=self.peer,
                app=_redacted(ev.app),
                tc_url=_redacted(ev.tc_url),
                client=ev.flash_version,
            )
        elif isinstance(ev, PublishRequested):
            await self._publish(ev)
        elif isinstance(ev, Unpublished):
            if ev.stream_id in self.publishes:
                await self._finish(self.publishes.pop(ev.stream_id), ended=True, reason=ev.reason)
        elif isinstance(ev, PlayRefused):
            event(log, "rtmp.play_refused", logging.WARNING, peer=self.peer, stream=ev.name)
            self.closing = "play refused: Headwater takes RTMP for publishing only"

    async def _publish(self, ev: PublishRequested) -> None:
        try:
            publish = await self.server.open_publish(self.app, ev.name, self)
        except Refused as exc:
            self.session.reject_publish(ev.stream_id, exc.code, exc.reason)
            await self._flush()
            event(
                log,
                "rtmp.rejected",
                logging.WARNING,
                peer=self.peer,
                app=_redacted(self.app),
                stream=ev.name.partition("?")[0],
                code=exc.code,
                reason=exc.reason,
            )
            raise
        self.publishes[ev.stream_id] = publish
        self.published = True
        held = self.session.accept_publish(ev.stream_id)
        event(
            log,
            "rtmp.publish",
            channel=str(publish.name.pid),
            stream=publish.name.stream,
            peer=self.peer,
            redundant=publish.redundant,
        )
        for later in held:  # media the encoder sent right behind its publish command
            await self._on_event(later)

    async def _store(self, publish: Publish, events: list[MediaEvent]) -> None:
        point = publish.point
        for ev in events:
            if isinstance(ev, TracksDeclared):
                await point.declare(f"rtmp-{publish.name.stream}", ev.tracks, ev.header)
            elif isinstance(ev, FragmentReceived):
                name = ev.fragment.track
                try:
                    verdict = await point.accept(ev.fragment, discontinuity=name in publish.resumed)
                except BackwardsTimestamp:
                    if not publish.redundant and name not in publish.resumed:
                        raise
                    # Another encoder is ahead (this one stands by), or a resumed publish's
                    # first fragment of one track began before that track's stored end.
                    publish.dropped += 1
                    continue
                publish.resumed.discard(name)
                publish.stored += verdict is Verdict.NEW
                publish.duplicates += verdict is Verdict.DUPLICATE

    async def _finish(self, publish: Publish, *, ended: bool, reason: str) -> None:
        """Store what the receiver still holds; an unpublish also ends the tracks. With another
        encoder still publishing the stream (redundant encoders), neither: that one's whole
        fragments cover the time of this one's partial last ones, and the stream goes on."""
        try:
            tail = publish.receiver.close()
            others = any(
                p is not publish and not p.connection.ending
                for p in self.server.active.get((publish.name.pid, publish.name.stream), [])
            )
            if others:
                tail = [ev for ev in tail if not isinstance(ev, FragmentReceived)]
            await self._store(publish, tail)
            tracks = [t.name for t in publish.receiver.tracks]
            if ended and tracks and not others:
                await publish.point.end(tracks, f"rtmp {reason}")
        finally:
            self.server.close_publish(publish)
        event(
            log,
            "rtmp.unpublished" if ended else "rtmp.disconnected",
            logging.INFO if ended else logging.WARNING,
            channel=str(publish.name.pid),
            stream=publish.name.stream,
            peer=self.peer,
            reason=reason,
            stored=publish.stored,
            duplicates=publish.duplicates,
            dropped=publish.dropped + publish.receiver.video.dropped + publish.receiver.audio.dropped,
        )

    def evict(self, reason: str, level: int = logging.INFO) -> None:
        """Close this connection from outside (the watchdog, a publisher taking over its stream, a
        stopping server); ``level`` is that of its ``rtmp.closed`` line."""
        self.closing, self.closing_level = reason, level
        self.ending = True
        self.writer.transport.abort()

    async def _finish_all(self, reason: str, level: int) -> None:
        self.ending = True
        try:
            for stream_id in list(self.publishes):
                publish = self.publishes.pop(stream_id)
                try:
                    await self._finish(publish, ended=False, reason=reason)
                except Exception as exc:  # storing the tail failed; the log says so
                    event(log, "rtmp.tail_lost", logging.ERROR, peer=self.peer, reason=str(exc))
        finally:
            event(log, "rtmp.closed", level, peer=self.peer, reason=reason, bytes=self.session.received)
            self.writer.close()
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                await asyncio.wait_for(self.writer.wait_closed(), 2)
            self.done.set()
