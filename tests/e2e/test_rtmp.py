"""RTMP ingest end to end, with real publishers: ffmpeg (H.264/AAC, an ABR ladder of three streams, a
killed and restarted encoder, timestamps past 0xFFFFFF ms), PyAV (HEVC/AAC and AV1/Opus over
Enhanced RTMP) and the test publisher (``tests/rtmp_client.py``) sending real FLV tags with
synthetic timestamps across 0xFFFFFF ms and the 32-bit wrap. Everything read back as HLS (TS and
fMP4) and DASH by ffmpeg and ffprobe.

Wall time: every publish starts at once in the module fixture (the real-time ones take ~24 s, the
others a few seconds); each test waits only for the publishes it reads, so decoding overlaps the
real-time publishes still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import m3u8
import pytest

from tests.conftest import Server, lavfi_inputs
from tests.e2e.test_playout import decode
from tests.rtmp_client import publish, read_flv

pytestmark = pytest.mark.e2e

MAIN_SECONDS = 24  # the -re H.264/AAC publish
ABR_SECONDS = 12  # the -re ladder
PYAV_SECONDS = 22  # HEVC/AAC and AV1/Opus over E-RTMP, faster than real time
SYNTHETIC_SECONDS = 22  # the FLV sent with shifted timestamps
EXTENDED = 0xFFFFFF  # ms: from here on RTMP chunks carry the extended timestamp field
WRAP = 1 << 32  # ms: RTMP timestamps wrap here
FFMPEG_OFFSET = 16776.5  # s: -output_ts_offset that makes ffmpeg's timestamps cross 0xFFFFFF ms
VIDEO_HZ = 90_000
AUDIO_HZ = 48_000
FORMATS = ["{s}.m3u8", "{s}.m3u8?hls_fmp4=true", "{s}.mpd"]
NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
FFMPEG = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
FAST_X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "50"]


# -- publishers ---------------------------------------------------------------------------------


def flv_args(
    target: str,
    seconds: float,
    *,
    size: str = "320x180",
    realtime: bool = True,
    video: tuple[str, ...] = (*FAST_X264,),
    extra: tuple[str, ...] = (),
    audio_seconds: float | None = None,
) -> list[str]:
    """ffmpeg writing lavfi testsrc + sine as H.264/AAC FLV to ``target`` (an rtmp:// URL or a file)."""
    return [
        *FFMPEG,
        *(["-re"] if realtime else []),  # paces the video input only
        *lavfi_inputs(seconds, size=size, source="testsrc", audio_seconds=audio_seconds),
        "-pix_fmt",
        "yuv420p",
        *video,
        "-c:a",
        "aac",
        *extra,
        "-f",
        "flv",
        target,
    ]


def run(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def pyav_publish(url: str, video_codec: str, audio_codec: str, seconds: float) -> None:
    """Encode lavfi testsrc + sine with PyAV and mux them into FLV at ``url``: PyAV's FFmpeg writes
    Enhanced RTMP (``hvc1``/``av01`` video, ``Opus`` audio). Not paced: the server takes media
    faster than real time."""
    import av

    video_options = {
        "libx265": {
            "preset": "ultrafast",
            "x265-params": "keyint=50:min-keyint=50:scenecut=0:log-level=error",
        },
        "libsvtav1": {"preset": "12", "svtav1-params": "keyint=50"},
    }[video_codec]
    out = av.open(url, mode="w", format="flv")
    try:
        video = out.add_stream(video_codec, rate=25, options=video_options)
        audio = out.add_stream(audio_codec, rate=48000)
        assert isinstance(video, av.VideoStream) and isinstance(audio, av.AudioStream)
        video.width, video.height, video.pix_fmt = 320, 180, "yuv420p"
        audio.layout = "stereo" if audio_codec == "libopus" else "mono"
        with (
            av.open(f"testsrc=size=320x180:rate=25:duration={seconds}", format="lavfi") as vin,
            av.open(f"sine=frequency=440:sample_rate=48000:duration={seconds}", format="lavfi") as ain,
        ):
            frames: dict[str, Iterator[Any]] = {"video": vin.decode(video=0), "audio": ain.decode(audio=0)}
            streams: dict[str, av.VideoStream | av.AudioStream] = {"video": video, "audio": audio}
            clocks = {"video": 0.0, "audio": 0.0}
            while frames:
                kind = min(frames, key=lambda k: clocks[k])  # interleave by time
                frame = next(frames[kind], None)
                if frame is None:
                    del frames[kind]
                    continue
                clocks[kind] = float(frame.pts * frame.time_base)
                if kind == "video":
                    frame.pict_type = av.video.frame.PictureType.NONE  # lavfi frames say I
                for packet in streams[kind].encode(frame):
                    out.mux(packet)
            for stream in streams.values():
                for packet in stream.encode(None):
                    out.mux(packet)
    finally:
        out.close()


def synthetic_publish(server: Server, name: str, flv: Path, shift: int) -> list[dict[str, Any]]:
    """The test publisher sends ``flv``'s tags with ``shift`` ms added to every timestamp."""
    statuses = asyncio.run(publish("127.0.0.1", server.rtmp_port, "live", name, read_flv(flv), shift=shift))
    return [dict(s) for s in statuses]


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def video_fragments(server: Server, point: str) -> int:
    answer = httpx.get(f"{server.url}/{point}.isml/state", timeout=5)
    if answer.status_code != 200:
        return 0
    tracks = {t["name"]: t for t in answer.json()["tracks"]}
    return int(tracks.get("video", {}).get("fragments", 0))


def disconnected(server: Server, point: str) -> bool:
    return any(e.get("channel") == point for e in server.events("rtmp.disconnected"))


@dataclass
class Reload:
    """One load of a live media playlist."""

    media_sequence: int
    discontinuity_sequence: int
    segments: list[tuple[str, bool]]  # (URI, preceded by EXT-X-DISCONTINUITY)
    ended: bool


@dataclass
class Reconnect:
    """What the killed-and-restarted publish left: ffmpeg's results and the playlist reloads."""

    first: subprocess.CompletedProcess[str] | None = None
    second: subprocess.CompletedProcess[str] | None = None
    reloads: list[Reload] = field(default_factory=list)
    before_restart: list[str] = field(default_factory=list)  # segment URIs before the second publish


def poll_playlist(url: str, stop: threading.Event, reloads: list[Reload]) -> None:
    with httpx.Client(timeout=5) as client:
        while not stop.is_set():
            answer = client.get(url)
            if answer.status_code == 200:
                playlist = m3u8.loads(answer.text)
                reloads.append(
                    Reload(
                        playlist.media_sequence or 0,
                        playlist.discontinuity_sequence or 0,
                        [(s.uri, bool(s.discontinuity)) for s in playlist.segments],
                        playlist.is_endlist,
                    )
                )
                if playlist.is_endlist:
                    return
            stop.wait(0.2)


def kill_and_republish(server: Server, name: str, *, fragments: int, seconds: float) -> Reconnect:
    """ffmpeg publishes to ``live/<name>`` in real time and is SIGKILLed once ``fragments`` video
    fragments are stored; the same command (timestamps from 0 again) then publishes ``seconds`` and
    ends cleanly. The video playlist is reloaded all along with a 6 s window, so it slides."""
    point = f"live/{name}"
    result = Reconnect()
    stop = threading.Event()
    poller = threading.Thread(
        target=poll_playlist,
        args=(f"{server.url}/{point}.isml/{name}-video.m3u8?dvr_window_length=6", stop, result.reloads),
    )
    poller.start()
    try:
        proc = subprocess.Popen(
            flv_args(server.rtmp_url(point), 60),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: video_fragments(server, point) >= fragments, 30, f"{point}: fragments")
        finally:
            proc.send_signal(signal.SIGKILL)
            out, err = proc.communicate()
            result.first = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        wait_for(lambda: disconnected(server, point), 10, f"{point}: the server saw the kill")
        listed = m3u8.loads(httpx.get(f"{server.url}/{point}.isml/{name}-video.m3u8").text)
        result.before_restart = [s.uri for s in listed.segments]
        for uri in result.before_restart:  # played before: cached by the origin
            assert httpx.get(f"{server.url}/{point}.isml/{uri}").status_code == 200
        result.second = run(flv_args(server.rtmp_url(point), seconds))
        server.settled(point)
        poller.join(10)  # until it has seen the ENDLIST
    finally:
        stop.set()
        poller.join()
    return result


# -- the module fixture: every publish at once ----------------------------------------------------


@dataclass
class Studio:
    server: Server  # default settings
    restarting: Server  # points.restart_on_encoder_reconnect=true
    jobs: dict[str, Future[Any]]
    flv: Path  # SYNTHETIC_SECONDS of H.264/AAC written by ffmpeg

    def result(self, job: str) -> Any:
        return self.jobs[job].result(timeout=120)


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    base = tmp_path_factory.mktemp("rtmp")
    server = Server(base / "root", base / "server.log")
    restarting = Server(
        base / "root-restart", base / "server-restart.log", ["points.restart_on_encoder_reconnect=true"]
    )
    flv = base / "long.flv"
    jobs: dict[str, Future[Any]] = {}
    with ThreadPoolExecutor(max_workers=16) as pool:
        try:
            # Making the FLV and starting the servers overlap.
            made = pool.submit(run, flv_args(str(flv), SYNTHETIC_SECONDS, realtime=False))
            for started in [pool.submit(server.start), pool.submit(restarting.start)]:
                started.result()
            rtmp = server.rtmp_url
            jobs |= {
                # real time
                "main": pool.submit(
                    run,
                    flv_args(
                        rtmp("live/main"),
                        MAIN_SECONDS,
                        video=("-c:v", "libx264", "-g", "50", "-sc_threshold", "0"),  # B-frames
                    ),
                ),
                **{
                    f"abr_{n}": pool.submit(
                        run,
                        flv_args(
                            rtmp(f"live/abr_{n}"),
                            ABR_SECONDS,
                            size=size,
                            video=(*FAST_X264, "-b:v", bitrate),
                            extra=("-b:a", f"{32 * n}k"),
                        ),
                    )
                    for n, size, bitrate in [
                        (1, "160x90", "150k"),
                        (2, "320x180", "300k"),
                        (3, "480x270", "600k"),
                    ]
                },
                "reconnect": pool.submit(kill_and_republish, server, "reco", fragments=3, seconds=12),
                "restart": pool.submit(kill_and_republish, restarting, "fresh", fragments=3, seconds=2),
                # faster than real time
                "hevc": pool.submit(pyav_publish, rtmp("live/hevc"), "libx265", "aac", PYAV_SECONDS),
                "av1": pool.submit(pyav_publish, rtmp("live/av1"), "libsvtav1", "libopus", PYAV_SECONDS),
                "ff24": pool.submit(
                    run,
                    flv_args(
                        rtmp("live/ff24"),
                        SYNTHETIC_SECONDS,
                        realtime=False,
                        extra=("-output_ts_offset", str(FFMPEG_OFFSET)),
                    ),
                ),
                "early_video_end": pool.submit(
                    run, flv_args(rtmp("live/early"), 6, realtime=False, audio_seconds=24)
                ),
            }
            assert made.result().returncode == 0, made.result().stderr
            for name, shift in [("s24", EXTENDED - 1000), ("s32", WRAP - 1000)]:
                jobs[name] = pool.submit(synthetic_publish, server, name, flv, shift)
            for fixture in ("hevc_aac", "av1_opus"):
                source = Path(__file__).parent.parent / "data" / "rtmp" / f"{fixture}.flv"
                jobs[fixture] = pool.submit(synthetic_publish, server, fixture, source, WRAP - 1000)
            yield Studio(server, restarting, jobs, flv)
        finally:
            for job in jobs.values():
                job.cancel()
                with contextlib.suppress(Exception):
                    job.result(timeout=120)
            for each in (server, restarting):
                if each.proc is not None:
                    each.stop()


# -- readers --------------------------------------------------------------------------------------


def decode_formats(base: str, stem: str, tmp_path: Path, formats: list[str] = FORMATS) -> dict[str, float]:
    """Every format decoded at once (each ffmpeg waits on HTTP much of the time)."""
    urls = [f"{base}/{f.format(s=stem)}" for f in formats]
    with ThreadPoolExecutor(len(urls)) as pool:
        seconds = pool.map(lambda i: decode(urls[i], tmp_path / f"stats{i}.txt"), range(len(urls)))
        return dict(zip(formats, seconds, strict=True))


def ffprobe(url: str) -> dict[str, Any]:
    """Container duration and streams as ffprobe reads them."""
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_type,codec_name,width,height",
            "-of",
            "json",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def tracks(server: Server, point: str) -> dict[str, dict[str, Any]]:
    state = server.state(point)
    return {t["name"]: t for t in state["tracks"]}  # type: ignore[attr-defined]


def gaps(server: Server, point: str) -> list[dict[str, object]]:
    return [e for e in server.events("track.gap") if e.get("channel") == point]


def assert_formats_play(server: Server, point: str, tmp_path: Path, seconds: float) -> None:
    """HLS TS, HLS fMP4 and DASH each decode ``seconds`` (± a frame) without an error, and ffprobe
    reads the same duration from each."""
    stem = point.rsplit("/", 1)[1]
    base = f"{server.url}/{point}.isml"
    decoded = decode_formats(base, stem, tmp_path)
    assert all(s >= 20 for s in decoded.values()), decoded
    for name in FORMATS:
        duration = float(ffprobe(f"{base}/{name.format(s=stem)}")["format"]["duration"])
        assert duration == pytest.approx(seconds, abs=0.1), name


def assert_continuous(server: Server, point: str, start_ms: int, seconds: float) -> None:
    """One unbroken run of ``seconds`` from ``start_ms`` on the point's timeline (track times are
    unwrapped: past 2^32 ms they keep growing), 2 s fragments, no gap."""
    found = tracks(server, point)
    assert set(found) == {"video", "audio"}
    for name, hz in (("video", VIDEO_HZ), ("audio", AUDIO_HZ)):
        track = found[name]
        assert track["start_time"] / hz == pytest.approx(start_ms / 1000, abs=0.1), name
        assert (track["end_time"] - track["start_time"]) / hz == pytest.approx(seconds, abs=0.1), name
        assert track["fragments"] == seconds // 2, name
    assert not gaps(server, point)
    base = f"{server.url}/{point}.isml"
    stem = point.rsplit("/", 1)[1]
    for name in ("video", "audio"):
        playlist = m3u8.loads(httpx.get(f"{base}/{stem}-{name}.m3u8").text)
        assert playlist.is_endlist and not any(s.discontinuity for s in playlist.segments)


# -- faster than real time ------------------------------------------------------------------------


def test_hevc_aac_over_enhanced_rtmp(studio: Studio, tmp_path: Path) -> None:
    studio.result("hevc")
    server = studio.server
    assert server.settled("live/hevc")["state"] == "stopped"
    found = tracks(server, "live/hevc")
    assert found["video"]["codec"].startswith("hvc1.") and found["audio"]["codec"] == "mp4a.40.2"
    assert_continuous(server, "live/hevc", 0, PYAV_SECONDS)
    assert_formats_play(server, "live/hevc", tmp_path, PYAV_SECONDS)
    streams = ffprobe(f"{server.url}/live/hevc.isml/hevc.mpd")["streams"]
    assert {(s["codec_type"], s["codec_name"]) for s in streams} == {("video", "hevc"), ("audio", "aac")}


def test_av1_opus_over_enhanced_rtmp(studio: Studio, tmp_path: Path) -> None:
    studio.result("av1")
    server = studio.server
    assert server.settled("live/av1")["state"] == "stopped"
    found = tracks(server, "live/av1")
    assert found["video"]["codec"].startswith("av01.") and found["audio"]["codec"] == "opus"
    base = f"{server.url}/live/av1.isml"
    # No MPEG-TS for AV1/Opus: the HLS master points at fMP4 media playlists by itself.
    master = m3u8.loads(httpx.get(f"{base}/av1.m3u8").text)
    assert [p.uri for p in master.playlists] == ["av1-video.m3u8?hls_fmp4=true"]
    media = m3u8.loads(httpx.get(f"{base}/{master.playlists[0].uri}").text)
    assert media.segment_map and all(s.uri.endswith(".m4s") for s in media.segments)
    decoded = decode_formats(base, "av1", tmp_path, ["{s}.m3u8", "{s}.mpd"])
    assert all(s >= 20 for s in decoded.values()), decoded
    for name in ("av1.m3u8", "av1.mpd"):
        probed = ffprobe(f"{base}/{name}")
        assert float(probed["format"]["duration"]) == pytest.approx(PYAV_SECONDS, abs=0.1), name
        codecs = {(s["codec_type"], s["codec_name"]) for s in probed["streams"]}
        assert codecs == {("video", "av1"), ("audio", "opus")}, name


@pytest.mark.parametrize(
    ("name", "shift"),
    [("s24", EXTENDED - 1000), ("s32", WRAP - 1000)],
    ids=["across-0xFFFFFF", "across-2^32"],
)
def test_synthetic_timestamps_stay_continuous(studio: Studio, tmp_path: Path, name: str, shift: int) -> None:
    statuses = studio.result(name)
    assert statuses[-1]["code"] == "NetStream.Publish.Start"
    server = studio.server
    point = f"live/{name}"
    assert server.settled(point)["state"] == "stopped"
    first = read_flv(studio.flv)[0].timestamp
    assert_continuous(server, point, shift + first, SYNTHETIC_SECONDS)
    assert_formats_play(server, point, tmp_path, SYNTHETIC_SECONDS)


@pytest.mark.parametrize("fixture", ["hevc_aac", "av1_opus"])
def test_enhanced_rtmp_fixtures_across_the_wrap(studio: Studio, tmp_path: Path, fixture: str) -> None:
    studio.result(fixture)
    server = studio.server
    point = f"live/{fixture}"
    assert server.settled(point)["state"] == "stopped"
    found = tracks(server, point)
    for track in found.values():
        hz = track["timescale"]
        assert track["start_time"] / hz == pytest.approx((WRAP - 1000) / 1000, abs=0.1)
        assert track["end_time"] / hz > WRAP / 1000 + 0.5  # crossed it, unwrapped
    assert not gaps(server, point)
    decoded = decode(f"{server.url}/{point}.isml/{fixture}.mpd", tmp_path / "stats.txt")
    assert decoded >= 1.9


def test_ffmpeg_timestamps_across_0xffffff(studio: Studio, tmp_path: Path) -> None:
    """ffmpeg's own RTMP muxer writing extended timestamps (fmt 0 and fmt 3 chunks) mid-stream."""
    result = studio.result("ff24")
    assert result.returncode == 0, result.stderr
    server = studio.server
    assert server.settled("live/ff24")["state"] == "stopped"
    found = tracks(server, "live/ff24")
    assert found["video"]["start_time"] < EXTENDED * VIDEO_HZ // 1000 < found["video"]["end_time"]
    assert_continuous(server, "live/ff24", int(FFMPEG_OFFSET * 1000), SYNTHETIC_SECONDS)
    assert_formats_play(server, "live/ff24", tmp_path, SYNTHETIC_SECONDS)


def test_video_ending_before_audio_keeps_the_timeline(studio: Studio) -> None:
    """ffmpeg with a 6 s video input and a 24 s audio input: x264's last frames (and the AVC end of
    sequence tag) are sent after audio has gone on for seconds; each track's own timestamps are
    continuous, and so must the stored tracks be."""
    result = studio.result("early_video_end")
    assert result.returncode == 0, result.stderr
    server = studio.server
    assert server.settled("live/early")["state"] == "stopped"
    found = tracks(server, "live/early")
    assert not gaps(server, "live/early")
    assert found["audio"]["end_time"] / AUDIO_HZ == pytest.approx(24, abs=0.1)
    assert found["video"]["end_time"] / VIDEO_HZ == pytest.approx(6, abs=0.1)


# -- real time ------------------------------------------------------------------------------------


def test_abr_ladder_of_three_publishes(studio: Studio, tmp_path: Path) -> None:
    for n in (1, 2, 3):
        result = studio.result(f"abr_{n}")
        assert result.returncode == 0, result.stderr
    server = studio.server
    assert server.settled("live/abr")["state"] == "stopped"
    found = tracks(server, "live/abr")
    assert set(found) == {f"{kind}_{n}" for kind in ("video", "audio") for n in (1, 2, 3)}
    base = f"{server.url}/live/abr.isml"
    master = m3u8.loads(httpx.get(f"{base}/abr.m3u8").text)
    variants = sorted(master.playlists, key=lambda p: p.stream_info.bandwidth)
    assert [p.stream_info.resolution for p in variants] == [(160, 90), (320, 180), (480, 270)]
    assert [p.uri for p in variants] == ["abr-video_1.m3u8", "abr-video_2.m3u8", "abr-video_3.m3u8"]
    assert all(p.stream_info.codecs.startswith("avc1.") for p in variants)
    # The renditions were published at the same moment: their segments line up.
    times = {
        n: [s.uri.rsplit("-", 1)[1] for s in m3u8.loads(httpx.get(f"{base}/{p.uri}").text).segments]
        for n, p in enumerate(variants, 1)
    }
    assert times[1] == times[2] == times[3] and len(times[1]) == ABR_SECONDS // 2
    mpd = ET.fromstring(httpx.get(f"{base}/abr.mpd").text)
    (video_set,) = [s for s in mpd.findall("d:Period/d:AdaptationSet", NS) if s.get("contentType") == "video"]
    representations = video_set.findall("d:Representation", NS)
    assert sorted((r.get("id"), r.get("width")) for r in representations) == [
        ("video_1", "160"),
        ("video_2", "320"),
        ("video_3", "480"),
    ]
    decoded = decode_formats(base, "abr", tmp_path, ["{s}.m3u8", "{s}.mpd"])
    assert all(s >= ABR_SECONDS - 0.5 for s in decoded.values()), decoded


def test_ffmpeg_h264_aac_in_real_time(studio: Studio, tmp_path: Path) -> None:
    result = studio.result("main")
    assert result.returncode == 0, result.stderr
    server = studio.server
    state = server.settled("live/main")
    assert state["state"] == "stopped"
    found = tracks(server, "live/main")
    assert set(found) == {"video", "audio"}
    assert found["video"]["kind"] == "video" and found["video"]["codec"].startswith("avc1.64")  # High
    assert found["audio"]["kind"] == "audio" and found["audio"]["codec"] == "mp4a.40.2"
    assert_continuous(server, "live/main", 0, MAIN_SECONDS)
    assert_formats_play(server, "live/main", tmp_path, MAIN_SECONDS)
    (unpublished,) = [e for e in server.events("rtmp.unpublished") if e["channel"] == "live/main"]
    assert unpublished["stored"] == 2 * (MAIN_SECONDS // 2) and unpublished["dropped"] == 0


def segment_time(uri: str) -> int:
    return int(uri.rsplit("-", 1)[1].split(".")[0])


def test_reconnect_continues_after_a_discontinuity(studio: Studio, tmp_path: Path) -> None:
    reconnect: Reconnect = studio.result("reconnect")
    assert reconnect.first is not None and reconnect.first.returncode == -signal.SIGKILL
    assert reconnect.second is not None
    assert reconnect.second.returncode == 0, reconnect.second.stderr
    server = studio.server
    base = f"{server.url}/live/reco.isml"
    assert server.state("live/reco")["state"] == "stopped"

    # One media playlist, the killed publish then the new one behind one discontinuity.
    for name in ("video", "audio"):
        playlist = m3u8.loads(httpx.get(f"{base}/reco-{name}.m3u8").text)
        assert playlist.is_endlist
        breaks = [i for i, s in enumerate(playlist.segments) if s.discontinuity]
        assert len(breaks) == 1, name
        before, after = playlist.segments[breaks[0] - 1], playlist.segments[breaks[0]]
        hz = VIDEO_HZ if name == "video" else AUDIO_HZ
        gap = (segment_time(after.uri) - segment_time(before.uri)) / hz - before.duration
        assert 0 < gap < 5, (name, gap)  # the time the encoder was away, not back to 0
        assert after.program_date_time is not None
    video = m3u8.loads(httpx.get(f"{base}/reco-video.m3u8").text)
    assert [s.uri for s in video.segments][: len(reconnect.before_restart)] == reconnect.before_restart

    # Reloads of the sliding (6 s) playlist during the whole event: while live, media and
    # discontinuity sequence numbers never go back; a number always names the same segment, and a
    # segment always has the same discontinuity number, also in the final playlist, which is the
    # whole archive from sequence 0 with EXT-X-ENDLIST (README, "Once the stream has ended").
    reloads = reconnect.reloads
    live = [r for r in reloads if not r.ended]
    assert len(live) > 20 and len(reloads) == len(live) + 1 and reloads[-1].ended
    for previous, current in itertools.pairwise(live):
        assert current.media_sequence >= previous.media_sequence
        assert current.discontinuity_sequence >= previous.discontinuity_sequence
    numbers: dict[int, str] = {}
    discontinuities: dict[str, int] = {}
    for reload in reloads:
        number = reload.discontinuity_sequence
        for i, (uri, discontinuity) in enumerate(reload.segments):
            number += discontinuity
            assert numbers.setdefault(reload.media_sequence + i, uri) == uri
            assert discontinuities.setdefault(uri, number) == number, uri
    assert any(any(d for _, d in r.segments) for r in live)  # the break was seen in the window
    assert live[-1].discontinuity_sequence == 1 and live[-1].media_sequence > 0  # ... and left it
    assert (reloads[-1].media_sequence, reloads[-1].discontinuity_sequence) == (0, 0)
    assert [uri for uri, _ in reloads[-1].segments] == [s.uri for s in video.segments]

    decoded = decode_formats(base, "reco", tmp_path)
    assert decoded["{s}.m3u8"] >= 18 and decoded["{s}.m3u8?hls_fmp4=true"] >= 18, decoded  # the gap included
    # The MPD has a Period per run; ffmpeg's DASH reader plays only one (the last).
    mpd = ET.fromstring(httpx.get(f"{base}/reco.mpd").text)
    _, last = mpd.findall("d:Period", NS)
    (video,) = [s for s in last.findall("d:AdaptationSet", NS) if s.get("contentType") == "video"]
    spans = [(int(s.get("d", "0")), int(s.get("r", "0")) + 1) for s in video.iter(f"{{{NS['d']}}}S")]
    assert decoded["{s}.mpd"] == pytest.approx(sum(d * n for d, n in spans) / VIDEO_HZ, abs=0.5), decoded


def test_restart_on_encoder_reconnect_starts_a_new_timeline(studio: Studio) -> None:
    reconnect: Reconnect = studio.result("restart")
    assert reconnect.second is not None
    assert reconnect.second.returncode == 0, reconnect.second.stderr
    server = studio.restarting
    base = f"{server.url}/live/fresh.isml"
    assert server.state("live/fresh")["state"] == "stopped"
    assert [e["channel"] for e in server.events("point.restarted")] == ["live/fresh"]
    found = tracks(server, "live/fresh")
    for track in found.values():
        assert track["start_time"] / track["timescale"] < 0.1  # near 0 again
        assert track["end_time"] / track["timescale"] == pytest.approx(2, abs=0.1)
        assert track["fragments"] == 1
    playlist = m3u8.loads(httpx.get(f"{base}/fresh-video.m3u8").text)
    assert playlist.is_endlist and playlist.media_sequence == 0 and len(playlist.segments) == 1
    assert not any(s.discontinuity for s in playlist.segments)
    # The killed publish stored 3+ fragments; all but the first time are gone, also from the cache.
    assert len(reconnect.before_restart) >= 3
    for uri in reconnect.before_restart[1:]:
        assert httpx.get(f"{base}/{uri}").status_code == 404, uri
    stored = sorted(p.name for p in (server.root / "live" / "fresh" / "_tracks" / "video").glob("*.m4s"))
    assert len(stored) == 1
