"""The ``headwater`` command as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import run_ffmpeg


def headwater(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "origin.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_create_then_refuse_duplicate(tmp_path: Path) -> None:
    result = headwater("create", "live/news", "--root", str(tmp_path), "--option", "dvr_window_length=60")
    assert result.returncode == 0, result.stderr
    manifest = (tmp_path / "live/news/news.isml").read_text()
    assert '<meta name="dvr_window_length" content="60" />' in manifest

    again = headwater("create", "/live/news.isml", "--root", str(tmp_path))
    assert again.returncode == 2 and "exists already" in again.stderr

    bad = headwater("create", "live/x", "--root", str(tmp_path), "--option", "archive_length=soon")
    assert bad.returncode == 2 and "'archive_length'" in bad.stderr


def test_settings_errors_name_the_setting(tmp_path: Path) -> None:
    result = headwater("serve", "--root", str(tmp_path), "--set", "ingest.max_box_size=huge")
    assert result.returncode == 2 and "ingest.max_box_size" in result.stderr
    config = tmp_path / "bad.toml"
    config.write_text("[ingest]\nmax_bxo_size = 10\n")
    result = headwater("serve", "--config", str(config))
    assert result.returncode == 2 and "ingest.max_bxo_size" in result.stderr and str(config) in result.stderr
    result = headwater("serve", "--root", "gs://bucket/prefix", "--http", "127.0.0.1:1")
    assert result.returncode == 2 and "gs:// scheme is not supported" in result.stderr


def test_inspect_prints_the_box_tree(tmp_path: Path) -> None:
    out = tmp_path / "clip.ismv"
    made = run_ffmpeg(
        "-f",
        "lavfi",
        "-t",
        "1",
        "-i",
        "testsrc2=size=160x90:rate=25",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-movflags",
        "isml+frag_keyframe",
        "-f",
        "ismv",
        str(out),
    )
    assert made.returncode == 0, made.stderr
    result = headwater("inspect", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ftyp [") and "major_brand=isml" in lines[0]
    assert any(line.strip().startswith("avcC [") for line in lines)
    assert any(line.strip().startswith("tfxd [") for line in lines)

    out.write_bytes(out.read_bytes()[:-3])
    truncated = headwater("inspect", str(out))
    assert truncated.returncode == 2 and "offset" in truncated.stderr
