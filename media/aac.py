"""The MPEG-4 AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1): one parser for the codec string, the
sample entry description and the ADTS headers of TS segments."""

from __future__ import annotations

from dataclasses import dataclass

from media.errors import UnsupportedMedia

# samplingFrequencyIndex → Hz (§1.6.3.4); 13 and 14 are reserved, 15 means "explicit 24-bit value".
SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
EXPLICIT_RATE = 0xF
SBR, PS = 5, 29


@dataclass(frozen=True, slots=True)
class AudioSpecificConfig:
    object_type: int  # the first audioObjectType: 5 (SBR) or 29 (PS) under explicit signalling
    core_object_type: int  # the underlying codec, e.g. 2 (AAC-LC); equals object_type otherwise
    sampling_index: int  # of the core; EXPLICIT_RATE when the rate is written out
    sample_rate: int  # of the core, Hz; 0 for a reserved index
    channels: int  # channelConfiguration; 0 = described by a program_config_element
    output_rate: int  # what a decoder outputs: the SBR extension rate when there is one

    @classmethod
    def parse(cls, asc: bytes) -> AudioSpecificConfig:
        """Parse the fields up to the explicit SBR/PS extension; :class:`UnsupportedMedia` when the
        record is cut short."""
        value, left = int.from_bytes(asc[:16], "big"), min(len(asc), 16) * 8

        def read(n: int) -> int:
            nonlocal left
            left -= n
            if left < 0:
                raise UnsupportedMedia(f"AudioSpecificConfig {asc.hex()!r} is cut short")
            return (value >> left) & ((1 << n) - 1)

        def object_type() -> int:
            aot = read(5)
            return 32 + read(6) if aot == 31 else aot

        def rate(index: int) -> int:
            if index == EXPLICIT_RATE:
                return read(24)
            return SAMPLE_RATES[index] if index < len(SAMPLE_RATES) else 0

        first = object_type()
        index = read(4)
        core_rate = rate(index)
        channels = read(4)
        core, output_rate = first, core_rate
        if first in (SBR, PS):  # explicit hierarchical signalling (§1.6.5.2)
            output_rate = rate(read(4)) or core_rate
            core = object_type()
        return cls(first, core, index, core_rate, channels, output_rate)

    @property
    def codec_string(self) -> str:
        """RFC 6381 §3.3: ``mp4a.40.<audioObjectType>``."""
        return f"mp4a.40.{self.object_type}"

    @property
    def output_channels(self) -> int:
        """Parametric stereo turns a mono core into stereo output."""
        return 2 if self.object_type == PS and self.channels == 1 else self.channels
