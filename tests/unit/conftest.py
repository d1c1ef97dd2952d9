"""Unit-test fixtures: tiny real captures made by ffmpeg once per session (never committed)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

LAVFI_VIDEO = ["-f", "lavfi", "-t", "2", "-i", "testsrc2=size=160x90:rate=25"]
LAVFI_AUDIO = ["-f", "lavfi", "-t", "2", "-i", "sine"]
CMAF_FLAGS = ["-movflags", "empty_moov+separate_moof+default_base_moof+frag_keyframe+cmaf"]


@dataclass(frozen=True)
class Captures:
    """``ismv``: Smooth (isml) with two video bitrates and one AAC track; ``cmaf_video``: single-track
    CMAF H.264; ``hevc``: single-track CMAF HEVC tagged hvc1."""

    ismv: bytes
    cmaf_video: bytes
    hevc: bytes


def _ffmpeg(out: Path, *args: str) -> bytes:
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args, str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        pytest.fail(f"ffmpeg failed ({' '.join(cmd)}):\n{result.stderr}")
    return out.read_bytes()


@pytest.fixture(scope="session")
def captures(tmp_path_factory: pytest.TempPathFactory) -> Captures:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not on PATH")
    folder = tmp_path_factory.mktemp("captures")
    ismv = _ffmpeg(
        folder / "out.ismv",
        *LAVFI_VIDEO,
        *LAVFI_AUDIO,
        *("-map", "0:v", "-map", "0:v", "-map", "1:a"),
        *("-c:v", "libx264", "-b:v:0", "400k", "-b:v:1", "200k", "-g", "25"),
        *("-c:a", "aac", "-b:a", "64k"),
        *("-movflags", "isml+frag_keyframe", "-f", "ismv"),
    )
    cmaf_video = _ffmpeg(
        folder / "video.cmfv", *LAVFI_VIDEO, "-c:v", "libx264", "-g", "25", "-f", "mp4", *CMAF_FLAGS
    )
    hevc = _ffmpeg(
        folder / "hevc.mp4",
        *LAVFI_VIDEO,
        *("-c:v", "libx265", "-tag:v", "hvc1", "-g", "25", "-x265-params", "log-level=none"),
        *("-f", "mp4", *CMAF_FLAGS),
    )
    return Captures(ismv, cmaf_video, hevc)
