"""Encryption benchmark: the cold packaging time of encrypted segments against clear ones, per
scheme and output, in one run.

    python bench/encryption.py [--runs 3]

Pushes 30 s of 720p30 H.264 (6 Mbit/s, 2 s fragments) + AAC into a fresh content root with
ffmpeg's Smooth ingest (``bench/playout.py``'s stream) through ``headwater serve`` and waits until
the point stops. Then, in this process, the real ``PlayoutEndpoint`` (as ``origin.app.create_app``
wires it, with the locations ``/aes128/``, ``/sampleaes/``, ``/cenc/`` and ``/cbcs/``) answers
every 2 s video segment and every audio segment of the point, *cold*: its answer cache is emptied
before each request, so each one reads the stored fragments, packages, encrypts and hashes the
body (ETag). Outputs: HLS TS (clear, AES-128, SAMPLE-AES), HLS fMP4 (clear, AES-128, SAMPLE-AES
cbcs, SAMPLE-AES-CTR cenc) and DASH (clear, cenc, cbcs). Printed: the median and p95 ms per
segment, MB/s, and the ratio to the clear segment of the same output (the overhead the scheme
adds), ``--runs`` passes over all segments.

Needs ffmpeg (``apt-get install -y --no-install-recommends ffmpeg``); about a minute on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.dvr import call  # noqa: E402
from bench.playout import POINT, push, start, wait_stopped  # noqa: E402
from bench.procs import free_port  # noqa: E402
from conf.settings import Settings, StorageSettings, apply  # noqa: E402
from origin.app import build_registry, create_app  # noqa: E402
from origin.playout import PlayoutEndpoint  # noqa: E402

KEY = "0a1b2c3d4e5f60718293a4b5c6d7e8f9:3c9e8f3a2b1d4e5f60718293a4b5c6d7"
LOCATIONS = {
    "aes128": "aes-128",
    "sampleaes": "sample-aes",
    "cenc": "cenc",
    "cbcs": "cbcs",
}
# (output, location, query, segment extension)
CASES = (
    ("HLS TS", "", "", "ts"),
    ("HLS TS", "aes128", "", "ts"),
    ("HLS TS", "sampleaes", "", "ts"),
    ("HLS fMP4", "", "hls_fmp4=true", "m4s"),
    ("HLS fMP4", "aes128", "hls_fmp4=true", "m4s"),
    ("HLS fMP4", "cbcs", "hls_fmp4=true", "m4s"),
    ("HLS fMP4", "cenc", "hls_fmp4=true", "m4s"),
    ("DASH", "", "", "dash"),
    ("DASH", "cenc", "", "dash"),
    ("DASH", "cbcs", "", "dash"),
)
SCHEME_NAMES = {"": "clear", "aes128": "AES-128", "sampleaes": "SAMPLE-AES", "cenc": "cenc", "cbcs": "cbcs"}


@dataclass
class Figures:
    output: str
    scheme: str
    track: str
    ms: list[float]
    size: int

    @property
    def median(self) -> float:
        return statistics.median(self.ms)

    @property
    def p95(self) -> float:
        return sorted(self.ms)[int(0.95 * (len(self.ms) - 1))]


def settings_for(root: Path) -> Settings:
    values: dict[str, str] = {}
    for location, scheme in LOCATIONS.items():
        values[f"locations.{location}.encryption"] = scheme
        values[f"locations.{location}.encryption_key"] = KEY
    return apply(Settings(root=str(root), storage=StorageSettings(fsync=False)), values, "the benchmark")


def segment_paths(body: str, extension: str) -> list[str]:
    return re.findall(rf"[^\"\s]+-\d+\.{extension}", body)


async def dash_paths(app: PlayoutEndpoint, prefix: str, track: str) -> list[str]:
    mpd = (await call(app, f"{prefix}/{POINT}.isml/b.mpd", "")).body.decode()
    section = mpd[mpd.index(f'id="{track}"') :].split("</Representation>")[0]
    paths, t = [], 0
    for match in re.finditer(r'<S (?:t="(\d+)" )?d="(\d+)"(?: r="(\d+)")?', section):
        t = int(match[1]) if match[1] else t
        for _ in range(int(match[3] or 0) + 1):
            paths.append(f"b-{track}-{t}.dash")
            t += int(match[2])
    return paths


async def measure(root: Path, runs: int) -> list[Figures]:
    settings = settings_for(root)
    registry = build_registry(settings)
    app = create_app(settings, registry).asgi_app
    assert isinstance(app, PlayoutEndpoint)
    state = await call(app, f"/{POINT}.isml/b.m3u8", "")
    variants = [line for line in state.body.decode().splitlines() if line and not line.startswith("#")]
    tracks = [v.split("?")[0].removeprefix("b-").removesuffix(".m3u8") for v in variants]
    audio_tracks = re.findall(r'URI="b-([^"]+)\.m3u8', state.body.decode())
    out = []
    for output, location, query, extension in CASES:
        prefix = f"/{location}" if location else ""
        for track in [tracks[0], *audio_tracks]:
            if extension == "dash":
                paths = await dash_paths(app, prefix, track)
            else:
                playlist = await call(app, f"{prefix}/{POINT}.isml/b-{track}.m3u8", query)
                paths = segment_paths(playlist.body.decode(), extension)
            figures = Figures(
                output, SCHEME_NAMES[location], "video" if track == tracks[0] else "audio", [], 0
            )
            for _ in range(runs):
                for path in paths:
                    app.cache = type(app.cache)(app.cache.capacity)  # cold: nothing cached
                    t0 = time.perf_counter()
                    reply = await call(app, f"{prefix}/{POINT}.isml/{path.split('?')[0]}", "")
                    figures.ms.append((time.perf_counter() - t0) * 1000)
                    figures.size = max(figures.size, len(reply.body))
            out.append(figures)
    return out


def report(results: list[Figures]) -> None:
    clear = {(f.output, f.track): f.median for f in results if f.scheme == "clear"}
    columns = ("median ms", "p95 ms", "MB/s", "x clear")
    print(f"{'output':<10} {'scheme':<11} {'track':<6} " + " ".join(f"{c:>10}" for c in columns))
    for f in results:
        ratio = f.median / clear[(f.output, f.track)]
        rate = f.size / 1e6 / (f.median / 1000)
        values = (f"{f.median:.2f}", f"{f.p95:.2f}", f"{rate:.0f}", f"{ratio:.2f}")
        print(f"{f.output:<10} {f.scheme:<11} {f.track:<6} " + " ".join(f"{v:>10}" for v in values))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hw-bench-enc-") as folder:
        root = Path(folder) / "root"
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "origin.cli",
            "serve",
            "--root",
            str(root),
            "--http",
            f"127.0.0.1:{port}",
        ]
        server = start("headwater", [*argv, "--rtmp", "", "--set", "storage.fsync=false"], port, "/healthz")
        try:
            push(port)
            wait_stopped(f"http://127.0.0.1:{port}/{POINT}.isml")
        finally:
            server.stop()
        report(asyncio.run(measure(root, args.runs)))


if __name__ == "__main__":
    main()
