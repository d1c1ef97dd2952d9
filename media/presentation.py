"""What a manifest presents, computed per request from the timelines: segments cut from stored
fragments, the DVR window, and the wall-clock anchor. The renderers (:mod:`media.hls`,
:mod:`media.dash`, :mod:`media.smooth`) only format what this module decides; segment requests are
resolved here too, so manifests and segments always agree.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from fractions import Fraction
from typing import overload

from media.model import Sample, Track, TrackKind
from media.timeline import PurgeMark, Timeline, TimelineEntry
from media.timerange import Control, ControlError, Instant, iso_utc


@dataclass(frozen=True, slots=True)
class Segment:
    """Whole fragments played as one segment. ``number`` counts segments from the first stored one
    (HLS media sequence number); ``time`` (the first fragment's decode time) names it in URLs."""

    number: int
    time: int
    duration: int
    fragments: tuple[TimelineEntry, ...]
    discontinuity: bool
    size: int = 0  # bytes of its fragments

    @property
    def end(self) -> int:
        return self.time + self.duration

    def rate(self, timescale: int) -> int:
        """Bits per second."""
        return self.size * 8 * timescale // max(self.duration, 1)


class SegmentCutter:
    """Cuts one track's growing timeline into segments, incrementally: each call to :meth:`update`
    looks only at the fragments stored since the last one, so a manifest's cost does not grow with
    the archive.

    A segment is whole fragments, at least ``minimum`` seconds, starting on a keyframe fragment; a
    gap always starts a new one. ``every_fragment`` makes each stored fragment its own segment
    (Smooth chunks). A closed segment lasts until the next one starts, which absorbs encoders whose
    rounded ``trun`` durations leave sub-sample overlaps or gaps. Grouping is greedy from the first
    stored fragment; the archive purge only removes whole segments of every grouping, so cutting
    again from the new first fragment gives the same segments, numbered on from the purge mark.
    """

    def __init__(
        self, timescale: int, minimum: Fraction, *, every_fragment: bool = False, parts: bool = False
    ) -> None:
        self.timescale = timescale
        self.floor = int(minimum * timescale)
        self.every_fragment = every_fragment
        self.parts = parts  # fragments are low-latency parts: a live group ends when the next begins
        self.key = grouping_key(None if every_fragment else minimum)
        self._reset(PurgeMark())

    def _reset(self, mark: PurgeMark) -> None:
        self.mark = mark
        self.base, discontinuities = mark.base(self.key)
        self.closed: list[Segment] = []
        self.times: list[int] = []
        self.discontinuities: list[int] = []  # cumulative count of segments following a gap
        self._discontinuity_base = discontinuities
        self.longest = 0
        self.peak = 0  # the highest segment bit rate of the archive
        self._bytes = [0]  # running totals over the closed segments, for O(1) window averages
        self._ticks = [0]
        self._group: list[TimelineEntry] = []
        self._consumed = 0
        self._all_keyframes = True

    def update(self, timeline: Timeline) -> None:
        entries = timeline.entries
        if timeline.mark != self.mark or len(entries) < self._consumed:  # purged or replaced
            self._reset(timeline.mark)
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
        number = self.base + len(self.closed)
        return Segment(
            number,
            first.decode_time,
            end - first.decode_time,
            tuple(self._group),
            first.discontinuity and number > 0,
            sum(f.size for f in self._group),
        )

    def _close(self, next_time: int | None) -> None:
        segment = self._segment(next_time if next_time is not None else self._group[-1].end)
        self.closed.append(segment)
        self.times.append(segment.time)
        self._bytes.append(self._bytes[-1] + segment.size)
        self._ticks.append(self._ticks[-1] + segment.duration)
        self.peak = max(self.peak, segment.rate(self.timescale))
        previous = self.discontinuities[-1] if self.discontinuities else self._discontinuity_base
        self.discontinuities.append(previous + segment.discontinuity)
        self.longest = max(self.longest, segment.duration)
        self._group = []

    def complete(self, live: bool) -> bool:
        """Whether the open group may be published: nothing more can join it (the stream ended,
        each fragment is a segment), or every fragment so far began with a keyframe (a fragment is
        a GOP) and it is long enough. Otherwise a later fragment could still extend it, and a
        published segment must never change. Parts (low latency) are never known to be the last of
        their segment while the stream goes on: their group is the segment in progress."""
        if not self._group:
            return False
        duration = self._group[-1].end - self._group[0].decode_time
        if not live or self.every_fragment:
            return True
        return not self.parts and self._all_keyframes and duration >= self.floor

    def starts(self) -> dict[int, tuple[int, int]]:
        """Where segments start (the open group's included): time → (segment number,
        discontinuities before it). A purge cuts at one of these."""
        out = {}
        before = self._discontinuity_base
        for segment, cumulative in zip(self.closed, self.discontinuities, strict=True):
            out[segment.time] = (segment.number, before)
            before = cumulative
        if self._group:
            out[self._group[0].decode_time] = (self.base + len(self.closed), before)
        return out

    def _cumulative(self, segment: Segment) -> int:
        """Discontinuities up to and including ``segment`` (EXT-X-DISCONTINUITY-SEQUENCE of a
        playlist starting there: its own break is not written, RFC 8216bis §4.4.3.3)."""
        index = segment.number - self.base
        if index < len(self.discontinuities):
            return self.discontinuities[index]
        previous = self.discontinuities[-1] if self.discontinuities else self._discontinuity_base
        return previous + segment.discontinuity

    def segments(self, live: bool) -> Sequence[Segment]:
        """Every segment that may be published, the open group included when complete (no copy)."""
        return _Segments(self.closed, self._segment(self._group[-1].end) if self.complete(live) else None)

    def view(self, track: Track, live: bool, bounds: Bounds, frame_rate: Fraction | None) -> TrackView:
        """The segments ``bounds`` select (with the open group when it may be published), in
        O(log n + window)."""
        every = self.segments(live)
        longest = max(self.longest, every[-1].duration if every else 0)
        lo, hi = 0, len(every)
        if bounds.stop is not None:
            hi = bisect.bisect_left(every, bounds.stop, key=_start)
        if bounds.start is not None:
            lo = _first_ending_after(every, bounds.start, hi)
        if bounds.window is not None and hi > lo:
            # Never less than three target durations (RFC 8216bis §6.2.2).
            span = max(bounds.window, 3 * _whole_seconds(longest, track.timescale) * track.timescale)
            lo = max(lo, _first_ending_after(every, every[hi - 1].end - span, hi))
        count = len(self.closed)
        window = self.closed[lo : min(hi, count)] + ([every[count]] if hi > count else [])
        # The segment in progress at the live edge, as its parts so far (LL-HLS, LL-DASH).
        parts = tuple(self._group) if live and bounds.stop is None and len(every) == count else ()
        if not window:
            return TrackView(track, [], frame_rate, longest, parts=parts, parts_number=self.base + count)
        # Average over the window from running totals; the peak over the whole archive, which
        # bounds every window's and stays put as the window slides (RFC 8216bis §4.4.6.2).
        first, last = window[0].number - self.base, min(hi, count)
        size = self._bytes[last] - self._bytes[first]
        ticks = self._ticks[last] - self._ticks[first]
        peak = self.peak
        if hi > count:
            size, ticks = size + window[-1].size, ticks + window[-1].duration
            peak = max(peak, window[-1].rate(self.timescale))
        average = size * 8 * self.timescale // max(ticks, 1)
        rates = (max(peak, track.bitrate), max(average, 1))
        breaks = self._cumulative(window[0])
        # The run's first stored segment: where a DASH Period for it starts, whatever the window.
        first = bisect.bisect_left(self.discontinuities, breaks, hi=min(lo, count))
        run_start = self.closed[first] if first < min(lo, count) else window[0]
        return TrackView(
            track,
            window,
            frame_rate,
            longest,
            breaks,
            rates=rates,
            run_start=run_start,
            parts=parts,
            parts_number=self.base + count,
        )


class _Segments(Sequence[Segment]):
    """The closed segments and the open one as one sequence, without copying the closed list."""

    def __init__(self, closed: list[Segment], pending: Segment | None) -> None:
        self._closed = closed
        self._count = len(closed)
        self._pending = pending

    def __len__(self) -> int:
        return self._count + (self._pending is not None)

    @overload
    def __getitem__(self, index: int) -> Segment: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Segment]: ...
    def __getitem__(self, index: int | slice) -> Segment | Sequence[Segment]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if index < self._count:
            return self._closed[index]
        if index == self._count and self._pending is not None:
            return self._pending
        raise IndexError(index)


def _start(segment: Segment) -> int:
    return segment.time


def _first_ending_after(segments: Sequence[Segment], time: int, hi: int) -> int:
    """Index of the first of ``segments[:hi]`` that ends after ``time``."""
    i = bisect.bisect_right(segments, time, hi=hi, key=_start)
    while i > 0 and segments[i - 1].end > time:
        i -= 1
    return i


# Low-latency points: audio and text, every part of which is independent, are grouped into segments
# of at least this many seconds (video segments start at keyframes, a GOP each by default).
LL_SEGMENT = Fraction(1)


def track_minimum(minimum: Fraction | None, track: Track, low_latency: bool) -> Fraction | None:
    """The minimum segment length ``track`` is cut with for an output asking ``minimum``: at least
    :data:`LL_SEGMENT` for a low-latency point's tracks without keyframes, whose parts are the
    stored fragments, so that a segment is not one part."""
    if low_latency and minimum is not None and track.kind is not TrackKind.VIDEO:
        return max(minimum, LL_SEGMENT)
    return minimum


def grouping_key(minimum: Fraction | None) -> str:
    """Names a way of cutting segments: ``every`` fragment, or the minimum length in seconds."""
    return "every" if minimum is None else str(minimum)


def _whole_seconds(ticks: int, timescale: int) -> int:
    return max(1, -(-ticks // timescale))


@dataclass(frozen=True, slots=True)
class Bounds:
    """What a view selects, in the track's timescale: the segments ending after ``start`` and
    starting before ``stop``; of those, the ones within ``window`` ticks of the newest (sliding)."""

    start: int | None = None
    stop: int | None = None
    window: int | None = None


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
    """One track as a manifest presents it: the segments of its window, in order."""

    track: Track
    window: list[Segment]
    frame_rate: Fraction | None = None  # video: timescale / sample duration, when known
    longest: int = 0  # the longest segment ever cut (EXT-X-TARGETDURATION)
    discontinuity_sequence: int = 0  # discontinuities that have left the window (§4.4.3.3)
    nominal_bitrate: int = 0  # measured once per track where the encoder declared none (Smooth URLs)
    rates: tuple[int, int] | None = None  # (peak, average) bits per second, as the cutter counted them
    run_start: Segment | None = None  # the first stored segment of the run holding window[0]
    parts: tuple[TimelineEntry, ...] = ()  # live: the stored parts of the segment in progress
    parts_number: int = 0  # the number that segment will have

    def edge(self) -> tuple[int, int] | None:
        """(media sequence number, part index) of the newest part: of the segment in progress,
        else the last part of the last segment (LL-HLS EXT-X-RENDITION-REPORT LAST-MSN and
        LAST-PART, RFC 8216bis §4.4.5.4). None when nothing is stored."""
        if self.parts:
            return self.parts_number, len(self.parts) - 1
        if self.window:
            return self.window[-1].number, len(self.window[-1].fragments) - 1
        return None

    @property
    def next_part(self) -> int | None:
        """Decode time where the next part will start (EXT-X-PRELOAD-HINT)."""
        if self.parts:
            return self.parts[-1].end
        return self.window[-1].fragments[-1].end if self.window else None

    @property
    def target_duration(self) -> int:
        """EXT-X-TARGETDURATION: whole seconds covering the longest segment ever cut, so it never
        shrinks while the stream runs (RFC 8216bis §4.4.3.1)."""
        longest = self.longest or max((s.duration for s in self.window), default=0)
        return _whole_seconds(longest, self.track.timescale)

    def find(self, time: int) -> tuple[Lookup, Segment | None]:
        """The segment of the window named by ``time``, or why there is none."""
        window = self.window
        i = bisect.bisect_left(window, time, key=_start)
        if i < len(window) and window[i].time == time:
            return Lookup.FOUND, window[i]
        if not window or time >= window[-1].end:
            return Lookup.AFTER_EDGE, None
        if time < window[0].time:
            return Lookup.BEFORE_WINDOW, None
        return Lookup.IN_GAP, None

    def after(self, segment: Segment, count: int) -> list[Segment]:
        """Up to ``count`` segments of the window following ``segment`` (Smooth look-ahead)."""
        i = bisect.bisect_right(self.window, segment.time, key=_start)
        return self.window[i : i + count]

    def bandwidth(self) -> tuple[int, int]:
        """Peak and average bits per second, from the stored sizes: the average over the window,
        the peak over the archive (at least what the encoder declared)."""
        if self.rates is not None:
            return self.rates
        window = self.window
        if not window:
            return self.track.bitrate, self.track.bitrate
        scale = self.track.timescale
        peak = max(s.rate(scale) for s in window)
        average = sum(s.size for s in window) * 8 * scale // max(sum(s.duration for s in window), 1)
        return max(peak, self.track.bitrate), max(average, 1)

    def utc_ms(self, segment: Segment) -> int:
        """UTC milliseconds of a segment's start, on its first fragment's wall clock."""
        return segment.fragments[0].utc_ms(segment.time, self.track.timescale)

    def runs(self) -> list[tuple[int, Segment, list[Segment]]]:
        """The window cut at its discontinuities: per encoder run, the breaks before it in the
        archive (which name the run across updates and purges), its first stored segment, and its
        segments in the window."""
        out: list[tuple[int, Segment, list[Segment]]] = []
        breaks = self.discontinuity_sequence
        for segment in self.window:
            if not out:
                out.append((breaks, self.run_start or segment, [segment]))
            elif segment.discontinuity:
                breaks += 1
                out.append((breaks, segment, [segment]))
            else:
                out[-1][2].append(segment)
        return out


@dataclass(frozen=True, slots=True)
class Period:
    """One encoder run in the window, as a DASH Period presents it: players move on to a new Period
    where a gap inside one stalls them (ISO/IEC 23009-1 §5.3.2, DASH-IF IOP §4.5 "multi-period").
    ``number`` counts the breaks before the run in the archive and names it across MPD updates;
    ``start`` is the media time in seconds where every one of its tracks has begun (from their
    first stored segments of the run while live, so it stays put as the window slides; from the
    window's otherwise) and ``anchor_ms`` the UTC at media time zero on its clock (the reference
    track's). ``windows``: each track's segments in it."""

    number: int
    start: Fraction
    anchor_ms: int
    windows: dict[str, list[Segment]]
    end: Fraction = Fraction(0)  # media seconds where its last segment of any track ends

    @property
    def utc(self) -> Fraction:
        """UTC seconds of its start."""
        return Fraction(self.anchor_ms, 1000) + self.start


@dataclass(frozen=True, slots=True)
class Presentation:
    """Everything a manifest of one publishing point shows. ``live``: the window still grows;
    ``shown``: seconds the live window spans (DASH timeShiftBufferDepth, Smooth DVRWindowLength);
    ``start_over``: a live presentation that keeps its start (``vbegin`` without ``vend``)."""

    point: str
    live: bool
    views: list[TrackView]
    dvr_window: int  # seconds
    updated_ms: int  # UTC milliseconds of the newest fragment's end
    start_over: bool = False
    begin: Fraction | None = None  # a sub-clip's vbegin and vend in media seconds
    finish: Fraction | None = None
    shift: int = 0  # seconds the live edge is moved back (time_shift)

    def of_kind(self, kind: TrackKind) -> list[TrackView]:
        return [v for v in self.views if v.track.kind is kind and v.window]

    def view(self, name: str) -> TrackView | None:
        return next((v for v in self.views if v.track.name == name), None)

    def periods(self) -> list[Period]:
        """The window as one Period per encoder run, cut where the reference track (the first
        video track, else the first) has a discontinuity. Each other track's runs join the Period
        starting at most half a segment after theirs, so an audio run a frame ahead of the video's
        joins it and a gap inside a run stays in its Period.

        A Period starts where the latest of its tracks does, so that every Representation has a
        segment at its start (DASH-IF timing model: a Representation covers its Period, "Necessary
        segment references"); a track that began earlier, typically by a few milliseconds,
        overflows the start, and players leave those samples out ("Alignment of periods and
        representations"). A track beginning after the Period's start would leave a gap there:
        dash.js finds no segment at the start and seeks to the next one, which moves the playback
        position out of the previous Period when it preloads this one while its first seek is
        still pending (StreamProcessor ``_noMediaRequestGenerated``).

        While live, a new run's Period is published once every audio and video track has joined
        it, and a track's run beginning after the reference track's last segment waits for the
        reference's run rather than join the Period before: the tracks' first segments of a run
        are stored some milliseconds apart, and dash.js builds a Period's streams from the first
        MPD that lists it (Stream ``startPreloading``; ``updateData`` adds none), so a Period
        listed before its audio plays without it for good, its buffered range never resuming
        after the gap. A run that has gone on for ``patience`` without the others is published
        anyway (a track gone for good)."""
        shown = [v for v in self.views if v.window]
        if not shown:
            return []
        reference = next((v for v in shown if v.track.kind is TrackKind.VIDEO), shown[0])
        scale = reference.track.timescale
        own = reference.runs()
        anchors, starts = [], []
        for _, first, segments in own:
            anchors.append(first.fragments[0].anchor_ms(scale))
            starts.append(
                Fraction(anchors[-1], 1000) + Fraction((first if self.live else segments[0]).time, scale)
            )
        tolerance = Fraction(reference.target_duration, 2)
        patience = 2 * max(v.target_duration for v in shown)
        last = reference.window[-1]
        edge = Fraction(reference.utc_ms(last), 1000) + Fraction(last.duration, scale)  # UTC
        members: list[list[tuple[TrackView, Segment, list[Segment]]]] = [[] for _ in starts]
        for view in shown:
            for _, first, segments in view.runs():
                utc = Fraction(view.utc_ms(segments[0]), 1000)
                if (
                    self.live
                    and view is not reference
                    and utc > edge + tolerance
                    and _lasted(view, first, segments) < patience
                ):
                    continue  # the next run, ahead of the reference's: its Period is not out yet
                members[max(0, bisect.bisect_right(starts, utc + tolerance) - 1)].append(
                    (view, first, segments)
                )
        if self.live:
            joined = {view.track.name for view, _, _ in members[-1]}
            expected = {
                v.track.name for v in self.views if v.track.kind in (TrackKind.VIDEO, TrackKind.AUDIO)
            }
            _, first, segments = own[-1]
            if not expected <= joined and _lasted(reference, first, segments) < patience:
                own, anchors, members = own[:-1], anchors[:-1], members[:-1]  # not out yet
        periods = []
        for (breaks, _, _), anchor, runs in zip(own, anchors, members, strict=True):
            windows: dict[str, list[Segment]] = {}
            begins: dict[str, Fraction] = {}  # each track's first run in the Period begins
            ends = []
            for view, first, segments in runs:
                windows.setdefault(view.track.name, []).extend(segments)
                scale = view.track.timescale
                begins.setdefault(
                    view.track.name, Fraction((first if self.live else segments[0]).time, scale)
                )
                ends.append(Fraction(segments[-1].end, scale))
            periods.append(Period(breaks, max(begins.values()), anchor, windows, max(ends)))
        return periods


def announced(view: TrackView) -> Segment | None:
    """The segment in progress as low-latency DASH announces it with a SegmentTimeline (DASH-IF
    low-latency modes: a segment is listed once its first chunk is out): its parts so far,
    lasting as long as the segment before it, so a player can ask for it then
    (``availabilityTimeOffset``) and read the rest as it comes. None without a stored part or a
    segment to take the duration from, or after a break."""
    if not view.parts or not view.window or view.parts[0].discontinuity:
        return None
    last = view.window[-1]
    if view.parts[0].decode_time != last.end:
        return None
    size = sum(f.size for f in view.parts)
    return Segment(view.parts_number, last.end, last.duration, view.parts, False, size)


def with_edge(p: Presentation) -> Presentation:
    """``p`` with each live track's segment in progress :func:`announced` at the end of its window."""
    if not p.live:
        return p
    views = []
    for view in p.views:
        edge = announced(view)
        views.append(replace(view, window=[*view.window, edge]) if edge is not None else view)
    return replace(p, views=views)


def _lasted(view: TrackView, first: Segment, segments: list[Segment]) -> Fraction:
    """Seconds from the start of a run (``first``, its first stored segment) to the end of its
    last segment in the window."""
    return Fraction(segments[-1].end - first.time, view.track.timescale)


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


@dataclass(frozen=True, slots=True)
class Source:
    """One track of a point as :func:`present` reads it: its cutter, already updated."""

    track: Track
    cutter: SegmentCutter
    frame_rate: Fraction | None = None
    nominal_bitrate: int = 0


def present(
    point: str, sources: Sequence[Source], *, live: bool, dvr_window: int, control: Control
) -> Presentation:
    """The presentation a request asks for (:mod:`media.timerange`): the live window (narrowed by
    ``dvr_window_length``, moved back by ``time_shift``), a sub-clip, or, once the point has
    stopped, the whole archive as VOD. Raises :class:`ControlError` for times outside the archive.
    Costs O(tracks * (log n + window)), whatever the archive's length."""
    stored = [(s, s.cutter.segments(live)) for s in sources]
    stored = [(s, segments) for s, segments in stored if segments]
    if not stored:
        return Presentation(point, live, [TrackView(s.track, []) for s in sources], dvr_window, 0)
    start = min(Fraction(seg[0].time, s.track.timescale) for s, seg in stored)
    edge = min(Fraction(seg[-1].end, s.track.timescale) for s, seg in stored)
    end = max(Fraction(seg[-1].end, s.track.timescale) for s, seg in stored)
    reference = _reference(stored)
    begin = _seconds_of(control.vbegin, reference)
    finish = _seconds_of(control.vend, reference)
    if begin is not None and finish is not None and finish <= begin:
        raise ControlError("vend", f"{control.vend} is not after vbegin {control.vbegin}")
    if begin is not None and begin >= end:
        raise ControlError(
            "vbegin", f"{control.vbegin} is at or after the end of the archive ({_at(end, reference)})"
        )
    if finish is not None and finish <= start:
        raise ControlError(
            "vend", f"{control.vend} is at or before the start of the archive ({_at(start, reference)})"
        )
    window: int | None = None
    shown = dvr_window
    start_over = False
    if control.clip:
        live = live and (finish is None or finish > edge)
        start_over = live and begin is not None
        if start_over and begin is not None:
            shown = int(edge - max(begin, start)) + 1
    elif live:
        window = min(dvr_window, control.dvr_window) if control.dvr_window is not None else dvr_window
        shown = window
        if control.time_shift:
            if edge - control.time_shift <= start:
                available = int(edge - start)
                raise ControlError(
                    "time_shift",
                    f"{control.time_shift} s reaches before the start of the archive ({available} s stored)",
                )
            finish = edge - control.time_shift
    views = []
    for source in sources:
        scale = source.track.timescale
        bounds = Bounds(
            None if begin is None else int(begin * scale),
            None if finish is None else -int(-finish * scale),
            None if window is None else window * scale,
        )
        view = source.cutter.view(source.track, live, bounds, source.frame_rate)
        views.append(replace(view, nominal_bitrate=source.nominal_bitrate))
    if live and window is not None:
        # What the views list: the window, or three target durations where that is longer.
        shown = max([shown, *(3 * v.target_duration for v in views if v.window)])
    updated = max(
        [v.window[-1].fragments[-1].wallclock_ms for v in views if v.window]
        + [v.parts[-1].wallclock_ms for v in views if v.parts],
        default=0,
    )
    shift = control.time_shift if live and not control.clip else 0
    return Presentation(point, live, views, shown, updated, start_over, begin, finish, shift)


def _reference(stored: Sequence[tuple[Source, Sequence[Segment]]]) -> tuple[Track, Sequence[Segment]]:
    """The track that maps UTC to media time: the first video track, else the first."""
    source, segments = next(((s, seg) for s, seg in stored if s.track.kind is TrackKind.VIDEO), stored[0])
    return source.track, segments


def _seconds_of(instant: Instant | None, reference: tuple[Track, Sequence[Segment]]) -> Fraction | None:
    """Media seconds of a requested time; UTC goes through the wall clock of the reference
    track's segment around it (each run of the archive has its own)."""
    if instant is None:
        return None
    if instant.utc_ms is None:
        return instant.media
    track, segments = reference
    scale = track.timescale

    def utc(segment: Segment) -> int:
        return segment.fragments[0].utc_ms(segment.time, scale)

    i = max(0, bisect.bisect_right(segments, instant.utc_ms, key=utc) - 1)
    segment = segments[i]
    seconds = Fraction(segment.time, scale) + Fraction(instant.utc_ms - utc(segment), 1000)
    if i + 1 < len(segments):
        # A time in a break of the wall clock (the encoder was away longer than its clock moved
        # on) is where the next run starts, not a media time on the previous run's clock.
        seconds = min(seconds, Fraction(segments[i + 1].time, scale))
    return seconds


def _at(seconds: Fraction, reference: tuple[Track, Sequence[Segment]]) -> str:
    """A media time as the error messages show it: seconds, and UTC on the reference's clock."""
    track, segments = reference
    ticks = int(seconds * track.timescale)
    # On the clock of the run holding that time (each run of the archive has its own).
    entry = segments[max(0, bisect.bisect_right(segments, ticks, key=_start) - 1)].fragments[0]
    utc = entry.utc_ms(ticks, track.timescale)
    return f"{float(seconds):.3f} s, {iso_utc(utc)}"
