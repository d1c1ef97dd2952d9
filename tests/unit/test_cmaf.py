"""media.cmaf: RFC 6381 codec strings, codec descriptions of sample entries, CMAF headers and fragments."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.boxes import (
    AudioSampleEntry,
    AVCConfigurationBox,
    Box,
    DataReferenceBox,
    FileTypeBox,
    HandlerBox,
    MediaBox,
    MediaDataBox,
    MediaHeaderBox,
    MediaInformationBox,
    MovieBox,
    MovieExtendsBox,
    MovieFragmentBox,
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
    VideoMediaHeaderBox,
    VisualSampleEntry,
    parse_boxes,
)
from media.cmaf import (
    CMAF_BRANDS,
    CodecInfo,
    aac_codec_string,
    build_header,
    codec_info,
    read_fragment,
    track_from_trak,
    write_fragment,
)
from media.errors import BoxError, UnsupportedMedia
from media.model import Sample, TrackKind
from tests.unit.streams import ASC_AAC_LC_48K_STEREO, PPS, SPS, aac_entry, avc_entry

# ---------------------------------------------------------------------------------------------
# AAC codec strings (ISO/IEC 14496-3 §1.6.2.1 AudioSpecificConfig)


@pytest.mark.parametrize(
    ("asc", "expected"),
    [
        ("", ("mp4a.40.2", 0, 0)),
        ("12", ("mp4a.40.2", 0, 0)),  # too short to say anything
        ("1190", ("mp4a.40.2", 48000, 2)),  # AAC-LC 48 kHz stereo
        ("1210", ("mp4a.40.2", 44100, 2)),
        ("1208 56e500", ("mp4a.40.2", 44100, 1)),  # ffmpeg's, with a trailing sync extension
        ("1588", ("mp4a.40.2", 8000, 1)),  # index 11
        ("0a10", ("mp4a.40.1", 44100, 2)),  # AAC main
        ("2b11 88", ("mp4a.40.5", 48000, 2)),  # explicit SBR: output at the extension rate
        ("eb09 88", ("mp4a.40.29", 48000, 2)),  # explicit PS: extension rate, stereo output
        ("f948 40", ("mp4a.40.42", 44100, 2)),  # escape: 32 + 10
        ("1690", ("mp4a.40.2", 0, 2)),  # reserved frequency index 13
        ("1780 0000 00", ("mp4a.40.2", 0, 0)),  # explicit 24-bit frequency
    ],
)
def test_aac_codec_string(asc: str, expected: tuple[str, int, int]) -> None:
    assert aac_codec_string(bytes.fromhex(asc)) == expected


def test_he_aac_sample_rate_is_the_sbr_output_rate() -> None:
    assert aac_codec_string(bytes.fromhex("2b1188")) == ("mp4a.40.5", 48000, 2)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(st.binary(max_size=8))
def test_aac_codec_string_never_fails(asc: bytes) -> None:
    codec, rate, channels = aac_codec_string(asc)
    assert codec.startswith("mp4a.40.")
    assert 0 <= channels <= 15 and rate >= 0


# ---------------------------------------------------------------------------------------------
# codec_info


def test_codec_info_avc() -> None:
    entry = avc_entry(bitrate=800_000)
    info = codec_info(entry, "stsd")
    avcc = entry.need(AVCConfigurationBox)
    assert info == CodecInfo("avc1", "avc1.42c01e", avcc.payload(), 640, 360, bitrate=800_000)
    assert info.decoder_config == bytes.fromhex("0142c01effe10018") + SPS + bytes.fromhex("010004") + PPS


def test_codec_info_avc3() -> None:
    assert codec_info(avc_entry(b"avc3"), "stsd").codec_string == "avc3.42c01e"


def test_codec_info_aac() -> None:
    info = codec_info(aac_entry(), "stsd")
    assert info == CodecInfo(
        "mp4a", "mp4a.40.2", ASC_AAC_LC_48K_STEREO, sample_rate=48000, channels=2, bitrate=96000
    )


def test_codec_info_aac_falls_back_to_sample_entry_rate() -> None:
    info = codec_info(aac_entry(bytes.fromhex("1780000000"), sample_rate=22050, channels=1), "stsd")
    assert (info.sample_rate, info.channels) == (22050, 1)


def test_codec_info_text() -> None:
    vttc = RawBox(b"vttC", b"WEBVTT")
    info = codec_info(TextSampleEntry(b"wvtt", children=[vttc]), "stsd")
    assert info == CodecInfo("wvtt", "wvtt", bytes(vttc))
    assert (
        codec_info(TextSampleEntry(b"stpp", "http://www.w3.org/ns/ttml"), "stsd").codec_string
        == "stpp.ttml.im1t"
    )


@pytest.mark.parametrize(
    ("entry", "path"),
    [
        (RawBox(b"xyz1", bytes(8)), "moov/trak/stsd/xyz1"),
        (VisualSampleEntry(b"vp09", 64, 64), "moov/trak/stsd/vp09"),
        (AudioSampleEntry(b"ac-3"), "moov/trak/stsd/ac-3"),
        (aac_entry(object_type=0x6B), "moov/trak/stsd/mp4a/esds"),
    ],
    ids=["unknown-entry", "vp09", "ac-3", "mp3-in-mp4a"],
)
def test_codec_info_refuses_unsupported_codecs(entry: Box, path: str) -> None:
    with pytest.raises(UnsupportedMedia) as info:
        codec_info(entry, "moov/trak/stsd")
    assert info.value.path == path


def test_codec_info_names_missing_configuration_box() -> None:
    with pytest.raises(BoxError, match="missing avcC") as info:
        codec_info(VisualSampleEntry(b"avc1", 64, 64), "moov/trak/stsd")
    assert info.value.path == "moov/trak/stsd/avc1"
    with pytest.raises(BoxError, match="missing esds"):
        codec_info(AudioSampleEntry(b"mp4a"), "moov/trak/stsd")


# ---------------------------------------------------------------------------------------------
# build_header and track_from_trak


def _moov(header: bytes) -> MovieBox:
    boxes = parse_boxes(header)
    assert [b.name for b in boxes] == ["ftyp", "moov"]
    ftyp, moov = boxes
    assert ftyp == FileTypeBox(b"cmfc", 0, CMAF_BRANDS)
    assert isinstance(moov, MovieBox)
    return moov


@pytest.mark.parametrize(
    ("kind", "entry", "handler", "media_header"),
    [
        (TrackKind.VIDEO, avc_entry(), b"", VideoMediaHeaderBox),
        (TrackKind.AUDIO, aac_entry(), b"", SoundMediaHeaderBox),
        (TrackKind.TEXT, TextSampleEntry(b"wvtt"), b"text", NullMediaHeaderBox),
        (
            TrackKind.TEXT,
            TextSampleEntry(b"stpp", "http://www.w3.org/ns/ttml"),
            b"subt",
            SubtitleMediaHeaderBox,
        ),
    ],
    ids=["video", "audio", "wvtt", "stpp"],
)
def test_build_header_structure(kind: TrackKind, entry: Box, handler: bytes, media_header: type[Box]) -> None:
    moov = _moov(build_header(kind, 12345, "swe", entry, handler))
    assert moov.need(MovieHeaderBox).next_track_id == 2
    trak = moov.need(TrackBox)
    tkhd = trak.need(TrackHeaderBox)
    assert tkhd.track_id == 1
    mdia = trak.need(MediaBox)
    mdhd = mdia.need(MediaHeaderBox)
    assert (mdhd.timescale, mdhd.language) == (12345, "swe")
    hdlr = mdia.need(HandlerBox)
    assert hdlr.handler_type == (handler or {TrackKind.VIDEO: b"vide", TrackKind.AUDIO: b"soun"}[kind])
    minf = mdia.need(MediaInformationBox)
    assert isinstance(minf.children[0], media_header)
    assert minf.children[1].need(DataReferenceBox).children[0].box_type == b"url "
    stbl = minf.need(SampleTableBox)
    stsd = stbl.need(SampleDescriptionBox)
    assert stsd.children == [entry]
    assert [c.box_type for c in stbl.children] == [b"stsd", b"stts", b"stsc", b"stsz", b"stco"]
    assert [t.track_id for t in moov.need(MovieExtendsBox).all(TrackExtendsBox)] == [1]
    if kind is TrackKind.VIDEO:
        assert (tkhd.width, tkhd.height, tkhd.volume) == (640, 360, 0)
    if kind is TrackKind.AUDIO:
        assert (tkhd.volume, tkhd.alternate_group) == (0x100, 1)


def test_build_header_text_without_explicit_handler() -> None:
    moov = _moov(build_header(TrackKind.TEXT, 1000, "eng", TextSampleEntry(b"wvtt")))
    assert moov.need(TrackBox).children[1].need(HandlerBox).handler_type == b"text"


@pytest.mark.parametrize(
    ("kind", "entry"), [(TrackKind.VIDEO, avc_entry(bitrate=500_000)), (TrackKind.AUDIO, aac_entry())]
)
def test_track_from_trak_rebuilds_the_same_header(kind: TrackKind, entry: Box) -> None:
    header = build_header(kind, 90000, "eng", entry)
    trak = _moov(header).need(TrackBox)
    track = track_from_trak(trak, "t1")
    assert track.header == header
    assert (track.name, track.kind, track.timescale, track.language) == ("t1", kind, 90000, "eng")
    info = codec_info(entry, "stsd")
    assert (track.codec, track.codec_string, track.decoder_config) == (
        info.codec,
        info.codec_string,
        info.decoder_config,
    )
    assert track.bitrate == info.bitrate
    assert track_from_trak(trak, "t1", bitrate=7).bitrate == 7


def test_track_from_trak_refuses_unknown_handler() -> None:
    trak = _moov(build_header(TrackKind.VIDEO, 1000, "und", avc_entry(), b"meta")).need(TrackBox)
    with pytest.raises(UnsupportedMedia, match="handler type 'meta'") as info:
        track_from_trak(trak, "x", path="moov/trak[3]")
    assert info.value.path == "moov/trak[3]/mdia/hdlr"


def test_track_from_trak_refuses_two_sample_entries() -> None:
    trak = _moov(build_header(TrackKind.VIDEO, 1000, "und", avc_entry())).need(TrackBox)
    stbl = trak.need(MediaBox).need(MediaInformationBox).need(SampleTableBox)
    stsd = stbl.need(SampleDescriptionBox)
    stsd.children.append(avc_entry())
    with pytest.raises(UnsupportedMedia, match="2 sample entries") as info:
        track_from_trak(trak, "x")
    assert info.value.path == "moov/trak/mdia/minf/stbl/stsd"


def _without(box: Box, drop: type[Box]) -> None:
    kids = box.subboxes()
    kids[:] = [c for c in kids if not isinstance(c, drop)]
    for child in kids:
        _without(child, drop)


MISSING = [
    (MediaBox, "mdia", "moov/trak[0]"),
    (MediaHeaderBox, "mdhd", "moov/trak[0]/mdia"),
    (HandlerBox, "hdlr", "moov/trak[0]/mdia"),
    (MediaInformationBox, "minf", "moov/trak[0]/mdia"),
    (SampleTableBox, "stbl", "moov/trak[0]/mdia/minf"),
    (SampleDescriptionBox, "stsd", "moov/trak[0]/mdia/minf/stbl"),
]


@pytest.mark.parametrize(("drop", "name", "parent"), MISSING, ids=[m[1] for m in MISSING])
def test_track_from_trak_names_the_missing_box(drop: type[Box], name: str, parent: str) -> None:
    trak = _moov(build_header(TrackKind.VIDEO, 1000, "und", avc_entry())).need(TrackBox)
    _without(trak, drop)
    with pytest.raises(BoxError, match=f"missing {name} box") as info:
        track_from_trak(trak, "x", path="moov/trak[0]")
    assert info.value.path.startswith(parent)


@pytest.mark.parametrize(("drop", "name", "parent"), MISSING, ids=[m[1] for m in MISSING])
def test_track_from_trak_missing_box_path_is_exact(drop: type[Box], name: str, parent: str) -> None:
    trak = _moov(build_header(TrackKind.VIDEO, 1000, "und", avc_entry())).need(TrackBox)
    _without(trak, drop)
    with pytest.raises(BoxError) as info:
        track_from_trak(trak, "x", path="moov/trak[0]")
    assert info.value.path == parent


# ---------------------------------------------------------------------------------------------
# Fragments

SAMPLES = st.lists(
    st.builds(
        Sample,
        duration=st.integers(0, 2**32 - 1),
        size=st.integers(0, 40),
        flags=st.integers(0, 2**32 - 1),
        composition_offset=st.integers(-(2**31), 2**31 - 1),
    ),
    max_size=12,
)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(sequence=st.integers(0, 2**32 - 1), decode_time=st.integers(0, 2**64 - 1), samples=SAMPLES)
def test_write_then_read_fragment(sequence: int, decode_time: int, samples: list[Sample]) -> None:
    payload = b"".join(bytes([i + 1]) * s.size for i, s in enumerate(samples))
    data = write_fragment(sequence, decode_time, samples, payload)
    assert read_fragment(data) == (decode_time, samples, payload)
    moof, mdat = parse_boxes(data)
    assert isinstance(moof, MovieFragmentBox) and isinstance(mdat, MediaDataBox)
    traf = moof.need(TrackFragmentBox)
    assert traf.need(TrackFragmentHeaderBox) == TrackFragmentHeaderBox(1, default_base_is_moof=True)
    trun = traf.need(TrackRun)
    assert trun.version == 1
    assert trun.data_offset == len(bytes(moof)) + 8  # the first byte of the mdat payload
    assert data[trun.data_offset :] == payload


def test_read_fragment_needs_moof_mdat_and_tfdt() -> None:
    data = write_fragment(1, 0, [Sample(1, 1, 0)], b"x")
    moof, mdat = parse_boxes(data)
    with pytest.raises(BoxError, match="lacks moof or mdat"):
        read_fragment(bytes(moof))
    assert isinstance(moof, MovieFragmentBox)
    traf = moof.need(TrackFragmentBox)
    traf.children = [c for c in traf.children if not isinstance(c, TrackFragmentDecodeTimeBox)]
    with pytest.raises(BoxError, match="missing tfdt") as info:
        read_fragment(bytes(moof) + bytes(mdat))
    assert info.value.path == "moof/traf"
