"""RTMP handshake, server side: simple (RTMP 1.0 §5.2) and digest, in any split, against a real ffmpeg C1.

Digest C1s are built here from the published description (Flash Player key text, HMAC-SHA256 over the
packet without its digest), independently of the module's own signing helpers.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.rtmp.handshake import (
    PACKET_SIZE,
    SERVER_KEY,
    HandshakeError,
    ServerHandshake,
    verify_server_digest,
)

FAST = settings(max_examples=50, deadline=None, derandomize=True)
FFMPEG_C0C1 = Path(__file__).parent.parent / "data/rtmp/ffmpeg_c0c1.bin"
"""C0+C1 as ffmpeg 5.1 sends them when publishing (``ffmpeg … -f flv rtmp://…``), saved by a throwaway
TCP listener. ffmpeg seeds its C1 random with a constant, so only the time field (0 here) varies."""

PLAYER_TEXT = b"Genuine Adobe Flash Player 001"
FMS_TEXT = b"Genuine Adobe Flash Media Server 001"
FFMPEG_VERSION = bytes((9, 0, 124, 2))
CLOCK_MS = 0x01020304
TRAILER = b"\x03\x00\x00\x00\x00\x00\x20\x14chunk stream starts here"


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def server() -> ServerHandshake:
    return ServerHandshake(random=seeded(1), clock=lambda: CLOCK_MS)


def offset(packet: bytes, scheme: int) -> int:
    base = 8 if scheme == 0 else 772
    return sum(packet[base : base + 4]) % 728 + base + 4


def sign(packet: bytes, scheme: int, key: bytes) -> bytes:
    at = offset(packet, scheme)
    digest = hmac.new(key, packet[:at] + packet[at + 32 :], hashlib.sha256).digest()
    return packet[:at] + digest + packet[at + 32 :]


def simple_c1() -> bytes:
    return (1000).to_bytes(4, "big") + bytes(4) + seeded(2)(PACKET_SIZE - 8)


def digest_c1(scheme: int) -> bytes:
    """Built the way ffmpeg builds it (scheme 0): time, version 9.0.124.2, random, digest."""
    return sign(bytes(4) + FFMPEG_VERSION + seeded(3)(PACKET_SIZE - 8), scheme, PLAYER_TEXT)


def handshake(c1: bytes) -> tuple[ServerHandshake, bytes, bytes]:
    """Run C0+C1 through a fresh server; return it with S1 and S2 (S0 checked here)."""
    hs = server()
    hs.receive(b"\x03" + c1)
    out = hs.data_to_send()
    assert len(out) == 1 + 2 * PACKET_SIZE and out[0] == 3
    return hs, out[1 : 1 + PACKET_SIZE], out[1 + PACKET_SIZE :]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@FAST
@given(cuts=st.lists(st.integers(0, 5000), max_size=30))
def test_simple_handshake_in_any_split(cuts: list[int]) -> None:
    c1 = simple_c1()
    c2 = seeded(4)(PACKET_SIZE)
    hs = server()
    sent = b""
    for piece in split(b"\x03" + c1 + c2 + TRAILER, cuts):
        assert not hs.done
        hs.receive(piece)
        sent += hs.data_to_send()
    assert hs.done and hs.leftover() == TRAILER and hs.leftover() == b""
    assert not hs.digest and hs.client_version == "0.0.0.0" and hs.peer_epoch == 1000
    s1, s2 = sent[1 : 1 + PACKET_SIZE], sent[1 + PACKET_SIZE :]
    assert sent[0] == 3 and len(s2) == PACKET_SIZE
    assert s1 == CLOCK_MS.to_bytes(4, "big") + bytes(4) + seeded(1)(PACKET_SIZE - 8)
    assert s2[:4] == c1[:4] and s2[4:8] == CLOCK_MS.to_bytes(4, "big") and s2[8:] == c1[8:]


def test_answers_after_c1_and_is_done_only_after_the_last_byte_of_c2() -> None:
    hs = server()
    hs.receive(b"\x03" + simple_c1()[:-1])
    assert hs.data_to_send() == b""
    hs.receive(simple_c1()[-1:])
    assert len(hs.data_to_send()) == 1 + 2 * PACKET_SIZE and hs.data_to_send() == b""
    hs.receive(bytes(PACKET_SIZE - 1))
    assert not hs.done and hs.leftover() == b""
    hs.receive(b"\x00")
    assert hs.done and hs.leftover() == b""
    with pytest.raises(RuntimeError, match="chunk stream"):
        hs.receive(b"more")


@pytest.mark.parametrize("scheme", [0, 1])
def test_digest_handshake(scheme: int) -> None:
    c1 = digest_c1(scheme)
    hs, s1, s2 = handshake(c1)
    assert hs.digest and hs.client_version == "9.0.124.2"
    assert s1[:4] == CLOCK_MS.to_bytes(4, "big") and s1[4:8] == bytes((5, 0, 3, 1))
    assert sign(s1, scheme, FMS_TEXT) == s1, "S1 is signed with the FMS key text in C1's scheme"
    c1_digest = c1[offset(c1, scheme) : offset(c1, scheme) + 32]
    s2_key = hmac.new(FMS_TEXT + SERVER_KEY[36:], c1_digest, hashlib.sha256).digest()
    assert s2[-32:] == hmac.new(s2_key, s2[:-32], hashlib.sha256).digest()
    assert verify_server_digest(c1, s1, s2)
    hs.receive(seeded(5)(PACKET_SIZE) + TRAILER)
    assert hs.done and hs.leftover() == TRAILER


def test_digest_handshake_with_ffmpeg_c1() -> None:
    c0c1 = FFMPEG_C0C1.read_bytes()
    assert len(c0c1) == 1 + PACKET_SIZE and c0c1[0] == 3
    hs, s1, s2 = handshake(c0c1[1:])
    assert hs.digest and hs.client_version == "9.0.124.2"
    assert verify_server_digest(c0c1[1:], s1, s2)


def test_version_without_valid_digest_falls_back_to_simple() -> None:
    c1 = bytes(4) + FFMPEG_VERSION + seeded(6)(PACKET_SIZE - 8)
    hs, s1, s2 = handshake(c1)
    assert not hs.digest and hs.client_version == "9.0.124.2"
    assert s1[4:8] == bytes(4) and s2[8:] == c1[8:]
    assert not verify_server_digest(c1, s1, s2)


def test_verify_server_digest_rejects_a_wrong_s2_or_s1() -> None:
    c1 = digest_c1(0)
    _, s1, s2 = handshake(c1)
    assert not verify_server_digest(c1, s1, s2[:-1] + bytes((s2[-1] ^ 1,)))
    assert not verify_server_digest(c1, s1[:100] + bytes((s1[100] ^ 1,)) + s1[101:], s2)


def test_clock_is_taken_modulo_2_32() -> None:
    hs = ServerHandshake(random=seeded(1), clock=lambda: 2**32 + 5)
    hs.receive(b"\x03" + simple_c1())
    assert hs.epoch == 5 and hs.data_to_send()[1:5] == (5).to_bytes(4, "big")


@pytest.mark.parametrize(
    ("first", "message"),
    [
        (b"\x06", "RTMPE"),
        (b"GET / HTTP/1.1\r\n", "this is HTTP"),
        (b"\x16\x03\x01\x02\x00\x01", "this is TLS"),
        (b"\x00", "C0 version 0 is not supported"),
        (b"\x04", "C0 version 4 is not supported"),
        (b"\xff", "C0 version 255 is not supported"),
    ],
)
def test_bad_c0_is_refused_on_its_first_byte(first: bytes, message: str) -> None:
    hs = server()
    with pytest.raises(HandshakeError, match=message):
        hs.receive(first)
    assert hs.data_to_send() == b""
