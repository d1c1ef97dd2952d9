"""Start-over: a live stream that starts at a chosen point of the archive (``?vbegin=`` without
``vend``), played by hls.js, dash.js and Shaka in Chromium while the encoder keeps publishing.

ffmpeg publishes H.264/AAC over RTMP in real time to ``live/startover``. Once ``STORED`` video
fragments are in, the program start ``vbegin`` is put ``BEGIN_AFTER`` s after the stream's first
fragment (an ISO 8601 UTC time from ``GET …/archive``). Then:

- the manifests are live ones that begin there: HLS ``EVENT`` playlists with
  ``EXT-X-START:TIME-OFFSET=0`` whose first segment is the one holding ``vbegin``, a dynamic MPD
  whose first segment starts there too;
- hls.js, given no start position, starts at the program start (``EXT-X-START``); dash.js and
  Shaka, asked to start at ``vbegin`` on the MPD's timeline (seconds since the epoch, as
  ``availabilityStartTime`` is 1970), start there; all three then play ``SECONDS`` of it.

Wall time (~40 s): the three plays run at once, each in its own headless Chromium.
"""

from __future__ import annotations

import contextlib
import datetime
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import m3u8
import pytest

from tests.conftest import Server
from tests.e2e.players import PlayResult, available, play, require
from tests.e2e.test_rtmp import flv_args, video_fragments, wait_for

pytestmark = pytest.mark.e2e

POINT = "live/startover"
STORED = 6  # 2 s video fragments stored before the plays start (~12 s)
BEGIN_AFTER = 5.0  # s after the first fragment: inside the third segment
SECONDS = 10.0  # measured play
SLACK = 2.5  # s of currentTime progress that may be lost (the start, stalls at the live edge)
DASH = "{urn:mpeg:dash:schema:mpd:2011}"


@dataclass
class StartOver:
    base: str  # http://…/live/startover.isml
    vbegin: datetime.datetime
    query: str
    plays: dict[str, Future[PlayResult]] = field(default_factory=dict)

    @property
    def epoch(self) -> float:
        return self.vbegin.timestamp()


def iso(moment: datetime.datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture(scope="module")
def start_over(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartOver]:
    folder = tmp_path_factory.mktemp("startover")
    server = Server(folder / "root", folder / "server.log")
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: server.stop() if server.proc is not None else None)
        log = stack.enter_context((folder / "ffmpeg.log").open("wb"))
        server.start()
        args = flv_args(server.rtmp_url(POINT), 120)
        encoder = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)

        @stack.callback
        def _stop_encoder() -> None:
            encoder.terminate()
            try:
                encoder.wait(10)
            except subprocess.TimeoutExpired:
                encoder.kill()
                encoder.wait()

        pool = stack.enter_context(ThreadPoolExecutor(max_workers=3))  # joined before the encoder stops
        wait_for(lambda: video_fragments(server, POINT) >= STORED, 60, "the first fragments")
        base = f"{server.url}/{POINT}.isml"
        listing = httpx.get(f"{base}/archive", timeout=5).json()
        (video,) = [t for t in listing["tracks"] if t["name"] == "video"]
        first = datetime.datetime.fromisoformat(video["ranges"][0]["start"].replace("Z", "+00:00"))
        vbegin = first + datetime.timedelta(seconds=BEGIN_AFTER)
        found = StartOver(base, vbegin, f"vbegin={iso(vbegin)}")
        if available():
            starts: dict[str, tuple[str, float | None]] = {
                "hls.js": ("startover.m3u8", None),  # EXT-X-START says where
                "dash.js": ("startover.mpd", found.epoch),
                "shaka": ("startover.mpd", found.epoch),
            }
            for player, (manifest, start) in starts.items():
                url = f"{base}/{manifest}?{found.query}"
                found.plays[player] = pool.submit(play, player, url, SECONDS, live=True, start=start)
        yield found


def test_hls_start_over_is_an_event_playlist_from_vbegin(start_over: StartOver) -> None:
    master = m3u8.loads(httpx.get(f"{start_over.base}/startover.m3u8?{start_over.query}").text)
    assert master.playlists and all(start_over.query in p.uri for p in master.playlists)
    for variant in [*master.playlists, *master.media]:
        if variant.uri is None:
            continue
        text = httpx.get(f"{start_over.base}/{variant.uri}").text
        playlist = m3u8.loads(text)
        assert playlist.playlist_type == "event" and not playlist.is_endlist, text
        assert "#EXT-X-START:TIME-OFFSET=0" in text, text
        first = playlist.segments[0]
        assert first.program_date_time is not None, text
        begins = first.program_date_time.timestamp()
        assert begins <= start_over.epoch < begins + first.duration, text


def test_dash_start_over_is_dynamic_from_vbegin(start_over: StartOver) -> None:
    text = httpx.get(f"{start_over.base}/startover.mpd?{start_over.query}").text
    mpd = ET.fromstring(text)
    assert mpd.get("type") == "dynamic", text
    (period,) = mpd.findall(f"{DASH}Period")
    period_start = float(period.get("start", "")[2:-1])
    for template in period.iter(f"{DASH}SegmentTemplate"):
        scale = int(template.get("timescale", ""))
        offset = int(template.get("presentationTimeOffset", ""))
        first = template.find(f"{DASH}SegmentTimeline/{DASH}S")
        assert first is not None, text
        begins = period_start + (int(first.get("t", "")) - offset) / scale
        assert begins <= start_over.epoch + 0.05 < begins + int(first.get("d", "")) / scale, text


@pytest.mark.parametrize("player", ["hls.js", "dash.js", "shaka"])
def test_player_plays_from_the_program_start(start_over: StartOver, player: str) -> None:
    require()
    result = start_over.plays[player].result(timeout=120)
    assert result.ok and result.live, str(result)
    assert result.start_time is not None, str(result)
    # hls.js counts from the first segment of the playlist (the one holding vbegin); the DASH
    # players count on the MPD's timeline, where vbegin is its UTC time.
    expected = 0.0 if player == "hls.js" else start_over.epoch
    assert expected - 2.5 <= result.start_time <= expected + 2.5, str(result)
    assert result.advanced >= SECONDS - SLACK, str(result)
