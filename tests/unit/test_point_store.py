"""PointStore on a real DiskStore: the timeline index survives crashes and failed writes."""

from __future__ import annotations

from pathlib import Path

from media.cmaf import write_fragment
from media.model import Fragment, Sample
from media.timeline import FLAG_KEYFRAME, Timeline, TimelineEntry, Verdict
from storage.disk import DiskStore
from storage.keys import PointId
from storage.points import PointStore
from storage.timeline import MAGIC, RECORD

PID = PointId.parse("live/idx")


def fragment(time: int, duration: int = 100) -> Fragment:
    samples = (Sample(duration, 3, 0x02000000),)
    return Fragment("video", time, duration, samples, write_fragment(1, time, samples, b"abc"))


async def filled(tmp_path: Path, count: int = 4) -> tuple[PointStore, Path]:
    points = PointStore(DiskStore(tmp_path, fsync=False))
    for i in range(count):
        await points.write_fragment(PID, fragment(i * 100), 1000 + i, FLAG_KEYFRAME)
    return points, tmp_path / "live/idx/_tracks/video/index/0000000000.bin"


async def test_index_is_created_whole_and_appended(tmp_path: Path) -> None:
    points, index = await filled(tmp_path)
    assert index.read_bytes()[:8] == MAGIC and len(index.read_bytes()) == 8 + 4 * RECORD.size
    timeline = await points.load_timeline(PID, "video", 1000)
    assert [e.decode_time for e in timeline.entries] == [0, 100, 200, 300]


async def test_repeated_record_from_a_retried_append_is_merged(tmp_path: Path) -> None:
    points, index = await filled(tmp_path)
    index.write_bytes(index.read_bytes() + index.read_bytes()[-RECORD.size :])
    timeline = await points.load_timeline(PID, "video", 1000)
    assert [e.decode_time for e in timeline.entries] == [0, 100, 200, 300]
    assert len(index.read_bytes()) == 8 + 4 * RECORD.size


async def test_misaligned_index_is_rebuilt_from_fragments(tmp_path: Path) -> None:
    points, index = await filled(tmp_path)
    data = index.read_bytes()
    index.write_bytes(data[:8] + data[8 : 8 + 13] + data[8 + RECORD.size :])  # a short write mid-file
    timeline = await points.load_timeline(PID, "video", 1000)
    assert [(e.decode_time, e.duration) for e in timeline.entries] == [(t, 100) for t in (0, 100, 200, 300)]


async def test_index_without_magic_is_rebuilt(tmp_path: Path) -> None:
    points, index = await filled(tmp_path)
    index.write_bytes(index.read_bytes()[8:])
    timeline = await points.load_timeline(PID, "video", 1000)
    assert len(timeline) == 4 and index.read_bytes().startswith(MAGIC)


def test_rounding_overlap_within_one_sample_is_new_and_no_gap() -> None:
    timeline = Timeline([TimelineEntry(0, 209_000, 1, 0, 1)])
    assert timeline.check(208_991, tolerance=2090) is Verdict.NEW
    assert not timeline.is_gap(209_009, tolerance=2090)
    assert timeline.check(100_000, tolerance=2090) is Verdict.BACKWARDS
    assert timeline.check(0) is Verdict.DUPLICATE
    assert timeline.is_gap(215_000, tolerance=2090)
