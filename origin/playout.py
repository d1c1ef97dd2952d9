"""Playout: HLS, DASH and Smooth answered per request from the timelines and stored fragments.

A raw ASGI endpoint in front of Quart (like ingest), because manifest requests are the hot path:
a rendered answer is kept in a bounded LRU keyed by the point's version, so a repeated request
costs a dictionary lookup and the ASGI send. Segments are immutable and cached the same way.

HTTP semantics: ``ETag`` + ``If-None-Match`` → 304, ``Last-Modified``, ``HEAD``, one byte
``Range`` → 206 (416 when unsatisfiable), CORS, and ``Cache-Control`` short for live manifests (about
half a segment), long and immutable for segments. Requests outside what a manifest presents get the
status codes of PROTOCOLS.md's egress table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from fractions import Fraction
from typing import Any
from urllib.parse import parse_qs

from conf.logs import event
from conf.settings import PlayoutSettings
from ingest.errors import PointNotFound
from ingest.points import PointRegistry, PublishingPoint
from media import dash, hls, names, smooth, webvtt
from media.cmaf import read_fragment
from media.model import Track, TrackKind
from media.mpegts import TsTrack, can_carry, mux_segment
from media.names import Kind, Resource
from media.presentation import Lookup, Presentation, SegmentCutter, Source, frame_rate, present
from media.timeline import Timeline
from media.timerange import SEGMENT_PARAMETERS, Control, iso_utc, parse_control
from origin.errors import error_body, error_code, status_for
from origin.export import ClipStream, plan_clip
from storage.keys import PointId
from storage.points import PointState

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PLAYOUT_PATH = re.compile(r"/(?P<point>.+?)\.isml/(?P<rest>.+)")
API_PATHS = {"state", "statistics", "archive"}
CLOCK_PATH = "/time"
IMMUTABLE = "public, max-age=31536000, immutable"
ERROR_CACHE = "public, max-age=1"
PRESENTATIONS_KEPT = 256  # newest per (point, grouping, window)
CUTTERS_KEPT = 1024
FRONT_ENTRIES = 4096
CONDITIONAL_HEADERS = frozenset({b"if-none-match", b"if-modified-since", b"range"})
IMMUTABLE_KINDS = frozenset({Kind.INIT, Kind.TS, Kind.M4S, Kind.DASH_SEGMENT, Kind.VTT})
MANIFEST_KINDS = frozenset({Kind.HLS_MASTER, Kind.HLS_MEDIA, Kind.MPD, Kind.SMOOTH_MANIFEST})

log = logging.getLogger("headwater.playout")

# Egress status codes by format (PROTOCOLS.md, Unified Origin's defaults).
_MISS_STATUS = {
    "hls": {Lookup.BEFORE_WINDOW: 404, Lookup.IN_GAP: 404, Lookup.AFTER_EDGE: 404},
    "dash": {Lookup.BEFORE_WINDOW: 410, Lookup.IN_GAP: 404, Lookup.AFTER_EDGE: 404},
    "smooth": {Lookup.BEFORE_WINDOW: 404, Lookup.IN_GAP: 412, Lookup.AFTER_EDGE: 412},
}


@dataclass(frozen=True, slots=True)
class Answer:
    """A rendered answer with its headers encoded once, so serving it again from the cache is a
    dictionary lookup and two ASGI sends."""

    status: int
    body: bytes
    content_type: str
    cache_control: str
    etag: str = ""
    last_modified_ms: int = 0
    headers: tuple[tuple[bytes, bytes], ...] = ()
    length: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "length", str(len(self.body)).encode())
        headers = [
            (b"content-type", self.content_type.encode()),
            (b"cache-control", self.cache_control.encode()),
        ]
        if self.etag:
            headers.append((b"etag", self.etag.encode()))
        if self.last_modified_ms:
            headers.append((b"last-modified", formatdate(self.last_modified_ms / 1000, usegmt=True).encode()))
        if self.status == 200:
            headers.append((b"accept-ranges", b"bytes"))
        object.__setattr__(self, "headers", tuple(headers))

    @classmethod
    def ok(cls, body: bytes, content_type: str, cache_control: str, last_modified_ms: int) -> Answer:
        etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        return cls(200, body, content_type, cache_control, etag, last_modified_ms)


class PlayoutError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class AnswerCache:
    """An LRU of answers bounded by the bytes of their bodies."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0
        self._items: OrderedDict[tuple[object, ...], Answer] = OrderedDict()

    def get(self, key: tuple[object, ...]) -> Answer | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: tuple[object, ...], answer: Answer) -> None:
        if len(answer.body) > self.capacity // 4:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.size -= len(old.body)
        self._items[key] = answer
        self.size += len(answer.body)
        while self.size > self.capacity:
            _, evicted = self._items.popitem(last=False)
            self.size -= len(evicted.body)


class PlayoutEndpoint:
    """ASGI middleware: answers GET/HEAD/OPTIONS for ``/<point>.isml/<resource>`` and ``/time``,
    passes everything else to ``app``."""

    def __init__(self, app: ASGIApp, registry: PointRegistry, settings: PlayoutSettings) -> None:
        self.app = app
        self.registry = registry
        self.settings = settings
        self.cache = AnswerCache(settings.cache_size)
        self._cors_headers: tuple[tuple[bytes, bytes], ...] = (
            (
                (b"access-control-allow-origin", settings.cors_origin.encode()),
                (
                    b"access-control-expose-headers",
                    b"Content-Length, Content-Range, ETag, Last-Modified, Date",
                ),
            )
            if settings.cors_origin
            else ()
        )
        # The hot path: (path, query) → (point, generation, version, answer) of manifests, checked
        # against the point's current version before use.
        self._front: OrderedDict[tuple[str, bytes, bytes], tuple[PublishingPoint, int, Answer]] = (
            OrderedDict()
        )
        self._frame_rates: OrderedDict[tuple[int, str], Fraction | None] = OrderedDict()
        self._bitrates: OrderedDict[tuple[int, str], int] = OrderedDict()
        # Presentations by (generation, minimum, control), with the version they were built at:
        # segment requests between two fragments share one, instead of cutting again.
        self._presentations: OrderedDict[tuple[int, Fraction | None, Control], tuple[int, Presentation]] = (
            OrderedDict()
        )
        self._cutters: OrderedDict[tuple[int, str, Fraction | None], SegmentCutter] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD", "OPTIONS"):
            path: str = scope["path"]
            if path == CLOCK_PATH:
                now = iso_utc(time.time_ns() // 1_000_000).encode()
                await self._send(scope, send, Answer(200, now, "text/plain", "no-store"))
                return
            front = self._front.get(_front_key(scope))
            fresh = front is not None and front[0].version == front[1] and not front[0].deleted
            if front is not None and fresh and scope["method"] != "OPTIONS":
                await self._send(scope, send, front[2])
                return
            match = PLAYOUT_PATH.fullmatch(path)
            if match and match["rest"] not in API_PATHS:
                if scope["method"] == "OPTIONS":
                    await self._preflight(scope, send)
                    return
                answer = await self._answer(scope, match["point"], match["rest"])
                if isinstance(answer, ClipStream):
                    await answer.send(send, list(self._cors_headers), head=scope["method"] == "HEAD")
                else:
                    await self._send(scope, send, answer)
                return
        await self.app(scope, receive, send)

    # -- resolving ----------------------------------------------------------------------------

    async def _answer(self, scope: Scope, point: str, rest: str) -> Answer | ClipStream:
        try:
            pid = PointId.parse(point)
            found = await self.registry.get(pid)
            if found is None:
                raise PointNotFound(f"publishing point {point!r} does not exist")
            resource = names.parse(rest, found.tracks)
            if resource is None:
                raise PlayoutError(404, f"{rest!r} names no resource of publishing point {point!r}")
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            if resource.kind is Kind.PROGRESSIVE:
                minimum = found.options.hls_minimum_fragment_length  # segments start on keyframes
                p = await self._presentation(found, minimum, parse_control(query))
                return await plan_clip(found, p, self.settings.max_clip_duration)
            return await self._resolve(scope, found, resource, query)
        except PlayoutError as exc:
            return self._error({"status": exc.status, "error": error_code(exc.status), "message": str(exc)})
        except Exception as exc:
            status = status_for(exc)
            if status == 500:
                event(log, "playout.failed", logging.ERROR, path=scope["path"], exc=exc)
            return self._error(error_body(exc, status))

    async def _resolve(
        self, scope: Scope, point: PublishingPoint, resource: Resource, query: dict[str, list[str]]
    ) -> Answer:
        # AV1 and Opus have no MPEG-TS mapping HLS players use: such points get fMP4 segments.
        fmp4 = (
            point.options.hls_fmp4
            or _flag(query, "hls_fmp4")
            or not all(can_carry(t) for t in point.tracks.values())
        )
        control = parse_control(query)
        immutable = resource.kind in IMMUTABLE_KINDS
        # Segments never change: keyed without the version, they survive new fragments landing,
        # but are served only while the presentation asked for still offers them.
        key: tuple[object, ...] = (
            (point.generation, resource)
            if immutable
            else (point.generation, point.version, resource, fmp4, control, _origin(scope))
        )
        version = point.version
        cached = self.cache.get(key)
        if cached is None or (immutable and not await self._offered(point, resource, control)):
            cached = await self._build(scope, point, resource, fmp4, control, query)
            if cached.status == 200:
                self.cache.put(key, cached)
        if cached.status == 200 and resource.kind in MANIFEST_KINDS and point.version == version:
            self._front[_front_key(scope)] = (point, version, cached)
            if len(self._front) > FRONT_ENTRIES:
                self._front.popitem(last=False)
        return cached

    async def _offered(self, point: PublishingPoint, resource: Resource, control: Control) -> bool:
        """Whether the presentation asked for still lists this segment (it may have left the
        window)."""
        if resource.kind is Kind.INIT:
            return True
        minimum = (
            point.options.mpd_minimum_fragment_length
            if resource.kind is Kind.DASH_SEGMENT
            else point.options.hls_minimum_fragment_length
        )
        view = (await self._presentation(point, minimum, control)).view(resource.track)
        return view is not None and view.find(resource.time)[0] is Lookup.FOUND

    async def _build(
        self,
        scope: Scope,
        point: PublishingPoint,
        resource: Resource,
        fmp4: bool,
        control: Control,
        query: dict[str, list[str]],
    ) -> Answer:
        kind = resource.kind
        fmt = (
            "dash"
            if kind in (Kind.MPD, Kind.DASH_SEGMENT)
            else "smooth"
            if kind in (Kind.SMOOTH_MANIFEST, Kind.SMOOTH_FRAGMENT)
            else "hls"
        )
        minimum = {
            "hls": point.options.hls_minimum_fragment_length,
            "dash": point.options.mpd_minimum_fragment_length,
            "smooth": None,  # Smooth chunks are the stored fragments, one each
        }[fmt]
        p = await self._presentation(point, minimum, control)
        manifest_cache = self._manifest_cache(p)
        carried = Control.query(query, SEGMENT_PARAMETERS)  # so segments resolve in this presentation
        if kind is Kind.HLS_MASTER:
            # The variants keep what the client asked of the master.
            params = ["hls_fmp4=true"] if fmp4 and not point.options.hls_fmp4 else []
            params += filter(None, [Control.query(query)])
            body = hls.master(p, resource.stem, "&".join(params))
            return Answer.ok(body.encode(), "application/vnd.apple.mpegurl", manifest_cache, p.updated_ms)
        if kind is Kind.MPD:
            clock = self.settings.clock_url or f"{_origin(scope)}{CLOCK_PATH}"
            body = dash.mpd(p, resource.stem, clock, carried)
            return Answer.ok(body.encode(), "application/dash+xml", manifest_cache, p.updated_ms)
        if kind is Kind.SMOOTH_MANIFEST:
            return Answer.ok(smooth.manifest(p, carried).encode(), "text/xml", manifest_cache, p.updated_ms)
        if kind is Kind.SMOOTH_FRAGMENT:
            return await self._smooth_fragment(point, p, resource)
        view = p.view(resource.track)
        if view is None or not view.window:
            raise PlayoutError(404, f"track {resource.track!r} has nothing to play here")
        content_type = {TrackKind.VIDEO: "video/mp4", TrackKind.AUDIO: "audio/mp4"}.get(
            view.track.kind, "application/mp4"
        )
        if (kind is Kind.VTT) != (view.track.codec == "wvtt") and kind in (Kind.VTT, Kind.TS):
            raise PlayoutError(404, f"track {resource.track!r} has no {kind.value} segments")
        if kind is Kind.HLS_MEDIA:
            body = hls.media(p, view, resource.stem, fmp4=fmp4, query=carried)
            return Answer.ok(body.encode(), "application/vnd.apple.mpegurl", manifest_cache, p.updated_ms)
        if kind is Kind.INIT:
            return Answer.ok(view.track.header, content_type, "public, max-age=86400", 0)
        status, segment = view.find(resource.time)
        if segment is None:
            raise PlayoutError(
                _MISS_STATUS[fmt][status], f"segment {resource.time} of {resource.track!r} is {status.value}"
            )
        fragments = [await point.fragment(view.track.name, f.decode_time) for f in segment.fragments]
        modified = segment.fragments[-1].wallclock_ms
        if kind is Kind.VTT:
            cues = []
            for data in fragments:
                decode_time, samples, payload = read_fragment(data)
                cues += webvtt.cues_of(decode_time, samples, payload)
            text = webvtt.document(cues, view.track.timescale).encode()
            return Answer.ok(text, "text/vtt; charset=utf-8", IMMUTABLE, modified)
        if kind is Kind.TS:
            # One DTS shift for every segment of the track keeps DTS continuous across segments:
            # three frames covers B-frame pyramids; the muxer takes more where a segment needs it.
            shift = int(3 * view.track.timescale / view.frame_rate) if view.frame_rate else 0
            ts = mux_segment([TsTrack.from_fragments(view.track, fragments, dts_shift=shift)], segment.number)
            return Answer.ok(ts, "video/mp2t", IMMUTABLE, modified)
        return Answer.ok(b"".join(fragments), content_type, IMMUTABLE, modified)

    async def _smooth_fragment(self, point: PublishingPoint, p: Presentation, resource: Resource) -> Answer:
        view = next(
            (
                v
                for v in p.views
                if smooth.stream_name(v.track) == resource.name
                and smooth.smooth_bitrate(v) == resource.bitrate
            ),
            None,
        )
        if view is None:
            raise PlayoutError(404, f"no {resource.name!r} quality level at {resource.bitrate} bit/s")
        status, segment = view.find(resource.time)
        if segment is None:
            raise PlayoutError(
                _MISS_STATUS["smooth"][status],
                f"fragment {resource.time} of {resource.name!r} is {status.value}",
            )
        data = await point.fragment(view.track.name, segment.time)
        after = view.after(segment, smooth.LOOKAHEAD) if p.live else []
        body = smooth.fragment(data, segment.time, segment.duration, [(s.time, s.duration) for s in after])
        kind = "video" if view.track.kind is TrackKind.VIDEO else "audio"
        # The look-ahead grows while the live edge moves: cache like a manifest until complete.
        complete = not p.live or len(after) == smooth.LOOKAHEAD
        cache = IMMUTABLE if complete else self._manifest_cache(p)
        return Answer.ok(body, f"{kind}/mp4", cache, segment.fragments[-1].wallclock_ms)

    async def _presentation(
        self, point: PublishingPoint, minimum: Fraction | None, control: Control
    ) -> Presentation:
        """The newest presentation of ``point`` for this grouping and control (``minimum`` None:
        one segment per stored fragment, as Smooth needs), rebuilt only when the point changed."""
        key = (point.generation, minimum, control)
        found = self._presentations.get(key)
        if found is None or found[0] != point.version:
            found = (point.version, await self._build_presentation(point, minimum, control))
            self._presentations[key] = found
            self._presentations.move_to_end(key)
            if len(self._presentations) > PRESENTATIONS_KEPT:
                self._presentations.popitem(last=False)
        return found[1]

    async def _build_presentation(
        self, point: PublishingPoint, minimum: Fraction | None, control: Control
    ) -> Presentation:
        live = point.state.state is not PointState.STOPPED
        sources = []
        for name, track in sorted(point.tracks.items()):
            timeline = await point.timeline(name)
            rate = (
                await self._frame_rate(point, name)
                if track.kind is TrackKind.VIDEO and timeline.entries
                else None
            )
            cutter = self._cutter(point, track, minimum)
            cutter.update(timeline)
            sources.append(Source(track, cutter, rate, self._nominal_bitrate(point, track, timeline)))
        return present(
            str(point.pid), sources, live=live, dvr_window=point.options.dvr_window_length, control=control
        )

    def _cutter(self, point: PublishingPoint, track: Track, minimum: Fraction | None) -> SegmentCutter:
        """The track's segment cutter for this grouping, kept across requests so each fragment is
        looked at once."""
        key = (point.generation, track.name, minimum)
        cutter = self._cutters.get(key)
        if cutter is None:
            cutter = SegmentCutter(track.timescale, minimum or Fraction(0), every_fragment=minimum is None)
            self._cutters[key] = cutter
            if len(self._cutters) > CUTTERS_KEPT:
                self._cutters.popitem(last=False)
        self._cutters.move_to_end(key)
        return cutter

    def _nominal_bitrate(self, point: PublishingPoint, track: Track, timeline: Timeline) -> int:
        """A track's bit rate where the encoder declared none, measured once on the first fragment
        this process sees, so Smooth's QualityLevels(<bitrate>) URLs stay put as the window slides."""
        if track.bitrate or not timeline.entries:
            return track.bitrate
        key = (point.generation, track.name)
        if key not in self._bitrates:
            first = timeline.entries[0]
            self._bitrates[key] = max(1, first.size * 8 * track.timescale // max(first.duration, 1))
            if len(self._bitrates) > CUTTERS_KEPT:
                self._bitrates.popitem(last=False)
        return self._bitrates[key]

    async def _frame_rate(self, point: PublishingPoint, track: str) -> Fraction | None:
        """The track's frame rate, measured on its first fragment once per track."""
        key = (point.generation, track)
        if key not in self._frame_rates:
            timeline = await point.timeline(track)
            _, samples, _ = read_fragment(await point.fragment(track, timeline.entries[0].decode_time))
            rate = frame_rate(samples, point.tracks[track].timescale)
            self._frame_rates[key] = rate
            if len(self._frame_rates) > CUTTERS_KEPT:
                self._frame_rates.popitem(last=False)
        return self._frame_rates[key]

    @staticmethod
    def _manifest_cache(p: Presentation) -> str:
        if not p.live:
            return "public, max-age=60"
        longest = max((v.target_duration for v in p.views if v.window), default=2)
        return f"public, max-age={max(1, longest // 2)}"

    @staticmethod
    def _error(body: dict[str, Any]) -> Answer:
        """An error answer: the JSON body of :func:`origin.errors.error_body`."""
        return Answer(body["status"], json.dumps(body).encode(), "application/json", ERROR_CACHE)

    # -- sending ------------------------------------------------------------------------------

    async def _preflight(self, scope: Scope, send: Send) -> None:
        headers = [(b"allow", b"GET, HEAD, OPTIONS"), (b"content-length", b"0"), *self._cors_headers]
        if self.settings.cors_origin:
            requested = dict(scope["headers"]).get(b"access-control-request-headers", b"Range, If-None-Match")
            headers += [
                (b"access-control-allow-methods", b"GET, HEAD, OPTIONS"),
                (b"access-control-allow-headers", requested),
                (b"access-control-max-age", b"86400"),
            ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _send(self, scope: Scope, send: Send, answer: Answer) -> None:
        request = {name: value for name, value in scope["headers"] if name in CONDITIONAL_HEADERS}
        status, body = answer.status, answer.body
        if status == 200 and not request:  # the common case: the cached answer as it is
            headers = [*answer.headers, *self._cors_headers, (b"content-length", answer.length)]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
            return
        headers = [*answer.headers, *self._cors_headers]
        if status == 200:
            if _not_modified(request, answer):
                status, body = 304, b""
            elif b"range" in request:
                status, body, extra = _range(request[b"range"].decode("latin-1"), body)
                headers += extra
        if status != 304:  # a 304 has no content, and must not describe another length (RFC 9110 §8.6)
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def _not_modified(request: dict[bytes, bytes], answer: Answer) -> bool:
    """RFC 9110 §13.1.2 (If-None-Match, weak comparison) and, without it, §13.1.3."""
    if b"if-none-match" in request:
        tags = [t.strip().removeprefix("W/") for t in request[b"if-none-match"].decode("latin-1").split(",")]
        return "*" in tags or answer.etag in tags
    if b"if-modified-since" in request and answer.last_modified_ms:
        try:
            since = parsedate_to_datetime(request[b"if-modified-since"].decode("latin-1")).timestamp()
        except (TypeError, ValueError):
            return False
        return answer.last_modified_ms // 1000 <= since
    return False


def _range(header: str, body: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """One byte range (RFC 9110 §14.2); several ranges or another unit get the whole body."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return 200, body, []
    first, _, last = spec.strip().partition("-")
    size = len(body)
    try:
        if first:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
        else:
            start, end = max(0, size - int(last)), size - 1
    except ValueError:
        return 200, body, []
    if start >= size:
        return 416, b"", [(b"content-range", f"bytes */{size}".encode())]
    if start > end:  # not a valid range: ignored (RFC 9110 §14.1.1)
        return 200, body, []
    return 206, body[start : end + 1], [(b"content-range", f"bytes {start}-{end}/{size}".encode())]


def _flag(query: dict[str, list[str]], name: str) -> bool:
    values = query.get(name)
    return values is not None and (values[-1].lower() not in ("0", "false", "no"))


def _front_key(scope: Scope) -> tuple[str, bytes, bytes]:
    """Path, query and Host: the MPD names the origin's clock by the host the client used."""
    host = next((value for name, value in scope["headers"] if name == b"host"), b"")
    return scope["path"], scope["query_string"], host


def _origin(scope: Scope) -> str:
    host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
    if not host and scope.get("server"):
        host = "{}:{}".format(*scope["server"])
    return f"{scope.get('scheme', 'http')}://{host}"
