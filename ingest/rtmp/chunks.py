"""The RTMP chunk stream (Adobe RTMP 1.0 §5.3): splitting messages into chunks and putting them back
together, with no I/O.

A :class:`ChunkReader` takes the bytes that follow the handshake in any pieces and returns whole
messages; a :class:`ChunkWriter` turns messages into chunks. Both keep per-chunk-stream state, as the
header compression of §5.3.1.2 requires.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.rtmp.errors import RtmpError

DEFAULT_CHUNK_SIZE = 128  # §5.4.1: until a Set Chunk Size arrives
MIN_CHUNK_SIZE = 128  # smaller sizes are legal but serve only to multiply per-chunk overhead
EXTENDED = 0xFFFFFF  # a 24-bit timestamp field holding this value is followed by 32 bits (§5.3.1.3)
MAX_CHUNK_STREAMS = 64  # distinct chunk stream ids one connection may use; encoders use a handful

# Message types (§5.4, §7.1)
SET_CHUNK_SIZE = 1
ABORT = 2
ACKNOWLEDGEMENT = 3
USER_CONTROL = 4
WINDOW_ACK_SIZE = 5
SET_PEER_BANDWIDTH = 6
AUDIO = 8
VIDEO = 9
AMF3_DATA = 15
AMF3_COMMAND = 17
AMF0_DATA = 18
AMF0_COMMAND = 20
AGGREGATE = 22
_HEADER_SIZES = (11, 7, 3, 0)  # message header bytes for chunk formats 0-3 (§5.3.1.2)


@dataclass(frozen=True, slots=True)
class Message:
    """One RTMP message (§5.1 / §6.1): ``timestamp`` is the 32-bit value as the peer sent it."""

    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes
    chunk_stream: int = 0


class _ChunkStream:
    """What a chunk stream remembers between chunks (§5.3.1.2: later formats inherit these)."""

    __slots__ = ("delta", "extended", "length", "payload", "stream_id", "timestamp", "type_id")

    def __init__(self) -> None:
        self.timestamp = 0  # of the current (or last) message
        self.delta = 0  # the timestamp field of the last header, reused by format 3
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.extended = False  # the last header carried an extended timestamp
        self.payload = bytearray()  # of the current message so far

    @property
    def received(self) -> int:
        return len(self.payload)

    @property
    def in_message(self) -> bool:
        return bool(self.payload)


class ChunkReader:
    """Reassembles messages from chunks. Limits: the chunk size a peer may set, the length a message
    may declare, the number of chunk streams, and the bytes of partial messages held at once (two
    messages' worth: audio and video interleave); crossing one raises :class:`RtmpError`."""

    def __init__(self, *, max_chunk_size: int, max_message_size: int) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.max_chunk_size = max_chunk_size
        self.max_message_size = max_message_size
        self._buffer = bytearray()
        self._streams: dict[int, _ChunkStream] = {}
        self._partial = 0  # payload bytes of unfinished messages, over all chunk streams
        self.offset = 0  # bytes consumed so far, for error messages
        self.error: RtmpError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held: a partial chunk plus the partial messages of every chunk stream."""
        return len(self._buffer) + self._partial

    def set_chunk_size(self, size: int) -> None:
        """Apply the peer's Set Chunk Size (§5.4.1), between ``MIN_CHUNK_SIZE`` and our limit."""
        if not MIN_CHUNK_SIZE <= size <= self.max_chunk_size:
            raise RtmpError(
                f"Set Chunk Size {size} is outside {MIN_CHUNK_SIZE}..{self.max_chunk_size} "
                "(ingest.rtmp_max_chunk_size)"
            )
        self.chunk_size = size

    def abort(self, chunk_stream: int) -> None:
        """Drop the partial message of a chunk stream (§5.4.2)."""
        state = self._streams.get(chunk_stream)
        if state is not None:
            self._partial -= state.received
            state.payload = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        """Take more bytes; return the messages they complete, in order. When the bytes break the
        protocol, the messages before the fault are returned and :attr:`error` is set; the next
        call raises it."""
        if self.error is not None:
            raise self.error
        self._buffer += data
        messages: list[Message] = []
        pos = 0
        buf = self._buffer
        try:
            while True:
                used, message = self._continuation(buf, pos)
                if used < 0:
                    used, message = self._chunk(buf, pos)
                if not used:
                    break
                pos += used
                if message is not None:
                    messages.append(message)
                    # Both apply to the very next chunk, which may already be in the buffer.
                    if message.type_id == SET_CHUNK_SIZE:
                        self.set_chunk_size(u32_payload(message, "Set Chunk Size") & 0x7FFFFFFF)
                    elif message.type_id == ABORT:
                        self.abort(u32_payload(message, "Abort"))
        except RtmpError as exc:
            self.error = exc
        finally:
            del buf[:pos]
            self.offset += pos
        return messages

    def _continuation(self, buf: bytearray, pos: int) -> tuple[int, Message | None]:
        """The common case, quickly: format-3 chunks continuing a message, without an extended
        timestamp, as many in a row as the buffer holds. (bytes used, completed message); (0, None)
        when the chunk is incomplete; (-1, None) when it is anything else."""
        if pos >= len(buf):
            return 0, None
        first = buf[pos]
        state = self._streams.get(first & 0x3F) if first >= 0xC2 else None
        if state is None or not state.payload or state.extended:
            return -1, None
        payload = state.payload
        length, size, end = state.length, self.chunk_size, len(buf)
        used = 0
        while True:  # this message's chunks back to back: one call for all of them
            take = min(size, length - len(payload))
            if pos + used + 1 + take > end:
                return used, None
            if self._partial + take > 2 * self.max_message_size:
                return used or -1, None  # the general path raises the error
            payload += buf[pos + used + 1 : pos + used + 1 + take]
            self._partial += take
            used += 1 + take
            if len(payload) == length:
                break
            if pos + used >= end or buf[pos + used] != first:
                return used, None
        self._partial -= length
        state.payload = bytearray()
        return used, Message(state.type_id, state.stream_id, state.timestamp, bytes(payload), first & 0x3F)

    def _chunk(self, buf: bytearray, pos: int) -> tuple[int, Message | None]:
        """Parse one chunk at ``pos``: (bytes used, completed message); (0, None) if incomplete."""
        start = pos
        end = len(buf)
        if pos >= end:
            return 0, None
        first = buf[pos]
        fmt = first >> 6
        csid = first & 0x3F
        pos += 1
        if csid == 0:  # §5.3.1.1: 2-byte form, ids 64-319
            if pos + 1 > end:
                return 0, None
            csid = 64 + buf[pos]
            pos += 1
        elif csid == 1:  # 3-byte form, ids 64-65599
            if pos + 2 > end:
                return 0, None
            csid = 64 + buf[pos] + (buf[pos + 1] << 8)
            pos += 2
        header_size = _HEADER_SIZES[fmt]
        if pos + header_size > end:
            return 0, None
        state = self._streams.get(csid)
        if state is None:
            if fmt != 0:
                raise RtmpError(
                    f"chunk stream {csid} starts with a format-{fmt} header; the first chunk needs format 0",
                    offset=self.offset + start,
                )
            if len(self._streams) >= MAX_CHUNK_STREAMS:
                raise RtmpError(
                    f"more than {MAX_CHUNK_STREAMS} chunk streams on one connection",
                    offset=self.offset + start,
                )
            state = _ChunkStream()
        # §5.3.1.2.4: only format 3 continues a message; any other header starts a new one.
        new_message = not state.in_message or fmt != 3
        field = state.delta
        length, type_id, stream_id = state.length, state.type_id, state.stream_id
        if fmt < 3:
            field = int.from_bytes(buf[pos : pos + 3], "big")
            if fmt < 2:
                length = int.from_bytes(buf[pos + 3 : pos + 6], "big")
                type_id = buf[pos + 6]
            if fmt == 0:
                stream_id = int.from_bytes(buf[pos + 7 : pos + 11], "little")
            pos += header_size
        extended = field == EXTENDED if fmt < 3 else state.extended
        if extended:
            if pos + 4 > end:
                return 0, None
            value = int.from_bytes(buf[pos : pos + 4], "big")
            if new_message:
                field = value
                pos += 4
            elif value == state.delta:
                # Continuation chunks repeat the extended field (ffmpeg, librtmp); some peers omit
                # it, so it is skipped only when it holds the message's value.
                pos += 4
        if new_message and length > self.max_message_size:
            raise RtmpError(
                f"message of {length} bytes is over the limit of {self.max_message_size} "
                "(ingest.rtmp_max_message_size)",
                offset=self.offset + start,
            )
        received = 0 if new_message else state.received
        take = min(self.chunk_size, length - received)
        if pos + take > end:
            return 0, None
        # The chunk is complete: only now does the chunk stream's state change.
        if new_message:
            self._partial -= state.received
            state.payload = bytearray()
            state.length, state.type_id, state.stream_id = length, type_id, stream_id
            state.timestamp = field if fmt == 0 else (state.timestamp + field) & 0xFFFFFFFF
            state.delta = field
            state.extended = extended
        self._streams[csid] = state
        if take:
            if self._partial + take > 2 * self.max_message_size:
                raise RtmpError(
                    f"more than {2 * self.max_message_size} bytes of unfinished messages",
                    offset=self.offset + start,
                )
            state.payload += buf[pos : pos + take]
            self._partial += take
        pos += take
        if state.received < state.length:
            return pos - start, None
        payload = bytes(state.payload)
        self._partial -= state.received
        state.payload = bytearray()
        return pos - start, Message(state.type_id, state.stream_id, state.timestamp, payload, csid)


def u32_payload(message: Message, what: str) -> int:
    """The 4-byte big-endian value a protocol control message carries (§5.4)."""
    if len(message.payload) < 4:
        raise RtmpError(f"{what} carries {len(message.payload)} bytes, expected 4")
    return int.from_bytes(message.payload[:4], "big")


class ChunkWriter:
    """Writes messages as chunks: a format-0 header, then format-3 continuation chunks that repeat
    the extended timestamp when there is one (§5.3.1.3), the form every peer reads."""

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.chunk_size = chunk_size

    def write(self, message: Message) -> bytes:
        csid = message.chunk_stream
        if not 2 <= csid <= 65599:
            raise ValueError(f"chunk stream id {csid} is outside 2..65599")
        timestamp = message.timestamp & 0xFFFFFFFF
        extended = timestamp >= EXTENDED
        ext = timestamp.to_bytes(4, "big") if extended else b""
        payload = message.payload
        out = bytearray(_basic_header(0, csid))
        out += min(timestamp, EXTENDED).to_bytes(3, "big")
        out += len(payload).to_bytes(3, "big")
        out.append(message.type_id)
        out += message.stream_id.to_bytes(4, "little")
        out += ext
        out += payload[: self.chunk_size]
        continuation = _basic_header(3, csid) + ext
        for pos in range(self.chunk_size, len(payload), self.chunk_size):
            out += continuation
            out += payload[pos : pos + self.chunk_size]
        return bytes(out)


def _basic_header(fmt: int, csid: int) -> bytes:
    """§5.3.1.1: one, two or three bytes depending on the chunk stream id."""
    if csid < 64:
        return bytes([fmt << 6 | csid])
    if csid < 320:
        return bytes([fmt << 6, csid - 64])
    return bytes([fmt << 6 | 1, (csid - 64) & 0xFF, (csid - 64) >> 8])
