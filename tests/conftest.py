"""Shared fixtures: a real ``headwater serve`` process on a loopback port, and ffmpeg helpers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files from the output")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--update-golden"):
        os.environ["UPDATE_GOLDEN"] = "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """One ``headwater serve`` child process. ``restart`` keeps the content root."""

    root: Path
    log_path: Path
    settings: list[str] = field(default_factory=list)
    port: int = 0
    rtmp_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    content_root: str = ""  # --root when not the folder ``root`` (s3://bucket/prefix)
    env: dict[str, str] = field(default_factory=dict)  # added to the child's environment

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rtmp_url(self, path: str) -> str:
        """``rtmp://127.0.0.1:<port>/<app>/<name>`` for ``path`` = ``app/name[?query]``."""
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{path}"

    def start(self) -> Server:
        # A restart keeps its addresses, as encoders expect.
        self.port = self.port or free_port()
        self.rtmp_port = self.rtmp_port or free_port()
        args = [
            sys.executable,
            "-m",
            "origin.cli",
            "serve",
            "--root",
            self.content_root or str(self.root),
            "--http",
            f"127.0.0.1:{self.port}",
            "--rtmp",
            f"127.0.0.1:{self.rtmp_port}",
            "--set",
            "log.level=debug",
        ]
        for item in self.settings:
            args += ["--set", item]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, env={**os.environ, **self.env})
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("server did not answer /healthz within 15 s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def restart(self) -> Server:
        self.stop()
        return self.start()

    def events(self, name: str | None = None) -> list[dict[str, object]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if name is None or entry.get("event") == name:
                    out.append(entry)
        return out

    def settled(self, point: str, state: str = "stopped", timeout: float = 15) -> dict[str, object]:
        """The point's state once it reaches ``state``: ffmpeg exits after sending its last bytes,
        without waiting for the answer, so the server may still be storing them."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.state(point)
            if current["state"] == state or time.monotonic() > deadline:
                return current
            time.sleep(0.05)

    def wait_events(self, name: str, count: int, timeout: float = 15) -> list[dict[str, object]]:
        """The ``name`` events once there are ``count`` of them (or what there is at the deadline)."""
        deadline = time.monotonic() + timeout
        while len(found := self.events(name)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return found

    def state(self, point: str) -> dict[str, object]:
        response = httpx.get(f"{self.url}/{point}.isml/state", timeout=5)
        response.raise_for_status()
        data: dict[str, object] = response.json()
        return data


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[object]:
    """``make_server(*settings)`` starts a server on its own content root; all are stopped after."""
    servers: list[Server] = []

    def make(*settings: str, root: Path | None = None) -> Server:
        n = len(servers)
        server = Server(root or tmp_path / f"root{n}", tmp_path / f"server{n}.log", list(settings))
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        if server.proc is not None:
            server.stop()


@pytest.fixture
def server(make_server: object) -> Server:
    return make_server()  # type: ignore[operator,no-any-return]


def run_ffmpeg(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def lavfi_inputs(
    seconds: float,
    *,
    size: str = "160x90",
    source: str = "testsrc2",
    audio: bool = True,
    audio_seconds: float | None = None,
    realtime: bool = False,
) -> list[str]:
    """ffmpeg input arguments for ``seconds`` of a lavfi test pattern (``source`` at ``size``, 25 fps)
    and, with ``audio``, a 440 Hz sine at 48 kHz lasting ``audio_seconds`` (``seconds`` if None);
    ``realtime`` reads each input at its native rate (``-re``)."""
    pace = ["-re"] if realtime else []
    args = [*pace, "-f", "lavfi", "-t", str(seconds), "-i", f"{source}=size={size}:rate=25"]
    if audio:
        duration = seconds if audio_seconds is None else audio_seconds
        args += [*pace, "-f", "lavfi", "-t", str(duration), "-i", "sine=f=440:sample_rate=48000"]
    return args


def probe(path: Path) -> dict[str, object]:
    """ffprobe's view of a file's first stream: codec, decoded frame count, duration."""
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,nb_read_frames,duration,width,height,sample_rate",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    streams = json.loads(result.stdout)["streams"]
    assert len(streams) == 1, streams
    stream: dict[str, object] = streams[0]
    return stream


def track_file(root: Path, point: str, track: str, out: Path) -> Path:
    """A stored track as one file: its CMAF header followed by its fragments in decode order."""
    folder = root / point / "_tracks" / track
    fragments = sorted(folder.glob("*.m4s"))
    out.write_bytes((folder / "header.mp4").read_bytes() + b"".join(f.read_bytes() for f in fragments))
    return out


CMAF_FLAGS = "empty_moov+separate_moof+default_base_moof+frag_keyframe+cmaf"


def make_cmaf_video(path: Path, seconds: int, gop: int, *extra: str, movflags: str = CMAF_FLAGS) -> bytes:
    """A CMAF H.264 track (160x90, 25 fps) written by ffmpeg, as a CMAF ingest encoder sends it."""
    result = run_ffmpeg(
        *lavfi_inputs(seconds, audio=False),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        str(gop),
        *extra,
        "-f",
        "mp4",
        "-movflags",
        movflags,
        str(path),
    )
    assert result.returncode == 0, result.stderr
    return path.read_bytes()


def split_cmaf(data: bytes) -> tuple[bytes, list[bytes]]:
    """The CMAF header and the segments (moof + mdat each) of a CMAF file, as a
    one-request-per-segment encoder sends them."""
    from media.bmff import BoxReader

    boxes = BoxReader(1 << 30).feed(data)
    header = b"".join(b.data for b in boxes if b.type in (b"ftyp", b"moov"))
    media = [b for b in boxes if b.type in (b"moof", b"mdat")]
    return header, [media[i].data + media[i + 1].data for i in range(0, len(media), 2)]


# -- S3 -----------------------------------------------------------------------------------------

# moto accepts any credentials; boto3 in the tests and in the servers reads these.
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


@dataclass
class S3Server:
    """moto in server mode, a real S3 HTTP endpoint, in its own process (so a test can stop it)."""

    endpoint: str
    proc: subprocess.Popen[bytes]

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_ENV["AWS_REGION"],
        )

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        found: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return found

    def server(self, root: Path, log: Path, content_root: str, *settings: str) -> Server:
        """A ``headwater serve`` on ``content_root`` (s3://…) of this endpoint."""
        return Server(
            root,
            log,
            [f"storage.s3_endpoint_url={self.endpoint}", "storage.s3_addressing_style=path", *settings],
            content_root=content_root,
            env=S3_ENV,
        )


def start_s3(log: Path) -> S3Server:
    port = free_port()
    out = log.open("ab")
    args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(args, stdout=out, stderr=out)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            httpx.get(endpoint, timeout=0.5)
            return S3Server(endpoint, proc)
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not answer within 20 s")


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3 endpoint per test module; each test makes its own bucket."""
    s3 = start_s3(tmp_path_factory.mktemp("s3") / "moto.log")
    try:
        yield s3
    finally:
        s3.proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
        s3.proc.terminate()
        try:
            s3.proc.wait(10)
        except subprocess.TimeoutExpired:
            s3.proc.kill()
            s3.proc.wait()
