"""Latency benchmark: glass-to-glass latency of live HLS and DASH played in a browser, and how long
after the last byte of a chunk reaches the origin a blocked LL-HLS playlist request answers with the
part that chunk completes; nginx-rtmp's HLS as the reference. One run, one server at a time:

    python bench/latency.py [--seconds 60] [--skip 5] [--ingest-seconds 120]
                            [--only ingest,hls-rtmp,hls-cmaf,dash-rtmp,dash-cmaf,nginx]
                            [--hlsjs-config JSON] [--dashjs-config JSON] [--normal]

**Glass to glass** (``hls-rtmp``, ``hls-cmaf``, ``dash-rtmp``, ``dash-cmaf``, ``nginx``). ffmpeg
generates a 640x360 30 fps ``testsrc2`` paced at real time by the ``realtime`` filter; right after
it, ``setpts=RTCTIME`` stamps each frame with the wall clock and ``geq`` burns a code strip into its
top-left corner: 32 cells of 8x8 pixels, the capture time in milliseconds modulo 2^32, most
significant bit first, white = 1, and below each cell one with the complement (a frame whose rows
are not complementary counts as unreadable, never as misread). It is encoded with libx264
``-preset veryfast -tune zerolatency``, a keyframe every 30 frames (1 s GOP), about 1.5 Mbit/s,
no audio, and pushed

- over RTMP (``-f flv rtmp://127.0.0.1:PORT/live/<name>``), or
- over CMAF HTTP ingest, one moof+mdat per frame (``-f mp4 -movflags`` ``CMAF_MOVFLAGS``, one
  chunked POST to ``/live/<name>.isml/Streams(video.cmfv)``),

into ``headwater serve`` (a fresh content root per run) whose point is first created with
``PUT /live/<name>.isml`` and the options ``LL_OPTIONS`` (when the server refuses them, the run
goes on without and says so). Headless Chromium plays the stream through the browser harness of
the end-to-end tests (``tests/e2e/players``, ``play(..., clock=True)``): hls.js with
``lowLatencyMode`` on ``/live/<name>.isml/<name>.m3u8``, dash.js with live catch-up on
``…/<name>.mpd``. On every displayed frame (``requestVideoFrameCallback``) the page decodes the
strip; latency = display time - capture time, both from the one system clock. The figures are the
median and 90th percentile over ``--seconds`` of playback after the first ``--skip`` seconds
(start-up), the frames read, stalls (``waiting`` events) and seeks after start-up, and the player's
own latency estimate. ``--normal`` creates the points without ``LL_OPTIONS`` and plays them in the
players' normal modes: the same server's baseline without low latency. ``nginx``: nginx with
libnginx-mod-rtmp, ``NGINX_HLS`` (``hls_fragment 1s; hls_playlist_length 4s``, the shortest that its
1 s GOP allows), the same source pushed over RTMP and its HLS played with hls.js in normal mode
(nginx-rtmp has no low-latency HLS), measured the same way. The table gives each median as a ratio
of nginx-rtmp's.

**Ingest to blocked playlist** (``ingest``). A pre-encoded 640x360 30 fps H.264 CMAF track (made
once with ffmpeg, one moof+mdat per frame) is POSTed by this process over a raw socket with chunked
transfer, one HTTP chunk per frame, paced at real time (a frame is sent once its duration has
elapsed), recording when the last byte of each chunk was written, keyed by its end decode time
(parsed from tfdt/trun). Meanwhile an httpx client reads the master playlist, then loops LL-HLS
blocking requests ``<media playlist>?_HLS_msn=M&_HLS_part=N`` for the part after the newest it has
seen. For each part an answer lists for the first time (``#EXT-X-PART:…URI="…-<time>.part.m4s"``,
<time> its start in the track timescale), delay = time the answer was read - time the chunk ending
at <time> + DURATION was sent. Only parts the request was already waiting for count (a part complete
before its request was sent says nothing about blocking); a new part listed before the one asked for
(an earlier playlist failed to announce it) is reported apart. Printed: p50, p99, max, count. A
server without parts in its playlists is reported as "not supported".

Everything listens on 127.0.0.1 and is stopped at the end, also on Ctrl-C or failure. On two cores
the defaults take about 9 minutes. Needs ffmpeg, nginx with the RTMP module, Chromium and Node.js
with the harness's npm packages (Debian: ``apt-get install -y --no-install-recommends ffmpeg nginx
libnginx-mod-rtmp chromium nodejs npm``, then ``npm ci --prefix tests/e2e/players``, which
``bash scripts/test.sh`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from urllib.parse import urljoin

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.procs import free_port, nginx_rtmp_conf, rtmp_module, stop_tree  # noqa: E402
from ingest.fmp4 import Fmp4Receiver, FragmentReceived, TracksDeclared  # noqa: E402
from media.bmff import BoxReader  # noqa: E402
from tests.e2e.players import HarnessError, PlayResult, play, unavailable_reason  # noqa: E402

# The publishing-point options that turn low latency on (PUT as the server manifest's <meta>).
LL_OPTIONS = {"low_latency": "true", "part_duration": "0.34"}
# nginx-rtmp's HLS settings for the reference.
NGINX_HLS = {"hls_fragment": "1s", "hls_playlist_length": "4s"}
# How ffmpeg cuts its CMAF ingest: one fragment per frame (chunks as small as a CMAF encoder sends).
CMAF_MOVFLAGS = "empty_moov+separate_moof+default_base_moof+frag_every_frame+cmaf"

APP = "live"
SIZE = "640x360"
FPS = 30
GOP = 30  # frames: 1 s
BITRATE = "1500k"
X264 = [
    "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
    "-g", str(GOP), "-keyint_min", str(GOP), "-sc_threshold", "0",
    "-b:v", BITRATE, "-maxrate", BITRATE, "-bufsize", BITRATE,
]  # fmt: skip
# The clock strip; tests/e2e/players/page.js (CLOCK) reads the same geometry.
CELL = 8  # pixels per side of one cell
BITS = 32  # cells per row: the capture time in ms modulo 2^BITS
RUNS = ("ingest", "hls-rtmp", "hls-cmaf", "dash-rtmp", "dash-cmaf", "nginx")
READY_TIMEOUT = 30.0  # seconds for a server to listen, or a pushed stream to show in its playlist
WARM_UP = 4.0  # seconds of media to let the origin gather before the player starts
START_TIMEOUT = 30.0  # play(): seconds for playback to start


# -- processes ----------------------------------------------------------------------------------


class Interrupted(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: every process started here is stopped on the way out."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


def tail(path: Path, lines: int = 12) -> str:
    with contextlib.suppress(OSError):
        text = path.read_text(errors="replace").strip().splitlines()
        return "\n    ".join(text[-lines:])
    return ""


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    stop_signal: signal.Signals

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        stop_tree(self.proc, self.stop_signal, timeout=20)


def spawn(
    stack: contextlib.ExitStack, name: str, argv: list[str], log: Path, stop_signal: signal.Signals
) -> Service:
    """Start a process (its own session: a Ctrl-C reaches us, and we stop it), stopped when
    ``stack`` closes."""
    out = log.open("ab")
    stack.callback(out.close)
    proc = subprocess.Popen(
        argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
    )
    service = Service(name, proc, log, stop_signal)
    stack.callback(service.stop)
    return service


def wait_http(
    services: list[Service], url: str, ready: str | None = None, timeout: float = READY_TIMEOUT
) -> str:
    """Poll ``url`` until it answers 200 (with ``ready`` in the body, when given); the body. Fails
    when one of ``services`` exits meanwhile."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        for service in services:
            if not service.alive():
                raise RuntimeError(
                    f"{service.name} exited with {service.proc.returncode}:\n    {tail(service.log)}"
                )
        try:
            response = httpx.get(url, timeout=2)
            last = f"HTTP {response.status_code}"
            if response.status_code == 200 and (ready is None or ready in response.text):
                return response.text
        except httpx.TransportError as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s ({last})")


@dataclass
class Headwater:
    service: Service
    http: int
    rtmp: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"


def start_headwater(stack: contextlib.ExitStack, work: Path) -> Headwater:
    http, rtmp = free_port(), free_port()
    argv = [
        sys.executable, "-m", "origin.cli", "serve", "--root", str(work / "root"),
        "--http", f"127.0.0.1:{http}", "--rtmp", f"127.0.0.1:{rtmp}", "--set", "log.level=warning",
    ]  # fmt: skip
    service = spawn(stack, "headwater", argv, work / "headwater.log", signal.SIGTERM)
    server = Headwater(service, http, rtmp)
    wait_http([service], f"{server.url}/healthz")
    return server


def create_point(server: Headwater, name: str, low_latency: bool = True) -> str:
    """PUT the point with LL_OPTIONS (with ``low_latency``); without them when the server refuses
    them. What was done."""
    url = f"{server.url}/{APP}/{name}.isml"
    if not low_latency:
        response = httpx.put(url, timeout=10)
        if response.status_code != 201:
            raise RuntimeError(f"PUT {url} failed: HTTP {response.status_code} {response.text[:300]}")
        return "normal (--normal)"
    metas = "".join(f'<meta name="{k}" content="{v}"/>' for k, v in LL_OPTIONS.items())
    smil = (
        '<?xml version="1.0" encoding="utf-8"?><smil xmlns="http://www.w3.org/2001/SMIL20/Language">'
        f"<head>{metas}</head></smil>"
    )
    headers = {"Content-Type": "application/smil+xml"}
    response = httpx.put(url, content=smil.encode(), headers=headers, timeout=10)
    if response.status_code == 201:
        return "LL"
    refusal = f"HTTP {response.status_code} {response.text[:200]}"
    response = httpx.put(url, timeout=10)
    if response.status_code != 201:
        raise RuntimeError(f"PUT {url} failed: HTTP {response.status_code} {response.text[:300]}")
    return f"normal (LL options refused: {refusal})"


@dataclass
class Nginx:
    service: Service
    http: int
    rtmp: int


def start_nginx(stack: contextlib.ExitStack, work: Path) -> Nginx:
    prefix = work / "nginx"
    hls = prefix / "hls"
    hls.mkdir(parents=True)
    http, rtmp = free_port(), free_port()
    served = f"""http {{
    access_log off;
    server {{
        listen 127.0.0.1:{http};
        location /hls/ {{
            alias {hls}/;
            types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
            add_header Cache-Control no-cache always;
            add_header Access-Control-Allow-Origin * always;
        }}
    }}
}}
"""
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_rtmp_conf(prefix, rtmp, APP, NGINX_HLS, connections=256, http=served))
    argv = ["nginx", "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log")]
    service = spawn(stack, "nginx", argv, prefix / "error.log", signal.SIGQUIT)
    deadline = time.monotonic() + READY_TIMEOUT
    while True:  # nginx-rtmp closes a connection that sends nothing without a word: probing is fine
        if not service.alive():
            raise RuntimeError(f"nginx exited with {service.proc.returncode}:\n    {tail(service.log)}")
        try:
            with socket.create_connection(("127.0.0.1", rtmp), 1):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx does not listen on {rtmp}") from None
            time.sleep(0.05)
    return Nginx(service, http, rtmp)


# -- the clock source ---------------------------------------------------------------------------


def clock_graph() -> str:
    """The ffmpeg filter graph of the source: test pattern, paced at real time, stamped with the wall
    clock (ms) right after pacing, the stamp burned in as the strip, then timestamps 0, 1, 2… at
    1/FPS for the encoder."""
    width, height = CELL * BITS, CELL * 2
    code = f"mod(floor(T*1000+0.5)\\,{2**BITS})"
    bit = f"mod(floor({code}/pow(2\\,{BITS - 1}-floor(X/{CELL})))+gte(Y\\,{CELL})\\,2)"
    return (
        f"testsrc2=size={SIZE}:rate={FPS},realtime,settb=1/1000,setpts=RTCTIME/1000,format=yuv420p,"
        f"split[pic][raw];[raw]crop={width}:{height}:0:0,geq=lum='255*{bit}':cb=128:cr=128[strip];"
        f"[pic][strip]overlay=0:0,settb=1/{FPS},setpts=N[out]"
    )


def push(stack: contextlib.ExitStack, work: Path, name: str, seconds: float, url: str, kind: str) -> Service:
    """ffmpeg pushing the clock source to ``url`` (``kind`` rtmp or cmaf) for ``seconds``."""
    out = ["-f", "flv", url] if kind == "rtmp" else ["-f", "mp4", "-movflags", CMAF_MOVFLAGS, url]
    argv = [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-filter_complex", clock_graph(), "-map", "[out]", "-t", f"{seconds:.0f}",
        *X264, "-flush_packets", "1", *out,
    ]  # fmt: skip
    return spawn(stack, f"ffmpeg ({name})", argv, work / f"ffmpeg-{name}.log", signal.SIGINT)


# -- glass to glass -----------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


@dataclass
class Glass:
    run: str
    player: str
    ingest: str
    mode: str
    latencies: list[float] = field(default_factory=list)
    unreadable: int = 0
    stalls: int = 0
    seeks: int = 0
    player_latency: float | None = None
    advanced: float = 0.0
    measured: float = 0.0
    startup: float | None = None
    problems: list[str] = field(default_factory=list)


def play_clock(
    run: str, player: str, url: str, args: argparse.Namespace, *, low_latency: bool, mode: str, ingest: str
) -> Glass:
    config = json.loads(args.hlsjs_config if player == "hls.js" else args.dashjs_config)
    result = Glass(run, player, ingest, mode)
    try:
        played: PlayResult = play(
            player,
            url,
            seconds=args.skip + args.seconds,
            live=True,
            low_latency=low_latency,
            start_timeout=START_TIMEOUT,
            config=config,
            clock=True,
        )
    except HarnessError as exc:
        result.problems.append(f"harness: {exc}")
        return result
    result.latencies = [lat for t, lat in played.clock_latencies if t >= args.skip]
    result.unreadable = played.clock_unreadable
    result.stalls, result.seeks = played.stalls, played.seeks
    result.player_latency = played.latency
    result.advanced, result.measured = played.advanced, played.measured_seconds
    result.startup = played.startup_seconds
    result.problems += played.errors
    result.problems += [f"warning: {w}" for w in played.warnings[:5]]
    result.problems += [
        f"HTTP {f.get('status') or f.get('failure')}: {f.get('url')}" for f in played.http_failures[:5]
    ]
    if played.started and not result.latencies:
        result.problems.append(
            f"no clock frames read after {args.skip} s ({played.clock_unreadable} unreadable)"
        )
    return result


def run_headwater(run: str, args: argparse.Namespace) -> Glass:
    player = "hls.js" if run.startswith("hls") else "dash.js"
    kind = run.split("-")[1]
    name = f"clock-{run}"
    with tempfile.TemporaryDirectory(prefix="headwater-latency-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        server = start_headwater(stack, work)
        mode = create_point(server, name, not args.normal)
        point = f"{server.url}/{APP}/{name}.isml"
        target = (
            f"rtmp://127.0.0.1:{server.rtmp}/{APP}/{name}"
            if kind == "rtmp"
            else f"{point}/Streams(video.cmfv)"
        )
        duration = args.skip + args.seconds + START_TIMEOUT + 60
        ffmpeg = push(stack, work, name, duration, target, kind)
        url = f"{point}/{name}.m3u8" if player == "hls.js" else f"{point}/{name}.mpd"
        services = [server.service, ffmpeg]
        try:
            if player == "hls.js":
                master = wait_http(services, url, "#EXT-X-STREAM-INF")
                media = re.search(r"^[^#\s].*$", master, re.M)
                assert media is not None  # the ready text is there
                manifest = wait_http(services, urljoin(url, media.group(0)), "#EXTINF")
            else:
                manifest = wait_http(services, url, "<S ")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n  headwater logged:\n    {tail(server.service.log)}") from None
        if player == "hls.js":
            parts = "parts" if "#EXT-X-PART:" in manifest else "no parts"
        else:
            parts = (
                "availabilityTimeOffset"
                if "availabilityTimeOffset" in manifest
                else "no availabilityTimeOffset"
            )
        time.sleep(WARM_UP)
        ingest = "RTMP" if kind == "rtmp" else "CMAF"
        low_latency = not args.normal
        result = play_clock(
            run, player, url, args, low_latency=low_latency, mode=f"{mode}, {parts}", ingest=ingest
        )
        if not ffmpeg.alive():
            result.problems.append(f"ffmpeg exited early: {tail(ffmpeg.log, 4)}")
        if not server.service.alive():
            result.problems.append(f"headwater exited with {server.service.proc.returncode}")
        logged = tail(server.service.log, 6)
        if logged:
            result.problems.append(f"headwater logged:\n    {logged}")
    return result


def run_nginx(args: argparse.Namespace) -> Glass:
    name = "clock"
    with tempfile.TemporaryDirectory(prefix="headwater-latency-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        nginx = start_nginx(stack, work)
        duration = args.skip + args.seconds + START_TIMEOUT + 60
        ffmpeg = push(stack, work, name, duration, f"rtmp://127.0.0.1:{nginx.rtmp}/{APP}/{name}", "rtmp")
        url = f"http://127.0.0.1:{nginx.http}/hls/{name}.m3u8"
        wait_http([nginx.service, ffmpeg], url, "#EXTINF")
        time.sleep(WARM_UP)
        settings = ", ".join(f"{k} {v}" for k, v in NGINX_HLS.items())
        result = play_clock(
            "nginx", "hls.js", url, args, low_latency=False, mode=f"HLS ({settings})", ingest="RTMP"
        )
        if not ffmpeg.alive():
            result.problems.append(f"ffmpeg exited early: {tail(ffmpeg.log, 4)}")
    return result


# -- ingest to blocked playlist -----------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    data: bytes  # what goes into one HTTP chunk: moof + mdat (and any box before the moof)
    start: int  # decode time, track timescale
    end: int


@dataclass(frozen=True)
class CmafStream:
    header: bytes
    timescale: int
    chunks: list[Chunk]


def read_cmaf(data: bytes) -> CmafStream:
    """Split a fragmented MP4 (one track) into its header and its fragments, read with the
    origin's own ingest parser (decode times and durations as the origin will see them)."""
    events = Fmp4Receiver("video.cmfv", len(data)).feed(data)
    declared = next(e for e in events if isinstance(e, TracksDeclared))
    fragments = [e.fragment for e in events if isinstance(e, FragmentReceived)]
    boxes = BoxReader(len(data)).feed(data)
    first_moof = next(box.offset for box in boxes if box.type == b"moof")
    chunks: list[Chunk] = []
    pending = b""
    for box in boxes:
        if box.offset < first_moof:
            continue
        pending += box.data
        if box.type == b"mdat":
            fragment = fragments[len(chunks)]
            chunks.append(Chunk(pending, fragment.decode_time, fragment.end_time))
            pending = b""
    return CmafStream(data[:first_moof], declared.tracks[0].timescale, chunks)


def make_cmaf(path: Path, seconds: int) -> None:
    if path.exists():
        return
    tmp = path.with_suffix(".tmp.mp4")
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate={FPS}", "-t", str(seconds),
            *X264, "-f", "mp4", "-movflags", CMAF_MOVFLAGS, str(tmp),
        ],
        check=True,
    )  # fmt: skip
    tmp.rename(path)


@dataclass(frozen=True)
class Part:
    msn: int
    index: int
    duration: float
    uri: str

    @property
    def key(self) -> tuple[int, int]:
        return self.msn, self.index


PART_TIME = re.compile(r"-(\d+)\.part\.[A-Za-z0-9]+(?:\?.*)?$")


@dataclass
class Playlist:
    parts: list[Part]
    next_msn: int  # the media sequence number of the segment after the last complete one
    can_block: bool
    part_target: float | None

    def next_request(self) -> tuple[int, int]:
        """(_HLS_msn, _HLS_part) of the part after the newest listed."""
        if self.parts and self.parts[-1].msn >= self.next_msn:
            return self.parts[-1].msn, self.parts[-1].index + 1
        return self.next_msn, 0

    def satisfies(self, msn: int, part: int) -> bool:
        return any(p.key >= (msn, part) for p in self.parts) or self.next_msn > msn


def attributes(text: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in re.findall(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', text)}


def parse_playlist(text: str) -> Playlist:
    msn = 0
    index = 0
    parts: list[Part] = []
    can_block = False
    part_target = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            msn = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-SERVER-CONTROL:"):
            can_block = attributes(line.split(":", 1)[1]).get("CAN-BLOCK-RELOAD") == "YES"
        elif line.startswith("#EXT-X-PART-INF:"):
            with contextlib.suppress(KeyError, ValueError):
                part_target = float(attributes(line.split(":", 1)[1])["PART-TARGET"])
        elif line.startswith("#EXT-X-PART:"):
            attrs = attributes(line.split(":", 1)[1])
            parts.append(Part(msn, index, float(attrs.get("DURATION", "0")), attrs.get("URI", "")))
            index += 1
        elif line and not line.startswith("#"):
            msn += 1
            index = 0
    return Playlist(parts, msn, can_block, part_target)


@dataclass
class IngestResult:
    supported: bool = True
    delays: list[float] = field(default_factory=list)
    parts: int = 0  # new parts seen
    late: int = 0  # parts already complete when their request was sent
    unmatched: int = 0  # parts whose end is no chunk's end
    non_blocking: int = 0  # answers without the part asked for
    behind: int = 0  # new parts listed before the part asked for (an earlier playlist missed them)
    sent_chunks: int = 0
    notes: list[str] = field(default_factory=list)
    repeats: dict[str, int] = field(default_factory=dict)

    def note(self, text: str) -> None:
        """A note, once; repeats are counted."""
        if text not in self.repeats:
            self.notes.append(text)
        self.repeats[text] = self.repeats.get(text, 0) + 1


async def send_cmaf(
    port: int, path: str, stream: CmafStream, sent: dict[int, float], result: IngestResult
) -> None:
    """One chunked POST, one HTTP chunk per fragment, paced at real time; ``sent[end decode time]``
    = perf_counter() once the chunk's last byte is written to the socket."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: video/mp4\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        writer.write(b"%x\r\n%b\r\n" % (len(stream.header), stream.header))
        await writer.drain()
        first = stream.chunks[0].start
        t0 = time.perf_counter()
        for chunk in stream.chunks:
            due = t0 + (chunk.end - first) / stream.timescale  # the frame is whole at its end
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(b"%x\r\n%b\r\n" % (len(chunk.data), chunk.data))
            await writer.drain()
            sent[chunk.end] = time.perf_counter()
            result.sent_chunks += 1
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 30)
        if not status.split(b" ")[1:2] or not status.split(b" ")[1].startswith(b"2"):
            result.notes.append(f"ingest answered {status.decode(errors='replace').strip()!r}")
    except (TimeoutError, ConnectionError) as exc:
        data = b""
        with contextlib.suppress(Exception):
            data = await asyncio.wait_for(reader.read(2000), 2)
        result.notes.append(
            f"ingest failed after {result.sent_chunks} chunks: {exc!r} {data.decode(errors='replace')[:300]}"
        )
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def poll_blocking(
    master: str,
    stream: CmafStream,
    sent: dict[int, float],
    sender: asyncio.Task[None],
    result: IngestResult,
) -> None:
    ends = sorted(c.end for c in stream.chunks)
    half_frame = (stream.chunks[0].end - stream.chunks[0].start) // 2
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as client:
        deadline = time.monotonic() + READY_TIMEOUT
        media_url = None
        while media_url is None:
            if time.monotonic() > deadline or sender.done():
                result.supported = False
                result.notes.append(f"{master} never listed a media playlist")
                return
            response = await client.get(master)
            found = re.search(r"^[^#\s].*$", response.text, re.M) if response.status_code == 200 else None
            if found:
                media_url = urljoin(master, found.group(0))
            else:
                await asyncio.sleep(0.1)
        playlist = parse_playlist((await client.get(media_url)).text)
        seen = {p.uri for p in playlist.parts}
        first_playlist = time.monotonic()
        ended_at: float | None = None
        failures = 0
        while True:
            if sender.done():
                ended_at = ended_at or time.monotonic()
                if time.monotonic() - ended_at > 5:
                    return
            if not result.parts and not playlist.parts and time.monotonic() - first_playlist > 8:
                result.supported = False
                result.notes.append(
                    "the media playlist lists no #EXT-X-PART after 8 s: LL-HLS off or missing"
                )
                return
            msn, index = playlist.next_request()
            url = f"{media_url}{'&' if '?' in media_url else '?'}_HLS_msn={msn}&_HLS_part={index}"
            asked = time.perf_counter()
            try:
                response = await client.get(url, timeout=5 if sender.done() else 10)
            except httpx.TimeoutException:
                if sender.done():
                    return
                result.note(f"a blocking request timed out ({url})")
                continue
            got = time.perf_counter()
            if response.status_code != 200:
                if sender.done():  # the stream ended: the part asked for never comes
                    return
                result.note(f"HTTP {response.status_code} for {url}: {response.text[:200]}")
                failures += 1
                if failures > 20 or sender.done():
                    return
                await asyncio.sleep(0.1)
                continue
            playlist = parse_playlist(response.text)
            if not playlist.satisfies(msn, index):
                result.non_blocking += 1
                await asyncio.sleep(0.02)
            for part in playlist.parts:
                if part.uri in seen:
                    continue
                seen.add(part.uri)
                result.parts += 1
                match = PART_TIME.search(part.uri)
                if match is None:
                    result.unmatched += 1
                    continue
                end = int(match.group(1)) + round(part.duration * stream.timescale)
                i = bisect.bisect_left(ends, end - half_frame)
                if i == len(ends) or abs(ends[i] - end) > half_frame or ends[i] not in sent:
                    result.unmatched += 1
                    continue
                if sent[ends[i]] < asked:
                    result.late += 1
                    continue
                if part.key < (msn, index):
                    # Complete while we waited, yet not the part asked for nor after it: an earlier
                    # playlist hid it (e.g. called its segment complete too early).
                    result.behind += 1
                    result.note(
                        f"part {part.uri} (segment {part.msn} part {part.index}) first listed in the answer "
                        f"to _HLS_msn={msn}&_HLS_part={index}, {(got - sent[ends[i]]) * 1000:.0f} ms after "
                        "its last byte: an earlier playlist did not announce it"
                    )
                    continue
                result.delays.append(got - sent[ends[i]])
            if playlist.parts and not playlist.can_block:
                result.note("the media playlist has no CAN-BLOCK-RELOAD=YES")


def run_ingest(args: argparse.Namespace, cache: Path) -> IngestResult:
    path = cache / f"latency-cmaf-{SIZE}-{FPS}fps-{args.ingest_seconds}s.mp4"
    make_cmaf(path, args.ingest_seconds)
    stream = read_cmaf(path.read_bytes())
    name = "blocking"
    result = IngestResult()
    with tempfile.TemporaryDirectory(prefix="headwater-latency-") as tmp, contextlib.ExitStack() as stack:
        server = start_headwater(stack, Path(tmp))
        mode = create_point(server, name)
        if mode != "LL":
            result.notes.append(mode)

        async def both() -> None:
            sent: dict[int, float] = {}
            sender = asyncio.create_task(
                send_cmaf(server.http, f"/{APP}/{name}.isml/Streams(video.cmfv)", stream, sent, result)
            )
            master = f"{server.url}/{APP}/{name}.isml/{name}.m3u8"
            try:
                await poll_blocking(master, stream, sent, sender, result)
            finally:  # the poller returns once the sender is done, or early to give up
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender

        asyncio.run(both())
        logged = tail(server.service.log, 6)
        if logged:
            result.notes.append(f"headwater logged:\n    {logged}")
    return result


# -- report -------------------------------------------------------------------------------------


def print_glass(rows: list[Glass]) -> None:
    reference = next((r for r in rows if r.run == "nginx" and r.latencies), None)
    print(
        f"\n{'run':<10}{'player':<9}{'ingest':<7}{'median s':>9}{'p90 s':>8}{'min s':>7}{'max s':>7}"
        f"{'vs nginx':>9}{'frames':>7}{'unread':>7}{'stalls':>7}{'seeks':>6}{'player s':>9}  mode"
    )
    for r in rows:
        if r.latencies:
            median = quantile(r.latencies, 0.5)
            p90 = quantile(r.latencies, 0.9)
            figures = f"{median:>9.3f}{p90:>8.3f}{min(r.latencies):>7.2f}{max(r.latencies):>7.2f}"
            versus = f"{median / quantile(reference.latencies, 0.5):.2f}x" if reference else "-"
        else:
            figures, versus = f"{'-':>9}{'-':>8}{'-':>7}{'-':>7}", "-"
        estimate = f"{r.player_latency:.2f}" if r.player_latency is not None else "-"
        print(
            f"{r.run:<10}{r.player:<9}{r.ingest:<7}{figures}{versus:>9}{len(r.latencies):>7}{r.unreadable:>7}"
            f"{r.stalls:>7}{r.seeks:>6}{estimate:>9}  {r.mode}"
        )
    for r in rows:
        if r.problems:
            print(f"{r.run}: " + "\n  ".join(r.problems[:12]))
        if r.measured and abs(r.advanced - r.measured) > 0.5:
            print(
                f"{r.run}: currentTime advanced {r.advanced:.1f} s in {r.measured:.1f} s "
                "(playback rate changes, seeks)"
            )


def print_ingest(r: IngestResult) -> None:
    print(f"\ningest last byte -> blocked LL-HLS playlist answer ({r.sent_chunks} chunks sent):")
    if not r.supported:
        print("  not supported")
    elif r.delays:
        ms = [d * 1000 for d in r.delays]
        print(
            f"  p50 {quantile(ms, 0.5):.1f} ms  p99 {quantile(ms, 0.99):.1f} ms  max {max(ms):.1f} ms  "
            f"min {min(ms):.1f} ms  over {len(ms)} parts"
        )
    else:
        print("  no part measured")
    print(
        f"  parts seen {r.parts}: {len(r.delays)} measured, {r.late} already complete when asked for, "
        f"{r.unmatched} not matching a chunk end, {r.behind} behind the part asked for; "
        f"{r.non_blocking} answers without the part asked for"
    )
    for note in r.notes[:12]:
        times = r.repeats.get(note, 1)
        print(f"  {note}" + (f" ({times} times)" if times > 1 else ""))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60, help="playback measured per run, after --skip")
    parser.add_argument("--skip", type=float, default=5, help="seconds of playback left out (start-up)")
    parser.add_argument("--ingest-seconds", type=int, default=120, help="length of the ingest run's stream")
    parser.add_argument("--only", default=",".join(RUNS), help=f"comma-separated, of {', '.join(RUNS)}")
    parser.add_argument("--hlsjs-config", default="{}", help="JSON for the hls.js constructor")
    parser.add_argument("--dashjs-config", default="{}", help="JSON for dash.js updateSettings")
    parser.add_argument(
        "--normal",
        action="store_true",
        help="Headwater points without LL_OPTIONS, played by hls.js and dash.js in normal mode",
    )
    args = parser.parse_args()
    runs = [r.strip() for r in args.only.split(",") if r.strip()]
    unknown = [r for r in runs if r not in RUNS]
    if unknown:
        raise SystemExit(f"unknown run(s) {', '.join(unknown)}: choose from {', '.join(RUNS)}")
    for text in (args.hlsjs_config, args.dashjs_config):
        json.loads(text)
    needed = ["ffmpeg"] + (["nginx"] if "nginx" in runs else [])
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        raise SystemExit(
            f"missing {', '.join(missing)}: apt-get install -y --no-install-recommends ffmpeg nginx"
        )
    if "nginx" in runs:
        rtmp_module()
    if any(r != "ingest" for r in runs):
        reason = unavailable_reason()
        if reason is not None:
            raise SystemExit(f"the browser harness cannot run: {reason}")
    signal.signal(signal.SIGTERM, _on_sigterm)
    cache = Path(tempfile.gettempdir()) / "headwater-bench"
    cache.mkdir(exist_ok=True)
    print(
        f"latency: runs {', '.join(runs)}; {args.seconds:g} s measured after {args.skip:g} s per playback; "
        f"LL options {LL_OPTIONS}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    glass: list[Glass] = []
    ingest: IngestResult | None = None
    try:
        for run in runs:
            began = time.monotonic()
            try:
                if run == "ingest":
                    ingest = run_ingest(args, cache)
                    summary = f"{len(ingest.delays)} parts measured" if ingest.supported else "not supported"
                else:
                    row = run_nginx(args) if run == "nginx" else run_headwater(run, args)
                    glass.append(row)
                    summary = (
                        f"median {quantile(row.latencies, 0.5):.3f} s" if row.latencies else "no figures"
                    )
            except RuntimeError as exc:
                summary = f"FAILED: {exc}"
                if run != "ingest":
                    glass.append(Glass(run, "-", "-", "failed", problems=[str(exc)]))
            print(f"  {run}: {summary} ({time.monotonic() - began:.0f} s)", flush=True)
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
    if glass:
        print_glass(glass)
    if ingest is not None:
        print_ingest(ingest)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
