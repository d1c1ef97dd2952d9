"""The server side of one RTMP connection, with no I/O: handshake, chunk stream, protocol control
and the NetConnection / NetStream commands a publisher sends (Adobe RTMP 1.0 §5-§7).

Feed it the bytes the peer sent with :meth:`ServerSession.receive`; it returns events (a publish
request, media, metadata, the end of a publish) and queues its replies for
:meth:`ServerSession.data_to_send`. The server decides on publish requests with
:meth:`accept_publish` / :meth:`reject_publish`; everything else the session answers itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ingest.rtmp import chunks
from ingest.rtmp.chunks import ChunkReader, ChunkWriter, Message, u32_payload
from ingest.rtmp.errors import RtmpError
from ingest.rtmp.handshake import HandshakeError, ServerHandshake
from media.amf0 import AmfError, Value, command, decode_all

WINDOW = 2_500_000  # Window Acknowledgement Size and peer bandwidth we announce (§5.4.4, §5.4.5)
CONTROL_CHUNK_STREAM = 2  # §5.4: protocol control messages use chunk stream 2, message stream 0
COMMAND_CHUNK_STREAM = 3
STATUS_CHUNK_STREAM = 5

# User Control events (§6.2, §7.1.7)
STREAM_BEGIN = 0
PING_REQUEST = 6
PING_RESPONSE = 7

MAX_STREAMS = 16  # createStream calls one connection may make
FMS_VERSION = "FMS/3,5,7,7009"


@dataclass(frozen=True, slots=True)
class Connected:
    """``connect`` succeeded (the session has replied): the application and the URL the client used."""

    app: str
    tc_url: str
    flash_version: str


@dataclass(frozen=True, slots=True)
class PublishRequested:
    """``publish``: answer with :meth:`ServerSession.accept_publish` or :meth:`reject_publish`."""

    stream_id: int
    name: str
    kind: str  # live, record, append


@dataclass(frozen=True, slots=True)
class MediaReceived:
    """An audio (8) or video (9) message of a stream being published."""

    stream_id: int
    type_id: int
    timestamp: int  # 32-bit milliseconds as sent
    payload: bytes


@dataclass(frozen=True, slots=True)
class MetadataReceived:
    """``@setDataFrame onMetaData`` (or a bare ``onMetaData``)."""

    stream_id: int
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Unpublished:
    """The publisher ended a stream (``FCUnpublish``, ``closeStream``, ``deleteStream``)."""

    stream_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class PlayRefused:
    """The client asked to play; Headwater plays out over HTTP only, and has told it so."""

    name: str


Event = Connected | PublishRequested | MediaReceived | MetadataReceived | Unpublished | PlayRefused


class ServerSession:
    """One connection's protocol state."""

    def __init__(
        self,
        *,
        chunk_size: int = 4096,
        max_chunk_size: int = 1 << 24,
        max_message_size: int = 1 << 24,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.handshake = ServerHandshake(random=random)
        self.reader = ChunkReader(max_chunk_size=max_chunk_size, max_message_size=max_message_size)
        self.writer = ChunkWriter()
        self.out_chunk_size = chunk_size
        self._out = bytearray()
        self.connected = False
        self.app = ""
        self.tc_url = ""
        self.streams: set[int] = set()  # created with createStream
        self.publishing: dict[int, str] = {}  # stream id → name, once accepted
        self._pending: dict[int, str] = {}  # publish asked, not yet answered
        self._held: list[Message] = []  # messages that came behind a pending publish
        self.error: RtmpError | None = None  # the protocol error that ends this connection
        self.received = 0  # bytes after the handshake (§5.4.3 sequence number)
        self._acked = 0
        self.peer_window = WINDOW

    # -- input -------------------------------------------------------------------------------

    def receive(self, data: bytes) -> list[Event]:
        """Bytes from the peer, in any pieces. When they break the protocol, the events before the
        fault are returned and :attr:`error` is set: handle them, then close the connection (a
        further call raises the error)."""
        if self.error is not None:
            raise self.error
        if not self.handshake.done:
            try:
                self.handshake.receive(data)
            except HandshakeError as exc:
                raise RtmpError(f"handshake: {exc}") from None
            self._out += self.handshake.data_to_send()
            if not self.handshake.done:
                return []
            data = self.handshake.leftover()
            if not data:
                return []
        self.received += len(data)
        events = self._process(self.reader.feed(data))
        self.error = self.error or self.reader.error
        if self.received - self._acked >= self.peer_window:
            self._acked = self.received
            self._control(chunks.ACKNOWLEDGEMENT, (self.received & 0xFFFFFFFF).to_bytes(4, "big"))
        return events

    def _process(self, messages: list[Message]) -> list[Event]:
        """Handle messages in order; while a publish awaits the server's answer, hold the rest (an
        encoder may send media right behind ``publish``) until :meth:`accept_publish`. A protocol
        error is kept in :attr:`error` and the events before it are returned: media that came
        before the bad message is still stored."""
        events: list[Event] = []
        for i, message in enumerate(messages):
            if self.error is not None:
                break
            if self._pending:
                self._held += messages[i:]
                if sum(len(m.payload) for m in self._held) > self.reader.max_message_size:
                    raise RtmpError(
                        "the encoder sent more than a message's worth before publish was answered"
                    )
                break
            try:
                events += self._on_message(message)
            except RtmpError as exc:
                self.error = exc
        return events

    def _on_message(self, message: Message) -> list[Event]:
        type_id = message.type_id
        payload = message.payload
        if type_id in (chunks.SET_CHUNK_SIZE, chunks.ABORT, chunks.ACKNOWLEDGEMENT):
            return []  # the first two are applied by the reader
        if type_id == chunks.WINDOW_ACK_SIZE:
            self.peer_window = max(u32_payload(message, "Window Acknowledgement Size"), 1)
            return []
        if type_id == chunks.SET_PEER_BANDWIDTH:
            return []
        if type_id == chunks.USER_CONTROL:
            self._user_control(payload)
            return []
        if type_id in (chunks.AMF0_COMMAND, chunks.AMF3_COMMAND):
            return self._command(message, payload if type_id == chunks.AMF0_COMMAND else payload[1:])
        if type_id in (chunks.AMF0_DATA, chunks.AMF3_DATA):
            return self._data(message.stream_id, payload if type_id == chunks.AMF0_DATA else payload[1:])
        if type_id in (chunks.AUDIO, chunks.VIDEO):
            self._check_publishing(message.stream_id, type_id)
            return [MediaReceived(message.stream_id, type_id, message.timestamp, payload)]
        if type_id == chunks.AGGREGATE:
            return self._aggregate(message)
        raise RtmpError(f"unknown message type {type_id}", offset=self.reader.offset)

    def _check_publishing(self, stream_id: int, type_id: int) -> None:
        if stream_id not in self.publishing:
            kind = "audio" if type_id == chunks.AUDIO else "video"
            raise RtmpError(f"{kind} on message stream {stream_id} before a successful publish")

    def _user_control(self, payload: bytes) -> None:
        if len(payload) < 2:
            raise RtmpError(f"User Control message of {len(payload)} bytes")
        if int.from_bytes(payload[:2], "big") == PING_REQUEST:
            self._control(chunks.USER_CONTROL, PING_RESPONSE.to_bytes(2, "big") + payload[2:6])

    def _aggregate(self, message: Message) -> list[Event]:
        """An aggregate message (§7.1.6): FLV tags back to back, timed relative to the first one."""
        events: list[Event] = []
        body = message.payload
        pos = 0
        base: int | None = None
        while pos < len(body):
            if pos + 11 > len(body):
                raise RtmpError("aggregate message ends inside a tag header")
            type_id = body[pos]
            size = int.from_bytes(body[pos + 1 : pos + 4], "big")
            stamp = int.from_bytes(body[pos + 4 : pos + 7], "big") | body[pos + 7] << 24
            if pos + 11 + size > len(body):
                raise RtmpError("aggregate message ends inside a tag")
            data = body[pos + 11 : pos + 11 + size]
            base = stamp if base is None else base
            timestamp = (message.timestamp + stamp - base) & 0xFFFFFFFF
            if type_id in (chunks.AUDIO, chunks.VIDEO):
                self._check_publishing(message.stream_id, type_id)
                events.append(MediaReceived(message.stream_id, type_id, timestamp, data))
            elif type_id == chunks.AMF0_DATA:
                events += self._data(message.stream_id, data)
            pos += 11 + size + 4  # the tag, then its PreviousTagSize
        return events

    # -- commands (§7.2) -----------------------------------------------------------------------

    def _command(self, message: Message, payload: bytes) -> list[Event]:
        try:
            values = decode_all(payload)
        except AmfError as exc:
            raise RtmpError(f"malformed AMF0 command: {exc}") from None
        if len(values) < 2 or not isinstance(values[0], str) or not isinstance(values[1], (int, float)):
            raise RtmpError("a command message needs a name and a transaction id")
        name, txn, args = values[0], float(values[1]), values[2:]
        if name == "connect":
            return self._connect(txn, args)
        if not self.connected:
            raise RtmpError(f"command {name!r} before connect")
        stream_id = message.stream_id
        if name == "createStream":
            if len(self.streams) >= MAX_STREAMS:
                raise RtmpError(f"more than {MAX_STREAMS} streams on one connection")
            new_id = max(self.streams, default=0) + 1
            self.streams.add(new_id)
            self._call("_result", txn, None, float(new_id))
            return []
        if name == "publish":
            publish_name = _string(args, 1)
            if not publish_name:
                self._status(stream_id, "error", "NetStream.Publish.BadName", "publish needs a stream name")
                return []
            if stream_id in self.publishing or stream_id in self._pending:
                raise RtmpError(f"a second publish on message stream {stream_id}")
            if stream_id not in self.streams:
                raise RtmpError(f"publish on message stream {stream_id}, which createStream did not make")
            self._pending[stream_id] = publish_name
            return [PublishRequested(stream_id, publish_name, _string(args, 2) or "live")]
        if name in ("FCUnpublish", "closeStream", "deleteStream"):
            if name == "FCUnpublish":
                target = self._by_name(_string(args, 1))
            elif name == "deleteStream":
                number = args[1] if len(args) > 1 else None
                target = int(number) if isinstance(number, (int, float)) else None
            else:
                target = stream_id
            if target in self.publishing:
                del self.publishing[target]
                if name == "deleteStream":
                    self.streams.discard(target)
                return [Unpublished(target, name)]
            if name == "deleteStream" and target is not None:
                self.streams.discard(target)
            return []
        if name in ("play", "play2"):
            play_name = _string(args, 1)
            self._status(
                stream_id,
                "error",
                "NetStream.Play.Failed",
                "Headwater takes RTMP for publishing only; play this stream over HLS, DASH or Smooth",
            )
            return [PlayRefused(play_name)]
        if name in ("releaseStream", "FCPublish", "getStreamLength", "_checkbw", "FCSubscribe"):
            return []  # nothing to do; peers do not wait for an answer
        if txn:
            self._call(
                "_error",
                txn,
                None,
                {
                    "level": "error",
                    "code": "NetConnection.Call.Failed",
                    "description": f"unknown command {name}",
                },
            )
        return []

    def _connect(self, txn: float, args: list[Value]) -> list[Event]:
        if self.connected:
            raise RtmpError("a second connect on one connection")
        props = args[0] if args and isinstance(args[0], dict) else {}
        self.app = str(props.get("app") or "")
        self.tc_url = str(props.get("tcUrl") or "")
        self.connected = True
        self._control(chunks.WINDOW_ACK_SIZE, WINDOW.to_bytes(4, "big"))
        self._control(chunks.SET_PEER_BANDWIDTH, WINDOW.to_bytes(4, "big") + b"\x02")
        self._control(chunks.SET_CHUNK_SIZE, self.out_chunk_size.to_bytes(4, "big"))
        self.writer.chunk_size = self.out_chunk_size
        self._call(
            "_result",
            txn,
            {"fmsVer": FMS_VERSION, "capabilities": 31.0, "mode": 1.0},
            {
                "level": "status",
                "code": "NetConnection.Connect.Success",
                "description": "Connection succeeded.",
                "objectEncoding": 0.0,  # AMF0 only, whatever the client offers
            },
        )
        return [Connected(self.app, self.tc_url, str(props.get("flashVer") or ""))]

    def _data(self, stream_id: int, payload: bytes) -> list[Event]:
        try:
            values = decode_all(payload)
        except AmfError as exc:
            raise RtmpError(f"malformed AMF0 data message: {exc}") from None
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            return [MetadataReceived(stream_id, dict(values[1]))]
        return []

    def _by_name(self, name: str) -> int | None:
        bare = name.partition("?")[0]
        return next((sid for sid, n in self.publishing.items() if n.partition("?")[0] == bare), None)

    # -- decisions -------------------------------------------------------------------------------

    def accept_publish(self, stream_id: int) -> list[Event]:
        """Start the publish: Stream Begin, then ``onStatus NetStream.Publish.Start``, which
        encoders wait for before they send media. Returns the events of messages held meanwhile."""
        name = self._pending.pop(stream_id)
        self.publishing[stream_id] = name
        self._control(chunks.USER_CONTROL, STREAM_BEGIN.to_bytes(2, "big") + stream_id.to_bytes(4, "big"))
        self._status(
            stream_id, "status", "NetStream.Publish.Start", f"{name.partition('?')[0]} is now published"
        )
        held, self._held = self._held, []
        return self._process(held)

    def reject_publish(self, stream_id: int, code: str, description: str) -> None:
        """Refuse the publish; the server should close the connection (held messages are dropped)."""
        self._pending.pop(stream_id, None)
        self._held.clear()
        self._status(stream_id, "error", code, description)

    # -- output ---------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def _send(self, message: Message) -> None:
        self._out += self.writer.write(message)

    def _control(self, type_id: int, payload: bytes) -> None:
        self._send(Message(type_id, 0, 0, payload, CONTROL_CHUNK_STREAM))

    def _call(self, name: str, txn: float, *args: Value) -> None:
        self._send(Message(chunks.AMF0_COMMAND, 0, 0, command(name, txn, *args), COMMAND_CHUNK_STREAM))

    def _status(self, stream_id: int, level: str, code: str, description: str) -> None:
        info: dict[str, Value] = {"level": level, "code": code, "description": description}
        body = command("onStatus", 0.0, None, info)
        self._send(Message(chunks.AMF0_COMMAND, stream_id, 0, body, STATUS_CHUNK_STREAM))


def _string(args: list[Value], index: int) -> str:
    value = args[index] if len(args) > index else None
    return value if isinstance(value, str) else ""
