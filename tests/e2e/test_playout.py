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

from media.boxes import (
    SYNC_SAMPLE_FLAGS,
    MovieFragmentBox,
    RawBox,
    SegmentTypeBox,
    TextSampleEntry,
    TfxdBox,
    TrackFragmentBox,
    parse_boxes,
)
from media.cmaf import build_header, write_fragment
from media.model import Sample, TrackKind
from tests.conftest import Server, run_ffmpeg
from tests.e2e.test_ffmpeg_ingest import X264, smooth_args

pytestmark = pytest.mark.e2e
SECONDS = 30
FRAME = 1 / 25


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("playout")
    server = Server(base / "root", base / "server.log").start()
    url = f"{server.url}/live/show.isml/Streams(encoder)"
    ladder = smooth_args(
        url, seconds=SECONDS, size="640x360", low="320x180", bitrates=("800k", "300k", "96k")
    )
    result = run_ffmpeg(*ladder)
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


def decode(url: str, stats: Path) -> float:
    """Decode the first video and audio stream with -xerror, writing ffmpeg's progress to ``stats``;
    the seconds decoded. ffmpeg must say nothing at -loglevel error."""
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
    assert result.returncode == 0 and not result.stderr.strip(), (url, result.stderr)
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
    assert decode(url, tmp_path / "stats.txt") >= 20
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


def wvtt_stream(seconds: int) -> tuple[bytes, list[bytes]]:
    """A WebVTT CMAF track (ISO/IEC 14496-30) at 1 kHz: in each 2 s fragment, cue "Cue <n>" for 1 s
    then 1 s without a cue. ffmpeg 5.1 cannot write wvtt into MP4, so Headwater's writer builds it."""
    entry = TextSampleEntry(b"wvtt", children=[RawBox(b"vttC", b"WEBVTT")])
    header = build_header(TrackKind.TEXT, 1000, "eng", entry)
    fragments = []
    for i in range(seconds // 2):
        cue = bytes(RawBox(b"vttc", bytes(RawBox(b"payl", f"Cue {i}".encode()))))
        empty = bytes(RawBox(b"vtte"))
        samples = [Sample(1000, len(cue), SYNC_SAMPLE_FLAGS), Sample(1000, len(empty), SYNC_SAMPLE_FLAGS)]
        fragments.append(write_fragment(i + 1, i * 2000, samples, cue + empty))
    return header, fragments


def test_webvtt_subtitles_in_hls_and_dash(server: Server, tmp_path: Path) -> None:
    url = f"{server.url}/live/subs.isml"
    header, fragments = wvtt_stream(10)
    with httpx.Client(timeout=10) as client:
        for body in (header, *fragments[:-1]):
            assert client.post(f"{url}/Streams(subs-eng.cmft)", content=body).status_code == 200
        lmsg = bytes(SegmentTypeBox(b"cmfs", 0, [b"cmfs", b"lmsg"]))
        assert client.post(f"{url}/Streams(subs-eng.cmft)", content=lmsg + fragments[-1]).status_code == 200
    result = run_ffmpeg(
        "-f",
        "lavfi",
        "-t",
        "10",
        "-i",
        "testsrc2=size=320x180:rate=25",
        *X264,
        "-movflags",
        "isml+frag_keyframe",
        "-f",
        "ismv",
        f"{url}/Streams(video)",
    )
    assert result.returncode == 0, result.stderr
    assert server.settled("live/subs")["state"] == "stopped"

    master = m3u8.loads(httpx.get(f"{url}/subs.m3u8").text)
    (subs,) = [m for m in master.media if m.type == "SUBTITLES"]
    assert subs.language == "eng" and subs.group_id == "subs"
    assert master.playlists[0].stream_info.subtitles == "subs"
    playlist = m3u8.loads(httpx.get(f"{url}/{subs.uri}").text)
    assert [s.uri for s in playlist.segments][:2] == ["subs-subs-eng-0.vtt", "subs-subs-eng-2000.vtt"]
    vtt = httpx.get(f"{url}/subs-subs-eng-2000.vtt")
    assert vtt.headers["content-type"].startswith("text/vtt")
    assert "00:00:02.000 --> 00:00:03.000\nCue 1\n" in vtt.text

    out = tmp_path / "cues.vtt"
    # ffmpeg 5.1's HLS reader skips subtitle renditions of a master; it reads their playlist.
    result = run_ffmpeg("-i", f"{url}/{subs.uri}", "-map", "0:s:0", "-f", "webvtt", str(out))
    assert result.returncode == 0, result.stderr
    assert all(f"Cue {i}" in out.read_text() for i in range(5))

    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    mpd = ET.fromstring(httpx.get(f"{url}/subs.mpd").text)
    text_set = mpd.find("d:Period/d:AdaptationSet[@contentType='text']", ns)
    assert text_set is not None and text_set.get("mimeType") == "application/mp4"
    assert text_set.find("d:Role", ns).get("value") == "subtitle"  # type: ignore[union-attr]
    assert httpx.get(f"{url}/subs-subs-eng-0.dash").status_code == 200
    assert httpx.get(f"{url}/subs-subs-eng-0.ts").status_code == 404
