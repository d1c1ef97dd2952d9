"""Publishing points at run time: lifecycle (idle → started → stopped), track registration, and the
rule that decides for each incoming fragment whether it is new, a duplicate, or goes backwards.

The store is the truth: a point is loaded from it on first use, and every change is written to it
before it is acknowledged.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from conf.logs import event
from ingest.errors import (
    BackwardsTimestamp,
    HeaderMismatch,
    PointBusy,
    PointExists,
    PointNotFound,
    Unauthorized,
)
from media.model import Fragment, Track
from media.timeline import FLAG_DISCONTINUITY, FLAG_KEYFRAME, Timeline, Verdict
from storage.keys import PointId
from storage.points import PointState, PointStore, StateRecord
from storage.server_manifest import PointOptions, ServerManifest

log = logging.getLogger("headwater.ingest")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class TrackStats:
    stored: int = 0
    duplicates: int = 0
    bytes: int = 0


class WriteTracker:
    """Counts writes in flight so that shutdown can wait for them to finish."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        self._count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._count -= 1
            if not self._count:
                self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


_generations = itertools.count(1)


class PublishingPoint:
    """A publishing point loaded in this process. ``version`` grows with every change a manifest
    could show; ``generation`` tells apart two incarnations of the same path (deleted, recreated),
    so caches keyed on both never serve stale answers."""

    def __init__(
        self,
        pid: PointId,
        manifest: ServerManifest,
        state: StateRecord,
        tracks: list[Track],
        points: PointStore,
        writes: WriteTracker,
    ) -> None:
        self.pid = pid
        self.manifest = manifest
        self.state = state
        self.tracks: dict[str, Track] = {t.name: t for t in tracks}
        self.stats: dict[str, TrackStats] = {t.name: TrackStats() for t in tracks}
        self._points = points
        self._writes = writes
        self._timelines: dict[str, Timeline] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._ingest_headers: dict[str, bytes] = {}
        self._ended: set[str] = set()
        self.connections = 0  # ingest requests in progress
        self.version = 0
        self.generation = next(_generations)
        self.deleted = False
        self._declare_lock = asyncio.Lock()
        self._state_lock = asyncio.Lock()

    @property
    def options(self) -> PointOptions:
        return self.manifest.options

    def _lock(self, track: str) -> asyncio.Lock:
        return self._locks.setdefault(track, asyncio.Lock())

    async def timeline(self, track: str) -> Timeline:
        """The track's timeline, loaded (and repaired) from the store on first use."""
        timeline = self._timelines.get(track)
        if timeline is None:
            async with self._lock(track):
                timeline = self._timelines.get(track)
                if timeline is None:
                    timeline = await self._points.load_timeline(self.pid, track)
                    self._timelines[track] = timeline
        return timeline

    async def fragment(self, track: str, decode_time: int) -> bytes:
        """A stored fragment's bytes (moof + mdat)."""
        return await self._points.read_fragment(self.pid, track, decode_time)

    async def ingest_header(self, stream: str) -> bytes | None:
        """The header an earlier request of ``stream`` sent, for one-request-per-segment encoders."""
        if stream not in self._ingest_headers:
            header = await self._points.read_ingest_header(self.pid, stream)
            if header is None:
                return None
            self._ingest_headers[stream] = header
        return self._ingest_headers[stream]

    async def _set_state(self, state: PointState) -> None:
        async with self._state_lock:
            if self.state.state is state:
                return
            record = StateRecord(state, now_ms())
            async with self._writes.writing():
                await self._points.write_state(self.pid, record)
            event(
                log, "point.state", channel=str(self.pid), state=state.value, previous=self.state.state.value
            )
            self.state = record
            self.version += 1

    def _check_live(self) -> None:
        if self.deleted:
            raise PointNotFound(f"publishing point {str(self.pid)!r} was deleted")

    async def declare(self, stream: str, tracks: tuple[Track, ...], header: bytes) -> None:
        """Register the tracks a header declares. A header re-sent for known tracks continues them;
        one describing different media for a known track name is refused. Serialised per point, so
        two encoders declaring the same new track at once cannot both win."""
        async with self._declare_lock:
            await self._declare(stream, tracks, header)

    async def _declare(self, stream: str, tracks: tuple[Track, ...], header: bytes) -> None:
        self._check_live()
        for track in tracks:
            known = self.tracks.get(track.name)
            if known is not None and not known.same_media(track):
                same_codec = (known.codec_string, known.timescale) == (track.codec_string, track.timescale)
                stored = (
                    "the same codec with a different decoder configuration"
                    if same_codec
                    else f"{known.codec_string} at timescale {known.timescale}"
                )
                raise HeaderMismatch(
                    f"track {track.name!r}: the header declares {track.codec_string} at timescale "
                    f"{track.timescale}; the stored track has {stored}",
                    path="moov",
                )
        async with self._writes.writing():
            added = [t for t in tracks if t.name not in self.tracks]
            for track in added:
                await self._points.write_track(self.pid, track)
                self.tracks[track.name] = track
                self.stats[track.name] = TrackStats()
                event(
                    log,
                    "track.added",
                    channel=str(self.pid),
                    track=track.name,
                    codec=track.codec_string,
                    timescale=track.timescale,
                    stream=stream,
                )
            if added:
                self.version += 1
                self.manifest = self.manifest.with_tracks(list(self.tracks.values()))
                await self._points.write_manifest(self.pid, self.manifest)
            if header and self._ingest_headers.get(stream) != header:
                await self._points.write_ingest_header(self.pid, stream, header)
                self._ingest_headers[stream] = header
        self._ended -= {t.name for t in tracks}
        await self._set_state(PointState.STARTED)

    async def accept(self, fragment: Fragment, *, discontinuity: bool = False) -> Verdict:
        """Store a fragment unless the track has it already. Returns once it is durable.
        ``discontinuity`` marks it as following a break even without a gap in time (an encoder
        restarted)."""
        self._check_live()
        track = self.tracks[fragment.track]
        timeline = await self.timeline(fragment.track)
        tolerance = fragment.samples[0].duration if fragment.samples else 0
        async with self._lock(fragment.track), self._writes.writing():
            self._check_live()
            verdict = timeline.check(fragment.decode_time, tolerance)
            stats = self.stats[fragment.track]
            if verdict is Verdict.DUPLICATE:
                stats.duplicates += 1
                event(
                    log,
                    "fragment.duplicate",
                    logging.DEBUG,
                    channel=str(self.pid),
                    track=track.name,
                    time=fragment.decode_time,
                )
                return verdict
            if verdict is Verdict.BACKWARDS:
                raise BackwardsTimestamp(
                    str(self.pid), track.name, timeline.end, fragment.decode_time, track.timescale
                )
            flags = FLAG_KEYFRAME if fragment.keyframe else 0
            if discontinuity and timeline.entries:
                flags |= FLAG_DISCONTINUITY
            elif timeline.is_gap(fragment.decode_time, tolerance):
                flags |= FLAG_DISCONTINUITY
                event(
                    log,
                    "track.gap",
                    logging.WARNING,
                    channel=str(self.pid),
                    track=track.name,
                    expected=timeline.end,
                    time=fragment.decode_time,
                )
            entry = await self._points.write_fragment(self.pid, fragment, now_ms(), flags)
            timeline.add(entry)
            self.version += 1
            stats.stored += 1
            stats.bytes += entry.size
            event(
                log,
                "fragment.stored",
                logging.DEBUG,
                channel=str(self.pid),
                track=track.name,
                time=fragment.decode_time,
                duration=fragment.duration,
                size=entry.size,
            )
            return verdict

    async def end(self, tracks: list[str], reason: str) -> None:
        """The encoder signalled the end of these tracks; the point stops when all have ended."""
        self._ended |= set(tracks)
        event(log, "stream.ended", channel=str(self.pid), tracks=tracks, reason=reason)
        if self._ended >= set(self.tracks):
            await self._set_state(PointState.STOPPED)

    def describe(self) -> dict[str, object]:
        """What ``GET /<name>.isml/state`` answers."""
        tracks = []
        for name, track in sorted(self.tracks.items()):
            timeline = self._timelines.get(name)
            stats = self.stats.get(name, TrackStats())
            entry: dict[str, object] = {
                "name": name,
                "kind": track.kind.value,
                "codec": track.codec_string,
                "bitrate": track.bitrate,
                "timescale": track.timescale,
                "language": track.language,
                "stored_since_start": stats.stored,
                "duplicates_since_start": stats.duplicates,
            }
            if timeline is not None and timeline.entries:
                entry["fragments"] = len(timeline)
                entry["start_time"] = timeline.entries[0].decode_time
                entry["end_time"] = timeline.end
            tracks.append(entry)
        return {
            "point": str(self.pid),
            "state": self.state.state.value,
            "since": _iso(self.state.since_ms) if self.state.since_ms else None,
            "options": self.options.as_text(redact=True),
            "tracks": tracks,
        }


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


class PointRegistry:
    """The publishing points this process knows, loaded from the store on demand."""

    def __init__(
        self, points: PointStore, defaults: PointOptions, *, auto_create: bool, token: str = ""
    ) -> None:
        self.store = points
        self.defaults = defaults
        self.auto_create = auto_create
        self.token = token  # ingest.token: accepted for every point
        self.writes = WriteTracker()
        self.closed = asyncio.Event()  # set when the server stops taking ingest
        self._points: dict[PointId, PublishingPoint] = {}
        self._lock = asyncio.Lock()

    async def get(self, pid: PointId) -> PublishingPoint | None:
        point = self._points.get(pid)
        if point is not None:
            return point
        async with self._lock:
            point = self._points.get(pid)
            if point is None:
                point = await self._load(pid)
                if point is not None:
                    self._points[pid] = point
        return point

    async def _load(self, pid: PointId) -> PublishingPoint | None:
        manifest = await self.store.read_manifest(pid, self.defaults)
        if manifest is None:
            return None
        tracks = await self.store.read_tracks(pid)
        state = await self.store.read_state(pid)
        return PublishingPoint(pid, manifest.with_tracks(tracks), state, tracks, self.store, self.writes)

    async def create(self, pid: PointId, options: PointOptions | None = None) -> PublishingPoint:
        async with self._lock:
            if pid in self._points or await self.store.exists(pid):
                raise PointExists(f"publishing point {str(pid)!r} exists already")
            manifest = ServerManifest(options or self.defaults)
            async with self.writes.writing():
                await self.store.write_manifest(pid, manifest)
            point = PublishingPoint(
                pid, manifest, StateRecord(PointState.IDLE, now_ms()), [], self.store, self.writes
            )
            self._points[pid] = point
        event(log, "point.created", channel=str(pid))
        return point

    async def authorize(self, pid: PointId, given: str) -> None:
        """Raise :class:`Unauthorized` unless ``given`` is the global publish token or the point's
        own (``publish_token``, or the default options' for a point ingest would create). Passes
        when neither is set."""
        point = await self.get(pid)
        options = point.options if point is not None else self.defaults
        expected = [t for t in (options.publish_token, self.token) if t]
        if expected and not any(hmac.compare_digest(given.encode(), t.encode()) for t in expected):
            reason = "a publish token is required (?t=...)" if not given else "the publish token is wrong"
            raise Unauthorized(f"publishing to {str(pid)!r}: {reason}")

    async def may_ingest(self, pid: PointId) -> bool:
        return self.auto_create or await self.get(pid) is not None

    async def for_ingest(self, pid: PointId) -> PublishingPoint:
        """The point, created with the default options when configuration allows."""
        point = await self.get(pid)
        if point is not None:
            return point
        if not self.auto_create:
            raise PointNotFound(
                f"publishing point {str(pid)!r} does not exist; create it first (PUT /{pid}.isml)"
            )
        try:
            return await self.create(pid)
        except PointExists:
            found = await self.get(pid)
            assert found is not None
            return found

    async def restart(self, point: PublishingPoint) -> PublishingPoint:
        """Start the point again with no media (``restart_on_encoder_reconnect``): its tracks and
        archive are deleted, its options kept. Answers cached for the old incarnation stay apart,
        since the new one has a new generation."""
        point.deleted = True
        async with self._lock, self.writes.writing():
            await self.store.delete_media(point.pid)
            fresh = PublishingPoint(
                point.pid,
                point.manifest.with_tracks([]),
                StateRecord(PointState.IDLE, now_ms()),
                [],
                self.store,
                self.writes,
            )
            await self.store.write_manifest(point.pid, fresh.manifest)
            self._points[point.pid] = fresh
        event(log, "point.restarted", channel=str(point.pid))
        return fresh

    async def delete(self, pid: PointId) -> None:
        point = await self.get(pid)
        if point is None:
            raise PointNotFound(f"publishing point {str(pid)!r} does not exist")
        if point.connections:
            raise PointBusy(
                f"publishing point {str(pid)!r} is receiving {point.connections} ingest connection(s); "
                "stop the encoder first"
            )
        point.deleted = True  # from here on, a request that finds this object refuses to write
        async with self._lock, self.writes.writing():
            await self.store.delete(pid)
            self._points.pop(pid, None)
        event(log, "point.deleted", channel=str(pid))
