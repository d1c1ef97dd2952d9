"""Real players against Headwater: while ffmpeg pushes a live Smooth stream in real time (two video
bitrates + audio), hls.js plays the HLS stream and dash.js and Shaka Player play the DASH stream in
headless Chromium, each for 10 s with currentTime advancing and no player error."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Server
from tests.e2e.players import play, require
from tests.e2e.test_ffmpeg_ingest import smooth_args

pytestmark = pytest.mark.e2e
PUSH_SECONDS = 120  # longer than the three plays; stopped once they are done


@pytest.fixture(scope="module")
def live_stream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require()
    base = tmp_path_factory.mktemp("playback")
    server = Server(base / "root", base / "server.log").start()
    url = f"{server.url}/live/play.isml"
    ladder = smooth_args(
        f"{url}/Streams(encoder)",
        "-re",
        seconds=PUSH_SECONDS,
        size="640x360",
        low="320x180",
        bitrates=("800k", "300k", "96k"),
    )
    push = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", *ladder],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while len(server.events("fragment.stored")) < 3 * 4 and time.monotonic() < deadline:
            time.sleep(0.2)  # four 2 s fragments per track: enough for a live player to start
        yield url
    finally:
        push.terminate()
        push.wait(10)
        server.stop()


@pytest.mark.parametrize(
    ("player", "manifest"),
    [
        ("hls.js", "play.m3u8"),
        ("hls.js", "play.m3u8?hls_fmp4=true"),
        ("dash.js", "play.mpd"),
        ("shaka", "play.mpd"),
    ],
)
def test_player_plays_the_live_stream(live_stream: str, player: str, manifest: str) -> None:
    result = play(player, f"{live_stream}/{manifest}", seconds=10)
    assert result.ok, str(result)
    assert result.advanced >= 8.0, str(result)
