"""The publish notice: only one signed with the shared secret, fresh, for this site, counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from cgirt.errors import ConfigError
from cgirt.notice import MAX_SKEW, NoticeRefused, Verifier, read_secret, request

SECRET = b"s" * 32
NOW = 1_800_000_000.0


def parts(notice: bytes) -> tuple[str, str]:
    """(query, Authorization) of a notice, as the status server hands them over."""
    line, auth = notice.split(b"\r\n")[:2]
    return line.split()[1].decode().partition("?")[2], auth.decode().partition(": ")[2]


def test_a_signed_notice_is_accepted_once() -> None:
    verifier = Verifier(SECRET, "www")
    query, auth = parts(request(SECRET, "www", NOW))
    verifier.check(query, auth, NOW + 1)
    with pytest.raises(NoticeRefused, match="replayed"):
        verifier.check(query, auth, NOW + 2)


@pytest.mark.parametrize("secret, site, sent, why", [
    (b"x" * 32, "www", NOW, "signature"),  # someone without the secret
    (SECRET, "other", NOW, "for site 'other'"),  # another site's notice
    (SECRET, "www", NOW - MAX_SKEW - 5, "from now"),  # an old one, replayed later
])
def test_other_notices_are_refused(secret: bytes, site: str, sent: float, why: str) -> None:
    query, auth = parts(request(secret, site, sent))
    with pytest.raises(NoticeRefused, match=why):
        Verifier(SECRET, "www").check(query, auth, NOW)


def test_a_tampered_notice_is_refused() -> None:
    query, auth = parts(request(SECRET, "www", NOW))
    with pytest.raises(NoticeRefused, match="signature"):
        Verifier(SECRET, "www").check(query.replace("site=www", "site=wwx"), auth, NOW)
    with pytest.raises(NoticeRefused, match="signature"):
        Verifier(SECRET, "www").check(query, "", NOW)


def test_the_secret_file_must_hold_a_real_secret(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match="fewer than 16 bytes"):
        read_secret(short)
    with pytest.raises(ConfigError, match="cannot read"):
        read_secret(tmp_path / "missing")
    good = tmp_path / "good"
    good.write_text(" " + "k" * 20 + "\n")
    assert read_secret(good) == b"k" * 20


def test_a_notice_is_signed_for_its_action() -> None:
    query, auth = parts(request(SECRET, "www", NOW, action="publish"))
    with pytest.raises(NoticeRefused, match="signature"):  # a publish notice is no reload
        Verifier(SECRET, "www").check(query, auth, NOW, action="reload")
    query, auth = parts(request(SECRET, "www", NOW, action="reload"))
    Verifier(SECRET, "www").check(query, auth, NOW, action="reload")


def test_a_runner_with_a_secret_but_no_status_address_does_not_start(tmp_path: Path) -> None:
    from cgirt.config import RunnerConfig
    from cgirt.runner.server import serve

    (tmp_path / "site" / "cgi-bin").mkdir(parents=True)
    secret = tmp_path / "secret"
    secret.write_text("k" * 32)
    config = RunnerConfig.from_sources({}, {"site": str(tmp_path / "site"), "status_listen": "off",
                                            "publish_secret": str(secret),
                                            "listen": f"unix:{tmp_path / 'r.sock'}"})
    with pytest.raises(ConfigError, match="needs a status address"):
        serve(config)
    assert not (tmp_path / "r.sock").exists()  # nothing was bound
