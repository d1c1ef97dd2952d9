"""The media model: one form for every input, from ingest through storage to the packagers.

Time is always an integer in a named timescale (``Track.timescale`` ticks per second).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from media.boxes import SAMPLE_NON_SYNC


class TrackKind(StrEnum):
    VIDEO = "video"
    AUDIO = "audio"
    TEXT = "text"


@dataclass(frozen=True, slots=True)
class Track:
    """A CMAF track: what a player needs to know to decode it, and its CMAF header.

    ``name`` identifies the track inside its publishing point (``video=400000``, ``audio-eng``) and
    stays the same across encoder reconnects. ``header`` is a CMAF header (ftyp + moov) holding this
    track alone, as track 1.
    """

    name: str
    kind: TrackKind
    codec: str  # sample entry format: avc1, hvc1, mp4a, wvtt, stpp, …
    codec_string: str  # RFC 6381 ``codecs`` value
    timescale: int
    header: bytes
    language: str = "und"
    bitrate: int = 0
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0
    decoder_config: bytes = b""  # avcC / hvcC record, AudioSpecificConfig, WebVTT config

    def same_media(self, other: Track) -> bool:
        """True when ``other`` decodes the same way, so fragments of both can share one timeline."""
        return (
            self.kind == other.kind
            and self.codec_string == other.codec_string
            and self.timescale == other.timescale
            and self.decoder_config == other.decoder_config
        )


@dataclass(frozen=True, slots=True)
class Sample:
    """One access unit of a fragment (ISO/IEC 14496-12 §8.8.8 sample fields)."""

    duration: int
    size: int
    flags: int
    composition_offset: int = 0

    @property
    def is_sync(self) -> bool:
        return not self.flags & SAMPLE_NON_SYNC


@dataclass(frozen=True, slots=True)
class Fragment:
    """A CMAF fragment of one track: ``data`` is ``moof`` + ``mdat`` with ``tfdt`` and a complete
    ``trun``, track ID 1, ready to follow ``Track.header``."""

    track: str
    decode_time: int
    duration: int
    samples: tuple[Sample, ...]
    data: bytes

    @property
    def keyframe(self) -> bool:
        """Starts with a sync sample, so a segment or a player can begin here."""
        return bool(self.samples) and self.samples[0].is_sync

    @property
    def end_time(self) -> int:
        return self.decode_time + self.duration
