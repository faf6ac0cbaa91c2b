"""The publish notice from the FTP gateway to every runner host, signed with a shared secret.

With several runner hosts on a network filesystem, the gateway's publish is invisible to the
other hosts' `stat` until their attribute caches expire. So before its 226 the gateway sends
each runner a notice over HTTP, to the runner's status address::

    POST /ACTION?site=NAME&time=UNIX_SECONDS&nonce=HEX HTTP/1.0
    Authorization: cgirt-hmac HEX(HMAC-SHA256(secret, "ACTION\\nNAME\\nUNIX_SECONDS\\nHEX"))

ACTION is `publish` (answered once every later request of that host sees the publish) or
`reload` (SITE RELOAD: the host's master replaces its workers). A runner acts only on a
notice signed with the secret it shares with the gateway, for its own site, sent within
`MAX_SKEW` seconds, and not seen before (a replayed notice changes nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict
from pathlib import Path
from urllib.parse import parse_qs, quote

from .errors import ConfigError

SCHEME = "cgirt-hmac"
MAX_SKEW = 60.0
MIN_SECRET_BYTES = 16
ACTIONS = ("publish", "reload")


def read_secret(path: Path) -> bytes:
    """The shared secret: the file's content without surrounding whitespace."""
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"publish_secret: cannot read {path}: {exc.strerror}") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"publish_secret: {path} holds fewer than {MIN_SECRET_BYTES} bytes "
                          "(make one with: head -c 32 /dev/urandom | base64 > FILE)")
    return secret


def _mac(secret: bytes, action: str, site: str, when: str, nonce: str) -> str:
    return hmac.new(secret, f"{action}\n{site}\n{when}\n{nonce}".encode(),
                    hashlib.sha256).hexdigest()


def request(secret: bytes, site: str, now: float | None = None, action: str = "publish"
            ) -> bytes:
    """The whole HTTP request of one notice (the runner's status server speaks HTTP/1.0)."""
    when = str(int(time.time() if now is None else now))
    nonce = os.urandom(16).hex()
    return (f"POST /{action}?site={quote(site, safe='')}&time={when}&nonce={nonce} HTTP/1.0\r\n"
            f"Authorization: {SCHEME} {_mac(secret, action, site, when, nonce)}\r\n"
            "Content-Length: 0\r\n\r\n").encode()


class NoticeRefused(Exception):
    """A notice that must change nothing; the message says why (for the runner's log)."""


class Verifier:
    """The runner's side: checks a notice's signature, age and freshness."""

    def __init__(self, secret: bytes, site: str) -> None:
        self._secret = secret
        self.site = site
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check(self, query: str, authorization: str, now: float | None = None,
              action: str = "publish") -> None:
        now = time.time() if now is None else now
        fields = {k: v[0] for k, v in parse_qs(query).items()}
        site, when, nonce = fields.get("site", ""), fields.get("time", ""), fields.get("nonce", "")
        scheme, _, mac = authorization.strip().partition(" ")
        if scheme != SCHEME or not hmac.compare_digest(
                mac.strip(), _mac(self._secret, action, site, when, nonce)):
            raise NoticeRefused("bad or missing signature")
        if not when.isdigit() or abs(now - int(when)) > MAX_SKEW:
            raise NoticeRefused(f"sent at {when!r}, more than {MAX_SKEW:.0f} s from now")
        if nonce in self._seen:
            raise NoticeRefused("replayed")
        if site != self.site:
            raise NoticeRefused(f"for site {site!r}, not {self.site!r}")
        while self._seen and next(iter(self._seen.values())) < now - 2 * MAX_SKEW:
            self._seen.popitem(last=False)
        self._seen[nonce] = now
