"""media.sample_aes and SAMPLE-AES transport stream segments.

Two checks: a decryptor written here from Apple's "MPEG-2 Stream Encryption Format for HTTP Live
Streaming" (remove emulation prevention, then walk Listing 2-1 of §2.2 block by block; §2.3 for AAC;
CBC by hand on top of AES-ECB) gives back the clear NAL units and AAC frames, and ffmpeg 5.1's HLS
demuxer, which decrypts SAMPLE-AES TS segments itself, decodes an encrypted playlist to the same
video and audio frames as the clear one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from Crypto.Cipher import AES
from hypothesis import given
from hypothesis import strategies as st

from media.aac import PS, SBR
from media.model import Track, TrackKind
from media.mpegts import AUDIO_PID, VIDEO_PID, TsTrack, mux_segment
from media.protection import ProtectionError
from media.sample_aes import SampleAes, audio_setup_information, sample_aes_supported
from tests.conftest import lavfi_inputs, run_ffmpeg
from tests.unit.streams import ASC_AAC_LC_48K_STEREO
from tests.unit.test_mpegts import (
    CMAF_FLAGS,
    FAST,
    IDR,
    SEI,
    SLICE,
    Capture,
    _capture,
    aac_track,
    adts_frames,
    audio_track,
    avc_track,
    check_counters,
    demux,
    hevc_track,
    split_annexb,
    video_track,
    write_bits,
)

KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
IV = bytes.fromhex("f0e1d2c3b4a5968778695a4b3c2d1e0f")
CIPHER = SampleAes(KEY, IV)

# ---------------------------------------------------------------------------------------------
# An independent decryptor


def escape(rbsp: bytes) -> bytes:
    """``rbsp`` with emulation_prevention_three_bytes inserted (H.264 §7.4.1, byte by byte)."""
    out, zeros = bytearray(), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def unescape(nal: bytes) -> bytes:
    """The NAL unit without its emulation_prevention_three_bytes (H.264 §7.3.1, byte by byte)."""
    out = bytearray()
    i = 0
    while i < len(nal):
        if i + 2 < len(nal) and nal[i : i + 3] == b"\x00\x00\x03":
            out += nal[i : i + 2]
            i += 3
        else:
            out.append(nal[i])
            i += 1
    return bytes(out)


class Cbc:
    """AES-128-CBC decryption one block at a time, the chain kept by hand (NIST SP 800-38A §6.2)."""

    def __init__(self, key: bytes, iv: bytes) -> None:
        self.ecb = AES.new(key, AES.MODE_ECB)
        self.previous = iv

    def decrypt(self, block: bytes) -> bytes:
        plain = bytes(a ^ b for a, b in zip(self.ecb.decrypt(block), self.previous, strict=True))
        self.previous = block
        return plain


def encrypted_ranges(size: int) -> list[tuple[int, int]]:
    """The encrypted blocks of an Encrypted_nal_unit of ``size`` bytes, walking Listing 2-1."""
    ranges, pos = [], 32  # nal_unit_type_byte + unencrypted_leader
    while size - pos > 0:
        if size - pos > 16:
            ranges.append((pos, pos + 16))
            pos += 16
        pos += min(144, size - pos)
    return ranges


def decrypt_nal(nal: bytes, key: bytes = KEY, iv: bytes = IV) -> bytes:
    if nal[0] & 0x1F not in (1, 5) or len(nal) <= 48:
        return nal
    data = bytearray(unescape(nal))
    cbc = Cbc(key, iv)
    for start, end in encrypted_ranges(len(data)):
        data[start:end] = cbc.decrypt(bytes(data[start:end]))
    return bytes(data)


def decrypt_aac(raw: bytes, key: bytes = KEY, iv: bytes = IV) -> bytes:
    """An AAC frame after its ADTS header (§2.3): 16 clear bytes, then whole blocks encrypted."""
    data, pos, cbc = bytearray(raw), 16, Cbc(key, iv)
    while len(data) - pos >= 16:
        data[pos : pos + 16] = cbc.decrypt(bytes(data[pos : pos + 16]))
        pos += 16
    return bytes(data)


def emulates_start_code(nal: bytes) -> bool:
    """Whether a three-byte sequence H.264 §7.4.1 forbids inside a NAL unit occurs."""
    return any(code in nal for code in (b"\x00\x00\x00", b"\x00\x00\x01", b"\x00\x00\x02"))


# ---------------------------------------------------------------------------------------------
# NAL units


def slice_nal(size: int, nal_type: int = 5) -> bytes:
    """A slice NAL unit of ``size`` bytes without zero bytes, so emulation prevention stays out."""
    return bytes([0x60 | nal_type]) + bytes((i * 37) % 255 + 1 for i in range(size - 1))


@pytest.mark.parametrize(
    ("size", "blocks"),
    [
        (49, [32]),  # 17 bytes from byte 32: one block, one clear byte after it
        (64, [32]),
        (192, [32]),
        (208, [32]),  # at 192 exactly 16 bytes remain: Listing 2-1 leaves them clear
        (209, [32, 192]),
        (368, [32, 192]),
        (369, [32, 192, 352]),
        (1000, [32, 192, 352, 512, 672, 832]),
    ],
)
def test_nal_pattern(size: int, blocks: list[int]) -> None:
    nal = slice_nal(size)
    enc = CIPHER.nal_unit(nal)
    assert [start for start, _ in encrypted_ranges(size)] == blocks
    assert len(enc) == size  # these ciphertexts need no emulation prevention
    changed = {i for i in range(size) if enc[i] != nal[i]}
    assert changed <= {i for b in blocks for i in range(b, b + 16)}
    assert all(enc[b : b + 16] != nal[b : b + 16] for b in blocks)
    assert decrypt_nal(enc) == nal


@pytest.mark.parametrize(
    "nal",
    [
        slice_nal(48, 5),  # protected types, but 48 bytes or fewer
        slice_nal(48, 1),
        slice_nal(2, 1),
        slice_nal(300, 2),  # data partitions, SEI, SPS, PPS, AUD, filler: never encrypted
        slice_nal(300, 6),
        bytes([0x67]) + bytes(200),  # zeros that would need escaping if it were touched
        bytes([0x68]) + bytes(100),
        bytes([0x09, 0xF0]),
        bytes([0x0C]) + b"\xff" * 100,
    ],
)
def test_nal_units_left_clear(nal: bytes) -> None:
    assert CIPHER.nal_unit(nal) is nal


def test_cbc_chain_and_iv_reset() -> None:
    """The blocks of one NAL unit form one chain from the IV (two equal plaintext blocks encrypt
    differently); every NAL unit starts again from the IV (equal NAL units encrypt equally)."""
    nal = slice_nal(209)
    nal = nal[:192] + nal[32:48] + nal[208:]  # block 192 repeats block 32
    enc = CIPHER.nal_unit(nal)
    assert enc[32:48] != enc[192:208]
    assert CIPHER.nal_unit(nal) == enc
    expected = AES.new(KEY, AES.MODE_CBC, iv=IV).encrypt(nal[32:48] + nal[192:208])
    assert enc[32:48] + enc[192:208] == expected
    assert SampleAes(KEY, bytes(16)).nal_unit(nal) != enc


# Plaintext blocks found by searching AES-ECB(KEY, IV ^ block), so that the first CBC block of a NAL
# unit comes out as ciphertext ending in 00 00, or starting with 00 00 02.
ENDS_IN_ZEROS = bytes.fromhex("f0e1d2c3b4a5968778695a4b3c2d580a")
STARTS_WITH_CODE = bytes.fromhex("f0e1d2c3b4a5968778695a4b3c0f578e")


def test_ciphertext_gets_emulation_prevention() -> None:
    lead = slice_nal(32)
    tail = b"\x01" + slice_nal(40)[1:]  # a clear 0x01 right after the block
    first = CIPHER.nal_unit(lead + ENDS_IN_ZEROS + tail)
    assert first[46:48] == b"\x00\x00" and first[48:50] == b"\x03\x01"
    assert len(first) == 32 + 16 + 1 + len(tail)
    second = CIPHER.nal_unit(lead + STARTS_WITH_CODE + tail)
    assert second[32:36] == b"\x00\x00\x03\x02"
    for nal, enc in ((ENDS_IN_ZEROS, first), (STARTS_WITH_CODE, second)):
        assert not emulates_start_code(enc)
        assert decrypt_nal(enc) == lead + nal + tail


def test_emulation_prevention_is_applied_over_the_whole_nal_unit() -> None:
    """The NAL unit is encrypted as it stands, its emulation prevention bytes included, then escaped
    once more: an existing 00 00 03 (in a clear part) becomes 00 00 03 03, which a decryptor's one
    pass of removal turns back into the original."""
    nal = slice_nal(100)[:60] + b"\x00\x00\x03\x01" + slice_nal(100)[64:]
    enc = CIPHER.nal_unit(nal)
    assert enc[60:65] == b"\x00\x00\x03\x03\x01"
    assert decrypt_nal(enc) == nal


nal_bodies = st.lists(
    st.one_of(st.just(0), st.integers(0, 3), st.integers(0, 255)), min_size=40, max_size=1200
)


@FAST
@given(body=nal_bodies, nal_type=st.sampled_from([1, 5, 6, 7]), last=st.integers(1, 255))
def test_any_nal_unit_round_trips(body: list[int], nal_type: int, last: int) -> None:
    """Zero-heavy NAL units, escaped as H.264 requires and ending in a nonzero byte (the
    rbsp_stop_one_bit): the output never emulates a start code and decrypts to the input."""
    raw = bytes([0x60 | nal_type, *body, last])
    nal = escape(raw)
    enc = CIPHER.nal_unit(nal)
    assert not emulates_start_code(enc)
    assert decrypt_nal(enc) == nal
    assert (enc == nal) == (nal_type not in (1, 5) or len(nal) <= 48)


# ---------------------------------------------------------------------------------------------
# AAC frames


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 31, 32, 33, 47, 48, 49, 200, 767])
def test_aac_frame(size: int) -> None:
    raw = bytes((i * 11 + 5) % 256 for i in range(size))
    enc = CIPHER.aac_frame(raw)
    blocks = max(0, (size - 16) // 16)
    assert len(enc) == size
    assert enc[:16] == raw[:16] and enc[16 + 16 * blocks :] == raw[16 + 16 * blocks :]
    assert (enc == raw) == (blocks == 0)
    assert decrypt_aac(enc) == raw


def test_aac_frames_start_from_the_iv() -> None:
    raw = bytes(range(64))
    assert CIPHER.aac_frame(raw) == CIPHER.aac_frame(raw)
    assert CIPHER.aac_frame(raw)[16:] == AES.new(KEY, AES.MODE_CBC, iv=IV).encrypt(raw[16:])


# ---------------------------------------------------------------------------------------------
# Keys, codecs, audio setup information


def test_key_and_iv_sizes_and_repr() -> None:
    for key, iv in ((KEY[:15], IV), (KEY, IV[:8]), (KEY + b"x", IV)):
        with pytest.raises(ProtectionError, match="16-byte key and a 16-byte IV"):
            SampleAes(key, iv)
    assert KEY.hex() not in repr(CIPHER) and str(KEY) not in repr(CIPHER)


def test_supported_codecs() -> None:
    def track(codec: str) -> Track:
        return Track("t", TrackKind.VIDEO, codec, codec, 90000, b"")

    codecs = ("avc1", "avc3", "mp4a", "hvc1", "hev1", "vp09", "opus")
    assert {c for c in codecs if sample_aes_supported(track(c))} == {"avc1", "avc3", "mp4a"}


@pytest.mark.parametrize(
    ("asc", "audio_type"),
    [
        (ASC_AAC_LC_48K_STEREO, b"zaac"),
        (write_bits((SBR, 5), (6, 4), (2, 4), (3, 4), (2, 5), (0, 3)), b"zach"),
        (write_bits((PS, 5), (6, 4), (1, 4), (3, 4), (2, 5), (0, 3)), b"zacp"),
    ],
)
def test_audio_setup_information(asc: bytes, audio_type: bytes) -> None:
    """audio_type, priming 0, version 1, setup_data_length, AudioSpecificConfig (§2.3.2)."""
    assert audio_setup_information(asc) == audio_type + b"\x00\x00\x01" + bytes([len(asc)]) + asc


# ---------------------------------------------------------------------------------------------
# Segments


def synthetic_segment(language: str = "und") -> list[TsTrack]:
    big_idr = bytes([0x65, 0x88]) + b"\x00\x00\x03\x01\x7f" * 600  # emulation prevention in clear parts
    frames = [
        (3600, 0, True, [SEI, big_idr]),
        (3600, 0, False, [SLICE]),
        (3600, 0, False, [bytes([0x41]) + bytes(range(1, 40))]),  # 40 bytes: clear
        (3600, 0, False, [IDR, IDR[:100]]),  # two slices in one picture
    ]
    return [
        video_track(avc_track(), frames),
        audio_track(aac_track(language=language), [5, 16, 31, 32, 100, 300, 700] * 3),
    ]


def test_segment_decrypts_to_the_clear_segment() -> None:
    tracks = synthetic_segment()
    clear = demux(mux_segment(tracks, 7))
    enc = demux(mux_segment(tracks, 7, sample_aes=(KEY, IV)))
    check_counters(enc)
    assert [(p.pts, p.dts, p.random_access) for p in enc.pes[VIDEO_PID]] == [
        (p.pts, p.dts, p.random_access) for p in clear.pes[VIDEO_PID]
    ]
    encrypted = 0
    for c, e in zip(clear.pes[VIDEO_PID], enc.pes[VIDEO_PID], strict=True):
        units = split_annexb(e.payload)
        assert [decrypt_nal(u) for u in units] == split_annexb(c.payload)
        encrypted += sum(u != v for u, v in zip(units, split_annexb(c.payload), strict=True))
    assert encrypted == 4  # the big IDR, SLICE and both IDR slices; SPS, PPS, SEI, AUD stay clear
    for c, e in zip(clear.pes[AUDIO_PID], enc.pes[AUDIO_PID], strict=True):
        assert (c.pts, c.length) == (e.pts, e.length)
        clear_frames, enc_frames = adts_frames(c.payload), adts_frames(e.payload)
        assert [h for h, _ in enc_frames] == [h for h, _ in clear_frames]
        assert [decrypt_aac(r) for _, r in enc_frames] == [r for _, r in clear_frames]
    assert enc.packets[2:] != clear.packets[2:]


def test_pmt_signals_sample_aes() -> None:
    """§3: stream_type 0xDB with a private_data_indicator_descriptor 'zavc'; 0xCF with 'aacd' and a
    registration_descriptor 'apad' carrying the audio setup information; the language stays."""
    enc = demux(mux_segment(synthetic_segment("eng"), 0, sample_aes=(KEY, IV)))
    setup = b"zaac\x00\x00\x01\x02" + ASC_AAC_LC_48K_STEREO
    assert enc.streams == {
        VIDEO_PID: (0xDB, b"\x0f\x04zavc"),
        AUDIO_PID: (0xCF, b"\x0f\x04aacd" + b"\x05\x0eapad" + setup + b"\x0a\x04eng\x00"),
    }
    clear = demux(mux_segment(synthetic_segment("eng"), 0))
    assert clear.streams == {VIDEO_PID: (0x1B, b""), AUDIO_PID: (0x0F, b"\x0a\x04eng\x00")}


def test_sample_aes_refuses_other_codecs_and_bad_keys() -> None:
    hevc = video_track(hevc_track(), [(3600, 0, True, [bytes([0x26, 0x01]) + bytes(100)])])
    with pytest.raises(ProtectionError, match="'hvc1'"):
        mux_segment([hevc], 0, sample_aes=(KEY, IV))
    mux_segment([hevc], 0)  # clear HEVC is fine
    with pytest.raises(ProtectionError):
        mux_segment(synthetic_segment(), 0, sample_aes=(KEY, b""))


# ---------------------------------------------------------------------------------------------
# ffmpeg 5.1's HLS demuxer decrypts SAMPLE-AES TS (H.264 and AAC) itself


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Capture, Capture]:
    """4 s of H.264 (GOPs of 25 frames: 1 s CMAF fragments) and AAC from ffmpeg: 2 s of testsrc2,
    then 2 s of a still picture whose P slices are at most 48 bytes (left clear); -qp 10 makes slices
    with emulation prevention bytes."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not on PATH")
    folder = tmp_path_factory.mktemp("sample_aes")
    pictures = "testsrc2=size=320x180:rate=25:duration=2[a];smptebars=size=320x180:rate=25:duration=2[b]"
    video = run_ffmpeg(
        *("-filter_complex", f"{pictures};[a][b]concat=n=2:v=1:a=0"),
        *("-c:v", "libx264", "-preset", "veryfast", "-qp", "10", "-g", "25", "-f", "mp4", *CMAF_FLAGS),
        str(folder / "v.mp4"),
    )
    assert video.returncode == 0, video.stderr
    audio = run_ffmpeg(
        *lavfi_inputs(4),
        *("-map", "1:a", "-c:a", "aac", "-b:a", "64k", "-frag_duration", "1000000", "-f", "mp4", *CMAF_FLAGS),
        str(folder / "a.mp4"),
    )
    assert audio.returncode == 0, audio.stderr
    return _capture(folder / "v.mp4"), _capture(folder / "a.mp4")


def write_playlist(folder: Path, name: str, segments: list[bytes], key_line: str) -> Path:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", "#EXT-X-MEDIA-SEQUENCE:0"]
    lines += [key_line] if key_line else []
    for i, segment in enumerate(segments):
        (folder / f"{name}{i}.ts").write_bytes(segment)
        lines += ["#EXTINF:1.0,", f"{name}{i}.ts"]
    path = folder / f"{name}.m3u8"
    path.write_text("\n".join([*lines, "#EXT-X-ENDLIST", ""]))
    return path


def framemd5(playlist: Path) -> dict[str, list[str]]:
    """Decoded frame hashes per stream ("0" video, "1" audio), in presentation order."""
    result = run_ffmpeg("-allowed_extensions", "ALL", "-i", str(playlist), "-f", "framemd5", "-")
    assert result.returncode == 0, result.stderr
    out: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        if not line.startswith("#"):
            fields = [f.strip() for f in line.split(",")]
            out.setdefault(fields[0], []).append(fields[-1])
    return out


def test_ffmpeg_decodes_sample_aes_playlist(stream: tuple[Capture, Capture], tmp_path: Path) -> None:
    """ffmpeg decrypts each packet as it leaves its parser, with the key and IV of the segment it is
    reading at that moment; the access unit that ends a stream only leaves the parser after the last
    segment, when there is none, and stays encrypted. So the playlist has one segment more than the
    frames compared (all the video of segments 0 to 2, all the audio)."""
    video, audio = stream
    tracks = [[video.segment(i), audio.cut(i, i + 1)] for i in range(4)]
    protected = [
        u
        for ts in tracks[:3]
        for pes in demux(mux_segment(ts, 0)).pes[VIDEO_PID]
        for u in split_annexb(pes.payload)
        if u[0] & 0x1F in (1, 5)
    ]
    assert any(len(u) > 48 and b"\x00\x00\x03" in u for u in protected)  # re-escaped for ffmpeg
    assert any(len(u) <= 48 for u in protected)  # left clear
    (tmp_path / "key.bin").write_bytes(KEY)
    clear = write_playlist(tmp_path, "clear", [mux_segment(ts, i) for i, ts in enumerate(tracks)], "")
    enc_segments = [mux_segment(ts, i, sample_aes=(KEY, IV)) for i, ts in enumerate(tracks)]
    key_line = f'#EXT-X-KEY:METHOD=SAMPLE-AES,URI="key.bin",IV=0x{IV.hex()}'
    enc = write_playlist(tmp_path, "enc", enc_segments, key_line)
    expected, got = framemd5(clear), framemd5(enc)
    compared = sum(len(ts[0].samples) for ts in tracks[:3])
    assert compared == 75 and len(got["0"]) == len(expected["0"]) == 100
    assert got["0"][:compared] == expected["0"][:compared]
    assert len(expected["1"]) > 180 and got["1"] == expected["1"]
