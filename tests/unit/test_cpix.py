"""CPIX 2.3 documents: the fixtures under tests/data/cpix (see its README), small documents built here
for every error, and hostile XML."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest

from media.cpix import (
    MAX_CPIX_BYTES,
    AudioFilter,
    BitrateFilter,
    CpixDocument,
    KeyPeriod,
    UsageRule,
    VideoFilter,
    parse_cpix,
)
from media.model import TrackKind
from media.protection import ProtectionError

DATA = Path(__file__).parent.parent / "data" / "cpix"

WIDEVINE = uuid.UUID("edef8ba9-79d6-4ace-a3c8-27dcd51d21ed")
PLAYREADY = uuid.UUID("9a04f079-9840-4286-ab92-e65be0885f95")
PLAYREADY_LA_URL = "https://playready.keys.example.net/rightsmanager.asmx"

# multi_drm.cpix.xml: cbcs, one key for video and one for audio, each with an explicit IV.
VIDEO_KID = uuid.UUID("7140a2a8-a982-4828-9ef5-390f220469c0")
VIDEO_KEY = bytes.fromhex("66b75d84066959df0a684450de16a13d")
VIDEO_IV = bytes.fromhex("dd2832473e5ecddbc4595fc575d364b3")
AUDIO_KID = uuid.UUID("a6dc7201-87c5-406d-b0e6-c6497a078ef2")
AUDIO_KEY = bytes.fromhex("5028d193268af8fb91218647ecc87528")
AUDIO_IV = bytes.fromhex("5983a614cbac6a77373103cade6e8a88")

# rotation.cpix.xml: cenc, Widevine, a video and an audio key in each of two ten-minute periods.
ROTATION = {
    ("keyPeriod_1", TrackKind.VIDEO): (
        uuid.UUID("2878589d-9f25-4d73-9f57-502f326ae4f2"),
        bytes.fromhex("0d2b5927a24fd3f2c7787d2d42d1efd3"),
    ),
    ("keyPeriod_1", TrackKind.AUDIO): (
        uuid.UUID("00e8e2ac-2fdf-4b14-af1b-6f0f84da79c8"),
        bytes.fromhex("c304b9955e4ff5bac010e341c02c5bc2"),
    ),
    ("keyPeriod_2", TrackKind.VIDEO): (
        uuid.UUID("66bad4d4-3722-474c-9dfb-2594d3daefc7"),
        bytes.fromhex("7a25890b9c486849640426f7e6b6db67"),
    ),
    ("keyPeriod_2", TrackKind.AUDIO): (
        uuid.UUID("43b91610-2ebf-4ff4-b20e-74123b1687fe"),
        bytes.fromhex("40ea9703be131d54632400fbd9ac47cb"),
    ),
}
PERIOD_1_START_MS = 1_714_564_800_000  # 2024-05-01T12:00:00Z
TEN_MINUTES_MS = 600_000


# DRM signalling as key servers write it


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def key_texts(key: bytes) -> list[str]:
    """Every text form of ``key`` a message must not hold."""
    return [key.hex(), key.hex().upper(), b64(key), b64(key)[:-2], b64(key[:15]), b64(key + key)]


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


def pssh_box(system: uuid.UUID, data: bytes, kids: tuple[uuid.UUID, ...] = ()) -> bytes:
    """ISO/IEC 23001-7 §8.1.2: version 1 (with a KID list) when ``kids`` are given."""
    body = bytes([1 if kids else 0, 0, 0, 0]) + system.bytes
    if kids:
        body += len(kids).to_bytes(4, "big") + b"".join(kid.bytes for kid in kids)
    body += len(data).to_bytes(4, "big") + data
    return (8 + len(body)).to_bytes(4, "big") + b"pssh" + body


def widevine_pssh(kid: uuid.UUID, scheme: bytes) -> bytes:
    """WidevinePsshData: key_id (2), provider (4), content_id (5), protection_scheme (9)."""
    content_id = b"headwater-channel-1"
    data = (
        b"\x12\x10"
        + kid.bytes
        + b"\x22\x09headwater"
        + b"\x2a"
        + bytes([len(content_id)])
        + content_id
        + b"\x48"
        + varint(int.from_bytes(scheme, "big"))
    )
    return pssh_box(WIDEVINE, data)


def playready_object(kid: uuid.UUID) -> bytes:
    """A PlayReady Object holding one v4.3 WRM header record (AES-CBC, for cbcs)."""
    header = (
        '<WRMHEADER xmlns="http://schemas.microsoft.com/DRM/2007/03/PlayReadyHeader" version="4.3.0.0">'
        f'<DATA><PROTECTINFO><KIDS><KID ALGID="AESCBC" VALUE="{b64(kid.bytes_le)}"></KID></KIDS>'
        f"</PROTECTINFO><LA_URL>{PLAYREADY_LA_URL}</LA_URL></DATA></WRMHEADER>"
    ).encode("utf-16-le")
    record = (1).to_bytes(2, "little") + len(header).to_bytes(2, "little") + header
    return (6 + len(record)).to_bytes(4, "little") + (1).to_bytes(2, "little") + record


def playready_pssh(kid: uuid.UUID) -> bytes:
    return pssh_box(PLAYREADY, playready_object(kid), (kid,))


def widevine_hls(tag: str, kid: uuid.UUID, pssh: bytes, method: str) -> str:
    return (
        f'#{tag}:METHOD={method},URI="data:text/plain;base64,{b64(pssh)}",KEYID=0x{kid.hex},'
        f'KEYFORMAT="urn:uuid:{WIDEVINE}",KEYFORMATVERSIONS="1"'
    )


def playready_hls(kid: uuid.UUID) -> str:
    return (
        f'#EXT-X-KEY:METHOD=SAMPLE-AES,URI="data:text/plain;charset=UTF-16;base64,{b64(playready_object(kid))}",'
        'KEYFORMAT="com.microsoft.playready",KEYFORMATVERSIONS="1"'
    )


def cenc_pssh_element(pssh: bytes) -> str:
    return f'<cenc:pssh xmlns:cenc="urn:mpeg:cenc:2013">{b64(pssh)}</cenc:pssh>'


def playready_content_protection(kid: uuid.UUID) -> str:
    return (
        f'<mspr:pro xmlns:mspr="urn:microsoft:playready">{b64(playready_object(kid))}</mspr:pro>'
        + cenc_pssh_element(playready_pssh(kid))
    )


def load(name: str) -> CpixDocument:
    return parse_cpix((DATA / name).read_bytes())


# The fixtures


def test_multi_drm_document() -> None:
    doc = load("multi_drm.cpix.xml")
    assert (doc.content_id, doc.version) == ("headwater-channel-1", "2.3")
    assert [(k.kid, k.key, k.iv) for k in doc.keys] == [
        (VIDEO_KID.bytes, VIDEO_KEY, VIDEO_IV),
        (AUDIO_KID.bytes, AUDIO_KEY, AUDIO_IV),
    ]
    assert doc.schemes == ((VIDEO_KID.bytes, "cbcs"), (AUDIO_KID.bytes, "cbcs"))
    assert doc.periods == ()
    assert doc.rules == (
        UsageRule(
            VIDEO_KID.bytes,
            frozenset({TrackKind.VIDEO}),
            (),
            intended_track_type="VIDEO",
            video=(VideoFilter(max_pixels=8_847_360),),
        ),
        UsageRule(
            AUDIO_KID.bytes,
            frozenset({TrackKind.AUDIO}),
            (),
            intended_track_type="AUDIO",
            audio=(AudioFilter(),),
        ),
    )


def test_multi_drm_document_signalling() -> None:
    doc = load("multi_drm.cpix.xml")
    assert [(s.system_uuid, uuid.UUID(bytes=s.kid)) for s in doc.drm] == [
        (str(WIDEVINE), VIDEO_KID),
        (str(PLAYREADY), VIDEO_KID),
        (str(WIDEVINE), AUDIO_KID),
        (str(PLAYREADY), AUDIO_KID),
    ]
    for system in doc.drm:
        kid = uuid.UUID(bytes=system.kid)
        if system.system_uuid == str(WIDEVINE):
            pssh = widevine_pssh(kid, b"cbcs")
            assert system.pssh == pssh
            assert system.content_protection == cenc_pssh_element(pssh)
            # the media playlist's line, not the master playlist's EXT-X-SESSION-KEY
            assert system.hls_signaling == widevine_hls("EXT-X-KEY", kid, pssh, "SAMPLE-AES")
        else:
            assert system.pssh == playready_pssh(kid)
            assert system.content_protection == playready_content_protection(kid)
            assert system.hls_signaling == playready_hls(kid)


def test_rotation_document() -> None:
    doc = load("rotation.cpix.xml")
    assert doc.periods == (
        KeyPeriod("keyPeriod_1", None, PERIOD_1_START_MS, PERIOD_1_START_MS + TEN_MINUTES_MS),
        # written with a +02:00 offset
        KeyPeriod(
            "keyPeriod_2", None, PERIOD_1_START_MS + TEN_MINUTES_MS, PERIOD_1_START_MS + 2 * TEN_MINUTES_MS
        ),
    )
    assert {(k.kid, k.key, k.iv) for k in doc.keys} == {
        (kid.bytes, key, b"") for kid, key in ROTATION.values()
    }
    assert {(r.periods, r.kinds, r.kid) for r in doc.rules} == {
        ((period,), frozenset({kind}), kid.bytes) for (period, kind), (kid, _) in ROTATION.items()
    }
    assert {s.kid: s.pssh for s in doc.drm} == {
        kid.bytes: widevine_pssh(kid, b"cenc") for kid, _ in ROTATION.values()
    }
    assert all(s.hls_signaling.startswith("#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,") for s in doc.drm)


def test_minimal_document() -> None:
    """One key, default namespace, nothing else: one key for every track at any time."""
    doc = load("minimal.cpix.xml")
    (key,) = doc.keys
    assert (key.kid, key.key, key.iv) == (VIDEO_KID.bytes, VIDEO_KEY, b"")
    assert (doc.periods, doc.rules, doc.drm, doc.schemes, doc.version) == ((), (), (), (), "")


def test_repr_shows_no_key() -> None:
    text = repr(load("multi_drm.cpix.xml"))
    assert str(VIDEO_KID) in text
    assert all(secret not in text for secret in key_texts(VIDEO_KEY) + key_texts(AUDIO_KEY))


# Small documents

NS = 'xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc"'
OTHER_NS = NS.replace('cpix"', 'cpix:3"')
KID = str(VIDEO_KID)
OTHER_KID = str(AUDIO_KID)
KEY_B64 = b64(VIDEO_KEY)


def document(*parts: str, root: str = f"cpix:CPIX {NS}") -> bytes:
    name = root.split()[0]
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}>{"".join(parts)}</{name}>'.encode()


def content_key(kid: str = KID, value: str = KEY_B64, attributes: str = "") -> str:
    secret = f"<pskc:Secret><pskc:PlainValue>{value}</pskc:PlainValue></pskc:Secret>"
    return f'<cpix:ContentKey kid="{kid}"{attributes}><cpix:Data>{secret}</cpix:Data></cpix:ContentKey>'


def listed(name: str, *items: str) -> str:
    return f"<cpix:{name}List>{''.join(items)}</cpix:{name}List>"


def keys(*items: str) -> str:
    return listed("ContentKey", *(items or (content_key(),)))


def drm_system(body: str = "", system: uuid.UUID = WIDEVINE, kid: str = KID) -> str:
    return f'<cpix:DRMSystem systemId="{system}" kid="{kid}">{body}</cpix:DRMSystem>'


def drm(body: str = "", system: uuid.UUID = WIDEVINE, kid: str = KID) -> str:
    return listed("DRMSystem", drm_system(body, system, kid))


def periods(*attributes: str) -> str:
    return listed("ContentKeyPeriod", *(f"<cpix:ContentKeyPeriod {a}/>" for a in attributes))


def rules(body: str = "", attributes: str = "", kid: str = KID) -> str:
    rule = f'<cpix:ContentKeyUsageRule kid="{kid}"{attributes}>{body}</cpix:ContentKeyUsageRule>'
    return listed("ContentKeyUsageRule", rule)


def hls(text: str, playlist: str = "media") -> str:
    return f'<cpix:HLSSignalingData playlist="{playlist}">{b64(text.encode())}</cpix:HLSSignalingData>'


PERIOD = 'id="p1" start="2024-05-01T12:00:00Z" end="2024-05-01T12:10:00Z"'
WIDEVINE_PSSH = widevine_pssh(VIDEO_KID, b"cenc")


def test_index_periods_and_filters() -> None:
    doc = parse_cpix(
        document(
            keys(),
            periods('id="k41" index="41"', 'id="k42" index="42"'),
            rules(
                '<cpix:KeyPeriodFilter periodId="k41"/><cpix:KeyPeriodFilter periodId="k42"/>'
                '<cpix:LabelFilter label="video=2000000"/>'
                '<cpix:VideoFilter minPixels="921601" maxPixels="2073600" hdr="true" wcg="0"'
                ' minFps="30" maxFps="60"/>'
                '<cpix:VideoFilter minPixels="2073601"/>'
                '<cpix:BitrateFilter minBitrate="1500000"/>'
            ),
        )
    )
    assert doc.periods == (KeyPeriod("k41", 41, None, None), KeyPeriod("k42", 42, None, None))
    assert doc.rules == (
        UsageRule(
            VIDEO_KID.bytes,
            frozenset({TrackKind.VIDEO}),
            ("k41", "k42"),
            labels=("video=2000000",),
            video=(VideoFilter(921_601, 2_073_600, True, False, 30, 60), VideoFilter(min_pixels=2_073_601)),
            bitrate=(BitrateFilter(min_bitrate=1_500_000),),
        ),
    )


@pytest.mark.parametrize(
    ("body", "kinds"),
    [
        ("", frozenset()),  # every kind
        ('<cpix:AudioFilter minChannels="1" maxChannels="2"/>', frozenset({TrackKind.AUDIO})),
        ("<cpix:VideoFilter/><cpix:AudioFilter/>", frozenset({TrackKind.VIDEO, TrackKind.AUDIO})),
    ],
)
def test_kinds_from_filters(body: str, kinds: frozenset[TrackKind]) -> None:
    (rule,) = parse_cpix(document(keys(), rules(body))).rules
    assert rule.kinds == kinds


@pytest.mark.parametrize(
    ("track_type", "body", "kinds"),
    [
        ("AUDIO", "", {TrackKind.AUDIO}),
        ("VIDEO_UHD+AUDIO_STEREO", "", {TrackKind.VIDEO, TrackKind.AUDIO}),
        ("text", "", {TrackKind.TEXT}),
        ("ALL", "", set()),
        (
            "SD+HD",
            '<cpix:VideoFilter maxPixels="921600"/><cpix:VideoFilter minPixels="921601"/>',
            {TrackKind.VIDEO},
        ),
        ("AUDIO", "<cpix:VideoFilter/>", {TrackKind.VIDEO}),  # the filter decides (§5.2.13.3)
    ],
)
def test_kinds_from_intended_track_type(track_type: str, body: str, kinds: set[TrackKind]) -> None:
    (rule,) = parse_cpix(document(keys(), rules(body, f' intendedTrackType="{track_type}"'))).rules
    assert (set(rule.kinds), rule.intended_track_type) == (kinds, track_type)


@pytest.mark.parametrize(
    ("start", "end", "ms"),
    [
        ("2024-05-01T12:00:00.25Z", "2024-05-01T12:00:01.9999Z", (250, 1999)),
        ("2024-05-01T12:00:00", "2024-05-01T13:00:00.001+01:00", (0, 1)),  # no zone: UTC
        ("2024-05-01T11:30:00-00:30", "2024-05-01T12:00:00.001Z", (0, 1)),
    ],
)
def test_date_times(start: str, end: str, ms: tuple[int, int]) -> None:
    (period,) = parse_cpix(document(keys(), periods(f'id="p" start="{start}" end="{end}"'))).periods
    assert (period.start_ms, period.end_ms) == (PERIOD_1_START_MS + ms[0], PERIOD_1_START_MS + ms[1])


@pytest.mark.parametrize(
    "data",
    [
        document(listed("DeliveryData"), keys(content_key(value=f"{KEY_B64[:10]}\n  {KEY_B64[10:]}\n"))),
        document(
            keys(),
            drm(f"<cpix:PSSH>{b64(WIDEVINE_PSSH)}</cpix:PSSH>" + hls("#EXT-X-SESSION-KEY:x", "master")),
        ),
        document(keys(), drm(f"<cpix:URIExtXKey>{b64(b'skd://key')}</cpix:URIExtXKey>")),
        document(
            keys(),
            "<cpix:UpdateHistoryItemList/>",
            '<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"/>',
        ),
    ],
    ids=["wrapped base64, empty DeliveryDataList", "master playlist only", "URIExtXKey", "not verified"],
)
def test_accepted_variants(data: bytes) -> None:
    doc = parse_cpix(data)
    assert doc.keys[0].key == VIDEO_KEY
    assert all(system.hls_signaling == "" for system in doc.drm)


SHORT_KEY = b64(VIDEO_KEY[:15])
LONG_KEY = b64(VIDEO_KEY + VIDEO_KEY)
KEY_WHERE = rf"ContentKey 1 \(kid {KID}\)"
DRM_WHERE = rf"DRMSystem 1 \(systemId {WIDEVINE}\)"
RULE_WHERE = rf"ContentKeyUsageRule 1 \(kid {KID}\)"
ENCRYPTED = (
    f'<cpix:ContentKey kid="{KID}"><cpix:Data><pskc:Secret><pskc:EncryptedValue>'
    "<enc:EncryptionMethod xmlns:enc='http://www.w3.org/2001/04/xmlenc#'"
    " Algorithm='http://www.w3.org/2001/04/xmlenc#aes256-cbc'/>"
    "</pskc:EncryptedValue></pskc:Secret></cpix:Data></cpix:ContentKey>"
)
NOT_UTF8 = b64(b"<x>\xff</x>")
DELIVERY_DATA = listed(
    "DeliveryData",
    "<cpix:DeliveryData><cpix:DeliveryKey/><cpix:DocumentKey/></cpix:DeliveryData>",
)

ERRORS: list[tuple[str, bytes, str]] = [
    # the document
    ("too large", b" " * (MAX_CPIX_BYTES + 1), f"larger than {MAX_CPIX_BYTES} bytes"),
    ("not XML", b"<cpix:CPIX", "not well-formed XML: unclosed token"),
    ("undeclared entity", document(keys(), "&key;"), "not well-formed XML: undefined entity"),
    (
        "MPD",
        b'<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"/>',
        "not a CPIX document: the root element is MPD in",
    ),
    (
        "wrong namespace",
        document(keys(), root=f"cpix:CPIX {OTHER_NS}"),
        "not a CPIX document",
    ),
    ("no key", document(), "no ContentKey in its ContentKeyList"),
    ("key outside the namespace", document(content_key().replace("cpix:", "")), "no ContentKey"),
    # ContentKey
    (
        "kid missing",
        document(keys(content_key().replace(f' kid="{KID}"', ""))),
        "ContentKey 1: kid is missing",
    ),
    ("kid not a UUID", document(keys(content_key("7140a2a8-a982"))), "ContentKey 1: kid must be 16 bytes"),
    ("kid not hex", document(keys(content_key("x" * 32))), "ContentKey 1: kid is not 32 hexadecimal"),
    (
        "key not base64",
        document(keys(content_key(value=KEY_B64[:-3] + "*=="))),
        rf"{KEY_WHERE}: .* not base64",
    ),
    (
        "key 15 bytes",
        document(keys(content_key(value=SHORT_KEY))),
        rf"{KEY_WHERE}: .* must be 16 bytes, got 15",
    ),
    (
        "key 32 bytes",
        document(keys(content_key(value=LONG_KEY))),
        rf"{KEY_WHERE}: .* must be 16 bytes, got 32",
    ),
    ("key empty", document(keys(content_key(value=" "))), rf"{KEY_WHERE}: no key \(Data/pskc:Secret"),
    ("no Data", document(keys(f'<cpix:ContentKey kid="{KID}"/>')), rf"{KEY_WHERE}: no key"),
    ("EncryptedValue", document(keys(ENCRYPTED)), rf"{KEY_WHERE}: encrypted content keys .*PlainValue"),
    ("DeliveryData", document(DELIVERY_DATA, keys()), "encrypted content keys are not supported"),
    (
        "duplicate kid",
        document(keys(content_key(), content_key(KID.upper(), b64(AUDIO_KEY)))),
        rf"ContentKey 2 \(kid {KID}\): the kid is already that of ContentKey 1",
    ),
    (
        "IV not base64",
        document(keys(content_key(attributes=' explicitIV="%%%"'))),
        rf"{KEY_WHERE}: explicitIV is not base64",
    ),
    (
        "IV 8 bytes",
        document(keys(content_key(attributes=f' explicitIV="{b64(VIDEO_IV[:8])}"'))),
        rf"{KEY_WHERE}: explicitIV must be 16 bytes, got 8",
    ),
    (
        "key hierarchy",
        document(keys(content_key(attributes=f' dependsOnKey="{OTHER_KID}"'))),
        "key hierarchies",
    ),
    # DRMSystem
    (
        "unknown kid",
        document(keys(), drm(kid=OTHER_KID)),
        rf"{DRM_WHERE}: kid {OTHER_KID} is not in ContentKeyList",
    ),
    (
        "systemId missing",
        document(keys(), drm().replace(f' systemId="{WIDEVINE}"', "")),
        "DRMSystem 1: systemId is",
    ),
    (
        "systemId not hex",
        document(keys(), drm().replace(str(WIDEVINE), "widevine")),
        "DRMSystem 1: systemId is not",
    ),
    (
        "PSSH not base64",
        document(keys(), drm("<cpix:PSSH>AAAA!</cpix:PSSH>")),
        rf"{DRM_WHERE}: PSSH is not base64",
    ),
    (
        "PSSH not a box",
        document(keys(), drm(f"<cpix:PSSH>{b64(WIDEVINE_PSSH[8:])}</cpix:PSSH>")),
        rf"{DRM_WHERE}: PSSH is not a whole pssh box",
    ),
    (
        "PSSH truncated",
        document(keys(), drm(f"<cpix:PSSH>{b64(WIDEVINE_PSSH[:-1])}</cpix:PSSH>")),
        "not a whole pssh box",
    ),
    (
        "PSSH of another system",
        document(keys(), drm(f"<cpix:PSSH>{b64(playready_pssh(VIDEO_KID))}</cpix:PSSH>")),
        rf"{DRM_WHERE}: the PSSH box is for system {PLAYREADY}",
    ),
    (
        "ContentProtectionData not UTF-8",
        document(keys(), drm(f"<cpix:ContentProtectionData>{NOT_UTF8}</cpix:ContentProtectionData>")),
        rf"{DRM_WHERE}: ContentProtectionData is not UTF-8",
    ),
    (
        "ContentProtectionData not base64",
        document(keys(), drm("<cpix:ContentProtectionData>&lt;cenc:pssh/&gt;</cpix:ContentProtectionData>")),
        "ContentProtectionData is not base64",
    ),
    (
        "HLS not base64",
        document(keys(), drm("<cpix:HLSSignalingData>#EXT-X-KEY</cpix:HLSSignalingData>")),
        "base64",
    ),
    (
        "HLS playlist",
        document(keys(), drm(hls("#EXT-X-KEY:x", "variant"))),
        "playlist must be media or master",
    ),
    (
        "HLS twice",
        document(keys(), drm(hls("#EXT-X-KEY:x") + hls("#EXT-X-KEY:y").replace(' playlist="media"', ""))),
        rf"{DRM_WHERE}: a second HLSSignalingData for the media playlist",
    ),
    (
        "HLS without EXT-X-KEY",
        document(keys(), drm(hls("#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES"))),
        r"HLSSignalingData \(media\) has no #EXT-X-KEY tag",
    ),
    (
        "duplicate DRMSystem",
        document(keys(), listed("DRMSystem", drm_system(), drm_system(kid=KID.replace("-", "")))),
        rf"DRMSystem 2: a second DRMSystem for systemId {WIDEVINE} and kid {KID}",
    ),
    # ContentKeyPeriod
    ("period without id", document(keys(), periods('index="1"')), "ContentKeyPeriod 1: id is missing"),
    (
        "period twice",
        document(keys(), periods(PERIOD, PERIOD)),
        "ContentKeyPeriod 2: a second period with id p1",
    ),
    (
        "period without bounds",
        document(keys(), periods('id="p1"')),
        r"ContentKeyPeriod 1 \(id p1\): needs either index or both start and end",
    ),
    (
        "period without end",
        document(keys(), periods('id="p1" start="2024-05-01T12:00:00Z"')),
        "both start and end",
    ),
    (
        "period index and start",
        document(keys(), periods(PERIOD + ' index="3"')),
        "either index or start and end, not",
    ),
    (
        "negative index",
        document(keys(), periods('id="p1" index="-1"')),
        "index is not a non-negative integer",
    ),
    (
        "index not integer",
        document(keys(), periods('id="p1" index="1.5"')),
        "index is not a non-negative integer",
    ),
    ("start = end", document(keys(), periods(PERIOD.replace("12:10", "12:00"))), "start must be before end"),
    ("start > end", document(keys(), periods(PERIOD.replace("12:10", "11:00"))), "start must be before end"),
    (
        "start not a date",
        document(keys(), periods(PERIOD.replace("2024-05-01T", "1 May "))),
        "start is not an xs:d",
    ),
    (
        "no such day",
        document(keys(), periods(PERIOD.replace("05-01T12:10", "02-30T12:10"))),
        "end is not a valid",
    ),
    # ContentKeyUsageRule
    (
        "rule kid",
        document(keys(), rules(kid=OTHER_KID)),
        rf"ContentKeyUsageRule 1: kid {OTHER_KID} is not in",
    ),
    (
        "rule without kid",
        document(keys(), rules().replace(f' kid="{KID}"', "")),
        "ContentKeyUsageRule 1: kid is",
    ),
    (
        "unknown period",
        document(keys(), periods(PERIOD), rules('<cpix:KeyPeriodFilter periodId="p2"/>')),
        rf"{RULE_WHERE}: KeyPeriodFilter names period p2, which is not in ContentKeyPeriodList",
    ),
    (
        "no periodId",
        document(keys(), rules("<cpix:KeyPeriodFilter/>")),
        "KeyPeriodFilter periodId is missing",
    ),
    ("no label", document(keys(), rules("<cpix:LabelFilter/>")), "LabelFilter label is missing"),
    (
        "pixels upside down",
        document(keys(), rules('<cpix:VideoFilter minPixels="2073600" maxPixels="921600"/>')),
        rf"{RULE_WHERE}: VideoFilter: minPixels is above maxPixels",
    ),
    (
        "hdr",
        document(keys(), rules('<cpix:VideoFilter hdr="yes"/>')),
        "VideoFilter: hdr is not true or false",
    ),
    (
        "fps",
        document(keys(), rules('<cpix:VideoFilter maxFps="29.97"/>')),
        "maxFps is not a non-negative integer",
    ),
    (
        "channels",
        document(keys(), rules('<cpix:AudioFilter maxChannels="-2"/>')),
        "AudioFilter: maxChannels is not",
    ),
    (
        "empty BitrateFilter",
        document(keys(), rules("<cpix:BitrateFilter/>")),
        "needs minBitrate or maxBitrate",
    ),
    (
        "proprietary filter",
        document(keys(), rules('<acme:RegionFilter xmlns:acme="urn:acme" region="eu"/>')),
        rf"{RULE_WHERE}: unknown filter RegionFilter in urn:acme",
    ),
]


@pytest.mark.parametrize(("data", "message"), [case[1:] for case in ERRORS], ids=[case[0] for case in ERRORS])
def test_errors(data: bytes, message: str) -> None:
    with pytest.raises(ProtectionError, match=message) as caught:
        parse_cpix(data)
    text = str(caught.value)
    assert all(
        secret not in text for secret in [*key_texts(VIDEO_KEY), *key_texts(AUDIO_KEY), SHORT_KEY, LONG_KEY]
    )


def test_fixture_with_a_bad_key_names_the_key_not_its_value() -> None:
    data = (
        (DATA / "multi_drm.cpix.xml")
        .read_bytes()
        .replace(b64(AUDIO_KEY).encode(), b64(AUDIO_KEY[:12]).encode())
    )
    with pytest.raises(ProtectionError, match=rf"ContentKey 2 \(kid {AUDIO_KID}\): .* got 12") as caught:
        parse_cpix(data)
    assert all(secret not in str(caught.value) for secret in [*key_texts(AUDIO_KEY), b64(AUDIO_KEY[:12])])


# Hostile XML: a document type declaration is refused before its internal subset is read

LAUGHS = "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10))
BILLION_LAUGHS = f'<!DOCTYPE lolz [<!ENTITY lol0 "lol">{LAUGHS}]><cpix:CPIX {NS}>{keys()}&lol9;</cpix:CPIX>'


@pytest.mark.parametrize(
    "text",
    [
        BILLION_LAUGHS,
        f'<!DOCTYPE cpix:CPIX [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><cpix:CPIX {NS}>&xxe;</cpix:CPIX>',
        f'<!DOCTYPE cpix:CPIX SYSTEM "http://127.0.0.1:9/cpix.dtd"><cpix:CPIX {NS}>{keys()}</cpix:CPIX>',
        f'<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>'
        f"<cpix:CPIX {NS}>{keys()}</cpix:CPIX>",
        f"<!DOCTYPE cpix:CPIX><cpix:CPIX {NS}>{keys()}</cpix:CPIX>",
    ],
    ids=["billion laughs", "external entity", "external DTD", "parameter entity", "empty DOCTYPE"],
)
def test_document_type_declarations_are_refused(text: str) -> None:
    with pytest.raises(
        ProtectionError, match=r"has a DTD \(DOCTYPE or ENTITY declaration\); CPIX needs none"
    ):
        parse_cpix(text.encode())
