"""media.cenc: Common Encryption (ISO/IEC 23001-7) of CMAF tracks, ``cenc`` and ``cbcs``: round trips,
ffmpeg decrypting ours, ours decrypting ffmpeg's, the boxes written, and malformed input."""

from __future__ import annotations

import dataclasses
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.fmp4 import Fmp4Receiver, FragmentReceived, TracksDeclared
from media import cenc
from media.boxes import (
    AudioSampleEntry,
    Box,
    CencSampleEncryptionInformationGroupEntry,
    ChunkOffsetBox,
    MediaBox,
    MediaInformationBox,
    MovieBox,
    MovieFragmentBox,
    OriginalFormatBox,
    PiffSampleEncryptionBox,
    ProtectionSchemeInfoBox,
    ProtectionSystemSpecificHeaderBox,
    SampleAuxiliaryInformationOffsetsBox,
    SampleAuxiliaryInformationSizesBox,
    SampleDescriptionBox,
    SampleEncryptionBox,
    SampleEncryptionEntry,
    SampleGroupDescriptionBox,
    SampleSizeBox,
    SampleTableBox,
    SampleToChunkBox,
    SampleToGroupBox,
    SchemeInformationBox,
    SchemeTypeBox,
    Subsample,
    TextSampleEntry,
    TrackBox,
    TrackEncryptionBox,
    TrackFragmentBox,
    TrackFragmentDecodeTimeBox,
    TrackRun,
    VisualSampleEntry,
    parse_boxes,
)
from media.cmaf import build_header, read_fragment, write_fragment
from media.errors import BoxError, MediaError
from media.model import Fragment, Sample, Track, TrackKind
from media.protection import ContentKey, ProtectionError, Scheme
from tests.conftest import run_ffmpeg
from tests.unit.conftest import Captures

KID = bytes.fromhex("00112233445566778899aabbccddeeff")
KEY = bytes.fromhex("0f0e0d0c0b0a09080706050403020100")
ROTATED_KID = bytes.fromhex("ffeeddccbbaa99887766554433221100")
ROTATED_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
CONTENT_KEY = ContentKey(KID, KEY)
ROTATED = ContentKey(ROTATED_KID, ROTATED_KEY)
KEYS = {KID: KEY, ROTATED_KID: ROTATED_KEY}
WIDEVINE = bytes.fromhex("edef8ba979d64acea3c827dcd51d21ed")
SCHEMES = [Scheme.CENC, Scheme.CBCS]
SOURCES = ["h264", "hevc", "aac"]
CMAF_FLAGS = ["-movflags", "empty_moov+separate_moof+default_base_moof+frag_keyframe+cmaf"]
FFMPEG_CENC = [
    "-encryption_scheme",
    "cenc-aes-ctr",
    "-encryption_key",
    KEY.hex(),
    "-encryption_kid",
    KID.hex(),
]


@dataclass(frozen=True)
class Source:
    """A track as ingest stores it: its Track and its fragments (``media.cmaf.write_fragment`` form),
    and the ffmpeg capture it came from."""

    track: Track
    fragments: list[Fragment]
    capture: Path


def _ingest(data: bytes, stream: str) -> tuple[Track, list[Fragment]]:
    receiver = Fmp4Receiver(stream, 1 << 24)
    events = receiver.feed(data) + receiver.close()
    tracks = [t for e in events if isinstance(e, TracksDeclared) for t in e.tracks]
    fragments = [e.fragment for e in events if isinstance(e, FragmentReceived)]
    return tracks[0], fragments


@pytest.fixture(scope="module")
def sources(captures: Captures, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Source]:
    folder = tmp_path_factory.mktemp("cenc")
    (folder / "h264.mp4").write_bytes(captures.cmaf_video)
    (folder / "hevc.mp4").write_bytes(captures.hevc)
    aac = folder / "aac.mp4"
    result = run_ffmpeg(
        *("-f", "lavfi", "-t", "2", "-i", "sine", "-c:a", "aac", "-b:a", "64k"),
        *("-frag_duration", "500000", "-f", "mp4", *CMAF_FLAGS, str(aac)),
    )
    assert result.returncode == 0, result.stderr
    out = {}
    for name in SOURCES:
        capture = folder / f"{name}.mp4"
        track, fragments = _ingest(capture.read_bytes(), f"{name}.cmfv")
        assert len(fragments) >= 2
        out[name] = Source(track, fragments, capture)
    return out


def _protect(source: Source, scheme: Scheme, key: ContentKey = CONTENT_KEY) -> tuple[bytes, list[bytes]]:
    init = cenc.protect_header(source.track.header, scheme, CONTENT_KEY)
    fragments = [
        cenc.protect_fragment(f.data, source.track, scheme, key, default_kid=KID) for f in source.fragments
    ]
    return init, fragments


def _traf(fragment: bytes) -> TrackFragmentBox:
    moof = next(b for b in parse_boxes(fragment) if isinstance(b, MovieFragmentBox))
    return moof.need(TrackFragmentBox)


def _entry(header: bytes) -> Box:
    moov = next(b for b in parse_boxes(header) if isinstance(b, MovieBox))
    trak = moov.need(TrackBox)
    stbl = trak.need(MediaBox).need(MediaInformationBox).need(SampleTableBox)
    return stbl.need(SampleDescriptionBox).children[0]


def _sample_ranges(fragment: bytes) -> list[tuple[int, int]]:
    """(offset, size) in the fragment of each sample of a write_fragment-style fragment."""
    traf = _traf(fragment)
    trun = traf.need(TrackRun)
    pos = trun.data_offset or 0
    out = []
    for entry in trun.samples:
        out.append((pos, entry.size or 0))
        pos += entry.size or 0
    return out


# ---------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", SOURCES)
def test_protect_then_unprotect_gives_the_stored_fragments_back(
    sources: dict[str, Source], name: str, scheme: Scheme
) -> None:
    source = sources[name]
    init, encrypted = _protect(source, scheme)
    assert cenc.unprotect_header(init) == source.track.header
    for clear, protected in zip(source.fragments, encrypted, strict=True):
        assert cenc.unprotect_fragment(protected, init, KEYS) == clear.data
        decode_time, samples, payload = read_fragment(protected)
        assert (decode_time, samples) == (clear.decode_time, list(clear.samples))
        assert payload != read_fragment(clear.data)[2]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_rotated_key_round_trips_and_needs_its_own_key(sources: dict[str, Source], scheme: Scheme) -> None:
    source = sources["h264"]
    init, encrypted = _protect(source, scheme, ROTATED)
    assert cenc.unprotect_fragment(encrypted[0], init, KEYS) == source.fragments[0].data
    with pytest.raises(ProtectionError, match=f"no key for KID {ROTATED_KID.hex()}") as info:
        cenc.unprotect_fragment(encrypted[0], init, {KID: KEY})
    assert KEY.hex() not in str(info.value) and ROTATED_KEY.hex() not in str(info.value)


def test_encryption_is_deterministic_and_iv_prefixes_follow_the_track_name(
    sources: dict[str, Source],
) -> None:
    source = sources["h264"]
    fragment = source.fragments[0].data
    once = cenc.protect_fragment(fragment, source.track, Scheme.CENC, CONTENT_KEY, default_kid=KID)
    again = cenc.protect_fragment(fragment, source.track, Scheme.CENC, CONTENT_KEY, default_kid=KID)
    other = dataclasses.replace(source.track, name="video=200000")
    renamed = cenc.protect_fragment(fragment, other, Scheme.CENC, CONTENT_KEY, default_kid=KID)
    assert once == again
    assert _senc(once, 8)[0].iv[:3] != _senc(renamed, 8)[0].iv[:3]


def _senc(fragment: bytes, iv_size: int) -> list[SampleEncryptionEntry]:
    traf = _traf(fragment)
    return traf.need(SampleEncryptionBox).entries(iv_size)


# ---------------------------------------------------------------------------------------------
# ffmpeg decrypting ours


def _packets(data: bytes, *options: str) -> list[str]:
    """Size and MD5 of every packet ffmpeg demuxes from ``data``. Fed through a pipe: ffmpeg 5.1 reads
    a seekable multi-fragment file's encryption information out of step with its samples (its own
    cenc output included), while read in order it decrypts every sample."""
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", *options, "-i", "pipe:0"]
    command += ["-map", "0", "-c", "copy", "-f", "framemd5", "pipe:1"]
    result = subprocess.run(command, input=data, capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    return [",".join(line.split(",")[-2:]) for line in lines if not line.startswith("#")]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not on PATH")
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", SOURCES)
def test_ffmpeg_decrypts_our_output(sources: dict[str, Source], name: str, scheme: Scheme) -> None:
    source = sources[name]
    init, encrypted = _protect(source, scheme)
    clear = _packets(source.track.header + b"".join(f.data for f in source.fragments))
    decrypted = _packets(init + b"".join(encrypted), "-decryption_key", KEY.hex())
    assert len(clear) == sum(len(f.samples) for f in source.fragments)
    assert decrypted == clear


# ---------------------------------------------------------------------------------------------
# Ours decrypting ffmpeg's


def _stbl(header: bytes) -> SampleTableBox:
    moov = next(b for b in parse_boxes(header) if isinstance(b, MovieBox))
    return moov.need(TrackBox).need(MediaBox).need(MediaInformationBox).need(SampleTableBox)


def _file_samples(data: bytes) -> list[bytes]:
    """The samples of a progressive single-track MP4, in order (stsz, stsc, stco)."""
    stbl = _stbl(data)
    sizes = stbl.need(SampleSizeBox)
    stsc = stbl.need(SampleToChunkBox)
    offsets = stbl.need(ChunkOffsetBox).chunk_offsets
    out: list[bytes] = []
    for chunk, offset in enumerate(offsets, start=1):
        run = max(i for i, first in enumerate(stsc.first_chunks) if first <= chunk)
        pos = offset
        for _ in range(stsc.samples_per_chunk[run]):
            size = sizes.size_of(len(out))
            out.append(data[pos : pos + size])
            pos += size
    assert len(out) == sizes.sample_count
    return out


def _fragment_with_senc(samples: list[bytes], senc: SampleEncryptionBox) -> bytes:
    """A CMAF fragment of ``samples`` whose traf carries ``senc`` (ffmpeg 5.1 writes per-fragment
    encryption information for none of its fragmented outputs, only a progressive file's stbl)."""
    fragment = write_fragment(1, 0, [Sample(1, len(s), 0) for s in samples], b"".join(samples))
    boxes = parse_boxes(fragment)
    moof = next(b for b in boxes if isinstance(b, MovieFragmentBox))
    traf = moof.need(TrackFragmentBox)
    traf.children.append(senc)
    trun = traf.need(TrackRun)
    trun.data_offset = (trun.data_offset or 0) + len(bytes(senc))
    return b"".join(bytes(b) for b in boxes)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not on PATH")
@pytest.mark.parametrize("name", SOURCES)
def test_we_decrypt_ffmpeg_cenc(sources: dict[str, Source], name: str, tmp_path: Path) -> None:
    """ffmpeg's own random IVs and subsample maps (video: the length prefix and one byte clear, the rest
    of every NAL unit protected, not block-aligned, so the key stream runs on mid-block; AAC: whole
    samples)."""
    source = sources[name]
    encrypted, clear = tmp_path / "enc.mp4", tmp_path / "clear.mp4"
    for out, extra in ((encrypted, FFMPEG_CENC), (clear, [])):
        result = run_ffmpeg("-i", str(source.capture), "-c", "copy", *extra, "-f", "mp4", str(out))
        assert result.returncode == 0, result.stderr
    data = encrypted.read_bytes()
    senc = _stbl(data).need(SampleEncryptionBox)
    assert senc.has_subsamples == (source.track.kind is TrackKind.VIDEO)
    fragment = _fragment_with_senc(_file_samples(data), senc)
    decrypted = cenc.unprotect_fragment(fragment, data, {KID: KEY})
    assert read_fragment(decrypted)[2] == b"".join(_file_samples(clear.read_bytes()))


# ---------------------------------------------------------------------------------------------
# What the boxes say


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", SOURCES)
def test_protected_header_signals_the_scheme(sources: dict[str, Source], name: str, scheme: Scheme) -> None:
    source = sources[name]
    video = source.track.kind is TrackKind.VIDEO
    pssh = cenc.pssh_box(WIDEVINE, [KID], b"\x08\x01")
    init = cenc.protect_header(source.track.header, scheme, CONTENT_KEY, [pssh])
    entry = _entry(init)
    assert isinstance(entry, VisualSampleEntry if video else AudioSampleEntry)
    assert entry.box_type == (b"encv" if video else b"enca")
    sinf = entry.need(ProtectionSchemeInfoBox)
    assert sinf.need(OriginalFormatBox).data_format == source.track.codec.encode()
    assert sinf.need(SchemeTypeBox) == SchemeTypeBox(scheme.value.encode(), 0x10000)
    tenc = sinf.need(SchemeInformationBox).need(TrackEncryptionBox)
    if scheme is Scheme.CENC:
        assert tenc == TrackEncryptionBox(KID, 8, 1, 0, 0, b"", 0)
    else:
        pattern = (1, 9) if video else (0, 0)
        assert tenc == TrackEncryptionBox(KID, 0, 1, *pattern, CONTENT_KEY.constant_iv(), 1)
        assert len(tenc.default_constant_iv) == 16
    moov = next(b for b in parse_boxes(init) if isinstance(b, MovieBox))
    assert moov.all(ProtectionSystemSpecificHeaderBox) == [
        ProtectionSystemSpecificHeaderBox(WIDEVINE, b"\x08\x01", [KID], 1)
    ]
    assert cenc.pssh_data(pssh) == b"\x08\x01"


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", SOURCES)
def test_protected_fragment_carries_consistent_encryption_information(
    sources: dict[str, Source], name: str, scheme: Scheme
) -> None:
    source = sources[name]
    video = source.track.kind is TrackKind.VIDEO
    clear = source.fragments[1]
    protected = cenc.protect_fragment(clear.data, source.track, scheme, CONTENT_KEY, default_kid=KID)
    traf = _traf(protected)
    assert traf.first(SampleToGroupBox) is None and traf.first(SampleGroupDescriptionBox) is None
    if scheme is Scheme.CBCS and not video:
        assert not traf.all(SampleEncryptionBox) and traf.first(SampleAuxiliaryInformationSizesBox) is None
        return
    iv_size = 8 if scheme is Scheme.CENC else 0
    senc = traf.need(SampleEncryptionBox)
    entries = senc.entries(iv_size)
    saiz = traf.need(SampleAuxiliaryInformationSizesBox)
    saio = traf.need(SampleAuxiliaryInformationOffsetsBox)
    assert senc.has_subsamples == video
    assert senc.sample_count == saiz.sample_count == len(clear.samples)
    assert [saiz.size_of(i) for i in range(saiz.sample_count)] == [len(e.to_bytes(video)) for e in entries]
    assert protected[saio.offsets[0] : saio.offsets[0] + len(senc.data)] == senc.data
    ranges = _sample_ranges(protected)
    assert [size for _, size in ranges] == [s.size for s in clear.samples]
    clear_ranges = _sample_ranges(clear.data)
    if scheme is Scheme.CENC:
        times = [clear.decode_time + sum(s.duration for s in clear.samples[:i]) for i in range(len(entries))]
        seed = source.track.name.encode() + b"|"
        assert [e.iv for e in entries] == [cenc.sample_iv(CONTENT_KEY, seed, t) for t in times]
        assert len({e.iv for e in entries}) == len(entries)
    for entry, (offset, size), (clear_offset, _) in zip(entries, ranges, clear_ranges, strict=True):
        if video:  # the data offset follows the moof: the clear NAL length prefix is where it was
            assert sum(c + p for c, p in entry.subsamples) == size
            assert protected[offset : offset + 4] == clear.data[clear_offset : clear_offset + 4]
        if scheme is Scheme.CENC:
            assert all(p % 16 == 0 for _, p in entry.subsamples)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_key_other_than_the_default_is_named_by_a_seig_group(
    sources: dict[str, Source], scheme: Scheme
) -> None:
    source = sources["h264"]
    protected = cenc.protect_fragment(
        source.fragments[0].data, source.track, scheme, ROTATED, default_kid=KID
    )
    traf = _traf(protected)
    sbgp = traf.need(SampleToGroupBox)
    assert sbgp == SampleToGroupBox(b"seig", [(len(source.fragments[0].samples), 0x10001)])
    (seig,) = traf.need(SampleGroupDescriptionBox).seig()
    if scheme is Scheme.CENC:
        assert seig == CencSampleEncryptionInformationGroupEntry(ROTATED_KID, 8, 1)
    else:
        assert seig == CencSampleEncryptionInformationGroupEntry(
            ROTATED_KID, 0, 1, 1, 9, ROTATED.constant_iv()
        )


def test_pssh_box_versions() -> None:
    assert cenc.pssh_box(WIDEVINE, [], b"x") == bytes(ProtectionSystemSpecificHeaderBox(WIDEVINE, b"x"))
    with pytest.raises(ProtectionError, match="KIDs must be 16 bytes"):
        cenc.pssh_box(WIDEVINE, [b"short"], b"")
    with pytest.raises(ProtectionError, match="expected one whole pssh box"):
        cenc.pssh_data(bytes(TrackEncryptionBox(KID)))


def test_piff_sample_encryption_box_is_read_too(sources: dict[str, Source]) -> None:
    """The PIFF sample-encryption uuid box carries the same entries as senc."""
    source = sources["h264"]
    init, encrypted = _protect(source, Scheme.CENC)
    boxes = parse_boxes(encrypted[0])
    traf = next(b for b in boxes if isinstance(b, MovieFragmentBox)).need(TrackFragmentBox)
    senc = traf.need(SampleEncryptionBox)
    piff = PiffSampleEncryptionBox(senc.sample_count, senc.data, senc.flags)
    traf.children = [piff if c is senc else c for c in traf.children]
    assert len(bytes(piff)) == len(bytes(senc)) + 16
    trun = traf.need(TrackRun)
    trun.data_offset = (trun.data_offset or 0) + 16
    piff_fragment = b"".join(bytes(b) for b in boxes)
    assert cenc.unprotect_fragment(piff_fragment, init, KEYS) == source.fragments[0].data


# ---------------------------------------------------------------------------------------------
# Subsample maps over random NAL layouts

AVC_VCL, AVC_OTHER = (1, 5), (6, 7, 8, 9)
HEVC_VCL, HEVC_OTHER = (1, 19, 21), (32, 34, 35, 39)


@st.composite
def nal_layouts(draw: st.DrawFn) -> tuple[str, int, list[list[tuple[int, int]]]]:
    """A codec, a NAL length size, and samples made of (NAL type, NAL size) pairs."""
    codec = draw(st.sampled_from(["avc1", "hvc1"]))
    length_size = draw(st.sampled_from([1, 2, 4]))
    types = (AVC_VCL + AVC_OTHER) if codec == "avc1" else (HEVC_VCL + HEVC_OTHER)
    nal = st.tuples(st.sampled_from(types), st.integers(0, min(600, (1 << 8 * length_size) - 1)))
    samples = draw(st.lists(st.lists(nal, max_size=6), min_size=1, max_size=4))
    return codec, length_size, samples


def _nal_sample(codec: str, length_size: int, nals: list[tuple[int, int]], rng: random.Random) -> bytes:
    out = bytearray()
    for kind, size in nals:
        header = bytes([kind]) if codec == "avc1" else bytes([kind << 1, 1])
        body = (header + rng.randbytes(size))[:size]
        out += size.to_bytes(length_size, "big") + body
    return bytes(out)


def _must_stay_clear(codec: str, length_size: int, nals: list[tuple[int, int]], scheme: Scheme) -> set[int]:
    """Byte positions of a sample no subsample may protect: length prefixes, NAL headers (and for cbcs
    the slice header room), and whole non-VCL NAL units."""
    vcl = AVC_VCL if codec == "avc1" else HEVC_VCL
    header = (1 if codec == "avc1" else 2) + (cenc.CBCS_SLICE_HEADER_ROOM if scheme is Scheme.CBCS else 0)
    clear: set[int] = set()
    pos = 0
    for kind, size in nals:
        end = pos + length_size + size
        keep = size if kind not in vcl else min(size, header)
        clear.update(range(pos, pos + length_size + keep))
        pos = end
    return clear


@pytest.mark.parametrize("scheme", SCHEMES)
@settings(max_examples=60, deadline=None, derandomize=True)
@given(layout=nal_layouts(), seed=st.integers(0, 1 << 16))
def test_random_nal_layouts(
    sources: dict[str, Source],
    scheme: Scheme,
    layout: tuple[str, int, list[list[tuple[int, int]]]],
    seed: int,
) -> None:
    codec, length_size, nal_samples = layout
    rng = random.Random(seed)
    base = sources["h264"].track
    config = (
        bytes([1, 0x64, 0, 0x1F, 0xFC | (length_size - 1)])
        if codec == "avc1"
        else bytes(21) + bytes([0xFC | (length_size - 1)])
    )
    track = dataclasses.replace(base, codec=codec, decoder_config=config)
    payloads = [_nal_sample(codec, length_size, nals, rng) for nals in nal_samples]
    fragment = write_fragment(3, 9000, [Sample(3000, len(p), 0) for p in payloads], b"".join(payloads))
    init = cenc.protect_header(base.header, scheme, CONTENT_KEY)
    protected = cenc.protect_fragment(fragment, track, scheme, CONTENT_KEY, default_kid=KID)
    assert cenc.unprotect_fragment(protected, init, KEYS) == fragment
    entries = _senc(protected, 8 if scheme is Scheme.CENC else 0)
    rows = zip(entries, nal_samples, _sample_ranges(protected), _sample_ranges(fragment), strict=True)
    for entry, nals, (offset, size), (clear_offset, _) in rows:
        assert sum(c + p for c, p in entry.subsamples) == size
        assert all(c <= 0xFFFF and (p == 0 or p >= 16) for c, p in entry.subsamples)
        if scheme is Scheme.CENC:
            assert all(p % 16 == 0 for _, p in entry.subsamples)
        encrypted = _protected_positions(entry.subsamples)
        assert not encrypted & _must_stay_clear(codec, length_size, nals, scheme)
        outside = [i for i in range(size) if i not in encrypted]
        assert [protected[offset + i] for i in outside] == [fragment[clear_offset + i] for i in outside]


def _protected_positions(subsamples: tuple[Subsample, ...]) -> set[int]:
    out: set[int] = set()
    pos = 0
    for clear, count in subsamples:
        out.update(range(pos + clear, pos + clear + count))
        pos += clear + count
    return out


@pytest.mark.parametrize("scheme", SCHEMES)
def test_long_clear_runs_are_split_into_16_bit_subsamples(sources: dict[str, Source], scheme: Scheme) -> None:
    track = sources["h264"].track
    sei = (70_000).to_bytes(4, "big") + b"\x06" + bytes(69_999)
    slice_ = (1000).to_bytes(4, "big") + b"\x65" + bytes(999)
    payload = sei + slice_
    fragment = write_fragment(1, 0, [Sample(1, len(payload), 0)], payload)
    protected = cenc.protect_fragment(fragment, track, scheme, CONTENT_KEY, default_kid=KID)
    (entry,) = _senc(protected, 8 if scheme is Scheme.CENC else 0)
    lead = 5 + (cenc.CBCS_SLICE_HEADER_ROOM if scheme is Scheme.CBCS else 0)
    protected_size = 1000 - (lead - 4)
    if scheme is Scheme.CENC:
        protected_size -= protected_size % 16
    assert entry.subsamples == (
        Subsample(0xFFFF, 0),
        Subsample(len(payload) - 0xFFFF - protected_size, protected_size),
    )


def test_cbcs_pattern_encrypts_one_block_in_ten_and_leaves_partial_blocks_clear(
    sources: dict[str, Source],
) -> None:
    track = sources["h264"].track
    size = 1 + cenc.CBCS_SLICE_HEADER_ROOM + 16 * 21 + 7  # header, room, 21 blocks, a partial block
    payload = size.to_bytes(4, "big") + b"\x65" + bytes(size - 1)
    fragment = write_fragment(1, 0, [Sample(1, len(payload), 0)], payload)
    protected = cenc.protect_fragment(fragment, track, Scheme.CBCS, CONTENT_KEY, default_kid=KID)
    ((offset, _),) = _sample_ranges(protected)
    start = offset + 4 + 1 + cenc.CBCS_SLICE_HEADER_ROOM
    blocks = [protected[start + 16 * i : start + 16 * i + 16] for i in range(22)]
    encrypted = [i for i, block in enumerate(blocks) if block != bytes(len(block))]
    assert encrypted == [0, 10, 20]
    assert protected[offset:start] == payload[: start - offset]


# ---------------------------------------------------------------------------------------------
# Refusals and malformed input


def test_av1_and_text_tracks_are_refused_naming_the_codec(sources: dict[str, Source]) -> None:
    track = sources["h264"].track
    fragment = sources["h264"].fragments[0].data
    av1 = dataclasses.replace(track, codec="av01")
    with pytest.raises(ProtectionError, match="av01"):
        cenc.protect_fragment(fragment, av1, Scheme.CENC, CONTENT_KEY, default_kid=KID)
    text = dataclasses.replace(track, codec="wvtt", kind=TrackKind.TEXT)
    with pytest.raises(ProtectionError, match="wvtt text tracks"):
        cenc.protect_fragment(fragment, text, Scheme.CBCS, CONTENT_KEY, default_kid=KID)
    av1_header = build_header(TrackKind.VIDEO, 90000, "und", VisualSampleEntry(b"av01", 320, 180))
    with pytest.raises(ProtectionError, match="av01"):
        cenc.protect_header(av1_header, Scheme.CBCS, CONTENT_KEY)
    text_header = build_header(TrackKind.TEXT, 1000, "und", TextSampleEntry(b"wvtt"))
    with pytest.raises(ProtectionError, match="wvtt text tracks"):
        cenc.protect_header(text_header, Scheme.CENC, CONTENT_KEY)


def test_other_schemes_and_protected_input_are_refused(sources: dict[str, Source]) -> None:
    source = sources["h264"]
    with pytest.raises(ProtectionError, match="not a Common Encryption scheme"):
        cenc.protect_header(source.track.header, Scheme.AES_128, CONTENT_KEY)
    init, encrypted = _protect(source, Scheme.CENC)
    with pytest.raises(ProtectionError, match="already protected"):
        cenc.protect_header(init, Scheme.CENC, CONTENT_KEY)
    with pytest.raises(ProtectionError, match="already encrypted"):
        cenc.protect_fragment(encrypted[0], source.track, Scheme.CENC, CONTENT_KEY, default_kid=KID)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ((5).to_bytes(4, "big") + b"\x65abcd" + b"\x00\x00", "length field at byte 9 is cut off"),
        ((50).to_bytes(4, "big") + b"\x65abcd", "NAL unit of 50 bytes at byte 0 runs past the end"),
    ],
)
def test_malformed_nal_units_are_refused(sources: dict[str, Source], payload: bytes, message: str) -> None:
    fragment = write_fragment(1, 0, [Sample(1, len(payload), 0)], payload)
    for scheme in SCHEMES:
        with pytest.raises(ProtectionError, match=message):
            cenc.protect_fragment(fragment, sources["h264"].track, scheme, CONTENT_KEY, default_kid=KID)


def test_missing_tfdt_or_trun_is_refused(sources: dict[str, Source]) -> None:
    source = sources["aac"]
    for missing, error in ((TrackFragmentDecodeTimeBox, BoxError), (TrackRun, ProtectionError)):
        boxes = parse_boxes(source.fragments[0].data)
        traf = next(b for b in boxes if isinstance(b, MovieFragmentBox)).need(TrackFragmentBox)
        traf.children = [c for c in traf.children if not isinstance(c, missing)]
        with pytest.raises(error, match=r"tfdt|trun"):
            cenc.protect_fragment(
                b"".join(bytes(b) for b in boxes), source.track, Scheme.CENC, CONTENT_KEY, default_kid=KID
            )


def test_short_decoder_configuration_is_refused(sources: dict[str, Source]) -> None:
    track = dataclasses.replace(sources["hevc"].track, decoder_config=bytes(10))
    with pytest.raises(ProtectionError, match="lacks lengthSizeMinusOne"):
        cenc.protect_fragment(
            sources["hevc"].fragments[0].data, track, Scheme.CENC, CONTENT_KEY, default_kid=KID
        )


def _tamper_senc(fragment: bytes, change: dict[str, object]) -> bytes:
    boxes = parse_boxes(fragment)
    traf = next(b for b in boxes if isinstance(b, MovieFragmentBox)).need(TrackFragmentBox)
    senc = traf.need(SampleEncryptionBox)
    for name, value in change.items():
        setattr(senc, name, value)
    return b"".join(bytes(b) for b in boxes)


def test_inconsistent_encryption_information_is_refused(sources: dict[str, Source]) -> None:
    source = sources["h264"]
    init, encrypted = _protect(source, Scheme.CENC)
    traf = _traf(encrypted[0])
    senc = traf.need(SampleEncryptionBox)
    with pytest.raises(
        ProtectionError, match=f"{senc.sample_count + 1} entries for {senc.sample_count} samples"
    ):
        cenc.unprotect_fragment(
            _tamper_senc(encrypted[0], {"sample_count": senc.sample_count + 1}), init, KEYS
        )
    # The first sample's first subsample one byte longer: the same box size, the sum now wrong.
    data = bytearray(senc.data)
    data[11] += 1
    with pytest.raises(ProtectionError, match="subsamples cover"):
        cenc.unprotect_fragment(_tamper_senc(encrypted[0], {"data": bytes(data)}), init, KEYS)
    without = _tamper_senc(encrypted[0], {"data": senc.data[:-1]})
    with pytest.raises(MediaError):
        cenc.unprotect_fragment(without, init, KEYS)


def test_decrypting_needs_each_kid_and_keeps_keys_out_of_messages(sources: dict[str, Source]) -> None:
    source = sources["aac"]
    init, encrypted = _protect(source, Scheme.CBCS)
    with pytest.raises(ProtectionError, match=f"no key for KID {KID.hex()}") as info:
        cenc.unprotect_fragment(encrypted[0], init, {ROTATED_KID: ROTATED_KEY})
    assert ROTATED_KEY.hex() not in str(info.value)
    with pytest.raises(ProtectionError, match="not 16 bytes") as info:
        cenc.unprotect_fragment(encrypted[0], init, {KID: b"short key"})
    assert "short key" not in str(info.value)


def test_unprotect_header_leaves_clear_headers_alone(sources: dict[str, Source]) -> None:
    header = sources["aac"].track.header
    assert cenc.unprotect_header(header) == header
    assert isinstance(_entry(header), AudioSampleEntry)
