"""What the benchmarks share: a free loopback port, a process's tree, its CPU time, stopping it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path


def bare_static_command(port: int, routes: Path) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of bench/bare_static.py under Hypercorn on ``port``, answering
    the routes of the JSON file ``routes``: the reference the playout benchmarks compare with."""
    argv = [
        sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
        "bench.bare_static:app",
    ]  # fmt: skip
    return argv, {**os.environ, "BARE_STATIC_ROUTES": str(routes)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (``python -m hypercorn`` serves from a child process, nginx
    from worker processes); empty once it has gone."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    pids = [pid]
    for child in children:
        pids += process_tree(int(child))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (those already gone count for nothing)."""
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def stop_tree(
    proc: subprocess.Popen[bytes],
    stop_signal: signal.Signals,
    *,
    timeout: float,
    children_signal: signal.Signals | None = None,
) -> None:
    """Signal a process (and its children, with ``children_signal``), wait up to ``timeout``, then
    kill whatever of the tree is left: only processes the benchmark started."""
    pids = process_tree(proc.pid)
    if proc.poll() is None:
        proc.send_signal(stop_signal)
    if children_signal is not None:
        for pid in pids[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, children_signal)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    for pid in pids[1:]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


RTMP_MODULE_PATHS = (
    Path("/usr/lib/nginx/modules/ngx_rtmp_module.so"),
    Path("/usr/share/nginx/modules/ngx_rtmp_module.so"),
)


def rtmp_module() -> Path:
    """nginx's RTMP module (Debian's libnginx-mod-rtmp), for the nginx-rtmp references."""
    for path in RTMP_MODULE_PATHS:
        if path.exists():
            return path
    raise SystemExit(
        "nginx's RTMP module is missing: apt-get install -y --no-install-recommends nginx libnginx-mod-rtmp"
    )


def nginx_rtmp_conf(
    prefix: Path, rtmp_port: int, app: str, hls: dict[str, str], *, connections: int, http: str = ""
) -> str:
    """An nginx.conf for nginx-rtmp as a reference: one worker, ``live on; hls on;`` for ``app``
    writing into ``prefix/hls`` with the ``hls`` directives; ``http`` is an optional ``http { }``
    block (to serve that folder)."""
    settings = "".join(f"            {k} {v};\n" for k, v in hls.items())
    return f"""load_module {rtmp_module()};
daemon off;
master_process on;
worker_processes 1;
user root;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections {connections}; }}
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        application {app} {{
            live on;
            hls on;
            hls_path {prefix / "hls"};
{settings}        }}
    }}
}}
{http}"""
