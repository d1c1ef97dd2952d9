"""WebVTT in ISO-BMFF (ISO/IEC 14496-30 §7) to WebVTT text (W3C WebVTT), for HLS subtitle segments,
which HLS carries as text (RFC 8216bis §3.1.4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from media.boxes import RawBox, parse_boxes
from media.errors import BoxError
from media.model import Sample


@dataclass(frozen=True, slots=True)
class Cue:
    start: int  # track timescale
    end: int
    text: str
    settings: str = ""
    identifier: str = ""


def sample_cues(data: bytes, start: int, duration: int) -> list[Cue]:
    """The cues of one sample: each ``vttc`` box (``payl`` text, ``sttg`` settings, ``iden``
    identifier) is a cue spanning the sample; ``vtte`` means no cue (§7.5.3)."""
    cues = []
    for box in parse_boxes(data, path="wvtt sample"):
        if box.box_type == b"vtte":
            continue
        if box.box_type != b"vttc" or not isinstance(box, RawBox):
            raise BoxError(f"unexpected {box.name!r} in a WebVTT sample", path="wvtt sample")
        parts = {b.box_type: b for b in parse_boxes(box.data, path="vttc") if isinstance(b, RawBox)}

        def text(kind: bytes, parts: dict[bytes, RawBox] = parts) -> str:
            found = parts.get(kind)
            return found.data.decode("utf-8", "replace") if found else ""

        cues.append(Cue(start, start + duration, text(b"payl"), text(b"sttg"), text(b"iden")))
    return cues


def cues_of(decode_time: int, samples: Sequence[Sample], payload: bytes) -> list[Cue]:
    """Cues of a fragment's samples; a cue repeated in consecutive samples (split where cues
    overlap) becomes one."""
    out: list[Cue] = []
    time = pos = 0
    for sample in samples:
        for cue in sample_cues(payload[pos : pos + sample.size], decode_time + time, sample.duration):
            previous = next(
                (
                    c
                    for c in reversed(out)
                    if c.end == cue.start
                    and c.text == cue.text
                    and c.settings == cue.settings
                    and c.identifier == cue.identifier
                ),
                None,
            )
            if previous is not None:
                out[out.index(previous)] = Cue(
                    previous.start, cue.end, cue.text, cue.settings, cue.identifier
                )
            else:
                out.append(cue)
        time += sample.duration
        pos += sample.size
    return out


def timestamp(ticks: int, timescale: int) -> str:
    ms = ticks * 1000 // timescale
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def document(cues: Sequence[Cue], timescale: int) -> str:
    """A WebVTT file whose cue times are media times: ``X-TIMESTAMP-MAP`` ties LOCAL 0 to MPEG-TS
    time 0, which is how the TS segments carry the same media times (RFC 8216bis §3.1.4)."""
    lines = ["WEBVTT", "X-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000", ""]
    for cue in cues:
        if cue.identifier:
            lines.append(cue.identifier)
        timing = f"{timestamp(cue.start, timescale)} --> {timestamp(cue.end, timescale)}"
        lines.append(f"{timing} {cue.settings}".rstrip())
        lines.extend(cue.text.replace("\r\n", "\n").split("\n"))
        lines.append("")
    return "\n".join(lines) + "\n"
