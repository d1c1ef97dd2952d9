"""Golden ``dump()`` texts of hand-built structures (tests/golden/*.txt).

Set ``UPDATE_GOLDEN=1`` to rewrite the files from the current output, then review the diff.
Every input is built here, so the text does not depend on an encoder's version.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from media.boxes import NON_SYNC_SAMPLE_FLAGS, SYNC_SAMPLE_FLAGS, TfrfBox, dump, parse_boxes
from media.cmaf import build_header, write_fragment
from media.model import Sample, TrackKind
from tests.unit.streams import aac_entry, avc_entry, moof_mdat, samples_payload, smooth_traf

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def check_golden(name: str, data: bytes) -> None:
    text = "\n".join(dump(parse_boxes(data))) + "\n"
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"{path} is missing; run with UPDATE_GOLDEN=1 to create it")
    assert text == path.read_text(encoding="utf-8"), f"dump differs from {path}"


def _avc_header() -> bytes:
    return build_header(TrackKind.VIDEO, 90000, "und", avc_entry(bitrate=800_000))


def _aac_header() -> bytes:
    return build_header(TrackKind.AUDIO, 48000, "eng", aac_entry())


def _fragment() -> bytes:
    samples = [
        Sample(3000, 5, SYNC_SAMPLE_FLAGS, 3000),
        Sample(3000, 3, NON_SYNC_SAMPLE_FLAGS, 6000),
        Sample(3000, 2, NON_SYNC_SAMPLE_FLAGS, -3000),
    ]
    return write_fragment(3, 180000, samples, samples_payload([5, 3, 2]))


def _smooth_fragment() -> bytes:
    video = smooth_traf(1, 20_000_000, [400_000] * 2, [6, 4])
    video.append(TfrfBox([(20_800_000, 800_000)], 1))
    return moof_mdat([video], [samples_payload([6, 4])], sequence=9)


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("header_avc1.txt", _avc_header),
        ("header_mp4a.txt", _aac_header),
        ("fragment.txt", _fragment),
        ("smooth_fragment.txt", _smooth_fragment),
    ],
)
def test_golden_dump(name: str, build: Callable[[], bytes]) -> None:
    check_golden(name, build())


def test_update_switch_is_off_by_default() -> None:
    """A run that rewrites goldens checks nothing; make that visible."""
    if UPDATE:
        pytest.skip("UPDATE_GOLDEN=1: golden files were rewritten, not compared")
