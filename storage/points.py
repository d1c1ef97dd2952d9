"""Persistent state of publishing points on a :class:`~storage.store.Store`, under the keys of
:mod:`storage.keys`. Everything a process needs to resume a point is read back from here."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from conf.logs import event
from media.cmaf import read_fragment
from media.errors import MediaError
from media.model import Fragment, Track, TrackKind
from media.timeline import FLAG_KEYFRAME, PurgeMark, Timeline, TimelineEntry, is_utc
from storage.errors import StorageError
from storage.index import TrackIndex
from storage.keys import PointId, fragment_time
from storage.server_manifest import PointOptions, ServerManifest, parse_server_manifest, write_server_manifest
from storage.store import Store

log = logging.getLogger("headwater.storage")


class PointState(StrEnum):
    """Lifecycle of a publishing point (Unified Origin's states)."""

    IDLE = "idle"
    STARTED = "started"
    STOPPED = "stopped"


@dataclass(frozen=True)
class StateRecord:
    state: PointState
    since_ms: int


def track_to_json(track: Track) -> bytes:
    data: dict[str, Any] = {f.name: getattr(track, f.name) for f in fields(track) if f.name != "header"}
    data["kind"] = track.kind.value
    data["decoder_config"] = track.decoder_config.hex()
    return json.dumps(data, indent=1).encode()


def track_from_json(raw: bytes, header: bytes) -> Track:
    data = json.loads(raw)
    data["kind"] = TrackKind(data["kind"])
    data["decoder_config"] = bytes.fromhex(data["decoder_config"])
    return Track(header=header, **data)


class PointStore:
    """Reads and writes one store's publishing points."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._indexes: dict[tuple[PointId, str], TrackIndex] = {}

    def index(self, pid: PointId, track: str) -> TrackIndex:
        """The track's index parts as this process knows them."""
        key = (pid, track)
        if key not in self._indexes:
            self._indexes[key] = TrackIndex(self.store, pid.index_prefix(track))
        return self._indexes[key]

    # -- manifest and state -----------------------------------------------------------------

    async def exists(self, pid: PointId) -> bool:
        return await self.store.exists(pid.manifest_key)

    async def read_manifest(self, pid: PointId, defaults: PointOptions) -> ServerManifest | None:
        raw = await self.store.get_or_none(pid.manifest_key)
        return None if raw is None else parse_server_manifest(raw, defaults)

    async def write_manifest(self, pid: PointId, manifest: ServerManifest) -> None:
        await self.store.put(pid.manifest_key, write_server_manifest(manifest))

    async def read_state(self, pid: PointId) -> StateRecord:
        raw = await self.store.get_or_none(pid.state_key)
        if raw is None:
            return StateRecord(PointState.IDLE, 0)
        data = json.loads(raw)
        return StateRecord(PointState(data["state"]), int(data["since_ms"]))

    async def write_state(self, pid: PointId, record: StateRecord) -> None:
        body = {"state": record.state.value, "since_ms": record.since_ms}
        await self.store.put(pid.state_key, json.dumps(body).encode())

    async def delete_media(self, pid: PointId) -> int:
        """Delete the point's tracks, fragments and ingest headers; keep its manifest."""
        for key in [k for k in self._indexes if k[0] == pid]:
            del self._indexes[key]
        count = await self.store.delete_prefix(pid.tracks_prefix)
        return count + await self.store.delete_prefix(pid.ingest_prefix)

    async def delete(self, pid: PointId) -> int:
        """Delete what belongs to this point, and nothing of the points nested below its path."""
        count = await self.delete_media(pid)
        for key in (pid.state_key, pid.manifest_key):
            count += await self.store.delete(key)
        return count

    # -- ingest headers and tracks ----------------------------------------------------------

    async def read_ingest_header(self, pid: PointId, stream: str) -> bytes | None:
        return await self.store.get_or_none(pid.ingest_header_key(stream))

    async def write_ingest_header(self, pid: PointId, stream: str, header: bytes) -> None:
        await self.store.put(pid.ingest_header_key(stream), header)

    async def write_track(self, pid: PointId, track: Track) -> None:
        await self.store.put(pid.track_header_key(track.name), track.header)
        await self.store.put(pid.track_info_key(track.name), track_to_json(track))

    async def read_tracks(self, pid: PointId) -> list[Track]:
        tracks = []
        for name in await self.store.children(pid.tracks_prefix):
            raw = await self.store.get_or_none(pid.track_info_key(name))
            if raw is None:
                continue  # a track folder whose description was never written
            header = await self.store.get(pid.track_header_key(name))
            try:
                tracks.append(track_from_json(raw, header))
            except (ValueError, KeyError, TypeError) as exc:
                key = pid.track_info_key(name)
                raise StorageError(f"track description {key!r} is unreadable: {exc}") from exc
        return tracks

    # -- fragments and the timeline ---------------------------------------------------------

    async def write_fragment(
        self, pid: PointId, fragment: Fragment, wallclock_ms: int, flags: int
    ) -> TimelineEntry:
        """Store the fragment, then index it: once this returns, the fragment is durable."""
        key = pid.fragment_key(fragment.track, fragment.decode_time)
        await self.store.put(key, fragment.data)
        entry = TimelineEntry(
            fragment.decode_time, fragment.duration, len(fragment.data), wallclock_ms, flags
        )
        await self.index(pid, fragment.track).append(entry)
        return entry

    async def read_fragment(self, pid: PointId, track: str, decode_time: int) -> bytes:
        return await self.store.get(pid.fragment_key(track, decode_time))

    async def load_timeline(
        self, pid: PointId, track: str, timescale: int, *, repair: bool = True
    ) -> Timeline:
        """The track's index. With ``repair`` (the process that ingests the point), it is checked
        and repaired after a crash or a failed write: a partial last record is dropped, repeated
        records (an append that failed after its bytes landed, then a retry) are merged, fragments
        stored but never indexed are read and indexed, and an index that cannot be read at all is
        rebuilt from the fragment files; a purge that was interrupted is finished (its mark is
        written first). Without, it is read as it is (a process following another's ingest)."""
        index = self.index(pid, track)
        mark = await self.read_mark(pid, track)
        loaded = await index.load()
        current = [e for e in loaded.entries if e.decode_time >= mark.first_time]
        if not repair:
            return Timeline(list({e.decode_time: e for e in current}.values()), mark)  # sorts them
        by_time = {e.decode_time: e for e in current}
        rewrite = loaded.damaged or list(by_time.values()) != current
        if loaded.damaged:
            event(log, "index.repaired", logging.WARNING, key=index.prefix, reason="a part is damaged")
        files = {}
        purged = []
        for key in await self.store.list(pid.track_prefix(track)):
            time = fragment_time(key)
            if time is not None and time < mark.first_time:
                purged.append(key)
            elif time is not None:
                files[time] = key
        if purged:
            await self.store.delete_many(purged)
        if any(time not in files for time in by_time):
            # Records that name no fragment: the index is damaged (e.g. misaligned by a short write).
            event(log, "index.rebuilt", logging.WARNING, key=index.prefix, reason="records without fragments")
            by_time, rewrite = {}, True
        previous: TimelineEntry | None = None
        for time in sorted(files):
            if time not in by_time:
                by_time[time] = await self._entry_from_fragment(files[time], previous, timescale)
                rewrite = True
            previous = by_time[time]
        ordered = [by_time[t] for t in sorted(by_time)]
        if rewrite:
            await index.rewrite(ordered)
        else:
            await index.drop_before(mark.first_time)
        return Timeline(ordered, mark)

    async def follow_timeline(
        self, pid: PointId, track: str, timescale: int, timeline: Timeline, *, check_mark: bool
    ) -> Timeline | None:
        """What another process stored since ``timeline`` was read: ``timeline`` itself with the
        new records added, a new one (purged by that process, or its index rewritten), or
        ``None`` when nothing changed. One GET of the newest index part (and with ``check_mark``,
        one of the purge mark)."""
        index = self.index(pid, track)
        if check_mark:
            mark = await self.read_mark(pid, track)
            if mark != timeline.mark:
                index.forget_before(mark.first_time)
                kept = [e for e in timeline.entries if e.decode_time >= mark.first_time]
                timeline = Timeline(kept, mark)
                if not await self._add_followed(index, timeline):
                    return await self.load_timeline(pid, track, timescale, repair=False)
                return timeline
        before = len(timeline)
        if not await self._add_followed(index, timeline):
            return await self.load_timeline(pid, track, timescale, repair=False)
        return timeline if len(timeline) != before else None

    @staticmethod
    async def _add_followed(index: TrackIndex, timeline: Timeline) -> bool:
        new = await index.follow()
        if new is None:
            return False
        for entry in new:
            if entry.decode_time > (timeline.last.decode_time if timeline.last else -1):
                timeline.add(entry)
        return True

    async def write_index(self, pid: PointId, track: str, entries: list[TimelineEntry]) -> None:
        """Replace the track's index (a repair)."""
        await self.index(pid, track).rewrite(entries)

    async def _entry_from_fragment(
        self, key: str, previous: TimelineEntry | None, timescale: int
    ) -> TimelineEntry:
        data = await self.store.get(key)
        try:
            decode_time, samples, _ = read_fragment(data)
        except MediaError as exc:
            raise StorageError(f"stored fragment {key!r} is unreadable: {exc}") from exc
        flags = FLAG_KEYFRAME if samples and samples[0].is_sync else 0
        duration = sum(s.duration for s in samples)
        end_ms = (decode_time + duration) * 1000 // timescale
        # An unindexed fragment lost its wall-clock record: it continues its predecessor's run.
        if is_utc(decode_time, timescale):
            wallclock = end_ms
        else:
            wallclock = previous.anchor_ms(timescale) + end_ms if previous else 0
        return TimelineEntry(decode_time, duration, len(data), wallclock, flags)

    # -- archive purge ----------------------------------------------------------------------

    async def read_mark(self, pid: PointId, track: str) -> PurgeMark:
        raw = await self.store.get_or_none(pid.purge_key(track))
        if raw is None:
            return PurgeMark()
        try:
            data = json.loads(raw)
            groupings = tuple((str(k), int(n), int(d)) for k, (n, d) in data["groupings"].items())
            return PurgeMark(int(data["first_time"]), int(data["fragments"]), groupings)
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"purge mark {pid.purge_key(track)!r} is unreadable: {exc}") from exc

    async def purge(self, pid: PointId, track: str, mark: PurgeMark) -> None:
        """Record the purge (its mark first, so a crash part-way is finished on load), then drop
        the index parts holding only purged records. The fragment files are deleted by
        :meth:`delete_fragments`."""
        body = {
            "first_time": mark.first_time,
            "fragments": mark.fragments,
            "groupings": {key: [number, discontinuities] for key, number, discontinuities in mark.groupings},
        }
        await self.store.put(pid.purge_key(track), json.dumps(body).encode())
        await self.index(pid, track).drop_before(mark.first_time)

    async def delete_fragments(self, pid: PointId, track: str, times: list[int]) -> int:
        return await self.store.delete_many([pid.fragment_key(track, t) for t in times])
