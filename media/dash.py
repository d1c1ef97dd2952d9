"""DASH MPDs (ISO/IEC 23009-1, DASH-IF IOP live profile) rendered from a
:class:`~media.presentation.Presentation`: SegmentTemplate with SegmentTimeline and ``$Time$``."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from media import names
from media.model import Track, TrackKind
from media.presentation import Period, Presentation, Segment, TrackView, runs
from media.timerange import iso_utc

NS = "urn:mpeg:dash:schema:mpd:2011"
PROFILES = "urn:mpeg:dash:profile:isoff-live:2011,urn:com:dashif:dash264"
UTC_SCHEME = "urn:mpeg:dash:utc:http-xsdate:2014"
CHANNEL_SCHEME = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011"
MP4_PROTECTION_SCHEME = "urn:mpeg:dash:mp4protection:2011"
CENC_NS = "urn:mpeg:cenc:2013"
# Prefixes a DRM system's ContentProtectionData may use without declaring them (CPIX 2.3 §5.2.7).
_SIGNALLING_NS = {"cenc": CENC_NS, "mspr": "urn:microsoft:playready", "dashif": "https://dashif.org/CPS"}
ET.register_namespace("cenc", CENC_NS)


@dataclass(frozen=True, slots=True)
class DrmSignal:
    """One DRM system's ContentProtection: its system ID (UUID), its ``pssh`` box and any child
    elements a CPIX document gave for it."""

    system_uuid: str
    pssh: bytes = b""
    content_protection: str = ""


@dataclass(frozen=True, slots=True)
class Protection:
    """How an AdaptationSet is protected (ISO/IEC 23009-1 §5.8.4.1, ISO/IEC 23001-7 §11): the
    scheme (``cenc``/``cbcs``), the init segments' default KID and the DRM systems to name."""

    scheme: str
    default_kid: str
    systems: tuple[DrmSignal, ...] = ()


def duration(seconds: Fraction | float) -> str:
    """xs:duration in seconds, millisecond precision: ``PT2.000S``."""
    return f"PT{float(seconds):.3f}S"


def timeline(segments: list[Segment]) -> ET.Element:
    """SegmentTimeline: ``S@t`` where the timeline restarts (start and gaps), ``@r`` counting the
    additional segments of equal duration that follow without a gap (§5.3.9.6)."""
    element = ET.Element("SegmentTimeline")
    for run in runs(segments):
        s = ET.SubElement(element, "S")
        if run.time is not None:
            s.set("t", str(run.time))
        s.set("d", str(run.duration))
        if run.count > 1:
            s.set("r", str(run.count - 1))
    return element


def presentation_delay(p: Presentation, longest: int) -> Fraction:
    """MPD@suggestedPresentationDelay: three target durations behind the live edge, but never more
    than what is listed less half a segment. A player asked to start further back than the window
    reaches starts at its very first segment; dash.js 5.2 in Chromium then sits still there (the
    media element already reports that time, so it never seeks), which every viewer who opens a
    stream in its first seconds would meet."""
    spans = [Fraction(v.window[-1].end - v.window[0].time, v.track.timescale) for v in p.views if v.window]
    half = Fraction(longest, 2)
    return min(Fraction(3 * longest), max(half, min(spans, default=half) - half))


def _frame_rate(rate: Fraction) -> str:
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


def _groups(p: Presentation, period: Period) -> list[list[TrackView]]:
    """One AdaptationSet per content type and language, video first, of the tracks in ``period``."""
    groups: dict[tuple[str, str], list[TrackView]] = {}
    for kind in (TrackKind.VIDEO, TrackKind.AUDIO, TrackKind.TEXT):
        for view in p.of_kind(kind):
            if view.track.name in period.windows:
                groups.setdefault((kind.value, view.track.language), []).append(view)
    return list(groups.values())


@dataclass(frozen=True, slots=True)
class LowLatency:
    """Low-latency DASH (ISO/IEC 23009-1 §5.3.9.5.3, Annex K; DASH-IF IOP low-latency modes):
    segments are sent in chunks of ``chunk`` seconds while they are made, so each becomes
    available ``availabilityTimeOffset`` before its end, not complete; the players' latency
    target comes from ServiceDescription, and ProducerReferenceTime ties media time to the wall
    clock as the ``prft`` box at the start of each segment does."""

    chunk: Fraction

    def target_ms(self) -> int:
        """Latency the players aim at: four and a half chunks (three in the player's buffer, one
        being made, half for the request), rounded up to milliseconds."""
        return -(-int(self.chunk * 9000) // 2)


def mpd(
    p: Presentation,
    stem: str,
    clock_url: str,
    query: str = "",
    protection: Callable[[Track], Protection | None] | None = None,
    low_latency: LowLatency | None = None,
) -> str:
    """The MPD: dynamic while live, anchored at the epoch, a Period per encoder run starting at its
    UTC time; static once the stream has ended (the whole archive) or for a sub-clip in the past,
    its Periods back to back from zero. Segment URLs carry ``query`` (the playout control parameters);
    ``protection`` gives the ContentProtection of each track that is encrypted. ``low_latency``
    (live only) expects ``p``'s windows to end with the segments in progress
    (:func:`~media.presentation.with_edge`)."""
    ll = low_latency if p.live else None
    root = ET.Element("MPD", xmlns=NS, profiles=PROFILES, minBufferTime=duration(2))
    longest = max((v.target_duration for v in p.views if v.window), default=2)
    periods = p.periods()
    if p.live:
        root.set("type", "dynamic")
        root.set("availabilityStartTime", "1970-01-01T00:00:00Z")
        root.set("publishTime", iso_utc(p.updated_ms))
        root.set("minimumUpdatePeriod", duration(Fraction(longest, 2)))
        root.set("timeShiftBufferDepth", duration(p.dvr_window))
        delay = Fraction(ll.target_ms(), 1000) if ll else presentation_delay(p, longest)
        root.set("suggestedPresentationDelay", duration(delay))
        if ll:
            target = ll.target_ms()
            service = ET.SubElement(root, "ServiceDescription", id="0")
            ET.SubElement(
                service,
                "Latency",
                referenceId="0",
                target=str(target),
                min=str(target * 2 // 3),
                max=str(target * 2),
            )
            ET.SubElement(service, "PlaybackRate", min="0.96", max="1.04")
    else:
        root.set("type", "static")
        root.set("mediaPresentationDuration", duration(sum((q.end - q.start for q in periods), Fraction(0))))
    init, media = names.dash_templates(stem)
    if query:
        media += f"?{query}"
    elapsed = Fraction(0)
    for period in periods or [Period(0, Fraction(0), 0, {})]:
        if p.live:
            # A time-shifted stream is the same media N seconds later on the wall clock, so each
            # segment becomes available N seconds after it did live (ISO/IEC 23009-1 §5.3.9.5.3).
            start = period.utc + p.shift
        else:
            # On demand, each run follows the previous one without the break between them, as
            # an HLS playlist plays them.
            start = elapsed
            elapsed += period.end - period.start
        element = ET.SubElement(root, "Period", id=str(period.number), start=duration(start))
        _adaptation_sets(element, p, period, init, media, protection or _clear, ll, clock_url)
    ET.SubElement(root, "UTCTiming", schemeIdUri=UTC_SCHEME, value=clock_url)
    ET.indent(root, "  ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _clear(track: Track) -> Protection | None:
    return None


def _content_protection(adaptation: ET.Element, protection: Protection) -> None:
    """The mp4protection descriptor with ``cenc:default_KID``, then one per DRM system with its
    ``cenc:pssh`` (or the elements a CPIX document gave for it)."""
    ET.SubElement(
        adaptation,
        "ContentProtection",
        {
            "schemeIdUri": MP4_PROTECTION_SCHEME,
            "value": protection.scheme,
            f"{{{CENC_NS}}}default_KID": protection.default_kid,
        },
    )
    for system in protection.systems:
        element = ET.SubElement(adaptation, "ContentProtection", schemeIdUri=f"urn:uuid:{system.system_uuid}")
        children = _signalling_elements(system.content_protection)
        if children:
            element.extend(children)
        elif system.pssh:
            ET.SubElement(element, f"{{{CENC_NS}}}pssh").text = base64.b64encode(system.pssh).decode()


def _signalling_elements(xml: str) -> list[ET.Element]:
    """A CPIX ContentProtectionData's elements, or none when they do not parse (then the pssh is
    signalled instead)."""
    if not xml:
        return []
    declarations = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in _SIGNALLING_NS.items())
    try:
        return list(ET.fromstring(f"<signalling {declarations}>{xml}</signalling>"))
    except ET.ParseError:
        return []


def _adaptation_sets(
    parent: ET.Element,
    p: Presentation,
    period: Period,
    init: str,
    media: str,
    protection: Callable[[Track], Protection | None],
    ll: LowLatency | None = None,
    clock_url: str = "",
) -> None:
    """The AdaptationSets of one Period: every track with segments in it, its timeline offset so
    that the Period's start is media time ``period.start`` on every track."""
    for set_id, views in enumerate(_groups(p, period), start=1):
        first = views[0].track
        adaptation = ET.SubElement(
            parent,
            "AdaptationSet",
            id=str(set_id),
            contentType=first.kind.value,
            mimeType="application/mp4" if first.kind is TrackKind.TEXT else f"{first.kind.value}/mp4",
            segmentAlignment="true",
            startWithSAP="1",
        )
        if first.language != "und":
            adaptation.set("lang", first.language)
        # On the AdaptationSet when its Representations share a key (§5.8.4.1), else on each.
        protections = [protection(view.track) for view in views]
        shared = all(found == protections[0] for found in protections)
        if shared and protections[0] is not None:
            _content_protection(adaptation, protections[0])
        if first.kind is TrackKind.TEXT:
            ET.SubElement(adaptation, "Role", schemeIdUri="urn:mpeg:dash:role:2011", value="subtitle")
        for view, own in zip(views, protections, strict=True):
            track = view.track
            representation = ET.SubElement(
                adaptation,
                "Representation",
                id=track.name,
                bandwidth=str(view.bandwidth()[0]),
                codecs=track.codec_string,
            )
            if track.kind is TrackKind.VIDEO:
                representation.set("width", str(track.width))
                representation.set("height", str(track.height))
                if view.frame_rate:
                    representation.set("frameRate", _frame_rate(view.frame_rate))
            elif track.kind is TrackKind.AUDIO:
                representation.set("audioSamplingRate", str(track.sample_rate))
                ET.SubElement(
                    representation,
                    "AudioChannelConfiguration",
                    schemeIdUri=CHANNEL_SCHEME,
                    value=str(track.channels),
                )
            if not shared and own is not None:
                _content_protection(representation, own)
            template = ET.SubElement(
                representation,
                "SegmentTemplate",
                timescale=str(track.timescale),
                initialization=init,
                media=media,
                presentationTimeOffset=str(int(period.start * track.timescale)),
            )
            segments = period.windows[track.name]
            if ll:
                # The newest segment is announced once its first chunk is out (§5.3.9.5.3).
                offset = max(Fraction(0), Fraction(segments[-1].duration, track.timescale) - ll.chunk)
                template.set("availabilityTimeOffset", f"{float(offset):.3f}")
                template.set("availabilityTimeComplete", "false")
                oldest = segments[0]
                reference = ET.Element(
                    "ProducerReferenceTime",
                    id="0",
                    type="encoder",
                    wallClockTime=iso_utc(view.utc_ms(oldest)),
                    presentationTime=str(oldest.time),
                )
                ET.SubElement(reference, "UTCTiming", schemeIdUri=UTC_SCHEME, value=clock_url)
                representation.insert(len(representation) - 1, reference)
            template.append(timeline(segments))
