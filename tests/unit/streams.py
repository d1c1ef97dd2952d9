"""Hand-built media for the unit tests: sample entries, multi-track headers, Smooth and CMAF fragments.

Everything here is deterministic and built from the box classes, so tests can state exact bytes,
times and sizes without an encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

from media.boxes import (
    SYNC_SAMPLE_FLAGS,
    AudioSampleEntry,
    AVCConfigurationBox,
    BitRateBox,
    Box,
    ESDescriptorBox,
    FileTypeBox,
    LiveServerManifestBox,
    MediaDataBox,
    MovieBox,
    MovieExtendsBox,
    MovieFragmentBox,
    MovieFragmentHeaderBox,
    MovieHeaderBox,
    SegmentTypeBox,
    TfxdBox,
    TrackBox,
    TrackExtendsBox,
    TrackFragmentBox,
    TrackFragmentDecodeTimeBox,
    TrackFragmentHeaderBox,
    TrackHeaderBox,
    TrackRun,
    TrunEntry,
    VisualSampleEntry,
    parse_boxes,
)
from media.cmaf import build_header
from media.model import TrackKind

# A real x264 baseline SPS/PPS pair is not needed: the parser only reads the record's framing.
SPS = bytes.fromhex("6742c01eda0280bfe5c04400000300040000030ca3c58ba8")
PPS = bytes.fromhex("68ce3c80")
ASC_AAC_LC_48K_STEREO = bytes.fromhex("1190")  # AOT 2, index 3 (48 kHz), 2 channels

TRUN_ALL = 0x01 | 0x100 | 0x200 | 0x400 | 0x800  # data offset + duration, size, flags, CTO


def avc_entry(
    fmt: bytes = b"avc1", *, width: int = 640, height: int = 360, bitrate: int = 0
) -> VisualSampleEntry:
    children: list[Box] = [AVCConfigurationBox(0x42, 0xC0, 0x1E, 4, [SPS], [PPS])]
    if bitrate:
        children.append(BitRateBox(0, bitrate, bitrate))
    return VisualSampleEntry(fmt, width, height, children, compressor_name="hw")


def aac_entry(
    asc: bytes = ASC_AAC_LC_48K_STEREO,
    *,
    object_type: int = 0x40,
    sample_rate: int = 48000,
    channels: int = 2,
) -> AudioSampleEntry:
    esds = ESDescriptorBox(
        object_type=object_type, max_bitrate=128000, avg_bitrate=96000, decoder_specific_info=asc, es_id=1
    )
    return AudioSampleEntry(b"mp4a", channels, sample_rate, [esds])


@dataclass(frozen=True)
class TrackSpec:
    track_id: int
    kind: TrackKind
    timescale: int
    entry: Box


def make_moov(specs: list[TrackSpec]) -> MovieBox:
    """A moov holding one trak per spec, with the given track IDs (build_header makes track 1 only)."""
    traks: list[Box] = []
    trexes: list[Box] = []
    for spec in specs:
        single = parse_boxes(build_header(spec.kind, spec.timescale, "und", spec.entry))
        moov = single[1]
        assert isinstance(moov, MovieBox)
        trak = moov.need(TrackBox)
        trak.need(TrackHeaderBox).track_id = spec.track_id
        traks.append(trak)
        trexes.append(TrackExtendsBox(track_id=spec.track_id))
    next_id = max(s.track_id for s in specs) + 1
    return MovieBox([MovieHeaderBox(timescale=1000, next_track_id=next_id), *traks, MovieExtendsBox(trexes)])


def lsm_xml(tracks: list[tuple[str, int, int]]) -> str:
    """A live server manifest: (element, track ID, bitrate) per track, names from the element."""
    items = "".join(
        f'<{kind} src="{kind}_{bitrate}" systemBitrate="{bitrate}">'
        f'<param name="trackID" value="{track_id}" valuetype="data"/>'
        f'<param name="trackName" value="{kind}" valuetype="data"/>'
        f"</{kind}>"
        for kind, track_id, bitrate in tracks
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head/>'
        f"<body><switch>{items}</switch></body></smil>"
    )


def smooth_header(specs: list[TrackSpec], lsm: list[tuple[str, int, int]] | None) -> bytes:
    """ftyp (isml) + optional live server manifest + moov, as a Smooth encoder sends them."""
    out = bytes(FileTypeBox(b"isml", 1, [b"piff", b"iso2"]))
    if lsm is not None:
        out += bytes(LiveServerManifestBox(lsm_xml(lsm)))
    return out + bytes(make_moov(specs))


def cmaf_header(spec: TrackSpec) -> bytes:
    return build_header(spec.kind, spec.timescale, "und", spec.entry)


def samples_payload(sizes: list[int], seed: int = 0) -> bytes:
    """Sample bytes where every sample has its own recognisable fill byte."""
    return b"".join(bytes([(seed + i + 1) & 0xFF]) * size for i, size in enumerate(sizes))


def moof_mdat(
    trafs: list[list[Box]],
    payloads: list[bytes],
    *,
    sequence: int = 1,
) -> bytes:
    """moof + one mdat holding the payloads in traf order. Each traf's first trun gets the data offset
    of its payload relative to the moof start: right for every traf with default-base-is-moof, and for
    the first traf of a moof without it (Smooth, one traf per moof)."""

    def build(offsets: list[int]) -> MovieFragmentBox:
        children: list[Box] = [MovieFragmentHeaderBox(sequence)]
        for boxes, offset in zip(trafs, offsets, strict=True):
            for box in boxes:
                if isinstance(box, TrackRun) and box.flags & 0x01:
                    box.data_offset = offset
                    break
            children.append(TrackFragmentBox(list(boxes)))
        return MovieFragmentBox(children)

    moof_size = len(bytes(build([0] * len(trafs))))
    offsets = []
    pos = moof_size + 8
    for payload in payloads:
        offsets.append(pos)
        pos += len(payload)
    return bytes(build(offsets)) + bytes(MediaDataBox(b"".join(payloads)))


def trun(durations: list[int], sizes: list[int], *, ctos: list[int] | None = None) -> TrackRun:
    ctos = ctos or [0] * len(sizes)
    flags = [SYNC_SAMPLE_FLAGS] + [0x01010000] * (len(sizes) - 1)
    entries = [TrunEntry(d, s, f, c) for d, s, f, c in zip(durations, sizes, flags, ctos, strict=True)]
    return TrackRun(flags=TRUN_ALL, samples=entries, version=1)


def smooth_traf(
    track_id: int, time: int, durations: list[int], sizes: list[int], *, tfxd_version: int = 1
) -> list[Box]:
    """A PIFF traf: no tfdt, timing in tfxd, data offset relative to the moof (no base flags)."""
    return [
        TrackFragmentHeaderBox(track_id, default_base_is_moof=False),
        trun(durations, sizes),
        TfxdBox(time, sum(durations), tfxd_version),
    ]


def cmaf_traf(track_id: int, time: int, durations: list[int], sizes: list[int]) -> list[Box]:
    return [
        TrackFragmentHeaderBox(track_id, default_base_is_moof=True),
        TrackFragmentDecodeTimeBox(time, 1),
        trun(durations, sizes),
    ]


def styp(*brands: bytes) -> bytes:
    return bytes(SegmentTypeBox(b"cmf2", 0, [b"cmf2", *brands]))


AVC_SPEC = TrackSpec(1, TrackKind.VIDEO, 90000, avc_entry())
AAC_SPEC = TrackSpec(1, TrackKind.AUDIO, 48000, aac_entry())
