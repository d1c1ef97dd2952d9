"""The server manifest (``<name>.isml``): a SMIL 2.0 document whose ``head`` holds the publishing
point's options as ``<meta name content>`` and whose ``body`` lists the ingested tracks, the form
Unified Origin writes (so its manifests can be PUT here unchanged).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from fractions import Fraction
from typing import Any

from media.cpix import MAX_CPIX_BYTES, CpixDocument, parse_cpix
from media.keyplan import KeyPlan, check_plan, parse_key_list, parse_pssh_list
from media.model import Track
from media.protection import ProtectionError, Scheme
from storage.errors import InvalidOption

SMIL_NS = "http://www.w3.org/2001/SMIL20/Language"
MAX_MANIFEST_BYTES = 1 << 20


def _bool(option: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise InvalidOption(option, f"expected true or false, got {text!r}")


def _seconds(option: str, text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise InvalidOption(option, f"expected a whole number of seconds, got {text!r}") from None
    if value < 0:
        raise InvalidOption(option, f"must not be negative, got {value}")
    return value


def _duration(option: str, text: str) -> Fraction:
    """Seconds as a decimal (``2.5``) or a ratio (``48/25``), kept exact."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise InvalidOption(option, f"expected seconds such as 2, 2.5 or 48/25, got {text!r}") from None
    if value < 0 or value > 3600:
        raise InvalidOption(option, f"must be between 0 and 3600 seconds, got {text!r}")
    return value


# Parts below 0.2 s strain players (RFC 8216bis §4.4.4.9 advice); above 2 s there is no low latency.
PART_DURATIONS = (Fraction(1, 5), Fraction(2))


def _part_duration(option: str, text: str) -> Fraction:
    value = _duration(option, text)
    low, high = PART_DURATIONS
    if not low <= value <= high:
        raise InvalidOption(
            option, f"must be between {float(low):g} and {float(high):g} seconds, got {text!r}"
        )
    return value


def _token(option: str, text: str) -> str:
    value = text.strip()
    if len(value) > 256 or any(not c.isprintable() or c.isspace() or c in "?&=/" for c in value):
        raise InvalidOption(option, "expected up to 256 printable characters without spaces or ?&=/")
    return value


def _scheme(option: str, text: str) -> str:
    value = text.strip().lower()
    if value not in {s.value for s in Scheme}:
        raise InvalidOption(option, f"expected one of {', '.join(s.value for s in Scheme)}, got {text!r}")
    return value


def _checked_by(parse: Callable[[str], object]) -> Callable[[str, str], str]:
    """An option parser keeping the text once ``parse`` accepts it (a key or pssh list)."""

    def check(option: str, text: str) -> str:
        try:
            parse(text)
        except ProtectionError as exc:
            raise InvalidOption(option, exc.message) from None
        return text.strip()

    return check


def _seed(option: str, text: str) -> str:
    value = text.strip()
    if value and (len(value) < 16 or len(value) > 256 or not value.isprintable()):
        raise InvalidOption(option, "expected a secret of 16 to 256 printable characters")
    return value


def _cpix(option: str, text: str) -> str:
    """A CPIX path; the document is read where keys are needed (:meth:`PointOptions.check_keys`
    when the options are given, then on the first encrypted request), so a point whose document
    went missing still loads, ingests and reports."""
    value = text.strip()
    if value and (not value.isprintable() or len(value) > 1024):
        raise InvalidOption(option, "expected the path of a CPIX document")
    return value


def _key_uri(option: str, text: str) -> str:
    value = text.strip()
    if value and (not value.isprintable() or any(c.isspace() or c in '"' for c in value)):
        raise InvalidOption(option, "expected a URL without spaces or quotes")
    return value


def read_cpix(option: str, path: str) -> CpixDocument:
    """The CPIX document at ``path`` (a file the origin reads), checked."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CPIX_BYTES + 1)
    except OSError as exc:
        raise InvalidOption(option, f"cannot read {path}: {exc.strerror}") from None
    try:
        return parse_cpix(data)
    except ProtectionError as exc:
        raise InvalidOption(option, f"{path}: {exc.message}") from None


REDACTED = "********"
SECRET_OPTIONS = ("publish_token", "encryption_key", "encryption_key_seed")


@dataclass(frozen=True)
class PointOptions:
    """Options a publishing point honours (Unified Origin names; ``0`` means "no limit" / "one
    fragment")."""

    archiving: bool = True
    archive_length: int = 0  # seconds kept; 0 = everything
    dvr_window_length: int = 30  # seconds in live manifests
    restart_on_encoder_reconnect: bool = False
    hls_minimum_fragment_length: Fraction = Fraction(0)
    mpd_minimum_fragment_length: Fraction = Fraction(0)
    iss_minimum_fragment_length: Fraction = Fraction(0)
    hls_fmp4: bool = False  # HLS with fMP4 (CMAF) segments instead of MPEG-TS
    low_latency: bool = False  # LL-HLS parts and blocking reload, LL-DASH chunked delivery
    part_duration: Fraction = Fraction(34, 100)  # seconds per part (LL-HLS PART-TARGET, DASH chunk)
    publish_token: str = field(default="", repr=False)  # encoders must give this token; redacted by the API
    redundant_encoders: bool = False  # several encoders may publish the same stream at once
    encryption: str = "none"  # none | aes-128 | sample-aes | cenc | cbcs
    encryption_key: str = field(default="", repr=False)  # [video=|audio=]KID:KEY[:IV], comma-separated
    encryption_key_seed: str = field(default="", repr=False)  # secret keys are derived from, per period
    encryption_key_rotation: int = 0  # seconds per key period; 0 = one key
    encryption_cpix: str = ""  # path of a CPIX 2.x document giving the keys
    encryption_key_uri: str = ""  # HLS key URI ({kid} = the KID in hex); "" = this origin serves keys
    encryption_pssh: str = ""  # SYSTEM_ID:BASE64 pssh data per DRM system, comma-separated

    def with_values(self, values: dict[str, str]) -> PointOptions:
        """These options with ``values`` (option name → text) applied; dotted names
        (``hls.minimum_fragment_length``) are accepted as the underscore form."""
        changes: dict[str, Any] = {}
        for raw_name, text in values.items():
            name = raw_name.replace(".", "_")
            parser = OPTION_PARSERS.get(name)
            if parser is None:
                raise InvalidOption(raw_name, f"unknown option; known: {', '.join(sorted(OPTION_PARSERS))}")
            changes[name] = parser(name, text)
        options = replace(self, **changes)
        if any(name.startswith("encryption") for name in changes):
            options.check_keys(read=False)
        return options

    def without_encryption(self) -> PointOptions:
        """These options with every ``encryption*`` option at its default."""
        defaults = PointOptions()
        names = [f.name for f in fields(self) if f.name.startswith("encryption")]
        return replace(self, **{name: getattr(defaults, name) for name in names})

    def check_keys(self, *, read: bool = True) -> None:
        """Refuse encryption options that cannot work together; ``read``: also read and check the
        CPIX document (when the options are configured or PUT, not each time a point loads)."""
        try:
            check_plan(self.key_plan("", read=read))
        except ProtectionError as exc:
            raise InvalidOption("encryption", exc.message) from None

    def key_plan(self, point: str, *, read: bool = True) -> KeyPlan:
        """What protects ``point``'s media under these options; ``read`` False stands an empty
        document in for the CPIX file (to check the other options without reading it)."""
        cpix = None
        if self.encryption_cpix:
            cpix = (
                read_cpix("encryption_cpix", self.encryption_cpix) if read else CpixDocument((), (), (), ())
            )
        return KeyPlan(
            Scheme(self.encryption),
            point,
            parse_key_list(self.encryption_key),
            self.encryption_key_seed.encode(),
            self.encryption_key_rotation * 1000,
            cpix,
            parse_pssh_list(self.encryption_pssh),
        )

    def as_text(self, *, redact: bool = False) -> dict[str, str]:
        """Option name → text; ``redact`` hides a set publish token (what the API shows)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value).lower() if isinstance(value, bool) else str(value)
        for name in SECRET_OPTIONS if redact else ():
            if out[name]:
                out[name] = REDACTED
        return out


OPTION_PARSERS: dict[str, Any] = {
    "archiving": _bool,
    "archive_length": _seconds,
    "dvr_window_length": _seconds,
    "restart_on_encoder_reconnect": _bool,
    "hls_minimum_fragment_length": _duration,
    "mpd_minimum_fragment_length": _duration,
    "iss_minimum_fragment_length": _duration,
    "hls_fmp4": _bool,
    "low_latency": _bool,
    "part_duration": _part_duration,
    "publish_token": _token,
    "redundant_encoders": _bool,
    "encryption": _scheme,
    "encryption_key": _checked_by(parse_key_list),
    "encryption_key_seed": _seed,
    "encryption_key_rotation": _seconds,
    "encryption_cpix": _cpix,
    "encryption_key_uri": _key_uri,
    "encryption_pssh": _checked_by(parse_pssh_list),
}

# Accepted so that Unified Origin server manifests load unchanged, and not acted on: metadata about
# its own files, and options whose behaviour Headwater does not have (yet).
IGNORED_META = {
    "clientManifestRelativePath",
    "creator",
    "generator",
    "lookahead_fragments",
    "archive_segment_length",
    "hls_client_manifest_version",
    "iss_client_manifest_version",
    "mpd_segment_template",
    "time_shift",
}


@dataclass(frozen=True)
class ServerManifest:
    options: PointOptions = PointOptions()
    tracks: tuple[Track, ...] = ()

    def with_tracks(self, tracks: list[Track]) -> ServerManifest:
        return replace(self, tracks=tuple(tracks))


def parse_server_manifest(data: bytes, defaults: PointOptions) -> ServerManifest:
    """Options from a SMIL server manifest; the body's track list is not read back (tracks come
    from the store). Unknown options raise :class:`InvalidOption` naming them; the Unified Origin
    options in ``IGNORED_META`` are accepted and ignored."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise InvalidOption("server manifest", f"larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise InvalidOption("server manifest", f"not well-formed XML: {exc}") from None
    if root.tag.rsplit("}", 1)[-1] != "smil":
        raise InvalidOption("server manifest", f"root element is <{root.tag}>, expected <smil>")
    values = {}
    for meta in root.iter():
        if meta.tag.rsplit("}", 1)[-1] != "meta":
            continue
        name, content = meta.get("name"), meta.get("content")
        if name is None or content is None:
            raise InvalidOption("server manifest", "<meta> needs both name and content")
        if name not in IGNORED_META:
            values[name] = content
    return ServerManifest(defaults.with_values(values))


def write_server_manifest(manifest: ServerManifest, *, redact: bool = False) -> bytes:
    ET.register_namespace("", SMIL_NS)
    smil = ET.Element(f"{{{SMIL_NS}}}smil")
    head = ET.SubElement(smil, f"{{{SMIL_NS}}}head")
    for name, value in manifest.options.as_text(redact=redact).items():
        ET.SubElement(head, f"{{{SMIL_NS}}}meta", name=name, content=value)
    switch = ET.SubElement(ET.SubElement(smil, f"{{{SMIL_NS}}}body"), f"{{{SMIL_NS}}}switch")
    tags = {"video": "video", "audio": "audio", "text": "textstream"}
    for track in manifest.tracks:
        elem = ET.SubElement(
            switch, f"{{{SMIL_NS}}}{tags[track.kind.value]}", src=track.name, systemBitrate=str(track.bitrate)
        )
        params = {
            "trackName": track.name.split("=", 1)[0],
            "codecs": track.codec_string,
            "timescale": str(track.timescale),
            "systemLanguage": track.language,
        }
        for key, value in params.items():
            ET.SubElement(elem, f"{{{SMIL_NS}}}param", name=key, value=value, valuetype="data")
    ET.indent(smil, "  ")
    return (
        b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(smil, encoding="unicode").encode() + b"\n"
    )
