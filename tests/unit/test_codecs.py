"""media.sps, media.av1, media.opus and media.cmaf.track_from_config, driven by real decoder configurations.

The hex fixtures were captured once from encoders, so these tests need none: PyAV 18's FFmpeg 8 with
libx264, libx265, libsvtav1, libopus and its AAC encoder, and the system ffmpeg 5.1's libaom-av1 for the
still-picture, timing-info, 4:4:4, monochrome and 12-bit AV1 sequence headers. Cases marked synthetic
cover syntax none of those encoders writes (H.264 SPS scaling lists and pic_order_cnt_type 1, separate
colour planes, HEVC sub-layer profile and level info, several AV1 operating points); each was written
from the specification's syntax tables and read back field by field with FFmpeg's ``trace_headers``
bitstream filter, which parsed them to their stop bits, with the sizes these tables expect.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media import av1
from media.aac import AudioSpecificConfig
from media.bmff import Cursor
from media.boxes import (
    NON_SYNC_SAMPLE_FLAGS,
    SYNC_SAMPLE_FLAGS,
    AudioSampleEntry,
    AV1CodecConfigurationBox,
    AVCConfigurationBox,
    BitRateBox,
    Box,
    ESDescriptorBox,
    HEVCConfigurationBox,
    MediaBox,
    MediaHeaderBox,
    MediaInformationBox,
    MovieBox,
    OpusSpecificBox,
    SampleDescriptionBox,
    SampleTableBox,
    TrackBox,
    VisualSampleEntry,
    parse_boxes,
)
from media.cmaf import (
    CodecInfo,
    aac_frame_duration,
    codec_info,
    track_from_config,
    track_from_trak,
    write_fragment,
)
from media.errors import BoxError, MediaError, UnsupportedMedia
from media.model import Sample, Track, TrackKind
from media.opus import OpusHead, packet_duration
from media.sps import BitReader, parse_avc_sps, parse_hevc_sps, unescape_rbsp


class BitWriter:
    """Builds the small crafted bitstreams of the error cases (MSB first, Exp-Golomb, RBSP stop bit)."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> BitWriter:
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]
        return self

    def ue(self, value: int) -> BitWriter:
        n = (value + 1).bit_length()
        return self.u(n - 1, 0).u(n, value + 1)

    def rbsp(self) -> bytes:
        bits = [*self.bits, 1]
        bits += [0] * (-len(bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def _baseline_sps(width_mbs: int, height_mbs: int, crop: tuple[int, int, int, int] | None) -> bytes:
    """A Baseline-profile SPS (no emulation prevention needed for these values)."""
    w = BitWriter().u(8, 0x67).u(8, 66).u(8, 0xC0).u(8, 30).ue(0)
    w.ue(0).ue(0).ue(2)  # log2_max_frame_num_minus4, pic_order_cnt_type 0, log2_max_poc_lsb_minus4
    w.ue(1).u(1, 0).ue(width_mbs - 1).ue(height_mbs - 1).u(1, 1).u(1, 1)
    w.u(1, 1 if crop else 0)
    for offset in crop or ():
        w.ue(offset)
    return w.u(1, 0).rbsp()


# ---------------------------------------------------------------------------------------------
# Bit reader and RBSP


@pytest.mark.parametrize(
    ("bits", "ue", "se"),
    [("1", 0, 0), ("010", 1, 1), ("011", 2, -1), ("00100", 3, 2), ("00101", 4, -2), ("0001000", 7, 4)],
)
def test_exp_golomb(bits: str, ue: int, se: int) -> None:
    pad = bits + "1" + "0" * (-(len(bits) + 1) % 8)
    data = int(pad, 2).to_bytes(len(pad) // 8, "big")
    assert BitReader(data, "t").ue() == ue
    assert BitReader(data, "t").se() == se
    assert BitReader(data, "t").uvlc() == ue  # AV1's uvlc() is the same code below 32 zeros


def test_bit_reader_fields_and_limits() -> None:
    r = BitReader(bytes.fromhex("a5ff"), "test")
    assert (r.u(0), r.u(3), r.flag(), r.u(4), r.bits_left) == (0, 5, False, 5, 8)
    with pytest.raises(BoxError, match=r"test: cut short: level needs 9 bits at bit 8, 8 left"):
        r.u(9, "level")
    longest = BitReader(bytes(4) + b"\xff\xff\xff\xff", "t")  # 32 zeros then 33 bits: 2**32 - 1
    with pytest.raises(BoxError, match="more than 31 leading zero bits"):
        longest.ue("x")
    assert BitReader(bytes(4) + b"\x80", "t").uvlc() == 2**32 - 1
    assert BitReader(bytes.fromhex("0000ffff80"), "t").ue() == 2**16 - 1 + 0xFFFF
    with pytest.raises(BoxError, match="cut short: skipped needs 3 bits"):
        BitReader(b"", "t").skip(3, "skipped")


def test_unescape_rbsp() -> None:
    assert unescape_rbsp(bytes.fromhex("0000030100")) == bytes.fromhex("00000100")
    assert unescape_rbsp(bytes.fromhex("000003000003")) == bytes.fromhex("00000000")
    assert unescape_rbsp(bytes.fromhex("00000300000301")) == bytes.fromhex("0000000001")
    assert unescape_rbsp(bytes.fromhex("000103")) == bytes.fromhex("000103")


# ---------------------------------------------------------------------------------------------
# H.264 SPS (ISO/IEC 14496-10 §7.3.2.1.1)

# name, SPS NAL unit, displayed size, coded size, chroma_format_idc, frame_mbs_only_flag
AVC_SPS: list[tuple[str, str, tuple[int, int], tuple[int, int], int, bool]] = [
    (
        "x264-1280x720-high",
        "6764001facd9405005ba1000000300100000030320f1831960",
        (1280, 720),
        (1280, 720),
        1,
        True,
    ),
    (
        "x264-1920x1080-high-cropped-from-1088",
        "67640028acd940780227e584000003000400000300c83c60c658",
        (1920, 1080),
        (1920, 1088),
        1,
        True,
    ),
    (
        "x264-320x180-baseline",
        "6742c00cd901419f9e1000000300100000030320f142a480",
        (320, 180),
        (320, 192),
        1,
        True,
    ),
    (
        "x264-320x180-high-444-predictive",
        "67f4000c919b282833f1b0800000030080000019078a14cb",
        (320, 180),
        (320, 192),
        3,
        True,
    ),
    (
        "x264-1920x1080-interlaced-field-cropping",
        "67640028acd94078044fdc20000003002000000643e2c5b2c0",
        (1920, 1080),
        (1920, 1088),
        1,
        False,
    ),
    (
        "x264-640x360-high-422-10bit",
        "677a001eb6cd940a02ff8984000003000400000300c83c58b658",
        (640, 360),
        (640, 368),
        2,
        True,
    ),
    (
        "x264-1366x768-monochrome-crop-in-luma-samples",
        "67640020f36501581878be1000000300100000030320f1831960",
        (1366, 768),
        (1376, 768),
        0,
        True,
    ),
    (
        "synthetic-high-scaling-lists",
        "67640028a6d95d10ae8857442cae2d2b8b257442ba215d10ae8857442ba215d10ae8857442ba215d10ae885752b8bd940780227e54",
        (1920, 1080),
        (1920, 1088),
        1,
        True,
    ),
    (
        "synthetic-444-12-scaling-lists-separate-planes-poc1-field",
        "67f4002892db2ba215d10ae885095c5cae8857442ba215d10ae8857442ba215d10ae8857442ba215d10ae895c5a5717438"
        "a2228e2828674c89",
        (317, 184),
        (320, 192),
        3,
        False,
    ),
    ("synthetic-baseline-poc1-offsets", "67420028d0e2888a38a0b04bc4e8", (336, 288), (352, 288), 1, True),
    ("synthetic-422-field-poc2-crop", "67640028b6cb2816845db490", (712, 540), (720, 544), 2, False),
]


@pytest.mark.parametrize(
    ("nal", "size", "coded", "chroma", "frame_mbs_only"),
    [pytest.param(bytes.fromhex(h), s, c, ch, f, id=n) for n, h, s, c, ch, f in AVC_SPS],
)
def test_avc_sps_size(
    nal: bytes, size: tuple[int, int], coded: tuple[int, int], chroma: int, frame_mbs_only: bool
) -> None:
    sps = parse_avc_sps(nal)
    assert (sps.width, sps.height) == size
    assert (sps.coded_width, sps.coded_height) == coded
    assert (sps.chroma_format_idc, sps.frame_mbs_only) == (chroma, frame_mbs_only)


def test_avc_sps_fields() -> None:
    sps = parse_avc_sps(bytes.fromhex(AVC_SPS[5][1]))
    assert (sps.profile_idc, sps.constraint_flags, sps.level_idc, sps.sps_id) == (122, 0, 30, 0)
    assert (sps.bit_depth_luma, sps.bit_depth_chroma, sps.separate_colour_plane) == (10, 10, False)
    planes = parse_avc_sps(bytes.fromhex(AVC_SPS[8][1]))
    assert planes.separate_colour_plane and planes.profile_idc == 244 and planes.bit_depth_luma == 10


@pytest.mark.parametrize("hex_", [h for _, h, *_ in AVC_SPS[:3]] + [AVC_SPS[8][1]])
def test_avc_sps_prefixes_fail_cleanly(hex_: str) -> None:
    """Cut anywhere, an SPS gives the full answer (cut after the cropping window) or a BoxError."""
    nal = bytes.fromhex(hex_)
    whole = parse_avc_sps(nal)
    for end in range(len(nal)):
        try:
            assert parse_avc_sps(nal[:end]) == whole
        except BoxError as exc:
            assert "H.264 SPS" in str(exc)
    with pytest.raises(BoxError, match="cut short"):
        parse_avc_sps(nal[:4])


@pytest.mark.parametrize("hex_", [AVC_SPS[0][1], AVC_SPS[8][1]])
def test_avc_sps_bit_flips_raise_only_media_errors(hex_: str) -> None:
    nal = bytes.fromhex(hex_)
    for bit in range(len(nal) * 8):
        corrupt = bytearray(nal)
        corrupt[bit // 8] ^= 0x80 >> (bit % 8)
        with contextlib.suppress(MediaError):
            parse_avc_sps(bytes(corrupt))


@pytest.mark.parametrize(
    ("nal", "message"),
    [
        (bytes.fromhex("68ce3c80"), "NAL unit type 8 is not a sequence parameter set"),
        (bytes.fromhex("e742"), "forbidden_zero_bit"),
        (
            _baseline_sps(22, 18, (0, 200, 0, 0)),
            "cropping offsets 0,200,0,0 leave no picture of the coded 352x288",
        ),
        (_baseline_sps(22, 18, (0, 0, 72, 72)), "leave no picture"),
        (bytes.fromhex("6764001f") + bytes(5), "seq_parameter_set_id has more than 31 leading zero bits"),
        (BitWriter().u(8, 0x67).u(8, 100).u(16, 0).ue(32).rbsp(), "seq_parameter_set_id 32 exceeds 31"),
        (BitWriter().u(8, 0x67).u(8, 100).u(16, 0).ue(0).ue(4).rbsp(), "chroma_format_idc 4 exceeds 3"),
        (
            BitWriter().u(8, 0x67).u(8, 66).u(16, 0).ue(0).ue(0).ue(1).u(1, 0).ue(0).ue(0).ue(256).rbsp(),
            "num_ref_frames_in_pic_order_cnt_cycle 256 exceeds 255",
        ),
    ],
    ids=["pps", "forbidden-bit", "crop-width", "crop-height", "long-code", "sps-id", "chroma", "poc-cycle"],
)
def test_avc_sps_errors(nal: bytes, message: str) -> None:
    with pytest.raises(BoxError, match=message):
        parse_avc_sps(nal, path="avcC/SPS")


def test_avc_sps_error_names_the_field_and_path() -> None:
    with pytest.raises(BoxError) as info:
        parse_avc_sps(bytes.fromhex("6764"), path="avcC/SPS")
    assert info.value.path == "avcC/SPS"
    assert info.value.message == "H.264 SPS: cut short: constraint_set_flags needs 8 bits at bit 16, 0 left"


# ---------------------------------------------------------------------------------------------
# HEVC SPS (ISO/IEC 23008-2 §7.3.2.2.1)

# name, SPS NAL unit, displayed size, coded size, chroma_format_idc, sps_max_sub_layers
HEVC_SPS: list[tuple[str, str, tuple[int, int], tuple[int, int], int, int]] = [
    (
        "x265-1280x720-main",
        "42010101600000030090000003000003005da00280802d165959a4932b9a020000030002000003003210",
        (1280, 720),
        (1280, 720),
        1,
        1,
    ),
    (
        "x265-1920x1080-main",
        "420101016000000300900000030000030078a003c08010e596566924cae68080000003008000000c84",
        (1920, 1080),
        (1920, 1080),
        1,
        1,
    ),
    (
        "x265-320x180-conformance-window",
        "42010101600000030090000003000003003ca00a080b9f796566924cae6808000003000800000300c840",
        (320, 180),
        (320, 184),
        1,
        1,
    ),
    (
        "x265-320x180-rext-444",
        "4201010408000003009e0800000300003c9001410173e5cb2b349265734040000003004000000642",
        (320, 180),
        (320, 184),
        3,
        1,
    ),
    (
        "x265-1918x1078-main10",
        "420101022000000300900000030000030078a003c08010e754d96566924cae6808000003000800000300c840",
        (1918, 1078),
        (1920, 1080),
        1,
        1,
    ),
    (
        "x265-640x360-three-temporal-sub-layers",
        "42010401600000030090000003000003003f0000a005020169659594aca565924cae6808000003000800000300c840",
        (640, 360),
        (640, 360),
        1,
        3,
    ),
    (
        "x265-640x360-rext-422",
        "4201010408000003009d0800000300003fb00502016965959a4932b9a02000000300200000030321",
        (640, 360),
        (640, 360),
        2,
        1,
    ),
    (
        "x265-352x288-monochrome",
        "4201010408000003009fc800000300003cc02c2012165959a4932b9a020000030002000003003210",
        (352, 288),
        (352, 288),
        0,
        1,
    ),
    (
        "synthetic-4-sub-layers-profile-level-info-444-separate-planes",
        "42010604080000030090000003000003005dd80004080000030090000003000003001e3c0408000003009000000300000300920078"
        "900220d9e272cae572b95e49120820",
        (1920, 1080),
        (1928, 1088),
        3,
        4,
    ),
    (
        "synthetic-2-sub-layers-422-window",
        "42010204080000030090000003000003005dc00004080000030090000003000003001eb0051201e1a23796572bc9224104",
        (640, 476),
        (648, 480),
        2,
        2,
    ),
    (
        "synthetic-monochrome-window",
        "42010104080000030090000003000003005dc06481a72cb9657924482080",
        (196, 100),
        (200, 104),
        0,
        1,
    ),
]


@pytest.mark.parametrize(
    ("nal", "size", "coded", "chroma", "sub_layers"),
    [pytest.param(bytes.fromhex(h), s, c, ch, sl, id=n) for n, h, s, c, ch, sl in HEVC_SPS],
)
def test_hevc_sps_size(
    nal: bytes, size: tuple[int, int], coded: tuple[int, int], chroma: int, sub_layers: int
) -> None:
    sps = parse_hevc_sps(nal)
    assert (sps.width, sps.height) == size
    assert (sps.coded_width, sps.coded_height) == coded
    assert (sps.chroma_format_idc, sps.max_sub_layers) == (chroma, sub_layers)


def test_hevc_sps_fields() -> None:
    main10 = parse_hevc_sps(bytes.fromhex(HEVC_SPS[4][1]))
    assert (main10.profile_space, main10.tier, main10.profile_idc, main10.level_idc) == (0, 0, 2, 120)
    assert (main10.bit_depth_luma, main10.bit_depth_chroma, main10.sps_id) == (10, 10, 0)
    planes = parse_hevc_sps(bytes.fromhex(HEVC_SPS[8][1]))
    assert planes.separate_colour_plane and planes.profile_idc == 4 and planes.level_idc == 93


@pytest.mark.parametrize("hex_", [HEVC_SPS[0][1], HEVC_SPS[5][1], HEVC_SPS[8][1]])
def test_hevc_sps_prefixes_fail_cleanly(hex_: str) -> None:
    nal = bytes.fromhex(hex_)
    whole = parse_hevc_sps(nal)
    for end in range(len(nal)):
        try:
            assert parse_hevc_sps(nal[:end]) == whole
        except BoxError as exc:
            assert "HEVC SPS" in str(exc)


@pytest.mark.parametrize("hex_", [HEVC_SPS[0][1], HEVC_SPS[8][1]])
def test_hevc_sps_bit_flips_raise_only_media_errors(hex_: str) -> None:
    nal = bytes.fromhex(hex_)
    for bit in range(len(nal) * 8):
        corrupt = bytearray(nal)
        corrupt[bit // 8] ^= 0x80 >> (bit % 8)
        with contextlib.suppress(MediaError):
            parse_hevc_sps(bytes(corrupt))


def test_hevc_sps_errors() -> None:
    sps = bytes.fromhex(HEVC_SPS[0][1])
    with pytest.raises(BoxError, match="NAL unit type 32 is not a sequence parameter set"):
        parse_hevc_sps(bytes.fromhex("40010c01ffff016000000300900000030000030078959809"))
    with pytest.raises(BoxError, match="sps_max_sub_layers_minus1 7 exceeds 6"):
        parse_hevc_sps(sps[:2] + b"\x0e" + sps[3:])
    with pytest.raises(UnsupportedMedia, match="layer 1: only base-layer") as info:
        parse_hevc_sps(sps[:1] + b"\x09" + sps[2:], path="hvcC/SPS")
    assert info.value.path == "hvcC/SPS"


# ---------------------------------------------------------------------------------------------
# AV1 sequence header OBUs (AV1 specification §5.5) and OBU framing (§5.3)

# name, Sequence Header OBU, (width, height), seq_profile, bit depth, (mono, ssx, ssy, csp),
# (described, primaries, transfer, matrix, range), operating points, reduced_still_picture_header
AV1_SEQUENCE_HEADERS: list[
    tuple[
        str,
        str,
        tuple[int, int],
        int,
        int,
        tuple[bool, int, int, int],
        tuple[bool, int, int, int, int],
        int,
        bool,
    ]
] = [
    (
        "svt-320x180-av1C",
        "0a0b000000043cfecc02f80040",
        (320, 180),
        0,
        8,
        (False, 1, 1, 0),
        (False, 2, 2, 2, 0),
        1,
        False,
    ),
    (
        "svt-320x180-keyframe",
        "0a0b000000043cfecc6af98040",
        (320, 180),
        0,
        8,
        (False, 1, 1, 0),
        (False, 2, 2, 2, 0),
        1,
        False,
    ),
    (
        "svt-1280x720-10bit",
        "0a0b0000002d4cffb3c02f8404",
        (1280, 720),
        0,
        10,
        (False, 1, 1, 0),
        (False, 2, 2, 2, 0),
        1,
        False,
    ),
    (
        "svt-bt709",
        "0a0e000000043cfecc02f81010101040",
        (320, 180),
        0,
        8,
        (False, 1, 1, 0),
        (True, 1, 1, 1, 0),
        1,
        False,
    ),
    (
        "svt-bt2020-pq-full-range",
        "0a0e000000043cfecc02f85091009840",
        (320, 180),
        0,
        10,
        (False, 1, 1, 0),
        (True, 9, 16, 9, 1),
        1,
        False,
    ),
    (
        "aom-still-reduced-header",
        "0a061819afc76802",
        (96, 72),
        0,
        8,
        (False, 1, 1, 0),
        (False, 2, 2, 2, 0),
        1,
        True,
    ),
    (
        "aom-timing-decoder-model-srgb-444",
        "0a20240000000400000079780000000a530000035f915f90bbb63e336be480868010",
        (200, 100),
        1,
        8,
        (False, 0, 0, 0),
        (True, 1, 13, 0, 1),
        1,
        False,
    ),
    (
        "aom-timing-constant",
        "0a1624000000040000007b400000bbb63e336be480868010",
        (200, 100),
        1,
        8,
        (False, 0, 0, 0),
        (True, 1, 13, 0, 1),
        1,
        False,
    ),
    (
        "aom-444",
        "0a0a20000003bd7c79b5f204",
        (176, 144),
        1,
        8,
        (False, 0, 0, 0),
        (False, 2, 2, 2, 0),
        1,
        False,
    ),
    (
        "aom-monochrome",
        "0a0a00000003bd7c79b5f254",
        (176, 144),
        0,
        8,
        (True, 1, 1, 0),
        (False, 2, 2, 2, 1),
        1,
        False,
    ),
    (
        "aom-12bit",
        "0a0b40000003bd7c79b5f2c610",
        (176, 144),
        2,
        12,
        (False, 1, 1, 0),
        (False, 2, 2, 2, 0),
        1,
        False,
    ),
    (
        "synthetic-3-operating-points-decoder-model-display-delay",
        "0a290400000fa40003a983a400000fa4848840d3be8962620240401880e047355dfe1bcd3feb9d09100944",
        (1920, 1080),
        0,
        10,
        (False, 1, 1, 2),
        (True, 9, 16, 9, 0),
        3,
        False,
    ),
    (
        "synthetic-profile2-12bit-422",
        "0a0a4000001c477e1a008331",
        (480, 270),
        2,
        12,
        (False, 1, 0, 0),
        (False, 2, 2, 2, 1),
        1,
        False,
    ),
]


def _obu_payload(obu_hex: str) -> bytes:
    (obu,) = av1.iter_obus(bytes.fromhex(obu_hex))
    assert obu.type == av1.OBU_SEQUENCE_HEADER
    return obu.payload


@pytest.mark.parametrize(
    ("obu", "size", "profile", "depth", "chroma", "colour", "ops", "reduced"),
    [pytest.param(*case[1:], id=case[0]) for case in AV1_SEQUENCE_HEADERS],
)
def test_av1_sequence_header(
    obu: str,
    size: tuple[int, int],
    profile: int,
    depth: int,
    chroma: tuple[bool, int, int, int],
    colour: tuple[bool, int, int, int, int],
    ops: int,
    reduced: bool,
) -> None:
    sh = av1.parse_sequence_header(_obu_payload(obu))
    assert (sh.max_frame_width, sh.max_frame_height) == size
    assert (sh.seq_profile, sh.bit_depth, sh.operating_points, sh.reduced_still_picture_header) == (
        profile,
        depth,
        ops,
        reduced,
    )
    assert (sh.mono_chrome, sh.subsampling_x, sh.subsampling_y, sh.chroma_sample_position) == chroma
    assert (
        sh.color_description_present,
        sh.color_primaries,
        sh.transfer_characteristics,
        sh.matrix_coefficients,
        sh.color_range,
    ) == colour


def test_av1_first_operating_point_gives_level_and_tier() -> None:
    sh = av1.parse_sequence_header(_obu_payload(AV1_SEQUENCE_HEADERS[11][1]))
    assert (sh.seq_level_idx_0, sh.seq_tier_0) == (9, 1)
    still = av1.parse_sequence_header(_obu_payload(AV1_SEQUENCE_HEADERS[5][1]))
    assert still.still_picture and (still.seq_level_idx_0, still.seq_tier_0) == (0, 0)


@pytest.mark.parametrize("case", [AV1_SEQUENCE_HEADERS[0], AV1_SEQUENCE_HEADERS[6], AV1_SEQUENCE_HEADERS[11]])
def test_av1_sequence_header_prefixes_fail_cleanly(case: tuple[object, ...]) -> None:
    payload = _obu_payload(str(case[1]))
    whole = av1.parse_sequence_header(payload)
    for end in range(len(payload)):
        try:
            assert av1.parse_sequence_header(payload[:end]) == whole
        except BoxError as exc:
            assert "AV1 sequence header: cut short" in str(exc)
    with pytest.raises(BoxError, match="cut short"):
        av1.parse_sequence_header(payload[:2])


def test_av1_reserved_profile_is_unsupported() -> None:
    with pytest.raises(UnsupportedMedia, match="seq_profile 3 is reserved"):
        av1.parse_sequence_header(bytes.fromhex("6000"))


# A libsvtav1 temporal unit of a 64x64 keyframe: Temporal Delimiter, Sequence Header, Frame OBU.
AV1_KEYFRAME_TU = "1200 0a0a00000002afff895f2008 3212 1000f3823ffe6983000008942383cfd3230a"
AV1_KEYFRAME_SH = "0a0a00000002afff895f2008"


def test_av1_obus_of_a_temporal_unit() -> None:
    tu = bytes.fromhex(AV1_KEYFRAME_TU)
    obus = list(av1.iter_obus(tu))
    assert [o.type for o in obus] == [av1.OBU_TEMPORAL_DELIMITER, av1.OBU_SEQUENCE_HEADER, 6]
    assert [len(o.payload) for o in obus] == [0, 10, 18]
    assert b"".join(o.raw for o in obus) == tu
    assert av1.find_sequence_header(tu) == bytes.fromhex(AV1_KEYFRAME_SH)
    assert av1.find_sequence_header(bytes.fromhex("1200 3212 1000f3823ffe6983000008942383cfd3230a")) is None
    assert av1.find_sequence_header(b"") is None


def test_av1_strip_temporal_delimiters() -> None:
    tu = bytes.fromhex(AV1_KEYFRAME_TU)
    assert av1.strip_temporal_delimiters(tu) == tu[2:]
    assert av1.strip_temporal_delimiters(tu[2:]) == tu[2:]
    assert av1.strip_temporal_delimiters(bytes.fromhex("1200")) == b""
    # The last OBU of a sample may omit its size field (binding §2.4); it stays as it was.
    no_size = tu[:-20] + b"\x30" + tu[-18:]
    assert av1.strip_temporal_delimiters(no_size) == no_size[2:]
    with pytest.raises(BoxError, match="obu_forbidden_bit"):
        av1.strip_temporal_delimiters(b"\x92\x00")


def test_av1_sequence_header_without_size_field_gets_one() -> None:
    payload = bytes.fromhex(AV1_KEYFRAME_SH)[2:]
    assert av1.find_sequence_header(bytes.fromhex("1200") + b"\x08" + payload) == bytes.fromhex(
        AV1_KEYFRAME_SH
    )
    # With an extension header (temporal_id 1, spatial_id 1) and no size field.
    (obu,) = av1.iter_obus(b"\x0c\x28" + payload)
    assert (obu.temporal_id, obu.spatial_id, obu.payload) == (1, 1, payload)
    assert obu.with_size_field() == b"\x0e\x28\x0a" + payload


@pytest.mark.parametrize(
    ("hex_", "message"),
    [
        ("8a00", "obu_forbidden_bit"),
        ("0a05 0000", "declares 5 bytes, 2 left"),
        ("0a80", "leb128 at byte 1 is cut short after 1 bytes"),
        ("0a 8080808080808080 00", "runs past 8 bytes"),
        ("0a ffffffff1f", "above 2\\*\\*32 - 1"),
        ("0c", "cut short in its extension header"),
    ],
)
def test_av1_malformed_obus(hex_: str, message: str) -> None:
    with pytest.raises(BoxError, match=message):
        list(av1.iter_obus(bytes.fromhex(hex_), path="av1C"))


@pytest.mark.parametrize("value", [0, 1, 127, 128, 16383, 16384, 2**32 - 1])
def test_leb128_round_trip(value: int) -> None:
    data = av1.write_leb128(value) + b"\xaa"
    assert av1.read_leb128(data, 0) == (value, len(data) - 1)


def test_leb128_accepts_padded_encodings() -> None:
    assert av1.read_leb128(bytes.fromhex("85808000"), 0) == (5, 4)


# av1C record, codecs parameter string (AV1 ISOBMFF binding §5)
AV1_CODEC_STRINGS = [
    ("svt-8bit-unspecified-colour", "81000c00" + "0a0b000000043cfecc02f80040", "av01.0.00M.08"),
    ("svt-10bit", "81054c00" + "0a0b0000002d4cffb3c02f8404", "av01.0.05M.10"),
    ("svt-bt709-is-the-default", "81000c00" + "0a0e000000043cfecc02f81010101040", "av01.0.00M.08"),
    ("svt-pq-full-range", "81004c00" + "0a0e000000043cfecc02f85091009840", "av01.0.00M.10.0.110.09.16.09.1"),
    ("binding-example-form", "8109ce00" + AV1_SEQUENCE_HEADERS[11][1], "av01.0.09H.10.0.112.09.16.09.0"),
    ("aom-still", "81000c00" + "0a061819afc76802", "av01.0.00M.08"),
    ("aom-monochrome-full-range", "81001c00" + "0a0a00000003bd7c79b5f254", "av01.0.00M.08.1.110.01.01.01.1"),
    (
        "aom-srgb-444",
        "81200000" + "0a1624000000040000007b400000bbb63e336be480868010",
        "av01.1.00M.08.0.000.01.13.00.1",
    ),
    ("profile2-12bit-422", "81406800" + "0a0a4000001c477e1a008331", "av01.2.00M.12.0.100.01.01.01.1"),
    ("no-config-obus-420", "81000c00", "av01.0.00M.08"),
    ("no-config-obus-444", "81200000", "av01.1.00M.08.0.000.01.01.01.0"),
]


@pytest.mark.parametrize(("record", "expected"), [pytest.param(r, e, id=n) for n, r, e in AV1_CODEC_STRINGS])
def test_av1_codec_string(record: str, expected: str) -> None:
    box = AV1CodecConfigurationBox.parse(Cursor(bytes.fromhex(record), path="av1C", base=0))
    assert av1.codec_string(box) == expected


def test_av1_codec_string_refuses_a_broken_config_obu() -> None:
    box = AV1CodecConfigurationBox(config_obus=bytes.fromhex("0a0b0000"))
    with pytest.raises(BoxError, match="declares 11 bytes") as info:
        av1.codec_string(box)
    assert info.value.path == "av1C"


# ---------------------------------------------------------------------------------------------
# Opus identification header (RFC 7845 §5.1) and dOps

OPUS_HEAD_STEREO = "4f707573486561640102380180bb0000000000"  # libopus, 48 kHz stereo
OPUS_HEAD_51 = "4f707573486561640106380180bb00000000010402000401020305"  # libopus 5.1, family 1


@pytest.mark.parametrize(
    ("head", "fields", "dops"),
    [
        (OPUS_HEAD_STEREO, (1, 2, 312, 48000, 0, 0, 1, 1, b""), "00000013644f7073000201380000bb80000000"),
        ("4f707573486561640101380180bb0000000000", (1, 1, 312, 48000, 0, 0, 1, 0, b""), None),
        ("4f707573486561640102780080bb0000000000", (1, 2, 120, 48000, 0, 0, 1, 1, b""), None),
        (
            OPUS_HEAD_51,
            (1, 6, 312, 48000, 0, 1, 4, 2, bytes([0, 4, 1, 2, 3, 5])),
            # byte for byte what FFmpeg's mp4 muxer writes for the same stream
            "0000001b644f7073000601380000bb800000010402000401020305",
        ),
        (
            # minor version 15, 3 channels, 44.1 kHz input, gain -1 dB (Q7.8), family 255
            "4f707573486561640f03380144ac000000ff ff 02 01 0001ff",
            (15, 3, 312, 44100, -256, 255, 2, 1, bytes([0, 1, 255])),
            None,
        ),
    ],
    ids=["stereo", "mono", "2.5ms-pre-skip", "5.1-family-1", "family-255-negative-gain"],
)
def test_opus_head(head: str, fields: tuple[object, ...], dops: str | None) -> None:
    data = bytes.fromhex(head)
    parsed = OpusHead.parse(data)
    assert (
        parsed.version,
        parsed.channels,
        parsed.pre_skip,
        parsed.input_sample_rate,
        parsed.output_gain,
        parsed.mapping_family,
        parsed.stream_count,
        parsed.coupled_count,
        parsed.channel_mapping,
    ) == fields
    assert bytes(parsed) == data
    assert OpusHead.parse(data + b"\x01\x02") == parsed  # RFC 7845 §5.1: later bytes are ignored
    box = parsed.to_box()
    if dops is not None:
        assert bytes(box) == bytes.fromhex(dops)
    back = OpusHead.from_box(box)
    assert back.to_box() == box and bytes(back)[9:] == data[9:]


@pytest.mark.parametrize(
    ("head", "error", "message"),
    [
        ("4f70757348656164 01 02", BoxError, "OpusHead has 10 bytes, at least 19"),
        ("4f70757354616773 0102380180bb0000000000", BoxError, "starts with b'OpusTags'"),
        ("4f70757348656164 1002380180bb0000000000", UnsupportedMedia, "version 16 \\(major version 1\\)"),
        ("4f70757348656164 0100380180bb0000000000", BoxError, "channel count is 0"),
        ("4f70757348656164 0103380180bb0000000000", BoxError, "family 0 allows 1 or 2 channels, not 3"),
        (
            "4f70757348656164 0109380180bb0000000001 0504 000102030405060708",
            BoxError,
            "family 1 allows 1 to 8",
        ),
        ("4f70757348656164 0106380180bb0000000001 0402 0004", BoxError, "table needs 8 bytes, 4 present"),
        ("4f70757348656164 0102380180bb0000000001 0000 0001", BoxError, "stream count of 0"),
        ("4f70757348656164 0102380180bb0000000001 0102 0001", BoxError, "coupled stream count 2 exceeds"),
        ("4f70757348656164 0102380180bb00000000ff c864 0001", BoxError, "is 300, above 255"),
        (
            "4f70757348656164 0102380180bb0000000001 0101 0002",
            BoxError,
            "channel 1 maps to decoded channel 2",
        ),
    ],
)
def test_opus_head_errors(head: str, error: type[MediaError], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        OpusHead.parse(bytes.fromhex(head))
    assert info.value.path == "OpusHead"


def test_opus_head_from_a_dops_without_its_table() -> None:
    with pytest.raises(BoxError, match="lacks its channel mapping table"):
        OpusHead.from_box(OpusSpecificBox(6, 312, 48000, 0, 1))
    with pytest.raises(BoxError, match="mapping has 2 entries for 6 channels") as info:
        OpusHead.from_box(OpusSpecificBox(6, 312, 48000, 0, 1, 4, 2, b"\x00\x01"))
    assert info.value.path == "dOps"


# Opus packets (RFC 6716 §3): libopus output unless marked, with durations in 48 kHz samples.
OPUS_PACKETS = [
    ("silk-nb-10ms", "00842859214220", 480),
    ("silk-nb-20ms", "089fe5b651d93f244deaa8ebd080", 960),
    ("silk-nb-40ms", "10c2be08142132a95670369f880160", 1920),
    ("silk-nb-60ms", "18e7a7559f910178950b877fdbf3dec3f2d44abacfe749bbb4baafedbac1bbc2d79a6c8ea1c0", 2880),
    ("silk-wb-10ms", "409716061e8707dcdbd274916e90b8", 480),
    ("silk-wb-20ms", "48847b3298cedf44fba1f44f6d5a6535fb446243f21e6c", 960),
    ("hybrid-fb-10ms", "7097c5c6f79d4ec98a363c7f9c7490a993b5ba7545cf4ca96a06820ee974bbe120a366ab", 480),
    (
        "hybrid-fb-20ms",
        "789ba312514500ace3519b7321bcef9187fdc68624663449c8b7d860ecae190d7a86c8920e5f8595498285dd463ef694298b",
        960,
    ),
    ("celt-nb-2.5ms", "8057237da2c7a7958f", 120),
    ("celt-nb-5ms", "88c00a0c16e6425fa1", 240),
    ("celt-fb-2.5ms-stereo", "e4ab3da193ecb1715a60a3842c9081bc9b4e6479985599247380b879fd3610d57fee", 120),
    (
        "code1-2x40ms",
        "11cf4eab3e92331b2a34a775f1460791b7a9ea65d4307c5e726cc1618458cf4eab3e91a25e6d4fbc20a3ffd2e22681111820163452"
        "d31deec9ef2d",
        3840,
    ),
    (
        "code2-2x40ms",
        "12181cdfd43133488b51a6249bcba78bc22d4e6ce11c238f0e901cdfd4313747183068d85d3931939f23f18acbb31b5897a180",
        3840,
    ),
    (
        "code1-2x60ms",
        "190e6fea1939325cd91498c706d3b6b80c5791bc20c0bb7c0228a8f90d24f6e2dcceb87051840e6fea193949ea5df79b40cf6c06"
        "15aebc7a425361c7bc6eb5931d2e8cd393d1947bb85680",
        5760,
    ),
    (
        "code2-2x60ms",
        "1a240e6fea19394783c3ef3219dc977a0b571b2bd4784c0e4d802f23f3f9a16596bef07460880e6fea19394783c3ef3219dc977a"
        "0b571b2bd43f16c6e2c860fb4ec71c1352131a8d6fe388",
        5760,
    ),
    ("code3-cbr-1x20ms", "0b01833f5f7fe309601f2ec16f45ad", 960),
    ("code3-cbr-padded-1x20ms", "0b4102ae8c172dea59b8846a100000", 960),
    ("code3-cbr-padded-1x40ms", "134100cf535883c763ea5ce27892030f018530c288868a4694875268f1f0", 1920),
    (
        "code3-cbr-1x60ms",
        "1b01e7a7559f909e2dcec19c1e9749c265df1d8754e26a2f8330d2ff13a8e0609c230175da9853e823b660d29c",
        2880,
    ),
    (
        "code3-vbr-5x20ms",
        "0b850a0e0e0a9fe5b67c21a39bc632f0a719cfb3819b041e80a866cf8ea0a719c246e9fdcb7c1522cf359ab0a12e167c21a39b"
        "c632f0a026814be86ccc0f753905bf80",
        4800,
    ),
    ("spec-code3-cbr-3x20ms-empty-frames", "ff03", 2880),
    ("spec-code3-6x20ms-120ms", "ff06", 5760),
    ("spec-code2-two-empty-frames", "0a00", 1920),
    ("spec-code2-two-byte-length", "fafc00" + "00" * 253, 1920),
    ("spec-code3-padding-of-254-plus-1", "1b41ff01" + "00" * 256, 2880),
    ("spec-code3-vbr-two-byte-length", "fb82fc00" + "00" * 255, 1920),
]


@pytest.mark.parametrize(("packet", "duration"), [pytest.param(p, d, id=n) for n, p, d in OPUS_PACKETS])
def test_opus_packet_duration(packet: str, duration: int) -> None:
    assert packet_duration(bytes.fromhex(packet)) == duration


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (b"", "empty \\(R1\\)"),
        (b"\x00" + bytes(1276), "1276-byte frame, above 1275 \\(R2\\)"),
        (b"\x01\x00", "odd payload of 1 bytes \\(R3\\)"),
        (b"\x01" + bytes(2552), "1276-byte frames, above 1275 \\(R2\\)"),
        (b"\x02", "ends where a frame length should be"),
        (b"\x02\xfc", "ends inside a two-byte frame length"),
        (b"\x02\x05\x00", "first frame of 5 bytes overruns the packet \\(R4\\)"),
        (b"\x02\x00" + bytes(1276), "second frame of 1276 bytes"),
        (b"\x03", "lacks its frame count byte"),
        (b"\x03\x00", "frame count of 0 \\(R5\\)"),
        (b"\x1b\x03", "lasts 8640 samples, above 120 ms \\(R5\\)"),
        (b"\xff\x07", "lasts 6720 samples"),
        (b"\x03\x02\x00", "1 bytes do not split into 2 frames \\(R6\\)"),
        (b"\x03\x41", "ends inside its padding length"),
        (b"\x03\x41\xff", "ends inside its padding length"),
        (b"\x03\x41\x05", "padding of 5 bytes overruns the packet"),
        (b"\x03\x01" + bytes(1276), "1276-byte frames, above 1275"),
        (b"\x03\x82", "ends where a frame length should be"),
        (b"\x03\x82\x05\x00", "frame lengths \\(5 bytes\\) overrun the packet \\(R7\\)"),
        (b"\x03\x82\x00" + bytes(1276), "last frame of 1276 bytes"),
    ],
)
def test_opus_malformed_packets(packet: bytes, message: str) -> None:
    with pytest.raises(BoxError, match=message):
        packet_duration(packet)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=48))
def test_opus_packet_duration_never_fails_otherwise(packet: bytes) -> None:
    try:
        duration = packet_duration(packet)
    except BoxError:
        return
    assert duration % 120 == 0 and 120 <= duration <= 5760


# ---------------------------------------------------------------------------------------------
# codec_info for av01 and Opus sample entries


def test_codec_info_av01_and_opus() -> None:
    av1c = AV1CodecConfigurationBox(config_obus=bytes.fromhex(AV1_KEYFRAME_SH))
    entry = VisualSampleEntry(b"av01", 64, 64, [av1c, BitRateBox(0, 9, 8)])
    assert codec_info(entry, "stsd") == CodecInfo("av01", "av01.0.00M.08", av1c.payload(), 64, 64, bitrate=8)
    dops = OpusHead.parse(bytes.fromhex(OPUS_HEAD_51)).to_box()
    opus = AudioSampleEntry(b"Opus", 6, 48000, [dops])
    assert codec_info(opus, "stsd") == CodecInfo(
        "Opus", "opus", dops.payload(), sample_rate=48000, channels=6
    )


def test_codec_info_names_missing_av1c_and_dops() -> None:
    with pytest.raises(BoxError, match="missing av1C") as info:
        codec_info(VisualSampleEntry(b"av01", 64, 64), "moov/trak/stsd")
    assert info.value.path == "moov/trak/stsd/av01"
    with pytest.raises(BoxError, match="missing dOps") as info:
        codec_info(AudioSampleEntry(b"Opus"), "moov/trak/stsd")
    assert info.value.path == "moov/trak/stsd/Opus"


# ---------------------------------------------------------------------------------------------
# track_from_config

AVCC_720 = "0164001fffe100196764001facd9405005ba1000000300100000030320f183196001000668eae3cb22c0fdf8f800"
AVCC_1080I = "01640028ffe1001967640028acd94078044fdc20000003002000000643e2c5b2c001000668fba3cb22c0fdf8f800"
AVCC_180_BASELINE = "0142c00cffe100186742c00cd901419f9e1000000300100000030320f142a48001000568cb83cb20"
HVCC_720 = (
    "0101600000009000000000005df000fcfdf8f800000f03200001001840010c01ffff01600000030090000003000003005d95980921"
    "0001002a42010101600000030090000003000003005da00280802d165959a4932b9a02000003000200000300321022000100074401"
    "c172b46240"
)
HVCC_1918X1078_MAIN10 = (
    "01022000000090000000000078f000fcfdfafa00000f03200001001840010c01ffff0220000003009000000300000300789598092100"
    "01002c420101022000000300900000030000030078a003c08010e754d96566924cae6808000003000800000300c84022000100074401"
    "c172b46240"
)
AV1C_320X180 = "81000c000a0b000000043cfecc02f80040"
AV1C_PQ = "81004c000a0e000000043cfecc02f85091009840"

# name, codec, record, codec string, timescale, (width, height), (sample rate, channels)
CONFIG_CASES: list[tuple[str, str, str, str, int, tuple[int, int], tuple[int, int]]] = [
    ("x264-720p", "avc1", AVCC_720, "avc1.64001f", 90000, (1280, 720), (0, 0)),
    ("x264-1080i", "avc1", AVCC_1080I, "avc1.640028", 90000, (1920, 1080), (0, 0)),
    ("x264-baseline-avc3", "avc3", AVCC_180_BASELINE, "avc3.42c00c", 90000, (320, 180), (0, 0)),
    ("x265-720p", "hvc1", HVCC_720, "hvc1.1.6.L93.90", 90000, (1280, 720), (0, 0)),
    (
        "x265-main10-odd-size-hev1",
        "hev1",
        HVCC_1918X1078_MAIN10,
        "hev1.2.4.L120.90",
        90000,
        (1918, 1078),
        (0, 0),
    ),
    ("svt-av1", "av01", AV1C_320X180, "av01.0.00M.08", 90000, (320, 180), (0, 0)),
    ("svt-av1-pq", "av01", AV1C_PQ, "av01.0.00M.10.0.110.09.16.09.1", 90000, (320, 180), (0, 0)),
    ("aac-lc-48k-stereo", "mp4a", "119056e500", "mp4a.40.2", 48000, (0, 0), (48000, 2)),
    ("aac-lc-44k-mono", "mp4a", "120856e500", "mp4a.40.2", 44100, (0, 0), (44100, 1)),
    ("aac-lc-5.1", "mp4a", "11b056e500", "mp4a.40.2", 48000, (0, 0), (48000, 6)),
    ("he-aac-explicit-sbr", "mp4a", "2b1188", "mp4a.40.5", 48000, (0, 0), (48000, 2)),
    ("he-aac-v2-explicit-ps", "mp4a", "eb0988", "mp4a.40.29", 48000, (0, 0), (48000, 2)),
    ("opus-stereo", "Opus", OPUS_HEAD_STEREO, "opus", 48000, (0, 0), (48000, 2)),
    ("opus-5.1", "Opus", OPUS_HEAD_51, "opus", 48000, (0, 0), (48000, 6)),
]
CONFIG_PARAMS = [pytest.param(*case[1:], id=case[0]) for case in CONFIG_CASES]
CONFIG_BOX = {"avc": AVCConfigurationBox, "hvc": HEVCConfigurationBox, "hev": HEVCConfigurationBox}


def _entry_of(header: bytes) -> Box:
    moov = parse_boxes(header)[1]
    assert isinstance(moov, MovieBox)
    stbl = moov.need(TrackBox).need(MediaBox).need(MediaInformationBox).need(SampleTableBox)
    (entry,) = stbl.need(SampleDescriptionBox).children
    return entry


@pytest.mark.parametrize(("codec", "record", "codec_string", "timescale", "size", "audio"), CONFIG_PARAMS)
def test_track_from_config(
    codec: str, record: str, codec_string: str, timescale: int, size: tuple[int, int], audio: tuple[int, int]
) -> None:
    track = track_from_config("t", codec, bytes.fromhex(record))
    assert (track.codec, track.codec_string, track.timescale) == (codec, codec_string, timescale)
    assert (track.width, track.height) == size
    assert (track.sample_rate, track.channels) == audio
    assert track.kind is (TrackKind.AUDIO if codec in ("mp4a", "Opus") else TrackKind.VIDEO)
    entry = _entry_of(track.header)
    assert entry.box_type == codec.encode()
    if codec == "mp4a":
        assert entry.need(ESDescriptorBox).decoder_specific_info == bytes.fromhex(record)
    elif codec == "Opus":
        assert (
            OpusHead.from_box(entry.need(OpusSpecificBox)).to_box()
            == OpusHead.parse(bytes.fromhex(record)).to_box()
        )
    else:
        config_box = entry.subboxes()[0]
        assert bytes(config_box)[8:] == bytes.fromhex(record)  # the record verbatim in avcC/hvcC/av1C
        assert isinstance(config_box, CONFIG_BOX.get(codec[:3], AV1CodecConfigurationBox))


@pytest.mark.parametrize(("codec", "record", "codec_string", "timescale", "size", "audio"), CONFIG_PARAMS)
def test_track_from_config_round_trips_through_track_from_trak(
    codec: str, record: str, codec_string: str, timescale: int, size: tuple[int, int], audio: tuple[int, int]
) -> None:
    """What codec_info reads back from the header is what the track says, down to the header bytes."""
    track = track_from_config("t", codec, bytes.fromhex(record), bitrate=96000, language="swe")
    moov = parse_boxes(track.header)[1]
    assert isinstance(moov, MovieBox)
    assert track_from_trak(moov.need(TrackBox), "t") == track
    assert track.bitrate == 96000 and track.language == "swe"
    mdhd = moov.need(TrackBox).need(MediaBox).need(MediaHeaderBox)
    assert (mdhd.timescale, mdhd.language) == (timescale, "swe")


def test_track_from_config_bitrate_and_language() -> None:
    video = track_from_config("v", "avc1", bytes.fromhex(AVCC_720), bitrate=2_000_000, language="ENG")
    assert _entry_of(video.header).need(BitRateBox).avg_bitrate == 2_000_000
    assert video.language == "eng"
    audio = track_from_config("a", "mp4a", bytes.fromhex("1190"), bitrate=128000, language="e1g")
    esds = _entry_of(audio.header).need(ESDescriptorBox)
    assert (esds.avg_bitrate, esds.max_bitrate, audio.bitrate, audio.language) == (
        128000,
        128000,
        128000,
        "und",
    )
    plain = track_from_config("a", "Opus", bytes.fromhex(OPUS_HEAD_STEREO))
    assert _entry_of(plain.header).first(BitRateBox) is None and plain.bitrate == 0


@pytest.mark.parametrize(
    ("asc", "duration"),
    [("1190", 1024), ("120856e500", 1024), ("2b1188", 2048), ("eb0988", 2048), ("17805dc010", 1024)],
    ids=["lc-48k", "lc-44k", "sbr-24k-core", "ps-24k-core", "explicit-48000"],
)
def test_aac_frame_duration(asc: str, duration: int) -> None:
    config = AudioSpecificConfig.parse(bytes.fromhex(asc))
    assert aac_frame_duration(config) == duration
    track = track_from_config("a", "mp4a", bytes.fromhex(asc))
    assert track.timescale == config.output_rate  # so a frame lasts 1024 * output / core ticks


def test_aac_frame_duration_of_a_raw_record() -> None:
    assert aac_frame_duration(bytes.fromhex("2b1188")) == 2048


def test_aac_without_a_sample_rate_is_unsupported() -> None:
    with pytest.raises(UnsupportedMedia, match="sampling frequency index 13 has no sample rate"):
        track_from_config("a", "mp4a", bytes.fromhex("1690"))
    with pytest.raises(UnsupportedMedia, match="cut short"):
        track_from_config("a", "mp4a", bytes.fromhex("12"))


def test_av1_record_without_sequence_header_takes_the_keyframes() -> None:
    bare = bytes.fromhex("81000c00")
    with pytest.raises(BoxError, match="no Sequence Header OBU in its configOBUs") as info:
        track_from_config("v", "av01", bare)
    assert info.value.path == "av1C"
    track = track_from_config("v", "av01", bare, first_frame=bytes.fromhex(AV1_KEYFRAME_TU))
    assert (track.width, track.height, track.codec_string) == (64, 64, "av01.0.00M.08")
    assert track.decoder_config == bare + bytes.fromhex(AV1_KEYFRAME_SH)  # the sequence header comes first
    moov = parse_boxes(track.header)[1]
    assert isinstance(moov, MovieBox)
    assert track_from_trak(moov.need(TrackBox), "v") == track
    # A record with its own sequence header ignores the one passed.
    own = track_from_config(
        "v", "av01", bytes.fromhex(AV1C_320X180), first_frame=bytes.fromhex(AV1_KEYFRAME_TU)
    )
    assert (own.width, own.height) == (320, 180)
    with pytest.raises(BoxError, match="no first_frame"):
        track_from_config("v", "av01", bare, first_frame=bytes.fromhex("1200"))


@pytest.mark.parametrize(
    ("codec", "record", "error", "message"),
    [
        ("vp09", "01", UnsupportedMedia, "unsupported codec 'vp09'"),
        ("opus", OPUS_HEAD_STEREO, UnsupportedMedia, "unsupported codec 'opus'"),
        ("avc1", "0164001fffe000", BoxError, "holds no SPS"),
        ("avc1", "0164001fffe1000468ce3c8000", BoxError, "NAL unit type 8 is not a sequence parameter set"),
        ("avc1", "02640028", BoxError, "configurationVersion"),
        ("hvc1", HVCC_720 + "00", BoxError, "1 unexpected trailing bytes"),
        ("hvc1", HVCC_720[:44] + "00", BoxError, "holds no SPS"),
        ("av01", "81000c000a05", BoxError, "declares 5 bytes, 0 left"),
        ("av01", "810000", BoxError, "u8 needs 1 bytes, 0 left"),
        ("Opus", "4f707573486561640103380180bb0000000000", BoxError, "family 0 allows 1 or 2 channels"),
    ],
    ids=[
        "unknown",
        "lower-case-opus",
        "avcC-without-sps",
        "avcC-pps-as-sps",
        "avcC-version",
        "hvcC-trailing",
        "hvcC-without-arrays",
        "av1C-bad-obu",
        "av1C-short",
        "bad-opus-head",
    ],
)
def test_track_from_config_errors(codec: str, record: str, error: type[MediaError], message: str) -> None:
    with pytest.raises(error, match=message):
        track_from_config("t", codec, bytes.fromhex(record))


def test_track_from_config_refuses_sizes_a_sample_entry_cannot_hold() -> None:
    sps = _baseline_sps(4097, 2, None)  # 65552 luma samples wide
    avcc = bytes(AVCConfigurationBox(66, 0xC0, 30, 4, [sps], [bytes.fromhex("68ce3c80")]))[8:]
    with pytest.raises(UnsupportedMedia, match="picture size 65552x32 does not fit a sample entry"):
        track_from_config("v", "avc1", avcc)


# ---------------------------------------------------------------------------------------------
# A header and one fragment of real samples, read by FFmpeg (needs ffprobe and ffmpeg at test time)

# libsvtav1 64x64 keyframes as the mp4 muxer stores them (no temporal delimiter), and their av1C.
AV1C_64 = "81000c000a0a00000002afff805f0008"
AV1_SAMPLES = [
    "0a0a00000002afff895f200832121000f3823ffe6983000008942383cfd3230a",
    "0a0a00000002afff895f200832121004f3823ffe6983000008942383cfd3230a",
    "0a0a00000002afff895f200832121008f3823ffe6983000008942383cfd3230a",
]
# libx265 64x64 (VPS, SPS, PPS only), an IDR and two P-frames, each presented two frames late.
HVCC_64 = (
    "0101600000009000000000001ef000fcfdf8f800000f03200001001840010c01ffff01600000030090000003000003001e959809"
    "210001002742010101600000030090000003000003001ea020810596566924cae68080000003008000000c8422000100074401c1"
    "72b42240"
)
HEVC_SAMPLES = [
    ("000000112801af06580d203c9c85fa5c3c7f60aa58", True, 7200),
    ("000000110201d8097e0cb0fdfc2dbf389e149fbe20", False, 7200),
    ("000000110201d811ff8324fdfc2dbf389e149fbe20", False, 7200),
]
OPUS_HEAD_MONO = "4f707573486561640101380180bb0000000000"
OPUS_SAMPLES = [
    "088310827fe309618dc01ffcc188c322a210",
    "08a48aee4c869cb056a8c1f69a5b59dd711c23d560",
    "089fef11057a436ea3f067fe7fa6393f6680",
    "089fe5b651d93f244deaa8ebd080",
]


def _ffmpeg_reads(folder: Path, track: Track, samples: list[tuple[bytes, int, bool, int]]) -> dict[str, str]:
    entries = [
        Sample(duration, len(data), SYNC_SAMPLE_FLAGS if sync else NON_SYNC_SAMPLE_FLAGS, cto)
        for data, duration, sync, cto in samples
    ]
    path = folder / f"{track.codec}.mp4"
    path.write_bytes(track.header + write_fragment(1, 0, entries, b"".join(s[0] for s in samples)))
    fields = "stream=codec_name,width,height,sample_rate,channels,time_base,nb_read_frames"
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            fields,
            "-of",
            "default=nw=1",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0 and not probe.stderr, probe.stderr
    decode = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert decode.returncode == 0 and not decode.stderr, decode.stderr
    return dict(line.split("=", 1) for line in probe.stdout.split())


@pytest.mark.e2e
def test_ffmpeg_decodes_headers_and_fragments_built_from_configs(tmp_path: Path) -> None:
    if shutil.which("ffprobe") is None or shutil.which("ffmpeg") is None:
        pytest.skip("ffprobe/ffmpeg are not on PATH")
    av01 = track_from_config("v", "av01", bytes.fromhex(AV1C_64))
    got = _ffmpeg_reads(tmp_path, av01, [(bytes.fromhex(s), 3600, True, 0) for s in AV1_SAMPLES])
    assert (got["codec_name"], got["width"], got["height"], got["nb_read_frames"]) == ("av1", "64", "64", "3")
    hevc = track_from_config("v", "hvc1", bytes.fromhex(HVCC_64))
    got = _ffmpeg_reads(tmp_path, hevc, [(bytes.fromhex(s), 3600, k, c) for s, k, c in HEVC_SAMPLES])
    assert (got["codec_name"], got["width"], got["height"], got["nb_read_frames"]) == (
        "hevc",
        "64",
        "64",
        "3",
    )
    opus = track_from_config("a", "Opus", bytes.fromhex(OPUS_HEAD_MONO))
    packets = [bytes.fromhex(p) for p in OPUS_SAMPLES]
    got = _ffmpeg_reads(tmp_path, opus, [(p, packet_duration(p), True, 0) for p in packets])
    assert (got["codec_name"], got["sample_rate"], got["channels"], got["time_base"]) == (
        "opus",
        "48000",
        "1",
        "1/48000",
    )
