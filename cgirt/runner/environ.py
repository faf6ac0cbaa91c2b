"""RFC 3875 meta-variables, built from the request alone.

Never a copy of the runner's own environment (wsgiref's `os_environ = {}`): what the web
server sent for this request, as classic CGI behind that server would see it, minus the
httpoxy header; what is the runner's to decide (SCRIPT_NAME, PATH_INFO, SCRIPT_FILENAME,
PATH_TRANSLATED) comes from dispatch.
"""

from __future__ import annotations

import locale
from typing import Mapping
from urllib.parse import unquote_plus

from .dispatch import Target

_DROPPED = "HTTP_PROXY"  # httpoxy: a request header must not set a proxy


def build_environ(
    params: Mapping[str, str], target: Target, document_root: str, path_env: str
) -> dict[str, str]:
    """Everything the web server sent for this request (as mod_cgi passes SetEnv values and
    fcgiwrap passes fastcgi_param values), with the runner's own answers on top."""
    env = dict(params)  # a copy in C, then the one name dropped: not a test per name
    env.pop(_DROPPED, None)
    env["GATEWAY_INTERFACE"] = "CGI/1.1"
    env.setdefault("PATH", path_env)
    env["REQUEST_METHOD"] = params.get("REQUEST_METHOD") or "GET"
    env["QUERY_STRING"] = _query_string(params)
    if env.get("CONTENT_LENGTH") == "0" and env["REQUEST_METHOD"] in ("GET", "HEAD"):
        del env["CONTENT_LENGTH"]  # mod_proxy_fcgi adds it; mod_cgi leaves it unset, per RFC 3875
    env.setdefault("SERVER_NAME", params.get("HTTP_HOST", "localhost").split(":")[0])
    env.setdefault("SERVER_PORT", "80")
    env.setdefault("SERVER_PROTOCOL", "HTTP/1.1")
    env.setdefault("SERVER_SOFTWARE", "cgirt")
    env.setdefault("REMOTE_ADDR", "127.0.0.1")
    if params.get("HTTPS", "").lower() in ("on", "1"):
        env["HTTPS"] = "on"
        env["REQUEST_SCHEME"] = "https"
    else:
        env.pop("HTTPS", None)
        env["REQUEST_SCHEME"] = params.get("REQUEST_SCHEME") or "http"
    env["DOCUMENT_ROOT"] = params.get("DOCUMENT_ROOT") or document_root
    env["SCRIPT_NAME"] = target.script_name
    env["SCRIPT_FILENAME"] = target.path
    env.pop("PATH_INFO", None)
    env.pop("PATH_TRANSLATED", None)
    if target.path_info:
        env["PATH_INFO"] = target.path_info
        env["PATH_TRANSLATED"] = env["DOCUMENT_ROOT"].rstrip("/") + target.path_info
    if "REQUEST_URI" not in env:
        query = env["QUERY_STRING"]
        env["REQUEST_URI"] = target.script_name + target.path_info + ("?" + query if query else "")
    return env


def coerce_c_locale(env: dict[str, str]) -> None:
    """What the interpreter a web server starts for a Python script does to its environment
    (PEP 538): with no locale passed (web servers pass none), LC_CTYPE=C.UTF-8. A script run
    in-process sees the same variable; other programs (exec mode) get none, as under CGI."""
    if env.get("LC_ALL"):
        return
    if not _locale_exists(env.get("LC_CTYPE") or env.get("LANG") or "C"):
        env["LC_CTYPE"] = "C.UTF-8"


_LOCALES: dict[str, bool] = {"C": False, "POSIX": False}  # False: Python would coerce it


def _locale_exists(name: str) -> bool:
    """Whether `name` is a locale other than C here (a name glibc does not know gives C)."""
    known = _LOCALES.get(name)
    if known is None:
        saved = locale.setlocale(locale.LC_CTYPE)
        try:
            locale.setlocale(locale.LC_CTYPE, name)
            known = True
        except locale.Error:
            known = False
        finally:
            locale.setlocale(locale.LC_CTYPE, saved)
        if len(_LOCALES) < 64:  # names come from requests: remember a few
            _LOCALES[name] = known
    return known


def _query_string(params: Mapping[str, str]) -> str:
    if "QUERY_STRING" in params:
        return params["QUERY_STRING"]
    uri = params.get("REQUEST_URI", "")
    return uri.split("?", 1)[1] if "?" in uri else ""


def search_words(query: str) -> list[str]:
    """RFC 3875 section 4.4: a query without an unencoded '=' gives command-line words."""
    if not query or "=" in query:
        return []
    return [unquote_plus(word, errors="surrogateescape") for word in query.split("+")]


def redirect_environ(previous: Mapping[str, str], url: str) -> dict[str, str]:
    """For an internal redirect, the previous request's variables renamed as Apache does."""
    env = {"REDIRECT_" + k: v for k, v in previous.items() if k != "PATH"}
    env["REDIRECT_STATUS"] = "200"
    env["REDIRECT_URL"] = previous.get("SCRIPT_NAME", "") + previous.get("PATH_INFO", "")
    return env
