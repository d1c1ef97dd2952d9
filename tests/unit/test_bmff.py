"""media.bmff: the field cursor, box headers, and the incremental top-level box reader."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.bmff import BoxHeader, BoxReader, Cursor, RawTopBox, full_header, parse_header, write_header
from media.errors import BoxError, BoxTooLarge, TruncatedBox

FAST = settings(max_examples=50, deadline=None, derandomize=True)

# ---------------------------------------------------------------------------------------------
# Cursor


def test_cursor_reads_big_endian_fields() -> None:
    data = bytes.fromhex("01 0203 040506 0708090a 0b0c0d0e0f101112 fffe ffffffff 61620063")
    cur = Cursor(data, path="x", base=0)
    assert cur.u8() == 1
    assert cur.u16() == 0x0203
    assert cur.u24() == 0x040506
    assert cur.u32() == 0x0708090A
    assert cur.u64() == 0x0B0C0D0E0F101112
    assert cur.i16() == -2
    assert cur.i32() == -1
    assert cur.cstring() == "ab"
    assert cur.remaining == 1
    assert cur.cstring() == "c"  # no terminator: the rest of the payload
    assert cur.remaining == 0
    cur.expect_end()


def test_cursor_uint_and_full_header() -> None:
    cur = Cursor(bytes.fromhex("01 000203 0000000000000005 0006"), path="x", base=0)
    assert cur.full_header() == (1, 0x000203)
    assert cur.uint(8) == 5
    assert cur.uint(2) == 6


def test_cursor_error_names_path_field_and_absolute_offset() -> None:
    cur = Cursor(b"\x00\x01\x02", path="moov/trak/tkhd", base=1000)
    cur.u16()
    with pytest.raises(BoxError) as info:
        cur.u32()
    err = info.value
    assert err.path == "moov/trak/tkhd"
    assert err.offset == 1002
    assert "u32 needs 4 bytes, 1 left" in err.message
    assert str(err) == "u32 needs 4 bytes, 1 left (box moov/trak/tkhd, offset 1002)"
    assert cur.pos == 2  # a failed read consumes nothing


def test_cursor_take_names_the_field() -> None:
    cur = Cursor(b"ab", path="p", base=0)
    with pytest.raises(BoxError, match="SPS needs 3 bytes, 2 left"):
        cur.take(3, "SPS")
    assert cur.take(2) == b"ab"
    assert cur.rest() == b""


def test_cursor_expect_end() -> None:
    cur = Cursor(b"abc", path="mfhd", base=10)
    cur.u8()
    with pytest.raises(BoxError, match="2 unexpected trailing bytes") as info:
        cur.expect_end()
    assert info.value.offset == 11


def test_cursor_cstring_rejects_invalid_utf8() -> None:
    cur = Cursor(b"\xff\xfe\x00", path="emsg", base=0)
    with pytest.raises(BoxError, match="not UTF-8"):
        cur.cstring()


# ---------------------------------------------------------------------------------------------
# Headers


def test_parse_header_forms() -> None:
    assert parse_header(bytes.fromhex("00000010 6d6f6f66"), 0, path="", base=0) == BoxHeader(b"moof", 16, 8)
    large = bytes.fromhex("00000001 6d646174 0000000100000000")
    assert parse_header(large, 0, path="", base=0) == BoxHeader(b"mdat", 2**32, 16)
    usertype = bytes(range(16))
    uuid = bytes.fromhex("00000020 75756964") + usertype
    assert parse_header(uuid, 0, path="", base=0) == BoxHeader(b"uuid", 32, 24, usertype)
    at_pos = b"junk" + bytes.fromhex("00000008 66726565")
    assert parse_header(at_pos, 4, path="", base=0) == BoxHeader(b"free", 8, 8)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x00\x00",
        bytes.fromhex("00000001 6d646174 00000000"),
        bytes.fromhex("00000020 75756964 0001"),
    ],
    ids=["empty", "partial-size", "partial-largesize", "partial-usertype"],
)
def test_parse_header_needs_more(data: bytes) -> None:
    assert parse_header(data, 0, path="", base=0) is None


def test_parse_header_refuses_size_zero_and_undersized() -> None:
    with pytest.raises(BoxError, match="size 0") as info:
        parse_header(bytes.fromhex("00000000 6d646174"), 0, path="moov", base=40)
    assert (info.value.path, info.value.offset) == ("moov/mdat", 40)
    with pytest.raises(BoxError, match="smaller than its header"):
        parse_header(bytes.fromhex("00000007 6d646174"), 0, path="", base=0)
    with pytest.raises(BoxError, match="smaller than its header"):
        parse_header(bytes.fromhex("00000010 75756964") + bytes(16), 0, path="", base=0)


def test_write_header() -> None:
    assert write_header(b"free", 0) == bytes.fromhex("00000008 66726565")
    usertype = bytes(range(16))
    assert write_header(b"uuid", 4, usertype) == bytes.fromhex("0000001c 75756964") + usertype
    assert write_header(b"mdat", 2**32) == bytes.fromhex("00000001 6d646174 0000000100000010")
    header = write_header(b"uuid", 2**32, usertype)
    assert header == bytes.fromhex("00000001 75756964 0000000100000020") + usertype
    parsed = parse_header(header, 0, path="", base=0)
    assert parsed == BoxHeader(b"uuid", 2**32 + 32, 32, usertype)


def test_full_header() -> None:
    assert full_header(1, 0x020000) == bytes.fromhex("01020000")


# ---------------------------------------------------------------------------------------------
# BoxReader


def box_bytes(
    box_type: bytes, payload: bytes, *, large: bool = False, usertype: bytes | None = None
) -> bytes:
    extra = usertype or b""
    if large:
        size = 16 + len(extra) + len(payload)
        return (1).to_bytes(4, "big") + box_type + size.to_bytes(8, "big") + extra + payload
    return (8 + len(extra) + len(payload)).to_bytes(4, "big") + box_type + extra + payload


BOX_TYPES = st.sampled_from([b"moof", b"mdat", b"free", b"ftyp", b"\x00\x01\x02\x03"])


@st.composite
def box_streams(draw: st.DrawFn) -> bytes:
    count = draw(st.integers(0, 6))
    out = b""
    for _ in range(count):
        box_type = draw(BOX_TYPES)
        payload = draw(st.binary(max_size=40))
        large = draw(st.booleans())
        usertype = draw(st.binary(min_size=16, max_size=16)) if draw(st.booleans()) else None
        out += box_bytes(b"uuid" if usertype else box_type, payload, large=large, usertype=usertype)
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = []
    start = 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces


def read_all(data: bytes, pieces: list[bytes], max_box_size: int = 1 << 20) -> list[RawTopBox]:
    assert b"".join(pieces) == data
    reader = BoxReader(max_box_size)
    out: list[RawTopBox] = []
    for piece in pieces:
        out += reader.feed(piece)
    reader.close()
    assert reader.consumed == len(data)
    assert reader.buffered == 0
    return out


@FAST
@given(stream=box_streams(), cuts=st.lists(st.integers(0, 10_000), max_size=30))
def test_reader_returns_same_boxes_whatever_the_split(stream: bytes, cuts: list[int]) -> None:
    whole = read_all(stream, [stream])
    assert read_all(stream, split(stream, cuts)) == whole
    assert b"".join(box.data for box in whole) == stream
    offsets = [box.offset for box in whole]
    assert offsets == sorted(offsets)


@FAST
@given(stream=box_streams())
def test_reader_byte_by_byte(stream: bytes) -> None:
    assert read_all(stream, [stream[i : i + 1] for i in range(len(stream))]) == read_all(stream, [stream])


def test_reader_reports_boxes_with_offsets_and_payload() -> None:
    first = box_bytes(b"ftyp", b"isom")
    second = box_bytes(b"mdat", b"xyz", large=True)
    reader = BoxReader(100, offset=1000)
    boxes = reader.feed(first + second[:5])
    assert [(b.type, b.offset, b.payload) for b in boxes] == [(b"ftyp", 1000, b"isom")]
    assert reader.consumed == 1000 + len(first)
    assert reader.buffered == 5
    boxes = reader.feed(second[5:])
    assert [(b.type, b.offset, b.payload, b.header.header_size) for b in boxes] == [
        (b"mdat", 1000 + len(first), b"xyz", 16)
    ]
    reader.close()


@st.composite
def oversized_streams(draw: st.DrawFn) -> tuple[bytes, int, int, int]:
    """(stream, max_box_size, offset of the oversized box, length of its header)."""
    limit = draw(st.integers(16, 200))
    prefix = b""
    for _ in range(draw(st.integers(0, 3))):
        prefix += box_bytes(draw(BOX_TYPES), draw(st.binary(max_size=limit - 16)))
    size = draw(st.integers(limit + 1, 2**40))
    box_type = draw(BOX_TYPES)
    if size >= 2**32 or draw(st.booleans()):
        header = (1).to_bytes(4, "big") + box_type + size.to_bytes(8, "big")
    else:
        header = size.to_bytes(4, "big") + box_type
    payload = draw(st.binary(max_size=64))
    return prefix + header + payload, limit, len(prefix), len(header)


@FAST
@given(case=oversized_streams(), cuts=st.lists(st.integers(0, 10_000), max_size=20))
def test_oversized_box_is_refused_as_soon_as_its_header_arrives(
    case: tuple[bytes, int, int, int], cuts: list[int]
) -> None:
    stream, limit, box_offset, header_size = case
    reader = BoxReader(limit)
    fed = 0
    for piece in split(stream, cuts):
        fed += len(piece)
        if fed < box_offset + header_size:
            reader.feed(piece)  # the header is not complete yet: nothing to refuse
            continue
        with pytest.raises(BoxTooLarge) as info:
            reader.feed(piece)
        assert info.value.offset == box_offset
        assert info.value.path == stream[box_offset + 4 : box_offset + 8].decode("latin-1")
        assert str(limit) in info.value.message
        return
    pytest.fail("the oversized box was never refused")


def test_box_of_exactly_max_size_is_accepted() -> None:
    data = box_bytes(b"mdat", bytes(92))
    assert len(data) == 100
    assert [b.type for b in BoxReader(100).feed(data)] == [b"mdat"]
    with pytest.raises(BoxTooLarge):
        BoxReader(99).feed(data[:8])


def test_close_on_clean_boundary() -> None:
    reader = BoxReader(100)
    reader.close()
    reader.feed(box_bytes(b"free", b""))
    reader.close()


def test_close_inside_a_box_body() -> None:
    reader = BoxReader(100, offset=50)
    reader.feed(box_bytes(b"free", b"") + box_bytes(b"mdat", b"abcdef")[:10])
    with pytest.raises(TruncatedBox) as info:
        reader.close()
    assert info.value.path == "mdat"
    assert info.value.offset == 58
    assert "4 bytes before the end" in info.value.message


def test_close_inside_a_header() -> None:
    reader = BoxReader(100)
    reader.feed(b"\x00\x00\x00")
    with pytest.raises(TruncatedBox, match=r"inside a box header \(3 bytes\)") as info:
        reader.close()
    assert info.value.offset == 0


def test_truncated_box_is_a_box_error() -> None:
    assert issubclass(TruncatedBox, BoxError)
    assert issubclass(BoxTooLarge, BoxError)


def test_reader_refuses_invalid_header() -> None:
    with pytest.raises(BoxError, match="size 0"):
        BoxReader(100).feed(bytes.fromhex("00000000 6d646174"))
