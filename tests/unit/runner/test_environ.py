"""RFC 3875 meta-variables from the request alone."""

from __future__ import annotations

import pytest

from cgirt.runner.dispatch import CgiRoot, Target
from cgirt.runner.environ import build_environ, coerce_c_locale, search_words

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


@pytest.mark.parametrize("given, lc_ctype", [
    ({}, "C.UTF-8"),  # what web servers pass: no locale at all
    ({"LANG": "C"}, "C.UTF-8"),
    ({"LC_CTYPE": "POSIX"}, "C.UTF-8"),
    ({"LANG": "C.UTF-8"}, None),  # a locale that exists is left alone, as Python does
    ({"LANG": "xx_NOWHERE.UTF-8"}, "C.UTF-8"),  # one that does not exist is C
    ({"LC_ALL": "C"}, None),  # LC_ALL set: Python does not coerce
])
def test_python_coerces_a_missing_locale_as_its_interpreter_would(
        given: dict[str, str], lc_ctype: str | None) -> None:
    env = dict(given)
    coerce_c_locale(env)
    assert env.get("LC_CTYPE") == (lc_ctype or given.get("LC_CTYPE"))
