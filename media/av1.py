"""AV1 in CMAF: OBUs (AV1 Bitstream & Decoding Process Specification §5.3), the sequence header OBU
(§5.5) read as far as the colour configuration, and the codecs parameter string of the AV1 Codec ISO
Media File Format Binding v1.2.0 §5.

Codec string: the binding (v1.2.0 §5) makes everything after the bit depth (``.M.CCC.cp.tc.mc.F``)
optional, all or nothing, with the defaults monochrome 0, chroma subsampling ``110``, colour primaries,
transfer characteristics and matrix coefficients 1 (BT.709) and studio range 0. Headwater writes the
short form ``av01.P.LLT.DD`` when the stream matches those defaults, the form every player accepts,
and the full form otherwise. Colour values come from the sequence header when it has a colour
description and are the defaults when it has none; the range flag is always ``color_range`` (the
v1.3.0 draft spells out both). A 'colr' box in the sample entry is not consulted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from media.boxes import AV1CodecConfigurationBox
from media.errors import BoxError, UnsupportedMedia
from media.sps import BitReader

# obu_type values (§6.2.2).
OBU_SEQUENCE_HEADER = 1
OBU_TEMPORAL_DELIMITER = 2

# Colour values of §6.4.2 used by color_config() and the codec string defaults.
CP_BT_709 = 1
CP_UNSPECIFIED = 2
TC_UNSPECIFIED = 2
TC_SRGB = 13
MC_IDENTITY = 0
MC_UNSPECIFIED = 2

# The optional part of the codec string holding every default value (binding §5).
DEFAULT_TAIL = ".0.110.01.01.01.0"

# The leb128() of §4.10.5 reads at most 8 bytes and its value must fit 32 bits.
LEB128_MAX_BYTES = 8


@dataclass(frozen=True, slots=True)
class Obu:
    """One OBU of a low-overhead bitstream (§5.3.1): its header fields, its payload and its bytes as
    found (``raw``, header and size field included)."""

    type: int
    temporal_id: int
    spatial_id: int
    has_extension: bool
    payload: bytes
    raw: bytes

    def with_size_field(self) -> bytes:
        """The OBU written with ``obu_has_size_field`` set and a minimal leb128 ``obu_size``, the form
        ``av1C`` configOBUs need (AV1 ISOBMFF binding §2.3.4), as does every OBU of a sample but the last
        (§2.4)."""
        header = bytes([(self.type << 3) | (0x04 if self.has_extension else 0) | 0x02])
        if self.has_extension:
            header += bytes([(self.temporal_id << 5) | (self.spatial_id << 3)])
        return header + write_leb128(len(self.payload)) + self.payload


def read_leb128(data: bytes, pos: int, *, path: str = "") -> tuple[int, int]:
    """leb128() (§4.10.5) at ``data[pos:]``: the value and the position after it."""
    value = 0
    for i in range(LEB128_MAX_BYTES):
        if pos + i >= len(data):
            raise BoxError(f"AV1 leb128 at byte {pos} is cut short after {i} bytes", path=path)
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if value > 0xFFFFFFFF:
                raise BoxError(f"AV1 leb128 at byte {pos} is {value}, above 2**32 - 1", path=path)
            return value, pos + i + 1
    raise BoxError(f"AV1 leb128 at byte {pos} runs past {LEB128_MAX_BYTES} bytes", path=path)


def write_leb128(value: int) -> bytes:
    """The shortest leb128() encoding of ``value``."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def iter_obus(data: bytes, *, path: str = "") -> Iterator[Obu]:
    """The OBUs of a low-overhead bitstream (§5.2, §5.3): a temporal unit, a sample or configOBUs. An
    OBU without ``obu_has_size_field`` extends to the end of ``data``, so it can only come last."""
    pos = 0
    while pos < len(data):
        start = pos
        header = data[pos]
        if header & 0x80:
            raise BoxError(f"AV1 OBU at byte {start} has obu_forbidden_bit set", path=path)
        obu_type = (header >> 3) & 0x0F
        has_extension = bool(header & 0x04)
        has_size = bool(header & 0x02)
        pos += 1
        temporal_id = spatial_id = 0
        if has_extension:
            if pos >= len(data):
                raise BoxError(f"AV1 OBU at byte {start} is cut short in its extension header", path=path)
            temporal_id, spatial_id = data[pos] >> 5, (data[pos] >> 3) & 3
            pos += 1
        if has_size:
            size, pos = read_leb128(data, pos, path=path)
        else:
            size = len(data) - pos
        if pos + size > len(data):
            raise BoxError(
                f"AV1 OBU of type {obu_type} at byte {start} declares {size} bytes, {len(data) - pos} left",
                path=path,
            )
        end = pos + size
        yield Obu(obu_type, temporal_id, spatial_id, has_extension, data[pos:end], data[start:end])
        pos = end


def find_sequence_header(temporal_unit: bytes, *, path: str = "") -> bytes | None:
    """The first Sequence Header OBU of a temporal unit or any OBU sequence in the low-overhead format
    (§5.3; e.g. the first keyframe of a stream whose ``av1C`` has no configOBUs), as a whole OBU with an
    ``obu_size`` field, ready for ``av1C`` configOBUs; ``None`` when there is none."""
    for obu in iter_obus(temporal_unit, path=path):
        if obu.type == OBU_SEQUENCE_HEADER:
            return obu.with_size_field()
    return None


def strip_temporal_delimiters(sample: bytes, *, path: str = "") -> bytes:
    """The temporal unit without its Temporal Delimiter OBUs, which an ISO-BMFF sample SHOULD NOT
    carry (AV1 ISOBMFF binding §2.4); the other OBUs are kept byte for byte."""
    obus = list(iter_obus(sample, path=path))
    if not any(obu.type == OBU_TEMPORAL_DELIMITER for obu in obus):
        return sample
    return b"".join(obu.raw for obu in obus if obu.type != OBU_TEMPORAL_DELIMITER)


@dataclass(frozen=True, slots=True)
class SequenceHeader:
    """The fields of ``sequence_header_obu()`` (§5.5.1) up to and including ``color_config()``
    (§5.5.2); ``max_frame_width`` and ``max_frame_height`` are the ``*_minus_1`` fields plus one."""

    seq_profile: int
    still_picture: bool
    reduced_still_picture_header: bool
    operating_points: int
    seq_level_idx_0: int
    seq_tier_0: int
    max_frame_width: int
    max_frame_height: int
    bit_depth: int
    mono_chrome: bool
    color_description_present: bool
    color_primaries: int
    transfer_characteristics: int
    matrix_coefficients: int
    color_range: int
    subsampling_x: int
    subsampling_y: int
    chroma_sample_position: int


def _timing_info(r: BitReader) -> None:
    """timing_info() (§5.5.3)."""
    r.skip(32, "num_units_in_display_tick")
    r.skip(32, "time_scale")
    if r.flag("equal_picture_interval"):
        r.uvlc("num_ticks_per_picture_minus_1")


def parse_sequence_header(payload: bytes, *, path: str = "") -> SequenceHeader:
    """Parse the payload of a Sequence Header OBU (AV1 specification §5.5.1) as far as
    ``color_config()`` (§5.5.2), through the reduced still picture header, timing and decoder model
    information and every operating point."""
    r = BitReader(payload, "AV1 sequence header", path=path)
    profile = r.u(3, "seq_profile")
    if profile > 2:
        raise UnsupportedMedia(f"AV1 seq_profile {profile} is reserved", path=path)
    still = r.flag("still_picture")
    reduced = r.flag("reduced_still_picture_header")
    decoder_model = False
    buffer_delay_bits = 0
    operating_points = 1
    if reduced:
        level, tier = r.u(5, "seq_level_idx[0]"), 0
    else:
        if r.flag("timing_info_present_flag"):
            _timing_info(r)
            decoder_model = r.flag("decoder_model_info_present_flag")
            if decoder_model:  # decoder_model_info() (§5.5.4)
                buffer_delay_bits = r.u(5, "buffer_delay_length_minus_1") + 1
                r.skip(32, "num_units_in_decoding_tick")
                r.skip(5, "buffer_removal_time_length_minus_1")
                r.skip(5, "frame_presentation_time_length_minus_1")
        display_delay = r.flag("initial_display_delay_present_flag")
        operating_points = r.u(5, "operating_points_cnt_minus_1") + 1
        level = tier = 0
        for i in range(operating_points):
            r.skip(12, "operating_point_idc")
            op_level = r.u(5, "seq_level_idx")
            op_tier = r.u(1, "seq_tier") if op_level > 7 else 0
            if i == 0:
                level, tier = op_level, op_tier
            if decoder_model and r.flag("decoder_model_present_for_this_op"):
                # operating_parameters_info() (§5.5.5)
                r.skip(2 * buffer_delay_bits + 1, "operating_parameters_info")
            if display_delay and r.flag("initial_display_delay_present_for_this_op"):
                r.skip(4, "initial_display_delay_minus_1")
    width_bits = r.u(4, "frame_width_bits_minus_1") + 1
    height_bits = r.u(4, "frame_height_bits_minus_1") + 1
    width = r.u(width_bits, "max_frame_width_minus_1") + 1
    height = r.u(height_bits, "max_frame_height_minus_1") + 1
    if not reduced and r.flag("frame_id_numbers_present_flag"):
        r.skip(4 + 3, "frame id lengths")
    r.skip(3, "use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter")
    if not reduced:
        r.skip(4, "enable_interintra_compound .. enable_dual_filter")
        order_hint = r.flag("enable_order_hint")
        if order_hint:
            r.skip(2, "enable_jnt_comp, enable_ref_frame_mvs")
        force_screen_content_tools = 2  # SELECT_SCREEN_CONTENT_TOOLS
        if not r.flag("seq_choose_screen_content_tools"):
            force_screen_content_tools = r.u(1, "seq_force_screen_content_tools")
        if force_screen_content_tools > 0 and not r.flag("seq_choose_integer_mv"):
            r.skip(1, "seq_force_integer_mv")
        if order_hint:
            r.skip(3, "order_hint_bits_minus_1")
    r.skip(3, "enable_superres, enable_cdef, enable_restoration")
    return _color_config(r, profile, still, reduced, operating_points, level, tier, width, height)


def _color_config(
    r: BitReader,
    profile: int,
    still: bool,
    reduced: bool,
    operating_points: int,
    level: int,
    tier: int,
    width: int,
    height: int,
) -> SequenceHeader:
    """color_config() (§5.5.2) completes the sequence header."""
    high_bitdepth = r.flag("high_bitdepth")
    if profile == 2 and high_bitdepth:
        bit_depth = 12 if r.flag("twelve_bit") else 10
    else:
        bit_depth = 10 if high_bitdepth else 8
    mono = False if profile == 1 else r.flag("mono_chrome")
    described = r.flag("color_description_present_flag")
    primaries, transfer, matrix = CP_UNSPECIFIED, TC_UNSPECIFIED, MC_UNSPECIFIED
    if described:
        primaries = r.u(8, "color_primaries")
        transfer = r.u(8, "transfer_characteristics")
        matrix = r.u(8, "matrix_coefficients")
    position = 0  # CSP_UNKNOWN
    if mono:
        full_range, sub_x, sub_y = r.u(1, "color_range"), 1, 1
    elif primaries == CP_BT_709 and transfer == TC_SRGB and matrix == MC_IDENTITY:
        full_range, sub_x, sub_y = 1, 0, 0
    else:
        full_range = r.u(1, "color_range")
        if profile == 0:
            sub_x, sub_y = 1, 1
        elif profile == 1:
            sub_x, sub_y = 0, 0
        elif bit_depth == 12:
            sub_x = r.u(1, "subsampling_x")
            sub_y = r.u(1, "subsampling_y") if sub_x else 0
        else:
            sub_x, sub_y = 1, 0
        if sub_x and sub_y:
            position = r.u(2, "chroma_sample_position")
    return SequenceHeader(
        profile,
        still,
        reduced,
        operating_points,
        level,
        tier,
        width,
        height,
        bit_depth,
        mono,
        described,
        primaries,
        transfer,
        matrix,
        full_range,
        sub_x,
        sub_y,
        position,
    )


def sequence_header_of(config: AV1CodecConfigurationBox, *, path: str = "av1C") -> SequenceHeader | None:
    """The sequence header among an ``av1C`` record's configOBUs, ``None`` when it carries none."""
    for obu in iter_obus(config.config_obus, path=path):
        if obu.type == OBU_SEQUENCE_HEADER:
            return parse_sequence_header(obu.payload, path=path)
    return None


def codec_string(config: AV1CodecConfigurationBox, fmt: bytes = b"av01", *, path: str = "av1C") -> str:
    """The codecs parameter string (AV1 ISOBMFF binding §5): ``av01.P.LLT.DD``, followed by
    ``.M.CCC.cp.tc.mc.F`` unless that part would be ``.0.110.01.01.01.0`` (see the module docstring).
    Profile, level, tier, bit depth, monochrome and chroma subsampling come from the record, which
    must match its sequence header (binding §2.3.4); colour and range from the sequence header in the
    configOBUs, the defaults when there is none."""
    tier = "H" if config.seq_tier_0 else "M"
    short = f"{fmt.decode()}.{config.seq_profile}.{config.seq_level_idx_0:02d}{tier}.{config.bit_depth:02d}"
    position = (
        config.chroma_sample_position if config.chroma_subsampling_x and config.chroma_subsampling_y else 0
    )
    subsampling = f"{config.chroma_subsampling_x}{config.chroma_subsampling_y}{position}"
    header = sequence_header_of(config, path=path)
    colour = (CP_BT_709, 1, 1)
    full_range = 0
    if header is not None:
        full_range = header.color_range
        if header.color_description_present:
            colour = (header.color_primaries, header.transfer_characteristics, header.matrix_coefficients)
    primaries, transfer, matrix = colour
    tail = f".{config.monochrome}.{subsampling}.{primaries:02d}.{transfer:02d}.{matrix:02d}.{full_range}"
    return short if tail == DEFAULT_TAIL else short + tail
