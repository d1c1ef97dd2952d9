"""RTMP ingest benchmark: N concurrent publishers of the same live H.264/AAC stream into
``headwater serve --rtmp`` and into nginx-rtmp with ``hls on``, one server after the other, in one run.

    python bench/rtmp.py [--streams 1,50] [--seconds 30] [--servers headwater,headwater-nofsync,nginx]
                         [--profile DIR]

Makes a 1280x720 25 fps H.264 (about 3.5 Mbit/s, a keyframe every 2 s) + AAC FLV file with ffmpeg once.
The publishers are this process: one asyncio connection per stream (real handshake, connect, publish,
the file's FLV tags as RTMP messages, FCUnpublish/deleteStream), paced at real time like ffmpeg
``-re``, stream i starting i/N of a GOP after the first so that keyframes do not all arrive at once.

Per server and stream count the script prints the megabits ingested, the server's CPU seconds
(utime + stime of all its processes, from /proc, from before the publishers connect until the server is
idle after they leave), CPU seconds per ingested megabit, the Headwater/nginx ratio, and the peak
resident memory (VmHWM, summed over the server's processes: nginx master + worker). It also reports
whether the server kept real time: the largest backlog of any stream (bytes written by a publisher
and not yet read by the server: the publisher's buffer, its socket's send queue and the server's
receive queue, sampled from /proc/net/tcp) in seconds of media, and how long after the last message
was due the server had read everything. Afterwards it checks what each server stored: Headwater's
fragments and frames against the file's, nginx's TS segments.

The servers, one process each: ``headwater serve`` with default settings (``storage.fsync = true``),
``headwater-nofsync`` (``--set storage.fsync=false``: nginx-rtmp never fsyncs), and nginx 1.22 with
libnginx-mod-rtmp (``master_process on; worker_processes 1``, ``live on; hls on; hls_fragment 2s;
hls_cleanup off``). For Headwater it also splits the CPU time between the event loop's thread and the
others (file writes and fsync run in a thread pool). ``--profile DIR`` runs Headwater under cProfile
with a CPU-time clock for the event loop's thread (DIR/<server>-<N>.prof) and prints its top functions;
its CPU figures then include the profiler's overhead.

Needs ffmpeg, nginx and the RTMP module (Debian: ``apt-get install -y --no-install-recommends ffmpeg
nginx libnginx-mod-rtmp``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.procs import (  # noqa: E402
    cpu_seconds,
    free_port,
    nginx_rtmp_conf,
    process_tree,
    rtmp_module,
    stop_tree,
)
from ingest.rtmp.chunks import ChunkReader  # noqa: E402
from media.cmaf import read_fragment  # noqa: E402
from tests.rtmp_client import Publisher, Tag, read_flv, statuses  # noqa: E402

APP = "live"
GOP_SECONDS = 2
FPS = 25
SERVERS = ("headwater", "headwater-nofsync", "bare-asyncio", "nginx")
# ``headwater`` under cProfile, timed by the CPU time of the thread (``python -m cProfile`` times by
# the wall clock: waits and other processes on the two cores would count).
PROFILED = """import cProfile, sys, time
from origin.cli import main
profiler = cProfile.Profile(time.thread_time)
try:
    profiler.runcall(main, sys.argv[2:])
finally:
    profiler.dump_stats(sys.argv[1])
"""
LAG_LIMIT = 2.0  # seconds of media a stream may lag (one fragment) before the run says "not real time"


# -- the stream ---------------------------------------------------------------------------------


def make_stream(path: Path, seconds: int) -> None:
    if path.exists():
        return
    lavfi = ["-f", "lavfi", "-t", str(seconds), "-i"]
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            *lavfi, f"testsrc2=size=1280x720:rate={FPS}",
            *lavfi, "sine=f=440:sample_rate=48000",
            "-map", "0:v", "-map", "1:a",
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-b:v", "3500k", "-maxrate", "3500k", "-bufsize", "3500k",
            "-g", str(GOP_SECONDS * FPS), "-keyint_min", str(GOP_SECONDS * FPS), "-sc_threshold", "0",
            "-c:a", "aac", "-b:a", "128k",
            "-f", "flv", str(path.with_suffix(".tmp")),
        ],
        check=True,
    )  # fmt: skip
    path.with_suffix(".tmp").rename(path)


@dataclass(frozen=True)
class Media:
    """The file's tags as the RTMP bytes every publisher sends, and what a server should store."""

    messages: list[tuple[float, bytes]]  # (seconds from the first tag, chunked RTMP message)
    seconds: float
    bytes_per_stream: int
    keyframes: int
    video_frames: int
    audio_frames: int

    @property
    def bytes_per_second(self) -> float:
        return self.bytes_per_stream / self.seconds


def load_media(path: Path) -> Media:
    tags: list[Tag] = read_flv(path)
    # The writer writes every message with a full header (no state between messages), so the bytes
    # of a tag are the same on every connection: build them once.
    writer = Publisher()
    writer.set_chunk_size()
    first = tags[0].timestamp
    messages = [((t.timestamp - first) / 1000, writer.tag(t, t.timestamp)) for t in tags]
    video = [t.body for t in tags if t.type_id == 9 and t.body[0] & 0x0F == 7 and t.body[1] == 1]
    audio = [t.body for t in tags if t.type_id == 8 and t.body[0] >> 4 == 10 and t.body[1] == 1]
    return Media(
        messages=messages,
        seconds=messages[-1][0] + 1 / FPS,
        bytes_per_stream=sum(len(m) for _, m in messages),
        keyframes=sum(b[0] >> 4 == 1 for b in video),
        video_frames=len(video),
        audio_frames=len(audio),
    )


# -- processes ----------------------------------------------------------------------------------


def thread_cpu_seconds(pid: int) -> float:
    """CPU seconds of the process's main thread (Headwater's event loop)."""
    try:
        fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pids: list[int]) -> float:
    """VmHWM summed over the processes (nginx's master and worker share some pages: an upper bound)."""
    total = 0
    for p in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024


def tcp_queues() -> dict[tuple[int, int], int]:
    """(local port, remote port) → send queue + receive queue bytes, for loopback IPv4 sockets."""
    queues: dict[tuple[int, int], int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, (tx, rx) = fields[1], fields[2], fields[4].split(":")
        queues[int(local.split(":")[1], 16), int(remote.split(":")[1], 16)] = int(tx, 16) + int(rx, 16)
    return queues


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    rtmp_port: int
    stop_signal: signal.Signals
    work: Path
    pids: list[int] = field(default_factory=list)

    def tree(self) -> list[int]:
        """The server's processes, remembered so that the figures survive a worker's exit."""
        for pid in process_tree(self.proc.pid):
            if pid not in self.pids:
                self.pids.append(pid)
        return self.pids

    def stop(self) -> None:
        """Signal the tree, wait, then kill what is left (only processes started here)."""
        stop_tree(self.proc, self.stop_signal, timeout=60)


def wait_listening(proc: subprocess.Popen[bytes], ports: list[int], name: str) -> None:
    deadline = time.monotonic() + 30
    for port in ports:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited with {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} does not listen on port {port}") from None
                time.sleep(0.05)


def start_headwater(name: str, work: Path, profile: Path | None, streams: int) -> Server:
    root = work / "root"
    http_port, rtmp_port = free_port(), free_port()
    argv = [sys.executable]
    if profile is not None:
        argv += ["-c", PROFILED, str(profile / f"{name}-{streams}.prof")]
    else:
        argv += ["-m", "origin.cli"]
    argv += [
        "serve", "--root", str(root),
        "--http", f"127.0.0.1:{http_port}", "--rtmp", f"127.0.0.1:{rtmp_port}",
        "--set", "log.level=warning",
    ]  # fmt: skip
    if name == "headwater-nofsync":
        argv += ["--set", "storage.fsync=false"]
    log = (work / "headwater.log").open("wb")
    proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    # The RTMP listener opens before the HTTP one; probe HTTP only, as a bare connection to the RTMP
    # port would log a failed handshake.
    wait_listening(proc, [http_port], name)
    return Server(name, proc, rtmp_port, signal.SIGTERM, work)


def start_nginx(work: Path) -> Server:
    prefix = work / "nginx"
    hls = prefix / "hls"
    hls.mkdir(parents=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    hls_settings = {"hls_fragment": f"{GOP_SECONDS}s", "hls_cleanup": "off"}
    conf.write_text(nginx_rtmp_conf(prefix, port, APP, hls_settings, connections=1024))
    argv = ["nginx", "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log")]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    # nginx-rtmp closes a connection that sends nothing without a word: probing the port is fine.
    wait_listening(proc, [port], "nginx")
    return Server("nginx", proc, port, signal.SIGQUIT, work)


# -- publishers ---------------------------------------------------------------------------------


@dataclass
class Connection:
    name: str
    client: Publisher
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    port: int  # the publisher's local port
    sent: int = 0


async def connect(port: int, name: str) -> Connection:
    """Handshake, connect, publish; returns once the server said NetStream.Publish.Start."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = Publisher()
    writer.write(client.c0c1())
    s0s1s2 = await asyncio.wait_for(reader.readexactly(1 + 1536 * 2), 10)
    writer.write(client.c2(s0s1s2) + client.connect(APP) + client.publish(name))
    replies = ChunkReader(max_chunk_size=1 << 24, max_message_size=1 << 24)
    codes: list[str] = []
    while not any(c.startswith("NetStream.Publish") for c in codes):
        data = await asyncio.wait_for(reader.read(65536), 10)
        if not data:
            raise SystemExit(f"{name}: the server closed the connection before publishing ({codes})")
        codes += [str(s.get("code")) for s in statuses(replies.feed(data))]
    if "NetStream.Publish.Start" not in codes:
        raise SystemExit(f"{name}: publish refused: {codes}")
    return Connection(name, client, reader, writer, writer.get_extra_info("sockname")[1])


async def discard(reader: asyncio.StreamReader) -> None:
    """Read what the server sends (acknowledgements) so that it never blocks on us."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass


@dataclass
class Publish:
    bytes: int
    late_ms: float  # the largest delay of this process in sending a message after it was due
    lag_s: float  # the largest backlog of one stream, in seconds of its media
    tail_s: float  # from the last message's due time until the server had read everything
    publisher_cpu: float
    wall: float


def backlog(conns: list[Connection], server_port: int) -> list[int]:
    queues = tcp_queues()
    return [
        c.writer.transport.get_write_buffer_size()
        + queues.get((c.port, server_port), 0)
        + queues.get((server_port, c.port), 0)
        for c in conns
    ]


async def publish_all(media: Media, streams: int, server_port: int) -> Publish:
    conns = await asyncio.gather(*(connect(server_port, f"s{i}") for i in range(streams)))
    readers = [asyncio.create_task(discard(c.reader)) for c in conns]
    # Stream i starts i/N of a GOP late: N encoders started at random moments, not in lockstep.
    schedule = sorted(
        (due + i * GOP_SECONDS / streams, i, m) for i in range(streams) for due, m in media.messages
    )
    loop = asyncio.get_running_loop()
    cpu0 = time.process_time()
    start = loop.time()
    late = 0.0
    lag = 0
    next_sample = 0.0
    pos = 0
    while pos < len(schedule):
        now = loop.time() - start
        due = schedule[pos][0]
        if due > now:
            await asyncio.sleep(due - now)
            now = loop.time() - start
        late = max(late, now - due)
        while pos < len(schedule) and schedule[pos][0] <= now:
            _, i, message = schedule[pos]
            if conns[i].writer.transport.is_closing():
                raise SystemExit(
                    f"{conns[i].name}: the server closed the connection after {conns[i].sent} bytes "
                    f"({now:.1f} s into the run)"
                )
            conns[i].writer.write(message)
            conns[i].sent += len(message)
            pos += 1
        if now >= next_sample:
            lag = max(lag, *backlog(conns, server_port))
            next_sample = now + 0.25
    last_due = schedule[-1][0]
    while True:  # until the server has read every byte
        closed = [c.name for c in conns if c.writer.transport.is_closing()]
        if closed:
            raise SystemExit(f"the server closed {', '.join(closed[:5])} before reading everything")
        pending = backlog(conns, server_port)
        lag = max(lag, *pending)
        if not any(pending):
            break
        await asyncio.sleep(0.02)
    tail = loop.time() - start - last_due
    for c in conns:
        c.writer.write(c.client.unpublish(c.name))
    await asyncio.gather(*(c.writer.drain() for c in conns))
    for c in conns:
        c.writer.close()
    await asyncio.gather(*(c.writer.wait_closed() for c in conns), return_exceptions=True)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return Publish(
        bytes=sum(c.sent for c in conns),
        late_ms=late * 1000,
        lag_s=lag / media.bytes_per_second,
        tail_s=max(tail, 0.0),
        publisher_cpu=time.process_time() - cpu0,
        wall=loop.time() - start,
    )


# -- checks -------------------------------------------------------------------------------------


def check_headwater(root: Path, media: Media, streams: int) -> str:
    """Every stream's fragments and frames, from the stored files: nothing lost."""
    problems = []
    for i in range(streams):
        tracks = root / APP / f"s{i}" / "_tracks"
        found = []
        for track in ("video", "audio"):
            files = sorted((tracks / track).glob("*.m4s"))
            samples = sum(len(read_fragment(f.read_bytes())[1]) for f in files)
            found.append((len(files), samples))
        (video_fragments, video_frames), (_, audio_frames) = found
        counts = (video_fragments, video_frames, audio_frames)
        if counts != (media.keyframes, media.video_frames, media.audio_frames):
            problems.append(
                f"s{i}: {video_fragments} video fragments, {video_frames} frames, {audio_frames} audio"
            )
    expected = (
        f"{media.keyframes} video fragments, {media.video_frames} video and {media.audio_frames} audio "
        "frames per stream"
    )
    if problems:
        return f"LOST MEDIA (expected {expected}): " + "; ".join(problems[:5])
    return f"stored {expected}: all there"


def check_nginx(hls: Path, media: Media, streams: int) -> str:
    segments = [len(list(hls.glob(f"s{i}-*.ts"))) for i in range(streams)]
    size = sum(f.stat().st_size for f in hls.glob("*.ts"))
    return (
        f"{min(segments)}-{max(segments)} TS segments per stream ({media.keyframes} GOPs), "
        f"{size * 8 / 1e6:.0f} Mbit of TS"
    )


# -- runs ---------------------------------------------------------------------------------------


@dataclass
class Row:
    streams: int
    server: str
    mbit: float
    cpu: float
    rss: float
    publish: Publish
    check: str
    loop_cpu: float  # Headwater: CPU seconds of the event loop's thread; the rest is the thread pool

    @property
    def cpu_per_mbit(self) -> float:
        return self.cpu / self.mbit


def settle(server: Server, timeout: float = 20.0) -> None:
    """Wait until the server is idle (what the publishers sent is processed and stored)."""
    deadline = time.monotonic() + timeout
    previous = cpu_seconds(server.tree())
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_seconds(server.tree())
        if now - previous < 0.02:
            return
        previous = now


def print_log(name: str, work: Path) -> None:
    """The end of what the server logged (warnings and errors only)."""
    path = work / "nginx" / "error.log" if name == "nginx" else work / "headwater.log"
    with contextlib.suppress(OSError):
        lines = path.read_text(errors="replace").strip().splitlines()
        if lines:
            print(f"  {name} logged:\n    " + "\n    ".join(lines[-10:]))


def start_bare(work: Path) -> Server:
    """bench/bare_rtmp.py: the asyncio floor (handshake and publish answered, then read and discard)."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.bare_rtmp", str(port)]
    proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL)
    time.sleep(1.0)  # no probe: a bare connection would count as a client
    if proc.poll() is not None:
        raise SystemExit(f"bare-asyncio exited with {proc.returncode}")
    return Server("bare-asyncio", proc, port, signal.SIGTERM, work)


def run_one(name: str, media: Media, streams: int, profile: Path | None) -> Row:
    with tempfile.TemporaryDirectory(prefix="headwater-rtmp-") as tmp:
        work = Path(tmp)
        if name == "nginx":
            server = start_nginx(work)
        elif name == "bare-asyncio":
            server = start_bare(work)
        else:
            server = start_headwater(name, work, profile, streams)
        try:
            time.sleep(0.5)  # let start-up finish before counting
            cpu0 = cpu_seconds(server.tree())
            loop0 = thread_cpu_seconds(server.proc.pid)
            try:
                published = asyncio.run(publish_all(media, streams, server.rtmp_port))
            except SystemExit:
                server.stop()
                print_log(name, work)
                raise
            settle(server)
            cpu = cpu_seconds(server.tree()) - cpu0
            loop_cpu = thread_cpu_seconds(server.proc.pid) - loop0
            rss = peak_rss_mib(server.tree())
        finally:
            server.stop()
        if name == "nginx":
            check = check_nginx(work / "nginx" / "hls", media, streams)
        elif name == "bare-asyncio":
            check = "read and discarded"
        else:
            check = check_headwater(work / "root", media, streams)
        print_log(name, work)
    row = Row(streams, name, published.bytes * 8 / 1e6, cpu, rss, published, check, loop_cpu)
    p = published
    threads = f" (event loop {loop_cpu:.2f} s)" if name != "nginx" else ""
    print(
        f"  {name:<18} N={streams:<3} {row.mbit:8.0f} Mbit  CPU {cpu:6.2f} s{threads}  "
        f"{row.cpu_per_mbit * 1000:6.2f} ms/Mbit  RSS {rss:6.1f} MiB  lag {p.lag_s:.2f} s, "
        f"tail {p.tail_s:.2f} s, publisher late {p.late_ms:.0f} ms, publisher CPU {p.publisher_cpu:.1f} s "
        f"in {p.wall:.1f} s; {check}",
        flush=True,
    )
    return row


def print_profile(path: Path, limit: int = 25) -> None:
    print(f"\n{path} (top {limit} by own time):")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(limit)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", default="1,50", help="comma-separated publisher counts")
    parser.add_argument("--seconds", type=int, default=30, help="length of the stream each publisher sends")
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help=f"comma-separated, of {', '.join(SERVERS)}"
    )
    parser.add_argument("--profile", type=Path, help="run Headwater under cProfile, writing here")
    args = parser.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    names = [n.strip() for n in args.servers.split(",")]
    unknown = [n for n in names if n not in SERVERS]
    if unknown:
        raise SystemExit(f"unknown server(s) {', '.join(unknown)}: choose from {', '.join(SERVERS)}")
    missing = [tool for tool in ("ffmpeg", "nginx") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(
            f"missing {', '.join(missing)}: apt-get install -y --no-install-recommends "
            f"{' '.join(missing)} libnginx-mod-rtmp"
        )
    if "nginx" in names:
        rtmp_module()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)

    cache = Path(tempfile.gettempdir()) / "headwater-bench"
    cache.mkdir(exist_ok=True)
    stream = cache / f"rtmp-720p{FPS}-{args.seconds}s.flv"
    make_stream(stream, args.seconds)
    media = load_media(stream)
    print(
        f"stream: {stream.name}, {media.seconds:.1f} s, {media.bytes_per_second * 8 / 1e6:.2f} Mbit/s "
        f"as RTMP, {media.keyframes} GOPs; streams {counts}; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}",
        flush=True,
    )

    rows: list[Row] = []
    for streams in counts:
        for name in names:
            rows.append(run_one(name, media, streams, args.profile))

    print()
    header = (
        f"{'streams':>7}  {'server':<18}{'Mbit':>8}{'CPU s':>8}{'CPU s/Mbit':>12}{'vs nginx':>10}"
        f"{'peak RSS MiB':>14}{'max lag s':>11}"
    )
    print(header)
    for row in rows:
        ref = next((r for r in rows if r.streams == row.streams and r.server == "nginx"), None)
        versus = f"{row.cpu_per_mbit / ref.cpu_per_mbit:.2f}x" if ref is not None else "-"
        print(
            f"{row.streams:>7}  {row.server:<18}{row.mbit:>8.0f}{row.cpu:>8.2f}{row.cpu_per_mbit:>12.5f}"
            f"{versus:>10}{row.rss:>14.1f}{row.publish.lag_s:>11.2f}"
        )
    for row in rows:
        if row.publish.lag_s > LAG_LIMIT:
            print(
                f"{row.server} at {row.streams} streams did NOT keep real time throughout: a stream fell "
                f"up to {row.publish.lag_s:.1f} s behind (all read {row.publish.tail_s:.2f} s after the end)"
            )
        if row.publish.late_ms > 1000 * LAG_LIMIT:
            print(f"the publishers fell {row.publish.late_ms / 1000:.1f} s behind at {row.streams} streams")
    for streams in counts:
        ref = next((r for r in rows if r.streams == streams and r.server == "nginx"), None)
        if ref is None:
            continue
        bare = next((r for r in rows if r.streams == streams and r.server == "bare-asyncio"), None)
        if bare is not None:
            print(
                f"the bare asyncio floor at {streams} streams is {bare.cpu_per_mbit / ref.cpu_per_mbit:.2f}x "
                "nginx-rtmp's CPU/Mbit: reading the sockets alone, before any of Headwater's work"
            )
        for row in rows:
            if row.streams == streams and row.server not in ("nginx", "bare-asyncio"):
                ratio = row.cpu_per_mbit / ref.cpu_per_mbit
                verdict = "met" if ratio <= 1.0 else "NOT met"
                print(
                    f"goal {row.server} <= 1.0x nginx-rtmp CPU/Mbit at {streams} streams: "
                    f"{ratio:.2f}x, {verdict}"
                )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    if args.profile is not None:
        print("(profiled: Headwater's CPU figures include cProfile's overhead)")
        for path in sorted(args.profile.glob("*.prof")):
            print_profile(path)


if __name__ == "__main__":
    main()
