"""A minimal RTMP publisher for tests that real encoders cannot drive: synthetic timestamps (across
0xFFFFFF ms and the 32-bit wrap), hostile chunk streams, exact byte control. It sends the tags of
an FLV file made by a real encoder (ffmpeg, PyAV), so the media itself is real."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.rtmp import chunks
from ingest.rtmp.chunks import ChunkReader, ChunkWriter, Message
from media.amf0 import Value, command, decode_all

AUDIO_CHUNK_STREAM = 4
VIDEO_CHUNK_STREAM = 6
COMMAND_CHUNK_STREAM = 3


@dataclass(frozen=True)
class Tag:
    """One FLV tag (Adobe FLV 10.1 §E.4.1): type 8/9/18, millisecond timestamp, body."""

    type_id: int
    timestamp: int
    body: bytes


def read_flv(path: Path) -> list[Tag]:
    data = path.read_bytes()
    if data[:3] != b"FLV":
        raise ValueError(f"{path} is not FLV")
    pos = int.from_bytes(data[5:9], "big") + 4
    tags = []
    while pos + 11 <= len(data):
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        stamp = int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24
        tags.append(Tag(data[pos], stamp, data[pos + 11 : pos + 11 + size]))
        pos += 11 + size + 4
    return tags


class Publisher:
    """Builds a publisher's bytes: C0+C1 (simple handshake), C2, commands and media."""

    def __init__(self, chunk_size: int = 4096) -> None:
        self.writer = ChunkWriter(128)
        self.chunk_size = chunk_size
        self.txn = 0.0
        self.c1 = bytes(8) + os.urandom(1528)

    def c0c1(self) -> bytes:
        return b"\x03" + self.c1

    @staticmethod
    def c2(s0s1s2: bytes) -> bytes:
        return s0s1s2[1:1537]  # echo S1

    def command(self, name: str, *args: Value, stream_id: int = 0) -> bytes:
        self.txn += 1
        body = command(name, self.txn, *args)
        return self.writer.write(Message(chunks.AMF0_COMMAND, stream_id, 0, body, COMMAND_CHUNK_STREAM))

    def set_chunk_size(self) -> bytes:
        out = self.writer.write(Message(chunks.SET_CHUNK_SIZE, 0, 0, self.chunk_size.to_bytes(4, "big"), 2))
        self.writer.chunk_size = self.chunk_size
        return out

    def connect(self, app: str, tc_url: str = "") -> bytes:
        props: dict[str, Value] = {"app": app, "type": "nonprivate", "flashVer": "FMLE/3.0 (test)"}
        props["tcUrl"] = tc_url or f"rtmp://127.0.0.1/{app}"
        return self.set_chunk_size() + self.command("connect", props)

    def publish(self, name: str, stream_id: int = 1) -> bytes:
        return (
            self.command("releaseStream", None, name)
            + self.command("FCPublish", None, name)
            + self.command("createStream", None)
            + self.command("publish", None, name, "live", stream_id=stream_id)
        )

    def tag(self, tag: Tag, timestamp: int, stream_id: int = 1) -> bytes:
        csid = {8: AUDIO_CHUNK_STREAM, 9: VIDEO_CHUNK_STREAM}.get(tag.type_id, 5)
        return self.writer.write(Message(tag.type_id, stream_id, timestamp & 0xFFFFFFFF, tag.body, csid))

    def unpublish(self, name: str, stream_id: int = 1) -> bytes:
        return self.command("FCUnpublish", None, name) + self.command("deleteStream", None, float(stream_id))


def statuses(messages: Iterable[Message]) -> Iterator[dict[str, Value]]:
    """The info objects of the onStatus / _result / _error commands among ``messages``."""
    for message in messages:
        if message.type_id == chunks.AMF0_COMMAND:
            values = decode_all(message.payload)
            for value in values[2:]:
                if isinstance(value, dict) and "code" in value:
                    yield value


async def publish(
    host: str,
    port: int,
    app: str,
    name: str,
    tags: Iterable[Tag],
    *,
    shift: int = 0,
    realtime: float = 0.0,
    unpublish: bool = True,
) -> list[dict[str, Value]]:
    """Publish ``tags`` with ``shift`` added to their timestamps (mod 2^32); ``realtime`` > 0 paces
    them at that speed. Returns the statuses the server sent."""
    reader, writer = await asyncio.open_connection(host, port)
    client = Publisher()
    writer.write(client.c0c1())
    s0s1s2 = await reader.readexactly(1 + 1536 * 2)
    writer.write(client.c2(s0s1s2) + client.connect(app) + client.publish(name))
    replies = ChunkReader(max_chunk_size=1 << 24, max_message_size=1 << 24)
    seen: list[dict[str, Value]] = []
    while not any(str(s.get("code")).startswith("NetStream.Publish") for s in seen):
        data = await asyncio.wait_for(reader.read(65536), 10)
        if not data:
            writer.close()
            return seen
        seen += statuses(replies.feed(data))
    if seen[-1].get("code") != "NetStream.Publish.Start":
        writer.close()
        return seen
    loop = asyncio.get_running_loop()
    start = loop.time()
    first: int | None = None
    for tag in tags:
        if realtime:
            first = tag.timestamp if first is None else first
            delay = (tag.timestamp - first) / 1000 / realtime - (loop.time() - start)
            if delay > 0:
                await asyncio.sleep(delay)
        writer.write(client.tag(tag, tag.timestamp + shift))
        await writer.drain()
    if unpublish:
        writer.write(client.unpublish(name))
        await writer.drain()
    writer.close()
    await writer.wait_closed()
    return seen
