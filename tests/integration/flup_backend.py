"""A real FastCGI backend for the front end's tests: a WSGI app served by flup.

Run as ``python flup_backend.py SOCKET_PATH``. The real runner is built elsewhere; this
stands in for it with flup's threaded server, which speaks the same protocol. Requests are
routed on SCRIPT_NAME, which the front end sets to the whole request path.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

from flup.server.fcgi import WSGIServer

StartResponse = Callable[..., Any]
PIECE = 64 * 1024
_barriers: dict[int, threading.Barrier] = {}
_barriers_lock = threading.Lock()
_never = threading.Event()


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    name = environ["SCRIPT_NAME"].removeprefix("/cgi-bin/").split("/")[0]
    route = ROUTES.get(name)
    if route is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such test script\n"]
    return route(environ, start_response)


def query(environ: dict[str, Any], key: str, default: str) -> str:
    return str(parse_qs(environ.get("QUERY_STRING", "")).get(key, [default])[0])


def echo(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The CGI variables and a digest of the body, read as CONTENT_LENGTH says."""
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    digest = hashlib.sha256()
    received = 0
    while remaining:
        piece = environ["wsgi.input"].read(min(remaining, PIECE))
        if not piece:
            break
        digest.update(piece)
        received += len(piece)
        remaining -= len(piece)
    variables = {k: v for k, v in environ.items() if isinstance(v, str)}
    result = {"env": variables, "received": received, "sha256": digest.hexdigest()}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(result).encode()]


def big(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    size = int(query(environ, "bytes", "0"))
    headers = [("Content-Type", "application/octet-stream")]
    if query(environ, "length", "no") == "yes":
        headers.append(("Content-Length", str(size)))
    start_response("200 OK", headers)
    piece = bytes(range(256)) * (PIECE // 256)
    while size:
        n = min(size, PIECE)
        size -= n
        yield piece[:n]


def barrier(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Answers only once ``parties`` requests are inside at the same time."""
    parties = int(query(environ, "parties", "2"))
    with _barriers_lock:
        shared = _barriers.setdefault(parties, threading.Barrier(parties))
    try:
        shared.wait(timeout=20)
    except threading.BrokenBarrierError:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"not concurrent\n"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"met\n"]


def hang(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    # Reaches the front end as FCGI_STDERR: tests learn the request is in the backend.
    environ["wsgi.errors"].write("hanging\n")
    environ["wsgi.errors"].flush()
    _never.wait(60)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"too late\n"]


def die(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    os._exit(3)


def die_mid(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first part\n"
    os._exit(3)


def cookies(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response("201 Made Here", [("Content-Type", "text/plain"),
                                     ("Set-Cookie", "a=1; Path=/"),
                                     ("Set-Cookie", "b=2; Path=/")])
    return [b"two cookies\n"]


def malformed(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Not A Header", "x")])
    return [b"body\n"]


def stderr(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    environ["wsgi.errors"].write("a line for the error log\n")
    environ["wsgi.errors"].flush()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]


ROUTES: dict[str, Callable[[dict[str, Any], StartResponse], Iterable[bytes]]] = {
    "echo": echo, "big": big, "barrier": barrier, "hang": hang, "die": die,
    "die-mid": die_mid, "cookies": cookies, "malformed": malformed, "stderr": stderr,
}


if __name__ == "__main__":
    WSGIServer(app, bindAddress=sys.argv[1]).run()
