"""One track's timeline index as numbered parts, so that no write and no poll grows with the archive.

::

    _tracks/<track>/index/<part>.bin    magic + up to RECORDS_PER_PART records (storage.timeline)

Records are appended to the newest part until it is full, then a new part starts. On a store with
real appends (disk) a record costs one append; on one without (S3) the part is rewritten, at most
``RECORDS_PER_PART`` records (16 KiB, about 17 minutes of 2 s fragments). The archive purge deletes
whole parts that hold only purged records, never rewriting the rest; a follower (a process serving
a point another process ingests) polls only the newest part.

:class:`TrackIndex` keeps where the parts end; it holds no records itself (the timeline does).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from media.timeline import TimelineEntry
from storage.errors import KeyNotFound, StorageError
from storage.store import Store
from storage.timeline import MAGIC, RECORD, decode_index, encode_entry

RECORDS_PER_PART = 512
PART_SUFFIX = ".bin"
LOAD_CONCURRENCY = 16  # parts read at once when loading


@dataclass(frozen=True, slots=True)
class Part:
    number: int
    count: int  # whole records in it
    last_time: int  # decode time of its last record (-1 when empty)


@dataclass(frozen=True, slots=True)
class Loaded:
    """What :meth:`TrackIndex.load` read: the records in order, and whether the parts need
    rewriting (a partial record at the end, a damaged or short part in the middle)."""

    entries: list[TimelineEntry]
    damaged: bool


def part_number(key: str) -> int | None:
    leaf = key.rsplit("/", 1)[-1]
    stem = leaf[: -len(PART_SUFFIX)]
    return int(stem) if leaf.endswith(PART_SUFFIX) and stem.isdigit() else None


class TrackIndex:
    """The index parts of one track under ``prefix`` (ending in ``/``)."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self.parts: list[Part] = []

    def key(self, number: int) -> str:
        return f"{self.prefix}{number:010d}{PART_SUFFIX}"

    async def load(self) -> Loaded:
        """Read every part. A part that cannot be read marks the index damaged (the caller
        rebuilds it from the fragments)."""
        numbers = sorted(n for k in await self.store.list(self.prefix) if (n := part_number(k)) is not None)
        gate = asyncio.Semaphore(LOAD_CONCURRENCY)

        async def read(number: int) -> bytes:
            async with gate:
                return await self.store.get_or_none(self.key(number)) or b""

        bodies = await asyncio.gather(*(read(n) for n in numbers))
        entries: list[TimelineEntry] = []
        damaged = False
        self.parts = []
        for position, (number, body) in enumerate(zip(numbers, bodies, strict=True)):
            try:
                records = decode_index(body)
            except StorageError:
                records, damaged = [], True
            last = position == len(numbers) - 1
            whole = len(MAGIC) + len(records) * RECORD.size
            if len(body) != whole or (not last and len(records) != RECORDS_PER_PART):
                damaged = True
            entries.extend(records)
            self.parts.append(Part(number, len(records), records[-1].decode_time if records else -1))
        return Loaded(entries, damaged)

    async def append(self, entry: TimelineEntry) -> None:
        """Add one record (after its fragment is stored)."""
        if not self.parts or self.parts[-1].count >= RECORDS_PER_PART:
            number = self.parts[-1].number + 1 if self.parts else 0
            self.parts.append(Part(number, 0, -1))
        part = self.parts[-1]
        await self.store.append(self.key(part.number), encode_entry(entry), initial=MAGIC)
        self.parts[-1] = Part(part.number, part.count + 1, entry.decode_time)

    async def rewrite(self, entries: list[TimelineEntry]) -> None:
        """Replace the index by ``entries`` (a repair), numbering parts on from the first one, so
        part numbers never go back; parts beyond them are deleted."""
        first = self.parts[0].number if self.parts else 0
        old = {p.number for p in self.parts}
        chunks = [entries[i : i + RECORDS_PER_PART] for i in range(0, len(entries), RECORDS_PER_PART)] or [[]]
        self.parts = []
        for offset, chunk in enumerate(chunks):
            number = first + offset
            await self.store.put(self.key(number), MAGIC + b"".join(encode_entry(e) for e in chunk))
            self.parts.append(Part(number, len(chunk), chunk[-1].decode_time if chunk else -1))
        stale = sorted(old - {p.number for p in self.parts})
        if stale:
            await self.store.delete_many([self.key(n) for n in stale])

    async def drop_before(self, time: int) -> int:
        """Delete the parts whose records all start before ``time`` (purged), never the newest.
        Returns how many went."""
        gone = self.forget_before(time)
        if gone:
            await self.store.delete_many([self.key(n) for n in gone])
        return len(gone)

    def forget_before(self, time: int) -> list[int]:
        """Stop tracking the parts whose records all start before ``time``, never the newest (a
        follower, once the ingesting process has purged them). Returns their numbers."""
        gone = [p.number for p in self.parts[:-1] if p.last_time < time]
        self.parts = self.parts[len(gone) :]
        return gone

    async def follow(self) -> list[TimelineEntry] | None:
        """The records appended by another process since the last :meth:`load` or ``follow``,
        reading only the newest part (and the ones after it). ``None`` when the index changed
        under us in another way (rewritten, or purged past what we know): load it again."""
        if not self.parts:
            return None if await self.store.list(self.prefix) else []
        new: list[TimelineEntry] = []
        while True:
            part = self.parts[-1]
            try:
                body = await self.store.get(self.key(part.number))
            except KeyNotFound:
                return None
            try:
                records = decode_index(body)
            except StorageError:
                return None
            known = records[: part.count]
            if len(known) < part.count or (known and known[-1].decode_time != part.last_time):
                return None
            added = records[part.count :]
            new.extend(added)
            if added:
                self.parts[-1] = Part(part.number, len(records), records[-1].decode_time)
            if len(records) < RECORDS_PER_PART:
                return new
            if not await self.store.exists(self.key(part.number + 1)):
                return new
            self.parts.append(Part(part.number + 1, 0, -1))
