"""DASH-IF CPIX 2.x documents (Content Protection Information Exchange Format): the content keys, key
periods, usage rules and DRM signalling an operator's key server or DRM vendor gives Headwater.

Section numbers are those of *DASH-IF Implementation Guidelines: Content Protection Information
Exchange Format (CPIX)*, version 2.3 (§5.2 Hierarchical Data Model, §6 Key Management); the XML
schema is its ``cpix.xsd`` (namespace ``urn:dashif:org:cpix``) with RFC 6030 PSKC for key values.

Read: ``ContentKeyList`` (keys in the clear, ``pskc:PlainValue``), ``DRMSystemList`` (``PSSH``,
``ContentProtectionData``, media-playlist ``HLSSignalingData``), ``ContentKeyPeriodList`` and
``ContentKeyUsageRuleList`` with every filter CPIX 2.3 defines.

Refused: content keys encrypted with a document key (``DeliveryDataList``, ``pskc:EncryptedValue``,
§6.1), key hierarchies (``dependsOnKey``, §6.3), usage rules with filters CPIX does not define
(§5.2.13.1 makes the whole mapping unusable then), and any document type declaration: a CPIX never
needs one, so entity expansion and external entities cannot happen.

Ignored: signatures (``ds:Signature`` is not verified, §6.1.3), ``UpdateHistoryItemList``,
master-playlist ``HLSSignalingData``, the deprecated ``URIExtXKey``,
``SmoothStreamingProtectionHeaderData`` and ``HDSSignalingData``.

Error messages name the element (its position in its list, and its ``kid`` once read), never key
material.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import NoReturn
from xml.parsers import expat

from media.model import TrackKind
from media.protection import KEY_SIZE, ContentKey, DrmSystem, ProtectionError, parse_uuid

CPIX_NS = "urn:dashif:org:cpix"
PSKC_NS = "urn:ietf:params:xml:ns:keyprov:pskc"
MAX_CPIX_BYTES = 1 << 20

_C = f"{{{CPIX_NS}}}"
_P = f"{{{PSKC_NS}}}"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATE_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
_TRACK_TYPES = {"VIDEO": TrackKind.VIDEO, "AUDIO": TrackKind.AUDIO, "TEXT": TrackKind.TEXT}
_FILTERS = frozenset(
    f"{_C}{name}"
    for name in ("KeyPeriodFilter", "LabelFilter", "VideoFilter", "AudioFilter", "BitrateFilter")
)
_PSSH_HEADER = 32  # size, type, version and flags, SystemID, DataSize (ISO/IEC 23001-7 §8.1.2)


@dataclass(frozen=True, slots=True)
class KeyPeriod:
    """A ``ContentKeyPeriod`` (§5.2.10): a sequence number, or the UTC interval ``[start, end)``."""

    id: str
    index: int | None
    start_ms: int | None  # UTC milliseconds
    end_ms: int | None


@dataclass(frozen=True, slots=True)
class VideoFilter:
    """A ``VideoFilter`` (§5.2.13.4): pixels (width x height) in ``[min_pixels, max_pixels]``,
    nominal frame rate in ``(min_fps, max_fps]``; None where the attribute is absent."""

    min_pixels: int | None = None
    max_pixels: int | None = None
    hdr: bool | None = None
    wcg: bool | None = None
    min_fps: int | None = None
    max_fps: int | None = None


@dataclass(frozen=True, slots=True)
class AudioFilter:
    """An ``AudioFilter`` (§5.2.13.5): channels in ``[min_channels, max_channels]``."""

    min_channels: int | None = None
    max_channels: int | None = None


@dataclass(frozen=True, slots=True)
class BitrateFilter:
    """A ``BitrateFilter`` (§5.2.13.6): nominal bitrate in b/s in ``[min_bitrate, max_bitrate]``."""

    min_bitrate: int | None = None
    max_bitrate: int | None = None


@dataclass(frozen=True, slots=True)
class UsageRule:
    """A ``ContentKeyUsageRule`` (§5.2.12): the key ``kid`` protects the tracks of ``kinds`` (empty:
    every kind) during the key periods ``periods`` (their ids; empty: at any time).

    ``kinds`` comes from the ``VideoFilter`` and ``AudioFilter`` elements; only without either is it
    read from ``intendedTrackType`` (its ``+``-separated parts starting with VIDEO, AUDIO or TEXT),
    which §5.2.13.3 calls business metadata rather than a filter. Filters of one type match when any
    of them does, filters of different types when all types do (§5.2.13.1)."""

    kid: bytes
    kinds: frozenset[TrackKind]
    periods: tuple[str, ...]
    intended_track_type: str = ""
    labels: tuple[str, ...] = ()  # LabelFilter labels (§5.2.13.3)
    video: tuple[VideoFilter, ...] = ()
    audio: tuple[AudioFilter, ...] = ()
    bitrate: tuple[BitrateFilter, ...] = ()


@dataclass(frozen=True, slots=True)
class CpixDocument:
    """What Headwater uses of a CPIX document (§5.2.1): its keys, in document order, with the
    ``commonEncryptionScheme`` of those naming one (§5.2.5), its key periods, usage rules and DRM
    systems."""

    keys: tuple[ContentKey, ...]
    periods: tuple[KeyPeriod, ...]
    rules: tuple[UsageRule, ...]
    drm: tuple[DrmSystem, ...]
    schemes: tuple[tuple[bytes, str], ...] = ()  # (kid, commonEncryptionScheme)
    content_id: str = ""
    version: str = ""


def parse_cpix(data: bytes) -> CpixDocument:
    """Read and check a CPIX document; :class:`ProtectionError` says what is wrong and where."""
    if len(data) > MAX_CPIX_BYTES:
        raise ProtectionError(f"the CPIX document is larger than {MAX_CPIX_BYTES} bytes")
    root = _parse_xml(data)
    if root.tag != f"{_C}CPIX":
        raise ProtectionError(
            f"not a CPIX document: the root element is {_name(root.tag)}, not CPIX in {CPIX_NS}"
        )
    _refuse_delivery_data(root)
    keyed = _content_keys(root)
    kids = {key.kid for key, _ in keyed}
    periods = _key_periods(root)
    return CpixDocument(
        keys=tuple(key for key, _ in keyed),
        periods=periods,
        rules=_usage_rules(root, kids, {period.id for period in periods}),
        drm=_drm_systems(root, kids),
        schemes=tuple((key.kid, scheme) for key, scheme in keyed if scheme),
        content_id=root.get("contentId", ""),
        version=root.get("version", ""),
    )


# XML


def _parse_xml(data: bytes) -> ET.Element:
    """The element tree of ``data``, parsed by expat with every document type declaration refused
    before its internal subset is read: no entity can be declared, so none can expand (billion
    laughs) or load anything (external entities)."""
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.StartElementHandler = lambda name, attrs: builder.start(
        _clark(name), {_clark(k): v for k, v in attrs.items()}
    )
    parser.EndElementHandler = lambda name: builder.end(_clark(name))
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as error:
        raise ProtectionError(
            f"the CPIX document is not well-formed XML: {expat.ErrorString(error.code)}"
            f" (line {error.lineno}, column {error.offset})"
        ) from None
    return builder.close()


def _refuse_dtd(*_: object) -> NoReturn:
    raise ProtectionError("the CPIX document has a DTD (DOCTYPE or ENTITY declaration); CPIX needs none")


def _clark(name: str) -> str:
    """expat's ``uri}local`` as ElementTree's ``{uri}local``."""
    return "{" + name if "}" in name else name


def _name(tag: str) -> str:
    namespace, _, local = tag[1:].rpartition("}") if tag.startswith("{") else ("", "", tag)
    return f"{local} in {namespace}" if namespace else f"{local} (no namespace)"


def _items(root: ET.Element, name: str) -> list[ET.Element]:
    """The ``name`` elements of the document's ``{name}List``."""
    return root.findall(f"{_C}{name}List/{_C}{name}")


# ContentKeyList (§5.2.4, §5.2.5)


def _refuse_delivery_data(root: ET.Element) -> None:
    """DeliveryData (§5.2.3) means the content keys are encrypted with a document key (§6.1)."""
    if _items(root, "DeliveryData"):
        raise ProtectionError(
            "CPIX DeliveryDataList: encrypted content keys are not supported; "
            "give every key as pskc:PlainValue"
        )


def _content_keys(root: ET.Element) -> list[tuple[ContentKey, str]]:
    out: list[tuple[ContentKey, str]] = []
    first: dict[bytes, int] = {}
    for number, element in enumerate(_items(root, "ContentKey"), 1):
        key, scheme = _content_key(element, number)
        if key.kid in first:
            raise ProtectionError(
                f"CPIX ContentKey {number} (kid {_uuid(key.kid)}): "
                f"the kid is already that of ContentKey {first[key.kid]}"
            )
        first[key.kid] = number
        out.append((key, scheme))
    if not out:
        raise ProtectionError("the CPIX document has no ContentKey in its ContentKeyList")
    return out


def _content_key(element: ET.Element, number: int) -> tuple[ContentKey, str]:
    kid = _uuid_attribute(element, "kid", f"ContentKey {number}")
    where = f"ContentKey {number} (kid {_uuid(kid)})"
    if element.get("dependsOnKey") is not None:
        raise ProtectionError(f"CPIX {where}: key hierarchies (dependsOnKey) are not supported")
    iv_text = element.get("explicitIV")
    iv = b"" if iv_text is None else _sized(_base64(iv_text, f"{where}: explicitIV"), f"{where}: explicitIV")
    key = _sized(_key_value(element, where), f"{where}: the key (pskc:PlainValue)")
    return ContentKey(kid, key, iv), element.get("commonEncryptionScheme", "").strip()


def _key_value(element: ET.Element, where: str) -> bytes:
    """The key in ``Data/pskc:Secret/pskc:PlainValue`` (RFC 6030 PSKC, base64 of the key bytes)."""
    secret = element.find(f"{_C}Data/{_P}Secret")
    if secret is not None and secret.find(f"{_P}EncryptedValue") is not None:
        raise ProtectionError(
            f"CPIX {where}: encrypted content keys (pskc:EncryptedValue) are not supported; "
            "the key must be given as pskc:PlainValue"
        )
    plain = secret.find(f"{_P}PlainValue") if secret is not None else None
    if plain is None or not (plain.text or "").strip():
        raise ProtectionError(
            f"CPIX {where}: no key (Data/pskc:Secret/pskc:PlainValue); Headwater encrypts, so it needs it"
        )
    return _base64(plain.text or "", f"{where}: the key (pskc:PlainValue)")


# DRMSystemList (§5.2.6, §5.2.7, §5.2.8)


def _drm_systems(root: ET.Element, kids: Collection[bytes]) -> tuple[DrmSystem, ...]:
    out: list[DrmSystem] = []
    for number, element in enumerate(_items(root, "DRMSystem"), 1):
        system = _drm_system(element, number, kids)
        if any(s.system_id == system.system_id and s.kid == system.kid for s in out):
            raise ProtectionError(
                f"CPIX DRMSystem {number}: a second DRMSystem for systemId {system.system_uuid} "
                f"and kid {_uuid(system.kid)}"
            )
        out.append(system)
    return tuple(out)


def _drm_system(element: ET.Element, number: int, kids: Collection[bytes]) -> DrmSystem:
    system_id = _uuid_attribute(element, "systemId", f"DRMSystem {number}")
    where = f"DRMSystem {number} (systemId {_uuid(system_id)})"
    kid = _known_kid(element, where, kids)
    pssh = _base64_child(element, "PSSH", where)
    if pssh:
        _check_pssh(pssh, system_id, where)
    protection = _base64_child(element, "ContentProtectionData", where)
    return DrmSystem(
        system_id=system_id,
        kid=kid,
        pssh=pssh,
        content_protection=_utf8(protection, f"{where}: ContentProtectionData").strip(),
        hls_signaling=_media_signaling(element, where),
    )


def _check_pssh(box: bytes, system_id: bytes, where: str) -> None:
    """``PSSH`` holds a whole ``pssh`` box (ISO/IEC 23001-7 §8.1) for this DRM system."""
    if len(box) < _PSSH_HEADER or int.from_bytes(box[:4], "big") != len(box) or box[4:8] != b"pssh":
        raise ProtectionError(f"CPIX {where}: PSSH is not a whole pssh box")
    if box[12:28] != system_id:
        raise ProtectionError(
            f"CPIX {where}: the PSSH box is for system {_uuid(box[12:28])}, not the DRMSystem's"
        )


def _media_signaling(element: ET.Element, where: str) -> str:
    """The text of the ``HLSSignalingData`` for media playlists (``playlist="media"`` or no
    ``playlist``); at most one per destination (§5.2.8)."""
    found: dict[str, ET.Element] = {}
    for child in element.findall(f"{_C}HLSSignalingData"):
        playlist = child.get("playlist", "media")
        if playlist not in ("media", "master"):
            raise ProtectionError(f"CPIX {where}: HLSSignalingData playlist must be media or master")
        if playlist in found:
            raise ProtectionError(f"CPIX {where}: a second HLSSignalingData for the {playlist} playlist")
        found[playlist] = child
    if "media" not in found:
        return ""
    what = f"{where}: HLSSignalingData (media)"
    text = _utf8(_base64(found["media"].text or "", what), what).strip()
    if "#EXT-X-KEY:" not in text:
        raise ProtectionError(f"CPIX {what} has no #EXT-X-KEY tag")
    return text


# ContentKeyPeriodList (§5.2.9, §5.2.10)


def _key_periods(root: ET.Element) -> tuple[KeyPeriod, ...]:
    out: list[KeyPeriod] = []
    for number, element in enumerate(_items(root, "ContentKeyPeriod"), 1):
        period = _key_period(element, number)
        if any(p.id == period.id for p in out):
            raise ProtectionError(f"CPIX ContentKeyPeriod {number}: a second period with id {period.id}")
        out.append(period)
    return tuple(out)


def _key_period(element: ET.Element, number: int) -> KeyPeriod:
    """``index`` alone, or ``start`` and ``end`` together, the interval being ``[start, end)``."""
    period_id = element.get("id", "").strip()
    if not period_id:
        raise ProtectionError(f"CPIX ContentKeyPeriod {number}: id is missing")
    where = f"ContentKeyPeriod {number} (id {period_id})"
    index = _integer_attribute(element, "index", where)
    start, end = element.get("start"), element.get("end")
    if index is not None and (start is not None or end is not None):
        raise ProtectionError(f"CPIX {where}: give either index or start and end, not both")
    if index is not None:
        return KeyPeriod(period_id, index, None, None)
    if start is None or end is None:
        raise ProtectionError(f"CPIX {where}: needs either index or both start and end")
    start_ms, end_ms = _date_time(start, f"{where}: start"), _date_time(end, f"{where}: end")
    if start_ms >= end_ms:
        raise ProtectionError(f"CPIX {where}: start must be before end")
    return KeyPeriod(period_id, None, start_ms, end_ms)


def _date_time(text: str, what: str) -> int:
    """An ``xs:dateTime`` in UTC milliseconds (digits past the millisecond dropped); one without a
    time zone is taken as UTC."""
    match = _DATE_TIME.fullmatch(text.strip())
    if match is None:
        raise ProtectionError(f"CPIX {what} is not an xs:dateTime such as 2024-05-01T12:00:00Z")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    offset = timedelta()
    if zone and zone != "Z":
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:])) * (-1 if zone[0] == "-" else 1)
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=timezone(offset),
        )
    except ValueError:
        raise ProtectionError(f"CPIX {what} is not a valid date and time") from None
    return (moment - _EPOCH) // timedelta(milliseconds=1)


# ContentKeyUsageRuleList (§5.2.11, §5.2.12, §5.2.13)


def _usage_rules(
    root: ET.Element, kids: Collection[bytes], period_ids: Collection[str]
) -> tuple[UsageRule, ...]:
    return tuple(
        _usage_rule(element, number, kids, period_ids)
        for number, element in enumerate(_items(root, "ContentKeyUsageRule"), 1)
    )


def _usage_rule(
    element: ET.Element, number: int, kids: Collection[bytes], period_ids: Collection[str]
) -> UsageRule:
    where = f"ContentKeyUsageRule {number}"
    kid = _known_kid(element, where, kids)
    where = f"{where} (kid {_uuid(kid)})"
    for child in element:
        if child.tag not in _FILTERS:
            raise ProtectionError(
                f"CPIX {where}: unknown filter {_name(child.tag)}; a rule that cannot be interpreted "
                "makes the whole key mapping unusable"
            )
    video = tuple(_video_filter(e, where) for e in element.findall(f"{_C}VideoFilter"))
    audio = tuple(_audio_filter(e, where) for e in element.findall(f"{_C}AudioFilter"))
    track_type = element.get("intendedTrackType", "").strip()
    return UsageRule(
        kid=kid,
        kinds=_filter_kinds(video, audio) or _track_type_kinds(track_type),
        periods=tuple(
            _period_reference(e, where, period_ids) for e in element.findall(f"{_C}KeyPeriodFilter")
        ),
        intended_track_type=track_type,
        labels=tuple(_label(e, where) for e in element.findall(f"{_C}LabelFilter")),
        video=video,
        audio=audio,
        bitrate=tuple(_bitrate_filter(e, where) for e in element.findall(f"{_C}BitrateFilter")),
    )


def _filter_kinds(video: tuple[VideoFilter, ...], audio: tuple[AudioFilter, ...]) -> frozenset[TrackKind]:
    return frozenset(
        kind for kind, filters in ((TrackKind.VIDEO, video), (TrackKind.AUDIO, audio)) if filters
    )


def _track_type_kinds(track_type: str) -> frozenset[TrackKind]:
    """Kinds named by ``intendedTrackType`` parts such as ``VIDEO``, ``AUDIO_2CH`` or ``TEXT``."""
    parts = (part.strip().upper() for part in track_type.split("+"))
    return frozenset(kind for part in parts for name, kind in _TRACK_TYPES.items() if part.startswith(name))


def _period_reference(element: ET.Element, where: str, period_ids: Collection[str]) -> str:
    period_id = element.get("periodId", "").strip()
    if not period_id:
        raise ProtectionError(f"CPIX {where}: KeyPeriodFilter periodId is missing")
    if period_id not in period_ids:
        raise ProtectionError(
            f"CPIX {where}: KeyPeriodFilter names period {period_id}, which is not in ContentKeyPeriodList"
        )
    return period_id


def _label(element: ET.Element, where: str) -> str:
    label = element.get("label", "")
    if not label:
        raise ProtectionError(f"CPIX {where}: LabelFilter label is missing")
    return label


def _video_filter(element: ET.Element, where: str) -> VideoFilter:
    what = f"{where}: VideoFilter"
    return VideoFilter(
        *_bounds(element, "minPixels", "maxPixels", what),
        hdr=_boolean_attribute(element, "hdr", what),
        wcg=_boolean_attribute(element, "wcg", what),
        min_fps=_integer_attribute(element, "minFps", what),
        max_fps=_integer_attribute(element, "maxFps", what),
    )


def _audio_filter(element: ET.Element, where: str) -> AudioFilter:
    return AudioFilter(*_bounds(element, "minChannels", "maxChannels", f"{where}: AudioFilter"))


def _bitrate_filter(element: ET.Element, where: str) -> BitrateFilter:
    """At least one of ``minBitrate`` and ``maxBitrate`` (§5.2.13.6)."""
    what = f"{where}: BitrateFilter"
    low, high = _bounds(element, "minBitrate", "maxBitrate", what)
    if low is None and high is None:
        raise ProtectionError(f"CPIX {what} needs minBitrate or maxBitrate")
    return BitrateFilter(low, high)


def _bounds(element: ET.Element, low_name: str, high_name: str, where: str) -> tuple[int | None, int | None]:
    low = _integer_attribute(element, low_name, where)
    high = _integer_attribute(element, high_name, where)
    if low is not None and high is not None and low > high:
        raise ProtectionError(f"CPIX {where}: {low_name} is above {high_name}")
    return low, high


# Values


def _uuid(kid: bytes) -> str:
    return str(uuid.UUID(bytes=kid))


def _uuid_attribute(element: ET.Element, name: str, where: str) -> bytes:
    text = element.get(name)
    if text is None:
        raise ProtectionError(f"CPIX {where}: {name} is missing")
    return parse_uuid(text, f"CPIX {where}: {name}")


def _known_kid(element: ET.Element, where: str, kids: Collection[bytes]) -> bytes:
    kid = _uuid_attribute(element, "kid", where)
    if kid not in kids:
        raise ProtectionError(f"CPIX {where}: kid {_uuid(kid)} is not in ContentKeyList")
    return kid


def _integer_attribute(element: ET.Element, name: str, where: str) -> int | None:
    """A non-negative ``xs:integer`` attribute, None when absent."""
    text = element.get(name)
    if text is None:
        return None
    if not _INTEGER.fullmatch(text.strip()) or len(text.strip()) > 18 or int(text) < 0:
        raise ProtectionError(f"CPIX {where}: {name} is not a non-negative integer")
    return int(text)


def _boolean_attribute(element: ET.Element, name: str, where: str) -> bool | None:
    text = element.get(name)
    if text is None:
        return None
    value = _BOOLEANS.get(text.strip())
    if value is None:
        raise ProtectionError(f"CPIX {where}: {name} is not true or false")
    return value


def _base64(text: str, what: str) -> bytes:
    """``xs:base64Binary``: whitespace anywhere is allowed. The message never repeats the text."""
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except binascii.Error:
        raise ProtectionError(f"CPIX {what} is not base64") from None


def _base64_child(element: ET.Element, name: str, where: str) -> bytes:
    child = element.find(f"{_C}{name}")
    return b"" if child is None else _base64(child.text or "", f"{where}: {name}")


def _sized(value: bytes, what: str) -> bytes:
    if len(value) != KEY_SIZE:
        raise ProtectionError(f"CPIX {what} must be {KEY_SIZE} bytes, got {len(value)}")
    return value


def _utf8(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtectionError(f"CPIX {what} is not UTF-8 text") from None
