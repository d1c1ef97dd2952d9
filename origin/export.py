"""Progressive MP4 export: ``GET /<point>.isml/<any>.mp4?vbegin=…&vend=…`` answers a fast-start MP4
of that range of the archive, all tracks, starting on a keyframe (:mod:`media.progressive`).

The file is planned from the stored fragments' sample tables, then streamed: the ``moov`` first,
then the samples fragment by fragment, so memory holds one fragment at a time whatever the clip's
length. Without ``vbegin`` the clip starts at the start of the archive; without ``vend`` it ends
where the archive ends now.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ingest.points import PublishingPoint
from media.cmaf import read_fragment
from media.presentation import Presentation
from media.progressive import FragmentSamples, Progressive, TrackInput, build
from media.timerange import ControlError

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ClipStream:
    """A planned export, ready to be sent."""

    point: PublishingPoint
    tracks: tuple[str, ...]  # track names by Piece.track_index
    clip: Progressive
    cache_control: str

    async def send(self, send: Send, headers: list[tuple[bytes, bytes]], *, head: bool) -> None:
        headers = [
            (b"content-type", b"video/mp4"),
            (b"cache-control", self.cache_control.encode()),
            (b"content-length", str(self.clip.size).encode()),
            *headers,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if head:
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.body", "body": self.clip.head, "more_body": True})
        current: tuple[int, int] | None = None
        payload = b""
        for piece in self.clip.pieces:
            if current != (piece.track_index, piece.fragment_time):
                current = (piece.track_index, piece.fragment_time)
                data = await self.point.fragment(self.tracks[piece.track_index], piece.fragment_time)
                payload = read_fragment(data)[2]
            chunk = payload[piece.offset : piece.offset + piece.size]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def plan_clip(point: PublishingPoint, p: Presentation, longest: int) -> ClipStream:
    """Plan the export of what ``p`` (a presentation cut on keyframe segments) selects. Raises
    :class:`ControlError` for a range longer than ``longest`` seconds."""
    views = [v for v in p.views if v.window]
    if not views:
        raise ControlError("vbegin", "the range holds no media")
    begin = (
        p.begin if p.begin is not None else min(Fraction(v.window[0].time, v.track.timescale) for v in views)
    )
    finish = (
        p.finish
        if p.finish is not None
        else max(Fraction(v.window[-1].end, v.track.timescale) for v in views)
    )
    if finish - begin > longest:
        raise ControlError(
            "vend", f"the range spans {float(finish - begin):.0f} s; an export may span up to {longest} s"
        )
    inputs = []
    for view in views:
        fragments = []
        for segment in view.window:
            for entry in segment.fragments:
                decode_time, samples, _ = read_fragment(
                    await point.fragment(view.track.name, entry.decode_time)
                )
                fragments.append(FragmentSamples(decode_time, tuple(samples)))
        inputs.append(TrackInput(view.track, fragments))
    clip = build(inputs, begin, finish)
    cache = "public, max-age=3600" if not p.live else "no-cache"
    return ClipStream(point, tuple(v.track.name for v in views), clip, cache)
