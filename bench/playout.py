"""Playout benchmark: a cached HLS media playlist and a cached 2 s TS segment served by
``headwater serve``, by the bare Hypercorn server returning the same bytes, and by nginx serving them
as static files, in one run; plus the time to package a cold 2 s, 6 Mbit/s TS segment.

    python bench/playout.py [--duration 10] [--rounds 1] [--connections 50] [--threads 2] [--mux-runs 50]

Pushes 30 s of 720p H.264 + AAC (6 Mbit/s, 2 s fragments) into a fresh content root with ffmpeg's
Smooth ingest and waits until the point stops; fetches the video track's media playlist and one 2 s
TS segment (which also puts both in Headwater's answer cache). Then, with all three servers up, ``wrk``
runs ``--duration`` seconds per server and URL, the three servers back to back for each URL (with
``--rounds`` > 1 in rotating order, reporting medians); the figures are requests/s and the server's
CPU time per request (steadier than requests/s when the client and other work share the cores).
The cold packaging time is ``TsTrack.from_fragments`` + ``mux_segment`` on the stored fragment,
in this process, ``--mux-runs`` times (median, p95); for comparison, the first request of every
other segment over HTTP (file read, packaging, ETag hash, send, and this client receiving 1.6 MB) and
as many requests of the cached segment (the same minus the packaging). The ratios Headwater/bare and
Headwater/nginx are the figures to compare across machines.

Needs ffmpeg, nginx and wrk (Debian: ``apt-get install -y --no-install-recommends ffmpeg nginx wrk``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.procs import bare_static_command, cpu_seconds, free_port, process_tree, stop_tree  # noqa: E402

REPO = HERE.parent
POINT = "bench/ch"
SECONDS = 30
PLAYLIST_GOAL = 0.8  # cached playlist req/s, headwater / bare hypercorn
COLD_TS_GOAL_MS = 20.0
# Headers every server adds itself: the bare app and nginx copy the rest of Headwater's.
OWN_HEADERS = {"date", "server", "content-length", "connection", "transfer-encoding"}


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    stop_signal: signal.Signals = signal.SIGTERM

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        """Signal the whole tree, wait, then kill whatever is left (only processes started here)."""
        stop_tree(self.proc, self.stop_signal, timeout=15, children_signal=signal.SIGTERM)


def start(
    name: str, argv: list[str], port: int, ready_path: str, env: dict[str, str] | None = None
) -> Server:
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    server = Server(name, proc, port, signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with {proc.returncode}")
        try:
            httpx.get(server.url(ready_path), timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.05)
    server.stop()
    raise SystemExit(f"{name} did not answer on port {port}")


# -- the stream --------------------------------------------------------------------------------


def push(port: int) -> None:
    """30 s of 720p30 H.264 (6 Mbit/s, a keyframe every 2 s) + AAC as one Smooth ingest POST."""
    lavfi = ["-f", "lavfi", "-t", str(SECONDS), "-i"]
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
            *lavfi, "testsrc2=size=1280x720:rate=30",
            *lavfi, "sine=sample_rate=48000",
            "-map", "0:v", "-map", "1:a",
            "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "6M", "-maxrate", "6M", "-bufsize", "6M",
            "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
            "-c:a", "aac",
            "-movflags", "isml+frag_keyframe", "-f", "ismv",
            f"http://127.0.0.1:{port}/{POINT}.isml/Streams(enc)",
        ],
        check=True,
        timeout=120,
    )  # fmt: skip


def wait_stopped(base: str) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state: dict[str, object] = httpx.get(f"{base}/state", timeout=5).json()
        if state["state"] == "stopped":
            return state
        time.sleep(0.1)
    raise SystemExit("the publishing point did not stop after the push")


@dataclass
class Resource:
    path: str
    body: bytes
    headers: list[tuple[str, str]]  # Headwater's, without those every server sets itself

    def header(self, name: str) -> str:
        return next(v for k, v in self.headers if k == name)


def fetch(client: httpx.Client, url: str) -> tuple[bytes, list[tuple[str, str]]]:
    answer = client.get(url)
    if answer.status_code != 200:
        raise SystemExit(f"GET {url}: {answer.status_code} {answer.text[:200]}")
    return answer.content, [(k, v) for k, v in answer.headers.items() if k.lower() not in OWN_HEADERS]


# -- loads ------------------------------------------------------------------------------------


@dataclass
class Load:
    rps: float
    cpu_us_per_request: float
    errors: str


@dataclass
class Loads:
    playlist: Load
    segment: Load


def wrk(server: Server, path: str, args: argparse.Namespace) -> Load:
    cpu0 = cpu_seconds(process_tree(server.proc.pid))
    out = subprocess.run(
        ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", server.url(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=args.duration + 30,
    ).stdout
    cpu = cpu_seconds(process_tree(server.proc.pid)) - cpu0
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if found is None or total is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    errors = [line.strip() for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line]
    requests = int(total[1])
    return Load(float(found[1]), cpu / max(requests, 1) * 1e6, "; ".join(errors))


def check_same(server: Server, resources: list[Resource]) -> None:
    with httpx.Client(timeout=10) as client:
        for r in resources:
            answer = client.get(server.url(r.path))
            if answer.status_code != 200 or answer.content != r.body:
                raise SystemExit(f"{server.name}: {r.path} answered {answer.status_code}, other bytes")


def measure(servers: list[Server], resources: list[Resource], args: argparse.Namespace) -> dict[str, Loads]:
    """wrk on every server for each resource in turn, so that the figures compared are measured
    minutes apart at most; with several rounds the order of the servers rotates and each figure is
    the median of its rounds."""
    for server in servers:
        check_same(server, resources)
    runs: dict[tuple[str, str], list[Load]] = {}
    for round_ in range(args.rounds):
        for r in resources:
            order = servers[round_ % len(servers) :] + servers[: round_ % len(servers)]
            for server in order:
                load = wrk(server, r.path, args)
                runs.setdefault((server.name, r.path), []).append(load)
                print(
                    f"  {server.name:<15} {Path(r.path).name:<30} {load.rps:>8.0f} req/s "
                    f"{load.cpu_us_per_request:>6.0f} µs CPU/req {load.errors}",
                    flush=True,
                )
    return {
        server.name: Loads(
            *(
                Load(
                    statistics.median(x.rps for x in runs[server.name, r.path]),
                    statistics.median(x.cpu_us_per_request for x in runs[server.name, r.path]),
                    "",
                )
                for r in resources
            )
        )
        for server in servers
    }


# -- references -------------------------------------------------------------------------------


def start_bare(work: Path, resources: list[Resource]) -> Server:
    routes = {}
    for i, r in enumerate(resources):
        body = work / f"bare-{i}"
        body.write_bytes(r.body)
        routes[r.path] = {"file": str(body), "headers": r.headers}
    (work / "routes.json").write_text(json.dumps(routes))
    port = free_port()
    argv, env = bare_static_command(port, work / "routes.json")
    return start("bare hypercorn", argv, port, resources[0].path, env=env)


def start_nginx(work: Path, resources: list[Resource]) -> Server:
    prefix = work / "nginx"
    docroot = prefix / "html"
    locations = []
    for r in resources:
        file = docroot / r.path.lstrip("/")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(r.body)
        extra = "".join(
            f'            add_header {k} "{v}";\n'
            for k, v in r.headers
            if k.lower() in ("cache-control", "access-control-allow-origin", "access-control-expose-headers")
        )
        locations.append(
            f"        location = {r.path} {{\n"
            f"            default_type {r.header('content-type')};\n{extra}        }}\n"
        )
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""daemon off;
master_process on;
worker_processes auto;
user root;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {docroot};
{"".join(locations)}    }}
}}
"""
    )
    argv = ["nginx", "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log")]
    return start("nginx", argv, port, resources[0].path)


# -- cold packaging ---------------------------------------------------------------------------


def cold_ts(root: Path, track_name: str, decode_time: int, runs: int) -> list[float]:
    """Milliseconds per ``mux_segment([TsTrack.from_fragments(track, [fragment])])``, from the stored
    files of one 2 s fragment, as Headwater does on a cache miss (minus the file read)."""
    from media.mpegts import TsTrack, mux_segment
    from storage.points import track_from_json

    folder = root / POINT / "_tracks" / track_name
    track = track_from_json((folder / "track.json").read_bytes(), (folder / "header.mp4").read_bytes())
    fragment = (folder / f"{decode_time:020d}.m4s").read_bytes()
    times = []
    for n in range(runs):
        t0 = time.perf_counter()
        mux_segment([TsTrack.from_fragments(track, [fragment])], n)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def timed_gets(client: httpx.Client, base: str, names: list[str]) -> list[float]:
    """Milliseconds for each GET over HTTP, one after the other."""
    times = []
    for name in names:
        t0 = time.perf_counter()
        fetch(client, f"{base}/{name}")
        times.append((time.perf_counter() - t0) * 1000)
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per server and URL")
    parser.add_argument("--connections", type=int, default=50, help="wrk -c")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    parser.add_argument("--rounds", type=int, default=1, help="wrk runs per server and URL (median)")
    parser.add_argument("--mux-runs", type=int, default=50, help="cold TS packagings to time")
    args = parser.parse_args()
    missing = [tool for tool in ("ffmpeg", "nginx", "wrk") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(
            f"missing {', '.join(missing)}: apt-get install -y --no-install-recommends {' '.join(missing)}"
        )

    servers: list[Server] = []
    try:
        with tempfile.TemporaryDirectory(prefix="headwater-playout-") as tmp:
            work = Path(tmp)
            root = work / "root"
            port = free_port()
            argv = [
                sys.executable, "-m", "origin.cli", "serve", "--root", str(root),
                "--http", f"127.0.0.1:{port}", "--rtmp", "", "--set", "log.level=warning",
            ]  # fmt: skip
            headwater = start("headwater", argv, port, "/healthz")
            servers.append(headwater)
            push(port)
            base = headwater.url(f"/{POINT}.isml")
            state = wait_stopped(base)
            tracks = state["tracks"]
            assert isinstance(tracks, list)
            video = next(t["name"] for t in tracks if t["kind"] == "video")

            with httpx.Client(timeout=30) as client:
                playlist_name = f"ch-{video}.m3u8"
                body, headers = fetch(client, f"{base}/{playlist_name}")
                playlist = Resource(f"/{POINT}.isml/{playlist_name}", body, headers)
                segments = [line for line in body.decode().splitlines() if line and not line.startswith("#")]
                # The second segment: a whole 2 s one, as every one but the last.
                chosen = segments[1]
                # First requests of the other whole segments: packaged on the way (cold), and the
                # same number of requests of the chosen one once cached (warm): the difference
                # is what packaging costs the server; the rest is HTTP and this client.
                cold = timed_gets(client, base, [s for s in segments[:-1] if s != chosen])
                body, headers = fetch(client, f"{base}/{chosen}")
                segment = Resource(f"/{POINT}.isml/{chosen}", body, headers)
                warm = timed_gets(client, base, [chosen] * len(cold))
            resources = [playlist, segment]
            decode_time = int(chosen.rsplit("-", 1)[1].removesuffix(".ts"))
            size = (root / POINT / "_tracks" / video / f"{decode_time:020d}.m4s").stat().st_size
            print(
                f"pushed {SECONDS} s; playlist {len(playlist.body)} B; segment {chosen}: "
                f"{len(segment.body) / 1e6:.2f} MB of TS from a {size / 1e6:.2f} MB fragment "
                f"({size * 8 / 2 / 1e6:.1f} Mbit/s); wrk -t{args.threads} -c{args.connections} "
                f"-d{args.duration}s, {args.rounds} round(s)",
                flush=True,
            )
            servers.append(start_bare(work, resources))
            servers.append(start_nginx(work, resources))
            results = measure(servers, resources, args)
            for server in servers:
                server.stop()
            servers.clear()
            mux = cold_ts(root, video, decode_time, args.mux_runs)
    finally:
        for server in servers:
            server.stop()

    print()
    print(f"{'server':<18}{'playlist req/s':>16}{'µs CPU/req':>12}{'segment req/s':>16}{'µs CPU/req':>12}")
    for name, loads in results.items():
        pl, seg = loads.playlist, loads.segment
        print(
            f"{name:<18}{pl.rps:>16.0f}{pl.cpu_us_per_request:>12.0f}"
            f"{seg.rps:>16.0f}{seg.cpu_us_per_request:>12.0f}"
        )
    hw = results["headwater"]
    for ref in ("bare hypercorn", "nginx"):
        other = results[ref]
        print(
            f"ratio headwater/{ref}: req/s playlist {hw.playlist.rps / other.playlist.rps:.2f}x, "
            f"segment {hw.segment.rps / other.segment.rps:.2f}x; CPU per request playlist "
            f"{hw.playlist.cpu_us_per_request / other.playlist.cpu_us_per_request:.2f}x, "
            f"segment {hw.segment.cpu_us_per_request / other.segment.cpu_us_per_request:.2f}x"
        )
    median = statistics.median(mux)
    print(
        f"cold TS packaging (in-process, {len(mux)} runs): median {median:.1f} ms, p95 {p95(mux):.1f} ms; "
        f"over HTTP: first request of {len(cold)} other segments median {statistics.median(cold):.1f} ms, "
        f"the cached one {statistics.median(warm):.1f} ms"
    )
    playlist_ratio = hw.playlist.rps / results["bare hypercorn"].playlist.rps
    print(
        f"goal cached playlist >= {PLAYLIST_GOAL}x bare: {playlist_ratio:.2f}x, "
        f"{'met' if playlist_ratio >= PLAYLIST_GOAL else 'NOT met'}"
    )
    print(
        f"goal cold TS segment < {COLD_TS_GOAL_MS:.0f} ms: median {median:.1f} ms "
        f"({median / COLD_TS_GOAL_MS:.2f}x the goal), {'met' if median < COLD_TS_GOAL_MS else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
