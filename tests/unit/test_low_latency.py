"""Low latency without I/O: ingest cutting parts (CMAF chunks joined or split, RTMP frames), the
LL-HLS playlist (parts, hint, skip, reports) and the blocking-reload rule, LL-DASH's announced
segment and MPD attributes."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest

from ingest.flv import FlvReceiver
from ingest.fmp4 import FragmentReceived
from ingest.parts import PartCutter
from media import dash, hls
from media.boxes import NON_SYNC_SAMPLE_FLAGS, SYNC_SAMPLE_FLAGS, ProducerReferenceTimeBox, parse_box
from media.cmaf import prft_box, read_fragment, write_fragment
from media.model import Fragment, Sample, TrackKind
from media.presentation import (
    LL_SEGMENT,
    Presentation,
    SegmentCutter,
    Source,
    announced,
    present,
    track_minimum,
    with_edge,
)
from media.timeline import FLAG_KEYFRAME, Timeline, TimelineEntry
from media.timerange import Control
from origin.playout import _reached
from tests.rtmp_client import read_flv
from tests.unit.test_packaging import AUDIO, VIDEO_HI, track

DATA = Path(__file__).parent.parent / "data" / "rtmp"
ANCHOR_MS = 1_795_000_000_000
VIDEO = track("video", TrackKind.VIDEO, 90000)
FRAME = 3000  # 30 fps at 90 kHz
PART = Fraction(34, 100)


def frames(start: int, count: int, *, key_every: int = 30, first: int = 0) -> Fragment:
    """``count`` video frames from frame number ``first`` as one fragment, sizes 100 + n."""
    samples = tuple(
        Sample(FRAME, 100 + n, SYNC_SAMPLE_FLAGS if n % key_every == 0 else NON_SYNC_SAMPLE_FLAGS)
        for n in range(first, first + count)
    )
    payload = b"".join(bytes([n % 256]) * (100 + n) for n in range(first, first + count))
    return Fragment("video", start, FRAME * count, samples, write_fragment(1, start, samples, payload))


def test_one_chunk_per_frame_is_joined_into_parts_of_the_target() -> None:
    cutter = PartCutter(VIDEO, PART)
    parts: list[Fragment] = []
    for n in range(60):
        parts += cutter.push(frames(n * FRAME, 1, first=n), 0)
    parts += cutter.flush(0)
    # 10 frames (0.333 s) fit in 0.34 s; each part is stored as its 10th frame arrives.
    assert [len(p.samples) for p in parts] == [10] * 6
    assert all(p.duration <= PART * 90000 for p in parts)
    assert [p.keyframe for p in parts] == [True, False, False, True, False, False]
    # The samples and their bytes are the encoder's, in order, framed anew.
    time = 0
    for part in parts:
        decode_time, samples, payload = read_fragment(part.data)
        assert decode_time == part.decode_time == time
        assert samples == list(part.samples)
        first = time // FRAME
        assert payload == b"".join(bytes([n % 256]) * (100 + n) for n in range(first, first + len(samples)))
        time += part.duration


def test_a_part_is_out_when_its_last_frame_arrives() -> None:
    cutter = PartCutter(VIDEO, PART)
    out = [len(cutter.push(frames(n * FRAME, 1, first=n), 0)) for n in range(10)]
    assert out == [0] * 9 + [1]


def test_long_fragments_are_split_and_a_keyframe_starts_a_part() -> None:
    cutter = PartCutter(VIDEO, PART)
    parts = cutter.push(frames(0, 25, key_every=12), 0) + cutter.flush(0)  # keyframes at 0, 12, 24
    assert [len(p.samples) for p in parts] == [10, 2, 10, 2, 1]
    assert [p.keyframe for p in parts] == [True, False, True, False, True]


def test_a_gap_ends_the_held_part() -> None:
    cutter = PartCutter(VIDEO, PART)
    assert cutter.push(frames(0, 4), 0) == []
    (held,) = cutter.push(frames(100 * FRAME, 4, first=100), 0)
    assert (held.decode_time, len(held.samples)) == (0, 4)
    (last,) = cutter.flush(0)
    assert last.decode_time == 100 * FRAME and cutter.flush(0) == []


def test_samples_stored_already_are_left_out() -> None:
    """An encoder re-sending what it sent before a reconnect, or a redundant one behind another:
    the parts go on from the stored end, on the stored parts' boundaries."""
    cutter = PartCutter(VIDEO, PART)
    stored = 25 * FRAME  # 2.5 parts stored: frames 0-24
    parts = cutter.push(frames(0, 40), stored) + cutter.flush(stored)
    assert [(p.decode_time // FRAME, len(p.samples)) for p in parts] == [(25, 5), (30, 10)]
    # Samples stored while held (another encoder got there first) are dropped at the flush.
    cutter = PartCutter(VIDEO, PART)
    assert cutter.push(frames(30 * FRAME, 4, first=30), 0) == []
    (rest,) = cutter.flush(32 * FRAME)
    assert (rest.decode_time, len(rest.samples)) == (32 * FRAME, 2)


def test_rounded_chunk_times_do_not_split_parts() -> None:
    cutter = PartCutter(VIDEO, PART)
    parts: list[Fragment] = []
    for n in range(20):
        parts += cutter.push(frames(n * FRAME + (n % 2), 1, first=n), 0)  # a tick off every other
    assert [len(p.samples) for p in parts] == [10, 10]


def test_audio_parts_never_exceed_the_target() -> None:
    audio = track("audio", TrackKind.AUDIO, 48000)
    cutter = PartCutter(audio, PART)
    samples = tuple(Sample(1024, 10, SYNC_SAMPLE_FLAGS) for _ in range(100))
    fragment = Fragment("audio", 0, 1024 * 100, samples, write_fragment(1, 0, samples, bytes(1000)))
    parts = cutter.push(fragment, 0) + cutter.flush(0)
    assert [len(p.samples) for p in parts[:-1]] == [15] * 6  # 15 frames of 21.3 ms: 0.32 s
    assert sum(len(p.samples) for p in parts) == 100


def test_rtmp_parts() -> None:
    tags = read_flv(DATA / "h264_aac.flv")
    receiver = FlvReceiver("", Fraction(2), max_fragment_bytes=1 << 24, part=PART)
    events = []
    for tag in tags:
        if tag.type_id == 9:
            events += receiver.video_message(tag.timestamp, tag.body)
        elif tag.type_id == 8:
            events += receiver.audio_message(tag.timestamp, tag.body)
    events += receiver.close()
    stored = [e.fragment for e in events if isinstance(e, FragmentReceived)]
    video = [f for f in stored if f.track == "video"]
    audio = [f for f in stored if f.track == "audio"]
    assert video and audio
    assert all(f.duration <= PART * 90000 for f in video)
    assert all(f.duration <= PART * 48000 for f in audio)
    # Every keyframe starts a part (the minimum fragment length does not apply to parts).
    keyframes = sum(s.is_sync for f in video for s in f.samples)
    assert sum(f.keyframe for f in video) == keyframes
    assert all(b.decode_time == a.end_time for a, b in itertools.pairwise(video))


def test_rtmp_parts_keep_to_the_target_when_frames_are_dropped() -> None:
    tags = read_flv(DATA / "h264_aac.flv")
    receiver = FlvReceiver("", Fraction(0), max_fragment_bytes=1 << 24, part=PART)
    events = []
    video_tags = 0
    for tag in tags:
        if tag.type_id == 9:
            video_tags += 1
            if video_tags % 7 == 0 and tag.body[0] >> 4 != 1:
                continue  # every 7th frame lost (not keyframes)
            events += receiver.video_message(tag.timestamp, tag.body)
    events += receiver.close()
    video = [e.fragment for e in events if isinstance(e, FragmentReceived)]
    assert video and all(f.duration <= PART * 90000 for f in video[:-1])


# -- presentation and renderers -------------------------------------------------------------------


def parts_timeline(count: int, *, per_segment: int = 3, timescale: int = 90000) -> Timeline:
    """``count`` parts of a third of a second; every ``per_segment``-th starts with a keyframe."""
    out, time = [], 0
    for i in range(count):
        duration = timescale // 3
        flags = FLAG_KEYFRAME if i % per_segment == 0 else 0
        out.append(
            TimelineEntry(time, duration, 10_000, ANCHOR_MS + (time + duration) * 1000 // timescale, flags)
        )
        time += duration
    return Timeline(out)


def ll_presentation(video_parts: int, audio_parts: int, live: bool = True) -> Presentation:
    sources = []
    for t, timeline in (
        (VIDEO_HI, parts_timeline(video_parts)),
        (AUDIO, parts_timeline(audio_parts, per_segment=1, timescale=48000)),
    ):
        cutter = SegmentCutter(t.timescale, track_minimum(Fraction(0), t, True) or Fraction(0), parts=True)
        cutter.update(timeline)
        sources.append(Source(t, cutter))
    return present("live/ll", sources, live=live, dvr_window=30, control=Control())


def test_a_lone_keyframe_part_is_not_a_segment() -> None:
    """At the start of a stream the only part is a keyframe part: it is the segment in progress,
    not a published segment that the next part would take back."""
    cutter = SegmentCutter(90000, Fraction(0), parts=True)
    cutter.update(parts_timeline(1))
    assert list(cutter.segments(live=True)) == []
    cutter.update(parts_timeline(4))
    assert [s.duration for s in cutter.segments(live=True)] == [90000]
    assert [s.duration for s in cutter.segments(live=False)] == [90000, 30000]


def test_segment_in_progress_is_its_parts() -> None:
    p = ll_presentation(3 * 12 + 2, 3 * 12 + 2)
    video = p.view(VIDEO_HI.name)
    assert video is not None
    assert len(video.window) == 12 and len(video.parts) == 2
    assert video.edge() == (12, 1) and video.next_part == 38 * 30000
    audio = p.view(AUDIO.name)
    assert audio is not None and track_minimum(Fraction(0), AUDIO, True) == LL_SEGMENT
    assert all(s.duration >= 48000 for s in audio.window)  # a second at least, not one part each


def test_ll_hls_media_playlist() -> None:
    p = ll_presentation(3 * 30 + 2, 3 * 30 + 2)
    view = p.view(VIDEO_HI.name)
    assert view is not None
    ll = hls.LowLatency(PART, reports=(("ll-audio.m3u8", 31, 1),))
    text = hls.media(p, view, "ll", fmp4=True, low_latency=ll)
    lines = text.splitlines()
    assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=6,PART-HOLD-BACK=1.02" in lines
    assert "#EXT-X-PART-INF:PART-TARGET=0.34" in lines
    parts = [line for line in lines if line.startswith("#EXT-X-PART:")]
    # The last three target durations' segments (3 s: three segments) and the two parts in progress.
    assert len(parts) == 3 * 3 + 2
    assert parts[-1] == '#EXT-X-PART:DURATION=0.333,URI="ll-video=800000-2730000.part.m4s"'
    assert sum("INDEPENDENT=YES" in line for line in parts) == 4
    assert lines[-2] == '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="ll-video=800000-2760000.part.m4s"'
    assert lines[-1] == '#EXT-X-RENDITION-REPORT:URI="ll-audio.m3u8",LAST-MSN=31,LAST-PART=1'
    assert "#EXT-X-SKIP" not in text
    delta = hls.media(p, view, "ll", fmp4=True, low_latency=replace(ll, skip=True)).splitlines()
    assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=24" in delta  # 30 segments, the last 6 s kept
    assert sum(line.startswith("#EXTINF") for line in delta) == 6
    assert delta[delta.index("#EXT-X-SKIP:SKIPPED-SEGMENTS=24") - 1].startswith("#EXT-X-PART-INF")
    # Ended: a plain VOD playlist.
    ended = ll_presentation(3 * 30 + 2, 3 * 30 + 2, live=False)
    ended_view = ended.view(VIDEO_HI.name)
    assert ended_view is not None
    vod = hls.media(ended, ended_view, "ll", fmp4=True, low_latency=ll)
    assert "#EXT-X-PART" not in vod and "#EXT-X-ENDLIST" in vod and "SERVER-CONTROL" not in vod


@pytest.mark.parametrize(
    ("msn", "part", "expected"),
    [
        (11, None, True),  # a complete segment
        (12, None, False),  # the one in progress
        (12, 1, True),
        (12, 2, False),
        (11, 2, True),
        (11, 3, True),  # past segment 11's last part: segment 12's first (exists)
        (13, 0, False),
    ],
)
def test_blocking_request_is_answered_once_reached(msn: int, part: int | None, expected: bool) -> None:
    view = ll_presentation(3 * 12 + 2, 4).view(VIDEO_HI.name)
    assert view is not None and view.edge() == (12, 1)
    assert _reached(view, msn, part) is expected


def test_ll_dash_announces_the_segment_in_progress() -> None:
    p = ll_presentation(3 * 12 + 1, 3 * 12 + 1)
    view = p.view(VIDEO_HI.name)
    assert view is not None
    edge = announced(view)
    assert edge is not None and (edge.time, edge.duration, edge.number) == (12 * 90000, 90000, 12)
    shown = with_edge(p)
    text = dash.mpd(shown, "ll", "http://origin.example/time", low_latency=dash.LowLatency(PART))
    ns = {"d": dash.NS}
    root = ET.fromstring(text)
    assert root.get("suggestedPresentationDelay") == "PT1.530S"
    latency = root.find("d:ServiceDescription/d:Latency", ns)
    assert latency is not None and latency.get("target") == "1530"
    representation = root.find(".//d:Representation[@id='video=800000']", ns)
    assert representation is not None
    template = representation.find("d:SegmentTemplate", ns)
    assert template is not None
    assert (template.get("availabilityTimeOffset"), template.get("availabilityTimeComplete")) == (
        "0.660",
        "false",
    )
    (run,) = template.findall(".//d:S", ns)
    assert (run.get("t"), run.get("d"), run.get("r")) == (
        "0",
        "90000",
        "12",
    )  # 13 segments, the last in progress
    reference = representation.find("d:ProducerReferenceTime", ns)
    assert reference is not None and reference.get("presentationTime") == "0"
    assert list(representation).index(reference) < list(representation).index(template)


def test_prft_round_trip() -> None:
    data = prft_box(1_795_000_000_250, 12345)
    box, size = parse_box(data)
    assert size == len(data)
    assert isinstance(box, ProducerReferenceTimeBox) and box.media_time == 12345
    seconds, fraction = divmod(box.ntp_timestamp, 1 << 32)
    assert seconds - 2_208_988_800 == 1_795_000_000 and round(fraction * 1000 / (1 << 32)) == 250


def test_track_minimum_leaves_video_and_every_fragment_alone() -> None:
    assert track_minimum(Fraction(0), VIDEO, True) == Fraction(0)
    assert track_minimum(None, AUDIO, True) is None
    assert track_minimum(Fraction(0), AUDIO, False) == Fraction(0)
    assert track_minimum(Fraction(4), AUDIO, True) == Fraction(4)
