"""CMAF headers and fragments (ISO/IEC 23000-19): building them from the media model, from a raw
decoder configuration record (RTMP), and reading the codec description out of a ``trak``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import TypeVar

from media import av1
from media.aac import AudioSpecificConfig
from media.bmff import Cursor, write_header
from media.boxes import (
    AudioSampleEntry,
    AV1CodecConfigurationBox,
    AVCConfigurationBox,
    BitRateBox,
    Box,
    DataEntryUrlBox,
    DataInformationBox,
    DataReferenceBox,
    ESDescriptorBox,
    FileTypeBox,
    HandlerBox,
    HEVCConfigurationBox,
    MediaBox,
    MediaDataBox,
    MediaHeaderBox,
    MediaInformationBox,
    MovieBox,
    MovieExtendsBox,
    MovieFragmentBox,
    MovieFragmentHeaderBox,
    MovieHeaderBox,
    NullMediaHeaderBox,
    OpusSpecificBox,
    ProducerReferenceTimeBox,
    RawBox,
    SampleDescriptionBox,
    SampleTableBox,
    SoundMediaHeaderBox,
    SubtitleMediaHeaderBox,
    TextSampleEntry,
    TrackBox,
    TrackExtendsBox,
    TrackFragmentBox,
    TrackFragmentDecodeTimeBox,
    TrackFragmentHeaderBox,
    TrackHeaderBox,
    TrackRun,
    TrunEntry,
    VideoMediaHeaderBox,
    VisualSampleEntry,
    parse_boxes,
)
from media.errors import BoxError, UnsupportedMedia
from media.model import Sample, Track, TrackKind
from media.opus import OPUS_RATE, OpusHead
from media.sps import HEVC_NAL_SPS, parse_avc_sps, parse_hevc_sps

_Config = TypeVar("_Config", bound=Box)

CMAF_BRANDS = [b"cmfc", b"iso6", b"mp41"]

_HANDLERS = {
    b"vide": TrackKind.VIDEO,
    b"soun": TrackKind.AUDIO,
    b"text": TrackKind.TEXT,
    b"subt": TrackKind.TEXT,
}
_HANDLER_OF = {TrackKind.VIDEO: b"vide", TrackKind.AUDIO: b"soun", TrackKind.TEXT: b"text"}


@dataclass(frozen=True, slots=True)
class CodecInfo:
    """What a sample entry says about its codec."""

    codec: str
    codec_string: str
    decoder_config: bytes
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0
    bitrate: int = 0


def aac_codec_string(asc: bytes) -> tuple[str, int, int]:
    """RFC 6381 codec string, output sample rate and output channel count of an AudioSpecificConfig
    (:mod:`media.aac`); a record too short to say gives ``mp4a.40.2`` and zeros."""
    try:
        config = AudioSpecificConfig.parse(asc)
    except UnsupportedMedia:
        return "mp4a.40.2", 0, 0
    return config.codec_string, config.output_rate, config.output_channels


def codec_info(entry: Box, path: str) -> CodecInfo:
    """The codec of a sample entry; :class:`UnsupportedMedia` for codecs Headwater cannot package."""
    btrt = entry.first(BitRateBox)
    bitrate = btrt.avg_bitrate if btrt else 0
    if isinstance(entry, VisualSampleEntry):
        fmt = entry.format
        if fmt in (b"avc1", b"avc3"):
            avcc = entry.need(AVCConfigurationBox, f"{path}/{entry.name}")
            return CodecInfo(
                fmt.decode(),
                avcc.codec_string(fmt),
                avcc.payload(),
                entry.width,
                entry.height,
                bitrate=bitrate,
            )
        if fmt in (b"hvc1", b"hev1"):
            hvcc = entry.need(HEVCConfigurationBox, f"{path}/{entry.name}")
            return CodecInfo(
                fmt.decode(),
                hvcc.codec_string(fmt),
                hvcc.payload(),
                entry.width,
                entry.height,
                bitrate=bitrate,
            )
        if fmt == b"av01":
            where = f"{path}/{entry.name}"
            av1c = entry.need(AV1CodecConfigurationBox, where)
            return CodecInfo(
                "av01",
                av1.codec_string(av1c, fmt, path=f"{where}/av1C"),
                av1c.payload(),
                entry.width,
                entry.height,
                bitrate=bitrate,
            )
    elif isinstance(entry, AudioSampleEntry) and entry.format == b"Opus":
        # Opus in ISOBMFF §4.3: decoded at 48 kHz whatever the input rate; RFC 6381 codec "opus".
        dops = entry.need(OpusSpecificBox, f"{path}/{entry.name}")
        return CodecInfo(
            "Opus",
            "opus",
            dops.payload(),
            sample_rate=OPUS_RATE,
            channels=dops.output_channel_count,
            bitrate=bitrate,
        )
    elif isinstance(entry, AudioSampleEntry) and entry.format == b"mp4a":
        esds = entry.need(ESDescriptorBox, f"{path}/{entry.name}")
        if esds.object_type != 0x40:
            raise UnsupportedMedia(
                f"mp4a object type {esds.object_type:#x} is not MPEG-4 AAC (0x40)", path=f"{path}/mp4a/esds"
            )
        codec, rate, channels = aac_codec_string(esds.decoder_specific_info)
        return CodecInfo(
            "mp4a",
            codec,
            esds.decoder_specific_info,
            sample_rate=rate or entry.sample_rate,
            channels=channels or entry.channel_count,
            bitrate=bitrate or esds.avg_bitrate,
        )
    elif isinstance(entry, TextSampleEntry):
        config = b"".join(bytes(c) for c in entry.children if c.box_type == b"vttC")
        # RFC 6381 for TTML: the IMSC1 text profile (ISO/IEC 14496-30, W3C TTML-IMSC1 §7).
        codec_string = "stpp.ttml.im1t" if entry.format == b"stpp" else entry.format.decode()
        return CodecInfo(entry.format.decode(), codec_string, config, bitrate=bitrate)
    raise UnsupportedMedia(
        f"unsupported codec {entry.box_type.decode('latin-1')!r}", path=f"{path}/{entry.name}"
    )


def track_from_trak(trak: TrackBox, name: str, *, bitrate: int = 0, path: str = "moov/trak") -> Track:
    """Describe one ``trak`` as a :class:`Track`, with a fresh single-track CMAF header."""
    mdia = trak.need(MediaBox, path)
    mdhd = mdia.need(MediaHeaderBox, f"{path}/mdia")
    hdlr = mdia.need(HandlerBox, f"{path}/mdia")
    kind = _HANDLERS.get(hdlr.handler_type)
    if kind is None:
        raise UnsupportedMedia(
            f"unsupported handler type {hdlr.handler_type.decode('latin-1')!r}", path=f"{path}/mdia/hdlr"
        )
    stbl_path = f"{path}/mdia/minf/stbl"
    minf = mdia.need(MediaInformationBox, f"{path}/mdia")
    stsd = minf.need(SampleTableBox, f"{path}/mdia/minf").need(SampleDescriptionBox, stbl_path)
    if len(stsd.children) != 1:
        raise UnsupportedMedia(
            f"{len(stsd.children)} sample entries; CMAF tracks carry exactly one", path=f"{stbl_path}/stsd"
        )
    entry = stsd.children[0]
    info = codec_info(entry, f"{stbl_path}/stsd")
    header = build_header(kind, mdhd.timescale, mdhd.language, entry, hdlr.handler_type, hdlr.handler_name)
    return _track(name, kind, info, mdhd.timescale, header, mdhd.language, bitrate)


def _track(
    name: str, kind: TrackKind, info: CodecInfo, timescale: int, header: bytes, language: str, bitrate: int
) -> Track:
    return Track(
        name=name,
        kind=kind,
        codec=info.codec,
        codec_string=info.codec_string,
        timescale=timescale,
        header=header,
        language=language,
        bitrate=bitrate or info.bitrate,
        width=info.width,
        height=info.height,
        sample_rate=info.sample_rate,
        channels=info.channels,
        decoder_config=info.decoder_config,
    )


# ---------------------------------------------------------------------------------------------
# Tracks from raw decoder configuration records (RTMP/FLV sequence headers)

VIDEO_TIMESCALE = 90000
AAC_FRAME_SAMPLES = 1024  # per access unit at the core rate, frameLengthFlag 0 (14496-3 §4.5.1.1)
MAX_ENTRY_DIMENSION = 0xFFFF  # VisualSampleEntry width and height are 16-bit (14496-12 §12.1.3)


def aac_frame_duration(asc: AudioSpecificConfig | bytes) -> int:
    """How long one AAC access unit lasts in ticks of the track timescale :func:`track_from_config`
    gives an ``mp4a`` track (the output sample rate): 1024 core samples, twice as many output samples
    when SBR doubles the rate. ``asc`` is parsed (:mod:`media.aac`) when given as bytes. 960-sample
    frames (``frameLengthFlag``) are not told apart."""
    if isinstance(asc, bytes):
        asc = AudioSpecificConfig.parse(asc)
    if not asc.sample_rate or not asc.output_rate:
        raise UnsupportedMedia(
            f"AudioSpecificConfig with sampling frequency index {asc.sampling_index} has no sample rate"
        )
    ticks, rest = divmod(AAC_FRAME_SAMPLES * asc.output_rate, asc.sample_rate)
    if rest:
        raise UnsupportedMedia(
            f"{AAC_FRAME_SAMPLES} samples at {asc.sample_rate} Hz are no whole number of ticks at the "
            f"output rate {asc.output_rate} Hz"
        )
    return ticks


def _record(cls: type[_Config], config: bytes) -> _Config:
    """A configuration box's payload parsed from a bare record, every byte accounted for."""
    cur = Cursor(config, path=cls.TYPE.decode("latin-1"), base=0)
    box = cls.parse(cur)
    cur.expect_end()
    return box


def _video_entry(fmt: bytes, config_box: Box, size: tuple[int, int], bitrate: int) -> VisualSampleEntry:
    width, height = size
    if not 0 < width <= MAX_ENTRY_DIMENSION or not 0 < height <= MAX_ENTRY_DIMENSION:
        raise UnsupportedMedia(f"{fmt.decode()} picture size {width}x{height} does not fit a sample entry")
    children: list[Box] = [config_box]
    if bitrate:
        children.append(BitRateBox(0, bitrate, bitrate))
    return VisualSampleEntry(fmt, width, height, children)


def _avc_entry(fmt: bytes, config: bytes, bitrate: int) -> VisualSampleEntry:
    avcc = _record(AVCConfigurationBox, config)
    if not avcc.sps:
        raise BoxError("AVCDecoderConfigurationRecord holds no SPS", path="avcC")
    sps = parse_avc_sps(avcc.sps[0], path="avcC/SPS")
    return _video_entry(fmt, avcc, (sps.width, sps.height), bitrate)


def _hevc_entry(fmt: bytes, config: bytes, bitrate: int) -> VisualSampleEntry:
    hvcc = _record(HEVCConfigurationBox, config)
    nal = next((n for a in hvcc.arrays if a.nal_type == HEVC_NAL_SPS for n in a.nalus), None)
    if nal is None:
        raise BoxError("HEVCDecoderConfigurationRecord holds no SPS", path="hvcC")
    sps = parse_hevc_sps(nal, path="hvcC/SPS")
    return _video_entry(fmt, hvcc, (sps.width, sps.height), bitrate)


def _av1_entry(config: bytes, first_frame: bytes, bitrate: int) -> VisualSampleEntry:
    av1c = _record(AV1CodecConfigurationBox, config)
    header = av1.sequence_header_of(av1c)
    if header is None and first_frame:
        # The binding (§2.3.4) wants the Sequence Header OBU first in configOBUs.
        obu = av1.find_sequence_header(first_frame, path="first_frame")
        if obu is not None:
            av1c = replace(av1c, config_obus=obu + av1c.config_obus)
            header = av1.sequence_header_of(av1c)
    if header is None:
        raise BoxError(
            "AV1CodecConfigurationRecord has no Sequence Header OBU in its configOBUs, and no "
            "first_frame (the first keyframe's temporal unit) supplies one",
            path="av1C",
        )
    return _video_entry(b"av01", av1c, (header.max_frame_width, header.max_frame_height), bitrate)


def _aac_entry(config: bytes, bitrate: int) -> tuple[AudioSampleEntry, int]:
    asc = AudioSpecificConfig.parse(config)
    aac_frame_duration(asc)  # refuses configurations without a usable rate
    esds = ESDescriptorBox(max_bitrate=bitrate, avg_bitrate=bitrate, decoder_specific_info=config)
    entry = AudioSampleEntry(b"mp4a", asc.output_channels or 2, asc.output_rate, [esds])
    return entry, asc.output_rate


def _opus_entry(config: bytes, bitrate: int) -> AudioSampleEntry:
    head = OpusHead.parse(config)
    children: list[Box] = [head.to_box()]
    if bitrate:
        children.append(BitRateBox(0, bitrate, bitrate))
    # Opus in ISOBMFF §4.3.1: channelcount is the output channel count, samplerate 48000.
    return AudioSampleEntry(b"Opus", head.channels, OPUS_RATE, children)


def track_from_config(
    name: str,
    codec: str,
    config: bytes,
    *,
    bitrate: int = 0,
    language: str = "und",
    first_frame: bytes = b"",
) -> Track:
    """A :class:`Track` with a fresh CMAF header from a raw decoder configuration record, as RTMP/FLV
    sequence headers carry them.

    ``codec`` names the sample entry and the record ``config`` holds:

    - ``avc1``/``avc3``: AVCDecoderConfigurationRecord (14496-15 §5.3.3); size from its first SPS.
    - ``hvc1``/``hev1``: HEVCDecoderConfigurationRecord (14496-15 §8.3.3); size from its first SPS.
    - ``av01``: AV1CodecConfigurationRecord (AV1 ISOBMFF binding §2.3); size from the Sequence Header
      OBU of its configOBUs. Encoders that leave configOBUs empty send the sequence header in the
      first keyframe: pass that temporal unit as ``first_frame`` and its Sequence Header OBU is put
      into the record the header carries. Other codecs ignore ``first_frame``.
    - ``mp4a``: AudioSpecificConfig (14496-3 §1.6.2.1); timescale the decoder's output rate, so one
      frame lasts :func:`aac_frame_duration` ticks.
    - ``Opus``: the OpusHead identification header (RFC 7845 §5.1), written as ``dOps``.

    Video tracks get a 90 kHz timescale, Opus 48 kHz. The track's codec string, decoder config and
    size are what :func:`codec_info` reads back from the header. Another ``codec`` is
    :class:`UnsupportedMedia`; a malformed record a :class:`BoxError`.
    """
    kind = TrackKind.VIDEO
    timescale = VIDEO_TIMESCALE
    entry: Box
    if codec in ("avc1", "avc3"):
        entry = _avc_entry(codec.encode(), config, bitrate)
    elif codec in ("hvc1", "hev1"):
        entry = _hevc_entry(codec.encode(), config, bitrate)
    elif codec == "av01":
        entry = _av1_entry(config, first_frame, bitrate)
    elif codec == "mp4a":
        kind = TrackKind.AUDIO
        entry, timescale = _aac_entry(config, bitrate)
    elif codec == "Opus":
        kind, timescale = TrackKind.AUDIO, OPUS_RATE
        entry = _opus_entry(config, bitrate)
    else:
        raise UnsupportedMedia(
            f"unsupported codec {codec!r}: a track from a configuration record is avc1, avc3, hvc1, hev1, "
            "av01, mp4a or Opus"
        )
    if not (len(language) == 3 and language.isascii() and language.isalpha()):
        language = "und"  # what mdhd can hold (ISO-639-2/T), as MediaHeaderBox writes it
    language = language.lower()
    info = codec_info(entry, "stsd")
    header = build_header(kind, timescale, language, entry)
    return _track(name, kind, info, timescale, header, language, bitrate)


def build_header(
    kind: TrackKind, timescale: int, language: str, entry: Box, handler: bytes = b"", handler_name: str = ""
) -> bytes:
    """A CMAF header (ftyp + moov) for one track, track ID 1 (ISO/IEC 23000-19 §7.3.2.2)."""
    if not handler:
        handler = b"subt" if entry.box_type == b"stpp" else _HANDLER_OF[kind]
    width = entry.width if isinstance(entry, VisualSampleEntry) else 0
    height = entry.height if isinstance(entry, VisualSampleEntry) else 0
    media_header: Box
    if kind is TrackKind.VIDEO:
        media_header = VideoMediaHeaderBox()
    elif kind is TrackKind.AUDIO:
        media_header = SoundMediaHeaderBox()
    elif handler == b"subt":
        media_header = SubtitleMediaHeaderBox()
    else:
        media_header = NullMediaHeaderBox()
    stbl = SampleTableBox(
        children=[
            SampleDescriptionBox(children=[entry]),
            RawBox(b"stts", bytes(8)),
            RawBox(b"stsc", bytes(8)),
            RawBox(b"stsz", bytes(12)),
            RawBox(b"stco", bytes(8)),
        ]
    )
    minf = MediaInformationBox(
        children=[
            media_header,
            DataInformationBox(children=[DataReferenceBox(children=[DataEntryUrlBox()])]),
            stbl,
        ]
    )
    trak = TrackBox(
        children=[
            TrackHeaderBox(
                track_id=1,
                width=width,
                height=height,
                volume=0x100 if kind is TrackKind.AUDIO else 0,
                alternate_group=1 if kind is TrackKind.AUDIO else 0,
            ),
            MediaBox(
                children=[
                    MediaHeaderBox(timescale=timescale, language=language),
                    HandlerBox(handler, handler_name or f"Headwater {kind.value}"),
                    minf,
                ]
            ),
        ]
    )
    moov = MovieBox(
        children=[
            MovieHeaderBox(timescale=1000, next_track_id=2),
            trak,
            MovieExtendsBox(children=[TrackExtendsBox(track_id=1)]),
        ]
    )
    ftyp = FileTypeBox(b"cmfc", 0, CMAF_BRANDS)
    return bytes(ftyp) + bytes(moov)


def write_fragment(
    sequence: int, decode_time: int, samples: list[Sample] | tuple[Sample, ...], payload: bytes
) -> bytes:
    """A CMAF fragment (moof + mdat) for track 1 with every sample field explicit in ``trun``, so it
    needs no defaults from the header (ISO/IEC 23000-19 §7.3.2.3)."""
    trun = TrackRun(
        flags=0x01 | 0x100 | 0x200 | 0x400 | 0x800,
        samples=[TrunEntry(s.duration, s.size, s.flags, s.composition_offset) for s in samples],
        data_offset=0,
        version=1,
    )
    moof = MovieFragmentBox(
        children=[
            MovieFragmentHeaderBox(sequence),
            TrackFragmentBox(
                children=[
                    TrackFragmentHeaderBox(track_id=1, default_base_is_moof=True),
                    TrackFragmentDecodeTimeBox(decode_time, version=1),
                    trun,
                ]
            ),
        ]
    )
    # Written once, then the data offset (the trun is the last box, its offset field 16 bytes in)
    # patched to point just past the mdat header.
    out = bytearray(bytes(moof))
    mdat = write_header(b"mdat", len(payload))
    trun_start = len(out) - (20 + 16 * len(samples))
    assert out[trun_start + 4 : trun_start + 8] == b"trun"
    struct.pack_into(">i", out, trun_start + 16, len(out) + len(mdat))
    out += mdat
    out += payload
    return bytes(out)


NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)


def prft_box(utc_ms: int, media_time: int) -> bytes:
    """A ``prft`` for track 1 (ISO/IEC 14496-12 §8.16.5): ``media_time`` was captured at
    ``utc_ms``, written as a 64-bit NTP timestamp."""
    seconds, millis = divmod(utc_ms, 1000)
    ntp = ((seconds + NTP_EPOCH_OFFSET) << 32) | (millis << 32) // 1000
    return bytes(ProducerReferenceTimeBox(1, ntp, media_time))


def fragment_boxes(data: bytes) -> tuple[MovieFragmentBox, MediaDataBox]:
    """The ``moof`` and ``mdat`` of a stored fragment."""
    boxes = parse_boxes(data)
    moof = next((b for b in boxes if isinstance(b, MovieFragmentBox)), None)
    mdat = next((b for b in boxes if isinstance(b, MediaDataBox)), None)
    if moof is None or mdat is None:
        raise BoxError("fragment lacks moof or mdat")
    return moof, mdat


def read_fragment(data: bytes) -> tuple[int, list[Sample], bytes]:
    """Decode time, samples and sample bytes of a fragment written by :func:`write_fragment`."""
    moof, mdat = fragment_boxes(data)
    traf = moof.need(TrackFragmentBox)
    tfdt = traf.need(TrackFragmentDecodeTimeBox, "moof/traf")
    trun = traf.need(TrackRun, "moof/traf")
    samples = [
        Sample(s.duration or 0, s.size or 0, s.flags or 0, s.composition_offset or 0) for s in trun.samples
    ]
    return tfdt.base_media_decode_time, samples, mdat.data
