"""Progressive (fast-start) MP4 files of a time range of the archive: the plan and the file head, no I/O.

A clip is ``ftyp`` + ``moov`` + ``mdat`` (ISO/IEC 14496-12 §4.3, §8.2.1, §8.1.1), the ``moov`` first so
that playback starts before the download ends. :func:`build` chooses the samples of every track from
the stored CMAF fragments' sample tables, writes the head once, and lists the byte ranges of the
fragments' sample payloads (:class:`Piece`) that, copied in order after the head, make up the ``mdat``
payload. A server can so stream a file of any size while holding only the head.

Timing. Times are integers in each track's timescale; ``start``, ``end`` and the clip's bounds are
:class:`~fractions.Fraction` seconds on the media clock all tracks share (decode time / timescale).

- The clip starts at ``S``: with a video track, the first one's latest sync sample at or before
  ``start`` (its first sync sample after ``start`` when there is none before); without video, the
  first sample at or after ``start`` of the first audio track (of the first track when there is no
  audio either).
- Every track takes a contiguous run of samples, up to the last one whose decode time is before
  ``end``. Video tracks begin at their own latest sync sample at or before ``S`` (``S`` itself for
  the first one); audio at the first sample whose middle is at or after ``S`` (a frame straddling
  ``S`` is kept when at least half of it lies after ``S``); text at the first sample still showing at
  ``S`` (a cue that began earlier stays visible).
- Each track's edit list (§8.6.6) starts presentation at ``P0``, the composition time of the first
  sample of the track ``S`` came from (for video the usual B-frame shift: ``media_time`` is that
  sample's composition offset). A track whose media begins later gets an empty edit first; one whose
  media begins earlier skips the lead, so all tracks keep the sync they had when stored.
- A track with no sample in the range is left out; the others keep track ID = input index + 1.
- The stored fragments of a track follow each other on its timeline. Where one does not start where
  the previous one ended (an encoder gap), the last sample before it is lengthened (or shortened) so
  that every sample keeps its decode time.

Layout. Each stored fragment's selected samples form one chunk (§8.7.4); chunks of all tracks are
interleaved in order of their decode time in seconds. Chunk offsets use ``stco`` unless a track has a
chunk at or past 4 GiB (``co64``, §8.7.5); the ``mdat`` header takes a 64-bit ``largesize`` when the
box size does not fit 32 bits (§4.2).

Memory is a few bytes per sample (``array`` columns, run-length tables), plus the head itself.
"""

from __future__ import annotations

import itertools
import math
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from media.bmff import write_header
from media.boxes import (
    Box,
    ChunkLargeOffsetBox,
    ChunkOffsetBox,
    CompositionOffsetBox,
    DataEntryUrlBox,
    DataInformationBox,
    DataReferenceBox,
    EditBox,
    EditEntry,
    EditListBox,
    FileTypeBox,
    HandlerBox,
    MediaBox,
    MediaHeaderBox,
    MediaInformationBox,
    MovieBox,
    MovieHeaderBox,
    NullMediaHeaderBox,
    SampleDescriptionBox,
    SampleSizeBox,
    SampleTableBox,
    SampleToChunkBox,
    SoundMediaHeaderBox,
    SubtitleMediaHeaderBox,
    SyncSampleBox,
    TimeToSampleBox,
    TrackBox,
    TrackHeaderBox,
    VideoMediaHeaderBox,
    i32s,
    parse_boxes,
    u32s,
    u64s,
)
from media.errors import BoxError, ClipError
from media.model import Sample, Track, TrackKind

MOVIE_TIMESCALE = 1000  # mvhd, tkhd and elst durations: milliseconds
MAX_U32 = 0xFFFFFFFF

_MEDIA_HEADERS = (VideoMediaHeaderBox, SoundMediaHeaderBox, NullMediaHeaderBox, SubtitleMediaHeaderBox)
_ALTERNATE_GROUPS = {TrackKind.VIDEO: 1, TrackKind.AUDIO: 2, TrackKind.TEXT: 3}
# Brands (14496-12 Annex E; 14496-15 for avc1; AV1 ISOBMFF binding §2.1; Opus in ISOBMFF §4.1).
_CODEC_BRANDS = {"avc1": b"avc1", "av01": b"av01", "Opus": b"Opus"}


@dataclass(frozen=True, slots=True)
class FragmentSamples:
    """The sample table of one stored fragment: its ``tfdt`` and the samples of its ``trun``, as
    :func:`media.cmaf.read_fragment` returns them."""

    decode_time: int
    samples: tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class TrackInput:
    """One track of the clip: its description (with the CMAF header holding the ``stsd``) and its
    stored fragments in decode order, covering at least the requested range (and, for video, the
    keyframe before it)."""

    track: Track
    fragments: Sequence[FragmentSamples]


@dataclass(frozen=True, slots=True)
class Piece:
    """Bytes to copy into the ``mdat``: ``size`` bytes from ``offset`` in the sample payload of the
    stored fragment of track ``track_index`` (an index into the inputs) with decode time
    ``fragment_time``."""

    track_index: int
    fragment_time: int
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Progressive:
    """A planned file: ``head`` (ftyp, moov, mdat header) then the ``pieces`` in order, ``size`` bytes
    in all. ``start`` and ``end`` are the media-clock seconds the clip actually covers: its first
    keyframe's decode time, and the end of the last sample of any track."""

    head: bytes
    pieces: tuple[Piece, ...]
    size: int
    start: Fraction
    end: Fraction


@dataclass(slots=True)
class _Chunk:
    """The selected samples of one stored fragment."""

    fragment_time: int
    offset: int  # in the fragment's sample payload
    decode_time: int  # of its first sample
    size: int = 0
    samples: int = 0


@dataclass(slots=True)
class _Selection:
    """One track's samples in the clip, as sample-table columns."""

    index: int
    track: Track
    first_time: int = 0  # decode time of the first sample, in the original timeline
    durations: array[int] = field(default_factory=u32s)
    sizes: array[int] = field(default_factory=u32s)
    composition_offsets: array[int] = field(default_factory=i32s)
    sync_numbers: array[int] = field(default_factory=u32s)  # 1-based
    chunks: list[_Chunk] = field(default_factory=list)

    @property
    def timescale(self) -> int:
        return self.track.timescale

    @property
    def count(self) -> int:
        return len(self.sizes)

    def media_duration(self) -> int:
        return sum(self.durations)

    def end(self) -> Fraction:
        """Media-clock seconds where the last sample ends."""
        return Fraction(self.first_time + self.media_duration(), self.timescale)

    def composition_end(self) -> int:
        """The end of the last presented sample on the clip's media timeline (§8.6.1.1)."""
        end = position = 0
        for duration, offset in zip(self.durations, self.composition_offsets, strict=True):
            end = max(end, position + offset + duration)
            position += duration
        return end


# ---------------------------------------------------------------------------------------------
# Choosing samples


def _timed(fragments: Sequence[FragmentSamples]) -> Iterator[tuple[int, Sample]]:
    """Every sample with its decode time, in decode order."""
    for fragment in fragments:
        time = fragment.decode_time
        for sample in fragment.samples:
            yield time, sample
            time += sample.duration


def _keyframe_at(fragments: Sequence[FragmentSamples], ticks: Fraction) -> int | None:
    """Decode time of the latest sync sample at or before ``ticks``, else of the first one after it."""
    last = math.floor(ticks)  # integer thresholds keep Fraction arithmetic out of the loops
    before = None
    for time, sample in _timed(fragments):
        if not sample.is_sync:
            continue
        if time > last:
            return time if before is None else before
        before = time
    return before


def _clip_start(inputs: Sequence[TrackInput], start: Fraction) -> tuple[int, Fraction]:
    """The reference track (first video, else first audio, else first) and the clip start ``S``."""
    kinds = [i.track.kind for i in inputs]
    ref = next((n for n, k in enumerate(kinds) if k is TrackKind.VIDEO), None)
    if ref is not None:
        track = inputs[ref]
        time = _keyframe_at(track.fragments, start * track.track.timescale)
    else:
        ref = next((n for n, k in enumerate(kinds) if k is TrackKind.AUDIO), 0)
        track = inputs[ref]
        first = math.ceil(start * track.track.timescale)
        time = next((t for t, _ in _timed(track.fragments) if t >= first), None)
    if time is None:
        raise ClipError(f"track {track.track.name!r} has no sample to start a clip at {float(start):.3f} s")
    return ref, Fraction(time, track.track.timescale)


StartRule = Callable[[int, Sample], bool]


def _start_rule(track: TrackInput, clip_start: Fraction) -> StartRule | None:
    """Whether a sample at a decode time is the first one of the track in the clip (module docstring);
    ``None`` when a video track has no sync sample to start at."""
    ticks = clip_start * track.track.timescale
    kind = track.track.kind
    if kind is TrackKind.VIDEO:
        first = _keyframe_at(track.fragments, ticks)
        if first is None:
            return None
        return lambda time, sample: time >= first
    if kind is TrackKind.AUDIO:
        middle = math.ceil(2 * ticks)
        return lambda time, sample: 2 * time + sample.duration >= middle
    before, at = math.floor(ticks), math.ceil(ticks)
    return lambda time, sample: time + sample.duration > before or time >= at


def _select(index: int, track: TrackInput, begins: StartRule, end: Fraction) -> _Selection:
    """The run of samples from the first one ``begins`` accepts to the last one before ``end``."""
    out = _Selection(index, track.track)
    end_ticks = math.ceil(end * track.track.timescale)  # time < end * timescale, for integers
    expected: int | None = None  # where the next sample starts when nothing is missing
    previous = 0
    for fragment in track.fragments:
        time, offset = fragment.decode_time, 0
        chunk: _Chunk | None = None
        for sample in fragment.samples:
            if expected is None and not begins(time, sample):
                offset, time = offset + sample.size, time + sample.duration
                continue
            if time >= end_ticks:
                return out
            if expected is None:
                out.first_time = time
            elif time != expected:
                out.durations[-1] = min(max(time - previous, 0), MAX_U32)
            if chunk is None:
                chunk = _Chunk(fragment.decode_time, offset, time)
                out.chunks.append(chunk)
            _append(out, sample)
            chunk.size += sample.size
            chunk.samples += 1
            previous, expected = time, time + sample.duration
            offset, time = offset + sample.size, time + sample.duration
    return out


def _append(out: _Selection, sample: Sample) -> None:
    out.durations.append(sample.duration)
    out.sizes.append(sample.size)
    out.composition_offsets.append(sample.composition_offset)
    if sample.is_sync:
        out.sync_numbers.append(len(out.sizes))


# ---------------------------------------------------------------------------------------------
# The movie box


def _version(*values: int) -> int:
    """Version 1 (64-bit times) when a value does not fit 32 bits (§8.2.2, §8.3.2, §8.4.2)."""
    return 1 if any(v > MAX_U32 for v in values) else 0


def _movie_time(ticks: Fraction | int, timescale: int) -> int:
    return round(Fraction(ticks) * MOVIE_TIMESCALE / timescale)


def _edits(sel: _Selection, presentation_start: Fraction) -> list[EditEntry]:
    """The edit list (§8.6.6) presenting the track's media from the media-clock instant
    ``presentation_start`` at movie time 0: an empty edit first when its media begins later, a
    ``media_time`` skipping the lead when it begins earlier."""
    lead = presentation_start * sel.timescale - sel.first_time  # media time to show at movie time 0
    end = sel.composition_end()
    if lead >= 0:
        media_time = round(lead)
        return [EditEntry(_movie_time(max(end - media_time, 0), sel.timescale), media_time)]
    edits = [EditEntry(_movie_time(-lead, sel.timescale), -1)]
    if edits[0].segment_duration == 0:
        edits = []
    return [*edits, EditEntry(_movie_time(end, sel.timescale), 0)]


def _runs(values: array[int]) -> tuple[array[int], array[int]]:
    """Run-length coding of a column: (run lengths, values)."""
    counts, runs = u32s(), array(values.typecode)
    for value, group in itertools.groupby(values):
        counts.append(sum(1 for _ in group))
        runs.append(value)
    return counts, runs


def _signed_offsets(sel: _Selection) -> bool:
    return bool(sel.composition_offsets) and min(sel.composition_offsets) < 0


def _sample_to_chunk(chunks: list[_Chunk]) -> SampleToChunkBox:
    """stsc (§8.7.4): one entry wherever the number of samples per chunk changes."""
    box = SampleToChunkBox()
    previous = None
    for number, chunk in enumerate(chunks, 1):
        if chunk.samples != previous:
            box.first_chunks.append(number)
            box.samples_per_chunk.append(chunk.samples)
            box.description_indexes.append(1)
            previous = chunk.samples
    return box


def _sample_table(sel: _Selection, stsd: SampleDescriptionBox) -> SampleTableBox:
    """stbl (§8.5.1) with stts, ctts when an offset is not 0 (version 1 when one is negative), stss
    when a sample is not a sync sample, stsc, stsz, and a chunk offset box :func:`_head` fills in."""
    children: list[Box] = [stsd, TimeToSampleBox(*_runs(sel.durations))]
    if any(sel.composition_offsets):
        counts, offsets = _runs(sel.composition_offsets)
        children.append(CompositionOffsetBox(counts, offsets, 1 if _signed_offsets(sel) else 0))
    if len(sel.sync_numbers) < sel.count:
        children.append(SyncSampleBox(sel.sync_numbers))
    children += [_sample_to_chunk(sel.chunks), SampleSizeBox.of(sel.sizes), ChunkOffsetBox()]
    return SampleTableBox(children)


def _header_boxes(track: Track) -> tuple[HandlerBox, Box, SampleDescriptionBox]:
    """The hdlr, media information header and stsd of the track's CMAF header."""
    where = f"header of {track.name}"
    moov = next((b for b in parse_boxes(track.header) if isinstance(b, MovieBox)), None)
    if moov is None:
        raise BoxError("CMAF header has no moov", path=where)
    mdia = moov.need(TrackBox, f"{where}: moov").need(MediaBox, f"{where}: moov/trak")
    minf = mdia.need(MediaInformationBox, f"{where}: moov/trak/mdia")
    stbl = minf.need(SampleTableBox, f"{where}: moov/trak/mdia/minf")
    media_header: Box | None = next((b for b in minf.children if isinstance(b, _MEDIA_HEADERS)), None)
    if media_header is None:
        media_header = {TrackKind.VIDEO: VideoMediaHeaderBox, TrackKind.AUDIO: SoundMediaHeaderBox}.get(
            track.kind, NullMediaHeaderBox
        )()
    return (
        mdia.need(HandlerBox, f"{where}: moov/trak/mdia"),
        media_header,
        stbl.need(SampleDescriptionBox, f"{where}: moov/trak/mdia/minf/stbl"),
    )


def _trak(sel: _Selection, edits: list[EditEntry], alternate_group: int) -> TrackBox:
    """trak (§8.3.1): tkhd, edts/elst, mdia with the header's hdlr and stsd."""
    hdlr, media_header, stsd = _header_boxes(sel.track)
    track = sel.track
    duration = sum(e.segment_duration for e in edits)
    media_duration = sel.media_duration()
    video = track.kind is TrackKind.VIDEO
    tkhd = TrackHeaderBox(
        track_id=sel.index + 1,
        duration=duration,
        width=track.width if video else 0,
        height=track.height if video else 0,
        version=_version(duration),
        alternate_group=alternate_group,
        volume=0x100 if track.kind is TrackKind.AUDIO else 0,
    )
    mdhd = MediaHeaderBox(sel.timescale, media_duration, track.language, _version(media_duration))
    dinf = DataInformationBox([DataReferenceBox([DataEntryUrlBox()])])
    minf = MediaInformationBox([media_header, dinf, _sample_table(sel, stsd)])
    edts = EditBox([EditListBox(edits, EditListBox.version_for(edits))])
    return TrackBox([tkhd, edts, MediaBox([mdhd, hdlr, minf])])


def _file_type(selections: list[_Selection]) -> FileTypeBox:
    """ftyp (§4.3): ``isom``, plus ``iso4`` for signed composition offsets (ctts version 1) and the
    brands of the codecs that define one."""
    brands = [b"isom", b"iso2"]
    if any(_signed_offsets(sel) for sel in selections):
        brands.append(b"iso4")
    for sel in selections:
        brand = _CODEC_BRANDS.get(sel.track.codec)
        if brand is not None and brand not in brands:
            brands.append(brand)
    return FileTypeBox(b"isom", 0x200, [*brands, b"mp41"])


def _large_offset_tracks(head_size: int, chunk_offsets: list[array[int]]) -> set[int]:
    """The tracks needing co64 (§8.7.5): a chunk at or past 4 GiB. Each switch to co64 grows the
    moov by 4 bytes a chunk and moves every chunk, so the choice is repeated until it holds."""
    large: set[int] = set()
    while True:
        size = head_size + sum(4 * len(chunk_offsets[n]) for n in large)
        need = {n for n, offsets in enumerate(chunk_offsets) if offsets and size + offsets[-1] > MAX_U32}
        if need <= large:
            return large
        large |= need


def _head(plan: _Plan, chunk_offsets: list[array[int]], payload_size: int) -> bytes:
    """ftyp + moov + mdat header, with each track's chunk offsets (relative to the mdat payload)
    made absolute."""
    selections = plan.selections
    kinds = [sel.track.kind for sel in selections]
    traks, stbls = [], []
    durations = [0]
    for sel in selections:
        edits = _edits(sel, plan.presentation_start)
        group = _ALTERNATE_GROUPS[sel.track.kind] if kinds.count(sel.track.kind) > 1 else 0
        trak = _trak(sel, edits, group)
        traks.append(trak)
        stbls.append(trak.need(MediaBox).need(MediaInformationBox).need(SampleTableBox))
        durations.append(sum(e.segment_duration for e in edits))
    duration = max(durations)
    next_id = max(sel.index for sel in selections) + 2
    moov = MovieBox([MovieHeaderBox(MOVIE_TIMESCALE, duration, next_id, _version(duration)), *traks])
    ftyp = bytes(_file_type(selections))
    mdat = write_header(b"mdat", payload_size)
    for stbl, offsets in zip(stbls, chunk_offsets, strict=True):
        stbl.children[-1] = ChunkOffsetBox(u32s(bytes(4 * len(offsets))))
    head_size = len(ftyp) + len(bytes(moov)) + len(mdat)
    large = _large_offset_tracks(head_size, chunk_offsets)
    base = head_size + sum(4 * len(chunk_offsets[n]) for n in large)
    for n, (stbl, offsets) in enumerate(zip(stbls, chunk_offsets, strict=True)):
        absolute = (base + offset for offset in offsets)
        stbl.children[-1] = (
            ChunkLargeOffsetBox(u64s(absolute)) if n in large else ChunkOffsetBox(u32s(absolute))
        )
    head: bytes = ftyp + bytes(moov) + mdat
    assert len(head) == base, "moov size changed between layout and writing"
    return head


# ---------------------------------------------------------------------------------------------
# Planning


def _interleave(selections: list[_Selection]) -> tuple[list[Piece], list[array[int]]]:
    """Chunks of all tracks in order of decode time in seconds: the pieces in file order, and each
    track's chunk offsets relative to the start of the mdat payload."""
    order = sorted(
        (Fraction(chunk.decode_time, sel.timescale), n, k)
        for n, sel in enumerate(selections)
        for k, chunk in enumerate(sel.chunks)
    )
    offsets = [u64s() for _ in selections]
    pieces = []
    position = 0
    for _, n, k in order:
        sel, chunk = selections[n], selections[n].chunks[k]
        offsets[n].append(position)
        pieces.append(Piece(sel.index, chunk.fragment_time, chunk.offset, chunk.size))
        position += chunk.size
    return pieces, offsets


@dataclass(frozen=True, slots=True)
class _Plan:
    """The clip start ``S``, the presentation start ``P0`` and the tracks' samples in input order."""

    clip_start: Fraction
    presentation_start: Fraction
    selections: list[_Selection]


def _plan(inputs: Sequence[TrackInput], start: Fraction, end: Fraction) -> _Plan:
    """Choose every track's samples; :class:`ClipError` when the reference track has none in range."""
    ref, clip_start = _clip_start(inputs, start)
    if clip_start >= end:
        raise ClipError(f"no media to start a clip in [{float(start):.3f} s, {float(end):.3f} s)")
    selections = []
    for index, track in enumerate(inputs):
        rule = _start_rule(track, clip_start)
        sel = _select(index, track, rule, end) if rule is not None else None
        if sel is not None and sel.count:
            selections.append(sel)
    reference = next((sel for sel in selections if sel.index == ref), None)
    if reference is None or reference.end() <= start:
        raise ClipError(f"no media in [{float(start):.3f} s, {float(end):.3f} s)")
    first_shown = reference.first_time + reference.composition_offsets[0]
    return _Plan(clip_start, Fraction(first_shown, reference.timescale), selections)


def build(inputs: Sequence[TrackInput], start: Fraction, end: Fraction) -> Progressive:
    """Plan the progressive MP4 of ``[start, end)`` (media-clock seconds) of ``inputs`` (module
    docstring). :class:`ClipError` when the range is empty or holds no media; a :class:`BoxError` when
    a track's CMAF header lacks its sample description."""
    if not inputs:
        raise ClipError("a clip needs at least one track")
    if end <= start:
        raise ClipError(f"empty range [{float(start):.3f} s, {float(end):.3f} s)")
    plan = _plan(inputs, start, end)
    pieces, chunk_offsets = _interleave(plan.selections)
    payload_size = sum(piece.size for piece in pieces)
    head = _head(plan, chunk_offsets, payload_size)
    clip_end = max(sel.end() for sel in plan.selections)
    return Progressive(head, tuple(pieces), len(head) + payload_size, plan.clip_start, clip_end)
