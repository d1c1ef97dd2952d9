"""The RTMP chunk stream: header formats, extended timestamps, chunk sizes, limits, any split."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.rtmp import chunks
from ingest.rtmp.chunks import ChunkReader, ChunkWriter, Message
from ingest.rtmp.errors import RtmpError


def reader(**limits: int) -> ChunkReader:
    return ChunkReader(
        max_chunk_size=limits.get("max_chunk_size", 1 << 20),
        max_message_size=limits.get("max_message_size", 1 << 20),
    )


def feed_split(data: bytes, rng: random.Random, r: ChunkReader | None = None) -> list[Message]:
    r = r or reader()
    out: list[Message] = []
    pos = 0
    while pos < len(data):
        n = rng.randint(1, 64)
        out += r.feed(data[pos : pos + n])
        pos += n
    return out


def header(fmt: int, csid: int, *fields: bytes) -> bytes:
    return chunks._basic_header(fmt, csid) + b"".join(fields)


def u24(v: int) -> bytes:
    return v.to_bytes(3, "big")


# One table of hand-built chunk sequences: (name, bytes, expected (type, stream, timestamp, payload)).
AUDIO = chunks.AUDIO
CASES = [
    (
        "format 0 then 2 then 3 (spec example 1: deltas)",
        header(0, 4, u24(1000), u24(4), bytes([AUDIO]), (1).to_bytes(4, "little"), b"aaaa")
        + header(2, 4, u24(20), b"bbbb")
        + header(3, 4, b"cccc"),
        [(AUDIO, 1, 1000, b"aaaa"), (AUDIO, 1, 1020, b"bbbb"), (AUDIO, 1, 1040, b"cccc")],
    ),
    (
        "format 1 changes length and type",
        header(0, 6, u24(0), u24(2), bytes([9]), (1).to_bytes(4, "little"), b"v0")
        + header(1, 6, u24(40), u24(3), bytes([8]), b"a01"),
        [(9, 1, 0, b"v0"), (8, 1, 40, b"a01")],
    ),
    (
        "format 3 after format 0 reuses the format-0 field as delta (ffmpeg, librtmp, SRS)",
        header(0, 4, u24(23), u24(1), bytes([AUDIO]), (1).to_bytes(4, "little"), b"x") + header(3, 4, b"y"),
        [(AUDIO, 1, 23, b"x"), (AUDIO, 1, 46, b"y")],
    ),
    (
        "extended timestamp on format 0 and on its continuation chunks",
        header(0, 4, u24(0xFFFFFF), u24(200), bytes([AUDIO]), (1).to_bytes(4, "little"))
        + (0x01000000).to_bytes(4, "big")
        + b"p" * 128
        + header(3, 4, (0x01000000).to_bytes(4, "big"), b"q" * 72),
        [(AUDIO, 1, 0x01000000, b"p" * 128 + b"q" * 72)],
    ),
    (
        "extended timestamp omitted on a continuation chunk (some peers)",
        header(0, 4, u24(0xFFFFFF), u24(130), bytes([AUDIO]), (1).to_bytes(4, "little"))
        + (0x01000000).to_bytes(4, "big")
        + b"p" * 128
        + header(3, 4, b"qq")
        + header(0, 6, u24(1), u24(1), bytes([9]), (1).to_bytes(4, "little"), b"v"),
        [(AUDIO, 1, 0x01000000, b"p" * 128 + b"qq"), (9, 1, 1, b"v")],
    ),
    (
        "two- and three-byte basic headers",
        header(0, 64 + 200, u24(5), u24(1), bytes([AUDIO]), (1).to_bytes(4, "little"), b"A")
        + header(0, 64 + 1000, u24(6), u24(1), bytes([AUDIO]), (1).to_bytes(4, "little"), b"B"),
        [(AUDIO, 1, 5, b"A"), (AUDIO, 1, 6, b"B")],
    ),
    (
        "interleaved chunk streams",
        header(0, 4, u24(0), u24(200), bytes([AUDIO]), (1).to_bytes(4, "little"), b"a" * 128)
        + header(0, 6, u24(0), u24(3), bytes([9]), (1).to_bytes(4, "little"), b"vvv")
        + header(3, 4, b"a" * 72),
        [(9, 1, 0, b"vvv"), (AUDIO, 1, 0, b"a" * 200)],
    ),
    (
        "set chunk size applies to the next chunk",
        header(0, 2, u24(0), u24(4), bytes([1]), bytes(4), (300).to_bytes(4, "big"))
        + header(0, 4, u24(0), u24(300), bytes([AUDIO]), (1).to_bytes(4, "little"), b"z" * 300),
        [(1, 0, 0, (300).to_bytes(4, "big")), (AUDIO, 1, 0, b"z" * 300)],
    ),
    (
        "32-bit timestamps wrap",
        header(0, 4, u24(0xFFFFFF), u24(1), bytes([AUDIO]), (1).to_bytes(4, "little"))
        + (0xFFFFFFF0).to_bytes(4, "big")
        + b"a"
        + header(2, 4, u24(0x20), b"b"),
        [(AUDIO, 1, 0xFFFFFFF0, b"a"), (AUDIO, 1, 0x10, b"b")],
    ),
]


@pytest.mark.parametrize(("name", "data", "expected"), CASES, ids=[c[0] for c in CASES])
def test_chunk_cases_in_any_split(
    name: str, data: bytes, expected: list[tuple[int, int, int, bytes]]
) -> None:
    whole = [(m.type_id, m.stream_id, m.timestamp, m.payload) for m in reader().feed(data)]
    assert whole == expected
    for seed in range(20):
        split = feed_split(data, random.Random(seed))
        assert [(m.type_id, m.stream_id, m.timestamp, m.payload) for m in split] == expected


@settings(max_examples=150, deadline=None)
@given(
    chunk_size=st.integers(1, 600),
    messages=st.lists(
        st.tuples(
            st.integers(2, 65599),
            st.sampled_from([8, 9, 18, 20]),
            st.integers(0, 5),
            st.integers(0, 0xFFFFFFFF),
            st.binary(max_size=1500),
        ),
        max_size=8,
    ),
    seed=st.integers(0, 1000),
)
def test_writer_and_reader_round_trip(
    chunk_size: int, messages: list[tuple[int, int, int, int, bytes]], seed: int
) -> None:
    writer = ChunkWriter(chunk_size)
    r = reader()
    r.chunk_size = chunk_size
    sent = [Message(t, sid, ts, payload, csid) for csid, t, sid, ts, payload in messages]
    data = b"".join(writer.write(m) for m in sent)
    assert feed_split(data, random.Random(seed), r) == sent
    assert r.buffered == 0


def test_abort_drops_the_partial_message() -> None:
    r = reader()
    data = header(0, 4, u24(0), u24(200), bytes([AUDIO]), (1).to_bytes(4, "little"), b"a" * 128)
    assert r.feed(data) == []
    r.abort(4)
    again = header(0, 4, u24(9), u24(2), bytes([AUDIO]), (1).to_bytes(4, "little"), b"ok")
    assert [m.payload for m in r.feed(again)] == [b"ok"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (header(1, 4, u24(0), u24(1), bytes([AUDIO]), b"x"), "starts with a format-1 header"),
        (
            header(0, 4, u24(0), u24(5000), bytes([AUDIO]), (1).to_bytes(4, "little")),
            "message of 5000 bytes is over the limit of 4096",
        ),
        (
            header(0, 2, u24(0), u24(4), bytes([1]), bytes(4), (70000).to_bytes(4, "big")),
            "Set Chunk Size 70000 is outside 128..65536",
        ),
        (
            header(0, 2, u24(0), u24(4), bytes([1]), bytes(4), bytes(4)),
            "Set Chunk Size 0 is outside",
        ),
    ],
)
def test_limits_and_protocol_errors(data: bytes, message: str) -> None:
    r = reader(max_chunk_size=65536, max_message_size=4096)
    r.feed(data)
    assert r.error is not None and message in r.error.message
    with pytest.raises(RtmpError, match=message):
        r.feed(b"")  # the error stays


def test_too_many_chunk_streams() -> None:
    r = reader()
    data = b"".join(
        header(0, csid, u24(0), u24(1), bytes([AUDIO]), (1).to_bytes(4, "little"), b"x")
        for csid in range(3, 3 + chunks.MAX_CHUNK_STREAMS + 1)
    )
    messages = r.feed(data)
    assert len(messages) == chunks.MAX_CHUNK_STREAMS  # the ones before the fault
    assert r.error is not None and "more than 64 chunk streams" in r.error.message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_gives_only_rtmp_errors(data: bytes) -> None:
    r = reader(max_chunk_size=4096, max_message_size=4096)
    r.feed(data)  # raises nothing: a fault is kept in r.error
    assert r.buffered <= len(data)


def test_abort_applies_to_the_chunks_behind_it_in_the_same_piece() -> None:
    start = header(0, 4, u24(0), u24(200), bytes([AUDIO]), (1).to_bytes(4, "little"), b"A" * 128)
    abort = header(0, 2, u24(0), u24(4), bytes([chunks.ABORT]), bytes(4), (4).to_bytes(4, "big"))
    again = header(0, 4, u24(9), u24(3), bytes([AUDIO]), (1).to_bytes(4, "little"), b"BBB")
    messages = reader().feed(start + abort + again)
    assert [m.payload for m in messages if m.type_id == AUDIO] == [b"BBB"]


def test_unfinished_messages_are_bounded_over_all_chunk_streams() -> None:
    r = reader(max_message_size=4096)
    r.set_chunk_size(4000)
    data = b"".join(
        header(0, csid, u24(0), u24(4096), bytes([AUDIO]), (1).to_bytes(4, "little"), b"x" * 4000)
        for csid in range(3, 6)
    )
    r.feed(data)
    assert r.error is not None and "more than 8192 bytes of unfinished messages" in r.error.message
    assert r.buffered <= 8192 + len(data)
