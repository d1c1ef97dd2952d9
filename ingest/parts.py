"""Sans-IO re-cutting of ingested CMAF fragments into low-latency parts (RFC 8216bis §4.4.4.9,
EXT-X-PART): an encoder's chunks, one per frame or a few frames (ffmpeg ``frag_every_frame`` or
``-frag_duration``), are joined, and fragments longer than a part are split, so that every stored
fragment of a low-latency point lasts at most the part target.

A part is published as soon as it is known to be whole: when the samples held reach the target
minus one sample (the next one would not fit), or before a video sync sample, which always starts
a new part so that a segment, and any part starting one, begins independent. Samples keep their
bytes, flags and timing; only the framing changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from media.cmaf import write_fragment
from media.model import Fragment, Sample, Track, TrackKind


@dataclass
class _Held:
    decode_time: int = 0
    samples: list[Sample] = field(default_factory=list)
    payload: list[bytes] = field(default_factory=list)
    duration: int = 0


class PartCutter:
    """One track's parts. ``push`` a fragment as ingest received it; the parts it completes come
    back. ``flush`` at the end of the stream returns the last, shorter one.

    ``stored`` is where the track's stored timeline ends now: samples before it are stored already
    (an encoder re-sending its last fragments after a reconnect, or a redundant encoder behind
    another) and are left out, so the next part starts where the stored ones end, instead of
    overlapping them and being refused."""

    def __init__(self, track: Track, part: Fraction) -> None:
        self.track = track
        self.limit = int(part * track.timescale)
        self.video = track.kind is TrackKind.VIDEO
        self._held = _Held()
        self._sequence = 0

    def push(self, fragment: Fragment, stored: int) -> list[Fragment]:
        out: list[Fragment] = []
        held = self._held
        # Rounded trun durations may leave a few ticks between an encoder's chunks; more than a
        # sample is a break, which ends the held part where it ends.
        slack = max((s.duration for s in fragment.samples), default=0)
        if held.samples and abs(fragment.decode_time - (held.decode_time + held.duration)) > slack:
            out += self.flush(stored)
            held = self._held
        total = sum(s.size for s in fragment.samples)
        offset = len(fragment.data) - total  # the payload closes the fragment (write_fragment)
        time = fragment.decode_time
        for sample in fragment.samples:
            data = fragment.data[offset : offset + sample.size]
            offset += sample.size
            start, time = time, time + sample.duration
            if start < stored and not held.samples:
                continue  # stored already
            if held.samples and (
                (self.video and sample.is_sync) or held.duration + sample.duration > self.limit
            ):
                out += self.flush(stored)
                held = self._held
            if not held.samples:
                held.decode_time = start
            held.samples.append(sample)
            held.payload.append(data)
            held.duration += sample.duration
        if held.samples and held.duration + held.samples[-1].duration > self.limit:
            out += self.flush(stored)  # the next sample would not fit: this part is whole now
        return out

    def flush(self, stored: int) -> list[Fragment]:
        """The held samples as a part, less any that were stored meanwhile."""
        held = self._held
        self._held = _Held()
        while held.samples and held.decode_time < stored:
            first = held.samples.pop(0)
            held.payload.pop(0)
            held.decode_time += first.duration
            held.duration -= first.duration
        if not held.samples:
            return []
        self._sequence += 1
        payload = b"".join(held.payload)
        data = write_fragment(self._sequence, held.decode_time, held.samples, payload)
        return [Fragment(self.track.name, held.decode_time, held.duration, tuple(held.samples), data)]
