"""Typed ingest errors. :mod:`origin.errors` maps each to an HTTP status in one table."""

from __future__ import annotations

from media.errors import MediaError


class IngestError(Exception):
    """Base of errors about what an encoder asked for, as opposed to malformed media."""


class MissingHeader(MediaError):
    """Media arrived before the CMAF header that describes it (DASH-IF ingest: 412)."""


class HeaderMismatch(MediaError):
    """A header re-sent for a known track describes different media (DASH-IF ingest: 412)."""


class BackwardsTimestamp(IngestError):
    """A fragment starts before the end of what the track already holds, and is not a duplicate."""

    def __init__(self, point: str, track: str, stored_time: int, sent_time: int, timescale: int) -> None:
        self.point = point
        self.track = track
        self.stored_time = stored_time
        self.sent_time = sent_time
        self.timescale = timescale
        super().__init__(
            f"track {track!r} of {point!r}: fragment time {sent_time} goes back before the stored "
            f"timeline, which ends at {stored_time} (timescale {timescale})"
        )


class Unauthorized(IngestError):
    """The encoder gave no publish token, or the wrong one."""


class PointNotFound(IngestError):
    """No such publishing point, and configuration does not allow creating it."""


class PointExists(IngestError):
    """The publishing point exists already."""


class PointBusy(IngestError):
    """The operation needs the publishing point to be idle or stopped."""


class BodyTooLarge(IngestError):
    """A request body exceeded the configured limit."""


class IngestTimeout(IngestError):
    """The encoder sent nothing for longer than the configured read timeout."""


class ShuttingDown(IngestError):
    """The server is stopping and takes no new ingest."""


class ReadOnly(IngestError):
    """This node takes no ingest (``ingest.enabled = false``): it follows another node's."""


class Overloaded(IngestError):
    """More ingest requests are in progress than configured (``ingest.max_connections``)."""
