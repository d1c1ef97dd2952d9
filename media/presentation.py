"""What a manifest presents, computed per request from the timelines: segments cut from stored
fragments, the DVR window, and the wall-clock anchor. The renderers (:mod:`media.hls`,
:mod:`media.dash`, :mod:`media.smooth`) only format what this module decides; segment requests are
resolved here too, so manifests and segments always agree.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction

from media.model import Track, TrackKind
from media.timeline import TimelineEntry


@dataclass(frozen=True, slots=True)
class Segment:
    """Whole fragments played as one segment. ``number`` counts segments from the first stored one
    (HLS media sequence number); ``time`` (the first fragment's decode time) names it in URLs."""

    number: int
    time: int
    duration: int
    fragments: tuple[TimelineEntry, ...]
    discontinuity: bool

    @property
    def end(self) -> int:
        return self.time + self.duration

    @property
    def size(self) -> int:
        return sum(f.size for f in self.fragments)


def cut_segments(entries: Sequence[TimelineEntry], timescale: int, minimum: Fraction) -> list[Segment]:
    """Group consecutive fragments into segments of at least ``minimum`` seconds (0: one fragment per
    segment). A segment starts on a keyframe fragment, and a gap always starts a new segment."""
    floor = int(minimum * timescale)
    out: list[Segment] = []
    group: list[TimelineEntry] = []

    def close() -> None:
        first = group[0]
        duration = group[-1].end - first.decode_time
        out.append(Segment(len(out), first.decode_time, duration, tuple(group), first.discontinuity))

    for entry in entries:
        if group and (
            entry.discontinuity or (entry.keyframe and group[-1].end - group[0].decode_time >= floor)
        ):
            close()
            group = []
        group.append(entry)
    if group:
        close()
    return out


class Lookup(Enum):
    """Where a requested time lies relative to what a manifest may present (PROTOCOLS.md egress
    status table)."""

    FOUND = "found"
    BEFORE_WINDOW = "before the DVR window"
    IN_GAP = "inside a gap"
    AFTER_EDGE = "after the live edge"


@dataclass(frozen=True, slots=True)
class TrackView:
    """One track as a manifest presents it: all its segments, and the window of them shown."""

    track: Track
    segments: list[Segment]
    first: int  # index into segments of the first one in the window
    frame_rate: Fraction | None = None  # video: timescale / sample duration, when known

    @property
    def window(self) -> list[Segment]:
        return self.segments[self.first :]

    @property
    def target_duration(self) -> int:
        """EXT-X-TARGETDURATION: whole seconds covering the longest segment ever cut, so it never
        shrinks while the stream runs (RFC 8216bis §4.4.3.1)."""
        longest = max((s.duration for s in self.segments), default=0)
        return max(1, -(-longest // self.track.timescale))

    @property
    def discontinuity_sequence(self) -> int:
        """Discontinuities that have left the window (EXT-X-DISCONTINUITY-SEQUENCE)."""
        return sum(1 for s in self.segments[1 : self.first + 1] if s.discontinuity)

    def find(self, time: int) -> tuple[Lookup, Segment | None]:
        """The segment named by ``time``, or why there is none."""
        times = [s.time for s in self.segments]
        i = bisect.bisect_left(times, time)
        if i < len(times) and times[i] == time:
            if i < self.first:
                return Lookup.BEFORE_WINDOW, None
            return Lookup.FOUND, self.segments[i]
        if not self.segments or time >= self.segments[-1].end:
            return Lookup.AFTER_EDGE, None
        if time < self.segments[self.first].time:
            return Lookup.BEFORE_WINDOW, None
        return Lookup.IN_GAP, None

    def bandwidth(self) -> tuple[int, int]:
        """Peak and average bits per second over the window, from the stored sizes."""
        window = self.window or self.segments
        if not window:
            return self.track.bitrate, self.track.bitrate
        scale = self.track.timescale
        peak = max(s.size * 8 * scale // max(s.duration, 1) for s in window)
        total = sum(s.duration for s in window)
        average = sum(s.size for s in window) * 8 * scale // max(total, 1)
        return max(peak, self.track.bitrate), max(average, 1)


def make_view(
    track: Track,
    entries: Sequence[TimelineEntry],
    minimum: Fraction,
    window_seconds: int | None,
    frame_rate: Fraction | None = None,
) -> TrackView:
    """``window_seconds`` None presents everything (a stream that has ended); otherwise the
    segments ending within that many seconds of the live edge."""
    segments = cut_segments(entries, track.timescale, minimum)
    first = 0
    if window_seconds is not None and segments:
        horizon = segments[-1].end - window_seconds * track.timescale
        ends = [s.end for s in segments]
        first = min(bisect.bisect_right(ends, horizon), len(segments) - 1)
    return TrackView(track, segments, first, frame_rate)


@dataclass(frozen=True, slots=True)
class Presentation:
    """Everything a manifest of one publishing point shows."""

    point: str
    live: bool
    views: list[TrackView]
    dvr_window: int  # seconds
    anchor_ms: int  # UTC milliseconds at media time zero
    updated_ms: int  # UTC milliseconds of the newest fragment

    def of_kind(self, kind: TrackKind) -> list[TrackView]:
        return [v for v in self.views if v.track.kind is kind and v.segments]

    def view(self, name: str) -> TrackView | None:
        return next((v for v in self.views if v.track.name == name), None)

    def utc_ms(self, view: TrackView, time: int) -> int:
        return self.anchor_ms + time * 1000 // view.track.timescale


def wallclock_anchor(views: Sequence[tuple[Track, Sequence[TimelineEntry]]]) -> int:
    """UTC milliseconds at media time zero, from the ingest clock: a fragment is recorded when its
    last byte arrives, which for a live encoder is about when its end was captured. The earliest
    estimate over the tracks wins, so every track shares one anchor and stays in sync."""
    anchors = [
        entries[0].wallclock_ms - (entries[0].end * 1000 // track.timescale)
        for track, entries in views
        if entries and entries[0].wallclock_ms
    ]
    return min(anchors, default=0)
