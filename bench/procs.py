"""What the benchmarks share: a free loopback port, and a process's tree (for CPU and memory)."""

from __future__ import annotations

import socket
from pathlib import Path


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
