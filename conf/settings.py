"""Settings: defaults, then the TOML file, then ``HEADWATER_…`` environment variables, then flags.

Every setting has a dotted name (``ingest.max_box_size``) used in all three places: TOML section
``[ingest]`` key ``max_box_size``, environment ``HEADWATER_INGEST_MAX_BOX_SIZE``, and the generic flag
``--set ingest.max_box_size=32MiB``. Top-level settings (``root``, ``http``, ``rtmp``) have their own
flags and ``HEADWATER_ROOT`` style variables. ``[points]`` holds the defaults of new publishing
points, with the server manifest's option names.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from storage.errors import InvalidOption
from storage.server_manifest import OPTION_PARSERS, PointOptions


class SettingsError(ValueError):
    """A setting with an unknown name or an unusable value, naming the setting and where it came from."""


_SIZE = re.compile(r"(\d+)\s*([KMG]i?B?|B)?", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "ki": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "mi": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "gi": 1024**3,
}


def parse_size(text: str) -> int:
    """``65536``, ``64KiB``, ``16MiB``, ``1GB`` → bytes."""
    match = _SIZE.fullmatch(text.strip())
    if not match or (match.group(2) or "").lower() not in _UNITS:
        raise ValueError(f"expected a size such as 65536, 64KiB or 16MiB, got {text!r}")
    return int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def parse_app_paths(text: str) -> dict[str, str]:
    """``live=channels, studio=studio/east`` → {"live": "channels", "studio": "studio/east"}."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        app, sep, path = (p.strip().strip("/") for p in item.partition("="))
        if not sep or not app or not path:
            raise ValueError(f"expected APP=PATH pairs separated by commas, got {item!r}")
        out[app] = path
    return out


@dataclass(frozen=True)
class IngestSettings:
    enabled: bool = True  # false: a stateless origin serving what another node ingests into the root
    auto_create: bool = True  # create publishing points on first ingest
    max_box_size: int = 64 * 1024**2  # largest box accepted from an encoder
    max_body_size: int = 0  # largest request body; 0 = no limit (a live POST runs for hours)
    read_timeout: float = 30.0  # seconds without a byte before an ingest request is ended
    max_connections: int = 256  # ingest requests in progress at once; more get 503
    token: str = ""  # publish token every encoder must give (RTMP ?t=, HTTP ?t=); "" = none
    rtmp_apps: str = ""  # RTMP application → point path, "live=channels,studio=studio/east"
    rtmp_chunk_size: int = 4096  # chunk size Headwater sends with
    rtmp_max_chunk_size: int = 16 * 1024**2  # largest Set Chunk Size a publisher may ask for
    rtmp_max_message_size: int = 16 * 1024**2  # largest RTMP message (a keyframe must fit)
    rtmp_handshake_timeout: float = 10.0  # seconds from accept to the end of connect/publish
    rtmp_max_connections: int = 1000  # RTMP connections open at once; more are closed at once
    tls_cert: str = ""  # PEM certificate (chain) for RTMPS; with tls_key, starts the rtmps listener
    tls_key: str = ""  # PEM private key for RTMPS


@dataclass(frozen=True)
class PlayoutSettings:
    cors_origin: str = "*"  # Access-Control-Allow-Origin on playout answers; empty: no CORS headers
    cache_size: int = 256 * 1024**2  # bytes of rendered manifests and segments kept in memory
    clock_url: str = ""  # DASH UTCTiming URL; empty: this origin's /time at the host the client used
    max_clip_duration: int = 10800  # seconds a progressive MP4 export (<any>.mp4?vbegin&vend) may span
    key_token_secret: str = field(default="", repr=False)  # signs key tokens; "" = this origin serves no keys
    key_token_ttl: int = 86400  # seconds a token minted by `headwater key-token` stays valid


@dataclass(frozen=True)
class StorageSettings:
    fsync: bool = True  # fsync every object before acknowledging it
    purge_interval: float = 10.0  # seconds between archive purges (archive_length, archiving)
    follow_interval: float = 0.5  # ingest disabled: seconds between looks at what the ingest node stored
    s3_endpoint_url: str = ""  # e.g. http://minio:9000; "" = boto3's chain (AWS_ENDPOINT_URL_S3, AWS)
    s3_region: str = ""  # "" = boto3's chain (AWS_REGION, profile), else us-east-1
    s3_profile: str = ""  # shared config/credentials profile; "" = the default chain
    s3_addressing_style: str = "auto"  # auto | path | virtual
    s3_max_concurrency: int = 32  # S3 requests in flight at once (threads and pooled connections)
    s3_connect_timeout: float = 5.0  # seconds per attempt
    s3_read_timeout: float = 10.0  # seconds per attempt
    s3_max_attempts: int = 4  # attempts per request, with exponential backoff between them
    spool: str = "./spool"  # S3 roots, ingest node: folder for writes the object store did not take
    spool_size: int = 1024**3  # bytes the spool may hold; when full, ingest fails (503, RTMP closed)
    spool_after: float = 2.0  # seconds a write to the object store may take before it is spooled


@dataclass(frozen=True)
class LogSettings:
    level: str = "info"
    format: str = "json"  # json | text


@dataclass(frozen=True)
class Settings:
    root: str = "./content"
    http: str = "0.0.0.0:8080"
    rtmp: str = "0.0.0.0:1935"  # "" = no RTMP listener
    rtmps: str = "0.0.0.0:1936"  # RTMP over TLS, when ingest.tls_cert and ingest.tls_key are set
    shutdown_timeout: float = 10.0  # seconds SIGTERM waits for requests and writes in flight
    ingest: IngestSettings = field(default_factory=IngestSettings)
    playout: PlayoutSettings = field(default_factory=PlayoutSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    log: LogSettings = field(default_factory=LogSettings)
    points: PointOptions = field(default_factory=PointOptions)
    # Playout locations: a path prefix (``aes128`` for ``/aes128/<point>.isml/…``) → point options
    # applied over the point's own when it is played through that prefix.
    locations: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = field(default=(), repr=False)

    @property
    def http_address(self) -> tuple[str, int]:
        return parse_address(self.http)

    @property
    def rtmp_address(self) -> tuple[str, int] | None:
        return parse_address(self.rtmp) if self.rtmp else None

    @property
    def rtmps_address(self) -> tuple[str, int] | None:
        enabled = self.rtmps and self.ingest.tls_cert and self.ingest.tls_key
        return parse_address(self.rtmps) if enabled else None


_SECTIONS = {
    "ingest": IngestSettings,
    "playout": PlayoutSettings,
    "storage": StorageSettings,
    "log": LogSettings,
}
_TOP = ("root", "http", "rtmp", "rtmps", "shutdown_timeout")
_MINIMUMS = {
    "ingest.rtmp_chunk_size": 128,
    "ingest.rtmp_max_chunk_size": 128,
    "ingest.rtmp_max_message_size": 1024,
}
# What a playout location may change: how media is packaged and protected, not how it is ingested.
LOCATION_OPTIONS = (
    "hls_fmp4",
    "dvr_window_length",
    "hls_minimum_fragment_length",
    "mpd_minimum_fragment_length",
    *(name for name in OPTION_PARSERS if name.startswith("encryption")),
)
_LOCATION = re.compile(r"[A-Za-z0-9_-]+")
_CHOICES = {"log.format": ("json", "text"), "log.level": ("debug", "info", "warning", "error")}


def setting_names() -> list[str]:
    names = list(_TOP)
    for section, cls in _SECTIONS.items():
        names += [f"{section}.{f.name}" for f in fields(cls)]
    names += [f"points.{name}" for name in OPTION_PARSERS]
    names += [f"locations.<prefix>.{name}" for name in LOCATION_OPTIONS]
    return names


def _coerce(name: str, default: Any, value: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            result = value
        else:
            result = parse_size(str(value)) if name.endswith("_size") else int(str(value))
        if result < _MINIMUMS.get(name, 0):
            raise ValueError(f"must be at least {_MINIMUMS.get(name, 0)}, got {value!r}")
        return result
    if isinstance(default, float):
        result_f = float(value)
        if not (0 < result_f < float("inf")):
            raise ValueError(f"must be positive, got {value!r}")
        return result_f
    text = str(value)
    if name in _CHOICES and text not in _CHOICES[name]:
        raise ValueError(f"expected one of {', '.join(_CHOICES[name])}, got {text!r}")
    if name == "http" or (name in ("rtmp", "rtmps") and text):
        parse_address(text)
    if name == "ingest.rtmp_apps":
        parse_app_paths(text)
    return text


def apply(settings: Settings, values: Mapping[str, Any], source: str) -> Settings:
    """``settings`` with dotted-name ``values`` applied; errors name the setting and the source."""
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    point_values: dict[str, str] = {}
    locations = {prefix: dict(options) for prefix, options in settings.locations}
    for name, value in values.items():
        section, _, key = name.rpartition(".")
        try:
            text = str(value).lower() if isinstance(value, bool) else str(value)
            if section == "points":
                point_values[key] = text
            elif section.startswith("locations."):
                prefix = section.removeprefix("locations.")
                if not _LOCATION.fullmatch(prefix) or key not in LOCATION_OPTIONS:
                    raise SettingsError(
                        f"unknown setting {name!r} in {source}: a location is [locations.<prefix>] "
                        f"(letters, digits, - and _) with options among {', '.join(LOCATION_OPTIONS)}"
                    )
                locations.setdefault(prefix, {})[key] = text
            elif not section and name in _TOP:
                top[name] = _coerce(name, getattr(settings, name), value)
            elif section in _SECTIONS and key in {f.name for f in fields(_SECTIONS[section])}:
                current = getattr(settings, section)
                sections.setdefault(section, {})[key] = _coerce(name, getattr(current, key), value)
            else:
                raise SettingsError(
                    f"unknown setting {name!r} in {source}; known: {', '.join(setting_names())}"
                )
        except (ValueError, TypeError) as exc:
            if isinstance(exc, SettingsError):
                raise
            raise SettingsError(f"setting {name!r} in {source}: {exc}") from None
    try:
        points = settings.points.with_values(point_values)
    except InvalidOption as exc:
        raise SettingsError(f"setting points.{exc.option} in {source}: {exc}") from None
    try:
        points.check_keys()
    except InvalidOption as exc:
        raise SettingsError(f"setting points.{exc.option} in {source}: {exc}") from None
    for prefix, options in locations.items():
        try:
            base = points.without_encryption() if any(k.startswith("encryption") for k in options) else points
            base.with_values(options).check_keys()
        except InvalidOption as exc:
            raise SettingsError(f"setting locations.{prefix}.{exc.option} in {source}: {exc}") from None
    updates = {s: replace(getattr(settings, s), **v) for s, v in sections.items()}
    frozen = tuple((prefix, tuple(sorted(options.items()))) for prefix, options in sorted(locations.items()))
    return replace(settings, **top, **updates, points=points, locations=frozen)


def _flatten(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in (*_SECTIONS, "points", "locations"):
                raise SettingsError(f"unknown section [{key}] in {source}")
            for sub, sub_value in value.items():
                if key == "locations" and isinstance(sub_value, dict):
                    out.update({f"locations.{sub}.{k}": v for k, v in sub_value.items()})
                else:
                    out[f"{key}.{sub}"] = sub_value
        else:
            out[key] = value
    return out


def env_values(environ: Mapping[str, str]) -> dict[str, str]:
    """Settings from ``HEADWATER_<SECTION>_<KEY>`` variables (``HEADWATER_ROOT`` for top-level ones)."""
    by_env = {
        "HEADWATER_" + name.replace(".", "_").upper(): name for name in setting_names() if "<" not in name
    }
    out = {}
    for var, value in environ.items():
        if var in by_env:
            out[by_env[var]] = value
        elif var.startswith("HEADWATER_") and var not in ("HEADWATER_CONFIG",):
            raise SettingsError(f"unknown environment variable {var}; known: {', '.join(sorted(by_env))}")
    return out


def load_settings(
    config: str | Path | None, environ: Mapping[str, str], flags: Mapping[str, Any]
) -> Settings:
    """Defaults < TOML file (``config`` or ``$HEADWATER_CONFIG``) < environment < flags."""
    settings = Settings()
    path = config or environ.get("HEADWATER_CONFIG")
    if path:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise SettingsError(f"cannot read configuration file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"configuration file {path} is not valid TOML: {exc}") from None
        settings = apply(settings, _flatten(data, str(path)), str(path))
    settings = apply(settings, env_values(environ), "the environment")
    return apply(settings, flags, "the command line")
