"""Live playout over HTTP: the sliding window, the egress status table, caching headers, ETag,
Range, HEAD and CORS, against a point that is still receiving (one CMAF request per segment)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import m3u8
import pytest

from tests.conftest import Server, make_cmaf_video
from tests.e2e.test_durability import cmaf_pieces

pytestmark = pytest.mark.e2e
WINDOW = "<smil><head><meta name='dvr_window_length' content='6'/></head></smil>"


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
    assert [s.uri for s in playlist.segments] == ["x-video-25600.ts", "x-video-51200.ts", "x-video-76800.ts"]
    assert playlist.media_sequence == 1 and playlist.target_duration == 2
    # A request may narrow the window, but never below three target durations (RFC 8216bis
    # §6.2.2), nor widen it beyond the point's.
    narrower = m3u8.loads(httpx.get(f"{point}/x-video.m3u8?dvr_window_length=2").text)
    assert len(narrower.segments) == 3
    wider = m3u8.loads(httpx.get(f"{point}/x-video.m3u8?dvr_window_length=60").text)
    assert len(wider.segments) == 3
    master = httpx.get(f"{point}/x.m3u8?dvr_window_length=2").text
    assert "x-video.m3u8?dvr_window_length=2" in master


def test_live_mpd_is_dynamic(live: tuple[Server, str]) -> None:
    _, point = live
    mpd = ET.fromstring(httpx.get(f"{point}/x.mpd").text)
    assert mpd.get("type") == "dynamic" and mpd.get("availabilityStartTime") == "1970-01-01T00:00:00Z"
    assert mpd.get("timeShiftBufferDepth") == "PT6.000S" and mpd.get("minimumUpdatePeriod")
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    (s,) = mpd.findall(".//d:S", ns)
    assert (s.get("t"), s.get("d"), s.get("r")) == ("25600", "25600", "2")
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


def test_a_segment_is_published_only_once_complete(tmp_path: Path) -> None:
    """With 4 s HLS segments over 2 s fragments, a segment appears once both fragments are stored,
    and a published segment (its EXTINF and bytes) never changes."""
    server = Server(tmp_path / "root", tmp_path / "server.log").start()
    try:
        header, segments = cmaf_pieces(tmp_path)
        point = f"{server.url}/live/grow.isml"
        options = "<smil><head><meta name='hls_minimum_fragment_length' content='4'/></head></smil>"
        assert httpx.put(point, content=options).status_code == 201
        seen: dict[str, tuple[float, bytes]] = {}
        with httpx.Client(timeout=10) as client:
            client.post(f"{point}/Streams(video.cmfv)", content=header)
            for count, body in enumerate(segments, start=1):
                client.post(f"{point}/Streams(video.cmfv)", content=body)
                playlist = m3u8.loads(client.get(f"{point}/x-video.m3u8").text)
                assert len(playlist.segments) == count // 2
                for segment in playlist.segments:
                    data = client.get(f"{point}/{segment.uri}").content
                    assert seen.setdefault(segment.uri, (segment.duration, data)) == (segment.duration, data)
        assert [duration for duration, _ in seen.values()] == [4.0, 4.0]
    finally:
        server.stop()


def test_smooth_chunks_are_the_stored_fragments_even_within_a_gop(tmp_path: Path) -> None:
    """1 s fragments with a 2 s GOP: every fragment is a Smooth chunk, each fetchable."""
    server = Server(tmp_path / "root", tmp_path / "server.log").start()
    try:
        data = make_cmaf_video(
            tmp_path / "subgop.cmfv",
            6,
            50,
            "-frag_duration",
            "1000000",
            movflags="empty_moov+separate_moof+default_base_moof+cmaf",
        )
        point = f"{server.url}/live/subgop.isml"
        assert httpx.post(f"{point}/Streams(video.cmfv)", content=data).status_code == 200
        manifest = ET.fromstring(httpx.get(f"{point}/Manifest").text)
        level = manifest.find(".//QualityLevel")
        assert level is not None
        times = []
        t = 0
        for c in manifest.findall(".//c"):
            t = int(c.get("t", t))
            for _ in range(int(c.get("r", "1"))):
                times.append(t)
                t += int(c.get("d", "0"))
        assert len(times) == 6
        for t in times:
            url = f"{point}/QualityLevels({level.get('Bitrate')})/Fragments(video={t})"
            assert httpx.get(url).status_code == 200, url
        # HLS and DASH segments still start on keyframes: 2 s each.
        playlist = m3u8.loads(httpx.get(f"{point}/x-video.m3u8").text)
        assert [s.duration for s in playlist.segments] == [2.0, 2.0, 2.0]
    finally:
        server.stop()
