"""Key naming, shared by every backend so that a disk root and an S3 prefix hold the same layout.

::

    <path>/<name>/<name>.isml                         server manifest (SMIL, as Unified Origin writes)
    <path>/<name>/_state.json                         lifecycle state
    <path>/<name>/_ingest/<stream>.mp4                ingest header as the encoder sent it
    <path>/<name>/_tracks/<track>/track.json          track description
    <path>/<name>/_tracks/<track>/header.mp4          CMAF header
    <path>/<name>/_tracks/<track>/index/<part>.bin    timeline index, in parts (storage.index)
    <path>/<name>/_tracks/<track>/purge.json          what the archive purge removed (PurgeMark)
    <path>/<name>/_tracks/<track>/<decode time>.m4s   CMAF fragments, zero-padded to sort by time

Names a user or encoder chooses start with a letter or digit and hold only ``A-Z a-z 0-9 . _ - ~``
(tracks may also use ``=``), so they can never be ``..``, absolute, hidden, or collide with the
underscore-prefixed folders of a point.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from storage.errors import InvalidName

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")
_TRACK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~=-]{0,127}")
MAX_DEPTH = 8
FRAGMENT_SUFFIX = ".m4s"


def _check(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        shown = value.encode("unicode_escape").decode("ascii")[:80]
        extra = " =" if pattern is _TRACK else ""
        raise InvalidName(
            f"invalid {what} {shown!r}: use 1-128 characters A-Z a-z 0-9 . _ - ~{extra}, "
            "starting with a letter or digit"
        )
    return value


@dataclass(frozen=True, slots=True)
class PointId:
    """A publishing point: ``live/channel1`` for the URL ``/live/channel1.isml``."""

    segments: tuple[str, ...]

    @classmethod
    def parse(cls, path: str) -> PointId:
        """From the URL path between the leading slash and ``.isml``. Empty segments (``//``, a
        leading or trailing slash) are refused like any other invalid segment."""
        parts = tuple(path.split("/")) if path else ()
        if not parts or len(parts) > MAX_DEPTH:
            raise InvalidName(f"publishing point path must have 1 to {MAX_DEPTH} segments")
        for part in parts:
            _check(part, _SEGMENT, "publishing point path segment")
        return cls(parts)

    @property
    def name(self) -> str:
        return self.segments[-1]

    def __str__(self) -> str:
        return "/".join(self.segments)

    @property
    def prefix(self) -> str:
        return "/".join(self.segments) + "/"

    @property
    def manifest_key(self) -> str:
        return f"{self.prefix}{self.name}.isml"

    @property
    def state_key(self) -> str:
        return f"{self.prefix}_state.json"

    @property
    def ingest_prefix(self) -> str:
        return f"{self.prefix}_ingest/"

    def ingest_header_key(self, stream: str) -> str:
        return f"{self.ingest_prefix}{check_stream(stream)}.mp4"

    @property
    def tracks_prefix(self) -> str:
        return f"{self.prefix}_tracks/"

    def track_prefix(self, track: str) -> str:
        return f"{self.tracks_prefix}{check_track(track)}/"

    def track_info_key(self, track: str) -> str:
        return self.track_prefix(track) + "track.json"

    def track_header_key(self, track: str) -> str:
        return self.track_prefix(track) + "header.mp4"

    def index_prefix(self, track: str) -> str:
        return self.track_prefix(track) + "index/"

    def purge_key(self, track: str) -> str:
        return self.track_prefix(track) + "purge.json"

    def fragment_key(self, track: str, decode_time: int) -> str:
        return f"{self.track_prefix(track)}{decode_time:020d}{FRAGMENT_SUFFIX}"


def check_track(name: str) -> str:
    return _check(name, _TRACK, "track name")


def check_stream(name: str) -> str:
    return _check(name, _TRACK, "stream name")


def fragment_time(key: str) -> int | None:
    """The decode time a fragment key encodes, ``None`` for other keys."""
    leaf = key.rsplit("/", 1)[-1]
    if not leaf.endswith(FRAGMENT_SUFFIX):
        return None
    stem = leaf[: -len(FRAGMENT_SUFFIX)]
    return int(stem) if stem.isdigit() else None
