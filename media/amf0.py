"""Action Message Format 0 (Adobe, "Action Message Format -- AMF 0", 2007), the encoding of RTMP command
messages (type 20) and data messages (type 18) such as ``connect``, ``publish`` and ``@setDataFrame``.

Sans-IO: :func:`decode` and :func:`decode_all` read values from bytes, :func:`encode` writes them. Python
values stand for the AMF0 types (§2.1) as follows:

=================  ===================================================================================
``float``          number (§2.2); an ``int`` is written as a number, a ``bool`` as a boolean
``bool``           boolean (§2.3)
``str``            string (§2.4), or long string (§2.14) when its UTF-8 exceeds 65535 bytes
``dict``           anonymous object (§2.5)
``None``           null (§2.7)
``UNDEFINED``      undefined (§2.8); the unsupported marker (§2.15) is read as undefined too
``EcmaArray``      ECMA array (§2.10)
``list``           strict array (§2.12)
``Date``           date (§2.13)
``XmlDocument``    XML document (§2.17)
``TypedObject``    typed object (§2.18)
=================  ===================================================================================

Decoding raises only :class:`AmfError`, carrying the offset of the faulty byte, and bounds its work by the
input: nesting is limited to :data:`MAX_DEPTH`, a length or count is checked against the bytes left before
anything is read or allocated, and the count of an ECMA array is ignored (encoders write wrong ones).
Invalid UTF-8 is read with U+FFFD replacement characters rather than refused, so that one stray byte in a
metadata title does not make a whole message unreadable. A reference (§2.9) gives back the very object it
points to; references to an object from inside itself (cycles) are refused, and references may repeat at
most as many values as the message has bytes, so that walking a decoded value stays proportional to the
input. Movieclips (§2.6), record sets (§2.16) and AMF3 values (§3.1) are refused.

Encoding never writes references: an object used twice is written out twice.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from media.errors import MediaError

MAX_DEPTH: Final = 32  # objects and arrays nested deeper are refused, when reading and when writing

_DOUBLE = struct.Struct(">d")
_DATE = struct.Struct(">dh")
_OBJECT_END = b"\x00\x00\x09"  # UTF-8-empty, then object-end-marker (§2.5, §2.11)


class AmfError(MediaError):
    """Malformed AMF0 input (with the offset of the faulty byte), or a value AMF0 cannot carry."""


class _Marker(enum.IntEnum):
    """Type markers (AMF0 §2.1, §3.1)."""

    NUMBER = 0x00
    BOOLEAN = 0x01
    STRING = 0x02
    OBJECT = 0x03
    MOVIECLIP = 0x04
    NULL = 0x05
    UNDEFINED = 0x06
    REFERENCE = 0x07
    ECMA_ARRAY = 0x08
    OBJECT_END = 0x09
    STRICT_ARRAY = 0x0A
    DATE = 0x0B
    LONG_STRING = 0x0C
    UNSUPPORTED = 0x0D
    RECORDSET = 0x0E
    XML_DOCUMENT = 0x0F
    TYPED_OBJECT = 0x10
    AVMPLUS_OBJECT = 0x11


class Undefined(enum.Enum):
    """The type of :data:`UNDEFINED`, the one undefined value (AMF0 §2.8)."""

    UNDEFINED = "undefined"

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = Undefined.UNDEFINED


class EcmaArray(dict[str, "Value"]):
    """An ECMA array (AMF0 §2.10): an associative array, as ``onMetaData`` carries."""


class XmlDocument(str):
    """An XML document (AMF0 §2.17), kept as its text."""


@dataclass(frozen=True)
class Date:
    """A date (AMF0 §2.13): milliseconds since the Unix epoch in UTC, and a time zone that the spec
    reserves and asks writers to leave at 0."""

    milliseconds: float
    timezone: int = 0


@dataclass
class TypedObject:
    """An object of a registered ActionScript class (AMF0 §2.18)."""

    class_name: str
    members: dict[str, Value] = field(default_factory=dict)


Value: TypeAlias = (
    float
    | bool
    | str
    | Undefined
    | dict[str, "Value"]
    | EcmaArray
    | list["Value"]
    | Date
    | XmlDocument
    | TypedObject
    | None
)
_Complex: TypeAlias = dict[str, Value] | list[Value] | TypedObject  # what references point to (§2.9)


def decode(data: bytes, pos: int = 0) -> tuple[Value, int]:
    """Decodes the value starting at ``data[pos]`` (AMF0 §2.1); returns it and the position after it."""
    reader = _Reader(data, pos)
    return reader.value(0), reader.pos


def decode_all(data: bytes) -> list[Value]:
    """Decodes every value of a message body, such as a command's name, transaction ID and arguments.
    The body is one serialisation: a reference (AMF0 §2.9) may point into an earlier value."""
    reader = _Reader(data, 0)
    values = []
    while reader.pos < len(data):
        values.append(reader.value(0))
    return values


def encode(*values: Value) -> bytes:
    """Encodes values one after the other (AMF0 §2.1), as a message body holds them."""
    out = bytearray()
    for value in values:
        _write(out, value, 0)
    return bytes(out)


def command(name: str, transaction: float, *args: Value) -> bytes:
    """The body of an RTMP command message: the command name, the transaction ID, then the command object
    and the arguments (RTMP 1.0 §7.1.1)."""
    return encode(name, transaction, *args)


class _Reader:
    """Reads the values of one message body, keeping its reference table (AMF0 §2.9): the objects, typed
    objects, ECMA arrays and strict arrays in the order their markers appear."""

    def __init__(self, data: bytes, pos: int) -> None:
        if not 0 <= pos <= len(data):
            raise AmfError(f"start position {pos} is outside the {len(data)} bytes of data", offset=pos)
        self.data = data
        self.pos = pos
        self.table: list[_Complex] = []
        self.sizes: list[int | None] = []  # values each table entry holds; None while it is being read
        self.count = 0  # values read so far, counting those repeated through references
        self.spare = len(data)  # values that references may still repeat

    def take(self, n: int, what: str) -> bytes:
        left = len(self.data) - self.pos
        if n > left:
            raise AmfError(f"truncated {what}: needs {n} bytes, {left} left", offset=self.pos)
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def text(self, length_size: int, what: str) -> str:
        """UTF-8 behind a U16 or U32 byte length (AMF0 §1.3.1)."""
        length = self.uint(length_size, f"{what} length")
        return self.take(length, what).decode("utf-8", "replace")

    def value(self, depth: int) -> Value:
        """Reads one value-type (AMF0 §2.1) nested in ``depth`` objects or arrays."""
        start = self.pos
        marker = self.take(1, "type marker")[0]
        self.count += 1
        match marker:
            case _Marker.NUMBER:
                number: float = _DOUBLE.unpack(self.take(8, "number"))[0]
                return number
            case _Marker.BOOLEAN:
                return self.take(1, "boolean")[0] != 0
            case _Marker.STRING:
                return self.text(2, "string")
            case _Marker.LONG_STRING:
                return self.text(4, "long string")
            case _Marker.XML_DOCUMENT:
                return XmlDocument(self.text(4, "XML document"))
            case _Marker.NULL:
                return None
            case _Marker.UNDEFINED | _Marker.UNSUPPORTED:
                return UNDEFINED
            case _Marker.DATE:
                milliseconds, timezone = _DATE.unpack(self.take(_DATE.size, "date"))
                return Date(milliseconds, timezone)
            case _Marker.OBJECT:
                return self.complex({}, start, depth)
            case _Marker.ECMA_ARRAY:
                self.take(4, "ECMA array count")  # a hint only (§2.10): the object-end marker ends it
                return self.complex(EcmaArray(), start, depth)
            case _Marker.TYPED_OBJECT:
                return self.complex(TypedObject(self.text(2, "class name")), start, depth)
            case _Marker.STRICT_ARRAY:
                count = self.uint(4, "strict array count")
                left = len(self.data) - self.pos
                if count > left:  # every value takes at least its marker byte
                    raise AmfError(
                        f"truncated strict array: {count} values cannot fit in {left} bytes", offset=self.pos
                    )
                return self.complex([], start, depth, count)
            case _Marker.REFERENCE:
                return self.reference(start)
            case _Marker.OBJECT_END:
                raise AmfError("object-end marker 0x09 outside an object (AMF0 §2.11)", offset=start)
            case _Marker.MOVIECLIP:
                raise AmfError("movieclip marker 0x04 is reserved, not supported (AMF0 §2.6)", offset=start)
            case _Marker.RECORDSET:
                raise AmfError("recordset marker 0x0e is reserved, not supported (AMF0 §2.16)", offset=start)
            case _Marker.AVMPLUS_OBJECT:
                raise AmfError("AMF3 values (marker 0x11, AMF0 §3.1) are not supported", offset=start)
            case _:
                raise AmfError(f"unknown marker 0x{marker:02x}", offset=start)

    def complex(self, value: _Complex, start: int, depth: int, count: int = 0) -> _Complex:
        """Fills an object, ECMA array or typed object with its properties, or a strict array with ``count``
        values, after entering it in the reference table (AMF0 §2.9)."""
        if depth >= MAX_DEPTH:
            raise AmfError(f"values nested more than {MAX_DEPTH} levels deep", offset=start)
        index = len(self.table)
        self.table.append(value)
        self.sizes.append(None)
        first = self.count
        if isinstance(value, list):
            value.extend(self.value(depth + 1) for _ in range(count))
        else:
            self.properties(value.members if isinstance(value, TypedObject) else value, depth + 1)
        self.sizes[index] = self.count - first
        return value

    def properties(self, members: dict[str, Value], depth: int) -> None:
        """Reads name/value pairs up to an empty name and the object-end marker (AMF0 §2.5, §2.11); a later
        duplicate name wins."""
        while name := self.text(2, "property name"):
            members[name] = self.value(depth)
        end = self.pos
        if self.take(1, "object-end marker")[0] != _Marker.OBJECT_END:
            raise AmfError("empty property name not followed by the object-end marker 0x09", offset=end)

    def reference(self, start: int) -> _Complex:
        """The object a reference points to (AMF0 §2.9), if complete and within the repetition budget."""
        index = self.uint(2, "reference index")
        if index >= len(self.table):
            raise AmfError(f"reference to object {index}, only {len(self.table)} read", offset=start)
        size = self.sizes[index]
        if size is None:
            raise AmfError(f"reference to object {index} from inside itself (a cycle)", offset=start)
        self.spare -= size
        if self.spare < 0:
            raise AmfError(
                f"references repeat more values than the {len(self.data)} bytes of data", offset=start
            )
        self.count += size
        return self.table[index]


def _write(out: bytearray, value: Value, depth: int) -> None:
    """Appends one value-type (AMF0 §2.1) nested in ``depth`` objects or arrays."""
    if value is None:
        out.append(_Marker.NULL)
    elif value is UNDEFINED:
        out.append(_Marker.UNDEFINED)
    elif isinstance(value, bool):
        out += bytes((_Marker.BOOLEAN, value))
    elif isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError as exc:
            raise AmfError(f"integer {value} is too large for a number (AMF0 §2.2)") from exc
        out.append(_Marker.NUMBER)
        out += _DOUBLE.pack(number)
    elif isinstance(value, XmlDocument):
        out.append(_Marker.XML_DOCUMENT)
        out += _sized(_utf8(value, "XML document"), 4, "XML document")
    elif isinstance(value, str):
        raw = _utf8(value, "string")
        long = len(raw) > 0xFFFF
        out.append(_Marker.LONG_STRING if long else _Marker.STRING)
        out += _sized(raw, 4 if long else 2, "string")
    elif isinstance(value, Date):
        if not -0x8000 <= value.timezone <= 0x7FFF:
            raise AmfError(f"date time zone {value.timezone} does not fit in S16 (AMF0 §2.13)")
        out.append(_Marker.DATE)
        out += _DATE.pack(value.milliseconds, value.timezone)
    elif isinstance(value, dict | list | TypedObject):
        _write_complex(out, value, depth)
    else:
        raise AmfError(f"AMF0 cannot encode a {type(value).__name__}")


def _write_complex(out: bytearray, value: _Complex, depth: int) -> None:
    """Appends a strict array (AMF0 §2.12), or a typed object, ECMA array or object with its properties and
    the object end (§2.18, §2.10, §2.5, §2.11)."""
    if depth >= MAX_DEPTH:
        raise AmfError(f"values nested more than {MAX_DEPTH} levels deep (or a cycle)")
    if isinstance(value, list):
        out.append(_Marker.STRICT_ARRAY)
        out += len(value).to_bytes(4, "big")
        for item in value:
            _write(out, item, depth + 1)
        return
    if isinstance(value, TypedObject):
        out.append(_Marker.TYPED_OBJECT)
        out += _sized(_utf8(value.class_name, "class name"), 2, "class name")
        members = value.members
    elif isinstance(value, EcmaArray):
        out.append(_Marker.ECMA_ARRAY)
        out += len(value).to_bytes(4, "big")
        members = value
    else:
        out.append(_Marker.OBJECT)
        members = value
    for name, member in members.items():
        if not name:
            raise AmfError("an empty property name cannot be written: it marks the object end (AMF0 §2.5)")
        out += _sized(_utf8(name, "property name"), 2, "property name")
        _write(out, member, depth + 1)
    out += _OBJECT_END


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        raise AmfError(f"{what} is not encodable in UTF-8: {exc.reason}") from exc


def _sized(raw: bytes, length_size: int, what: str) -> bytes:
    """UTF-8 behind its U16 or U32 byte length (AMF0 §1.3.1)."""
    if len(raw) >= 1 << (8 * length_size):
        raise AmfError(f"{what} of {len(raw)} UTF-8 bytes does not fit a {8 * length_size}-bit length")
    return len(raw).to_bytes(length_size, "big") + raw
