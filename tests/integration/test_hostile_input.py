"""Bad input against the running server: each case gets a precise 4xx, the server keeps running,
other channels are unaffected, and nothing stored before is lost."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, make_cmaf_video, split_cmaf


@pytest.fixture(scope="module")
def cmaf_video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_cmaf_video(tmp_path_factory.mktemp("media") / "video.cmfv", 4, 25)


def raw_post(server: Server, path: str, body: bytes, method: str = "POST") -> tuple[int, dict[str, object]]:
    """A request whose path reaches the server byte for byte (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw.startswith(b"{") else {"text": raw.decode()}
    finally:
        conn.close()


def test_bad_media_each_get_a_precise_answer(server: Server, cmaf_video: bytes) -> None:
    header, segments = split_cmaf(cmaf_video)
    url = f"{server.url}/live/good.isml/Streams(video.cmfv)"
    assert httpx.post(url, content=header + segments[0]).status_code == 200

    def post(stream: str, body: bytes) -> httpx.Response:
        return httpx.post(f"{server.url}/live/bad.isml/Streams({stream})", content=body, timeout=10)

    # Not ISO-BMFF at all.
    answer = post("text", b"GET / HTTP/1.1\r\nHost: example\r\n\r\n" * 4)
    assert answer.status_code == 400
    assert (
        "not an expected top-level ISO-BMFF box" in answer.json()["message"] and answer.json()["offset"] == 0
    )

    # Truncated: the body ends in the middle of the moov.
    answer = post("cut", header[:-100])
    assert answer.status_code == 400
    body = answer.json()
    assert body["box"] == "moov" and body["offset"] == header.index(b"moov") - 4
    assert "100 bytes before the end of the box" in body["message"]

    # Media before any header.
    answer = post("nohead", segments[0])
    assert answer.status_code == 412 and answer.json()["box"] == "moof"

    # A header that declares no track: ftyp + a moov holding only its mvhd.
    mvhd_at = header.index(b"mvhd") - 4
    mvhd = header[mvhd_at : mvhd_at + int.from_bytes(header[mvhd_at : mvhd_at + 4], "big")]
    ftyp = header[: int.from_bytes(header[:4], "big")]
    empty_moov = (8 + len(mvhd)).to_bytes(4, "big") + b"moov" + mvhd
    answer = post("notrack", ftyp + empty_moov)
    assert answer.status_code == 400 and "declares no track" in answer.json()["message"]

    # An unknown codec in the sample entry.
    answer = post("codec", header.replace(b"avc1", b"xyz1", 1) + segments[0])
    assert answer.status_code == 415
    assert "'xyz1'" in answer.json()["message"] and answer.json()["box"].endswith("stsd/xyz1")

    # A box whose sizes do not add up inside its parent.
    moof_size = int.from_bytes(segments[0][:4], "big")
    broken = segments[0][:8] + (moof_size * 2).to_bytes(4, "big") + segments[0][12:]
    answer = post("sizes", header + broken)
    assert answer.status_code == 400 and answer.json()["box"].startswith("moof")

    # The good channel was not disturbed, and nothing of the bad one was created.
    assert httpx.post(url, content=segments[1]).json()["stored"] == 1
    assert server.state("live/good")["tracks"][0]["fragments"] == 2  # type: ignore[index]
    assert not any((server.root / "live/bad/_tracks").glob("*/*.m4s"))


def test_size_limits(make_server: object, cmaf_video: bytes) -> None:
    server: Server = make_server("ingest.max_box_size=64KiB", "ingest.max_body_size=100KiB")  # type: ignore[operator]
    header, segments = split_cmaf(cmaf_video)
    url = f"{server.url}/live/big.isml/Streams(video.cmfv)"

    # A box header announcing more than the limit is refused before its payload is read.
    huge_mdat = (10 << 20).to_bytes(4, "big") + b"mdat" + bytes(1000)
    answer = httpx.post(url, content=header + huge_mdat)
    assert answer.status_code == 413
    assert answer.json()["box"] == "mdat" and "exceeds the limit of 65536" in answer.json()["message"]

    # A body over the limit is cut off at the limit; what was stored before it stays.
    answer = httpx.post(url, content=header + b"".join(segments))
    assert answer.status_code == 413 and "ingest.max_body_size" in answer.json()["message"]
    assert server.state("live/big")["tracks"][0]["fragments"] >= 1  # type: ignore[index]


@pytest.mark.parametrize(
    "path",
    [
        "/..%2F..%2Fetc/evil.isml/Streams(v)",
        "/live/%2E%2E/evil.isml/Streams(v)",
        "/../evil.isml/Streams(v)",
        "//tmp/evil.isml/Streams(v)",
        "/live/.hidden.isml/Streams(v)",
        "/live/nul%00byte.isml/Streams(v)",
        "/live/sp%20ace.isml/Streams(v)",
        "/live/caf%C3%A9.isml/Streams(v)",
        "/live/ok.isml/Streams(..)",
        "/live/ok.isml/Streams(%2Fetc%2Fpasswd)",
    ],
)
def test_hostile_names_are_refused(server: Server, cmaf_video: bytes, path: str) -> None:
    header, segments = split_cmaf(cmaf_video)
    status, body = raw_post(server, path, header + segments[0])
    assert status in (400, 404), body
    if status == 400:
        assert "invalid" in str(body["message"])
    parent = server.root.parent
    assert not (parent / "evil").exists() and not (parent / "etc").exists()
    assert not any(p.name.startswith("evil") for p in server.root.rglob("*"))
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_publishing_point_api(make_server: object, cmaf_video: bytes) -> None:
    server: Server = make_server("ingest.auto_create=false")  # type: ignore[operator]
    header, segments = split_cmaf(cmaf_video)
    point = f"{server.url}/live/api.isml"

    # Without auto-create, unknown points are 404 for probes, ingest and state, and nothing is made.
    assert httpx.post(point, content=b"").status_code == 404
    assert httpx.post(point + "/Streams(video.cmfv)", content=header).status_code == 404
    assert httpx.get(point + "/state").status_code == 404
    assert not (server.root / "live").exists()

    # Options are checked and named.
    bad = (
        b'<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>'
        b'<meta name="dvr_window_length" content="-3"/></head></smil>'
    )
    answer = httpx.put(point, content=bad)
    assert answer.status_code == 400 and answer.json()["option"] == "dvr_window_length"
    answer = httpx.put(point, content=b'<smil><head><meta name="dvr_windw" content="3"/></head></smil>')
    assert answer.status_code == 400 and answer.json()["option"] == "dvr_windw"
    answer = httpx.put(point, content=b"<smil><unclosed>")
    assert answer.status_code == 400

    good = bad.replace(b'content="-3"', b'content="120"')
    assert httpx.put(point, content=good).status_code == 201
    assert httpx.put(point, content=good).status_code == 409
    assert 'name="dvr_window_length" content="120"' in httpx.get(point).text
    assert httpx.get(point + "/state").json()["state"] == "idle"
    assert httpx.post(point, content=b"").status_code == 200

    # While an encoder is connected, the point cannot be deleted.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/live/api.isml/Streams(video.cmfv)")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = header + segments[0]
    conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    deadline = time.monotonic() + 10
    while httpx.get(point + "/state").json()["state"] != "started" and time.monotonic() < deadline:
        time.sleep(0.05)
    state = httpx.get(point + "/state").json()
    assert state["state"] == "started" and state["options"]["dvr_window_length"] == "120"
    answer = httpx.delete(point)
    assert answer.status_code == 409 and "1 ingest connection" in answer.json()["message"]
    conn.send(b"0\r\n\r\n")
    assert conn.getresponse().status == 200
    conn.close()

    lmsg_ended = httpx.post(point + "/Streams(video.cmfv)", content=_lmsg() + segments[1])
    assert lmsg_ended.status_code == 200
    assert httpx.get(point + "/state").json()["state"] == "stopped"
    assert httpx.delete(point).status_code == 204
    assert httpx.get(point).status_code == 404
    assert not (server.root / "live/api").exists()


def _lmsg() -> bytes:
    from media.boxes import SegmentTypeBox

    return bytes(SegmentTypeBox(b"cmfs", 0, [b"cmfs", b"lmsg"]))


def test_stalled_encoder_times_out(make_server: object, cmaf_video: bytes) -> None:
    server: Server = make_server("ingest.read_timeout=1")  # type: ignore[operator]
    header, segments = split_cmaf(cmaf_video)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/live/stall.isml/Streams(video.cmfv)")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = header + segments[0]
    conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    response = conn.getresponse()  # sent nothing more: the server gives up after 1 s
    assert response.status == 408
    assert "ingest.read_timeout" in json.loads(response.read())["message"]
    conn.close()
    assert server.state("live/stall")["tracks"][0]["fragments"] == 1  # type: ignore[index]


def test_probe_creates_nothing(server: Server, tmp_path: Path) -> None:
    assert httpx.post(f"{server.url}/live/probe.isml", content=b"").status_code == 200
    assert httpx.post(f"{server.url}/live/probe.isml/Streams(v)", content=b"").status_code == 200
    assert httpx.post(f"{server.url}/live/probe.isml", content=b"data").status_code == 400
    assert not (server.root / "live").exists()


def test_delete_leaves_nested_points_alone(server: Server, cmaf_video: bytes) -> None:
    header, segments = split_cmaf(cmaf_video)
    for point in ("live", "live/sub"):
        answer = httpx.post(f"{server.url}/{point}.isml/Streams(video.cmfv)", content=header + segments[0])
        assert answer.status_code == 200
    assert httpx.delete(f"{server.url}/live.isml").status_code == 204
    assert httpx.get(f"{server.url}/live.isml").status_code == 404
    assert httpx.get(f"{server.url}/live/sub.isml/state").json()["tracks"][0]["fragments"] == 1
    assert not (server.root / "live/_tracks").exists() and (server.root / "live/sub/_tracks").exists()


def test_api_errors_are_json(server: Server) -> None:
    answer = httpx.get(f"{server.url}/no/such/route")
    assert answer.status_code == 404 and answer.json()["status"] == 404
    answer = httpx.patch(f"{server.url}/live/x.isml")
    assert answer.status_code == 405 and answer.json()["error"] == "method_not_allowed"


def test_publish_tokens_guard_http_ingest(make_server: object, cmaf_video: bytes) -> None:
    """ingest.token and a point's publish_token: ``?t=`` on the ingest URL; 403 otherwise, with
    nothing created or stored."""
    server: Server = make_server("ingest.token=global-secret")  # type: ignore[operator]
    header, segments = split_cmaf(cmaf_video)
    body = header + segments[0]
    url = f"{server.url}/live/guarded.isml/Streams(video.cmfv)"
    for suffix, reason in (("", "a publish token is required"), ("?t=nope", "the publish token is wrong")):
        answer = httpx.post(url + suffix, content=body)
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"] == "forbidden" and reason in answer.json()["message"]
    assert httpx.get(f"{server.url}/live/guarded.isml").status_code == 404  # nothing created
    assert httpx.post(url + "?t=global-secret", content=body).status_code == 200

    smil = (
        b'<smil xmlns="http://www.w3.org/2001/SMIL20/Language"><head>'
        b'<meta name="publish_token" content="own"/></head></smil>'
    )
    assert httpx.put(f"{server.url}/live/own.isml", content=smil).status_code == 201
    shown = httpx.get(f"{server.url}/live/own.isml").text
    assert 'content="********"' in shown and "own" not in shown.replace("live/own", "")
    assert httpx.get(f"{server.url}/live/own.isml/state").json()["options"]["publish_token"] == "********"
    own = f"{server.url}/live/own.isml/Streams(video.cmfv)"
    assert httpx.post(own + "?t=wrong", content=body).status_code == 403
    assert httpx.post(own + "?t=own", content=body).status_code == 200
    assert httpx.post(own + "?t=global-secret", content=header + segments[1]).status_code == 200
    assert server.state("live/own")["tracks"][0]["fragments"] == 2  # type: ignore[index]
