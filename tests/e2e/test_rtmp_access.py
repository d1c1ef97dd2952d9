"""Who may publish over RTMP, and what a hostile or broken publisher does to a running ``headwater
serve``: publish tokens (global and per point), one publisher per stream unless the point takes
redundant encoders, protocol abuse next to a healthy ffmpeg publish, RTMPS, a player that verifies
the digest handshake, and SIGTERM with a publisher live.

Real clients (ffmpeg) where they can do it; :mod:`tests.rtmp_client` and raw asyncio sockets for the
bytes no real client sends."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ingest.rtmp import chunks
from ingest.rtmp.chunks import ChunkReader, Message
from media.amf0 import Value
from tests.conftest import Server, free_port, lavfi_inputs, run_ffmpeg
from tests.rtmp_client import Publisher, Tag, read_flv, statuses

pytestmark = pytest.mark.e2e

FLV = Path(__file__).parents[1] / "data" / "rtmp" / "h264_aac.flv"  # 2 s; keyframes at 0 and 1000 ms
VIDEO_SCALE = 90_000
PEER = re.compile(r"127\.0\.0\.1:\d+")
UNAUTHORIZED = "NetStream.Publish.Unauthorized"
BAD_NAME = "NetStream.Publish.BadName"


# -- clients ----------------------------------------------------------------------------------------


def encoder_args(url: str, *extra: str, seconds: float = 2, realtime: bool = False) -> list[str]:
    """ffmpeg publishing H.264 (1 s GOPs, so one fragment per second) and AAC to ``url``."""
    return [
        *lavfi_inputs(seconds, realtime=realtime),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "25",
        "-keyint_min",
        "25",
        "-sc_threshold",
        "0",
        "-c:a",
        "aac",
        "-b:a",
        "64k",
        *extra,
        "-f",
        "flv",
        url,
    ]


def publish_ffmpeg(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """2 s of media as fast as the server takes it."""
    return run_ffmpeg(*encoder_args(url, *extra), timeout=60)


def start_encoder(url: str, seconds: float) -> subprocess.Popen[str]:
    """ffmpeg publishing in real time, in the background."""
    args = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error"]
    return subprocess.Popen(
        [*args, *encoder_args(url, seconds=seconds, realtime=True)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_encoder(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()  # ffmpeg ends the stream cleanly on SIGTERM
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RawClient:
    """One RTMP connection driven byte by byte, built with :class:`tests.rtmp_client.Publisher`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.client = Publisher()
        self.replies = ChunkReader(max_chunk_size=1 << 24, max_message_size=1 << 24)
        self.statuses: list[dict[str, Value]] = []
        self.handshaken = False
        host, port = writer.get_extra_info("sockname")[:2]
        self.peer = f"{host}:{port}"

    @classmethod
    async def open(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def handshake(self) -> None:
        self.send(self.client.c0c1())
        s0s1s2 = await asyncio.wait_for(self.reader.readexactly(1 + 2 * 1536), 5)
        self.send(self.client.c2(s0s1s2))
        self.handshaken = True

    async def connect(self, app: str = "live") -> None:
        """Handshake and ``connect``, answered with NetConnection.Connect.Success."""
        await self.handshake()
        self.send(self.client.connect(app))
        assert (await self.status("NetConnection.Connect"))["code"] == "NetConnection.Connect.Success"

    async def publish(self, name: str) -> str:
        """``publish`` after ``connect``; the code of the server's answer."""
        self.send(self.client.publish(name))
        return str((await self.status("NetStream.Publish"))["code"])

    def media(self, tags: list[Tag], shift: int = 0) -> None:
        for tag in tags:
            self.send(self.client.tag(tag, tag.timestamp + shift))

    async def status(self, prefix: str, timeout: float = 10) -> dict[str, Value]:
        seen = 0
        while True:
            for info in self.statuses[seen:]:
                if str(info.get("code", "")).startswith(prefix):
                    return info
            seen = len(self.statuses)
            data = await asyncio.wait_for(self.reader.read(1 << 16), timeout)
            assert data, f"connection closed while waiting for {prefix}; got {self.statuses}"
            self.statuses += statuses(self.replies.feed(data))

    async def closed(self, timeout: float = 10) -> float:
        """Seconds until the server closes the connection (end of stream or reset)."""
        start = time.monotonic()
        try:
            while data := await asyncio.wait_for(self.reader.read(1 << 16), timeout):
                if self.handshaken:
                    self.statuses += statuses(self.replies.feed(data))
        except ConnectionResetError:
            pass
        return time.monotonic() - start

    def close(self) -> None:
        self.writer.close()


def message(type_id: int, payload: bytes, stream_id: int = 0, csid: int = 3) -> Message:
    return Message(type_id, stream_id, 0, payload, csid)


def tls_client_hello() -> bytes:
    """The first flight of a real TLS client."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


# -- server side ----------------------------------------------------------------------------------


def find_event(server: Server, name: str, timeout: float = 10, **match: object) -> dict[str, object]:
    """The first ``name`` event whose fields equal ``match``, waiting for it."""
    deadline = time.monotonic() + timeout
    while True:
        for entry in server.events(name):
            if all(entry.get(k) == v for k, v in match.items()):
                return entry
        if time.monotonic() > deadline:
            raise AssertionError(f"no {name} event with {match}; log:\n{server.log_path.read_text()[-4000:]}")
        time.sleep(0.05)


def closed_reason(server: Server, peer: str) -> str:
    return str(find_event(server, "rtmp.closed", peer=peer)["reason"])


def tracks(server: Server, point: str) -> dict[str, dict[str, int]]:
    """The point's tracks by name; none while the point does not exist."""
    response = httpx.get(f"{server.url}/{point}.isml/state", timeout=5)
    if response.status_code == 404:
        return {}
    response.raise_for_status()
    return {t["name"]: t for t in response.json()["tracks"]}


def fragments(server: Server, point: str, track: str = "video") -> int:
    return int(tracks(server, point).get(track, {}).get("fragments", 0))


def wait_for(check: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def assert_contiguous(server: Server, point: str) -> None:
    """Every video fragment is one 1 s GOP and they follow each other without a gap."""
    video = tracks(server, point)["video"]
    assert video["end_time"] - video["start_time"] == video["fragments"] * VIDEO_SCALE, video
    gaps = [
        (e["track"], e["expected"], e["time"]) for e in server.events("track.gap") if e["channel"] == point
    ]
    assert not gaps, f"gaps (track, stored end, next fragment): {gaps}"


def point_absent(server: Server, point: str) -> bool:
    response = httpx.get(f"{server.url}/{point}.isml/state", timeout=5)
    return response.status_code == 404 and not (server.root / point).exists()


def smil(**options: str) -> str:
    metas = "".join(f'<meta name="{k}" content="{v}"/>' for k, v in options.items())
    return f'<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>{metas}</head><body/></smil>'


def create_point(server: Server, point: str, **options: str) -> httpx.Response:
    response = httpx.put(f"{server.url}/{point}.isml", content=smil(**options), timeout=5)
    assert response.status_code == 201, response.text
    return response


def refused_by_ffmpeg(server: Server, url: str, stream: str, code: str, *extra: str) -> str:
    """Publish with ffmpeg, expect the refusal ``code``; returns the server's reason."""
    before = len(server.events("rtmp.rejected"))
    result = publish_ffmpeg(url, *extra)
    assert result.returncode != 0
    rejected = server.wait_events("rtmp.rejected", before + 1)[before:]
    assert len(rejected) == 1, rejected
    entry = rejected[0]
    assert (entry["code"], entry["stream"]) == (code, stream)
    assert PEER.fullmatch(str(entry["peer"])), entry
    reason = str(entry["reason"])
    assert f"Server error: {reason}" in result.stderr  # ffmpeg shows the server's description
    assert closed_reason(server, str(entry["peer"])) == reason
    return reason


def published_by_ffmpeg(server: Server, url: str, point: str, *extra: str) -> dict[str, object]:
    before = len(server.events("rtmp.publish"))
    result = publish_ffmpeg(url, *extra)
    assert result.returncode == 0, result.stderr
    assert server.wait_events("rtmp.publish", before + 1)[before]["channel"] == point
    state = server.settled(point)
    assert state["state"] == "stopped"
    return state


# -- publish tokens --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("token")
    server = Server(base / "root", base / "server.log", ["ingest.token=s3cret"]).start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("path", "stream", "why"),
    [("live/anon", "anon", "a publish token is required"), ("live/wrong?t=wrong", "wrong", "token is wrong")],
)
def test_global_token_refuses(token_server: Server, path: str, stream: str, why: str) -> None:
    reason = refused_by_ffmpeg(token_server, token_server.rtmp_url(path), stream, UNAUTHORIZED)
    assert why in reason
    assert "s3cret" not in reason
    assert point_absent(token_server, f"live/{stream}")


@pytest.mark.parametrize(
    ("path", "extra", "app"),
    [
        ("live/key?t=s3cret", (), "live"),  # on the stream key
        ("live?t=s3cret/onapp", (), "live?t=****"),  # ffmpeg: app "live?t=s3cret", playpath "onapp"
        ("live/opts", ("-rtmp_app", "live?t=s3cret", "-rtmp_playpath", "opts"), "live?t=****"),
    ],
)
def test_global_token_accepted(token_server: Server, path: str, extra: tuple[str, ...], app: str) -> None:
    name = path.rpartition("/")[2].partition("?")[0]
    state = published_by_ffmpeg(token_server, token_server.rtmp_url(path), f"live/{name}", *extra)
    assert {t["name"]: t["fragments"] for t in state["tracks"]} == {"video": 2, "audio": 2}  # type: ignore[attr-defined]
    connected = [e for e in token_server.events("rtmp.connected") if e["app"] == app]
    assert connected, token_server.events("rtmp.connected")
    assert not any("s3cret" in str(e.get("stream")) for e in token_server.events("rtmp.publish"))
    assert "s3cret" not in token_server.log_path.read_text()  # tokens stay out of the log


def assert_token_redacted(server: Server, point: str, token: str) -> None:
    manifest = httpx.get(f"{server.url}/{point}.isml", timeout=5).text
    assert re.search(r'name="publish_token"\s+content="\*{8}"', manifest), manifest
    assert f'"{token}"' not in manifest
    assert server.state(point)["options"]["publish_token"] == "********"  # type: ignore[index]


def test_point_token_with_global_token(token_server: Server) -> None:
    created = create_point(token_server, "live/p", publish_token="pt")
    assert "********" in created.text and '"pt"' not in created.text
    assert_token_redacted(token_server, "live/p", "pt")
    for path in ("live/p", "live/p?t=wrong"):
        refused_by_ffmpeg(token_server, token_server.rtmp_url(path), "p", UNAUTHORIZED)
    assert not tracks(token_server, "live/p")
    published_by_ffmpeg(token_server, token_server.rtmp_url("live/p?t=pt"), "live/p")
    published_by_ffmpeg(token_server, token_server.rtmp_url("live/p?t=s3cret"), "live/p")
    assert fragments(token_server, "live/p") == 4
    assert_token_redacted(token_server, "live/p", "pt")


# -- one running server, a healthy publisher, and everything that should not disturb it -------------


@dataclass
class Healthy:
    """A real-time ffmpeg publish to ``live/healthy`` that runs through the module."""

    server: Server
    proc: subprocess.Popen[str]
    peer: str

    def check(self) -> None:
        assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
        assert httpx.get(f"{self.server.url}/healthz", timeout=2).status_code == 200
        assert self.server.state("live/healthy")["state"] == "started"

    def fragments(self) -> int:
        return fragments(self.server, "live/healthy")


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Healthy]:
    base = tmp_path_factory.mktemp("hostile")
    settings = [
        "ingest.rtmp_handshake_timeout=1",
        "ingest.read_timeout=2",
        "ingest.rtmp_max_chunk_size=64KiB",
        "ingest.rtmp_max_message_size=256KiB",
    ]
    server = Server(base / "root", base / "server.log", settings).start()
    proc = start_encoder(server.rtmp_url("live/healthy"), seconds=300)
    try:
        peer = str(find_event(server, "rtmp.publish", channel="live/healthy")["peer"])
        assert wait_for(lambda: fragments(server, "live/healthy") >= 1)
        yield Healthy(server, proc, peer)
    finally:
        stop_encoder(proc)
        server.stop()


def test_point_token_without_global_token(healthy: Healthy) -> None:
    server = healthy.server
    create_point(server, "live/pp", publish_token="pt")
    assert_token_redacted(server, "live/pp", "pt")
    assert "required" in refused_by_ffmpeg(server, server.rtmp_url("live/pp"), "pp", UNAUTHORIZED)
    refused_by_ffmpeg(server, server.rtmp_url("live/pp?t=s3cret"), "pp", UNAUTHORIZED)
    published_by_ffmpeg(server, server.rtmp_url("live/pp?t=pt"), "live/pp")
    # Points without a token of their own stay open.
    published_by_ffmpeg(server, server.rtmp_url("live/open"), "live/open")
    healthy.check()


def test_second_publisher_of_a_live_stream_is_refused(healthy: Healthy) -> None:
    server = healthy.server
    reason = refused_by_ffmpeg(server, server.rtmp_url("live/healthy"), "healthy", BAD_NAME)
    assert "already being published" in reason

    async def raw() -> tuple[RawClient, str, float]:
        client = await RawClient.open(server.rtmp_port)
        await client.connect()
        code = await client.publish("healthy")
        return client, code, await client.closed(5)

    client, code, _ = asyncio.run(raw())
    assert code == BAD_NAME
    assert "already being published" in closed_reason(server, client.peer)

    # The first publisher is unaffected and keeps storing.
    before = healthy.fragments()
    assert wait_for(lambda: healthy.fragments() >= before + 2, timeout=5)
    healthy.check()
    disturbed = [e for e in server.events("rtmp.closed") if e["peer"] == healthy.peer]
    assert not disturbed


@dataclass
class RedundantRun:
    publishes: list[dict[str, object]]
    state_after_one_left: str
    playlist_after_one_left: str
    exits: tuple[int, int]


@pytest.fixture(scope="module")
def redundant(healthy: Healthy) -> RedundantRun:
    """Two time-locked encoders (two ffmpegs started together: same timestamps, same GOPs) on one
    stream of a ``redundant_encoders`` point; the second stops after 2.5 s, the first runs 5 s."""
    server = healthy.server
    create_point(server, "live/r", redundant_encoders="true")
    first = start_encoder(server.rtmp_url("live/r"), seconds=5)
    second = start_encoder(server.rtmp_url("live/r"), seconds=2.5)
    try:
        second_exit = second.wait(20)
        running = first.poll() is None
        time.sleep(0.3)
        state = str(server.state("live/r")["state"]) if running else "first encoder ended early"
        playlist = httpx.get(f"{server.url}/live/r.isml/x-video.m3u8", timeout=5).text
        first_exit = first.wait(20)
    finally:
        stop_encoder(first)
        stop_encoder(second)
    server.settled("live/r")
    publishes = [e for e in server.events("rtmp.publish") if e["channel"] == "live/r"]
    return RedundantRun(publishes, state, playlist, (first_exit, second_exit))


def test_redundant_encoders_are_both_taken(redundant: RedundantRun, healthy: Healthy) -> None:
    assert redundant.exits == (0, 0)
    assert [e["redundant"] for e in redundant.publishes] == [True, True]
    server = healthy.server
    ends = [e for e in server.events("rtmp.unpublished") if e["channel"] == "live/r"]
    assert {e["peer"] for e in ends} == {e["peer"] for e in redundant.publishes}
    assert sum(int(str(e["duplicates"])) for e in ends) > 0  # the same fragments came twice
    assert server.state("live/r")["state"] == "stopped"
    healthy.check()


def test_redundant_encoders_point_stays_live_while_one_remains(redundant: RedundantRun) -> None:
    """One encoder's FCUnpublish must not end tracks another encoder is still publishing."""
    # The point's state, and whether its HLS playlist tells players the event is over.
    ended = "#EXT-X-ENDLIST" in redundant.playlist_after_one_left
    assert (redundant.state_after_one_left, ended) == ("started", False)


def test_redundant_encoders_archive_is_continuous(redundant: RedundantRun, healthy: Healthy) -> None:
    """The encoder that leaves mid-GOP must not leave its half GOP in the archive: the other
    encoder's whole GOP has the same decode time and would be dropped as its duplicate."""
    assert_contiguous(healthy.server, "live/r")
    video = tracks(healthy.server, "live/r")["video"]
    assert video["end_time"] - video["start_time"] == 5 * VIDEO_SCALE


def test_redundant_first_encoder_falling_behind_stands_by(healthy: Healthy) -> None:
    """Redundant encoders with the same clock: the second is ahead of the first. The one behind
    has its fragments dropped and stays connected, whichever of the two published first."""
    server = healthy.server
    create_point(server, "live/rb", redundant_encoders="true")
    tags = read_flv(FLV)

    async def run() -> tuple[RawClient, RawClient]:
        first, second = await RawClient.open(server.rtmp_port), await RawClient.open(server.rtmp_port)
        await first.connect()
        assert await first.publish("rb") == "NetStream.Publish.Start"
        await second.connect()
        assert await second.publish("rb") == "NetStream.Publish.Start"
        second.media(tags, shift=500)  # the same media, half a second ahead
        await second.writer.drain()
        assert await asyncio.to_thread(wait_for, lambda: fragments(server, "live/rb") >= 1)
        first.media(tags)
        await first.writer.drain()
        await asyncio.sleep(0.5)
        for client in (first, second):
            client.send(client.client.unpublish("rb"))
            await client.writer.drain()
            client.close()
        return first, second

    first, second = asyncio.run(run())
    for client in (first, second):
        assert closed_reason(server, client.peer) == "the encoder closed the connection"
    ends = {e["peer"]: e for e in server.events("rtmp.unpublished") if e["channel"] == "live/rb"}
    assert set(ends) == {first.peer, second.peer}
    assert ends[first.peer]["dropped"]
    healthy.check()


Scenario = Callable[[RawClient], Awaitable[None]]


async def raw_session(scenario: Scenario, port: int) -> tuple[RawClient, float]:
    """Open a connection and run ``scenario`` on it; returns the client and the seconds from the
    end of the scenario until the server closed the connection."""
    client = await RawClient.open(port)
    try:
        await scenario(client)
        await client.writer.drain()
        return client, await client.closed(10)
    finally:
        client.close()


def run_raw(scenario: Scenario, port: int) -> tuple[RawClient, float]:
    return asyncio.run(raw_session(scenario, port))


def sends(make: Callable[[], bytes]) -> Scenario:
    async def scenario(client: RawClient) -> None:
        client.send(make())

    return scenario


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "this is HTTP"),
        (lambda: b"\x99" + os.urandom(3000), "C0 version 153 is not supported"),
        (tls_client_hello, "TLS handshake"),
    ],
    ids=["http", "random", "tls"],
)
def test_not_rtmp(healthy: Healthy, make: Callable[[], bytes], reason: str) -> None:
    client, after = run_raw(sends(make), healthy.server.rtmp_port)
    assert after < 1  # closed at once, not after the handshake timeout
    closed = find_event(healthy.server, "rtmp.closed", peer=client.peer)
    assert reason in str(closed["reason"])
    assert closed["level"] == "warning"
    healthy.check()


def test_stalled_handshakes_time_out(healthy: Healthy) -> None:
    """``ingest.rtmp_handshake_timeout`` = 1 s covers the handshake, connect and publish."""

    async def connects(client: RawClient) -> None:
        await client.connect()

    stalls = [sends(lambda: b""), sends(lambda: b"\x03"), sends(Publisher().c0c1), connects]

    async def run() -> list[tuple[RawClient, float]]:
        return await asyncio.gather(*(raw_session(s, healthy.server.rtmp_port) for s in stalls))

    for client, after in asyncio.run(run()):
        assert 0.8 < after < 2.5
        assert "ingest.rtmp_handshake_timeout" in closed_reason(healthy.server, client.peer)
    healthy.check()


def after_connect(send: Callable[[RawClient], bytes]) -> Scenario:
    async def scenario(client: RawClient) -> None:
        await client.connect()
        client.send(send(client))

    return scenario


def after_publish(send: Callable[[RawClient], bytes], name: str) -> Scenario:
    async def scenario(client: RawClient) -> None:
        await client.connect()
        assert await client.publish(name) == "NetStream.Publish.Start"
        client.send(send(client))

    return scenario


def too_big_chunk_size(client: RawClient) -> bytes:
    return client.client.writer.write(message(chunks.SET_CHUNK_SIZE, (1 << 20).to_bytes(4, "big"), csid=2))


def too_long_message(client: RawClient) -> bytes:
    # Only the header: the server must refuse on the declared length, without waiting for the body.
    header = bytes([0x06]) + (0).to_bytes(3, "big") + (300_000).to_bytes(3, "big") + bytes([chunks.VIDEO])
    return header + (1).to_bytes(4, "little") + b"\x17\x01" + bytes(100)


def unknown_type(client: RawClient) -> bytes:
    return client.client.writer.write(message(30, b"\x00" * 8))


def early_video(client: RawClient) -> bytes:
    return client.client.tag(Tag(chunks.VIDEO, 0, b"\x17\x01\x00\x00\x00" + bytes(16)), 0)


def sorenson(client: RawClient) -> bytes:
    return client.client.tag(Tag(chunks.VIDEO, 0, b"\x12" + bytes(32)), 0)  # keyframe, codec id 2


def mp3_after_media(client: RawClient) -> bytes:
    tags = read_flv(FLV)
    media = b"".join(client.client.tag(t, t.timestamp) for t in tags)
    return media + client.client.tag(Tag(chunks.AUDIO, 2100, b"\x2f" + bytes(64)), 2100)  # MP3


@pytest.mark.parametrize(
    ("scenario", "reason"),
    [
        (after_connect(too_big_chunk_size), "Set Chunk Size 1048576 is outside 128..65536"),
        (after_connect(too_long_message), "message of 300000 bytes is over the limit of 262144"),
        (after_connect(unknown_type), "unknown message type 30"),
        (after_connect(early_video), "video on message stream 1 before a successful publish"),
        (after_publish(sorenson, "sorenson"), "FLV video codec Sorenson H.263 is not supported"),
    ],
    ids=["chunk-size", "message-size", "message-type", "media-before-publish", "sorenson"],
)
def test_protocol_abuse_closes_the_connection(healthy: Healthy, scenario: Scenario, reason: str) -> None:
    client, after = run_raw(scenario, healthy.server.rtmp_port)
    assert after < 1
    closed = find_event(healthy.server, "rtmp.closed", peer=client.peer)
    assert reason in str(closed["reason"])
    assert closed["level"] == "warning"
    healthy.check()


def test_unknown_codec_after_media_keeps_what_was_sent(healthy: Healthy) -> None:
    """2 s of H.264/AAC, then an MP3 audio message: closed, what came before is stored (the open
    GOP too), and the point stays live."""
    server = healthy.server
    client, after = run_raw(after_publish(mp3_after_media, "mp3"), server.rtmp_port)
    assert after < 1
    assert "FLV audio codec MP3 is not supported" in closed_reason(server, client.peer)
    find_event(server, "rtmp.disconnected", channel="live/mp3")
    assert server.state("live/mp3")["state"] == "started"
    video = tracks(server, "live/mp3")["video"]
    assert video["fragments"] == 2 and video["end_time"] >= 1960 * 90
    healthy.check()


def test_silent_publisher_times_out_and_its_media_is_kept(healthy: Healthy) -> None:
    """A publisher that stops sending: closed after ``ingest.read_timeout`` (2 s); what it sent is
    stored, including the fragment still open, and the point stays live."""
    server = healthy.server
    tags = read_flv(FLV)
    stored_early: list[int] = []

    async def scenario(client: RawClient) -> None:
        await client.connect()
        assert await client.publish("silent") == "NetStream.Publish.Start"
        client.media(tags)
        await client.writer.drain()
        await asyncio.sleep(0.7)
        stored_early.append(fragments(server, "live/silent"))

    client, after = run_raw(scenario, server.rtmp_port)
    assert 0.8 < after < 3.5  # 2 s after the last byte, 0.7 s of which passed in the scenario
    assert stored_early == [1]  # the last GOP is still open
    assert "ingest.read_timeout" in closed_reason(server, client.peer)
    disconnected = find_event(server, "rtmp.disconnected", channel="live/silent")
    state = server.state("live/silent")
    assert state["state"] == "started"
    video = tracks(server, "live/silent")
    assert video["video"]["fragments"] == 2 and video["video"]["end_time"] >= 1960 * 90
    assert video["audio"]["end_time"] >= 2064 * 48
    assert disconnected["stored"] == video["video"]["fragments"] + video["audio"]["fragments"]
    healthy.check()


def test_player_passes_the_digest_handshake(healthy: Healthy) -> None:
    """ffmpeg as a player sends a digest C1 and checks the server's S1 and S2 digests."""
    server = healthy.server
    before = len(server.events("rtmp.play_refused"))
    result = run_ffmpeg("-i", server.rtmp_url("live/healthy"), "-f", "null", "-", timeout=30)
    assert result.returncode != 0
    assert "publishing only; play this stream over HLS, DASH or Smooth" in result.stderr
    assert not re.search(r"handshake|validat|digest|signature", result.stderr, re.IGNORECASE), result.stderr
    refused = server.wait_events("rtmp.play_refused", before + 1)[before]
    assert refused["stream"] == "healthy"
    connected = find_event(server, "rtmp.connected", peer=refused["peer"])
    assert str(connected["client"]).startswith("LNX 9,0,124,2")  # ffmpeg's player handshake
    # The server ended the connection: its log must not blame the client.
    assert "play" in closed_reason(server, str(refused["peer"]))
    healthy.check()


def test_healthy_publisher_kept_storing_throughout(healthy: Healthy) -> None:
    """Last in the module: the real-time publish took every case above without a break."""
    healthy.check()
    folder = healthy.server.root / "live/healthy/_tracks/video"
    times = sorted(p.stat().st_mtime for p in folder.glob("*.m4s"))
    assert len(times) >= 3
    assert max(b - a for a, b in itertools.pairwise(times)) < 1.8  # one 1 s GOP at a time
    assert_contiguous(healthy.server, "live/healthy")
    assert not [e for e in healthy.server.events("rtmp.closed") if e["peer"] == healthy.peer]


# -- RTMPS -----------------------------------------------------------------------------------------


def test_rtmps(make_server: Callable[..., Server], tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    port = free_port()
    server = make_server(
        f"ingest.tls_cert={cert}", f"ingest.tls_key={key}", f"rtmps=127.0.0.1:{port}", "log.level=debug"
    )
    started = server.events("server.started")[-1]
    assert f"rtmps://127.0.0.1:{port}" in started["rtmp"]  # type: ignore[operator]

    # ffmpeg's tls protocol does not verify by default (-tls_verify 0); verifying against the
    # certificate as CA shows the listener serves the configured certificate.
    url = f"rtmps://127.0.0.1:{port}/live/tls"
    state = published_by_ffmpeg(server, url, "live/tls", "-tls_verify", "1", "-ca_file", str(cert))
    assert {t["name"]: t["fragments"] for t in state["tracks"]} == {"video": 2, "audio": 2}  # type: ignore[attr-defined]
    assert find_event(server, "rtmp.connected", tc_url=f"rtmps://127.0.0.1:{port}/live")

    # Plain RTMP on the TLS port is not taken, and the server carries on.
    async def plain() -> None:
        client = await RawClient.open(port)
        client.send(client.client.c0c1())
        await client.closed(5)

    asyncio.run(plain())
    assert httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200


# -- shutdown --------------------------------------------------------------------------------------


def test_sigterm_with_a_live_publisher(make_server: Callable[..., Server]) -> None:
    server = make_server("shutdown_timeout=5")
    encoder = start_encoder(server.rtmp_url("live/term"), seconds=60)
    try:
        assert wait_for(lambda: fragments(server, "live/term") >= 2)
        time.sleep(0.5)  # into the third GOP
        whole = fragments(server, "live/term")
        started = time.monotonic()
        assert server.stop(signal.SIGTERM, timeout=15) == 0
        assert time.monotonic() - started < 5
        encoder.wait(10)
    finally:
        stop_encoder(encoder)
    publish = find_event(server, "rtmp.publish", channel="live/term")
    disconnected = find_event(server, "rtmp.disconnected", channel="live/term")
    assert disconnected["reason"] == "the server is shutting down"
    assert disconnected["peer"] == publish["peer"]

    server.start()
    after = tracks(server, "live/term")
    assert disconnected["stored"] == after["video"]["fragments"] + after["audio"]["fragments"]
    assert after["video"]["fragments"] >= whole + 1  # the GOP still open at the signal too


def test_a_stale_publisher_is_taken_over(make_server: Callable[..., Server]) -> None:
    """An encoder whose network dropped reconnects while its old connection still looks open (no
    FIN, read_timeout 30 s away): once the old one has sent nothing for 3 s, the new publish takes
    the stream over; the old connection is closed and what it sent is stored."""
    server = make_server()
    tags = read_flv(FLV)

    async def run() -> RawClient:
        old = await RawClient.open(server.rtmp_port)
        await old.connect()
        assert await old.publish("drop") == "NetStream.Publish.Start"
        old.media(tags)
        await old.writer.drain()
        await asyncio.sleep(1)  # still sending, as far as the server can tell
        new = await RawClient.open(server.rtmp_port)
        await new.connect()
        assert await new.publish("drop") == BAD_NAME
        new.close()
        await asyncio.sleep(2.5)  # now 3.5 s without media
        again = await RawClient.open(server.rtmp_port)
        await again.connect()
        assert await again.publish("drop") == "NetStream.Publish.Start"
        again.media(tags, shift=10_000)
        await again.writer.drain()
        await asyncio.sleep(0.5)
        again.close()
        old.close()
        return old

    old = asyncio.run(run())
    assert "taken over by a new publisher" in closed_reason(server, old.peer)
    found = tracks(server, "live/drop")
    assert found["video"]["fragments"] == 4  # two GOPs from each connection, none lost
