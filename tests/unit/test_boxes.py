"""media.boxes: one case table of hand-written box bytes (ISO/IEC 14496-12/-14/-15, 23009-1, MS-SSTR)
driving parse, write and truncation/fuzz tests, plus byte-exact round trips of real ffmpeg captures."""

from __future__ import annotations

import contextlib
import re
import shutil
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.bmff import write_header
from media.boxes import (
    AudioSampleEntry,
    AV1CodecConfigurationBox,
    AVCConfigurationBox,
    BitRateBox,
    Box,
    CencSampleEncryptionInformationGroupEntry,
    ChunkLargeOffsetBox,
    ChunkOffsetBox,
    CompositionOffsetBox,
    DataEntryUrlBox,
    DataReferenceBox,
    EditBox,
    EditEntry,
    EditListBox,
    ESDescriptorBox,
    EventMessageBox,
    FileTypeBox,
    HandlerBox,
    HEVCConfigurationBox,
    HEVCNalArray,
    LiveServerManifestBox,
    MediaDataBox,
    MediaHeaderBox,
    MovieBox,
    MovieExtendsBox,
    MovieExtendsHeaderBox,
    MovieFragmentBox,
    MovieFragmentHeaderBox,
    MovieFragmentRandomAccessBox,
    MovieHeaderBox,
    NullMediaHeaderBox,
    OpusSpecificBox,
    OriginalFormatBox,
    PiffSampleEncryptionBox,
    ProducerReferenceTimeBox,
    ProtectionSchemeInfoBox,
    ProtectionSystemSpecificHeaderBox,
    RawBox,
    SampleAuxiliaryInformationOffsetsBox,
    SampleAuxiliaryInformationSizesBox,
    SampleDescriptionBox,
    SampleEncryptionBox,
    SampleEncryptionEntry,
    SampleGroupDescriptionBox,
    SampleSizeBox,
    SampleToChunkBox,
    SampleToGroupBox,
    SchemeInformationBox,
    SchemeTypeBox,
    SegmentTypeBox,
    SoundMediaHeaderBox,
    Subsample,
    SubtitleMediaHeaderBox,
    SyncSampleBox,
    TextSampleEntry,
    TfrfBox,
    TfxdBox,
    TimeToSampleBox,
    TrackBox,
    TrackEncryptionBox,
    TrackExtendsBox,
    TrackFragmentBox,
    TrackFragmentDecodeTimeBox,
    TrackFragmentHeaderBox,
    TrackHeaderBox,
    TrackRun,
    TrunEntry,
    VideoMediaHeaderBox,
    VisualSampleEntry,
    dump,
    i32s,
    parse_box,
    parse_boxes,
    u32s,
    u64s,
)
from media.cmaf import codec_info
from media.errors import BoxError, MediaError
from tests.conftest import run_ffmpeg
from tests.unit.conftest import Captures

# ---------------------------------------------------------------------------------------------
# Expected bytes, written from the spec layouts. Spaces separate fields; composites reuse parts.

MATRIX = "00010000 00000000 00000000 00000000 00010000 00000000 00000000 00000000 40000000"

FTYP = "00000018 66747970  636d6663 00000000  636d6663 69736f36"
STYP_LMSG = "0000001c 73747970  6d736468 00000000  6d736468 6d736978 6c6d7367"
MVHD_V0 = (
    "0000006c 6d766864  00000000  00000001 00000002  000003e8  00001388  00010000  0100"
    " 00000000000000000000 " + MATRIX + " " + "00" * 24 + " 00000002"
)
TKHD_V0 = (
    "0000005c 746b6864  00000003  00000000 00000000  00000001  00000000  00000000"
    " 0000000000000000  0000 0000 0000 0000 " + MATRIX + " 07800000 04380000"
)
MDHD_V0_UND = "00000020 6d646864  00000000  00000000 00000000  00015f90  00000000  55c4 0000"
MDHD_V1_ENG = (
    "0000002c 6d646864  01000000  0000000000000003 0000000000000004  0000bb80  0000000200000000  15c7 0000"
)
HDLR = (
    "0000002d 68646c72  00000000  00000000  736f756e  000000000000000000000000  536f756e6448616e646c6572 00"
)
VMHD = "00000014 766d6864  00000001  0000 000000000000"
SMHD = "00000010 736d6864  00000000  0000 0000"
NMHD = "0000000c 6e6d6864  00000000"
STHD = "0000000c 73746864  00000000"
URL = "0000000c 75726c20  00000001"
DREF = "0000001c 64726566  00000000  00000001 " + URL
AVCC_BASELINE = "0000001b 61766343  01 42 c0 1e  ff  e1 0004 6742c01e  01 0004 68ce3c80"
AVCC_HIGH = "0000001f 61766343  01 64 00 1f  ff  e1 0004 6764001f  01 0004 68ebe3cb  fdf8f800"
BTRT = "00000014 62747274  00001000 0001f400 00017700"
HVCC = (
    "00000026 68766343  01  01  60000000  900000000000  5d  f000  fc  fd  f8  f8  0000  0f"
    "  01  a0 0001 0002 4001"
)
ESDS = (
    "00000033 65736473  00000000"
    "  03 80808022 0001 00"
    "  04 80808014 40 15 000000 0001f400 00017700"
    "  05 80808002 1190"
    "  06 80808001 02"
)
# av1C (AV1 ISOBMFF binding §2.3.3): marker+version, profile(3) level(5), tier highbd 12bit mono ssx ssy
# csp(2), reserved(3) delay_present(1) delay(4), configOBUs. The first is libsvtav1's for 320x180 (one
# Sequence Header OBU); the second a 10-bit high-tier record with an initial presentation delay.
AV1C = "00000019 61763143  81  00  0c  00  0a0b000000043cfecc02f80040"
AV1C_DELAY = "0000000c 61763143  81  09  ce  13"
# dOps (Opus in ISOBMFF §4.3.2): Version, OutputChannelCount, PreSkip, InputSampleRate, OutputGain
# (signed), ChannelMappingFamily [StreamCount, CoupledCount, ChannelMapping]; the 5.1 one is libopus's.
DOPS_STEREO = "00000013 644f7073  00  02  0138  0000bb80  0000  00"
DOPS_51 = "0000001b 644f7073  00  06  0138  0000bb80  fe00  01  04 02 000401020305"
# VisualSampleEntry: reserved(6) dri(2) pre_defined+reserved(16) width height resolution x2 reserved(4)
# frame_count(2) compressorname(32) depth(2) pre_defined(2) = 78 bytes, then child boxes.
VISUAL_ZEROS = "00000000000000000000000000000000"
AVC1 = (
    "00000085 61766331  000000000000 0001 " + VISUAL_ZEROS + " 0280 0168 00480000 00480000 00000000 0001"
    " 02 6877 " + "00" * 29 + " 0018 ffff " + AVCC_BASELINE + " " + BTRT
)
AVC3 = (
    "00000056 61766333  000000000000 0001 " + VISUAL_ZEROS + " 0500 02d0 00480000 00480000 00000000 0001"
    " " + "00" * 32 + " 0018 ffff"
)
HVC1 = (
    "0000007c 68766331  000000000000 0001 " + VISUAL_ZEROS + " 0780 0438 00480000 00480000 00000000 0001"
    " " + "00" * 32 + " 0018 ffff " + HVCC
)
HEV1 = (
    "00000056 68657631  000000000000 0001 " + VISUAL_ZEROS + " 0780 0438 00480000 00480000 00000000 0001"
    " " + "00" * 32 + " 0018 ffff"
)
AV01 = (
    "0000006f 61763031  000000000000 0001 " + VISUAL_ZEROS + " 0140 00b4 00480000 00480000 00000000 0001"
    " " + "00" * 32 + " 0018 ffff " + AV1C
)
# AudioSampleEntry: reserved(6) dri(2) version(2) reserved(6) channels(2) samplesize(2) pre_defined(4)
# samplerate 16.16 (4) = 28 bytes, then child boxes.
MP4A = "00000057 6d703461  000000000000 0001  0000 000000000000  0002 0010  00000000  bb800000 " + ESDS
OPUS = "00000037 4f707573  000000000000 0001  0000 000000000000  0002 0010  00000000  bb800000 " + DOPS_STEREO
WVTT = "0000001e 77767474  000000000000 0001  0000000e 76747443 574542565454"
STPP = "0000002c 73747070  000000000000 0001  687474703a2f2f7777772e77332e6f72672f6e732f74746d6c 00  00  00"
STSD_AVC1 = "00000095 73747364  00000000  00000001 " + AVC1
# Sample tables (§8.6.1-§8.6.2, §8.7.3-§8.7.5): version/flags, entry_count (or sample_size and
# sample_count for stsz), then the rows.
STTS = "00000020 73747473  00000000  00000002  00000003 000003e8  00000001 000001f4"
CTTS_V0 = "00000020 63747473  00000000  00000002  00000001 00000400  00000002 00000000"
CTTS_V1 = "00000020 63747473  01000000  00000002  00000001 00000000  00000001 fffffe00"
STSS = "0000001c 73747373  00000000  00000003  00000001 0000001f 0000003d"
STSZ_TABLE = "00000020 7374737a  00000000  00000000  00000003  00000064 000000c8 0000012c"
STSZ_CONSTANT = "00000014 7374737a  00000000  00000200  000003e8"
STSC = "00000028 73747363  00000000  00000002  00000001 0000001e 00000001  00000004 00000006 00000001"
STCO = "00000018 7374636f  00000000  00000002  00000030 00001000"
CO64 = "00000020 636f3634  00000000  00000002  0000000000000030 0000000100000010"
# elst (§8.6.6): segment_duration, media_time (signed; -1 = empty edit), media_rate integer, fraction.
ELST_V0 = "00000028 656c7374  00000000  00000002  00000005 ffffffff 0001 0000  00000c80 00000000 0001 0000"
ELST_V1 = "00000024 656c7374  01000000  00000001  0000000100000000 0000000200000000 0001 0000"
EDTS = "00000030 65647473 " + ELST_V0
MEHD_V0 = "00000010 6d656864  00000000  0000ea60"
MEHD_V1 = "00000014 6d656864  01000000  0000000100000000"
TREX = "00000020 74726578  00000000  00000001 00000001 00000400 00000000 01010000"
MVEX = "00000038 6d766578 " + MEHD_V0 + " " + TREX
MFHD = "00000010 6d666864  00000000  00000007"
# flags 0x02002a: default-base-is-moof | sample_description_index | default duration | default flags
TFHD_DEFAULTS = "0000001c 74666864  0002002a  00000002  00000001  00000400  02000000"
# flags 0x010011: duration-is-empty | base_data_offset (64-bit) | default size
TFHD_BASE_OFFSET = "0000001c 74666864  00010011  00000001  0000000123456789  000001f4"
TFDT_V0 = "00000010 74666474  00000000  00015f90"
TFDT_V1 = "00000014 74666474  01000000  0000000100000005"
# flags 0xb05: data offset, first sample flags, duration, size, composition offset (signed in v1)
TRUN_V1 = (
    "00000030 7472756e  01000b05  00000002  00000078  02000000"
    "  00000200 000003e8 00000400  00000200 000000c8 fffffe00"
)
TRUN_V0 = "00000020 7472756e  00000300  00000002  00000400 0000000a  00000400 0000000c"
TRAF = "00000068 74726166 " + TFHD_DEFAULTS + " " + TFDT_V1 + " " + TRUN_V1
MOOF = "00000080 6d6f6f66 " + MFHD + " " + TRAF
MDAT = "0000000b 6d646174  000102"
MFRA = "00000018 6d667261  00000010 6d66726f 00000000 00000018"
PRFT_V1 = "00000020 70726674  01000000  00000001  e7a1b2c3d4e5f607  0000000100000000"
PRFT_V0 = "0000001c 70726674  00000000  00000002  0102030405060708  00015f90"
EMSG_V0 = "00000026 656d7367  00000000  75726e3a7800  3100  000003e8  000001f4  000007d0  00000007  6869"
EMSG_V1 = (
    "0000002a 656d7367  01000000  00015f90  0000000200000000  ffffffff  0000002a  75726e3a7800  3100  0102"
)
TFXD_UUID = "6d1d9b0542d544e680e2141daff757b2"
TFXD_V0 = "00000024 75756964 " + TFXD_UUID + "  00000000  00989680  01312d00"
TFXD_V1 = "0000002c 75756964 " + TFXD_UUID + "  01000000  fffffffffffcbeab  0000000001312d00"
TFRF = (
    "0000003d 75756964 d4807ef2ca3946958e5426cb9e46a79f  01000000  02"
    "  0000000001312d00 0000000001312d00  0000000002625a00 0000000001312d00"
)
LSM = "00000023 75756964 a5d40b30e81411ddba2f0800200c9a66  00000000  3c736d696c2f3e"
UNKNOWN_UUID = "0000001a 75756964 000102030405060708090a0b0c0d0e0f  7879"
FREE = "00000008 66726565"
# Common Encryption (ISO/IEC 23001-7; 14496-12 §8.7.8-§8.7.9, §8.9.2-§8.9.3, §8.12).
KID = "00112233445566778899aabbccddeeff"
IV16 = "000102030405060708090a0b0c0d0e0f"
WIDEVINE = "edef8ba979d64acea3c827dcd51d21ed"
FRMA = "0000000c 66726d61 61766331"
SCHM = "00000014 7363686d  00000000  63656e63 00010000"
SCHM_URI = "00000016 7363686d  00000001  63626373 00010000  7500"
# tenc: reserved, reserved (v0) or crypt:skip (v1), isProtected, Per_Sample_IV_Size, KID, [constant IV]
TENC_V0 = "00000020 74656e63  00000000  00 00 01 08 " + KID
TENC_V1_CONSTANT_IV = "00000031 74656e63  01000000  00 19 01 00 " + KID + " 10 " + IV16
PSSH_V0 = "00000022 70737368  00000000 " + WIDEVINE + "  00000002 0102"
PSSH_V1 = "00000034 70737368  01000000 " + WIDEVINE + "  00000001 " + KID + "  00000000"
# senc: sample_count, then per sample the IV and (flag 2) subsample_count, (clear u16, protected u32)*
SENC_IVS = "00000020 73656e63  00000000  00000002  0102030405060708 1112131415161718"
SENC_SUBSAMPLES = (
    "00000026 73656e63  00000002  00000001  0102030405060708  0002  0005 00000010  0100 00000000"
)
PIFF_SENC = (
    "0000003c 75756964 a2394f525a9b4f14a2446c427c648df4  00000001  000001 08 "
    + KID
    + "  00000001  0102030405060708"
)
SAIZ_DEFAULT = "00000011 7361697a  00000000  10  00000019"
SAIZ_TABLE = "0000001c 7361697a  00000001  63656e63 00000000  00  00000003  080e14"
SAIO_V0 = "00000014 7361696f  00000000  00000001  00000219"
SAIO_V1 = "00000018 7361696f  01000000  00000001  0000000100000000"
SBGP_V0 = "0000001c 73626770  00000000  73656967  00000001  00000019 00010001"
SBGP_V1 = "00000028 73626770  01000000  726f6c6c 00000007  00000002  0000000a 00000001  00000005 00000000"
SEIG_CENC = "00 00 01 08 " + KID
SGPD_SEIG = "0000002c 73677064  01000000  73656967  00000014  00000001  " + SEIG_CENC
SGPD_V1_LENGTHS = "00000025 73677064  01000000  78787878  00000000  00000002  00000002 0001  00000003 000203"
SGPD_V0 = "00000018 73677064  00000000  726f6c6c  00000002  ffff fffe"
SGPD_V2 = "0000001a 73677064  02000000  726f6c6c  00000002  00000001  0001"
SCHI = "00000028 73636869 " + TENC_V0
SINF = "00000050 73696e66 " + FRMA + " " + SCHM + " " + SCHI
ENCV = (
    "000000a6 656e6376  000000000000 0001 " + VISUAL_ZEROS + " 0500 02d0 00480000 00480000 00000000 0001"
    " " + "00" * 32 + " 0018 ffff " + SINF
)
ENCA = (
    "000000a7 656e6361  000000000000 0001  0000 000000000000  0002 0010  00000000  bb800000 "
    + ESDS
    + " "
    + SINF.replace("61766331", "6d703461")
)
MOOV = "00000074 6d6f6f76 " + MVHD_V0

SPS_B = bytes.fromhex("6742c01e")
PPS_B = bytes.fromhex("68ce3c80")
AVCC_BOX = AVCConfigurationBox(0x42, 0xC0, 0x1E, 4, [SPS_B], [PPS_B])
HVCC_BOX = HEVCConfigurationBox(
    profile_idc=1,
    compatibility_flags=0x60000000,
    constraint_flags=0x900000000000,
    level_idc=93,
    temporal_layers=1,
    temporal_id_nested=1,
    arrays=[HEVCNalArray(1, 32, [b"\x40\x01"])],
)
ESDS_BOX = ESDescriptorBox(0x40, 5, 0, 128000, 96000, bytes.fromhex("1190"), 1)
BTRT_BOX = BitRateBox(0x1000, 128000, 96000)
MVHD_BOX = MovieHeaderBox(
    timescale=1000, duration=5000, next_track_id=2, creation_time=1, modification_time=2
)
MEHD_BOX = MovieExtendsHeaderBox(60000, 0)
TREX_BOX = TrackExtendsBox(1, 1, 1024, 0, 0x01010000)
MFHD_BOX = MovieFragmentHeaderBox(7)
TFHD_BOX = TrackFragmentHeaderBox(
    2, sample_description_index=1, default_sample_duration=1024, default_sample_flags=0x02000000
)
TFDT_V1_BOX = TrackFragmentDecodeTimeBox(2**32 + 5, 1)
TRUN_V1_BOX = TrackRun(
    flags=0xB05,
    samples=[TrunEntry(512, 1000, None, 1024), TrunEntry(512, 200, None, -512)],
    data_offset=120,
    first_sample_flags=0x02000000,
    version=1,
)
AVC1_BOX = VisualSampleEntry(b"avc1", 640, 360, [AVCC_BOX, BTRT_BOX], compressor_name="hw")
AV1C_BOX = AV1CodecConfigurationBox(config_obus=bytes.fromhex("0a0b000000043cfecc02f80040"))
DOPS_STEREO_BOX = OpusSpecificBox(2, 312, 48000, 0, 0)
ELST_V0_BOX = EditListBox([EditEntry(5, -1), EditEntry(3200, 0)], 0)
KID_B = bytes.fromhex(KID)
IV_B = bytes.fromhex("0102030405060708")
TENC_V0_BOX = TrackEncryptionBox(KID_B, 8)


def sinf_box(original: bytes) -> ProtectionSchemeInfoBox:
    return ProtectionSchemeInfoBox(
        [OriginalFormatBox(original), SchemeTypeBox(b"cenc"), SchemeInformationBox([TENC_V0_BOX])]
    )


CASES: list[tuple[str, Box, str]] = [
    ("ftyp", FileTypeBox(b"cmfc", 0, [b"cmfc", b"iso6"]), FTYP),
    ("styp-lmsg", SegmentTypeBox(b"msdh", 0, [b"msdh", b"msix", b"lmsg"]), STYP_LMSG),
    ("mvhd-v0", MVHD_BOX, MVHD_V0),
    ("tkhd-v0", TrackHeaderBox(track_id=1, width=1920, height=1080), TKHD_V0),
    ("mdhd-v0-und", MediaHeaderBox(90000, 0, "und"), MDHD_V0_UND),
    ("mdhd-v1-eng", MediaHeaderBox(48000, 2**33, "eng", 1, 3, 4), MDHD_V1_ENG),
    ("hdlr", HandlerBox(b"soun", "SoundHandler"), HDLR),
    ("vmhd", VideoMediaHeaderBox(), VMHD),
    ("smhd", SoundMediaHeaderBox(), SMHD),
    ("nmhd", NullMediaHeaderBox(), NMHD),
    ("sthd", SubtitleMediaHeaderBox(), STHD),
    ("url", DataEntryUrlBox(), URL),
    ("dref", DataReferenceBox([DataEntryUrlBox()]), DREF),
    ("avcC-baseline", AVCC_BOX, AVCC_BASELINE),
    (
        "avcC-high-trailer",
        AVCConfigurationBox(
            0x64,
            0,
            0x1F,
            4,
            [bytes.fromhex("6764001f")],
            [bytes.fromhex("68ebe3cb")],
            bytes.fromhex("fdf8f800"),
        ),
        AVCC_HIGH,
    ),
    ("btrt", BTRT_BOX, BTRT),
    ("hvcC", HVCC_BOX, HVCC),
    ("esds", ESDS_BOX, ESDS),
    ("av1C", AV1C_BOX, AV1C),
    ("av1C-10bit-high-tier-delay", AV1CodecConfigurationBox(0, 9, 1, 1, 0, 0, 1, 1, 2, 3), AV1C_DELAY),
    ("dOps-stereo", DOPS_STEREO_BOX, DOPS_STEREO),
    (
        "dOps-5.1-mapping-table",
        OpusSpecificBox(6, 312, 48000, -512, 1, 4, 2, bytes([0, 4, 1, 2, 3, 5])),
        DOPS_51,
    ),
    ("avc1", AVC1_BOX, AVC1),
    ("avc3", VisualSampleEntry(b"avc3", 1280, 720), AVC3),
    ("hvc1", VisualSampleEntry(b"hvc1", 1920, 1080, [HVCC_BOX]), HVC1),
    ("hev1", VisualSampleEntry(b"hev1", 1920, 1080), HEV1),
    ("av01", VisualSampleEntry(b"av01", 320, 180, [AV1C_BOX]), AV01),
    ("mp4a", AudioSampleEntry(b"mp4a", 2, 48000, [ESDS_BOX]), MP4A),
    ("Opus", AudioSampleEntry(b"Opus", 2, 48000, [DOPS_STEREO_BOX]), OPUS),
    ("wvtt", TextSampleEntry(b"wvtt", children=[RawBox(b"vttC", b"WEBVTT")]), WVTT),
    ("stpp", TextSampleEntry(b"stpp", "http://www.w3.org/ns/ttml"), STPP),
    ("stsd-avc1", SampleDescriptionBox([AVC1_BOX]), STSD_AVC1),
    ("stts", TimeToSampleBox(u32s([3, 1]), u32s([1000, 500])), STTS),
    ("ctts-v0", CompositionOffsetBox(u32s([1, 2]), u32s([1024, 0]), 0), CTTS_V0),
    ("ctts-v1-negative", CompositionOffsetBox(u32s([1, 1]), i32s([0, -512]), 1), CTTS_V1),
    ("stss", SyncSampleBox(u32s([1, 31, 61])), STSS),
    ("stsz-table", SampleSizeBox(0, 3, u32s([100, 200, 300])), STSZ_TABLE),
    ("stsz-constant", SampleSizeBox(512, 1000), STSZ_CONSTANT),
    ("stsc", SampleToChunkBox(u32s([1, 4]), u32s([30, 6]), u32s([1, 1])), STSC),
    ("stco", ChunkOffsetBox(u32s([48, 4096])), STCO),
    ("co64", ChunkLargeOffsetBox(u64s([48, 2**32 + 16])), CO64),
    ("elst-v0-empty-edit", ELST_V0_BOX, ELST_V0),
    ("elst-v1", EditListBox([EditEntry(2**32, 2**33)], 1), ELST_V1),
    ("edts", EditBox([ELST_V0_BOX]), EDTS),
    ("mehd-v0", MEHD_BOX, MEHD_V0),
    ("mehd-v1", MovieExtendsHeaderBox(2**32, 1), MEHD_V1),
    ("trex", TREX_BOX, TREX),
    ("mvex", MovieExtendsBox([MEHD_BOX, TREX_BOX]), MVEX),
    ("mfhd", MFHD_BOX, MFHD),
    ("tfhd-defaults", TFHD_BOX, TFHD_DEFAULTS),
    (
        "tfhd-base-offset",
        TrackFragmentHeaderBox(
            1,
            base_data_offset=0x123456789,
            default_sample_size=500,
            default_base_is_moof=False,
            duration_is_empty=True,
        ),
        TFHD_BASE_OFFSET,
    ),
    ("tfdt-v0", TrackFragmentDecodeTimeBox(90000, 0), TFDT_V0),
    ("tfdt-v1", TFDT_V1_BOX, TFDT_V1),
    ("trun-v1-negative-cto", TRUN_V1_BOX, TRUN_V1),
    (
        "trun-v0-no-offset",
        TrackRun(0x300, [TrunEntry(1024, 10), TrunEntry(1024, 12)], data_offset=None, version=0),
        TRUN_V0,
    ),
    ("traf", TrackFragmentBox([TFHD_BOX, TFDT_V1_BOX, TRUN_V1_BOX]), TRAF),
    ("moof", MovieFragmentBox([MFHD_BOX, TrackFragmentBox([TFHD_BOX, TFDT_V1_BOX, TRUN_V1_BOX])]), MOOF),
    ("mdat", MediaDataBox(b"\x00\x01\x02"), MDAT),
    ("mfra", MovieFragmentRandomAccessBox([RawBox(b"mfro", bytes.fromhex("0000000000000018"))]), MFRA),
    ("moov", MovieBox([MVHD_BOX]), MOOV),
    ("prft-v1", ProducerReferenceTimeBox(1, 0xE7A1B2C3D4E5F607, 2**32, 1, 0), PRFT_V1),
    ("prft-v0", ProducerReferenceTimeBox(2, 0x0102030405060708, 90000, 0, 0), PRFT_V0),
    ("emsg-v0", EventMessageBox("urn:x", "1", 1000, 500, 2000, 7, b"hi", 0), EMSG_V0),
    ("emsg-v1", EventMessageBox("urn:x", "1", 90000, 2**33, 0xFFFFFFFF, 42, b"\x01\x02", 1), EMSG_V1),
    ("tfxd-v0", TfxdBox(10_000_000, 20_000_000, 0), TFXD_V0),
    ("tfxd-v1-negative", TfxdBox(2**64 - 213333, 20_000_000, 1), TFXD_V1),
    ("tfrf", TfrfBox([(20_000_000, 20_000_000), (40_000_000, 20_000_000)], 1), TFRF),
    ("lsm", LiveServerManifestBox("<smil/>"), LSM),
    ("uuid-unknown", RawBox(b"uuid", b"xy", bytes(range(16))), UNKNOWN_UUID),
    ("free", RawBox(b"free"), FREE),
    ("frma", OriginalFormatBox(b"avc1"), FRMA),
    ("schm", SchemeTypeBox(b"cenc", 0x10000), SCHM),
    ("schm-uri", SchemeTypeBox(b"cbcs", 0x10000, "u"), SCHM_URI),
    ("tenc-v0", TENC_V0_BOX, TENC_V0),
    (
        "tenc-v1-pattern-constant-iv",
        TrackEncryptionBox(KID_B, 0, 1, 1, 9, bytes.fromhex(IV16), 1),
        TENC_V1_CONSTANT_IV,
    ),
    ("schi", SchemeInformationBox([TENC_V0_BOX]), SCHI),
    ("sinf", sinf_box(b"avc1"), SINF),
    ("encv", VisualSampleEntry(b"encv", 1280, 720, [sinf_box(b"avc1")]), ENCV),
    ("enca", AudioSampleEntry(b"enca", 2, 48000, [ESDS_BOX, sinf_box(b"mp4a")]), ENCA),
    ("pssh-v0", ProtectionSystemSpecificHeaderBox(bytes.fromhex(WIDEVINE), b"\x01\x02"), PSSH_V0),
    ("pssh-v1-kids", ProtectionSystemSpecificHeaderBox(bytes.fromhex(WIDEVINE), b"", [KID_B], 1), PSSH_V1),
    ("senc-ivs", SampleEncryptionBox(2, bytes.fromhex("0102030405060708 1112131415161718")), SENC_IVS),
    (
        "senc-subsamples",
        SampleEncryptionBox(1, bytes.fromhex("0102030405060708 0002 000500000010 010000000000"), 2),
        SENC_SUBSAMPLES,
    ),
    ("senc-piff-override", PiffSampleEncryptionBox(1, IV_B, 1, 0, (1, 8, KID_B)), PIFF_SENC),
    ("saiz-default", SampleAuxiliaryInformationSizesBox(16, 25), SAIZ_DEFAULT),
    (
        "saiz-table-aux-type",
        SampleAuxiliaryInformationSizesBox(0, 3, bytes([8, 14, 20]), b"cenc"),
        SAIZ_TABLE,
    ),
    ("saio-v0", SampleAuxiliaryInformationOffsetsBox([537]), SAIO_V0),
    ("saio-v1", SampleAuxiliaryInformationOffsetsBox([2**32], 1), SAIO_V1),
    ("sbgp-v0", SampleToGroupBox(b"seig", [(25, 0x10001)]), SBGP_V0),
    ("sbgp-v1", SampleToGroupBox(b"roll", [(10, 1), (5, 0)], 7), SBGP_V1),
    ("sgpd-seig", SampleGroupDescriptionBox(b"seig", [bytes.fromhex(SEIG_CENC)], 1, 20), SGPD_SEIG),
    ("sgpd-v1-lengths", SampleGroupDescriptionBox(b"xxxx", [b"\x00\x01", b"\x00\x02\x03"]), SGPD_V1_LENGTHS),
    ("sgpd-v0", SampleGroupDescriptionBox(b"roll", [b"\xff\xff", b"\xff\xfe"], 0), SGPD_V0),
    ("sgpd-v2", SampleGroupDescriptionBox(b"roll", [b"\x00\x01"], 2, 0, 2), SGPD_V2),
]

PARAMS = [pytest.param(box, bytes.fromhex(hex_), id=name) for name, box, hex_ in CASES]
DATA_PARAMS = [pytest.param(bytes.fromhex(hex_), id=name) for name, _, hex_ in CASES]


def test_case_names_are_unique() -> None:
    names = [name for name, _, _ in CASES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(("box", "data"), PARAMS)
def test_parse(box: Box, data: bytes) -> None:
    parsed, end = parse_box(data)
    assert end == len(data)
    assert type(parsed) is type(box)
    assert parsed == box


@pytest.mark.parametrize(("box", "data"), PARAMS)
def test_write(box: Box, data: bytes) -> None:
    assert bytes(box) == data


@pytest.mark.parametrize(("box", "data"), PARAMS)
def test_dump_names_box_and_size(box: Box, data: bytes) -> None:
    first = next(dump([box]))
    assert first.startswith(f"{box.name} [{len(data)}]")


@pytest.mark.parametrize("data", DATA_PARAMS)
def test_every_proper_prefix_raises_box_error(data: bytes) -> None:
    for end in range(len(data)):
        with pytest.raises(BoxError):
            parse_box(data[:end])


@pytest.mark.parametrize("data", DATA_PARAMS)
def test_shortened_payload_with_consistent_header_raises_only_media_errors(data: bytes) -> None:
    """The payload cut short but the header rewritten to match: field readers must notice."""
    box, _ = parse_box(data)
    payload = box.payload()
    for end in range(len(payload)):
        candidate = write_header(box.box_type, end, box.usertype) + payload[:end]
        with contextlib.suppress(MediaError):
            parse_box(candidate)


@pytest.mark.parametrize("data", DATA_PARAMS)
@settings(max_examples=50, deadline=None, derandomize=True)
@given(flips=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(1, 255)), min_size=1, max_size=4))
def test_random_byte_flips_raise_only_media_errors(data: bytes, flips: list[tuple[int, int]]) -> None:
    corrupt = bytearray(data)
    for pos, xor in flips:
        corrupt[pos % len(corrupt)] ^= xor
    with contextlib.suppress(MediaError):
        parse_box(bytes(corrupt))


@pytest.mark.parametrize("data", DATA_PARAMS)
def test_single_byte_flips_raise_only_media_errors(data: bytes) -> None:
    for pos in range(len(data)):
        for xor in (0x01, 0x80, 0xFF):
            corrupt = bytearray(data)
            corrupt[pos] ^= xor
            with contextlib.suppress(MediaError):
                parse_box(bytes(corrupt))


# ---------------------------------------------------------------------------------------------
# Field semantics


def test_tfhd_flags_follow_optional_fields() -> None:
    assert TrackFragmentHeaderBox(1).flags == 0x020000
    assert TrackFragmentHeaderBox(1, default_base_is_moof=False).flags == 0
    box = TrackFragmentHeaderBox(
        1,
        base_data_offset=0,
        sample_description_index=1,
        default_sample_duration=0,
        default_sample_size=0,
        default_sample_flags=0,
        default_base_is_moof=False,
        duration_is_empty=True,
    )
    assert box.flags == 0x01003B


def test_trun_refuses_to_write_a_sample_lacking_an_announced_field() -> None:
    run = TrackRun(flags=0x300, samples=[TrunEntry(duration=1)], data_offset=None)
    with pytest.raises(BoxError, match="size"):
        bytes(run)


def test_dops_refuses_to_write_an_incomplete_channel_mapping_table() -> None:
    with pytest.raises(BoxError, match="needs StreamCount and CoupledCount"):
        bytes(OpusSpecificBox(6, 312, 48000, 0, 1, channel_mapping=bytes(6)))
    with pytest.raises(BoxError, match="2 entries for 6 output channels"):
        bytes(OpusSpecificBox(6, 312, 48000, 0, 1, 4, 2, bytes(2)))


def test_av1c_bit_depth() -> None:
    assert AV1C_BOX.bit_depth == 8
    assert AV1CodecConfigurationBox(seq_profile=2, high_bitdepth=1).bit_depth == 10
    assert AV1CodecConfigurationBox(seq_profile=2, high_bitdepth=1, twelve_bit=1).bit_depth == 12


def test_sgpd_reads_seig_entries() -> None:
    box, _ = parse_box(bytes.fromhex(SGPD_SEIG))
    assert isinstance(box, SampleGroupDescriptionBox)
    assert box.seig() == [CencSampleEncryptionInformationGroupEntry(KID_B, 8)]
    cbcs = CencSampleEncryptionInformationGroupEntry(KID_B, 0, 1, 1, 9, bytes.fromhex(IV16))
    assert CencSampleEncryptionInformationGroupEntry.parse(bytes(cbcs)) == cbcs
    assert SampleGroupDescriptionBox.of(b"seig", [bytes(cbcs)]).default_length == 37
    with pytest.raises(BoxError, match="not seig"):
        SampleGroupDescriptionBox(b"roll", [b"\x00\x01"]).seig()


def test_senc_entries_are_read_with_the_iv_size_given() -> None:
    box, _ = parse_box(bytes.fromhex(SENC_SUBSAMPLES))
    assert isinstance(box, SampleEncryptionBox)
    assert box.entries(8) == [SampleEncryptionEntry(IV_B, (Subsample(5, 16), Subsample(256, 0)))]
    with pytest.raises(BoxError, match="258 subsamples need"):
        box.entries(0)
    with pytest.raises(BoxError, match="1 entries for 2 samples"):
        box.entries([8, 8])
    ivs, _ = parse_box(bytes.fromhex(SENC_IVS))
    assert isinstance(ivs, SampleEncryptionBox)
    assert [e.iv.hex() for e in ivs.entries([8, 8])] == ["0102030405060708", "1112131415161718"]
    with pytest.raises(BoxError, match="8 bytes after the last entry"):
        ivs.entries([8, 0])
    assert SampleEncryptionBox.of(box.entries(8), subsamples=True) == box


def test_saiz_of_picks_the_default_form() -> None:
    assert SampleAuxiliaryInformationSizesBox.of([8, 8]) == SampleAuxiliaryInformationSizesBox(8, 2)
    table = SampleAuxiliaryInformationSizesBox.of([8, 14])
    assert (table.default_sample_info_size, table.size_of(1)) == (0, 14)
    with pytest.raises(BoxError, match="exceeds the 8-bit saiz size"):
        SampleAuxiliaryInformationSizesBox.of([8, 300])


def test_sbgp_indexes_per_sample() -> None:
    box = SampleToGroupBox(b"seig", [(2, 1), (1, 0x10001), (9, 2)])
    assert box.indexes(4) == [1, 1, 0x10001, 2]
    assert SampleToGroupBox(b"seig", [(1, 1)]).indexes(3) == [1, 0, 0]


def test_protection_boxes_refuse_to_write_what_their_syntax_cannot_hold() -> None:
    with pytest.raises(BoxError, match="version 0 cannot hold a crypt:skip pattern"):
        bytes(TrackEncryptionBox(KID_B, 8, 1, 1, 9))
    with pytest.raises(BoxError, match="constant IV needs"):
        bytes(TrackEncryptionBox(KID_B, 8, default_constant_iv=bytes(16)))
    with pytest.raises(BoxError, match="version 0 cannot list KIDs"):
        bytes(ProtectionSystemSpecificHeaderBox(bytes(16), b"", [KID_B]))
    with pytest.raises(BoxError, match="KID is 3 bytes"):
        bytes(CencSampleEncryptionInformationGroupEntry(b"abc"))


def test_trun_sample_count_must_match_payload() -> None:
    data = bytes.fromhex(TRUN_V0)
    bad = data[:12] + (3).to_bytes(4, "big") + data[16:]
    with pytest.raises(BoxError, match="sample_count 3") as info:
        parse_box(bad, base=1000)
    assert info.value.path == "trun"
    assert info.value.offset is not None and info.value.offset >= 1000


@pytest.mark.parametrize(
    ("code", "packed"), [("eng", 0x15C7), ("und", 0x55C4), ("fra", 0x1A41), ("EN", 0x55C4), ("e1g", 0x55C4)]
)
def test_mdhd_language_packing(code: str, packed: int) -> None:
    data = bytes(MediaHeaderBox(1000, 0, code))
    assert int.from_bytes(data[28:30], "big") == packed


def test_mdhd_zero_timescale_is_refused_with_path_and_offset() -> None:
    data = bytes.fromhex(MDHD_V0_UND.replace("00015f90", "00000000"))
    with pytest.raises(BoxError, match="timescale is 0") as info:
        parse_box(data, base=500)
    assert info.value.path == "mdhd"
    assert info.value.offset == 500 + len(data)


def test_error_path_and_absolute_offset_of_a_nested_box() -> None:
    """A bad field deep in moov/trak names the whole path and the byte offset in the stream."""
    tkhd = bytes(TrackHeaderBox())
    # tkhd and its parents have consistent sizes; only tkhd's last field (height) is missing.
    trak = write_header(b"trak", len(tkhd) - 4) + write_header(b"tkhd", len(tkhd) - 12) + tkhd[8:-4]
    moov = write_header(b"moov", len(trak)) + trak
    with pytest.raises(BoxError) as info:
        parse_box(moov, base=100)
    assert info.value.path == "moov/trak/tkhd"
    assert info.value.offset == 100 + len(moov)  # the missing height field starts at the end
    assert "box moov/trak/tkhd" in str(info.value)


def test_trailing_bytes_are_refused() -> None:
    data = bytes.fromhex(MFHD)
    padded = write_header(b"mfhd", len(data) - 8 + 2) + data[8:] + b"\0\0"
    with pytest.raises(BoxError, match="trailing") as info:
        parse_box(padded)
    assert info.value.offset == len(data)


@pytest.mark.parametrize(
    ("hex_", "message"),
    [
        ("00000013 66747970 69736f36 00000000 6d7034", "whole number"),  # 3-byte brand
        ("0000000f 61766343 02 42c01e ff e0 00", "configurationVersion"),
        ("00000010 68766343 02 01 00000000 0000", "configurationVersion"),
        ("00000010 656d7367 02000000 00000000", "version 2"),
        ("00000013 65736473 00000000 05 80808002 1190", "tag 5"),
        ("00000018 65736473 00000000 03 80808007 0001 00 06 800102", "DecoderConfigDescriptor"),
        ("00000018 73747364 00000000 00000002 00000008 66726565", "entry_count says 2"),
        ("0000000c 61763143 01 00 0c 00", "marker and version are 0 and 1"),
        ("0000000c 61763143 82 00 0c 00", "marker and version are 1 and 2"),
        ("00000013 644f7073 01 02 0138 0000bb80 0000 00", "Version 1 is not 0"),
        ("00000017 644f7073 00 06 0138 0000bb80 0000 01 04 02 0004", "ChannelMapping needs 6 bytes, 2 left"),
        ("00000010 75756964", "truncated"),
        ("00000000 6d646174", "size 0"),
        ("00000004 6d646174", "smaller than its header"),
        ("00000001 6d646174 0000000000000008", "smaller than its header"),
    ],
)
def test_malformed_boxes(hex_: str, message: str) -> None:
    with pytest.raises(BoxError, match=message):
        parse_box(bytes.fromhex(hex_))


def test_non_utf8_strings_are_box_errors() -> None:
    lsm = bytes.fromhex(LSM)
    with pytest.raises(BoxError, match="not UTF-8"):
        parse_box(lsm[:-1] + b"\xff")
    emsg = bytes.fromhex(EMSG_V0.replace("75726e3a7800", "75726eff7800"))
    with pytest.raises(BoxError, match="not UTF-8"):
        parse_box(emsg)


def test_unknown_boxes_survive_as_raw() -> None:
    data = bytes.fromhex("0000000c 78797a31 01020304")
    box, _ = parse_box(data)
    assert box == RawBox(b"xyz1", b"\x01\x02\x03\x04")
    assert bytes(box) == data
    assert box.name == "xyz1"


def test_uuid_names() -> None:
    assert TfxdBox().name == "tfxd"
    assert TfrfBox().name == "tfrf"
    assert LiveServerManifestBox().name == "lsm "
    assert RawBox(b"uuid", b"", bytes(range(16))).name == "uuid:00010203-0405-0607-0809-0a0b0c0d0e0f"


def test_need_names_missing_box_and_path() -> None:
    moov = MovieBox([MVHD_BOX])
    assert moov.first(MovieHeaderBox) is MVHD_BOX
    assert moov.all(TrackBox) == []
    with pytest.raises(BoxError, match="missing trak") as info:
        moov.need(TrackBox, "file/moov")
    assert info.value.path == "file/moov"


def test_large_box_gets_a_64_bit_header() -> None:
    assert write_header(b"mdat", 10) == bytes.fromhex("00000012 6d646174")
    assert write_header(b"mdat", 0xFFFFFFFF - 8) == bytes.fromhex("ffffffff 6d646174")
    big = write_header(b"mdat", 0xFFFFFFFF - 7)
    assert big == bytes.fromhex("00000001 6d646174 0000000100000008")


def test_largesize_header_parses() -> None:
    data = bytes.fromhex("00000001 6d646174 0000000000000013 010203")
    box, end = parse_box(data)
    assert box == MediaDataBox(b"\x01\x02\x03")
    assert end == len(data)


def test_parse_boxes_reads_siblings_with_offsets() -> None:
    data = bytes.fromhex(FTYP + MFHD)
    assert parse_boxes(data) == [FileTypeBox(b"cmfc", 0, [b"cmfc", b"iso6"]), MovieFragmentHeaderBox(7)]
    with pytest.raises(BoxError) as info:
        parse_boxes(data + b"\0\0\0", base=10)
    assert info.value.offset == 10 + len(data)


def test_has_brand() -> None:
    styp, _ = parse_box(bytes.fromhex(STYP_LMSG))
    assert isinstance(styp, SegmentTypeBox)
    assert styp.has_brand(b"lmsg") and styp.has_brand(b"msdh") and not styp.has_brand(b"cmfc")


# ---------------------------------------------------------------------------------------------
# QuickTime sound description version 2 (kept "verbatim" according to AudioSampleEntry's docstring)


def _qt_v2_entry(rate: float) -> bytes:
    extra = (
        (72).to_bytes(4, "big")  # sizeOfStructOnly
        + struct.pack(">d", rate)  # audioSampleRate
        + (2).to_bytes(4, "big")  # numAudioChannels
        + bytes.fromhex("7f000000")
        + (16).to_bytes(4, "big")  # constBitsPerChannel
        + (0).to_bytes(4, "big")  # formatSpecificFlags
        + (4).to_bytes(4, "big")  # constBytesPerAudioPacket
        + (1024).to_bytes(4, "big")  # constLPCMFramesPerAudioPacket
    )
    body = (
        bytes(6)
        + (1).to_bytes(2, "big")  # reserved, data_reference_index
        + (2).to_bytes(2, "big")
        + bytes(6)  # version 2, revision, vendor
        + (3).to_bytes(2, "big")
        + (16).to_bytes(2, "big")  # always3, always16
        + bytes.fromhex("fffe0000")  # alwaysMinus2, always0
        + (0x00010000).to_bytes(4, "big")  # always65536
        + extra
    )
    return write_header(b"mp4a", len(body)) + body


def test_qt_v2_sound_entry_reads_rate_and_channels_from_extension() -> None:
    entry, _ = parse_box(_qt_v2_entry(96000.0))
    assert isinstance(entry, AudioSampleEntry)
    assert (entry.qt_version, entry.sample_rate, entry.channel_count) == (2, 96000, 2)


def test_qt_v2_sound_entry_round_trips() -> None:
    data = _qt_v2_entry(48000.0)
    entry, _ = parse_box(data)
    assert bytes(entry) == data


@pytest.mark.parametrize("rate", [float("nan"), float("inf")])
def test_qt_v2_sound_entry_with_non_finite_rate_is_a_media_error(rate: float) -> None:
    with pytest.raises(MediaError):
        parse_box(_qt_v2_entry(rate))


# ---------------------------------------------------------------------------------------------
# Real captures: every byte written back as read


def _round_trip(data: bytes) -> list[Box]:
    boxes = parse_boxes(data)
    pos = 0
    for box in boxes:
        written = bytes(box)
        assert written == data[pos : pos + len(written)], f"{box.name} at {pos} differs after a round trip"
        pos += len(written)
    assert pos == len(data)
    return boxes


def _walk(boxes: list[Box]) -> list[Box]:
    out: list[Box] = []
    for box in boxes:
        out.append(box)
        out += _walk(box.subboxes())
    return out


def test_ismv_capture_round_trips(captures: Captures) -> None:
    boxes = _round_trip(captures.ismv)
    names = [b.name for b in boxes]
    assert names[:3] == ["ftyp", "lsm ", "moov"]
    assert names[-1] == "mfra"
    every = _walk(boxes)
    assert any(isinstance(b, TfxdBox) for b in every)
    assert sum(isinstance(b, TrackBox) for b in every) == 3
    assert not any(isinstance(b, RawBox) and b.type in (b"avcC", b"esds", b"mp4a", b"avc1") for b in every)


def test_cmaf_capture_round_trips(captures: Captures) -> None:
    boxes = _round_trip(captures.cmaf_video)
    every = _walk(boxes)
    tfdts = [b for b in every if isinstance(b, TrackFragmentDecodeTimeBox)]
    assert [t.base_media_decode_time for t in tfdts] == [0, 12800]
    runs = [b for b in every if isinstance(b, TrackRun)]
    assert any((s.composition_offset or 0) < 0 for r in runs for s in r.samples)
    entry = next(b for b in every if isinstance(b, VisualSampleEntry))
    info = codec_info(entry, "stsd")
    assert re.fullmatch(r"avc1\.6400[0-9a-f]{2}", info.codec_string)
    assert (info.width, info.height) == (160, 90)


def test_hevc_capture_round_trips_hvcc_and_codec_string(captures: Captures) -> None:
    data: bytes = captures.hevc
    every = _walk(_round_trip(data))
    hvcc = next(b for b in every if isinstance(b, HEVCConfigurationBox))
    raw = bytes(hvcc)
    assert data.count(raw) == 1  # the record written back is exactly the one in the file
    assert hvcc.profile_idc == 1 and hvcc.chroma_format == 1 and hvcc.bit_depth_luma == 8
    assert [a.nal_type for a in hvcc.arrays][:3] == [32, 33, 34]  # VPS, SPS, PPS
    entry = next(b for b in every if isinstance(b, VisualSampleEntry))
    assert entry.format == b"hvc1"
    info = codec_info(entry, "stsd")
    # 14496-15 Annex E: hvc1.<space><profile>.<reversed compat>.<tier><level>[.<constraint byte>]*
    assert re.fullmatch(r"hvc1\.[ABC]?\d+\.[0-9A-F]+\.[LH]\d+(\.[0-9A-F]{1,2}){0,6}", info.codec_string)
    assert info.codec_string.startswith("hvc1.1.6.L")  # Main profile: compat flags 1 and 2
    assert info.decoder_config == hvcc.payload()


def test_hevc_codec_string_fields() -> None:
    assert HVCC_BOX.codec_string(b"hvc1") == "hvc1.1.6.L93.90"
    main10_high = HEVCConfigurationBox(
        profile_space=1,
        tier=1,
        profile_idc=2,
        compatibility_flags=0x20000000,
        constraint_flags=0xB00000000000,
        level_idc=153,
    )
    assert main10_high.codec_string(b"hev1") == "hev1.A2.4.H153.B0"
    no_constraints = HEVCConfigurationBox(profile_idc=1, compatibility_flags=0x40000000, level_idc=120)
    assert no_constraints.codec_string(b"hvc1") == "hvc1.1.2.L120"
    middle_zero = HEVCConfigurationBox(profile_idc=1, constraint_flags=0x900012000000, level_idc=90)
    assert middle_zero.codec_string(b"hvc1") == "hvc1.1.0.L90.90.0.12"


def test_avc_codec_string() -> None:
    assert AVCC_BOX.codec_string(b"avc1") == "avc1.42c01e"
    assert AVCConfigurationBox(0x64, 0, 0x1F).codec_string(b"avc3") == "avc3.64001f"


def test_deep_nesting_is_refused_not_recursed() -> None:
    data = b""
    for _ in range(5000):
        data = (8 + len(data)).to_bytes(4, "big") + b"moov" + data
    with pytest.raises(BoxError, match="nested more than 32 levels") as info:
        parse_box(data)
    assert info.value.offset == 33 * 8


def test_trun_sample_count_is_bounded_before_allocation() -> None:
    # No per-sample fields: 4 bytes could otherwise announce four billion samples.
    trun = (16).to_bytes(4, "big") + b"trun" + bytes(4) + (0xFFFFFFFF).to_bytes(4, "big")
    with pytest.raises(BoxError, match="exceeds the limit of 65536") as info:
        parse_box(trun)
    assert info.value.path == "trun" and info.value.offset == 16


# ---------------------------------------------------------------------------------------------
# Sample tables and edit lists (§8.6.1-§8.6.2, §8.6.6, §8.7.3-§8.7.5)


def test_stsz_of_picks_the_constant_form_when_all_sizes_are_equal() -> None:
    assert SampleSizeBox.of(u32s([7, 7, 7])) == SampleSizeBox(7, 3)
    assert SampleSizeBox.of(u32s([7, 8])) == SampleSizeBox(0, 2, u32s([7, 8]))
    assert SampleSizeBox.of(u32s([0, 0])) == SampleSizeBox(0, 2, u32s([0, 0]))  # size 0 means "a table"
    assert SampleSizeBox.of(u32s()) == SampleSizeBox()
    assert [SampleSizeBox(7, 3).size_of(2), SampleSizeBox.of(u32s([7, 8])).size_of(1)] == [7, 8]


@pytest.mark.parametrize(
    ("box", "message"),
    [
        (SampleSizeBox(0, 3, u32s([1, 2])), "sample_count 3 but 2 sizes"),
        (SampleSizeBox(5, 2, u32s([5, 5])), "constant sample_size has no size table"),
        (CompositionOffsetBox(u32s([1]), i32s([-1]), 0), "version 0 cannot hold a negative offset"),
        (CompositionOffsetBox(u32s([1]), u64s([2**31]), 1), "ctts offset out of range"),
        (TimeToSampleBox(u32s([1, 2]), u32s([3])), "columns differ in length"),
        (ChunkOffsetBox(u64s([2**32])), "stco entry out of range"),
        (EditListBox([EditEntry(2**32, 0)], 0), "out of range for version 0"),
    ],
    ids=[
        "stsz-count",
        "stsz-both-forms",
        "ctts-v0-negative",
        "ctts-v1-overflow",
        "stts-ragged",
        "stco",
        "elst",
    ],
)
def test_tables_refuse_to_write_what_their_fields_cannot_hold(box: Box, message: str) -> None:
    with pytest.raises(BoxError, match=message):
        bytes(box)


def test_elst_version_for() -> None:
    assert EditListBox.version_for([EditEntry(0xFFFFFFFF, 2**31 - 1), EditEntry(1, -1)]) == 0
    assert EditListBox.version_for([EditEntry(2**32, 0)]) == 1
    assert EditListBox.version_for([EditEntry(1, 2**31)]) == 1


@pytest.mark.parametrize(
    ("hex_", "message"),
    [
        ("00000010 73747473 01000000 00000000", "stts version 1 is not 0"),
        ("00000014 7374737a 01000000 00000000 00000000", "stsz version 1 is not 0"),
        ("00000010 63747473 02000000 00000000", "ctts version 2 is not 0 or 1"),
        ("00000010 656c7374 02000000 00000000", "elst version 2 is not 0 or 1"),
        ("00000010 636f3634 00000000 ffffffff", "table entries needs"),
        ("00000014 7374737a 00000000 00000000 ffffffff", "entry_size table needs"),
    ],
)
def test_malformed_tables(hex_: str, message: str) -> None:
    """A four-billion entry_count is refused from the bytes present, before anything is allocated."""
    with pytest.raises(BoxError, match=message):
        parse_box(bytes.fromhex(hex_))


def test_table_columns_are_compact_arrays() -> None:
    box, _ = parse_box(bytes.fromhex(STSC))
    assert isinstance(box, SampleToChunkBox)
    assert [c.itemsize for c in (box.first_chunks, box.samples_per_chunk, box.description_indexes)] == [4] * 3
    co64, _ = parse_box(bytes.fromhex(CO64))
    assert isinstance(co64, ChunkLargeOffsetBox) and co64.chunk_offsets.itemsize == 8
    ctts, _ = parse_box(bytes.fromhex(CTTS_V1))
    assert isinstance(ctts, CompositionOffsetBox) and ctts.sample_offsets.tolist() == [0, -512]


def test_table_dump_lists_short_tables_only() -> None:
    assert next(dump([SyncSampleBox(u32s([1, 31]))])) == "stss [24] entries=2 sample_numbers=[1,31]"
    long = TimeToSampleBox(u32s(range(1, 10)), u32s([512] * 9))
    assert next(dump([long])) == f"stts [{8 + 8 + 9 * 8}] entries=9"
    assert next(dump([SampleSizeBox(512, 1000)])) == "stsz [20] sample_size=512 sample_count=1000"
    assert next(dump([ELST_V0_BOX])) == "elst [40] entries=[(5,-1),(3200,0)]"


@pytest.fixture(scope="module")
def ffmpeg_mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A plain (not fragmented) MP4 from ffmpeg: H.264 with B-frames and AAC, moov first."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not on PATH")
    path = tmp_path_factory.mktemp("mp4") / "plain.mp4"
    result = run_ffmpeg(
        *("-f", "lavfi", "-t", "3", "-i", "testsrc2=size=160x90:rate=25"),
        *("-f", "lavfi", "-t", "3", "-i", "sine"),
        *("-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "25", "-c:a", "aac"),
        *("-movflags", "+faststart", str(path)),
    )
    assert result.returncode == 0, result.stderr
    return path.read_bytes()


def test_ffmpeg_sample_tables_round_trip_as_typed_boxes(ffmpeg_mp4: bytes) -> None:
    every = _walk(_round_trip(ffmpeg_mp4))
    types = {type(b) for b in every}
    expected = {
        TimeToSampleBox,
        CompositionOffsetBox,
        SyncSampleBox,
        SampleSizeBox,
        SampleToChunkBox,
        ChunkOffsetBox,
        EditListBox,
    }
    assert expected <= types
    assert not any(isinstance(b, RawBox) and b.type in (b"stts", b"ctts", b"stsz", b"elst") for b in every)
    video_stss = next(b for b in every if isinstance(b, SyncSampleBox))
    assert video_stss.sample_numbers.tolist()[:3] == [1, 26, 51]
    sizes = [b for b in every if isinstance(b, SampleSizeBox)]
    counts = [b for b in every if isinstance(b, TimeToSampleBox)]
    for stsz, stts in zip(sizes, counts, strict=True):
        assert stsz.sample_count == sum(stts.sample_counts)
