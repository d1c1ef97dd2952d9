"""Encryption end to end: one clear publishing point played through the locations of a Kaltura-style
configuration (``/aes128/``, ``/sampleaes/``, ``/cenc/``, ``/cbcs/``, ``/rotate/``), each encrypting
per request. ffmpeg decodes the HLS streams (fetching keys from the origin with a token) to the
same frames as the clear stream and decrypts DASH segments with the key; dash.js and Shaka Player
play cenc and cbcs DASH with ClearKey in Chromium; keys need tokens and never show up in manifests,
API answers or the log."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from media.cenc import unprotect_fragment
from media.cmaf import read_fragment
from media.cpix import parse_cpix
from media.protection import derived_key
from origin.key_tokens import mint_token
from tests.conftest import Server, run_ffmpeg
from tests.e2e.players import play, require
from tests.e2e.test_ffmpeg_ingest import smooth_args

pytestmark = pytest.mark.e2e

SECRET = "a-key-token-secret-for-tests"
CPIX = Path(__file__).resolve().parents[1] / "data" / "cpix" / "multi_drm.cpix.xml"
POINT = "live/enc"
KEYS = {
    "aes": ("0a1b2c3d4e5f60718293a4b5c6d7e8f9", "3c9e8f3a2b1d4e5f60718293a4b5c6d7"),
    "video": ("11111111222233334444555555555555", "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"),
    "audio": ("66666666777788889999aaaaaaaaaaaa", "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf"),
}
SEED = "a-rotation-seed-for-the-tests"
CLEARKEY = "e2719d58-a985-b3c9-781a-b030af78d30e"  # signalled, as dash.js picks key systems from the MPD
LOCATIONS = {
    "aes128": {"encryption": "aes-128", "encryption_key": "{}:{}".format(*KEYS["aes"])},
    # An explicit IV: ffmpeg 5.1 decrypts the last access unit of a segment with the next segment's IV.
    "sampleaes": {"encryption": "sample-aes", "encryption_key": "{}:{}:{}".format(*KEYS["aes"], "5" * 32)},
    "cenc": {
        "encryption": "cenc",
        "encryption_key": "video={}:{},audio={}:{}".format(*KEYS["video"], *KEYS["audio"]),
        "encryption_pssh": f"{CLEARKEY}:",
    },
    "cbcs": {
        "encryption": "cbcs",
        "encryption_key": "video={}:{},audio={}:{}".format(*KEYS["video"], *KEYS["audio"]),
        "encryption_pssh": f"{CLEARKEY}:",
    },
    "rotate": {"encryption": "aes-128", "encryption_key_seed": SEED, "encryption_key_rotation": "6"},
    "rotatecenc": {"encryption": "cenc", "encryption_key_seed": SEED, "encryption_key_rotation": "6"},
    "cpix": {"encryption": "cbcs", "encryption_cpix": str(CPIX)},
    "clear": {"encryption": "none"},
    "external": {
        "encryption": "aes-128",
        "encryption_key": "{}:{}".format(*KEYS["aes"]),
        "encryption_key_uri": "https://keys.example.com/k/{kid}",
    },
}


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("encryption")
    settings = [f"playout.key_token_secret={SECRET}"]
    settings += [f"locations.{loc}.{k}={v}" for loc, opts in LOCATIONS.items() for k, v in opts.items()]
    server = Server(base / "root", base / "server.log", settings).start()
    try:
        run_ffmpeg(*smooth_args(f"{server.url}/{POINT}.isml/Streams(encoder)", seconds=20))
        server.settled(POINT)
        yield server
    finally:
        server.stop()


def token(location: str, point: str = POINT, ttl: int = 600) -> str:
    """A key token for ``point`` played through ``location`` (what the platform mints)."""
    return mint_token(SECRET, f"{location}/{point}" if location else point, int(time.time()) + ttl)


def variant(server: Server, prefix: str, query: str = "") -> str:
    """The URL of the master playlist's first (highest) video variant."""
    base = f"{server.url}{prefix}/{POINT}.isml"
    master = httpx.get(f"{base}/enc.m3u8{query}", timeout=10)
    assert master.status_code == 200, master.text
    uri = next(line for line in master.text.splitlines() if line and not line.startswith("#"))
    return f"{base}/{uri}"


def frames(url: str, *extra: str, data: bytes | None = None) -> list[str]:
    """Hashes of the decoded video frames ffmpeg reads from ``url`` (or ``data`` on its stdin)."""
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", *extra]
    cmd += ["-i", "pipe:0" if data is not None else url, "-map", "0:v:0", "-f", "framemd5", "-"]
    result = subprocess.run(cmd, input=data or b"", capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    lines = result.stdout.decode().splitlines()
    return [line.rsplit(",", 1)[-1].strip() for line in lines if not line.startswith("#")]


@pytest.fixture(scope="module")
def clear_frames(origin: Server) -> list[str]:
    found = frames(variant(origin, ""))
    assert len(found) >= 400  # 20 s at 25 frame/s
    return found


@pytest.mark.parametrize("fmp4", [False, True], ids=["ts", "fmp4"])
def test_ffmpeg_decodes_aes128_hls(origin: Server, clear_frames: list[str], fmp4: bool) -> None:
    query = f"?token={token('aes128')}" + ("&hls_fmp4=true" if fmp4 else "")
    url = variant(origin, "/aes128", query)
    playlist = httpx.get(url, timeout=10).text
    assert '#EXT-X-KEY:METHOD=AES-128,URI="keys/' in playlist
    assert f"?token={token('aes128')[:5]}" in playlist  # the viewer's token rides on the key URI
    if fmp4:  # the init section is not under the key (it precedes the first EXT-X-KEY)
        assert playlist.index("#EXT-X-MAP") < playlist.index("#EXT-X-KEY")
    segment = next(line for line in playlist.splitlines() if line and not line.startswith("#"))
    body = httpx.get(url.rsplit("/", 1)[0] + "/" + segment, timeout=10).content
    assert len(body) % 16 == 0 and body[:1] != b"G"  # not a TS packet: ciphertext
    assert frames(url) == clear_frames


def test_ffmpeg_decodes_sample_aes_ts(origin: Server, clear_frames: list[str]) -> None:
    url = variant(origin, "/sampleaes", f"?token={token('sampleaes')}")
    playlist = httpx.get(url, timeout=10).text
    assert "#EXT-X-KEY:METHOD=SAMPLE-AES" in playlist
    found = frames(url)
    # ffmpeg 5.1 decrypts an access unit as it leaves its parser, with the IV of the segment being
    # read then: the stream's very last one leaves after the last segment and stays encrypted, and
    # the B-frame shown before it refers to it. hls.js (below) decrypts every access unit.
    assert len(found) == len(clear_frames)
    differ = [i for i, (a, b) in enumerate(zip(found, clear_frames, strict=True)) if a != b]
    assert set(differ) <= {len(found) - 2, len(found) - 1}, differ


def test_ffmpeg_decodes_across_key_rotation(origin: Server, clear_frames: list[str]) -> None:
    url = variant(origin, "/rotate", f"?token={token('rotate')}")
    playlist = httpx.get(url, timeout=10).text
    kids = re.findall(r'URI="keys/([0-9a-f]{32})\.key', playlist)
    assert len(kids) >= 3 and len(set(kids)) == len(kids)  # 20 s in 6 s periods: a new key each
    assert frames(url) == clear_frames


@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
def test_ffmpeg_decrypts_dash_segments(origin: Server, scheme: str) -> None:
    """The init and segments of the video Representation, joined, decrypted by ffmpeg's own CENC
    reader with the key, decode to the clear Representation's frames."""
    mpd = httpx.get(f"{origin.url}/{scheme}/{POINT}.isml/enc.mpd", timeout=10).text
    assert f'value="{scheme}"' in mpd and "cenc:default_KID=" in mpd
    assert KEYS["video"][1] not in mpd and KEYS["audio"][1] not in mpd
    outputs = {}
    for prefix in (f"/{scheme}", ""):
        # Through a pipe: ffmpeg 5.1 reading a seekable multi-fragment file pairs senc entries
        # with the wrong fragments' samples.
        extra = ("-decryption_key", KEYS["video"][1]) if prefix else ()
        outputs[prefix] = frames("", *extra, data=representation(origin, prefix))
    assert outputs[f"/{scheme}"] == outputs[""]
    assert len(outputs[""]) >= 400


def representation(server: Server, prefix: str) -> bytes:
    base = f"{server.url}{prefix}/{POINT}.isml"
    mpd = httpx.get(f"{base}/enc.mpd", timeout=10).text
    rep = re.search(r'<Representation id="(video[^"]*)"', mpd)
    assert rep is not None
    name = rep[1]
    times = []
    section = mpd[mpd.index(f'id="{name}"') :]
    t = 0
    for match in re.finditer(
        r'<S (?:t="(\d+)" )?d="(\d+)"(?: r="(\d+)")?', section.split("</Representation>")[0]
    ):
        t = int(match[1]) if match[1] else t
        for _ in range(int(match[3] or 0) + 1):
            times.append(t)
            t += int(match[2])
    data = httpx.get(f"{base}/enc-{name}.mp4", timeout=10).content
    for t in times:
        data += httpx.get(f"{base}/enc-{name}-{t}.dash", timeout=10).content
    return data


def _b64url(hex_text: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(hex_text)).decode().rstrip("=")


@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
@pytest.mark.parametrize("player", ["dash.js", "shaka"])
def test_players_play_encrypted_dash_with_clearkey(origin: Server, player: str, scheme: str) -> None:
    require()
    if player == "shaka":
        config: dict[str, object] = {"drm": {"clearKeys": dict(KEYS[k] for k in ("video", "audio"))}}
    else:
        keys = {_b64url(kid): _b64url(key) for kid, key in (KEYS["video"], KEYS["audio"])}
        config = {"protection": {"org.w3.clearkey": {"clearkeys": keys}}}
    result = play(player, f"{origin.url}/{scheme}/{POINT}.isml/enc.mpd", seconds=10, config=config)
    assert result.ok, str(result)
    assert result.advanced >= 8.0, str(result)


@pytest.mark.parametrize("location", ["aes128", "sampleaes"])
def test_hls_js_plays_encrypted_ts(origin: Server, location: str) -> None:
    require()
    result = play(
        "hls.js", f"{origin.url}/{location}/{POINT}.isml/enc.m3u8?token={token(location)}", seconds=10
    )
    assert result.ok, str(result)
    assert result.advanced >= 8.0, str(result)


def test_key_needs_a_valid_token(origin: Server) -> None:
    url = f"{origin.url}/aes128/{POINT}.isml/keys/{KEYS['aes'][0]}.key"
    good = httpx.get(url, params={"token": token("aes128")}, timeout=5)
    assert good.status_code == 200 and good.content == bytes.fromhex(KEYS["aes"][1])
    assert good.headers["cache-control"] == "private, no-store"
    bearer = httpx.get(url, headers={"Authorization": f"Bearer {token('aes128')}"}, timeout=5)
    assert bearer.status_code == 200
    refused = {
        "no token": httpx.get(url, timeout=5),
        "forged": httpx.get(url, params={"token": f"{int(time.time()) + 60}-{'0' * 32}"}, timeout=5),
        "expired": httpx.get(url, params={"token": token("aes128", ttl=-10)}, timeout=5),
        "another point": httpx.get(url, params={"token": token("aes128", "live/other")}, timeout=5),
        # The same KID under another location: a token opens the keys of its own location only.
        "another location": httpx.get(url, params={"token": token("sampleaes")}, timeout=5),
        "no location": httpx.get(url, params={"token": token("")}, timeout=5),
        "non-ASCII digits": httpx.get(url, params={"token": "١٩٩٩٩٩٩٩٩٩-" + "0" * 32}, timeout=5),
        "odd bearer": httpx.get(url, headers={"Authorization": "Bearer ²-x".encode("latin-1")}, timeout=5),
    }
    for why, answer in refused.items():
        assert answer.status_code == 403, why
        assert KEYS["aes"][1] not in answer.text
    unknown = httpx.get(url.replace(KEYS["aes"][0], "f" * 32), params={"token": token("aes128")}, timeout=5)
    assert unknown.status_code == 404
    clear = httpx.get(url.replace("/aes128/", "/"), params={"token": token("")}, timeout=5)
    assert clear.status_code == 404  # the clear stream has no keys
    # Keys derived from a location's seed are each point's own, whichever point was asked first.
    assert httpx.put(f"{origin.url}/live/other.isml", timeout=5).status_code == 201
    rotated = derived_key(SEED.encode(), POINT, "video", int(time.time() * 1000) // 6000)
    mine = f"{origin.url}/rotate/{POINT}.isml/keys/{rotated.kid.hex()}.key"
    assert httpx.get(mine, params={"token": token("rotate")}, timeout=5).content == rotated.key
    theirs = mine.replace(POINT, "live/other")
    assert httpx.get(theirs, params={"token": token("rotate", "live/other")}, timeout=5).status_code == 404


def test_schemes_a_format_cannot_carry_are_refused(origin: Server) -> None:
    base = f"{origin.url}/{{}}/{POINT}.isml/enc"
    cases = {
        base.format("aes128") + ".mpd": "cannot be carried in DASH",
        base.format("cbcs") + "/Manifest": "cannot be carried in Smooth",
        base.format("aes128") + ".mp4?vbegin=2&vend=6": "cannot be carried in progressive MP4",
    }
    # cenc HLS: MPEG-TS cannot carry it, so its playlists name fMP4 segments without being asked.
    master = httpx.get(base.format("cenc") + ".m3u8", timeout=10)
    assert master.status_code == 200 and "hls_fmp4=true" in master.text
    for url, message in cases.items():
        answer = httpx.get(url.replace("enc/Manifest", "Manifest"), timeout=10)
        assert answer.status_code == 400, (url, answer.text)
        body = answer.json()
        assert body["option"] == "encryption" and message in body["message"], body


def test_keys_appear_nowhere(origin: Server) -> None:
    texts = []
    for loc in LOCATIONS:
        for name in ("enc.m3u8", "enc.mpd", "Manifest"):
            texts.append(
                httpx.get(f"{origin.url}/{loc}/{POINT}.isml/{name}?token={token(loc)}", timeout=10).text
            )
    secrets = [key for _, key in KEYS.values()] + [SEED]
    secrets += [base64.b64encode(bytes.fromhex(key)).decode() for _, key in KEYS.values()]
    log = origin.log_path.read_text()
    for secret in secrets:
        assert all(secret not in text for text in texts), secret
        assert secret.lower() not in log.lower(), secret


def test_point_options_with_keys_are_redacted(origin: Server) -> None:
    key = "{}:{}".format(*KEYS["aes"])
    body = (
        '<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>'
        '<meta name="encryption" content="aes-128"/>'
        f'<meta name="encryption_key" content="{key}"/>'
        "</head><body/></smil>"
    )
    created = httpx.put(f"{origin.url}/live/keyed.isml", content=body, timeout=5)
    assert created.status_code in (200, 201), created.text
    shown = httpx.get(f"{origin.url}/live/keyed.isml", timeout=5).text
    assert 'name="encryption_key" content="********"' in shown
    assert KEYS["aes"][1] not in shown and KEYS["aes"][1] not in origin.log_path.read_text()
    bad = body.replace(key, "not-a-kid:" + KEYS["aes"][1])
    refused = httpx.put(f"{origin.url}/live/badkey.isml", content=bad, timeout=5)
    assert refused.status_code == 400
    assert refused.json()["option"] == "encryption_key" and KEYS["aes"][1] not in refused.text


def test_bad_encryption_settings_stop_the_server(tmp_path: Path) -> None:
    cases = {
        "locations.x.encryption=cenc": "needs encryption_key",
        "locations.x.encryption=rot13": "expected one of",
        f"locations.x.encryption_key={'0' * 32}:{'ab' * 8}": "must be 16 bytes",
        "locations.x.encryption_cpix=/nonexistent.xml": "cannot read",
    }
    for setting, message in cases.items():
        result = subprocess.run(
            [sys.executable, "-m", "origin.cli", "serve", "--root", str(tmp_path), "--set", setting],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2, (setting, result.stderr)
        assert message in result.stderr, (setting, result.stderr)
        assert "abababab" not in result.stderr


def _derived_keys(origin: Server) -> dict[str, str]:
    """Every key the rotating location can have used: the init's default (period 0) and those of the
    6 s periods since the stream began."""
    archive = httpx.get(f"{origin.url}/{POINT}.isml/archive", timeout=5).json()
    starts = [datetime.fromisoformat(r["start"]) for t in archive["tracks"] for r in t["ranges"]]
    first_ms = int(min(starts).timestamp() * 1000)
    periods = {0, *range(first_ms // 6000 - 1, int(time.time() * 1000) // 6000 + 2)}
    keys = {}
    for kind in ("video", "audio"):
        for period in periods:
            key = derived_key(SEED.encode(), POINT, kind, period)
            keys[key.kid.hex()] = key.key.hex()
    return keys


def test_shaka_plays_rotating_cenc_keys(origin: Server) -> None:
    """Key rotation in fMP4: a new KID every 6 s, named in each fragment's seig sample group."""
    mpd = httpx.get(f"{origin.url}/rotatecenc/{POINT}.isml/enc.mpd", timeout=10).text
    assert 'value="cenc"' in mpd
    require()
    config = {"drm": {"clearKeys": _derived_keys(origin)}}
    result = play("shaka", f"{origin.url}/rotatecenc/{POINT}.isml/enc.mpd", seconds=10, config=config)
    assert result.ok, str(result)
    assert result.advanced >= 8.0, str(result)


def test_cpix_keys_and_drm_signalling(origin: Server) -> None:
    doc = parse_cpix(CPIX.read_bytes())
    base = f"{origin.url}/cpix/{POINT}.isml"
    mpd = httpx.get(f"{base}/enc.mpd", timeout=10).text
    assert 'schemeIdUri="urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"' in mpd  # Widevine
    assert 'schemeIdUri="urn:uuid:9a04f079-9840-4286-ab92-e65be0885f95"' in mpd  # PlayReady
    for key in doc.keys:
        assert f'cenc:default_KID="{key.kid_uuid}"' in mpd
    video = variant(origin, "/cpix", "?hls_fmp4=true")
    playlist = httpx.get(video, timeout=10).text
    assert any(s.hls_signaling.strip() in playlist for s in doc.drm if s.hls_signaling)
    assert 'URI="keys/' not in playlist  # DRM keys are never handed out raw
    kid = doc.keys[0].kid.hex()
    served = httpx.get(f"{base}/keys/{kid}.key", params={"token": token("cpix")}, timeout=5)
    assert served.status_code == 404
    segment = next(line for line in playlist.splitlines() if line.endswith(".m4s") or ".m4s?" in line)
    answer = httpx.get(video.rsplit("/", 1)[0] + "/" + segment, timeout=10)  # as players ask: no ?hls_fmp4
    assert answer.status_code == 200 and b"senc" in answer.content[:4096], answer.text[:200]
    require()
    config = {"drm": {"clearKeys": {k.kid.hex(): k.key.hex() for k in doc.keys}}}
    result = play("shaka", f"{base}/enc.mpd", seconds=10, config=config)
    assert result.ok, str(result)
    assert result.advanced >= 8.0, str(result)


def test_smooth_cenc(origin: Server) -> None:
    base = f"{origin.url}/cenc/{POINT}.isml"
    manifest = httpx.get(f"{base}/Manifest", timeout=10).text
    assert f'<ProtectionHeader SystemID="{CLEARKEY}"' in manifest
    mpd = httpx.get(f"{base}/enc.mpd", timeout=10).text
    name = re.search(r'<Representation id="(video[^"]*)"', mpd)
    assert name is not None
    header = httpx.get(f"{base}/enc-{name[1]}.mp4", timeout=10).content
    video_index = manifest[manifest.index('<StreamIndex Type="video"') :]
    url = re.search(r'Url="([^"]+)"', video_index)
    level = re.search(r'<QualityLevel Index="0" Bitrate="(\d+)"', video_index)
    time_match = re.search(r'<c t="(\d+)"', video_index)
    assert url and level and time_match
    path = url[1].replace("{bitrate}", level[1]).replace("{start time}", time_match[1])
    fragment = httpx.get(f"{base}/{path}", timeout=10).content
    clear = httpx.get(f"{origin.url}/{POINT}.isml/{path}", timeout=10).content
    assert fragment != clear
    clear_payload = read_fragment(clear)[2]
    decrypted = unprotect_fragment(
        fragment, header, {bytes.fromhex(KEYS["video"][0]): bytes.fromhex(KEYS["video"][1])}
    )
    assert read_fragment(decrypted)[2] == clear_payload


def test_external_key_server(origin: Server) -> None:
    url = variant(origin, "/external", f"?token={token('external')}")
    playlist = httpx.get(url, timeout=10).text
    assert f'#EXT-X-KEY:METHOD=AES-128,URI="https://keys.example.com/k/{KEYS["aes"][0]}"' in playlist
    key = f"{origin.url}/external/{POINT}.isml/keys/{KEYS['aes'][0]}.key"
    assert httpx.get(key, params={"token": token("external")}, timeout=5).status_code == 404  # not here


def test_a_location_cannot_play_an_encrypted_point_clear(origin: Server) -> None:
    body = (
        '<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>'
        '<meta name="encryption" content="aes-128"/>'
        '<meta name="encryption_key" content="{}:{}"/>'
        "</head><body/></smil>"
    ).format(*KEYS["aes"])
    assert httpx.put(f"{origin.url}/live/secret.isml", content=body, timeout=5).status_code == 201
    refused = httpx.get(f"{origin.url}/clear/live/secret.isml/secret.m3u8", timeout=5)
    assert refused.status_code == 403 and "would play it clear" in refused.text
    assert httpx.get(f"{origin.url}/clear/{POINT}.isml/enc.m3u8", timeout=5).status_code == 200
