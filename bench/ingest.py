"""Ingest benchmark: Smooth ingest into ``headwater serve`` against the bare Hypercorn server
draining the same request bodies, in one run.

    python bench/ingest.py [--seconds 60] [--runs 5]

Makes a 720p H.264 + AAC Smooth stream (about 6 Mbit/s) with ffmpeg once, then POSTs it
``--runs`` times to each server as fast as loopback allows (chunked, 64 KiB pieces) and prints,
per server: throughput, server CPU seconds per minute of media, and the server's peak resident
memory. The Headwater/bare ratios are the figures to compare across machines.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.procs import cpu_seconds, free_port, process_tree  # noqa: E402

CHUNK = 64 * 1024


def make_stream(path: Path, seconds: int) -> None:
    if path.exists():
        return
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-t",
            str(seconds),
            "-i",
            "testsrc2=size=1280x720:rate=30",
            "-f",
            "lavfi",
            "-t",
            str(seconds),
            "-i",
            "sine=f=440:sample_rate=48000",
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            "6M",
            "-maxrate",
            "6M",
            "-bufsize",
            "6M",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-movflags",
            "isml+frag_keyframe",
            "-f",
            "ismv",
            str(path),
        ],
        check=True,
    )


def peak_rss_mib(pid: int) -> float:
    """The largest peak resident size among the tree's processes."""
    peak = 0
    for p in process_tree(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak / 1024


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            httpx.post(url, content=b"", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer")


def body(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


def measure(
    name: str, argv: list[str], port: int, data: bytes, runs: int, media_seconds: int
) -> dict[str, float]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/probe.isml", proc)
        cpu0 = cpu_seconds(process_tree(proc.pid))
        start = time.perf_counter()
        with httpx.Client(timeout=120) as client:
            for run in range(runs):
                url = f"http://127.0.0.1:{port}/bench/run{run}.isml/Streams(bench)"
                answer = client.post(url, content=body(data))
                if answer.status_code != 200:
                    raise SystemExit(f"{name}: {answer.status_code} {answer.text}")
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds(process_tree(proc.pid)) - cpu0
        rss = peak_rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return {
        "mbit_s": len(data) * runs * 8 / elapsed / 1e6,
        "realtime": media_seconds * runs / elapsed,
        "cpu_per_media_minute": cpu / (media_seconds * runs) * 60,
        "peak_rss_mib": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=60, help="media length of the test stream")
    parser.add_argument("--runs", type=int, default=5, help="POSTs of the stream per server")
    args = parser.parse_args()

    cache = Path(tempfile.gettempdir()) / "headwater-bench"
    cache.mkdir(exist_ok=True)
    stream = cache / f"smooth-720p-{args.seconds}s.ismv"
    make_stream(stream, args.seconds)
    data = stream.read_bytes()
    print(
        f"stream: {stream.name}, {len(data) / 1e6:.1f} MB, {len(data) * 8 / args.seconds / 1e6:.2f} Mbit/s, "
        f"{args.runs} POSTs per server"
    )

    results = {}
    with tempfile.TemporaryDirectory() as root:
        port = free_port()
        results["headwater (fsync)"] = measure(
            "headwater",
            [
                sys.executable,
                "-m",
                "origin.cli",
                "serve",
                "--root",
                root,
                "--http",
                f"127.0.0.1:{port}",
                "--rtmp",
                "",
                "--set",
                "log.level=warning",
            ],
            port,
            data,
            args.runs,
            args.seconds,
        )
    port = free_port()
    results["bare hypercorn"] = measure(
        "bare",
        [
            sys.executable,
            "-m",
            "hypercorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "bench.bare_asgi:app",
        ],
        port,
        data,
        args.runs,
        args.seconds,
    )

    print(f"{'server':<20}{'Mbit/s':>10}{'x realtime':>12}{'CPU s/media min':>17}{'peak RSS MiB':>14}")
    for name, r in results.items():
        print(
            f"{name:<20}{r['mbit_s']:>10.0f}{r['realtime']:>12.0f}{r['cpu_per_media_minute']:>17.3f}"
            f"{r['peak_rss_mib']:>14.1f}"
        )
    hw, bare = results["headwater (fsync)"], results["bare hypercorn"]
    print(
        f"ratio headwater/bare: throughput {hw['mbit_s'] / bare['mbit_s']:.2f}x, "
        f"CPU per media minute {hw['cpu_per_media_minute'] / bare['cpu_per_media_minute']:.2f}x"
    )


if __name__ == "__main__":
    main()
