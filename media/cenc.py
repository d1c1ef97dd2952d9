"""Common Encryption of CMAF tracks (ISO/IEC 23001-7), schemes ``cenc`` (AES-CTR, §10.1) and ``cbcs``
(AES-CBC with a constant IV and, for video, a 1:9 pattern, §10.4). Sans-IO: bytes in, bytes out.

Headwater stores clear CMAF fragments and encrypts per request:

- :func:`protect_header` turns the sample entry into ``encv``/``enca`` with a ``sinf`` (14496-12
  §8.12, 23001-7 §4) and adds the DRM systems' ``pssh`` boxes (§8.1) to the ``moov``;
- :func:`protect_fragment` encrypts the samples in place and adds ``senc`` (§7.2), ``saiz``/``saio``
  (§7.1) and, for a key other than the header's default KID, a ``seig`` sample group (§6);
- :func:`unprotect_fragment` and :func:`unprotect_header` undo both, for our output and for other
  packagers' (tests, tools).

Which bytes are encrypted (§9.5 subsample encryption, §9.6 pattern encryption):

- AVC/HEVC video: each sample is a run of length-prefixed NAL units (14496-15). Non-VCL NAL units
  stay clear; a VCL NAL unit (AVC types 1-5, HEVC types 0-31) keeps its length prefix and NAL header
  clear. ``cenc`` protects the rest rounded down to whole 16-byte blocks (the odd bytes join the clear
  part, as CMAF asks of ``cenc``); one CTR key stream runs across all protected bytes of a sample.
  ``cbcs`` also keeps the first :data:`CBCS_SLICE_HEADER_ROOM` bytes after the NAL header clear (see
  there why), then encrypts one block in ten (1:9) over the rest, CBC-chained across the encrypted
  blocks of one subsample and restarted from the constant IV at each subsample; a trailing partial
  block is clear. A VCL NAL unit too short for one protected block stays clear. Clear runs longer
  than 65535 bytes (BytesOfClearData is 16-bit) are split into subsamples with 0 protected bytes.
- Audio: the whole sample. ``cenc``: CTR over all of it. ``cbcs``: every whole block CBC-encrypted
  from the constant IV (no pattern, ``tenc`` crypt:skip 0:0), a trailing partial block clear; the
  samples' auxiliary information is then empty, and 23001-7 says it should be omitted: no ``senc``,
  ``saiz`` or ``saio`` (as Shaka Packager writes it; players take the constant IV from ``tenc``).
- AV1 (OBU subsamples) and text tracks are refused with :class:`ProtectionError`.

``cenc`` IVs are 8 bytes (``Per_Sample_IV_Size`` 8), computed, not drawn, so that every origin process
encrypts a request to the same bytes: HMAC-SHA256, keyed with the content key, over a seed naming
this copy of the media (the track's name, and what the caller adds: the publishing point and the
fragment's ingest time) and the sample's whole 64-bit decode time (tfdt plus the durations of the
samples before it). The counter is the lower 8 bytes of the CTR block, so two samples never share
counter blocks unless their IVs collide: the same key over other points, tracks, encoder runs or
restarted timestamps gives other seeds, and 64-bit IVs collide by chance only after about 2^32
samples under one key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from Crypto.Cipher import AES

from media.bmff import parse_header
from media.boxes import (
    GROUP_IN_FRAGMENT,
    SEIG,
    SENC_SUBSAMPLES,
    AudioSampleEntry,
    Box,
    CencSampleEncryptionInformationGroupEntry,
    MediaBox,
    MediaInformationBox,
    MovieBox,
    MovieExtendsBox,
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
    SampleTableBox,
    SampleToGroupBox,
    SchemeInformationBox,
    SchemeTypeBox,
    Subsample,
    TextSampleEntry,
    TrackBox,
    TrackEncryptionBox,
    TrackExtendsBox,
    TrackFragmentBox,
    TrackFragmentDecodeTimeBox,
    TrackFragmentHeaderBox,
    TrackHeaderBox,
    TrackRun,
    VisualSampleEntry,
    parse_box,
    parse_boxes,
)
from media.errors import BoxError
from media.model import Track, TrackKind
from media.protection import KEY_SIZE, ContentKey, ProtectionError, Scheme

if TYPE_CHECKING:
    from Crypto.Cipher._mode_cbc import CbcMode

BLOCK = 16
MAX_CLEAR = 0xFFFF  # BytesOfClearData is 16 bits (§7.2)
CENC_IV_SIZE = 8
SCHEME_VERSION = 0x10000  # §4: major version 1, minor version 0
CBCS_VIDEO_PATTERN = (1, 9)  # crypt:skip in 16-byte blocks (§10.4)
NO_PATTERN = (0, 0)
MAX_AUX_INFO = 0xFF  # a saiz sample_info_size is 8 bits (14496-12 §8.7.8)
#: ``cbcs`` bytes kept clear after the NAL header of a VCL NAL unit. CMAF wants the protected range of
#: a ``cbcs`` slice to start right after its slice header, so that secure decoders can read the header;
#: finding where it ends means parsing every slice header against its SPS and PPS (hard, and fragile
#: for HEVC). Keeping a fixed lead instead keeps the whole header clear whenever it is shorter than the
#: lead: AVC slice headers are a few bytes to a few tens of bytes (Apple's SAMPLE-AES keeps 32 bytes
#: clear for the same purpose), HEVC ones grow by about two bytes per CTU row with wavefront or tile
#: entry points, about 80 bytes at 2160p. The cost: the first 128 bytes of each slice are clear, which
#: leaves the slice no more decodable than before, since entropy decoding fails at the first encrypted
#: block after them; a VCL NAL unit under 145 bytes (small slices of skipped macroblocks) stays clear.
CBCS_SLICE_HEADER_ROOM = 128

_SCHEMES = {b"cenc": Scheme.CENC, b"cbcs": Scheme.CBCS}
_AVC = frozenset({"avc1", "avc3"})
_HEVC = frozenset({"hvc1", "hev1"})
_ENCRYPTED_FORMATS = frozenset({b"encv", b"enca"})
_ENCRYPTION_BOXES = (
    SampleEncryptionBox,
    SampleAuxiliaryInformationSizesBox,
    SampleAuxiliaryInformationOffsetsBox,
)


# ---------------------------------------------------------------------------------------------
# What a track's samples look like


@dataclass(frozen=True, slots=True)
class _NalFormat:
    """The framing of NAL-structured video samples: ``length_size`` bytes of NAL unit length, then
    the NAL unit (the AVC and HEVC sample formats of 14496-15)."""

    length_size: int
    hevc: bool

    @property
    def header_size(self) -> int:
        return 2 if self.hevc else 1

    def is_vcl(self, first_byte: int) -> bool:
        """14496-10 Table 7-1 (types 1-5 are slices), 23008-2 Table 7-1 (types 0-31 are VCL)."""
        if self.hevc:
            return (first_byte >> 1) & 0x3F < 32
        return 1 <= first_byte & 0x1F <= 5


def check_codec(codec: str, kind: TrackKind) -> None:
    """Refuse what this module cannot encrypt, naming the codec."""
    if codec == "av01":
        raise ProtectionError(
            "av01 (AV1) tracks cannot be encrypted: OBU subsample encryption (AV1 ISOBMFF binding) "
            "is not implemented"
        )
    if kind is TrackKind.TEXT:
        raise ProtectionError(f"{codec} text tracks cannot be encrypted with Common Encryption")
    if kind is TrackKind.VIDEO and codec not in _AVC | _HEVC:
        raise ProtectionError(f"{codec} video has no subsample encryption rule (AVC and HEVC have)")


def _nal_format(track: Track) -> _NalFormat | None:
    """The NAL framing of a video track, ``None`` for audio (whole-sample encryption)."""
    check_codec(track.codec, track.kind)
    if track.kind is not TrackKind.VIDEO:
        return None
    hevc = track.codec in _HEVC
    # lengthSizeMinusOne: the low 2 bits of byte 4 of avcC (14496-15 §5.3.3.1), byte 21 of hvcC (§8.3.3.1).
    at = 21 if hevc else 4
    config = track.decoder_config
    if len(config) <= at:
        raise ProtectionError(
            f"{track.codec} decoder configuration record of {len(config)} bytes lacks lengthSizeMinusOne"
        )
    size = (config[at] & 3) + 1
    if size == 3:
        raise ProtectionError(f"{track.codec} NAL unit length size 3 is not allowed (14496-15)")
    return _NalFormat(size, hevc)


def _pattern(scheme: Scheme, video: bool) -> tuple[int, int]:
    return CBCS_VIDEO_PATTERN if scheme is Scheme.CBCS and video else NO_PATTERN


def _check_scheme(scheme: Scheme) -> None:
    if scheme not in (Scheme.CENC, Scheme.CBCS):
        raise ProtectionError(f"scheme {scheme.value} is not a Common Encryption scheme (cenc, cbcs)")


# ---------------------------------------------------------------------------------------------
# Subsample maps and the ciphers


def _append(out: list[Subsample], clear: int, protected: int) -> None:
    while clear > MAX_CLEAR:
        out.append(Subsample(MAX_CLEAR, 0))
        clear -= MAX_CLEAR
    out.append(Subsample(clear, protected))


def _subsamples(
    data: bytearray, start: int, end: int, nal: _NalFormat, scheme: Scheme, index: int
) -> tuple[Subsample, ...]:
    """The subsample map of the video sample ``data[start:end]`` (rules in the module docstring)."""
    out: list[Subsample] = []
    lead = nal.header_size + (CBCS_SLICE_HEADER_ROOM if scheme is Scheme.CBCS else 0)
    clear = 0
    pos = start
    while pos < end:
        body = pos + nal.length_size
        if body > end:
            raise ProtectionError(
                f"sample {index}: NAL unit length field at byte {pos - start} is cut off by the end of "
                f"the {end - start}-byte sample"
            )
        size = int.from_bytes(data[pos:body], "big")
        if body + size > end:
            raise ProtectionError(
                f"sample {index}: NAL unit of {size} bytes at byte {pos - start} runs past the end of "
                f"the {end - start}-byte sample"
            )
        protected = 0
        if size > lead and nal.is_vcl(data[body]):
            protected = size - lead
            if scheme is Scheme.CENC:
                protected -= protected % BLOCK
            if protected < BLOCK:
                protected = 0
        clear += nal.length_size + size - protected
        if protected:
            _append(out, clear, protected)
            clear = 0
        pos = body + size
    if clear:
        _append(out, clear, 0)
    return tuple(out)


def _protected_ranges(start: int, size: int, subsamples: Sequence[Subsample]) -> list[tuple[int, int]]:
    """The ``(start, end)`` of each protected range of a sample; the whole sample without subsamples."""
    if not subsamples:
        return [(start, start + size)]
    ranges = []
    pos = start
    for clear, protected in subsamples:
        pos += clear
        if protected:
            ranges.append((pos, pos + protected))
        pos += protected
    return ranges


def _check_cover(subsamples: Sequence[Subsample], size: int, index: int) -> None:
    covered = sum(c + p for c, p in subsamples)
    if subsamples and covered != size:
        raise ProtectionError(f"sample {index}: subsamples cover {covered} bytes of a {size}-byte sample")


def _ctr(
    buf: bytearray, start: int, size: int, subsamples: Sequence[Subsample], key: bytes, iv: bytes
) -> None:
    """AES-CTR (§10.1), in place; encrypts and decrypts. The protected bytes of one sample form one key
    stream whatever subsamples hold them (§9.5); an 8-byte IV is the upper half of the counter
    block, whose lower half counts blocks from 0."""
    cipher = AES.new(key, AES.MODE_CTR, nonce=b"", initial_value=iv.ljust(BLOCK, b"\0"))
    view = memoryview(buf)
    for a, b in _protected_ranges(start, size, subsamples):
        part = view[a:b]
        cipher.encrypt(part, output=part)


def _cbc(
    buf: bytearray,
    start: int,
    size: int,
    subsamples: Sequence[Subsample],
    key: bytes,
    iv: bytes,
    pattern: tuple[int, int],
    encrypt: bool,
) -> None:
    """AES-CBC with a pattern (§9.6, §10.4), in place: each protected range starts again from ``iv``."""
    iv = iv.ljust(BLOCK, b"\0")
    for a, b in _protected_ranges(start, size, subsamples):
        _cbc_range(buf, a, b - a, AES.new(key, AES.MODE_CBC, iv=iv), pattern, encrypt)


def _cbc_in_place(cipher: CbcMode, data: bytearray | memoryview, encrypt: bool) -> None:
    if encrypt:
        cipher.encrypt(data, output=data)
    else:
        cipher.decrypt(data, output=data)


def _cbc_range(
    buf: bytearray, start: int, size: int, cipher: CbcMode, pattern: tuple[int, int], encrypt: bool
) -> None:
    """One protected range: runs of ``crypt`` whole blocks, each followed by ``skip`` clear blocks,
    CBC-chained from run to run; what is left after the last whole run is clear. Pattern 0:0 means
    every whole block. The runs are gathered into one buffer with strided slices (one slice per byte
    position within a run, not per block), put through the cipher in one call, and scattered back."""
    crypt, skip = pattern
    blocks = size // BLOCK
    if skip == 0:
        count = blocks if crypt == 0 else blocks - blocks % crypt
        if count:
            _cbc_in_place(cipher, memoryview(buf)[start : start + count * BLOCK], encrypt)
        return
    if blocks < crypt:
        return
    runs = (blocks - crypt) // (crypt + skip) + 1
    width, stride = crypt * BLOCK, (crypt + skip) * BLOCK
    stop = start + (runs - 1) * stride + width
    gathered = bytearray(width * runs)
    for j in range(width):
        gathered[j::width] = buf[start + j : stop : stride]
    _cbc_in_place(cipher, gathered, encrypt)
    for j in range(width):
        buf[start + j : stop : stride] = gathered[j::width]


# ---------------------------------------------------------------------------------------------
# Fragment layout


@dataclass(frozen=True, slots=True)
class _Located:
    """A fragment's ``moof`` (parsed, ``start``..``end`` in the fragment) and its ``mdat`` payload."""

    moof: MovieFragmentBox
    start: int
    end: int
    mdat_start: int
    mdat_end: int


def _locate(fragment: bytes) -> _Located:
    """The first ``moof`` and the ``mdat`` after it; other top-level boxes (``styp``, ``prft``) are
    left alone."""
    found: tuple[MovieFragmentBox, int, int] | None = None
    pos = 0
    while pos < len(fragment):
        header = parse_header(fragment, pos, path="", base=0)
        if header is None or pos + header.size > len(fragment):
            raise BoxError(f"fragment ends inside a box ({len(fragment) - pos} bytes left)", offset=pos)
        if header.type == b"moof" and found is None:
            box, _ = parse_box(fragment, pos)
            assert isinstance(box, MovieFragmentBox)
            found = (box, pos, pos + header.size)
        elif header.type == b"mdat" and found is not None:
            return _Located(*found, pos + header.header_size, pos + header.size)
        pos += header.size
    raise BoxError("fragment lacks a moof followed by an mdat")


def _first(values: Sequence[int | None], what: str, path: str) -> int:
    for value in values:
        if value is not None:
            return value
    raise ProtectionError(f"{path}: the trun gives no {what}, and no default gives one")


@dataclass(frozen=True, slots=True)
class _TrafLayout:
    """Where the samples of one ``traf`` are (``(offset, size)`` in the fragment), and whether its
    data offsets count from the moof's first byte (so they move when the moof changes size)."""

    samples: list[tuple[int, int]]
    moof_relative: bool
    end: int


def _traf_layout(
    traf: TrackFragmentBox,
    loc: _Located,
    trex: TrackExtendsBox | None,
    first: bool,
    previous_end: int,
    path: str,
) -> _TrafLayout:
    """14496-12 §8.8.7.1, §8.8.8: the base data offset is the moof's first byte with
    default-base-is-moof (or for the first traf), else where the previous traf's data ended."""
    tfhd = traf.need(TrackFragmentHeaderBox, path)
    if tfhd.base_data_offset is not None:
        raise ProtectionError(f"{path}/tfhd: an explicit base_data_offset (a file position) is not supported")
    moof_relative = tfhd.default_base_is_moof or first
    pos = loc.start if moof_relative else previous_end
    base = pos
    samples: list[tuple[int, int]] = []
    truns = traf.all(TrackRun)
    if not truns:
        raise ProtectionError(f"{path}: no trun")
    for trun in truns:
        if trun.data_offset is not None:
            pos = base + trun.data_offset
        for entry in trun.samples:
            sizes = (entry.size, tfhd.default_sample_size, trex.default_sample_size if trex else None)
            size = _first(sizes, "sample size", path)
            if pos < loc.mdat_start or pos + size > loc.mdat_end:
                raise BoxError(
                    f"sample {len(samples)} ({size} bytes at {pos}) lies outside the mdat payload "
                    f"({loc.mdat_start} to {loc.mdat_end})",
                    path=f"{path}/trun",
                )
            samples.append((pos, size))
            pos += size
    return _TrafLayout(samples, moof_relative, pos)


def _decode_times(traf: TrackFragmentBox, path: str) -> list[int]:
    """The decode time of each sample: tfdt, plus the durations of the samples before it."""
    tfhd = traf.need(TrackFragmentHeaderBox, path)
    time = traf.need(TrackFragmentDecodeTimeBox, path).base_media_decode_time
    out = []
    for trun in traf.all(TrackRun):
        for entry in trun.samples:
            out.append(time)
            time += _first((entry.duration, tfhd.default_sample_duration), "sample duration", path)
    return out


def _serialize(moof: MovieFragmentBox, old_size: int, moved: Sequence[TrackRun]) -> bytes:
    """The moof's bytes, with the data offsets of the ``moved`` truns (those counting from the moof's
    first byte) shifted by its change in size, and each ``saio`` pointing at the first entry of its
    traf's ``senc`` (an offset from the moof's first byte, default-base-is-moof). Neither value changes
    a box's size. A moof is far below 4 GiB, so its box headers are 8 bytes."""
    delta = len(bytes(moof)) - old_size
    for trun in moved:
        trun.data_offset = (trun.data_offset or 0) + delta
    pos = 8
    for child in moof.children:
        if isinstance(child, TrackFragmentBox):
            _point_saio(child, pos + 8)
        pos += len(bytes(child))
    return bytes(moof)


def _point_saio(traf: TrackFragmentBox, pos: int) -> None:
    senc_at = None
    for child in traf.children:
        if isinstance(child, SampleEncryptionBox) and not isinstance(child, PiffSampleEncryptionBox):
            senc_at = pos + 16  # box header, version and flags, sample_count
        pos += len(bytes(child))
    saio = traf.first(SampleAuxiliaryInformationOffsetsBox)
    if saio is not None and senc_at is not None:
        saio.offsets = [senc_at]


# ---------------------------------------------------------------------------------------------
# Protecting


def protect_header(header: bytes, scheme: Scheme, key: ContentKey, pssh: Sequence[bytes] = ()) -> bytes:
    """A CMAF header (ftyp + moov of one track) for ``scheme``: the sample entry renamed ``encv`` or
    ``enca`` with a ``sinf`` appended holding ``frma`` (the original format), ``schm`` (the scheme,
    version 0x10000) and ``schi``/``tenc`` (§8.2): for ``cenc`` version 0, protected, 8-byte IVs, the
    key's KID as default KID; for ``cbcs`` version 1 with pattern 1:9 for video and 0:0 for audio, IV
    size 0 and the key's constant IV (16 bytes). ``pssh`` (whole boxes) are appended to the moov."""
    _check_scheme(scheme)
    boxes = parse_boxes(header)
    moov = next((b for b in boxes if isinstance(b, MovieBox)), None)
    if moov is None:
        raise BoxError("CMAF header lacks a moov")
    entry = _sample_entry(moov)
    video = isinstance(entry, VisualSampleEntry)
    crypt, skip = _pattern(scheme, video)
    if scheme is Scheme.CENC:
        tenc = TrackEncryptionBox(key.kid, CENC_IV_SIZE)
    else:
        tenc = TrackEncryptionBox(key.kid, 0, 1, crypt, skip, key.constant_iv(), version=1)
    scheme_type = SchemeTypeBox(scheme.value.encode(), SCHEME_VERSION)
    sinf = ProtectionSchemeInfoBox(
        [OriginalFormatBox(entry.format), scheme_type, SchemeInformationBox([tenc])]
    )
    entry.children.append(sinf)
    entry.format = b"encv" if video else b"enca"
    moov.children.extend(_parse_pssh(p) for p in pssh)
    return b"".join(bytes(b) for b in boxes)


def _sample_entry(moov: MovieBox) -> VisualSampleEntry | AudioSampleEntry:
    """The one sample entry of a single-track CMAF header, if this module can encrypt its codec."""
    traks = moov.all(TrackBox)
    if len(traks) != 1:
        raise ProtectionError(f"a CMAF header holds one track, this one {len(traks)}")
    stsd = _stbl(traks[0], "moov/trak").need(SampleDescriptionBox, "moov/trak/mdia/minf/stbl")
    if len(stsd.children) != 1:
        raise ProtectionError(f"a CMAF track has one sample entry, this one {len(stsd.children)}")
    entry = stsd.children[0]
    codec = entry.box_type.decode("latin-1")
    if entry.box_type in _ENCRYPTED_FORMATS:
        raise ProtectionError(f"the header is already protected ({codec})")
    if isinstance(entry, TextSampleEntry):
        check_codec(codec, TrackKind.TEXT)
    if not isinstance(entry, VisualSampleEntry | AudioSampleEntry):
        raise ProtectionError(f"{codec} sample entries cannot be encrypted")
    check_codec(codec, TrackKind.VIDEO if isinstance(entry, VisualSampleEntry) else TrackKind.AUDIO)
    return entry


def _stbl(trak: TrackBox, path: str) -> SampleTableBox:
    mdia = trak.need(MediaBox, path)
    minf = mdia.need(MediaInformationBox, f"{path}/mdia")
    return minf.need(SampleTableBox, f"{path}/mdia/minf")


def protect_fragment(
    fragment: bytes,
    track: Track,
    scheme: Scheme,
    key: ContentKey,
    *,
    default_kid: bytes,
    iv_seed: bytes = b"",
) -> bytes:
    """A stored CMAF fragment of ``track`` (moof + mdat as :func:`media.cmaf.write_fragment` writes
    it: one traf with tfdt and a trun, data offsets from the moof's first byte) encrypted with ``key``:
    the samples are encrypted in place (their sizes do not change), the traf gains ``saiz``, ``saio``
    (pointing at the first ``senc`` entry) and ``senc`` (IVs for ``cenc``, subsample maps for video),
    and, when ``key.kid`` is not the header's ``default_kid`` (key rotation, §6), an ``sbgp`` mapping
    every sample to a ``seig`` group in an ``sgpd`` that names ``key.kid`` (and the key's constant IV
    for ``cbcs``). The trun's data offset follows the moof's growth. ``iv_seed`` names this copy of
    the media for the ``cenc`` IVs (see the module docstring): what distinguishes it from any other
    media encrypted with the same key at the same decode times."""
    _check_scheme(scheme)
    nal = _nal_format(track)
    loc = _locate(fragment)
    trafs = loc.moof.all(TrackFragmentBox)
    if len(trafs) != 1:
        raise ProtectionError(f"a stored CMAF fragment has one traf, this one {len(trafs)}")
    traf = trafs[0]
    if traf.first(SampleEncryptionBox) is not None:
        raise ProtectionError("the fragment is already encrypted (its traf holds a senc)")
    traf.need(TrackFragmentDecodeTimeBox, "moof/traf")
    layout = _traf_layout(traf, loc, None, True, loc.start, "moof/traf")
    buf = bytearray(fragment)
    if scheme is Scheme.CENC:
        entries = _encrypt_ctr(buf, layout.samples, nal, key, track.name.encode() + b"|" + iv_seed, traf)
    else:
        entries = _encrypt_cbc(buf, layout.samples, nal, key)
    traf.children.extend(_encryption_boxes(entries, nal is not None, scheme, key, default_kid))
    moved = traf.all(TrackRun) if layout.moof_relative else []
    moof = _serialize(loc.moof, loc.end - loc.start, moved)
    return b"".join((fragment[: loc.start], moof, memoryview(buf)[loc.end :]))


def _encrypt_ctr(
    buf: bytearray,
    samples: list[tuple[int, int]],
    nal: _NalFormat | None,
    key: ContentKey,
    seed: bytes,
    traf: TrackFragmentBox,
) -> list[SampleEncryptionEntry]:
    times = _decode_times(traf, "moof/traf")
    entries = []
    for i, ((offset, size), time) in enumerate(zip(samples, times, strict=True)):
        subsamples = _subsamples(buf, offset, offset + size, nal, Scheme.CENC, i) if nal else ()
        iv = sample_iv(key, seed, time)
        _ctr(buf, offset, size, subsamples, key.key, iv)
        entries.append(SampleEncryptionEntry(iv, subsamples))
    return entries


def sample_iv(key: ContentKey, seed: bytes, decode_time: int) -> bytes:
    """A ``cenc`` sample's 8-byte IV: HMAC-SHA256 keyed with the content key over the copy's seed
    (track name, point, the fragment's ingest time) and the sample's whole decode time."""
    return hmac.new(
        key.key, seed + b"|" + decode_time.to_bytes(8, "big", signed=True), hashlib.sha256
    ).digest()[:8]


def _encrypt_cbc(
    buf: bytearray, samples: list[tuple[int, int]], nal: _NalFormat | None, key: ContentKey
) -> list[SampleEncryptionEntry]:
    iv = key.constant_iv()
    pattern = _pattern(Scheme.CBCS, nal is not None)
    entries = []
    for i, (offset, size) in enumerate(samples):
        subsamples = _subsamples(buf, offset, offset + size, nal, Scheme.CBCS, i) if nal else ()
        _cbc(buf, offset, size, subsamples, key.key, iv, pattern, encrypt=True)
        entries.append(SampleEncryptionEntry(b"", subsamples))
    return entries


def _encryption_boxes(
    entries: list[SampleEncryptionEntry], video: bool, scheme: Scheme, key: ContentKey, default_kid: bytes
) -> list[Box]:
    """saiz, saio and senc (left out when every entry is empty: cbcs audio), then sbgp and sgpd for a
    key other than the default one."""
    raw = [e.to_bytes(video) for e in entries]
    boxes: list[Box] = []
    for i, info in enumerate(raw):
        if len(info) > MAX_AUX_INFO:
            raise ProtectionError(
                f"sample {i} has {len(entries[i].subsamples)} subsamples: its {len(info)} bytes of "
                f"encryption information exceed the {MAX_AUX_INFO} a saiz entry can size"
            )
    if any(raw):
        senc = SampleEncryptionBox(len(raw), b"".join(raw), SENC_SUBSAMPLES if video else 0)
        saiz = SampleAuxiliaryInformationSizesBox.of([len(r) for r in raw])
        boxes += [saiz, SampleAuxiliaryInformationOffsetsBox([0]), senc]
    if key.kid != default_kid:
        crypt, skip = _pattern(scheme, video)
        if scheme is Scheme.CENC:
            seig = CencSampleEncryptionInformationGroupEntry(key.kid, CENC_IV_SIZE)
        else:
            seig = CencSampleEncryptionInformationGroupEntry(key.kid, 0, 1, crypt, skip, key.constant_iv())
        boxes.append(SampleToGroupBox(SEIG, [(len(entries), GROUP_IN_FRAGMENT + 1)]))
        boxes.append(SampleGroupDescriptionBox.of(SEIG, [bytes(seig)]))
    return boxes


# ---------------------------------------------------------------------------------------------
# DRM system boxes


def pssh_box(system_id: bytes, kids: Sequence[bytes], data: bytes) -> bytes:
    """A whole ``pssh`` box (§8.1): version 1 listing ``kids`` when there are any, else version 0."""
    box = ProtectionSystemSpecificHeaderBox(system_id, data, list(kids), 1 if kids else 0)
    try:
        return bytes(box)
    except BoxError as exc:
        raise ProtectionError(exc.message) from None


def pssh_data(pssh: bytes) -> bytes:
    """The system-specific Data of a whole ``pssh`` box (for PlayReady, its PlayReady Object)."""
    return _parse_pssh(pssh).data


def _parse_pssh(raw: bytes) -> ProtectionSystemSpecificHeaderBox:
    box, end = parse_box(raw)
    if not isinstance(box, ProtectionSystemSpecificHeaderBox) or end != len(raw):
        raise ProtectionError(f"expected one whole pssh box, got {box.name} ({len(raw)} bytes)")
    return box


# ---------------------------------------------------------------------------------------------
# Unprotecting


@dataclass(frozen=True, slots=True)
class _Params:
    """How one sample is protected: the track's ``tenc`` defaults or a ``seig`` group's."""

    protected: bool
    iv_size: int
    kid: bytes
    constant_iv: bytes
    pattern: tuple[int, int]

    @classmethod
    def of_seig(cls, seig: CencSampleEncryptionInformationGroupEntry) -> _Params:
        pattern = (seig.crypt_byte_block, seig.skip_byte_block)
        return cls(seig.is_protected == 1, seig.per_sample_iv_size, seig.kid, seig.constant_iv, pattern)


@dataclass(frozen=True, slots=True)
class _ProtectedTrack:
    """A protected track of a header: its scheme, ``tenc`` defaults, ``seig`` groups of its sample
    table, and ``trex`` defaults."""

    scheme: Scheme
    defaults: _Params
    groups: list[_Params]
    trex: TrackExtendsBox | None


def unprotect_header(header: bytes) -> bytes:
    """The header with each ``encv``/``enca`` sample entry back to its ``frma`` format, its ``sinf``
    removed, and the moov's ``pssh`` boxes removed."""
    boxes = parse_boxes(header)
    for moov in (b for b in boxes if isinstance(b, MovieBox)):
        moov.children = [c for c in moov.children if not isinstance(c, ProtectionSystemSpecificHeaderBox)]
        for i, trak in enumerate(moov.all(TrackBox)):
            path = f"moov/trak[{i}]"
            for entry in _stbl(trak, path).need(SampleDescriptionBox, f"{path}/mdia/minf/stbl").children:
                if (
                    isinstance(entry, VisualSampleEntry | AudioSampleEntry)
                    and entry.format in _ENCRYPTED_FORMATS
                ):
                    sinf = entry.need(ProtectionSchemeInfoBox, f"{path}/mdia/minf/stbl/stsd/{entry.name}")
                    entry.format = sinf.need(OriginalFormatBox, "sinf").data_format
                    entry.children = [c for c in entry.children if c is not sinf]
    return b"".join(bytes(b) for b in boxes)


def unprotect_fragment(fragment: bytes, header: bytes, keys: Mapping[bytes, bytes]) -> bytes:
    """An encrypted fragment decrypted with ``keys`` (KID → key), given its encrypted CMAF header.

    Reads ours and other packagers': per-sample information from ``senc`` (or the PIFF
    sample-encryption ``uuid`` box), ``seig`` groups of the traf (``sgpd`` + ``sbgp``) or of the
    header's sample table, constant IVs, patterns; both schemes. Auxiliary information that only
    ``saiz``/``saio`` point at (no ``senc``) is not read. The result has the samples decrypted and the
    encryption boxes (``senc``, ``saiz``, ``saio``, ``seig`` groups, ``pssh``) removed from the moof,
    whose data offsets follow; trafs of clear tracks are left as they are."""
    tracks = _protected_tracks(header)
    loc = _locate(fragment)
    buf = bytearray(fragment)
    moved: list[TrackRun] = []
    previous_end = loc.start
    for i, traf in enumerate(loc.moof.all(TrackFragmentBox)):
        path = f"moof/traf[{i}]"
        track = tracks.get(traf.need(TrackFragmentHeaderBox, path).track_id)
        layout = _traf_layout(traf, loc, track.trex if track else None, i == 0, previous_end, path)
        previous_end = layout.end
        moved += traf.all(TrackRun) if layout.moof_relative else []
        if track is not None:
            _decrypt_traf(buf, traf, track, layout.samples, keys, path)
            traf.children = [c for c in traf.children if not _is_encryption_box(c)]
    moof = loc.moof
    moof.children = [c for c in moof.children if not isinstance(c, ProtectionSystemSpecificHeaderBox)]
    moof_bytes = _serialize(moof, loc.end - loc.start, moved)
    return b"".join((fragment[: loc.start], moof_bytes, memoryview(buf)[loc.end :]))


def _is_encryption_box(box: Box) -> bool:
    if isinstance(box, SampleToGroupBox | SampleGroupDescriptionBox):
        return box.grouping_type == SEIG
    return isinstance(box, _ENCRYPTION_BOXES)


def _protected_tracks(header: bytes) -> dict[int, _ProtectedTrack]:
    """The protected tracks of a header by track ID."""
    moov = next((b for b in parse_boxes(header) if isinstance(b, MovieBox)), None)
    if moov is None:
        raise BoxError("header lacks a moov")
    mvex = moov.first(MovieExtendsBox)
    trexes = {t.track_id: t for t in mvex.all(TrackExtendsBox)} if mvex else {}
    out = {}
    for i, trak in enumerate(moov.all(TrackBox)):
        path = f"moov/trak[{i}]"
        stbl = _stbl(trak, path)
        entries = stbl.need(SampleDescriptionBox, f"{path}/mdia/minf/stbl").children
        sinf = entries[0].first(ProtectionSchemeInfoBox) if entries else None
        if sinf is None:
            continue
        track_id = trak.need(TrackHeaderBox, path).track_id
        where = f"{path}/mdia/minf/stbl/stsd/{entries[0].name}/sinf"
        out[track_id] = _protected_track(sinf, stbl, trexes.get(track_id), where)
    return out


def _protected_track(
    sinf: ProtectionSchemeInfoBox, stbl: SampleTableBox, trex: TrackExtendsBox | None, path: str
) -> _ProtectedTrack:
    scheme_type = sinf.need(SchemeTypeBox, path).scheme_type
    scheme = _SCHEMES.get(scheme_type)
    if scheme is None:
        raise ProtectionError(
            f"protection scheme {scheme_type.decode('latin-1')!r} is not supported (cenc and cbcs are)"
        )
    tenc = sinf.need(SchemeInformationBox, path).need(TrackEncryptionBox, f"{path}/schi")
    defaults = _Params(
        tenc.default_is_protected == 1,
        tenc.default_per_sample_iv_size,
        tenc.default_kid,
        tenc.default_constant_iv,
        (tenc.default_crypt_byte_block, tenc.default_skip_byte_block),
    )
    return _ProtectedTrack(scheme, defaults, _seig_groups(stbl), trex)


def _seig_groups(container: SampleTableBox | TrackFragmentBox) -> list[_Params]:
    return [
        _Params.of_seig(seig)
        for sgpd in container.all(SampleGroupDescriptionBox)
        if sgpd.grouping_type == SEIG
        for seig in sgpd.seig()
    ]


def _sample_params(traf: TrackFragmentBox, track: _ProtectedTrack, count: int, path: str) -> list[_Params]:
    """Each sample's protection: its ``seig`` group (§6) when ``sbgp`` maps it to one, the track's
    defaults otherwise, as a PIFF box's override changes them."""
    defaults = track.defaults
    piff = traf.first(PiffSampleEncryptionBox)
    if piff is not None and piff.override is not None:
        algorithm, iv_size, kid = piff.override
        defaults = replace(defaults, protected=algorithm != 0, iv_size=iv_size, kid=kid)
    sbgp = next((b for b in traf.all(SampleToGroupBox) if b.grouping_type == SEIG), None)
    if sbgp is None:
        return [defaults] * count
    local = _seig_groups(traf)
    out = []
    for index in sbgp.indexes(count):
        if index == 0:
            out.append(defaults)
            continue
        in_fragment = index > GROUP_IN_FRAGMENT
        groups, number = (local, index - GROUP_IN_FRAGMENT) if in_fragment else (track.groups, index)
        if number > len(groups):
            raise ProtectionError(f"{path}/sbgp: seig group description {index} does not exist")
        out.append(groups[number - 1])
    return out


def _sample_entries(traf: TrackFragmentBox, params: list[_Params], path: str) -> list[SampleEncryptionEntry]:
    """Each sample's IV and subsamples: from ``senc`` (else the PIFF box); with neither, only samples
    with constant IVs and no subsamples can be decrypted."""
    boxes = traf.all(SampleEncryptionBox)
    senc = next((b for b in boxes if not isinstance(b, PiffSampleEncryptionBox)), boxes[0] if boxes else None)
    if senc is None:
        if any(p.protected and p.iv_size for p in params):
            raise ProtectionError(f"{path}: no senc holds the per-sample IVs")
        return [SampleEncryptionEntry()] * len(params)
    if senc.sample_count != len(params):
        raise ProtectionError(f"{path}/{senc.name}: {senc.sample_count} entries for {len(params)} samples")
    return senc.entries([p.iv_size if p.protected else 0 for p in params])


def _decrypt_traf(
    buf: bytearray,
    traf: TrackFragmentBox,
    track: _ProtectedTrack,
    samples: list[tuple[int, int]],
    keys: Mapping[bytes, bytes],
    path: str,
) -> None:
    params = _sample_params(traf, track, len(samples), path)
    entries = _sample_entries(traf, params, path)
    for i, ((offset, size), param, entry) in enumerate(zip(samples, params, entries, strict=True)):
        if not param.protected:
            continue
        key = keys.get(param.kid)
        if key is None:
            raise ProtectionError(f"{path}: sample {i}: no key for KID {param.kid.hex()}")
        if len(key) != KEY_SIZE:
            raise ProtectionError(f"{path}: the key for KID {param.kid.hex()} is not {KEY_SIZE} bytes")
        iv = entry.iv or param.constant_iv
        if not iv:
            raise ProtectionError(f"{path}: sample {i} has neither a per-sample nor a constant IV")
        _check_cover(entry.subsamples, size, i)
        if track.scheme is Scheme.CENC:
            _ctr(buf, offset, size, entry.subsamples, key, iv)
        else:
            _cbc(buf, offset, size, entry.subsamples, key, iv, param.pattern, encrypt=False)
