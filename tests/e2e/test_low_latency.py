"""Low latency from a live ffmpeg push: the LL-HLS server rules (RFC 8216bis §6.2.5, PROTOCOLS.md)
one by one, parts from RTMP and from CMAF ingest, LL-DASH's chunked edge segment, a second origin
process serving the parts from the same store, and hls.js and dash.js playing 60 s each in their
low-latency modes within the latency goals."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from media.cmaf import read_fragment
from tests.conftest import Server
from tests.e2e.players import play, require

pytestmark = pytest.mark.e2e

FFMPEG = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error"]
PUSH_SECONDS = 300  # longer than every test of the module; stopped at its end
PART = 0.34  # the default part_duration
ENCODE = ["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "30", "-c:a", "aac"]
GOAL_HLS_S = 2.0  # the players' own live latency estimates (issue 7 goals)
GOAL_DASH_S = 2.5


def _source(seconds: int) -> list[str]:
    return [
        "-re",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size=320x180:rate=30:duration={seconds}",
        "-re",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:sample_rate=48000:duration={seconds}",
    ]


@dataclass
class Playlist:
    """An LL-HLS media playlist, parsed."""

    text: str
    tags: dict[str, str] = field(default_factory=dict)  # the first of each tag: its value
    segments: list[tuple[int, str, float, list[tuple[str, float, bool]]]] = field(default_factory=list)
    pending: list[tuple[str, float, bool]] = field(default_factory=list)  # parts after the last segment
    hint: str = ""
    reports: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Playlist:
        out = cls(text)
        sequence = -1
        parts: list[tuple[str, float, bool]] = []
        duration = 0.0
        lines = text.splitlines()
        for line in lines:
            name, _, value = line.partition(":")
            if line.startswith("#") and name not in out.tags:
                out.tags[name] = value
            if name == "#EXT-X-MEDIA-SEQUENCE":
                sequence = int(value)
            elif name == "#EXT-X-SKIP":
                sequence += int(attrs(value)["SKIPPED-SEGMENTS"])
            elif name == "#EXT-X-PART":
                a = attrs(value)
                parts.append((a["URI"], float(a["DURATION"]), a.get("INDEPENDENT") == "YES"))
            elif name == "#EXTINF":
                duration = float(value.rstrip(","))
            elif name == "#EXT-X-PRELOAD-HINT":
                out.hint = attrs(value)["URI"]
            elif name == "#EXT-X-RENDITION-REPORT":
                out.reports.append(attrs(value))
            elif line and not line.startswith("#"):
                out.segments.append((sequence, line, duration, parts))
                sequence += 1
                parts = []
        out.pending = parts
        return out

    @property
    def edge(self) -> tuple[int, int]:
        """(msn, part index) of the newest part."""
        if self.pending:
            return self.segments[-1][0] + 1, len(self.pending) - 1
        return self.segments[-1][0], len(self.segments[-1][3]) - 1


def attrs(value: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in re.findall(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', value)}


@dataclass
class Live:
    server: Server
    push: subprocess.Popen[bytes]
    url: str  # the point's URL

    def playlist(self, track: str = "video", query: str = "", timeout: float = 10) -> httpx.Response:
        return httpx.get(f"{self.url}/ll-{track}.m3u8{query}", timeout=timeout)


def _wait_for_parts(url: str, segments: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(url, timeout=5)
        if response.status_code == 200 and len(Playlist.parse(response.text).segments) >= segments:
            return
        time.sleep(0.2)
    raise AssertionError(f"{url} did not list {segments} segments in {timeout} s")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    base = tmp_path_factory.mktemp("ll")
    server = Server(base / "root", base / "server.log", ["points.low_latency=true"]).start()
    push = subprocess.Popen(
        [
            *FFMPEG,
            *_source(PUSH_SECONDS),
            *ENCODE,
            "-f",
            "flv",
            server.rtmp_url("live/ll"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    live = Live(server, push, f"{server.url}/live/ll.isml")
    try:
        _wait_for_parts(f"{live.url}/ll-video.m3u8", 8)  # more than CAN-SKIP-UNTIL (6 s)
        yield live
    finally:
        push.send_signal(signal.SIGCONT)
        push.terminate()
        push.wait(10)
        server.stop()


def test_playlist_tags_follow_the_rules(live: Live) -> None:
    playlist = Playlist.parse(live.playlist().text)
    tags = playlist.tags
    assert tags["#EXT-X-VERSION"] == "9"
    target = float(attrs(tags["#EXT-X-PART-INF"])["PART-TARGET"])
    assert target == PART
    control = attrs(tags["#EXT-X-SERVER-CONTROL"])
    assert control["CAN-BLOCK-RELOAD"] == "YES"
    assert float(control["PART-HOLD-BACK"]) >= 3 * target
    assert float(control["CAN-SKIP-UNTIL"]) >= 6 * int(tags["#EXT-X-TARGETDURATION"])
    assert "#EXT-X-MAP" in tags and "#EXT-X-ENDLIST" not in tags
    with_parts = [s for s in playlist.segments if s[3]]
    assert len(with_parts) >= 3, "the segments of the last three target durations carry their parts"
    assert not playlist.segments[0][3], "older segments are listed without their parts"
    for _, _, duration, parts in with_parts:
        assert parts[0][2] and not any(independent for _, _, independent in parts[1:])  # 1 s GOPs
        assert all(d <= target for _, d, _ in parts)
        assert all(d >= 0.85 * target for _, d, _ in parts[:-1])  # §4.4.4.9
        assert sum(d for _, d, _ in parts) == pytest.approx(duration, abs=0.002)
    assert playlist.hint.endswith(".part.m4s")
    # The other rendition's report, checked against that playlist fetched right after.
    (report,) = playlist.reports
    assert report["URI"] == "ll-audio.m3u8"
    audio = Playlist.parse(live.playlist("audio").text)
    reported = (int(report["LAST-MSN"]), int(report["LAST-PART"]))
    assert reported <= audio.edge
    assert audio.edge[0] - reported[0] <= 1


def test_parts_are_the_segment_in_pieces(live: Live) -> None:
    playlist = Playlist.parse(live.playlist().text)
    with httpx.Client(base_url=live.url + "/", timeout=10) as client:
        _, uri, _, parts = next(s for s in reversed(playlist.segments) if s[3])
        segment = client.get(uri)
        assert segment.status_code == 200
        bodies = [client.get(part_uri) for part_uri, _, _ in parts]
        assert all(b.status_code == 200 and b.headers["content-type"] == "video/mp4" for b in bodies)
        assert b"".join(b.content for b in bodies) == segment.content
        assert "immutable" in bodies[0].headers["cache-control"]
        for body, (_, duration, independent) in zip(bodies, parts, strict=True):
            _, samples, _ = read_fragment(body.content)
            assert samples[0].is_sync == independent
            assert sum(s.duration for s in samples) / 90000 == pytest.approx(duration, abs=0.001)
        missing = client.get(re.sub(r"-(\d+)\.part", lambda m: f"-{int(m[1]) + 1}.part", parts[0][0]))
        assert missing.status_code == 404


def test_blocking_reload_answers_when_the_part_lands(live: Live) -> None:
    playlist = Playlist.parse(live.playlist().text)
    msn, part = playlist.edge
    waits = []
    for _ in range(6):
        part += 1  # the next part; past a segment's last, the next segment's first (§6.2.5.2)
        started = time.monotonic()
        response = live.playlist(query=f"?_HLS_msn={msn}&_HLS_part={part}")
        waits.append(time.monotonic() - started)
        assert response.status_code == 200
        answered = Playlist.parse(response.text)
        assert answered.edge >= (msn, part) or answered.edge >= (msn + 1, 0)
        msn, part = answered.edge
    # Held for at most about one part each: the answer came with the part, not on a timer.
    assert max(waits) < PART + 0.3, waits
    assert sum(waits) > 2 * PART, f"the requests were held until their parts existed: {waits}"
    # A whole segment, without a part.
    msn = Playlist.parse(live.playlist().text).segments[-1][0] + 1
    response = live.playlist(query=f"?_HLS_msn={msn}")
    assert response.status_code == 200 and Playlist.parse(response.text).segments[-1][0] >= msn


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?_HLS_part=1", "_HLS_part needs _HLS_msn"),
        ("?_HLS_msn=abc", "whole numbers"),
        ("?_HLS_msn=-1", "negative"),
        ("?_HLS_msn={far}", "more than two segments beyond"),
        ("?_HLS_msn={far}&_HLS_part=0", "more than two segments beyond"),
    ],
)
def test_blocking_reload_refuses_bad_requests_at_once(live: Live, query: str, message: str) -> None:
    far = Playlist.parse(live.playlist().text).edge[0] + 3
    started = time.monotonic()
    response = live.playlist(query=query.format(far=far))
    assert time.monotonic() - started < 0.5
    assert response.status_code == 400 and message in response.json()["message"]


def test_delta_update_skips_the_old_segments(live: Live) -> None:
    full = Playlist.parse(live.playlist().text)
    msn, part = full.edge
    query = f"?_HLS_msn={msn}&_HLS_part={part}&_HLS_skip=YES"
    delta = Playlist.parse(live.playlist(query=query).text)
    skipped = int(attrs(delta.tags["#EXT-X-SKIP"])["SKIPPED-SEGMENTS"])
    assert skipped > 0
    assert delta.tags["#EXT-X-MEDIA-SEQUENCE"] == full.tags["#EXT-X-MEDIA-SEQUENCE"]
    assert delta.segments[0][0] == full.segments[0][0] + skipped
    # What is kept is the full playlist's tail, covering at least CAN-SKIP-UNTIL.
    kept = {s[0]: s[1] for s in delta.segments}
    assert all(kept[n] == uri for n, uri, _, _ in full.segments if n in kept)
    until = float(attrs(full.tags["#EXT-X-SERVER-CONTROL"])["CAN-SKIP-UNTIL"])
    assert sum(s[2] for s in delta.segments) + sum(p[1] for p in delta.pending) >= until - 1
    assert "#EXT-X-SKIP" not in full.text


def test_hinted_part_is_held_until_complete(live: Live) -> None:
    playlist = Playlist.parse(live.playlist().text)
    started = time.monotonic()
    response = httpx.get(f"{live.url}/{playlist.hint}", timeout=10)
    held = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert held < PART + 0.3
    _, samples, _ = read_fragment(response.content)
    assert 0 < sum(s.duration for s in samples) <= PART * 90000
    listed = Playlist.parse(live.playlist().text)
    uris = [p[0] for s in listed.segments for p in s[3]] + [p[0] for p in listed.pending]
    assert playlist.hint in uris


def test_ll_dash_sends_the_edge_segment_as_it_is_made(live: Live) -> None:
    mpd = httpx.get(f"{live.url}/ll.mpd", timeout=10).text
    for needed in (
        'availabilityTimeComplete="false"',
        "availabilityTimeOffset=",
        "<ServiceDescription",
        '<Latency referenceId="0" target=',
        "<ProducerReferenceTime",
    ):
        assert needed in mpd
    # The segment that has just begun: its first part is listed, the others are to come.
    deadline = time.monotonic() + 10
    while len(pending := Playlist.parse(live.playlist().text).pending) != 1:
        assert time.monotonic() < deadline, "no segment seen at its first part"
        time.sleep(0.03)
    newest = int(re.findall(r"-(\d+)\.part\.m4s", pending[0][0])[0])
    arrivals: list[tuple[float, int]] = []
    started = time.monotonic()
    with httpx.stream("GET", f"{live.url}/ll-video-{newest}.dash", timeout=10) as response:
        assert response.status_code == 200
        assert response.headers.get("transfer-encoding") == "chunked"
        body = b""
        for chunk in response.iter_raw():
            arrivals.append((time.monotonic() - started, len(chunk)))
            body += chunk
    assert arrivals[-1][0] - arrivals[0][0] > PART / 2, f"the parts came as they were made: {arrivals}"
    # Complete now: the same bytes from the normal path, beginning with the prft.
    again = httpx.get(f"{live.url}/ll-video-{newest}.dash", timeout=10)
    assert again.status_code == 200 and again.content == body
    assert body[4:8] == b"prft"


def test_a_second_origin_serves_the_parts(live: Live, tmp_path: Path) -> None:
    follower = Server(
        live.server.root, tmp_path / "follower.log", ["ingest.enabled=false", "points.low_latency=true"]
    ).start()
    try:
        url = f"{follower.url}/live/ll.isml/ll-video.m3u8"
        _wait_for_parts(url, 3)
        playlist = Playlist.parse(httpx.get(url, timeout=10).text)
        part = playlist.pending[0][0] if playlist.pending else playlist.segments[-1][3][0][0]
        response = httpx.get(f"{follower.url}/live/ll.isml/{part}", timeout=10)
        assert response.status_code == 200
        assert response.content == httpx.get(f"{live.url}/{part}", timeout=10).content
    finally:
        follower.stop()


def test_non_ll_reader_decodes_the_playlist(live: Live, tmp_path: Path) -> None:
    out = tmp_path / "read.mp4"
    result = subprocess.run(
        [*FFMPEG, "-y", "-i", f"{live.url}/ll.m3u8", "-t", "3", "-c", "copy", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 10_000


def test_parts_from_cmaf_ingest(live: Live) -> None:
    """ffmpeg's CMAF ingest with one chunk per frame: stored as parts of the part target."""
    url = f"{live.server.url}/live/cmaf.isml"
    push = subprocess.Popen(
        [
            *FFMPEG,
            *_source(8),
            *["-map", "0:v", *ENCODE[:-2], "-f", "mp4", "-movflags"],
            *[
                "empty_moov+separate_moof+default_base_moof+frag_every_frame+cmaf",
                f"{url}/Streams(video.cmfv)",
            ],
            *["-map", "1:a", "-c:a", "aac", "-frag_duration", "100000", "-f", "mp4", "-movflags"],
            *["empty_moov+separate_moof+default_base_moof+cmaf", f"{url}/Streams(audio.cmfa)"],
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_parts(f"{url}/cmaf-video.m3u8", 3)
        for track in ("video", "audio"):
            text = httpx.get(f"{url}/cmaf-{track}.m3u8", timeout=10).text
            segments = [s[3] for s in Playlist.parse(text).segments if s[3]]
            assert sum(len(parts) for parts in segments) >= 6, text
            assert all(d <= PART for parts in segments for _, d, _ in parts)
            # Whole parts, not the encoder's one-frame chunks (a segment's last may be shorter).
            assert all(d >= 0.85 * PART for parts in segments for _, d, _ in parts[:-1])
    finally:
        push.wait(30)
    assert push.returncode == 0


def test_blocked_request_gets_503_when_the_encoder_stalls(live: Live) -> None:
    """Last in the module but for the players: it freezes the encoder for a few seconds."""
    live.push.send_signal(signal.SIGSTOP)
    try:
        time.sleep(0.5)
        playlist = Playlist.parse(live.playlist().text)
        target = int(playlist.tags["#EXT-X-TARGETDURATION"])
        started = time.monotonic()
        response = live.playlist(query=f"?_HLS_msn={playlist.edge[0] + 1}")
        waited = time.monotonic() - started
        assert response.status_code == 503
        assert 3 * target - 0.1 <= waited < 3 * target + 1.5
    finally:
        live.push.send_signal(signal.SIGCONT)
    time.sleep(3)  # the encoder catches up


@pytest.mark.parametrize(
    ("player", "manifest", "goal"), [("hls.js", "ll.m3u8", GOAL_HLS_S), ("dash.js", "ll.mpd", GOAL_DASH_S)]
)
def test_player_plays_low_latency(live: Live, player: str, manifest: str, goal: float) -> None:
    require()
    result = play(player, f"{live.url}/{manifest}", seconds=60, live=True, low_latency=True)
    assert result.ok and result.stalls == 0, str(result)
    assert result.advanced >= 58, str(result)
    assert result.latency is not None and result.latency < goal, str(result)


def test_ended_stream_ignores_blocking(tmp_path: Path) -> None:
    server = Server(tmp_path / "root", tmp_path / "server.log", ["points.low_latency=true"]).start()
    try:
        result = subprocess.run(
            [
                *FFMPEG,
                *["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30:duration=3", *ENCODE[:-2]],
                *["-f", "flv", server.rtmp_url("live/ended")],
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0
        server.settled("live/ended")
        url = f"{server.url}/live/ended.isml/ended-video.m3u8"
        started = time.monotonic()
        response = httpx.get(url + "?_HLS_msn=1000&_HLS_part=3", timeout=10)
        assert time.monotonic() - started < 0.5
        assert response.status_code == 200 and "#EXT-X-ENDLIST" in response.text
        assert "#EXT-X-PART" not in response.text and "#EXT-X-PRELOAD-HINT" not in response.text
    finally:
        server.stop()
