"""The timeline index in parts (storage.index) on a real DiskStore: appends fill parts in order,
loads see damage, purges drop whole parts, and a follower reads only what was appended."""

from __future__ import annotations

from pathlib import Path

import pytest

import storage.index
from media.timeline import TimelineEntry
from storage.disk import DiskStore
from storage.index import TrackIndex, part_number
from storage.timeline import MAGIC, RECORD

PREFIX = "live/ch/_tracks/video/index/"


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage.index, "RECORDS_PER_PART", 4)


def entry(i: int) -> TimelineEntry:
    return TimelineEntry(i * 100, 100, 10 + i, 1_000 + i, 1)


async def filled(tmp_path: Path, count: int) -> tuple[DiskStore, TrackIndex]:
    store = DiskStore(tmp_path, fsync=False)
    index = TrackIndex(store, PREFIX)
    for i in range(count):
        await index.append(entry(i))
    return store, index


async def test_appends_fill_numbered_parts(tmp_path: Path) -> None:
    store, _ = await filled(tmp_path, 10)
    keys = await store.list(PREFIX)
    assert [part_number(k) for k in keys] == [0, 1, 2]
    assert [len(await store.get(k)) for k in keys] == [len(MAGIC) + n * RECORD.size for n in (4, 4, 2)]
    again = TrackIndex(store, PREFIX)
    loaded = await again.load()
    assert loaded.entries == [entry(i) for i in range(10)] and not loaded.damaged
    assert [(p.number, p.count, p.last_time) for p in again.parts] == [(0, 4, 300), (1, 4, 700), (2, 2, 900)]


async def test_partial_record_and_short_middle_part_are_damage(tmp_path: Path) -> None:
    store, _ = await filled(tmp_path, 10)
    last = PREFIX + "0000000002.bin"
    await store.put(last, (await store.get(last))[:-5])
    loaded = await TrackIndex(store, PREFIX).load()
    assert loaded.damaged and loaded.entries == [entry(i) for i in range(9)]
    middle = PREFIX + "0000000001.bin"
    await store.put(middle, (await store.get(middle))[: len(MAGIC) + RECORD.size])
    assert (await TrackIndex(store, PREFIX).load()).damaged


async def test_rewrite_keeps_numbering_and_deletes_stale_parts(tmp_path: Path) -> None:
    store, index = await filled(tmp_path, 10)
    await index.drop_before(400)
    await index.rewrite([entry(i) for i in range(4, 7)])
    assert [part_number(k) for k in await store.list(PREFIX)] == [1]
    assert (await TrackIndex(store, PREFIX).load()).entries == [entry(i) for i in range(4, 7)]


async def test_drop_before_deletes_whole_parts_never_the_newest(tmp_path: Path) -> None:
    store, index = await filled(tmp_path, 10)
    assert await index.drop_before(500) == 1  # part 1 ends at 700: it stays
    assert [part_number(k) for k in await store.list(PREFIX)] == [1, 2]
    assert await index.drop_before(10_000) == 1
    assert [part_number(k) for k in await store.list(PREFIX)] == [2]


async def test_follower_reads_appends_across_parts_and_sees_rewrites(tmp_path: Path) -> None:
    store, writer = await filled(tmp_path, 3)
    follower = TrackIndex(store, PREFIX)
    assert (await follower.load()).entries == [entry(i) for i in range(3)]
    assert await follower.follow() == []
    for i in range(3, 9):
        await writer.append(entry(i))
    assert await follower.follow() == [entry(i) for i in range(3, 9)]
    assert await follower.follow() == []
    await writer.drop_before(800)  # parts 0 and 1 go; the follower's newest (2) is still there
    await writer.append(entry(9))
    assert await follower.follow() == [entry(9)]
    await writer.rewrite([entry(i) for i in range(7, 9)])  # a repair: records went away
    assert await follower.follow() is None


async def test_follower_of_an_empty_index(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, fsync=False)
    follower = TrackIndex(store, PREFIX)
    assert (await follower.load()).entries == [] and await follower.follow() == []
    await TrackIndex(store, PREFIX).append(entry(0))
    assert await follower.follow() is None  # parts appeared: load them
