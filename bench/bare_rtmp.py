"""The Python floor for bench/rtmp.py: an asyncio server that answers the RTMP handshake, connect
and publish with Headwater's own session, then reads every later byte and throws it away. What
Headwater costs beyond this is its work (chunk parsing, FLV to CMAF, storage); what this costs
beyond nginx-rtmp is CPython's asyncio socket loop.

    python -m bench.bare_rtmp PORT        (from the repository's root)
"""

from __future__ import annotations

import asyncio
import signal
import sys

from ingest.rtmp.session import PublishRequested, ServerSession

READ_SIZE = 1 << 16


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    session = ServerSession()
    published = False
    while not published:
        data = await reader.read(READ_SIZE)
        if not data:
            writer.close()
            return
        for event in session.receive(data):
            if isinstance(event, PublishRequested):
                session.accept_publish(event.stream_id)
                published = True
        writer.write(session.data_to_send())
    while await reader.read(READ_SIZE):
        pass
    writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, limit=READ_SIZE)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
