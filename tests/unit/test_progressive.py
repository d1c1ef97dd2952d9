"""media.progressive: fast-start MP4 clips planned from stored CMAF fragments.

Real clips are cut from an ffmpeg H.264 (B-frames) + AAC capture normalised by the CMAF ingest
receiver, assembled (head + the pieces' bytes), and checked with ffprobe/ffmpeg and by reading the
moov back with media.boxes. Synthetic tracks pin down timing rules, edit lists and 64-bit layout
without writing gigabytes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from ingest.fmp4 import Fmp4Receiver, FragmentReceived, TracksDeclared
from media.boxes import (
    NON_SYNC_SAMPLE_FLAGS,
    SYNC_SAMPLE_FLAGS,
    Box,
    ChunkLargeOffsetBox,
    ChunkOffsetBox,
    CompositionOffsetBox,
    EditBox,
    EditEntry,
    EditListBox,
    FileTypeBox,
    MediaBox,
    MediaDataBox,
    MediaHeaderBox,
    MediaInformationBox,
    MovieBox,
    MovieHeaderBox,
    RawBox,
    SampleDescriptionBox,
    SampleSizeBox,
    SampleTableBox,
    SampleToChunkBox,
    SyncSampleBox,
    TextSampleEntry,
    TimeToSampleBox,
    TrackBox,
    TrackHeaderBox,
    parse_boxes,
)
from media.cmaf import build_header, read_fragment, track_from_trak
from media.errors import ClipError
from media.model import Sample, Track, TrackKind
from media.progressive import FragmentSamples, Piece, Progressive, TrackInput, build
from tests.conftest import run_ffmpeg
from tests.unit.streams import aac_entry, avc_entry

FPS = 30
GOP_SECONDS = 1  # -g 30 at 30 fps
AAC_FRAME = 1024
SECONDS = 8

# ---------------------------------------------------------------------------------------------
# A real archive: ffmpeg CMAF (H.264 with B-frames + AAC) through the CMAF ingest receiver


@dataclass(frozen=True)
class Archive:
    """Stored tracks as the origin reads them: per-track fragment sample tables and payloads."""

    inputs: list[TrackInput]
    payloads: dict[tuple[int, int], bytes]  # (track index, fragment decode time) -> sample bytes

    def assemble(self, clip: Progressive) -> bytes:
        parts = [clip.head]
        for piece in clip.pieces:
            payload = self.payloads[(piece.track_index, piece.fragment_time)]
            assert piece.offset + piece.size <= len(payload)
            parts.append(payload[piece.offset : piece.offset + piece.size])
        return b"".join(parts)

    def samples(self, index: int) -> Iterator[tuple[int, Sample, bytes]]:
        """Every stored sample of a track: decode time, sample, bytes."""
        for fragment in self.inputs[index].fragments:
            payload = self.payloads[(index, fragment.decode_time)]
            time, offset = fragment.decode_time, 0
            for sample in fragment.samples:
                yield time, sample, payload[offset : offset + sample.size]
                time, offset = time + sample.duration, offset + sample.size


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg/ffprobe are not on PATH")
    path = tmp_path_factory.mktemp("progressive") / "mux.mp4"
    result = run_ffmpeg(
        *("-f", "lavfi", "-t", str(SECONDS), "-i", f"testsrc2=size=320x240:rate={FPS}"),
        *("-f", "lavfi", "-t", str(SECONDS), "-i", "sine=frequency=440:sample_rate=48000"),
        *("-c:v", "libx264", "-preset", "veryfast", "-g", str(FPS * GOP_SECONDS), "-bf", "2"),
        *("-c:a", "aac", "-f", "mp4", "-movflags", "cmaf+frag_keyframe+empty_moov+default_base_moof"),
        str(path),
    )
    assert result.returncode == 0, result.stderr
    receiver = Fmp4Receiver("mux.mp4", 1 << 26)
    events = receiver.feed(path.read_bytes()) + receiver.close()
    (declared,) = [e for e in events if isinstance(e, TracksDeclared)]
    tracks = list(declared.tracks)
    assert [t.kind for t in tracks] == [TrackKind.VIDEO, TrackKind.AUDIO]
    fragments: list[list[FragmentSamples]] = [[] for _ in tracks]
    payloads = {}
    for event in events:
        if isinstance(event, FragmentReceived):
            index = next(n for n, t in enumerate(tracks) if t.name == event.fragment.track)
            decode_time, samples, payload = read_fragment(event.fragment.data)
            fragments[index].append(FragmentSamples(decode_time, tuple(samples)))
            payloads[(index, decode_time)] = payload
    inputs = [TrackInput(track, frags) for track, frags in zip(tracks, fragments, strict=True)]
    return Archive(inputs, payloads)


def expected_video(archive: Archive, start: Fraction, end: Fraction) -> list[tuple[int, Sample, bytes]]:
    """The rule, stated independently: from the last keyframe at or before start, to before end."""
    scale = archive.inputs[0].track.timescale
    samples = list(archive.samples(0))
    first = max(t for t, s, _ in samples if s.is_sync and t <= start * scale)
    return [x for x in samples if first <= x[0] < end * scale]


def expected_audio(archive: Archive, clip_start: Fraction, end: Fraction) -> list[tuple[int, Sample, bytes]]:
    """Whole frames whose middle is at or after the clip start, starting before end."""
    scale = archive.inputs[1].track.timescale
    return [
        x
        for x in archive.samples(1)
        if x[0] + Fraction(x[1].duration, 2) >= clip_start * scale and x[0] < end * scale
    ]


def ffprobe(path: Path, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", *args, "-of", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def top_level(data: bytes) -> list[str]:
    names = []
    pos = 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        name = data[pos + 4 : pos + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        names.append(name)
        pos += size
    assert pos == len(data)
    return names


# ---------------------------------------------------------------------------------------------
# Reading a head back


def moov_of(head: bytes) -> MovieBox:
    """The moov of a head (ftyp, moov, then an mdat header without its payload)."""
    boxes = parse_boxes(head[: head.rindex(b"mdat") - 4])
    assert [b.name for b in boxes] == ["ftyp", "moov"]
    moov = boxes[1]
    assert isinstance(moov, MovieBox)
    return moov


def stbl_of(trak: TrackBox) -> SampleTableBox:
    return trak.need(MediaBox).need(MediaInformationBox).need(SampleTableBox)


def edits_of(trak: TrackBox) -> list[EditEntry]:
    return trak.need(EditBox).need(EditListBox).entries


def chunk_offsets(stbl: SampleTableBox) -> list[int]:
    box: Box | None = stbl.first(ChunkOffsetBox) or stbl.first(ChunkLargeOffsetBox)
    assert isinstance(box, ChunkOffsetBox | ChunkLargeOffsetBox)
    return list(box.chunk_offsets)


def sample_ranges(stbl: SampleTableBox) -> list[tuple[int, int]]:
    """(file offset, size) of every sample, from stsc, stsz and the chunk offsets (§8.7)."""
    stsc = stbl.need(SampleToChunkBox)
    stsz = stbl.need(SampleSizeBox)
    runs = list(zip(stsc.first_chunks, stsc.samples_per_chunk, strict=True))
    out: list[tuple[int, int]] = []
    for number, offset in enumerate(chunk_offsets(stbl), 1):
        per_chunk = [count for first, count in runs if first <= number][-1]
        for _ in range(per_chunk):
            size = stsz.size_of(len(out))
            out.append((offset, size))
            offset += size
    assert len(out) == stsz.sample_count
    return out


def decode_times(stbl: SampleTableBox) -> list[int]:
    stts = stbl.need(TimeToSampleBox)
    times, now = [], 0
    for count, delta in zip(stts.sample_counts, stts.sample_deltas, strict=True):
        for _ in range(count):
            times.append(now)
            now += delta
    return times


def expand(counts: array[int], values: array[int]) -> list[int]:
    return [v for c, v in zip(counts, values, strict=True) for _ in range(c)]


# ---------------------------------------------------------------------------------------------
# Real clips, checked by ffmpeg

RANGES = [
    pytest.param(Fraction(0), Fraction(SECONDS), id="everything"),
    pytest.param(Fraction(5, 2), Fraction(26, 5), id="2.5-5.2"),
    pytest.param(Fraction(2, 5), Fraction(8, 5), id="0.4-1.6"),
    pytest.param(Fraction(69, 10), Fraction(100), id="6.9-past-the-end"),
]


@pytest.mark.parametrize(("start", "end"), RANGES)
def test_clip_plays_and_covers_the_range(
    archive: Archive, tmp_path: Path, start: Fraction, end: Fraction
) -> None:
    clip = build(archive.inputs, start, end)
    data = archive.assemble(clip)
    assert len(data) == clip.size
    assert top_level(data) == ["ftyp", "moov", "mdat"]  # fast start: moov before mdat
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)

    decode = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-xerror", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert decode.returncode == 0 and not decode.stderr, decode.stderr

    info = ffprobe(path, "-show_streams", "-show_format", "-count_frames")
    video, audio = info["streams"]
    assert (video["codec_name"], audio["codec_name"]) == ("h264", "aac")
    covered_end = min(end, Fraction(SECONDS))
    assert clip.start <= start < clip.start + GOP_SECONDS  # keyframe-aligned, within one GOP
    assert clip.end <= covered_end + Fraction(AAC_FRAME, 48000)
    video_samples = expected_video(archive, start, end)
    assert int(video["nb_read_frames"]) == len(video_samples)
    wanted = float(covered_end - start)
    for duration in (float(video["duration"]), float(audio["duration"]), float(info["format"]["duration"])):
        assert wanted - 0.05 <= duration <= wanted + GOP_SECONDS + 0.05
    audio_samples = expected_audio(archive, clip.start, end)
    assert int(audio["nb_read_frames"]) == len(audio_samples)
    # Audio and video start together (within one audio frame), the picture on a keyframe.
    assert abs(float(video["start_time"]) - float(audio["start_time"])) <= AAC_FRAME / 48000
    first = ffprobe(path, "-select_streams", "v:0", "-show_frames", "-read_intervals", "%+#1")
    frame = first["frames"][0]
    assert frame["key_frame"] == 1 and frame["pict_type"] == "I"


@pytest.mark.parametrize(("start", "end"), RANGES)
def test_sample_tables_read_back_to_the_stored_samples(
    archive: Archive, start: Fraction, end: Fraction
) -> None:
    """Every sample found through the clip's own stts/ctts/stss/stsc/stsz/stco is the stored one."""
    clip = build(archive.inputs, start, end)
    data = archive.assemble(clip)
    moov = moov_of(clip.head)
    video_trak, audio_trak = moov.all(TrackBox)
    wanted = [expected_video(archive, start, end), expected_audio(archive, clip.start, end)]
    for n, (trak, samples) in enumerate(zip((video_trak, audio_trak), wanted, strict=True)):
        assert trak.need(TrackHeaderBox).track_id == n + 1
        stbl = stbl_of(trak)
        ranges = sample_ranges(stbl)
        assert [data[o : o + s] for o, s in ranges] == [b for _, _, b in samples]
        first_time = samples[0][0]
        assert decode_times(stbl) == [t - first_time for t, _, _ in samples]
        stss = stbl.first(SyncSampleBox)
        syncs = [i + 1 for i, (_, s, _) in enumerate(samples) if s.is_sync]
        if len(syncs) == len(samples):
            assert stss is None
        else:
            assert stss is not None and list(stss.sample_numbers) == syncs
        ctts = stbl.first(CompositionOffsetBox)
        offsets = [s.composition_offset for _, s, _ in samples]
        if any(offsets):
            assert ctts is not None and ctts.version == (1 if min(offsets) < 0 else 0)
            assert expand(ctts.sample_counts, ctts.sample_offsets) == offsets
        else:
            assert ctts is None
        mdhd = trak.need(MediaBox).need(MediaHeaderBox)
        assert mdhd.timescale == archive.inputs[n].track.timescale
        assert mdhd.duration == sum(s.duration for _, s, _ in samples)
        stsd = stbl.need(SampleDescriptionBox)
        assert bytes(stsd) in archive.inputs[n].track.header
    assert video_trak.need(TrackHeaderBox).width == 320
    assert audio_trak.need(TrackHeaderBox).volume == 0x100
    first_video = wanted[0][0][1]
    assert first_video.is_sync
    # The B-frame shift: presentation starts at the first picture's composition time.
    assert edits_of(video_trak) == [
        EditEntry(edits_of(video_trak)[0].segment_duration, first_video.composition_offset)
    ]
    mvhd = moov.need(MovieHeaderBox)
    assert (mvhd.timescale, mvhd.next_track_id) == (1000, 3)
    durations = [t.need(TrackHeaderBox).duration for t in moov.all(TrackBox)]
    assert mvhd.duration == max(durations)
    for trak in (video_trak, audio_trak):
        assert sum(e.segment_duration for e in edits_of(trak)) == trak.need(TrackHeaderBox).duration


def test_chunks_interleave_in_decode_order_and_offsets_match_the_pieces(archive: Archive) -> None:
    clip = build(archive.inputs, Fraction(1), Fraction(6))
    moov = moov_of(clip.head)
    position = len(clip.head)
    expected: dict[int, list[int]] = {0: [], 1: []}
    for piece in clip.pieces:
        expected[piece.track_index].append(position)
        position += piece.size
    assert position == clip.size
    for n, trak in enumerate(moov.all(TrackBox)):
        assert chunk_offsets(stbl_of(trak)) == expected[n]
    times = [piece_time(archive, piece) for piece in clip.pieces]
    assert times == sorted(times)
    tracks = "".join(str(p.track_index) for p in clip.pieces)
    assert tracks.count("0") == 5 and "000" not in tracks and "111" not in tracks


def piece_time(archive: Archive, piece: Piece) -> Fraction:
    """Media-clock seconds of the first sample a piece holds."""
    track = archive.inputs[piece.track_index]
    fragment = next(f for f in track.fragments if f.decode_time == piece.fragment_time)
    time, offset = fragment.decode_time, 0
    for sample in fragment.samples:
        if offset == piece.offset:
            return Fraction(time, track.track.timescale)
        time, offset = time + sample.duration, offset + sample.size
    raise AssertionError(f"no sample starts at byte {piece.offset} of the fragment at {piece.fragment_time}")


def test_file_type_and_mdat_header(archive: Archive) -> None:
    clip = build(archive.inputs, Fraction(0), Fraction(2))
    ftyp = parse_boxes(clip.head[: clip.head.index(b"moov") - 4])[0]
    # ffmpeg's CMAF video has negative composition offsets: ctts version 1 needs iso4.
    assert ftyp == FileTypeBox(b"isom", 0x200, [b"isom", b"iso2", b"iso4", b"avc1", b"mp41"])
    payload = clip.size - len(clip.head)
    assert clip.head[-8:] == (payload + 8).to_bytes(4, "big") + b"mdat"


def test_build_is_deterministic(archive: Archive) -> None:
    assert build(archive.inputs, Fraction(3), Fraction(7)) == build(archive.inputs, Fraction(3), Fraction(7))


def test_start_on_a_keyframe_is_kept(archive: Archive) -> None:
    clip = build(archive.inputs, Fraction(4), Fraction(5))
    assert clip.start == 4
    video = next(p for p in clip.pieces if p.track_index == 0)
    assert (video.fragment_time, video.offset) == (4 * archive.inputs[0].track.timescale, 0)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (Fraction(3), Fraction(3)),
        (Fraction(4), Fraction(3)),
        (Fraction(-10), Fraction(-5)),
        (Fraction(-1), Fraction(0)),
        (Fraction(SECONDS + 1), Fraction(SECONDS + 10)),
        (Fraction(SECONDS), Fraction(SECONDS + 10)),
    ],
    ids=[
        "empty",
        "reversed",
        "before-everything",
        "ends-where-media-starts",
        "after-everything",
        "at-the-end",
    ],
)
def test_ranges_without_media_are_clip_errors(archive: Archive, start: Fraction, end: Fraction) -> None:
    with pytest.raises(ClipError):
        build(archive.inputs, start, end)


def test_no_tracks_is_a_clip_error() -> None:
    with pytest.raises(ClipError, match="at least one track"):
        build([], Fraction(0), Fraction(1))


# ---------------------------------------------------------------------------------------------
# Synthetic tracks: timing rules and edit lists


def make_track(kind: TrackKind, name: str, timescale: int) -> Track:
    entries: dict[TrackKind, Box] = {
        TrackKind.VIDEO: avc_entry(),
        TrackKind.AUDIO: aac_entry(),
        TrackKind.TEXT: TextSampleEntry(b"wvtt", children=[RawBox(b"vttC", b"WEBVTT")]),
    }
    header = build_header(kind, timescale, "eng", entries[kind])
    moov = parse_boxes(header)[1]
    assert isinstance(moov, MovieBox)
    return track_from_trak(moov.need(TrackBox), name)


VIDEO = make_track(TrackKind.VIDEO, "video", 90000)
AUDIO = make_track(TrackKind.AUDIO, "audio", 48000)
TEXT = make_track(TrackKind.TEXT, "text", 1000)


def gops(
    first: int, count: int, *, frames: int = 25, duration: int = 3600, offset: int = 0
) -> list[FragmentSamples]:
    """``count`` one-GOP fragments from decode time ``first``; every frame has composition offset
    ``offset`` (as an FLV source's constant reordering delay gives)."""
    out = []
    for g in range(count):
        samples = tuple(
            Sample(duration, 100 + i, SYNC_SAMPLE_FLAGS if i == 0 else NON_SYNC_SAMPLE_FLAGS, offset)
            for i in range(frames)
        )
        out.append(FragmentSamples(first + g * frames * duration, samples))
    return out


def frames(
    first: int, count: int, *, per_fragment: int = 47, duration: int = AAC_FRAME
) -> list[FragmentSamples]:
    out = []
    time = first
    for start in range(0, count, per_fragment):
        n = min(per_fragment, count - start)
        out.append(FragmentSamples(time, tuple(Sample(duration, 10 + i % 7, 0) for i in range(n))))
        time += n * duration
    return out


def traks(clip: Progressive) -> list[TrackBox]:
    return moov_of(clip.head).all(TrackBox)


def test_positive_composition_offsets_shift_every_track_alike() -> None:
    """An FLV-style source (every picture 80 ms late): video presents from its first picture's
    composition time, and audio skips what comes before that instant, so sync is kept."""
    inputs = [TrackInput(VIDEO, gops(0, 5, offset=7200)), TrackInput(AUDIO, frames(0, 250))]
    clip = build(inputs, Fraction(2), Fraction(4))
    assert clip.start == 2
    video, audio = traks(clip)
    assert [e.media_time for e in edits_of(video)] == [7200]
    ctts = stbl_of(video).need(CompositionOffsetBox)
    assert (ctts.version, list(ctts.sample_counts), list(ctts.sample_offsets)) == (0, [50], [7200])
    # Audio: the first frame with its middle at or after 2 s starts at 94 * 1024 = 96256; the
    # picture shows from 2.08 s = 99840 at 48 kHz.
    assert decode_times(stbl_of(audio))[0] == 0
    assert edits_of(audio) == [EditEntry(edits_of(audio)[0].segment_duration, 99840 - 96256)]
    ftyp = parse_boxes(clip.head[: clip.head.index(b"moov") - 4])[0]
    assert isinstance(ftyp, FileTypeBox) and b"iso4" not in ftyp.compatible_brands


def test_audio_starting_after_the_picture_gets_an_empty_edit() -> None:
    inputs = [TrackInput(VIDEO, gops(0, 5)), TrackInput(AUDIO, frames(48000 * 2 + 480, 100))]
    clip = build(inputs, Fraction(2), Fraction(4))
    _, audio = traks(clip)
    edits = edits_of(audio)
    assert edits[0] == EditEntry(10, -1)  # 480 ticks at 48 kHz = 10 ms of nothing first
    assert edits[1].media_time == 0


def test_second_video_track_starts_at_its_own_keyframe_and_skips_the_lead() -> None:
    inputs = [TrackInput(VIDEO, gops(0, 5)), TrackInput(VIDEO, gops(45000, 4))]
    clip = build(inputs, Fraction(5, 2), Fraction(4))
    assert clip.start == 2
    first, second = traks(clip)
    assert decode_times(stbl_of(first))[:2] == [0, 3600]
    # The second track's keyframes are at 0.5 s, 1.5 s, 2.5 s, …: it starts at 1.5 s and its
    # edit skips the half second before the clip start.
    assert [e.media_time for e in edits_of(second)] == [45000]
    assert list(stbl_of(second).need(SyncSampleBox).sample_numbers) == [1, 26, 51]
    groups = [t.need(TrackHeaderBox).alternate_group for t in (first, second)]
    assert groups[0] == groups[1] != 0


def test_without_an_earlier_keyframe_the_clip_starts_at_the_next_one() -> None:
    inputs = [TrackInput(VIDEO, gops(90000, 3)), TrackInput(AUDIO, frames(0, 200))]
    clip = build(inputs, Fraction(1, 2), Fraction(3))
    assert clip.start == 1


def test_audio_only_clip_starts_at_the_first_frame_at_or_after_start() -> None:
    clip = build([TrackInput(AUDIO, frames(0, 200))], Fraction(1), Fraction(2))
    assert clip.start == Fraction(47 * AAC_FRAME, 48000)
    (audio,) = traks(clip)
    assert [e.media_time for e in edits_of(audio)] == [0]
    assert stbl_of(audio).first(SyncSampleBox) is None
    assert clip.end == Fraction(94 * AAC_FRAME, 48000)  # the last frame starts before 2 s


def test_audio_frame_straddling_the_start_is_kept_when_mostly_after_it() -> None:
    video = gops(0, 3)
    audio = [FragmentSamples(0, (Sample(47000, 5, 0), Sample(2000, 6, 0), Sample(1000, 7, 0)))]
    # Frames [0, 47000), [47000, 49000), [49000, 50000) at 48 kHz; the clip starts at 1 s = 48000:
    # the second frame's middle is at 48000, so it is kept.
    clip = build([TrackInput(VIDEO, video), TrackInput(AUDIO, audio)], Fraction(1), Fraction(2))
    _, sound = traks(clip)
    assert stbl_of(sound).need(SampleSizeBox).sizes.tolist() == [6, 7]
    assert edits_of(sound)[0].media_time == 1000


def test_text_cue_showing_at_the_start_is_kept() -> None:
    cues = [FragmentSamples(0, (Sample(1500, 3, 0), Sample(2000, 40, 0), Sample(500, 3, 0)))]
    inputs = [TrackInput(VIDEO, gops(0, 5)), TrackInput(TEXT, cues)]
    clip = build(inputs, Fraction(2), Fraction(5))
    _, text = traks(clip)
    # The cue [1.5 s, 3.5 s) still shows at 2 s: kept, its first half second skipped by the edit.
    assert stbl_of(text).need(SampleSizeBox).sizes.tolist() == [40, 3]
    assert [e.media_time for e in edits_of(text)] == [500]
    hdlr = text.need(MediaBox).children[1]
    assert hdlr.box_type == b"hdlr"


def test_gap_between_fragments_keeps_decode_times() -> None:
    """An encoder gap of 4800 ticks: the sample before it lasts longer, so later samples keep their
    times."""
    audio = [
        FragmentSamples(0, tuple(Sample(AAC_FRAME, 9, 0) for _ in range(10))),
        FragmentSamples(10 * AAC_FRAME + 4800, tuple(Sample(AAC_FRAME, 9, 0) for _ in range(10))),
    ]
    clip = build([TrackInput(AUDIO, audio)], Fraction(0), Fraction(1))
    (trak,) = traks(clip)
    stts = stbl_of(trak).need(TimeToSampleBox)
    assert list(zip(stts.sample_counts, stts.sample_deltas, strict=True)) == [
        (9, AAC_FRAME),
        (1, AAC_FRAME + 4800),
        (10, AAC_FRAME),
    ]
    assert stbl_of(trak).need(SampleSizeBox) == SampleSizeBox(9, 20)  # all equal: no table
    assert list(stbl_of(trak).need(SampleToChunkBox).samples_per_chunk) == [10]


def test_track_without_samples_in_range_is_left_out() -> None:
    inputs = [TrackInput(VIDEO, gops(0, 5)), TrackInput(AUDIO, frames(0, 40))]  # audio ends at 0.85 s
    clip = build(inputs, Fraction(2), Fraction(3))
    (video,) = traks(clip)
    assert video.need(TrackHeaderBox).track_id == 1
    assert {p.track_index for p in clip.pieces} == {0}


def test_long_clip_tables_stay_run_length_coded() -> None:
    """Two hours of 25 fps video: constant durations and sizes make one-entry stts, stsz and stsc."""
    fragments = [
        FragmentSamples(
            g * 90000 * 2,
            tuple(
                Sample(3600, 1000, SYNC_SAMPLE_FLAGS if i == 0 else NON_SYNC_SAMPLE_FLAGS) for i in range(50)
            ),
        )
        for g in range(3600)
    ]
    clip = build([TrackInput(VIDEO, fragments)], Fraction(0), Fraction(7200))
    stbl = stbl_of(traks(clip)[0])
    assert stbl.need(TimeToSampleBox).sample_counts.tolist() == [180000]
    assert stbl.need(SampleSizeBox) == SampleSizeBox(1000, 180000)
    assert len(stbl.need(SampleToChunkBox).first_chunks) == 1
    assert len(stbl.need(SyncSampleBox).sample_numbers) == 3600
    assert len(clip.pieces) == 3600
    assert len(clip.head) < 64 * 1024


# ---------------------------------------------------------------------------------------------
# 32- and 64-bit layout, with fake huge sample sizes (nothing of that size is written)

GIB = 1 << 30


def huge_video(sizes: list[int]) -> list[FragmentSamples]:
    """One fragment per size, each a single keyframe of one second."""
    return [
        FragmentSamples(n * 90000, (Sample(90000, size, SYNC_SAMPLE_FLAGS),)) for n, size in enumerate(sizes)
    ]


def mdat_header(clip: Progressive) -> tuple[int, int | None]:
    """(size field, largesize or None) of the mdat header ending the head."""
    if clip.head[-16:-12] == (1).to_bytes(4, "big") and clip.head[-12:-8] == b"mdat":
        return 1, int.from_bytes(clip.head[-8:], "big")
    assert clip.head[-4:] == b"mdat"
    return int.from_bytes(clip.head[-8:-4], "big"), None


def test_large_file_uses_co64_and_a_64_bit_mdat() -> None:
    inputs = [TrackInput(VIDEO, huge_video([2 * GIB, 2 * GIB, 2 * GIB])), TrackInput(AUDIO, frames(0, 40))]
    clip = build(inputs, Fraction(0), Fraction(3))
    payload = 6 * GIB + sum(10 + i % 7 for i in range(40))
    assert clip.size == len(clip.head) + payload
    assert mdat_header(clip) == (1, payload + 16)
    video, audio = traks(clip)
    offsets = chunk_offsets(stbl_of(video))
    assert (
        stbl_of(video).first(ChunkLargeOffsetBox) is not None and stbl_of(video).first(ChunkOffsetBox) is None
    )
    assert offsets[-1] > 0xFFFFFFFF
    # The audio, all within the first 4 GiB, keeps 32-bit offsets.
    assert stbl_of(audio).first(ChunkOffsetBox) is not None
    position = len(clip.head)
    for piece in clip.pieces:
        if piece.track_index == 0:
            assert position in offsets
        position += piece.size
    assert moov_of(clip.head).need(MovieHeaderBox).duration == 3000


def test_small_file_uses_stco_and_a_32_bit_mdat() -> None:
    clip = build([TrackInput(VIDEO, huge_video([GIB, GIB, GIB]))], Fraction(0), Fraction(3))
    assert mdat_header(clip) == (3 * GIB + 8, None)
    assert stbl_of(traks(clip)[0]).first(ChunkOffsetBox) is not None


def test_co64_starts_exactly_past_the_last_32_bit_offset() -> None:
    """The last chunk at offset 2^32 - 1 still fits stco; one byte later needs co64."""

    def clip_with_first(size: int) -> Progressive:
        return build([TrackInput(VIDEO, huge_video([size, GIB + 1, 5]))], Fraction(0), Fraction(3))

    probe = clip_with_first(2 * GIB)
    first = 0xFFFFFFFF - len(probe.head) - (GIB + 1)
    fits = clip_with_first(first)
    assert chunk_offsets(stbl_of(traks(fits)[0]))[-1] == 0xFFFFFFFF
    assert stbl_of(traks(fits)[0]).first(ChunkOffsetBox) is not None
    assert mdat_header(fits)[1] is None  # the mdat box itself ends just past 4 GiB: 32-bit size
    over = clip_with_first(first + 1)
    stbl = stbl_of(traks(over)[0])
    assert stbl.first(ChunkLargeOffsetBox) is not None
    # co64 grows the moov by 4 bytes a chunk, which moves every chunk; the offsets account for it.
    assert len(over.head) == len(fits.head) + 3 * 4
    assert chunk_offsets(stbl)[0] == len(over.head)


def test_mdat_payload_of_exactly_the_32_bit_limit() -> None:
    limit = 0xFFFFFFFF - 8
    fits = build([TrackInput(VIDEO, huge_video([limit]))], Fraction(0), Fraction(1))
    assert mdat_header(fits) == (0xFFFFFFFF, None)
    over = build([TrackInput(VIDEO, huge_video([limit + 1]))], Fraction(0), Fraction(1))
    assert mdat_header(over) == (1, limit + 1 + 16)


def test_head_parses_with_its_mdat() -> None:
    """The head plus payload bytes of the announced size is a well-formed file to media.boxes."""
    inputs = [TrackInput(VIDEO, gops(0, 2)), TrackInput(AUDIO, frames(0, 90))]
    clip = build(inputs, Fraction(0), Fraction(2))
    boxes = parse_boxes(clip.head + bytes(clip.size - len(clip.head)))
    assert [b.name for b in boxes] == ["ftyp", "moov", "mdat"]
    assert isinstance(boxes[2], MediaDataBox)
