"""Content roots: turn ``--root`` into a Store."""

from __future__ import annotations

from storage.disk import DiskStore
from storage.errors import StorageError
from storage.store import Store


def open_store(root: str, *, fsync: bool = True) -> Store:
    """A folder path (the embedded default). ``s3://bucket/prefix`` roots are reserved for the S3
    backend and refused until it lands."""
    if "://" in root:
        scheme = root.split("://", 1)[0]
        raise StorageError(
            f"content root {root!r}: the {scheme}:// scheme is not supported yet; use a folder"
        )
    return DiskStore(root, fsync=fsync)
