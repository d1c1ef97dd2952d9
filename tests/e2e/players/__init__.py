"""Real browser players for the end-to-end tests: hls.js, dash.js and Shaka Player in headless
Debian Chromium, driven by Playwright (``play.mjs`` beside this file).

    from tests.e2e.players import play, require

    require()  # skips the test (fails it under CI=true) when Chromium or node_modules is missing
    result = play("hls.js", f"{server.url}/live/ch.isml/master.m3u8", seconds=10)
    assert result.ok and result.advanced >= 9.0, str(result)  # str(): the full summary

``play`` waits for playback to start (``start_timeout``), then measures how far ``currentTime``
moves over ``seconds`` of wall-clock time. Playback failures come back in ``result.errors``; a
harness that cannot run at all (no browser, no node, a hung run) raises :class:`HarnessError`.
``scripts/test.sh`` installs Chromium, Node.js and the npm packages.

``play(..., clock=True)`` also reads the wall-clock code that ``bench/latency.py`` burns into each
frame (a strip of black and white cells, see ``page.js``) and returns, in ``clock_latencies``, the
glass-to-glass latency of every frame displayed during the measurement.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "PLAYERS",
    "HarnessError",
    "PlayResult",
    "Variant",
    "available",
    "play",
    "require",
    "unavailable_reason",
]

PLAYERS = ("hls.js", "dash.js", "shaka")
HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "play.mjs"
CHROMIUM = "/usr/bin/chromium"
MODULES = HERE / "node_modules"
# What play.mjs loads from node_modules: Playwright and each player's browser build.
NEEDED = (
    "playwright-core/package.json",
    "hls.js/dist/hls.min.js",
    "dashjs/dist/modern/umd/dash.all.min.js",
    "shaka-player/dist/shaka-player.compiled.js",
)
LAUNCH_BUDGET = 20.0  # play.mjs: seconds to launch Chromium and load the page
NODE_MAJOR = 20  # playwright-core needs Node.js 20 or newer


class HarnessError(RuntimeError):
    """The harness itself could not run (as opposed to a stream that did not play)."""


@dataclass(frozen=True)
class Variant:
    """A video variant as the player lists it."""

    bandwidth: int | None
    width: int | None
    height: int | None
    codecs: str


@dataclass(frozen=True)
class PlayResult:
    """What one ``play`` run saw. Times are seconds; ``advanced`` is ``end_time - start_time``."""

    player: str
    url: str
    ok: bool  # started, and no errors
    started: bool  # currentTime moved while playing before start_timeout
    startup_seconds: float | None  # from creating the player to currentTime moving
    measured_seconds: float  # wall-clock length of the measurement (shorter if it stopped early)
    advanced: float  # currentTime progress during the measurement
    start_time: float | None
    end_time: float | None
    live: bool | None  # as the player sees the stream; None when it never loaded
    latency: float | None  # the player's live latency estimate, live streams only
    video_width: int
    video_height: int
    total_frames: int | None  # getVideoPlaybackQuality(), cumulative
    dropped_frames: int | None
    stalls: int  # 'waiting' events after playback started
    seeks: int  # 'seeking' events after playback started (gap jumps, live-edge catch-up)
    variants: list[Variant]
    variant: int | None  # index into variants of the one playing
    errors: list[str]  # fatal player errors, video.error, page errors, start timeout
    warnings: list[str]  # non-fatal player errors (hls.js non-fatal, Shaka recoverable)
    http_failures: list[dict[str, Any]]  # {"url", "status"} for >= 400, {"failure"} for others
    console: list[str]  # the page's console errors and warnings
    log: list[dict[str, Any]] = field(repr=False)  # the page's event log, for debugging
    browser_version: str | None = None
    library_version: str | None = None
    elapsed: float = 0.0  # the whole run in play.mjs, browser launch included
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    # clock=True only: (seconds into the measurement, glass-to-glass latency in seconds) per frame
    # displayed during the measurement, and the frames whose clock code did not read.
    clock_latencies: list[tuple[float, float]] = field(default_factory=list, repr=False)
    clock_unreadable: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlayResult:
        return cls(
            player=data["player"],
            url=data["url"],
            ok=data["ok"],
            started=data["started"],
            startup_seconds=data["startup_seconds"],
            measured_seconds=data["measured_seconds"],
            advanced=data["advanced"],
            start_time=data["start_time"],
            end_time=data["end_time"],
            live=data["live"],
            latency=data["latency"],
            video_width=data["video_width"],
            video_height=data["video_height"],
            total_frames=data["total_frames"],
            dropped_frames=data["dropped_frames"],
            stalls=data["stalls"],
            seeks=data["seeks"],
            variants=[Variant(**v) for v in data["variants"]],
            variant=data["variant"],
            errors=list(data["errors"]),
            warnings=list(data["warnings"]),
            http_failures=list(data["http_failures"]),
            console=list(data["console"]),
            log=list(data["log"]),
            browser_version=data["browser_version"],
            library_version=data["library_version"],
            elapsed=data["elapsed"],
            raw=data,
            clock_latencies=[(float(t), float(lat)) for t, lat in data.get("clock_latencies", [])],
            clock_unreadable=int(data.get("clock_unreadable", 0)),
        )

    def summary(self) -> str:
        """A few lines for assertion messages: the figures, then what went wrong."""
        lines = [
            f"{self.player} {self.library_version} on {self.url}: ok={self.ok} started={self.started} "
            f"startup={self.startup_seconds}s advanced={self.advanced}s in {self.measured_seconds}s "
            f"live={self.live} latency={self.latency} size={self.video_width}x{self.video_height} "
            f"frames={self.total_frames} dropped={self.dropped_frames} "
            f"stalls={self.stalls} seeks={self.seeks}"
        ]
        if self.clock_latencies or self.clock_unreadable:
            latencies = sorted(lat for _, lat in self.clock_latencies)
            median = f"{latencies[len(latencies) // 2]:.3f}s" if latencies else "-"
            lines.append(
                f"clock: {len(latencies)} frames read, {self.clock_unreadable} unreadable, "
                f"median latency {median}"
            )
        for title, items in (
            ("errors", self.errors),
            ("warnings", self.warnings),
            ("http failures", self.http_failures),
            ("console", self.console),
        ):
            if items:
                lines.append(f"{title} ({len(items)}):")
                lines += [f"  {item}" for item in items[:8]]
        if not self.ok and self.log:
            lines.append("last page events:")
            lines += [f"  {entry}" for entry in self.log[-15:]]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


@cache
def _node_major() -> int | None:
    node = shutil.which("node")
    if node is None:
        return None
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10, check=True)
        return int(out.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def unavailable_reason(chromium: str = CHROMIUM) -> str | None:
    """Why ``play`` cannot run on this machine, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed (bash scripts/test.sh installs it)"
    major = _node_major()
    if major is None or major < NODE_MAJOR:
        return f"Node.js {NODE_MAJOR} or newer is needed for playwright-core; `node --version` gives {major}"
    if not os.access(chromium, os.X_OK):
        return f"Chromium is not installed at {chromium} (bash scripts/test.sh installs Debian's chromium)"
    missing = [name for name in NEEDED if not (MODULES / name).is_file()]
    if missing:
        return (
            f"npm packages missing in {MODULES} ({', '.join(missing)}): "
            "run bash scripts/test.sh, or npm ci --prefix tests/e2e/players"
        )
    return None


def available(chromium: str = CHROMIUM) -> bool:
    return unavailable_reason(chromium) is None


def require(chromium: str = CHROMIUM) -> None:
    """Skip the calling test when the harness cannot run here; under CI (``CI`` set) fail it
    instead, since scripts/test.sh installs everything the harness needs."""
    reason = unavailable_reason(chromium)
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"browser players unavailable: {reason}")
    pytest.skip(reason)


def _profile_processes(profile: str) -> list[int]:
    """PIDs of the Chromium processes started with this profile folder (Linux /proc)."""
    flag = f"--user-data-dir={profile}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if flag in (entry / "cmdline").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _stop(proc: subprocess.Popen[str], profile: str) -> None:
    """End the node run (its own process group) and any Chromium left with our profile."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # play.mjs closes the browser on SIGTERM
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for pid in _profile_processes(profile):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def play(
    player: str,
    url: str,
    seconds: float = 10.0,
    *,
    live: bool | None = None,
    low_latency: bool = False,
    start_timeout: float = 15.0,
    config: Mapping[str, Any] | None = None,
    chromium: str = CHROMIUM,
    start: float | None = None,
    clock: bool = False,
) -> PlayResult:
    """Play ``url`` with ``player`` (one of PLAYERS) in a fresh headless Chromium.

    ``live``: True or False makes a stream of the other kind an error; None accepts either.
    ``low_latency``: hls.js ``lowLatencyMode``, Shaka ``streaming.lowLatencyMode``, dash.js live
    catch-up (dash.js reads low-latency DASH from the MPD itself). ``config`` goes to the player
    as is: the hls.js constructor, dash.js ``updateSettings`` or Shaka ``configure``.
    ``start``: where playback starts on the player's ``currentTime`` axis (None: the player's own
    choice, the live edge less its delay or 0): hls.js ``startPosition`` (seconds from the start of
    the first playlist it loads), dash.js ``initialize(..., startTime)`` and Shaka
    ``load(url, startTime)`` (for a live MPD, seconds since ``availabilityStartTime``).
    ``clock``: decode the capture time burned into each frame (``bench/latency.py``'s clock strip)
    and fill ``clock_latencies``. The media server must answer CORS (the page is on another port).
    """
    if player not in PLAYERS:
        raise ValueError(f"player must be one of {PLAYERS}, not {player!r}")
    reason = unavailable_reason(chromium)
    if reason is not None:
        raise HarnessError(reason)
    # play.mjs's own hard limit is LAUNCH_BUDGET + start_timeout + seconds + 10; allow for its cleanup.
    timeout = LAUNCH_BUDGET + start_timeout + seconds + 25
    with tempfile.TemporaryDirectory(prefix="hw-chromium-", ignore_cleanup_errors=True) as profile:
        args = [
            "node",
            str(SCRIPT),
            "--player",
            player,
            "--url",
            url,
            "--seconds",
            str(seconds),
            "--start-timeout",
            str(start_timeout),
            "--config",
            json.dumps(dict(config or {})),
            "--user-data-dir",
            profile,
            "--chromium",
            chromium,
        ]
        if live is not None:
            args.append("--live" if live else "--vod")
        if low_latency:
            args.append("--low-latency")
        if start is not None:
            args.append(f"--start={float(start)!r}")  # one argument: a negative value is no flag
        if clock:
            args.append("--clock")
        proc = subprocess.Popen(
            args,
            cwd=HERE,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            _stop(proc, profile)
            proc.communicate()
            raise HarnessError(f"play.mjs did not finish within {timeout:.0f} s") from exc
        finally:
            _stop(proc, profile)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise HarnessError(f"play.mjs exited {proc.returncode} without a result:\n{stderr[-3000:]}")
    data: dict[str, Any] = json.loads(lines[-1])
    if data.get("harness_error"):
        raise HarnessError(f"{data['harness_error']}\n{stderr[-3000:]}")
    return PlayResult.from_json(data)
