"""Real publishers' bytes (everything the client sent over TCP, recorded by a relay in front of a
Headwater server; see tests/data/rtmp/README.md) fed to the sans-IO session in random splits:
the session must see the same conversation and the same media whatever the split, and the FLV
receiver must make whole CMAF fragments of it."""

from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path

import pytest

from ingest.flv import FlvReceiver
from ingest.fmp4 import FragmentReceived
from ingest.rtmp import chunks
from ingest.rtmp.session import (
    Connected,
    Event,
    MediaReceived,
    MetadataReceived,
    PublishRequested,
    ServerSession,
    Unpublished,
)

DATA = Path(__file__).parent.parent / "data" / "rtmp"

# (capture, app, publish name, video frames, audio frames, how the publish ends)
CAPTURES = [
    ("ffmpeg_publish.bin", "live", "cap?t=abc", 50, 95, "FCUnpublish"),
    ("librtmp_publish.bin", "live", "lib1", 50, 94, "FCUnpublish"),
]


def converse(data: bytes, rng: random.Random) -> list[Event]:
    session = ServerSession(random=lambda n: bytes(n))
    events: list[Event] = []
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 2, 7, 100, 1400, 4096, 65536])
        pending = session.receive(data[pos : pos + n])
        while pending:
            ev = pending.pop(0)
            events.append(ev)
            if isinstance(ev, PublishRequested):
                pending = session.accept_publish(ev.stream_id) + pending
        session.data_to_send()
        pos += n
    return events


@pytest.mark.parametrize(("name", "app", "stream", "video", "audio", "end"), CAPTURES)
def test_captured_publish_in_random_splits(
    name: str, app: str, stream: str, video: int, audio: int, end: str
) -> None:
    data = (DATA / name).read_bytes()
    reference = converse(data, random.Random(0))
    for seed in range(1, 12):
        assert converse(data, random.Random(seed)) == reference
    kinds = [type(e) for e in reference]
    assert kinds[0] is Connected and reference[0].app == app  # type: ignore[union-attr]
    assert kinds[1] is PublishRequested and reference[1].name == stream  # type: ignore[union-attr]
    assert MetadataReceived in kinds
    assert kinds[-1] is Unpublished and reference[-1].reason == end  # type: ignore[union-attr]

    media = [e for e in reference if isinstance(e, MediaReceived)]
    receiver = FlvReceiver("", Fraction(0), max_fragment_bytes=1 << 24)
    fragments = []
    for ev in media:
        handle = receiver.video_message if ev.type_id == chunks.VIDEO else receiver.audio_message
        fragments += [e.fragment for e in handle(ev.timestamp, ev.payload) if isinstance(e, FragmentReceived)]
    fragments += [e.fragment for e in receiver.close() if isinstance(e, FragmentReceived)]
    by_track = {t: [f for f in fragments if f.track == t] for t in ("video", "audio")}
    assert sum(len(f.samples) for f in by_track["video"]) == video
    assert sum(len(f.samples) for f in by_track["audio"]) == audio
    assert all(f.keyframe for f in by_track["video"])
