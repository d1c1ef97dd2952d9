"""S3 benchmark: the same CMAF video ingested into a disk root and into an S3 root (moto in server
mode, the S3 endpoint the tests use), then served by the disk node, the S3 ingesting node and a
stateless follower on the bucket, in one run.

    python bench/s3.py [--segments 30] [--duration 8] [--connections 50] [--threads 2]

Measures, per root:

- ingest: per 2 s segment (720p H.264, 6 Mbit/s, one PUT per segment as a CMAF encoder sends it),
  the time to the encoder's acknowledgement (the fragment and its index record are stored), and to
  the segment showing in the ingesting node's playlist (polled every 10 ms); for the follower, to
  the segment showing in its playlist (``storage.follow_interval`` 0.5 s, the default);
- S3 requests per fragment ingested (counted in moto's request log, the follower not running),
  and per second the follower makes on its own while it follows a live point;
- playout: requests/s of a cached media playlist and a cached segment with ``wrk``, and the first
  (cold) request of every segment, on the disk node and on the follower; S3 requests per playlist
  served by the follower under load.

The disk root is the reference: the ratios S3/disk are the figures to compare. Needs ffmpeg, wrk
and moto (``pip install 'moto[server]'``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.playout import Server, p95, start, wrk  # noqa: E402
from bench.procs import free_port  # noqa: E402

S3_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
BUCKET = "bench"
REQUEST_LINE = re.compile(rb'"(GET|PUT|HEAD|POST|DELETE) ')


def make_cmaf(work: Path, segments: int) -> tuple[bytes, list[bytes]]:
    """ffmpeg's CMAF of ``segments`` x 2 s of 720p30 H.264 at 6 Mbit/s, split into the header and
    one moof + mdat per segment."""
    out = work / "video.cmfv"
    lavfi = ["-f", "lavfi", "-t", str(2 * segments), "-i", "testsrc2=size=1280x720:rate=30"]
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *lavfi,
            "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "6M", "-maxrate", "6M", "-bufsize", "6M",
            "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
            "-movflags", "empty_moov+separate_moof+default_base_moof+frag_keyframe+cmaf",
            "-f", "mp4", str(out),
        ],
        check=True,
        timeout=300,
    )  # fmt: skip
    data = out.read_bytes()
    boxes = []
    offset = 0
    while offset < len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        boxes.append((kind, data[offset : offset + size]))
        offset += size
    first = next(i for i, (kind, _) in enumerate(boxes) if kind == b"moof")
    header = b"".join(body for _, body in boxes[:first])
    pieces = []
    for kind, body in boxes[first:]:
        if kind == b"moof":
            pieces.append(body)
        elif kind == b"mdat":
            pieces[-1] += body
    return header, pieces


class Moto:
    """moto's S3 server, its request log counted."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.log = work / "moto.log"
        out = self.log.open("wb")
        args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(args, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.put(f"{self.endpoint}/{BUCKET}", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("moto did not start") from None
                time.sleep(0.1)

    def requests(self) -> int:
        return len(REQUEST_LINE.findall(self.log.read_bytes()))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def headwater(name: str, root: str, work: Path, moto: Moto, *settings: str) -> Server:
    port = free_port()
    argv = [
        sys.executable, "-m", "origin.cli", "serve", "--root", root, "--http", f"127.0.0.1:{port}",
        "--rtmp", "", "--set", "log.level=warning", "--set", f"storage.s3_endpoint_url={moto.endpoint}",
        "--set", "storage.s3_addressing_style=path", "--set", f"storage.spool={work / name}-spool",
    ]  # fmt: skip
    for item in settings:
        argv += ["--set", item]
    return start(name, argv, port, "/healthz", env={**os.environ, **S3_ENV})


def listed(client: httpx.Client, url: str, uri: str) -> bool:
    answer = client.get(url)
    return answer.status_code == 200 and uri in answer.text


def wait_listed(client: httpx.Client, url: str, uri: str, since: float, timeout: float = 10) -> float:
    while not listed(client, url, uri):
        if time.monotonic() - since > timeout:
            raise SystemExit(f"{uri} never showed in {url}")
        time.sleep(0.01)
    return time.monotonic() - since


@dataclass
class Ingest:
    ack_ms: list[float]
    visible_ms: list[float]
    followed_ms: list[float]


def ingest(
    client: httpx.Client,
    node: Server,
    point: str,
    header: bytes,
    pieces: list[bytes],
    follower: Server | None,
) -> Ingest:
    """One PUT per segment; after each, wait until the playlists list it."""
    url = node.url(f"/{point}.isml/Streams(video.cmfv)")
    if client.post(url, content=header).status_code != 200:
        raise SystemExit(f"{node.name}: the header was refused")
    found = Ingest([], [], [])
    playlist = f"/{point}.isml/{point.rsplit('/', 1)[1]}-video.m3u8"
    with httpx.Client(timeout=10) as poller:
        for piece in pieces:
            started = time.monotonic()
            answer = client.put(url, content=piece)
            if answer.status_code != 200 or answer.json().get("stored") != 1:
                raise SystemExit(f"{node.name}: {answer.status_code} {answer.text[:200]}")
            found.ack_ms.append((time.monotonic() - started) * 1000)
            # The newest complete segment is the previous piece's: a segment is listed once the next
            # keyframe fragment arrives... unless each fragment is a whole GOP (it is here).
            newest = _newest_uri(poller, node.url(playlist))
            found.visible_ms.append(wait_listed(poller, node.url(playlist), newest, started) * 1000)
            if follower is not None:
                found.followed_ms.append(wait_listed(poller, follower.url(playlist), newest, started) * 1000)
    return found


def _newest_uri(client: httpx.Client, url: str) -> str:
    lines = [line for line in client.get(url).text.splitlines() if line and not line.startswith("#")]
    return lines[-1] if lines else "?"


def cold_and_warm(client: httpx.Client, node: Server, point: str) -> tuple[list[float], str, str]:
    """First request of every segment (ms), and the playlist and one segment path for wrk."""
    playlist = f"/{point}.isml/{point.rsplit('/', 1)[1]}-video.m3u8"
    text = client.get(node.url(playlist)).text
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    times = []
    for uri in uris:
        started = time.perf_counter()
        answer = client.get(node.url(f"/{point}.isml/{uri}"))
        if answer.status_code != 200:
            raise SystemExit(f"{node.name}: {uri} answered {answer.status_code}")
        times.append((time.perf_counter() - started) * 1000)
    return times, playlist, f"/{point}.isml/{uris[1]}"


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):7.1f} ms, p95 {p95(values):7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--segments", type=int, default=30, help="2 s segments ingested per root")
    parser.add_argument("--duration", type=int, default=8, help="seconds of wrk per server and URL")
    parser.add_argument("--connections", type=int, default=50, help="wrk -c")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    args = parser.parse_args()
    args.rounds = 1
    missing = [tool for tool in ("ffmpeg", "wrk") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: apt-get install -y {' '.join(missing)}")

    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="headwater-s3-") as tmp:
        work = Path(tmp)
        moto = Moto(work)
        try:
            header, pieces = make_cmaf(work, args.segments)
            disk = headwater("disk", str(work / "root"), work, moto)
            s3 = headwater("s3-ingest", f"s3://{BUCKET}/origin", work, moto)
            servers += [disk, s3]
            with httpx.Client(timeout=30) as client:
                on_disk = ingest(client, disk, "bench/ch", header, pieces, None)
                before = moto.requests()
                on_s3 = ingest(client, s3, "bench/ch", header, pieces, None)
                per_fragment = (moto.requests() - before) / len(pieces)
                follower = headwater(
                    "s3-follower", f"s3://{BUCKET}/origin", work, moto, "ingest.enabled=false"
                )
                servers.append(follower)
                client.get(follower.url("/bench/live.isml/live-video.m3u8"))  # 404: not there yet
                half = len(pieces) // 2
                live = ingest(client, s3, "bench/live", header, pieces[:half], follower)
                before, idle_from = moto.requests(), time.monotonic()
                time.sleep(5)
                background = (moto.requests() - before) / (time.monotonic() - idle_from)

                cold_disk, playlist, segment = cold_and_warm(client, disk, "bench/ch")
                cold_follower, _, _ = cold_and_warm(client, follower, "bench/ch")
            loads = {}
            for server in (disk, follower):
                for path in (playlist, segment):
                    before, since = moto.requests(), time.monotonic()
                    load = wrk(server, path, args)
                    s3_per_second = (moto.requests() - before) / (time.monotonic() - since)
                    loads[server.name, path] = (load, s3_per_second)
        finally:
            for server in servers:
                server.stop()
            moto.stop()

    size = statistics.mean(len(p) for p in pieces) / 1024
    print(f"\n{len(pieces)} segments of 2 s, 720p30 H.264 6 Mbit/s, {size:.0f} KiB each; one PUT per segment")
    print("ingest (from the PUT to ...)")
    print(f"  disk root   acknowledged  {summary(on_disk.ack_ms)}")
    print(f"  disk root   in playlist   {summary(on_disk.visible_ms)}")
    print(f"  S3 root     acknowledged  {summary(on_s3.ack_ms)}   "
          f"({statistics.median(on_s3.ack_ms) / statistics.median(on_disk.ack_ms):.2f}x disk)")  # fmt: skip
    print(f"  S3 root     in playlist   {summary(on_s3.visible_ms)}")
    print(f"  S3 follower in playlist   {summary(live.followed_ms)}")
    print(f"  S3 requests per fragment ingested: {per_fragment:.2f}")
    print(f"  S3 requests per second of a follower following one live point (1 track): {background:.2f}")
    print("playout")
    print(f"  first request of each segment: disk {summary(cold_disk)}; follower {summary(cold_follower)} "
          f"({statistics.median(cold_follower) / statistics.median(cold_disk):.2f}x disk)")  # fmt: skip
    for path, what in ((playlist, "cached playlist"), (segment, "cached segment")):
        (d, _), (f, s3_rate) = loads["disk", path], loads["s3-follower", path]
        print(
            f"  {what:<16} disk {d.rps:8.0f} req/s, follower {f.rps:8.0f} req/s ({f.rps / d.rps:.2f}x disk); "
            f"S3 requests per request served: {s3_rate / max(f.rps, 1):.4f}"
        )


if __name__ == "__main__":
    main()
