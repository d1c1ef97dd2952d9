"""RTMP time: 32-bit millisecond timestamps (Adobe RTMP 1.0 §5.3.1.3) mapped onto a publishing
point's continuous timeline.

Timestamps pass 0xFFFFFF after about 4.66 hours (the chunk stream then uses its extended field; see
:mod:`ingest.rtmp.chunks`) and wrap at 2^32 after about 49.7 days: :class:`TimestampMapper` unwraps
them by taking each step as a signed 32-bit difference. An encoder that reconnects starts again near
zero; :func:`choose_offset` moves its timestamps to where the point's timeline would be now, so the
archive continues after a gap instead of going back in time.
"""

from __future__ import annotations

from dataclasses import dataclass

WRAP = 1 << 32
JUMP_BACK_MS = 5000  # a step further back than this inside one publish is a clock reset
RESUME_TOLERANCE_MS = 10_000  # how far an encoder's own clock may be from the point's and still be used
# Room left after the stored media when a publish is moved: its first message may be video while
# its audio starts a little earlier (or the other way round).
RESUME_MARGIN_MS = 1000


@dataclass(frozen=True, slots=True)
class PointClock:
    """Where a point's stored media stands, in milliseconds of its timeline.

    ``floor_ms``: the end of the stored media of the tracks this publish feeds (nothing may start
    before it), ``None`` when they have none. ``now_ms``: where the point's timeline would be at
    this moment had media kept arriving (its newest end plus the wall-clock time since it was
    stored), ``None`` for an empty point."""

    floor_ms: int | None
    now_ms: int | None


def choose_offset(first_ms: int, previous_offset: int, clock: PointClock) -> int:
    """The milliseconds to add to a publish's timestamps, given its first (unwrapped) timestamp.

    The point's previous offset is kept when it maps this publish to where the point's media
    stands (a fresh point, another rendition of the same encoder, an encoder whose clock kept
    running across a reconnect); otherwise the publish starts at the point's current time, never
    before its stored media."""
    candidate = first_ms + previous_offset
    floor = None if clock.floor_ms is None else clock.floor_ms + RESUME_MARGIN_MS
    if floor is not None and candidate < floor:
        return max(floor, clock.now_ms or 0) - first_ms
    if clock.now_ms is not None and abs(candidate - clock.now_ms) > RESUME_TOLERANCE_MS:
        return max(floor or 0, clock.now_ms) - first_ms
    return previous_offset


class TimestampMapper:
    """Maps one publish's 32-bit timestamps to point time: unwrapped, plus an offset.

    Audio and video are unwrapped separately (each steps forward on its own; one may lag the
    other by seconds, as when a video input ends before its audio), the second starting from the
    first's unwrapped time. A track stepping back more than ``JUMP_BACK_MS`` behind its own latest
    time (an encoder resetting its clock without reconnecting) moves that track's offset so it
    continues just after the latest time of any track; the other track does the same when its
    own reset arrives, and its messages from before the reset keep their times meanwhile."""

    def __init__(self, first_raw: int, offset: int) -> None:
        self.offset = offset  # for tracks that have not reset
        self._reference = (first_raw, first_raw)  # (raw, unwrapped) of the latest message
        # track -> (raw, unwrapped, latest mapped, offset)
        self._tracks: dict[int, tuple[int, int, int, int]] = {}
        self.latest = first_raw + offset

    def map(self, raw: int, track: int = 0) -> int:
        last_raw, unwrapped, latest, offset = self._tracks.get(
            track, (*self._reference, -(1 << 62), self.offset)
        )
        step = (raw - last_raw) % WRAP
        if step >= WRAP // 2:
            step -= WRAP
        unwrapped += step
        mapped = unwrapped + offset
        if mapped < latest - JUMP_BACK_MS:
            offset += self.latest + 1 - mapped
            mapped = self.latest + 1
        self._tracks[track] = (raw, unwrapped, max(latest, mapped), offset)
        self._reference = (raw, unwrapped)
        self.latest = max(self.latest, mapped)
        return mapped
