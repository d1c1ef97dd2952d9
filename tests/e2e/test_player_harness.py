"""The browser-player harness itself, without Headwater: ffmpeg writes a 20 s HLS and DASH
presentation, a small CORS-enabled HTTP server on loopback serves it, and hls.js, dash.js and
Shaka Player play it in headless Chromium. A missing manifest must come back as errors."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import lavfi_inputs, run_ffmpeg
from tests.e2e.players import PlayResult, play, require

pytestmark = pytest.mark.e2e

SECONDS = 20
SOURCE = [
    *lavfi_inputs(SECONDS, size="320x180"),
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-pix_fmt",
    "yuv420p",
    "-g",
    "50",
    "-keyint_min",
    "50",
    "-sc_threshold",
    "0",
    "-c:a",
    "aac",
    "-b:a",
    "64k",
]


class CorsHandler(SimpleHTTPRequestHandler):
    """Static files with ``Access-Control-Allow-Origin: *``: the player page is on another port."""

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(autouse=True)
def _players() -> None:
    require()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    (root / "hls").mkdir()
    (root / "dash").mkdir()
    hls = run_ffmpeg(
        *SOURCE,
        "-f",
        "hls",
        "-hls_time",
        "2",
        "-hls_playlist_type",
        "vod",
        "-hls_segment_filename",
        str(root / "hls" / "seg%03d.ts"),
        str(root / "hls" / "index.m3u8"),
    )
    assert hls.returncode == 0, hls.stderr
    dash = run_ffmpeg(*SOURCE, "-f", "dash", "-seg_duration", "2", str(root / "dash" / "manifest.mpd"))
    assert dash.returncode == 0, dash.stderr
    return root


@pytest.fixture(scope="module")
def media_url(media: Path) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(CorsHandler, directory=str(media)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="media-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def check_played(result: PlayResult, seconds: float) -> None:
    assert result.ok, str(result)
    assert result.errors == [], str(result)
    assert result.started, str(result)
    assert result.advanced >= seconds - 1, str(result)
    assert result.advanced <= seconds + 1.5, str(result)
    assert result.live is False, str(result)
    assert (result.video_width, result.video_height) == (320, 180), str(result)
    assert result.total_frames is not None and result.total_frames >= 25 * (seconds - 1), str(result)
    assert result.http_failures == [], str(result)
    assert result.elapsed < 30, str(result)


@pytest.mark.parametrize(
    ("player", "path"),
    [
        ("hls.js", "hls/index.m3u8"),
        ("dash.js", "dash/manifest.mpd"),
        ("shaka", "dash/manifest.mpd"),
        ("shaka", "hls/index.m3u8"),
    ],
)
def test_plays_vod(media_url: str, player: str, path: str) -> None:
    result = play(player, f"{media_url}/{path}", seconds=5, live=False)
    check_played(result, 5)
    assert result.variants and result.variant is not None, str(result)
    # hls.js knows a variant's size from a master playlist only; this one is a media playlist.
    assert result.variants[result.variant].width in (320, None), str(result)


@pytest.mark.parametrize(
    ("player", "path"), [("hls.js", "nowhere.m3u8"), ("dash.js", "nowhere.mpd"), ("shaka", "nowhere.mpd")]
)
def test_missing_manifest_is_an_error(media_url: str, player: str, path: str) -> None:
    result = play(player, f"{media_url}/{path}", seconds=5, start_timeout=10)
    assert not result.ok, str(result)
    assert not result.started, str(result)
    assert result.errors, str(result)
    assert result.advanced == 0, str(result)
    assert {"url": f"{media_url}/{path}", "status": 404} in result.http_failures, str(result)
    assert result.elapsed < 15, str(result)
