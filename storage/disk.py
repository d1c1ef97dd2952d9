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
from storage.store import Store, check_key


class DiskStore(Store):
    """Writes run as one blocking call in a worker thread: one hop off the event loop per object,
    not one per system call (ingest stores several objects per fragment). Reads use aiofiles."""

    def __init__(self, root: str | Path, *, fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self.fsync = fsync
        self.root.mkdir(parents=True, exist_ok=True)
        self._folders: set[Path] = set()  # known to exist (forgotten on any delete)

    def describe(self) -> str:
        return f"disk:{self.root}"

    def _path(self, key: str) -> Path:
        """The file of ``key`` (:func:`~storage.store.check_key`)."""
        return self.root.joinpath(*check_key(key).split("/"))

    def _make_parents(self, folder: Path) -> None:
        """Create ``folder`` and missing parents; with fsync, make each new entry durable in its
        parent, so a power loss cannot drop the folder of an acknowledged object."""
        if folder in self._folders:
            return
        missing = []
        while not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        for new in reversed(missing):
            new.mkdir(exist_ok=True)
            if self.fsync:
                _fsync_dir(new.parent)
        self._folders.update(missing)
        self._folders.add(folder)

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(self._put, path, data)
        except OSError as exc:
            raise StorageError(f"writing {key!r}: {exc.strerror or exc}") from exc

    def _put(self, path: Path, data: bytes) -> None:
        self._make_parents(path.parent)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        if self.fsync:  # the rename itself must survive a power loss
            _fsync_dir(path.parent)

    async def get(self, key: str) -> bytes:
        try:
            async with aiofiles.open(self._path(key), "rb") as f:
                return await f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise KeyNotFound(key) from None
        except OSError as exc:
            raise StorageError(f"reading {key!r}: {exc.strerror or exc}") from exc

    async def append(self, key: str, data: bytes, *, initial: bytes = b"") -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(self._append, path, data, initial)
        except OSError as exc:
            raise StorageError(f"appending to {key!r}: {exc.strerror or exc}") from exc

    def _append(self, path: Path, data: bytes, initial: bytes) -> None:
        self._make_parents(path.parent)
        with open(path, "ab") as f:
            created = f.tell() == 0
            f.write(initial + data if created else data)  # one write: the magic never comes alone
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        if created and self.fsync:
            _fsync_dir(path.parent)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

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

    async def children(self, prefix: str) -> builtins.list[str]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        return await asyncio.to_thread(self._children, base)

    @staticmethod
    def _children(base: Path) -> builtins.list[str]:
        try:
            with os.scandir(base) as entries:
                return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            return []

    async def delete(self, key: str) -> bool:
        path = self._path(key)
        self._folders.clear()
        try:
            await aiofiles.os.remove(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"deleting {key!r}: {exc.strerror or exc}") from exc
        await asyncio.to_thread(self._prune, path.parent)
        return True

    async def delete_many(self, keys: builtins.list[str]) -> int:
        paths = [self._path(key) for key in keys]
        self._folders.clear()
        return await asyncio.to_thread(self._delete_files, paths)

    def _delete_files(self, paths: builtins.list[Path]) -> int:
        count = 0
        for path in paths:
            try:
                path.unlink()
                count += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StorageError(f"deleting {path}: {exc.strerror or exc}") from exc
        for folder in {path.parent for path in paths}:
            self._prune(folder)
        return count

    def _prune(self, folder: Path) -> None:
        """Remove folders left empty, up to the content root."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    async def delete_prefix(self, prefix: str) -> int:
        self._folders.clear()
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
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
