"""Live playout over HTTP: the sliding window, the egress status table, caching headers, ETag,
Range, HEAD and CORS, against a point that is still receiving (one CMAF request per segment)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import m3u8
import pytest

from tests.conftest import Server
from tests.e2e.test_durability import cmaf_pieces

pytestmark = pytest.mark.e2e
WINDOW = "<smil><head><meta name='dvr_window_length' content='4'/></head></smil>"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """8 s of video in 2 s segments (times 0, 25600, 51200, 76800 at 12800 Hz), point still live."""
    base = tmp_path_factory.mktemp("live")
    server = Server(base / "root", base / "server.log").start()
    header, segments = cmaf_pieces(base)
    point = f"{server.url}/live/edge.isml"
    assert httpx.put(point, content=WINDOW).status_code == 201
    with httpx.Client(timeout=10) as client:
        for body in (header, *segments):
            assert client.post(f"{point}/Streams(video.cmfv)", content=body).status_code == 200
    yield server, point
    server.stop()


def test_live_playlist_slides_with_the_window(live: tuple[Server, str]) -> None:
    _, point = live
    playlist = m3u8.loads(httpx.get(f"{point}/x-video.m3u8").text)
    assert not playlist.is_endlist and playlist.playlist_type is None
    assert [s.uri for s in playlist.segments] == ["x-video-51200.ts", "x-video-76800.ts"]
    assert playlist.media_sequence == 2 and playlist.target_duration == 2
    narrower = m3u8.loads(httpx.get(f"{point}/x-video.m3u8?dvr_window_length=2").text)
    assert [s.uri for s in narrower.segments] == ["x-video-76800.ts"]
    wider = m3u8.loads(httpx.get(f"{point}/x-video.m3u8?dvr_window_length=60").text)
    assert len(wider.segments) == 2  # a request never widens the point's window


def test_live_mpd_is_dynamic(live: tuple[Server, str]) -> None:
    _, point = live
    mpd = ET.fromstring(httpx.get(f"{point}/x.mpd").text)
    assert mpd.get("type") == "dynamic" and mpd.get("availabilityStartTime") == "1970-01-01T00:00:00Z"
    assert mpd.get("timeShiftBufferDepth") == "PT4.000S" and mpd.get("minimumUpdatePeriod")
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    (s,) = mpd.findall(".//d:S", ns)
    assert (s.get("t"), s.get("d"), s.get("r")) == ("51200", "25600", "1")
    clock = mpd.find("d:UTCTiming", ns)
    assert clock is not None and httpx.get(clock.get("value", "")).text.endswith("Z")


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("x-video-51200.ts", 200),
        ("x-video-0.ts", 404),  # before the window
        ("x-video-60000.ts", 404),  # inside a segment: no such name
        ("x-video-102400.ts", 404),  # after the live edge
        ("x-video-51200.dash", 200),
        ("x-video-0.dash", 410),
        ("x-video-102400.dash", 404),
        ("QualityLevels({bitrate})/Fragments(video=51200)", 200),
        ("QualityLevels({bitrate})/Fragments(video=0)", 404),
        ("QualityLevels({bitrate})/Fragments(video=60000)", 412),
        ("QualityLevels({bitrate})/Fragments(video=102400)", 412),
        ("QualityLevels(1)/Fragments(video=51200)", 404),  # no such bitrate
        ("x-nosuchtrack.m3u8", 200),  # an unknown stem-track is a master playlist name
        ("x-nosuchtrack-0.ts", 404),
        ("nothing.txt", 404),
    ],
)
def test_egress_status_codes(live: tuple[Server, str], name: str, status: int) -> None:
    _, point = live
    level = ET.fromstring(httpx.get(f"{point}/Manifest").text).find(".//QualityLevel")
    assert level is not None
    answer = httpx.get(f"{point}/{name.replace('{bitrate}', level.get('Bitrate', ''))}")
    assert answer.status_code == status, answer.text
    if status != 200:
        assert answer.headers["cache-control"] == "public, max-age=1"


def test_caching_headers_etag_head_range_cors(live: tuple[Server, str]) -> None:
    _, point = live
    manifest = httpx.get(f"{point}/x.m3u8")
    assert manifest.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert manifest.headers["cache-control"] == "public, max-age=1"
    assert manifest.headers["access-control-allow-origin"] == "*"
    assert "last-modified" in manifest.headers
    again = httpx.get(f"{point}/x.m3u8", headers={"If-None-Match": manifest.headers["etag"]})
    assert (
        again.status_code == 304
        and again.content == b""
        and again.headers["etag"] == manifest.headers["etag"]
    )

    segment = httpx.get(f"{point}/x-video-51200.ts")
    assert segment.headers["content-type"] == "video/mp2t"
    assert segment.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert len(segment.content) % 188 == 0 and segment.content[0] == 0x47
    head = httpx.head(f"{point}/x-video-51200.ts")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(segment.content))
    part = httpx.get(f"{point}/x-video-51200.ts", headers={"Range": "bytes=188-375"})
    assert part.status_code == 206 and part.content == segment.content[188:376]
    assert part.headers["content-range"] == f"bytes 188-375/{len(segment.content)}"
    tail = httpx.get(f"{point}/x-video-51200.dash", headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and len(tail.content) == 100
    bad = httpx.get(f"{point}/x-video-51200.ts", headers={"Range": f"bytes={len(segment.content)}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(segment.content)}"

    init = httpx.get(f"{point}/x-video.mp4")
    assert init.headers["content-type"] == "video/mp4" and init.content[4:8] == b"ftyp"
    preflight = httpx.options(f"{point}/x.mpd", headers={"Access-Control-Request-Headers": "range"})
    assert preflight.status_code == 204 and "GET" in preflight.headers["access-control-allow-methods"]


def test_unknown_point_is_404_and_creates_nothing(live: tuple[Server, str], tmp_path: Path) -> None:
    server, _ = live
    for name in ("x.m3u8", "x.mpd", "Manifest", "x-video-0.ts"):
        assert httpx.get(f"{server.url}/live/ghost.isml/{name}").status_code == 404
    assert not (server.root / "live/ghost").exists()
    assert httpx.get(f"{server.url}/live/edge.isml/state").json()["state"] == "started"
