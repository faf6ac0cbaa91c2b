"""The least a Python FastCGI responder does per CGI request: the floor under cgirt.

    python -m bench.pyfloor SOCKET WORKERS

Prefork workers on a unix socket, each in a plain loop: accept, read the request's records,
decode its params (cgirt's own codec), put them in os.environ (the Python mapping only, no C
environment), run the script named by SCRIPT_FILENAME from a code object compiled once, with
stdout captured, and send what it printed, unchecked, then close. Nothing else: no change
detection, no sandbox (nothing a script changes is put back), no header checks, no request
body, no logs, no status, no timeouts. Not a runtime anyone should deploy; it measures what
CPython itself costs per request, so that the rest of cgirt's cost shows as cgirt's own.
"""

from __future__ import annotations

import io
import os
import socket
import sys
from types import CodeType

from cgirt.fastcgi.records import (BEGIN_REQUEST, HEADER, PARAMS, STDIN, STDOUT, decode_params,
                                   end_records, stream_records)

_FS_ENCODING = sys.getfilesystemencoding()


def read_request(conn: socket.socket) -> tuple[int, dict[str, str]]:
    """The request id and params, once the empty FCGI_STDIN has come."""
    buf, params, request_id = b"", b"", 1
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError
        buf += chunk
        while len(buf) >= HEADER.size:
            _, rtype, request_id, length, padding = HEADER.unpack_from(buf)
            end = HEADER.size + length
            if len(buf) < end + padding:
                break
            content, buf = buf[HEADER.size : end], buf[end + padding :]
            if rtype == PARAMS:
                params += content
            elif rtype == STDIN and not content:
                decoded: dict[str, str] = {}
                decode_params(params, decoded)
                return request_id, decoded
            elif rtype not in (BEGIN_REQUEST, STDIN):
                raise ValueError(f"record type {rtype}")


def run(codes: dict[str, CodeType], params: dict[str, str]) -> bytes:
    """What the script named by SCRIPT_FILENAME prints, run with `params` as its environment."""
    path = params["SCRIPT_FILENAME"]
    code = codes.get(path)
    if code is None:
        with open(path, "rb") as f:
            code = codes[path] = compile(f.read(), path, "exec")
    os.environ._data = {k.encode(_FS_ENCODING, "surrogateescape"):  # type: ignore[attr-defined]
                        v.encode(_FS_ENCODING, "surrogateescape") for k, v in params.items()}
    out = io.BytesIO()
    text = io.TextIOWrapper(out, "utf-8", write_through=True)
    saved, sys.stdout = sys.stdout, text
    try:
        exec(code, {"__name__": "__main__", "__file__": path})
        text.flush()
    finally:
        sys.stdout = saved
    printed = out.getvalue()
    text.detach()  # else its collection closes `out`
    return printed


def answer(conn: socket.socket, codes: dict[str, CodeType]) -> None:
    """One connection: its request read, its script run, what it printed sent, closed."""
    try:
        request_id, params = read_request(conn)
        conn.sendall(stream_records(STDOUT, request_id, run(codes, params))
                     + end_records(request_id, 0))
    except (EOFError, OSError):
        pass
    finally:
        conn.close()


def serve(listener: socket.socket) -> None:
    codes: dict[str, CodeType] = {}
    while True:
        conn, _ = listener.accept()
        answer(conn, codes)


def main() -> None:
    path, workers = sys.argv[1], int(sys.argv[2])
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    os.chmod(path, 0o666)
    listener.listen(256)
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                serve(listener)
            finally:
                os._exit(1)
        children.append(pid)
    for pid in children:  # stopped with its process group, as every benchmark server is
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
