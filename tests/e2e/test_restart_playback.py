"""An encoder restart in the middle of a live stream, in every manifest and in real players.

ffmpeg publishes H.264/AAC (640x360, 2 s GOP) over RTMP in real time to ``live/restart``, is
SIGKILLed once the early players are playing (~17 s in) and publishes again ~4 s later, its
timestamps from 0 again: the server maps the new publish onto the point's clock, so the timeline
has a real gap, the time the encoder was away (~4.3 s).

- The manifests signal the gap: HLS with one ``EXT-X-DISCONTINUITY`` followed by
  ``EXT-X-PROGRAM-DATE-TIME`` that many seconds on (and ``EXT-X-DISCONTINUITY-SEQUENCE`` counting it
  once it has left the window), DASH with a new Period for the new run, Smooth with a ``c@t``
  after it.
- Players started before the kill (hls.js with MPEG-TS and with fMP4, dash.js, Shaka) play on
  across the restart: ``currentTime`` ends past the gap and advances by at least the measured
  seconds less the gap (a player that keeps its latency waits the gap out, then jumps it) and a
  little slack. They start while the stream is 4-8 s old, younger than the players' usual live
  delay: the MPD's suggestedPresentationDelay stays within what it lists (``presentation_delay``
  in media/dash.py), else dash.js would sit still at the window's first segment.
- Players started after the restart at a position ``LEAD`` s before the gap (the harness's
  ``start``: a point in the DVR window on each player's own ``currentTime`` axis) play across it
  too. dash.js loads the new Period ahead while the previous one plays, and a Representation
  without a segment at that Period's start makes it seek there instead
  (``test_dash_starts_a_period_at_the_gap``).

Wall time (~60 s): the eight plays (each in its own headless Chromium) run concurrently with the
publishes, launched from a thread pool by the module fixture; each test waits for its own play.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import re
import signal
import subprocess
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

import pytest

from tests.conftest import Server
from tests.e2e.players import PlayResult, available, play, require
from tests.e2e.test_rtmp import disconnected, flv_args, video_fragments, wait_for

pytestmark = pytest.mark.e2e

POINT = "live/restart"
STEM = "restart"
SIZE = "640x360"
VIDEO = ("-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0")
KILL_AFTER_FRAGMENTS = 6  # 2 s video fragments stored at least before the SIGKILL
PLAYERS_STARTING = 13.0  # s from launching the early players to the kill (they start in ~8 s)
AWAY_SECONDS = 4.0  # from the kill to the new publish
AFTER_RESTART_FRAGMENTS = 2  # video fragments of the new publish stored before the late players start
BEFORE_SECONDS = 32.0  # measured play of the players started before the kill
AFTER_SECONDS = 20.0  # ... and of those started after the restart
LEAD = 4.0  # s before the gap the late players start (the harness's `start`)
SLACK = 3.0  # s of currentTime progress that may be lost besides the gap (stalls at the live edge)
PLAYED_PAST_GAP = 1.0  # s a player must have played beyond the gap
NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}


VARIANTS = [  # (player, manifest), and the test id
    ("hls.js", f"{STEM}.m3u8"),
    ("hls.js", f"{STEM}.m3u8?hls_fmp4=true"),
    ("dash.js", f"{STEM}.mpd"),
    ("shaka", f"{STEM}.mpd"),
]
PLAYS = [
    pytest.param(*variant, id=name)
    for variant, name in zip(VARIANTS, ["hls.js-ts", "hls.js-fmp4", "dash.js", "shaka"], strict=True)
]
PLAYLISTS = [
    f"{STEM}-video.m3u8",
    f"{STEM}-audio.m3u8",
    f"{STEM}-video.m3u8?hls_fmp4=true",
    f"{STEM}-audio.m3u8?hls_fmp4=true",
]
MANIFESTS = [*PLAYLISTS, f"{STEM}.mpd", "Manifest"]


# -- the stream and the plays -------------------------------------------------------------------


@dataclass
class Played:
    """One play, and when (``time.monotonic()``) it was launched and returned."""

    result: PlayResult
    launched: float
    finished: float

    @property
    def began(self) -> float:
        """When the measurement began, playback having started: play.mjs prints its result as
        soon as the measurement ends, ``elapsed`` s after node started (just after ``launched``)."""
        return self.launched + self.result.elapsed - self.result.measured_seconds


def timed_play(
    player: str,
    url: str,
    seconds: float,
    start: float | None = None,
) -> Played:
    launched = time.monotonic()
    result = play(player, url, seconds=seconds, live=True, start=start)
    return Played(result, launched, time.monotonic())


@dataclass
class Restart:
    server: Server
    base: str  # http://…/live/restart.isml
    killed: float  # time.monotonic() of the SIGKILL
    republished: float  # ... and of the new publish
    manifests: dict[str, str]  # fetched once the new publish has stored AFTER_RESTART_FRAGMENTS
    before: dict[tuple[str, str], Future[Played]] = field(default_factory=dict)
    after: dict[tuple[str, str], Future[Played]] = field(default_factory=dict)

    @property
    def away(self) -> float:
        """Seconds from the kill to the new publish."""
        return self.republished - self.killed


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        body: bytes = answer.read()
    return body.decode()


def start_encoder(server: Server, seconds: float, log: BinaryIO) -> subprocess.Popen[bytes]:
    args = flv_args(server.rtmp_url(POINT), seconds, size=SIZE, video=VIDEO)
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def restart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restart]:
    """The killed and restarted publish, with the plays running alongside (when the browser
    harness is available here; the player tests skip otherwise)."""
    folder = tmp_path_factory.mktemp("restart")
    server = Server(folder / "root", folder / "server.log")
    encoders: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        # Unwound in reverse: the plays end (each within its own time limit), then the encoders
        # and the server stop, also when the setup fails half way.

        @stack.callback
        def _stop_server() -> None:
            if server.proc is not None:
                server.stop()

        log = stack.enter_context((folder / "ffmpeg.log").open("wb"))

        @stack.callback
        def _stop_encoders() -> None:
            for proc in encoders:
                stop_process(proc)

        pool = stack.enter_context(ThreadPoolExecutor(max_workers=2 * len(VARIANTS)))
        players = available()
        server.start()
        base = f"{server.url}/{POINT}.isml"

        def fragments() -> int:
            return video_fragments(server, POINT)

        encoders.append(start_encoder(server, 90, log))
        wait_for(lambda: fragments() >= 2, 30, "the first publish's fragments")
        launched = time.monotonic()
        before = {
            v: pool.submit(timed_play, v[0], f"{base}/{v[1]}", BEFORE_SECONDS) for v in VARIANTS if players
        }
        wait_for(lambda: fragments() >= KILL_AFTER_FRAGMENTS, 30, "the fragments before the kill")
        time.sleep(max(0.0, launched + PLAYERS_STARTING - time.monotonic()))
        encoders[0].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        encoders[0].wait()
        wait_for(lambda: disconnected(server, POINT), 10, "the server seeing the kill")
        stored = fragments()  # the server has stored what the killed publish sent
        time.sleep(max(0.0, killed + AWAY_SECONDS - time.monotonic()))
        encoders.append(start_encoder(server, 120, log))  # stopped once the plays are over
        republished = time.monotonic()
        wait_for(lambda: fragments() >= stored + AFTER_RESTART_FRAGMENTS, 30, "the new publish's fragments")
        found = Restart(server, base, killed, republished, {n: fetch(f"{base}/{n}") for n in MANIFESTS})
        found.before = before
        for player, manifest in VARIANTS if players else []:
            try:
                start = gap_for_player(found, player, manifest)[0] - LEAD
            except (AssertionError, KeyError, ValueError):
                continue  # no gap to start before: the manifest tests say what is wrong
            found.after[(player, manifest)] = pool.submit(
                timed_play, player, f"{base}/{manifest}", AFTER_SECONDS, start
            )
        yield found


# -- reading the manifests ----------------------------------------------------------------------


@dataclass
class HlsSegment:
    uri: str
    duration: float
    date: datetime.datetime  # its EXT-X-PROGRAM-DATE-TIME, stated or carried on from the one before
    discontinuity: bool


@dataclass
class MediaPlaylist:
    tags: dict[str, str]  # header tags (the first of each name) and their values
    segments: list[HlsSegment]

    @property
    def breaks(self) -> list[int]:
        return [i for i, s in enumerate(self.segments) if s.discontinuity]


def media_playlist(text: str) -> MediaPlaylist:
    tags: dict[str, str] = {}
    segments: list[HlsSegment] = []
    date: datetime.datetime | None = None
    duration = 0.0
    discontinuity = False
    for line in text.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            date = datetime.datetime.fromisoformat(line.split(":", 1)[1])
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",")[0])
        elif line == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif line.startswith("#EXT-X-") and ":" in line:
            name, value = line.split(":", 1)
            tags.setdefault(name, value)
        elif line and not line.startswith("#"):
            assert date is not None, f"a segment before any EXT-X-PROGRAM-DATE-TIME:\n{text}"
            segments.append(HlsSegment(line, duration, date, discontinuity))
            date += datetime.timedelta(seconds=duration)
            discontinuity = False
    return MediaPlaylist(tags, segments)


def xs_duration(value: str) -> float:
    """Seconds of an xs:duration without years or months (``PT1795272007.644S``, ``P1DT2H``)."""
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?", value)
    assert match is not None, value
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


Span = tuple[float, float]  # (start, end) seconds


def gaps(spans: list[Span], tolerance: float = 0.1) -> list[Span]:
    """Where consecutive spans leave more than ``tolerance`` s uncovered."""
    ordered = sorted(spans)
    return [(a[1], b[0]) for a, b in itertools.pairwise(ordered) if b[0] - a[1] > tolerance]


def dash_segments(mpd: str, *, media: bool = False) -> dict[str, list[Span]]:
    """Every segment of each content type's first Representation, across Periods, on the
    presentation timeline (Period@start + (S@t - presentationTimeOffset) / timescale): what dash.js
    and Shaka use as ``currentTime``; or, with ``media``, in media seconds (S@t / timescale)."""
    found: dict[str, list[Span]] = {}
    for period in ET.fromstring(mpd).findall("d:Period", NS):
        period_start = xs_duration(period.get("start", "PT0S"))
        for adaptation in period.findall("d:AdaptationSet", NS):
            kind = adaptation.get("contentType") or adaptation.get("mimeType", "/").split("/")[0]
            representation = adaptation.find("d:Representation", NS)
            assert representation is not None
            template = representation.find("d:SegmentTemplate", NS)
            if template is None:
                template = adaptation.find("d:SegmentTemplate", NS)
            assert template is not None, "SegmentTemplate expected"
            timescale = int(template.get("timescale", "1"))
            offset = int(template.get("presentationTimeOffset", "0"))
            t: int | None = None
            for s in template.findall("d:SegmentTimeline/d:S", NS):
                t = int(s.get("t", t if t is not None else 0))
                d = int(s.get("d", "0"))
                for _ in range(int(s.get("r", "0")) + 1):
                    start = t / timescale if media else period_start + (t - offset) / timescale
                    found.setdefault(kind, []).append((start, start + d / timescale))
                    t += d
    return found


def smooth_segments(manifest: str) -> dict[str, list[Span]]:
    """Every chunk of each StreamIndex (``c`` with optional ``t``, ``d``, and ``r`` counting the
    chunk itself), in seconds of the track's timescale."""
    root = ET.fromstring(manifest)
    found: dict[str, list[Span]] = {}
    for index in root.findall("StreamIndex"):
        timescale = int(index.get("TimeScale", root.get("TimeScale", "10000000")))
        t = 0
        for c in index.findall("c"):
            t = int(c.get("t", t))
            d = int(c.get("d", "0"))
            for _ in range(int(c.get("r", "1"))):
                found.setdefault(index.get("Type", "?"), []).append((t / timescale, (t + d) / timescale))
                t += d
    return found


def hls_gap(playlist: MediaPlaylist) -> float:
    """The seconds between the end of the segment before the discontinuity and the
    EXT-X-PROGRAM-DATE-TIME after it."""
    (index,) = playlist.breaks
    previous, after = playlist.segments[index - 1], playlist.segments[index]
    return (after.date - previous.date).total_seconds() - previous.duration


def measured_gap(restart: Restart) -> float:
    """The gap as the video playlist states it."""
    return hls_gap(media_playlist(restart.manifests[f"{STEM}-video.m3u8"]))


def gap_for_player(restart: Restart, player: str, manifest: str) -> Span:
    """Where the gap lies on the player's ``currentTime`` axis. hls.js lays discontinuities end to
    end from the first segment of the first playlist it loads (media sequence 0 here: the DVR window
    still holds the whole stream), so for it the gap has no length; DASH players see it at its
    place on the MPD's timeline."""
    if player == "hls.js":
        playlist = media_playlist(restart.manifests[manifest.replace(".m3u8", "-video.m3u8")])
        assert playlist.tags["#EXT-X-MEDIA-SEQUENCE"] == "0"
        (index,) = playlist.breaks
        position = sum(s.duration for s in playlist.segments[:index])
        return position, position
    (gap,) = gaps(dash_segments(restart.manifests[manifest])["video"])
    return gap


# -- the manifests ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PLAYLISTS)
def test_hls_marks_the_gap_with_one_discontinuity_and_its_date(restart: Restart, name: str) -> None:
    text = restart.manifests[name]
    lines = text.splitlines()
    breaks = [i for i, line in enumerate(lines) if line == "#EXT-X-DISCONTINUITY"]
    assert len(breaks) == 1, text
    assert lines[breaks[0] + 1].startswith("#EXT-X-PROGRAM-DATE-TIME:"), text
    playlist = media_playlist(text)
    assert playlist.tags["#EXT-X-MEDIA-SEQUENCE"] == "0", text  # the window still holds it all
    assert playlist.tags["#EXT-X-DISCONTINUITY-SEQUENCE"] == "0", text
    (index,) = playlist.breaks
    assert index > 0, text  # media on both sides
    gap = hls_gap(playlist)
    # The encoder was away `away` s; the new publish adds ffmpeg's start, and the killed one lost
    # no more than the fragment it was sending.
    assert restart.away - 0.5 < gap < restart.away + 2.5, (gap, restart.away, text)


def test_dash_starts_a_period_at_the_gap(restart: Restart) -> None:
    """A new Period for the new run (dash.js stalls at a gap inside one Period's SegmentTimeline),
    starting where the run's media does, with both tracks: the presentation timeline has one gap
    per content type, as long as the HLS one, between the two Periods.

    Every Representation has a segment at its Period's start (``S@t`` ≤ presentationTimeOffset <
    its end), though ffmpeg starts the video some milliseconds after the audio: dash.js, finding
    no segment at a Period's start while it preloads that Period, seeks to the first one after it
    if its initial seek is still pending, so a player started before the gap would begin in the
    next Period."""
    mpd = restart.manifests[f"{STEM}.mpd"]
    periods = ET.fromstring(mpd).findall("d:Period", NS)
    assert [p.get("id") for p in periods] == ["0", "1"], mpd
    for period in periods:
        kinds = [a.get("contentType") for a in period.findall("d:AdaptationSet", NS)]
        assert kinds == ["video", "audio"], (period.get("id"), mpd)
        for template in period.findall(".//d:SegmentTemplate", NS):
            first = template.find("d:SegmentTimeline/d:S", NS)
            assert first is not None, mpd
            t, d = int(first.get("t", "")), int(first.get("d", ""))
            offset = int(template.get("presentationTimeOffset", "0"))
            assert t <= offset < t + d, (period.get("id"), mpd)
    segments = dash_segments(mpd)
    assert set(segments) == {"video", "audio"}, mpd
    for kind, spans in segments.items():
        found = gaps(spans)
        assert len(found) == 1, (kind, found, mpd)
        (start, end) = found[0]
        assert end - start == pytest.approx(measured_gap(restart), abs=0.1), (kind, mpd)


def test_smooth_timeline_has_the_gap(restart: Restart) -> None:
    manifest = restart.manifests["Manifest"]
    chunks = smooth_segments(manifest)
    assert set(chunks) == {"video", "audio"}, manifest
    for kind, spans in chunks.items():
        found = gaps(spans)
        assert len(found) == 1, (kind, found, manifest)
        (start, end) = found[0]
        assert end - start == pytest.approx(measured_gap(restart), abs=0.1), (kind, manifest)


def test_formats_agree_on_where_the_gap_is(restart: Restart) -> None:
    """The same media time ends before the gap and starts after it in DASH, Smooth and HLS (whose
    segment names carry the media time)."""
    dash = dash_segments(restart.manifests[f"{STEM}.mpd"], media=True)
    smooth = smooth_segments(restart.manifests["Manifest"])
    for kind, timescale in (("video", 90_000), ("audio", 48_000)):
        playlist = media_playlist(restart.manifests[f"{STEM}-{kind}.m3u8"])
        (index,) = playlist.breaks
        after = int(playlist.segments[index].uri.rsplit("-", 1)[1].split(".")[0]) / timescale
        (smooth_gap,) = gaps(smooth[kind])
        (dash_gap,) = gaps(dash[kind])
        assert smooth_gap[1] == pytest.approx(after, abs=0.001), kind
        assert dash_gap == pytest.approx(smooth_gap, abs=0.001), kind


# -- the players --------------------------------------------------------------------------------


def check_played_across(restart: Restart, played: Played, player: str, manifest: str, seconds: float) -> None:
    """The play began before the gap, ended past it, and lost no more than the gap (and SLACK) of
    ``currentTime`` progress: a DASH player keeping its latency freezes at the gap about as long as
    it lasts, then jumps it (the jump counts as progress); hls.js plays the segments end to end."""
    result = played.result
    assert result.ok, str(result)
    gap_start, gap_end = gap_for_player(restart, player, manifest)
    assert result.start_time is not None and result.end_time is not None, str(result)
    assert result.start_time < gap_start, (
        f"began at {result.start_time}, after the gap ({gap_start})\n{result}"
    )
    assert result.end_time > gap_end + PLAYED_PAST_GAP, (
        f"ended at {result.end_time}: never got past the gap {gap_start:.3f} to {gap_end:.3f}\n{result}"
    )
    least = seconds - measured_gap(restart) - SLACK
    assert result.advanced >= least, f"advanced {result.advanced} s, expected ≥ {least:.1f}\n{result}"


@pytest.mark.parametrize(("player", "manifest"), PLAYS)
def test_player_started_before_the_kill_plays_across_the_restart(
    restart: Restart, player: str, manifest: str
) -> None:
    """dash.js 5.2 gets across thanks to the new Period: at a gap inside one Period's
    SegmentTimeline it asks for the segment at the previous one's end + 10 ms forever ("No segment
    found at index: N. Wait for next loop" in its debug log)."""
    require()
    played = restart.before[(player, manifest)].result(timeout=180)
    assert played.began < restart.killed, (
        f"playback began {played.began - restart.killed:.1f} s after the kill\n{played.result}"
    )
    check_played_across(restart, played, player, manifest, BEFORE_SECONDS)


@pytest.mark.parametrize(("player", "manifest"), PLAYS)
def test_player_started_after_the_restart_plays_across_the_gap(
    restart: Restart, player: str, manifest: str
) -> None:
    require()
    assert (player, manifest) in restart.after, "no single gap in the manifest to start before"
    played = restart.after[(player, manifest)].result(timeout=180)
    assert played.launched > restart.republished
    asked = gap_for_player(restart, player, manifest)[0] - LEAD
    began = played.result.start_time
    assert began is not None and asked - 0.5 < began < asked + 2.5, (
        f"asked to start at {asked:.3f}, began at {began}\n{played.result}"
    )
    check_played_across(restart, played, player, manifest, AFTER_SECONDS)


# -- after the gap has left the window ------------------------------------------------------------


@pytest.mark.parametrize("name", PLAYLISTS)
def test_discontinuity_sequence_counts_the_gap_once_it_left_the_window(restart: Restart, name: str) -> None:
    """A 6 s window (``?dvr_window_length=6``; audio keeps three 3 s target durations) slides past
    the discontinuity: EXT-X-DISCONTINUITY-SEQUENCE becomes 1, and the media sequence numbers
    name the same segments as in the full window."""
    path, _, query = name.partition("?")
    narrow_url = f"{restart.base}/{path}?" + "&".join(q for q in (query, "dvr_window_length=6") if q)
    full_before = media_playlist(restart.manifests[name])
    (index,) = full_before.breaks
    gap_uri = full_before.segments[index].uri

    def slid() -> bool:
        narrow = media_playlist(fetch(narrow_url))
        return int(narrow.tags["#EXT-X-MEDIA-SEQUENCE"]) > index

    wait_for(slid, 40, f"{narrow_url}: the window passing the discontinuity")
    narrow_text = fetch(narrow_url)
    full = media_playlist(fetch(f"{restart.base}/{name}"))
    narrow = media_playlist(narrow_text)
    assert narrow.tags["#EXT-X-DISCONTINUITY-SEQUENCE"] == "1", narrow_text
    assert not narrow.breaks and "#EXT-X-DISCONTINUITY\n" not in narrow_text, narrow_text
    assert "#EXT-X-ENDLIST" not in narrow_text  # still live
    shift = int(narrow.tags["#EXT-X-MEDIA-SEQUENCE"]) - int(full.tags["#EXT-X-MEDIA-SEQUENCE"])
    assert [s.uri for s in full.segments[shift : shift + len(narrow.segments)]] == [
        s.uri for s in narrow.segments
    ]
    # The full window agrees: the one discontinuity is either still in it or counted.
    assert int(full.tags["#EXT-X-DISCONTINUITY-SEQUENCE"]) + len(full.breaks) == 1
    if full.breaks:
        assert full.segments[full.breaks[0]].uri == gap_uri
