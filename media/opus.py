"""Opus in CMAF: the ``OpusHead`` identification header (RFC 7845 §5.1) that RTMP and Ogg carry, its
ISO-BMFF form ``dOps`` (Encapsulation of Opus in ISO Base Media File Format v0.6.8 §4.3.2), and packet
durations from the TOC byte (RFC 6716 §3.1, §3.2).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from media.boxes import OpusSpecificBox
from media.errors import BoxError, UnsupportedMedia

OPUS_HEAD_MAGIC = b"OpusHead"
_HEAD = struct.Struct("<8sBBHIhB")  # magic, version, channels, pre-skip, input rate, output gain, family

# Opus always decodes at 48 kHz in ISO-BMFF (Opus in ISOBMFF §4.3.1), the CMAF timescale for it.
OPUS_RATE = 48000


@dataclass(frozen=True, slots=True)
class OpusHead:
    """The identification header (RFC 7845 §5.1). ``stream_count`` and ``coupled_count`` are derived
    for mapping family 0 (one stream, coupled when stereo), and ``channel_mapping`` is empty then."""

    version: int
    channels: int
    pre_skip: int
    input_sample_rate: int
    output_gain: int  # Q7.8 dB
    mapping_family: int
    stream_count: int
    coupled_count: int
    channel_mapping: bytes = b""

    @classmethod
    def parse(cls, data: bytes, *, path: str = "OpusHead") -> OpusHead:
        """Parse and check an identification header (little-endian, RFC 7845 §5.1), as RTMP's Opus
        sequence header and Ogg's first packet carry it. Bytes past the channel mapping table are
        ignored, as §5.1 asks of readers of minor versions above 0."""
        if len(data) < _HEAD.size:
            raise BoxError(f"OpusHead has {len(data)} bytes, at least {_HEAD.size} are needed", path=path)
        magic, version, channels, pre_skip, rate, gain, family = _HEAD.unpack_from(data)
        if magic != OPUS_HEAD_MAGIC:
            raise BoxError(f"identification header starts with {magic!r}, not b'OpusHead'", path=path)
        if version >> 4:
            raise UnsupportedMedia(
                f"OpusHead version {version} (major version {version >> 4}) is not 0", path=path
            )
        if family == 0:
            head = cls(version, channels, pre_skip, rate, gain, family, 1, max(channels - 1, 0))
        else:
            table = data[_HEAD.size : _HEAD.size + 2 + channels]
            if len(table) < 2 + channels:
                raise BoxError(
                    f"channel mapping table needs {2 + channels} bytes, {len(table)} present", path=path
                )
            head = cls(version, channels, pre_skip, rate, gain, family, table[0], table[1], table[2:])
        head.check(path=path)
        return head

    def check(self, *, path: str = "OpusHead") -> None:
        """The constraints of RFC 7845 §5.1 and §5.1.1 on the channel count and mapping table."""
        if self.channels == 0:
            raise BoxError("OpusHead output channel count is 0", path=path)
        if self.mapping_family == 0:
            if self.channels > 2:
                raise BoxError(
                    f"channel mapping family 0 allows 1 or 2 channels, not {self.channels}", path=path
                )
            return
        if self.mapping_family == 1 and self.channels > 8:
            raise BoxError(f"channel mapping family 1 allows 1 to 8 channels, not {self.channels}", path=path)
        if len(self.channel_mapping) != self.channels:
            raise BoxError(
                f"channel mapping has {len(self.channel_mapping)} entries for {self.channels} channels",
                path=path,
            )
        if self.stream_count == 0:
            raise BoxError("channel mapping table has a stream count of 0", path=path)
        if self.coupled_count > self.stream_count:
            raise BoxError(
                f"coupled stream count {self.coupled_count} exceeds the stream count {self.stream_count}",
                path=path,
            )
        decoded = self.stream_count + self.coupled_count
        if decoded > 255:
            raise BoxError(f"streams plus coupled streams is {decoded}, above 255", path=path)
        for index, value in enumerate(self.channel_mapping):
            if value != 255 and value >= decoded:
                raise BoxError(
                    f"channel {index} maps to decoded channel {value}, but there are only {decoded}",
                    path=path,
                )

    def __bytes__(self) -> bytes:
        """The identification header as RFC 7845 §5.1 lays it out."""
        fixed = _HEAD.pack(
            OPUS_HEAD_MAGIC,
            self.version,
            self.channels,
            self.pre_skip,
            self.input_sample_rate,
            self.output_gain,
            self.mapping_family,
        )
        if self.mapping_family == 0:
            return fixed
        return fixed + bytes([self.stream_count, self.coupled_count]) + self.channel_mapping

    def to_box(self) -> OpusSpecificBox:
        """The ``dOps`` box (Opus in ISOBMFF §4.3.2): the same fields big-endian, Version 0, and the
        channel mapping table only when the family is not 0."""
        if self.mapping_family == 0:
            return OpusSpecificBox(
                self.channels, self.pre_skip, self.input_sample_rate, self.output_gain, self.mapping_family
            )
        return OpusSpecificBox(
            self.channels,
            self.pre_skip,
            self.input_sample_rate,
            self.output_gain,
            self.mapping_family,
            self.stream_count,
            self.coupled_count,
            self.channel_mapping,
        )

    @classmethod
    def from_box(cls, box: OpusSpecificBox, *, path: str = "dOps") -> OpusHead:
        """The identification header a ``dOps`` box stands for (version 1, as RFC 7845 §5.1 writes),
        checked as :meth:`parse` checks one."""
        channels, family = box.output_channel_count, box.channel_mapping_family
        if family == 0:
            streams, coupled, mapping = 1, max(channels - 1, 0), b""
        elif box.stream_count is None or box.coupled_count is None:
            raise BoxError(f"dOps mapping family {family} lacks its channel mapping table", path=path)
        else:
            streams, coupled, mapping = box.stream_count, box.coupled_count, box.channel_mapping
        head = cls(
            1,
            channels,
            box.pre_skip,
            box.input_sample_rate,
            box.output_gain,
            family,
            streams,
            coupled,
            mapping,
        )
        head.check(path=path)
        return head


# ---------------------------------------------------------------------------------------------
# Packets (RFC 6716 §3)

# Frame size in 48 kHz samples by TOC config (RFC 6716 §3.1, Table 2): SILK-only 10/20/40/60 ms for
# NB, MB, WB (configs 0-11); Hybrid 10/20 ms for SWB, FB (12-15); CELT-only 2.5/5/10/20 ms for NB,
# WB, SWB, FB (16-31).
FRAME_SAMPLES = (
    *(480, 960, 1920, 2880) * 3,
    *(480, 960) * 2,
    *(120, 240, 480, 960) * 4,
)
MAX_PACKET_SAMPLES = 5760  # 120 ms (§3.2.5, requirement R5)
MAX_FRAME_BYTES = 1275  # R2


def _frame_length(packet: bytes, pos: int) -> tuple[int, int]:
    """A frame length (§3.2.1): one byte below 252, else two bytes as first + 4 * second."""
    if pos >= len(packet):
        raise BoxError(f"Opus packet of {len(packet)} bytes ends where a frame length should be")
    first = packet[pos]
    if first < 252:
        return first, pos + 1
    if pos + 1 >= len(packet):
        raise BoxError(f"Opus packet of {len(packet)} bytes ends inside a two-byte frame length")
    return first + 4 * packet[pos + 1], pos + 2


def packet_duration(packet: bytes) -> int:
    """The duration of an Opus packet in 48 kHz samples: frame count times the frame size of the TOC
    config (RFC 6716 §3.1). The framing is checked against requirements R1-R7 of §3.4, so a packet
    that is not a well-formed Opus packet raises :class:`BoxError`."""
    size = len(packet)
    if size == 0:
        raise BoxError("Opus packet is empty (R1)")
    toc = packet[0]
    frame = FRAME_SAMPLES[toc >> 3]
    code = toc & 3
    if code == 0:  # one frame (§3.2.2)
        if size - 1 > MAX_FRAME_BYTES:
            raise BoxError(f"Opus code 0 packet holds a {size - 1}-byte frame, above 1275 (R2)")
        return frame
    if code == 1:  # two frames of equal size (§3.2.3)
        if (size - 1) % 2:
            raise BoxError(f"Opus code 1 packet has an odd payload of {size - 1} bytes (R3)")
        if (size - 1) // 2 > MAX_FRAME_BYTES:
            raise BoxError(f"Opus code 1 packet holds {(size - 1) // 2}-byte frames, above 1275 (R2)")
        return 2 * frame
    if code == 2:  # two frames, the first length given (§3.2.4)
        first, pos = _frame_length(packet, 1)
        if first > size - pos:
            raise BoxError(f"Opus code 2 packet's first frame of {first} bytes overruns the packet (R4)")
        if size - pos - first > MAX_FRAME_BYTES:
            raise BoxError(
                f"Opus code 2 packet's second frame of {size - pos - first} bytes is above 1275 (R2)"
            )
        return 2 * frame
    return _code3_duration(packet, frame)


def _code3_duration(packet: bytes, frame: int) -> int:
    """A code 3 packet (§3.2.5): frame count byte, optional padding, CBR or VBR frame lengths."""
    size = len(packet)
    if size < 2:
        raise BoxError("Opus code 3 packet lacks its frame count byte (R6)")
    vbr, padded, count = packet[1] & 0x80, packet[1] & 0x40, packet[1] & 0x3F
    if count == 0:
        raise BoxError("Opus code 3 packet has a frame count of 0 (R5)")
    if count * frame > MAX_PACKET_SAMPLES:
        raise BoxError(f"Opus code 3 packet lasts {count * frame} samples, above 120 ms (R5)")
    pos, padding = 2, 0
    if padded:
        while True:
            if pos >= size:
                raise BoxError("Opus code 3 packet ends inside its padding length (R6)")
            byte = packet[pos]
            pos += 1
            padding += 254 if byte == 255 else byte
            if byte != 255:
                break
    available = size - pos - padding
    if available < 0:
        raise BoxError(f"Opus code 3 packet's padding of {padding} bytes overruns the packet (R6, R7)")
    if not vbr:
        if available % count:
            raise BoxError(
                f"Opus CBR code 3 packet's {available} bytes do not split into {count} frames (R6)"
            )
        if available // count > MAX_FRAME_BYTES:
            raise BoxError(f"Opus CBR code 3 packet holds {available // count}-byte frames, above 1275 (R2)")
        return count * frame
    total = 0
    for _ in range(count - 1):
        length, after = _frame_length(packet, pos)
        available -= after - pos
        pos = after
        if length > MAX_FRAME_BYTES:
            raise BoxError(f"Opus VBR code 3 packet has a {length}-byte frame, above 1275 (R2)")
        total += length
    if total > available:
        raise BoxError(f"Opus VBR code 3 packet's frame lengths ({total} bytes) overrun the packet (R7)")
    if available - total > MAX_FRAME_BYTES:
        raise BoxError(f"Opus VBR code 3 packet's last frame of {available - total} bytes is above 1275 (R2)")
    return count * frame
