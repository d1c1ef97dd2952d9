"""The pure packaging layer: segments, windows, lookups, resource names, and golden manifests.

Goldens live in tests/golden/; ``pytest --update-golden`` (or UPDATE_GOLDEN=1) rewrites them.
"""

from __future__ import annotations

import itertools
import os
import xml.etree.ElementTree as ET
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import m3u8
import pytest

from media import dash, hls, names, smooth
from media.boxes import AVCConfigurationBox
from media.model import Sample, Track, TrackKind
from media.names import Kind, Resource
from media.presentation import (
    Bounds,
    Lookup,
    Presentation,
    Segment,
    SegmentCutter,
    Source,
    TrackView,
    frame_rate,
    present,
)
from media.timeline import FLAG_DISCONTINUITY, FLAG_KEYFRAME, Timeline, TimelineEntry
from media.timerange import Control

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
ANCHOR_MS = 1_795_000_000_000  # 2026-11-18T...Z: media time zero of the synthetic stream

AVCC = AVCConfigurationBox(0x64, 0, 0x1F, 4, [bytes.fromhex("6764001facd9")], [bytes.fromhex("68ebecb2")])


def track(name: str, kind: TrackKind, timescale: int, **extra: object) -> Track:
    codec = {TrackKind.VIDEO: ("avc1", "avc1.64001f"), TrackKind.AUDIO: ("mp4a", "mp4a.40.2")}[kind]
    config = AVCC.payload() if kind is TrackKind.VIDEO else bytes.fromhex("1190")
    return Track(name, kind, codec[0], codec[1], timescale, b"", decoder_config=config, **extra)  # type: ignore[arg-type]


def entries(
    timescale: int, count: int, *, seconds: int = 2, gap_after: int | None = None
) -> list[TimelineEntry]:
    out = []
    time = 0
    for i in range(count):
        flags = FLAG_KEYFRAME
        if gap_after is not None and i == gap_after + 1:
            time += 4 * timescale  # the encoder was away for 4 s
            flags |= FLAG_DISCONTINUITY
        duration = seconds * timescale
        out.append(
            TimelineEntry(
                time, duration, 250_000 + 1000 * i, ANCHOR_MS + (time + duration) * 1000 // timescale, flags
            )
        )
        time += duration
    return out


VIDEO_HI = track("video=800000", TrackKind.VIDEO, 90000, bitrate=800000, width=1280, height=720)
VIDEO_LO = track("video=300000", TrackKind.VIDEO, 90000, bitrate=300000, width=640, height=360)
AUDIO = track(
    "audio-eng=96000", TrackKind.AUDIO, 48000, bitrate=96000, language="eng", sample_rate=48000, channels=2
)


def make_view(
    track: Track,
    entries: list[TimelineEntry],
    minimum: Fraction,
    window: int | None,
    frame_rate: Fraction | None = None,
) -> TrackView:
    """A view as the origin builds one: a live window, or everything (``window`` None)."""
    cutter = SegmentCutter(track.timescale, minimum)
    cutter.update(Timeline(entries))
    bounds = Bounds(window=None if window is None else window * track.timescale)
    return cutter.view(track, window is not None, bounds, frame_rate)


def cut_segments(entries: list[TimelineEntry], timescale: int, minimum: Fraction) -> list[Segment]:
    track = Track("t", TrackKind.VIDEO, "avc1", "avc1.64001f", timescale, b"")
    return make_view(track, entries, minimum, None).window


def presentation(live: bool, window: int = 10, control: Control | None = None) -> Presentation:
    sources = []
    for t, e in [
        (VIDEO_HI, entries(90000, 12, gap_after=5)),
        (VIDEO_LO, entries(90000, 12, gap_after=5)),
        (AUDIO, entries(48000, 12, gap_after=5)),
    ]:
        cutter = SegmentCutter(t.timescale, Fraction(0))
        cutter.update(Timeline(e))
        sources.append(Source(t, cutter, Fraction(25) if t.kind is TrackKind.VIDEO else None))
    return present("live/golden", sources, live=live, dvr_window=window, control=control or Control())


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"{path} is missing; run pytest --update-golden"
    assert text == path.read_text()


# -- segments and windows ---------------------------------------------------------------------


def test_minimum_length_groups_whole_fragments_and_gaps_split() -> None:
    timeline = entries(1000, 8, gap_after=4)
    segments = cut_segments(timeline, 1000, Fraction(5))
    assert [(s.time, s.duration, len(s.fragments)) for s in segments] == [
        (0, 6000, 3),
        (6000, 4000, 2),
        (14000, 6000, 3),
    ]
    assert [s.discontinuity for s in segments] == [False, False, True]
    assert [s.number for s in segments] == [0, 1, 2]


def test_segments_start_on_keyframe_fragments() -> None:
    timeline = [TimelineEntry(i * 1000, 1000, 1, 0, FLAG_KEYFRAME if i % 2 == 0 else 0) for i in range(6)]
    assert [len(s.fragments) for s in cut_segments(timeline, 1000, Fraction(0))] == [2, 2, 2]


def test_window_lookup_and_discontinuity_sequence() -> None:
    view = make_view(VIDEO_HI, entries(90000, 12, gap_after=5), Fraction(0), 10)
    assert [s.number for s in view.window] == [7, 8, 9, 10, 11]
    assert view.discontinuity_sequence == 1  # the gap before segment 6 has left the window
    first = view.window[0]
    assert view.find(first.time) == (Lookup.FOUND, first)
    assert view.find(0)[0] is Lookup.BEFORE_WINDOW
    assert view.find(first.time + 1)[0] is Lookup.IN_GAP
    assert view.find(view.window[-1].end)[0] is Lookup.AFTER_EDGE
    assert view.target_duration == 2


def test_every_track_places_its_segments_on_one_wall_clock() -> None:
    p = presentation(live=False)
    for view in p.views:
        assert view.utc_ms(view.window[0]) == ANCHOR_MS
        assert view.utc_ms(view.window[6]) == ANCHOR_MS + 16_000  # after the 4 s gap
    (before, after) = p.periods()  # one per run, each at its first segment's UTC time
    assert [period.number for period in (before, after)] == [0, 1]
    assert before.utc == Fraction(ANCHOR_MS, 1000)
    assert after.utc == Fraction(ANCHOR_MS + 16_000, 1000)
    counts = {name: len(window) for name, window in after.windows.items()}
    assert counts == {v.track.name: len(v.window) - 6 for v in p.views}


def shifted(timeline: list[TimelineEntry], ticks: int, timescale: int) -> list[TimelineEntry]:
    """The same fragments ``ticks`` later on the media timeline and on the wall clock."""
    ms = ticks * 1000 // timescale
    return [replace(e, decode_time=e.decode_time + ticks, wallclock_ms=e.wallclock_ms + ms) for e in timeline]


@pytest.mark.parametrize("live", [True, False], ids=["live", "on-demand"])
def test_a_period_starts_where_every_track_has_a_segment(live: bool) -> None:
    """The video of each run starts 21 ms after its audio (as ffmpeg publishes over RTMP), and the
    audio loses a fragment inside the second run: each Period starts at the video's first segment,
    so every Representation has a segment at the Period's start (its first ``S@t`` at or before
    ``presentationTimeOffset``): dash.js, finding none there, seeks ahead, out of the Period
    playing (tests/e2e/test_restart_playback.py). The audio's own gap does not move the start."""
    audio = entries(48000, 12, gap_after=5)
    audio = [*audio[:9], replace(audio[10], flags=audio[10].flags | FLAG_DISCONTINUITY), audio[11]]
    sources = []
    for t, e in [(VIDEO_HI, shifted(entries(90000, 12, gap_after=5), 1890, 90000)), (AUDIO, audio)]:
        cutter = SegmentCutter(t.timescale, Fraction(0))
        cutter.update(Timeline(e))
        sources.append(Source(t, cutter, Fraction(25) if t.kind is TrackKind.VIDEO else None))
    p = present("live/offset", sources, live=live, dvr_window=60, control=Control())
    periods = p.periods()
    assert [(q.number, q.start) for q in periods] == [(0, Fraction(21, 1000)), (1, Fraction(16021, 1000))]
    assert [len(q.windows[AUDIO.name]) for q in periods] == [6, 5]
    root = ET.fromstring(dash.mpd(p, "offset", "http://origin.example/time"))
    ns = {"d": dash.NS}
    starts = [q.get("start") for q in root.findall("d:Period", ns)]
    if live:  # on the wall clock
        assert starts == ["PT1795000000.021S", "PT1795000016.021S"]
    else:  # back to back
        assert starts == ["PT0.000S", "PT12.000S"]
    for period in root.findall("d:Period", ns):
        for template in period.findall(".//d:SegmentTemplate", ns):
            first = template.find("d:SegmentTimeline/d:S", ns)
            assert first is not None
            t, d = int(first.get("t", "")), int(first.get("d", ""))
            offset = int(template.get("presentationTimeOffset", ""))
            assert t <= offset < t + d, (period.get("id"), ET.tostring(template, encoding="unicode"))


@pytest.mark.parametrize(
    ("video", "audio", "live", "expected"),
    [
        (7, 7, True, [(6, 6), (1, 1)]),
        # The new run's video is stored first: its Period waits for the audio.
        (7, 6, True, [(6, 6)]),
        # Its audio first: the audio waits for the video's run, out of Period 0.
        (6, 7, True, [(6, 6)]),
        # Video alone for 6 s, longer than the 4 s (two target durations) a Period waits for its
        # tracks: published without audio; the same for audio alone, in the Period playing.
        (9, 6, True, [(6, 6), (3, 0)]),
        (6, 9, True, [(6, 9)]),
        # On demand everything is there for good.
        (7, 6, False, [(6, 6), (1, 0)]),
    ],
)
def test_a_new_period_is_published_with_all_its_tracks(
    video: int, audio: int, live: bool, expected: list[tuple[int, int]]
) -> None:
    """The golden stream's restart (after 6 of 12 fragments, 4 s away) when only the first ``video``
    and ``audio`` fragments of each track are stored: dash.js builds a Period's streams from the
    first MPD listing it, so a Period listed before its audio plays without audio, unable to get
    past the gap before it (tests/e2e/test_restart_playback.py). ``expected``: each Period's video
    and audio segments."""
    sources = []
    for t, count in [(VIDEO_HI, video), (AUDIO, audio)]:
        cutter = SegmentCutter(t.timescale, Fraction(0))
        cutter.update(Timeline(entries(t.timescale, 12, gap_after=5)[:count]))
        sources.append(Source(t, cutter, Fraction(25) if t.kind is TrackKind.VIDEO else None))
    p = present("live/restart", sources, live=live, dvr_window=60, control=Control())
    periods = p.periods()
    assert [(len(q.windows.get(VIDEO_HI.name, [])), len(q.windows.get(AUDIO.name, []))) for q in periods] == (
        expected
    )
    mpd = ET.fromstring(dash.mpd(p, "restart", "http://origin.example/time"))
    assert len(mpd.findall(f"{{{dash.NS}}}Period")) == len(expected)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("ch.m3u8", Resource(Kind.HLS_MASTER, "ch")),
        ("ch-video=800000.m3u8", Resource(Kind.HLS_MEDIA, "ch", "video=800000")),
        ("my-show-audio-eng=96000.m3u8", Resource(Kind.HLS_MEDIA, "my-show", "audio-eng=96000")),
        ("ch-video=800000.mp4", Resource(Kind.INIT, "ch", "video=800000")),
        ("ch-video=800000-180000.ts", Resource(Kind.TS, "ch", "video=800000", 180000)),
        ("a-b-audio-eng=96000-96000.m4s", Resource(Kind.M4S, "a-b", "audio-eng=96000", 96000)),
        ("ch-video=800000-0.dash", Resource(Kind.DASH_SEGMENT, "ch", "video=800000", 0)),
        ("ch.mpd", Resource(Kind.MPD, "ch")),
        ("Manifest", Resource(Kind.SMOOTH_MANIFEST)),
        (
            "QualityLevels(800000)/Fragments(video=180000)",
            Resource(Kind.SMOOTH_FRAGMENT, time=180000, bitrate=800000, name="video"),
        ),
        ("ch-video=800000-x.ts", None),
        ("ch-unknown-0.ts", None),
        ("ch-video=800000.png", None),
        ("sub/ch.m3u8", None),
    ],
)
def test_resource_names_round_trip(path: str, expected: Resource | None) -> None:
    tracks = [VIDEO_HI.name, VIDEO_LO.name, AUDIO.name]
    assert names.parse(path, tracks) == expected
    if expected is not None and expected.kind in (Kind.TS, Kind.M4S, Kind.DASH_SEGMENT):
        assert names.segment(expected.stem, expected.track, expected.time, expected.kind) == path


# -- renderers ----------------------------------------------------------------------------------


def test_hls_master_golden() -> None:
    text = hls.master(presentation(live=True), "golden")
    golden("live-master.m3u8", text)
    playlist = m3u8.loads(text)
    assert [p.stream_info.resolution for p in playlist.playlists] == [(1280, 720), (640, 360)]
    assert playlist.media[0].language == "eng" and playlist.media[0].channels == "2"


def test_hls_media_golden() -> None:
    p = presentation(live=True)
    view = p.view(VIDEO_HI.name)
    assert view is not None
    text = hls.media(p, view, "golden", fmp4=False)
    golden("live-video.m3u8", text)
    playlist = m3u8.loads(text)
    assert playlist.media_sequence == 7 and playlist.discontinuity_sequence == 1 and not playlist.is_endlist
    vod_p = presentation(live=False)
    vod_view = vod_p.view(VIDEO_HI.name)
    assert vod_view is not None
    ended = hls.media(vod_p, vod_view, "golden", fmp4=True)
    golden("vod-video-fmp4.m3u8", ended)
    vod = m3u8.loads(ended)
    assert vod.is_endlist and vod.segment_map and len(vod.segments) == 12
    assert vod.segments[6].discontinuity and vod.segments[6].program_date_time is not None


def test_dash_golden() -> None:
    live = dash.mpd(presentation(live=True), "golden", "http://origin.example/time")
    golden("live.mpd", live)
    root = ET.fromstring(live)
    assert root.get("type") == "dynamic" and root.get("timeShiftBufferDepth") == "PT10.000S"
    static = dash.mpd(presentation(live=False), "golden", "http://origin.example/time")
    golden("vod.mpd", static)
    ns = {"d": dash.NS}
    runs = ET.fromstring(static).findall(".//d:Representation[@id='video=800000']//d:S", ns)
    assert [(s.get("t"), s.get("r")) for s in runs] == [("0", "5"), (str(16 * 90000), "5")]


def test_smooth_golden() -> None:
    text = smooth.manifest(presentation(live=True))
    golden("live.ismc", text)
    root = ET.fromstring(text)
    assert root.get("LookAheadFragmentCount") == root.get("LookaheadCount") == "2"
    video = root.find("StreamIndex[@Name='video']")
    assert video is not None and video.get("QualityLevels") == "2"
    assert video.find("QualityLevel").get("CodecPrivateData") == "000000016764001FACD90000000168EBECB2"  # type: ignore[union-attr]


def _bunched() -> tuple[list[int], list[int]]:
    """IBBP at 25 fps whose first three decode times were clamped to 0, 1 and 2 ticks."""
    order = [0] + [n for k in range(1, 46, 3) for n in (k + 2, k, k + 1)]  # frames 0..45
    presentation = [n * 3600 for n in order]
    decode = [0, 1, 2] + [(i - 2) * 3600 for i in range(3, len(order))]
    durations = [b - a for a, b in itertools.pairwise(decode)] + [3600]
    return durations, [p - d for p, d in zip(presentation, decode, strict=True)]


@pytest.mark.parametrize(
    ("durations", "offsets", "timescale", "expected"),
    [
        ([3600] * 50, [0] * 50, 90000, Fraction(25)),
        # Millisecond-rounded 29.97 fps (RTMP): 33/34 ms steps still read as 30000/1001.
        (
            [(round((i + 1) * 1001 / 30) - round(i * 1001 / 30)) * 90 for i in range(60)],
            [0] * 60,
            90000,
            Fraction(30000, 1001),
        ),
        # Bunched decode times (flvmux clamps negative ones): the presentation times tell.
        (*_bunched(), 90000, Fraction(25)),
        ([1000] * 10, [0] * 10, 12345, Fraction(12345, 1000).limit_denominator(1001)),
        ([3600], [0], 90000, Fraction(25)),
        ([], [], 90000, None),
    ],
)
def test_frame_rate(
    durations: list[int], offsets: list[int], timescale: int, expected: Fraction | None
) -> None:
    samples = [Sample(d, 10, 0, o) for d, o in zip(durations, offsets, strict=True)]
    assert frame_rate(samples, timescale) == expected


@pytest.mark.parametrize(
    ("count", "delay"), [(1, "PT1.000S"), (2, "PT3.000S"), (3, "PT5.000S"), (12, "PT6.000S")]
)
def test_suggested_presentation_delay_stays_within_a_young_stream(count: int, delay: str) -> None:
    """Three target durations (6 s) behind the edge once the window holds that much; before, what
    is listed less half a segment, so a player never starts at the window's very first segment."""
    sources = []
    for t in (VIDEO_HI, AUDIO):
        cutter = SegmentCutter(t.timescale, Fraction(0))
        cutter.update(Timeline(entries(t.timescale, count)))
        sources.append(Source(t, cutter))
    p = present("live/young", sources, live=True, dvr_window=60, control=Control())
    root = ET.fromstring(dash.mpd(p, "young", "http://origin.example/time"))
    assert root.get("suggestedPresentationDelay") == delay
