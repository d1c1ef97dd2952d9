"""ISO-BMFF framing (ISO/IEC 14496-12 §4.2): box headers, a bounds-checked field cursor, and an
incremental reader that turns a byte stream fed in arbitrary pieces into complete top-level boxes.

Nothing here knows what a box means; :mod:`media.boxes` does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from media.errors import BoxError, BoxTooLarge, TruncatedBox

UUID = b"uuid"
_HEADER = struct.Struct(">I4s")


class Cursor:
    """Reads big-endian fields from a box payload, raising :class:`BoxError` with the box path and the
    absolute offset of the field that is missing."""

    __slots__ = ("_data", "base", "path", "pos")

    def __init__(self, data: bytes | memoryview, *, path: str, base: int) -> None:
        self._data = data
        self.path = path
        self.base = base
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self.pos

    @property
    def offset(self) -> int:
        """Absolute offset of the next unread byte."""
        return self.base + self.pos

    def error(self, message: str) -> BoxError:
        return BoxError(message, path=self.path, offset=self.offset)

    def take(self, n: int, what: str = "field") -> bytes:
        if n < 0 or self.pos + n > len(self._data):
            raise BoxError(
                f"{what} needs {n} bytes, {self.remaining} left", path=self.path, offset=self.offset
            )
        out = bytes(self._data[self.pos : self.pos + n])
        self.pos += n
        return out

    def rest(self) -> bytes:
        return self.take(self.remaining)

    def rest_view(self) -> memoryview:
        """The unread bytes without copying them (children of a container)."""
        view = memoryview(self._data)[self.pos :]
        self.pos = len(self._data)
        return view

    def u8(self) -> int:
        return self.take(1, "u8")[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2, "u16"), "big")

    def u24(self) -> int:
        return int.from_bytes(self.take(3, "u24"), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4, "u32"), "big")

    def u64(self) -> int:
        return int.from_bytes(self.take(8, "u64"), "big")

    def i16(self) -> int:
        return int.from_bytes(self.take(2, "i16"), "big", signed=True)

    def i32(self) -> int:
        return int.from_bytes(self.take(4, "i32"), "big", signed=True)

    def uint(self, size: int) -> int:
        """An unsigned integer of ``size`` bytes (version-dependent 32/64-bit fields)."""
        return int.from_bytes(self.take(size, f"u{size * 8}"), "big")

    def cstring(self) -> str:
        """A NUL-terminated UTF-8 string; a missing terminator takes the rest of the payload."""
        rest = bytes(self._data[self.pos :])
        end = rest.find(b"\0")
        raw = rest[: end if end >= 0 else len(rest)]
        self.pos += len(raw) + (1 if end >= 0 else 0)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(f"string is not UTF-8: {exc.reason}") from None

    def full_header(self) -> tuple[int, int]:
        """Version and flags of a FullBox (§4.2.2)."""
        word = self.u32()
        return word >> 24, word & 0xFFFFFF

    def expect_end(self) -> None:
        if self.remaining:
            raise self.error(f"{self.remaining} unexpected trailing bytes")


@dataclass(frozen=True, slots=True)
class BoxHeader:
    """A parsed box header: ``size`` is the whole box including the header."""

    type: bytes
    size: int
    header_size: int
    usertype: bytes | None = None


def parse_header(data: bytes | bytearray | memoryview, pos: int, *, path: str, base: int) -> BoxHeader | None:
    """Parse the header at ``data[pos:]``; ``None`` if more bytes are needed to know it.

    Size 0 ("to the end of the file") is refused: inside a stream or a parent box it has no end.
    """
    if len(data) - pos < 8:
        return None
    size, box_type = _HEADER.unpack_from(data, pos)
    header_size = 8
    if size == 1:
        if len(data) - pos < 16:
            return None
        size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        header_size = 16
    usertype = None
    if box_type == UUID:
        if len(data) - pos < header_size + 16:
            return None
        usertype = bytes(data[pos + header_size : pos + header_size + 16])
        header_size += 16
    name = box_type.decode("latin-1")
    where = f"{path}/{name}" if path else name
    if size == 0:
        raise BoxError("box size 0 (extends to end of file) is not supported", path=where, offset=base + pos)
    if size < header_size:
        raise BoxError(f"box size {size} is smaller than its header", path=where, offset=base + pos)
    return BoxHeader(bytes(box_type), size, header_size, usertype)


def write_header(box_type: bytes, payload_size: int, usertype: bytes | None = None) -> bytes:
    """The header for a payload of ``payload_size`` bytes; 64-bit size only when needed."""
    extra = 16 if usertype is not None else 0
    size = 8 + extra + payload_size
    if size > 0xFFFFFFFF:
        return struct.pack(">I4sQ", 1, box_type, size + 8) + (usertype or b"")
    return _HEADER.pack(size, box_type) + (usertype or b"")


def full_header(version: int, flags: int) -> bytes:
    return ((version << 24) | flags).to_bytes(4, "big")


@dataclass(frozen=True, slots=True)
class RawTopBox:
    """A complete top-level box cut out of a stream, with its absolute offset."""

    header: BoxHeader
    offset: int
    data: bytes

    @property
    def type(self) -> bytes:
        return self.header.type

    @property
    def payload(self) -> bytes:
        return self.data[self.header.header_size :]


class BoxReader:
    """Incremental top-level box splitter (sans-IO).

    ``feed`` takes any piece of the stream and returns the boxes it completes. It holds at most one
    box plus one partial header, so memory is bounded by ``max_box_size``: a header announcing a
    larger box raises :class:`BoxTooLarge` before any of its payload is buffered. With
    ``allowed_types``, a box of another type is refused from its header (input that is not ISO-BMFF
    at all is recognised before its first four bytes are mistaken for a size).
    """

    def __init__(
        self, max_box_size: int, *, offset: int = 0, allowed_types: frozenset[bytes] | None = None
    ) -> None:
        self.max_box_size = max_box_size
        self.allowed_types = allowed_types
        self._buf = bytearray()
        self._offset = offset  # absolute offset of _buf[0]
        self._header: BoxHeader | None = None

    @property
    def consumed(self) -> int:
        """Absolute offset just past the last complete box returned."""
        return self._offset

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[RawTopBox]:
        self._buf += data
        out: list[RawTopBox] = []
        while True:
            if self._header is None:
                self._header = parse_header(self._buf, 0, path="", base=self._offset)
                if self._header is None:
                    return out
                if self.allowed_types is not None and self._header.type not in self.allowed_types:
                    raise BoxError(
                        f"not an expected top-level ISO-BMFF box: type bytes {self._header.type.hex()} "
                        f"({self._header.type.decode('latin-1')!r})",
                        offset=self._offset,
                    )
                if self._header.size > self.max_box_size:
                    raise BoxTooLarge(
                        f"box of {self._header.size} bytes exceeds the limit of {self.max_box_size}",
                        path=self._header.type.decode("latin-1"),
                        offset=self._offset,
                    )
            size = self._header.size
            if len(self._buf) < size:
                return out
            out.append(RawTopBox(self._header, self._offset, bytes(self._buf[:size])))
            del self._buf[:size]
            self._offset += size
            self._header = None

    def close(self) -> None:
        """Declare the end of the stream; raises :class:`TruncatedBox` if a box was cut short."""
        if not self._buf:
            return
        if self._header is not None:
            name = self._header.type.decode("latin-1")
            missing = self._header.size - len(self._buf)
            raise TruncatedBox(
                f"stream ended {missing} bytes before the end of the box", path=name, offset=self._offset
            )
        raise TruncatedBox(f"stream ended inside a box header ({len(self._buf)} bytes)", offset=self._offset)


def count_samples(moof: bytes, base: int = 0) -> int:
    """The sample count all ``trun`` boxes of a ``moof`` declare (walking box headers only), so a
    reader can refuse a fragment that would make it allocate millions of samples before it parses
    any (ISO/IEC 14496-12 §8.8.8: 4 bytes of ``sample_count`` need no per-sample bytes)."""
    total = 0
    stack = [(8, len(moof))]
    while stack:
        pos, end = stack.pop()
        while pos + 8 <= end:
            header = parse_header(moof, pos, path="moof", base=base)
            if header is None or pos + header.size > end:
                return total  # the full parse reports the truncation precisely
            if header.type == b"traf":
                stack.append((pos + header.header_size, pos + header.size))
            elif header.type == b"trun" and header.size >= 16:
                total += int.from_bytes(moof[pos + 12 : pos + 16], "big")
            pos += header.size
    return total
