"""HLS SAMPLE-AES for MPEG-2 transport streams: Apple's "MPEG-2 Stream Encryption Format for HTTP Live
Streaming" ([SampleEnc] of RFC 8216 §4.3.2.4, ``METHOD=SAMPLE-AES``), section numbers below.

Pure functions over one protected block each (§2.1): every protected block is encrypted with
AES-128-CBC, no padding, the IV reset to the segment's IV at the start of each block, so blocks do not
depend on one another and a segment encrypts to the same bytes in any origin process.

- H.264 (§2.2, Listing 2-1): the protected blocks are NAL units of type 1 and 5 longer than 48 bytes.
  Their first 32 bytes stay clear; then, while more than 16 bytes remain, one 16-byte block is
  encrypted and up to 144 bytes follow in the clear, so a NAL unit's last byte is always clear (and
  one of 48 bytes or fewer stays clear as a whole, emulation prevention untouched). The encryption
  works on the NAL unit as it stands in the byte stream, emulation prevention bytes included; the
  encrypted NAL unit is then given start code emulation prevention again (H.264 §7.4.1), which a
  decryptor undoes before decrypting.
- AAC (§2.3): the protected block is the ADTS frame after its header. Its first 16 bytes stay clear,
  all following whole 16-byte blocks are encrypted, a trailing partial block stays clear.

Signalling in the PMT (§3) is the muxer's: see :mod:`media.mpegts`; the audio setup information that
goes there (§2.3.2, in a registration descriptor) is built here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from Crypto.Cipher import AES

from media.aac import PS, SBR, AudioSpecificConfig
from media.model import Track
from media.protection import KEY_SIZE, ProtectionError

__all__ = [
    "SAMPLE_AES_CODECS",
    "SampleAes",
    "audio_setup_information",
    "sample_aes_supported",
]

SAMPLE_AES_CODECS = frozenset({"avc1", "avc3", "mp4a"})  # H.264 and AAC, as MPEG-TS carries them

BLOCK = 16
NAL_CLEAR_LEADER = 32  # §2.2: nal_unit_type_byte + 31-byte unencrypted_leader
NAL_PATTERN = 160  # §2.2: one encrypted 16-byte block, then up to 144 clear bytes
NAL_MAX_CLEAR_SIZE = 48  # §2.2: Listing 2-1 encrypts nothing in these; decryptors skip them whole
PROTECTED_NAL_TYPES = frozenset({1, 5})  # H.264 Table 7-1: non-IDR and IDR coded slices
AAC_CLEAR_LEADER = 16  # §2.3: the unencrypted_leader after the ADTS header

# H.264 §7.4.1: inside a NAL unit, 0x000000, 0x000001, 0x000002 and 0x000003 are escaped to
# 0x00000300 … 0x00000303. The match consumes the two zero bytes only, so a zero third byte starts
# the next run, as the byte-by-byte process of §7.4.1 does.
_NEEDS_ESCAPE = re.compile(rb"\x00\x00(?=[\x00-\x03])")


def sample_aes_supported(track: Track) -> bool:
    """Whether SAMPLE-AES in MPEG-TS covers the track's codec: H.264 and AAC (§2.2, §2.3; AC-3 and
    E-AC-3, which the format also covers, do not reach TS segments here)."""
    return track.codec in SAMPLE_AES_CODECS


@dataclass(frozen=True, slots=True, repr=False)
class SampleAes:
    """A SAMPLE-AES key and IV: the 16-byte key of the EXT-X-KEY and the IV of the segment (its
    ``IV`` attribute, or the media sequence number as a 128-bit big-endian integer, RFC 8216
    §5.2). ``repr`` shows neither."""

    key: bytes
    iv: bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEY_SIZE or len(self.iv) != BLOCK:
            raise ProtectionError("SAMPLE-AES needs a 16-byte key and a 16-byte IV")

    def __repr__(self) -> str:
        return "SampleAes(…)"

    def _cbc(self, data: bytes | bytearray) -> bytes:
        """AES-128-CBC over whole blocks, the chain starting from the IV (§2.1)."""
        return AES.new(self.key, AES.MODE_CBC, iv=self.iv).encrypt(data)

    def nal_unit(self, nal: bytes) -> bytes:
        """One H.264 NAL unit (header byte first, emulation prevention bytes in place, no start code)
        as it goes into the byte stream (§2.2): unchanged unless it is a protected block."""
        if len(nal) <= NAL_MAX_CLEAR_SIZE or nal[0] & 0x1F not in PROTECTED_NAL_TYPES:
            return nal
        count, columns = _block_columns(len(nal))
        out = bytearray(nal)
        plain = bytearray(count * BLOCK)
        for j, column in enumerate(columns):  # gather: byte j of every block
            plain[j::BLOCK] = out[column]
        cipher = self._cbc(plain)  # one CBC chain over the NAL unit's blocks, from the IV
        for j, column in enumerate(columns):  # scatter
            out[column] = cipher[j::BLOCK]
        return _NEEDS_ESCAPE.sub(b"\x00\x00\x03", out)

    def aac_frame(self, raw: bytes) -> bytes:
        """One AAC frame after its ADTS header (§2.3): 16 clear bytes, then every whole 16-byte block
        encrypted, the partial block at the end clear. The length does not change."""
        end = AAC_CLEAR_LEADER + (len(raw) - AAC_CLEAR_LEADER) // BLOCK * BLOCK
        if end <= AAC_CLEAR_LEADER:
            return raw
        return raw[:AAC_CLEAR_LEADER] + self._cbc(raw[AAC_CLEAR_LEADER:end]) + raw[end:]


def _block_columns(size: int) -> tuple[int, list[slice]]:
    """The encrypted blocks of a protected NAL unit of ``size`` (more than 48) bytes (§2.2, Listing
    2-1): blocks start every 160 bytes from byte 32, and one is encrypted only while more than 16
    bytes remain from its start ("if (bytes_remaining() > 16)"). Returns their number and 16 slices,
    the j-th taking byte j of every block (every 160th byte from 32 + j): 16 slice copies gather or
    scatter all the blocks, however many there are."""
    count = len(range(NAL_CLEAR_LEADER, size - BLOCK, NAL_PATTERN))
    last = NAL_CLEAR_LEADER + (count - 1) * NAL_PATTERN
    return count, [slice(NAL_CLEAR_LEADER + j, last + j + 1, NAL_PATTERN) for j in range(BLOCK)]


def audio_setup_information(asc: bytes) -> bytes:
    """audio_setup_information for AAC (§2.3.2): ``audio_type`` 'zaac' (AAC-LC and the other plain
    AAC object types), 'zach' (HE-AAC, explicit SBR) or 'zacp' (HE-AAC v2, explicit PS), 16-bit
    ``priming`` 0 (not known), 8-bit ``version`` 1, 8-bit ``setup_data_length`` and the
    AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) as ``setup_data``. Version 1 is what Apple's
    mediafilesegmenter writes (and Shaka Packager after it)."""
    object_type = AudioSpecificConfig.parse(asc).object_type
    audio_type = {SBR: b"zach", PS: b"zacp"}.get(object_type, b"zaac")
    if len(asc) > 0xFF:
        raise ProtectionError(f"an AudioSpecificConfig of {len(asc)} bytes exceeds setup_data_length")
    return audio_type + b"\x00\x00\x01" + bytes([len(asc)]) + asc
