"""The Store contract, on every backend: a folder (DiskStore) and a bucket of a real S3 HTTP endpoint
(moto in server mode, S3Store). Then the timeline index and the purge on S3, and what an
unreachable endpoint gives."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conf.settings import StorageSettings
from media.cmaf import write_fragment
from media.model import Fragment, Sample
from media.timeline import FLAG_KEYFRAME, PurgeMark
from storage.disk import DiskStore
from storage.errors import KeyNotFound, StorageError
from storage.keys import PointId
from storage.points import PointStore
from storage.roots import open_store
from storage.s3 import S3Store, parse_s3_root
from storage.spool import SpoolingStore
from storage.store import Store
from tests.conftest import S3_ENV, S3Server, free_port

_buckets = itertools.count()


@pytest.fixture(autouse=True)
def s3_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)


def s3_settings(endpoint: str, **extra: object) -> StorageSettings:
    return StorageSettings(s3_endpoint_url=endpoint, s3_addressing_style="path", **extra)  # type: ignore[arg-type]


@pytest.fixture(params=["disk", "s3", "s3+spool"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "disk":
        found: Store = DiskStore(tmp_path, fsync=False)
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        bucket = s3.bucket(f"contract-{next(_buckets)}")
        settings = s3_settings(s3.endpoint, spool=str(tmp_path / "spool"))
        found = open_store(f"s3://{bucket}/some/prefix", settings, spool=request.param.endswith("spool"))
    yield found
    await found.close()


async def test_put_get_overwrite(store: Store) -> None:
    await store.put("a/b/c.bin", b"one")
    assert await store.get("a/b/c.bin") == b"one"
    await store.put("a/b/c.bin", b"two")
    assert await store.get("a/b/c.bin") == b"two"
    assert await store.exists("a/b/c.bin") and not await store.exists("a/b/d.bin")
    with pytest.raises(KeyNotFound):
        await store.get("a/b/d.bin")
    assert await store.get_or_none("a/b/d.bin") is None


async def test_append_creates_with_initial_then_adds(store: Store) -> None:
    await store.append("x/log", b"1", initial=b"MAGIC")
    await store.append("x/log", b"2", initial=b"MAGIC")
    assert await store.get("x/log") == b"MAGIC12"
    await store.put("x/log", b"MAGIC")  # rewritten: appends go on from the new content
    await store.append("x/log", b"3", initial=b"MAGIC")
    assert await store.get("x/log") == b"MAGIC3"


async def test_list_and_children(store: Store) -> None:
    for key in ("p/a/1", "p/a/2", "p/b/x/3", "p/c", "q/1"):
        await store.put(key, b".")
    assert await store.list("p/") == ["p/a/1", "p/a/2", "p/b/x/3", "p/c"]
    assert await store.list("p/a/") == ["p/a/1", "p/a/2"]
    assert await store.list("nothing/") == []
    assert await store.children("p/") == ["a", "b"]
    assert await store.children("nothing/") == []


async def test_deletes(store: Store) -> None:
    for key in ("p/a/1", "p/a/2", "p/b/3", "q/1"):
        await store.put(key, b".")
    assert await store.delete("p/a/1") is True
    assert await store.delete("p/a/1") is False
    assert await store.delete_many(["p/a/2"]) == 1
    assert await store.delete_prefix("p/") == 1
    assert await store.list("p/") == [] and await store.list("q/") == ["q/1"]
    with pytest.raises(StorageError):
        await store.delete_prefix("")


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "./a", "a/\0"])
async def test_keys_that_are_not_plain_names_are_refused(store: Store, key: str) -> None:
    with pytest.raises(StorageError, match="not a plain relative name"):
        await store.put(key, b".")


# -- S3 only ------------------------------------------------------------------------------------


def test_s3_roots_parse() -> None:
    assert parse_s3_root("s3://bucket") == ("bucket", "")
    assert parse_s3_root("s3://bucket/") == ("bucket", "")
    assert parse_s3_root("s3://bucket/a/b/") == ("bucket", "a/b/")
    with pytest.raises(StorageError, match="expected s3://bucket"):
        parse_s3_root("s3:///prefix")
    with pytest.raises(StorageError, match="addressing_style"):
        open_store("s3://b", StorageSettings(s3_addressing_style="sideways"))
    with pytest.raises(StorageError, match="gs:// scheme is not supported"):
        open_store("gs://b", StorageSettings())


async def test_s3_keeps_the_disk_layout_below_its_prefix(s3_server: S3Server) -> None:
    bucket = s3_server.bucket("layout")
    store = open_store(f"s3://{bucket}/tenant/a", s3_settings(s3_server.endpoint))
    points = PointStore(store)
    pid = PointId.parse("live/ch")
    samples = (Sample(100, 3, 0x02000000),)
    for i in range(3):
        data = write_fragment(1, i * 100, samples, b"abc")
        await points.write_fragment(
            pid, Fragment("video", i * 100, 100, samples, data), 1000 + i, FLAG_KEYFRAME
        )
    assert s3_server.keys(bucket) == [
        "tenant/a/live/ch/_tracks/video/00000000000000000000.m4s",
        "tenant/a/live/ch/_tracks/video/00000000000000000100.m4s",
        "tenant/a/live/ch/_tracks/video/00000000000000000200.m4s",
        "tenant/a/live/ch/_tracks/video/index/0000000000.bin",
    ]
    # A fresh process (no appended object in memory) reads and repairs nothing, then appends.
    again = PointStore(open_store(f"s3://{bucket}/tenant/a", s3_settings(s3_server.endpoint)))
    timeline = await again.load_timeline(pid, "video", 1000)
    assert [e.decode_time for e in timeline.entries] == [0, 100, 200]
    data = write_fragment(1, 300, samples, b"abc")
    await again.write_fragment(pid, Fragment("video", 300, 100, samples, data), 1003, FLAG_KEYFRAME)
    assert [e.decode_time for e in (await points.load_timeline(pid, "video", 1000)).entries] == [
        0,
        100,
        200,
        300,
    ]
    await again.purge(pid, "video", PurgeMark(200, 2))
    await again.delete_fragments(pid, "video", [0, 100])
    follower = PointStore(open_store(f"s3://{bucket}/tenant/a", s3_settings(s3_server.endpoint)))
    timeline = await follower.load_timeline(pid, "video", 1000, repair=False)
    assert [e.decode_time for e in timeline.entries] == [200, 300] and timeline.mark.first_time == 200


async def test_s3_unreachable_endpoint_is_a_storage_error_within_the_timeouts() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = s3_settings(endpoint, s3_connect_timeout=0.5, s3_read_timeout=0.5, s3_max_attempts=2)
    store = open_store("s3://nowhere/x", settings)
    assert isinstance(store, S3Store)
    started = time.monotonic()
    with pytest.raises(StorageError, match="s3://nowhere/x/"):
        await store.get("a")
    assert time.monotonic() - started < 10
    await store.close()


async def test_s3_check_refuses_a_missing_bucket_and_passes_an_unreachable_endpoint(
    s3_server: S3Server,
) -> None:
    missing = open_store("s3://no-such-bucket/x", s3_settings(s3_server.endpoint))
    with pytest.raises(StorageError, match="the bucket does not exist"):
        await missing.check()
    present = open_store(f"s3://{s3_server.bucket('checked')}/x", s3_settings(s3_server.endpoint))
    await present.check()
    settings = s3_settings(f"http://127.0.0.1:{free_port()}", s3_connect_timeout=0.5, s3_max_attempts=1)
    await open_store("s3://down/x", settings).check()  # down for now: the server starts anyway


def fast_spool(s3_server: S3Server, tmp_path: Path, **extra: object) -> StorageSettings:
    """Short timeouts, one attempt, spooled after 0.3 s: a stopped moto is noticed at once."""
    return s3_settings(
        s3_server.endpoint,
        s3_connect_timeout=0.5,
        s3_read_timeout=1.0,
        s3_max_attempts=1,
        spool=str(tmp_path / "spool"),
        spool_after=0.3,
        **extra,
    )


async def test_spool_keeps_writes_while_s3_is_stopped_and_a_new_process_flushes_them(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """moto stopped (SIGSTOP): writes are spooled after the deadline and read back from the spool;
    the process goes away with the spool full of them; a new one on the same folder flushes them
    in order once moto runs again (the abandoned first write landing late counts once)."""
    bucket = s3_server.bucket("spooled")
    settings = fast_spool(s3_server, tmp_path)
    first = open_store(f"s3://{bucket}/x", settings, spool=True)
    assert isinstance(first, SpoolingStore)
    await first.append("idx", b"r0", initial=b"M")
    s3_server.proc.send_signal(signal.SIGSTOP)
    try:
        await first.put("frag/1", b"one")
        await first.append("idx", b"r1", initial=b"M")
        await first.append("idx", b"r2", initial=b"M")
        await first.put("frag/2", b"two")
        assert first.spooled == 4
        assert await first.get("frag/2") == b"two" and await first.exists("frag/1")
        with pytest.raises(StorageError, match="still in the local spool"):
            await first.delete_many(["frag/1"])
        assert first._flusher is not None
        first._flusher.cancel()  # the process dies with its spool
    finally:
        s3_server.proc.send_signal(signal.SIGCONT)
    second = open_store(f"s3://{bucket}/x", settings, spool=True)
    assert isinstance(second, SpoolingStore) and second.spooled == 4
    await second.check()  # at start: the flusher runs
    deadline = time.monotonic() + 20
    while second.spooled and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert second.spooled == 0 and not list((tmp_path / "spool").iterdir())
    plain = open_store(f"s3://{bucket}/x", s3_settings(s3_server.endpoint))
    assert await plain.get("idx") == b"Mr0r1r2"
    assert await plain.get("frag/1") == b"one" and await plain.get("frag/2") == b"two"
    for store in (first, second, plain):
        await store.close()


async def test_spool_full_refuses_the_write(s3_server: S3Server, tmp_path: Path) -> None:
    settings = fast_spool(s3_server, tmp_path, spool_size=10)
    store = open_store(f"s3://{s3_server.bucket('full')}/x", settings, spool=True)
    s3_server.proc.send_signal(signal.SIGSTOP)
    try:
        await store.put("a", b"12345678")
        with pytest.raises(StorageError, match="spool is full"):
            await store.put("b", b"12345678")
    finally:
        s3_server.proc.send_signal(signal.SIGCONT)
    await store.close()
