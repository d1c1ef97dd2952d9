"""DVR benchmark: the manifests of a publishing point holding a day of 2 s fragments, for windows
of 1 min, 1 h and 24 h, cold, uncached and cached, and the memory its index takes.

    python bench/dvr.py [--hours 24] [--runs 5] [--audio aac|exact] [--duration 3]
                        [--connections 10] [--threads 2] [--http-windows 60,86400]
                        [--profile DIR] [--keep DIR]

1. **Fill.** A content root gets the point ``bench/dvr.isml`` (``dvr_window_length=86400``) with
   three tracks: H.264 720p at 3 Mbit/s and 360p at 1 Mbit/s (90 kHz), AAC-LC at 128 kbit/s
   (48 kHz), ``--hours`` of 2 s fragments per track ending now, decode times in UTC. The point and
   its tracks are created through ``PointRegistry``/``PublishingPoint.declare``; the index is
   written with ``PointStore.write_index``, its records with the sizes 2 s of those bitrates take
   (±10 %); the fragment files are real CMAF fragments with tiny payloads, hard links of one file
   per track (manifests read only the index, and the first video fragment for the frame rate;
   loading the index checks that every record has its file). Audio fragments hold whole AAC
   frames, 94, 94, 94, 93 (2.005 or 1.984 s) as muxers cut them, or with ``--audio exact`` 2 s
   exactly (as an encoder cutting every 1.92 s, 90 frames, would give: runs of equal durations).
   Reference points hold exactly 1 min and 1 h of the same media.
2. **In-process**, the real ``PlayoutEndpoint`` (as ``origin.app.create_app`` wires it) called as
   an ASGI app with a minimal scope, per manifest (HLS master, HLS media playlist of the 720p
   track, DASH MPD, Smooth Manifest) and window (``?dvr_window_length=``):

   - *cold*: the first request to a fresh registry and endpoint (reads the point, loads and checks
     the index against the fragment files, cuts the segments, renders), and the CPU time of the
     event loop's thread meanwhile (what every other request and the ingest wait);
   - *uncached*: the request after one new fragment per track went through
     ``PublishingPoint.accept`` (the point's version changes: the cutters take the new fragments,
     the presentation and the manifest are built again): median of at least ``--runs`` (cheap ones
     are repeated up to a second); and the presentation alone (``_presentation``: cutting and
     choosing the window) after the same;
   - *cached*: the same request again (the answer cache), µs per request (median of batches of
     100).

   References measured in the same run: the same window on an archive as long as the window (the
   ratio is what the 24 h archive adds), and ``bench/bare_static.py``'s app answering the same
   bytes in-process (for cached requests).
3. **Memory**: ``tracemalloc`` around loading the three timelines and cutting their segments for
   the two groupings the packagers use (HLS/DASH, and one segment per fragment for Smooth); the
   objects this adds for the garbage collector and what one full collection then takes.
4. **Over HTTP**, ``headwater serve`` on the same root: the first request of each manifest, 24 h
   window first (the first loads the index), with the server's resident size after each; then
   ``wrk`` on the cached manifests of ``--http-windows`` against the bare Hypercorn server
   (``bench/bare_static.py``) answering the same bytes: requests/s, server CPU per request, ratios.

``--profile DIR`` adds cProfile runs of a cold start and of uncached requests of the largest
window (stats in DIR, the top entries printed). Needs wrk (``apt-get install -y
--no-install-recommends wrk``); about 2 min with the defaults on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import math
import os
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench import bare_static  # noqa: E402
from bench.playout import Server, start, wrk  # noqa: E402
from bench.procs import bare_static_command, free_port, process_tree  # noqa: E402
from conf.settings import Settings, StorageSettings  # noqa: E402
from ingest.points import PointRegistry, PublishingPoint  # noqa: E402
from media.boxes import NON_SYNC_SAMPLE_FLAGS, SYNC_SAMPLE_FLAGS, AVCConfigurationBox  # noqa: E402
from media.cmaf import AAC_FRAME_SAMPLES, track_from_config, write_fragment  # noqa: E402
from media.model import Fragment, Sample, Track, TrackKind  # noqa: E402
from media.presentation import SegmentCutter  # noqa: E402
from media.timeline import FLAG_KEYFRAME, TimelineEntry  # noqa: E402
from media.timerange import parse_control  # noqa: E402
from origin.app import build_registry, create_app  # noqa: E402
from origin.playout import PlayoutEndpoint  # noqa: E402
from storage.disk import DiskStore  # noqa: E402
from storage.keys import PointId  # noqa: E402
from storage.server_manifest import PointOptions  # noqa: E402

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGI = Callable[[Any, Any, Any], Awaitable[None]]  # an ASGI application

POINT = "bench/dvr"
STEM = "dvr"
DVR_WINDOW = 86400  # the point's dvr_window_length: a day
FRAGMENT_S = 2
FPS = 30
MAX_RUNS = 50  # uncached requests per manifest and window at most
RUNS_BUDGET_MS = 1000.0
LINKS_PER_FILE = 60_000  # ext4 allows 65,000 links to one inode
HOST = b"127.0.0.1"

# SPS/PPS of x264 (main profile) for 1280x720 and 640x360: the sizes the manifests show.
SPS_720 = bytes.fromhex("674d401feca02802dd8088000003000800000301e078c18cb0")
SPS_360 = bytes.fromhex("674d401eeca05017fcb80880000003008000001e078b16cb")
PPS = bytes.fromhex("68ebe3cb20")
ASC_AAC_LC_48K_STEREO = bytes.fromhex("1190")


def make_tracks() -> list[Track]:
    def avcc(sps: bytes) -> bytes:
        return AVCConfigurationBox(sps[1], sps[2], sps[3], 4, [sps], [PPS]).payload()

    return [
        track_from_config("video=3000000", "avc1", avcc(SPS_720), bitrate=3_000_000),
        track_from_config("video=1000000", "avc1", avcc(SPS_360), bitrate=1_000_000),
        track_from_config("audio=128000", "mp4a", ASC_AAC_LC_48K_STEREO, bitrate=128_000),
    ]


TRACKS = make_tracks()
HLS_TRACK = TRACKS[0].name


def timing(track: Track, start_s: int, i: int, exact: bool = False) -> tuple[int, int]:
    """Decode time and duration of a track's ``i``-th fragment of a run starting at ``start_s``
    (UTC seconds). Video: 2 s exactly. AAC: whole 1024-sample frames up to each 2 s boundary, or
    with ``exact`` 2 s exactly (what an encoder cutting every 1.92 s, 90 frames, would give)."""
    scale = track.timescale
    base = start_s * scale
    if track.kind is TrackKind.VIDEO or exact:
        duration = FRAGMENT_S * scale
        return base + i * duration, duration
    per = Fraction(FRAGMENT_S * scale, AAC_FRAME_SAMPLES)
    first, last = math.ceil(i * per), math.ceil((i + 1) * per)
    return base + first * AAC_FRAME_SAMPLES, (last - first) * AAC_FRAME_SAMPLES


def fragment(track: Track, decode_time: int, duration: int) -> Fragment:
    """A real CMAF fragment of ``duration`` with a few bytes per sample."""
    if track.kind is TrackKind.VIDEO:
        frames = FRAGMENT_S * FPS
        tick = duration // frames
        samples = tuple(
            Sample(tick, 8, SYNC_SAMPLE_FLAGS if n == 0 else NON_SYNC_SAMPLE_FLAGS) for n in range(frames)
        )
    else:
        samples = tuple(
            Sample(AAC_FRAME_SAMPLES, 6, SYNC_SAMPLE_FLAGS) for _ in range(duration // AAC_FRAME_SAMPLES)
        )
    payload = bytes(sum(s.size for s in samples))
    data = write_fragment(1, decode_time, samples, payload)
    return Fragment(track.name, decode_time, duration, samples, data)


def settings_for(root: Path) -> Settings:
    return Settings(root=str(root), storage=StorageSettings(fsync=False))


# -- fill -------------------------------------------------------------------------------------


@dataclass
class Feed:
    """Where each track of a point carries on: the next fragment's index in its run."""

    start_s: int
    exact: bool
    next: dict[str, int] = field(default_factory=dict)

    async def append(self, point: PublishingPoint) -> None:
        """One new fragment per track through the ingest path (a live encoder's next 2 s)."""
        for track in TRACKS:
            i = self.next[track.name]
            await point.accept(fragment(track, *timing(track, self.start_s, i, self.exact)))
            self.next[track.name] = i + 1


async def fill(root: Path, name: str, seconds: int, end_s: int, exact: bool) -> Feed:
    """A point holding ``seconds`` of every track, ending at ``end_s`` (UTC)."""
    registry = build_registry(settings_for(root))
    disk = registry.store.store
    assert isinstance(disk, DiskStore)
    pid = PointId.parse(name)
    point = await registry.create(pid, PointOptions(dvr_window_length=DVR_WINDOW))
    await point.declare("bench", tuple(TRACKS), b"")  # writes the tracks, state "started"
    count = seconds // FRAGMENT_S
    feed = Feed(end_s - count * FRAGMENT_S, exact)
    for track in TRACKS:
        rng = random.Random(track.name)
        scale = track.timescale
        entries = []
        source: Path | None = None
        for i in range(count):
            decode_time, duration = timing(track, feed.start_s, i, exact)
            key = pid.fragment_key(track.name, decode_time)
            path = disk.root.joinpath(*key.split("/"))
            if i % LINKS_PER_FILE == 0:
                data = fragment(track, decode_time, duration).data
                await disk.put(key, data)
                source = path
            else:
                assert source is not None
                os.link(source, path)
            # The size 2 s of this bitrate take, ±10 %: what the bandwidth figures are made from.
            size = int(track.bitrate * duration / scale / 8 * rng.uniform(0.9, 1.1))
            wallclock = (decode_time + duration) * 1000 // scale  # UTC decode times: their own clock
            entries.append(TimelineEntry(decode_time, duration, size, wallclock, FLAG_KEYFRAME))
        await registry.store.write_index(pid, track.name, entries)
        feed.next[track.name] = count
    return feed


# -- in-process requests ----------------------------------------------------------------------


def scope_of(path: str, query: str) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", HOST)],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 50000),
    }


async def receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def discard(message: Message) -> None:
    return None


@dataclass
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


async def call(app: ASGI, path: str, query: str) -> Reply:
    reply = Reply(0, [], b"")

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            reply.status = message["status"]
            reply.headers = list(message["headers"])
        else:
            reply.body += message.get("body", b"")

    await app(scope_of(path, query), receive, send)
    if reply.status != 200:
        raise SystemExit(f"GET {path}?{query}: {reply.status} {reply.body[:300]!r}")
    return reply


async def per_request_us(app: ASGI, path: str, query: str, budget: float = 0.25) -> float:
    """µs per request of the same request repeated in batches of 100 for about ``budget`` s: the
    median batch, so that a garbage collection of the whole heap (see :func:`measure_memory`)
    falling into one batch does not count."""
    scope = scope_of(path, query)
    gc.collect()
    batches: list[float] = []
    t0 = time.perf_counter()
    while len(batches) < 5 or time.perf_counter() - t0 < budget:
        t = time.perf_counter()
        for _ in range(100):
            await app(scope, receive, discard)
        batches.append((time.perf_counter() - t) / 100 * 1e6)
    return statistics.median(batches)


@dataclass(frozen=True)
class Manifest:
    label: str
    resource: str  # after .isml/
    grouping: str  # "hls", "dash" or "smooth": which minimum fragment length cuts its segments

    def path(self, point: str) -> str:
        return f"/{point}.isml/{self.resource}"


MANIFESTS = (
    Manifest("HLS master", f"{STEM}.m3u8", "hls"),
    Manifest("HLS media", f"{STEM}-{HLS_TRACK}.m3u8", "hls"),
    Manifest("DASH MPD", f"{STEM}.mpd", "dash"),
    Manifest("Smooth", "Manifest", "smooth"),
)


def query_of(window: int) -> str:
    return f"dvr_window_length={window}"


@dataclass
class Row:
    manifest: Manifest
    window: int
    size: int = 0
    cold_ms: float = 0.0
    cold_loop_ms: float = 0.0  # CPU time of the event loop's thread during the cold request
    ref_cold_ms: float = 0.0
    uncached_ms: list[float] = field(default_factory=list)
    ref_uncached_ms: list[float] = field(default_factory=list)
    present_ms: list[float] = field(default_factory=list)
    cached_us: float = 0.0
    bare_us: float = 0.0
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def new_endpoint(root: Path) -> tuple[PointRegistry, PlayoutEndpoint]:
    """A registry and playout endpoint as ``headwater serve`` wires them, with nothing loaded."""
    registry = build_registry(settings_for(root))
    app: object = create_app(settings_for(root), registry).asgi_app
    assert isinstance(app, PlayoutEndpoint)
    return registry, app


def ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


async def cold(root: Path, point: str, manifest: Manifest, window: int) -> tuple[float, float, Reply]:
    """ms of the first request to a fresh endpoint, and ms of CPU the event loop's thread spent
    (the rest is waiting for file listings and reads in worker threads): the time every other
    request and the ingest wait."""
    _, endpoint = new_endpoint(root)
    gc.collect()
    t0, cpu0 = time.perf_counter(), time.thread_time()
    reply = await call(endpoint, manifest.path(point), query_of(window))
    elapsed, loop_cpu = ms_since(t0), (time.thread_time() - cpu0) * 1000
    del endpoint
    gc.collect()
    return elapsed, loop_cpu, reply


async def uncached(
    endpoint: PlayoutEndpoint, point: PublishingPoint, feed: Feed, manifest: Manifest, window: int
) -> float:
    """ms for the request after one new fragment per track."""
    await feed.append(point)
    t0 = time.perf_counter()
    await call(endpoint, manifest.path(str(point.pid)), query_of(window))
    return ms_since(t0)


async def presentation_only(
    endpoint: PlayoutEndpoint, point: PublishingPoint, feed: Feed, manifest: Manifest, window: int
) -> float:
    """ms for the presentation alone (cutting and selecting the window) after new fragments."""
    options = point.options
    minimum = {
        "hls": options.hls_minimum_fragment_length,
        "dash": options.mpd_minimum_fragment_length,
        "smooth": None,
    }[manifest.grouping]
    control = parse_control({"dvr_window_length": [str(window)]})
    await feed.append(point)
    t0 = time.perf_counter()
    await endpoint._presentation(point, options, minimum, control)
    return ms_since(t0)


async def measure_in_process(
    root: Path, rows: list[Row], feeds: dict[str, Feed], refs: dict[int, str], runs: int
) -> None:
    # Cold: a fresh registry and endpoint for every first request.
    for row in rows:
        row.cold_ms, row.cold_loop_ms, reply = await cold(root, POINT, row.manifest, row.window)
        row.size, row.body, row.headers = len(reply.body), reply.body, reply.headers
        if row.window in refs:
            row.ref_cold_ms, _, _ = await cold(root, refs[row.window], row.manifest, row.window)
        print(
            f"  cold {row.manifest.label:<11} {row.window:>6} s {row.cold_ms:>9.1f} ms "
            f"({row.cold_loop_ms:.1f} ms CPU on the event loop)",
            flush=True,
        )

    registry, endpoint = new_endpoint(root)
    points = {}
    for name in [POINT, *refs.values()]:
        found = await registry.get(PointId.parse(name))
        assert found is not None
        points[name] = found
    for row in rows:  # every manifest once, so cutters exist and only new fragments are cut
        await call(endpoint, row.manifest.path(POINT), query_of(row.window))
        if row.window in refs:
            await call(endpoint, row.manifest.path(refs[row.window]), query_of(row.window))

    for row in rows:
        # At least ``runs``; cheap ones repeated up to a second of requests, for a steadier median.
        while len(row.uncached_ms) < runs or (
            len(row.uncached_ms) < MAX_RUNS and sum(row.uncached_ms) < RUNS_BUDGET_MS
        ):
            row.uncached_ms.append(
                await uncached(endpoint, points[POINT], feeds[POINT], row.manifest, row.window)
            )
            row.present_ms.append(
                await presentation_only(endpoint, points[POINT], feeds[POINT], row.manifest, row.window)
            )
            if row.window in refs:
                ref = refs[row.window]
                row.ref_uncached_ms.append(
                    await uncached(endpoint, points[ref], feeds[ref], row.manifest, row.window)
                )
        print(
            f"  uncached {row.manifest.label:<11} {row.window:>6} s {med(row.uncached_ms):>9.2f} ms",
            flush=True,
        )

    # Cached: the same request again (its answer cached at the current version), and the bare app
    # answering the same bytes.
    for row in rows:
        path, query = row.manifest.path(POINT), query_of(row.window)
        reply = await call(endpoint, path, query)
        row.size, row.body, row.headers = len(reply.body), reply.body, reply.headers
        row.cached_us = await per_request_us(endpoint, path, query)
        bare_static.ROUTES[path] = (row.headers, row.body)
        row.bare_us = await per_request_us(bare_static.app, path, query)


# -- memory -----------------------------------------------------------------------------------


@dataclass
class Memory:
    fragments: int  # per track
    timelines: int  # bytes
    cutters: dict[str, int]  # grouping → bytes
    index_bytes: int  # on disk, all tracks
    tracked: int  # objects the garbage collector tracks for the timelines and cutters
    full_gc_ms: float  # one full collection with them loaded


async def measure_memory(root: Path) -> Memory:
    registry, _ = new_endpoint(root)
    point = await registry.get(PointId.parse(POINT))
    assert point is not None
    gc.collect()
    tracked0 = len(gc.get_objects())
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    timelines = [await point.timeline(t.name) for t in TRACKS]
    after_load = tracemalloc.get_traced_memory()[0]
    cutters: dict[str, int] = {}
    kept: list[SegmentCutter] = []
    for label, minimum in (("HLS/DASH", point.options.hls_minimum_fragment_length), ("Smooth", None)):
        before = tracemalloc.get_traced_memory()[0]
        for track, timeline in zip(TRACKS, timelines, strict=True):
            cutter = SegmentCutter(track.timescale, minimum or Fraction(0), every_fragment=minimum is None)
            cutter.update(timeline)
            kept.append(cutter)
        cutters[label] = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    tracked = len(gc.get_objects()) - tracked0
    pauses = []
    for _ in range(3):
        t0 = time.perf_counter()
        gc.collect()
        pauses.append(ms_since(t0))
    disk = registry.store.store
    assert isinstance(disk, DiskStore)
    folders = [disk.root.joinpath(*point.pid.index_prefix(t.name).split("/")) for t in TRACKS]
    index = sum(part.stat().st_size for folder in folders for part in folder.iterdir())
    del kept
    return Memory(len(timelines[0]), after_load - base, cutters, index, tracked, statistics.median(pauses))


# -- profile ----------------------------------------------------------------------------------


async def profile(root: Path, folder: Path, feed: Feed, window: int) -> None:
    """cProfile of a cold start (first HLS media playlist) and of uncached requests of every
    manifest of ``window``; the stats go to ``folder``, the top entries to stdout."""
    folder.mkdir(parents=True, exist_ok=True)
    registry, endpoint = new_endpoint(root)
    hls_media = MANIFESTS[1]
    profiler = cProfile.Profile()
    profiler.enable()
    await call(endpoint, hls_media.path(POINT), query_of(window))
    profiler.disable()
    report(profiler, folder / "cold.prof", "cold start: first HLS media playlist")
    point = await registry.get(PointId.parse(POINT))
    assert point is not None
    for manifest in MANIFESTS:
        await call(endpoint, manifest.path(POINT), query_of(window))
        profiler = cProfile.Profile()
        for _ in range(3):
            await feed.append(point)
            profiler.enable()
            await call(endpoint, manifest.path(POINT), query_of(window))
            profiler.disable()
        name = manifest.label.lower().replace(" ", "-")
        report(
            profiler,
            folder / f"uncached-{name}.prof",
            f"uncached {manifest.label}, {window} s window (3 requests)",
        )


def report(profiler: cProfile.Profile, path: Path, title: str) -> None:
    profiler.dump_stats(path)
    print(f"\n-- {title} ({path})")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(14)


# -- over HTTP --------------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    total = 0
    for p in process_tree(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


@dataclass
class HttpRow:
    manifest: Manifest
    window: int
    first_ms: float = 0.0
    rss_after: float = 0.0
    headwater: tuple[float, float] = (0.0, 0.0)  # req/s, µs CPU per request
    bare: tuple[float, float] = (0.0, 0.0)


def measure_http(
    root: Path, work: Path, windows: list[int], args: argparse.Namespace
) -> tuple[float, list[HttpRow]]:
    port = free_port()
    argv = [
        sys.executable, "-m", "origin.cli", "serve", "--root", str(root), "--http", f"127.0.0.1:{port}",
        "--rtmp", "", "--set", "log.level=warning", "--set", "storage.fsync=false",
    ]  # fmt: skip
    servers: list[Server] = []
    try:
        headwater = start("headwater", argv, port, "/healthz")
        servers.append(headwater)
        rss0 = rss_mib(headwater.proc.pid)
        rows = []
        routes = {}
        order = sorted(windows, reverse=True)  # the 24 h window first: its first request loads the index
        with httpx.Client(timeout=120) as client:
            for window in order:
                for i, manifest in enumerate(MANIFESTS):
                    row = HttpRow(manifest, window)
                    url = headwater.url(manifest.path(POINT)) + "?" + query_of(window)
                    t0 = time.perf_counter()
                    answer = client.get(url)
                    row.first_ms = ms_since(t0)
                    if answer.status_code != 200:
                        raise SystemExit(f"GET {url}: {answer.status_code} {answer.text[:300]}")
                    row.rss_after = rss_mib(headwater.proc.pid)
                    body = work / f"bare-{window}-{i}"
                    body.write_bytes(answer.content)
                    own = {"date", "server", "content-length", "connection", "transfer-encoding"}
                    headers = [(k, v) for k, v in answer.headers.items() if k.lower() not in own]
                    routes[bare_path(manifest, window)] = {"file": str(body), "headers": headers}
                    rows.append(row)
                    print(
                        f"  first GET {manifest.label:<11} {window:>6} s {row.first_ms:>9.1f} ms, "
                        f"RSS {row.rss_after:.1f} MiB",
                        flush=True,
                    )
        (work / "routes.json").write_text(json.dumps(routes))
        bare_port = free_port()
        bare_argv, env = bare_static_command(bare_port, work / "routes.json")
        bare = start("bare hypercorn", bare_argv, bare_port, next(iter(routes)), env=env)
        servers.append(bare)
        for row in rows:
            if row.window not in args.http_windows:
                continue
            path = row.manifest.path(POINT) + "?" + query_of(row.window)
            load = wrk(headwater, path, args)
            row.headwater = (load.rps, load.cpu_us_per_request)
            load = wrk(bare, bare_path(row.manifest, row.window), args)
            row.bare = (load.rps, load.cpu_us_per_request)
            print(
                f"  wrk {row.manifest.label:<11} {row.window:>6} s headwater {row.headwater[0]:>7.0f} req/s "
                f"{row.headwater[1]:>6.0f} µs CPU/req, bare {row.bare[0]:>7.0f} req/s "
                f"{row.bare[1]:>6.0f} µs CPU/req",
                flush=True,
            )
    finally:
        for server in servers:
            server.stop()
    return rss0, rows


def bare_path(manifest: Manifest, window: int) -> str:
    return f"/w{window}/{manifest.resource}"


# -- main -------------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def in_process(
    root: Path, args: argparse.Namespace, windows: list[int], archive_s: int
) -> tuple[list[Row], Memory]:
    end_s = int(time.time())
    t0 = time.perf_counter()
    exact = args.audio == "exact"
    feeds = {POINT: await fill(root, POINT, archive_s, end_s, exact)}
    fill_s = time.perf_counter() - t0
    refs = {}
    for window in windows:
        if window < archive_s:
            refs[window] = f"bench/ref{window}"
            feeds[refs[window]] = await fill(root, refs[window], window, end_s, exact)
    count = archive_s // FRAGMENT_S
    print(
        f"filled {POINT}: {len(TRACKS)} tracks x {count} fragments of {FRAGMENT_S} s in {fill_s:.1f} s; "
        f"references {', '.join(refs.values())}",
        flush=True,
    )
    gc.collect()
    gc.freeze()  # as headwater serve does after start-up

    memory = await measure_memory(root)
    rows = [Row(m, w) for w in windows for m in MANIFESTS]
    await measure_in_process(root, rows, feeds, refs, args.runs)
    if args.profile:
        await profile(root, Path(args.profile), feeds[POINT], windows[-1])
    return rows, memory


def print_results(
    rows: list[Row], memory: Memory, http: tuple[float, list[HttpRow]] | None, archive_s: int
) -> None:
    hours = archive_s / 3600
    print()
    print(
        f"In-process, the real PlayoutEndpoint, archive {hours:g} h. cold: first request to a fresh endpoint "
        "(loop: CPU on the event loop); uncached: after one new fragment per track (present: the "
        "presentation alone); ref: the same window on an archive as long as the window; cached: "
        "the answer cache, bare: bench/bare_static.py with the same bytes"
    )
    print(
        f"{'manifest':<12}{'window s':>9}{'bytes':>9}{'cold ms':>9}{'loop':>7}{'ref':>6}"
        f"{'uncached ms':>12}{'ref':>7}{'ratio':>7}{'present':>8}{'cached µs':>10}{'bare':>6}{'ratio':>7}"
    )
    for r in rows:
        ref_cold = f"{r.ref_cold_ms:.1f}" if r.ref_cold_ms else "-"
        ref_unc = f"{med(r.ref_uncached_ms):.2f}" if r.ref_uncached_ms else "-"
        ratio = f"{med(r.uncached_ms) / med(r.ref_uncached_ms):.2f}x" if r.ref_uncached_ms else "-"
        print(
            f"{r.manifest.label:<12}{r.window:>9}{r.size:>9}{r.cold_ms:>9.0f}{r.cold_loop_ms:>7.0f}{ref_cold:>6}"
            f"{med(r.uncached_ms):>12.2f}{ref_unc:>7}{ratio:>7}{med(r.present_ms):>8.2f}"
            f"{r.cached_us:>10.1f}{r.bare_us:>6.1f}{r.cached_us / r.bare_us:>6.1f}x"
        )
    versions = Fraction(len(TRACKS), FRAGMENT_S)
    for window in sorted({r.window for r in rows}):
        cost = sum(med(r.uncached_ms) for r in rows if r.window == window) * versions / 1000
        print(
            f"at the live edge ({float(versions):g} new fragments per second, each a new version), "
            f"rendering these four manifests of a {window} s window once per version takes "
            f"{float(cost):.0%} of a core"
        )
    total_fragments = memory.fragments * len(TRACKS)
    print(
        f"memory (tracemalloc): timelines of {len(TRACKS)} x {memory.fragments} fragments "
        f"{memory.timelines / 2**20:.1f} MiB ({memory.timelines / total_fragments:.0f} B per fragment; "
        f"index on disk {memory.index_bytes / 2**20:.1f} MiB); cutters "
        + ", ".join(
            f"{label} {size / 2**20:.1f} MiB ({size / total_fragments:.0f} B per fragment)"
            for label, size in memory.cutters.items()
        )
    )
    print(
        f"garbage collector: {memory.tracked} more objects tracked with them; a full collection "
        f"takes {memory.full_gc_ms:.0f} ms"
    )
    if http is None:
        return
    rss0, http_rows = http
    print()
    print("Over HTTP: headwater serve (fresh process) and the bare Hypercorn app with the same bytes (wrk)")
    print(
        f"{'manifest':<12}{'window s':>9}{'first ms':>10}{'RSS MiB':>9}"
        f"{'hw req/s':>10}{'µs CPU':>8}{'bare req/s':>12}{'µs CPU':>8}{'req/s':>7}{'CPU':>7}"
    )
    for h in http_rows:
        line = f"{h.manifest.label:<12}{h.window:>9}{h.first_ms:>10.1f}{h.rss_after:>9.1f}"
        if h.headwater[0]:
            line += (
                f"{h.headwater[0]:>10.0f}{h.headwater[1]:>8.0f}{h.bare[0]:>12.0f}{h.bare[1]:>8.0f}"
                f"{h.headwater[0] / h.bare[0]:>6.2f}x{h.headwater[1] / h.bare[1]:>6.2f}x"
            )
        print(line)
    print(f"RSS before the first request {rss0:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=float, default=24, help="archive length")
    parser.add_argument(
        "--runs", type=int, default=5, help="uncached requests per manifest and window (median)"
    )
    parser.add_argument("--duration", type=int, default=3, help="seconds of wrk per server and URL")
    parser.add_argument("--connections", type=int, default=10, help="wrk -c")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    parser.add_argument(
        "--http-windows",
        default="60,86400",
        help="windows wrk measures (comma-separated seconds; empty: no HTTP)",
    )
    parser.add_argument(
        "--audio",
        choices=("aac", "exact"),
        default="aac",
        help="audio fragments of whole AAC frames (94, 94, 94, 93: 2.005 or 1.984 s) or of exactly 2 s",
    )
    parser.add_argument("--profile", metavar="DIR", help="also cProfile a cold start and uncached requests")
    parser.add_argument("--keep", metavar="DIR", help="fill this folder (kept) instead of a temporary one")
    args = parser.parse_args()
    archive_s = int(args.hours * 3600) // FRAGMENT_S * FRAGMENT_S
    windows = sorted({w for w in (60, 3600, DVR_WINDOW) if w <= archive_s} | {min(archive_s, DVR_WINDOW)})
    args.http_windows = [int(w) for w in args.http_windows.split(",") if w.strip()]
    args.http_windows = [min(w, windows[-1]) for w in args.http_windows]
    if args.http_windows and shutil.which("wrk") is None:
        raise SystemExit("missing wrk: apt-get install -y --no-install-recommends wrk (or --http-windows '')")

    with tempfile.TemporaryDirectory(prefix="headwater-dvr-") as tmp:
        work = Path(tmp)
        root = Path(args.keep) if args.keep else work / "root"
        if root.exists() and any(root.iterdir()):
            raise SystemExit(f"{root} is not empty")
        rows, memory = asyncio.run(in_process(root, args, windows, archive_s))
        http = measure_http(root, work, windows, args) if args.http_windows else None
    print_results(rows, memory, http, archive_s)


if __name__ == "__main__":
    main()
