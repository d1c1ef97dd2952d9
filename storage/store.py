"""The Store interface: a flat key space of immutable-once-written objects plus append-only logs.

Backends: :mod:`storage.disk` (a folder), :mod:`storage.s3` (a bucket). Keys come from
:mod:`storage.keys` only.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod

from storage.errors import KeyNotFound, StorageError


def check_key(key: str) -> str:
    """Keys are relative, ``/``-separated names without empty, ``.`` or ``..`` segments
    (:mod:`storage.keys` makes only such keys); anything else is refused by every backend."""
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise StorageError(f"key {key!r} is not a plain relative name")
    return key


class Store(ABC):
    """Durable object storage. ``put`` is atomic: readers see the old object or the new one, never a
    part; when it returns, the object survives a crash of this process."""

    @abstractmethod
    async def put(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    async def get(self, key: str) -> bytes:
        """The object's bytes; :class:`~storage.errors.KeyNotFound` if there is none."""

    @abstractmethod
    async def append(self, key: str, data: bytes, *, initial: bytes = b"") -> None:
        """Add ``data`` at the end of the object, creating it if needed, with ``initial`` before
        ``data`` when it does (a file magic)."""

    @abstractmethod
    async def exists(self, key: str) -> bool: ...

    @abstractmethod
    async def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (recursively), sorted."""

    @abstractmethod
    async def children(self, prefix: str) -> builtins.list[str]:
        """The names one level below ``prefix`` that hold keys (folders), sorted."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Delete one object; False if there was none."""

    @abstractmethod
    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix``; returns how many were deleted."""

    async def delete_many(self, keys: builtins.list[str]) -> int:
        """Delete these objects (missing ones are skipped); returns how many were deleted.
        Backends override it to batch (one thread hop, one request per thousand keys)."""
        count = 0
        for key in keys:
            count += await self.delete(key)
        return count

    async def get_or_none(self, key: str) -> bytes | None:
        try:
            return await self.get(key)
        except KeyNotFound:
            return None

    def describe(self) -> str:
        return type(self).__name__

    async def check(self) -> None:  # noqa: B027 (a folder is checked when it is opened)
        """Raise :class:`~storage.errors.StorageError` when the store cannot be used as configured
        (a bucket that does not exist, credentials refused); a store that is only unreachable for
        now passes (requests get 503 until it is back)."""

    async def close(self) -> None:  # noqa: B027 (most backends hold nothing to release)
        """Release connections and threads (the process is stopping)."""
