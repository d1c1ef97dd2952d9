"""Typed errors raised by the format code.

Every error says *where*: the box path (``moof/traf/trun``) and the absolute byte offset in the
stream or file being read, so that a 400 answer or a log line points at the faulty byte.
"""

from __future__ import annotations


class MediaError(Exception):
    """Base of every error raised while reading or checking media."""

    def __init__(self, message: str, *, path: str = "", offset: int | None = None) -> None:
        self.message = message
        self.path = path
        self.offset = offset
        super().__init__(self.describe())

    def at_offset(self, offset: int) -> None:
        """Give an error raised from an already-parsed box the offset of the top-level box holding it."""
        if self.offset is None:
            self.offset = offset
            self.args = (self.describe(),)

    def describe(self) -> str:
        where = []
        if self.path:
            where.append(f"box {self.path}")
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


class BoxError(MediaError):
    """A box is malformed: too short, inconsistent sizes, bad field values."""


class TruncatedBox(BoxError):
    """The input ended in the middle of a box."""


class BoxTooLarge(BoxError):
    """A box declares a size above the configured maximum."""


class UnsupportedMedia(MediaError):
    """Well-formed input carrying something Headwater does not handle (codec, sample entry, brand)."""


class ClipError(MediaError):
    """A sub-clip selects no media: an empty time range, or one entirely before or after what is
    stored."""
