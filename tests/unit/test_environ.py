"""RFC 3875 meta-variables from the request alone."""

from __future__ import annotations

from cgirt.dispatch import CgiRoot, Target
from cgirt.environ import build_environ, search_words

TARGET = Target("/site/cgi-bin/a.py", "/cgi-bin/a.py", "/x", CgiRoot("/cgi-bin", "/site/cgi-bin"))


def env(**params: str) -> dict[str, str]:
    return build_environ(params, TARGET, "/site/htdocs", "/usr/bin:/bin")


def test_dispatch_owns_script_variables() -> None:
    e = env(SCRIPT_NAME="/spoofed", PATH_INFO="/spoofed", SCRIPT_FILENAME="/etc/passwd",
            PATH_TRANSLATED="/etc")
    assert (e["SCRIPT_NAME"], e["PATH_INFO"], e["SCRIPT_FILENAME"], e["PATH_TRANSLATED"]) == (
        "/cgi-bin/a.py", "/x", "/site/cgi-bin/a.py", "/site/htdocs/x")


def test_https_only_when_the_front_end_says_so() -> None:
    assert env(HTTPS="on")["HTTPS"] == "on" and env(HTTPS="on")["REQUEST_SCHEME"] == "https"
    assert "HTTPS" not in env(HTTPS="off") and env()["REQUEST_SCHEME"] == "http"


def test_httpoxy_and_request_values() -> None:
    e = env(HTTP_PROXY="http://evil", HTTP_X_A="1", REMOTE_ADDR="10.0.0.1", REMOTE_PORT="4444",
            QUERY_STRING="a=1", REQUEST_METHOD="POST", CONTENT_LENGTH="3")
    assert "HTTP_PROXY" not in e
    assert (e["HTTP_X_A"], e["REMOTE_ADDR"], e["REMOTE_PORT"], e["CONTENT_LENGTH"]) == ("1", "10.0.0.1", "4444", "3")
    assert e["GATEWAY_INTERFACE"] == "CGI/1.1" and e["PATH"] == "/usr/bin:/bin"


def test_query_string_from_request_uri_when_missing() -> None:
    assert env(REQUEST_URI="/cgi-bin/a.py/x?q=2")["QUERY_STRING"] == "q=2"


def test_search_words() -> None:
    assert search_words("a+b%20c") == ["a", "b c"]
    assert search_words("a=b+c") == []
    assert search_words("") == []
