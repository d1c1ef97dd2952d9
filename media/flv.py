"""FLV audio and video tag bodies, as RTMP audio (8) and video (9) messages carry them: the legacy
headers (Adobe FLV 10.1 §E.4.2, §E.4.3) and Enhanced RTMP's FourCC headers (Veovera E-RTMP v2,
"ExVideoTagHeader" / "ExAudioTagHeader"). Each packet class parses from and writes to those bytes.

Times here are the message's milliseconds; composition offsets are signed milliseconds (§E.4.3.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from media.errors import MediaError, UnsupportedMedia


class FlvError(MediaError):
    """A tag body too short or with impossible field values."""


# Legacy codec ids (§E.4.3.1 CodecID, §E.4.2.1 SoundFormat) and the FourCC each maps to.
AVC_CODEC_ID = 7
HEVC_CODEC_ID = 12  # not in the FLV spec, but widely sent by encoders before Enhanced RTMP
AAC_SOUND_FORMAT = 10
EX_SOUND_FORMAT = 9  # E-RTMP: the audio tag has an ExAudioTagHeader
_LEGACY_VIDEO = {AVC_CODEC_ID: "avc1", HEVC_CODEC_ID: "hvc1"}
_VIDEO_CODEC_NAMES = {2: "Sorenson H.263", 3: "Screen video", 4: "VP6", 5: "VP6 alpha", 6: "Screen video 2"}
_SOUND_FORMAT_NAMES = {
    0: "linear PCM",
    1: "ADPCM",
    2: "MP3",
    3: "linear PCM LE",
    4: "Nellymoser 16k",
    5: "Nellymoser 8k",
    6: "Nellymoser",
    7: "G.711 A-law",
    8: "G.711 mu-law",
    11: "Speex",
    14: "MP3 8k",
    15: "device-specific sound",
}

# Video frame types (§E.4.3.1 FrameType)
KEY_FRAME = 1
INTER_FRAME = 2
DISPOSABLE_FRAME = 3
GENERATED_KEY_FRAME = 4
COMMAND_FRAME = 5

# E-RTMP VideoPacketType / AudioPacketType
SEQUENCE_START = 0
CODED_FRAMES = 1
SEQUENCE_END = 2
CODED_FRAMES_X = 3  # video: no composition time field
METADATA = 4
MPEG2TS_SEQUENCE_START = 5
MULTITRACK = 6
MODEX = 7
AUDIO_MULTICHANNEL_CONFIG = 4
AUDIO_MULTITRACK = 5

VIDEO_FOURCCS = ("avc1", "hvc1", "av01", "vp09")
AUDIO_FOURCCS = ("mp4a", "Opus", "ac-3", "ec-3", "fLaC", ".mp3")
# The FourCCs Headwater turns into CMAF tracks.
SUPPORTED_VIDEO = ("avc1", "hvc1", "av01")
SUPPORTED_AUDIO = ("mp4a", "Opus")


@dataclass(frozen=True, slots=True)
class VideoConfig:
    """A sequence start: the decoder configuration record (avcC, hvcC or av1C payload)."""

    codec: str
    record: bytes

    def __bytes__(self) -> bytes:
        if self.codec == "avc1":
            return bytes([KEY_FRAME << 4 | AVC_CODEC_ID, 0, 0, 0, 0]) + self.record
        return _ex_video(KEY_FRAME, SEQUENCE_START, self.codec) + self.record


@dataclass(frozen=True, slots=True)
class VideoFrame:
    """Coded video: for AVC and HEVC, length-prefixed NAL units; for AV1, OBUs (§5.3, low overhead)."""

    codec: str
    keyframe: bool
    composition_offset: int  # milliseconds, PTS - DTS
    data: bytes

    def __bytes__(self) -> bytes:
        frame_type = KEY_FRAME if self.keyframe else INTER_FRAME
        cts = (self.composition_offset & 0xFFFFFF).to_bytes(3, "big")
        if self.codec == "avc1":
            return bytes([frame_type << 4 | AVC_CODEC_ID, 1]) + cts + self.data
        if self.codec == "av01" or not self.composition_offset:
            # AV1 coded frames carry no composition time; others may drop it when it is zero.
            packet_type = CODED_FRAMES if self.codec == "av01" else CODED_FRAMES_X
            return _ex_video(frame_type, packet_type, self.codec) + self.data
        return _ex_video(frame_type, CODED_FRAMES, self.codec) + cts + self.data


@dataclass(frozen=True, slots=True)
class VideoEnd:
    """End of sequence: the encoder stopped this video stream."""

    codec: str

    def __bytes__(self) -> bytes:
        if self.codec == "avc1":
            return bytes([KEY_FRAME << 4 | AVC_CODEC_ID, 2, 0, 0, 0])
        return _ex_video(KEY_FRAME, SEQUENCE_END, self.codec)


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """A sequence start: AudioSpecificConfig for AAC, the ``OpusHead`` identification header for Opus."""

    codec: str
    record: bytes

    def __bytes__(self) -> bytes:
        if self.codec == "mp4a":
            return bytes([_AAC_HEADER, 0]) + self.record
        return _ex_audio(SEQUENCE_START, self.codec) + self.record


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One coded audio frame (raw AAC without ADTS, or one Opus packet)."""

    codec: str
    data: bytes

    def __bytes__(self) -> bytes:
        if self.codec == "mp4a":
            return bytes([_AAC_HEADER, 1]) + self.data
        return _ex_audio(CODED_FRAMES, self.codec) + self.data


VideoPacket = VideoConfig | VideoFrame | VideoEnd
AudioPacket = AudioConfig | AudioFrame

# AAC in FLV: SoundFormat 10, 44 kHz, 16-bit, stereo — the fixed values §E.4.2.1 asks for.
_AAC_HEADER = AAC_SOUND_FORMAT << 4 | 0x0F


def _ex_video(frame_type: int, packet_type: int, fourcc: str) -> bytes:
    return bytes([0x80 | frame_type << 4 | packet_type]) + fourcc.encode("latin-1")


def _ex_audio(packet_type: int, fourcc: str) -> bytes:
    return bytes([EX_SOUND_FORMAT << 4 | packet_type]) + fourcc.encode("latin-1")


def _need(body: bytes, size: int, what: str) -> None:
    if len(body) < size:
        raise FlvError(f"{what} needs {size} bytes, the tag body has {len(body)}")


def _si24(raw: bytes) -> int:
    return int.from_bytes(raw, "big", signed=True)


def _fourcc(body: bytes, pos: int, known: tuple[str, ...], kind: str) -> str:
    fourcc = body[pos : pos + 4].decode("latin-1")
    if fourcc not in known:
        raise UnsupportedMedia(f"unknown {kind} FourCC {fourcc!r} (Enhanced RTMP)")
    return fourcc


def parse_video(body: bytes) -> VideoPacket | None:
    """A video message body; ``None`` for packets that carry no media (command frames, metadata)."""
    _need(body, 1, "a video tag header")
    first = body[0]
    if first & 0x80:
        return _parse_ex_video(body)
    frame_type, codec_id = first >> 4, first & 0x0F
    if frame_type == COMMAND_FRAME:
        return None
    codec = _LEGACY_VIDEO.get(codec_id)
    if codec is None:
        name = _VIDEO_CODEC_NAMES.get(codec_id, f"codec id {codec_id}")
        raise UnsupportedMedia(f"FLV video codec {name} is not supported; send H.264, HEVC or AV1")
    _need(body, 5, "an AVC video tag header")
    packet_type = body[1]
    if packet_type == 0:
        return VideoConfig(codec, body[5:])
    if packet_type == 1:
        return VideoFrame(codec, frame_type in (KEY_FRAME, GENERATED_KEY_FRAME), _si24(body[2:5]), body[5:])
    if packet_type == 2:
        return VideoEnd(codec)
    raise FlvError(f"unknown AVCPacketType {packet_type}")


def _skip_modex(body: bytes, packet_type: int) -> tuple[int, int]:
    """Step over ModEx prefixes (E-RTMP v2 "ModEx"): each is a size (UI8 + 1, or UI16 + 1 after
    255), that many bytes of data, and a byte holding the ModEx type and the next packet type.
    Returns the packet type they wrap and where the rest of the header starts. The data (such as
    a nanosecond timestamp offset) is not used: millisecond timing is what the rest relies on."""
    pos = 1
    while packet_type == MODEX:
        _need(body, pos + 1, "a ModEx size")
        size = body[pos] + 1
        pos += 1
        if size == 256:
            _need(body, pos + 2, "a ModEx size")
            size = int.from_bytes(body[pos : pos + 2], "big") + 1
            pos += 2
        _need(body, pos + size + 1, "ModEx data")
        pos += size
        packet_type = body[pos] & 0x0F
        pos += 1
    return packet_type, pos


def _parse_ex_video(body: bytes) -> VideoPacket | None:
    frame_type = (body[0] >> 4) & 0x07
    packet_type, pos = _skip_modex(body, body[0] & 0x0F)
    if packet_type == MULTITRACK:
        raise UnsupportedMedia(
            "Enhanced RTMP multitrack video is not supported; publish one track per stream"
        )
    if packet_type != METADATA and frame_type == COMMAND_FRAME:
        return None
    _need(body, pos + 4, "an ExVideoTagHeader")
    codec = _fourcc(body, pos, VIDEO_FOURCCS, "video")
    pos += 4
    if packet_type in (METADATA, MPEG2TS_SEQUENCE_START):
        return None
    if codec not in SUPPORTED_VIDEO:
        raise UnsupportedMedia(f"video codec {codec!r} is not supported; send H.264, HEVC or AV1")
    if packet_type == SEQUENCE_START:
        return VideoConfig(codec, body[pos:])
    if packet_type == SEQUENCE_END:
        return VideoEnd(codec)
    keyframe = frame_type in (KEY_FRAME, GENERATED_KEY_FRAME)
    if packet_type == CODED_FRAMES and codec in ("avc1", "hvc1"):
        _need(body, pos + 3, "coded frames with a composition time")
        return VideoFrame(codec, keyframe, _si24(body[pos : pos + 3]), body[pos + 3 :])
    if packet_type in (CODED_FRAMES, CODED_FRAMES_X):
        return VideoFrame(codec, keyframe, 0, body[pos:])
    raise FlvError(f"unknown VideoPacketType {packet_type}")


def parse_audio(body: bytes) -> AudioPacket | None:
    """An audio message body; ``None`` for packets that carry no media (multichannel layouts)."""
    _need(body, 1, "an audio tag header")
    sound_format = body[0] >> 4
    if sound_format == EX_SOUND_FORMAT:
        return _parse_ex_audio(body)
    if sound_format != AAC_SOUND_FORMAT:
        name = _SOUND_FORMAT_NAMES.get(sound_format, f"sound format {sound_format}")
        raise UnsupportedMedia(f"FLV audio codec {name} is not supported; send AAC or Opus")
    _need(body, 2, "an AAC audio tag header")
    if body[1] == 0:
        return AudioConfig("mp4a", body[2:])
    if body[1] == 1:
        return AudioFrame("mp4a", body[2:])
    raise FlvError(f"unknown AACPacketType {body[1]}")


def _parse_ex_audio(body: bytes) -> AudioPacket | None:
    packet_type, pos = _skip_modex(body, body[0] & 0x0F)
    if packet_type == AUDIO_MULTITRACK:
        raise UnsupportedMedia(
            "Enhanced RTMP multitrack audio is not supported; publish one track per stream"
        )
    _need(body, pos + 4, "an ExAudioTagHeader")
    codec = _fourcc(body, pos, AUDIO_FOURCCS, "audio")
    pos += 4
    if codec not in SUPPORTED_AUDIO:
        raise UnsupportedMedia(f"audio codec {codec!r} is not supported; send AAC or Opus")
    if packet_type in (AUDIO_MULTICHANNEL_CONFIG, SEQUENCE_END):
        return None
    if packet_type == SEQUENCE_START:
        return AudioConfig(codec, body[pos:])
    if packet_type == CODED_FRAMES:
        return AudioFrame(codec, body[pos:])
    raise FlvError(f"unknown AudioPacketType {packet_type}")
