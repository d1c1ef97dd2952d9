"""Key tokens: what a viewer shows to fetch a content key from this origin.

A token is ``<expiry>-<signature>``: the UNIX time it stops being valid and the first 32 hex digits
of HMAC-SHA256(secret, ``"<subject>|<expiry>"``), the subject being the point as the request names
it, location included (``live/ch1``, ``aes128/live/ch1``). The platform that sells the event mints one per
viewer (``headwater key-token``, or the same two lines in its own code) and gives the player
``…/<stem>.m3u8?token=<token>``; the playlists carry it onto their key URIs.
"""

from __future__ import annotations

import hashlib
import hmac
import re

TOKEN = re.compile(r"([0-9]{1,12})-([0-9a-f]{32})", re.ASCII)


def _signature(secret: str, point: str, expires: int) -> str:
    return hmac.new(secret.encode(), f"{point}|{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def mint_token(secret: str, point: str, expires: int) -> str:
    """A token for the keys of ``point`` (``live/ch1``) valid until the UNIX time ``expires``."""
    return f"{expires}-{_signature(secret, point, expires)}"


def token_valid(secret: str, point: str, token: str, now: float) -> bool:
    match = TOKEN.fullmatch(token)
    if match is None or int(match[1]) < now:
        return False
    return hmac.compare_digest(match[2], _signature(secret, point, int(match[1])))
