"""RTMP time: unwrapping 32-bit timestamps and placing a reconnecting encoder on the point's timeline."""

from __future__ import annotations

import pytest

from ingest.rtmp.clock import WRAP, PointClock, TimestampMapper, choose_offset


def test_unwraps_across_the_extended_boundary_and_the_32_bit_wrap() -> None:
    start = WRAP - 100
    mapper = TimestampMapper(start, 0)
    raws = [start, WRAP - 40, 20, 10, 80]  # small steps back (interleaving) are allowed
    mapped = [mapper.map(r) for r in raws]
    assert mapped == [WRAP - 100, WRAP - 40, WRAP + 20, WRAP + 10, WRAP + 80]
    extended = TimestampMapper(0xFFFFFF - 20, 7)
    assert [extended.map(t) for t in (0xFFFFFF - 20, 0xFFFFFF, 0xFFFFFF + 20)] == [
        0xFFFFFF - 13,
        0xFFFFFF + 7,
        0xFFFFFF + 27,
    ]


def test_a_clock_reset_inside_one_publish_continues_after_the_latest_time() -> None:
    mapper = TimestampMapper(50_000, 0)
    mapper.map(60_000)
    assert mapper.map(0) == 60_001  # the encoder restarted its clock: carry on
    assert mapper.map(40) == 60_041
    assert mapper.map(30) == 60_031  # small steps back (less than JUMP_BACK_MS) stay as they are


@pytest.mark.parametrize(
    ("first", "previous", "clock", "expected"),
    [
        # A fresh point keeps the encoder's own timestamps.
        (0, 0, PointClock(None, None), 0),
        # Another rendition of a running encoder (same clock) keeps the point's offset.
        (12_000, 0, PointClock(None, 12_300), 0),
        # An encoder restarting at 0 after a 5 s outage starts where the point's clock is now.
        (0, 0, PointClock(60_000, 65_000), 65_000),
        # ... and its sibling renditions, reconnecting a moment later, share that offset.
        (40, 65_000, PointClock(60_000, 65_100), 65_000),
        # An encoder whose clock ran on across the reconnect keeps it.
        (65_000, 0, PointClock(60_000, 65_200), 0),
        # Never before the stored media (plus a margin), even when the wall clock says so.
        (0, 0, PointClock(90_000, 70_000), 91_000),
        # A clock far off the point's time (another day's encoder) is moved to now.
        (10_000_000, 0, PointClock(None, 50_000), 50_000 - 10_000_000),
    ],
)
def test_choose_offset(first: int, previous: int, clock: PointClock, expected: int) -> None:
    assert choose_offset(first, previous, clock) == expected


def test_tracks_unwrap_separately_so_one_may_lag_the_other() -> None:
    """Video ending 14 s before audio, then its last frames and end of sequence arriving late: not
    a clock reset. Each track starts from the other's unwrapped time, also across the wrap."""
    mapper = TimestampMapper(WRAP - 1000, 0)
    assert mapper.map(WRAP - 1000, 9) == WRAP - 1000
    assert mapper.map(500, 8) == WRAP + 500  # audio's first message is already past the wrap
    for t in range(1000, 20_000, 1000):
        mapper.map(t, 8)
    assert mapper.map(5_900, 9) == WRAP + 5_900  # late video: its own clock only went forward
    assert mapper.map(20_000, 8) == WRAP + 20_000
    assert mapper.offset == 0


def test_a_reset_is_caught_once_for_both_tracks() -> None:
    mapper = TimestampMapper(0, 0)
    for t in range(0, 60_000, 40):
        mapper.map(t, 9)
        mapper.map(t, 8)
    assert mapper.map(59_980, 8) == 59_980  # audio from before its reset keeps its time
    assert mapper.map(0, 9) == 59_981  # reset: continue just after the latest time (59 980)
    assert mapper.map(0, 8) == 59_982  # the audio's own reset, right behind
    assert mapper.map(40, 9) == 60_021
