"""Playout control: the query parameters that choose which part of a publishing point's timeline a
manifest presents (Unified Origin's names).

=========================  ===================================================================
``dvr_window_length=N``    seconds of the live window; narrows the point's, never widens it
``time_shift=N``           the live edge moved N seconds back: an ordinary live stream, delayed
``vbegin=T``               a virtual sub-clip starting at T; without ``vend``, live from there on
``vend=T``                 where the sub-clip ends; wholly in the past it is a VOD presentation
=========================  ===================================================================

``T`` is ISO 8601 with a UTC designator (``2026-11-21T10:00:00Z``, offsets such as ``+01:00`` and
fractions allowed) or seconds on the point's media timeline (``3600``, ``3600.5``: a track's decode
time divided by its timescale; for encoders that send UTC timestamps, seconds since the epoch).

Parsing is pure; :class:`ControlError` names the parameter and why, and becomes a 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from urllib.parse import quote

MAX_SECONDS = 10 * 365 * 86400  # far beyond any archive: bounds what a query can ask for
_SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")  # ASCII only: \d and isdigit() take other scripts
PARAMETERS = ("dvr_window_length", "time_shift", "vbegin", "vend")
# What segment URLs need to resolve in the same presentation; a narrowed window only hides
# segments, so it stays off them (one URL per segment for caches).
SEGMENT_PARAMETERS = ("time_shift", "vbegin", "vend")


class ControlError(ValueError):
    """A playout control parameter is malformed or asks for something the archive cannot give."""

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        super().__init__(f"query parameter {parameter}: {message}")


@dataclass(frozen=True, slots=True)
class Instant:
    """A time as the client gave it: UTC milliseconds (``utc_ms``) or seconds of media time."""

    utc_ms: int | None = None
    media: Fraction | None = None

    def __str__(self) -> str:
        if self.utc_ms is not None:
            return iso_utc(self.utc_ms)
        return f"{float(self.media or 0):g} s"


@dataclass(frozen=True, slots=True)
class Control:
    """What a request asks of the timeline; the default asks for the point's live window."""

    dvr_window: int | None = None
    time_shift: int = 0
    vbegin: Instant | None = None
    vend: Instant | None = None

    @property
    def clip(self) -> bool:
        return self.vbegin is not None or self.vend is not None

    @staticmethod
    def query(raw: Mapping[str, Sequence[str]], names: Sequence[str] = PARAMETERS) -> str:
        """Parameters as the client wrote them, to carry onto the URLs a manifest names."""
        return "&".join(f"{name}={quote(raw[name][-1], safe=':')}" for name in names if name in raw)


def iso_utc(ms: int) -> str:
    """``2026-11-21T10:00:00.000Z`` (ISO 8601, the date-time form of RFC 8216bis §4.4.4.6)."""
    stamp = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ms % 1000:03d}Z"


def parse_control(query: Mapping[str, Sequence[str]]) -> Control:
    """The control parameters of a request's query (the last value of a repeated one wins)."""
    window = _whole_seconds(query, "dvr_window_length")
    shift = _whole_seconds(query, "time_shift")
    vbegin = _instant(query, "vbegin")
    vend = _instant(query, "vend")
    if shift and (vbegin or vend):
        raise ControlError("time_shift", "cannot be combined with vbegin/vend (a sub-clip has fixed times)")
    if vbegin and vend and _comparable(vbegin, vend) and not _before(vbegin, vend):
        raise ControlError("vend", f"{vend} is not after vbegin {vbegin}")
    return Control(window, shift or 0, vbegin, vend)


def _whole_seconds(query: Mapping[str, Sequence[str]], name: str) -> int | None:
    values = query.get(name)
    if not values:
        return None
    raw = values[-1]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12 or int(raw) > MAX_SECONDS:
        raise ControlError(name, f"{raw[:40]!r} is not a whole number of seconds (0 to {MAX_SECONDS})")
    return int(raw)


def _instant(query: Mapping[str, Sequence[str]], name: str) -> Instant | None:
    values = query.get(name)
    if not values:
        return None
    raw = values[-1].strip()
    if _SECONDS.fullmatch(raw):
        seconds = Fraction(raw)
        if seconds > MAX_SECONDS * 10:  # media seconds of UTC encoders are epoch seconds
            raise ControlError(name, f"{raw!r} is too far in the future")
        return Instant(media=seconds)
    if len(raw) > 40 or "T" not in raw:
        raise ControlError(
            name, f"{raw[:40]!r} is neither seconds (3600, 3600.5) nor ISO 8601 UTC (2026-11-21T10:00:00Z)"
        )
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise ControlError(
            name, f"{raw!r} is not an ISO 8601 date-time such as 2026-11-21T10:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        raise ControlError(name, f"{raw!r} has no time zone: end it with Z for UTC")
    epoch = parsed - datetime(1970, 1, 1, tzinfo=UTC)
    ms = (epoch.days * 86400 + epoch.seconds) * 1000 + epoch.microseconds // 1000
    if ms < 0:
        raise ControlError(name, f"{raw!r} is before 1970")
    return Instant(utc_ms=ms)


def _comparable(a: Instant, b: Instant) -> bool:
    return (a.utc_ms is None) == (b.utc_ms is None)


def _before(a: Instant, b: Instant) -> bool:
    if a.utc_ms is not None and b.utc_ms is not None:
        return a.utc_ms < b.utc_ms
    return (a.media or 0) < (b.media or 0)
