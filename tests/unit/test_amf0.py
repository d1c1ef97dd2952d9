"""media.amf0: one case table of hand-written AMF0 bytes (Adobe AMF 0, 2007) decoded and encoded back,
decode-only and error tables, a real ffmpeg ``connect`` body, and hypothesis fuzz and round-trip tests."""

from __future__ import annotations

import contextlib
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.amf0 import (
    MAX_DEPTH,
    UNDEFINED,
    AmfError,
    Date,
    EcmaArray,
    TypedObject,
    Value,
    XmlDocument,
    command,
    decode,
    decode_all,
    encode,
)
from media.errors import MediaError

FAST = settings(max_examples=200, deadline=None, derandomize=True)

# ---------------------------------------------------------------------------------------------
# Values and their bytes, written from the spec grammar. Spaces separate marker, lengths and fields.

CASES: list[tuple[str, str, Value]] = [
    ("number-zero", "00 0000000000000000", 0.0),
    ("number-one", "00 3ff0000000000000", 1.0),
    ("number-negative", "00 c004000000000000", -2.5),
    ("number-negative-zero", "00 8000000000000000", -0.0),
    ("number-infinity", "00 7ff0000000000000", math.inf),
    ("number-nan", "00 7ff8000000000000", math.nan),
    ("boolean-false", "01 00", False),
    ("boolean-true", "01 01", True),
    ("string-empty", "02 0000", ""),
    ("string", "02 0005 68656c6c6f", "hello"),
    ("string-utf8", "02 0003 e282ac", "\u20ac"),
    ("string-longest", "02 ffff " + "61" * 0xFFFF, "a" * 0xFFFF),
    ("long-string", "0c 00010000 " + "61" * 0x10000, "a" * 0x10000),
    ("object-empty", "03 000009", {}),
    ("object", "03 0001 61 00 3ff0000000000000  0001 62 05  000009", {"a": 1.0, "b": None}),
    ("object-nested", "03 0001 6f 03 0001 78 06 000009  000009", {"o": {"x": UNDEFINED}}),
    ("null", "05", None),
    ("undefined", "06", UNDEFINED),
    ("ecma-array-empty", "08 00000000 000009", EcmaArray()),
    (
        "ecma-array",
        "08 00000002  0001 30 02 0001 61  0001 31 01 01  000009",
        EcmaArray({"0": "a", "1": True}),
    ),
    ("strict-array-empty", "0a 00000000", []),
    ("strict-array", "0a 00000003  00 4000000000000000  02 0001 78  0a 00000000", [2.0, "x", []]),
    ("date", "0b 4270000000000000 0000", Date(2.0**40)),
    ("date-timezone", "0b 0000000000000000 ffc4", Date(0.0, -60)),
    ("xml-document", "0f 00000004 3c612f3e", XmlDocument("<a/>")),
    (
        "typed-object",
        "10 0005 506f696e74  0001 78 00 3ff0000000000000  000009",
        TypedObject("Point", {"x": 1.0}),
    ),
    ("typed-object-empty", "10 0000 000009", TypedObject("")),
]

# Valid input that does not come back byte for byte: encoders take liberties the spec allows or that
# real encoders are known for.
DECODE_ONLY: list[tuple[str, str, Value]] = [
    ("ecma-array-count-too-high", "08 00000005  0001 61 05  000009", EcmaArray({"a": None})),
    ("ecma-array-count-zero", "08 00000000  0001 61 05  000009", EcmaArray({"a": None})),
    ("long-string-short", "0c 00000002 6869", "hi"),
    ("boolean-non-zero", "01 02", True),
    ("unsupported", "0d", UNDEFINED),
    ("invalid-utf8-replaced", "02 0002 ff61", "\ufffda"),
    ("duplicate-name-last-wins", "03  0001 61 05  0001 61 06  000009", {"a": UNDEFINED}),
    # The strict array is object 0, the anonymous object object 1 (§2.9).
    ("reference", "0a 00000002  03 0001 61 05 000009  07 0001", [{"a": None}, {"a": None}]),
]

ENCODE_ONLY: list[tuple[str, Value, str]] = [
    ("int", 1, "00 3ff0000000000000"),
    ("int-member", {"n": 3}, "03 0001 6e 00 4008000000000000 000009"),
    ("bool-is-not-a-number", [True, 0], "0a 00000002 01 01 00 0000000000000000"),
]

# (hex, message fragment, offset of the faulty byte)
ERRORS: list[tuple[str, str, int]] = [
    ("", "truncated type marker: needs 1 bytes, 0 left", 0),
    ("00 3ff0", "truncated number: needs 8 bytes, 2 left", 1),
    ("01", "truncated boolean", 1),
    ("02 00", "truncated string length: needs 2 bytes, 1 left", 1),
    ("02 0005 6869", "truncated string: needs 5 bytes, 2 left", 3),
    ("0c 7fffffff 61", "truncated long string: needs 2147483647 bytes, 1 left", 5),
    ("03 0001 61", "truncated type marker", 4),
    ("03 0001 61 05", "truncated property name length", 5),
    ("03 0000", "truncated object-end marker", 3),
    ("03 0000 05", "empty property name not followed by the object-end marker 0x09", 3),
    ("03 0001 61 12 000009", "unknown marker 0x12", 4),
    ("04", "movieclip marker 0x04 is reserved", 0),
    ("07 00", "truncated reference index", 1),
    ("07 0000", "reference to object 0, only 0 read", 0),
    ("03 0001 61 07 0000 000009", "reference to object 0 from inside itself (a cycle)", 4),
    ("08 000000", "truncated ECMA array count", 1),
    ("08 00000001 0001 61 05", "truncated property name length", 9),
    ("09", "object-end marker 0x09 outside an object", 0),
    ("0a 00000002 05", "truncated strict array: 2 values cannot fit in 1 bytes", 5),
    ("0a ffffffff", "truncated strict array: 4294967295 values cannot fit in 0 bytes", 5),
    ("0b 00000000", "truncated date: needs 10 bytes, 4 left", 1),
    ("0e", "recordset marker 0x0e is reserved", 0),
    ("0f 00000009 3c", "truncated XML document: needs 9 bytes, 1 left", 5),
    ("10 0003 41", "truncated class name: needs 3 bytes, 1 left", 3),
    ("11 0a0b01", "AMF3 values (marker 0x11, AMF0 §3.1) are not supported", 0),
    ("ff", "unknown marker 0xff", 0),
]

ENCODE_ERRORS: list[tuple[str, object, str]] = [
    ("empty-name", {"": 1.0}, "empty property name"),
    ("long-name", {"a" * 0x10000: None}, "property name of 65536 UTF-8 bytes does not fit a 16-bit length"),
    ("long-class-name", TypedObject("c" * 0x10000), "class name of 65536"),
    ("lone-surrogate", "\ud800", "string is not encodable in UTF-8"),
    ("timezone", Date(0.0, 0x8000), "time zone 32768 does not fit in S16"),
    ("huge-int", 10**400, "too large for a number"),
    ("tuple", (1.0,), "AMF0 cannot encode a tuple"),
]


def shape(value: object) -> object:
    """``value`` with its types spelled out, so that ``True != 1.0``, ``{} != EcmaArray()``, ``"" !=
    XmlDocument("")``, NaN equals itself and -0.0 differs from 0.0."""
    if isinstance(value, float):
        return "float", struct.pack(">d", value)
    if isinstance(value, dict):
        return type(value).__name__, [(name, shape(member)) for name, member in value.items()]
    if isinstance(value, list):
        return "list", [shape(item) for item in value]
    if isinstance(value, TypedObject):
        return "TypedObject", value.class_name, shape(value.members)
    if isinstance(value, Date):
        return "Date", shape(value.milliseconds), value.timezone
    return type(value).__name__, value


def params(table: list[tuple[str, str, Value]]) -> list[object]:
    return [pytest.param(bytes.fromhex(hex_), value, id=name) for name, hex_, value in table]


def test_case_names_are_unique() -> None:
    names = [name for name, _, _ in CASES + DECODE_ONLY]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(("data", "value"), params(CASES) + params(DECODE_ONLY))
def test_decode(data: bytes, value: Value) -> None:
    decoded, end = decode(data)
    assert end == len(data)
    assert shape(decoded) == shape(value)
    assert shape(decode_all(data)) == shape([value])


@pytest.mark.parametrize(("data", "value"), params(CASES))
def test_encode(data: bytes, value: Value) -> None:
    assert encode(value) == data


@pytest.mark.parametrize(("value", "hex_"), [pytest.param(v, h, id=n) for n, v, h in ENCODE_ONLY])
def test_encode_only(value: Value, hex_: str) -> None:
    assert encode(value) == bytes.fromhex(hex_)


@pytest.mark.parametrize("data", [pytest.param(bytes.fromhex(hex_), id=name) for name, hex_, _ in CASES])
def test_every_proper_prefix_is_truncated(data: bytes) -> None:
    for end in range(min(len(data), 64)):  # the long strings' first 64 prefixes cover every field
        with pytest.raises(AmfError, match="truncated"):
            decode(data[:end])


@pytest.mark.parametrize(("hex_", "message", "offset"), ERRORS)
def test_malformed_input(hex_: str, message: str, offset: int) -> None:
    with pytest.raises(AmfError) as info:
        decode(bytes.fromhex(hex_))
    assert message in info.value.message
    assert info.value.offset == offset
    assert isinstance(info.value, MediaError)


@pytest.mark.parametrize(("value", "message"), [pytest.param(v, m, id=n) for n, v, m in ENCODE_ERRORS])
def test_values_amf0_cannot_carry(value: object, message: str) -> None:
    with pytest.raises(AmfError, match=message):
        encode(value)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# A real capture: the connect command ffmpeg 5.1 sends to publish to rtmp://127.0.0.1/live/stream.

CONNECT = (
    "02 0007 636f6e6e656374"  # "connect"
    " 00 3ff0000000000000"  # transaction ID 1
    " 03"  # command object
    "  0003 617070  02 0004 6c697665"  # app: "live"
    "  0004 74797065  02 000a 6e6f6e70726976617465"  # type: "nonprivate"
    "  0008 666c617368566572  02 0024"  # flashVer: "FMLE/3.0 (compatible; Lavf59.27.100)"
    "   464d4c452f332e3020 28636f6d70617469626c653b 204c61766635392e32372e31303029"
    "  0005 746355726c  02 001a"  # tcUrl: "rtmp://127.0.0.1:1935/live"
    "   72746d703a2f2f 3132372e302e302e31 3a31393335 2f6c697665"
    "  000009"
)
CONNECT_OBJECT: dict[str, Value] = {
    "app": "live",
    "type": "nonprivate",
    "flashVer": "FMLE/3.0 (compatible; Lavf59.27.100)",
    "tcUrl": "rtmp://127.0.0.1:1935/live",
}


def test_ffmpeg_connect_decodes() -> None:
    assert shape(decode_all(bytes.fromhex(CONNECT))) == shape(["connect", 1.0, CONNECT_OBJECT])


def test_ffmpeg_connect_encodes() -> None:
    assert command("connect", 1, CONNECT_OBJECT) == bytes.fromhex(CONNECT)
    assert encode("connect", 1.0, CONNECT_OBJECT) == bytes.fromhex(CONNECT)


# ---------------------------------------------------------------------------------------------
# Positions, references and bounds


def test_decode_from_a_position_reports_absolute_offsets() -> None:
    data = bytes.fromhex("05 02 0002 6869 00 3ff0")
    assert decode(data, 1) == ("hi", 6)
    with pytest.raises(AmfError) as info:
        decode(data, 6)
    assert info.value.offset == 7


def test_start_position_outside_the_data() -> None:
    with pytest.raises(AmfError, match="start position 3 is outside the 2 bytes") as info:
        decode(b"\x05\x05", 3)
    assert info.value.offset == 3


def test_decode_all_of_an_empty_body() -> None:
    assert decode_all(b"") == []


def test_reference_returns_the_same_object() -> None:
    decoded, _ = decode(bytes.fromhex("0a 00000002  03 0001 61 05 000009  07 0001"))
    assert isinstance(decoded, list)
    assert decoded[0] is decoded[1]


def test_references_reach_earlier_values_of_the_body() -> None:
    first, second = decode_all(bytes.fromhex("03 0001 61 05 000009  07 0000"))
    assert first is second


def test_references_cannot_repeat_more_values_than_the_data_has_bytes() -> None:
    """Each array holds two references to the one before: without a budget, 30 arrays would stand for a
    billion values."""
    data = bytearray.fromhex("0a 0000001f  0a 00000002 05 05")
    for index in range(1, 31):
        data += (
            bytes.fromhex("0a 00000002 07") + index.to_bytes(2, "big") + b"\x07" + index.to_bytes(2, "big")
        )
    with pytest.raises(AmfError, match="references repeat more values than the") as info:
        decode(bytes(data))
    assert info.value.offset is not None and info.value.offset < len(data)


def nested_arrays(levels: int) -> bytes:
    return bytes.fromhex("0a 00000001") * levels + bytes.fromhex("05")


def test_nesting_up_to_the_limit_decodes() -> None:
    value, _ = decode(nested_arrays(MAX_DEPTH))
    for _ in range(MAX_DEPTH):
        assert isinstance(value, list)
        value = value[0]
    assert value is None


def test_deep_nesting_is_refused_not_recursed() -> None:
    with pytest.raises(AmfError, match="nested more than 32 levels") as info:
        decode(nested_arrays(5000))
    assert info.value.offset == MAX_DEPTH * 5


def test_deep_and_cyclic_values_are_refused_on_write() -> None:
    value: Value = None
    for _ in range(MAX_DEPTH):
        value = [value]
    encode(value)
    with pytest.raises(AmfError, match="nested more than 32 levels"):
        encode([value])
    cycle: dict[str, Value] = {}
    cycle["self"] = cycle
    with pytest.raises(AmfError, match="or a cycle"):
        encode(cycle)


def test_a_string_over_65535_utf8_bytes_becomes_a_long_string() -> None:
    text = "\u20ac" * 21846  # 65538 bytes in UTF-8
    assert encode(text)[:5] == bytes.fromhex("0c 00010002")
    assert decode(encode(text)) == (text, 5 + 65538)


# ---------------------------------------------------------------------------------------------
# Fuzzing

SCALARS = st.one_of(
    st.floats(),
    st.booleans(),
    st.text(max_size=12),
    st.none(),
    st.just(UNDEFINED),
    st.builds(Date, st.floats(), st.integers(-0x8000, 0x7FFF)),
    st.builds(XmlDocument, st.text(max_size=12)),
)
NAMES = st.text(min_size=1, max_size=6)


def containers(inner: st.SearchStrategy[Value]) -> st.SearchStrategy[Value]:
    members = st.dictionaries(NAMES, inner, max_size=4)
    return st.one_of(
        st.lists(inner, max_size=4),
        members,
        members.map(EcmaArray),
        st.builds(TypedObject, st.text(max_size=6), members),
    )


VALUES = st.recursive(SCALARS, containers, max_leaves=12)


@FAST
@given(values=st.lists(VALUES, max_size=4))
def test_generated_values_round_trip(values: list[Value]) -> None:
    data = encode(*values)
    decoded = decode_all(data)
    assert shape(decoded) == shape(values)
    assert encode(*decoded) == data


@FAST
@given(data=st.binary(max_size=256))
def test_random_bytes_decode_or_raise_amf_error(data: bytes) -> None:
    with contextlib.suppress(AmfError):
        decode_all(data)


@pytest.mark.parametrize(("data", "value"), params(CASES) + params(DECODE_ONLY))
@settings(max_examples=50, deadline=None, derandomize=True)
@given(flips=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(1, 255)), min_size=1, max_size=4))
def test_random_byte_flips_raise_only_amf_errors(
    data: bytes, value: Value, flips: list[tuple[int, int]]
) -> None:
    corrupt = bytearray(data)
    for pos, xor in flips:
        corrupt[pos % len(corrupt)] ^= xor
    with contextlib.suppress(AmfError):
        decode_all(bytes(corrupt))
