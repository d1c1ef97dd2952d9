"""storage.timeline, storage.keys, storage.server_manifest and conf.settings."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conf.settings import (
    IngestSettings,
    LogSettings,
    Settings,
    SettingsError,
    env_values,
    load_settings,
    parse_address,
    parse_size,
    setting_names,
)
from media.model import Track, TrackKind
from media.timeline import FLAG_DISCONTINUITY, FLAG_KEYFRAME, Timeline, TimelineEntry, Verdict
from storage.errors import InvalidName, InvalidOption, StorageError
from storage.keys import PointId, check_stream, check_track, fragment_time
from storage.server_manifest import (
    MAX_MANIFEST_BYTES,
    PointOptions,
    ServerManifest,
    parse_server_manifest,
    write_server_manifest,
)
from storage.timeline import MAGIC, RECORD, decode_index, encode_entry

FAST = settings(max_examples=50, deadline=None, derandomize=True)

# ---------------------------------------------------------------------------------------------
# Timeline


def entry(time: int, duration: int = 100, flags: int = FLAG_KEYFRAME) -> TimelineEntry:
    return TimelineEntry(time, duration, 1000 + time, 1_700_000_000_000 + time, flags)


def test_record_layout() -> None:
    record = encode_entry(TimelineEntry(1, 2, 3, 4, FLAG_KEYFRAME | FLAG_DISCONTINUITY))
    assert RECORD.size == 32
    assert record == bytes.fromhex("0000000000000001 0000000000000002 00000003 0000000000000004 00000003")


def test_entry_properties() -> None:
    e = TimelineEntry(100, 50, 10, 0, FLAG_DISCONTINUITY)
    assert (e.end, e.keyframe, e.discontinuity) == (150, False, True)


@FAST
@given(
    st.lists(
        st.builds(
            TimelineEntry,
            st.integers(0, 2**64 - 1),
            st.integers(0, 2**64 - 1),
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**64 - 1),
            st.integers(0, 2**32 - 1),
        ),
        max_size=10,
    ),
    st.integers(0, RECORD.size - 1),
)
def test_decode_index_round_trip_ignores_partial_trailing_record(
    entries: list[TimelineEntry], cut: int
) -> None:
    data = MAGIC + b"".join(encode_entry(e) for e in entries)
    assert decode_index(data) == entries
    if entries:
        assert decode_index(data[: len(data) - cut]) == (entries if cut == 0 else entries[:-1])


def test_decode_index_edge_cases() -> None:
    assert decode_index(b"") == []
    assert decode_index(MAGIC) == []
    assert decode_index(MAGIC + encode_entry(entry(0))[:31]) == []
    with pytest.raises(StorageError, match="HWTIDX01"):
        decode_index(b"NOTANIDX" + encode_entry(entry(0)))


def test_timeline_check_rules() -> None:
    timeline = Timeline([entry(200), entry(0), entry(100)])  # sorted on load
    assert [e.decode_time for e in timeline.entries] == [0, 100, 200]
    assert timeline.end == 300
    assert timeline.check(300) is Verdict.NEW  # continues exactly
    assert timeline.check(5000) is Verdict.NEW  # after a gap
    assert timeline.check(100) is Verdict.DUPLICATE  # re-sent fragment, not only the last one
    assert timeline.check(200) is Verdict.DUPLICATE
    assert timeline.check(0) is Verdict.DUPLICATE
    assert timeline.check(150) is Verdict.BACKWARDS
    assert timeline.check(299) is Verdict.BACKWARDS
    assert not timeline.is_gap(300)
    assert timeline.is_gap(301)


def test_empty_timeline() -> None:
    timeline = Timeline()
    assert (len(timeline), timeline.last, timeline.end) == (0, None, 0)
    assert timeline.check(0) is Verdict.NEW
    assert timeline.check(10**12) is Verdict.NEW
    assert not timeline.is_gap(10**12)
    assert timeline.find(0) is None


def test_timeline_add_keeps_decode_order() -> None:
    timeline = Timeline([entry(0)])
    timeline.add(entry(100))
    assert timeline.last == entry(100)
    assert timeline.find(100) == entry(100)
    assert timeline.find(50) is None
    with pytest.raises(ValueError, match="decode order"):
        timeline.add(entry(50))
    assert len(timeline) == 2


# ---------------------------------------------------------------------------------------------
# Keys


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "..",
        ".",
        "../etc",
        "live/..",
        "live/../other",
        "live/./x",
        "/etc/passwd",
        "/live/channel1",
        "live/channel1/",
        "live//channel1",
        "C:/content",
        "C:\\content",
        "live\\..\\x",
        "\\\\server\\share",
        "live/ch\x001",
        "\x00",
        "live/ch 1",
        "live/ch?1",
        "live/ch#1",
        "live/ch%2e%2e",
        "live/ch:1",
        "live/ch*",
        "live/ch\n1",
        "live/ch\t",
        ".hidden",
        "live/.hidden",
        "_state",
        "live/_tracks",
        "-rf",
        "~home",
        "video=400000",
        "chännel",
        "\uff4c\uff49\uff56\uff45",  # fullwidth "live"
        "live/ch\u200b",  # zero-width space
        "a" * 129,
        "/".join(["a"] * 9),
    ],
)
def test_point_id_rejects_hostile_paths(path: str) -> None:
    with pytest.raises(InvalidName):
        PointId.parse(path)


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("channel1", ("channel1",)),
        ("live/channel1", ("live", "channel1")),
        ("a.b_c-d~e/9", ("a.b_c-d~e", "9")),
        ("a..b", ("a..b",)),
        ("a" * 128, ("a" * 128,)),
        ("/".join(["a"] * 8), ("a",) * 8),
    ],
)
def test_point_id_accepts_safe_paths(path: str, segments: tuple[str, ...]) -> None:
    pid = PointId.parse(path)
    assert pid.segments == segments
    assert str(pid) == path
    assert pid.name == segments[-1]


def test_point_keys() -> None:
    pid = PointId.parse("live/ch1")
    assert pid.manifest_key == "live/ch1/ch1.isml"
    assert pid.state_key == "live/ch1/_state.json"
    assert pid.ingest_header_key("video.cmfv") == "live/ch1/_ingest/video.cmfv.mp4"
    assert pid.track_info_key("video=400000") == "live/ch1/_tracks/video=400000/track.json"
    assert pid.track_header_key("audio") == "live/ch1/_tracks/audio/header.mp4"
    assert pid.index_prefix("audio") == "live/ch1/_tracks/audio/index/"
    key = pid.fragment_key("audio", 12345)
    assert key == "live/ch1/_tracks/audio/00000000000000012345.m4s"
    assert fragment_time(key) == 12345
    assert fragment_time(pid.index_prefix("audio") + "0000000000.bin") is None
    assert fragment_time("x/abc.m4s") is None
    assert all(not k.startswith("/") for k in (pid.manifest_key, pid.state_key, key))


def test_fragment_keys_sort_by_time() -> None:
    pid = PointId.parse("p")
    times = [0, 9, 10, 99_999, 10**12, 2**64 - 1]
    keys = [pid.fragment_key("t", t) for t in times]
    assert sorted(keys) == keys


@pytest.mark.parametrize(
    "name", ["", "..", ".", "../x", "a/b", "a\\b", "/abs", "_x", ".x", "a\x00", "a b", "a" * 129, "é"]
)
def test_track_and_stream_names_reject_hostile_input(name: str) -> None:
    with pytest.raises(InvalidName):
        check_track(name)
    with pytest.raises(InvalidName):
        check_stream(name)
    with pytest.raises(InvalidName):
        PointId.parse("p").track_prefix(name)


@pytest.mark.parametrize("name", ["video=400000", "audio-eng", "video.cmfv", "Streams1", "a~b"])
def test_track_names_accept(name: str) -> None:
    assert check_track(name) == name


def test_invalid_name_message_escapes_control_characters() -> None:
    with pytest.raises(InvalidName) as info:
        PointId.parse("live/a\x00b\nc")
    assert "\\x00" in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# Server manifest

SMIL = "http://www.w3.org/2001/SMIL20/Language"


def smil(*metas: tuple[str, str]) -> bytes:
    items = "".join(f'<meta name="{n}" content="{c}"/>' for n, c in metas)
    return f'<?xml version="1.0"?><smil xmlns="{SMIL}"><head>{items}</head><body/></smil>'.encode()


def test_server_manifest_round_trip() -> None:
    options = PointOptions(
        archiving=False,
        archive_length=3600,
        dvr_window_length=120,
        restart_on_encoder_reconnect=True,
        hls_minimum_fragment_length=Fraction(48, 25),
        mpd_minimum_fragment_length=Fraction(5, 2),
        iss_minimum_fragment_length=Fraction(2),
    )
    track = Track("video=400000", TrackKind.VIDEO, "avc1", "avc1.64001f", 10_000_000, b"", bitrate=400000)
    data = write_server_manifest(ServerManifest(options, (track,)))
    assert data.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<smil xmlns="' + SMIL.encode())
    assert b'<video src="video=400000" systemBitrate="400000">' in data
    assert b'<param name="trackName" value="video" valuetype="data" />' in data
    assert parse_server_manifest(data, PointOptions()) == ServerManifest(options)


def test_server_manifest_defaults_and_ignored_meta() -> None:
    defaults = PointOptions(dvr_window_length=60)
    parsed = parse_server_manifest(smil(("creator", "Unified Streaming"), ("archiving", "false")), defaults)
    assert parsed.options == PointOptions(archiving=False, dvr_window_length=60)


def test_server_manifest_accepts_dotted_option_names() -> None:
    parsed = parse_server_manifest(smil(("hls.minimum_fragment_length", "4")), PointOptions())
    assert parsed.options.hls_minimum_fragment_length == Fraction(4)


def test_server_manifest_unknown_option_is_named() -> None:
    with pytest.raises(InvalidOption) as info:
        parse_server_manifest(smil(("dvr_window_lenght", "30")), PointOptions())
    assert info.value.option == "dvr_window_lenght"
    assert "'dvr_window_lenght'" in str(info.value)
    assert "dvr_window_length" in str(info.value)  # the known names are listed


@pytest.mark.parametrize(
    ("values", "option"),
    [
        ({"archiving": "maybe"}, "archiving"),
        ({"archive_length": "-1"}, "archive_length"),
        ({"dvr_window_length": "1.5"}, "dvr_window_length"),
        ({"restart_on_encoder_reconnect": ""}, "restart_on_encoder_reconnect"),
        ({"hls_minimum_fragment_length": "abc"}, "hls_minimum_fragment_length"),
        ({"mpd_minimum_fragment_length": "1/0"}, "mpd_minimum_fragment_length"),
        ({"iss_minimum_fragment_length": "3601"}, "iss_minimum_fragment_length"),
        ({"iss_minimum_fragment_length": "-2"}, "iss_minimum_fragment_length"),
        ({"bogus": "1"}, "bogus"),
    ],
)
def test_option_errors_name_the_option(values: dict[str, str], option: str) -> None:
    with pytest.raises(InvalidOption) as info:
        PointOptions().with_values(values)
    assert info.value.option == option
    assert str(info.value).startswith(f"option {option!r}: ")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"archiving": "Off"}, PointOptions(archiving=False)),
        ({"archiving": " yes "}, PointOptions(archiving=True)),
        ({"archive_length": " 30 "}, PointOptions(archive_length=30)),
        ({"hls_minimum_fragment_length": "2.5"}, PointOptions(hls_minimum_fragment_length=Fraction(5, 2))),
        (
            {"mpd_minimum_fragment_length": "48/25"},
            PointOptions(mpd_minimum_fragment_length=Fraction(48, 25)),
        ),
        ({}, PointOptions()),
    ],
)
def test_option_values(values: dict[str, str], expected: PointOptions) -> None:
    assert PointOptions().with_values(values) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<smil", "not well-formed"),
        (b"<html/>", "expected <smil>"),
        (f'<smil xmlns="{SMIL}"><head><meta name="archiving"/></head></smil>'.encode(), "name and content"),
        (b"<smil>" + b" " * MAX_MANIFEST_BYTES + b"</smil>", "larger than"),
    ],
)
def test_server_manifest_malformed(data: bytes, message: str) -> None:
    with pytest.raises(InvalidOption, match=message) as info:
        parse_server_manifest(data, PointOptions())
    assert info.value.option == "server manifest"


# ---------------------------------------------------------------------------------------------
# Settings


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("65536", 65536),
        ("0", 0),
        ("64KiB", 65536),
        ("64kib", 65536),
        ("16MiB", 16 * 1024**2),
        ("16 MiB", 16 * 1024**2),
        ("1GiB", 1024**3),
        ("1Gi", 1024**3),
        ("64KB", 64000),
        ("64k", 64000),
        ("1GB", 10**9),
        ("5B", 5),
        (" 7 ", 7),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "-1", "1.5MiB", "12TB", "1 GiBs", "0x10", "ten"])
def test_parse_size_errors(text: str) -> None:
    with pytest.raises(ValueError, match="expected a size"):
        parse_size(text)


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_address(":80") == ("0.0.0.0", 80)
    assert parse_address("[::1]:443") == ("::1", 443)
    for bad in ("8080", "host:", "host:99999", "host:http"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_address(bad)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "headwater.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    assert load_settings(None, {}, {}) == Settings()
    assert Settings().ingest.max_box_size == 64 * 1024**2


def test_precedence_defaults_toml_env_flags(tmp_path: Path) -> None:
    config = write_toml(
        tmp_path,
        'root = "/from/toml"\nhttp = "127.0.0.1:1"\nrtmp = "127.0.0.1:2"\n'
        '[ingest]\nmax_box_size = "1MiB"\nread_timeout = 5\nauto_create = false\n'
        '[log]\nlevel = "debug"\n'
        "[points]\ndvr_window_length = 10\narchiving = false\n",
    )
    env = {
        "HEADWATER_HTTP": "127.0.0.1:3",
        "HEADWATER_INGEST_MAX_BOX_SIZE": "2MiB",
        "HEADWATER_POINTS_DVR_WINDOW_LENGTH": "20",
    }
    flags = {"http": "127.0.0.1:4", "points.dvr_window_length": "40"}
    loaded = load_settings(config, env, flags)
    assert loaded.root == "/from/toml"  # TOML only
    assert loaded.rtmp == "127.0.0.1:2"
    assert loaded.http == "127.0.0.1:4"  # flag beats environment beats TOML
    assert loaded.ingest == IngestSettings(auto_create=False, max_box_size=2 * 1024**2, read_timeout=5.0)
    assert loaded.log == LogSettings(level="debug")
    assert loaded.points == PointOptions(dvr_window_length=40, archiving=False)
    assert loaded.storage == Settings().storage  # untouched section keeps defaults


def test_config_path_from_environment(tmp_path: Path) -> None:
    config = write_toml(tmp_path, "shutdown_timeout = 2.5\n")
    assert load_settings(None, {"HEADWATER_CONFIG": str(config)}, {}).shutdown_timeout == 2.5


def test_env_values_names() -> None:
    env = {"HEADWATER_ROOT": "/r", "HEADWATER_STORAGE_FSYNC": "off", "HEADWATER_CONFIG": "x", "PATH": "/bin"}
    assert env_values(env) == {"root": "/r", "storage.fsync": "off"}
    assert "points.hls_minimum_fragment_length" in setting_names()
    assert "ingest.max_box_size" in setting_names()


def test_flag_values_are_coerced() -> None:
    loaded = load_settings(
        None, {}, {"storage.fsync": "no", "ingest.max_body_size": "1GB", "points.archiving": True}
    )
    assert loaded.storage.fsync is False
    assert loaded.ingest.max_body_size == 10**9
    assert loaded.points.archiving is True


@pytest.mark.parametrize(
    ("environ", "flags", "toml", "needle"),
    [
        ({"HEADWATER_BOGUS": "1"}, {}, None, "HEADWATER_BOGUS"),
        ({"HEADWATER_INGEST_MAX_BOX_SIZE": "huge"}, {}, None, "'ingest.max_box_size' in the environment"),
        ({}, {"nope": "1"}, None, "'nope' in the command line"),
        ({}, {"ingest.nope": "1"}, None, "'ingest.nope'"),
        ({}, {"log.format": "xml"}, None, "'log.format'"),
        ({}, {"log.level": "verbose"}, None, "'log.level'"),
        ({}, {"http": "localhost"}, None, "'http'"),
        ({}, {"storage.fsync": "perhaps"}, None, "'storage.fsync'"),
        ({}, {"shutdown_timeout": "0"}, None, "'shutdown_timeout'"),
        ({}, {"shutdown_timeout": "-1"}, None, "'shutdown_timeout'"),
        ({}, {"ingest.read_timeout": "soon"}, None, "'ingest.read_timeout'"),
        ({}, {"ingest.max_body_size": "-5"}, None, "'ingest.max_body_size'"),
        ({}, {"points.bogus": "1"}, None, "points.bogus in the command line"),
        ({}, {"points.archiving": "maybe"}, None, "points.archiving"),
        ({}, {}, "[bogus]\nx = 1\n", "unknown section [bogus]"),
        ({}, {}, "[ingest]\nmax_box_size = true\n", "'ingest.max_box_size'"),
        ({}, {}, "[ingest]\nmax_box_size = 1.5\n", "'ingest.max_box_size'"),
        ({}, {}, "[ingest]\nnope = 1\n", "'ingest.nope'"),
        ({}, {}, "ingest = 5\n", "'ingest'"),
        ({}, {}, "root = [", "not valid TOML"),
    ],
)
def test_settings_errors_name_setting_and_source(
    tmp_path: Path, environ: dict[str, str], flags: dict[str, str], toml: str | None, needle: str
) -> None:
    config = write_toml(tmp_path, toml) if toml is not None else None
    with pytest.raises(SettingsError) as info:
        load_settings(config, environ, flags)
    assert needle in str(info.value)
    if config is not None and "TOML" not in needle:
        assert str(config) in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read configuration file"):
        load_settings(tmp_path / "absent.toml", {}, {})


@pytest.mark.parametrize("name", ["shutdown_timeout", "ingest.read_timeout"])
def test_nan_timeout_is_refused(name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings(None, {}, {name: "nan"})


def test_example_config_changes_nothing() -> None:
    example = Path(__file__).resolve().parents[2] / "conf" / "headwater.toml"
    if not example.exists():
        pytest.skip("conf/headwater.toml is not there")
    assert load_settings(example, {}, {}) == Settings()
