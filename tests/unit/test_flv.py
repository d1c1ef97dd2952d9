"""FLV tag bodies (legacy and Enhanced RTMP), read from real encoder output and written back."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media import flv
from media.errors import MediaError, UnsupportedMedia
from tests.rtmp_client import read_flv

DATA = Path(__file__).parent.parent / "data" / "rtmp"

# Real encoder output (PyAV 18 / FFmpeg 8 FLV muxer; see tests/data/rtmp/README.md):
# (file, video codec, audio codec, video frames, keyframes, audio frames)
CAPTURES = [
    ("h264_aac.flv", "avc1", "mp4a", 50, 2, 95),
    ("hevc_aac.flv", "hvc1", "mp4a", 50, 2, 95),
    ("av1_opus.flv", "av01", "Opus", 50, 2, 101),
]


@pytest.mark.parametrize(("name", "video", "audio", "frames", "keys", "audio_frames"), CAPTURES)
def test_captures_parse_and_write_back(
    name: str, video: str, audio: str, frames: int, keys: int, audio_frames: int
) -> None:
    tags = read_flv(DATA / name)
    videos = [flv.parse_video(t.body) for t in tags if t.type_id == 9]
    audios = [flv.parse_audio(t.body) for t in tags if t.type_id == 8]
    configs = [p for p in videos if isinstance(p, flv.VideoConfig)]
    coded = [p for p in videos if isinstance(p, flv.VideoFrame)]
    assert [c.codec for c in configs] == [video]
    assert len(coded) == frames and sum(p.keyframe for p in coded) == keys and coded[0].keyframe
    assert all(p.codec == video for p in coded)
    assert [p.codec for p in audios if isinstance(p, flv.AudioConfig)] == [audio]
    assert len([p for p in audios if isinstance(p, flv.AudioFrame)]) == audio_frames
    if video == "avc1":
        assert any(p.composition_offset > 0 for p in coded)  # B-frames
    for packet in [*videos, *audios]:
        if packet is None:
            continue
        again = flv.parse_video(bytes(packet)) if isinstance(packet, flv.VideoPacket) else None
        if again is None:
            again = flv.parse_audio(bytes(packet))
        assert again == packet
    # The legacy AVC/AAC form is canonical: written back byte for byte.
    for tag in tags:
        parsed = (
            flv.parse_video(tag.body)
            if tag.type_id == 9
            else flv.parse_audio(tag.body)
            if tag.type_id == 8
            else None
        )
        if isinstance(parsed, (flv.VideoConfig, flv.VideoFrame)) and parsed.codec == "avc1":
            assert bytes(parsed) == tag.body
        if isinstance(parsed, (flv.AudioConfig, flv.AudioFrame)) and parsed.codec == "mp4a":
            assert bytes(parsed) == tag.body


# One table for the bodies written by hand: (name, body, packet or None).
PACKETS: list[tuple[str, bytes, flv.VideoPacket | flv.AudioPacket | None]] = [
    (
        "AVC keyframe, negative cts",
        bytes.fromhex("1701ffffd8") + b"nal",
        flv.VideoFrame("avc1", True, -40, b"nal"),
    ),
    ("AVC end of sequence", bytes.fromhex("1702000000"), flv.VideoEnd("avc1")),
    ("legacy HEVC (codec id 12)", bytes.fromhex("1c00000000") + b"hvcC", flv.VideoConfig("hvc1", b"hvcC")),
    ("video command frame", bytes.fromhex("5700"), None),
    (
        "E-RTMP HEVC CodedFramesX inter",
        bytes.fromhex("a3") + b"hvc1" + b"nal",
        flv.VideoFrame("hvc1", False, 0, b"nal"),
    ),
    (
        "E-RTMP HEVC CodedFrames cts",
        bytes.fromhex("91") + b"hvc1" + bytes.fromhex("000050") + b"n",
        flv.VideoFrame("hvc1", True, 80, b"n"),
    ),
    ("E-RTMP AV1 sequence start", bytes.fromhex("90") + b"av01" + b"av1C", flv.VideoConfig("av01", b"av1C")),
    ("E-RTMP sequence end", bytes.fromhex("92") + b"av01", flv.VideoEnd("av01")),
    ("E-RTMP metadata", bytes.fromhex("94") + b"hvc1" + b"amf", None),
    ("AAC config", bytes.fromhex("af00") + b"\x11\x90", flv.AudioConfig("mp4a", b"\x11\x90")),
    ("E-RTMP Opus frame", bytes.fromhex("91") + b"Opus" + b"\xfc", flv.AudioFrame("Opus", b"\xfc")),
    ("E-RTMP multichannel config", bytes.fromhex("94") + b"Opus" + b"\x00\x02", None),
    # ModEx (a 3-byte nanosecond offset) wrapping CodedFrames: skipped.
    (
        "E-RTMP HEVC ModEx",
        bytes.fromhex("97020003e801") + b"hvc1" + bytes(3) + b"n",
        flv.VideoFrame("hvc1", True, 0, b"n"),
    ),
    ("E-RTMP Opus ModEx", bytes.fromhex("97020003e801") + b"Opus" + b"\xfc", flv.AudioFrame("Opus", b"\xfc")),
]


@pytest.mark.parametrize(("name", "body", "packet"), PACKETS, ids=[p[0] for p in PACKETS])
def test_packet_table(name: str, body: bytes, packet: flv.VideoPacket | flv.AudioPacket | None) -> None:
    is_video = name.startswith(
        ("AVC", "legacy", "video", "E-RTMP HEVC", "E-RTMP AV1", "E-RTMP seq", "E-RTMP meta")
    )
    parsed = flv.parse_video(body) if is_video else flv.parse_audio(body)
    assert parsed == packet
    if packet is not None:
        written = bytes(packet)
        assert (flv.parse_video(written) if is_video else flv.parse_audio(written)) == packet


@pytest.mark.parametrize(
    ("body", "video", "error", "message"),
    [
        (b"", True, MediaError, "a video tag header needs 1 bytes"),
        (bytes.fromhex("1701"), True, MediaError, "an AVC video tag header needs 5 bytes"),
        (bytes.fromhex("1201"), True, UnsupportedMedia, "Sorenson H.263 is not supported"),
        (bytes.fromhex("1709000000"), True, MediaError, "unknown AVCPacketType 9"),
        (bytes.fromhex("91") + b"vp09", True, UnsupportedMedia, "'vp09' is not supported"),
        (bytes.fromhex("91") + b"xyz1", True, UnsupportedMedia, "unknown video FourCC 'xyz1'"),
        (bytes.fromhex("96") + b"hvc1", True, UnsupportedMedia, "multitrack video"),
        (bytes.fromhex("91") + b"hvc", True, MediaError, "needs 5 bytes"),
        (bytes.fromhex("2f01"), False, UnsupportedMedia, "MP3 is not supported"),
        (bytes.fromhex("af"), False, MediaError, "AAC audio tag header needs 2 bytes"),
        (bytes.fromhex("91") + b"fLaC", False, UnsupportedMedia, "'fLaC' is not supported"),
        (bytes.fromhex("95") + b"Opus", False, UnsupportedMedia, "multitrack audio"),
    ],
)
def test_bad_bodies(body: bytes, video: bool, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        flv.parse_video(body) if video else flv.parse_audio(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.booleans())
def test_garbage_raises_media_errors_only(body: bytes, video: bool) -> None:
    with contextlib.suppress(MediaError):
        flv.parse_video(body) if video else flv.parse_audio(body)
