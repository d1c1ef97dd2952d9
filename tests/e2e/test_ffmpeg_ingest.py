"""Real ffmpeg pushing Smooth (``-f ismv``) and CMAF into a running ``headwater serve``; ffprobe
reading back every stored track."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, lavfi_inputs, probe, run_ffmpeg, track_file

pytestmark = pytest.mark.e2e

SECONDS = 6
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0"]


def smooth_args(
    url: str,
    *extra: str,
    seconds: int = SECONDS,
    size: str = "320x180",
    low: str = "160x90",
    bitrates: tuple[str, str, str] = ("400k", "200k", "64k"),
) -> list[str]:
    """Two video bitrates (``size`` and ``low``) and one audio track in one Smooth POST, 2 s
    fragments; ``extra`` goes before the inputs (``-re`` for a real-time push)."""
    high, second, audio = bitrates
    return [
        *extra,
        *lavfi_inputs(seconds, size=size),
        "-map",
        "0:v",
        "-map",
        "0:v",
        "-map",
        "1:a",
        *X264,
        "-b:v:0",
        high,
        "-b:v:1",
        second,
        "-s:v:1",
        low,
        "-c:a",
        "aac",
        "-b:a",
        audio,
        "-movflags",
        "isml+frag_keyframe",
        "-f",
        "ismv",
        url,
    ]


def test_smooth_two_bitrates_and_audio(server: Server, tmp_path: Path) -> None:
    result = run_ffmpeg(*smooth_args(f"{server.url}/live/smooth.isml/Streams(encoder1)"))
    assert result.returncode == 0, result.stderr

    state = server.settled("live/smooth")
    assert state["state"] == "stopped"
    tracks = {t["name"]: t for t in state["tracks"]}  # type: ignore[attr-defined]
    assert set(tracks) == {"video=400000", "video=200000", "audio=64000"}
    assert re.fullmatch(r"avc1\.42[0-9a-f]{4}", tracks["video=400000"]["codec"])  # ultrafast: Baseline
    assert tracks["audio=64000"]["codec"] == "mp4a.40.2"

    for name, width in (("video=400000", 320), ("video=200000", 160)):
        stream = probe(track_file(server.root, "live/smooth", name, tmp_path / f"{name}.mp4"))
        assert stream["codec_name"] == "h264"
        assert stream["width"] == width
        assert int(stream["nb_read_frames"]) == 25 * SECONDS  # type: ignore[call-overload]
        assert float(stream["duration"]) == pytest.approx(SECONDS, abs=0.05)  # type: ignore[arg-type]
    audio = probe(track_file(server.root, "live/smooth", "audio=64000", tmp_path / "audio.mp4"))
    assert audio["codec_name"] == "aac"
    # 48 kHz AAC has 1024-sample frames; the priming frame before time zero is dropped.
    assert abs(int(audio["nb_read_frames"]) - SECONDS * 48000 / 1024) <= 2  # type: ignore[call-overload]
    assert float(audio["duration"]) == pytest.approx(SECONDS, abs=0.05)  # type: ignore[arg-type]

    manifest = httpx.get(f"{server.url}/live/smooth.isml").text
    assert 'name="dvr_window_length"' in manifest and 'src="video=400000"' in manifest


def cmaf_push(url: str, *, seconds: int = SECONDS, realtime: bool = False) -> subprocess.Popen[str]:
    """One ffmpeg, two outputs: a video and an audio CMAF ingest POST (DASH-IF interface 1)."""
    args = [
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        *lavfi_inputs(seconds, size="320x180", realtime=realtime),
        "-map",
        "0:v",
        *X264,
        "-f",
        "mp4",
        "-movflags",
        "empty_moov+separate_moof+default_base_moof+frag_keyframe+cmaf",
        f"{url}/Streams(video.cmfv)",
        "-map",
        "1:a",
        "-c:a",
        "aac",
        "-frag_duration",
        "2000000",
        "-f",
        "mp4",
        "-movflags",
        "empty_moov+separate_moof+default_base_moof+cmaf",
        f"{url}/Streams(audio.cmfa)",
    ]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_cmaf_one_post_per_track(server: Server, tmp_path: Path) -> None:
    push = cmaf_push(f"{server.url}/live/cmaf.isml")
    _, err = push.communicate(timeout=120)
    assert push.returncode == 0, err

    state = server.settled("live/cmaf")
    assert state["state"] == "stopped"
    tracks = {t["name"]: t for t in state["tracks"]}  # type: ignore[attr-defined]
    assert set(tracks) == {"video", "audio"}
    assert tracks["video"]["timescale"] == 12800 and tracks["audio"]["timescale"] == 48000

    video = probe(track_file(server.root, "live/cmaf", "video", tmp_path / "v.mp4"))
    assert video["codec_name"] == "h264" and int(video["nb_read_frames"]) == 25 * SECONDS  # type: ignore[call-overload]
    assert float(video["duration"]) == pytest.approx(SECONDS, abs=0.05)  # type: ignore[arg-type]
    audio = probe(track_file(server.root, "live/cmaf", "audio", tmp_path / "a.mp4"))
    assert audio["codec_name"] == "aac" and audio["sample_rate"] == "48000"
    assert float(audio["duration"]) == pytest.approx(SECONDS, abs=0.05)  # type: ignore[arg-type]


def test_encoder_resending_everything_stores_nothing_twice(server: Server) -> None:
    url = f"{server.url}/live/again.isml/Streams(encoder1)"
    assert run_ffmpeg(*smooth_args(url)).returncode == 0
    server.wait_events("ingest.finished", 1)
    before = {t["name"]: t["fragments"] for t in server.state("live/again")["tracks"]}  # type: ignore[attr-defined]

    # A reconnecting (or second, redundant) encoder sends the same fragments again.
    assert run_ffmpeg(*smooth_args(url)).returncode == 0
    finished = server.wait_events("ingest.finished", 2)
    state = server.state("live/again")
    after = {t["name"]: t["fragments"] for t in state["tracks"]}  # type: ignore[attr-defined]
    assert after == before
    assert finished[-1]["stored"] == 0 and finished[-1]["duplicates"] == sum(before.values())  # type: ignore[arg-type]


def test_sigterm_finishes_writes_and_exits_zero(server: Server) -> None:
    push = cmaf_push(f"{server.url}/live/term.isml", seconds=20, realtime=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not server.events("fragment.stored"):
        time.sleep(0.2)
    time.sleep(2.5)
    assert server.stop() == 0
    push.wait(timeout=30)
    assert server.events("server.stopped")

    # Everything stored before the stop is indexed and readable after a restart.
    stored = {e["track"] for e in server.events("fragment.stored")}
    server.start()
    state = server.state("live/term")
    counts = {t["name"]: t.get("fragments", 0) for t in state["tracks"]}  # type: ignore[attr-defined]
    for track in stored:
        logged = sum(1 for e in server.events("fragment.stored") if e["track"] == track)
        assert counts[track] == logged


def test_redundant_encoders_first_arrival_wins(server: Server, tmp_path: Path) -> None:
    """Two encoders push the same stream at once; each fragment is stored once, whoever is first."""
    pushes = [
        subprocess.Popen(
            [
                "ffmpeg",
                "-hide_banner",
                "-nostdin",
                "-loglevel",
                "error",
                *smooth_args(f"{server.url}/live/twin.isml/Streams(encoder{n})", "-re"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (1, 2)
    ]
    for push in pushes:
        _, err = push.communicate(timeout=60)
        assert push.returncode == 0, err
    state = server.settled("live/twin")
    assert {t["name"]: t["fragments"] for t in state["tracks"]} == {  # type: ignore[attr-defined]
        "video=400000": 3,
        "video=200000": 3,
        "audio=64000": 3,
    }
    assert not server.events("ingest.rejected")
    video = probe(track_file(server.root, "live/twin", "video=400000", tmp_path / "v.mp4"))
    assert int(video["nb_read_frames"]) == 25 * SECONDS  # type: ignore[call-overload]
