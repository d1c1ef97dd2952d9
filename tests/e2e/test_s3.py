"""S3 content roots against a real S3 HTTP endpoint (moto in server mode, its own process): ffmpeg
pushes into one ``headwater serve`` on ``s3://bucket/prefix``, a second one with ingest disabled
serves the same points from the bucket alone, and a fresh node rebuilds everything from it.

- The bucket holds the disk layout below the prefix; ffmpeg decodes HLS and DASH from either node.
- The follower's playlists trail the ingesting node's by less than a fragment (2 s): every new
  segment of the ingesting node's live playlist, polled every 50 ms on both, shows up on the
  follower within ``FOLLOW_BUDGET``; when the stream ends, the follower's manifests become VOD too.
- The follower refuses ingest and point changes with 403.
- The archive purge on S3 deletes the old fragments from the bucket; the follower's manifests move.
- Both nodes killed (SIGKILL), a fresh node with an empty local folder plays the archive as VOD.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import m3u8
import pytest

from tests.conftest import S3Server, Server, run_ffmpeg
from tests.e2e.test_ffmpeg_ingest import smooth_args
from tests.e2e.test_playout import decode
from tests.e2e.test_rtmp import flv_args, video_fragments, wait_for

pytestmark = pytest.mark.e2e

FOLLOW = ("storage.follow_interval=0.25",)
FOLLOW_BUDGET = 2.0  # s: one fragment duration
LIVE_SECONDS = 24


@dataclass
class Pair:
    bucket: str
    ingest: Server
    follower: Server


@pytest.fixture
def pair(s3_server: S3Server, tmp_path: Path) -> Iterator[Pair]:
    bucket = s3_server.bucket(f"pair-{tmp_path.name.lower().replace('_', '-')[:40]}")
    root = f"s3://{bucket}/origin"
    ingest = s3_server.server(tmp_path / "a", tmp_path / "a.log", root)
    follower = s3_server.server(tmp_path / "b", tmp_path / "b.log", root, "ingest.enabled=false", *FOLLOW)
    ingest.start()
    follower.start()
    try:
        yield Pair(bucket, ingest, follower)
    finally:
        for server in (ingest, follower):
            if server.proc is not None:
                server.stop()


def segment_uris(url: str) -> list[str]:
    answer = httpx.get(url, timeout=5)
    return [s.uri for s in m3u8.loads(answer.text).segments] if answer.status_code == 200 else []


def test_follower_trails_the_ingesting_node_by_less_than_a_fragment(pair: Pair, s3_server: S3Server) -> None:
    point = "live/shared"
    encoder = subprocess.Popen(
        flv_args(pair.ingest.rtmp_url(point), LIVE_SECONDS),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: video_fragments(pair.ingest, point) >= 1, 30, "the first fragment")
        # The follower has never seen the point: its first request loads it from the bucket.
        wait_for(lambda: bool(segment_uris(f"{pair.follower.url}/{point}.isml/shared-video.m3u8")), 10, "b")
        seen_on_ingest: dict[str, float] = {}
        seen_on_follower: dict[str, float] = {}
        stop = threading.Event()

        def poll(server: Server, seen: dict[str, float]) -> None:
            while not stop.is_set():
                for uri in segment_uris(f"{server.url}/{point}.isml/shared-video.m3u8"):
                    seen.setdefault(uri, time.monotonic())
                time.sleep(0.05)

        threads = [
            threading.Thread(target=poll, args=(pair.ingest, seen_on_ingest)),
            threading.Thread(target=poll, args=(pair.follower, seen_on_follower)),
        ]
        for thread in threads:
            thread.start()
        encoder.wait(LIVE_SECONDS + 30)
        pair.ingest.settled(point)
        time.sleep(1)
        stop.set()
        for thread in threads:
            thread.join()
    finally:
        encoder.kill()
        encoder.wait()
    delays = [
        seen_on_follower[uri] - seen_on_ingest[uri] for uri in seen_on_ingest if uri in seen_on_follower
    ]
    assert set(seen_on_ingest) <= set(seen_on_follower)
    assert len(delays) >= 8 and max(delays) < FOLLOW_BUDGET, sorted(delays)

    # Ended: the follower presents the same VOD (the MPD's UTCTiming names each node's own /time).
    def answer(server: Server, name: str) -> str:
        return httpx.get(f"{server.url}/{point}.isml/{name}").text.replace(server.url, "")

    for name in ("shared-video.m3u8", "shared.mpd", "Manifest"):
        expected = answer(pair.ingest, name)
        wait_for(lambda: answer(pair.follower, name) == expected, 5, f"the follower's {name}")  # noqa: B023
    assert m3u8.loads(answer(pair.follower, "shared-video.m3u8")).is_endlist
    stats = pair.follower.root / "stats"
    stats.mkdir(parents=True, exist_ok=True)
    for manifest in ("shared.m3u8", "shared.mpd"):
        seconds = decode(f"{pair.follower.url}/{point}.isml/{manifest}", stats / f"{manifest}.txt")
        assert seconds >= LIVE_SECONDS - 2.5, (manifest, seconds)

    # The bucket holds the disk layout below the prefix, nothing else.
    keys = s3_server.keys(pair.bucket)
    assert all(k.startswith("origin/live/shared/") for k in keys), keys[:5]
    for name in ("shared.isml", "_state.json", "_tracks/video/track.json", "_tracks/video/header.mp4"):
        assert f"origin/live/shared/{name}" in keys
    assert "origin/live/shared/_tracks/video/index/0000000000.bin" in keys
    fragments = [k for k in keys if k.startswith("origin/live/shared/_tracks/video/") and k.endswith(".m4s")]
    assert len(fragments) == video_fragments(pair.ingest, point)


def test_follower_refuses_ingest_and_point_changes(pair: Pair) -> None:
    follower = pair.follower.url
    for method, url in [
        ("POST", f"{follower}/live/x.isml/Streams(video)"),
        ("POST", f"{follower}/live/x.isml"),
        ("PUT", f"{follower}/live/x.isml"),
        ("DELETE", f"{follower}/live/x.isml"),
    ]:
        answer = httpx.request(method, url, content=b"", timeout=5)
        assert answer.status_code == 403, (method, url, answer.text)
        assert "ingest is disabled on this node" in answer.json()["message"]
    (started,) = pair.follower.events("server.started")
    assert started["rtmp"] == [] and started["ingest"] is False


def test_purge_on_s3_and_a_fresh_node_rebuilds_from_the_bucket(s3_server: S3Server, tmp_path: Path) -> None:
    """120 s of media pushed fast into a point keeping 30 s of archive: the purge deletes the old
    fragments from the bucket, the follower's manifests start later. Then both nodes die and a
    fresh node on an empty folder plays what is left as VOD."""
    bucket = s3_server.bucket("purge")
    root = f"s3://{bucket}/p"
    ingest = s3_server.server(tmp_path / "a", tmp_path / "a.log", root, "storage.purge_interval=0.5")
    follower = s3_server.server(tmp_path / "b", tmp_path / "b.log", root, "ingest.enabled=false", *FOLLOW)
    fresh = s3_server.server(tmp_path / "c", tmp_path / "c.log", root)
    try:
        ingest.start()
        follower.start()
        options = b'<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>' + (
            b'<meta name="archive_length" content="30"/><meta name="dvr_window_length" content="10"/>'
            b"</head></smil>"
        )
        assert httpx.put(f"{ingest.url}/live/purged.isml", content=options).status_code == 201
        url = f"{ingest.url}/live/purged.isml/Streams(e)"
        assert run_ffmpeg(*smooth_args(url, seconds=120)).returncode == 0
        ingest.settled("live/purged")
        video = "video=400000"
        prefix = f"p/live/purged/_tracks/{video}/"

        def stored() -> list[str]:
            return [k for k in s3_server.keys(bucket, prefix) if k.endswith(".m4s")]

        # Kept: the archive length (30 s) and the margin (30 s) behind the end, in 30 s steps.
        wait_for(lambda: len(stored()) <= 45, 20, "the purge")
        first = int(stored()[0].rsplit("/", 1)[1].split(".")[0])
        assert first > 0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            playlist = m3u8.loads(httpx.get(f"{follower.url}/live/purged.isml/purged-{video}.m3u8").text)
            starts = [int(s.uri.rsplit("-", 1)[1].split(".")[0]) for s in playlist.segments]
            if starts and starts[0] >= first:
                break
            time.sleep(0.2)
        assert starts[0] >= first and playlist.is_endlist, (starts[:3], first)

        ingest.stop(signal.SIGKILL)
        follower.stop(signal.SIGKILL)
        fresh.start()
        stats = tmp_path / "stats"
        stats.mkdir()
        playlist = m3u8.loads(httpx.get(f"{fresh.url}/live/purged.isml/purged.m3u8").text)
        assert playlist.playlists
        kept = len(stored()) * 2
        seconds = decode(f"{fresh.url}/live/purged.isml/purged.m3u8", stats / "hls.txt")
        assert abs(seconds - kept) <= 2.5, (seconds, kept)
        assert not list((tmp_path / "c").glob("**/*.m4s"))  # nothing local: it all came from the bucket
    finally:
        for server in (ingest, follower, fresh):
            if server.proc is not None:
                server.stop()


def test_s3_stopped_for_20_s_mid_push_loses_nothing(s3_server: S3Server, tmp_path: Path) -> None:
    """moto is stopped (SIGSTOP: connections hang, as with a dead S3) for 20 s in the middle of a
    real-time RTMP push. The ingesting node spools what the bucket does not take, keeps the
    encoder connected and serves the spooled fragments; once moto runs again, the spool is flushed
    in order. Then every fragment the encoder sent is in the bucket and in a fresh node's
    manifests, in order, without a duplicate."""
    bucket = s3_server.bucket("fault")
    root = f"s3://{bucket}/f"
    fast = ("storage.s3_connect_timeout=1", "storage.s3_read_timeout=2", "storage.spool_after=1")
    ingest = s3_server.server(
        tmp_path / "a", tmp_path / "a.log", root, *fast, f"storage.spool={tmp_path / 'spool'}"
    )
    fresh = s3_server.server(tmp_path / "c", tmp_path / "c.log", root, "ingest.enabled=false")
    point = "live/fault"
    seconds = 40
    encoder: subprocess.Popen[bytes] | None = None
    try:
        ingest.start()
        encoder = subprocess.Popen(
            flv_args(ingest.rtmp_url(point), seconds),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: video_fragments(ingest, point) >= 4, 30, "fragments before the outage")
        playlist = f"{ingest.url}/{point}.isml/fault-video.m3u8"
        before = segment_uris(playlist)
        s3_server.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(20)
            during = segment_uris(playlist)
            assert ingest.events("spool.started"), "nothing was spooled"
            # Served meanwhile: the playlist grew, and its newest segment (spooled) plays.
            assert len(during) >= len(before) + 6, (before, during)
            newest = httpx.get(f"{ingest.url}/{point}.isml/{during[-1]}", timeout=5)
            assert newest.status_code == 200 and newest.content[:1] == b"G"  # MPEG-TS sync byte
        finally:
            s3_server.proc.send_signal(signal.SIGCONT)
        encoder.wait(seconds + 30)
        ingest.settled(point)
        wait_for(lambda: bool(ingest.events("spool.flushed")), 60, "the spool flushed")
        assert not [e for e in ingest.events("rtmp.disconnected") if e.get("reason") not in (None, "eof")]
        stored = video_fragments(ingest, point)
        assert stored >= seconds // 2 - 2
        keys = [k for k in s3_server.keys(bucket, "f/live/fault/_tracks/video/") if k.endswith(".m4s")]
        assert len(keys) == stored
        assert not list((tmp_path / "spool").glob("*.op"))

        fresh.start()
        for name in ("video", "audio"):
            text = httpx.get(f"{fresh.url}/{point}.isml/fault-{name}.m3u8").text
            uris = [s.uri for s in m3u8.loads(text).segments]
            assert uris == segment_uris(f"{ingest.url}/{point}.isml/fault-{name}.m3u8"), name
            times = [int(u.rsplit("-", 1)[1].split(".")[0]) for u in uris]
            assert times == sorted(set(times)), name  # in order, no duplicate
            assert "#EXT-X-DISCONTINUITY\n" not in text, name  # no gap: nothing was lost
        stats = tmp_path / "stats"
        stats.mkdir()
        decoded = decode(f"{fresh.url}/{point}.isml/fault.m3u8", stats / "hls.txt")
        assert decoded >= seconds - 3, decoded
    finally:
        s3_server.proc.send_signal(signal.SIGCONT)
        if encoder is not None:
            encoder.kill()
            encoder.wait()
        for server in (ingest, fresh):
            if server.proc is not None:
                server.stop()
