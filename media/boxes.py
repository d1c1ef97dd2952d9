"""ISO-BMFF box classes (ISO/IEC 14496-12, 14496-15, 14496-14, 23000-19, MS-SSTR, Azure fMP4 ingest).

Every class parses its payload from a :class:`~media.bmff.Cursor` and writes it back with
``payload()``; ``bytes(box)`` gives the whole box. Boxes Headwater does not interpret are kept as
:class:`RawBox` so that they survive a round trip unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import struct
import sys
import uuid
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple, TypeVar

from media.bmff import UUID, Cursor, full_header, parse_header, write_header
from media.errors import BoxError

B = TypeVar("B", bound="Box")

_REGISTRY: dict[bytes, type[Box]] = {}
_UUID_REGISTRY: dict[bytes, type[Box]] = {}


def register(cls: type[B]) -> type[B]:
    if cls.USERTYPE is not None:
        _UUID_REGISTRY[cls.USERTYPE] = cls
    else:
        _REGISTRY[cls.TYPE] = cls
    return cls


class Box:
    """Base of all boxes. Subclasses set ``TYPE`` (and ``USERTYPE`` for ``uuid`` boxes)."""

    TYPE: ClassVar[bytes] = b"    "
    USERTYPE: ClassVar[bytes | None] = None

    @property
    def box_type(self) -> bytes:
        return self.TYPE

    @property
    def usertype(self) -> bytes | None:
        return self.USERTYPE

    @property
    def name(self) -> str:
        if self.usertype is not None:
            return UUID_NAMES.get(self.usertype, "uuid:" + str(uuid.UUID(bytes=self.usertype)))
        return self.box_type.decode("latin-1")

    @classmethod
    def parse(cls: type[B], cur: Cursor) -> B:
        raise NotImplementedError

    def payload(self) -> bytes:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        body = self.payload()
        return write_header(self.box_type, len(body), self.usertype) + body

    def subboxes(self) -> list[Box]:
        """The boxes this one contains (containers, list boxes and sample entries keep ``children``)."""
        kids = getattr(self, "children", None)
        return kids if isinstance(kids, list) else []

    def describe(self) -> str:
        """One line of the box's fields for :func:`dump` (children are dumped separately). Absent
        optional fields, and boilerplate fields holding their usual value, are left out."""
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name in ("children", "samples") or value is None:
                continue
            if f.name in _QUIET_FIELDS and f.default is not dataclasses.MISSING and value == f.default:
                continue
            parts.append(f"{f.name}={_show(value)}")
        return " ".join(parts)

    # -- navigation -------------------------------------------------------------------------

    def first(self, cls: type[B]) -> B | None:
        for child in self.subboxes():
            if isinstance(child, cls):
                return child
        return None

    def need(self, cls: type[B], where: str = "") -> B:
        """The first child of ``cls``; a :class:`BoxError` naming the missing box otherwise.
        ``where`` is this box's own path (``moov/trak[1]``), its name when not given."""
        found = self.first(cls)
        if found is None:
            raise BoxError(f"missing {cls.TYPE.decode('latin-1')} box", path=where or self.name)
        return found

    def all(self, cls: type[B]) -> list[B]:
        return [c for c in self.subboxes() if isinstance(c, cls)]


_QUIET_FIELDS = frozenset(
    {
        "matrix",
        "creation_time",
        "modification_time",
        "rate",
        "volume",
        "resolution",
        "depth",
        "layer",
        "alternate_group",
        "data_reference_index",
        "width_fraction",
        "height_fraction",
        "qt_version",
        "qt_extra",
        "compressor_name",
        "flags",
        "version",
    }
)


def _show(value: object) -> str:
    if isinstance(value, bytes):
        if len(value) <= 4 and all(32 <= b < 127 for b in value):
            return value.decode("ascii")
        if len(value) <= 24:
            return value.hex()
        return f"<{len(value)} bytes {value[:12].hex()}…>"
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    if isinstance(value, list | tuple):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return str(value)


# Real files nest about ten levels (moov/trak/mdia/minf/stbl/stsd/avc1/…); deeper input is hostile.
MAX_DEPTH = 32


def parse_box(data: bytes | memoryview, pos: int = 0, *, path: str = "", base: int = 0) -> tuple[Box, int]:
    """Parse the box at ``data[pos:]``; returns it and the position just past it.

    ``base`` is the absolute offset of ``data[0]`` in the stream, so errors carry real offsets.
    """
    if path.count("/") >= MAX_DEPTH:
        raise BoxError(f"boxes nested more than {MAX_DEPTH} levels deep", path=path, offset=base + pos)
    header = parse_header(data, pos, path=path, base=base)
    if header is None or pos + header.size > len(data):
        have = len(data) - pos
        raise BoxError(
            f"box header or body truncated ({have} bytes left in parent)", path=path or "/", offset=base + pos
        )
    name = header.type.decode("latin-1")
    if header.usertype is not None:
        cls = _UUID_REGISTRY.get(header.usertype)
        if cls is not None:
            name = UUID_NAMES[header.usertype]
    else:
        cls = _REGISTRY.get(header.type)
        if header.type in _ENTRY_PARSERS:
            cls = Box
    where = f"{path}/{name}" if path else name
    start = pos + header.header_size
    end = pos + header.size
    body = memoryview(data)[start:end]  # no copy: nested containers share the caller's buffer
    if cls is None:
        return RawBox(header.type, bytes(body), header.usertype), end
    cur = Cursor(body, path=where, base=base + start)
    box = _ENTRY_PARSERS[header.type](cur) if header.type in _ENTRY_PARSERS else cls.parse(cur)
    cur.expect_end()
    return box, end


def parse_boxes(data: bytes | memoryview, *, path: str = "", base: int = 0) -> list[Box]:
    out: list[Box] = []
    pos = 0
    while pos < len(data):
        box, pos = parse_box(data, pos, path=path, base=base)
        out.append(box)
    return out


def _children_of(cur: Cursor) -> list[Box]:
    start = cur.offset
    return parse_boxes(cur.rest_view(), path=cur.path, base=start)


def _write_children(children: list[Box]) -> bytes:
    return b"".join(bytes(c) for c in children)


def dump(boxes: list[Box], indent: int = 0) -> Iterator[str]:
    """A readable tree, one box per line with its fields, used by ``headwater inspect`` and goldens."""
    for box in boxes:
        size = len(bytes(box))
        line = f"{'  ' * indent}{box.name} [{size}]"
        details = box.describe()
        yield f"{line} {details}".rstrip()
        if isinstance(box, TrackRun):
            for i, s in enumerate(box.samples):
                yield f"{'  ' * (indent + 1)}#{i} {s.describe()}"
        yield from dump(box.subboxes(), indent + 1)


# ---------------------------------------------------------------------------------------------
# Generic boxes


@dataclass
class RawBox(Box):
    """A box kept as bytes: unknown types, and tables Headwater writes but never reads."""

    type: bytes
    data: bytes = b""
    raw_usertype: bytes | None = None

    @property
    def box_type(self) -> bytes:
        return self.type

    @property
    def usertype(self) -> bytes | None:
        return self.raw_usertype

    def payload(self) -> bytes:
        return self.data

    def describe(self) -> str:
        return f"({len(self.data)} bytes)"


@dataclass
class ContainerBox(Box):
    """A box that holds only other boxes (§4.2: moov, trak, moof, traf, …)."""

    children: list[Box] = field(default_factory=list)

    @classmethod
    def parse(cls: type[B], cur: Cursor) -> B:
        return cls(children=_children_of(cur))  # type: ignore[call-arg]

    def payload(self) -> bytes:
        return _write_children(self.children)

    def describe(self) -> str:
        return ""


@register
@dataclass
class MovieBox(ContainerBox):
    TYPE = b"moov"


@register
@dataclass
class TrackBox(ContainerBox):
    TYPE = b"trak"


@register
@dataclass
class MediaBox(ContainerBox):
    TYPE = b"mdia"


@register
@dataclass
class MediaInformationBox(ContainerBox):
    TYPE = b"minf"


@register
@dataclass
class SampleTableBox(ContainerBox):
    TYPE = b"stbl"


@register
@dataclass
class MovieExtendsBox(ContainerBox):
    TYPE = b"mvex"


@register
@dataclass
class MovieFragmentBox(ContainerBox):
    TYPE = b"moof"


@register
@dataclass
class TrackFragmentBox(ContainerBox):
    TYPE = b"traf"


@register
@dataclass
class DataInformationBox(ContainerBox):
    TYPE = b"dinf"


@register
@dataclass
class MovieFragmentRandomAccessBox(ContainerBox):
    TYPE = b"mfra"


@register
@dataclass
class EditBox(ContainerBox):
    TYPE = b"edts"


@register
@dataclass
class ProtectionSchemeInfoBox(ContainerBox):
    TYPE = b"sinf"


@register
@dataclass
class SchemeInformationBox(ContainerBox):
    TYPE = b"schi"


@register
@dataclass
class MediaDataBox(Box):
    """mdat (§8.1.1)."""

    TYPE = b"mdat"
    data: bytes = b""

    @classmethod
    def parse(cls, cur: Cursor) -> MediaDataBox:
        return cls(cur.rest())

    def payload(self) -> bytes:
        return self.data

    def describe(self) -> str:
        return f"({len(self.data)} bytes)"


@register
@dataclass
class FileTypeBox(Box):
    """ftyp (§4.3)."""

    TYPE = b"ftyp"
    major_brand: bytes = b"iso6"
    minor_version: int = 0
    compatible_brands: list[bytes] = field(default_factory=list)

    @classmethod
    def parse(cls: type[B], cur: Cursor) -> B:
        major = cur.take(4, "major_brand")
        minor = cur.u32()
        if cur.remaining % 4:
            raise cur.error("compatible_brands is not a whole number of 4-byte brands")
        brands = [cur.take(4) for _ in range(cur.remaining // 4)]
        return cls(major, minor, brands)  # type: ignore[call-arg]

    def payload(self) -> bytes:
        return self.major_brand + self.minor_version.to_bytes(4, "big") + b"".join(self.compatible_brands)

    def has_brand(self, brand: bytes) -> bool:
        return self.major_brand == brand or brand in self.compatible_brands


@register
@dataclass
class SegmentTypeBox(FileTypeBox):
    """styp (§8.16.2); the ``lmsg`` brand marks the last segment of a track (CMAF §7.3.3)."""

    TYPE = b"styp"


# ---------------------------------------------------------------------------------------------
# Movie header boxes

_MATRIX = (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _times(cur: Cursor, version: int) -> tuple[int, int]:
    size = 8 if version == 1 else 4
    return cur.uint(size), cur.uint(size)


def _write_times(version: int, *values: int) -> bytes:
    size = 8 if version == 1 else 4
    return b"".join(v.to_bytes(size, "big") for v in values)


def _version_for(*values: int) -> int:
    return 1 if any(v > 0xFFFFFFFF for v in values) else 0


@register
@dataclass
class MovieHeaderBox(Box):
    """mvhd (§8.2.2)."""

    TYPE = b"mvhd"
    timescale: int = 1000
    duration: int = 0
    next_track_id: int = 2
    version: int = 0
    creation_time: int = 0
    modification_time: int = 0
    rate: int = 0x10000
    volume: int = 0x100
    matrix: tuple[int, ...] = _MATRIX

    @classmethod
    def parse(cls, cur: Cursor) -> MovieHeaderBox:
        version, _ = cur.full_header()
        created, modified = _times(cur, version)
        timescale = cur.u32()
        duration = cur.uint(8 if version == 1 else 4)
        rate, volume = cur.u32(), cur.u16()
        cur.take(10, "reserved")
        matrix = tuple(cur.u32() for _ in range(9))
        cur.take(24, "pre_defined")
        next_id = cur.u32()
        return cls(timescale, duration, next_id, version, created, modified, rate, volume, matrix)

    def payload(self) -> bytes:
        v = self.version
        return (
            full_header(v, 0)
            + _write_times(v, self.creation_time, self.modification_time)
            + self.timescale.to_bytes(4, "big")
            + _write_times(v, self.duration)
            + self.rate.to_bytes(4, "big")
            + self.volume.to_bytes(2, "big")
            + bytes(10)
            + b"".join(m.to_bytes(4, "big") for m in self.matrix)
            + bytes(24)
            + self.next_track_id.to_bytes(4, "big")
        )


@register
@dataclass
class TrackHeaderBox(Box):
    """tkhd (§8.3.2); width and height are 16.16 fixed point in the box, integers here."""

    TYPE = b"tkhd"
    track_id: int = 1
    duration: int = 0
    width: int = 0
    height: int = 0
    version: int = 0
    flags: int = 3  # enabled | in_movie
    creation_time: int = 0
    modification_time: int = 0
    layer: int = 0
    alternate_group: int = 0
    volume: int = 0
    matrix: tuple[int, ...] = _MATRIX
    width_fraction: int = 0
    height_fraction: int = 0

    @classmethod
    def parse(cls, cur: Cursor) -> TrackHeaderBox:
        version, flags = cur.full_header()
        created, modified = _times(cur, version)
        track_id = cur.u32()
        cur.take(4, "reserved")
        duration = cur.uint(8 if version == 1 else 4)
        cur.take(8, "reserved")
        layer, group, volume = cur.u16(), cur.u16(), cur.u16()
        cur.take(2, "reserved")
        matrix = tuple(cur.u32() for _ in range(9))
        width, height = cur.u32(), cur.u32()
        return cls(
            track_id,
            duration,
            width >> 16,
            height >> 16,
            version,
            flags,
            created,
            modified,
            layer,
            group,
            volume,
            matrix,
            width & 0xFFFF,
            height & 0xFFFF,
        )

    def payload(self) -> bytes:
        v = self.version
        return (
            full_header(v, self.flags)
            + _write_times(v, self.creation_time, self.modification_time)
            + self.track_id.to_bytes(4, "big")
            + bytes(4)
            + _write_times(v, self.duration)
            + bytes(8)
            + self.layer.to_bytes(2, "big")
            + self.alternate_group.to_bytes(2, "big")
            + self.volume.to_bytes(2, "big")
            + bytes(2)
            + b"".join(m.to_bytes(4, "big") for m in self.matrix)
            + ((self.width << 16) | self.width_fraction).to_bytes(4, "big")
            + ((self.height << 16) | self.height_fraction).to_bytes(4, "big")
        )


def _pack_language(code: str) -> int:
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        code = "und"
    value = 0
    for ch in code.lower():
        value = (value << 5) | (ord(ch) - 0x60)
    return value


def _unpack_language(value: int) -> str:
    chars = [((value >> shift) & 0x1F) + 0x60 for shift in (10, 5, 0)]
    if not all(0x61 <= c <= 0x7A for c in chars):
        return "und"
    return bytes(chars).decode("ascii")


@register
@dataclass
class MediaHeaderBox(Box):
    """mdhd (§8.4.2): the media timescale and ISO-639-2/T language."""

    TYPE = b"mdhd"
    timescale: int = 1000
    duration: int = 0
    language: str = "und"
    version: int = 0
    creation_time: int = 0
    modification_time: int = 0

    @classmethod
    def parse(cls, cur: Cursor) -> MediaHeaderBox:
        version, _ = cur.full_header()
        created, modified = _times(cur, version)
        timescale = cur.u32()
        duration = cur.uint(8 if version == 1 else 4)
        language = _unpack_language(cur.u16())
        cur.take(2, "pre_defined")
        if timescale == 0:
            raise cur.error("mdhd timescale is 0")
        return cls(timescale, duration, language, version, created, modified)

    def payload(self) -> bytes:
        v = self.version
        return (
            full_header(v, 0)
            + _write_times(v, self.creation_time, self.modification_time)
            + self.timescale.to_bytes(4, "big")
            + _write_times(v, self.duration)
            + _pack_language(self.language).to_bytes(2, "big")
            + bytes(2)
        )


@register
@dataclass
class HandlerBox(Box):
    """hdlr (§8.4.3): ``vide``, ``soun``, ``text`` (WebVTT), ``subt`` (TTML)."""

    TYPE = b"hdlr"
    handler_type: bytes = b"vide"
    handler_name: str = ""

    @classmethod
    def parse(cls, cur: Cursor) -> HandlerBox:
        cur.full_header()
        cur.take(4, "pre_defined")
        handler = cur.take(4, "handler_type")
        cur.take(12, "reserved")
        # Some writers use a Pascal string or omit the terminator; take what is there.
        name = cur.rest().rstrip(b"\0").decode("utf-8", "replace")
        return cls(handler, name)

    def payload(self) -> bytes:
        return (
            full_header(0, 0) + bytes(4) + self.handler_type + bytes(12) + self.handler_name.encode() + b"\0"
        )


@dataclass
class _FlagsOnlyBox(Box):
    version: int = 0
    flags: int = 0
    data: bytes = b""

    @classmethod
    def parse(cls: type[B], cur: Cursor) -> B:
        version, flags = cur.full_header()
        return cls(version, flags, cur.rest())  # type: ignore[call-arg]

    def payload(self) -> bytes:
        return full_header(self.version, self.flags) + self.data


@register
@dataclass
class VideoMediaHeaderBox(_FlagsOnlyBox):
    """vmhd (§12.1.2): flags 1, graphicsmode and opcolor zero."""

    TYPE = b"vmhd"
    flags: int = 1
    data: bytes = bytes(8)


@register
@dataclass
class SoundMediaHeaderBox(_FlagsOnlyBox):
    """smhd (§12.2.2)."""

    TYPE = b"smhd"
    data: bytes = bytes(4)


@register
@dataclass
class NullMediaHeaderBox(_FlagsOnlyBox):
    """nmhd (§8.4.5.2), used by WebVTT tracks."""

    TYPE = b"nmhd"


@register
@dataclass
class SubtitleMediaHeaderBox(_FlagsOnlyBox):
    """sthd (§12.6.2), used by TTML tracks."""

    TYPE = b"sthd"


@register
@dataclass
class DataEntryUrlBox(_FlagsOnlyBox):
    """``url `` (§8.7.2); flag 1 = media is in this file."""

    TYPE = b"url "
    flags: int = 1


@dataclass
class _ListBox(Box):
    """A FullBox holding an entry count followed by child boxes (dref, stsd)."""

    children: list[Box] = field(default_factory=list)
    version: int = 0
    flags: int = 0

    @classmethod
    def parse(cls: type[B], cur: Cursor) -> B:
        version, flags = cur.full_header()
        count = cur.u32()
        children = _children_of(cur)
        if len(children) != count:
            raise BoxError(f"entry_count says {count}, found {len(children)} entries", path=cur.path)
        return cls(children, version, flags)  # type: ignore[call-arg]

    def payload(self) -> bytes:
        return (
            full_header(self.version, self.flags)
            + len(self.children).to_bytes(4, "big")
            + _write_children(self.children)
        )

    def describe(self) -> str:
        return f"entries={len(self.children)}"


@register
@dataclass
class DataReferenceBox(_ListBox):
    """dref (§8.7.2)."""

    TYPE = b"dref"


@register
@dataclass
class SampleDescriptionBox(_ListBox):
    """stsd (§8.5.2)."""

    TYPE = b"stsd"


# ---------------------------------------------------------------------------------------------
# Sample tables (§8.6.1-§8.6.2, §8.7.3-§8.7.5) and edit lists (§8.6.5-§8.6.6)
#
# A progressive file of a long clip holds millions of samples: the per-sample columns are kept as
# ``array`` objects (4 or 8 bytes an entry) and read or written as whole byte strings.


def _array_code(signed: bool, size: int) -> str:
    """The ``array`` type code of an integer item of ``size`` bytes on this platform."""
    for code in "bhilq" if signed else "BHILQ":
        if array(code).itemsize == size:
            return code
    raise RuntimeError(f"no {size}-byte array type on this platform")  # pragma: no cover


U32 = _array_code(False, 4)
I32 = _array_code(True, 4)
U64 = _array_code(False, 8)


def u32s(values: Iterable[int] = ()) -> array[int]:
    """A column of unsigned 32-bit table entries."""
    return array(U32, values)


def i32s(values: Iterable[int] = ()) -> array[int]:
    """A column of signed 32-bit table entries (version 1 composition offsets)."""
    return array(I32, values)


def u64s(values: Iterable[int] = ()) -> array[int]:
    """A column of unsigned 64-bit table entries (co64 chunk offsets)."""
    return array(U64, values)


def _read_column(cur: Cursor, code: str, count: int, what: str) -> array[int]:
    """``count`` big-endian items of type ``code``; the bytes are checked to be there before any
    allocation, so a corrupt entry_count costs nothing."""
    column = array(code)
    column.frombytes(cur.take(count * column.itemsize, what))
    if sys.byteorder == "little":
        column.byteswap()
    return column


def _write_columns(name: str, code: str, columns: tuple[array[int], ...]) -> bytes:
    """The rows of equally long ``columns``, interleaved and big-endian, every item of type ``code``."""
    count = len(columns[0])
    if any(len(c) != count for c in columns):
        raise BoxError(f"{name} columns differ in length: {[len(c) for c in columns]}", path=name)
    try:
        if len(columns) == 1:
            rows = array(code, columns[0])
        else:
            rows = array(code, bytes(array(code).itemsize * count * len(columns)))
            for i, column in enumerate(columns):
                rows[i :: len(columns)] = array(code, column)
    except OverflowError as exc:
        raise BoxError(f"{name} entry out of range: {exc}", path=name) from None
    if sys.byteorder == "little":
        rows.byteswap()
    return rows.tobytes()


def _show_columns(count: int, columns: dict[str, array[int]]) -> str:
    """``entries=N``, and the columns themselves when there are few enough to read."""
    text = f"entries={count}"
    if 0 < count <= 8:
        text += "".join(f" {name}=[{','.join(map(str, col))}]" for name, col in columns.items())
    return text


_T = TypeVar("_T", bound="_TableBox")


@dataclass
class _TableBox(Box):
    """A version-0 FullBox holding ``entry_count`` rows of unsigned integers, one dataclass field per
    column (``COLUMNS``), each an ``array`` of ``ITEM`` (``U32`` or ``U64``)."""

    COLUMNS: ClassVar[tuple[str, ...]] = ()
    ITEM: ClassVar[str] = U32

    @classmethod
    def parse(cls: type[_T], cur: Cursor) -> _T:
        version, _ = cur.full_header()
        if version != 0:
            raise cur.error(f"{cls.TYPE.decode('latin-1')} version {version} is not 0")
        count = cur.u32()
        width = len(cls.COLUMNS)
        rows = _read_column(cur, cls.ITEM, count * width, "table entries")
        return cls(*(rows[i::width] for i in range(width)))

    def columns(self) -> tuple[array[int], ...]:
        return tuple(getattr(self, name) for name in self.COLUMNS)

    def payload(self) -> bytes:
        columns = self.columns()
        body = _write_columns(self.name, self.ITEM, columns)
        return full_header(0, 0) + len(columns[0]).to_bytes(4, "big") + body

    def describe(self) -> str:
        columns = self.columns()
        return _show_columns(len(columns[0]), dict(zip(self.COLUMNS, columns, strict=True)))


@register
@dataclass
class TimeToSampleBox(_TableBox):
    """stts (§8.6.1.2): decoding-time deltas, run-length coded: ``sample_counts[i]`` consecutive
    samples each last ``sample_deltas[i]`` ticks of the media timescale."""

    TYPE = b"stts"
    COLUMNS = ("sample_counts", "sample_deltas")
    sample_counts: array[int] = field(default_factory=u32s)
    sample_deltas: array[int] = field(default_factory=u32s)


@register
@dataclass
class SyncSampleBox(_TableBox):
    """stss (§8.6.2): the 1-based numbers of the sync samples, ascending. Absent, every sample is a
    sync sample."""

    TYPE = b"stss"
    COLUMNS = ("sample_numbers",)
    sample_numbers: array[int] = field(default_factory=u32s)


@register
@dataclass
class SampleToChunkBox(_TableBox):
    """stsc (§8.7.4): from chunk ``first_chunks[i]`` (1-based) on, every chunk holds
    ``samples_per_chunk[i]`` samples described by sample entry ``description_indexes[i]``."""

    TYPE = b"stsc"
    COLUMNS = ("first_chunks", "samples_per_chunk", "description_indexes")
    first_chunks: array[int] = field(default_factory=u32s)
    samples_per_chunk: array[int] = field(default_factory=u32s)
    description_indexes: array[int] = field(default_factory=u32s)


@register
@dataclass
class ChunkOffsetBox(_TableBox):
    """stco (§8.7.5): the file offset of each chunk, 32-bit."""

    TYPE = b"stco"
    COLUMNS = ("chunk_offsets",)
    chunk_offsets: array[int] = field(default_factory=u32s)


@register
@dataclass
class ChunkLargeOffsetBox(_TableBox):
    """co64 (§8.7.5): the file offset of each chunk, 64-bit, for files past 4 GiB."""

    TYPE = b"co64"
    COLUMNS = ("chunk_offsets",)
    ITEM = U64
    chunk_offsets: array[int] = field(default_factory=u64s)


@register
@dataclass
class CompositionOffsetBox(Box):
    """ctts (§8.6.1.3): composition minus decoding time, run-length coded like stts. Version 0 offsets
    are unsigned, version 1 offsets signed (``sample_offsets`` is then an ``I32`` array)."""

    TYPE = b"ctts"
    sample_counts: array[int] = field(default_factory=u32s)
    sample_offsets: array[int] = field(default_factory=u32s)
    version: int = 0

    @classmethod
    def parse(cls, cur: Cursor) -> CompositionOffsetBox:
        version, _ = cur.full_header()
        if version > 1:
            raise cur.error(f"ctts version {version} is not 0 or 1")
        rows = _read_column(cur, U32, cur.u32() * 2, "table entries")
        offsets = rows[1::2]
        if version == 1:
            offsets = array(I32, offsets.tobytes())  # the same bits read as two's complement
        return cls(rows[0::2], offsets, version)

    def payload(self) -> bytes:
        offsets = self.sample_offsets
        if self.version == 1:
            try:
                offsets = array(U32, array(I32, offsets).tobytes())
            except OverflowError as exc:
                raise BoxError(f"ctts offset out of range: {exc}", path="ctts") from None
        elif any(o < 0 for o in offsets):
            raise BoxError("ctts version 0 cannot hold a negative offset", path="ctts")
        body = _write_columns("ctts", U32, (self.sample_counts, offsets))
        return full_header(self.version, 0) + len(self.sample_counts).to_bytes(4, "big") + body

    def describe(self) -> str:
        columns = {"sample_counts": self.sample_counts, "sample_offsets": self.sample_offsets}
        text = _show_columns(len(self.sample_counts), columns)
        return f"version={self.version} {text}" if self.version else text


@register
@dataclass
class SampleSizeBox(Box):
    """stsz (§8.7.3.2): with ``sample_size`` 0, one size per sample in ``sizes``; otherwise all
    ``sample_count`` samples have that size and ``sizes`` is empty. :meth:`of` picks the form."""

    TYPE = b"stsz"
    sample_size: int = 0
    sample_count: int = 0
    sizes: array[int] = field(default_factory=u32s)

    @classmethod
    def of(cls, sizes: array[int]) -> SampleSizeBox:
        """The box for these sample sizes: the constant form when they are all equal."""
        if len(sizes) and sizes.count(sizes[0]) == len(sizes) and sizes[0] > 0:
            return cls(sizes[0], len(sizes))
        return cls(0, len(sizes), sizes if sizes.typecode == U32 else array(U32, sizes))

    @classmethod
    def parse(cls, cur: Cursor) -> SampleSizeBox:
        version, _ = cur.full_header()
        if version != 0:
            raise cur.error(f"stsz version {version} is not 0")
        size, count = cur.u32(), cur.u32()
        if size:
            return cls(size, count)
        return cls(0, count, _read_column(cur, U32, count, "entry_size table"))

    def payload(self) -> bytes:
        table = b""
        if self.sample_size == 0:
            if self.sample_count != len(self.sizes):
                raise BoxError(
                    f"stsz sample_count {self.sample_count} but {len(self.sizes)} sizes", path="stsz"
                )
            table = _write_columns("stsz", U32, (self.sizes,))
        elif self.sizes:
            raise BoxError("stsz with a constant sample_size has no size table", path="stsz")
        return full_header(0, 0) + struct.pack(">II", self.sample_size, self.sample_count) + table

    def size_of(self, index: int) -> int:
        """The size of sample ``index`` (0-based)."""
        return self.sample_size or self.sizes[index]

    def describe(self) -> str:
        if self.sample_size:
            return f"sample_size={self.sample_size} sample_count={self.sample_count}"
        return _show_columns(self.sample_count, {"sizes": self.sizes})


@dataclass
class EditEntry:
    """One edit of an elst (§8.6.6.3). ``media_time`` -1 makes it an empty edit (nothing presented
    for ``segment_duration``); the rate is 16.16 fixed point, 1.0 for normal play."""

    segment_duration: int
    media_time: int
    media_rate_integer: int = 1
    media_rate_fraction: int = 0


_EDIT_V0 = struct.Struct(">Iihh")
_EDIT_V1 = struct.Struct(">Qqhh")


@register
@dataclass
class EditListBox(Box):
    """elst (§8.6.6): maps the movie timeline (``segment_duration`` in the movie timescale) onto the
    media timeline (``media_time`` in the media timescale). Version 1 has 64-bit fields;
    :meth:`version_for` says which one some entries need."""

    TYPE = b"elst"
    entries: list[EditEntry] = field(default_factory=list)
    version: int = 0

    @staticmethod
    def version_for(entries: list[EditEntry]) -> int:
        fits = all(e.segment_duration <= 0xFFFFFFFF and -(2**31) <= e.media_time < 2**31 for e in entries)
        return 0 if fits else 1

    @classmethod
    def parse(cls, cur: Cursor) -> EditListBox:
        version, _ = cur.full_header()
        if version > 1:
            raise cur.error(f"elst version {version} is not 0 or 1")
        row = _EDIT_V1 if version == 1 else _EDIT_V0
        count = cur.u32()
        raw = cur.take(count * row.size, "edit entries")
        return cls([EditEntry(*fields) for fields in row.iter_unpack(raw)], version)

    def payload(self) -> bytes:
        row = _EDIT_V1 if self.version == 1 else _EDIT_V0
        try:
            rows = b"".join(
                row.pack(e.segment_duration, e.media_time, e.media_rate_integer, e.media_rate_fraction)
                for e in self.entries
            )
        except struct.error as exc:
            raise BoxError(
                f"elst entry out of range for version {self.version}: {exc}", path="elst"
            ) from None
        return full_header(self.version, 0) + len(self.entries).to_bytes(4, "big") + rows

    def describe(self) -> str:
        edits = ",".join(
            f"({e.segment_duration},{e.media_time}"
            + (
                ""
                if (e.media_rate_integer, e.media_rate_fraction) == (1, 0)
                else f",rate={e.media_rate_integer}.{e.media_rate_fraction}"
            )
            + ")"
            for e in self.entries
        )
        return (f"version={self.version} " if self.version else "") + f"entries=[{edits}]"


# ---------------------------------------------------------------------------------------------
# Sample entries (§8.5.2, §12.1.3, §12.2.3) and codec configuration boxes


@dataclass
class VisualSampleEntry(Box):
    """avc1/avc3 (14496-15 §5.4.2), hvc1/hev1 (§8.4.1), av01 (AV1 ISOBMFF binding §2.2), and any other
    video sample entry format."""

    TYPE = b"avc1"
    format: bytes = b"avc1"
    width: int = 0
    height: int = 0
    children: list[Box] = field(default_factory=list)
    data_reference_index: int = 1
    compressor_name: str = ""
    depth: int = 0x18
    resolution: int = 0x00480000

    @property
    def box_type(self) -> bytes:
        return self.format

    def payload(self) -> bytes:
        name = self.compressor_name.encode()[:31]
        return (
            bytes(6)
            + self.data_reference_index.to_bytes(2, "big")
            + bytes(16)
            + self.width.to_bytes(2, "big")
            + self.height.to_bytes(2, "big")
            + self.resolution.to_bytes(4, "big") * 2
            + bytes(4)
            + (1).to_bytes(2, "big")
            + bytes([len(name)])
            + name
            + bytes(31 - len(name))
            + self.depth.to_bytes(2, "big")
            + b"\xff\xff"
            + _write_children(self.children)
        )


def _visual_parser(fmt: bytes) -> Callable[[Cursor], VisualSampleEntry]:
    def parse(cur: Cursor) -> VisualSampleEntry:
        cur.take(6, "reserved")
        dri = cur.u16()
        cur.take(16, "pre_defined")
        width, height = cur.u16(), cur.u16()
        resolution = cur.u32()
        cur.u32()
        cur.take(4, "reserved")
        cur.u16()  # frame_count
        name_raw = cur.take(32, "compressorname")
        name = name_raw[1 : 1 + min(name_raw[0], 31)].decode("utf-8", "replace")
        depth = cur.u16()
        cur.take(2, "pre_defined")
        return VisualSampleEntry(fmt, width, height, _children_of(cur), dri, name, depth, resolution)

    return parse


@dataclass
class AudioSampleEntry(Box):
    """mp4a, Opus (Opus in ISOBMFF §4.3.1) and other audio sample entries (§12.2.3). QuickTime sound
    description versions 1 and 2 carry extra fields, kept verbatim in ``qt_extra``."""

    TYPE = b"mp4a"
    format: bytes = b"mp4a"
    channel_count: int = 2
    sample_rate: int = 48000
    children: list[Box] = field(default_factory=list)
    data_reference_index: int = 1
    sample_size: int = 16
    qt_version: int = 0
    qt_extra: bytes = b""

    @property
    def box_type(self) -> bytes:
        return self.format

    def payload(self) -> bytes:
        if self.qt_version == 2:
            # Version 2 keeps the real values in qt_extra; these fields hold fixed placeholders.
            fixed = (
                (3).to_bytes(2, "big")
                + (16).to_bytes(2, "big")
                + b"\xff\xfe\x00\x00"
                + (1 << 16).to_bytes(4, "big")
            )
        else:
            rate = self.sample_rate << 16 if self.sample_rate < 0x10000 else 0
            fixed = (
                self.channel_count.to_bytes(2, "big")
                + self.sample_size.to_bytes(2, "big")
                + bytes(4)
                + rate.to_bytes(4, "big")
            )
        return (
            bytes(6)
            + self.data_reference_index.to_bytes(2, "big")
            + self.qt_version.to_bytes(2, "big")
            + bytes(6)
            + fixed
            + self.qt_extra
            + _write_children(self.children)
        )


_QT_EXTRA = {0: 0, 1: 16, 2: 36}


def _audio_parser(fmt: bytes) -> Callable[[Cursor], AudioSampleEntry]:
    def parse(cur: Cursor) -> AudioSampleEntry:
        cur.take(6, "reserved")
        dri = cur.u16()
        qt_version = cur.u16()
        cur.take(6, "reserved")
        channels, sample_size = cur.u16(), cur.u16()
        cur.take(4, "pre_defined")
        rate = cur.u32() >> 16
        if qt_version not in _QT_EXTRA:
            raise cur.error(f"unknown sound sample entry version {qt_version}")
        extra = cur.take(_QT_EXTRA[qt_version], "QuickTime sound description fields")
        if qt_version == 2:
            real_rate = _f64(extra[4:12])
            if not math.isfinite(real_rate) or not 0 < real_rate < 1 << 32:
                raise cur.error(f"sound description v2 has an unusable sample rate {real_rate}")
            rate = round(real_rate)
            channels = int.from_bytes(extra[12:16], "big")
        return AudioSampleEntry(fmt, channels, rate, _children_of(cur), dri, sample_size, qt_version, extra)

    return parse


def _f64(raw: bytes) -> float:
    return float(struct.unpack(">d", raw)[0])


@dataclass
class TextSampleEntry(Box):
    """wvtt (14496-30 §7.5) and stpp (§12.6.3.2) sample entries."""

    TYPE = b"wvtt"
    format: bytes = b"wvtt"
    namespace: str = ""
    schema_location: str = ""
    mime_types: str = ""
    children: list[Box] = field(default_factory=list)
    data_reference_index: int = 1

    @property
    def box_type(self) -> bytes:
        return self.format

    def payload(self) -> bytes:
        head = bytes(6) + self.data_reference_index.to_bytes(2, "big")
        if self.format == b"stpp":
            head += b"".join(
                s.encode() + b"\0" for s in (self.namespace, self.schema_location, self.mime_types)
            )
        return head + _write_children(self.children)


def _text_parser(fmt: bytes) -> Callable[[Cursor], TextSampleEntry]:
    def parse(cur: Cursor) -> TextSampleEntry:
        cur.take(6, "reserved")
        dri = cur.u16()
        ns = schema = mime = ""
        if fmt == b"stpp":
            ns, schema = cur.cstring(), cur.cstring()
            mime = cur.cstring() if cur.remaining else ""
        return TextSampleEntry(fmt, ns, schema, mime, _children_of(cur), dri)

    return parse


VIDEO_FORMATS = (b"avc1", b"avc3", b"hvc1", b"hev1", b"av01", b"vp09", b"encv")
AUDIO_FORMATS = (b"mp4a", b"Opus", b"ac-3", b"ec-3", b"enca")
TEXT_FORMATS = (b"wvtt", b"stpp")

# Sample entries share a class per media type and need their format code to parse.
_ENTRY_PARSERS: dict[bytes, Callable[[Cursor], Box]] = {
    **{f: _visual_parser(f) for f in VIDEO_FORMATS},
    **{f: _audio_parser(f) for f in AUDIO_FORMATS},
    **{f: _text_parser(f) for f in TEXT_FORMATS},
}


@register
@dataclass
class AVCConfigurationBox(Box):
    """avcC: AVCDecoderConfigurationRecord (14496-15 §5.3.3). ``trailer`` keeps the high-profile
    extension (chroma format, bit depths, SPS extensions) verbatim."""

    TYPE = b"avcC"
    profile: int = 0x64
    compatibility: int = 0
    level: int = 0x1F
    length_size: int = 4
    sps: list[bytes] = field(default_factory=list)
    pps: list[bytes] = field(default_factory=list)
    trailer: bytes = b""

    @classmethod
    def parse(cls, cur: Cursor) -> AVCConfigurationBox:
        if cur.u8() != 1:
            raise cur.error("avcC configurationVersion is not 1")
        profile, compat, level = cur.u8(), cur.u8(), cur.u8()
        length_size = (cur.u8() & 3) + 1
        sps = [cur.take(cur.u16(), "SPS") for _ in range(cur.u8() & 0x1F)]
        pps = [cur.take(cur.u16(), "PPS") for _ in range(cur.u8())]
        return cls(profile, compat, level, length_size, sps, pps, cur.rest())

    def payload(self) -> bytes:
        out = bytearray([1, self.profile, self.compatibility, self.level, 0xFC | (self.length_size - 1)])
        out.append(0xE0 | len(self.sps))
        for nal in self.sps:
            out += len(nal).to_bytes(2, "big") + nal
        out.append(len(self.pps))
        for nal in self.pps:
            out += len(nal).to_bytes(2, "big") + nal
        return bytes(out) + self.trailer

    def codec_string(self, fmt: bytes) -> str:
        """RFC 6381 §3.3: ``avc1.PPCCLL``."""
        return f"{fmt.decode()}.{self.profile:02x}{self.compatibility:02x}{self.level:02x}"


@dataclass
class HEVCNalArray:
    completeness: int
    nal_type: int
    nalus: list[bytes]


@register
@dataclass
class HEVCConfigurationBox(Box):
    """hvcC: HEVCDecoderConfigurationRecord (14496-15 §8.3.3)."""

    TYPE = b"hvcC"
    profile_space: int = 0
    tier: int = 0
    profile_idc: int = 1
    compatibility_flags: int = 0
    constraint_flags: int = 0
    level_idc: int = 0
    min_spatial_segmentation: int = 0
    parallelism_type: int = 0
    chroma_format: int = 1
    bit_depth_luma: int = 8
    bit_depth_chroma: int = 8
    avg_frame_rate: int = 0
    constant_frame_rate: int = 0
    temporal_layers: int = 1
    temporal_id_nested: int = 0
    length_size: int = 4
    arrays: list[HEVCNalArray] = field(default_factory=list)

    @classmethod
    def parse(cls, cur: Cursor) -> HEVCConfigurationBox:
        if cur.u8() != 1:
            raise cur.error("hvcC configurationVersion is not 1")
        b = cur.u8()
        compat = cur.u32()
        constraint = cur.uint(6)
        level = cur.u8()
        min_seg = cur.u16() & 0x0FFF
        parallel = cur.u8() & 3
        chroma = cur.u8() & 3
        luma = (cur.u8() & 7) + 8
        chroma_depth = (cur.u8() & 7) + 8
        avg_rate = cur.u16()
        last = cur.u8()
        arrays = []
        for _ in range(cur.u8()):
            head = cur.u8()
            nalus = [cur.take(cur.u16(), "NAL unit") for _ in range(cur.u16())]
            arrays.append(HEVCNalArray(head >> 7, head & 0x3F, nalus))
        return cls(
            b >> 6,
            (b >> 5) & 1,
            b & 0x1F,
            compat,
            constraint,
            level,
            min_seg,
            parallel,
            chroma,
            luma,
            chroma_depth,
            avg_rate,
            last >> 6,
            (last >> 3) & 7,
            (last >> 2) & 1,
            (last & 3) + 1,
            arrays,
        )

    def payload(self) -> bytes:
        out = bytearray([1, (self.profile_space << 6) | (self.tier << 5) | self.profile_idc])
        out += self.compatibility_flags.to_bytes(4, "big") + self.constraint_flags.to_bytes(6, "big")
        out.append(self.level_idc)
        out += (0xF000 | self.min_spatial_segmentation).to_bytes(2, "big")
        out += bytes([0xFC | self.parallelism_type, 0xFC | self.chroma_format])
        out += bytes([0xF8 | (self.bit_depth_luma - 8), 0xF8 | (self.bit_depth_chroma - 8)])
        out += self.avg_frame_rate.to_bytes(2, "big")
        out.append(
            (self.constant_frame_rate << 6)
            | (self.temporal_layers << 3)
            | (self.temporal_id_nested << 2)
            | (self.length_size - 1)
        )
        out.append(len(self.arrays))
        for arr in self.arrays:
            out.append((arr.completeness << 7) | arr.nal_type)
            out += len(arr.nalus).to_bytes(2, "big")
            for nal in arr.nalus:
                out += len(nal).to_bytes(2, "big") + nal
        return bytes(out)

    def codec_string(self, fmt: bytes) -> str:
        """ISO/IEC 14496-15 Annex E.3:
        ``hvc1.<space><profile>.<compat flags reversed>.<tier><level>.<constraint bytes>``."""
        space = "" if self.profile_space == 0 else "ABC"[self.profile_space - 1]
        compat = int(f"{self.compatibility_flags:032b}"[::-1], 2)
        constraints = self.constraint_flags.to_bytes(6, "big").rstrip(b"\0")
        parts = [
            fmt.decode(),
            f"{space}{self.profile_idc}",
            f"{compat:X}",
            f"{'LH'[self.tier]}{self.level_idc}",
        ]
        parts += [f"{c:X}" for c in constraints]
        return ".".join(parts)


@register
@dataclass
class AV1CodecConfigurationBox(Box):
    """av1C: AV1CodecConfigurationRecord (AV1 Codec ISO Media File Format Binding v1.2.0 §2.3.3).
    ``config_obus`` holds the configOBUs verbatim (a Sequence Header OBU first, when present; see
    :mod:`media.av1`). ``initial_presentation_delay_minus_one`` is ``None`` when not present."""

    TYPE = b"av1C"
    seq_profile: int = 0
    seq_level_idx_0: int = 0
    seq_tier_0: int = 0
    high_bitdepth: int = 0
    twelve_bit: int = 0
    monochrome: int = 0
    chroma_subsampling_x: int = 1
    chroma_subsampling_y: int = 1
    chroma_sample_position: int = 0
    initial_presentation_delay_minus_one: int | None = None
    config_obus: bytes = b""

    @classmethod
    def parse(cls, cur: Cursor) -> AV1CodecConfigurationBox:
        head = cur.u8()
        if head != 0x81:
            raise cur.error(f"av1C marker and version are {head >> 7} and {head & 0x7F}, expected 1 and 1")
        b1, b2, b3 = cur.u8(), cur.u8(), cur.u8()
        delay = b3 & 0x0F if b3 & 0x10 else None
        return cls(
            b1 >> 5,
            b1 & 0x1F,
            b2 >> 7,
            (b2 >> 6) & 1,
            (b2 >> 5) & 1,
            (b2 >> 4) & 1,
            (b2 >> 3) & 1,
            (b2 >> 2) & 1,
            b2 & 3,
            delay,
            cur.rest(),
        )

    def payload(self) -> bytes:
        b2 = (
            (self.seq_tier_0 << 7)
            | (self.high_bitdepth << 6)
            | (self.twelve_bit << 5)
            | (self.monochrome << 4)
            | (self.chroma_subsampling_x << 3)
            | (self.chroma_subsampling_y << 2)
            | self.chroma_sample_position
        )
        delay = self.initial_presentation_delay_minus_one
        b3 = 0 if delay is None else 0x10 | delay
        return bytes([0x81, (self.seq_profile << 5) | self.seq_level_idx_0, b2, b3]) + self.config_obus

    @property
    def bit_depth(self) -> int:
        """BitDepth of the color_config (AV1 specification §5.5.2): 12, 10 or 8."""
        return 12 if self.twelve_bit else 10 if self.high_bitdepth else 8


@register
@dataclass
class OpusSpecificBox(Box):
    """dOps: OpusSpecificBox (Encapsulation of Opus in ISO Base Media File Format v0.6.8 §4.3.2), the
    big-endian form of the OpusHead fields (RFC 7845 §5.1, :mod:`media.opus`). The channel mapping
    table (``stream_count``, ``coupled_count``, ``channel_mapping``) is present only when
    ``channel_mapping_family`` is not 0; the stream and coupled counts are ``None`` otherwise."""

    TYPE = b"dOps"
    output_channel_count: int = 2
    pre_skip: int = 312
    input_sample_rate: int = 48000
    output_gain: int = 0  # Q7.8 dB, signed
    channel_mapping_family: int = 0
    stream_count: int | None = None
    coupled_count: int | None = None
    channel_mapping: bytes = b""

    @classmethod
    def parse(cls, cur: Cursor) -> OpusSpecificBox:
        version = cur.u8()
        if version != 0:
            raise cur.error(f"dOps Version {version} is not 0")
        channels, pre_skip, rate, gain, family = cur.u8(), cur.u16(), cur.u32(), cur.i16(), cur.u8()
        if family == 0:
            return cls(channels, pre_skip, rate, gain, family)
        streams, coupled = cur.u8(), cur.u8()
        mapping = cur.take(channels, "ChannelMapping")
        return cls(channels, pre_skip, rate, gain, family, streams, coupled, mapping)

    def payload(self) -> bytes:
        out = (
            bytes([0, self.output_channel_count])
            + self.pre_skip.to_bytes(2, "big")
            + self.input_sample_rate.to_bytes(4, "big")
            + self.output_gain.to_bytes(2, "big", signed=True)
            + bytes([self.channel_mapping_family])
        )
        if self.channel_mapping_family == 0:
            return out
        if self.stream_count is None or self.coupled_count is None:
            raise BoxError(
                f"dOps ChannelMappingFamily {self.channel_mapping_family} needs StreamCount and CoupledCount",
                path="dOps",
            )
        if len(self.channel_mapping) != self.output_channel_count:
            raise BoxError(
                f"dOps ChannelMapping has {len(self.channel_mapping)} entries for "
                f"{self.output_channel_count} output channels",
                path="dOps",
            )
        return out + bytes([self.stream_count, self.coupled_count]) + self.channel_mapping


def _read_descriptor(cur: Cursor) -> tuple[int, Cursor]:
    tag = cur.u8()
    size = 0
    for _ in range(4):
        b = cur.u8()
        size = (size << 7) | (b & 0x7F)
        if not b & 0x80:
            break
    start = cur.offset
    return tag, Cursor(cur.take(size, f"descriptor tag {tag}"), path=cur.path, base=start)


def _write_descriptor(tag: int, body: bytes) -> bytes:
    n = len(body)
    size = bytes([0x80 | ((n >> 21) & 0x7F), 0x80 | ((n >> 14) & 0x7F), 0x80 | ((n >> 7) & 0x7F), n & 0x7F])
    return bytes([tag]) + size + body


@register
@dataclass
class ESDescriptorBox(Box):
    """esds (14496-14 §5.6): the ES_Descriptor with its DecoderConfigDescriptor (14496-1 §7.2.6)."""

    TYPE = b"esds"
    object_type: int = 0x40  # MPEG-4 audio
    stream_type: int = 5  # audio stream
    buffer_size: int = 0
    max_bitrate: int = 0
    avg_bitrate: int = 0
    decoder_specific_info: bytes = b""
    es_id: int = 0

    @classmethod
    def parse(cls, cur: Cursor) -> ESDescriptorBox:
        cur.full_header()
        tag, es = _read_descriptor(cur)
        if tag != 3:
            raise cur.error(f"esds holds descriptor tag {tag}, expected ES_Descriptor (3)")
        es_id = es.u16()
        es_flags = es.u8()
        if es_flags & 0x80:
            es.u16()
        if es_flags & 0x40:
            es.take(es.u8(), "URL")
        if es_flags & 0x20:
            es.u16()
        box = cls(es_id=es_id)
        found = False
        while es.remaining:
            tag, sub = _read_descriptor(es)
            if tag != 4:
                continue
            found = True
            box.object_type = sub.u8()
            box.stream_type = sub.u8() >> 2
            box.buffer_size = sub.u24()
            box.max_bitrate, box.avg_bitrate = sub.u32(), sub.u32()
            while sub.remaining:
                dtag, dsi = _read_descriptor(sub)
                if dtag == 5:
                    box.decoder_specific_info = dsi.rest()
        if not found:
            raise cur.error("esds has no DecoderConfigDescriptor")
        return box

    def payload(self) -> bytes:
        dsi = _write_descriptor(5, self.decoder_specific_info) if self.decoder_specific_info else b""
        dcd = _write_descriptor(
            4,
            bytes([self.object_type, (self.stream_type << 2) | 1])
            + self.buffer_size.to_bytes(3, "big")
            + self.max_bitrate.to_bytes(4, "big")
            + self.avg_bitrate.to_bytes(4, "big")
            + dsi,
        )
        sl = _write_descriptor(6, b"\x02")
        return full_header(0, 0) + _write_descriptor(3, self.es_id.to_bytes(2, "big") + b"\0" + dcd + sl)


@register
@dataclass
class BitRateBox(Box):
    """btrt (§8.5.2.2)."""

    TYPE = b"btrt"
    buffer_size: int = 0
    max_bitrate: int = 0
    avg_bitrate: int = 0

    @classmethod
    def parse(cls, cur: Cursor) -> BitRateBox:
        return cls(cur.u32(), cur.u32(), cur.u32())

    def payload(self) -> bytes:
        return b"".join(v.to_bytes(4, "big") for v in (self.buffer_size, self.max_bitrate, self.avg_bitrate))


# ---------------------------------------------------------------------------------------------
# Fragment boxes


@register
@dataclass
class MovieExtendsHeaderBox(Box):
    """mehd (§8.8.2)."""

    TYPE = b"mehd"
    fragment_duration: int = 0
    version: int = 0

    @classmethod
    def parse(cls, cur: Cursor) -> MovieExtendsHeaderBox:
        version, _ = cur.full_header()
        return cls(cur.uint(8 if version == 1 else 4), version)

    def payload(self) -> bytes:
        return full_header(self.version, 0) + _write_times(self.version, self.fragment_duration)


@register
@dataclass
class TrackExtendsBox(Box):
    """trex (§8.8.3): per-track sample defaults for fragments."""

    TYPE = b"trex"
    track_id: int = 1
    default_sample_description_index: int = 1
    default_sample_duration: int = 0
    default_sample_size: int = 0
    default_sample_flags: int = 0

    @classmethod
    def parse(cls, cur: Cursor) -> TrackExtendsBox:
        cur.full_header()
        return cls(cur.u32(), cur.u32(), cur.u32(), cur.u32(), cur.u32())

    def payload(self) -> bytes:
        values = (
            self.track_id,
            self.default_sample_description_index,
            self.default_sample_duration,
            self.default_sample_size,
            self.default_sample_flags,
        )
        return full_header(0, 0) + b"".join(v.to_bytes(4, "big") for v in values)


@register
@dataclass
class MovieFragmentHeaderBox(Box):
    """mfhd (§8.8.5)."""

    TYPE = b"mfhd"
    sequence_number: int = 1

    @classmethod
    def parse(cls, cur: Cursor) -> MovieFragmentHeaderBox:
        cur.full_header()
        return cls(cur.u32())

    def payload(self) -> bytes:
        return full_header(0, 0) + self.sequence_number.to_bytes(4, "big")


TFHD_BASE_DATA_OFFSET = 0x01
TFHD_SAMPLE_DESCRIPTION_INDEX = 0x02
TFHD_DEFAULT_DURATION = 0x08
TFHD_DEFAULT_SIZE = 0x10
TFHD_DEFAULT_FLAGS = 0x20
TFHD_DURATION_IS_EMPTY = 0x10000
TFHD_DEFAULT_BASE_IS_MOOF = 0x20000


@register
@dataclass
class TrackFragmentHeaderBox(Box):
    """tfhd (§8.8.7). Optional fields are ``None`` when absent; the flags follow from them."""

    TYPE = b"tfhd"
    track_id: int = 1
    base_data_offset: int | None = None
    sample_description_index: int | None = None
    default_sample_duration: int | None = None
    default_sample_size: int | None = None
    default_sample_flags: int | None = None
    default_base_is_moof: bool = True
    duration_is_empty: bool = False

    _OPTIONAL: ClassVar[tuple[tuple[str, int, int], ...]] = (
        ("base_data_offset", TFHD_BASE_DATA_OFFSET, 8),
        ("sample_description_index", TFHD_SAMPLE_DESCRIPTION_INDEX, 4),
        ("default_sample_duration", TFHD_DEFAULT_DURATION, 4),
        ("default_sample_size", TFHD_DEFAULT_SIZE, 4),
        ("default_sample_flags", TFHD_DEFAULT_FLAGS, 4),
    )

    @classmethod
    def parse(cls, cur: Cursor) -> TrackFragmentHeaderBox:
        _, flags = cur.full_header()
        box = cls(
            cur.u32(),
            default_base_is_moof=bool(flags & TFHD_DEFAULT_BASE_IS_MOOF),
            duration_is_empty=bool(flags & TFHD_DURATION_IS_EMPTY),
        )
        for name, bit, size in cls._OPTIONAL:
            if flags & bit:
                setattr(box, name, cur.uint(size))
        return box

    @property
    def flags(self) -> int:
        flags = TFHD_DEFAULT_BASE_IS_MOOF if self.default_base_is_moof else 0
        flags |= TFHD_DURATION_IS_EMPTY if self.duration_is_empty else 0
        for name, bit, _ in self._OPTIONAL:
            if getattr(self, name) is not None:
                flags |= bit
        return flags

    def payload(self) -> bytes:
        out = full_header(0, self.flags) + self.track_id.to_bytes(4, "big")
        for name, _, size in self._OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                out += value.to_bytes(size, "big")
        return out


@register
@dataclass
class TrackFragmentDecodeTimeBox(Box):
    """tfdt (§8.8.12): decode time of the fragment's first sample, in the media timescale."""

    TYPE = b"tfdt"
    base_media_decode_time: int = 0
    version: int = 1

    @classmethod
    def parse(cls, cur: Cursor) -> TrackFragmentDecodeTimeBox:
        version, _ = cur.full_header()
        return cls(cur.uint(8 if version == 1 else 4), version)

    def payload(self) -> bytes:
        return full_header(self.version, 0) + _write_times(self.version, self.base_media_decode_time)


TRUN_DATA_OFFSET = 0x01
TRUN_FIRST_SAMPLE_FLAGS = 0x04
TRUN_DURATION = 0x100
TRUN_SIZE = 0x200
TRUN_FLAGS = 0x400
TRUN_CTO = 0x800

# A trun without per-sample fields states its sample count in 4 bytes; this bounds what it can make
# the reader allocate. A 2 s fragment of 120 fps video has 240 samples.
MAX_TRUN_SAMPLES = 1 << 16

SAMPLE_NON_SYNC = 0x00010000
SAMPLE_DEPENDS_ON_OTHERS = 0x01000000
SAMPLE_DEPENDS_ON_NONE = 0x02000000
SYNC_SAMPLE_FLAGS = SAMPLE_DEPENDS_ON_NONE
NON_SYNC_SAMPLE_FLAGS = SAMPLE_DEPENDS_ON_OTHERS | SAMPLE_NON_SYNC


@dataclass
class TrunEntry:
    """One sample of a trun; fields absent from the box are ``None``."""

    duration: int | None = None
    size: int | None = None
    flags: int | None = None
    composition_offset: int | None = None

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in dataclasses.asdict(self).items() if v is not None)


@register
@dataclass
class TrackRun(Box):
    """trun (§8.8.8). ``flags`` states which per-sample fields are present; version 1 makes
    composition offsets signed."""

    TYPE = b"trun"
    flags: int = TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS
    samples: list[TrunEntry] = field(default_factory=list)
    data_offset: int | None = 0
    first_sample_flags: int | None = None
    version: int = 0

    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = (
        ("duration", TRUN_DURATION),
        ("size", TRUN_SIZE),
        ("flags", TRUN_FLAGS),
        ("composition_offset", TRUN_CTO),
    )

    @classmethod
    def parse(cls, cur: Cursor) -> TrackRun:
        version, flags = cur.full_header()
        count = cur.u32()
        data_offset = cur.i32() if flags & TRUN_DATA_OFFSET else None
        first = cur.u32() if flags & TRUN_FIRST_SAMPLE_FLAGS else None
        per_sample = sum(4 for _, bit in cls._FIELDS if flags & bit)
        if count > MAX_TRUN_SAMPLES:
            raise cur.error(f"sample_count {count} exceeds the limit of {MAX_TRUN_SAMPLES}")
        if count * per_sample != cur.remaining:
            raise cur.error(f"sample_count {count} needs {count * per_sample} bytes, {cur.remaining} present")
        samples = []
        for _ in range(count):
            entry = TrunEntry()
            for name, bit in cls._FIELDS:
                if flags & bit:
                    value = cur.i32() if name == "composition_offset" and version == 1 else cur.u32()
                    setattr(entry, name, value)
            samples.append(entry)
        return cls(flags, samples, data_offset, first, version)

    def payload(self) -> bytes:
        out = bytearray(full_header(self.version, self.flags) + len(self.samples).to_bytes(4, "big"))
        if self.flags & TRUN_DATA_OFFSET:
            out += (self.data_offset or 0).to_bytes(4, "big", signed=True)
        if self.flags & TRUN_FIRST_SAMPLE_FLAGS:
            out += (self.first_sample_flags or 0).to_bytes(4, "big")
        names = [name for name, bit in self._FIELDS if self.flags & bit]
        if not names:
            return bytes(out)
        signed = "i" if self.version == 1 else "I"
        row = struct.Struct(">" + "".join(signed if n == "composition_offset" else "I" for n in names))
        values = operator.attrgetter(*names)
        try:
            if len(names) == 1:
                out += b"".join(row.pack(values(s)) for s in self.samples)
            else:
                out += b"".join(row.pack(*values(s)) for s in self.samples)
        except struct.error as exc:
            missing = next((n for n in names for e in self.samples if getattr(e, n) is None), None)
            if missing is None:
                raise BoxError(f"trun sample field out of range: {exc}", path="trun") from exc
            raise BoxError(f"trun sample lacks {missing} although flags announce it", path="trun") from exc
        return bytes(out)

    def describe(self) -> str:
        extra = f" data_offset={self.data_offset}" if self.data_offset is not None else ""
        if self.first_sample_flags is not None:
            extra += f" first_sample_flags={self.first_sample_flags:#x}"
        return f"version={self.version} flags={self.flags:#x} samples={len(self.samples)}{extra}"


@register
@dataclass
class ProducerReferenceTimeBox(Box):
    """prft (§8.16.5): NTP wall-clock time of a media time."""

    TYPE = b"prft"
    reference_track_id: int = 1
    ntp_timestamp: int = 0
    media_time: int = 0
    version: int = 1
    flags: int = 0

    @classmethod
    def parse(cls, cur: Cursor) -> ProducerReferenceTimeBox:
        version, flags = cur.full_header()
        return cls(cur.u32(), cur.u64(), cur.uint(8 if version == 1 else 4), version, flags)

    def payload(self) -> bytes:
        return (
            full_header(self.version, self.flags)
            + self.reference_track_id.to_bytes(4, "big")
            + self.ntp_timestamp.to_bytes(8, "big")
            + _write_times(self.version, self.media_time)
        )


@register
@dataclass
class EventMessageBox(Box):
    """emsg (23009-1 §5.10.3.3), versions 0 (time delta) and 1 (absolute presentation time)."""

    TYPE = b"emsg"
    scheme_id_uri: str = ""
    value: str = ""
    timescale: int = 1000
    presentation_time: int = 0
    event_duration: int = 0
    id: int = 0
    message_data: bytes = b""
    version: int = 1

    @classmethod
    def parse(cls, cur: Cursor) -> EventMessageBox:
        version, _ = cur.full_header()
        if version == 0:
            scheme, value = cur.cstring(), cur.cstring()
            timescale, delta, duration, ident = cur.u32(), cur.u32(), cur.u32(), cur.u32()
            return cls(scheme, value, timescale, delta, duration, ident, cur.rest(), 0)
        if version != 1:
            raise cur.error(f"emsg version {version} is not 0 or 1")
        timescale, time, duration, ident = cur.u32(), cur.u64(), cur.u32(), cur.u32()
        scheme, value = cur.cstring(), cur.cstring()
        return cls(scheme, value, timescale, time, duration, ident, cur.rest(), 1)

    def payload(self) -> bytes:
        strings = self.scheme_id_uri.encode() + b"\0" + self.value.encode() + b"\0"
        if self.version == 0:
            nums = b"".join(
                v.to_bytes(4, "big")
                for v in (self.timescale, self.presentation_time, self.event_duration, self.id)
            )
            return full_header(0, 0) + strings + nums + self.message_data
        return (
            full_header(1, 0)
            + self.timescale.to_bytes(4, "big")
            + self.presentation_time.to_bytes(8, "big")
            + self.event_duration.to_bytes(4, "big")
            + self.id.to_bytes(4, "big")
            + strings
            + self.message_data
        )


# ---------------------------------------------------------------------------------------------
# Smooth Streaming uuid boxes (MS-SSTR §2.2.4, Azure fragmented MP4 live ingest §2.2)

TFXD_UUID = uuid.UUID("6d1d9b05-42d5-44e6-80e2-141daff757b2").bytes
TFRF_UUID = uuid.UUID("d4807ef2-ca39-4695-8e54-26cb9e46a79f").bytes
LIVE_SERVER_MANIFEST_UUID = uuid.UUID("a5d40b30-e814-11dd-ba2f-0800200c9a66").bytes
PIFF_SENC_UUID = uuid.UUID("a2394f52-5a9b-4f14-a244-6c427c648df4").bytes  # PIFF 1.1 SampleEncryptionBox
UUID_NAMES = {
    TFXD_UUID: "tfxd",
    TFRF_UUID: "tfrf",
    LIVE_SERVER_MANIFEST_UUID: "lsm ",
    PIFF_SENC_UUID: "senc(PIFF)",
}


@register
@dataclass
class TfxdBox(Box):
    """TrackFragmentExtendedHeaderBox: absolute time and duration of the fragment."""

    TYPE = UUID
    USERTYPE = TFXD_UUID
    absolute_time: int = 0
    duration: int = 0
    version: int = 1

    @classmethod
    def parse(cls, cur: Cursor) -> TfxdBox:
        version, _ = cur.full_header()
        size = 8 if version == 1 else 4
        return cls(cur.uint(size), cur.uint(size), version)

    def payload(self) -> bytes:
        return full_header(self.version, 0) + _write_times(self.version, self.absolute_time, self.duration)


@register
@dataclass
class TfrfBox(Box):
    """TfrfBox: (time, duration) of the fragments that follow, for Smooth clients' look-ahead."""

    TYPE = UUID
    USERTYPE = TFRF_UUID
    entries: list[tuple[int, int]] = field(default_factory=list)
    version: int = 1

    @classmethod
    def parse(cls, cur: Cursor) -> TfrfBox:
        version, _ = cur.full_header()
        size = 8 if version == 1 else 4
        return cls([(cur.uint(size), cur.uint(size)) for _ in range(cur.u8())], version)

    def payload(self) -> bytes:
        body = b"".join(_write_times(self.version, t, d) for t, d in self.entries)
        return full_header(self.version, 0) + bytes([len(self.entries)]) + body


@register
@dataclass
class LiveServerManifestBox(Box):
    """The live server manifest: SMIL XML describing the tracks of a Smooth ingest stream."""

    TYPE = UUID
    USERTYPE = LIVE_SERVER_MANIFEST_UUID
    xml: str = ""

    @classmethod
    def parse(cls, cur: Cursor) -> LiveServerManifestBox:
        cur.full_header()
        raw = cur.rest()
        try:
            return cls(raw.decode("utf-8").rstrip("\0"))
        except UnicodeDecodeError as exc:
            raise cur.error(f"live server manifest is not UTF-8: {exc.reason}") from None

    def payload(self) -> bytes:
        return full_header(0, 0) + self.xml.encode()

    def describe(self) -> str:
        return f"({len(self.xml)} characters of SMIL)"


# ---------------------------------------------------------------------------------------------
# Common Encryption (ISO/IEC 23001-7) and the protection boxes of ISO/IEC 14496-12 §8.12

KID_SIZE = 16
SCHM_URI_PRESENT = 0x1
SENC_SUBSAMPLES = 0x2  # 23001-7 §7.2: entries carry subsample maps
PIFF_SENC_OVERRIDE = 0x1  # PIFF 1.1: AlgorithmID, IV_size and KID follow the flags
AUX_INFO_TYPE_PRESENT = 0x1  # saiz/saio: aux_info_type and its parameter are present
GROUP_IN_FRAGMENT = 0x10000  # sbgp in a traf: indexes above this count the traf's own sgpd (§8.9.4)
SEIG = b"seig"


@register
@dataclass
class OriginalFormatBox(Box):
    """frma (14496-12 §8.12.2): the format a protected sample entry had before it became ``encv`` or
    ``enca``."""

    TYPE = b"frma"
    data_format: bytes = b"avc1"

    @classmethod
    def parse(cls, cur: Cursor) -> OriginalFormatBox:
        return cls(cur.take(4, "data_format"))

    def payload(self) -> bytes:
        if len(self.data_format) != 4:
            raise BoxError(f"frma data_format {self.data_format!r} is not a four-character code", path="frma")
        return self.data_format


@register
@dataclass
class SchemeTypeBox(Box):
    """schm (14496-12 §8.12.5): the protection scheme (``cenc``, ``cbcs``, … of 23001-7 §4) and its
    version, 0x00010000 for Common Encryption; flag 1 adds a scheme URI."""

    TYPE = b"schm"
    scheme_type: bytes = b"cenc"
    scheme_version: int = 0x10000
    scheme_uri: str | None = None

    @classmethod
    def parse(cls, cur: Cursor) -> SchemeTypeBox:
        _, flags = cur.full_header()
        scheme, version = cur.take(4, "scheme_type"), cur.u32()
        return cls(scheme, version, cur.cstring() if flags & SCHM_URI_PRESENT else None)

    def payload(self) -> bytes:
        flags = SCHM_URI_PRESENT if self.scheme_uri is not None else 0
        uri = b"" if self.scheme_uri is None else self.scheme_uri.encode() + b"\0"
        return full_header(0, flags) + self.scheme_type + self.scheme_version.to_bytes(4, "big") + uri


def _read_protection(cur: Cursor) -> tuple[int, int, bytes, bytes]:
    """isProtected, Per_Sample_IV_Size, KID and the constant IV (present when protected with an IV
    size of 0): the fields ``tenc`` (23001-7 §8.2.2) and ``seig`` (§6.1) share."""
    protected = cur.u8()
    iv_size = cur.u8()
    if iv_size not in (0, 8, 16):
        raise cur.error(f"Per_Sample_IV_Size {iv_size} is not 0, 8 or 16")
    kid = cur.take(KID_SIZE, "KID")
    constant_iv = b""
    if protected == 1 and iv_size == 0:
        size = cur.u8()
        if size not in (8, 16):
            raise cur.error(f"constant_IV_size {size} is not 8 or 16")
        constant_iv = cur.take(size, "constant_IV")
    return protected, iv_size, kid, constant_iv


def _write_protection(protected: int, iv_size: int, kid: bytes, constant_iv: bytes, path: str) -> bytes:
    if len(kid) != KID_SIZE:
        raise BoxError(f"KID is {len(kid)} bytes, not {KID_SIZE}", path=path)
    out = bytes([protected, iv_size]) + kid
    if protected == 1 and iv_size == 0:
        if len(constant_iv) not in (8, 16):
            raise BoxError(f"constant IV is {len(constant_iv)} bytes, not 8 or 16", path=path)
        return out + bytes([len(constant_iv)]) + constant_iv
    if constant_iv:
        raise BoxError("a constant IV needs isProtected 1 and Per_Sample_IV_Size 0", path=path)
    return out


@register
@dataclass
class TrackEncryptionBox(Box):
    """tenc (23001-7 §8.2): a protected track's defaults: whether samples are protected, the size of
    their IVs in ``senc`` (0: every sample uses ``default_constant_iv``, §9.1), the default KID, and in
    version 1 the crypt:skip pattern in 16-byte blocks of the pattern schemes (§9.6)."""

    TYPE = b"tenc"
    default_kid: bytes = bytes(KID_SIZE)
    default_per_sample_iv_size: int = 8
    default_is_protected: int = 1
    default_crypt_byte_block: int = 0
    default_skip_byte_block: int = 0
    default_constant_iv: bytes = b""
    version: int = 0

    @classmethod
    def parse(cls, cur: Cursor) -> TrackEncryptionBox:
        version, _ = cur.full_header()
        if version > 1:
            raise cur.error(f"tenc version {version} is not 0 or 1")
        cur.u8()  # reserved
        pattern = cur.u8()  # reserved in version 0
        crypt, skip = (pattern >> 4, pattern & 0xF) if version else (0, 0)
        protected, iv_size, kid, constant_iv = _read_protection(cur)
        return cls(kid, iv_size, protected, crypt, skip, constant_iv, version)

    def payload(self) -> bytes:
        pattern = _pattern_byte(self.default_crypt_byte_block, self.default_skip_byte_block, "tenc")
        if self.version == 0 and pattern:
            raise BoxError("tenc version 0 cannot hold a crypt:skip pattern", path="tenc")
        return (
            full_header(self.version, 0)
            + bytes([0, pattern])
            + _write_protection(
                self.default_is_protected,
                self.default_per_sample_iv_size,
                self.default_kid,
                self.default_constant_iv,
                "tenc",
            )
        )


def _pattern_byte(crypt: int, skip: int, path: str) -> int:
    if not (0 <= crypt <= 15 and 0 <= skip <= 15):
        raise BoxError(f"crypt:skip pattern {crypt}:{skip} does not fit 4 bits each", path=path)
    return (crypt << 4) | skip


@dataclass(frozen=True, slots=True)
class CencSampleEncryptionInformationGroupEntry:
    """The ``seig`` sample group entry (23001-7 §6): another KID, IV size, constant IV or pattern for
    the samples mapped to it (key rotation). Not a box: an ``sgpd`` entry."""

    kid: bytes
    per_sample_iv_size: int = 8
    is_protected: int = 1
    crypt_byte_block: int = 0
    skip_byte_block: int = 0
    constant_iv: bytes = b""

    @classmethod
    def parse(cls, data: bytes, *, path: str = "sgpd/seig") -> CencSampleEncryptionInformationGroupEntry:
        cur = Cursor(data, path=path, base=0)
        cur.u8()  # reserved
        pattern = cur.u8()
        protected, iv_size, kid, constant_iv = _read_protection(cur)
        cur.expect_end()
        return cls(kid, iv_size, protected, pattern >> 4, pattern & 0xF, constant_iv)

    def __bytes__(self) -> bytes:
        pattern = _pattern_byte(self.crypt_byte_block, self.skip_byte_block, "seig")
        protection = _write_protection(
            self.is_protected, self.per_sample_iv_size, self.kid, self.constant_iv, "seig"
        )
        return bytes([0, pattern]) + protection


@register
@dataclass
class ProtectionSystemSpecificHeaderBox(Box):
    """pssh (23001-7 §8.1): what one DRM system (``system_id``) needs to find the keys; version 1
    lists the KIDs it covers."""

    TYPE = b"pssh"
    system_id: bytes = bytes(16)
    data: bytes = b""
    kids: list[bytes] = field(default_factory=list)
    version: int = 0

    @classmethod
    def parse(cls, cur: Cursor) -> ProtectionSystemSpecificHeaderBox:
        version, _ = cur.full_header()
        if version > 1:
            raise cur.error(f"pssh version {version} is not 0 or 1")
        system = cur.take(16, "SystemID")
        kids: list[bytes] = []
        if version == 1:
            raw = cur.take(cur.u32() * KID_SIZE, "KIDs")
            kids = [raw[i : i + KID_SIZE] for i in range(0, len(raw), KID_SIZE)]
        return cls(system, cur.take(cur.u32(), "Data"), kids, version)

    def payload(self) -> bytes:
        if len(self.system_id) != 16:
            raise BoxError(f"pssh SystemID is {len(self.system_id)} bytes, not 16", path="pssh")
        if any(len(k) != KID_SIZE for k in self.kids):
            raise BoxError(f"pssh KIDs must be {KID_SIZE} bytes each", path="pssh")
        if self.version == 0 and self.kids:
            raise BoxError("pssh version 0 cannot list KIDs", path="pssh")
        kids = len(self.kids).to_bytes(4, "big") + b"".join(self.kids) if self.version else b""
        return (
            full_header(self.version, 0)
            + self.system_id
            + kids
            + len(self.data).to_bytes(4, "big")
            + self.data
        )


class Subsample(NamedTuple):
    """One subsample of a sample encryption entry (23001-7 §7.2): ``clear`` bytes (16-bit), then
    ``protected`` bytes (32-bit)."""

    clear: int
    protected: int


_SUBSAMPLE = struct.Struct(">HI")


@dataclass(frozen=True, slots=True)
class SampleEncryptionEntry:
    """The encryption information of one sample (23001-7 §7.2): its IV (empty with a constant IV)
    and, for subsample encryption, its subsample map. Also the layout of one sample's auxiliary
    information (§7.1), which ``saiz`` sizes."""

    iv: bytes = b""
    subsamples: tuple[Subsample, ...] = ()

    def to_bytes(self, with_subsamples: bool) -> bytes:
        if not with_subsamples:
            return self.iv
        try:
            table = b"".join(_SUBSAMPLE.pack(*s) for s in self.subsamples)
        except struct.error as exc:
            raise BoxError(f"subsample out of range: {exc}", path="senc") from None
        return self.iv + len(self.subsamples).to_bytes(2, "big") + table


def read_sample_encryption_entry(
    data: bytes, pos: int, iv_size: int, with_subsamples: bool
) -> tuple[SampleEncryptionEntry, int]:
    """The entry at ``data[pos:]`` (23001-7 §7.2) and the position after it; a :class:`BoxError`
    saying what is missing when the bytes end early."""
    end = pos + iv_size + (2 if with_subsamples else 0)
    if end > len(data):
        raise BoxError(f"entry needs {end - pos} bytes at {pos}, {len(data) - pos} left", path="senc")
    iv = data[pos : pos + iv_size]
    if not with_subsamples:
        return SampleEncryptionEntry(iv), end
    count = int.from_bytes(data[end - 2 : end], "big")
    stop = end + count * _SUBSAMPLE.size
    if stop > len(data):
        raise BoxError(
            f"{count} subsamples need {count * _SUBSAMPLE.size} bytes at {end}, {len(data) - end} left",
            path="senc",
        )
    subsamples = tuple(map(Subsample._make, _SUBSAMPLE.iter_unpack(data[end:stop])))
    return SampleEncryptionEntry(iv, subsamples), stop


@register
@dataclass
class SampleEncryptionBox(Box):
    """senc (23001-7 §7.2): the IV and subsample map of each sample of a fragment. The IV size is not
    in the box (it is the track's ``tenc`` default, or a ``seig`` group's), so the entries are kept as
    bytes until :meth:`entries` is told the sizes; :meth:`of` writes a box from entries."""

    TYPE = b"senc"
    sample_count: int = 0
    data: bytes = b""
    flags: int = 0
    version: int = 0

    @classmethod
    def parse(cls, cur: Cursor) -> SampleEncryptionBox:
        version, flags = cur.full_header()
        return cls(cur.u32(), cur.rest(), flags, version)

    @classmethod
    def of(cls, entries: Sequence[SampleEncryptionEntry], *, subsamples: bool) -> SampleEncryptionBox:
        data = b"".join(e.to_bytes(subsamples) for e in entries)
        return cls(len(entries), data, SENC_SUBSAMPLES if subsamples else 0)

    @property
    def has_subsamples(self) -> bool:
        return bool(self.flags & SENC_SUBSAMPLES)

    def payload(self) -> bytes:
        return full_header(self.version, self.flags) + self.sample_count.to_bytes(4, "big") + self.data

    def entries(self, iv_size: int | Sequence[int]) -> list[SampleEncryptionEntry]:
        """The entries, reading ``iv_size`` bytes of IV for every sample, or ``iv_size[i]`` for sample
        ``i``; every byte must belong to an entry."""
        if self.sample_count > MAX_TRUN_SAMPLES:
            raise BoxError(f"sample_count {self.sample_count} exceeds {MAX_TRUN_SAMPLES}", path=self.name)
        sizes = [iv_size] * self.sample_count if isinstance(iv_size, int) else list(iv_size)
        if len(sizes) != self.sample_count:
            raise BoxError(
                f"{self.name} has {self.sample_count} entries for {len(sizes)} samples", path=self.name
            )
        if self.version != 0:
            raise BoxError(f"{self.name} version {self.version} is not 0", path=self.name)
        out = []
        pos = 0
        for size in sizes:
            entry, pos = read_sample_encryption_entry(self.data, pos, size, self.has_subsamples)
            out.append(entry)
        if pos != len(self.data):
            raise BoxError(f"{len(self.data) - pos} bytes after the last entry", path=self.name)
        return out


@register
@dataclass
class PiffSampleEncryptionBox(SampleEncryptionBox):
    """The PIFF 1.1 SampleEncryptionBox (uuid a2394f52-…) that Smooth Streaming
    packagers write: ``senc``'s layout, where flag 1 adds an AlgorithmID, IV size and KID that
    override the track's ``tenc`` (``override`` holds them)."""

    TYPE = UUID
    USERTYPE = PIFF_SENC_UUID
    override: tuple[int, int, bytes] | None = None

    @classmethod
    def parse(cls, cur: Cursor) -> PiffSampleEncryptionBox:
        version, flags = cur.full_header()
        override = None
        if flags & PIFF_SENC_OVERRIDE:
            override = (cur.u24(), cur.u8(), cur.take(KID_SIZE, "KID"))
        return cls(cur.u32(), cur.rest(), flags, version, override)

    def payload(self) -> bytes:
        head = full_header(self.version, self.flags)
        if self.flags & PIFF_SENC_OVERRIDE:
            if self.override is None or len(self.override[2]) != KID_SIZE:
                raise BoxError("flag 1 needs AlgorithmID, IV_size and a 16-byte KID", path=self.name)
            algorithm, iv_size, kid = self.override
            head += algorithm.to_bytes(3, "big") + bytes([iv_size]) + kid
        return head + self.sample_count.to_bytes(4, "big") + self.data


def _aux_info_type(cur: Cursor, flags: int) -> tuple[bytes | None, int]:
    if flags & AUX_INFO_TYPE_PRESENT:
        return cur.take(4, "aux_info_type"), cur.u32()
    return None, 0


def _write_aux_info_type(aux_type: bytes | None, parameter: int) -> tuple[int, bytes]:
    if aux_type is None:
        return 0, b""
    return AUX_INFO_TYPE_PRESENT, aux_type + parameter.to_bytes(4, "big")


@register
@dataclass
class SampleAuxiliaryInformationSizesBox(Box):
    """saiz (14496-12 §8.7.8): the size of each sample's auxiliary information, for Common Encryption
    its ``senc`` entry (23001-7 §7.1): one default size for all, or (default 0) a byte per sample."""

    TYPE = b"saiz"
    default_sample_info_size: int = 0
    sample_count: int = 0
    sample_info_sizes: bytes = b""
    aux_info_type: bytes | None = None
    aux_info_type_parameter: int = 0

    @classmethod
    def of(cls, sizes: Sequence[int]) -> SampleAuxiliaryInformationSizesBox:
        """The box for these sizes: the default form when they are all equal and not 0."""
        if any(not 0 <= s <= 0xFF for s in sizes):
            raise BoxError(
                f"sample information of {max(sizes)} bytes exceeds the 8-bit saiz size", path="saiz"
            )
        if sizes and sizes[0] and sizes.count(sizes[0]) == len(sizes):
            return cls(sizes[0], len(sizes))
        return cls(0, len(sizes), bytes(sizes))

    @classmethod
    def parse(cls, cur: Cursor) -> SampleAuxiliaryInformationSizesBox:
        _, flags = cur.full_header()
        aux_type, parameter = _aux_info_type(cur, flags)
        default, count = cur.u8(), cur.u32()
        table = cur.take(count, "sample_info_size") if default == 0 else b""
        return cls(default, count, table, aux_type, parameter)

    def size_of(self, index: int) -> int:
        return self.default_sample_info_size or self.sample_info_sizes[index]

    def payload(self) -> bytes:
        if self.default_sample_info_size == 0 and len(self.sample_info_sizes) != self.sample_count:
            raise BoxError(
                f"saiz sample_count {self.sample_count} but {len(self.sample_info_sizes)} sizes", path="saiz"
            )
        flags, aux = _write_aux_info_type(self.aux_info_type, self.aux_info_type_parameter)
        table = self.sample_info_sizes if self.default_sample_info_size == 0 else b""
        return (
            full_header(0, flags)
            + aux
            + bytes([self.default_sample_info_size])
            + self.sample_count.to_bytes(4, "big")
            + table
        )


@register
@dataclass
class SampleAuxiliaryInformationOffsetsBox(Box):
    """saio (14496-12 §8.7.9): where the auxiliary information starts, in a ``traf`` relative to the
    base data offset (the moof's first byte with default-base-is-moof); version 1 has 64-bit
    offsets."""

    TYPE = b"saio"
    offsets: list[int] = field(default_factory=list)
    version: int = 0
    aux_info_type: bytes | None = None
    aux_info_type_parameter: int = 0

    @classmethod
    def parse(cls, cur: Cursor) -> SampleAuxiliaryInformationOffsetsBox:
        version, flags = cur.full_header()
        aux_type, parameter = _aux_info_type(cur, flags)
        count = cur.u32()
        column = _read_column(cur, U64 if version == 1 else U32, count, "offsets")
        return cls(list(column), version, aux_type, parameter)

    def payload(self) -> bytes:
        flags, aux = _write_aux_info_type(self.aux_info_type, self.aux_info_type_parameter)
        size = 8 if self.version == 1 else 4
        try:
            offsets = b"".join(o.to_bytes(size, "big") for o in self.offsets)
        except OverflowError:
            raise BoxError(f"saio offset out of range for version {self.version}", path="saio") from None
        return full_header(self.version, flags) + aux + len(self.offsets).to_bytes(4, "big") + offsets


_GROUP_RUN = struct.Struct(">II")


@register
@dataclass
class SampleToGroupBox(Box):
    """sbgp (14496-12 §8.9.2): runs of ``(sample_count, group_description_index)``; index 0 means no
    group, and in a ``traf`` indexes above 0x10000 count the traf's own ``sgpd`` entries (§8.9.4).
    Version 1 adds ``grouping_type_parameter``."""

    TYPE = b"sbgp"
    grouping_type: bytes = SEIG
    entries: list[tuple[int, int]] = field(default_factory=list)
    grouping_type_parameter: int | None = None

    @classmethod
    def parse(cls, cur: Cursor) -> SampleToGroupBox:
        version, _ = cur.full_header()
        grouping = cur.take(4, "grouping_type")
        parameter = cur.u32() if version == 1 else None
        raw = cur.take(cur.u32() * _GROUP_RUN.size, "entries")
        return cls(grouping, list(_GROUP_RUN.iter_unpack(raw)), parameter)

    def payload(self) -> bytes:
        version = 0 if self.grouping_type_parameter is None else 1
        head = full_header(version, 0) + self.grouping_type
        if self.grouping_type_parameter is not None:
            head += self.grouping_type_parameter.to_bytes(4, "big")
        try:
            runs = b"".join(_GROUP_RUN.pack(count, index) for count, index in self.entries)
        except struct.error as exc:
            raise BoxError(f"sbgp entry out of range: {exc}", path="sbgp") from None
        return head + len(self.entries).to_bytes(4, "big") + runs

    def indexes(self, sample_count: int) -> list[int]:
        """The group description index of each of ``sample_count`` samples (0 past the last run)."""
        out: list[int] = []
        for count, index in self.entries:
            out += [index] * min(count, sample_count - len(out))
        return out + [0] * (sample_count - len(out))


@register
@dataclass
class SampleGroupDescriptionBox(Box):
    """sgpd (14496-12 §8.9.3): the descriptions of one grouping type, kept as bytes (their syntax
    depends on the type; :meth:`seig` reads ``seig`` ones). Version 1 states each entry's length,
    ``default_length`` when all are equal; versions 0 and 2 do not, so their entries are taken as
    equal shares of the payload; version 2 adds ``default_sample_description_index``."""

    TYPE = b"sgpd"
    grouping_type: bytes = SEIG
    entries: list[bytes] = field(default_factory=list)
    version: int = 1
    default_length: int = 0
    default_sample_description_index: int | None = None

    @classmethod
    def of(cls, grouping_type: bytes, entries: Sequence[bytes]) -> SampleGroupDescriptionBox:
        """A version 1 box, with a ``default_length`` when the entries are equally long."""
        lengths = {len(e) for e in entries}
        return cls(grouping_type, list(entries), 1, lengths.pop() if len(lengths) == 1 else 0)

    @classmethod
    def parse(cls, cur: Cursor) -> SampleGroupDescriptionBox:
        version, _ = cur.full_header()
        grouping = cur.take(4, "grouping_type")
        default_length = cur.u32() if version == 1 else 0
        index = cur.u32() if version >= 2 else None
        count = cur.u32()
        if version == 1:
            entries = [cur.take(default_length or cur.u32(), "entry") for _ in range(count)]
        else:
            size, rest = divmod(cur.remaining, count) if count else (0, 0)
            if rest or (count and not size):
                raise cur.error(f"{cur.remaining} bytes do not split into {count} equal entries")
            entries = [cur.take(size, "entry") for _ in range(count)]
        return cls(grouping, entries, version, default_length, index)

    def payload(self) -> bytes:
        head = full_header(self.version, 0) + self.grouping_type
        if self.version == 1:
            head += self.default_length.to_bytes(4, "big")
        if self.version >= 2:
            head += (self.default_sample_description_index or 0).to_bytes(4, "big")
        body = bytearray()
        for entry in self.entries:
            if self.version == 1 and self.default_length == 0:
                body += len(entry).to_bytes(4, "big")
            elif self.version == 1 and len(entry) != self.default_length:
                raise BoxError(
                    f"entry of {len(entry)} bytes, default_length {self.default_length}", path="sgpd"
                )
            body += entry
        return head + len(self.entries).to_bytes(4, "big") + bytes(body)

    def seig(self) -> list[CencSampleEncryptionInformationGroupEntry]:
        """The entries read as ``seig`` (23001-7 §6.1)."""
        if self.grouping_type != SEIG:
            raise BoxError(f"grouping type {self.grouping_type!r} is not seig", path="sgpd")
        return [CencSampleEncryptionInformationGroupEntry.parse(e) for e in self.entries]
