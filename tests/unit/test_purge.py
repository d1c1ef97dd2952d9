"""The archive purge on a real disk store (ingest.points, storage.points): what is deleted, what the
purge mark records, that numbering survives reloading, that an interrupted purge is finished on
load, and that nothing inside the DVR window and its margin ever goes. Also the wall clock a point
puts on fragments, and the archive listing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest

import ingest.points
from ingest.fmp4 import Fmp4Receiver, TracksDeclared
from ingest.points import PURGE_MARGIN_S, PointRegistry, PublishingPoint, archive
from media.boxes import NON_SYNC_SAMPLE_FLAGS, SYNC_SAMPLE_FLAGS
from media.cmaf import write_fragment
from media.model import Fragment, Sample, Track, TrackKind
from media.presentation import Bounds, Segment, SegmentCutter
from media.timeline import FLAG_DISCONTINUITY, PurgeMark, Timeline, TimelineEntry
from storage.disk import DiskStore
from storage.errors import StorageError
from storage.index import TrackIndex
from storage.keys import PointId
from storage.points import PointStore
from storage.server_manifest import PointOptions
from storage.timeline import decode_index
from tests.unit.streams import AAC_SPEC, AVC_SPEC, cmaf_header

PID = PointId.parse("live/dvr")
START_S = 1_795_255_200  # 2026-11-21T10:00:00Z
SCALES = {"video": 90000, "audio": 48000}


@dataclass
class Setup:
    root: Path
    registry: PointRegistry
    point: PublishingPoint

    def folder(self, track: str) -> Path:
        return self.root / "live/dvr/_tracks" / track

    def files(self, track: str) -> list[int]:
        return sorted(int(p.stem) for p in self.folder(track).glob("*.m4s"))


def registry(root: Path) -> PointRegistry:
    return PointRegistry(PointStore(DiskStore(root, fsync=False)), PointOptions(), auto_create=True)


async def make_point(root: Path, **options: object) -> Setup:
    reg = registry(root)
    point = await reg.create(PID, PointOptions(**options))  # type: ignore[arg-type]
    for stream, spec in (("video.cmfv", AVC_SPEC), ("audio.cmfa", AAC_SPEC)):
        header = cmaf_header(spec)
        (declared,) = Fmp4Receiver(stream, 1 << 20).feed(header)
        assert isinstance(declared, TracksDeclared)
        await point.declare(stream, declared.tracks, header)
    return Setup(root, reg, point)


async def reopen(setup: Setup) -> Setup:
    """The same root in a new process: a fresh registry loads everything from disk."""
    reg = registry(setup.root)
    point = await reg.get(PID)
    assert point is not None
    return Setup(setup.root, reg, point)


def fragment(track: str, time: int, duration: int, *, keyframe: bool = True) -> Fragment:
    """Ten samples (a gap of more than one of them is a break in the timeline)."""
    first = SYNC_SAMPLE_FLAGS if keyframe else NON_SYNC_SAMPLE_FLAGS
    samples = tuple(Sample(duration // 10, 4, first if not i else NON_SYNC_SAMPLE_FLAGS) for i in range(10))
    return Fragment(track, time, duration, samples, write_fragment(1, time, samples, b"\0\0\0\1" * 10))


async def fill(
    point: PublishingPoint,
    first: int,
    count: int,
    *,
    seconds: int = 2,
    start_s: int = START_S,
    gaps: dict[int, int] | None = None,
    keyframes: int = 1,
) -> None:
    """Fragments ``first`` to ``first + count`` of both tracks, ``seconds`` each, timed in UTC from
    ``start_s``; ``gaps`` adds seconds missing before a fragment index (for every later one too);
    every ``keyframes``-th fragment starts with a keyframe."""
    for i in range(first, first + count):
        offset = sum(g for at, g in (gaps or {}).items() if at <= i)
        for track, scale in SCALES.items():
            time = (start_s + i * seconds + offset) * scale
            await point.accept(fragment(track, time, seconds * scale, keyframe=i % keyframes == 0))


def numbered(timeline: Timeline, scale: int, minimum: Fraction | None) -> dict[int, tuple[int, int]]:
    """Segment start → (number, discontinuity sequence of a playlist starting there)."""
    cutter = SegmentCutter(scale, minimum or Fraction(0), every_fragment=minimum is None)
    cutter.update(timeline)
    track = Track("t", TrackKind.VIDEO, "avc1", "avc1.64001f", scale, b"")
    out = {}
    for segment in cutter.segments(True):
        view = cutter.view(track, True, Bounds(start=segment.time, stop=segment.time + 1), None)
        out[segment.time] = (segment.number, view.discontinuity_sequence)
    return out


def segments(timeline: Timeline, scale: int, minimum: Fraction | None) -> list[Segment]:
    cutter = SegmentCutter(scale, minimum or Fraction(0), every_fragment=minimum is None)
    cutter.update(timeline)
    return list(cutter.segments(False))


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The ingest clock, set by the test: ``clock[0]`` is now, in UTC milliseconds."""
    clock = [START_S * 1000]
    monkeypatch.setattr(ingest.points, "now_ms", lambda: clock[0])
    yield clock


# -- retention --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, None),  # archiving everything
        ({"archive_length": 0}, None),
        ({"archive_length": 600}, 600 + PURGE_MARGIN_S),
        ({"archive_length": 600, "dvr_window_length": 1200}, 1200 + PURGE_MARGIN_S),
        ({"archive_length": 10, "dvr_window_length": 60}, 60 + PURGE_MARGIN_S),
        ({"archiving": False, "dvr_window_length": 60}, 60 + PURGE_MARGIN_S),
        ({"archiving": False, "archive_length": 3600, "dvr_window_length": 60}, 60 + PURGE_MARGIN_S),
    ],
)
async def test_retention(tmp_path: Path, options: dict[str, object], expected: int | None) -> None:
    setup = await make_point(tmp_path, **options)
    assert setup.point.retention() == expected


# -- purge --------------------------------------------------------------------------------------


async def test_purge_deletes_old_fragments_and_records_the_mark(tmp_path: Path) -> None:
    setup = await make_point(tmp_path, archive_length=60, dvr_window_length=30)
    await fill(setup.point, 0, 300, gaps={50: 10, 280: 6})  # 10 minutes, a break kept and one purged
    before = {t: await setup.point.timeline(t) for t in SCALES}
    numbers = {
        (t, m): numbered(before[t], SCALES[t], m) for t in SCALES for m in (None, Fraction(0), Fraction(6))
    }
    edge_s = START_S + 600 + 16
    assert await setup.registry.purge_archives() == 2 * 258
    # 60 s + the 30 s margin kept: 42 fragments of 2 s per track and the 6 s break.
    for track, scale in SCALES.items():
        timeline = await setup.point.timeline(track)
        assert len(timeline) == 42
        assert timeline.entries[0].decode_time == (edge_s - 90) * scale
        assert setup.files(track) == [e.decode_time for e in timeline.entries]
        # The index is not rewritten: its only part (of RECORDS_PER_PART) still holds every record.
        (part,) = (setup.folder(track) / "index").iterdir()
        assert decode_index(part.read_bytes())[-42:] == timeline.entries
        mark = json.loads((setup.folder(track) / "purge.json").read_text())
        first = timeline.entries[0].decode_time
        assert mark == {
            "first_time": first,
            "fragments": 258,
            "groupings": {"0": [258, 1], "every": [258, 1]},  # the break at 50 is gone
        }
        assert timeline.mark == PurgeMark(first, 258, (("0", 258, 1), ("every", 258, 1)))
        for minimum in (None, Fraction(0)):
            after = numbered(timeline, scale, minimum)
            assert after == {t: n for t, n in numbers[track, minimum].items() if t >= first}
    # Nothing more to purge until 30 s more arrive.
    assert await setup.registry.purge_archives() == 0
    await fill(setup.point, 300, 14, gaps={50: 10, 280: 6})
    assert await setup.registry.purge_archives() == 0
    await fill(setup.point, 314, 1, gaps={50: 10, 280: 6})
    assert await setup.registry.purge_archives() == 2 * 15


async def test_purged_point_reloads_with_the_same_timeline_and_numbers(tmp_path: Path) -> None:
    setup = await make_point(
        tmp_path, archive_length=60, dvr_window_length=30, hls_minimum_fragment_length=Fraction(6)
    )
    await fill(setup.point, 0, 300, gaps={100: 4, 290: 4})
    full = {t: await setup.point.timeline(t) for t in SCALES}
    expected = {
        (t, m): numbered(full[t], SCALES[t], m) for t in SCALES for m in (None, Fraction(0), Fraction(6))
    }
    assert await setup.registry.purge_archives() > 0
    kept = {t: list((await setup.point.timeline(t)).entries) for t in SCALES}
    marks = {t: (await setup.point.timeline(t)).mark for t in SCALES}
    again = await reopen(setup)
    for track, scale in SCALES.items():
        timeline = await again.point.timeline(track)
        assert timeline.entries == kept[track] and timeline.mark == marks[track]
        first = timeline.entries[0].decode_time
        # Numbering for every way the packagers cut this point carries on, 6 s segments included.
        assert {k for k, _, _ in timeline.mark.groupings} == {"every", "0", "6"}
        for minimum in (None, Fraction(0), Fraction(6)):
            assert numbered(timeline, scale, minimum) == {
                t: n for t, n in expected[track, minimum].items() if t >= first
            }, (track, minimum)
    # It goes on growing and purging after the reload, still numbering on.
    await fill(again.point, 300, 40, gaps={100: 4, 290: 4})
    assert await again.registry.purge_archives() > 0
    grown = await again.point.timeline("video")
    whole = Timeline(list(full["video"].entries))
    for entry in (await again.point.timeline("video")).entries:
        if entry.decode_time > whole.end - 1:
            whole.add(entry)
    for minimum in (None, Fraction(0), Fraction(6)):
        reference = numbered(whole, 90000, minimum)
        assert numbered(grown, 90000, minimum) == {
            t: n for t, n in reference.items() if t >= grown.entries[0].decode_time
        }


async def test_purge_cuts_only_where_every_grouping_starts_a_segment(tmp_path: Path) -> None:
    """1 s fragments, a keyframe every third one, 4 s HLS and 6 s DASH segments: the purge cuts
    at a start of all of them (and of every fragment as Smooth chunks), never inside one."""
    setup = await make_point(
        tmp_path,
        archive_length=60,
        dvr_window_length=30,
        hls_minimum_fragment_length=Fraction(4),
        mpd_minimum_fragment_length=Fraction(6),
    )
    await fill(setup.point, 0, 400, seconds=1, keyframes=3)
    full = await setup.point.timeline("video")
    starts = {m: {s.time for s in segments(full, 90000, m)} for m in (Fraction(4), Fraction(6))}
    assert await setup.registry.purge_archives() > 0
    timeline = await setup.point.timeline("video")
    first = timeline.entries[0].decode_time
    assert all(first in s for s in starts.values())
    assert (full.end - first) / 90000 >= 60 + PURGE_MARGIN_S
    for minimum in (Fraction(4), Fraction(6)):
        kept = [s for s in segments(full, 90000, minimum) if s.time >= first]
        assert segments(timeline, 90000, minimum) == kept


@pytest.mark.parametrize(
    ("options", "kept_s"),
    [
        ({"archive_length": 10, "dvr_window_length": 120}, 120 + PURGE_MARGIN_S),
        ({"archive_length": 300, "dvr_window_length": 30}, 300 + PURGE_MARGIN_S),
        ({"archiving": False, "dvr_window_length": 60}, 60 + PURGE_MARGIN_S),
        ({"archiving": False, "archive_length": 600, "dvr_window_length": 60}, 60 + PURGE_MARGIN_S),
    ],
)
async def test_purge_never_touches_the_window_and_its_margin(
    tmp_path: Path, options: dict[str, object], kept_s: int
) -> None:
    setup = await make_point(tmp_path, **options)
    await fill(setup.point, 0, 250)  # 500 s
    assert await setup.registry.purge_archives() > 0
    for track, scale in SCALES.items():
        timeline = await setup.point.timeline(track)
        # Exactly what is kept: whole 2 s fragments cut where the retention starts.
        assert (timeline.end - timeline.entries[0].decode_time) // scale == kept_s
        assert len(setup.files(track)) == kept_s // 2


async def test_everything_is_kept_when_archiving_without_a_length(tmp_path: Path) -> None:
    setup = await make_point(tmp_path, dvr_window_length=30)
    await fill(setup.point, 0, 100)
    assert await setup.registry.purge_archives() == 0
    assert len(setup.files("video")) == 100 and not (setup.folder("video") / "purge.json").exists()


async def test_purge_forever_runs_rounds_until_cancelled(tmp_path: Path) -> None:
    setup = await make_point(tmp_path, archive_length=60, dvr_window_length=30)
    await fill(setup.point, 0, 100)
    task = asyncio.create_task(setup.registry.purge_forever(0.01))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if len(setup.files("video")) == len(setup.files("audio")) == 45:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(setup.files("video")) == len(setup.files("audio")) == 45
    assert len(await setup.point.timeline("video")) == len(await setup.point.timeline("audio")) == 45


# -- interrupted purges -------------------------------------------------------------------------


async def test_purge_interrupted_after_the_mark_is_finished_on_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process died after writing the mark, before dropping index parts or deleting files."""
    setup = await make_point(tmp_path, archive_length=60, dvr_window_length=30)
    await fill(setup.point, 0, 150, gaps={20: 4})
    reference = await make_point(tmp_path / "reference", archive_length=60, dvr_window_length=30)
    await fill(reference.point, 0, 150, gaps={20: 4})
    await reference.registry.purge_archives()

    async def crash(*args: object) -> None:
        raise StorageError("power cut")

    monkeypatch.setattr(TrackIndex, "drop_before", crash)
    await setup.registry.purge_archives()  # logged and survived, like the background task does
    # The round stopped at the first track: its mark is written, nothing else happened.
    assert (setup.folder("video") / "purge.json").exists()
    assert not (setup.folder("audio") / "purge.json").exists()
    assert len(setup.files("video")) == len(setup.files("audio")) == 150
    monkeypatch.undo()

    again = await reopen(setup)
    timeline = await again.point.timeline("video")
    expected = await reference.point.timeline("video")
    assert timeline.entries == expected.entries and timeline.mark == expected.mark
    assert again.files("video") == [e.decode_time for e in timeline.entries]
    assert len(await again.point.timeline("audio")) == 150
    # The next round purges the other track just as it would have.
    await again.registry.purge_archives()
    for track in SCALES:
        timeline = await again.point.timeline(track)
        expected = await reference.point.timeline(track)
        assert timeline.entries == expected.entries and timeline.mark == expected.mark
        assert again.files(track) == [e.decode_time for e in timeline.entries]


async def test_purge_interrupted_before_deleting_files_is_finished_on_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = await make_point(tmp_path, archive_length=60, dvr_window_length=30)
    await fill(setup.point, 0, 150)

    async def crash(*args: object) -> int:
        raise StorageError("power cut")

    monkeypatch.setattr(PointStore, "delete_fragments", crash)
    await setup.registry.purge_archives()
    kept = {t: list((await setup.point.timeline(t)).entries) for t in SCALES}
    assert len(kept["video"]) == 45 and len(setup.files("video")) == 150
    monkeypatch.undo()
    again = await reopen(setup)
    for track in SCALES:
        assert (await again.point.timeline(track)).entries == kept[track]
        assert again.files(track) == [e.decode_time for e in kept[track]]


async def test_purge_then_ingest_continues_on_the_same_index(tmp_path: Path) -> None:
    """Fragments stored after a purge are appended to the index, and read back."""
    setup = await make_point(tmp_path, archive_length=60, dvr_window_length=30)
    await fill(setup.point, 0, 150)
    await setup.registry.purge_archives()
    await fill(setup.point, 150, 10)
    assert len(await setup.point.timeline("video")) == 55
    again = await reopen(setup)
    timeline = await again.point.timeline("video")
    assert len(timeline) == 55 and timeline.mark.fragments == 105
    assert again.files("video") == [e.decode_time for e in timeline.entries]


# -- the wall clock -------------------------------------------------------------------------------


async def test_utc_decode_times_are_the_wall_clock(tmp_path: Path) -> None:
    setup = await make_point(tmp_path)
    await fill(setup.point, 0, 3, gaps={2: 10})
    for track, scale in SCALES.items():
        entries = (await setup.point.timeline(track)).entries
        assert [e.wallclock_ms for e in entries] == [(START_S + s) * 1000 for s in (2, 4, 16)]
        assert [bool(e.flags & FLAG_DISCONTINUITY) for e in entries] == [False, False, True]
        assert all(e.anchor_ms(scale) == 0 for e in entries)


async def test_ingest_clock_is_shared_by_tracks_and_runs_and_survives_a_restart(
    tmp_path: Path, fixed_clock: list[int]
) -> None:
    """An encoder whose decode times start at zero: the first fragment fixes the anchor (now minus
    its media end), which every track shares. A break whose timestamps carry on at the wall
    clock's pace keeps the anchor, in this process and after a restart; an encoder whose clock
    jumped gets a new one."""
    setup = await make_point(tmp_path)
    anchor = fixed_clock[0] - 2000
    await fill(setup.point, 0, 30, start_s=0)
    fixed_clock[0] += 60_000  # 60 s of media arrived in 60 s
    for track, scale in SCALES.items():
        entries = (await setup.point.timeline(track)).entries
        assert {e.anchor_ms(scale) for e in entries} == {anchor}

    again = await reopen(setup)
    fixed_clock[0] += 20_000  # the encoder was away 20 s and its clock ran on
    await fill(again.point, 40, 10, start_s=0)
    for track, scale in SCALES.items():
        entries = (await again.point.timeline(track)).entries
        assert entries[30].flags & FLAG_DISCONTINUITY
        assert {e.anchor_ms(scale) for e in entries} == {anchor}

    fixed_clock[0] += 3_600_000  # an hour later, with its clock only 2 s on: a new anchor
    await fill(again.point, 51, 5, start_s=0)
    for track, scale in SCALES.items():
        entries = (await again.point.timeline(track)).entries
        new = {e.anchor_ms(scale) for e in entries[40:]}
        assert new == {fixed_clock[0] - 104_000}
        # Wall clock still moves forward across the break.
        assert entries[40].utc_ms(entries[40].decode_time, scale) > entries[39].wallclock_ms


# -- the archive listing ------------------------------------------------------------------------


async def test_archive_lists_ranges_after_a_purge(tmp_path: Path) -> None:
    setup = await make_point(tmp_path, archive_length=120, dvr_window_length=30)
    await fill(setup.point, 0, 150, gaps={140: 20})
    await setup.registry.purge_archives()
    listing = await archive(setup.point)
    assert listing["point"] == "live/dvr" and listing["state"] == "started"
    tracks = {t["name"]: t for t in listing["tracks"]}  # type: ignore[attr-defined]
    assert set(tracks) == {"video", "audio"}
    edge_s = START_S + 300 + 20
    start_s = edge_s - 150  # 120 s and the margin, of timeline: the 20 s break counts
    for track, scale in SCALES.items():
        assert tracks[track]["timescale"] == scale
        assert tracks[track]["ranges"] == [
            {
                "start": "2026-11-21T10:02:50.000Z",
                "end": "2026-11-21T10:04:40.000Z",
                "start_time": start_s * scale,
                "end_time": (START_S + 280) * scale,
                "duration": 110.0,
            },
            {
                "start": "2026-11-21T10:05:00.000Z",
                "end": "2026-11-21T10:05:20.000Z",
                "start_time": (START_S + 300) * scale,
                "end_time": edge_s * scale,
                "duration": 20.0,
            },
        ]


def test_timeline_ranges_split_at_gaps_and_discontinuities() -> None:
    def entry(t: int, flags: int = 1) -> TimelineEntry:
        return TimelineEntry(t, 10, 1, t + 10, flags)

    timeline = Timeline([entry(0), entry(10), entry(30), entry(40, 1 | FLAG_DISCONTINUITY), entry(50)])
    assert [(a.decode_time, b.end) for a, b in timeline.ranges()] == [(0, 20), (30, 40), (40, 60)]
    assert Timeline().ranges() == []
