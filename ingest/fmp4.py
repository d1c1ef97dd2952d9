"""Sans-IO receiver for fragmented-MP4 ingest: Smooth Streaming (Azure fMP4 live ingest, PIFF timing
in ``tfxd``) and CMAF (DASH-IF Live Media Ingest v1.2 interface 1), in either framing.

Feed it the request body in any pieces; it returns events: the tracks a header declares, each
fragment normalised to a single-track CMAF fragment with ``tfdt``, and the end of the stream.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from ingest.errors import MissingHeader
from media.bmff import BoxReader, RawTopBox, count_samples
from media.boxes import (
    MAX_TRUN_SAMPLES,
    LiveServerManifestBox,
    MovieBox,
    MovieExtendsBox,
    MovieFragmentBox,
    MovieFragmentHeaderBox,
    SegmentTypeBox,
    TfxdBox,
    TrackBox,
    TrackExtendsBox,
    TrackFragmentBox,
    TrackFragmentDecodeTimeBox,
    TrackFragmentHeaderBox,
    TrackHeaderBox,
    TrackRun,
    parse_box,
)
from media.cmaf import track_from_trak, write_fragment
from media.errors import BoxError, MediaError
from media.model import Fragment, Sample, Track

SKIPPED_BOXES = frozenset({b"free", b"skip", b"sidx", b"prft", b"emsg", b"udta", b"meta", b"ssix"})
MAX_TRACKS = 64  # per header; a Smooth ladder has a handful
TOP_LEVEL = SKIPPED_BOXES | {b"ftyp", b"styp", b"uuid", b"moov", b"moof", b"mdat", b"mfra"}


@dataclass(frozen=True, slots=True)
class TracksDeclared:
    """A header (ftyp, optional live server manifest, moov) arrived. ``header`` is those boxes as
    sent, kept so that later requests of a one-request-per-segment encoder can be read."""

    tracks: tuple[Track, ...]
    header: bytes


@dataclass(frozen=True, slots=True)
class FragmentReceived:
    fragment: Fragment


@dataclass(frozen=True, slots=True)
class StreamEnded:
    reason: str


Event = TracksDeclared | FragmentReceived | StreamEnded


@dataclass
class _TrackState:
    track: Track
    trex: TrackExtendsBox


@dataclass
class _LsmTrack:
    name: str
    bitrate: int


def stream_stem(stream: str) -> str:
    """``video-720p.cmfv`` → ``video-720p``: the track name of a single-track CMAF stream."""
    stem, dot, ext = stream.rpartition(".")
    return (
        stem
        if dot and stem and ext in {"cmfv", "cmfa", "cmft", "cmfm", "mp4", "m4s", "ismv", "isma"}
        else stream
    )


def _parse_lsm(xml: str, path: str) -> dict[int, _LsmTrack]:
    """Track names and bitrates per track ID from a live server manifest (SMIL 2.0 ``switch``)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise BoxError(f"live server manifest is not well-formed XML: {exc}", path=path) from None
    out: dict[int, _LsmTrack] = {}
    for elem in root.iter():
        kind = elem.tag.rsplit("}", 1)[-1]
        if kind not in ("video", "audio", "textstream"):
            continue
        params = {p.get("name", ""): p.get("value", "") for p in elem if p.tag.rsplit("}", 1)[-1] == "param"}
        try:
            track_id = int(params.get("trackID", ""))
            bitrate = int(elem.get("systemBitrate") or params.get("systemBitrate") or 0)
        except ValueError:
            raise BoxError(f"<{kind}> has a non-numeric trackID or systemBitrate", path=path) from None
        out[track_id] = _LsmTrack(
            params.get("trackName") or ("text" if kind == "textstream" else kind), bitrate
        )
    return out


@dataclass
class _PendingMoof:
    box: RawTopBox
    moof: MovieFragmentBox


@dataclass
class Fmp4Receiver:
    """One ingest request's parser. ``stream`` is the ``Streams(…)`` name of the URL; ``known_header``
    is the header an earlier request of the same stream sent (one-request-per-segment framing)."""

    stream: str
    max_box_size: int
    known_header: bytes | None = None
    _reader: BoxReader = field(init=False)
    _tracks: dict[int, _TrackState] = field(default_factory=dict, init=False)
    _header_parts: list[bytes] = field(default_factory=list, init=False)
    _lsm: dict[int, _LsmTrack] | None = field(default=None, init=False)
    _pending: _PendingMoof | None = field(default=None, init=False)
    _last_segment: bool = field(default=False, init=False)
    _error: MediaError | None = field(default=None, init=False)
    ended: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._reader = BoxReader(self.max_box_size, allowed_types=TOP_LEVEL)
        if self.known_header:
            restore = BoxReader(len(self.known_header) + 1)
            for box in restore.feed(self.known_header):
                self._on_box(box)
            self._header_parts.clear()

    @property
    def is_smooth(self) -> bool:
        """The stream carried a live server manifest, so the end of the body ends it."""
        return self._lsm is not None

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete box held back."""
        return self._reader.buffered

    @property
    def tracks(self) -> list[Track]:
        return [s.track for s in self._tracks.values()]

    def feed(self, data: bytes) -> list[Event]:
        """Events for the boxes ``data`` completes. When a box is bad, the events of the boxes before
        it are returned first, and the error is raised by the next call to ``feed`` or ``close``."""
        self._raise_pending()
        events: list[Event] = []
        try:
            for box in self._reader.feed(data):
                if self.ended:
                    raise BoxError(
                        "data after the end of the stream", path=box.type.decode("latin-1"), offset=box.offset
                    )
                try:
                    events.extend(self._on_box(box))
                except MediaError as exc:
                    exc.at_offset(box.offset)
                    raise
        except MediaError as exc:
            if not events:
                raise
            self._error = exc
        return events

    def close(self) -> list[Event]:
        """The request body ended cleanly."""
        self._raise_pending()
        self._reader.close()
        if self._pending is not None:
            raise BoxError(
                "body ended after a moof without its mdat", path="moof", offset=self._pending.box.offset
            )
        if not self.ended and (self.is_smooth or self._last_segment):
            self.ended = True
            return [StreamEnded("lmsg" if self._last_segment else "end of body")]
        return []

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    # -- boxes ------------------------------------------------------------------------------

    def _on_box(self, raw: RawTopBox) -> list[Event]:
        kind = raw.type
        if self._pending is not None and kind != b"mdat":
            raise BoxError(
                "moof not followed by its mdat", path=raw.type.decode("latin-1"), offset=raw.offset
            )
        if kind == b"ftyp":
            parse_box(raw.data, base=raw.offset)
            self._header_parts = [raw.data]
        elif kind == b"styp":
            styp, _ = parse_box(raw.data, base=raw.offset)
            assert isinstance(styp, SegmentTypeBox)
            if self._last_segment:
                raise BoxError("segment after the last one (lmsg)", path="styp", offset=raw.offset)
            self._last_segment = styp.has_brand(b"lmsg")
        elif kind == b"uuid":
            box, _ = parse_box(raw.data, base=raw.offset)
            if isinstance(box, LiveServerManifestBox):
                self._lsm = _parse_lsm(box.xml, "lsm ")
                self._header_parts.append(raw.data)
        elif kind == b"moov":
            return self._on_moov(raw)
        elif kind == b"moof":
            if not self._tracks:
                raise MissingHeader(
                    f"stream {self.stream!r}: media fragment before any CMAF header (ftyp + moov)",
                    path="moof",
                    offset=raw.offset,
                )
            declared = count_samples(raw.data, raw.offset)
            if declared > MAX_TRUN_SAMPLES:
                raise BoxError(
                    f"moof declares {declared} samples, over the limit of {MAX_TRUN_SAMPLES}",
                    path="moof",
                    offset=raw.offset,
                )
            moof, _ = parse_box(raw.data, base=raw.offset)
            assert isinstance(moof, MovieFragmentBox)
            self._pending = _PendingMoof(raw, moof)
        elif kind == b"mdat":
            if self._pending is None:
                raise BoxError("mdat without a preceding moof", path="mdat", offset=raw.offset)
            pending, self._pending = self._pending, None
            # A last segment (lmsg) may hold several chunks: it ends with the body or at mfra.
            return [FragmentReceived(f) for f in self._fragments(pending, raw)]
        elif kind == b"mfra":
            self.ended = True
            return [StreamEnded("lmsg" if self._last_segment else "mfra")]
        return []

    def _on_moov(self, raw: RawTopBox) -> list[Event]:
        moov, _ = parse_box(raw.data, base=raw.offset)
        assert isinstance(moov, MovieBox)
        traks = moov.all(TrackBox)
        if not traks:
            raise BoxError("moov declares no track", path="moov", offset=raw.offset)
        if len(traks) > MAX_TRACKS:
            raise BoxError(
                f"moov declares {len(traks)} tracks, over the limit of {MAX_TRACKS}",
                path="moov",
                offset=raw.offset,
            )
        mvex = moov.first(MovieExtendsBox)
        trexes = {t.track_id: t for t in mvex.all(TrackExtendsBox)} if mvex else {}
        tracks: dict[int, _TrackState] = {}
        for i, trak in enumerate(traks):
            path = f"moov/trak[{i}]"
            track_id = trak.need(TrackHeaderBox, path).track_id
            name, bitrate = self._name(track_id, len(traks))
            track = track_from_trak(trak, name, bitrate=bitrate, path=path)
            tracks[track_id] = _TrackState(track, trexes.get(track_id, TrackExtendsBox(track_id=track_id)))
        names = [s.track.name for s in tracks.values()]
        if len(set(names)) != len(names):
            raise BoxError(f"tracks share a name: {', '.join(sorted(names))}", path="moov", offset=raw.offset)
        self._tracks = tracks
        self._header_parts.append(raw.data)
        return [TracksDeclared(tuple(s.track for s in tracks.values()), b"".join(self._header_parts))]

    def _name(self, track_id: int, count: int) -> tuple[str, int]:
        if self._lsm is not None and track_id in self._lsm:
            lsm = self._lsm[track_id]
            return f"{lsm.name}={lsm.bitrate}", lsm.bitrate
        stem = stream_stem(self.stream)
        return (stem if count == 1 else f"{stem}_{track_id}"), 0

    # -- fragments --------------------------------------------------------------------------

    def _fragments(self, pending: _PendingMoof, mdat_raw: RawTopBox) -> list[Fragment]:
        """Cut one CMAF fragment per ``traf`` out of a moof + mdat pair (ISO/IEC 14496-12 §8.8.7.1
        for the data offset rules)."""
        moof_offset = pending.box.offset
        mdat_start = mdat_raw.offset + mdat_raw.header.header_size
        mdat_end = mdat_raw.offset + len(mdat_raw.data)
        out: list[Fragment] = []
        next_data = moof_offset  # where data continues when a traf/trun gives no offset
        for i, traf in enumerate(pending.moof.all(TrackFragmentBox)):
            path = f"moof/traf[{i}]"
            tfhd = traf.need(TrackFragmentHeaderBox, path)
            state = self._tracks.get(tfhd.track_id)
            if state is None:
                raise BoxError(
                    f"traf for track {tfhd.track_id}, which the header does not declare", path=f"{path}/tfhd"
                )
            if tfhd.base_data_offset is not None:
                base = tfhd.base_data_offset
            elif tfhd.default_base_is_moof or i == 0:
                base = moof_offset
            else:
                base = next_data
            samples: list[Sample] = []
            payload = bytearray()
            pos = base
            trex = state.trex
            truns = traf.all(TrackRun)
            total = sum(len(t.samples) for t in truns)
            if total > MAX_TRUN_SAMPLES:
                raise BoxError(
                    f"{total} samples in one traf exceed the limit of {MAX_TRUN_SAMPLES}", path=path
                )
            for j, trun in enumerate(truns):
                if trun.data_offset is not None:
                    pos = base + trun.data_offset
                for k, entry in enumerate(trun.samples):
                    size = _pick(entry.size, tfhd.default_sample_size, trex.default_sample_size)
                    if k == 0 and trun.first_sample_flags is not None:
                        flags = trun.first_sample_flags
                    else:
                        flags = _pick(entry.flags, tfhd.default_sample_flags, trex.default_sample_flags)
                    duration = _pick(
                        entry.duration, tfhd.default_sample_duration, trex.default_sample_duration
                    )
                    if pos < mdat_start or pos + size > mdat_end:
                        raise BoxError(
                            f"sample {k} ({size} bytes at stream offset {pos}) lies outside the mdat "
                            f"({mdat_start} to {mdat_end})",
                            path=f"{path}/trun[{j}]",
                            offset=pos,
                        )
                    start = pos - mdat_raw.offset
                    payload += mdat_raw.data[start : start + size]
                    pos += size
                    cto = entry.composition_offset or 0
                    if trun.version == 0 and cto >= 1 << 31:
                        cto -= 1 << 32  # a negative offset written unsigned, as some encoders do
                    samples.append(Sample(duration, size, flags, cto))
            next_data = pos
            decode_time, duration = self._timing(traf, samples, path, moof_offset)
            if decode_time < 0:
                decode_time, duration, samples, payload = _drop_before_zero(decode_time, samples, payload)
                if not samples:
                    continue
            data = write_fragment(
                pending.moof.need(MovieFragmentHeaderBox).sequence_number,
                decode_time,
                samples,
                bytes(payload),
            )
            out.append(Fragment(state.track.name, decode_time, duration, tuple(samples), data))
        return out

    @staticmethod
    def _timing(traf: TrackFragmentBox, samples: list[Sample], path: str, offset: int) -> tuple[int, int]:
        """Decode time (signed: encoders write the AAC priming frame before zero as a wrapped
        64-bit value) and duration of a traf, from ``tfdt``, else from PIFF ``tfxd``."""
        total = sum(s.duration for s in samples)
        tfdt = traf.first(TrackFragmentDecodeTimeBox)
        tfxd = traf.first(TfxdBox)
        if tfdt is not None:
            time, bits = tfdt.base_media_decode_time, 64 if tfdt.version == 1 else 32
        elif tfxd is not None:
            time, bits = tfxd.absolute_time, 64 if tfxd.version == 1 else 32
        else:
            raise BoxError(
                "traf has neither tfdt nor tfxd: the fragment has no decode time", path=path, offset=offset
            )
        if bits == 64 and time >= 1 << 63:
            time -= 1 << 64
        return time, total or (tfxd.duration if tfxd else 0)


def _drop_before_zero(
    decode_time: int, samples: list[Sample], payload: bytearray
) -> tuple[int, int, list[Sample], bytearray]:
    """Drop the samples that start before time zero (a CMAF timeline cannot hold them)."""
    cut = skip_bytes = 0
    while cut < len(samples) and decode_time < 0:
        decode_time += samples[cut].duration
        skip_bytes += samples[cut].size
        cut += 1
    kept = samples[cut:]
    return decode_time, sum(s.duration for s in kept), kept, payload[skip_bytes:]


def _pick(*values: int | None) -> int:
    for v in values:
        if v is not None:
            return v
    return 0
