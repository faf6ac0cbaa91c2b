"""RFC 3875 meta-variables, built from the request alone.

A whitelist, never a copy of the runner's own environment (wsgiref's `os_environ = {}`).
What a web server sends is taken where it is the web server's to say (addresses, names,
protocol, HTTPS); what is the runner's to decide (SCRIPT_NAME, PATH_INFO, SCRIPT_FILENAME,
PATH_TRANSLATED) comes from dispatch.
"""

from __future__ import annotations

from typing import Mapping
from urllib.parse import unquote_plus

from .dispatch import Target

# Passed through from the web server when present and not empty.
_FROM_SERVER = (
    "AUTH_TYPE", "CONTENT_TYPE", "REMOTE_ADDR", "REMOTE_HOST", "REMOTE_IDENT", "REMOTE_USER",
    "REMOTE_PORT", "SERVER_ADDR", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL",
    "SERVER_SOFTWARE", "SERVER_ADMIN", "REQUEST_URI",
)
_DROPPED_HEADERS = frozenset({"HTTP_PROXY"})  # httpoxy: a request header must not set a proxy


def build_environ(
    params: Mapping[str, str], target: Target, document_root: str, path_env: str
) -> dict[str, str]:
    env: dict[str, str] = {"GATEWAY_INTERFACE": "CGI/1.1", "PATH": path_env}
    for name in _FROM_SERVER:
        value = params.get(name)
        if value:
            env[name] = value
    for name, value in params.items():
        if name.startswith("HTTP_") and name not in _DROPPED_HEADERS:
            env[name] = value
    env["REQUEST_METHOD"] = params.get("REQUEST_METHOD") or "GET"
    env["QUERY_STRING"] = _query_string(params)
    length = params.get("CONTENT_LENGTH", "")
    if length:
        env["CONTENT_LENGTH"] = length
    env.setdefault("SERVER_NAME", params.get("HTTP_HOST", "localhost").split(":")[0])
    env.setdefault("SERVER_PORT", "80")
    env.setdefault("SERVER_PROTOCOL", "HTTP/1.1")
    env.setdefault("SERVER_SOFTWARE", "cgirt")
    env.setdefault("REMOTE_ADDR", "127.0.0.1")
    if params.get("HTTPS", "").lower() in ("on", "1"):
        env["HTTPS"] = "on"
        env["REQUEST_SCHEME"] = "https"
    else:
        env["REQUEST_SCHEME"] = params.get("REQUEST_SCHEME") or "http"
    env["DOCUMENT_ROOT"] = params.get("DOCUMENT_ROOT") or document_root
    env["SCRIPT_NAME"] = target.script_name
    env["SCRIPT_FILENAME"] = target.path
    if target.path_info:
        env["PATH_INFO"] = target.path_info
        env["PATH_TRANSLATED"] = env["DOCUMENT_ROOT"].rstrip("/") + target.path_info
    if "REQUEST_URI" not in env:
        query = env["QUERY_STRING"]
        env["REQUEST_URI"] = target.script_name + target.path_info + ("?" + query if query else "")
    return env


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
