"""DVR end to end against a running server: window lengths, time-shift, virtual sub-clips (ISO and
seconds, VOD, start-over), 400s naming the parameter, egress status of segments outside what was
asked, discontinuities, the archive listing, the archive purge across a restart, end of stream,
and real ffmpeg pushing and reading back a clip.

Two hours of media are posted in seconds: 40 s of real H.264 and AAC, encoded once by ffmpeg,
re-posted with shifted decode times (one CMAF request per track), timed in UTC as encoders with a
wall clock send them.
"""

from __future__ import annotations

import json
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import m3u8  # type: ignore[import-untyped]
import pytest

from ingest.fmp4 import Fmp4Receiver, FragmentReceived, TracksDeclared
from media.boxes import SegmentTypeBox
from media.cmaf import read_fragment, write_fragment
from media.model import Sample
from tests.conftest import Server, lavfi_inputs, run_ffmpeg
from tests.e2e.test_ffmpeg_ingest import X264, smooth_args

pytestmark = pytest.mark.e2e

DASH = "{urn:mpeg:dash:schema:mpd:2011}"
LOOP_S = 40  # the encoded stretch: 1000 frames at 25 fps, 1875 AAC frames at 48 kHz
WINDOW_S = 120  # the main point's dvr_window_length
QUIET = ["storage.purge_interval=1", "storage.fsync=false", "log.level=info"]


# -- media --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loop:
    """40 s of one track as CMAF fragments (offset in the loop, samples, sample bytes), to post at
    any start time."""

    stream: str
    header: bytes
    timescale: int
    fragments: tuple[tuple[int, tuple[Sample, ...], bytes], ...]

    def at(self, start_s: int) -> list[bytes]:
        base = start_s * self.timescale
        return [
            write_fragment(1, base + offset, samples, payload) for offset, samples, payload in self.fragments
        ]

    def starts(self, start_s: int) -> list[int]:
        return [start_s * self.timescale + offset for offset, _, _ in self.fragments]


def _read(path: Path, stream: str) -> tuple[bytes, list[tuple[Sample, bytes]]]:
    events = Fmp4Receiver(stream, 1 << 26).feed(path.read_bytes())
    declared = events[0]
    assert isinstance(declared, TracksDeclared)
    samples: list[tuple[Sample, bytes]] = []
    for ev in events[1:]:
        if not isinstance(ev, FragmentReceived):
            continue  # the mfra ffmpeg ends the file with
        _, items, payload = read_fragment(ev.fragment.data)
        pos = 0
        for sample in items:
            samples.append((sample, payload[pos : pos + sample.size]))
            pos += sample.size
    return declared.header, samples


def _group(
    samples: list[tuple[Sample, bytes]], sizes: list[int]
) -> tuple[tuple[int, tuple[Sample, ...], bytes], ...]:
    out = []
    offset = i = 0
    for size in sizes:
        chunk = samples[i : i + size]
        out.append((offset, tuple(s for s, _ in chunk), b"".join(p for _, p in chunk)))
        offset += sum(s.duration for s, _ in chunk)
        i += size
    return tuple(out)


@pytest.fixture(scope="module")
def loops(tmp_path_factory: pytest.TempPathFactory) -> tuple[Loop, Loop]:
    folder = tmp_path_factory.mktemp("media")
    cmaf = ["-f", "mp4", "-movflags", "empty_moov+separate_moof+default_base_moof+cmaf"]
    video_path, audio_path = folder / "video.mp4", folder / "audio.mp4"
    result = run_ffmpeg(
        *lavfi_inputs(LOOP_S, audio=False),
        *X264,
        "-b:v",
        "30k",
        *cmaf,
        "-frag_duration",
        "2000000",
        str(video_path),
    )
    assert result.returncode == 0, result.stderr
    result = run_ffmpeg(
        "-f", "lavfi", "-t", str(LOOP_S), "-i", "sine=f=440:sample_rate=48000",
        "-c:a", "aac", "-b:a", "24k", *cmaf, str(audio_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    video_header, video = _read(video_path, "video.cmfv")
    audio_header, audio = _read(audio_path, "audio.cmfa")
    assert len(video) == 25 * LOOP_S and sum(s.duration for s, _ in video) == 12800 * LOOP_S
    assert [i for i, (s, _) in enumerate(video) if s.is_sync] == list(range(0, 25 * LOOP_S, 50))  # 2 s GOPs
    # 1875 AAC frames are exactly 40 s: fragments of 94, 94, 94 and 93 frames every 8 s.
    audio = audio[:1875]
    assert sum(s.duration for s, _ in audio) == 48000 * LOOP_S
    return (
        Loop("video.cmfv", video_header, 12800, _group(video, [50] * 20)),
        Loop("audio.cmfa", audio_header, 48000, _group(audio, [94, 94, 94, 93] * 5)),
    )


def post(url: str, loops: tuple[Loop, Loop], starts: list[int], *, last: bool = False) -> None:
    """One request per track: its CMAF header, then the loops starting at ``starts`` (UTC
    seconds); ``last`` ends the stream (styp with lmsg before the last fragment)."""

    def send(loop: Loop) -> None:
        fragments = [f for start in starts for f in loop.at(start)]
        if last:
            fragments[-1] = bytes(SegmentTypeBox(b"cmfs", 0, [b"cmfs", b"lmsg"])) + fragments[-1]
        body = loop.header + b"".join(fragments)
        answer = httpx.post(f"{url}/Streams({loop.stream})", content=body, timeout=120)
        assert answer.status_code == 200, answer.text
        assert answer.json()["stored"] == len(fragments), answer.text

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(send, loops))


# -- reading manifests ----------------------------------------------------------------------------


def iso(seconds: float) -> str:
    stamp = datetime.fromtimestamp(seconds, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{stamp.microsecond // 1000:03d}Z" if seconds % 1 else "Z"
    )


def iso_ms(seconds: float) -> str:
    """The form the origin writes: always milliseconds."""
    ms = round(seconds * 1000)
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def utc_s(stamp: datetime | None) -> float:
    assert stamp is not None
    return stamp.timestamp()


def playlist(url: str) -> m3u8.M3U8:
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200, (url, answer.text)
    return m3u8.loads(answer.text)


def xml(url: str) -> ET.Element:
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200, (url, answer.text)
    return ET.fromstring(answer.text)


def paths(p: m3u8.M3U8) -> list[str]:
    return [s.uri.split("?")[0] for s in p.segments]


def segment_time(uri: str) -> int:
    return int(uri.split("?")[0].rsplit("-", 1)[1].split(".")[0])


def dash_times(mpd: ET.Element, representation: str) -> list[tuple[int, int]]:
    """(t, d) of every segment of a representation's SegmentTimeline."""
    out: list[tuple[int, int]] = []
    rep = mpd.find(f".//{DASH}Representation[@id='{representation}']")
    assert rep is not None
    t = 0
    for s in rep.iter(f"{DASH}S"):
        t = int(s.get("t", t))
        for _ in range(int(s.get("r", "0")) + 1):
            out.append((t, int(s.get("d", "0"))))
            t += int(s.get("d", "0"))
    return out


def smooth_times(manifest: ET.Element, name: str) -> list[tuple[int, int]]:
    index = manifest.find(f"StreamIndex[@Name='{name}']")
    assert index is not None
    out: list[tuple[int, int]] = []
    t = 0
    for c in index.iter("c"):
        t = int(c.get("t", t))
        for _ in range(int(c.get("r", "1"))):
            out.append((t, int(c.get("d", "0"))))
            t += int(c.get("d", "0"))
    return out


def smooth_url(manifest: ET.Element, name: str, time: int) -> str:
    index = manifest.find(f"StreamIndex[@Name='{name}']")
    assert index is not None
    level = index.find("QualityLevel")
    assert level is not None
    template = index.get("Url", "")
    return template.replace("{bitrate}", level.get("Bitrate", "")).replace("{start time}", str(time))


def dash_url(mpd: ET.Element, representation: str, time: int) -> str:
    template = mpd.find(f".//{DASH}Representation[@id='{representation}']/{DASH}SegmentTemplate")
    assert template is not None
    return (
        template.get("media", "").replace("$RepresentationID$", representation).replace("$Time$", str(time))
    )


# -- the two-hour archive -------------------------------------------------------------------------


@dataclass(frozen=True)
class Archive:
    server: Server
    point: str  # http://…/live/dvr.isml
    start_s: int  # UTC of the first fragment
    gap_s: int  # UTC where the 40 s gap begins
    end_s: int  # UTC of the end of the last fragment
    video: list[int]  # start of every stored video fragment (timescale 12800), in order

    def number(self, seconds: int) -> int:
        """HLS media sequence number of the video segment starting at UTC ``seconds``."""
        return self.video.index(seconds * 12800)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, loops: tuple[Loop, Loop]) -> Iterator[Archive]:
    base = tmp_path_factory.mktemp("dvr")
    server = Server(base / "root", base / "server.log", QUIET).start()
    try:
        point = f"{server.url}/live/dvr.isml"
        options = f"<smil><head><meta name='dvr_window_length' content='{WINDOW_S}'/></head></smil>"
        assert httpx.put(point, content=options).status_code == 201
        end_s = int(time.time()) // LOOP_S * LOOP_S
        start_s = end_s - 2 * 3600
        gap_s = start_s + 3600
        starts = [s for s in range(start_s, end_s, LOOP_S) if s != gap_s]  # one loop left out
        post(point, loops, starts)
        video = [t for s in starts for t in loops[0].starts(s)]
        yield Archive(server, point, start_s, gap_s, end_s, video)
    finally:
        server.stop()


def test_archive_lists_both_stretches_of_every_track(archive: Archive) -> None:
    listing = httpx.get(f"{archive.point}/archive").json()
    assert listing["point"] == "live/dvr" and listing["state"] == "started"
    tracks = {t["name"]: t for t in listing["tracks"]}
    assert set(tracks) == {"video", "audio"}
    for name, scale in (("video", 12800), ("audio", 48000)):
        track = tracks[name]
        assert track["kind"] == name and track["timescale"] == scale
        assert [(r["start"], r["end"]) for r in track["ranges"]] == [
            (iso_ms(archive.start_s), iso_ms(archive.gap_s)),
            (iso_ms(archive.gap_s + LOOP_S), iso_ms(archive.end_s)),
        ]
        assert [(r["start_time"], r["end_time"]) for r in track["ranges"]] == [
            (archive.start_s * scale, archive.gap_s * scale),
            ((archive.gap_s + LOOP_S) * scale, archive.end_s * scale),
        ]
        assert [r["duration"] for r in track["ranges"]] == [3600.0, 3600.0 - LOOP_S]


@pytest.mark.parametrize(
    ("asked", "shown", "depth"),
    [
        (None, WINDOW_S, WINDOW_S),
        (30, 30, 30),
        (600, WINDOW_S, WINDOW_S),  # never wider than the point's
        # Never below three target durations (RFC 8216bis §6.2.2): 2 s for video; the AAC
        # segments last 2.005 s (94 frames), so 3 s for audio, which DASH and Smooth cover.
        (0, 6, 9),
    ],
)
def test_window_length_in_every_format(archive: Archive, asked: int | None, shown: int, depth: int) -> None:
    query = "" if asked is None else f"?dvr_window_length={asked}"
    media = playlist(f"{archive.point}/x-video.m3u8{query}")
    assert not media.is_endlist and media.playlist_type is None
    assert len(media.segments) == shown // 2
    assert media.media_sequence == len(archive.video) - shown // 2
    assert media.discontinuity_sequence == 1  # the gap an hour ago left the window
    assert utc_s(media.segments[-1].current_program_date_time) == archive.end_s - 2
    assert utc_s(media.program_date_time) == archive.end_s - shown
    # A narrowed window hides segments; their URLs stay the same for every window.
    assert all("?" not in s.uri for s in media.segments)

    mpd = xml(f"{archive.point}/x.mpd{query}")
    assert mpd.get("type") == "dynamic" and mpd.get("timeShiftBufferDepth") == f"PT{depth}.000S"
    assert mpd.get("availabilityStartTime") == "1970-01-01T00:00:00Z"
    runs = mpd.findall(f".//{DASH}Representation[@id='video']//{DASH}S")
    assert [(s.get("t"), s.get("d"), s.get("r")) for s in runs] == [
        (str((archive.end_s - shown) * 12800), "25600", str(shown // 2 - 1))
    ]
    # Audio and video windows end at the same wall-clock time.
    audio = dash_times(mpd, "audio")
    assert sum(audio[-1]) == archive.end_s * 48000
    assert audio[0][0] <= (archive.end_s - depth) * 48000 < audio[0][0] + audio[0][1]

    manifest = xml(f"{archive.point}/Manifest{query}")
    assert manifest.get("IsLive") == "TRUE"
    assert manifest.get("DVRWindowLength") == str(depth * 10_000_000)
    assert smooth_times(manifest, "video")[0][0] == (archive.end_s - shown) * 12800
    assert len(smooth_times(manifest, "video")) == shown // 2


def newest_availability(mpd: ET.Element) -> float:
    """When a DASH player takes a dynamic MPD's newest video segment to become available (UTC
    seconds): availabilityStartTime + Period@start + its end (ISO/IEC 23009-1 §5.3.9.5.3)."""
    assert mpd.get("type") == "dynamic" and mpd.get("availabilityStartTime") == "1970-01-01T00:00:00Z"
    period = mpd.find(f"{DASH}Period")
    template = mpd.find(f".//{DASH}Representation[@id='video']/{DASH}SegmentTemplate")
    assert period is not None and template is not None
    scale, offset = int(template.get("timescale", "")), int(template.get("presentationTimeOffset", ""))
    t, d = dash_times(mpd, "video")[-1]
    return float(period.get("start", "")[2:-1]) + (t + d - offset) / scale


@pytest.mark.parametrize("query", ["time_shift=600", "time_shift=3000&dvr_window_length=30"])
def test_time_shifted_mpd_offers_its_newest_segment_now(archive: Archive, query: str) -> None:
    """A time-shifted stream is an ordinary live stream that is N s late: by its MPD's clock its
    newest segment is available when the live edge's is (about now), not N s before, outside the
    time-shift buffer where players (shaka, dash.js) compute the seekable range from the wall clock."""
    plain = xml(f"{archive.point}/x.mpd")
    live_edge = newest_availability(plain)
    now = time.time()
    assert now - float(plain.get("timeShiftBufferDepth", "")[2:-1]) <= live_edge <= now + 1
    shifted = xml(f"{archive.point}/x.mpd?{query}")
    # The newest segment holds the shifted edge: it may end up to one segment (2 s) after it.
    assert live_edge <= newest_availability(shifted) <= live_edge + 2, (
        newest_availability(shifted) - live_edge
    )


def test_master_carries_every_control_onto_its_variants(archive: Archive) -> None:
    query = f"dvr_window_length=30&vbegin={archive.end_s - 600}"
    master = playlist(f"{archive.point}/x.m3u8?{query}")
    uris = [p.uri for p in master.playlists] + [m.uri for m in master.media if m.uri]
    assert sorted(uris) == [f"x-audio.m3u8?{query}", f"x-video.m3u8?{query}"]
    # Media playlists carry to segments only what segments need to resolve.
    media = playlist(f"{archive.point}/{master.playlists[0].uri}")
    assert all(s.uri.endswith(f"?vbegin={archive.end_s - 600}") for s in media.segments)


@pytest.mark.parametrize(
    ("shift", "moved"),
    [
        (600, 600),
        (601, 600),  # the last segment is the one holding the shifted edge
        (3599, 3600),  # an edge inside the gap: the last segment before it
        (5400, 5400),
    ],
)
def test_time_shift_moves_the_edge_back(archive: Archive, shift: int, moved: int) -> None:
    plain = playlist(f"{archive.point}/x-video.m3u8")
    shifted = playlist(f"{archive.point}/x-video.m3u8?time_shift={shift}")
    assert not shifted.is_endlist and shifted.playlist_type is None
    last = utc_s(shifted.segments[-1].current_program_date_time)
    assert utc_s(plain.segments[-1].current_program_date_time) - last == moved
    assert len(shifted.segments) == len(plain.segments)
    assert shifted.media_sequence == archive.number(int(last)) - len(shifted.segments) + 1
    assert all(s.uri.endswith(f"?time_shift={shift}") for s in shifted.segments)
    with httpx.Client(base_url=f"{archive.point}/", timeout=10) as client:
        assert client.get(shifted.segments[-1].uri).status_code == 200
        assert client.get(shifted.segments[0].uri).status_code == 200
        # The live edge's segment is in the future of a time-shifted presentation...
        assert client.get(f"{plain.segments[-1].uri}?time_shift={shift}").status_code == 404
        edge = segment_time(plain.segments[-1].uri)
        assert client.get(f"x-video-{edge}.dash?time_shift={shift}").status_code == 404
        # ...and one before its window is gone from it.
        before = segment_time(shifted.segments[0].uri) - 25600
        assert client.get(f"x-video-{before}.ts?time_shift={shift}").status_code == 404
        assert client.get(f"x-video-{before}.dash?time_shift={shift}").status_code == 410
    mpd = xml(f"{archive.point}/x.mpd?time_shift={shift}")
    assert mpd.get("type") == "dynamic"
    assert sum(dash_times(mpd, "video")[-1]) == int(last + 2) * 12800
    manifest = xml(f"{archive.point}/Manifest?time_shift={shift}")
    assert sum(smooth_times(manifest, "video")[-1]) == int(last + 2) * 12800


def test_clip_as_iso_and_as_seconds_gives_the_same_vod(archive: Archive) -> None:
    begin, end = archive.start_s + 1000, archive.start_s + 1100
    forms = [
        (iso(begin), iso(end)),
        (str(begin), str(end)),
        (quote(iso(begin + 3600)[:-1] + "+01:00"), iso(end)),
    ]
    seen = []
    for vbegin, vend in forms:
        query = f"vbegin={vbegin}&vend={vend}"
        media = playlist(f"{archive.point}/x-video.m3u8?{query}")
        assert media.is_endlist and media.playlist_type == "vod"
        assert utc_s(media.program_date_time) == begin
        assert len(media.segments) == 50 and media.media_sequence == archive.number(begin)
        seen.append(paths(media))
        for segment in (media.segments[0], media.segments[-1]):  # the carried query resolves
            assert httpx.get(f"{archive.point}/{segment.uri}", timeout=10).status_code == 200
        mpd = xml(f"{archive.point}/x.mpd?{query}")
        assert mpd.get("type") == "static"
        # The longest track: audio segments (2.005 s) end up to one segment after vend.
        assert 100 <= float(mpd.get("mediaPresentationDuration", "")[2:-1]) < 102.1
        assert dash_times(mpd, "video")[0] == (begin * 12800, 25600)
        manifest = xml(f"{archive.point}/Manifest?{query}")
        assert manifest.get("IsLive") == "FALSE"
        assert 100 * 10_000_000 <= int(manifest.get("Duration", "")) < 102.1 * 10_000_000
        assert len(smooth_times(manifest, "video")) == 50
    assert seen[0] == seen[1] == seen[2]
    # Fractions select the segments holding them.
    fraction = playlist(f"{archive.point}/x-video.m3u8?vbegin={iso(begin + 1.5)}&vend={begin + 10.25}")
    assert utc_s(fraction.program_date_time) == begin and len(fraction.segments) == 6


def test_open_vbegin_is_a_start_over(archive: Archive) -> None:
    begin = archive.end_s - 300
    text = httpx.get(f"{archive.point}/x-video.m3u8?vbegin={iso(begin)}").text
    media = m3u8.loads(text)
    assert media.playlist_type == "event" and not media.is_endlist
    assert "#EXT-X-START:TIME-OFFSET=0" in text
    assert utc_s(media.program_date_time) == begin and len(media.segments) == 150
    mpd = xml(f"{archive.point}/x.mpd?vbegin={iso(begin)}")
    assert mpd.get("type") == "dynamic" and mpd.get("timeShiftBufferDepth") == "PT301.000S"
    assert dash_times(mpd, "video")[0][0] == begin * 12800
    manifest = xml(f"{archive.point}/Manifest?vbegin={begin}")
    assert manifest.get("IsLive") == "TRUE" and smooth_times(manifest, "video")[0][0] == begin * 12800
    # A clip whose end is still to come is live too, growing up to its end.
    future = playlist(f"{archive.point}/x-video.m3u8?vbegin={begin}&vend={iso(archive.end_s + 3600)}")
    assert not future.is_endlist and len(future.segments) == 150


def test_segments_of_a_clip_resolve_and_others_get_the_egress_status(archive: Archive) -> None:
    begin, end = archive.gap_s - 10, archive.gap_s + LOOP_S + 10  # across the gap
    query = f"vbegin={iso(begin)}&vend={iso(end)}"
    before, after = (begin - 2) * 12800, end * 12800
    with httpx.Client(base_url=f"{archive.point}/", timeout=10) as client:
        for fmp4 in ("", "&hls_fmp4=true"):
            media = playlist(f"{archive.point}/x-video.m3u8?{query}{fmp4}")
            assert len(media.segments) == 10
            for segment in media.segments:
                answer = client.get(segment.uri)
                assert answer.status_code == 200, segment.uri
                assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert client.get(f"x-video-{before}.ts?{query}").status_code == 404
        assert client.get(f"x-video-{after}.ts?{query}").status_code == 404
        mpd = xml(f"{archive.point}/x.mpd?{query}")
        for t, _ in [*dash_times(mpd, "video"), (before, 0), (after, 0)]:
            status = client.get(dash_url(mpd, "video", t)).status_code
            assert status == (410 if t == before else 404 if t == after else 200), t
        for t, _ in dash_times(mpd, "audio")[:2]:
            assert client.get(dash_url(mpd, "audio", t)).status_code == 200
        manifest = xml(f"{archive.point}/Manifest?{query}")
        gap = archive.gap_s * 12800
        for t, status in [
            (before, 404),
            (begin * 12800, 200),
            (gap, 412),
            (end * 12800 - 25600, 200),
            (after, 412),
        ]:
            assert client.get(smooth_url(manifest, "video", t)).status_code == status, t
        # The same segment outside any clip is in the archive but not in the live window.
        assert client.get(f"x-video-{begin * 12800}.ts").status_code == 404
        assert client.get(f"x-video-{begin * 12800}.dash").status_code == 410


def test_discontinuity_in_every_format(archive: Archive) -> None:
    begin, end = archive.gap_s - 10, archive.gap_s + LOOP_S + 10
    query = f"vbegin={begin}&vend={end}"
    text = httpx.get(f"{archive.point}/x-video.m3u8?{query}").text
    media = m3u8.loads(text)
    assert [s.discontinuity for s in media.segments] == [False] * 5 + [True] + [False] * 4
    assert media.discontinuity_sequence == 0
    assert text.count("#EXT-X-PROGRAM-DATE-TIME:") == 2
    assert utc_s(media.segments[5].program_date_time) == archive.gap_s + LOOP_S
    mpd = xml(f"{archive.point}/x.mpd?{query}")
    runs = mpd.findall(f".//{DASH}Representation[@id='video']//{DASH}S")
    assert [(s.get("t"), s.get("r")) for s in runs] == [
        (str(begin * 12800), "4"),
        (str((archive.gap_s + LOOP_S) * 12800), "4"),
    ]
    manifest = xml(f"{archive.point}/Manifest?{query}")
    index = manifest.find("StreamIndex[@Name='video']")
    assert index is not None
    assert [(c.get("t"), c.get("r")) for c in index.iter("c")] == [
        (str(begin * 12800), "5"),
        (str((archive.gap_s + LOOP_S) * 12800), "5"),
    ]
    # Later, the gap is what the discontinuity sequence counts.
    later = playlist(f"{archive.point}/x-video.m3u8?vbegin={end}&vend={end + 60}")
    assert later.discontinuity_sequence == 1 and not any(s.discontinuity for s in later.segments)


@pytest.mark.parametrize(
    ("name", "query", "parameter"),
    [
        ("x-video.m3u8", "vbegin=yesterday", "vbegin"),
        ("x.m3u8", "vend=2026-11-21T10:00:00", "vend"),  # no time zone
        ("x.mpd", "vbegin=1795255200&vend=1795255100", "vend"),
        ("Manifest", "time_shift=-5", "time_shift"),
        ("x-video.m3u8", "time_shift=%C2%B2", "time_shift"),
        ("x-video.m3u8", "dvr_window_length=1.5", "dvr_window_length"),
        ("x-video.m3u8", "time_shift=30&vbegin=1795255200", "time_shift"),
        # Outside the archive.
        ("x-video.m3u8", "time_shift=7200", "time_shift"),
        ("x.mpd", "time_shift=86400", "time_shift"),
        ("Manifest", "vbegin=2099-01-01T00:00:00Z", "vbegin"),
        ("x-video.m3u8", "vend=2000-01-01T00:00:00Z", "vend"),
        ("x-video.m3u8", "vbegin=10&vend=20", "vend"),
        ("x-video-0.ts", "vbegin=2099-01-01T00:00:00Z", "vbegin"),
        ("x-video-0.dash", "time_shift=999999", "time_shift"),
    ],
)
def test_bad_controls_are_400_naming_the_parameter(
    archive: Archive, name: str, query: str, parameter: str
) -> None:
    answer = httpx.get(f"{archive.point}/{name}?{query}", timeout=10)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["status"] == 400 and body["message"].startswith(f"query parameter {parameter}: ")


def test_400_body_has_the_parameter_field(archive: Archive) -> None:
    """The JSON of a refused control names the parameter in a field of its own (origin/errors.py
    ``error_body``), as the API's errors do, not only inside the message."""
    body = httpx.get(f"{archive.point}/x-video.m3u8?vbegin=yesterday", timeout=10).json()
    assert body.get("parameter") == "vbegin", body
    assert body.get("error") == "bad_request", body


def test_a_clip_decodes_to_what_was_asked(archive: Archive, tmp_path: Path) -> None:
    begin = archive.end_s - 1000.5
    url = f"{archive.point}/x.m3u8?vbegin={iso(begin)}&vend={iso(begin + 12)}"
    seconds = decoded_video_seconds(url, tmp_path / "progress.txt")
    assert 12 <= seconds <= 12 + 2  # whole 2 s segments around the request


def decoded_video_seconds(url: str, progress: Path) -> float:
    """Seconds of video ffmpeg decodes from ``url`` (frames / 25), audio decoded too."""
    result = run_ffmpeg(
        "-xerror", "-i", url, "-map", "0:v:0", "-map", "0:a:0", "-f", "null", "-progress", str(progress), "-",
    )  # fmt: skip
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    values = dict(line.split("=", 1) for line in progress.read_text().splitlines() if "=" in line)
    return int(values["frame"]) / 25


# -- the purge across restarts, and the end of the stream -------------------------------------------


def test_purge_restart_and_end_of_stream(tmp_path: Path, loops: tuple[Loop, Loop]) -> None:
    """archive_length 60 s, DVR window 30 s: the purge keeps 90 s and deletes the rest on disk;
    every segment keeps its media sequence number and the discontinuity sequence carries on,
    across purges and restarts. The end of the stream turns every manifest into VOD of what is
    left."""
    server = Server(tmp_path / "root", tmp_path / "server.log", QUIET).start()
    try:
        point = f"{server.url}/live/purge.isml"
        options = (
            "<smil><head><meta name='archive_length' content='60'/>"
            "<meta name='dvr_window_length' content='30'/></head></smil>"
        )
        assert httpx.put(point, content=options).status_code == 201
        folder = server.root / "live/purge/_tracks"
        t0 = int(time.time()) - 4 * LOOP_S - 4
        stored: list[int] = []  # video fragment starts, in order: index = media sequence number
        sequences: list[int] = []

        def push(starts: list[int], *, last: bool = False) -> None:
            post(point, loops, starts, last=last)
            stored.extend(t for s in starts for t in loops[0].starts(s))

        def numbers() -> dict[str, tuple[int, int]]:
            """Segment → (media sequence number, discontinuity sequence) over the whole archive
            (a start-over from before it, which starts where the archive does)."""
            media = playlist(f"{point}/x-video.m3u8?vbegin={t0}")
            out = {}
            discontinuities = media.discontinuity_sequence
            for n, segment in enumerate(media.segments):
                discontinuities += segment.discontinuity and n > 0
                out[segment.uri.split("?")[0]] = (media.media_sequence + n, discontinuities)
            return out

        def purged(edge_s: int) -> int:
            """Once the purge has nothing left to do (what is older than the 90 s kept is less
            than a 30 s step), the first video fragment left; files, index and mark agree."""

            def done() -> bool:
                tracks = httpx.get(f"{point}/archive").json()["tracks"]
                firsts = {t["name"]: (t["ranges"][0]["start_time"], t["timescale"]) for t in tracks}
                return all(
                    first > (edge_s - 120) * scale and files(folder / name)[0] == first
                    for name, (first, scale) in firsts.items()
                )

            wait_for(done)
            video = files(folder / "video")
            assert (edge_s - 120) * 12800 < video[0] <= (edge_s - 90) * 12800
            assert video == [t for t in stored if t >= video[0]]
            audio = files(folder / "audio")
            assert (edge_s - 122) * 48000 < audio[0] <= (edge_s - 90) * 48000
            for track in ("video", "audio"):
                mark = json.loads((folder / track / "purge.json").read_text())
                assert mark["first_time"] == files(folder / track)[0]
            return video[0]

        def check_live(edge_s: int) -> str:
            text = httpx.get(f"{point}/x-video.m3u8").text
            media = m3u8.loads(text)
            assert not media.is_endlist and len(media.segments) == 15
            assert segment_time(media.segments[0].uri) == (edge_s - 30) * 12800
            assert media.media_sequence == stored.index((edge_s - 30) * 12800)
            sequences.append(media.media_sequence)
            with httpx.Client(base_url=f"{point}/", timeout=10) as client:
                for segment in media.segments:
                    assert client.get(segment.uri).status_code == 200, segment.uri
            return text

        # 84 s with a 4 s break: nothing to purge yet.
        push([t0, t0 + LOOP_S + 4])
        check_live(t0 + 84)
        before = numbers()
        assert len(before) == 40 and not (folder / "video/purge.json").exists()
        assert [d for _, d in before.values()] == [0] * 20 + [1] * 20
        # 80 s more: the purge keeps 90 s behind the edge; the break is gone with what it cut.
        push([t0 + 84, t0 + 124])
        end_s = t0 + 164
        first_kept = purged(end_s)
        live = check_live(end_s)
        after = numbers()
        kept_before = {uri for uri in before if segment_time(uri) >= first_kept}
        assert kept_before and all(after[uri] == before[uri] for uri in kept_before)
        assert min(after.values()) == (stored.index(first_kept), 1)
        # What was purged is no longer there to ask for.
        assert (
            httpx.get(f"{point}/x-video.m3u8?vend={t0 + 40}")
            .json()["message"]
            .startswith("query parameter vend")
        )
        assert httpx.get(f"{point}/x-video.m3u8?time_shift=125").status_code == 400
        assert httpx.get(f"{point}/x-video.m3u8?time_shift=50").status_code == 200
        ranges = httpx.get(f"{point}/archive").json()["tracks"][1]["ranges"]
        assert [(r["start_time"], r["end_time"]) for r in ranges] == [(first_kept, end_s * 12800)]

        mpd, manifest = httpx.get(f"{point}/x.mpd").text, httpx.get(f"{point}/Manifest").text
        server.restart()
        assert httpx.get(f"{point}/x-video.m3u8").text == live
        assert httpx.get(f"{point}/x.mpd").text == mpd
        assert httpx.get(f"{point}/Manifest").text == manifest
        assert numbers() == after
        check_live(end_s)

        # Ingest goes on after the restart (the stored header serves the new request), the purge
        # with it, and the numbers carry on.
        push([end_s, end_s + LOOP_S])
        new_end = end_s + 2 * LOOP_S
        purged(new_end)
        check_live(new_end)
        again = numbers()
        assert all(again[uri] == after[uri] for uri in set(again) & set(after))

        # The end of the stream: the point stops and every manifest is VOD of the archive.
        push([new_end], last=True)
        last_end = new_end + LOOP_S
        assert server.settled("live/purge")["state"] == "stopped"
        first_kept = purged(last_end)
        vod = playlist(f"{point}/x-video.m3u8")
        assert vod.is_endlist and vod.playlist_type == "vod"
        assert vod.media_sequence == stored.index(first_kept) and vod.discontinuity_sequence == 1
        assert len(vod.segments) == (last_end * 12800 - first_kept) // 25600
        # The live playlists never went back; the VOD presentation of the archive starts at the
        # first segment kept, numbered as it always was.
        assert sequences == sorted(sequences) and len(set(sequences)) == 3
        assert xml(f"{point}/x.mpd").get("type") == "static"
        assert xml(f"{point}/Manifest").get("IsLive") == "FALSE"
        vod_text = httpx.get(f"{point}/x-video.m3u8").text
        server.restart()
        assert server.state("live/purge")["state"] == "stopped"
        assert httpx.get(f"{point}/x-video.m3u8").text == vod_text
    finally:
        server.stop()


def files(folder: Path) -> list[int]:
    return sorted(int(p.stem) for p in folder.glob("*.m4s"))


def wait_for(condition: object, timeout: float = 15) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# -- an encoder without UTC timestamps ----------------------------------------------------------------


def test_ingest_clock_places_an_encoder_without_utc_on_one_wall_clock(
    make_server: object, loops: tuple[Loop, Loop]
) -> None:
    """Decode times from zero: the first fragment anchors the point on the ingest clock, for every
    track; PROGRAM-DATE-TIME, DASH's Period start, ISO clips and the archive listing agree, and
    stay put across a restart and the encoder carrying on."""
    server: Server = make_server(*QUIET)  # type: ignore[operator]
    point = f"{server.url}/live/clock.isml"
    before = time.time()
    post(point, loops, [0])
    after = time.time()
    first = playlist(f"{point}/x-video.m3u8?vbegin=0&vend={LOOP_S}")
    assert first.is_endlist and segment_time(first.segments[0].uri) == 0
    anchor = utc_s(first.program_date_time)
    # The first fragment (2 s) ended when it arrived.
    assert before - 2 - 0.01 <= anchor <= after - 2 + 0.01
    audio = playlist(f"{point}/x-audio.m3u8?vbegin=0&vend={LOOP_S}")
    assert utc_s(audio.program_date_time) == anchor
    mpd = xml(f"{point}/x.mpd")
    period = mpd.find(f"{DASH}Period")
    assert period is not None and float(period.get("start", "")[2:-1]) == pytest.approx(anchor, abs=0.001)
    clip_query = f"vbegin={iso(anchor + 10)}&vend={iso(anchor + 20)}"
    clip = httpx.get(f"{point}/x-video.m3u8?{clip_query}").text
    assert [segment_time(s.uri) for s in m3u8.loads(clip).segments] == [t * 12800 for t in range(10, 20, 2)]
    audio_clip = playlist(f"{point}/x-audio.m3u8?{clip_query}")
    assert audio_clip.segments[0].uri.startswith(f"x-audio-{48000 * 8}.ts?")  # [8, 10.005) holds 10 s
    listing = httpx.get(f"{point}/archive").json()
    assert {t["ranges"][0]["start"] for t in listing["tracks"]} == {iso_ms(anchor)}

    server.restart()
    assert httpx.get(f"{point}/x-video.m3u8?{clip_query}").text == clip
    post(point, loops, [LOOP_S])  # carries on at 40 s: the same run, the same anchor
    later = playlist(f"{point}/x-video.m3u8?vbegin={LOOP_S}&vend={2 * LOOP_S}")
    assert utc_s(later.program_date_time) == anchor + LOOP_S
    assert not any(s.discontinuity for s in playlist(f"{point}/x-video.m3u8").segments)


# -- real ffmpeg ----------------------------------------------------------------------------------


def test_ffmpeg_pushes_utc_times_and_reads_back_a_clip(make_server: object, tmp_path: Path) -> None:
    """ffmpeg pushes Smooth twice with UTC timestamps (-output_ts_offset), an hour apart: a long
    archive in seconds. A 10.2 s HLS clip of the second push, asked in ISO 8601, decodes to that
    length within one GOP (2 s)."""
    server: Server = make_server(*QUIET)  # type: ignore[operator]
    url = f"{server.url}/live/push.isml/Streams(encoder)"
    second = int(time.time()) - 30
    first = second - 3600
    for offset in (first, second):
        args = smooth_args(url, seconds=20)
        result = run_ffmpeg(*args[:-1], "-output_ts_offset", str(offset), args[-1])
        assert result.returncode == 0, result.stderr
        assert server.settled("live/push")["state"] == "stopped"
    listing = httpx.get(f"{server.url}/live/push.isml/archive").json()
    for track in listing["tracks"]:
        starts = [r["start_time"] // track["timescale"] for r in track["ranges"]]
        assert [s - first for s in starts] in ([0, 3600], [-1, 3599]), track  # AAC priming
    begin, end = second + 4.5, second + 14.7
    clip = f"{server.url}/live/push.isml/push.m3u8?vbegin={iso(begin)}&vend={iso(end)}"
    master = playlist(clip)
    media = playlist(f"{server.url}/live/push.isml/{master.playlists[0].uri}")
    assert media.is_endlist and utc_s(media.program_date_time) == second + 4
    seconds = decoded_video_seconds(clip, tmp_path / "progress.txt")
    assert end - begin <= seconds <= end - begin + 2, seconds
    # Stopped: the whole archive as VOD, the hour between the pushes a discontinuity.
    whole = playlist(f"{server.url}/live/push.isml/push-video=400000.m3u8")
    assert whole.is_endlist and len(whole.segments) == 20
    assert [s.discontinuity for s in whole.segments].count(True) == 1 and whole.segments[10].discontinuity
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0", clip],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert sorted(set(probe.stdout.split())) == ["audio", "video"]
