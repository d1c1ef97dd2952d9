"""A local spool in front of a remote store (S3): when a write fails or takes too long, it is kept
on local disk and acknowledged, and a background task writes the spooled operations to the remote
store in order once it answers again. An encoder keeps pushing through an outage of the object
store until the spool is full (``storage.spool_size``); a restart with a non-empty spool flushes it.

Order is kept: once anything is spooled, every later write is spooled too until the spool is
empty. A write abandoned by its deadline may still land later (its thread cannot be stopped);
the flusher waits for those before it starts, and an append whose bytes are already at the end of
the object is not applied twice (index records are unique), so nothing lands twice or out of order.

Reads see spooled writes: the objects spooled are served from the spool until flushed.

Spool files: ``<folder>/<sequence>.op``, a JSON line (``op``, ``key``, ``initial``: length of the
magic an append starts a new object with), then the bytes.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from conf.logs import event
from storage.errors import StorageError
from storage.store import Store, check_key

log = logging.getLogger("headwater.storage")

SUFFIX = ".op"
RETRY_MIN_S = 0.5
RETRY_MAX_S = 10.0


@dataclass(frozen=True, slots=True)
class Spooled:
    """One spooled write; its bytes stay in its file (``offset`` past the JSON line)."""

    sequence: int
    op: str  # "put" | "append"
    key: str
    initial: bytes
    offset: int
    length: int

    @property
    def size(self) -> int:
        return len(self.initial) + self.length


class SpoolingStore(Store):
    """``inner`` with writes spooled to ``folder`` while it fails. ``deadline``: seconds a write
    may take before it is spooled instead; ``limit``: bytes the spool may hold."""

    def __init__(self, inner: Store, folder: str | Path, *, limit: int, deadline: float) -> None:
        self.inner = inner
        self.folder = Path(folder)
        self.limit = limit
        self.deadline = deadline
        self.folder.mkdir(parents=True, exist_ok=True)
        self._queue: deque[Spooled] = deque()  # in order
        self._by_key: dict[str, deque[Spooled]] = {}
        self._size = 0
        self._next = 0
        self._inflight: set[asyncio.Future[None]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._load()

    def describe(self) -> str:
        return f"{self.inner.describe()} (spool {self.folder})"

    @property
    def spooled(self) -> int:
        """Operations waiting in the spool."""
        return len(self._queue)

    def _path(self, sequence: int) -> Path:
        return self.folder / f"{sequence:016d}{SUFFIX}"

    def _load(self) -> None:
        """Operations a previous process spooled and did not flush, in order."""
        for stale in self.folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        for path in sorted(self.folder.glob(f"*{SUFFIX}")):
            with open(path, "rb") as f:
                head = f.readline()
                total = os.fstat(f.fileno()).st_size
                try:
                    meta = json.loads(head)
                    initial = f.read(int(meta["initial"]))
                    offset = len(head) + len(initial)
                    self._add(
                        Spooled(
                            int(path.stem), str(meta["op"]), str(meta["key"]), initial, offset, total - offset
                        )
                    )
                except (ValueError, KeyError) as exc:
                    raise StorageError(f"spooled operation {path} is unreadable: {exc}") from exc
        if self._queue:
            self._next = self._queue[-1].sequence + 1
            event(log, "spool.loaded", operations=len(self._queue), bytes=self._size)

    def _add(self, item: Spooled) -> None:
        self._queue.append(item)
        self._by_key.setdefault(item.key, deque()).append(item)
        self._size += item.size

    def _remove_first(self) -> None:
        item = self._queue.popleft()
        same = self._by_key[item.key]
        same.popleft()
        if not same:
            del self._by_key[item.key]
        self._size -= item.size

    def _data(self, item: Spooled) -> bytes:
        with open(self._path(item.sequence), "rb") as f:
            f.seek(item.offset)
            return f.read(item.length)

    # -- writes ---------------------------------------------------------------------------------

    async def put(self, key: str, data: bytes) -> None:
        await self._write("put", key, b"", data, lambda: self.inner.put(key, data))

    async def append(self, key: str, data: bytes, *, initial: bytes = b"") -> None:
        await self._write("append", key, initial, data, lambda: self.inner.append(key, data, initial=initial))

    async def _write(
        self, op: str, key: str, initial: bytes, data: bytes, direct: Callable[[], Awaitable[None]]
    ) -> None:
        check_key(key)  # a bad key is refused, never spooled
        if not self._queue:
            attempt = asyncio.ensure_future(direct())
            try:
                await asyncio.wait_for(asyncio.shield(attempt), self.deadline)
                return
            except (StorageError, TimeoutError) as exc:
                if not attempt.done():
                    self._inflight.add(attempt)
                    attempt.add_done_callback(self._settled)
                event(log, "spool.started", logging.WARNING, key=key, reason=str(exc) or "deadline")
        await self._spool(op, key, initial, data)

    def _settled(self, attempt: asyncio.Future[None]) -> None:
        self._inflight.discard(attempt)
        if not attempt.cancelled():
            attempt.exception()  # retrieved: an abandoned write's failure is no error of its own

    async def _spool(self, op: str, key: str, initial: bytes, data: bytes) -> None:
        size = len(initial) + len(data)
        if self._size + size > self.limit:
            raise StorageError(
                f"the object store is failing and the local spool is full ({self._size} of {self.limit} "
                "bytes, storage.spool_size)"
            )
        head = json.dumps({"op": op, "key": key, "initial": len(initial)}).encode() + b"\n"
        sequence = self._next
        self._next += 1
        await asyncio.to_thread(self._write_file, sequence, head + initial + data)
        self._add(Spooled(sequence, op, key, initial, len(head) + len(initial), len(data)))
        self.start()
        self._wake.set()

    def _write_file(self, sequence: int, body: bytes) -> None:
        path = self._path(sequence)
        tmp = self.folder / f".{path.name}.tmp"
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- flushing -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the flusher (once there is a running loop); idempotent."""
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        delay = RETRY_MIN_S
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._inflight:
                await asyncio.wait(set(self._inflight))
            item = self._queue[0]
            try:
                await self._apply(item)
            except StorageError as exc:
                event(
                    log,
                    "spool.retry",
                    logging.WARNING,
                    key=item.key,
                    waiting=len(self._queue),
                    reason=str(exc),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            delay = RETRY_MIN_S
            self._remove_first()
            await asyncio.to_thread(self._path(item.sequence).unlink, True)
            if not self._queue:
                event(log, "spool.flushed")

    async def _apply(self, item: Spooled) -> None:
        data = await asyncio.to_thread(self._data, item)
        if item.op == "put":
            await self.inner.put(item.key, data)
            return
        current = await self.inner.get_or_none(item.key)
        if current is not None and current.endswith(data):
            return  # an abandoned write landed after all
        await self.inner.put(item.key, (current if current else item.initial) + data)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        await self.inner.close()

    async def check(self) -> None:
        await self.inner.check()
        if self._queue:
            self.start()

    # -- reads ----------------------------------------------------------------------------------

    async def get(self, key: str) -> bytes:
        pending = list(self._by_key.get(key, ()))
        if not pending:
            return await self.inner.get(key)
        puts = [i for i, item in enumerate(pending) if item.op == "put"]
        if puts:
            body, rest = await asyncio.to_thread(self._data, pending[puts[-1]]), pending[puts[-1] + 1 :]
        else:
            body, rest = await self.inner.get_or_none(key) or b"", pending
        for item in rest:
            body = (body if body else item.initial) + await asyncio.to_thread(self._data, item)
        return body

    async def exists(self, key: str) -> bool:
        return key in self._by_key or await self.inner.exists(key)

    async def list(self, prefix: str) -> builtins.list[str]:
        spooled = {key for key in self._by_key if key.startswith(prefix)}
        return sorted(spooled.union(await self.inner.list(prefix)))

    async def children(self, prefix: str) -> builtins.list[str]:
        spooled = {
            key[len(prefix) :].split("/", 1)[0]
            for key in self._by_key
            if key.startswith(prefix) and "/" in key[len(prefix) :]
        }
        return sorted(spooled.union(await self.inner.children(prefix)))

    def _refuse_spooled(self, keys: builtins.list[str]) -> None:
        """Deletes wait until nothing spooled names their keys (a purge retries next round)."""
        if any(key in self._by_key for key in keys):
            raise StorageError("objects to delete are still in the local spool; retrying later")

    async def delete(self, key: str) -> bool:
        self._refuse_spooled([key])
        return await self.inner.delete(key)

    async def delete_many(self, keys: builtins.list[str]) -> int:
        self._refuse_spooled(keys)
        return await self.inner.delete_many(keys)

    async def delete_prefix(self, prefix: str) -> int:
        self._refuse_spooled([key for key in self._by_key if key.startswith(prefix)])
        return await self.inner.delete_prefix(prefix)
