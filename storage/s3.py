"""A Store on an S3-compatible bucket (AWS S3, MinIO, Ceph RGW): ``--root s3://bucket/prefix``.

Keys are the same as on disk (:mod:`storage.keys`) below the prefix. boto3 is blocking: every call
runs in a thread pool of ``max_concurrency`` workers, so the event loop never waits on the network
and the store never opens more connections than that. botocore retries throttling, 5xx answers
and connection errors with exponential backoff (``standard`` mode, ``max_attempts``); connect and
read timeouts bound each attempt. What still fails becomes a
:class:`~storage.errors.StorageError` (503 for a request).

Credentials, and the endpoint and region when not configured, come from boto3's standard chain:
environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``…), the shared config
and credentials files (``profile``), then the instance or container role.

S3 has no append: :meth:`S3Store.append` rewrites the object with the data added, keeping the
objects this process appended to in memory (a bounded LRU) so that an append is one PUT. Only the
timeline index is appended to, and it is kept in parts of bounded size (:mod:`storage.index`).
"""

from __future__ import annotations

import asyncio
import builtins
import functools
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from storage.errors import KeyNotFound, StorageError
from storage.store import Store, check_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")

DELETE_BATCH = 1000  # keys per DeleteObjects request (the S3 limit)
APPENDED_KEPT = 1024  # appended objects remembered (each at most an index part, 16 KiB)
MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


@dataclass(frozen=True)
class S3Options:
    """How to reach the bucket (``[storage]`` settings ``s3_*``); empty strings defer to boto3's
    own configuration chain."""

    endpoint_url: str = ""
    region: str = ""
    profile: str = ""
    addressing_style: str = "auto"  # auto | path | virtual
    max_concurrency: int = 32
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    max_attempts: int = 4


def parse_s3_root(root: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ("bucket", "some/prefix/"); the prefix may be empty."""
    rest = root[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    if not bucket:
        raise StorageError(f"content root {root!r}: expected s3://bucket[/prefix]")
    return bucket, f"{prefix}/" if prefix else ""


class S3Store(Store):
    def __init__(self, bucket: str, prefix: str, options: S3Options) -> None:
        self.bucket = bucket
        self.prefix = prefix
        session = boto3.session.Session(profile_name=options.profile or None)
        config = Config(
            region_name=options.region or None,
            connect_timeout=options.connect_timeout,
            read_timeout=options.read_timeout,
            retries={"max_attempts": options.max_attempts, "mode": "standard"},
            max_pool_connections=options.max_concurrency,
            s3={"addressing_style": options.addressing_style},  # type: ignore[arg-type]
        )
        self.client: S3Client = session.client("s3", endpoint_url=options.endpoint_url or None, config=config)
        self._pool = ThreadPoolExecutor(options.max_concurrency, thread_name_prefix="s3")
        self._appended: OrderedDict[str, bytes] = OrderedDict()

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    async def _call(self, what: str, key: str, call: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in MISSING:
                raise KeyNotFound(key) from None
            raise StorageError(f"{what} {key!r} on {self.describe()}: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"{what} {key!r} on {self.describe()}: {exc}") from exc

    async def put(self, key: str, data: bytes) -> None:
        name = self._key(key)
        await self._call(
            "writing", key, functools.partial(self.client.put_object, Bucket=self.bucket, Key=name, Body=data)
        )
        if key in self._appended:
            self._remember(key, data)

    async def get(self, key: str) -> bytes:
        name = self._key(key)

        def read() -> bytes:
            return self.client.get_object(Bucket=self.bucket, Key=name)["Body"].read()

        return await self._call("reading", key, read)

    async def append(self, key: str, data: bytes, *, initial: bytes = b"") -> None:
        current = self._appended.get(key)
        if current is None:
            current = await self.get_or_none(key)
        body = (current if current else initial) + data
        await self.put(key, body)
        self._remember(key, body)

    def _remember(self, key: str, body: bytes) -> None:
        self._appended[key] = body
        self._appended.move_to_end(key)
        while len(self._appended) > APPENDED_KEPT:
            self._appended.popitem(last=False)

    async def exists(self, key: str) -> bool:
        name = self._key(key)
        try:
            await self._call(
                "checking", key, functools.partial(self.client.head_object, Bucket=self.bucket, Key=name)
            )
        except KeyNotFound:
            return False
        return True

    async def list(self, prefix: str) -> builtins.list[str]:
        full = self.prefix + prefix

        def walk() -> builtins.list[str]:
            keys: builtins.list[str] = []
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(item["Key"][len(self.prefix) :] for item in page.get("Contents", []))
            return sorted(keys)

        return await self._call("listing", prefix, walk)

    async def children(self, prefix: str) -> builtins.list[str]:
        full = self.prefix + prefix

        def walk() -> builtins.list[str]:
            names: builtins.list[str] = []
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
                names.extend(p["Prefix"][len(full) :].rstrip("/") for p in page.get("CommonPrefixes", []))
            return sorted(names)

        return await self._call("listing", prefix, walk)

    async def delete(self, key: str) -> bool:
        """S3 answers a delete the same whether the object was there or not: one HEAD first."""
        if not await self.exists(key):
            return False
        name = self._key(key)
        await self._call(
            "deleting", key, functools.partial(self.client.delete_object, Bucket=self.bucket, Key=name)
        )
        self._appended.pop(key, None)
        return True

    async def delete_many(self, keys: builtins.list[str]) -> int:
        """One request per thousand keys; counts the keys asked for (S3 does not say which
        existed)."""
        for key in keys:
            self._appended.pop(key, None)
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": self._key(k)} for k in keys[start : start + DELETE_BATCH]]

            def delete(objects: builtins.list[dict[str, str]] = batch) -> None:
                answer = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": objects, "Quiet": True},  # type: ignore[typeddict-item]
                )
                errors = answer.get("Errors", [])
                if errors:
                    first = errors[0]
                    raise StorageError(
                        f"deleting {first.get('Key')!r}: {first.get('Code')} {first.get('Message')}"
                    )

            await self._call("deleting", keys[start], delete)
        return len(keys)

    async def delete_prefix(self, prefix: str) -> int:
        if not prefix.strip("/"):
            raise StorageError("refusing to delete the whole content root")
        return await self.delete_many(await self.list(prefix))

    async def check(self) -> None:
        head = functools.partial(self.client.head_bucket, Bucket=self.bucket)
        try:
            await self._call("checking the bucket of", "", head)
        except KeyNotFound:
            raise StorageError(f"content root {self.describe()}: the bucket does not exist") from None
        except StorageError as exc:
            if isinstance(exc.__cause__, ClientError):  # refused (credentials, policy), not unreachable
                raise

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
