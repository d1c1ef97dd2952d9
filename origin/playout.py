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

import bisect
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
from functools import partial
from typing import Any
from urllib.parse import parse_qs

from conf.logs import event
from conf.settings import PlayoutSettings
from ingest.errors import PointNotFound, Unauthorized
from ingest.points import PointRegistry, PublishingPoint
from media import dash, hls, names, smooth, webvtt
from media.cenc import protect_fragment
from media.cmaf import prft_box, read_fragment
from media.hls import HlsKey
from media.keyplan import KeyPlan
from media.model import Track, TrackKind
from media.mpegts import TsTrack, can_carry, mux_segment
from media.names import Kind, Resource
from media.presentation import (
    Lookup,
    Presentation,
    Segment,
    SegmentCutter,
    Source,
    TrackView,
    frame_rate,
    present,
    track_minimum,
    with_edge,
)
from media.protection import ContentKey, Scheme
from media.timeline import Timeline, TimelineEntry
from media.timerange import SEGMENT_PARAMETERS, Control, iso_utc, parse_control
from origin import protect
from origin.edge import EdgeStream
from origin.errors import error_body, error_code, status_for
from origin.export import ClipStream, plan_clip
from origin.key_tokens import token_valid
from origin.protect import Output
from storage.errors import InvalidOption
from storage.keys import PointId
from storage.points import PointState
from storage.server_manifest import PointOptions

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PLAYOUT_PATH = re.compile(r"/(?P<point>.+?)\.isml/(?P<rest>.+)")
API_PATHS = {"state", "statistics", "archive"}
CLOCK_PATH = "/time"
TOKEN_TEXT = re.compile(r"[A-Za-z0-9._~-]{1,200}", re.ASCII)
IMMUTABLE = "public, max-age=31536000, immutable"
ERROR_CACHE = "public, max-age=1"
PRESENTATIONS_KEPT = 256  # newest per (point, grouping, window)
CUTTERS_KEPT = 1024
FRONT_ENTRIES = 4096
PART_WAIT = 3  # part targets a request for the hinted part is held before it gets 404
CONDITIONAL_HEADERS = frozenset({b"if-none-match", b"if-modified-since", b"range"})
IMMUTABLE_KINDS = frozenset({Kind.INIT, Kind.TS, Kind.M4S, Kind.DASH_SEGMENT, Kind.VTT, Kind.PART})
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

    def __init__(
        self,
        app: ASGIApp,
        registry: PointRegistry,
        settings: PlayoutSettings,
        locations: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (),
    ) -> None:
        self.app = app
        self.registry = registry
        self.settings = settings
        self.locations = {prefix: dict(values) for prefix, values in locations}
        # Effective options and key plans by (point options, location): a location's options are
        # parsed, and a CPIX file read, once per change of the point's options.
        self._options: OrderedDict[
            tuple[str, int, PointOptions, str], tuple[PointOptions, KeyPlan | None]
        ] = OrderedDict()
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
        self._presentations: OrderedDict[
            tuple[int, Fraction | None, Control, int, bool], tuple[int, Presentation]
        ] = OrderedDict()
        self._cutters: OrderedDict[tuple[int, str, Fraction | None, bool], SegmentCutter] = OrderedDict()

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
                if isinstance(answer, (ClipStream, EdgeStream)):
                    await answer.send(send, list(self._cors_headers), head=scope["method"] == "HEAD")
                else:
                    await self._send(scope, send, answer)
                return
        await self.app(scope, receive, send)

    # -- resolving ----------------------------------------------------------------------------

    async def _answer(self, scope: Scope, point: str, rest: str) -> Answer | ClipStream | EdgeStream:
        try:
            location, _, below = point.partition("/")
            if not below or location not in self.locations:
                location, below = "", point
            pid = PointId.parse(below)
            found = await self.registry.get(pid)
            if found is None:
                raise PointNotFound(f"publishing point {below!r} does not exist")
            resource = names.parse(rest, found.tracks)
            if resource is None:
                raise PlayoutError(404, f"{rest!r} names no resource of publishing point {below!r}")
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            options, plan = self._effective(found, location)
            if resource.kind is Kind.KEY:
                return self._key(scope, found, location, options, plan, resource.name, query)
            if resource.kind is Kind.PROGRESSIVE:
                protect.carried(plan, Output.PROGRESSIVE)
                minimum = options.hls_minimum_fragment_length  # segments start on keyframes
                p = await self._presentation(found, options, minimum, parse_control(query))
                return await plan_clip(found, p, self.settings.max_clip_duration)
            if resource.kind is Kind.HLS_MEDIA and ("_HLS_msn" in query or "_HLS_part" in query):
                await self._block(found, options, resource, query)
            elif resource.kind is Kind.PART:
                await self._await_part(found, options, resource)
            elif resource.kind is Kind.DASH_SEGMENT and options.low_latency:
                edge = await self._edge(found, options, plan, resource, parse_control(query))
                if edge is not None:
                    return edge
            return await self._resolve(scope, found, resource, query, options, plan, location)
        except PlayoutError as exc:
            return self._error({"status": exc.status, "error": error_code(exc.status), "message": str(exc)})
        except Exception as exc:
            status = status_for(exc)
            if status == 500:
                event(log, "playout.failed", logging.ERROR, path=scope["path"], exc=exc)
            return self._error(error_body(exc, status))

    def _effective(self, point: PublishingPoint, location: str) -> tuple[PointOptions, KeyPlan | None]:
        """The point's options as played through ``location``, and the key plan they give (None:
        clear). A location's encryption options replace the point's as a whole; a location may not
        serve an encrypted point in the clear."""
        key = (str(point.pid), point.generation, point.options, location)
        found = self._options.get(key)
        if found is None:
            options = point.options
            if location:
                values = self.locations[location]
                if any(name.startswith("encryption") for name in values):
                    options = options.without_encryption()
                options = options.with_values(values)
                if point.options.encryption != Scheme.NONE and options.encryption == Scheme.NONE:
                    raise PlayoutError(
                        403,
                        f"point {str(point.pid)!r} is encrypted: /{location}/ would play it clear",
                    )
            try:
                plan = options.key_plan(str(point.pid)) if options.encryption != Scheme.NONE else None
            except InvalidOption as exc:  # a CPIX file gone or changed since it was configured
                event(
                    log, "encryption.keys_unavailable", logging.ERROR, channel=str(point.pid), error=str(exc)
                )
                raise PlayoutError(
                    503, "the keys of this publishing point are unavailable; see the server log"
                ) from None
            found = self._options[key] = (options, plan)
            if len(self._options) > CUTTERS_KEPT:
                self._options.popitem(last=False)
        self._options.move_to_end(key)
        return found

    def _key(
        self,
        scope: Scope,
        point: PublishingPoint,
        location: str,
        options: PointOptions,
        plan: KeyPlan | None,
        kid_hex: str,
        query: dict[str, list[str]],
    ) -> Answer:
        """A content key, to a request carrying a valid token for this point: the 16 raw bytes HLS
        players fetch from an EXT-X-KEY URI (RFC 8216 §5.2), never cached by anyone."""
        secret = self.settings.key_token_secret
        if not secret:
            raise Unauthorized("this origin serves no keys (playout.key_token_secret is not set)")
        token = _token(scope, query)
        if not token or not token_valid(secret, token_subject(location, str(point.pid)), token, time.time()):
            raise Unauthorized("a key needs a valid token for this location and point (?token= or Bearer)")
        served = plan is not None and plan.identity_keys and not options.encryption_key_uri
        key = plan.key_by_kid(bytes.fromhex(kid_hex)) if plan is not None and served else None
        if key is None:
            raise PlayoutError(404, f"no key {kid_hex} is served for publishing point {str(point.pid)!r}")
        return Answer(200, key.key, "application/octet-stream", "private, no-store")

    async def _resolve(
        self,
        scope: Scope,
        point: PublishingPoint,
        resource: Resource,
        query: dict[str, list[str]],
        options: PointOptions,
        plan: KeyPlan | None,
        location: str,
    ) -> Answer:
        # AV1 and Opus have no MPEG-TS mapping HLS players use: such points get fMP4 segments.
        # So do points encrypted with cenc, which MPEG-TS cannot carry.
        fmp4 = (
            options.hls_fmp4
            or _flag(query, "hls_fmp4")
            or not all(can_carry(t) for t in point.tracks.values())
            or (plan is not None and plan.scheme is Scheme.CENC)
            or options.low_latency  # LL-HLS parts are CMAF
        )
        control = parse_control(query)
        immutable = resource.kind in IMMUTABLE_KINDS
        # Only HLS playlists name the viewer's token (on their key URIs): only they are kept per token.
        token = _query_token(query) if resource.kind in (Kind.HLS_MASTER, Kind.HLS_MEDIA) else ""
        # Segments never change: keyed without the version, they survive new fragments landing,
        # but are served only while the presentation asked for still offers them.
        # The key plan is part of the key, so new keys given to a point are used at once.
        key: tuple[object, ...] = (
            (point.generation, location, plan, resource)
            if immutable
            else (
                point.generation,
                point.version,
                location,
                plan,
                resource,
                fmp4,
                control,
                token,
                _skip(query),
                _origin(scope),
            )
        )
        version = point.version
        cached = self.cache.get(key)
        if cached is None or (immutable and not await self._offered(point, options, resource, control)):
            cached = await self._build(scope, point, resource, fmp4, control, query, options, plan)
            if cached.status == 200:
                self.cache.put(key, cached)
        if cached.status == 200 and resource.kind in MANIFEST_KINDS and point.version == version:
            self._front[_front_key(scope)] = (point, version, cached)
            if len(self._front) > FRONT_ENTRIES:
                self._front.popitem(last=False)
        return cached

    async def _offered(
        self, point: PublishingPoint, options: PointOptions, resource: Resource, control: Control
    ) -> bool:
        """Whether the presentation asked for still lists this segment (it may have left the
        window)."""
        if resource.kind in (Kind.INIT, Kind.PART):
            return True  # a part is served while it is stored
        minimum = (
            options.mpd_minimum_fragment_length
            if resource.kind is Kind.DASH_SEGMENT
            else options.hls_minimum_fragment_length
        )
        view = (await self._presentation(point, options, minimum, control)).view(resource.track)
        return view is not None and view.find(resource.time)[0] is Lookup.FOUND

    async def _build(
        self,
        scope: Scope,
        point: PublishingPoint,
        resource: Resource,
        fmp4: bool,
        control: Control,
        query: dict[str, list[str]],
        options: PointOptions,
        plan: KeyPlan | None,
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
            "hls": options.hls_minimum_fragment_length,
            "dash": options.mpd_minimum_fragment_length,
            "smooth": None,  # Smooth chunks are the stored fragments, one each
        }[fmt]
        # CMAF headers serve HLS fMP4 and DASH alike (the same schemes: cenc or cbcs).
        output = {"dash": Output.DASH, "smooth": Output.SMOOTH}.get(
            fmt, Output.HLS_FMP4 if fmp4 or kind in (Kind.INIT, Kind.M4S) else Output.HLS_TS
        )
        if fmt == "smooth" and options.low_latency:
            # Smooth chunks are the stored fragments, and a low-latency point's are parts, most
            # of which begin without a keyframe: no Smooth client could switch or seek on them.
            raise PlayoutError(404, "Smooth Streaming is not offered for low-latency points; use HLS or DASH")
        scheme = protect.carried(plan, output)
        protect.check_tracks(scheme, point.tracks.values())
        p = await self._presentation(point, options, minimum, control)
        manifest_cache = self._manifest_cache(p)
        carried = Control.query(query, SEGMENT_PARAMETERS)  # so segments resolve in this presentation
        if kind is Kind.HLS_MASTER:
            # The variants keep what the client asked of the master.
            params = ["hls_fmp4=true"] if fmp4 and not (options.hls_fmp4 or options.low_latency) else []
            params += filter(None, [Control.query(query)])
            if token := _query_token(query):
                params.append(f"token={token}")
            body = hls.master(p, resource.stem, "&".join(params))
            return Answer.ok(body.encode(), "application/vnd.apple.mpegurl", manifest_cache, p.updated_ms)
        if kind is Kind.MPD:
            clock = self.settings.clock_url or f"{_origin(scope)}{CLOCK_PATH}"
            protection = None
            if plan is not None and scheme is not Scheme.NONE:
                protection = partial(protect.dash_protection, plan, scheme)
            low_latency = dash.LowLatency(options.part_duration) if options.low_latency else None
            shown = with_edge(p) if low_latency else p
            body = dash.mpd(shown, resource.stem, clock, carried, protection, low_latency)
            return Answer.ok(body.encode(), "application/dash+xml", manifest_cache, p.updated_ms)
        if kind is Kind.SMOOTH_MANIFEST:
            tracks = sorted(point.tracks.values(), key=lambda t: t.kind is not TrackKind.VIDEO)
            headers = protect.smooth_protection(plan, scheme, tracks) if plan is not None else []
            body = smooth.manifest(p, carried, headers)
            return Answer.ok(body.encode(), "text/xml", manifest_cache, p.updated_ms)
        if kind is Kind.SMOOTH_FRAGMENT:
            return await self._smooth_fragment(point, p, resource, plan, scheme)
        view = p.view(resource.track)
        # A track's playlist appears with its first whole segment, so that its TARGETDURATION,
        # which may never change (RFC 8216bis §4.4.3.1), is known; its parts are served before.
        if view is None or not (view.window or (view.parts and kind is Kind.PART)):
            raise PlayoutError(404, f"track {resource.track!r} has nothing to play here")
        content_type = _content_type(view.track)
        if (kind is Kind.VTT) != (view.track.codec == "wvtt") and kind in (Kind.VTT, Kind.TS):
            raise PlayoutError(404, f"track {resource.track!r} has no {kind.value} segments")
        encrypted = plan is not None and scheme is not Scheme.NONE and protect.protects(view.track)
        if kind is Kind.HLS_MEDIA:
            keys = None
            if plan is not None and encrypted:
                keys = self._hls_keys(plan, scheme, view, options.encryption_key_uri, _query_token(query))
            body = hls.media(
                p,
                view,
                resource.stem,
                fmp4=fmp4,
                query=carried,
                keys=keys,
                clear_map=scheme is Scheme.AES_128,
                low_latency=self._low_latency(p, view, resource.stem, options, scheme, query),
            )
            return Answer.ok(body.encode(), "application/vnd.apple.mpegurl", manifest_cache, p.updated_ms)
        if kind is Kind.INIT:
            header = view.track.header
            if plan is not None and encrypted and scheme in (Scheme.CENC, Scheme.CBCS):
                header = protect.protect_init(plan, scheme, view.track)
            return Answer.ok(header, content_type, "public, max-age=86400", 0)
        if kind is Kind.PART:
            return await self._part(point, view, resource, options, plan, scheme, encrypted, content_type)
        status, segment = view.find(resource.time)
        if segment is None:
            raise PlayoutError(
                _MISS_STATUS[fmt][status], f"segment {resource.time} of {resource.track!r} is {status.value}"
            )
        fragments = [await point.fragment(view.track.name, f.decode_time) for f in segment.fragments]
        modified = segment.fragments[-1].wallclock_ms
        key = plan.key_for(view.track, view.utc_ms(segment)) if plan is not None and encrypted else None
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
            sample_aes = (
                (key.key, protect.segment_iv(key, segment.number))
                if key and scheme is Scheme.SAMPLE_AES
                else None
            )
            ts = mux_segment(
                [TsTrack.from_fragments(view.track, fragments, dts_shift=shift)],
                segment.number,
                sample_aes=sample_aes,
            )
            if key is not None and scheme is Scheme.AES_128:
                ts = protect.aes128_segment(ts, key, segment.number)
            return Answer.ok(ts, "video/mp2t", IMMUTABLE, modified)
        if key is not None and plan is not None and scheme in (Scheme.CENC, Scheme.CBCS):
            fragments = [
                _cenc(point, plan, scheme, view.track, key, entry, data)
                for data, entry in zip(fragments, segment.fragments, strict=True)
            ]
        media = b"".join(fragments)
        if kind is Kind.DASH_SEGMENT and options.low_latency:
            media = producer_reference(segment.fragments[0], view.track.timescale) + media
        if key is not None and scheme is Scheme.AES_128:
            media = protect.aes128_segment(media, key, segment.number)
        return Answer.ok(media, content_type, IMMUTABLE, modified)

    @staticmethod
    def _low_latency(
        p: Presentation,
        view: TrackView,
        stem: str,
        options: PointOptions,
        scheme: Scheme,
        query: dict[str, list[str]],
    ) -> hls.LowLatency | None:
        """The LL-HLS side of a media playlist of a low-latency point: none under AES-128, which
        encrypts whole segments (parts cannot be decrypted alone), nor for a presentation that
        ends before the live edge (``time_shift``, ``vend``)."""
        if not options.low_latency or scheme is Scheme.AES_128 or p.shift or p.finish is not None:
            return None
        reports = tuple(
            (names.media_playlist(stem, v.track.name), *edge)
            for v in p.views
            if v is not view and v.track.kind in (TrackKind.VIDEO, TrackKind.AUDIO) and (edge := v.edge())
        )
        return hls.LowLatency(options.part_duration, _skip(query), reports)

    async def _block(
        self, point: PublishingPoint, options: PointOptions, resource: Resource, query: dict[str, list[str]]
    ) -> None:
        """LL-HLS blocking playlist reload (RFC 8216bis §6.2.5.2): hold the request until the
        playlist holds segment ``_HLS_msn`` (with ``_HLS_part``: that part of it, or anything
        later), woken by each fragment stored, not by polling. 400 for ``_HLS_part`` alone, for
        values that are not numbers, and for a segment more than two beyond the newest; 503 when
        still blocked after three target durations. Ignored for a playlist with EXT-X-ENDLIST and
        for points that are not low-latency (their playlists offer no blocking)."""
        msn_text, part_text = query.get("_HLS_msn"), query.get("_HLS_part")
        if part_text is not None and msn_text is None:
            raise PlayoutError(400, "_HLS_part needs _HLS_msn")
        try:
            msn = int(msn_text[-1]) if msn_text else 0
            part = int(part_text[-1]) if part_text else None
        except ValueError:
            raise PlayoutError(400, "_HLS_msn and _HLS_part must be whole numbers") from None
        if msn < 0 or (part is not None and part < 0):
            raise PlayoutError(400, "_HLS_msn and _HLS_part must not be negative")
        if not options.low_latency:
            return
        control = parse_control(query)
        deadline: float | None = None
        while True:
            seen = point.version
            p = await self._presentation(point, options, options.hls_minimum_fragment_length, control)
            view = p.view(resource.track)
            if not p.live or p.shift or p.finish is not None or view is None or point.deleted:
                return  # no blocking is offered there
            last = view.window[-1].number if view.window else view.parts_number - 1
            if msn > last + 2:
                raise PlayoutError(
                    400, f"_HLS_msn={msn} is more than two segments beyond the last one ({last})"
                )
            if _reached(view, msn, part):
                return
            now = time.monotonic()
            if deadline is None:
                deadline = now + 3 * max(view.target_duration, 1)
            if now >= deadline:
                raise PlayoutError(
                    503,
                    f"segment {msn} part {part} of {resource.track!r} did not come in three target durations",
                )
            await point.changed(seen, deadline - now)

    async def _await_part(self, point: PublishingPoint, options: PointOptions, resource: Resource) -> None:
        """Hold a request for the part a playlist hints (EXT-X-PRELOAD-HINT, RFC 8216bis §4.4.5.3)
        until it is stored: the part starting where the track's newest fragment ends. Gives up
        once a later fragment shows it will not come, or after :data:`PART_WAIT` part targets."""
        if not options.low_latency or resource.track not in point.tracks:
            return
        timeline = await point.timeline(resource.track)
        if timeline.end != resource.time or point.state.state is PointState.STOPPED:
            return
        deadline = time.monotonic() + float(PART_WAIT * options.part_duration)
        while True:
            seen = point.version
            if (await point.timeline(resource.track)).end > resource.time or point.deleted:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await point.changed(seen, remaining):
                return

    async def _edge(
        self,
        point: PublishingPoint,
        options: PointOptions,
        plan: KeyPlan | None,
        resource: Resource,
        control: Control,
    ) -> EdgeStream | None:
        """The DASH segment in progress, when asked for (held a moment when it is about to
        start): sent as its parts arrive (:mod:`origin.edge`). None for any other segment."""
        scheme = protect.carried(plan, Output.DASH)
        protect.check_tracks(scheme, point.tracks.values())
        await self._await_part(point, options, resource)
        minimum = options.mpd_minimum_fragment_length

        async def view() -> TrackView | None:
            return (await self._presentation(point, options, minimum, control)).view(resource.track)

        current = await view()
        if current is None or not current.parts or current.parts[0].decode_time != resource.time:
            return None
        track = current.track
        first = current.parts[0]
        key = None
        if plan is not None and scheme in (Scheme.CENC, Scheme.CBCS) and protect.protects(track):
            key = plan.key_for(track, first.utc_ms(first.decode_time, track.timescale))

        def chunk(entry: TimelineEntry, data: bytes) -> bytes:
            if plan is None or key is None:
                return data
            return _cenc(point, plan, scheme, track, key, entry, data)

        longest = max(current.target_duration, 1)
        return EdgeStream(
            point,
            track.name,
            resource.time,
            view,
            chunk,
            producer_reference(first, track.timescale),
            _content_type(track),
            3 * longest,
        )

    async def _part(
        self,
        point: PublishingPoint,
        view: TrackView,
        resource: Resource,
        options: PointOptions,
        plan: KeyPlan | None,
        scheme: Scheme,
        encrypted: bool,
        content_type: str,
    ) -> Answer:
        """An LL-HLS part: one stored fragment of a segment of the window or of the segment in
        progress, encrypted as its segment is (same key, same IVs)."""
        if not options.low_latency or scheme is Scheme.AES_128:
            raise PlayoutError(404, f"publishing point {str(point.pid)!r} offers no parts")
        time_ = resource.time
        if view.parts and view.parts[0].decode_time <= time_:
            segment_start, entries = view.parts[0], view.parts  # of the segment in progress
        else:
            index = bisect.bisect_right(view.window, time_, key=_segment_time) - 1
            segment = view.window[index] if index >= 0 and time_ < view.window[index].end else None
            if segment is None:
                raise PlayoutError(404, f"part {time_} of {resource.track!r} is not in the window")
            segment_start, entries = segment.fragments[0], segment.fragments
        entry = next((e for e in entries if e.decode_time == time_), None)
        if entry is None:
            raise PlayoutError(404, f"no part of {resource.track!r} starts at {time_}")
        data = await point.fragment(view.track.name, time_)
        if plan is not None and encrypted and scheme in (Scheme.CENC, Scheme.CBCS):
            key = plan.key_for(
                view.track, segment_start.utc_ms(segment_start.decode_time, view.track.timescale)
            )
            data = _cenc(point, plan, scheme, view.track, key, entry, data)
        return Answer.ok(data, content_type, IMMUTABLE, entry.wallclock_ms)

    @staticmethod
    def _hls_keys(
        plan: KeyPlan, scheme: Scheme, view: TrackView, key_uri: str, token: str
    ) -> Callable[[Segment], tuple[HlsKey, ...]]:
        """The EXT-X-KEY tags of each segment of ``view``: those of the key of its period."""
        found: dict[bytes, tuple[HlsKey, ...]] = {}

        def keys(segment: Segment) -> tuple[HlsKey, ...]:
            key = plan.key_for(view.track, view.utc_ms(segment))
            if key.kid not in found:
                found[key.kid] = protect.hls_keys(plan, scheme, key, key_uri, token)
            return found[key.kid]

        return keys

    async def _smooth_fragment(
        self,
        point: PublishingPoint,
        p: Presentation,
        resource: Resource,
        plan: KeyPlan | None,
        scheme: Scheme,
    ) -> Answer:
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
        if plan is not None and scheme is not Scheme.NONE and protect.protects(view.track):
            key = plan.key_for(view.track, view.utc_ms(segment))
            data = _cenc(point, plan, scheme, view.track, key, segment.fragments[0], data)
        after = view.after(segment, smooth.LOOKAHEAD) if p.live else []
        body = smooth.fragment(data, segment.time, segment.duration, [(s.time, s.duration) for s in after])
        kind = "video" if view.track.kind is TrackKind.VIDEO else "audio"
        # The look-ahead grows while the live edge moves: cache like a manifest until complete.
        complete = not p.live or len(after) == smooth.LOOKAHEAD
        cache = IMMUTABLE if complete else self._manifest_cache(p)
        return Answer.ok(body, f"{kind}/mp4", cache, segment.fragments[-1].wallclock_ms)

    async def _presentation(
        self, point: PublishingPoint, options: PointOptions, minimum: Fraction | None, control: Control
    ) -> Presentation:
        """The newest presentation of ``point`` for this grouping and control (``minimum`` None:
        one segment per stored fragment, as Smooth needs), rebuilt only when the point changed."""
        key = (point.generation, minimum, control, options.dvr_window_length, options.low_latency)
        found = self._presentations.get(key)
        if found is None or found[0] != point.version:
            found = (point.version, await self._build_presentation(point, options, minimum, control))
            self._presentations[key] = found
            self._presentations.move_to_end(key)
            if len(self._presentations) > PRESENTATIONS_KEPT:
                self._presentations.popitem(last=False)
        return found[1]

    async def _build_presentation(
        self, point: PublishingPoint, options: PointOptions, minimum: Fraction | None, control: Control
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
            ll = options.low_latency
            cutter = self._cutter(point, track, track_minimum(minimum, track, ll), parts=ll)
            cutter.update(timeline)
            sources.append(Source(track, cutter, rate, self._nominal_bitrate(point, track, timeline)))
        return present(
            str(point.pid), sources, live=live, dvr_window=options.dvr_window_length, control=control
        )

    def _cutter(
        self, point: PublishingPoint, track: Track, minimum: Fraction | None, *, parts: bool
    ) -> SegmentCutter:
        """The track's segment cutter for this grouping, kept across requests so each fragment is
        looked at once. ``parts``: the point is low-latency."""
        key = (point.generation, track.name, minimum, parts)
        cutter = self._cutters.get(key)
        if cutter is None:
            cutter = SegmentCutter(
                track.timescale, minimum or Fraction(0), every_fragment=minimum is None, parts=parts
            )
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


def _content_type(track: Track) -> str:
    return {TrackKind.VIDEO: "video/mp4", TrackKind.AUDIO: "audio/mp4"}.get(track.kind, "application/mp4")


def producer_reference(entry: TimelineEntry, timescale: int) -> bytes:
    """The ``prft`` opening a low-latency DASH segment (ISO/IEC 14496-12 §8.16.5): the wall-clock
    time of its first sample, as the MPD's ProducerReferenceTime gives it."""
    return prft_box(entry.utc_ms(entry.decode_time, timescale), entry.decode_time)


def _reached(view: TrackView, msn: int, part: int | None) -> bool:
    """Whether the playlist of ``view`` answers a blocking request for segment ``msn`` (part
    ``part``). A part index beyond a complete segment's last one asks for the next segment's first
    part (RFC 8216bis §6.2.5.2)."""
    edge = view.edge()
    if edge is None:
        return False
    complete = view.window[-1].number if view.window else -1
    if part is None:
        return complete >= msn
    if msn <= complete and view.window:
        segment = view.window[max(0, msn - view.window[0].number)]
        if part >= len(segment.fragments):
            msn, part = msn + 1, 0
    return (msn, part) <= edge


def _segment_time(segment: Segment) -> int:
    return segment.time


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


def _skip(query: dict[str, list[str]]) -> bool:
    """An LL-HLS delta update is asked for: ``_HLS_skip=YES`` (or ``v2``, RFC 8216bis §6.2.5.1)."""
    return _flag(query, "_HLS_skip") or query.get("_HLS_skip") == ["v2"]


def _cenc(
    point: PublishingPoint,
    plan: KeyPlan,
    scheme: Scheme,
    track: Track,
    key: ContentKey,
    entry: TimelineEntry,
    data: bytes,
) -> bytes:
    """The stored fragment ``entry`` (``data``) under cenc or cbcs with ``key`` (its segment's),
    naming the init segment's default key: the same bytes in a segment, a part, a DASH edge
    chunk or a Smooth fragment, from any origin process."""
    default = plan.default_key(track).kid
    return protect_fragment(data, track, scheme, key, default_kid=default, iv_seed=_iv_seed(point, entry))


def _iv_seed(point: PublishingPoint, entry: TimelineEntry) -> bytes:
    """What names this copy of a fragment for its cenc IVs: the point and when it was ingested."""
    return f"{point.pid}|{entry.wallclock_ms}".encode()


def token_subject(location: str, point: str) -> str:
    """What a key token is bound to: the point as the request names it, with its location
    (``aes128/live/ch1``), so a token for one location opens no other's keys."""
    return f"{location}/{point}" if location else point


def _query_token(query: dict[str, list[str]]) -> str:
    """The viewer's key token as the playlist request carried it, for the key URIs it names."""
    values = query.get("token")
    return values[-1] if values and TOKEN_TEXT.fullmatch(values[-1]) else ""


def _token(scope: Scope, query: dict[str, list[str]]) -> str:
    """A key request's token: ``Authorization: Bearer <token>`` or ``?token=``."""
    header = str(dict(scope["headers"]).get(b"authorization", b"").decode("latin-1"))
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and TOKEN_TEXT.fullmatch(value.strip()):
        return value.strip()
    return _query_token(query)


def _front_key(scope: Scope) -> tuple[str, bytes, bytes]:
    """Path, query and Host: the MPD names the origin's clock by the host the client used."""
    host = next((value for name, value in scope["headers"] if name == b"host"), b"")
    return scope["path"], scope["query_string"], host


def _origin(scope: Scope) -> str:
    host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
    if not host and scope.get("server"):
        host = "{}:{}".format(*scope["server"])
    return f"{scope.get('scheme', 'http')}://{host}"
