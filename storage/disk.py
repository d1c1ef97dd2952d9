"""A Store on a local folder (the embedded default).

Objects are written to a temporary file beside the target, flushed (and fsynced unless disabled),
then renamed over it, so a reader or a process killed mid-write never sees half an object. With
fsync, the folder is fsynced after the rename (and new folders in theirs), so an acknowledged
object also survives a power loss. A crash can leave a ``.*.tmp`` file behind: listings skip it.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import shutil
import uuid
from pathlib import Path

import aiofiles
import aiofiles.os

from storage.errors import KeyNotFound, StorageError
from storage.store import Store


class DiskStore(Store):
    def __init__(self, root: str | Path, *, fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self.fsync = fsync
        self.root.mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        return f"disk:{self.root}"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if path != self.root and self.root not in path.parents:
            raise StorageError(f"key {key!r} escapes the content root")
        return path

    def _make_parents(self, folder: Path) -> None:
        """Create ``folder`` and missing parents; with fsync, make each new entry durable in its
        parent, so a power loss cannot drop the folder of an acknowledged object."""
        missing = []
        while not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        for new in reversed(missing):
            new.mkdir(exist_ok=True)
            if self.fsync:
                _fsync_dir(new.parent)

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            await asyncio.to_thread(self._make_parents, path.parent)
            async with aiofiles.open(tmp, "wb") as f:
                await f.write(data)
                await f.flush()
                if self.fsync:
                    await asyncio.to_thread(os.fsync, f.fileno())
            await aiofiles.os.replace(tmp, path)
            if self.fsync:  # the rename itself must survive a power loss
                await asyncio.to_thread(_fsync_dir, path.parent)
        except OSError as exc:
            await asyncio.to_thread(tmp.unlink, missing_ok=True)
            raise StorageError(f"writing {key!r}: {exc.strerror or exc}") from exc

    async def get(self, key: str) -> bytes:
        try:
            async with aiofiles.open(self._path(key), "rb") as f:
                return await f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise KeyNotFound(key) from None
        except OSError as exc:
            raise StorageError(f"reading {key!r}: {exc.strerror or exc}") from exc

    async def append(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(self._make_parents, path.parent)
            created = not await aiofiles.os.path.exists(path)
            async with aiofiles.open(path, "ab") as f:
                await f.write(data)
                await f.flush()
                if self.fsync:
                    await asyncio.to_thread(os.fsync, f.fileno())
            if created and self.fsync:
                await asyncio.to_thread(_fsync_dir, path.parent)
        except OSError as exc:
            raise StorageError(f"appending to {key!r}: {exc.strerror or exc}") from exc

    async def exists(self, key: str) -> bool:
        return await aiofiles.os.path.isfile(self._path(key))

    async def list(self, prefix: str) -> builtins.list[str]:
        return await asyncio.to_thread(self._list, prefix)

    def _list(self, prefix: str) -> builtins.list[str]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        keys = []
        for folder, _dirs, files in os.walk(base):
            rel = Path(folder).relative_to(self.root)
            for name in files:
                if not name.endswith(".tmp"):
                    keys.append((rel / name).as_posix())
        return sorted(keys)

    async def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            await aiofiles.os.remove(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"deleting {key!r}: {exc.strerror or exc}") from exc
        await asyncio.to_thread(self._prune, path.parent)
        return True

    def _prune(self, folder: Path) -> None:
        """Remove folders left empty, up to the content root."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    async def delete_prefix(self, prefix: str) -> int:
        base = self._path(prefix.rstrip("/"))
        if base == self.root:
            raise StorageError("refusing to delete the whole content root")
        count = len(await self.list(prefix))
        await asyncio.to_thread(shutil.rmtree, base, True)
        await asyncio.to_thread(self._prune, base.parent)
        return count


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
