"""Key plans: which content key protects which track of a publishing point at which time, from the
point's ``encryption_*`` options (static keys, keys derived per rotation period, or CPIX)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from media.cenc import pssh_box
from media.cpix import CpixDocument, KeyPeriod, UsageRule
from media.model import Track, TrackKind
from media.protection import (
    ContentKey,
    DrmSystem,
    ProtectionError,
    Scheme,
    derived_key,
    derived_key_of_kid,
    parse_hex_key,
    parse_uuid,
)
from media.timerange import iso_utc

# Systems whose pssh box names its KIDs in a version 1 box (ISO/IEC 23001-7 §8.1.2) rather than in
# its data: W3C Common PSSH ("cenc" initialization data, what browsers' ClearKey reads) and ClearKey.
KID_LISTING_SYSTEMS = frozenset(
    {
        bytes.fromhex("1077efecc0b24d02ace33c1e52e2fb4b"),
        bytes.fromhex("e2719d58a985b3c9781ab030af78d30e"),
    }
)

_KINDS = {"video": TrackKind.VIDEO, "audio": TrackKind.AUDIO}


def parse_key_list(text: str) -> tuple[tuple[TrackKind | None, ContentKey], ...]:
    """``[video=|audio=]KID:KEY[:IV]`` entries separated by commas (hex, the KID also as a UUID): one
    key for every track, or one per kind. Messages name the entry by position, never its text."""
    out: list[tuple[TrackKind | None, ContentKey]] = []
    for number, entry in enumerate(filter(None, (e.strip() for e in text.split(","))), 1):
        label, sep, rest = entry.partition("=")
        kind = _KINDS.get(label.strip().lower()) if sep else None
        if sep and kind is None:
            raise ProtectionError(f"key {number}: expected video= or audio= before the key")
        parts = (rest if sep else entry).split(":")
        if len(parts) not in (2, 3):
            raise ProtectionError(f"key {number}: expected KID:KEY or KID:KEY:IV")
        kid = parse_uuid(parts[0], f"key {number}: the KID")
        key = parse_hex_key(parts[1], f"key {number}: the key")
        iv = parse_hex_key(parts[2].removeprefix("0x"), f"key {number}: the IV") if len(parts) == 3 else b""
        if any(k == kind for k, _ in out):
            raise ProtectionError(f"key {number}: a second key for {kind or 'every track'}")
        out.append((kind, ContentKey(kid, key, iv)))
    if any(k is None for k, _ in out) and len(out) > 1:
        raise ProtectionError("give either one key for every track, or one per kind (video=…, audio=…)")
    return tuple(out)


def parse_pssh_list(text: str) -> tuple[tuple[bytes, bytes], ...]:
    """``SYSTEM_ID:BASE64`` entries separated by commas: the system-specific data of the ``pssh``
    box each DRM system needs (ISO/IEC 23001-7 §8.1.1)."""
    out = []
    for number, entry in enumerate(filter(None, (e.strip() for e in text.split(","))), 1):
        system, sep, data = entry.partition(":")
        if not sep:
            raise ProtectionError(f"pssh {number}: expected SYSTEM_ID:BASE64_DATA")
        system_id = parse_uuid(system, f"pssh {number}: the system ID")
        try:
            payload = base64.b64decode(data.strip(), validate=True)
        except binascii.Error:
            raise ProtectionError(f"pssh {number}: the data is not base64") from None
        out.append((system_id, payload))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class KeyPlan:
    """Which key protects which track of a publishing point at which time: static keys (one, or one
    per kind), keys derived per rotation period from a secret seed, or a CPIX document's keys with
    its usage rules. Rotation periods are counted in UTC: period ``n`` covers
    ``[n * rotation, (n + 1) * rotation)`` since 1970."""

    scheme: Scheme
    point: str
    static: tuple[tuple[TrackKind | None, ContentKey], ...] = ()
    seed: bytes = field(default=b"", repr=False)
    rotation_ms: int = 0
    cpix: CpixDocument | None = None
    pssh: tuple[tuple[bytes, bytes], ...] = ()  # (system ID, data) for every key

    @property
    def identity_keys(self) -> bool:
        """Whether players may be handed the keys themselves (HLS ``identity`` key format): not
        when a DRM system protects them (a CPIX document's, or pssh data of a system other than
        ClearKey), or the raw key would undo the DRM."""
        if self.cpix is not None and self.cpix.drm:
            return False
        return all(system in KID_LISTING_SYSTEMS for system, _ in self.pssh)

    def period(self, utc_ms: int) -> int:
        return utc_ms // self.rotation_ms if self.rotation_ms else 0

    def key_for(self, track: Track, utc_ms: int) -> ContentKey:
        """The key protecting ``track``'s media starting at ``utc_ms``."""
        kind = track.kind
        if self.seed:
            return derived_key(self.seed, self.point, kind.value, self.period(utc_ms))
        if self.cpix is not None:
            return self._cpix_key(self.cpix, track, utc_ms)
        for key_kind, key in self.static:
            if key_kind in (None, kind):
                return key
        raise ProtectionError(f"encryption_key gives no key for {kind.value} tracks")

    def default_key(self, track: Track) -> ContentKey:
        """The key an init segment names as its default (``tenc``): fixed for the point, so init
        segments stay the same under key rotation, while fragments of other periods name their key
        in a ``seig`` sample group (ISO/IEC 23001-7 §6)."""
        if self.cpix is not None and self.cpix.rules:
            rule = next((r for r in self.cpix.rules if _covers(r, track)), None)
            if rule is None:
                raise ProtectionError(f"no key of encryption_cpix covers track {track.name!r}")
            return next(k for k in self.cpix.keys if k.kid == rule.kid)
        return self.key_for(track, 0)

    def _cpix_key(self, doc: CpixDocument, track: Track, utc_ms: int) -> ContentKey:
        if not doc.rules:
            return doc.keys[0]
        periods = {p.id: p for p in doc.periods}
        for rule in doc.rules:
            if not _covers(rule, track):
                continue
            if not rule.periods or any(self._in_period(periods[p], utc_ms) for p in rule.periods):
                return next(k for k in doc.keys if k.kid == rule.kid)
        raise ProtectionError(f"no key of encryption_cpix covers track {track.name!r} at {iso_utc(utc_ms)}")

    def _in_period(self, period: KeyPeriod, utc_ms: int) -> bool:
        if period.index is not None:
            return self.period(utc_ms) == period.index
        return (period.start_ms or 0) <= utc_ms < (period.end_ms or utc_ms + 1)

    def key_by_kid(self, kid: bytes) -> ContentKey | None:
        """The key named ``kid``, if it is one of this plan's (what the key server hands out)."""
        if self.seed:
            return derived_key_of_kid(self.seed, self.point, ("video", "audio"), kid)
        keys = self.cpix.keys if self.cpix is not None else tuple(k for _, k in self.static)
        return next((k for k in keys if k.kid == kid), None)

    def systems(self, kid: bytes) -> list[DrmSystem]:
        """The DRM systems to signal for ``kid``: the CPIX document's, then the configured pssh data."""
        found = [s for s in self.cpix.drm if s.kid == kid] if self.cpix is not None else []
        found += [
            DrmSystem(system, kid, pssh_box(system, [kid] if system in KID_LISTING_SYSTEMS else [], data))
            for system, data in self.pssh
        ]
        return found


def check_plan(plan: KeyPlan) -> None:
    """Refuse key sources that cannot work together (at configuration time)."""
    sources = sum(map(bool, (plan.static, plan.seed, plan.cpix)))
    if plan.scheme is Scheme.NONE:
        return
    if sources == 0:
        raise ProtectionError(
            f"encryption {plan.scheme} needs encryption_key, encryption_key_seed or encryption_cpix"
        )
    if sources > 1:
        raise ProtectionError("give only one of encryption_key, encryption_key_seed and encryption_cpix")
    if plan.rotation_ms and plan.static:
        raise ProtectionError(
            "encryption_key_rotation needs encryption_key_seed or encryption_cpix (one key per period)"
        )
    if plan.cpix is not None:
        if len(plan.cpix.keys) > 1 and not plan.cpix.rules:
            raise ProtectionError(
                "encryption_cpix lists several keys but no ContentKeyUsageRule to choose between them"
            )
        if any(rule.labels or _unsupported_filter(rule) for rule in plan.cpix.rules):
            raise ProtectionError(
                "encryption_cpix: usage rules that pick keys by frame rate, HDR, colour gamut or label "
                "are not supported; filter by kind, pixels, channels, bit rate and period"
            )
        cenc_scheme = {Scheme.SAMPLE_AES: Scheme.CBCS}.get(plan.scheme, plan.scheme)
        if cenc_scheme in (Scheme.CENC, Scheme.CBCS) and any(s != cenc_scheme for _, s in plan.cpix.schemes):
            raise ProtectionError(
                f"encryption_cpix gives keys for another scheme than encryption {plan.scheme}"
            )
        if any(p.index is not None for p in plan.cpix.periods) and not plan.rotation_ms:
            raise ProtectionError(
                "encryption_cpix numbers its key periods: set encryption_key_rotation to their length"
            )


def _unsupported_filter(rule: UsageRule) -> bool:
    return any(f.hdr is not None or f.wcg is not None or f.min_fps or f.max_fps for f in rule.video)


def _within(value: int, low: int | None, high: int | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def _covers(rule: UsageRule, track: Track) -> bool:
    """Whether a CPIX usage rule's filters select ``track`` (CPIX 2.3 §5.2.13.1: one filter of a
    type matching is enough, every type present must match): its kind, its pixels (width x height,
    §5.2.13.4), channels (§5.2.13.5) and declared bit rate (§5.2.13.6)."""
    if rule.kinds and track.kind not in rule.kinds:
        return False
    pixels = track.width * track.height
    if rule.video and not any(_within(pixels, f.min_pixels, f.max_pixels) for f in rule.video):
        return False
    if rule.audio and not any(_within(track.channels, f.min_channels, f.max_channels) for f in rule.audio):
        return False
    return not rule.bitrate or any(_within(track.bitrate, f.min_bitrate, f.max_bitrate) for f in rule.bitrate)
