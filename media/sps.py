"""Sequence parameter sets of H.264 (ISO/IEC 14496-10 §7.3.2.1.1) and HEVC (ISO/IEC 23008-2 §7.3.2.2):
read as far as the displayed picture size, so a track described by a decoder configuration record
(``avcC``, ``hvcC``) gets the width and height its sample entry and manifests state.

Also the bounded MSB-first bit reader with Exp-Golomb codes (14496-10 §9.1) that the AV1 sequence header
reader (:mod:`media.av1`) shares.
"""

from __future__ import annotations

from dataclasses import dataclass

from media.errors import BoxError, UnsupportedMedia

# A ue(v) code of more than 31 leading zero bits has a value above 2**32 - 2, the largest any syntax
# element of either standard may take (14496-10 §9.1, 23008-2 §9.2).
MAX_LEADING_ZEROS = 31


class BitReader:
    """Reads fields most significant bit first from ``data`` and raises :class:`BoxError` naming the
    structure (``what``), the field and the bit position when the data runs out."""

    __slots__ = ("_total", "_value", "path", "pos", "what")

    def __init__(self, data: bytes, what: str, *, path: str = "") -> None:
        self._value = int.from_bytes(data, "big")
        self._total = len(data) * 8
        self.what = what
        self.path = path
        self.pos = 0

    @property
    def bits_left(self) -> int:
        return self._total - self.pos

    def error(self, message: str) -> BoxError:
        return BoxError(f"{self.what}: {message}", path=self.path)

    def u(self, n: int, name: str = "field") -> int:
        """An unsigned ``n``-bit field: u(n) in 14496-10 and 23008-2, f(n) in the AV1 specification."""
        if n == 0:
            return 0
        if n > self.bits_left:
            raise self.error(f"cut short: {name} needs {n} bits at bit {self.pos}, {self.bits_left} left")
        self.pos += n
        return (self._value >> (self._total - self.pos)) & ((1 << n) - 1)

    def flag(self, name: str = "flag") -> bool:
        return bool(self.u(1, name))

    def skip(self, n: int, name: str = "field") -> None:
        if n > self.bits_left:
            raise self.error(f"cut short: {name} needs {n} bits at bit {self.pos}, {self.bits_left} left")
        self.pos += n

    def _leading_zeros(self, name: str, limit: int) -> int:
        zeros = 0
        while not self.u(1, name):
            zeros += 1
            if zeros > limit:
                raise self.error(f"{name} has more than {limit} leading zero bits")
        return zeros

    def ue(self, name: str = "ue(v)") -> int:
        """ue(v): unsigned Exp-Golomb (14496-10 §9.1)."""
        zeros = self._leading_zeros(name, MAX_LEADING_ZEROS)
        return (1 << zeros) - 1 + self.u(zeros, name)

    def se(self, name: str = "se(v)") -> int:
        """se(v): signed Exp-Golomb, k ↦ (-1)**(k+1) * ceil(k / 2) (14496-10 §9.1.1)."""
        k = self.ue(name)
        return (k + 1) // 2 if k & 1 else -(k // 2)

    def uvlc(self, name: str = "uvlc()") -> int:
        """uvlc(): the AV1 variable-length code (AV1 specification §4.10.3); 32 or more leading zeros
        give 2**32 - 1."""
        zeros = 0
        while not self.u(1, name):
            zeros += 1
            if zeros >= 32:
                return (1 << 32) - 1
        return (1 << zeros) - 1 + self.u(zeros, name)


def unescape_rbsp(nal: bytes) -> bytes:
    """The NAL unit with its emulation prevention bytes removed: every ``00 00 03`` becomes ``00 00``
    (14496-10 §7.4.1, 23008-2 §7.4.2). Scanning left to right without overlap restarts the zero count
    after each removed byte, as the specifications' byte-by-byte process does."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _check(value: int, high: int, name: str, r: BitReader) -> int:
    if value > high:
        raise r.error(f"{name} {value} exceeds {high}")
    return value


def _cropped(
    r: BitReader, coded: tuple[int, int], unit: tuple[int, int], offsets: tuple[int, int, int, int]
) -> tuple[int, int]:
    """The size left by a cropping window given in units of ``unit`` samples (left, right, top,
    bottom); a window that leaves no picture is an error."""
    left, right, top, bottom = offsets
    width = coded[0] - unit[0] * (left + right)
    height = coded[1] - unit[1] * (top + bottom)
    if width <= 0 or height <= 0:
        raise r.error(
            f"cropping offsets {left},{right},{top},{bottom} leave no picture of the coded "
            f"{coded[0]}x{coded[1]}"
        )
    return width, height


# (SubWidthC, SubHeightC) by chroma_format_idc for ChromaArrayType != 0 (14496-10 Table 6-1,
# 23008-2 Table 6-1). Monochrome and separately coded planes crop in luma samples.
_CHROMA_SUBSAMPLING = {1: (2, 2), 2: (2, 1), 3: (1, 1)}


# ---------------------------------------------------------------------------------------------
# H.264


AVC_NAL_SPS = 7
# profile_idc values whose SPS carries chroma_format_idc, bit depths and scaling matrices (§7.3.2.1.1).
AVC_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


@dataclass(frozen=True, slots=True)
class AvcSps:
    """The fields of an H.264 SPS up to the cropping window; ``width`` and ``height`` are the
    displayed (cropped) frame size, ``coded_*`` the size in whole macroblocks."""

    profile_idc: int
    constraint_flags: int
    level_idc: int
    sps_id: int
    chroma_format_idc: int
    separate_colour_plane: bool
    bit_depth_luma: int
    bit_depth_chroma: int
    frame_mbs_only: bool
    coded_width: int
    coded_height: int
    width: int
    height: int


def _skip_scaling_list(r: BitReader, size: int) -> None:
    """scaling_list() (§7.3.2.1.1.1): only the delta_scale codes need reading."""
    last = next_scale = 8
    for _ in range(size):
        if next_scale:
            delta = r.se("delta_scale")
            if not -128 <= delta <= 127:
                raise r.error(f"delta_scale {delta} is outside -128..127")
            next_scale = (last + delta + 256) % 256
        last = next_scale or last


def parse_avc_sps(nal: bytes, *, path: str = "") -> AvcSps:
    """Parse an H.264 ``seq_parameter_set_data()`` (ISO/IEC 14496-10 §7.3.2.1.1) from a whole SPS NAL
    unit (header byte included, emulation prevention bytes still in), as ``avcC`` carries it.

    The displayed size follows §7.4.2.1.1: 16·PicWidthInMbs by 16·FrameHeightInMbs, where a
    field-coded sequence (``frame_mbs_only_flag`` 0) has two map-unit rows per macroblock row, less the
    frame cropping window in units of CropUnitX by CropUnitY.
    """
    r = BitReader(unescape_rbsp(nal), "H.264 SPS", path=path)
    if r.u(1, "forbidden_zero_bit"):
        raise r.error("forbidden_zero_bit is set")
    r.skip(2, "nal_ref_idc")
    nal_type = r.u(5, "nal_unit_type")
    if nal_type != AVC_NAL_SPS:
        raise r.error(f"NAL unit type {nal_type} is not a sequence parameter set ({AVC_NAL_SPS})")
    profile = r.u(8, "profile_idc")
    constraints = r.u(8, "constraint_set_flags")
    level = r.u(8, "level_idc")
    sps_id = _check(r.ue("seq_parameter_set_id"), 31, "seq_parameter_set_id", r)
    chroma_format, separate_planes, depth_luma, depth_chroma = 1, False, 8, 8
    if profile in AVC_HIGH_PROFILES:
        chroma_format = _check(r.ue("chroma_format_idc"), 3, "chroma_format_idc", r)
        if chroma_format == 3:
            separate_planes = r.flag("separate_colour_plane_flag")
        depth_luma = 8 + _check(r.ue("bit_depth_luma_minus8"), 6, "bit_depth_luma_minus8", r)
        depth_chroma = 8 + _check(r.ue("bit_depth_chroma_minus8"), 6, "bit_depth_chroma_minus8", r)
        r.skip(1, "qpprime_y_zero_transform_bypass_flag")
        if r.flag("seq_scaling_matrix_present_flag"):
            for i in range(8 if chroma_format != 3 else 12):
                if r.flag("seq_scaling_list_present_flag"):
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    _check(r.ue("log2_max_frame_num_minus4"), 12, "log2_max_frame_num_minus4", r)
    poc_type = _check(r.ue("pic_order_cnt_type"), 2, "pic_order_cnt_type", r)
    if poc_type == 0:
        _check(r.ue("log2_max_pic_order_cnt_lsb_minus4"), 12, "log2_max_pic_order_cnt_lsb_minus4", r)
    elif poc_type == 1:
        r.skip(1, "delta_pic_order_always_zero_flag")
        r.se("offset_for_non_ref_pic")
        r.se("offset_for_top_to_bottom_field")
        cycle = _check(
            r.ue("num_ref_frames_in_pic_order_cnt_cycle"), 255, "num_ref_frames_in_pic_order_cnt_cycle", r
        )
        for _ in range(cycle):
            r.se("offset_for_ref_frame")
    r.ue("max_num_ref_frames")
    r.skip(1, "gaps_in_frame_num_value_allowed_flag")
    width_mbs = r.ue("pic_width_in_mbs_minus1") + 1
    height_map_units = r.ue("pic_height_in_map_units_minus1") + 1
    frame_mbs_only = r.flag("frame_mbs_only_flag")
    if not frame_mbs_only:
        r.skip(1, "mb_adaptive_frame_field_flag")
    r.skip(1, "direct_8x8_inference_flag")
    offsets = (0, 0, 0, 0)
    if r.flag("frame_cropping_flag"):
        offsets = (
            r.ue("frame_crop_left_offset"),
            r.ue("frame_crop_right_offset"),
            r.ue("frame_crop_top_offset"),
            r.ue("frame_crop_bottom_offset"),
        )
    fields = 1 if frame_mbs_only else 2
    coded = (16 * width_mbs, 16 * height_map_units * fields)
    chroma_array_type = 0 if separate_planes else chroma_format
    if chroma_array_type == 0:
        unit = (1, fields)
    else:
        sub_width, sub_height = _CHROMA_SUBSAMPLING[chroma_array_type]
        unit = (sub_width, sub_height * fields)
    width, height = _cropped(r, coded, unit, offsets)
    return AvcSps(
        profile,
        constraints,
        level,
        sps_id,
        chroma_format,
        separate_planes,
        depth_luma,
        depth_chroma,
        frame_mbs_only,
        coded[0],
        coded[1],
        width,
        height,
    )


# ---------------------------------------------------------------------------------------------
# HEVC


HEVC_NAL_SPS = 33


@dataclass(frozen=True, slots=True)
class HevcSps:
    """The fields of an HEVC SPS up to the bit depths; ``width`` and ``height`` are the displayed size
    (after the conformance window), ``coded_*`` are pic_width/height_in_luma_samples."""

    max_sub_layers: int
    profile_space: int
    tier: int
    profile_idc: int
    level_idc: int
    sps_id: int
    chroma_format_idc: int
    separate_colour_plane: bool
    coded_width: int
    coded_height: int
    width: int
    height: int
    bit_depth_luma: int
    bit_depth_chroma: int


def _profile_tier_level(r: BitReader, max_sub_layers_minus1: int) -> tuple[int, int, int, int]:
    """profile_tier_level(1, sps_max_sub_layers_minus1) (23008-2 §7.3.3): general profile space,
    tier, profile and level; the sub-layer parts are skipped."""
    space = r.u(2, "general_profile_space")
    tier = r.u(1, "general_tier_flag")
    profile = r.u(5, "general_profile_idc")
    # compatibility flags (32), progressive/interlaced/non-packed/frame-only (4), 43 constraint bits
    # and general_inbld_flag or reserved (1).
    r.skip(32 + 4 + 43 + 1, "general profile flags")
    level = r.u(8, "general_level_idc")
    present = [
        (r.flag("sub_layer_profile_present_flag"), r.flag("sub_layer_level_present_flag"))
        for _ in range(max_sub_layers_minus1)
    ]
    if max_sub_layers_minus1 > 0:
        r.skip(2 * (8 - max_sub_layers_minus1), "reserved_zero_2bits")
    for profile_present, level_present in present:
        if profile_present:
            r.skip(88, "sub_layer profile")
        if level_present:
            r.skip(8, "sub_layer_level_idc")
    return space, tier, profile, level


def parse_hevc_sps(nal: bytes, *, path: str = "") -> HevcSps:
    """Parse an HEVC ``seq_parameter_set_rbsp()`` (ISO/IEC 23008-2 §7.3.2.2.1) from a whole SPS NAL
    unit (two header bytes included, emulation prevention bytes still in), as ``hvcC`` carries it.

    The displayed size is pic_width/height_in_luma_samples less the conformance window, whose offsets
    count SubWidthC by SubHeightC luma samples (§7.4.3.2.1); separately coded colour planes
    (ChromaArrayType 0) count single samples. SPSs of enhancement layers (nuh_layer_id > 0, Annex F)
    have another syntax and are refused.
    """
    r = BitReader(unescape_rbsp(nal), "HEVC SPS", path=path)
    if r.u(1, "forbidden_zero_bit"):
        raise r.error("forbidden_zero_bit is set")
    nal_type = r.u(6, "nal_unit_type")
    if nal_type != HEVC_NAL_SPS:
        raise r.error(f"NAL unit type {nal_type} is not a sequence parameter set ({HEVC_NAL_SPS})")
    layer = r.u(6, "nuh_layer_id")
    if layer:
        raise UnsupportedMedia(
            f"HEVC SPS of layer {layer}: only base-layer (0) SPSs are supported", path=path
        )
    r.skip(3, "nuh_temporal_id_plus1")
    r.skip(4, "sps_video_parameter_set_id")
    sub_layers_minus1 = _check(r.u(3, "sps_max_sub_layers_minus1"), 6, "sps_max_sub_layers_minus1", r)
    r.skip(1, "sps_temporal_id_nesting_flag")
    space, tier, profile, level = _profile_tier_level(r, sub_layers_minus1)
    sps_id = _check(r.ue("sps_seq_parameter_set_id"), 15, "sps_seq_parameter_set_id", r)
    chroma_format = _check(r.ue("chroma_format_idc"), 3, "chroma_format_idc", r)
    separate_planes = r.flag("separate_colour_plane_flag") if chroma_format == 3 else False
    coded = (r.ue("pic_width_in_luma_samples"), r.ue("pic_height_in_luma_samples"))
    if not coded[0] or not coded[1]:
        raise r.error(f"picture size {coded[0]}x{coded[1]} is empty")
    offsets = (0, 0, 0, 0)
    if r.flag("conformance_window_flag"):
        offsets = (
            r.ue("conf_win_left_offset"),
            r.ue("conf_win_right_offset"),
            r.ue("conf_win_top_offset"),
            r.ue("conf_win_bottom_offset"),
        )
    chroma_array_type = 0 if separate_planes else chroma_format
    unit = _CHROMA_SUBSAMPLING.get(chroma_array_type, (1, 1))
    width, height = _cropped(r, coded, unit, offsets)
    depth_luma = 8 + _check(r.ue("bit_depth_luma_minus8"), 8, "bit_depth_luma_minus8", r)
    depth_chroma = 8 + _check(r.ue("bit_depth_chroma_minus8"), 8, "bit_depth_chroma_minus8", r)
    return HevcSps(
        sub_layers_minus1 + 1,
        space,
        tier,
        profile,
        level,
        sps_id,
        chroma_format,
        separate_planes,
        coded[0],
        coded[1],
        width,
        height,
        depth_luma,
        depth_chroma,
    )
