"""The persisted form of a track's timeline: one fixed-size record per stored fragment.

Layout (big-endian): an 8-byte magic ``HWTIDX01``, then 32-byte records::

    u64 decode_time   u64 duration   u32 size   u64 wallclock_ms (UTC, ingest clock)   u32 flags

Records are appended after their fragment is stored; :func:`storage.points.PointStore.load_timeline`
checks and repairs the index against the fragment files.
"""

from __future__ import annotations

import struct

from media.timeline import TimelineEntry
from storage.errors import StorageError

MAGIC = b"HWTIDX01"
RECORD = struct.Struct(">QQIQI")


def encode_entry(entry: TimelineEntry) -> bytes:
    return RECORD.pack(entry.decode_time, entry.duration, entry.size, entry.wallclock_ms, entry.flags)


def decode_index(data: bytes) -> list[TimelineEntry]:
    """Parse an index object; a partial trailing record (interrupted append) is ignored."""
    if not data:
        return []
    if not data.startswith(MAGIC):
        raise StorageError(f"timeline index does not start with {MAGIC!r}")
    body = memoryview(data)[len(MAGIC) :]
    whole = len(body) - len(body) % RECORD.size
    return [TimelineEntry(*fields) for fields in RECORD.iter_unpack(body[:whole])]
