"""Encryption per request: which scheme each output carries, the signalling manifests get, and the
encrypted bodies of segments, from a publishing point's :class:`~media.keyplan.KeyPlan`.

One ``encryption`` option serves every format that can carry it:

=============  ==============  ================  ===========  ===========
option         HLS TS          HLS fMP4          DASH         Smooth
=============  ==============  ================  ===========  ===========
``aes-128``    AES-128         AES-128           —            —
``sample-aes`` SAMPLE-AES      SAMPLE-AES cbcs   cbcs         —
``cbcs``       SAMPLE-AES      SAMPLE-AES cbcs   cbcs         —
``cenc``       (fMP4 instead)  SAMPLE-AES-CTR    cenc         cenc
=============  ==============  ================  ===========  ===========

"—" is a 400 naming the option; the playlists of a ``cenc`` point name fMP4 segments, so only a
``.ts`` URL asked for by hand meets MPEG-TS's 400. Smooth needs a DRM system's protection header.
Text tracks (WebVTT, IMSC1) stay clear, as HLS and DASH players expect; a progressive MP4 export of
an encrypted point is refused rather than handed out clear.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from enum import Enum

from Crypto.Cipher import AES
from Crypto.Util.Padding import pad

from media import cenc, dash, names
from media.hls import HlsKey
from media.keyplan import KeyPlan
from media.model import Track, TrackKind
from media.protection import ContentKey, DrmSystem, ProtectionError, Scheme
from media.sample_aes import sample_aes_supported
from storage.errors import InvalidOption


class Output(Enum):
    HLS_TS = "HLS with MPEG-TS segments"
    HLS_FMP4 = "HLS with fMP4 segments"
    DASH = "DASH"
    SMOOTH = "Smooth Streaming"
    PROGRESSIVE = "progressive MP4 exports"


_CARRIED: dict[Output, dict[Scheme, Scheme]] = {
    Output.HLS_TS: {
        Scheme.AES_128: Scheme.AES_128,
        Scheme.SAMPLE_AES: Scheme.SAMPLE_AES,
        Scheme.CBCS: Scheme.SAMPLE_AES,
    },
    Output.HLS_FMP4: {
        Scheme.AES_128: Scheme.AES_128,
        Scheme.SAMPLE_AES: Scheme.CBCS,
        Scheme.CBCS: Scheme.CBCS,
        Scheme.CENC: Scheme.CENC,
    },
    Output.DASH: {Scheme.SAMPLE_AES: Scheme.CBCS, Scheme.CBCS: Scheme.CBCS, Scheme.CENC: Scheme.CENC},
    Output.SMOOTH: {Scheme.CENC: Scheme.CENC},
    Output.PROGRESSIVE: {},
}
_HLS_METHOD = {
    Scheme.AES_128: "AES-128",
    Scheme.SAMPLE_AES: "SAMPLE-AES",
    Scheme.CBCS: "SAMPLE-AES",
    Scheme.CENC: "SAMPLE-AES-CTR",
}


def carried(plan: KeyPlan | None, output: Output) -> Scheme:
    """The scheme ``output`` is encrypted with under ``plan`` (NONE when clear); a scheme the
    output cannot carry is an :class:`InvalidOption` (400)."""
    if plan is None or plan.scheme is Scheme.NONE:
        return Scheme.NONE
    found = _CARRIED[output].get(plan.scheme)
    if found is None:
        raise InvalidOption("encryption", f"{plan.scheme} cannot be carried in {output.value}")
    return found


def check_tracks(scheme: Scheme, tracks: Iterable[Track]) -> None:
    """Refuse (400) a scheme the point's codecs cannot be encrypted with, before any manifest names
    them: AV1 under cenc/cbcs (no OBU subsample rule here), anything but H.264/AAC under SAMPLE-AES
    in MPEG-TS."""
    for track in filter(protects, tracks):
        if scheme in (Scheme.CENC, Scheme.CBCS):
            cenc.check_codec(track.codec, track.kind)
        elif scheme is Scheme.SAMPLE_AES and not sample_aes_supported(track):
            raise ProtectionError(
                f"SAMPLE-AES in MPEG-TS covers H.264 and AAC, not {track.codec} ({track.name!r})"
            )


def protects(track: Track) -> bool:
    """Whether a track is encrypted at all: audio and video are, text tracks stay clear."""
    return track.kind is not TrackKind.TEXT


def segment_iv(key: ContentKey, sequence: int) -> bytes:
    """The AES-128 / SAMPLE-AES TS IV: the key's explicit IV, else the media sequence number as a
    128-bit big-endian integer (RFC 8216 §5.2)."""
    return key.iv or sequence.to_bytes(16, "big")


def aes128_segment(body: bytes, key: ContentKey, sequence: int) -> bytes:
    """A whole segment in AES-128-CBC with PKCS#7 padding (RFC 8216 §4.4.4.4)."""
    return AES.new(key.key, AES.MODE_CBC, segment_iv(key, sequence)).encrypt(pad(body, AES.block_size))


def hls_keys(plan: KeyPlan, scheme: Scheme, key: ContentKey, key_uri: str, token: str) -> tuple[HlsKey, ...]:
    """The EXT-X-KEY tags of one key: the identity key (the origin's key URL with the viewer's
    token, or the configured key server), then one per DRM system that signals itself."""
    if key_uri:
        uri = key_uri.replace("{kid}", key.kid.hex())
    else:
        uri = names.key(key.kid) + (f"?token={token}" if token else "")
    iv = key.iv if scheme is not Scheme.CBCS else key.constant_iv()
    tags = [HlsKey(_HLS_METHOD[scheme], uri, iv)] if key_uri or plan.identity_keys else []
    for system in plan.systems(key.kid) if scheme in (Scheme.CBCS, Scheme.CENC) else ():
        tags.append(_system_key(system, scheme))
    return tuple(tags)


def _system_key(system: DrmSystem, scheme: Scheme) -> HlsKey:
    if system.hls_signaling:
        return HlsKey(line=system.hls_signaling.strip())
    uri = "data:text/plain;base64," + base64.b64encode(system.pssh).decode()
    return HlsKey(_HLS_METHOD[scheme], uri, keyformat=f"urn:uuid:{system.system_uuid}")


def protect_init(plan: KeyPlan, scheme: Scheme, track: Track) -> bytes:
    key = plan.default_key(track)
    pssh = [s.pssh for s in plan.systems(key.kid) if s.pssh]
    return cenc.protect_header(track.header, scheme, key, pssh)


def dash_protection(plan: KeyPlan, scheme: Scheme, track: Track) -> dash.Protection | None:
    """A Representation's ContentProtection: its init segment's default KID and DRM systems."""
    if not protects(track):
        return None
    key = plan.default_key(track)
    systems = tuple(
        dash.DrmSignal(s.system_uuid, s.pssh, s.content_protection) for s in plan.systems(key.kid)
    )
    return dash.Protection(scheme.value, key.kid_uuid, systems)


def smooth_protection(plan: KeyPlan, scheme: Scheme, tracks: list[Track]) -> list[tuple[str, bytes]]:
    """(system ID, protection header) of each DRM system of the first protected track's key: the
    data of its pssh box, a PlayReady Object for PlayReady (MS-SSTR §2.2.2.2)."""
    protected = [t for t in tracks if protects(t)]
    if scheme is Scheme.NONE or not protected:
        return []
    key = plan.default_key(protected[0])
    headers = [(s.system_uuid, cenc.pssh_data(s.pssh)) for s in plan.systems(key.kid) if s.pssh]
    if not headers:
        raise InvalidOption(
            "encryption",
            "Smooth Streaming signals encryption only through a DRM system's protection header: "
            "give encryption_pssh or a CPIX document with DRM systems",
        )
    return headers
