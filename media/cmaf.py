"""CMAF headers and fragments (ISO/IEC 23000-19): building them from the media model, and reading
the codec description out of a ``trak``.
"""

from __future__ import annotations

from dataclasses import dataclass

from media.aac import AudioSpecificConfig
from media.boxes import (
    AudioSampleEntry,
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
    return Track(
        name=name,
        kind=kind,
        codec=info.codec,
        codec_string=info.codec_string,
        timescale=mdhd.timescale,
        header=header,
        language=mdhd.language,
        bitrate=bitrate or info.bitrate,
        width=info.width,
        height=info.height,
        sample_rate=info.sample_rate,
        channels=info.channels,
        decoder_config=info.decoder_config,
    )


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
    moof_size = len(bytes(moof))
    trun.data_offset = moof_size + 8
    mdat = MediaDataBox(payload)
    return bytes(moof) + bytes(mdat)


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
