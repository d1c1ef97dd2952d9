"""Errors of the RTMP protocol core. Each ends the connection; the server logs the message."""

from __future__ import annotations


class RtmpError(Exception):
    """The peer broke the protocol or a configured limit. ``offset`` counts chunk-stream bytes."""

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        self.message = message
        self.offset = offset
        super().__init__(f"{message} (byte {offset})" if offset is not None else message)
