"""The limit of in-process Python on flup: a bare WSGI hello on flup's own prefork server.

Started as `python wsgi_hello.py SOCKET WORKERS`. minSpare = maxSpare = maxChildren, because
flup 1.0.3's prefork caps concurrency at maxSpare (it compares bytes with a str,
flup/server/preforkserver.py line 184).
"""

import sys

from flup.server.fcgi_fork import WSGIServer

BODY = b"Hello, world!\n"


def app(environ, start_response):  # type: ignore[no-untyped-def]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [BODY]


if __name__ == "__main__":
    path, workers = sys.argv[1], int(sys.argv[2])
    WSGIServer(app, bindAddress=path, umask=0o007, minSpare=workers, maxSpare=workers,
               maxChildren=workers).run()
