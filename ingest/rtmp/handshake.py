"""The RTMP handshake, server side, sans-IO: bytes in, bytes out; no sockets, and randomness and time come
from callables the caller passes in.

Two handshakes share one layout (Adobe RTMP specification 1.0, §5.2):

* Simple (§5.2.1 to §5.2.5): C0/S0 are one version byte, 3 (§5.2.2). C1/S1 are 1536 bytes: time (4),
  zero (4), random (1528) (§5.2.3). S2 echoes C1 with time2 = when C1 was read; C2 echoes S1 (§5.2.4).
* Digest ("complex"; Flash Player 9+ and FMS 3+, not in Adobe's spec but widely described): C1 bytes
  4 to 7 carry the player version (ffmpeg sends 9.0.124.2) and C1 carries a 32-byte HMAC-SHA256 digest
  keyed with the text of the Flash Player key, at an offset derived from 4 bytes at 8 (scheme 0) or
  772 (scheme 1). S1 answers with a server version and a digest keyed with the text of the Flash Media
  Server key, in the same scheme; S2 is 1504 random bytes followed by their HMAC keyed with
  HMAC(full server key, C1's digest).

A C1 that claims a version but has no valid digest in either scheme (some encoders put junk there) gets
the simple answer. ffmpeg publishing does not check S1/S2; ffmpeg playing (``ffmpeg -i rtmp://…``) and
some hardware encoders do — :func:`verify_server_digest` makes the same checks.

C2 is read but not validated: many clients do not echo S1 exactly (wrong time fields), and in the
digest handshake C2 is not an echo at all but random bytes signed like S2. Its content changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable

RTMP_VERSION = 3
"""C0/S0: plain RTMP (§5.2.2)."""
PACKET_SIZE = 1536
"""C1, S1, C2 and S2 (§5.2.3, §5.2.4)."""
DIGEST_SIZE = 32
SERVER_VERSION = bytes((5, 0, 3, 1))
"""What S1 bytes 4 to 7 claim in the digest handshake: a plausible Flash Media Server version."""

_KEY_TAIL = bytes.fromhex("f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")
PLAYER_KEY = b"Genuine Adobe Flash Player 001" + _KEY_TAIL
"""62 bytes; C1's digest is keyed with the first 30 (the text), C2's with HMAC(all 62, S1's digest)."""
SERVER_KEY = b"Genuine Adobe Flash Media Server 001" + _KEY_TAIL
"""68 bytes; S1's digest is keyed with the first 36 (the text), S2's with HMAC(all 68, C1's digest)."""
PLAYER_KEY_TEXT = PLAYER_KEY[:30]
SERVER_KEY_TEXT = SERVER_KEY[:36]

_SCHEME_BASES = (8, 772)
_C0, _C1, _C2, _DONE = range(4)
_SIZES = {_C0: 1, _C1: PACKET_SIZE, _C2: PACKET_SIZE}


class HandshakeError(Exception):
    """The peer did not open with an RTMP handshake this server speaks."""


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def digest_offset(packet: bytes, scheme: int) -> int:
    """Where the digest of a C1 or S1 starts: the sum of the 4 bytes at the scheme's base (8 or 772),
    modulo 728, plus the base + 4. Scheme 0 puts it in 12..771, scheme 1 in 776..1535."""
    base = _SCHEME_BASES[scheme]
    return sum(packet[base : base + 4]) % 728 + base + 4


def _packet_digest(packet: bytes, offset: int, key: bytes) -> bytes:
    """HMAC-SHA256 over the packet without its 32 digest bytes."""
    return _hmac(key, packet[:offset] + packet[offset + DIGEST_SIZE :])


def find_digest(packet: bytes, key: bytes) -> tuple[int, bytes] | None:
    """The scheme and digest of a C1 (``key`` = :data:`PLAYER_KEY_TEXT`) or S1 (:data:`SERVER_KEY_TEXT`)
    whose digest verifies, scheme 0 tried first; None if neither does."""
    for scheme in (0, 1):
        offset = digest_offset(packet, scheme)
        digest = packet[offset : offset + DIGEST_SIZE]
        if hmac.compare_digest(digest, _packet_digest(packet, offset, key)):
            return scheme, digest
    return None


def sign_packet(packet: bytes, scheme: int, key: bytes) -> bytes:
    """``packet`` (a C1 or S1) with its digest written in place for ``scheme``."""
    offset = digest_offset(packet, scheme)
    return packet[:offset] + _packet_digest(packet, offset, key) + packet[offset + DIGEST_SIZE :]


def sign_response(random: bytes, peer_digest: bytes, full_key: bytes) -> bytes:
    """S2 (``full_key`` = :data:`SERVER_KEY`, C1's digest) or C2 (:data:`PLAYER_KEY`, S1's digest) of
    the digest handshake: 1504 random bytes, then their HMAC keyed with HMAC(full key, peer's digest)."""
    return random + _hmac(_hmac(full_key, peer_digest), random)


def verify_server_digest(c1: bytes, s1: bytes, s2: bytes) -> bool:
    """What a verifying player checks of the server's answer to its digest C1 (all three packets
    without C0/S0): S1 carries a valid server digest in either scheme, and S2 is signed with C1's digest.
    """
    client = find_digest(c1, PLAYER_KEY_TEXT)
    if client is None or find_digest(s1, SERVER_KEY_TEXT) is None or len(s2) != PACKET_SIZE:
        return False
    return hmac.compare_digest(s2, sign_response(s2[:-DIGEST_SIZE], client[1], SERVER_KEY))


def _check_c0(version: int) -> None:
    """§5.2.2: 3 is plain RTMP; 0 to 2 are deprecated, 4 to 31 reserved, 32 to 255 forbidden (so that RTMP is
    told apart from text protocols). Name the usual mistakes."""
    if version == RTMP_VERSION:
        return
    if version == 6:
        raise HandshakeError("C0 version 6 asks for RTMPE (encrypted RTMP), which is not supported")
    if version == 0x16:
        raise HandshakeError("first byte 0x16 is a TLS handshake: this is TLS (rtmps?), not RTMP")
    if 0x41 <= version <= 0x5A:
        raise HandshakeError(f"first byte {chr(version)!r}: this is HTTP (e.g. 'GET '), not RTMP")
    raise HandshakeError(f"C0 version {version} is not supported: only 3 (plain RTMP)")


def _uptime_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class ServerHandshake:
    """Answers C0+C1 with S0+S1+S2, then waits for C2.

    Feed bytes with :meth:`receive` in any split, write out :meth:`data_to_send`; once :attr:`done`,
    :meth:`leftover` hands over what followed C2 (the start of the chunk stream). Buffers at most
    C0+C1+C2 plus what arrived in the same :meth:`receive` call after C2.

    ``random(n)`` gives n random bytes; ``clock()`` gives the server's time in milliseconds (any
    epoch, taken modulo 2^32), read once when C1 is complete: it is S1's time (the epoch of the
    server's chunk timestamps, §5.2.3) and S2's time2 in the simple handshake (§5.2.4).

    After C1: ``digest`` tells which handshake was answered, ``client_version`` what C1 bytes 4 to 7 claim
    ("0.0.0.0" for a simple C1; any other value with ``digest`` False means the simple fallback),
    ``epoch`` is S1's time and ``peer_epoch`` C1's.
    """

    def __init__(
        self,
        *,
        random: Callable[[int], bytes] = os.urandom,
        clock: Callable[[], int] = _uptime_ms,
        version: bytes = SERVER_VERSION,
    ) -> None:
        self._random = random
        self._clock = clock
        self._version = version
        self._state = _C0
        self._buffer = bytearray()
        self._outgoing = bytearray()
        self.digest = False
        self.client_version = "0.0.0.0"
        self.epoch = 0
        self.peer_epoch = 0

    @property
    def done(self) -> bool:
        """C2 has been received."""
        return self._state == _DONE

    def receive(self, data: bytes) -> None:
        """Take the next bytes from the client. Raises :class:`HandshakeError` as soon as C0 is wrong."""
        if self.done:
            raise RuntimeError("the handshake is done: give further bytes to the chunk stream")
        self._buffer += data
        while not self.done and len(self._buffer) >= _SIZES[self._state]:
            if self._state == _C0:
                _check_c0(self._buffer[0])
            elif self._state == _C1:
                self._outgoing += self._answer(bytes(self._buffer[:PACKET_SIZE]))
            del self._buffer[: _SIZES[self._state]]
            self._state += 1

    def data_to_send(self) -> bytes:
        """The bytes to write now (S0+S1+S2 once C0+C1 are in, else nothing); each byte is given once."""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    def leftover(self) -> bytes:
        """Once :attr:`done`: the bytes received after C2, which belong to the chunk stream. Given once."""
        if not self.done:
            return b""
        out = bytes(self._buffer)
        self._buffer.clear()
        return out

    def _answer(self, c1: bytes) -> bytes:
        """S0+S1+S2 for ``c1``: digest if C1 claims a version and carries a valid digest, else simple."""
        now = (self._clock() & 0xFFFFFFFF).to_bytes(4, "big")
        self.epoch = int.from_bytes(now, "big")
        self.peer_epoch = int.from_bytes(c1[:4], "big")
        self.client_version = ".".join(str(b) for b in c1[4:8])
        found = find_digest(c1, PLAYER_KEY_TEXT) if any(c1[4:8]) else None
        self.digest = found is not None
        if found is None:
            s1 = now + bytes(4) + self._random(PACKET_SIZE - 8)
            s2 = c1[:4] + now + c1[8:]
        else:
            scheme, c1_digest = found
            s1 = sign_packet(now + self._version + self._random(PACKET_SIZE - 8), scheme, SERVER_KEY_TEXT)
            s2 = sign_response(self._random(PACKET_SIZE - DIGEST_SIZE), c1_digest, SERVER_KEY)
        return bytes((RTMP_VERSION,)) + s1 + s2
