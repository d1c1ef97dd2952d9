"""What a manifest presents (media.presentation.present) over synthetic timelines: the DVR window
and its narrowing, time-shift, virtual sub-clips (VOD, start-over, still live), their errors, the
wall clock across gaps, a cost bounded by the window rather than the archive, and segment numbers
that survive an archive purge."""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from fractions import Fraction

import m3u8  # type: ignore[import-untyped]
import pytest

from media import dash, hls, presentation, smooth
from media.boxes import AVCConfigurationBox
from media.model import Track, TrackKind
from media.presentation import Presentation, Segment, SegmentCutter, Source, TrackView, present
from media.timeline import FLAG_DISCONTINUITY, FLAG_KEYFRAME, PurgeMark, Timeline, TimelineEntry
from media.timerange import Control, ControlError, Instant, iso_utc

START_S = 1_795_255_200  # 2026-11-21T10:00:00Z: the first fragment of the UTC-timed archives
HOUR = 3600
AVCC = AVCConfigurationBox(0x64, 0, 0x1F, 4, [bytes.fromhex("6764001facd9")], [bytes.fromhex("68ebecb2")])


def track(name: str, kind: TrackKind, timescale: int, **extra: int) -> Track:
    codec = ("avc1", "avc1.64001f") if kind is TrackKind.VIDEO else ("mp4a", "mp4a.40.2")
    config = AVCC.payload() if kind is TrackKind.VIDEO else bytes.fromhex("1190")
    return Track(name, kind, *codec, timescale, b"", decoder_config=config, **extra)  # type: ignore[arg-type]


VIDEO = track("video", TrackKind.VIDEO, 90000, bitrate=400000, width=320, height=180)
AUDIO = track("audio", TrackKind.AUDIO, 48000, bitrate=64000, sample_rate=48000, channels=2)


def utc_entries(
    timescale: int,
    count: int,
    *,
    start_s: int = START_S,
    seconds: int = 2,
    gaps: dict[int, int] | None = None,
) -> list[TimelineEntry]:
    """``count`` keyframe fragments of ``seconds`` each from UTC ``start_s``, timed as a UTC
    encoder sends them (decode time = epoch seconds x timescale); ``gaps`` maps a fragment index to
    the seconds missing before it."""
    out = []
    time = start_s * timescale
    for i in range(count):
        flags = FLAG_KEYFRAME
        if gaps and i in gaps:
            time += gaps[i] * timescale
            flags |= FLAG_DISCONTINUITY
        duration = seconds * timescale
        out.append(TimelineEntry(time, duration, 1000 + i % 7, (time + duration) * 1000 // timescale, flags))
        time += duration
    return out


def run_entries(
    timescale: int, runs: Sequence[tuple[int, int, int]], *, seconds: int = 2
) -> list[TimelineEntry]:
    """Fragments on the ingest clock: per run (first decode second, fragments, anchor UTC ms), each
    run after the first following a break."""
    out = []
    for n, (first_s, count, anchor_ms) in enumerate(runs):
        for i in range(count):
            time = (first_s + i * seconds) * timescale
            duration = seconds * timescale
            flags = FLAG_KEYFRAME | (FLAG_DISCONTINUITY if n and not i else 0)
            out.append(
                TimelineEntry(time, duration, 500, anchor_ms + (time + duration) * 1000 // timescale, flags)
            )
    return out


def source(t: Track, entries: list[TimelineEntry], minimum: Fraction = Fraction(0)) -> Source:
    cutter = SegmentCutter(t.timescale, minimum)
    cutter.update(Timeline(entries))
    return Source(t, cutter, Fraction(25) if t.kind is TrackKind.VIDEO else None)


def av(count: int, **kwargs: object) -> list[Source]:
    return [
        source(VIDEO, utc_entries(90000, count, **kwargs)),  # type: ignore[arg-type]
        source(AUDIO, utc_entries(48000, count, **kwargs)),  # type: ignore[arg-type]
    ]


def show(
    sources: Sequence[Source], control: Control | None = None, *, live: bool = True, dvr_window: int = 60
) -> Presentation:
    return present("live/dvr", sources, live=live, dvr_window=dvr_window, control=control or Control())


def video(p: Presentation) -> TrackView:
    view = p.view("video")
    assert view is not None
    return view


def span_s(view: TrackView) -> tuple[float, float]:
    """Media seconds from the window's first segment start to its last segment end (exact here:
    whole seconds below 2**53)."""
    scale = view.track.timescale
    return view.window[0].time / scale, view.window[-1].end / scale


def seconds(value: float) -> Instant:
    return Instant(media=Fraction(value))


def utc(value_s: float) -> Instant:
    return Instant(utc_ms=round(value_s * 1000))


# -- the DVR window ---------------------------------------------------------------------------


def test_point_window_and_narrowing_never_widening() -> None:
    sources = av(HOUR // 2)  # one hour of 2 s fragments
    edge = START_S + HOUR
    for control, expected in [
        (Control(), 60),
        (Control(dvr_window=20), 20),
        (Control(dvr_window=59), 59),
        (Control(dvr_window=600), 60),  # never wider than the point's
        (Control(dvr_window=0), 6),  # never below three target durations (RFC 8216bis §6.2.2)
    ]:
        p = show(sources, control)
        assert p.live and not p.start_over
        assert p.dvr_window == expected  # DASH timeShiftBufferDepth, Smooth DVRWindowLength
        for view in p.views:
            first, last = span_s(view)
            assert last == edge
            # Every segment ending inside the window is listed, and nothing before it.
            assert edge - expected - 2 < first <= edge - expected, (control, view.track.name)
    dvr_60 = show(sources)
    assert [s.number for s in video(dvr_60).window] == list(range(HOUR // 2 - 30, HOUR // 2))


def test_window_of_a_day_and_more_renders_as_runs() -> None:
    day = 86400
    sources = av(day // 2 + 600)  # 24 h 20 min of 2 s fragments
    p = show(sources, dvr_window=day)
    view = video(p)
    assert len(view.window) == day // 2 and p.dvr_window == day
    mpd = ET.fromstring(dash.mpd(p, "x", "http://origin/time"))
    assert mpd.get("timeShiftBufferDepth") == "PT86400.000S"
    runs = mpd.findall(f".//{{{dash.NS}}}Representation[@id='video']//{{{dash.NS}}}S")
    assert [(s.get("t"), s.get("d"), s.get("r")) for s in runs] == [
        (str(view.window[0].time), "180000", str(day // 2 - 1))
    ]
    manifest = ET.fromstring(smooth.manifest(p))
    assert manifest.get("DVRWindowLength") == str(day * 10_000_000)
    chunks = manifest.findall("StreamIndex[@Name='video']/c")
    assert [(c.get("d"), c.get("r")) for c in chunks] == [("180000", str(day // 2))]
    playlist = m3u8.loads(hls.media(p, view, "x", fmp4=False))
    assert len(playlist.segments) == day // 2 and playlist.media_sequence == 600


def test_presentation_before_any_fragment_is_empty() -> None:
    sources = [source(VIDEO, []), source(AUDIO, [])]
    p = show(sources, Control(vbegin=seconds(10)))
    assert p.live and all(not v.window for v in p.views) and p.updated_ms == 0


# -- time-shift -------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [1, 2, 60, 61, 1800, HOUR - 7])
def test_time_shift_moves_the_live_edge_back(shift: int) -> None:
    sources = av(HOUR // 2)
    edge = START_S + HOUR
    plain = show(sources)
    shifted = show(sources, Control(time_shift=shift))
    assert shifted.live and not shifted.start_over and shifted.dvr_window == 60
    for view in shifted.views:
        first, last = span_s(view)
        # The last segment is the one holding the shifted edge: it ends at most one segment after.
        assert edge - shift <= last < edge - shift + 2
        assert last - first == min(60, last - START_S)
        assert view.utc_ms(view.window[-1]) == (int(last) - 2) * 1000
    # An ordinary live window, just older; its PDT is N seconds behind (rounded to a segment).
    behind = video(plain).utc_ms(video(plain).window[-1]) - video(shifted).utc_ms(video(shifted).window[-1])
    assert shift - 2 < behind / 1000 <= shift
    narrowed = show(sources, Control(dvr_window=10, time_shift=shift))
    assert span_s(video(narrowed))[1] == span_s(video(shifted))[1]
    assert len(video(narrowed).window) == min(5, len(video(shifted).window))


@pytest.mark.parametrize("shift", [HOUR, HOUR + 1, 10 * 86400])
def test_time_shift_beyond_the_archive_is_refused(shift: int) -> None:
    with pytest.raises(ControlError) as caught:
        show(av(HOUR // 2), Control(time_shift=shift))
    assert caught.value.parameter == "time_shift"
    assert "3600 s stored" in str(caught.value)


# -- virtual sub-clips ------------------------------------------------------------------------


def test_closed_clip_in_the_past_is_vod_and_both_time_forms_agree() -> None:
    sources = av(HOUR // 2)
    by_seconds = show(sources, Control(vbegin=seconds(START_S + 100), vend=seconds(START_S + 160)))
    by_utc = show(
        sources,
        Control(vbegin=Instant(utc_ms=(START_S + 100) * 1000), vend=Instant(utc_ms=(START_S + 160) * 1000)),
    )
    for p in (by_seconds, by_utc):
        assert not p.live and not p.start_over
        for view in p.views:
            assert span_s(view) == (START_S + 100, START_S + 160)
            assert len(view.window) == 30
    assert [v.window for v in by_seconds.views] == [v.window for v in by_utc.views]
    view = video(by_utc)
    playlist = m3u8.loads(hls.media(by_utc, view, "x", fmp4=False))
    assert playlist.is_endlist and playlist.playlist_type == "vod"
    assert playlist.program_date_time is not None
    assert iso_utc(view.utc_ms(view.window[0])) == "2026-11-21T10:01:40.000Z"
    assert ET.fromstring(dash.mpd(by_utc, "x", "http://o/time")).get("type") == "static"
    assert ET.fromstring(smooth.manifest(by_utc)).get("IsLive") == "FALSE"


def test_clip_bounds_inside_segments_take_the_segments_holding_them() -> None:
    sources = av(HOUR // 2)
    p = show(sources, Control(vbegin=seconds(START_S + 101), vend=seconds(START_S + 161)))
    assert span_s(video(p)) == (START_S + 100, START_S + 162)
    fractional = show(sources, Control(vbegin=seconds(START_S + 100.5), vend=seconds(START_S + 100.75)))
    assert span_s(video(fractional)) == (START_S + 100, START_S + 102)


def test_open_vbegin_is_a_live_start_over() -> None:
    sources = av(HOUR // 2)
    edge = START_S + HOUR
    p = show(sources, Control(vbegin=utc(edge - 300)))
    assert p.live and p.start_over
    assert p.dvr_window == 301  # what the window spans, for DASH and Smooth
    for view in p.views:
        assert span_s(view) == (edge - 300, edge)
    playlist = m3u8.loads(hls.media(p, video(p), "x", fmp4=False))
    assert playlist.playlist_type == "event" and not playlist.is_endlist
    assert "#EXT-X-START:TIME-OFFSET=0" in hls.media(p, video(p), "x", fmp4=False)
    # Unlike a sliding window, the start stays as the archive grows.
    grown = av(HOUR // 2 + 100)
    later = show(grown, Control(vbegin=utc(edge - 300)))
    assert span_s(video(later)) == (edge - 300, edge + 200)


def test_vend_in_the_future_is_still_live() -> None:
    sources = av(HOUR // 2)
    edge = START_S + HOUR
    p = show(sources, Control(vbegin=seconds(edge - 100), vend=seconds(edge + 100)))
    assert p.live
    assert span_s(video(p)) == (edge - 100, edge)
    assert ET.fromstring(dash.mpd(p, "x", "http://o/time")).get("type") == "dynamic"
    # The same clip is VOD once the point stopped.
    assert not show(sources, Control(vbegin=seconds(edge - 100), vend=seconds(edge + 100)), live=False).live


def test_only_vend_clips_from_the_start_of_the_archive() -> None:
    p = show(av(HOUR // 2), Control(vend=seconds(START_S + 10)))
    assert not p.live and span_s(video(p)) == (START_S, START_S + 10)


def test_clip_starting_before_the_archive_starts_with_it() -> None:
    p = show(av(HOUR // 2), Control(vbegin=seconds(START_S - 500), vend=seconds(START_S + 10)))
    assert span_s(video(p)) == (START_S, START_S + 10)


def test_a_stopped_point_presents_its_whole_archive_as_vod() -> None:
    sources = av(HOUR // 2, gaps={900: 40})
    p = show(sources, live=False)
    assert not p.live
    view = video(p)
    assert len(view.window) == HOUR // 2 and view.window[0].number == 0
    assert [s.number for s in view.window if s.discontinuity] == [900]
    # A narrower window asked of a VOD presentation changes nothing: it has no live edge.
    assert [v.window for v in show(sources, Control(dvr_window=10), live=False).views] == [
        v.window for v in p.views
    ]


@pytest.mark.parametrize(
    ("control", "parameter"),
    [
        (Control(vbegin=seconds(START_S + HOUR)), "vbegin"),  # at the end of the archive
        (Control(vbegin=seconds(START_S + HOUR + 1)), "vbegin"),
        (Control(vbegin=utc(START_S + 2 * HOUR)), "vbegin"),
        (Control(vbegin=seconds(10), vend=seconds(20)), "vend"),  # long before the archive
        (Control(vend=seconds(START_S)), "vend"),  # at its start
        (Control(vend=utc(START_S - 1)), "vend"),
        # Mixed forms are compared on the timeline.
        (Control(vbegin=utc(START_S + 100), vend=seconds(START_S + 100)), "vend"),
        (Control(vbegin=seconds(START_S + 100), vend=utc(START_S + 50)), "vend"),
    ],
)
def test_clip_outside_the_archive_is_refused(control: Control, parameter: str) -> None:
    with pytest.raises(ControlError) as caught:
        show(av(HOUR // 2), control)
    assert caught.value.parameter == parameter
    # The message says where the archive is, in both forms.
    assert "2026-11-2" in str(caught.value)


# -- the wall clock ---------------------------------------------------------------------------


def test_utc_vbegin_maps_through_the_run_it_falls_in() -> None:
    """An encoder without UTC timestamps: two runs on the ingest clock. The encoder was away for
    10 minutes of wall time, but its clock moved on by only 20 s; an ISO time selects by the wall
    clock of the run it falls in, for every track (timescales differ)."""
    anchor1 = START_S * 1000
    gap_wall_s = 600
    run1, run2 = (0, 50, anchor1), (120, 50, anchor1 + (gap_wall_s - 20) * 1000)
    sources = [
        source(VIDEO, run_entries(90000, [run1, run2])),
        source(AUDIO, run_entries(48000, [run1, run2])),
    ]
    # Run 2 starts at media 120 s, at wall clock START + 100 + 600.
    second_run_utc = START_S + 100 + gap_wall_s
    whole = video(show(sources, live=False))
    assert whole.utc_ms(whole.window[50]) == second_run_utc * 1000
    p = show(sources, Control(vbegin=utc(second_run_utc + 10), vend=utc(second_run_utc + 30)))
    for view in p.views:
        assert span_s(view) == (130, 150)
        assert view.utc_ms(view.window[0]) == (second_run_utc + 10) * 1000
    assert video(p).discontinuity_sequence == 1  # the break before run 2 is behind the clip
    # In the first run, the first run's clock.
    early = show(sources, Control(vbegin=utc(START_S + 10), vend=utc(START_S + 20)))
    assert span_s(video(early)) == (10, 20)
    # A clip over the break keeps it, with PROGRAM-DATE-TIME on both sides.
    over = show(sources, Control(vbegin=utc(START_S + 90), vend=utc(second_run_utc + 4)))
    assert span_s(video(over)) == (90, 124)
    text = hls.media(over, video(over), "x", fmp4=False)
    playlist = m3u8.loads(text)
    assert [s.discontinuity for s in playlist.segments].count(True) == 1
    assert text.count("#EXT-X-PROGRAM-DATE-TIME:") == 2
    assert f"#EXT-X-PROGRAM-DATE-TIME:{iso_utc(second_run_utc * 1000)}" in text


def test_utc_inside_a_break_of_the_wall_clock_selects_what_follows() -> None:
    """A time in the 10 minutes the encoder was away: a clip starting there starts with the next
    run, one ending there ends with the first run. (Mapped on the first run's clock instead, it
    would land 100+ s into the second run, long after the requested time.)"""
    anchor1 = START_S * 1000
    run1, run2 = (0, 50, anchor1), (120, 50, anchor1 + 580 * 1000)
    sources = [
        source(VIDEO, run_entries(90000, [run1, run2])),
        source(AUDIO, run_entries(48000, [run1, run2])),
    ]
    inside_break = START_S + 100 + 300  # 5 minutes after run 1 ended, 5 before run 2 began
    starting = show(sources, Control(vbegin=utc(inside_break)), live=False)
    for view in starting.views:
        assert span_s(view)[0] == 120, view.track.name
        assert view.utc_ms(view.window[0]) >= inside_break * 1000
    ending = show(sources, Control(vbegin=utc(START_S + 80), vend=utc(inside_break)))
    for view in ending.views:
        assert span_s(view) == (80, 100), view.track.name
        assert view.utc_ms(view.window[-1]) < inside_break * 1000
    # Errors say where the archive ends on the clock of its last run.
    with pytest.raises(ControlError, match=r"220\.000 s, 2026-11-21T10:13:20\.000Z"):
        show(sources, Control(vbegin=utc(START_S + 900)))


def test_every_track_of_a_utc_archive_agrees_on_the_wall_clock() -> None:
    p = show(av(HOUR // 2, gaps={100: 30}), Control(vbegin=utc(START_S + 230), vend=utc(START_S + 260)))
    starts = {v.track.name: v.utc_ms(v.window[0]) for v in p.views}
    assert starts == {"video": (START_S + 230) * 1000, "audio": (START_S + 230) * 1000}


# -- cost -------------------------------------------------------------------------------------


@pytest.fixture
def segment_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts every segment read through the cutters' published sequence."""
    counter = [0]
    original = presentation._Segments.__getitem__

    def counted(self: presentation._Segments, index: int | slice) -> Segment | Sequence[Segment]:
        counter[0] += 1
        return original(self, index)

    monkeypatch.setattr(presentation._Segments, "__getitem__", counted)
    yield counter


@functools.cache
def ending_together(hours: int) -> list[Source]:
    """``hours`` of 2 s fragments ending at START_S + 1 h (cut once: present() only reads)."""
    return av(hours * HOUR // 2, start_s=START_S - (hours - 1) * HOUR)


@pytest.mark.parametrize(
    "control",
    [
        Control(),
        Control(dvr_window=20),
        Control(time_shift=600),
        Control(vbegin=utc(START_S + 1800), vend=utc(START_S + 1860)),
        Control(vbegin=seconds(START_S + 1800), vend=seconds(START_S + 1860)),
        Control(vbegin=utc(START_S + HOUR - 60)),
    ],
)
def test_cost_depends_on_the_window_not_the_archive(control: Control, segment_reads: list[int]) -> None:
    """A 60 s presentation of a 1 h archive and of a 24 h one: the same output, and segment reads
    that differ only by the binary searches' few extra steps."""
    results = []
    for hours in (1, 24):
        sources = ending_together(hours)
        segment_reads[0] = 0
        p = show(sources, control)
        results.append((segment_reads[0], [(s.time, s.duration) for v in p.views for s in v.window]))
    (small_reads, small), (big_reads, big) = results
    assert big == small and 0 < len(small) <= 2 * 31
    assert big_reads <= small_reads + 64, (small_reads, big_reads)
    assert big_reads <= len(big) + 160


def test_cutting_is_incremental() -> None:
    """A cutter looks at each stored fragment once: growing a 24 h timeline by one fragment costs
    one fragment, whatever came before."""
    entries = utc_entries(90000, 43_200 + 1)
    timeline = Timeline(entries[:-1])
    cutter = SegmentCutter(90000, Fraction(0))
    cutter.update(timeline)
    closed = list(cutter.closed)
    timeline.add(entries[-1])
    cutter.update(timeline)
    assert cutter.closed[: len(closed)] == closed and len(cutter.closed) == len(closed) + 1
    assert cutter.closed[0] is closed[0]  # the same objects: nothing was cut again


# -- numbering across an archive purge --------------------------------------------------------

GROUPINGS: list[Fraction | None] = [None, Fraction(0), Fraction(6)]


def mixed_entries() -> list[TimelineEntry]:
    """300 fragments of 1 to 3 s at 1000 Hz, a keyframe on two of every three, with gaps."""
    out = []
    time = 10_000
    for i in range(300):
        flags = FLAG_KEYFRAME if i % 3 != 1 else 0
        if i in (40, 41, 97, 180, 250):
            time += 5_000
            flags |= FLAG_DISCONTINUITY | FLAG_KEYFRAME
        duration = 1000 + (i % 3) * 1000
        out.append(TimelineEntry(time, duration, 100, 1_795_000_000_000 + time + duration, flags))
        time += duration
    return out


def cutter_for(minimum: Fraction | None, timeline: Timeline) -> SegmentCutter:
    cutter = SegmentCutter(1000, minimum or Fraction(0), every_fragment=minimum is None)
    cutter.update(timeline)
    return cutter


def described(cutter: SegmentCutter, live: bool, since: int = 0) -> list[tuple[int, int, int, bool, int]]:
    """(number, time, duration, discontinuity, discontinuity sequence) of each published segment
    from ``since`` on."""
    out = []
    t = Track("t", TrackKind.VIDEO, "avc1", "avc1.64001f", 1000, b"")
    for segment in cutter.segments(live):
        if segment.time >= since:
            view = cutter.view(t, live, presentation.Bounds(start=segment.time, stop=segment.time + 1), None)
            out.append(
                (
                    segment.number,
                    segment.time,
                    segment.duration,
                    segment.discontinuity,
                    view.discontinuity_sequence,
                )
            )
    return out


def common_cuts(entries: list[TimelineEntry], mark: PurgeMark | None = None) -> list[int]:
    """Where a purge may cut: segment starts of every grouping (what PublishingPoint.purge asks)."""
    starts = [cutter_for(m, Timeline(entries, mark)).starts() for m in GROUPINGS]
    return sorted(set.intersection(*(set(s) for s in starts)))


def purged(entries: list[TimelineEntry], cut: int, mark: PurgeMark | None = None) -> Timeline:
    mark = mark or PurgeMark()
    timeline = Timeline(entries, mark)
    cutters = [cutter_for(m, timeline) for m in GROUPINGS]
    index = next(i for i, e in enumerate(entries) if e.decode_time == cut)
    new_mark = PurgeMark(cut, mark.fragments + index, tuple((c.key, *c.starts()[cut]) for c in cutters))
    return Timeline(entries[index:], new_mark)


def test_starts_are_segment_starts_with_their_numbers() -> None:
    entries = mixed_entries()
    for minimum in GROUPINGS:
        cutter = cutter_for(minimum, Timeline(entries))
        starts = cutter.starts()
        published = cutter.segments(False)
        assert sorted(starts) == [s.time for s in published]
        before = 0
        for segment in published:
            before += segment.discontinuity
            number, discontinuities = starts[segment.time]
            assert number == segment.number
            assert discontinuities == before - segment.discontinuity
    # Every fragment starts a Smooth chunk; keyframes without a minimum; 6 s groups fewer.
    counts = [len(cutter_for(m, Timeline(entries)).starts()) for m in GROUPINGS]
    assert counts[0] == 300 and counts[0] > counts[1] > counts[2] > 20
    assert len(common_cuts(entries)) > 20


@pytest.mark.parametrize("live", [True, False])
def test_numbers_and_discontinuities_survive_a_purge(live: bool) -> None:
    entries = mixed_entries()
    cuts = common_cuts(entries)
    full = {m: described(cutter_for(m, Timeline(entries)), live) for m in GROUPINGS}
    for cut in cuts[1::3]:
        timeline = purged(entries, cut)
        assert timeline.entries[0].decode_time == cut
        for minimum in GROUPINGS:
            after = described(cutter_for(minimum, timeline), live)
            assert after == [s for s in full[minimum] if s[1] >= cut], (minimum, cut)


def test_successive_purges_and_growth_keep_the_numbers() -> None:
    """Purge, let the archive grow, purge again: a cutter that followed all along (reset by the new
    mark) numbers every segment as one that never saw a purge."""
    entries = mixed_entries()
    never = {m: cutter_for(m, Timeline(entries)) for m in GROUPINGS}
    growing = Timeline(entries[:150])
    following = {m: cutter_for(m, growing) for m in GROUPINGS}
    first_cut = next(c for c in common_cuts(entries[:150]) if c > entries[30].decode_time)
    timeline = purged(entries[:150], first_cut)
    for entry in entries[150:]:
        timeline.add(entry)
    for m, cutter in following.items():
        cutter.update(timeline)  # the new mark resets it
        assert described(cutter, True) == [s for s in described(never[m], True) if s[1] >= first_cut]
    second_cut = next(c for c in common_cuts(timeline.entries, timeline.mark) if c > entries[200].decode_time)
    again = purged(timeline.entries, second_cut, timeline.mark)
    assert again.mark.fragments == next(i for i, e in enumerate(entries) if e.decode_time == second_cut)
    for m, cutter in following.items():
        cutter.update(again)
        assert described(cutter, False) == [s for s in described(never[m], False) if s[1] >= second_cut]


def test_hls_playlist_is_the_same_before_and_after_a_purge() -> None:
    entries = utc_entries(90000, 600, gaps={100: 10, 500: 10})
    cut = entries[480].decode_time  # 20 fragments before the second gap
    before = Source(VIDEO, cutter_for_track(VIDEO, Timeline(entries)))
    after = Source(VIDEO, cutter_for_track(VIDEO, purged_track(entries, 480)))
    for control in (Control(), Control(time_shift=30), Control(vbegin=seconds(cut // 90000 + 4))):
        p, q = show([before], control), show([after], control)
        assert hls.media(p, video(p), "x", fmp4=False) == hls.media(q, video(q), "x", fmp4=False)
    text = hls.media(show([after]), video(show([after])), "x", fmp4=False)
    assert "#EXT-X-MEDIA-SEQUENCE:570" in text and "#EXT-X-DISCONTINUITY-SEQUENCE:2" in text
    # After the purge the oldest presentable segment is the first kept; a clip before it is refused.
    assert video(show([after], live=False)).window[0].number == 480
    with pytest.raises(ControlError):
        show([after], Control(vend=seconds(cut // 90000)))


def cutter_for_track(t: Track, timeline: Timeline) -> SegmentCutter:
    cutter = SegmentCutter(t.timescale, Fraction(0))
    cutter.update(timeline)
    return cutter


def purged_track(entries: list[TimelineEntry], index: int) -> Timeline:
    cutter = cutter_for_track(VIDEO, Timeline(entries))
    cut = entries[index].decode_time
    return Timeline(entries[index:], PurgeMark(cut, index, ((cutter.key, *cutter.starts()[cut]),)))
