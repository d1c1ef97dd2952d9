"""RTMP publishers other than ffmpeg: GStreamer's two sinks, ``rtmpsink`` (librtmp, the library OBS's
RTMP output grew from) and ``rtmp2sink`` (GStreamer's own implementation), publishing H.264/AAC at
the same time; both streams are then read back through HLS and DASH."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import Server, run_ffmpeg

pytestmark = pytest.mark.e2e
SECONDS = 6


def gstreamer(sink: str, url: str) -> subprocess.Popen[str]:
    frames, audio_buffers = SECONDS * 25, SECONDS * 48000 // 1024
    pipeline = (
        f"videotestsrc num-buffers={frames} ! video/x-raw,width=320,height=180,framerate=25/1 ! "
        "x264enc key-int-max=50 bframes=2 speed-preset=veryfast ! h264parse ! "
        f"flvmux name=mux streamable=true ! {sink} location={url} "
        f"audiotestsrc num-buffers={audio_buffers} ! audio/x-raw,rate=48000 ! audioconvert ! "
        "voaacenc ! aacparse ! mux."
    )
    return subprocess.Popen(
        ["gst-launch-1.0", "-q", *pipeline.split()],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_gstreamer_sinks_publish_and_play_back(make_server: object) -> None:
    server: Server = make_server()  # type: ignore[operator]
    sinks = {"rtmpsink": "librtmp", "rtmp2sink": "gst2"}
    running = {sink: gstreamer(sink, server.rtmp_url(f"live/{name}")) for sink, name in sinks.items()}
    for sink, proc in running.items():
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"{sink}: {out}"
    for name in sinks.values():
        state = server.settled(f"live/{name}")
        assert state["state"] == "stopped"  # FCUnpublish ended both tracks
        tracks = {t["name"]: t for t in state["tracks"]}  # type: ignore[attr-defined]
        assert set(tracks) == {"video", "audio"}
        assert tracks["video"]["codec"].startswith("avc1.") and tracks["audio"]["codec"] == "mp4a.40.2"
        for manifest in (".m3u8", ".mpd"):
            url = f"{server.url}/live/{name}.isml/{manifest}"
            result = run_ffmpeg("-xerror", "-i", url, "-f", "null", "-")
            assert result.returncode == 0 and not result.stderr, result.stderr
            count = ["-select_streams", "v:0", "-count_frames", "-show_entries", "stream=nb_read_frames"]
            frames = subprocess.run(
                ["ffprobe", "-v", "error", *count, "-of", "csv=p=0", url],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert int(frames.split()[0]) == SECONDS * 25, (manifest, frames)  # every frame sent
    assert len(server.events("rtmp.closed")) == 2
