"""Names of playout resources inside ``/<point>.isml/``, written by the renderers and read back by
the origin, so a manifest never names something the origin cannot resolve.

``<stem>`` is whatever the client called the manifest (``/live/ch1.isml/ch1.m3u8`` → ``ch1``):

=============================  =========================================
``<stem>.m3u8``                HLS master playlist
``<stem>-<track>.m3u8``        HLS media playlist
``<stem>-<track>.mp4``         CMAF header (HLS fMP4 ``EXT-X-MAP``, DASH initialization)
``<stem>-<track>-<time>.ts``   HLS MPEG-TS segment starting at ``<time>``
``<stem>-<track>-<time>.m4s``  HLS fMP4 segment
``<stem>-<track>-<time>.part.m4s`` LL-HLS part: the stored fragment starting at ``<time>``
``<stem>-<track>-<time>.dash`` DASH segment (``$Time$``)
``<stem>-<track>-<time>.vtt``  HLS WebVTT subtitle segment
``<stem>.mpd``                 DASH MPD
``<stem>.mp4``                 progressive MP4 of a range (``vbegin``/``vend``), when no track is named
``keys/<kid>.key``             HLS content key (32 hex digits), when this origin serves keys
``Manifest``                   Smooth client manifest
``QualityLevels(<bitrate>)/Fragments(<name>=<time>)``  Smooth fragment
=============================  =========================================

Times are in the track's timescale, so names are stable across origin processes and restarts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    HLS_MASTER = "hls master"
    HLS_MEDIA = "hls media"
    INIT = "init"
    TS = "ts"
    M4S = "m4s"
    PART = "part"
    DASH_SEGMENT = "dash"
    VTT = "vtt"
    MPD = "mpd"
    SMOOTH_MANIFEST = "smooth manifest"
    SMOOTH_FRAGMENT = "smooth fragment"
    PROGRESSIVE = "progressive mp4"
    KEY = "key"


SEGMENT_EXTENSIONS = {"ts": Kind.TS, "m4s": Kind.M4S, "dash": Kind.DASH_SEGMENT, "vtt": Kind.VTT}
_KEY = re.compile(r"keys/([0-9a-f]{32})\.key")
_SMOOTH_FRAGMENT = re.compile(r"QualityLevels\((\d+)\)/Fragments\(([^=()/]+)=(\d+)\)")


def media_playlist(stem: str, track: str) -> str:
    return f"{stem}-{track}.m3u8"


def init_segment(stem: str, track: str) -> str:
    return f"{stem}-{track}.mp4"


_EXTENSIONS = {kind: ext for ext, kind in SEGMENT_EXTENSIONS.items()}


def segment(stem: str, track: str, time: int, kind: Kind) -> str:
    return f"{stem}-{track}-{time}.{_EXTENSIONS[kind]}"


def part(stem: str, track: str, time: int) -> str:
    return f"{stem}-{track}-{time}.part.m4s"


def dash_templates(stem: str) -> tuple[str, str]:
    """(initialization, media) SegmentTemplate attributes (ISO/IEC 23009-1 §5.3.9.4.4)."""
    return f"{stem}-$RepresentationID$.mp4", f"{stem}-$RepresentationID$-$Time$.dash"


def key(kid: bytes) -> str:
    """Where this origin serves a content key (HLS EXT-X-KEY URI), relative to the playlists."""
    return f"keys/{kid.hex()}.key"


def smooth_fragment_template(name: str) -> str:
    return f"QualityLevels({{bitrate}})/Fragments({name}={{start time}})"


@dataclass(frozen=True, slots=True)
class Resource:
    kind: Kind
    stem: str = ""
    track: str = ""
    time: int = 0
    bitrate: int = 0  # Smooth: QualityLevels(<bitrate>)
    name: str = ""  # Smooth: the StreamIndex name in Fragments(<name>=<time>)


def parse(path: str, tracks: Iterable[str]) -> Resource | None:
    """The resource at ``path`` (the part after ``.isml/``), ``None`` if it names nothing.
    ``tracks`` are the point's track names: they may contain ``-``, so a name is split by matching
    a known track, longest first."""
    if path == "Manifest":
        return Resource(Kind.SMOOTH_MANIFEST)
    match = _KEY.fullmatch(path)
    if match:
        return Resource(Kind.KEY, name=match[1])
    match = _SMOOTH_FRAGMENT.fullmatch(path)
    if match:
        return Resource(Kind.SMOOTH_FRAGMENT, bitrate=int(match[1]), name=match[2], time=int(match[3]))
    if "/" in path or "." not in path:
        return None
    base, ext = path.rsplit(".", 1)
    if ext == "m4s" and base.endswith(".part"):
        found = parse(base.removesuffix(".part") + ".m4s", tracks)
        return None if found is None else Resource(Kind.PART, found.stem, found.track, found.time)
    ordered = sorted(tracks, key=len, reverse=True)
    if ext == "mpd":
        return Resource(Kind.MPD, base)
    if ext in ("m3u8", "mp4"):
        for track in ordered:
            if base.endswith(f"-{track}"):
                kind = Kind.HLS_MEDIA if ext == "m3u8" else Kind.INIT
                return Resource(kind, base[: -len(track) - 1], track)
        return Resource(Kind.HLS_MASTER if ext == "m3u8" else Kind.PROGRESSIVE, base)
    if ext in SEGMENT_EXTENSIONS:
        rest, _, time = base.rpartition("-")
        if not time.isdigit():
            return None
        for track in ordered:
            if rest.endswith(f"-{track}"):
                return Resource(SEGMENT_EXTENSIONS[ext], rest[: -len(track) - 1], track, int(time))
    return None
