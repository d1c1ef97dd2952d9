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

from media.model import Sample, Track, TrackKind
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


class SegmentCutter:
    """Cuts one track's growing timeline into segments, incrementally: each call to :meth:`update`
    looks only at the fragments stored since the last one, so a manifest's cost does not grow with
    the archive.

    A segment is whole fragments, at least ``minimum`` seconds, starting on a keyframe fragment; a
    gap always starts a new one. ``every_fragment`` makes each stored fragment its own segment
    (Smooth chunks). A closed segment lasts until the next one starts, which absorbs encoders whose
    rounded ``trun`` durations leave sub-sample overlaps or gaps.
    """

    def __init__(self, timescale: int, minimum: Fraction, *, every_fragment: bool = False) -> None:
        self.timescale = timescale
        self.floor = int(minimum * timescale)
        self.every_fragment = every_fragment
        self._reset()

    def _reset(self) -> None:
        self.closed: list[Segment] = []
        self.times: list[int] = []
        self.discontinuities: list[int] = []  # segments 1..i that follow a gap
        self.longest = 0
        self._group: list[TimelineEntry] = []
        self._consumed = 0
        self._all_keyframes = True

    def update(self, entries: Sequence[TimelineEntry]) -> None:
        if len(entries) < self._consumed:  # the timeline was replaced: start again
            self._reset()
        for entry in entries[self._consumed :]:
            self._all_keyframes = self._all_keyframes and entry.keyframe
            if self._group and (
                self.every_fragment
                or entry.discontinuity
                or (entry.keyframe and self._group[-1].end - self._group[0].decode_time >= self.floor)
            ):
                self._close(None if entry.discontinuity else entry.decode_time)
            self._group.append(entry)
        self._consumed = len(entries)

    def _segment(self, end: int) -> Segment:
        first = self._group[0]
        number = len(self.closed)
        return Segment(
            number,
            first.decode_time,
            end - first.decode_time,
            tuple(self._group),
            first.discontinuity and number > 0,
        )

    def _close(self, next_time: int | None) -> None:
        segment = self._segment(next_time if next_time is not None else self._group[-1].end)
        self._append(self.closed, self.times, self.discontinuities, segment)
        self.longest = max(self.longest, segment.duration)
        self._group = []

    @staticmethod
    def _append(segments: list[Segment], times: list[int], counts: list[int], segment: Segment) -> None:
        segments.append(segment)
        times.append(segment.time)
        counts.append((counts[-1] if counts else 0) + segment.discontinuity)

    def complete(self, live: bool) -> bool:
        """Whether the open group may be published: nothing more can join it (the stream ended,
        each fragment is a segment), or every fragment so far began with a keyframe (a fragment is
        a GOP) and it is long enough. Otherwise a later fragment could still extend it, and a
        published segment must never change."""
        if not self._group:
            return False
        duration = self._group[-1].end - self._group[0].decode_time
        return not live or self.every_fragment or (self._all_keyframes and duration >= self.floor)

    def view(
        self, track: Track, live: bool, window_seconds: int | None, frame_rate: Fraction | None
    ) -> TrackView:
        segments, times, counts, longest = self.closed, self.times, self.discontinuities, self.longest
        if self.complete(live):
            pending = self._segment(self._group[-1].end)
            segments, times, counts = [*segments, pending], [*times, pending.time], list(counts)
            counts.append((counts[-1] if counts else 0) + pending.discontinuity)
            longest = max(longest, pending.duration)
        first = 0
        if window_seconds is not None and segments:
            # Never less than three target durations (RFC 8216bis §6.2.2).
            span = max(
                window_seconds * track.timescale,
                3 * _whole_seconds(longest, track.timescale) * track.timescale,
            )
            horizon = segments[-1].end - span
            first = min(bisect.bisect_right(times, horizon), len(segments) - 1)
            while first > 0 and segments[first - 1].end > horizon:
                first -= 1
        return TrackView(track, segments, first, frame_rate, times, counts, longest)


def _whole_seconds(ticks: int, timescale: int) -> int:
    return max(1, -(-ticks // timescale))


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive segments of equal duration without a gap between them: what DASH ``S`` and Smooth
    ``c`` elements describe. ``time`` is None when the run follows its predecessor directly."""

    time: int | None
    duration: int
    count: int


def runs(segments: Sequence[Segment]) -> list[Run]:
    out: list[Run] = []
    previous: Segment | None = None
    for segment in segments:
        contiguous = previous is not None and segment.time == previous.end
        if out and contiguous and previous is not None and segment.duration == previous.duration:
            last = out[-1]
            out[-1] = Run(last.time, last.duration, last.count + 1)
        else:
            out.append(Run(None if contiguous else segment.time, segment.duration, 1))
        previous = segment
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
    times: list[int] | None = None  # segment start times, for lookups
    discontinuities: list[int] | None = None  # cumulative count of segments after a gap
    longest: int = 0

    @property
    def window(self) -> list[Segment]:
        return self.segments[self.first :]

    @property
    def target_duration(self) -> int:
        """EXT-X-TARGETDURATION: whole seconds covering the longest segment ever cut, so it never
        shrinks while the stream runs (RFC 8216bis §4.4.3.1)."""
        longest = self.longest or max((s.duration for s in self.segments), default=0)
        return _whole_seconds(longest, self.track.timescale)

    @property
    def discontinuity_sequence(self) -> int:
        """Discontinuities that have left the window (EXT-X-DISCONTINUITY-SEQUENCE)."""
        if self.discontinuities is not None:
            return self.discontinuities[self.first] if self.segments else 0
        return sum(1 for s in self.segments[1 : self.first + 1] if s.discontinuity)

    def find(self, time: int) -> tuple[Lookup, Segment | None]:
        """The segment named by ``time``, or why there is none."""
        times = self.times if self.times is not None else [s.time for s in self.segments]
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


# Frame rates encoders use; a measured rate within 1% of one is that rate (ISO/IEC 23009-1
# §5.3.12.2 frameRate, RFC 8216bis §4.4.6.2 FRAME-RATE).
STANDARD_FRAME_RATES = tuple(
    Fraction(r) for r in ("24000/1001", "24", "25", "30000/1001", "30", "48", "50", "60000/1001", "60")
)


def frame_rate(samples: Sequence[Sample], timescale: int) -> Fraction | None:
    """Frames per second of a video fragment, from the spread of its presentation times (decode
    times can be bunched: muxers clamp negative ones), snapped to a standard rate within 1%, so
    millisecond-rounded RTMP timestamps still give 30000/1001. A lone sample gives its duration's
    rate (an all-intra stream cut at every frame)."""
    if len(samples) < 2:
        return Fraction(timescale, samples[0].duration) if samples and samples[0].duration else None
    presentation = []
    time = 0
    for sample in samples:
        presentation.append(time + sample.composition_offset)
        time += sample.duration
    span = max(presentation) - min(presentation)
    if span <= 0:
        return None
    measured = Fraction((len(samples) - 1) * timescale, span)
    nearest = min(STANDARD_FRAME_RATES, key=lambda r: abs(r - measured))
    return nearest if abs(nearest - measured) <= nearest / 100 else measured.limit_denominator(1001)


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
