"""The RTMP server session: the publish conversation, control messages and protocol errors."""

from __future__ import annotations

import random

import pytest

from ingest.rtmp import chunks
from ingest.rtmp.chunks import ChunkReader, Message
from ingest.rtmp.errors import RtmpError
from ingest.rtmp.session import (
    Connected,
    Event,
    MediaReceived,
    MetadataReceived,
    PlayRefused,
    PublishRequested,
    ServerSession,
    Unpublished,
)
from media.amf0 import EcmaArray, decode_all, encode
from tests.rtmp_client import Publisher, Tag, statuses


class Conversation:
    """A session and a test publisher talking through bytes, fed in random pieces."""

    def __init__(self, seed: int = 0, **options: int) -> None:
        self.session = ServerSession(random=lambda n: bytes(n), **options)
        self.client = Publisher()
        self.rng = random.Random(seed)
        self.replies = ChunkReader(max_chunk_size=1 << 24, max_message_size=1 << 24)
        self._handshaken = False
        self.received: list[Message] = []

    def send(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        pos = 0
        while pos < len(data):
            n = self.rng.randint(1, 300)
            events += self.session.receive(data[pos : pos + n])
            if self.session.error is not None:
                raise self.session.error
            pos += n
        self._read_replies()
        return events

    def _read_replies(self) -> None:
        out = self.session.data_to_send()
        if not self._handshaken:
            if len(out) < 3073:
                return
            out = out[3073:]
            self._handshaken = True
        self.received += self.replies.feed(out)

    def handshake(self) -> None:
        self.session.receive(self.client.c0c1())
        s0s1s2 = self.session.data_to_send()
        assert len(s0s1s2) == 3073 and s0s1s2[0] == 3
        s2 = s0s1s2[1 + 1536 :]
        assert s2[:4] + s2[8:] == self.client.c1[:4] + self.client.c1[8:]  # S2 echoes C1 (§5.2.4)
        self._handshaken = True
        self.send(self.client.c2(s0s1s2))

    def statuses(self) -> list[str]:
        return [str(s["code"]) for s in statuses(self.received)]

    def publishing(self, name: str = "stream") -> None:
        self.handshake()
        assert isinstance(self.send(self.client.connect("live"))[0], Connected)
        events = self.send(self.client.publish(name))
        assert events == [PublishRequested(1, name, "live")]
        self.session.accept_publish(1)
        self._read_replies()


@pytest.mark.parametrize("seed", range(8))
def test_publish_conversation_in_any_split(seed: int) -> None:
    talk = Conversation(seed)
    talk.handshake()
    events = talk.send(talk.client.connect("live", "rtmp://example/live"))
    assert events == [Connected("live", "rtmp://example/live", "FMLE/3.0 (test)")]
    types = [m.type_id for m in talk.received]
    assert types[:3] == [chunks.WINDOW_ACK_SIZE, chunks.SET_PEER_BANDWIDTH, chunks.SET_CHUNK_SIZE]
    assert talk.statuses() == ["NetConnection.Connect.Success"]
    events = talk.send(talk.client.publish("stream?t=secret"))
    assert events == [PublishRequested(1, "stream?t=secret", "live")]
    result = decode_all(talk.received[-1].payload)
    assert result[0] == "_result" and result[3] == 1.0  # createStream's stream id
    talk.session.accept_publish(1)
    talk._read_replies()
    assert talk.statuses()[-1] == "NetStream.Publish.Start"
    begin = [m for m in talk.received if m.type_id == chunks.USER_CONTROL]
    assert begin and begin[-1].payload == bytes(2) + (1).to_bytes(4, "big")

    meta = talk.client.writer.write(
        Message(
            chunks.AMF0_DATA,
            1,
            0,
            encode("@setDataFrame", "onMetaData", EcmaArray(videodatarate=2500.0)),
            5,
        )
    )
    video = talk.client.tag(Tag(9, 0, b"\x17\x00\x00\x00\x00config"), 0)
    audio = talk.client.tag(Tag(8, 0, b"\xaf\x01frame"), 0x01000005)
    events = talk.send(meta + video + audio)
    assert events == [
        MetadataReceived(1, {"videodatarate": 2500.0}),
        MediaReceived(1, 9, 0, b"\x17\x00\x00\x00\x00config"),
        MediaReceived(1, 8, 0x01000005, b"\xaf\x01frame"),
    ]
    events = talk.send(talk.client.unpublish("stream"))
    assert events == [Unpublished(1, "FCUnpublish")]


def test_reject_sends_an_error_status() -> None:
    talk = Conversation()
    talk.handshake()
    talk.send(talk.client.connect("live"))
    talk.send(talk.client.publish("stream"))
    talk.session.reject_publish(1, "NetStream.Publish.Unauthorized", "Unauthorized: the token is wrong")
    talk._read_replies()
    info = list(statuses(talk.received))[-1]
    assert info == {
        "level": "error",
        "code": "NetStream.Publish.Unauthorized",
        "description": "Unauthorized: the token is wrong",
    }


def test_media_before_publish_is_an_error() -> None:
    talk = Conversation()
    talk.handshake()
    talk.send(talk.client.connect("live"))
    with pytest.raises(RtmpError, match="video on message stream 1 before a successful publish"):
        talk.send(talk.client.tag(Tag(9, 0, b"\x17\x01"), 0))


def test_command_before_connect_is_an_error() -> None:
    talk = Conversation()
    talk.handshake()
    with pytest.raises(RtmpError, match="'createStream' before connect"):
        talk.send(talk.client.command("createStream", None))


def test_unknown_message_type_is_an_error() -> None:
    talk = Conversation()
    talk.publishing()
    with pytest.raises(RtmpError, match="unknown message type 7"):
        talk.send(talk.client.writer.write(Message(7, 1, 0, b"??", 4)))


def test_malformed_amf_is_an_error() -> None:
    talk = Conversation()
    talk.handshake()
    with pytest.raises(RtmpError, match="malformed AMF0 command"):
        talk.send(talk.client.writer.write(Message(chunks.AMF0_COMMAND, 0, 0, b"\x02\x00\x09conn", 3)))


def test_ping_is_answered() -> None:
    talk = Conversation()
    talk.publishing()
    ping = (6).to_bytes(2, "big") + (1234).to_bytes(4, "big")
    talk.send(talk.client.writer.write(Message(chunks.USER_CONTROL, 0, 0, ping, 2)))
    assert talk.received[-1].payload == (7).to_bytes(2, "big") + (1234).to_bytes(4, "big")


def test_acknowledgement_after_the_peer_window() -> None:
    talk = Conversation()
    talk.publishing()
    window = talk.client.writer.write(Message(chunks.WINDOW_ACK_SIZE, 0, 0, (1000).to_bytes(4, "big"), 2))
    talk.send(window + talk.client.tag(Tag(8, 0, b"\xaf\x01" + bytes(2000)), 0))
    acks = [m for m in talk.received if m.type_id == chunks.ACKNOWLEDGEMENT]
    sequence = [int.from_bytes(m.payload, "big") for m in acks]
    assert len(sequence) >= 2 and sequence == sorted(sequence)
    assert talk.session.received - 1000 - 300 < sequence[-1] <= talk.session.received


def test_play_is_refused() -> None:
    talk = Conversation()
    talk.handshake()
    talk.send(talk.client.connect("live"))
    events = talk.send(talk.client.command("createStream", None) + talk.client.command("play", None, "x"))
    assert events == [PlayRefused("x")]
    assert talk.statuses()[-1] == "NetStream.Play.Failed"


def test_aggregate_messages_are_split() -> None:
    talk = Conversation()
    talk.publishing()

    def tag(type_id: int, stamp: int, body: bytes) -> bytes:
        head = bytes([type_id]) + len(body).to_bytes(3, "big") + stamp.to_bytes(3, "big") + bytes(4)
        return head + body + (11 + len(body)).to_bytes(4, "big")

    body = tag(9, 100, b"\x27\x01v1") + tag(8, 120, b"\xaf\x01a1")
    events = talk.send(talk.client.writer.write(Message(chunks.AGGREGATE, 1, 5000, body, 6)))
    assert events == [MediaReceived(1, 9, 5000, b"\x27\x01v1"), MediaReceived(1, 8, 5020, b"\xaf\x01a1")]


def test_unknown_commands_get_an_error_result() -> None:
    talk = Conversation()
    talk.handshake()
    talk.send(talk.client.connect("live"))
    talk.send(talk.client.command("mystery", None))
    assert talk.statuses()[-1] == "NetConnection.Call.Failed"


def test_second_connect_is_an_error() -> None:
    talk = Conversation()
    talk.handshake()
    talk.send(talk.client.connect("live"))
    with pytest.raises(RtmpError, match="second connect"):
        talk.send(talk.client.command("connect", {"app": "x"}))
