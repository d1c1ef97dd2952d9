"""Key plans, encryption options, location settings, key tokens and the HLS key tags."""

from __future__ import annotations

from pathlib import Path

import pytest

from conf.settings import Settings, SettingsError, apply
from media.cpix import parse_cpix
from media.hls import HlsKey
from media.keyplan import KeyPlan, check_plan, parse_key_list, parse_pssh_list
from media.model import Track, TrackKind
from media.protection import ContentKey, ProtectionError, Scheme, derived_key, derived_key_of_kid
from origin.key_tokens import mint_token, token_valid
from origin.protect import check_tracks
from storage.errors import InvalidOption
from storage.server_manifest import REDACTED, PointOptions

DATA = Path(__file__).resolve().parents[1] / "data" / "cpix"
KID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
KEY = "3c9e8f3a2b1d4e5f60718293a4b5c6d7"
UUID_KID = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"


def track(kind: TrackKind, name: str = "", **fields: int) -> Track:
    return Track(
        name or kind.value, kind, "avc1" if kind is TrackKind.VIDEO else "mp4a", "", 90000, b"", **fields
    )


VIDEO = track(TrackKind.VIDEO, width=1280, height=720, bitrate=3_000_000)
AUDIO = track(TrackKind.AUDIO, channels=2, bitrate=128_000)
TEXT = track(TrackKind.TEXT)


def test_one_key_for_every_track() -> None:
    ((kind, key),) = parse_key_list(f"{UUID_KID}:{KEY}")
    assert kind is None and key.kid == bytes.fromhex(KID) and key.key == bytes.fromhex(KEY) and key.iv == b""
    assert repr(key) == f"ContentKey(kid={UUID_KID})"  # never the key


def test_keys_per_kind_with_an_iv() -> None:
    keys = dict(parse_key_list(f"video={KID}:{KEY}:0x{'01' * 16}, audio={KEY}:{KID}"))
    assert keys[TrackKind.VIDEO].iv == bytes([1] * 16)
    assert keys[TrackKind.AUDIO].kid == bytes.fromhex(KEY)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{KID}", "expected KID:KEY"),
        (f"{KID}:{KEY[:-2]}", "must be 16 bytes"),
        (f"{KID}:{'zz' * 16}", "not hexadecimal"),
        (f"{KID[:-2]}:{KEY}", "the KID must be 16 bytes"),
        (f"subtitles={KID}:{KEY}", "video= or audio="),
        (f"video={KID}:{KEY},video={KID}:{KEY}", "a second key for video"),
        (f"{KID}:{KEY},audio={KID}:{KEY}", "either one key for every track"),
    ],
)
def test_bad_key_lists_name_the_entry_not_the_key(text: str, message: str) -> None:
    with pytest.raises(ProtectionError, match=message) as caught:
        parse_key_list(text)
    assert KEY not in str(caught.value) and KEY[:-2] not in str(caught.value)


def test_pssh_list() -> None:
    ((system, data),) = parse_pssh_list("edef8ba9-79d6-4ace-a3c8-27dcd51d21ed:AAECAw==")
    assert system.hex() == "edef8ba979d64acea3c827dcd51d21ed" and data == b"\0\1\2\3"
    with pytest.raises(ProtectionError, match="not base64"):
        parse_pssh_list("edef8ba9-79d6-4ace-a3c8-27dcd51d21ed:***")


def test_derived_keys_rotate_per_period_and_kind_and_point() -> None:
    plan = KeyPlan(Scheme.AES_128, "live/a", seed=b"a seed of sixteen+", rotation_ms=60_000)
    first = plan.key_for(VIDEO, 1_700_000_000_000)
    assert plan.key_for(VIDEO, 1_700_000_000_000 + 59_999 - 1_700_000_000_000 % 60_000) == first
    later = plan.key_for(VIDEO, 1_700_000_060_000)
    assert later.kid != first.kid and later.key != first.key
    assert plan.key_for(AUDIO, 1_700_000_000_000).kid != first.kid
    other = KeyPlan(Scheme.AES_128, "live/b", seed=b"a seed of sixteen+", rotation_ms=60_000)
    assert other.key_for(VIDEO, 1_700_000_000_000).key != first.key
    # The key server finds a derived key from its KID alone, and only this point's.
    assert plan.key_by_kid(later.kid) == later
    assert other.key_by_kid(later.kid) is None
    assert derived_key_of_kid(b"another seed....", "live/a", ("video",), first.kid) is None
    assert first.kid[8:] == (1_700_000_000_000 // 60_000).to_bytes(8, "big")
    assert derived_key(b"a seed of sixteen+", "live/a", "video", 0) == plan.default_key(VIDEO)


def test_static_plan() -> None:
    plan = KeyPlan(Scheme.CENC, "live/a", parse_key_list(f"video={KID}:{KEY},audio={KEY}:{KID}"))
    assert plan.key_for(VIDEO, 5).kid.hex() == KID
    assert plan.key_by_kid(bytes.fromhex(KEY)) == plan.key_for(AUDIO, 0)
    with pytest.raises(ProtectionError, match="no key for text"):
        plan.key_for(TEXT, 0)


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (KeyPlan(Scheme.CENC, "p"), "needs encryption_key"),
        (KeyPlan(Scheme.CENC, "p", parse_key_list(f"{KID}:{KEY}"), seed=b"x" * 16), "only one of"),
        (
            KeyPlan(Scheme.CENC, "p", parse_key_list(f"{KID}:{KEY}"), rotation_ms=1000),
            "needs encryption_key_seed",
        ),
    ],
)
def test_plans_that_cannot_work(plan: KeyPlan, message: str) -> None:
    with pytest.raises(ProtectionError, match=message):
        check_plan(plan)


def test_options_check_and_redact() -> None:
    options = PointOptions().with_values({"encryption": "CBCS", "encryption_key": f"{KID}:{KEY}"})
    assert options.encryption == "cbcs"
    shown = options.as_text(redact=True)
    assert shown["encryption_key"] == REDACTED and KEY not in str(shown)
    assert options.as_text()["encryption_key"] == f"{KID}:{KEY}"  # what the store keeps
    plan = options.key_plan("live/a")
    assert plan.scheme is Scheme.CBCS and plan.key_for(VIDEO, 0).key.hex() == KEY
    with pytest.raises(InvalidOption, match="needs encryption_key") as caught:
        PointOptions().with_values({"encryption": "cenc"})
    assert caught.value.option == "encryption"
    with pytest.raises(InvalidOption, match="expected one of") as caught:
        PointOptions().with_values({"encryption": "rot13"})
    with pytest.raises(InvalidOption, match="16 to 256") as caught:
        PointOptions().with_values({"encryption_key_seed": "short"})


def test_locations_in_settings() -> None:
    settings = apply(
        Settings(),
        {"locations.aes128.encryption": "aes-128", "locations.aes128.encryption_key": f"{KID}:{KEY}"},
        "test",
    )
    assert settings.locations == (
        ("aes128", (("encryption", "aes-128"), ("encryption_key", f"{KID}:{KEY}"))),
    )
    with pytest.raises(SettingsError, match="a location is"):
        apply(Settings(), {"locations.aes128.publish_token": "x"}, "test")
    with pytest.raises(SettingsError, match="a location is"):
        apply(Settings(), {"locations.a/b.encryption": "none"}, "test")
    with pytest.raises(SettingsError, match=r"locations\.x\.encryption") as caught:
        apply(Settings(), {"locations.x.encryption": "cenc"}, "test")
    assert "needs encryption_key" in str(caught.value)


def test_key_tokens() -> None:
    token = mint_token("secret", "live/a", 2_000_000_000)
    assert token_valid("secret", "live/a", token, 1_900_000_000)
    assert not token_valid("secret", "live/a", token, 2_000_000_001)  # expired
    assert not token_valid("secret", "live/b", token, 1_900_000_000)  # another point
    assert not token_valid("other", "live/a", token, 1_900_000_000)
    assert not token_valid("secret", "live/a", "2000000000-" + "0" * 32, 1_900_000_000)
    assert not token_valid("secret", "live/a", "garbage", 0)


def test_hls_key_tags() -> None:
    assert (
        HlsKey("AES-128", "keys/ab.key?token=t").tag()
        == '#EXT-X-KEY:METHOD=AES-128,URI="keys/ab.key?token=t"'
    )
    tag = HlsKey("SAMPLE-AES", "k", bytes(range(16)), "com.apple.streamingkeydelivery").tag()
    assert tag == (
        '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="k",IV=0x000102030405060708090A0B0C0D0E0F,'
        'KEYFORMAT="com.apple.streamingkeydelivery",KEYFORMATVERSIONS="1"'
    )
    assert HlsKey(line="#EXT-X-KEY:METHOD=NONE").tag() == "#EXT-X-KEY:METHOD=NONE"


def test_content_key_sizes() -> None:
    with pytest.raises(ProtectionError):
        ContentKey(b"1" * 15, b"2" * 16)
    key = ContentKey(b"1" * 16, b"2" * 16)
    assert (
        len(key.constant_iv()) == 16 and key.constant_iv() == ContentKey(b"1" * 16, b"3" * 16).constant_iv()
    )


def test_cpix_plan_picks_keys_by_kind_pixels_and_period() -> None:
    doc = parse_cpix((DATA / "multi_drm.cpix.xml").read_bytes())
    plan = KeyPlan(Scheme.CBCS, "live/a", cpix=doc)
    check_plan(plan)
    video_rule = next(r for r in doc.rules if TrackKind.VIDEO in r.kinds)
    audio_rule = next(r for r in doc.rules if TrackKind.AUDIO in r.kinds)
    assert plan.key_for(VIDEO, 0).kid == video_rule.kid and plan.default_key(VIDEO).kid == video_rule.kid
    assert plan.key_for(AUDIO, 0).kid == audio_rule.kid
    limit = max(f.max_pixels or 0 for f in video_rule.video)
    huge = track(TrackKind.VIDEO, "uhd", width=limit, height=2)
    with pytest.raises(ProtectionError, match="no key of encryption_cpix covers track 'uhd'"):
        plan.key_for(huge, 0)
    systems = plan.systems(video_rule.kid)
    assert {s.system_uuid for s in systems} == {
        "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed",
        "9a04f079-9840-4286-ab92-e65be0885f95",
    }
    assert all(s.pssh for s in systems)


def test_cpix_plan_with_periods() -> None:
    doc = parse_cpix((DATA / "rotation.cpix.xml").read_bytes())
    plan = KeyPlan(Scheme.CENC, "live/a", cpix=doc)
    check_plan(plan)
    first, second = sorted(doc.periods, key=lambda p: p.start_ms or 0)
    assert first.start_ms is not None and second.start_ms is not None
    a = plan.key_for(VIDEO, first.start_ms)
    b = plan.key_for(VIDEO, second.start_ms)
    assert a.kid != b.kid and plan.key_for(AUDIO, first.start_ms).kid not in (a.kid, b.kid)
    with pytest.raises(ProtectionError, match="at 20"):
        plan.key_for(VIDEO, (second.end_ms or 0) + 1)


def test_codecs_a_scheme_cannot_encrypt_are_refused() -> None:
    av1 = Track("av1", TrackKind.VIDEO, "av01", "av01.0.08M.08", 90000, b"")
    hevc = Track("hevc", TrackKind.VIDEO, "hvc1", "hvc1.1.6.L93.B0", 90000, b"")
    with pytest.raises(ProtectionError, match="av01"):
        check_tracks(Scheme.CENC, [VIDEO, av1])
    with pytest.raises(ProtectionError, match="not hvc1"):
        check_tracks(Scheme.SAMPLE_AES, [hevc])
    check_tracks(Scheme.SAMPLE_AES, [VIDEO, AUDIO, TEXT])
    check_tracks(Scheme.CBCS, [hevc, AUDIO, TEXT])  # text tracks stay clear
    check_tracks(Scheme.AES_128, [av1])  # whole segments: any codec


def test_cpix_scheme_must_match() -> None:
    doc = parse_cpix((DATA / "multi_drm.cpix.xml").read_bytes())  # commonEncryptionScheme="cbcs"
    with pytest.raises(ProtectionError, match="another scheme"):
        check_plan(KeyPlan(Scheme.CENC, "live/a", cpix=doc))
    check_plan(KeyPlan(Scheme.SAMPLE_AES, "live/a", cpix=doc))
    check_plan(KeyPlan(Scheme.AES_128, "live/a", cpix=doc))
