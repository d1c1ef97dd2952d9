"""FLV → CMAF: real encoder output cut into fragments at keyframes, every frame kept, audio aligned."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import pytest

from ingest.flv import FlvReceiver
from ingest.fmp4 import Event, FragmentReceived, TracksDeclared
from media import flv
from media.cmaf import read_fragment
from media.errors import MediaError, UnsupportedMedia
from media.model import Fragment
from tests.rtmp_client import Tag, read_flv

DATA = Path(__file__).parent.parent / "data" / "rtmp"


def run(tags: list[Tag], target: Fraction = Fraction(0), shift: int = 0) -> tuple[FlvReceiver, list[Event]]:
    receiver = FlvReceiver("_2", target, max_fragment_bytes=1 << 24)
    events: list[Event] = []
    for tag in tags:
        if tag.type_id == 9:
            events += receiver.video_message(tag.timestamp + shift, tag.body)
        elif tag.type_id == 8:
            events += receiver.audio_message(tag.timestamp + shift, tag.body)
    events += receiver.close()
    return receiver, events


def fragments(events: list[Event], track: str) -> list[Fragment]:
    return [e.fragment for e in events if isinstance(e, FragmentReceived) and e.fragment.track == track]


@pytest.mark.parametrize(
    ("name", "video_codec", "audio_codec", "audio_timescale"),
    [
        ("h264_aac.flv", "avc1.64000b", "mp4a.40.2", 48000),
        ("hevc_aac.flv", "hvc1.1.6.L30.90", "mp4a.40.2", 48000),
        ("av1_opus.flv", "av01.0.00M.08", "opus", 48000),
    ],
)
def test_captures_become_cmaf_tracks(
    name: str, video_codec: str, audio_codec: str, audio_timescale: int
) -> None:
    tags = read_flv(DATA / name)
    receiver, events = run(tags)
    declared = [t for e in events if isinstance(e, TracksDeclared) for t in e.tracks]
    assert sorted(t.name for t in declared) == ["audio_2", "video_2"]
    video, audio = receiver.video.track, receiver.audio.track
    assert video is not None and audio is not None
    assert (video.codec_string, video.width, video.height, video.timescale) == (video_codec, 160, 90, 90000)
    assert (audio.codec_string, audio.timescale) == (audio_codec, audio_timescale)
    # Each declaration precedes the track's first fragment.
    first = {
        name: next(
            i for i, e in enumerate(events) if isinstance(e, FragmentReceived) and e.fragment.track == name
        )
        for name in ("video_2", "audio_2")
    }
    for i, e in enumerate(events):
        if isinstance(e, TracksDeclared):
            assert i < first[e.tracks[0].name]

    frames = [flv.parse_video(t.body) for t in tags if t.type_id == 9]
    coded = [p for p in frames if isinstance(p, flv.VideoFrame)]
    vids = fragments(events, "video_2")
    assert len(vids) == 2  # one per GOP (keyframe every second)
    assert sum(len(f.samples) for f in vids) == len(coded)  # no frame lost
    for f in vids:
        assert f.keyframe and f.samples[0].is_sync
        assert sum(not s.is_sync for s in f.samples) == len(f.samples) - 1
        time, samples, payload = read_fragment(f.data)
        assert time == f.decode_time and len(payload) == sum(s.size for s in samples)
    for a, b in itertools.pairwise(vids):
        assert a.end_time == b.decode_time
    assert vids[1].decode_time == 90000 + vids[0].decode_time  # keyframes one second apart
    if video_codec.startswith("avc1"):
        assert any(s.composition_offset > 0 for f in vids for s in f.samples)

    auds = fragments(events, "audio_2")
    assert len(auds) >= 2
    for a, b in itertools.pairwise(auds):
        assert a.end_time == b.decode_time  # counted samples: no gaps, no overlaps
    # Audio fragments end where video fragments end (within one audio frame).
    boundary = Fraction(vids[1].decode_time, 90000)
    assert abs(Fraction(auds[1].decode_time, audio.timescale) - boundary) < Fraction(1, 40)


def test_minimum_fragment_length_groups_gops() -> None:
    _, events = run(read_flv(DATA / "h264_aac.flv"), target=Fraction(2))
    vids = fragments(events, "video_2")
    assert len(vids) == 1 and len(vids[0].samples) == 50


def test_frames_before_a_keyframe_or_config_are_dropped() -> None:
    tags = read_flv(DATA / "h264_aac.flv")
    video = [t for t in tags if t.type_id == 9]
    first_inter = next(t for t in video if t.body[0] >> 4 == 2)
    config = video[0]
    receiver = FlvReceiver("", Fraction(0), max_fragment_bytes=1 << 24)
    assert receiver.video_message(0, first_inter.body) == []  # no config yet
    receiver.video_message(0, config.body)
    assert receiver.video_message(40, first_inter.body) == []  # no keyframe yet
    assert receiver.video.dropped == 2


def test_audio_only_streams_cut_every_two_seconds() -> None:
    tags = [t for t in read_flv(DATA / "h264_aac.flv") if t.type_id == 8]
    _, events = run(tags)
    auds = fragments(events, "audio_2")
    assert [round(f.duration / 48000, 1) for f in auds[:-1]] == [2.0] * (len(auds) - 1)


def test_a_changed_decoder_configuration_is_refused() -> None:
    tags = read_flv(DATA / "h264_aac.flv")
    receiver, _ = run(tags)
    other = bytes(flv.VideoConfig("avc1", b"\x01\x64\x00\x1f\xff\xe0\x00"))
    with pytest.raises(UnsupportedMedia, match="decoder configuration changed"):
        receiver.video_message(5000, other)


def test_timestamps_across_the_32_bit_wrap_stay_continuous() -> None:
    # The receiver sees unwrapped times; a shift past 2**32 must change nothing but the times.
    _base_receiver, base = run(read_flv(DATA / "h264_aac.flv"))
    _, shifted = run(read_flv(DATA / "h264_aac.flv"), shift=(1 << 32) - 500)
    a, b = fragments(base, "video_2"), fragments(shifted, "video_2")
    assert [f.duration for f in a] == [f.duration for f in b]
    assert [f.samples for f in a] == [f.samples for f in b]
    assert b[0].decode_time == a[0].decode_time + ((1 << 32) - 500) * 90


def test_clamped_decode_times_are_spread_keeping_presentation_times() -> None:
    """GStreamer's flvmux writes the first B-frames' negative decode times as 0: three frames at
    DTS 0 (PTS 0, 120, 40 ms), then the stream goes on at 40 ms per frame."""
    tags = read_flv(DATA / "h264_aac.flv")
    video = [flv.parse_video(t.body) for t in tags if t.type_id == 9]
    config = next(p for p in video if isinstance(p, flv.VideoConfig))
    frames = [p for p in video if isinstance(p, flv.VideoFrame)][:25]
    receiver = FlvReceiver("", Fraction(0), max_fragment_bytes=1 << 24)
    receiver.video_message(0, bytes(config))
    stamps = [(0, 0), (0, 120), (0, 40)] + [(40 * i, 40) for i in range(1, 23)]
    for (dts, cts), frame in zip(stamps, frames, strict=False):
        receiver.video_message(dts, bytes(flv.VideoFrame("avc1", frame.keyframe, cts, frame.data)))
    fragment = fragments(receiver.close(), "video")[0]
    times = [fragment.decode_time]
    for sample in fragment.samples[:-1]:
        times.append(times[-1] + sample.duration)
    assert all(s.duration > 0 for s in fragment.samples)  # decode times strictly increase
    presentation = [t + s.composition_offset for t, s in zip(times, fragment.samples, strict=True)]
    assert presentation[:3] == [0, 120 * 90, 40 * 90]  # kept, whatever the decode times became
    assert times[:4] == [0, 1200, 2400, 3600]  # 0..40 ms shared by the three tied frames


def _h264() -> tuple[flv.VideoConfig, list[flv.VideoFrame], list[Tag]]:
    tags = read_flv(DATA / "h264_aac.flv")
    video = [flv.parse_video(t.body) for t in tags if t.type_id == 9]
    config = next(p for p in video if isinstance(p, flv.VideoConfig))
    return config, [p for p in video if isinstance(p, flv.VideoFrame)], [t for t in tags if t.type_id == 8]


def test_decode_times_that_never_advance_are_refused() -> None:
    config, frames, _ = _h264()
    receiver = FlvReceiver("", Fraction(0), max_fragment_bytes=1 << 24)
    receiver.video_message(0, bytes(config))
    with pytest.raises(MediaError, match="does not advance"):
        for frame in frames[:20]:
            receiver.video_message(1000, bytes(frame))
    with pytest.raises(MediaError, match="2000 ms back"):
        fresh = FlvReceiver("", Fraction(0), max_fragment_bytes=1 << 24)
        fresh.video_message(0, bytes(config))
        fresh.video_message(5000, bytes(frames[0]))
        fresh.video_message(3000, bytes(frames[1]))


def test_audio_does_not_wait_for_video_forever() -> None:
    """Video stops after its first keyframe: audio is still stored, at most MAX_AUDIO_LAG at a time."""
    config, frames, audio = _h264()
    receiver = FlvReceiver("", Fraction(0), max_fragment_bytes=1 << 24)
    receiver.video_message(0, bytes(config))
    receiver.video_message(0, bytes(frames[0]))
    events: list[Event] = []
    config_tag, frame_tag = audio[0], audio[1]
    events += receiver.audio_message(0, config_tag.body)
    for i in range(48000 * 25 // 1024):  # 25 s of AAC frames
        events += receiver.audio_message(i * 1024 * 1000 // 48000, frame_tag.body)
    stored = fragments(events, "audio")
    assert len(stored) == 2 and all(f.duration <= 10 * 48000 + 1024 for f in stored)
    assert receiver.audio.size < 100_000  # what is left waits, bounded
