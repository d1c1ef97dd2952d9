"""Playout end to end: 30 s pushed with real ffmpeg (Smooth ingest, two video bitrates + audio), then
read back as HLS (TS and fMP4), DASH and Smooth by ffmpeg and by plain HTTP."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import m3u8
import pytest

from media.boxes import MovieFragmentBox, TfxdBox, TrackFragmentBox, parse_boxes
from tests.conftest import Server, run_ffmpeg
from tests.e2e.test_ffmpeg_ingest import X264

pytestmark = pytest.mark.e2e
SECONDS = 30
FRAME = 1 / 25


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("playout")
    server = Server(base / "root", base / "server.log").start()
    url = f"{server.url}/live/show.isml/Streams(encoder)"
    result = run_ffmpeg(
        "-f",
        "lavfi",
        "-t",
        str(SECONDS),
        "-i",
        "testsrc2=size=640x360:rate=25",
        "-f",
        "lavfi",
        "-t",
        str(SECONDS),
        "-i",
        "sine=f=440:sample_rate=48000",
        "-map",
        "0:v",
        "-map",
        "0:v",
        "-map",
        "1:a",
        *X264,
        "-b:v:0",
        "800k",
        "-b:v:1",
        "300k",
        "-s:v:1",
        "320x180",
        "-c:a",
        "aac",
        "-b:a",
        "96k",
        "-movflags",
        "isml+frag_keyframe",
        "-f",
        "ismv",
        url,
    )
    assert result.returncode == 0, result.stderr
    assert server.settled("live/show")["state"] == "stopped"
    yield server
    server.stop()


def streams(url: str) -> list[dict[str, str]]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name,start_time",
            "-of",
            "json",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found: list[dict[str, str]] = json.loads(out.stdout)["streams"]
    return found


def decode(url: str, tmp_path: Path) -> float:
    """Decode the first video and audio stream with -xerror; the seconds of video decoded."""
    stats = tmp_path / "stats.txt"
    result = run_ffmpeg(
        "-xerror",
        "-i",
        url,
        "-map",
        "0:v:0",
        "-map",
        "0:a:0",
        "-f",
        "null",
        "-progress",
        str(stats),
        "-",
        timeout=180,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    progress = dict(line.split("=", 1) for line in stats.read_text().splitlines() if "=" in line)
    return int(progress["out_time_us"]) / 1e6


@pytest.mark.parametrize(
    ("name", "tolerance"),
    [
        # TS carries the CMAF presentation times; ffmpeg's fMP4 reader shifts B-frame video by its
        # reorder delay (2 frames with x264's defaults) instead of reading the composition offsets.
        ("show.m3u8", FRAME),
        ("show.m3u8?hls_fmp4=true", 2 * FRAME),
        ("show.mpd", 2 * FRAME),
    ],
)
def test_ffmpeg_decodes_every_format(pushed: Server, tmp_path: Path, name: str, tolerance: float) -> None:
    url = f"{pushed.url}/live/show.isml/{name}"
    assert decode(url, tmp_path) >= 20
    found = streams(url)
    video = [float(s["start_time"]) for s in found if s["codec_type"] == "video"]
    audio = [float(s["start_time"]) for s in found if s["codec_type"] == "audio"]
    assert video and audio
    assert abs(min(video) - min(audio)) <= tolerance + 1e-6


def test_hls_playlists_parse(pushed: Server) -> None:
    base = f"{pushed.url}/live/show.isml/"
    master = m3u8.loads(httpx.get(base + "show.m3u8").text, uri=base)
    assert master.is_variant
    variants = sorted(master.playlists, key=lambda p: p.stream_info.bandwidth)
    assert [p.stream_info.resolution for p in variants] == [(320, 180), (640, 360)]
    for variant in variants:
        info = variant.stream_info
        assert info.average_bandwidth <= info.bandwidth and info.frame_rate == 25
        assert info.codecs.startswith("avc1.") and info.codecs.endswith(",mp4a.40.2")
        assert info.audio == "audio"
    (audio,) = master.media
    assert audio.type == "AUDIO" and audio.default == "YES"
    media = m3u8.loads(httpx.get(base + variants[0].uri).text)
    assert media.is_endlist and media.target_duration == 2 and media.media_sequence == 0
    assert len(media.segments) == SECONDS // 2
    assert all(s.duration == pytest.approx(2.0) for s in media.segments)
    assert media.segments[0].program_date_time is not None
    fmp4 = m3u8.loads(httpx.get(base + variants[0].uri + "?hls_fmp4=true").text)
    assert fmp4.segment_map and fmp4.segments[0].uri.endswith(".m4s")


def test_mpd_is_static_after_the_stream_ended(pushed: Server) -> None:
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    mpd = ET.fromstring(httpx.get(f"{pushed.url}/live/show.isml/show.mpd").text)
    assert mpd.get("type") == "static" and mpd.get("mediaPresentationDuration") == "PT30.000S"
    sets = mpd.findall("d:Period/d:AdaptationSet", ns)
    assert [s.get("contentType") for s in sets] == ["video", "audio"]
    runs = sets[0].findall("d:Representation/d:SegmentTemplate/d:SegmentTimeline/d:S", ns)
    assert runs[0].get("t") == "0" and runs[0].get("r") == str(SECONDS // 2 - 1)
    assert mpd.find("d:UTCTiming", ns) is not None


def test_every_smooth_fragment_carries_its_manifest_time(pushed: Server) -> None:
    base = f"{pushed.url}/live/show.isml/"
    manifest = ET.fromstring(httpx.get(base + "Manifest").text)
    assert manifest.get("IsLive") == "FALSE"
    checked = 0
    with httpx.Client(timeout=10) as client:
        for index in manifest.iter("StreamIndex"):
            times: list[tuple[int, int]] = []
            t = 0
            for c in index.iter("c"):
                t = int(c.get("t", t))
                for _ in range(int(c.get("r", "1"))):
                    times.append((t, int(c.get("d", "0"))))
                    t += int(c.get("d", "0"))
            template = index.get("Url", "")
            for level in index.iter("QualityLevel"):
                for start, duration in times:
                    url = template.replace("{bitrate}", level.get("Bitrate", "")).replace(
                        "{start time}", str(start)
                    )
                    answer = client.get(base + url)
                    assert answer.status_code == 200, url
                    moof = next(b for b in parse_boxes(answer.content) if isinstance(b, MovieFragmentBox))
                    tfxd = moof.need(TrackFragmentBox).need(TfxdBox)
                    assert (tfxd.absolute_time, tfxd.duration) == (start, duration)
                    checked += 1
    assert checked == 3 * SECONDS // 2


@pytest.mark.parametrize(
    "source",
    [
        [
            "-f",
            "lavfi",
            "-t",
            "6",
            "-i",
            "sine=sample_rate=48000",
            "-c:a",
            "aac",
            "-frag_duration",
            "2000000",
        ],
        ["-f", "lavfi", "-t", "6", "-i", "testsrc2=size=320x180:rate=25", *X264],
    ],
    ids=["audio-only", "video-only"],
)
def test_single_media_points_play_in_every_format(server: Server, tmp_path: Path, source: list[str]) -> None:
    url = f"{server.url}/live/single.isml"
    assert (
        run_ffmpeg(*source, "-movflags", "isml+frag_keyframe", "-f", "ismv", f"{url}/Streams(s)").returncode
        == 0
    )
    server.settled("live/single")
    for name in ("single.m3u8", "single.m3u8?hls_fmp4=1", "single.mpd"):
        result = run_ffmpeg("-xerror", "-i", f"{url}/{name}", "-f", "null", "-")
        assert result.returncode == 0 and not result.stderr.strip(), (name, result.stderr)
    assert httpx.get(f"{url}/Manifest").status_code == 200
