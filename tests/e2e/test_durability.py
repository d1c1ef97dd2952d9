"""Crash and reconnect behaviour: kill -9 mid-ingest, index repair, one-request-per-segment CMAF
encoders across a restart, duplicates and backwards timestamps."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from media.boxes import (
    MovieFragmentBox,
    SegmentTypeBox,
    TrackFragmentBox,
    TrackFragmentDecodeTimeBox,
    parse_box,
)
from tests.conftest import Server, make_cmaf_video, probe, run_ffmpeg, split_cmaf, track_file
from tests.e2e.test_ffmpeg_ingest import smooth_args

pytestmark = pytest.mark.e2e


def fragment_counts(server: Server, point: str) -> dict[str, int]:
    return {t["name"]: t.get("fragments", 0) for t in server.state(point)["tracks"]}  # type: ignore[attr-defined]


def test_kill9_mid_ingest_then_encoder_reconnects(server: Server, tmp_path: Path) -> None:
    url = f"{server.url}/live/crash.isml/Streams(encoder1)"
    push = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", *smooth_args(url, "-re")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(server.events("fragment.stored")) < 6:
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    push.wait(timeout=30)
    acknowledged = server.events("fragment.stored")
    assert len(acknowledged) >= 6

    server.start()
    counts = fragment_counts(server, "live/crash")
    for track in ("video=400000", "video=200000", "audio=64000"):
        logged = sum(1 for e in acknowledged if e["track"] == track)
        # Everything acknowledged survived; at most the fragment in flight was lost.
        assert counts[track] >= logged
        stored = sorted((server.root / "live/crash/_tracks" / track).glob("*.m4s"))
        assert counts[track] == len(stored)

    # The encoder reconnects and sends the whole stream again from time zero: what is stored is
    # dropped as duplicate, the rest continues the same timeline.
    assert run_ffmpeg(*smooth_args(url)).returncode == 0
    state = server.settled("live/crash")
    assert state["state"] == "stopped"
    video = probe(track_file(server.root, "live/crash", "video=400000", tmp_path / "v.mp4"))
    assert int(video["nb_read_frames"]) == 150  # type: ignore[call-overload]
    for track in state["tracks"]:  # type: ignore[attr-defined]
        assert track["start_time"] == 0
        assert track["end_time"] == pytest.approx(60_000_000, abs=300_000)


def test_index_rebuilt_after_crash_between_fragment_and_index_write(server: Server) -> None:
    assert run_ffmpeg(*smooth_args(f"{server.url}/live/repair.isml/Streams(e)")).returncode == 0
    server.settled("live/repair")
    before = fragment_counts(server, "live/repair")
    server.stop()
    # Simulate a crash after a fragment was stored but before its index record was complete:
    # drop the last record and leave half of one.
    index = server.root / "live/repair/_tracks/video=400000/index/0000000000.bin"
    data = index.read_bytes()
    index.write_bytes(data[:-32] + data[-32:-16])
    (server.root / "live/repair/_tracks/audio=64000/index/0000000000.bin").unlink()

    server.start()
    assert fragment_counts(server, "live/repair") == before
    assert len(index.read_bytes()) == len(data)


def cmaf_pieces(tmp_path: Path) -> tuple[bytes, list[bytes]]:
    """Header and four 2 s segments of an 8 s CMAF video made by ffmpeg."""
    return split_cmaf(make_cmaf_video(tmp_path / "video.cmfv", 8, 50))


def with_decode_time(segment: bytes, decode_time: int) -> bytes:
    moof, end = parse_box(segment)
    assert isinstance(moof, MovieFragmentBox)
    traf = moof.need(TrackFragmentBox)
    traf.need(TrackFragmentDecodeTimeBox).base_media_decode_time = decode_time
    return bytes(moof) + segment[end:]


def test_cmaf_one_request_per_segment_across_restart(server: Server, tmp_path: Path) -> None:
    header, segments = cmaf_pieces(tmp_path)
    assert len(segments) == 4
    url = f"{server.url}/live/seg.isml/Streams(video.cmfv)"
    with httpx.Client(timeout=10) as client:
        assert client.post(url, content=b"").status_code == 200  # the encoder's URL test
        assert not (server.root / "live/seg").exists()
        assert client.post(url, content=header).status_code == 200
        for segment in segments[:2]:
            assert client.put(url, content=segment).json()["stored"] == 1

    server.restart()
    with httpx.Client(timeout=10) as client:
        # The stored header is used for a segment sent after the restart.
        assert client.post(url, content=segments[2]).json()["stored"] == 1
        # Re-sending a stored segment is a duplicate, not an error.
        assert client.post(url, content=segments[1]).json() == {"status": 200, "stored": 0, "duplicates": 1}
        # A segment that overlaps the stored timeline is refused with the times involved.
        overlapping = with_decode_time(segments[1], 12800 * 3 // 2)
        answer = client.post(url, content=overlapping)
        assert answer.status_code == 409
        body = answer.json()
        assert body["track"] == "video" and body["sent_time"] == 19200 and body["stored_time"] == 3 * 25600
        # The same header again continues the track; lmsg on the last segment ends it.
        lmsg = bytes(SegmentTypeBox(b"cmfs", 0, [b"cmfs", b"lmsg"]))
        assert client.post(url, content=header + lmsg + segments[3]).json()["stored"] == 1

    state = server.state("live/seg")
    assert state["state"] == "stopped"
    assert fragment_counts(server, "live/seg") == {"video": 4}
    video = probe(track_file(server.root, "live/seg", "video", tmp_path / "seg.mp4"))
    assert int(video["nb_read_frames"]) == 200  # type: ignore[call-overload]
