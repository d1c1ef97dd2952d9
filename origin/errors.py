"""Typed errors → HTTP status, in one place, and the JSON body that explains them."""

from __future__ import annotations

from typing import Any

from ingest.errors import (
    BackwardsTimestamp,
    BodyTooLarge,
    HeaderMismatch,
    IngestTimeout,
    MissingHeader,
    Overloaded,
    PointBusy,
    PointExists,
    PointNotFound,
    ReadOnly,
    ShuttingDown,
    Unauthorized,
)
from media.errors import BoxTooLarge, MediaError, UnsupportedMedia
from media.timerange import ControlError
from storage.errors import InvalidName, InvalidOption, KeyNotFound, StorageError

# First match wins: specific classes before their bases.
STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (InvalidName, 400),
    (InvalidOption, 400),
    (ControlError, 400),
    (MissingHeader, 412),
    (HeaderMismatch, 412),
    (UnsupportedMedia, 415),
    (BoxTooLarge, 413),
    (MediaError, 400),
    (BackwardsTimestamp, 409),
    (Unauthorized, 403),
    (ReadOnly, 403),
    (PointNotFound, 404),
    (PointExists, 409),
    (PointBusy, 409),
    (BodyTooLarge, 413),
    (IngestTimeout, 408),
    (ShuttingDown, 503),
    (Overloaded, 503),
    (KeyNotFound, 404),
    (StorageError, 503),
)

_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    410: "gone",
    408: "timeout",
    409: "conflict",
    412: "precondition_failed",
    413: "too_large",
    415: "unsupported_media",
    500: "internal_error",
    503: "unavailable",
}


def status_for(exc: BaseException) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_code(status: int) -> str:
    """The stable ``error`` code of a status."""
    return _CODES.get(status, "error")


def error_body(exc: BaseException, status: int) -> dict[str, Any]:
    """What the client reads: a stable code, a message naming what and where, and the fields."""
    body: dict[str, Any] = {"status": status, "error": error_code(status)}
    if status == 500:
        body["message"] = "internal error; see the server log"
        return body
    body["message"] = str(exc)
    if isinstance(exc, MediaError):
        if exc.path:
            body["box"] = exc.path
        if exc.offset is not None:
            body["offset"] = exc.offset
    elif isinstance(exc, BackwardsTimestamp):
        body.update(
            track=exc.track, stored_time=exc.stored_time, sent_time=exc.sent_time, timescale=exc.timescale
        )
    elif isinstance(exc, InvalidOption):
        body["option"] = exc.option
    elif isinstance(exc, ControlError):
        body["parameter"] = exc.parameter
    return body
