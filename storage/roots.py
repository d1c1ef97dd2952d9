"""Content roots: turn ``--root`` into a Store."""

from __future__ import annotations

from conf.settings import StorageSettings
from storage.disk import DiskStore
from storage.errors import StorageError
from storage.s3 import S3Options, S3Store, parse_s3_root
from storage.spool import SpoolingStore
from storage.store import Store

ADDRESSING_STYLES = ("auto", "path", "virtual")


def open_store(root: str, settings: StorageSettings, *, spool: bool = False) -> Store:
    """A folder path (the embedded default) or ``s3://bucket[/prefix]``; with ``spool`` (a node
    that ingests), an S3 root gets the local spool of :mod:`storage.spool` in front."""
    if root.startswith("s3://"):
        bucket, prefix = parse_s3_root(root)
        if settings.s3_addressing_style not in ADDRESSING_STYLES:
            raise StorageError(
                f"storage.s3_addressing_style must be one of {', '.join(ADDRESSING_STYLES)}, "
                f"not {settings.s3_addressing_style!r}"
            )
        options = S3Options(
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            profile=settings.s3_profile,
            addressing_style=settings.s3_addressing_style,
            max_concurrency=settings.s3_max_concurrency,
            connect_timeout=settings.s3_connect_timeout,
            read_timeout=settings.s3_read_timeout,
            max_attempts=settings.s3_max_attempts,
        )
        store = S3Store(bucket, prefix, options)
        if not spool:
            return store
        return SpoolingStore(store, settings.spool, limit=settings.spool_size, deadline=settings.spool_after)
    if "://" in root:
        scheme = root.split("://", 1)[0]
        raise StorageError(
            f"content root {root!r}: the {scheme}:// scheme is not supported; use a folder or s3://"
        )
    return DiskStore(root, fsync=settings.fsync)
