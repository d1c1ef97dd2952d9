"""media.mpegts: HLS transport stream segments from CMAF samples.

Two halves: real ffmpeg captures muxed and checked by ffprobe/ffmpeg (codecs, packet counts, exact
PTS/DTS, keyframes, error-free decoding, two segments played back to back), and byte-level checks
through a small transport stream reader written here from ISO/IEC 13818-1 (packet framing, PSI
CRCs, continuity counters, PCR, PES headers, Annex B access units, ADTS headers).
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.fmp4 import Fmp4Receiver, FragmentReceived, TracksDeclared
from media.boxes import (
    NON_SYNC_SAMPLE_FLAGS,
    SYNC_SAMPLE_FLAGS,
    AVCConfigurationBox,
    HEVCConfigurationBox,
    HEVCNalArray,
)
from media.cmaf import write_fragment
from media.errors import UnsupportedMedia
from media.model import Fragment, Sample, Track, TrackKind
from media.mpegts import (
    AUDIO_PID,
    PAT_PID,
    PCR_DELAY,
    PMT_PID,
    VIDEO_PID,
    TsMuxError,
    TsTrack,
    adts_header,
    mpeg2_crc32,
    mux_segment,
    required_dts_shift,
    to_clock,
)
from tests.unit.streams import ASC_AAC_LC_48K_STEREO, PPS, SPS

FAST = settings(max_examples=40, deadline=None, derandomize=True)
WRAP = 1 << 33
CMAF_FLAGS = ["-movflags", "empty_moov+separate_moof+default_base_moof+frag_keyframe+cmaf"]

# ---------------------------------------------------------------------------------------------
# A transport stream reader (ISO/IEC 13818-1 §2.4.3), strict enough to check the muxer's output


@dataclass
class Packet:
    pid: int
    pusi: bool
    afc: int
    cc: int
    payload: bytes
    pcr: int | None = None
    random_access: bool = False
    stuffing: bytes = b""


@dataclass
class Pes:
    pid: int
    stream_id: int
    length: int
    flags: int
    pts: int
    dts: int | None
    payload: bytes
    random_access: bool
    packets: list[Packet] = field(default_factory=list, repr=False)

    @property
    def decode(self) -> int:
        return self.pts if self.dts is None else self.dts


def read_packets(ts: bytes) -> list[Packet]:
    assert len(ts) % 188 == 0, len(ts)
    out = []
    for pos in range(0, len(ts), 188):
        p = ts[pos : pos + 188]
        assert p[0] == 0x47, f"packet at {pos} lacks the sync byte"
        assert not p[1] & 0x80, "transport_error_indicator"
        pid = ((p[1] & 0x1F) << 8) | p[2]
        afc = (p[3] >> 4) & 3
        assert p[3] & 0xC0 == 0, "scrambled"
        packet = Packet(pid, bool(p[1] & 0x40), afc, p[3] & 0x0F, b"")
        body = 4
        if afc & 2:
            af_len = p[4]
            assert af_len <= (183 if afc == 2 else 182)
            if afc == 2:
                assert af_len == 183
            af = p[5 : 5 + af_len]
            if af_len:
                flags = af[0]
                packet.random_access = bool(flags & 0x40)
                rest = af[1:]
                if flags & 0x10:
                    base = int.from_bytes(rest[:5], "big") >> 7
                    assert rest[4] & 0x7E == 0x7E, "PCR reserved bits"
                    assert ((rest[4] & 1) << 8) | rest[5] == 0, "PCR extension"
                    packet.pcr = base
                    rest = rest[6:]
                assert not flags & 0x0F, "unexpected adaptation field flags"
                packet.stuffing = rest
                assert set(rest) <= {0xFF}, "stuffing bytes must be 0xFF"
            body = 5 + af_len
        if afc & 1:
            packet.payload = p[body:]
            assert packet.payload, "payload flagged but empty"
        else:
            assert body == 188
        out.append(packet)
    return out


def read_timestamp(b: bytes, prefix: int) -> int:
    assert b[0] >> 4 == prefix, f"timestamp prefix {b[0] >> 4:04b}, wanted {prefix:04b}"
    assert b[0] & 1 and b[2] & 1 and b[4] & 1, "marker bits"
    return ((b[0] >> 1) & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


def parse_pes(pid: int, packets: list[Packet]) -> Pes:
    data = b"".join(p.payload for p in packets)
    assert data[:3] == b"\x00\x00\x01", "packet_start_code_prefix"
    stream_id, length = data[3], int.from_bytes(data[4:6], "big")
    assert data[6] == 0x84, "'10' marker, data_alignment_indicator"
    flags, header_len = data[7], data[8]
    fields = data[9 : 9 + header_len]
    if flags == 0x80:
        pts, dts = read_timestamp(fields[:5], 0b0010), None
        assert header_len == 5
    else:
        assert flags == 0xC0 and header_len == 10
        pts, dts = read_timestamp(fields[:5], 0b0011), read_timestamp(fields[5:], 0b0001)
    if length:
        assert length == len(data) - 6, "PES_packet_length"
    assert len(packets[0].payload) >= 9 + header_len, "PES header split over packets"
    payload = data[9 + header_len :]
    return Pes(pid, stream_id, length, flags, pts, dts, payload, packets[0].random_access, packets)


def section(packet: Packet) -> bytes:
    assert packet.pusi and packet.payload[0] == 0, "pointer_field 0"
    length = int.from_bytes(packet.payload[2:4], "big") & 0x0FFF
    sec = packet.payload[1 : 4 + length]
    assert set(packet.payload[4 + length :]) <= {0xFF}
    assert mpeg2_crc32(sec) == 0, "CRC_32"
    return sec


@dataclass
class Demuxed:
    packets: list[Packet]
    pes: dict[int, list[Pes]]
    pmt_pid: int
    pcr_pid: int
    streams: dict[int, tuple[int, bytes]]  # PID → (stream_type, descriptors)


def demux(ts: bytes) -> Demuxed:
    packets = read_packets(ts)
    pat = section(packets[0])
    assert packets[0].pid == PAT_PID and pat[0] == 0x00
    assert pat[5] == 0xC1 and pat[6:8] == b"\x00\x00"
    programs = pat[8:-4]
    assert len(programs) == 4 and int.from_bytes(programs[:2], "big") == 1
    pmt_pid = int.from_bytes(programs[2:4], "big") & 0x1FFF
    pmt = section(packets[1])
    assert packets[1].pid == pmt_pid and pmt[0] == 0x02
    pcr_pid = int.from_bytes(pmt[8:10], "big") & 0x1FFF
    info_len = int.from_bytes(pmt[10:12], "big") & 0x0FFF
    pos, end = 12 + info_len, len(pmt) - 4
    streams: dict[int, tuple[int, bytes]] = {}
    while pos < end:
        es_pid = int.from_bytes(pmt[pos + 1 : pos + 3], "big") & 0x1FFF
        es_len = int.from_bytes(pmt[pos + 3 : pos + 5], "big") & 0x0FFF
        streams[es_pid] = (pmt[pos], pmt[pos + 5 : pos + 5 + es_len])
        pos += 5 + es_len
    pes: dict[int, list[Pes]] = {pid: [] for pid in streams}
    current: dict[int, list[Packet]] = {}
    for packet in packets[2:]:
        assert packet.pid in streams, f"packet on undeclared PID {packet.pid:#x}"
        if not packet.afc & 1:
            continue
        if packet.pusi:
            if current.get(packet.pid):
                pes[packet.pid].append(parse_pes(packet.pid, current[packet.pid]))
            current[packet.pid] = []
        assert packet.pid in current, "payload before the first payload_unit_start"
        current[packet.pid].append(packet)
    for pid, pending in current.items():
        if pending:
            pes[pid].append(parse_pes(pid, pending))
    return Demuxed(packets, pes, pmt_pid, pcr_pid, streams)


def split_annexb(au: bytes) -> list[bytes]:
    assert au.startswith(b"\x00\x00\x00\x01")
    return au[4:].split(b"\x00\x00\x00\x01")


def adts_frames(payload: bytes) -> list[tuple[bytes, bytes]]:
    """(header, raw frame) pairs of an ADTS stream."""
    out = []
    pos = 0
    while pos < len(payload):
        head = payload[pos : pos + 7]
        assert head[0] == 0xFF and head[1] & 0xF6 == 0xF0, "syncword, layer"
        length = ((head[3] & 3) << 11) | (head[4] << 3) | (head[5] >> 5)
        out.append((head, payload[pos + 7 : pos + length]))
        pos += length
    assert pos == len(payload)
    return out


# ---------------------------------------------------------------------------------------------
# Synthetic tracks


def avc_track(sps: bytes = SPS, pps: bytes = PPS, *, length_size: int = 4) -> Track:
    config = AVCConfigurationBox(0x42, 0xC0, 0x1E, length_size, [sps], [pps]).payload()
    return Track("video", TrackKind.VIDEO, "avc1", "avc1.42c01e", 90000, b"", decoder_config=config)


VPS_H = bytes.fromhex("40010c01ffff016000000300900000030000030078959809")
SPS_H = bytes.fromhex("420101016000000300900000030000030078a005020171f2e5965924")
PPS_H = bytes.fromhex("4401c172b46240")


def hevc_track() -> Track:
    arrays = [
        HEVCNalArray(1, 34, [PPS_H]),  # out of order on purpose: the muxer writes VPS, SPS, PPS
        HEVCNalArray(1, 32, [VPS_H]),
        HEVCNalArray(1, 33, [SPS_H]),
    ]
    config = HEVCConfigurationBox(arrays=arrays).payload()
    return Track("hevc", TrackKind.VIDEO, "hvc1", "hvc1.1.6.L120.90", 90000, b"", decoder_config=config)


def aac_track(asc: bytes = ASC_AAC_LC_48K_STEREO, *, timescale: int = 48000, language: str = "und") -> Track:
    return Track(
        "audio", TrackKind.AUDIO, "mp4a", "mp4a.40.2", timescale, b"", language=language, decoder_config=asc
    )


def nal(*parts: bytes, size: int = 4) -> bytes:
    return b"".join(len(p).to_bytes(size, "big") + p for p in parts)


def video_track(
    track: Track, frames: list[tuple[int, int, bool, list[bytes]]], decode_time: int = 0, shift: int = 0
) -> TsTrack:
    """``frames``: (duration, composition offset, sync, NAL units)."""
    samples, data = [], b""
    for duration, cto, sync, nals in frames:
        body = nal(*nals)
        flags = SYNC_SAMPLE_FLAGS if sync else NON_SYNC_SAMPLE_FLAGS
        samples.append(Sample(duration, len(body), flags, cto))
        data += body
    return TsTrack(track, decode_time, tuple(samples), data, shift)


def audio_track(track: Track, sizes: list[int], decode_time: int = 0, duration: int = 1024) -> TsTrack:
    samples = tuple(Sample(duration, n, SYNC_SAMPLE_FLAGS) for n in sizes)
    data = b"".join(bytes([i & 0xFF]) * n for i, n in enumerate(sizes))
    return TsTrack(track, decode_time, samples, data)


IDR = bytes([0x65, 0x88]) + bytes(range(200))
SLICE = bytes([0x41, 0x9A]) + bytes(range(50))
SEI = bytes([0x06, 0x05, 0x01, 0xAA, 0x80])


def gop(n: int = 10, duration: int = 3600) -> list[tuple[int, int, bool, list[bytes]]]:
    """I P B B P B B …: decode order with negative offsets for the B frames (CMAF style)."""
    ctos = [0] + [2 * duration if i % 3 == 1 else -duration for i in range(1, n)]
    return [(duration, ctos[i], i == 0, [SEI, IDR] if i == 0 else [SLICE]) for i in range(n)]


# ---------------------------------------------------------------------------------------------
# Byte level


def test_crc32_is_the_mpeg2_crc() -> None:
    assert mpeg2_crc32(b"123456789") == 0x0376E6E7  # CRC-32/MPEG-2 check value
    assert mpeg2_crc32(b"") == 0xFFFFFFFF


def test_packets_pat_pmt_and_stream_types() -> None:
    ts = mux_segment([video_track(avc_track(), gop()), audio_track(aac_track(language="fra"), [100] * 8)], 5)
    d = demux(ts)
    assert all(ts[i] == 0x47 for i in range(0, len(ts), 188))
    assert [p.pid for p in d.packets[:2]] == [PAT_PID, PMT_PID]
    assert d.pmt_pid == PMT_PID and d.pcr_pid == VIDEO_PID
    assert d.streams == {VIDEO_PID: (0x1B, b""), AUDIO_PID: (0x0F, b"\x0a\x04fra\x00")}
    assert [p.cc for p in d.packets[:2]] == [5, 5]  # sequence mod 16
    hevc = demux(mux_segment([video_track(hevc_track(), gop())], 33))
    assert hevc.streams == {VIDEO_PID: (0x24, b"")}
    assert [p.cc for p in hevc.packets[:2]] == [1, 1]
    audio = demux(mux_segment([audio_track(aac_track(), [50] * 3)], 0))
    assert audio.streams == {AUDIO_PID: (0x0F, b"")} and audio.pcr_pid == AUDIO_PID


def check_counters(d: Demuxed, *, whole_cycles: bool = True) -> None:
    """Elementary PIDs: 0, 1, … mod 16 over payload packets, a whole number of cycles; packets
    without payload repeat the previous counter."""
    counters: dict[int, int] = {}
    for p in d.packets[2:]:
        expected = counters.get(p.pid, 0)
        if p.afc & 1:
            assert p.cc == expected, f"PID {p.pid:#x}: counter {p.cc}, expected {expected}"
            counters[p.pid] = (expected + 1) % 16
        else:
            assert p.cc == (expected - 1) % 16
    if whole_cycles:
        assert all(c == 0 for c in counters.values()), counters


def test_continuity_counters_cycle_and_carry_across_segments() -> None:
    first = mux_segment([video_track(avc_track(), gop(7)), audio_track(aac_track(), [30] * 5)], 15)
    second = mux_segment(
        [video_track(avc_track(), gop(9), 7 * 3600), audio_track(aac_track(), [90] * 11, 5 * 1024)], 16
    )
    for ts in (first, second):
        check_counters(demux(ts))
    both = read_packets(first + second)
    last: dict[int, int] = {}
    for p in both:
        if p.afc & 1:
            if p.pid in last:
                assert p.cc == (last[p.pid] + 1) % 16, f"PID {p.pid:#x}"
            last[p.pid] = p.cc


def test_tiny_segment_cannot_complete_the_cycle() -> None:
    """A PES is spread over at most one packet per byte after its header, so a PID with a few bytes
    in the whole segment cannot reach 16 packets: counters still count, the cycle stays open."""
    d = demux(mux_segment([audio_track(aac_track(), [1])], 0))
    assert len(d.pes[AUDIO_PID][0].packets) == 9  # 14-byte PES header + 7-byte ADTS + 1 byte
    check_counters(d, whole_cycles=False)
    d = demux(mux_segment([audio_track(aac_track(), [16])], 0))
    assert len(d.pes[AUDIO_PID][0].packets) == 16
    check_counters(d)


def test_pcr_first_and_at_most_100ms_apart_even_at_2_fps() -> None:
    frames = [(45000, 0, i % 4 == 0, [IDR if i % 4 == 0 else SLICE]) for i in range(6)]
    d = demux(mux_segment([video_track(avc_track(), frames)], 0))
    assert d.packets[2].pcr == (0 - PCR_DELAY) % WRAP
    pcrs = [p.pcr for p in d.packets if p.pcr is not None]
    steps = [(b - a) % WRAP for a, b in itertools.pairwise(pcrs)]
    assert steps and all(0 < s <= 9000 for s in steps)
    pcr_only = [p for p in d.packets if p.afc == 2]
    assert pcr_only and all(p.pid == VIDEO_PID and p.pcr is not None for p in pcr_only)


def test_pcr_only_packet_leads_when_audio_comes_first() -> None:
    video = video_track(avc_track(), gop(5), decode_time=9000)  # starts 0.1 s after the audio
    d = demux(mux_segment([video, audio_track(aac_track(), [40] * 10)], 0))
    first = d.packets[2]
    assert first.pid == VIDEO_PID and first.afc == 2 and first.cc == 15
    assert first.pcr == (0 - PCR_DELAY) % WRAP
    assert d.packets[3].pid == AUDIO_PID
    check_counters(d)


def test_video_pes_timestamps_access_units_and_flags() -> None:
    frames = gop(7)
    track = video_track(avc_track(), frames, decode_time=90000)
    d = demux(mux_segment([track], 0))
    shift = required_dts_shift(track.samples)
    assert shift == 3600
    time = 90000
    for pes, (duration, cto, sync, nals) in zip(d.pes[VIDEO_PID], frames, strict=True):
        assert pes.stream_id == 0xE0 and pes.length == 0
        assert pes.pts == time + cto and pes.decode == time - shift
        assert pes.random_access == sync
        units = split_annexb(pes.payload)
        assert units[0] == b"\x09\xf0"
        assert units[1:] == ([SPS, PPS, *nals] if sync else nals)
        time += duration
    first = d.pes[VIDEO_PID][0].packets[0]
    assert first.pcr == (90000 - shift - PCR_DELAY) % WRAP


def test_dts_written_only_when_it_differs() -> None:
    frames = [(3600, 0, i == 0, [IDR if i == 0 else SLICE]) for i in range(3)]
    pes = demux(mux_segment([video_track(avc_track(), frames)], 0)).pes[VIDEO_PID]
    assert all(p.flags == 0x80 and p.dts is None for p in pes)
    pinned = demux(mux_segment([video_track(avc_track(), frames, shift=1800)], 0)).pes[VIDEO_PID]
    assert [(p.pts, p.dts) for p in pinned] == [(0, WRAP - 1800), (3600, 1800), (7200, 5400)]


def test_pinned_dts_shift_is_a_floor() -> None:
    track = video_track(avc_track(), gop(4), shift=7200)
    pes = demux(mux_segment([track], 0)).pes[VIDEO_PID]
    assert [p.dts for p in pes] == [(t - 7200) % WRAP for t in (0, 3600, 7200, 10800)]


def test_timestamps_wrap_at_33_bits() -> None:
    start = WRAP - 3600  # timescale 90000: the second frame lands on zero
    track = video_track(avc_track(), [(3600, 0, True, [IDR]), (3600, 0, False, [SLICE])], start)
    pes = demux(mux_segment([track], 0)).pes[VIDEO_PID]
    assert [p.pts for p in pes] == [WRAP - 3600, 0]
    assert to_clock(WRAP * 3, 90000) == WRAP * 3  # to_clock itself does not wrap
    assert to_clock(1001, 30000) == 3003 and to_clock(1, 44100) == 2  # exact, rounded down


def test_existing_parameter_sets_and_delimiters_are_not_duplicated() -> None:
    aud = bytes([0x09, 0x10])
    frames = [
        (3600, 0, True, [aud, SPS, PPS, IDR]),  # in-band parameter sets (avc3 style)
        (3600, 0, False, [aud, SLICE]),
        (3600, 0, False, [IDR]),  # an IDR the sample table does not flag as sync
    ]
    pes = demux(mux_segment([video_track(avc_track(), frames)], 0)).pes[VIDEO_PID]
    assert split_annexb(pes[0].payload) == [b"\x09\xf0", SPS, PPS, IDR]
    assert split_annexb(pes[1].payload) == [b"\x09\xf0", SLICE]
    assert split_annexb(pes[2].payload) == [b"\x09\xf0", SPS, PPS, IDR]
    assert not pes[2].random_access


@pytest.mark.parametrize("length_size", [1, 2, 4])
def test_nal_length_sizes(length_size: int) -> None:
    track = avc_track(length_size=length_size)
    data = nal(SEI, IDR[:100], size=length_size)
    ts = TsTrack(track, 0, (Sample(3600, len(data), SYNC_SAMPLE_FLAGS),), data)
    pes = demux(mux_segment([ts], 0)).pes[VIDEO_PID]
    assert split_annexb(pes[0].payload) == [b"\x09\xf0", SPS, PPS, SEI, IDR[:100]]


def test_hevc_access_units() -> None:
    idr = bytes([0x26, 0x01]) + bytes(range(100))  # IDR_W_RADL (19)
    cra = bytes([0x2A, 0x01]) + bytes(range(60))  # CRA (21), not flagged sync
    trail = bytes([0x02, 0x01, 0xAB])
    aud = bytes([0x46, 0x01, 0x10])
    frames = [(3600, 0, True, [idr]), (3600, 0, False, [aud, trail]), (3600, 0, False, [cra])]
    pes = demux(mux_segment([video_track(hevc_track(), frames)], 0)).pes[VIDEO_PID]
    aud_out = b"\x46\x01\x50"
    assert split_annexb(pes[0].payload) == [aud_out, VPS_H, SPS_H, PPS_H, idr]
    assert split_annexb(pes[1].payload) == [aud_out, trail]
    assert split_annexb(pes[2].payload) == [aud_out, VPS_H, SPS_H, PPS_H, cra]


def write_bits(*fields: tuple[int, int]) -> bytes:
    value = bits = 0
    for v, n in fields:
        value, bits = (value << n) | v, bits + n
    pad = -bits % 8
    return (value << pad).to_bytes((bits + pad) // 8, "big")


def adts_fields(head: bytes) -> tuple[int, int, int, int, int]:
    """profile, sampling index, channels, frame length, buffer fullness."""
    word = int.from_bytes(head, "big")
    assert word >> 44 == 0xFFF and (word >> 43) & 1 == 0 and (word >> 41) & 3 == 0 and (word >> 40) & 1
    assert word & 3 == 0  # one raw data block
    return (word >> 38) & 3, (word >> 34) & 0xF, (word >> 30) & 7, (word >> 13) & 0x1FFF, (word >> 2) & 0x7FF


@pytest.mark.parametrize(
    ("asc", "expected"),
    [
        (ASC_AAC_LC_48K_STEREO, (1, 3, 2)),
        (bytes.fromhex("1188"), (1, 3, 1)),  # mono, as ffmpeg writes it (a sync extension may follow)
        (bytes.fromhex("118856e500"), (1, 3, 1)),
        (write_bits((1, 5), (8, 4), (6, 4), (0, 3)), (0, 8, 6)),  # AAC Main 16 kHz 5.1
        (write_bits((5, 5), (6, 4), (2, 4), (3, 4), (2, 5), (0, 3)), (1, 6, 2)),  # HE-AAC: core 24 kHz
        (write_bits((29, 5), (6, 4), (1, 4), (3, 4), (2, 5), (0, 3)), (1, 6, 1)),  # HE-AAC v2
        (write_bits((2, 5), (15, 4), (44100, 24), (2, 4), (0, 3)), (1, 4, 2)),  # explicit 44.1 kHz
    ],
)
def test_adts_header_fields(asc: bytes, expected: tuple[int, int, int]) -> None:
    head = adts_header(asc, 300)
    assert len(head) == 7
    assert adts_fields(head) == (*expected, 307, 0x7FF)


@pytest.mark.parametrize(
    "asc",
    [
        write_bits((31, 5), (10, 6), (3, 4), (2, 4)),  # AOT 42 (USAC)
        write_bits((2, 5), (3, 4), (0, 4), (0, 3)),  # channel configuration 0 (PCE)
        write_bits((2, 5), (15, 4), (12345, 24), (2, 4)),  # a rate ADTS has no index for
        b"\x11",  # cut short
    ],
)
def test_adts_refuses_what_it_cannot_describe(asc: bytes) -> None:
    with pytest.raises(UnsupportedMedia):
        mux_segment([audio_track(aac_track(asc), [10])], 0)


def test_audio_pes_carry_whole_adts_frames_up_to_100ms() -> None:
    sizes = [(i * 37) % 300 + 1 for i in range(30)]
    track = audio_track(aac_track(), sizes, decode_time=48000)
    d = demux(mux_segment([track], 0))
    frames = []
    time = 48000
    for pes in d.pes[AUDIO_PID]:
        assert pes.stream_id == 0xC0 and pes.length and pes.flags == 0x80 and pes.random_access
        assert pes.pts == to_clock(time, 48000)
        got = adts_frames(pes.payload)
        assert 1 <= len(got) <= 4  # 4 * 1024 / 48000 = 85 ms; 5 frames would be 107 ms
        for head, raw in got:
            assert adts_fields(head) == (1, 3, 2, len(raw) + 7, 0x7FF)
        frames += [raw for _, raw in got]
        time += 1024 * len(got)
    assert b"".join(frames) == track.data
    assert [len(f) for f in frames] == sizes
    assert d.pes[AUDIO_PID][0].packets[0].pcr == (to_clock(48000, 48000) - PCR_DELAY) % WRAP


def test_pes_fill_packets_and_stuff_only_the_last() -> None:
    """Each PES takes whole 184-byte payloads; only its first packet (flags, PCR) and its last
    packet (adaptation-field stuffing, §2.4.3.5) are shorter. The PID's last PES is spread over
    extra packets to complete the counter cycle: its spare room also goes to its tail."""
    d = demux(mux_segment([audio_track(aac_track(), [1, 170, 171, 172, 173, 500, 900, 1200])], 0))
    for pes in d.pes[AUDIO_PID]:
        middle = pes.packets[1:]
        sizes = [len(p.payload) for p in middle]
        assert sizes == sorted(sizes, reverse=True)  # full packets first, short ones at the end
        for p in middle:
            assert (len(p.payload) < 184) == bool(p.afc & 2)
    for pes in d.pes[AUDIO_PID][:-1]:
        assert all(len(p.payload) == 184 for p in pes.packets[1:-1])
    assert sum(len(p.packets) for p in d.pes[AUDIO_PID]) % 16 == 0


def test_deterministic() -> None:
    def build() -> bytes:
        return mux_segment([video_track(avc_track(), gop(12)), audio_track(aac_track(), [77] * 20)], 3)

    assert build() == build()


def test_from_fragments_joins_contiguous_fragments() -> None:
    track = avc_track()
    parts = [video_track(track, gop(3), 0), video_track(track, gop(3), 3 * 3600)]
    fragments = [
        Fragment(
            "video", p.decode_time, 3 * 3600, p.samples, write_fragment(i, p.decode_time, p.samples, p.data)
        )
        for i, p in enumerate(parts)
    ]
    joined = TsTrack.from_fragments(track, [f.data for f in fragments], dts_shift=100)
    assert joined.decode_time == 0 and joined.dts_shift == 100
    assert joined.samples == parts[0].samples + parts[1].samples
    assert joined.data == parts[0].data + parts[1].data
    gap = Fragment("video", 1, 0, (), write_fragment(9, 5 * 3600, list(parts[1].samples), parts[1].data))
    with pytest.raises(TsMuxError, match="does not follow"):
        TsTrack.from_fragments(track, [fragments[0].data, gap.data])


def test_malformed_input_errors() -> None:
    track = avc_track()
    with pytest.raises(TsMuxError, match="declare"):
        TsTrack(track, 0, (Sample(1, 10, 0),), b"123")
    with pytest.raises(TsMuxError, match="negative"):
        TsTrack(track, 0, (), b"", -1)
    overrun = b"\x00\x00\x00\x09\x65\x88"
    with pytest.raises(TsMuxError, match="overruns"):
        mux_segment([TsTrack(track, 0, (Sample(1, len(overrun), 0),), overrun)], 0)
    cut = nal(IDR) + b"\x00\x00"
    with pytest.raises(TsMuxError, match="cut short"):
        mux_segment([TsTrack(track, 0, (Sample(1, len(cut), 0),), cut)], 0)
    with pytest.raises(UnsupportedMedia):
        mux_segment([video_track(track, gop(2)), video_track(track, gop(2))], 0)
    with pytest.raises(UnsupportedMedia):
        mux_segment([], 0)
    text = Track("sub", TrackKind.TEXT, "wvtt", "wvtt", 1000, b"")
    with pytest.raises(UnsupportedMedia):
        mux_segment([TsTrack(text, 0, (), b"")], 0)
    vp9 = replace(track, codec="vp09")
    with pytest.raises(UnsupportedMedia, match="vp09"):
        mux_segment([TsTrack(vp9, 0, (), b"")], 0)


frame_strategy = st.tuples(
    st.integers(1, 9000),  # duration
    st.integers(-7200, 7200),  # composition offset
    st.binary(min_size=1, max_size=600),  # slice payload after a non-IDR header byte
)


@FAST
@given(
    frames=st.lists(frame_strategy, min_size=1, max_size=25),
    audio=st.lists(st.integers(16, 700), max_size=40),  # see test_tiny_segment_cannot_complete_the_cycle
    start=st.integers(0, WRAP * 2),
    sequence=st.integers(0, 1000),
)
def test_any_samples_round_trip(
    frames: list[tuple[int, int, bytes]], audio: list[int], start: int, sequence: int
) -> None:
    video_frames = [
        (d, c, i == 0, [IDR if i == 0 else bytes([0x41]) + body]) for i, (d, c, body) in enumerate(frames)
    ]
    video = video_track(avc_track(), video_frames, start)
    tracks = [video, audio_track(aac_track(timescale=90000), audio, start, 1920)] if audio else [video]
    ts = mux_segment(tracks, sequence)
    d = demux(ts)
    check_counters(d)
    assert d.packets[2].pcr is not None
    shift = required_dts_shift(video.samples)
    time = start
    for pes, (duration, cto, sync, nals) in zip(d.pes[VIDEO_PID], video_frames, strict=True):
        assert pes.pts == (time + cto) % WRAP and pes.decode == (time - shift) % WRAP
        assert (pes.pts - pes.decode) % WRAP <= 2 * 7200  # DTS never after PTS
        assert split_annexb(pes.payload)[1:] == ([SPS, PPS, *nals] if sync else nals)
        time += duration
    if audio:
        raw = [r for pes in d.pes[AUDIO_PID] for _, r in adts_frames(pes.payload)]
        assert b"".join(raw) == tracks[1].data
    pcrs = [p.pcr for p in d.packets if p.pcr is not None]
    assert all(0 < (b - a) % WRAP <= 9000 for a, b in itertools.pairwise(pcrs))
    assert mux_segment(tracks, sequence) == ts


# ---------------------------------------------------------------------------------------------
# Real captures, checked by ffprobe and ffmpeg


@dataclass(frozen=True)
class Capture:
    """A whole ffmpeg CMAF track as one run of samples."""

    track: Track
    run: TsTrack
    fragments: tuple[Fragment, ...]

    def segment(self, index: int) -> TsTrack:
        """One whole fragment (ffmpeg cuts video at each keyframe, every 2 s here)."""
        return TsTrack.from_fragments(self.track, [self.fragments[index].data])

    def cut(self, start: float, end: float) -> TsTrack:
        """The samples whose decode time lies in [start, end) seconds."""
        scale = self.track.timescale
        lo, hi = round(start * scale), round(end * scale)
        samples: list[Sample] = []
        time, pos, first, begin = self.run.decode_time, 0, None, 0
        for s in self.run.samples:
            if lo <= time < hi:
                if first is None:
                    first, begin = time, pos
                samples.append(s)
            time += s.duration
            pos += s.size
        assert first is not None
        size = sum(s.size for s in samples)
        return TsTrack(self.track, first, tuple(samples), self.run.data[begin : begin + size])


def _capture(path: Path) -> Capture:
    receiver = Fmp4Receiver(stream=path.stem, max_box_size=1 << 24)
    events = receiver.feed(path.read_bytes()) + receiver.close()
    track = next(e.tracks[0] for e in events if isinstance(e, TracksDeclared))
    fragments = tuple(e.fragment for e in events if isinstance(e, FragmentReceived))
    return Capture(track, TsTrack.from_fragments(track, [f.data for f in fragments]), fragments)


@dataclass(frozen=True)
class Recorded:
    video: Capture
    audio: Capture
    hevc: Capture


def _ffmpeg(*args: str) -> None:
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg/ffprobe are not on PATH")
    folder = tmp_path_factory.mktemp("mpegts")
    video = ["-f", "lavfi", "-t", "4", "-i", "testsrc2=size=160x90:rate=25", "-g", "50"]
    _ffmpeg(*video, "-c:v", "libx264", "-preset", "veryfast", "-f", "mp4", *CMAF_FLAGS, str(folder / "v.mp4"))
    _ffmpeg(
        *("-f", "lavfi", "-t", "4", "-i", "sine=frequency=440:sample_rate=48000"),
        *("-c:a", "aac", "-b:a", "64k", "-frag_duration", "1000000", "-f", "mp4", *CMAF_FLAGS),
        str(folder / "a.mp4"),
    )
    _ffmpeg(
        *video,
        *("-c:v", "libx265", "-preset", "veryfast", "-tag:v", "hvc1"),
        *("-x265-params", "log-level=none", "-f", "mp4", *CMAF_FLAGS, str(folder / "h.mp4")),
    )
    return Recorded(_capture(folder / "v.mp4"), _capture(folder / "a.mp4"), _capture(folder / "h.mp4"))


def ffprobe(path: Path) -> dict[str, list[dict[str, object]]]:
    cmd = ["ffprobe", "-v", "error", "-show_packets", "-show_streams", "-of", "json", str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    data: dict[str, list[dict[str, object]]] = json.loads(result.stdout)
    return data


def decode_errors(path: Path, level: str = "error") -> str:
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-v", level, "-xerror", "-i", str(path), "-f", "null", "-"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stderr


def expected_times(ts: TsTrack) -> list[tuple[int, int]]:
    """(pts, dts) per sample on the 90 kHz clock, unwrapped (ffprobe unwraps the 33-bit values)."""
    shift = max(ts.dts_shift, required_dts_shift(ts.samples))
    out, time = [], ts.decode_time
    for s in ts.samples:
        scale = ts.track.timescale
        out.append((to_clock(time + s.composition_offset, scale), to_clock(time - shift, scale)))
        time += s.duration
    return out


def check_probe(path: Path, tracks: list[TsTrack]) -> None:
    probe = ffprobe(path)
    by_index = {s["index"]: s for s in probe["streams"]}
    codec_of = {"avc1": "h264", "hvc1": "hevc", "mp4a": "aac"}
    assert sorted(str(s["codec_name"]) for s in by_index.values()) == sorted(
        codec_of[t.track.codec] for t in tracks
    )
    for ts in tracks:
        index = next(i for i, s in by_index.items() if s["codec_name"] == codec_of[ts.track.codec])
        packets = [p for p in probe["packets"] if p["stream_index"] == index]
        assert len(packets) == len(ts.samples)
        got = [(p["pts"], p["dts"]) for p in packets]
        assert got == expected_times(ts)
        if ts.track.kind is TrackKind.VIDEO:
            assert str(packets[0]["flags"]).startswith("K")
            assert [str(p["flags"]).startswith("K") for p in packets] == [s.is_sync for s in ts.samples]
    assert decode_errors(path) == ""


@pytest.mark.parametrize("case", ["video+audio", "video", "audio", "hevc"])
def test_ffprobe_reads_what_was_muxed(recorded: Recorded, case: str, tmp_path: Path) -> None:
    choices = {
        "video+audio": [recorded.video.segment(0), recorded.audio.cut(0, 2)],
        "video": [recorded.video.segment(0)],
        "audio": [recorded.audio.cut(0, 2)],
        "hevc": [recorded.hevc.segment(0)],
    }
    tracks = choices[case]
    assert tracks[0].samples[0].is_sync
    assert any(s.composition_offset < 0 for t in tracks for s in t.samples) == (case != "audio")
    path = tmp_path / "seg.ts"
    path.write_bytes(mux_segment(tracks, 1))
    check_probe(path, tracks)


def test_consecutive_segments_play_back_to_back(recorded: Recorded, tmp_path: Path) -> None:
    segments = [
        [recorded.video.segment(0), recorded.audio.cut(0, 2)],
        [recorded.video.segment(1), recorded.audio.cut(2, 4)],
    ]
    assert all(s[0].samples[0].is_sync for s in segments)
    path = tmp_path / "both.ts"
    path.write_bytes(b"".join(mux_segment(tracks, i) for i, tracks in enumerate(segments, 1)))
    assert "Continuity check failed" not in decode_errors(path, "debug")
    probe = ffprobe(path)
    kinds = {s["index"]: s["codec_type"] for s in probe["streams"]}
    video = [p for p in probe["packets"] if kinds[p["stream_index"]] == "video"]
    audio = [p for p in probe["packets"] if kinds[p["stream_index"]] == "audio"]
    assert [(p["pts"], p["dts"]) for p in video] == expected_times(segments[0][0]) + expected_times(
        segments[1][0]
    )
    dts = [int(str(p["dts"])) for p in video]
    assert all(b - a == 3600 for a, b in itertools.pairwise(dts))  # 25 fps, no jump at 2 s
    pts = [int(str(p["pts"])) for p in audio]
    assert len(pts) == len(segments[0][1].samples) + len(segments[1][1].samples)
    assert all(b - a == 1920 for a, b in itertools.pairwise(pts))  # 1024 samples at 48 kHz
    assert sorted(int(str(p["pts"])) for p in video) == list(range(0, 100 * 3600, 3600))
