"""The DASH segment at the live edge of a low-latency point, sent with chunked transfer encoding as
its CMAF chunks (the stored parts) arrive (ISO/IEC 23009-1 Annex K, DASH-IF IOP low-latency
modes): what is stored at once, then each part as ingest stores it, until the segment is complete.
Waiting is on the point's change notification, never a poll. The answer may be cached for a
moment only (``max-age=1``): should its encoder go away, it ends short of a whole segment, and the
complete segment is served by the ordinary path afterwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from conf.logs import event
from ingest.points import PublishingPoint
from media.presentation import TrackView
from media.timeline import TimelineEntry
from origin.export import Send

log = logging.getLogger("headwater.playout")
CACHE_CONTROL = b"public, max-age=1"  # see above: the whole segment is cached from the next request


@dataclass
class EdgeStream:
    """One request for the segment in progress starting at ``time`` of ``track``. ``view`` gives
    the track's newest view; ``chunk`` turns a stored fragment into what is sent (encryption);
    ``head`` opens the body (the segment's ``prft``); ``patience``: seconds without a new part of
    this track after which the segment is ended where it is (its encoder went away)."""

    point: PublishingPoint
    track: str
    time: int
    view: Callable[[], Awaitable[TrackView | None]]
    chunk: Callable[[TimelineEntry, bytes], bytes]
    head: bytes
    content_type: str
    patience: float

    async def send(self, send: Send, headers: list[tuple[bytes, bytes]], *, head: bool) -> None:
        start = [
            (b"content-type", self.content_type.encode()),
            (b"cache-control", CACHE_CONTROL),
            *headers,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": start})
        if head:
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.body", "body": self.head, "more_body": True})
        sent = 0
        progress = time.monotonic()  # when this track last gave a part
        while True:
            seen = self.point.version
            entries, complete = await self._entries()
            for entry in entries[sent:]:
                data = await self.point.fragment(self.track, entry.decode_time)
                await send({"type": "http.response.body", "body": self.chunk(entry, data), "more_body": True})
            if len(entries) > sent:
                sent, progress = len(entries), time.monotonic()
            if complete:
                break
            remaining = progress + self.patience - time.monotonic()
            if remaining <= 0:
                event(
                    log,
                    "playout.edge_abandoned",
                    logging.WARNING,
                    channel=str(self.point.pid),
                    track=self.track,
                    time=self.time,
                    parts=sent,
                )
                break
            await self.point.changed(seen, remaining)
        await send({"type": "http.response.body", "body": b""})

    async def _entries(self) -> tuple[tuple[TimelineEntry, ...], bool]:
        """The segment's stored parts, and whether it is complete (closed, or gone from view)."""
        view = await self.view()
        if view is None or self.point.deleted:
            return (), True
        if view.parts and view.parts[0].decode_time == self.time:
            return view.parts, False
        _, segment = view.find(self.time)
        return (segment.fragments if segment is not None else ()), True
