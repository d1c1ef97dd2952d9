"""A track's timeline: the stored fragments in decode order, as ingest checks new fragments against
it and the packagers cut segments from it. Persisted by :mod:`storage.timeline`."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from enum import Enum

FLAG_KEYFRAME = 0x1
FLAG_DISCONTINUITY = 0x2


# Decode times at or after 2000-01-01 in seconds are taken as UTC (seconds since the epoch, as CMAF
# and Smooth encoders with UTC timing send); an encoder clock that started at zero gets there after
# thirty years.
UTC_EPOCH_FLOOR_S = 946_684_800


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One stored fragment. ``wallclock_ms`` is the UTC time of its end on the point's wall clock
    (see :meth:`anchor_ms`)."""

    decode_time: int
    duration: int
    size: int
    wallclock_ms: int
    flags: int

    @property
    def end(self) -> int:
        return self.decode_time + self.duration

    def anchor_ms(self, timescale: int) -> int:
        """UTC milliseconds at media time zero, as this fragment places it: the time of any media
        time ``t`` of its run is ``anchor + t * 1000 // timescale``. Fragments of one run (between
        discontinuities) and of every track of a point share it."""
        return self.wallclock_ms - self.end * 1000 // timescale

    def utc_ms(self, time: int, timescale: int) -> int:
        """UTC milliseconds of media time ``time`` on this fragment's run."""
        return self.anchor_ms(timescale) + time * 1000 // timescale

    @property
    def keyframe(self) -> bool:
        return bool(self.flags & FLAG_KEYFRAME)

    @property
    def discontinuity(self) -> bool:
        """A gap precedes this fragment (encoder restart, lost fragments)."""
        return bool(self.flags & FLAG_DISCONTINUITY)


class Verdict(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    BACKWARDS = "backwards"


def is_utc(decode_time: int, timescale: int) -> bool:
    """Whether an encoder's decode time reads as UTC (seconds since the epoch)."""
    return decode_time >= UTC_EPOCH_FLOOR_S * timescale


@dataclass(frozen=True, slots=True)
class PurgeMark:
    """What the archive purge removed from the front of a track: ``fragments`` in all, and per
    segment grouping (:attr:`media.presentation.SegmentCutter.key`) the number of the first segment
    left and the discontinuities before it, so HLS media and discontinuity sequence numbers carry on
    where they were (RFC 8216bis §6.2.2) after a purge and across restarts."""

    first_time: int = 0
    fragments: int = 0
    groupings: tuple[tuple[str, int, int], ...] = ()

    def base(self, key: str) -> tuple[int, int]:
        return next(((n, d) for k, n, d in self.groupings if k == key), (0, 0))


class Timeline:
    """The in-memory copy of one track's index, sorted by decode time. ``mark`` says what the
    archive purge removed before its first entry."""

    def __init__(self, entries: list[TimelineEntry] | None = None, mark: PurgeMark | None = None) -> None:
        self.entries: list[TimelineEntry] = sorted(entries or [], key=lambda e: e.decode_time)
        self._times = [e.decode_time for e in self.entries]
        self.mark = mark or PurgeMark()

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def last(self) -> TimelineEntry | None:
        return self.entries[-1] if self.entries else None

    @property
    def end(self) -> int:
        return self.entries[-1].end if self.entries else 0

    def find(self, decode_time: int) -> TimelineEntry | None:
        i = bisect.bisect_left(self._times, decode_time)
        if i < len(self._times) and self._times[i] == decode_time:
            return self.entries[i]
        return None

    def check(self, decode_time: int, tolerance: int = 0) -> Verdict:
        """Whether a fragment starting at ``decode_time`` is new, already stored (a reconnecting or
        redundant encoder re-sending it), or would go back into the stored timeline.

        ``tolerance`` (about one sample) absorbs encoders whose ``trun`` durations are rounded while
        their decode times follow the exact clock: a fragment starting that little before the
        stored end is new, and the packagers take the next decode time as the boundary."""
        if self.find(decode_time) is not None:
            return Verdict.DUPLICATE
        last = self.last
        if last is not None and (decode_time <= last.decode_time or decode_time < last.end - tolerance):
            return Verdict.BACKWARDS
        return Verdict.NEW

    def is_gap(self, decode_time: int, tolerance: int = 0) -> bool:
        """A gap bigger than ``tolerance`` separates ``decode_time`` from the stored end."""
        return bool(self.entries) and decode_time > self.end + tolerance

    def ranges(self) -> list[tuple[TimelineEntry, TimelineEntry]]:
        """(first, last) fragment of each stretch stored without a break, oldest first."""
        out: list[tuple[TimelineEntry, TimelineEntry]] = []
        for entry in self.entries:
            if out and not entry.discontinuity and entry.decode_time <= out[-1][1].end:
                out[-1] = (out[-1][0], entry)
            else:
                out.append((entry, entry))
        return out

    def add(self, entry: TimelineEntry) -> None:
        if self.entries and entry.decode_time < self.entries[-1].decode_time:
            raise ValueError("timeline entries are added in decode order")
        self.entries.append(entry)
        self._times.append(entry.decode_time)
