"""Content protection: schemes, content keys and DRM system data, shared by every packager.

Schemes (what a request is encrypted with):

- ``aes-128``: HLS whole-segment AES-128-CBC with PKCS#7 padding (RFC 8216 §5.2);
- ``sample-aes``: HLS SAMPLE-AES (Apple's MPEG-2 Stream Encryption Format for TS; ``cbcs`` for fMP4);
- ``cenc``: ISO/IEC 23001-7 §10.1, AES-CTR, NAL video subsample-encrypted;
- ``cbcs``: ISO/IEC 23001-7 §10.4, AES-CBC with a 1:9 pattern for video and a constant IV.

A key's bytes never leave this module's objects in text form: ``repr`` shows the KID only.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from enum import StrEnum

from media.errors import MediaError


class ProtectionError(MediaError):
    """A key, key list or CPIX document that cannot be used, or a scheme a format cannot carry.

    Messages name the option or element, never key material."""


class Scheme(StrEnum):
    NONE = "none"
    AES_128 = "aes-128"
    SAMPLE_AES = "sample-aes"
    CENC = "cenc"
    CBCS = "cbcs"


KEY_SIZE = 16


@dataclass(frozen=True, slots=True, repr=False)
class ContentKey:
    """A content key: 16-byte ``kid`` and ``key``; ``iv`` is an explicit 16-byte IV (the ``cbcs``
    constant IV, the HLS ``IV`` attribute) or empty when the packager derives one."""

    kid: bytes
    key: bytes
    iv: bytes = b""

    def __post_init__(self) -> None:
        if len(self.kid) != KEY_SIZE or len(self.key) != KEY_SIZE or len(self.iv) not in (0, 16):
            raise ProtectionError(
                "a content key needs a 16-byte KID, a 16-byte key and an IV of 0 or 16 bytes"
            )

    def __repr__(self) -> str:
        return f"ContentKey(kid={self.kid_uuid})"

    @property
    def kid_uuid(self) -> str:
        """The KID in the UUID form DASH's ``cenc:default_KID`` uses (ISO/IEC 23001-7 §11.1)."""
        return str(uuid.UUID(bytes=self.kid))

    def constant_iv(self) -> bytes:
        """The ``cbcs`` constant IV (§10.4.1): the explicit IV, else one derived from the KID, so every
        origin process encrypts the same segment to the same bytes."""
        return self.iv or hashlib.sha256(b"headwater cbcs iv" + self.kid).digest()[:16]


@dataclass(frozen=True, slots=True)
class DrmSystem:
    """What one DRM system needs signalled for one key: a ``pssh`` box for the init segment
    (ISO/IEC 23001-7 §8.1) and the manifest forms a CPIX document may carry."""

    system_id: bytes  # 16 bytes (the DRM system's UUID)
    kid: bytes
    pssh: bytes = b""  # a whole pssh box, or empty
    content_protection: str = ""  # DASH ContentProtection child elements (CPIX ContentProtectionData)
    hls_signaling: str = ""  # an EXT-X-KEY line for media playlists (CPIX HLSSignalingData)

    @property
    def system_uuid(self) -> str:
        return str(uuid.UUID(bytes=self.system_id))


def parse_uuid(text: str, what: str) -> bytes:
    """A KID or system ID written as 32 hex digits or as a UUID (with dashes, braces optional)."""
    cleaned = text.strip().strip("{}").replace("-", "")
    try:
        value = bytes.fromhex(cleaned)
    except ValueError:
        raise ProtectionError(f"{what} is not 32 hexadecimal digits or a UUID") from None
    if len(value) != KEY_SIZE:
        raise ProtectionError(f"{what} must be 16 bytes, got {len(value)}")
    return value


def parse_hex_key(text: str, what: str) -> bytes:
    """16 bytes written as 32 hex digits; the message never repeats the text (it may be a key)."""
    try:
        value = bytes.fromhex(text.strip())
    except ValueError:
        raise ProtectionError(f"{what} is not hexadecimal") from None
    if len(value) != KEY_SIZE:
        raise ProtectionError(f"{what} must be 16 bytes (32 hex digits), got {len(value)} bytes")
    return value


def derived_key(seed: bytes, point: str, kind: str, period: int) -> ContentKey:
    """The key of a rotation ``period`` of one track kind of one publishing point, derived from a
    secret ``seed`` with HMAC-SHA256, so that every origin process holding the seed agrees on it and
    the key server needs no state. The KID ends with the period number, which lets the key server
    find the period from the KID alone (:func:`derived_key_of_kid`)."""
    label = f"kid|{point}|{kind}|{period}".encode()
    kid = hmac.new(seed, label, hashlib.sha256).digest()[:8] + period.to_bytes(8, "big")
    key = hmac.new(seed, b"key|" + kid, hashlib.sha256).digest()[:16]
    return ContentKey(kid, key)


def derived_key_of_kid(seed: bytes, point: str, kinds: tuple[str, ...], kid: bytes) -> ContentKey | None:
    """The derived key whose KID is ``kid``, or None when ``kid`` is not one of this point's."""
    if len(kid) != KEY_SIZE:
        return None
    period = int.from_bytes(kid[8:], "big")
    for kind in kinds:
        found = derived_key(seed, point, kind, period)
        if hmac.compare_digest(found.kid, kid):
            return found
    return None
