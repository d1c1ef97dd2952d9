"""Publishing points at run time: lifecycle (idle → started → stopped), track registration, and the
rule that decides for each incoming fragment whether it is new, a duplicate, or goes backwards.

The store is the truth: a point is loaded from it on first use, and every change is written to it
before it is acknowledged.
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import itertools
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from fractions import Fraction

from conf.logs import event
from ingest.errors import (
    BackwardsTimestamp,
    HeaderMismatch,
    PointBusy,
    PointExists,
    PointNotFound,
    ReadOnly,
    Unauthorized,
)
from media.model import Fragment, Track
from media.presentation import LL_SEGMENT, SegmentCutter, grouping_key
from media.timeline import (
    FLAG_DISCONTINUITY,
    FLAG_KEYFRAME,
    PurgeMark,
    Timeline,
    TimelineEntry,
    Verdict,
    is_utc,
)
from media.timerange import iso_utc
from storage.keys import PointId
from storage.points import PointState, PointStore, StateRecord
from storage.server_manifest import PointOptions, ServerManifest

log = logging.getLogger("headwater.ingest")

PURGE_MARGIN_S = 30  # kept beyond the DVR window for requests in flight and players behind it
PURGE_STEP_S = 30  # purge in steps of at least this much media (or 1% of what is kept)
# How far the wall-clock time a run's timestamps predict may be from the ingest clock and still
# continue the point's anchor (encoder buffering, audio and video arriving apart).
ANCHOR_TOLERANCE_MS = 30_000


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
        *,
        follower: bool = False,
    ) -> None:
        self.pid = pid
        self.follower = follower  # another process ingests it: read the store, never write
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
        self._anchor_ms: int | None = None  # UTC at media time zero of the newest run
        self._changed = asyncio.Event()  # set (and replaced) at every change of ``version``

    @property
    def options(self) -> PointOptions:
        return self.manifest.options

    def touch(self) -> None:
        """Something a manifest could show changed: a new ``version``, and the requests waiting
        for one (LL-HLS blocking reload, parts and DASH segments at the live edge) wake up."""
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, since: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a change after ``version`` ``since`` (at once when
        one came already, so a change between reading the point and waiting is not missed);
        False when none came."""
        if self.version != since or self.deleted:
            return True
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _lock(self, track: str) -> asyncio.Lock:
        return self._locks.setdefault(track, asyncio.Lock())

    async def timeline(self, track: str) -> Timeline:
        """The track's timeline, loaded (and repaired) from the store on first use."""
        timeline = self._timelines.get(track)
        if timeline is None:
            async with self._lock(track):
                timeline = self._timelines.get(track)
                if timeline is None:
                    timeline = await self._points.load_timeline(
                        self.pid, track, self.tracks[track].timescale, repair=not self.follower
                    )
                    self._timelines[track] = timeline
        return timeline

    async def follow(self, *, full: bool) -> bool:
        """A follower's look at what the ingesting process stored since the last one: the state
        and the newest index part of each track loaded here; with ``full``, also the server
        manifest (options, or the point deleted), new tracks and purge marks. Bumps ``version``
        when anything changed, so cached answers are rebuilt. False once the point is gone."""
        changed = False
        if full or not self.tracks:
            manifest = await self._points.read_manifest(self.pid, self.manifest.options)
            if manifest is None:
                self.deleted = True
                return False
            tracks = await self._points.read_tracks(self.pid)
            added = [t for t in tracks if t.name not in self.tracks]
            for track in added:
                self.tracks[track.name] = track
                self.stats[track.name] = TrackStats()
            if added or manifest.options != self.options:
                self.manifest = manifest.with_tracks(list(self.tracks.values()))
                changed = True
        state = await self._points.read_state(self.pid)
        if state != self.state:
            self.state, changed = state, True
        for name in list(self._timelines):
            async with self._lock(name):
                followed = await self._points.follow_timeline(
                    self.pid, name, self.tracks[name].timescale, self._timelines[name], check_mark=full
                )
                if followed is not None:
                    self._timelines[name], changed = followed, True
        if changed:
            self.touch()
        return True

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
            self.touch()

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
                self.touch()
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
        await self.timeline(fragment.track)
        tolerance = fragment.samples[0].duration if fragment.samples else 0
        async with self._lock(fragment.track), self._writes.writing():
            self._check_live()
            timeline = self._timelines[fragment.track]  # a purge may have replaced it meanwhile
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
            wallclock = await self._wallclock(fragment, track, timeline, flags)
            entry = await self._points.write_fragment(self.pid, fragment, wallclock, flags)
            timeline.add(entry)
            self.touch()
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

    async def _wallclock(self, fragment: Fragment, track: Track, timeline: Timeline, flags: int) -> int:
        """UTC milliseconds of the fragment's end: the encoder's own clock when its decode times
        are UTC; otherwise the ingest clock, fixed for a run of fragments (from the first one after
        a start or a break) and shared by every track, so all tracks and runs agree. A break whose
        timestamps carry on where the wall clock says they should (an RTMP reconnect, an encoder
        whose clock kept running) keeps the point's anchor; one whose clock jumped gets a new one."""
        scale = track.timescale
        end_ms = fragment.end_time * 1000 // scale
        if is_utc(fragment.decode_time, scale):
            return end_ms
        last = timeline.last
        if last is not None and not flags & FLAG_DISCONTINUITY:
            return last.anchor_ms(scale) + end_ms
        now = now_ms()
        anchor = self._anchor_ms
        if anchor is None:
            anchor = await self._stored_anchor()
        if anchor is None or abs(anchor + end_ms - now) > ANCHOR_TOLERANCE_MS:
            anchor = now - end_ms
        self._anchor_ms = anchor
        return anchor + end_ms

    async def _stored_anchor(self) -> int | None:
        """The anchor of the newest stored fragment of any track (after a restart)."""
        newest: tuple[int, int] | None = None
        for name, track in list(self.tracks.items()):  # tracks may be declared meanwhile
            last = (await self.timeline(name)).last
            if last is None or is_utc(last.decode_time, track.timescale):
                continue
            if newest is None or last.wallclock_ms > newest[0]:
                newest = (last.wallclock_ms, last.anchor_ms(track.timescale))
        return None if newest is None else newest[1]

    def retention(self) -> int | None:
        """Seconds of media the archive keeps behind the live edge, ``None`` for everything:
        ``archive_length`` when archiving (0: no limit), only the DVR window when not, and never
        less than the DVR window plus a margin for requests in flight."""
        options = self.options
        if options.archiving and not options.archive_length:
            return None
        keep = options.archive_length if options.archiving else 0
        return max(keep, options.dvr_window_length) + PURGE_MARGIN_S

    async def purge(self, groupings: list[Fraction | None]) -> int:
        """Delete the fragments older than :meth:`retention` behind the newest one, in batches,
        cutting only where a segment starts in every one of ``groupings`` (the ways the packagers
        cut this point: ``None`` is one segment per fragment), so every manifest keeps its
        segment names and HLS sequence numbers. Returns how many fragments went."""
        keep = self.retention()
        if keep is None or not self.tracks:
            return 0
        edges = []
        for name, track in list(self.tracks.items()):
            timeline = await self.timeline(name)
            if timeline.entries:
                edges.append(Fraction(timeline.end, track.timescale))
        if not edges:
            return 0
        cutoff = max(edges) - keep
        batch = max(Fraction(PURGE_STEP_S), Fraction(keep, 100))
        removed = 0
        for name, track in list(self.tracks.items()):
            removed += await self._purge_track(name, track, cutoff, batch, groupings)
        return removed

    async def _purge_track(
        self, name: str, track: Track, cutoff: Fraction, batch: Fraction, groupings: list[Fraction | None]
    ) -> int:
        scale = track.timescale
        async with self._lock(name):
            timeline = self._timelines[name]
            entries = timeline.entries
            if self.deleted or not entries or Fraction(entries[0].decode_time, scale) > cutoff - batch:
                return 0
            target = int(cutoff * scale)
            prefix = Timeline(entries[: bisect.bisect_left(entries, target, key=_start) + 1], timeline.mark)
            cuts = [_cut_points(prefix, scale, minimum) for minimum in groupings]
            common = [t for t in cuts[0] if t <= target and all(t in c for c in cuts[1:])]
            first = max(common, default=entries[0].decode_time)
            index = bisect.bisect_left(entries, first, key=_start)
            if index == 0:
                return 0
            mark = PurgeMark(
                first,
                timeline.mark.fragments + index,
                tuple((grouping_key(m), *c[first]) for m, c in zip(groupings, cuts, strict=True)),
            )
            gone = [e.decode_time for e in entries[:index]]
            kept = entries[index:]
            async with self._writes.writing():
                await self._points.purge(self.pid, name, mark)
            self._timelines[name] = Timeline(kept, mark)
            self.touch()
        async with self._writes.writing():
            await self._points.delete_fragments(self.pid, name, gone)
        event(
            log,
            "archive.purged",
            channel=str(self.pid),
            track=name,
            fragments=len(gone),
            before=first,
            timescale=scale,
        )
        return len(gone)

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
            "since": iso_utc(self.state.since_ms) if self.state.since_ms else None,
            "options": self.options.as_text(redact=True),
            "tracks": tracks,
        }


async def archive(point: PublishingPoint) -> dict[str, object]:
    """What ``GET /<name>.isml/archive`` answers: per track, the stretches stored without a
    break, in UTC and in the track's timescale."""
    tracks = []
    for name, track in sorted(point.tracks.items()):
        timeline = await point.timeline(name)
        scale = track.timescale
        ranges = [
            {
                "start": iso_utc(first.utc_ms(first.decode_time, scale)),
                "end": iso_utc(last.wallclock_ms),
                "start_time": first.decode_time,
                "end_time": last.end,
                "duration": round((last.end - first.decode_time) / scale, 3),
            }
            for first, last in timeline.ranges()
        ]
        tracks.append({"name": name, "kind": track.kind.value, "timescale": scale, "ranges": ranges})
    return {"point": str(point.pid), "state": point.state.state.value, "tracks": tracks}


def _start(entry: TimelineEntry) -> int:
    return entry.decode_time


def _cut_points(timeline: Timeline, timescale: int, minimum: Fraction | None) -> dict[int, tuple[int, int]]:
    """Where segments of one grouping start in ``timeline``: time → (segment number,
    discontinuities before it)."""
    cutter = SegmentCutter(timescale, minimum or Fraction(0), every_fragment=minimum is None)
    cutter.update(timeline)
    return cutter.starts()


class PointRegistry:
    """The publishing points this process knows, loaded from the store on demand."""

    def __init__(
        self,
        points: PointStore,
        defaults: PointOptions,
        *,
        auto_create: bool,
        token: str = "",
        follower: bool = False,
    ) -> None:
        self.store = points
        self.follower = follower  # ingest disabled: points are followed as another node ingests them
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
        return PublishingPoint(
            pid, manifest.with_tracks(tracks), state, tracks, self.store, self.writes, follower=self.follower
        )

    def _check_writable(self) -> None:
        if self.follower:
            raise ReadOnly(
                "ingest is disabled on this node (ingest.enabled = false): it serves what another "
                "node ingests into its content root; publish and manage points there"
            )

    async def create(self, pid: PointId, options: PointOptions | None = None) -> PublishingPoint:
        self._check_writable()
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

    async def purge_archives(self) -> int:
        """One round of the archive purge over the points this process holds; a failure is
        logged and the other points go on."""
        removed = 0
        for point in list(self._points.values()):
            if point.deleted:
                continue
            options = point.options
            outputs = (options.hls_minimum_fragment_length, options.mpd_minimum_fragment_length)
            groupings = list({*outputs, None})
            if options.low_latency:
                groupings = list({*groupings, *(max(m, LL_SEGMENT) for m in outputs)})
            try:
                removed += await point.purge(groupings)
            except Exception as exc:
                event(log, "archive.purge_failed", logging.ERROR, channel=str(point.pid), exc=exc)
        return removed

    async def follow_points(self, *, full: bool) -> None:
        """One look at the store for every point this follower holds (see
        :meth:`PublishingPoint.follow`); a point deleted there is forgotten, a failure is logged
        and the next look tries again."""

        async def look(point: PublishingPoint) -> None:
            try:
                if not await point.follow(full=full):
                    self._points.pop(point.pid, None)
                    event(log, "point.gone", channel=str(point.pid))
            except Exception as exc:
                event(log, "point.follow_failed", logging.WARNING, channel=str(point.pid), exc=exc)

        await asyncio.gather(*(look(p) for p in list(self._points.values())))

    async def follow_forever(self, interval: float, full_interval: float) -> None:
        """Run :meth:`follow_points` every ``interval`` seconds, a full look every
        ``full_interval``, until cancelled."""
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            full = time.monotonic() - last_full >= full_interval
            await self.follow_points(full=full)
            if full:
                last_full = time.monotonic()

    async def purge_forever(self, interval: float) -> None:
        """Run :meth:`purge_archives` every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self.purge_archives()

    async def may_ingest(self, pid: PointId) -> bool:
        self._check_writable()
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
        point.touch()  # requests waiting on the old incarnation wake up and find it gone
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
        self._check_writable()
        point = await self.get(pid)
        if point is None:
            raise PointNotFound(f"publishing point {str(pid)!r} does not exist")
        if point.connections:
            raise PointBusy(
                f"publishing point {str(pid)!r} is receiving {point.connections} ingest connection(s); "
                "stop the encoder first"
            )
        point.deleted = True  # from here on, a request that finds this object refuses to write
        point.touch()  # and requests waiting on it wake up
        async with self._lock, self.writes.writing():
            await self.store.delete(pid)
            self._points.pop(pid, None)
        event(log, "point.deleted", channel=str(pid))
