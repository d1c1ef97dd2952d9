"""Smooth Streaming (MS-SSTR): the client manifest, and fragments re-boxed with ``tfxd``/``tfrf``."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from media.boxes import (
    AVCConfigurationBox,
    TfrfBox,
    TfxdBox,
    TrackFragmentBox,
    TrackRun,
    parse_box,
)
from media.cmaf import fragment_boxes
from media.model import Track, TrackKind
from media.names import smooth_fragment_template
from media.presentation import Presentation, Segment, TrackView, runs

LOOKAHEAD = 2  # fragments announced in tfrf, and LookAheadFragmentCount
_FOURCC = {"avc1": "H264", "avc3": "H264", "mp4a": "AACL"}


def stream_name(track: Track) -> str:
    """The StreamIndex a track belongs to: ``video=400000`` → ``video``."""
    return track.name.split("=", 1)[0]


def smooth_bitrate(view: TrackView) -> int:
    """The bitrate naming a track in QualityLevels(<bitrate>): declared by the encoder, else
    measured by the origin once per track (``TrackView.nominal_bitrate``), so the URLs stay the
    same while the window slides."""
    return view.track.bitrate or view.nominal_bitrate


def supported(track: Track) -> bool:
    return track.codec in _FOURCC


def codec_private_data(track: Track) -> str:
    """H.264: Annex B SPS and PPS; AAC: the AudioSpecificConfig (MS-SSTR §2.2.2.5)."""
    if track.kind is TrackKind.VIDEO:
        config = track.decoder_config
        avcc, _ = parse_box((8 + len(config)).to_bytes(4, "big") + b"avcC" + config)
        assert isinstance(avcc, AVCConfigurationBox)
        return b"".join(b"\0\0\0\1" + nal for nal in avcc.sps + avcc.pps).hex().upper()
    return track.decoder_config.hex().upper()


def _chunks(segments: list[Segment]) -> list[ET.Element]:
    out = []
    for run in runs(segments):
        c = ET.Element("c")
        if run.time is not None:
            c.set("t", str(run.time))
        c.set("d", str(run.duration))
        if run.count > 1:
            c.set("r", str(run.count))
        out.append(c)
    return out


def manifest(p: Presentation, query: str = "", protection: Sequence[tuple[str, bytes]] = ()) -> str:
    """The client manifest: one StreamIndex per stream name with a QualityLevel per bitrate; ``c``
    elements with ``t`` where the timeline (re)starts, ``d``, and ``r`` for repeats (which counts the
    element itself, unlike DASH's ``@r``). Fragment URLs carry ``query`` (the playout control
    parameters). ``protection`` lists (system ID, protection header) of the DRM systems of an
    encrypted stream, written as its ``Protection`` element (MS-SSTR §2.2.2.2)."""
    root = ET.Element(
        "SmoothStreamingMedia",
        MajorVersion="2",
        MinorVersion="2",
        TimeScale="10000000",
        Duration="0",
        IsLive="TRUE" if p.live else "FALSE",
    )
    if p.live:
        root.set("LookAheadFragmentCount", str(LOOKAHEAD))
        root.set("LookaheadCount", str(LOOKAHEAD))
        root.set("DVRWindowLength", str(p.dvr_window * 10_000_000))
        root.set("CanSeek", "TRUE")
        root.set("CanPause", "TRUE")
    if protection:
        element = ET.SubElement(root, "Protection")
        for system, header in protection:
            ET.SubElement(element, "ProtectionHeader", SystemID=system).text = base64.b64encode(
                header
            ).decode()
    streams: dict[str, list[TrackView]] = {}
    for view in p.views:
        if view.window and supported(view.track) and view.track.kind is not TrackKind.TEXT:
            streams.setdefault(stream_name(view.track), []).append(view)
    longest = 0
    for name, views in streams.items():
        views.sort(key=lambda v: -v.track.bitrate)
        reference = views[0]
        track = reference.track
        index = ET.SubElement(
            root,
            "StreamIndex",
            Type=track.kind.value,
            Name=name,
            Chunks=str(len(reference.window)),
            QualityLevels=str(len(views)),
            Url=smooth_fragment_template(name) + (f"?{query}" if query else ""),
            TimeScale=str(track.timescale),
        )
        if track.language != "und":
            index.set("Language", track.language)
        if track.kind is TrackKind.VIDEO:
            index.set("MaxWidth", str(max(v.track.width for v in views)))
            index.set("MaxHeight", str(max(v.track.height for v in views)))
            index.set("DisplayWidth", str(track.width))
            index.set("DisplayHeight", str(track.height))
        for level, view in enumerate(views):
            t = view.track
            quality = ET.SubElement(
                index,
                "QualityLevel",
                Index=str(level),
                Bitrate=str(smooth_bitrate(view)),
                FourCC=_FOURCC[t.codec],
                CodecPrivateData=codec_private_data(t),
            )
            if t.kind is TrackKind.VIDEO:
                quality.set("MaxWidth", str(t.width))
                quality.set("MaxHeight", str(t.height))
            else:
                quality.set("SamplingRate", str(t.sample_rate))
                quality.set("Channels", str(t.channels))
                quality.set("BitsPerSample", "16")
                quality.set("PacketSize", str(4 * t.channels))
                quality.set("AudioTag", "255")
        index.extend(_chunks(reference.window))
        if not p.live and reference.window:
            longest = max(
                longest,
                (reference.window[-1].end - reference.window[0].time) * 10_000_000 // track.timescale,
            )
    if not p.live:
        root.set("Duration", str(longest))
    ET.indent(root, "  ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def fragment(data: bytes, time: int, duration: int, lookahead: list[tuple[int, int]]) -> bytes:
    """A stored CMAF fragment as a Smooth fragment: ``tfxd`` with its time and duration and, while
    live, ``tfrf`` announcing the next fragments (MS-SSTR §2.2.4.4-5); the ``trun`` data offset
    follows the larger ``moof``."""
    moof, mdat = fragment_boxes(data)
    traf = moof.need(TrackFragmentBox)
    traf.children.append(TfxdBox(time, duration))
    if lookahead:
        traf.children.append(TfrfBox(lookahead))
    trun = traf.need(TrackRun, "moof/traf")
    trun.data_offset = len(bytes(moof)) + 8
    return bytes(moof) + bytes(mdat)
