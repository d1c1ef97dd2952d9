"""ingest.fmp4.Fmp4Receiver: Smooth (PIFF, tfxd, live server manifest) and CMAF ingest, sans-IO."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import MissingHeader
from ingest.fmp4 import (
    Event,
    Fmp4Receiver,
    FragmentReceived,
    StreamEnded,
    TracksDeclared,
    stream_stem,
)
from media.boxes import (
    SYNC_SAMPLE_FLAGS,
    Box,
    EventMessageBox,
    LiveServerManifestBox,
    MediaDataBox,
    MovieFragmentBox,
    MovieFragmentHeaderBox,
    ProducerReferenceTimeBox,
    RawBox,
    TfxdBox,
    TrackFragmentBox,
    TrackFragmentDecodeTimeBox,
    TrackFragmentHeaderBox,
    TrackRun,
    TrunEntry,
    parse_box,
    parse_boxes,
)
from media.cmaf import read_fragment
from media.errors import BoxError, BoxTooLarge, MediaError, TruncatedBox, UnsupportedMedia
from media.model import Fragment, Sample, TrackKind
from tests.unit.conftest import Captures
from tests.unit.streams import (
    AVC_SPEC,
    TrackSpec,
    aac_entry,
    avc_entry,
    cmaf_header,
    cmaf_traf,
    moof_mdat,
    samples_payload,
    smooth_header,
    smooth_traf,
    styp,
    trun,
)

MAX_BOX = 1 << 20
FAST = settings(max_examples=50, deadline=None, derandomize=True)


def receive(
    stream: str, data: bytes, *, pieces: list[int] | None = None, known_header: bytes | None = None
) -> list[Event]:
    """Feed ``data`` (whole, or cut at ``pieces``) and close, returning every event."""
    receiver = Fmp4Receiver(stream, MAX_BOX, known_header=known_header)
    events: list[Event] = []
    start = 0
    for cut in [*sorted({p % (len(data) + 1) for p in pieces or []}), len(data)]:
        events += receiver.feed(data[start:cut])
        start = cut
    return events + receiver.close()


def fragments(events: list[Event]) -> list[Fragment]:
    return [e.fragment for e in events if isinstance(e, FragmentReceived)]


def declared(events: list[Event]) -> TracksDeclared:
    found = [e for e in events if isinstance(e, TracksDeclared)]
    assert len(found) == 1
    return found[0]


def signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def original_trafs(data: bytes) -> list[tuple[TrackFragmentBox, bytes]]:
    """Each (traf, mdat payload) of a single-traf-per-moof capture, read independently of the receiver."""
    boxes = parse_boxes(data)
    out = []
    for moof, mdat in itertools.pairwise(boxes):
        if isinstance(moof, MovieFragmentBox):
            assert isinstance(mdat, MediaDataBox)
            (traf,) = moof.all(TrackFragmentBox)
            out.append((traf, mdat.data))
    return out


# ---------------------------------------------------------------------------------------------
# Smooth capture (ffmpeg ismv: live server manifest, tfxd timing, no tfdt)


@pytest.fixture(scope="module")
def ismv_events(captures: Captures) -> list[Event]:
    return receive("Streams(out.ismv)", captures.ismv)


def test_smooth_capture_declares_tracks_named_from_the_manifest(
    captures: Captures, ismv_events: list[Event]
) -> None:
    event = ismv_events[0]
    assert isinstance(event, TracksDeclared)
    tracks = event.tracks
    assert [t.name for t in tracks] == ["video=400000", "video=200000", "audio=64000"]
    assert [t.bitrate for t in tracks] == [400000, 200000, 64000]
    assert [t.kind for t in tracks] == [TrackKind.VIDEO, TrackKind.VIDEO, TrackKind.AUDIO]
    assert all(t.timescale == 10_000_000 for t in tracks)
    assert tracks[0].codec_string.startswith("avc1.6400")
    assert tracks[2].codec_string == "mp4a.40.2"
    assert (tracks[0].width, tracks[0].height) == (160, 90)
    # The header is ftyp + live server manifest + moov exactly as sent.
    boxes = parse_boxes(captures.ismv)
    assert event.header == b"".join(bytes(b) for b in boxes[:3])
    assert isinstance(boxes[1], LiveServerManifestBox)
    # Each track gets its own single-track CMAF header.
    for track in tracks:
        assert [b.name for b in parse_boxes(track.header)] == ["ftyp", "moov"]


def test_smooth_capture_fragments_carry_tfdt_and_tfxd_times(
    captures: Captures, ismv_events: list[Event]
) -> None:
    frags = fragments(ismv_events)
    originals = original_trafs(captures.ismv)
    assert len(frags) == len(originals) == 6
    names = {1: "video=400000", 2: "video=200000", 3: "audio=64000"}
    for fragment, (traf, payload) in zip(frags, originals, strict=True):
        assert fragment.track == names[traf.need(TrackFragmentHeaderBox).track_id]
        decode_time, samples, data = read_fragment(fragment.data)
        assert decode_time == fragment.decode_time
        assert samples == list(fragment.samples)
        assert fragment.duration == sum(s.duration for s in samples)
        moof = parse_boxes(fragment.data)[0]
        (out_traf,) = moof.all(TrackFragmentBox)
        assert out_traf.first(TfxdBox) is None
        assert out_traf.need(TrackFragmentHeaderBox).track_id == 1
        tfxd_time = signed64(traf.need(TfxdBox).absolute_time)
        if tfxd_time >= 0:
            assert fragment.decode_time == tfxd_time
            assert data == payload
            assert len(samples) == len(traf.need(TrackRun).samples)
        else:  # AAC priming before zero: the samples before zero are dropped
            dropped = len(traf.need(TrackRun).samples) - len(samples)
            assert dropped >= 1
            assert fragment.decode_time >= 0
            assert data == payload[len(payload) - len(data) :]
    assert [f.keyframe for f in frags if f.track.startswith("video")] == [True] * 4
    # Fragments of one track follow each other without a gap.
    for name in names.values():
        mine = [f for f in frags if f.track == name]
        assert mine[0].end_time == mine[1].decode_time


def test_smooth_capture_ends_with_mfra(ismv_events: list[Event]) -> None:
    assert ismv_events[-1] == StreamEnded("mfra")
    assert sum(isinstance(e, StreamEnded) for e in ismv_events) == 1


@FAST
@given(cuts=st.lists(st.integers(0, 1 << 20), max_size=40))
def test_smooth_capture_in_random_pieces_gives_the_same_events(
    captures: Captures, ismv_events: list[Event], cuts: list[int]
) -> None:
    assert receive("Streams(out.ismv)", captures.ismv, pieces=cuts) == ismv_events


def test_smooth_body_end_ends_the_stream(captures: Captures) -> None:
    boxes = parse_boxes(captures.ismv)
    body = b"".join(bytes(b) for b in boxes[:-1])  # without the mfra
    receiver = Fmp4Receiver("Streams(out.ismv)", MAX_BOX)
    receiver.feed(body)
    assert receiver.is_smooth
    assert receiver.close() == [StreamEnded("end of body")]


# ---------------------------------------------------------------------------------------------
# CMAF capture (one track per stream, tfdt timing)


def test_cmaf_capture_single_track_named_from_stream_stem(captures: Captures) -> None:
    events = receive("video.cmfv", captures.cmaf_video)
    (track,) = declared(events).tracks
    assert track.name == "video"
    assert track.timescale == 12800
    frags = fragments(events)
    assert [f.decode_time for f in frags] == [0, 12800]
    assert all(f.track == "video" and f.keyframe for f in frags)
    assert events[-1] == StreamEnded("mfra")
    for fragment in frags:
        assert read_fragment(fragment.data)[0] == fragment.decode_time


def test_cmaf_body_end_does_not_end_the_stream(captures: Captures) -> None:
    boxes = parse_boxes(captures.cmaf_video)
    receiver = Fmp4Receiver("video.cmfv", MAX_BOX)
    receiver.feed(b"".join(bytes(b) for b in boxes[:-1]))
    assert not receiver.is_smooth
    assert receiver.close() == []
    assert not receiver.ended


def test_known_header_lets_a_per_segment_request_parse(captures: Captures) -> None:
    first = receive("video.cmfv", captures.cmaf_video)
    header = declared(first).header
    boxes = parse_boxes(captures.cmaf_video)
    second_segment = bytes(boxes[4]) + bytes(boxes[5])  # ftyp moov moof mdat [moof mdat] mfra
    events = receive("video.cmfv", second_segment, known_header=header)
    assert events == [FragmentReceived(fragments(first)[1])]


def test_known_smooth_header_keeps_manifest_names(captures: Captures) -> None:
    first = receive("Streams(out.ismv)", captures.ismv)
    header = declared(first).header
    boxes = parse_boxes(captures.ismv)
    segment = bytes(boxes[3]) + bytes(boxes[4])
    receiver = Fmp4Receiver("Streams(out.ismv)", MAX_BOX, known_header=header)
    assert [t.name for t in receiver.tracks] == ["video=400000", "video=200000", "audio=64000"]
    events = receiver.feed(segment)
    assert fragments(events) == fragments(first)[:1]
    assert receiver.close() == [StreamEnded("end of body")]


@pytest.mark.parametrize(
    ("stream", "stem"),
    [
        ("video.cmfv", "video"),
        ("video-720p.cmfv", "video-720p"),
        ("audio.eng.cmfa", "audio.eng"),
        ("text.cmft", "text"),
        ("seg.m4s", "seg"),
        ("Streams(x)", "Streams(x)"),
        ("video.mkv", "video.mkv"),
        (".cmfv", ".cmfv"),
        ("video", "video"),
    ],
)
def test_stream_stem(stream: str, stem: str) -> None:
    assert stream_stem(stream) == stem


# ---------------------------------------------------------------------------------------------
# Synthetic Smooth streams

AUDIO_10M = TrackSpec(1, TrackKind.AUDIO, 10_000_000, aac_entry())
LSM_AUDIO = [("audio", 1, 64000)]


def smooth_audio(time: int, durations: list[int], sizes: list[int], *, tfxd_version: int = 1) -> bytes:
    return smooth_header([AUDIO_10M], LSM_AUDIO) + moof_mdat(
        [smooth_traf(1, time, durations, sizes, tfxd_version=tfxd_version)], [samples_payload(sizes)]
    )


def test_negative_tfxd_time_drops_samples_before_zero() -> None:
    sizes = [3, 4, 5]
    events = receive("Streams(audio)", smooth_audio(2**64 - 213333, [213333] * 3, sizes))
    (fragment,) = fragments(events)
    assert fragment.track == "audio=64000"
    assert fragment.decode_time == 0
    assert fragment.duration == 2 * 213333
    assert [s.size for s in fragment.samples] == [4, 5]
    assert read_fragment(fragment.data) == (0, list(fragment.samples), samples_payload(sizes)[3:])


def test_negative_time_keeps_the_sample_that_crosses_zero() -> None:
    events = receive("Streams(audio)", smooth_audio(2**64 - 100_000, [213333] * 2, [3, 4]))
    (fragment,) = fragments(events)
    assert fragment.decode_time == 113333
    assert [s.size for s in fragment.samples] == [4]


def test_fragment_entirely_before_zero_is_dropped() -> None:
    events = receive("Streams(audio)", smooth_audio(2**64 - 500_000, [213333] * 2, [3, 4]))
    assert fragments(events) == []
    assert events[-1] == StreamEnded("end of body")


def test_tfxd_v0_is_unsigned_32_bit() -> None:
    events = receive("Streams(audio)", smooth_audio(2**32 - 5, [10, 10], [1, 1], tfxd_version=0))
    assert [f.decode_time for f in fragments(events)] == [2**32 - 5]


def test_tfdt_takes_precedence_over_tfxd() -> None:
    traf = smooth_traf(1, 5_000, [10], [2])
    traf.insert(1, TrackFragmentDecodeTimeBox(7_000, 1))
    data = smooth_header([AUDIO_10M], LSM_AUDIO) + moof_mdat([traf], [b"ab"])
    assert [f.decode_time for f in fragments(receive("s", data))] == [7_000]


def test_traf_without_tfdt_or_tfxd_is_refused() -> None:
    traf: list[Box] = [TrackFragmentHeaderBox(1, default_base_is_moof=False), trun([10], [2])]
    data = smooth_header([AUDIO_10M], LSM_AUDIO) + moof_mdat([traf], [b"ab"])
    with pytest.raises(BoxError, match="neither tfdt nor tfxd") as info:
        receive("s", data)
    assert info.value.path == "moof/traf[0]"


def test_sample_data_outside_the_mdat_is_refused() -> None:
    header = smooth_header([AUDIO_10M], LSM_AUDIO)
    traf = smooth_traf(1, 0, [10, 10], [2, 2])
    fragment = moof_mdat([traf], [b"abc"])  # 4 bytes announced, 3 present
    with pytest.raises(BoxError, match="lies outside the mdat") as info:
        receive("s", header + fragment)
    assert info.value.path == "moof/traf[0]/trun[0]"
    moof_size = len(fragment) - 8 - 3
    assert info.value.offset == len(header) + moof_size + 8 + 2  # where sample 1 starts


def test_data_offset_before_the_mdat_is_refused() -> None:
    header = smooth_header([AUDIO_10M], LSM_AUDIO)
    traf = smooth_traf(1, 0, [10], [2])
    fragment = bytearray(moof_mdat([traf], [b"ab"]))
    moof, _ = parse_box(bytes(fragment))
    assert isinstance(moof, MovieFragmentBox)
    moof.need(TrackFragmentBox).need(TrackRun).data_offset = 0  # points at the moof itself
    with pytest.raises(BoxError, match="outside the mdat") as info:
        receive("s", header + bytes(moof) + bytes(MediaDataBox(b"ab")))
    assert info.value.offset == len(header)


def test_traf_for_an_undeclared_track_is_refused() -> None:
    data = smooth_header([AUDIO_10M], LSM_AUDIO) + moof_mdat([smooth_traf(5, 0, [10], [2])], [b"ab"])
    with pytest.raises(BoxError, match="track 5") as info:
        receive("s", data)
    assert info.value.path == "moof/traf[0]/tfhd"


def test_tracks_sharing_a_name_are_refused() -> None:
    specs = [
        TrackSpec(1, TrackKind.VIDEO, 10_000_000, avc_entry()),
        TrackSpec(2, TrackKind.VIDEO, 10_000_000, avc_entry()),
    ]
    data = smooth_header(specs, [("video", 1, 300), ("video", 2, 300)])
    with pytest.raises(BoxError, match="share a name") as info:
        receive("s", data)
    moov_offset = len(data) - len(bytes(parse_boxes(data)[-1]))
    assert (info.value.path, info.value.offset) == ("moov", moov_offset)


def test_malformed_live_server_manifest_is_refused() -> None:
    data = bytes(LiveServerManifestBox("<smil><body>"))
    with pytest.raises(BoxError, match="not well-formed") as info:
        receive("s", data)
    assert info.value.path == "lsm "


def test_live_server_manifest_with_non_numeric_track_id_is_refused() -> None:
    xml = (
        '<smil><body><switch><video systemBitrate="1"><param name="trackID" value="one"/></video>'
        "</switch></body></smil>"
    )
    with pytest.raises(BoxError, match="non-numeric"):
        receive("s", bytes(LiveServerManifestBox(xml)))


def test_tracks_missing_from_the_manifest_are_named_from_the_stream() -> None:
    specs = [AUDIO_10M, TrackSpec(2, TrackKind.VIDEO, 10_000_000, avc_entry())]
    events = receive("Streams(feed)", smooth_header(specs, LSM_AUDIO))
    assert [t.name for t in declared(events).tracks] == ["audio=64000", "Streams(feed)_2"]


# ---------------------------------------------------------------------------------------------
# Synthetic CMAF streams


def cmaf_stream(*fragments_: bytes, spec: TrackSpec = AVC_SPEC) -> bytes:
    return cmaf_header(spec) + b"".join(fragments_)


def one_fragment(time: int, sizes: list[int], *, sequence: int = 1) -> bytes:
    return moof_mdat(
        [cmaf_traf(1, time, [3000] * len(sizes), sizes)], [samples_payload(sizes)], sequence=sequence
    )


def test_lmsg_segment_ends_the_stream_with_the_body() -> None:
    # The last segment may carry several CMAF chunks: all are kept, and the body's end ends it.
    data = cmaf_stream(
        styp(),
        one_fragment(0, [5]),
        styp(b"lmsg"),
        one_fragment(3000, [4], sequence=2),
        one_fragment(7000, [1], sequence=3),
    )
    receiver = Fmp4Receiver("video.cmfv", MAX_BOX)
    events = receiver.feed(data)
    assert [type(e) for e in events] == [TracksDeclared, FragmentReceived, FragmentReceived, FragmentReceived]
    assert not receiver.ended
    assert receiver.close() == [StreamEnded("lmsg")]
    assert receiver.ended


def test_segment_after_the_last_one_is_refused_after_what_came_before() -> None:
    data = cmaf_stream(styp(b"lmsg"), one_fragment(0, [5]), styp(), one_fragment(3000, [4], sequence=2))
    receiver = Fmp4Receiver("video.cmfv", MAX_BOX)
    events = receiver.feed(data)
    assert [type(e) for e in events] == [TracksDeclared, FragmentReceived]
    with pytest.raises(BoxError, match="segment after the last one") as info:
        receiver.close()
    assert info.value.path == "styp"


def test_styp_without_lmsg_does_not_end_the_stream() -> None:
    events = receive("video.cmfv", cmaf_stream(styp(b"msdh"), one_fragment(0, [5])))
    assert not any(isinstance(e, StreamEnded) for e in events)


def test_mfra_ends_the_stream_and_nothing_may_follow() -> None:
    mfra = bytes(RawBox(b"mfra", bytes(RawBox(b"mfro", bytes(8)))))
    data = cmaf_stream(one_fragment(0, [5]), mfra)
    receiver = Fmp4Receiver("video.cmfv", MAX_BOX)
    assert receiver.feed(data)[-1] == StreamEnded("mfra")
    with pytest.raises(BoxError, match="after the end"):
        receiver.feed(bytes(RawBox(b"free")))


def test_media_before_a_header_raises_missing_header() -> None:
    segment = styp() + one_fragment(0, [5])
    with pytest.raises(MissingHeader) as info:
        receive("video.cmfv", segment)
    assert isinstance(info.value, MediaError)
    assert info.value.path == "moof"
    assert info.value.offset == len(styp())
    assert "video.cmfv" in info.value.message


def test_mdat_without_moof_is_refused() -> None:
    with pytest.raises(BoxError, match="mdat without") as info:
        receive("video.cmfv", cmaf_stream(bytes(MediaDataBox(b"x"))))
    assert info.value.offset == len(cmaf_header(AVC_SPEC))


def test_moof_must_be_followed_by_its_mdat() -> None:
    fragment = one_fragment(0, [5])
    moof = fragment[: -len(bytes(MediaDataBox(samples_payload([5]))))]
    with pytest.raises(BoxError, match="not followed by its mdat") as info:
        receive("video.cmfv", cmaf_stream(moof, bytes(RawBox(b"free"))))
    assert info.value.path == "free"
    receiver = Fmp4Receiver("video.cmfv", MAX_BOX)
    receiver.feed(cmaf_stream(moof))
    with pytest.raises(BoxError, match="without its mdat"):
        receiver.close()


def test_body_cut_inside_a_box_raises_truncated_box() -> None:
    data = cmaf_stream(one_fragment(0, [5]))
    receiver = Fmp4Receiver("video.cmfv", MAX_BOX)
    receiver.feed(data[:-2])
    with pytest.raises(TruncatedBox) as info:
        receiver.close()
    assert info.value.path == "mdat"
    assert info.value.offset == len(data) - len(bytes(MediaDataBox(samples_payload([5]))))


def test_oversized_box_is_refused_from_its_header() -> None:
    receiver = Fmp4Receiver("video.cmfv", 1000)
    receiver.feed(cmaf_header(AVC_SPEC))
    with pytest.raises(BoxTooLarge) as info:
        receiver.feed((5000).to_bytes(4, "big") + b"mdat")
    assert (info.value.path, info.value.offset) == ("mdat", len(cmaf_header(AVC_SPEC)))


def test_input_that_is_not_iso_bmff_is_refused() -> None:
    with pytest.raises(MediaError):
        receive("video.cmfv", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def test_skipped_top_level_boxes_are_ignored() -> None:
    extras = (
        bytes(RawBox(b"free", b"x"))
        + bytes(EventMessageBox("urn:x", "1"))
        + bytes(ProducerReferenceTimeBox())
        + bytes(RawBox(b"sidx", bytes(24)))
    )
    plain = receive("video.cmfv", cmaf_stream(one_fragment(0, [5])))
    noisy = receive("video.cmfv", cmaf_header(AVC_SPEC) + extras + one_fragment(0, [5]))
    assert fragments(noisy) == fragments(plain)


def test_multi_track_cmaf_names_tracks_by_id_and_splits_trafs() -> None:
    audio = TrackSpec(2, TrackKind.AUDIO, 48000, aac_entry())
    header = smooth_header([AVC_SPEC, audio], None)  # no manifest: names from the stream
    data = header + moof_mdat(
        [cmaf_traf(1, 9000, [3000, 3000], [5, 6]), cmaf_traf(2, 4800, [1024], [7])],
        [samples_payload([5, 6]), samples_payload([7], 50)],
    )
    events = receive("mux.mp4", data)
    assert [t.name for t in declared(events).tracks] == ["mux_1", "mux_2"]
    video, sound = fragments(events)
    assert (video.track, video.decode_time, video.duration) == ("mux_1", 9000, 6000)
    assert (sound.track, sound.decode_time, sound.duration) == ("mux_2", 4800, 1024)
    assert read_fragment(video.data)[2] == samples_payload([5, 6])
    assert read_fragment(sound.data)[2] == samples_payload([7], 50)


def test_second_traf_without_offsets_continues_after_the_first() -> None:
    """14496-12 §8.8.7.1: without base-data-offset or default-base-is-moof, a traf's data starts where
    the previous traf's data ended; a trun without data_offset continues the previous run."""
    audio = TrackSpec(2, TrackKind.AUDIO, 48000, aac_entry())
    header = smooth_header([AVC_SPEC, audio], None)
    first: list[Box] = [
        TrackFragmentHeaderBox(1, default_base_is_moof=False),
        TrackFragmentDecodeTimeBox(0),
        trun([10, 10], [2, 3]),
    ]
    continued = trun([20], [4])
    continued.flags &= ~0x01
    continued.data_offset = None
    second: list[Box] = [
        TrackFragmentHeaderBox(2, default_base_is_moof=False),
        TrackFragmentDecodeTimeBox(0),
        continued,
    ]
    data = header + moof_mdat([first, second], [samples_payload([2, 3]), samples_payload([4], 9)])
    video, sound = fragments(receive("mux.mp4", data))
    assert read_fragment(video.data)[2] == samples_payload([2, 3])
    assert read_fragment(sound.data)[2] == samples_payload([4], 9)


def test_base_data_offset_is_absolute() -> None:
    """tfhd base_data_offset is a stream offset; trun data_offset is relative to it."""
    header = cmaf_header(AVC_SPEC)
    payload = b"skip" + samples_payload([3])
    run = trun([10], [3])
    run.data_offset = 4
    tfhd = TrackFragmentHeaderBox(1, base_data_offset=0, default_base_is_moof=False)
    moof = MovieFragmentBox(
        [MovieFragmentHeaderBox(1), TrackFragmentBox([tfhd, TrackFragmentDecodeTimeBox(0), run])]
    )
    tfhd.base_data_offset = len(header) + len(bytes(moof)) + 8  # first byte of the mdat payload
    data = header + bytes(moof) + bytes(MediaDataBox(payload))
    (fragment,) = fragments(receive("video.cmfv", data))
    assert read_fragment(fragment.data)[2] == samples_payload([3])


def test_sample_fields_default_from_tfhd_then_trex() -> None:
    run = TrackRun(flags=0x01 | 0x200, samples=[TrunEntry(size=2), TrunEntry(size=3)], version=0)
    traf: list[Box] = [
        TrackFragmentHeaderBox(1, default_sample_duration=1500, default_sample_flags=0x01010000),
        TrackFragmentDecodeTimeBox(0),
        run,
    ]
    (fragment,) = fragments(receive("video.cmfv", cmaf_stream(moof_mdat([traf], [samples_payload([2, 3])]))))
    assert fragment.samples == (Sample(1500, 2, 0x01010000), Sample(1500, 3, 0x01010000))
    assert not fragment.keyframe

    run = TrackRun(
        flags=0x01 | 0x04 | 0x200, samples=[TrunEntry(size=2)], first_sample_flags=SYNC_SAMPLE_FLAGS
    )
    traf = [TrackFragmentHeaderBox(1), TrackFragmentDecodeTimeBox(0), run]
    (fragment,) = fragments(receive("video.cmfv", cmaf_stream(moof_mdat([traf], [b"ab"]))))
    assert fragment.samples == (Sample(0, 2, SYNC_SAMPLE_FLAGS),)  # trex defaults: duration 0
    assert fragment.keyframe


# ---------------------------------------------------------------------------------------------
# Unsupported codecs


@pytest.mark.parametrize(
    ("kind", "entry", "path"),
    [
        (TrackKind.VIDEO, RawBox(b"xyz1", bytes(78)), "moov/trak[0]/mdia/minf/stbl/stsd/xyz1"),
        (TrackKind.AUDIO, aac_entry(object_type=0x6B), "moov/trak[0]/mdia/minf/stbl/stsd/mp4a/esds"),
    ],
    ids=["xyz1", "mp4a-mp3"],
)
def test_unknown_codec_names_the_box_path(kind: TrackKind, entry: Box, path: str) -> None:
    data = cmaf_header(TrackSpec(1, kind, 1000, entry))
    with pytest.raises(UnsupportedMedia) as info:
        receive("video.cmfv", data)
    assert info.value.path == path


def _traf_without_timing() -> bytes:
    traf: list[Box] = [TrackFragmentHeaderBox(1, default_base_is_moof=False), trun([10], [2])]
    return smooth_header([AUDIO_10M], LSM_AUDIO) + moof_mdat([traf], [b"ab"])


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_traf_without_timing(), id="traf-without-timing"),
        pytest.param(cmaf_header(TrackSpec(1, TrackKind.VIDEO, 1000, RawBox(b"xyz1", bytes(78)))), id="xyz1"),
        pytest.param(cmaf_header(TrackSpec(1, TrackKind.AUDIO, 1000, aac_entry(object_type=0x6B))), id="mp3"),
    ],
)
def test_errors_after_parsing_carry_an_offset(data: bytes) -> None:
    with pytest.raises(MediaError) as info:
        receive("video.cmfv", data)
    assert info.value.offset is not None


def test_many_fieldless_truns_are_refused_before_parsing() -> None:
    # 688 bytes announcing 40 x 65536 samples: refused from the trun headers, nothing allocated.
    trun = (16).to_bytes(4, "big") + b"trun" + bytes(4) + (65536).to_bytes(4, "big")
    tfhd = (16).to_bytes(4, "big") + b"tfhd" + (0x020000).to_bytes(4, "big") + (1).to_bytes(4, "big")
    traf = (8 + 16 + 16 * 40).to_bytes(4, "big") + b"traf" + tfhd + trun * 40
    mfhd = (16).to_bytes(4, "big") + b"mfhd" + bytes(4) + (1).to_bytes(4, "big")
    moof = (8 + 16 + len(traf)).to_bytes(4, "big") + b"moof" + mfhd + traf
    header = cmaf_stream()
    with pytest.raises(BoxError, match="declares 2621440 samples") as info:
        receive("video.cmfv", header + moof)
    assert info.value.offset == len(header)


def test_whole_fragment_before_zero_is_dropped_quickly() -> None:
    # A decode time just below 2**64 reads as negative: every sample lies before zero.
    data = cmaf_stream(one_fragment(2**64 - 10**12, [1] * 1000))
    events = receive("video.cmfv", data)
    assert not any(isinstance(e, FragmentReceived) for e in events)


def test_negative_composition_offset_in_trun_v0_is_read_signed() -> None:
    traf: list[Box] = [
        TrackFragmentHeaderBox(1, default_base_is_moof=True),
        TrackFragmentDecodeTimeBox(0),
        TrackRun(
            flags=0x01 | 0x100 | 0x200 | 0x800,
            version=0,
            samples=[TrunEntry(duration=3000, size=2, composition_offset=(1 << 32) - 3000)],
        ),
    ]
    data = cmaf_stream() + moof_mdat([traf], [b"ab"])
    fragment = next(e.fragment for e in receive("video.cmfv", data) if isinstance(e, FragmentReceived))
    assert fragment.samples[0].composition_offset == -3000
