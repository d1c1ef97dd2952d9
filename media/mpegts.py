"""MPEG-2 transport stream segments for HLS (ISO/IEC 13818-1), muxed from CMAF samples.

Pure: samples and their bytes in, one complete segment out, no state between calls. The origin
re-packages a segment on every request and a CDN may fetch consecutive segments from different
origin processes, so equal inputs give byte-identical output and nothing depends on history.

What a segment holds, in order:

- one PAT (§2.4.4.3) and one PMT (§2.4.4.8) at the start;
- the PES packets (§2.4.3.6) of one video and/or one audio track, interleaved by decode time;
- a PCR (§2.4.3.5) on the video PID (on the audio PID when there is no video), in the first TS packet
  of the segment's first PES and then at most 0.1 s apart (§2.7.2).

Choices worth knowing (the reasons are next to the code):

- **Continuity counters** (§2.4.3.3) are a pure function of the inputs *and* continuous across
  segments: every elementary PID starts each segment at 0 and the muxer makes each PID's packet count
  a multiple of 16 (spreading the tail of the PID's last PES over a few more packets, padded with
  adaptation-field stuffing), so each segment ends at 15 and whichever segment comes next continues
  at 0. PAT and PMT, sent once per segment, carry ``sequence mod 16``. See :func:`mux_segment`.
- **Video DTS** is the CMAF decode time moved earlier by a constant (``TsTrack.dts_shift``, at least
  what the segment needs): CMAF video uses negative composition offsets (ISO/IEC 23000-19), so
  CMAF decode times can exceed presentation times, which §2.4.3.7 forbids. PTS stay exactly the
  CMAF presentation times, so audio and video stay in sync and match the fMP4/DASH renditions.
- **PES sizing**: one PES per video access unit (``PES_packet_length`` 0, allowed for video in TS
  by §2.4.3.7); audio PES carry whole ADTS frames, at most 0.1 s of them, with an exact length.
- **SAMPLE-AES** (optional, :mod:`media.sample_aes`): the same segment with H.264 slice NAL units
  and AAC frames encrypted in place and the PMT signalling it; nothing else changes.

Time is integer throughout: ``t * 90000 // timescale`` then modulo 2**33 (§2.4.3.7).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from media.aac import EXPLICIT_RATE, SAMPLE_RATES, AudioSpecificConfig
from media.bmff import Cursor
from media.boxes import AVCConfigurationBox, HEVCConfigurationBox
from media.cmaf import read_fragment
from media.errors import MediaError, UnsupportedMedia
from media.model import Sample, Track, TrackKind
from media.protection import ProtectionError
from media.sample_aes import SampleAes, audio_setup_information, sample_aes_supported

__all__ = [
    "AUDIO_PID",
    "CLOCK",
    "PAT_PID",
    "PCR_DELAY",
    "PMT_PID",
    "VIDEO_PID",
    "TsMuxError",
    "TsTrack",
    "adts_header",
    "mpeg2_crc32",
    "mux_segment",
    "required_dts_shift",
    "to_clock",
]

PACKET_SIZE = 188
_PAYLOAD = 184  # a packet's bytes after its 4-byte header
SYNC_BYTE = 0x47

PAT_PID = 0x0000
PMT_PID = 0x1000
VIDEO_PID = 0x0100
AUDIO_PID = 0x0101
PROGRAM_NUMBER = 1
TRANSPORT_STREAM_ID = 1

CLOCK = 90_000  # PTS/DTS and PCR base tick rate (§2.4.2.1: the 27 MHz system clock / 300)
WRAP = 1 << 33  # PTS, DTS and PCR base are 33-bit counters
PCR_INTERVAL = CLOCK // 10  # §2.7.2: at most 0.1 s between PCRs
# The PCR runs this far behind the DTS of the PES it precedes: a decoder has every byte of an access
# unit before it must decode it (the T-STD of §2.4.2). A constant, so PCRs continue across segments.
PCR_DELAY = CLOCK // 10
AUDIO_PES_MAX_DURATION = CLOCK // 10  # audio frames per PES: at most 0.1 s of them
_MAX_PES_LENGTH = 0xFFFF

STREAM_TYPE_AAC_ADTS = 0x0F  # Table 2-34: ISO/IEC 13818-7 audio with ADTS transport syntax
STREAM_TYPE_H264 = 0x1B  # Rec. ITU-T H.264 | ISO/IEC 14496-10
STREAM_TYPE_HEVC = 0x24  # Rec. ITU-T H.265 | ISO/IEC 23008-2
# SAMPLE-AES (Apple's "MPEG-2 Stream Encryption Format for HTTP Live Streaming" §3): user-private
# stream types, each with a private_data_indicator naming the format.
STREAM_TYPE_H264_SAMPLE_AES = 0xDB
STREAM_TYPE_AAC_SAMPLE_AES = 0xCF
STREAM_ID_VIDEO = 0xE0  # Table 2-22: video stream number 0
STREAM_ID_AUDIO = 0xC0  # Table 2-22: audio stream number 0

_START_CODE = b"\x00\x00\x00\x01"
# Access unit delimiters: H.264 §7.3.2.4 (nal_unit_type 9, primary_pic_type 7 = any slice type);
# H.265 §7.3.2.5 (nal_unit_type 35, layer 0, temporal id 0, pic_type 2 = I, P or B slices).
_AUD_H264 = _START_CODE + b"\x09\xf0"
_AUD_HEVC = _START_CODE + b"\x46\x01\x50"


TS_CODECS = frozenset({"avc1", "avc3", "hvc1", "hev1", "mp4a"})


def can_carry(track: Track) -> bool:
    """Whether HLS can serve this track's media in MPEG-TS segments (text travels as WebVTT)."""
    return track.kind is TrackKind.TEXT or track.codec in TS_CODECS


class TsMuxError(MediaError):
    """The samples handed to the muxer are inconsistent or malformed (sizes, NAL unit lengths)."""


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True, slots=True)
class TsTrack:
    """One track's part of a segment: ``samples`` in decode order, the first decoding at
    ``decode_time`` (in ``track.timescale``) and each following its predecessor by its duration;
    ``data`` is their bytes back to back (an ``mdat`` payload: length-prefixed NAL units for video,
    raw AAC frames for audio).

    ``dts_shift`` (video only, track timescale) is subtracted from every decode time before it is
    written, because CMAF video may present a frame before its decode time (negative composition
    offsets) and a transport stream may not. The muxer uses the larger of this value and what the
    segment's samples need (:func:`required_dts_shift`), so the default 0 always yields a valid
    stream. Give every segment of a track the same value — the largest the encoder ever needs, such
    as its reorder depth times the frame duration — to keep DTS continuous across segments; with 0,
    a segment whose need differs from its neighbour's makes DTS jump at the boundary (by up to the
    difference; PTS are never affected).
    """

    track: Track
    decode_time: int
    samples: tuple[Sample, ...]
    data: bytes
    dts_shift: int = 0

    def __post_init__(self) -> None:
        total = sum(s.size for s in self.samples)
        if total != len(self.data):
            raise TsMuxError(
                f"track {self.track.name!r}: samples declare {total} bytes, data holds {len(self.data)}"
            )
        if self.dts_shift < 0:
            raise TsMuxError(f"track {self.track.name!r}: dts_shift {self.dts_shift} is negative")

    @classmethod
    def from_fragments(cls, track: Track, fragments: Sequence[bytes], *, dts_shift: int = 0) -> TsTrack:
        """The samples of consecutive stored fragments of ``track`` (CMAF fragments as ingest
        writes them). A gap or overlap of up to one sample between two fragments (an encoder whose
        ``trun`` durations are rounded) is absorbed into the previous sample's duration; a larger
        one is an error."""
        samples: list[Sample] = []
        parts: list[bytes] = []
        start = end = 0
        for i, fragment in enumerate(fragments):
            decode_time, frag_samples, payload = read_fragment(fragment)
            if i == 0:
                start = end = decode_time
            elif decode_time != end and samples and abs(decode_time - end) <= samples[-1].duration:
                last = samples[-1]
                samples[-1] = Sample(
                    last.duration + decode_time - end, last.size, last.flags, last.composition_offset
                )
                end = decode_time
            elif decode_time != end:
                raise TsMuxError(
                    f"track {track.name!r}: fragment at {decode_time} does not follow the previous one, "
                    f"which ends at {end}"
                )
            size = sum(s.size for s in frag_samples)
            samples += frag_samples
            parts.append(payload[:size])
            end = decode_time + sum(s.duration for s in frag_samples)
        return cls(track, start, tuple(samples), b"".join(parts), dts_shift)


def required_dts_shift(samples: Sequence[Sample]) -> int:
    """The least amount to take off decode times so that no sample decodes after it is presented
    (§2.4.3.7: a PES's DTS never exceeds its PTS): the largest negative composition offset."""
    return max(0, max((-s.composition_offset for s in samples), default=0))


def to_clock(time: int, timescale: int) -> int:
    """``time`` ticks of ``timescale`` on the 90 kHz clock, rounded down (exact integer arithmetic,
    not yet wrapped to 33 bits)."""
    return time * CLOCK // timescale


# ---------------------------------------------------------------------------------------------
# PSI: PAT and PMT (§2.4.4)


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def mpeg2_crc32(data: bytes) -> int:
    """CRC_32 of PSI sections (Annex A): polynomial 0x04C11DB7, initial value 0xFFFFFFFF, MSB first,
    no final inversion. A section including its own CRC_32 gives 0."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ byte]
    return crc


def _section(table_id: int, id_field: int, body: bytes) -> bytes:
    """A long-form PSI section (§2.4.4.3, §2.4.4.8): version 0, current, a single section."""
    rest = id_field.to_bytes(2, "big") + bytes([0xC1, 0x00, 0x00]) + body
    head = bytes([table_id]) + (0xB000 | (len(rest) + 4)).to_bytes(2, "big")
    section = head + rest
    return section + mpeg2_crc32(section).to_bytes(4, "big")


def _pat() -> bytes:
    """program_association_section (§2.4.4.3, Table 2-30): program 1 → the PMT PID."""
    body = PROGRAM_NUMBER.to_bytes(2, "big") + (0xE000 | PMT_PID).to_bytes(2, "big")
    return _section(0x00, TRANSPORT_STREAM_ID, body)


def _pmt(streams: Sequence[tuple[int, int, bytes]], pcr_pid: int) -> bytes:
    """TS_program_map_section (§2.4.4.8, Table 2-33) for ``(stream_type, PID, descriptors)``."""
    body = bytearray((0xE000 | pcr_pid).to_bytes(2, "big") + b"\xf0\x00")  # program_info_length 0
    for stream_type, pid, descriptors in streams:
        body.append(stream_type)
        body += (0xE000 | pid).to_bytes(2, "big") + (0xF000 | len(descriptors)).to_bytes(2, "big")
        body += descriptors
    return _section(0x02, PROGRAM_NUMBER, bytes(body))


def _language_descriptor(language: str) -> bytes:
    """ISO_639_language_descriptor (§2.6.18), audio_type 0 (undefined); none for ``und``."""
    code = language.encode("ascii", "replace")
    if len(code) != 3 or language == "und":
        return b""
    return bytes([0x0A, 4]) + code + b"\x00"


def _descriptor(tag: int, body: bytes) -> bytes:
    """A descriptor (§2.6.1): tag, 8-bit length, body."""
    if len(body) > 0xFF:
        raise TsMuxError(f"descriptor {tag:#04x} of {len(body)} bytes exceeds descriptor_length")
    return bytes([tag, len(body)]) + body


def _video_entry(track: Track, sample_aes: bool) -> tuple[int, int, bytes]:
    """The PMT entry of the video PID; under SAMPLE-AES stream_type 0xDB with a
    private_data_indicator_descriptor (§2.6.29) 'zavc' (Apple's SAMPLE-AES format §3)."""
    if sample_aes:
        return STREAM_TYPE_H264_SAMPLE_AES, VIDEO_PID, _descriptor(0x0F, b"zavc")
    return _video_codec(track).stream_type, VIDEO_PID, b""


def _audio_entry(track: Track, sample_aes: bool) -> tuple[int, int, bytes]:
    """The PMT entry of the audio PID; under SAMPLE-AES stream_type 0xCF with a
    private_data_indicator_descriptor 'aacd' and the audio setup information in a
    registration_descriptor (§2.6.8) whose format_identifier is 'apad' (Apple's SAMPLE-AES format
    §3, §2.3.2)."""
    language = _language_descriptor(track.language)
    if not sample_aes:
        return STREAM_TYPE_AAC_ADTS, AUDIO_PID, language
    setup = _descriptor(0x05, b"apad" + audio_setup_information(track.decoder_config))
    return STREAM_TYPE_AAC_SAMPLE_AES, AUDIO_PID, _descriptor(0x0F, b"aacd") + setup + language


def _psi_packet(pid: int, section: bytes, cc: int) -> bytes:
    """One packet carrying a whole section after a zero pointer_field, the rest 0xFF (§2.4.4.1)."""
    payload = b"\x00" + section
    if len(payload) > _PAYLOAD:
        raise TsMuxError(f"PSI section of {len(section)} bytes does not fit one packet")
    head = bytes([SYNC_BYTE, 0x40 | (pid >> 8), pid & 0xFF, 0x10 | (cc & 0x0F)])
    return head + payload + b"\xff" * (_PAYLOAD - len(payload))


# ---------------------------------------------------------------------------------------------
# PES (§2.4.3.6, §2.4.3.7)


def _timestamp(prefix: int, value: int) -> bytes:
    """A 33-bit PTS or DTS with its 4-bit prefix and marker bits (§2.4.3.6)."""
    v = value % WRAP
    return bytes(
        [
            (prefix << 4) | ((v >> 29) & 0x0E) | 1,
            (v >> 22) & 0xFF,
            ((v >> 14) & 0xFE) | 1,
            (v >> 7) & 0xFF,
            ((v << 1) & 0xFE) | 1,
        ]
    )


def _pes_header(stream_id: int, pts: int, dts: int, payload_length: int | None) -> bytes:
    """PES header with data_alignment_indicator set (each PES starts with an access unit or an ADTS
    syncword) and PTS, plus DTS only when it differs (PTS_DTS_flags '10' or '11').
    ``payload_length`` ``None`` writes PES_packet_length 0 (unbounded, video only)."""
    if pts % WRAP == dts % WRAP:
        flags, fields = 0x80, _timestamp(0b0010, pts)
    else:
        flags, fields = 0xC0, _timestamp(0b0011, pts) + _timestamp(0b0001, dts)
    length = 0 if payload_length is None else 3 + len(fields) + payload_length
    if length > _MAX_PES_LENGTH:
        raise TsMuxError(f"PES of {length} bytes exceeds PES_packet_length")
    return (
        b"\x00\x00\x01"
        + bytes([stream_id])
        + length.to_bytes(2, "big")
        + bytes([0x84, flags, len(fields)])
        + fields
    )


@dataclass(slots=True)
class _Pes:
    pid: int
    time: int  # DTS on the 90 kHz clock, unwrapped: the interleaving order
    data: bytes  # header + payload
    header_size: int
    random_access: bool
    pcr: int | None = None  # unwrapped PCR base, when this PES's first packet carries one
    packets: int = 0

    def first_capacity(self) -> int:
        """Payload bytes the first packet holds after its adaptation field (§2.4.3.4): 2 bytes for
        length and flags when a flag is set, 6 more for a PCR."""
        if self.pcr is not None:
            return _PAYLOAD - 8
        return _PAYLOAD - 2 if self.random_access else _PAYLOAD

    def min_packets(self) -> int:
        first = self.first_capacity()
        size = len(self.data)
        return 1 if size <= first else 1 + -(-(size - first) // _PAYLOAD)

    def max_packets(self) -> int:
        """The most packets this PES may be spread over, each with at least one payload byte and the
        PES header whole in the first packet."""
        return max(self.min_packets(), len(self.data) - self.header_size + 1)


@dataclass(frozen=True, slots=True)
class _PcrOnly:
    """An adaptation-field-only packet (adaptation_field_control '10') carrying a PCR."""

    pid: int
    pcr: int


# ---------------------------------------------------------------------------------------------
# Video: length-prefixed NAL units → Annex B access units


@dataclass(frozen=True, slots=True)
class _VideoCodec:
    stream_type: int
    length_size: int
    parameter_sets: tuple[bytes, ...]
    aud: bytes
    nal_type: Callable[[int], int]
    sps_type: int
    is_irap: Callable[[int], bool]
    skip_types: frozenset[int] = field(default_factory=frozenset)


def _h264_type(first: int) -> int:
    return first & 0x1F


def _hevc_type(first: int) -> int:
    return (first >> 1) & 0x3F


def _video_codec(track: Track) -> _VideoCodec:
    """Stream type, NAL length size and parameter sets from the avcC (ISO/IEC 14496-15 §5.3.3) or
    hvcC (§8.3.3) record in ``track.decoder_config``."""
    codec = track.codec
    cur = Cursor(track.decoder_config, path=f"{codec}/config", base=0)
    if codec in ("avc1", "avc3"):
        avcc = AVCConfigurationBox.parse(cur)
        return _VideoCodec(
            STREAM_TYPE_H264,
            avcc.length_size,
            tuple(avcc.sps) + tuple(avcc.pps),
            _AUD_H264,
            _h264_type,
            7,
            lambda t: t == 5,  # IDR slice (H.264 Table 7-1)
            frozenset({9}),
        )
    if codec in ("hvc1", "hev1"):
        hvcc = HEVCConfigurationBox.parse(cur)
        sets: list[bytes] = []
        for nal_type in (32, 33, 34):  # VPS, SPS, PPS in the order §7.4.2.4.4 requires
            for array in hvcc.arrays:
                if array.nal_type == nal_type:
                    sets += array.nalus
        return _VideoCodec(
            STREAM_TYPE_HEVC,
            hvcc.length_size,
            tuple(sets),
            _AUD_HEVC,
            _hevc_type,
            33,
            lambda t: 16 <= t <= 23,  # IRAP: BLA, IDR, CRA and reserved IRAP types (H.265 Table 7-1)
            frozenset({35}),
        )
    raise UnsupportedMedia(f"track {track.name!r}: MPEG-TS cannot carry video codec {codec!r}")


def _access_unit(
    codec: _VideoCodec, sample: bytes, keyframe: bool, where: str, cipher: SampleAes | None
) -> bytearray:
    """One access unit in the Annex B byte stream format (H.264 Annex B, H.265 Annex B): an access
    unit delimiter first (13818-1 §2.14.1 requires one in every AVC access unit, §2.17 in HEVC),
    the decoder configuration's parameter sets before a sync or IRAP picture that carries no SPS of
    its own, then the sample's NAL units (minus any delimiter it had), each after a 4-byte start
    code (the zero_byte form, valid before any NAL unit); with a ``cipher``, each of those NAL units
    as SAMPLE-AES encrypts it (slices only, :meth:`SampleAes.nal_unit`)."""
    nals: list[bytes] = []
    has_sps = irap = False
    size = codec.length_size
    pos, end = 0, len(sample)
    while pos < end:
        if pos + size > end:
            raise TsMuxError(f"{where}: NAL unit length cut short at byte {pos} of {end}")
        length = int.from_bytes(sample[pos : pos + size], "big")
        pos += size
        if pos + length > end:
            raise TsMuxError(f"{where}: NAL unit of {length} bytes at byte {pos} overruns the sample ({end})")
        if length:
            nal = sample[pos : pos + length]
            nal_type = codec.nal_type(nal[0])
            if nal_type == codec.sps_type:
                has_sps = True
            elif codec.is_irap(nal_type):
                irap = True
            if nal_type not in codec.skip_types:
                nals.append(nal if cipher is None else cipher.nal_unit(nal))
        pos += length
    out = bytearray(codec.aud)
    if (keyframe or irap) and not has_sps:
        for ps in codec.parameter_sets:
            out += _START_CODE
            out += ps
    for nal in nals:
        out += _START_CODE
        out += nal
    return out


def _video_pes(ts: TsTrack, cipher: SampleAes | None) -> list[_Pes]:
    codec = _video_codec(ts.track)
    timescale = ts.track.timescale
    shift = max(ts.dts_shift, required_dts_shift(ts.samples))
    out: list[_Pes] = []
    view = memoryview(ts.data)
    pos = 0
    time = ts.decode_time
    for i, sample in enumerate(ts.samples):
        raw = bytes(view[pos : pos + sample.size])
        pos += sample.size
        au = _access_unit(codec, raw, sample.is_sync, f"track {ts.track.name!r} sample {i}", cipher)
        pts = to_clock(time + sample.composition_offset, timescale)
        dts = to_clock(time - shift, timescale)
        header = _pes_header(STREAM_ID_VIDEO, pts, dts, None)
        out.append(_Pes(VIDEO_PID, dts, header + au, len(header), sample.is_sync))
        time += sample.duration
    return out


# ---------------------------------------------------------------------------------------------
# Audio: raw AAC frames → ADTS (ISO/IEC 14496-3 Annex 1.A)


@dataclass(frozen=True, slots=True)
class _AdtsConfig:
    profile: int  # ADTS profile_ObjectType = audioObjectType - 1
    sampling_index: int
    channels: int


def _adts_config(asc: bytes, where: str) -> _AdtsConfig:
    """The ADTS fixed-header fields from an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1).
    With explicit SBR/PS signalling (audioObjectType 5 or 29) the underlying object type and the
    core sampling frequency go into ADTS, and the decoder finds SBR/PS in the payload (implicit
    signalling, §1.6.5.2), as ADTS has no field for them."""
    try:
        config = AudioSpecificConfig.parse(asc)
    except UnsupportedMedia as exc:
        raise UnsupportedMedia(f"{where}: {exc.message}") from None
    aot, index = config.core_object_type, config.sampling_index
    if index == EXPLICIT_RATE:
        if config.sample_rate not in SAMPLE_RATES:
            raise UnsupportedMedia(
                f"{where}: sampling rate {config.sample_rate} has no ADTS sampling_frequency_index"
            )
        index = SAMPLE_RATES.index(config.sample_rate)
    if not 1 <= aot <= 4:
        raise UnsupportedMedia(f"{where}: ADTS cannot carry AAC audioObjectType {aot} (only 1 to 4)")
    if index >= len(SAMPLE_RATES):
        raise UnsupportedMedia(f"{where}: reserved sampling_frequency_index {index}")
    if not 1 <= config.channels <= 7:
        raise UnsupportedMedia(
            f"{where}: channelConfiguration {config.channels} needs a program_config_element; "
            "ADTS carries 1 to 7"
        )
    return _AdtsConfig(aot - 1, index, config.channels)


def adts_header(asc: bytes, frame_size: int) -> bytes:
    """The 7-byte ADTS header (adts_fixed_header + adts_variable_header, ISO/IEC 14496-3 Annex 1.A,
    no CRC) for one raw AAC frame of ``frame_size`` bytes described by ``asc``."""
    return _adts(_adts_config(asc, "audio"), frame_size)


def _adts(config: _AdtsConfig, frame_size: int) -> bytes:
    length = 7 + frame_size
    if length > 0x1FFF:
        raise TsMuxError(f"AAC frame of {frame_size} bytes exceeds the 13-bit aac_frame_length")
    # syncword 0xFFF, ID 0 (MPEG-4), layer 0, protection_absent 1; private, original, home bits 0;
    # adts_buffer_fullness 0x7FF (variable rate); number_of_raw_data_blocks_in_frame 0 (one block).
    return bytes(
        [
            0xFF,
            0xF1,
            (config.profile << 6) | (config.sampling_index << 2) | (config.channels >> 2),
            ((config.channels & 3) << 6) | (length >> 11),
            (length >> 3) & 0xFF,
            ((length & 7) << 5) | 0x1F,
            0xFC,
        ]
    )


def _audio_pes(ts: TsTrack, cipher: SampleAes | None) -> list[_Pes]:
    """Whole ADTS frames, grouped so that a PES spans at most 0.1 s (the PCR interval for an
    audio-only program) and fits PES_packet_length; with a ``cipher``, each frame after its header
    as SAMPLE-AES encrypts it (:meth:`SampleAes.aac_frame`, the same length)."""
    track = ts.track
    if track.codec != "mp4a":
        raise UnsupportedMedia(f"track {track.name!r}: MPEG-TS cannot carry audio codec {track.codec!r}")
    config = _adts_config(track.decoder_config, f"track {track.name!r}")
    timescale = track.timescale
    out: list[_Pes] = []
    view = memoryview(ts.data)
    limit = _MAX_PES_LENGTH - 8  # PES_packet_length counts 3 flag bytes and a 5-byte PTS
    pos = 0
    time = ts.decode_time
    i, count = 0, len(ts.samples)
    while i < count:
        start = time
        payload = bytearray()
        while i < count:
            sample = ts.samples[i]
            spans = (time + sample.duration - start) * CLOCK
            if payload and (
                spans > AUDIO_PES_MAX_DURATION * timescale or len(payload) + 7 + sample.size > limit
            ):
                break
            payload += _adts(config, sample.size)
            frame = view[pos : pos + sample.size]
            payload += frame if cipher is None else cipher.aac_frame(bytes(frame))
            pos += sample.size
            time += sample.duration
            i += 1
        pts = to_clock(start, timescale)
        header = _pes_header(STREAM_ID_AUDIO, pts, pts, len(payload))
        out.append(_Pes(AUDIO_PID, pts, header + payload, len(header), True))
    return out


# ---------------------------------------------------------------------------------------------
# Packetisation (§2.4.3.2 to §2.4.3.5)


def _pcr_field(pcr: int) -> bytes:
    """program_clock_reference: 33-bit base, 6 reserved bits, 9-bit extension 0 (§2.4.3.4)."""
    base = pcr % WRAP
    return bytes(
        [base >> 25 & 0xFF, base >> 17 & 0xFF, base >> 9 & 0xFF, base >> 1 & 0xFF, (base & 1) << 7 | 0x7E, 0]
    )


def _write_pes(out: bytearray, pes: _Pes, cc: int) -> int:
    """Append ``pes`` as ``pes.packets`` packets starting at continuity counter ``cc``; returns the
    next counter. Payloads fill packets from the front, leaving at least one byte for each packet
    still to come, so the PES header stays whole in the first packet and any spare room ends up in
    the last packets as adaptation-field stuffing (0xFF, §2.4.3.5)."""
    data = memoryview(pes.data)
    remaining = len(data)
    pos = 0
    pid_hi, pid_lo = pes.pid >> 8, pes.pid & 0xFF
    for index in range(pes.packets):
        first = index == 0
        capacity = pes.first_capacity() if first else _PAYLOAD
        size = min(capacity, remaining - (pes.packets - index - 1))
        room = _PAYLOAD - size
        out += bytes([SYNC_BYTE, (0x40 if first else 0) | pid_hi, pid_lo, (0x30 if room else 0x10) | cc])
        if room:
            flags = 0
            extra = b""
            if first and pes.random_access:
                flags |= 0x40  # random_access_indicator
            if first and pes.pcr is not None:
                flags |= 0x10  # PCR_flag
                extra = _pcr_field(pes.pcr)
            if room == 1:
                out.append(0)  # adaptation_field_length 0: a single stuffing byte
            else:
                out.append(room - 1)
                out.append(flags)
                out += extra
                out += b"\xff" * (room - 2 - len(extra))
        out += data[pos : pos + size]
        pos += size
        remaining -= size
        cc = (cc + 1) & 0x0F
    return cc


def _write_pcr_only(out: bytearray, item: _PcrOnly, cc: int) -> None:
    """A packet with an adaptation field and no payload: its continuity counter repeats the PID's
    previous one (§2.4.3.3: not incremented when adaptation_field_control is '10')."""
    out += bytes([SYNC_BYTE, item.pid >> 8, item.pid & 0xFF, 0x20 | ((cc - 1) & 0x0F)])
    out += bytes([183, 0x10]) + _pcr_field(item.pcr) + b"\xff" * 176


def _schedule_pcr(pes_list: list[_Pes], pcr_pid: int) -> list[_Pes | _PcrOnly]:
    """PES in decode order with PCRs: in the first packet of every PES on the PCR PID, stamped
    ``PCR_DELAY`` before that PES's DTS, and in PCR-only packets wherever the next PCR would
    otherwise come more than 0.1 s after the previous one, or after another PID's data."""
    items: list[_Pes | _PcrOnly] = []
    last: int | None = None
    for pes in pes_list:
        now = pes.time - PCR_DELAY
        if last is not None:
            while now - last > PCR_INTERVAL:
                last += PCR_INTERVAL
                items.append(_PcrOnly(pcr_pid, last))
        if pes.pid == pcr_pid:
            pes.pcr = now
            last = now
        elif last is None:
            items.append(_PcrOnly(pcr_pid, now))
            last = now
        items.append(pes)
    return items


def _pad_to_cycle(pes_list: list[_Pes]) -> None:
    """Give every PID a packet count that is a multiple of 16, so that its continuity counter
    returns to 0 at the end of the segment, by spreading the PID's last PES (then earlier ones) over
    more packets. Only a segment with fewer than about 16 payload bytes on a PID cannot be padded;
    its successor then shows a continuity jump on that PID."""
    for pes in pes_list:
        pes.packets = pes.min_packets()
    for pid in {p.pid for p in pes_list}:
        mine = [p for p in pes_list if p.pid == pid]
        missing = -sum(p.packets for p in mine) % 16
        for pes in reversed(mine):
            if not missing:
                break
            take = min(missing, pes.max_packets() - pes.packets)
            pes.packets += take
            missing -= take


def _cipher(tracks: Sequence[TsTrack], sample_aes: tuple[bytes, bytes] | None) -> SampleAes | None:
    """The SAMPLE-AES cipher for ``tracks``, if asked for: refused for a codec the format does not
    cover, since a clear stream signalled as encrypted (or the reverse) would not play."""
    if sample_aes is None:
        return None
    for ts in tracks:
        if not sample_aes_supported(ts.track):
            codec = ts.track.codec
            raise ProtectionError(f"track {ts.track.name!r}: SAMPLE-AES covers H.264 and AAC, not {codec!r}")
    return SampleAes(*sample_aes)


def mux_segment(
    tracks: Sequence[TsTrack], sequence: int, *, sample_aes: tuple[bytes, bytes] | None = None
) -> bytes:
    """One HLS media segment as an MPEG-2 transport stream: PAT, PMT, then the PES packets of at most
    one video and one audio track, interleaved by decode time (ISO/IEC 13818-1 §2.4).

    ``sequence`` is the segment's media sequence number; it sets the continuity counters of the PAT
    and PMT PIDs (one packet each per segment), so consecutive segments continue each other there
    too. Elementary PIDs start at 0 and end each segment on 15 (see :func:`_pad_to_cycle`).

    Why counters work this way: they must be a pure function of the segment (re-packaged per
    request, by any origin process), yet readers do check them across segment boundaries. ffmpeg's
    HLS demuxer feeds all segments to one MPEG-TS demuxer, which on a jump marks the PES in progress
    corrupt — with unbounded video PES, the previous segment's last frame. ExoPlayer's TsExtractor
    (outside its HLS mode, and in older releases always) resets the PID's PES reader on a jump and
    drops a payload packet that repeats the previous counter as a duplicate: restarting at 0 in
    every segment would lose the first packet (the keyframe's PES header) of any segment following
    one that happened to end on 0. hls.js does not look at counters. Setting discontinuity_indicator
    instead would, on the PCR PID, announce a time-base discontinuity (§2.4.3.5) that is not there.
    Padding each PID to whole cycles of 16 costs at most 15 mostly-stuffing packets per PID per
    segment (1.4 KB on average) and keeps counters continuous between any two segments, even
    across renditions and origin processes.

    ``sample_aes`` ``(key, iv)`` encrypts the segment with HLS SAMPLE-AES (Apple's "MPEG-2 Stream
    Encryption Format for HTTP Live Streaming"; RFC 8216 §5.2): ``key`` the 16-byte key, ``iv`` the
    segment's 16-byte IV (the EXT-X-KEY ``IV``, or the media sequence number as a 128-bit big-endian
    integer when the playlist gives none). H.264 and AAC only (:func:`sample_aes_supported`).

    Raises :class:`UnsupportedMedia` for codecs TS cannot carry, :class:`TsMuxError` for
    malformed samples and :class:`ProtectionError` for a key, IV or codec SAMPLE-AES cannot use.
    """
    video = [t for t in tracks if t.track.kind is TrackKind.VIDEO]
    audio = [t for t in tracks if t.track.kind is TrackKind.AUDIO]
    if len(video) > 1 or len(audio) > 1 or len(video) + len(audio) != len(tracks) or not tracks:
        kinds = ", ".join(t.track.kind.value for t in tracks) or "none"
        raise UnsupportedMedia(f"a TS segment carries one video and/or one audio track, not: {kinds}")
    cipher = _cipher(tracks, sample_aes)
    streams: list[tuple[int, int, bytes]] = []
    pes_list: list[_Pes] = []
    if video:
        pes_list += _video_pes(video[0], cipher)
        streams.append(_video_entry(video[0].track, cipher is not None))
    if audio:
        pes_list += _audio_pes(audio[0], cipher)
        streams.append(_audio_entry(audio[0].track, cipher is not None))
    pcr_pid = VIDEO_PID if video else AUDIO_PID
    pes_list.sort(key=lambda p: (p.time, p.pid))  # stable: each track's own order is kept
    items = _schedule_pcr(pes_list, pcr_pid)
    _pad_to_cycle(pes_list)

    out = bytearray(_psi_packet(PAT_PID, _pat(), sequence))
    out += _psi_packet(PMT_PID, _pmt(streams, pcr_pid), sequence)
    counters = {VIDEO_PID: 0, AUDIO_PID: 0}
    for item in items:
        if isinstance(item, _PcrOnly):
            _write_pcr_only(out, item, counters[item.pid])
        else:
            counters[item.pid] = _write_pes(out, item, counters[item.pid])
    return bytes(out)
