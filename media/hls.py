"""HLS playlists (draft-pantos-hls-rfc8216bis) rendered from a :class:`~media.presentation.Presentation`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from media import names
from media.model import TrackKind
from media.presentation import Presentation, Segment, TrackView
from media.timeline import TimelineEntry
from media.timerange import iso_utc

VERSION = 6  # EXT-X-MAP in media playlists without I-frames needs version 6 (§4.4.4.5)
LL_VERSION = 9  # EXT-X-SKIP needs version 9 (§4.4.5.2); the other LL-HLS tags need none above 6


@dataclass(frozen=True, slots=True)
class LowLatency:
    """What makes a media playlist a low-latency one (RFC 8216bis §4.4.3.7, §4.4.3.8, §4.4.5):
    ``part_target`` in seconds; ``skip``, a delta update (``_HLS_skip=YES``, §6.2.5.1);
    ``reports``, the other renditions' playlists and their newest parts (URI, LAST-MSN,
    LAST-PART)."""

    part_target: Fraction
    skip: bool = False
    reports: tuple[tuple[str, int, int], ...] = ()

    def part_hold_back(self) -> Fraction:
        """Three part targets: at least the two §4.4.3.8 requires, as Apple advises."""
        return 3 * self.part_target

    @staticmethod
    def skip_until(target_duration: int) -> int:
        """CAN-SKIP-UNTIL: six target durations, the least §4.4.3.8 allows."""
        return 6 * target_duration


@dataclass(frozen=True, slots=True)
class HlsKey:
    """One EXT-X-KEY tag (§4.4.4.4): ``method`` AES-128, SAMPLE-AES or SAMPLE-AES-CTR; no ``iv``
    means the media sequence number is the IV (§5.2); ``line`` is a whole tag given by a DRM
    system's signalling data, written as it is."""

    method: str = ""
    uri: str = ""
    iv: bytes = b""
    keyformat: str = ""
    line: str = ""

    def tag(self) -> str:
        if self.line:
            return self.line
        attrs = [f"METHOD={self.method}", f"URI={_quoted(self.uri)}"]
        if self.iv:
            attrs.append(f"IV=0x{self.iv.hex().upper()}")
        if self.keyformat:
            attrs += [f"KEYFORMAT={_quoted(self.keyformat)}", 'KEYFORMATVERSIONS="1"']
        return "#EXT-X-KEY:" + ",".join(attrs)


def _quoted(value: str) -> str:
    return '"' + value.replace('"', "'") + '"'


def _seconds(ticks: int, timescale: int) -> str:
    return f"{ticks / timescale:.3f}"


def _decimal(value: Fraction) -> str:
    return f"{float(value):.5g}"


def _frame_rate(rate: Fraction) -> str:
    return f"{float(rate):.3f}"


def master(p: Presentation, stem: str, query: str = "") -> str:
    """The master playlist: one EXT-X-STREAM-INF per video rendition with the audio renditions as an
    EXT-X-MEDIA group (§4.4.6.1, §4.4.6.2); an audio-only point lists its audio renditions as
    variants."""
    suffix = f"?{query}" if query else ""
    video = p.of_kind(TrackKind.VIDEO)
    audio = p.of_kind(TrackKind.AUDIO)
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if not video:
        for view in audio:
            peak, average = view.bandwidth()
            lines.append(
                f"#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={average},"
                f"CODECS={_quoted(view.track.codec_string)}"
            )
            lines.append(names.media_playlist(stem, view.track.name) + suffix)
        return "\n".join(lines) + "\n"
    audio_peak = audio_average = 0
    for i, view in enumerate(audio):
        track = view.track
        peak, average = view.bandwidth()
        audio_peak, audio_average = max(audio_peak, peak), max(audio_average, average)
        attrs = ["TYPE=AUDIO", 'GROUP-ID="audio"']
        if track.language != "und":
            attrs.append(f"LANGUAGE={_quoted(track.language)}")
        attrs.append(f"NAME={_quoted(track.name)}")
        attrs.append(f"DEFAULT={'YES' if i == 0 else 'NO'}")
        attrs.append("AUTOSELECT=YES")
        if track.channels:
            attrs.append(f'CHANNELS="{track.channels}"')
        attrs.append(f"URI={_quoted(names.media_playlist(stem, track.name) + suffix)}")
        lines.append("#EXT-X-MEDIA:" + ",".join(attrs))
    text = p.of_kind(TrackKind.TEXT)
    for i, view in enumerate(text):
        track = view.track
        attrs = ["TYPE=SUBTITLES", 'GROUP-ID="subs"']
        if track.language != "und":
            attrs.append(f"LANGUAGE={_quoted(track.language)}")
        attrs += [f"NAME={_quoted(track.name)}", f"DEFAULT={'YES' if i == 0 else 'NO'}", "AUTOSELECT=YES"]
        attrs.append(f"URI={_quoted(names.media_playlist(stem, track.name) + suffix)}")
        lines.append("#EXT-X-MEDIA:" + ",".join(attrs))
    audio_codec = audio[0].track.codec_string if audio else None
    # WebVTT travels as text and needs no CODECS entry; IMSC1 in fMP4 does (§4.4.6.2).
    text_codec = next((v.track.codec_string for v in text if v.track.codec == "stpp"), None)
    for view in sorted(video, key=lambda v: -v.bandwidth()[1]):
        track = view.track
        peak, average = view.bandwidth()
        codecs = ",".join(c for c in (track.codec_string, audio_codec, text_codec) if c)
        attrs = [
            f"BANDWIDTH={peak + audio_peak}",
            f"AVERAGE-BANDWIDTH={average + audio_average}",
            f"CODECS={_quoted(codecs)}",
        ]
        if track.width and track.height:
            attrs.append(f"RESOLUTION={track.width}x{track.height}")
        if view.frame_rate:
            attrs.append(f"FRAME-RATE={_frame_rate(view.frame_rate)}")
        if audio:
            attrs.append('AUDIO="audio"')
        if text:
            attrs.append('SUBTITLES="subs"')
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
        lines.append(names.media_playlist(stem, track.name) + suffix)
    return "\n".join(lines) + "\n"


def media(
    p: Presentation,
    view: TrackView,
    stem: str,
    *,
    fmp4: bool,
    query: str = "",
    keys: Callable[[Segment], tuple[HlsKey, ...]] | None = None,
    clear_map: bool = True,
    low_latency: LowLatency | None = None,
) -> str:
    """A media playlist: the window's segments, sliding while live (§6.2.2), with
    EXT-X-PROGRAM-DATE-TIME at the start and after every discontinuity; a VOD playlist with
    ENDLIST once the stream ended or for a sub-clip in the past; an EVENT playlist that starts
    players at its beginning for a start-over (§4.4.3.5, §4.4.2.2). Segment URIs carry ``query``
    (the playout control parameters), so segments resolve in the same presentation.

    ``keys`` gives the EXT-X-KEY tags protecting a segment: written before the first segment and
    again where they change (key rotation). ``clear_map``: the EXT-X-MAP comes before the first
    EXT-X-KEY, so the initialization section is not under the key (AES-128, §4.4.4.4); otherwise
    after it (SAMPLE-AES fMP4, whose init carries the protection scheme).

    ``low_latency`` (live only): the parts of the segments within three target durations of the
    end and of the segment in progress (EXT-X-PART, §4.4.4.9), the hint of the next part
    (EXT-X-PRELOAD-HINT, §4.4.5.3), the server's blocking and skipping abilities, and the other
    renditions' reports (§4.4.5.4); a delta update replaces the segments more than CAN-SKIP-UNTIL
    from the end by EXT-X-SKIP (§4.4.5.2)."""
    suffix = f"?{query}" if query else ""
    track = view.track
    if track.kind is TrackKind.TEXT:
        fmp4 = track.codec == "stpp"  # IMSC1 is carried in fMP4, WebVTT as text segments
    # Text cues last as long as they last: no parts of a part target for them.
    ll = low_latency if p.live and fmp4 and track.kind is not TrackKind.TEXT else None
    window = view.window
    first = window[0] if window else None
    target = view.target_duration
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{LL_VERSION if ll else VERSION}",
        f"#EXT-X-TARGETDURATION:{target}",
        f"#EXT-X-MEDIA-SEQUENCE:{first.number if first else view.parts_number}",
        f"#EXT-X-DISCONTINUITY-SEQUENCE:{view.discontinuity_sequence}",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    if not p.live:
        lines.insert(2, "#EXT-X-PLAYLIST-TYPE:VOD")
    elif p.start_over:
        lines.insert(2, "#EXT-X-PLAYLIST-TYPE:EVENT")
        lines.append("#EXT-X-START:TIME-OFFSET=0,PRECISE=YES")
    shown = window
    scale = track.timescale
    if ll:
        skip_until = ll.skip_until(target)
        lines.append(
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={skip_until},"
            f"PART-HOLD-BACK={_decimal(ll.part_hold_back())}"
        )
        lines.append(f"#EXT-X-PART-INF:PART-TARGET={_decimal(ll.part_target)}")
        edge = view.next_part or 0  # where the playlist ends
        if ll.skip and window:
            kept = [s for s in window if edge - s.end < skip_until * scale]
            if len(kept) < len(window):
                lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={len(window) - len(kept)}")
                shown = kept
        part_floor = edge - 3 * target * scale  # parts of older segments are left out
    current: tuple[HlsKey, ...] = ()
    start = shown[0] if shown else None
    if keys is not None and start is not None and not clear_map:
        current = keys(start)
        lines += [k.tag() for k in current]
    if fmp4:
        lines.append(f"#EXT-X-MAP:URI={_quoted(names.init_segment(stem, track.name))}")
    kind = names.Kind.M4S if fmp4 else names.Kind.VTT if track.kind is TrackKind.TEXT else names.Kind.TS
    for segment in shown:
        if keys is not None and (wanted := keys(segment)) != current:
            current = wanted
            lines += [k.tag() for k in current]
        if segment.discontinuity and segment is not first:
            lines.append("#EXT-X-DISCONTINUITY")
        if segment is start or segment.discontinuity:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{iso_utc(view.utc_ms(segment))}")
        if ll and segment.end > part_floor:
            lines += [_part(stem, track.name, f, scale, suffix) for f in segment.fragments]
        lines.append(f"#EXTINF:{_seconds(segment.duration, scale)},")
        lines.append(names.segment(stem, track.name, segment.time, kind) + suffix)
    if ll:
        if view.parts and (not shown or view.parts[0].discontinuity):
            if shown:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(
                f"#EXT-X-PROGRAM-DATE-TIME:{iso_utc(view.parts[0].utc_ms(view.parts[0].decode_time, scale))}"
            )
        if keys is not None and view.parts:
            # The segment in progress may begin a new key period: its parts are under its key.
            progress = Segment(view.parts_number, view.parts[0].decode_time, 0, view.parts, False)
            if (wanted := keys(progress)) != current:
                lines += [k.tag() for k in wanted]
        lines += [_part(stem, track.name, f, scale, suffix) for f in view.parts]
        hint = view.next_part
        if hint is not None:
            uri = names.part(stem, track.name, hint) + suffix
            lines.append(f"#EXT-X-PRELOAD-HINT:TYPE=PART,URI={_quoted(uri)}")
        for uri, msn, part in ll.reports:
            lines.append(
                f"#EXT-X-RENDITION-REPORT:URI={_quoted(uri + suffix)},LAST-MSN={msn},LAST-PART={part}"
            )
    if not p.live:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def _part(stem: str, track: str, fragment: TimelineEntry, timescale: int, suffix: str) -> str:
    """One EXT-X-PART: a stored fragment (§4.4.4.9), INDEPENDENT where it starts with a keyframe."""
    uri = names.part(stem, track, fragment.decode_time) + suffix
    independent = ",INDEPENDENT=YES" if fragment.keyframe else ""
    return f"#EXT-X-PART:DURATION={_seconds(fragment.duration, timescale)},URI={_quoted(uri)}{independent}"
