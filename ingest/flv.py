"""Sans-IO receiver for FLV media, as one RTMP publish delivers it: audio and video tag bodies with
millisecond timestamps in, CMAF tracks and fragments out (the events of :mod:`ingest.fmp4`), so RTMP
input lands in the same publishing points and index as HTTP ingest.

Video is cut into fragments at keyframes, once a fragment holds at least ``target`` seconds (the
publishing point's smallest minimum fragment length; 0 cuts at every keyframe). Audio fragments end
where video fragments end, so segments of both line up; without video they last ``AUDIO_ONLY``
seconds. For a low-latency point (``part``), every fragment is a part: video is cut at every
keyframe and wherever the next frame would take it beyond ``part`` seconds, audio wherever the next
frame would (RFC 8216bis §4.4.4.9: a part lasts at most the part target), so a part is stored one
frame after its last one arrived.

Video durations come from consecutive decode times; audio durations from the frames themselves
(1024 samples per AAC frame, the Opus TOC), re-aligned to the timestamps only when they drift apart
by more than ``AUDIO_RESYNC`` seconds.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from ingest.fmp4 import Event, FragmentReceived, TracksDeclared
from media import flv
from media.aac import AudioSpecificConfig
from media.av1 import strip_temporal_delimiters
from media.boxes import NON_SYNC_SAMPLE_FLAGS, SYNC_SAMPLE_FLAGS
from media.cmaf import VIDEO_TIMESCALE, aac_frame_duration, track_from_config, write_fragment
from media.errors import UnsupportedMedia
from media.flv import FlvError
from media.model import Fragment, Sample, Track
from media.opus import packet_duration

AUDIO_ONLY = 2  # seconds per audio fragment when the stream has no video
AUDIO_RESYNC_DIVISOR = 5  # a fifth of a second of drift between counted samples and timestamps
MAX_FRAGMENT = 20 * VIDEO_TIMESCALE  # ticks: a fragment is cut without a keyframe beyond this
MAX_AUDIO_LAG = 10  # seconds audio waits for a video cut before cutting on its own
MAX_TIED_FRAMES = 16  # consecutive video frames that may share one decode time
MAX_TIE_BACK = VIDEO_TIMESCALE  # ticks a video decode time may step back (then held and spread)


@dataclass
class _Frame:
    time: int  # decode time, track ticks
    data: bytes
    keyframe: bool = True
    composition_offset: int = 0
    duration: int = 0


@dataclass
class _TrackState:
    kind: str  # "video" | "audio"
    name: str
    codec: str = ""
    record: bytes = b""
    track: Track | None = None
    frames: list[_Frame] = field(default_factory=list)  # the open fragment
    size: int = 0
    sequence: int = 0
    next_time: int | None = None  # audio: where the next frame starts
    frame_duration: int = 0  # AAC: ticks per frame
    dropped: int = 0


class FlvReceiver:
    """One publish's audio and video. ``suffix`` ends the track names (``video_2``/``audio_2`` for the
    stream ``name_2``), so renditions of an ABR set keep their tracks apart."""

    def __init__(
        self, suffix: str, target: Fraction, *, max_fragment_bytes: int, part: Fraction | None = None
    ) -> None:
        self.target_ticks = 0 if part else -(-target.numerator * VIDEO_TIMESCALE // target.denominator)
        self.part = part
        self.part_ticks = int(part * VIDEO_TIMESCALE) if part else 0
        self.max_fragment_bytes = max_fragment_bytes
        self.video = _TrackState("video", f"video{suffix}")
        self.audio = _TrackState("audio", f"audio{suffix}")
        self.bitrates: dict[str, int] = {}
        self._cuts: deque[int] = deque(maxlen=64)  # video fragment starts, video ticks

    @property
    def tracks(self) -> list[Track]:
        return [s.track for s in (self.video, self.audio) if s.track is not None]

    def metadata(self, values: Mapping[str, object]) -> None:
        """``onMetaData``: the bit rates it announces (kbit/s) label the tracks."""
        for kind, key in (("video", "videodatarate"), ("audio", "audiodatarate")):
            value = values.get(key)
            if isinstance(value, (int, float)) and 0 < value < 10_000_000:
                self.bitrates[kind] = int(value * 1000)

    # -- video -------------------------------------------------------------------------------

    def video_message(self, time_ms: int, body: bytes) -> list[Event]:
        packet = flv.parse_video(body)
        state = self.video
        if isinstance(packet, flv.VideoConfig):
            return self._config(state, packet.codec, packet.record)
        if not isinstance(packet, flv.VideoFrame):
            return []
        events: list[Event] = []
        if state.track is None:
            if not state.record or not packet.keyframe:
                state.dropped += 1  # nothing can decode it: no sequence header or keyframe yet
                return events
            events += self._declare(state, packet.data)
        data = strip_temporal_delimiters(packet.data) if packet.codec == "av01" else packet.data
        time = time_ms * VIDEO_TIMESCALE // 1000
        cts = packet.composition_offset * VIDEO_TIMESCALE // 1000
        frames = state.frames
        if frames and time <= frames[-1].time:
            # A decode time that does not advance (GStreamer's flvmux clamps the negative decode
            # times of the first B-frames to 0): held at the previous one, keeping the presentation
            # time, and spread out once a later decode time arrives. Only a few frames, and only
            # a little back: anything else is not a muxer's clamping.
            back = frames[-1].time - time
            tied = next((i for i, f in enumerate(reversed(frames)) if f.time != frames[-1].time), len(frames))
            if back > MAX_TIE_BACK or tied >= MAX_TIED_FRAMES:
                raise FlvError(
                    f"video decode time {time_ms} ms does not advance: {back * 1000 // VIDEO_TIMESCALE} ms "
                    f"back, {tied} frames at one time"
                )
            cts += time - frames[-1].time
            time = frames[-1].time
        elif frames:
            _spread_ties(frames, time)
            frames[-1].duration = time - frames[-1].time
            opened = time - frames[0].time
            if self.part_ticks and opened > self.part_ticks and len(frames) > 1:
                # The last frame ran longer than the one before (a dropped frame, jitter): it
                # begins the next part, so that this one keeps within the target.
                events += self._emit(state, len(frames) - 1)
                self._cuts.append(frames[-1].time)
                frames = state.frames
                opened = time - frames[0].time
            if (
                (packet.keyframe and opened >= self.target_ticks)
                or (self.part_ticks and opened + frames[-1].duration > self.part_ticks)
                or opened >= MAX_FRAGMENT
                or state.size + len(data) > self.max_fragment_bytes
            ):
                events += self._emit(state, len(frames))
                self._cuts.append(time)
                events += self._audio_cuts()
        state.frames.append(_Frame(time, data, packet.keyframe, cts))
        state.size += len(data)
        return events

    # -- audio -------------------------------------------------------------------------------

    def audio_message(self, time_ms: int, body: bytes) -> list[Event]:
        packet = flv.parse_audio(body)
        state = self.audio
        events: list[Event] = []
        if isinstance(packet, flv.AudioConfig):
            events += self._config(state, packet.codec, packet.record)
            if state.record and state.track is None:
                events += self._declare(state, b"")
            return events
        if packet is None or not packet.data:
            return events
        if state.track is None:
            state.dropped += 1
            return events
        track = state.track
        duration = packet_duration(packet.data) if track.codec == "Opus" else state.frame_duration
        actual = time_ms * track.timescale // 1000
        time = actual if state.next_time is None else state.next_time
        drift = actual - time
        resync = track.timescale // AUDIO_RESYNC_DIVISOR
        if drift > resync:
            # Samples are missing (the encoder dropped audio): continue at the timestamp, after a gap.
            events += self._emit(state, len(state.frames))
            time = actual
        elif drift < -resync:
            state.dropped += 1  # more audio than the timestamps leave room for
            return events
        state.frames.append(_Frame(time, packet.data, duration=duration))
        state.size += len(packet.data)
        state.next_time = time + duration
        opened = state.next_time - state.frames[0].time
        if self.part:
            if opened + duration > self.part * track.timescale:
                events += self._emit(state, len(state.frames))  # the next frame would not fit
        elif self.video.track is None:
            threshold = max(self.target_ticks, AUDIO_ONLY * VIDEO_TIMESCALE)  # video ticks
            if opened * VIDEO_TIMESCALE >= threshold * track.timescale:
                events += self._emit(state, len(state.frames))
        else:
            events += self._audio_cuts()
        if state.frames and (
            opened >= MAX_AUDIO_LAG * track.timescale or state.size > self.max_fragment_bytes
        ):
            events += self._emit(state, len(state.frames))  # video is far behind or gone
        return events

    def _audio_cuts(self) -> list[Event]:
        """End audio fragments where video fragments ended, once audio has reached that point."""
        state = self.audio
        events: list[Event] = []
        if state.track is None or self.part:
            return events  # low-latency audio is cut into parts of its own
        scale = state.track.timescale
        while state.frames and self._cuts:
            cut = self._cuts[0] * scale // VIDEO_TIMESCALE
            if state.frames[0].time >= cut:
                self._cuts.popleft()
                continue
            if state.frames[-1].time < cut:
                break  # audio has not reached the cut yet
            count = next(i for i, f in enumerate(state.frames) if f.time >= cut)
            events += self._emit(state, count)
            self._cuts.popleft()
        return events

    # -- shared ------------------------------------------------------------------------------

    def _config(self, state: _TrackState, codec: str, record: bytes) -> list[Event]:
        if not record:
            return []
        if state.track is not None and (codec, record) != (state.codec, state.record):
            raise UnsupportedMedia(
                f"the {state.kind} decoder configuration changed mid-stream ({state.codec} → {codec}); "
                "reconnect with the new settings to a new publishing point"
            )
        state.codec, state.record = codec, record
        return []

    def _declare(self, state: _TrackState, first_frame: bytes) -> list[Event]:
        state.track = track_from_config(
            state.name,
            state.codec,
            state.record,
            bitrate=self.bitrates.get(state.kind, 0),
            first_frame=first_frame,
        )
        if state.codec == "mp4a":
            state.frame_duration = aac_frame_duration(AudioSpecificConfig.parse(state.record))
        return [TracksDeclared((state.track,), b"")]

    def _emit(self, state: _TrackState, count: int) -> list[Event]:
        """The first ``count`` open frames as one fragment."""
        if not count or state.track is None:
            return []
        frames, state.frames = state.frames[:count], state.frames[count:]
        state.size = sum(len(f.data) for f in state.frames)
        state.sequence += 1
        samples = tuple(
            Sample(
                f.duration,
                len(f.data),
                SYNC_SAMPLE_FLAGS if f.keyframe else NON_SYNC_SAMPLE_FLAGS,
                f.composition_offset,
            )
            for f in frames
        )
        payload = b"".join(f.data for f in frames)
        data = write_fragment(state.sequence, frames[0].time, samples, payload)
        fragment = Fragment(state.name, frames[0].time, sum(s.duration for s in samples), samples, data)
        return [FragmentReceived(fragment)]

    def close(self) -> list[Event]:
        """The publish ended: store what is buffered. The last video frame lasts as long as the one
        before it (nothing follows to say otherwise)."""
        events: list[Event] = []
        frames = self.video.frames
        if frames:
            _spread_ties(frames, frames[-1].time + VIDEO_TIMESCALE // 30)
            frames[-1].duration = frames[-2].duration if len(frames) > 1 else VIDEO_TIMESCALE // 30
            events += self._emit(self.video, len(frames))
        events += self._emit(self.audio, len(self.audio.frames))
        return events


def _spread_ties(frames: list[_Frame], next_time: int) -> None:
    """Give the trailing frames that share one decode time evenly spaced decode times up to
    ``next_time``, keeping each one's presentation time (its composition offset absorbs the move)."""
    start = frames[-1].time
    count = 1
    while count < len(frames) and frames[-count - 1].time == start:
        count += 1
    if count == 1:
        return
    tied = frames[-count:]
    for i, frame in enumerate(tied):
        moved = start + (next_time - start) * i // count
        frame.composition_offset += frame.time - moved
        frame.time = moved
    for frame, following in itertools.pairwise(tied):
        frame.duration = following.time - frame.time
