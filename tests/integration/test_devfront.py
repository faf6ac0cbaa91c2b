"""The development front end against a real FastCGI backend (flup, in its own process)."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from tests.support.procs import LONG_LIVED

from cgirt.devserver.front import DevFront, DevFrontConfig, DevFrontError
from cgirt.fastcgi.client import UnixAddress

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BACKEND_SCRIPT = Path(__file__).with_name("flup_backend.py")
PIECE = bytes(range(256)) * 256  # 64 KiB
MiB = 1024 * 1024
# Front-end memory while moving 10 to 20 MiB: a few 64 KiB pieces in flight, the 1 MiB
# chunked-body spool, http.client's own buffers. Anything near the payload size means buffering.
MEMORY_BOUND = 4 * MiB


# -- processes and servers -------------------------------------------------------------


@dataclass
class Backend:
    process: subprocess.Popen[bytes]
    address: UnixAddress
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def start_backend(directory: Path) -> Backend:
    path = directory / "fcgi.sock"
    log = directory / "backend.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, str(BACKEND_SCRIPT), str(path)],
                                   stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, cwd=directory)
    LONG_LIVED.add(process.pid)  # stopped by its fixture, which may outlive one test
    backend = Backend(process, UnixAddress(str(path)), log)
    try:
        wait_connectable(backend)
    except BaseException:
        backend.stop()
        raise
    return backend


def wait_connectable(backend: Backend, deadline: float = 15.0) -> None:
    """Poll the socket until flup accepts; waiting on the process doubles as the pause."""
    waited = 0.0
    while waited < deadline:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(backend.address.path)
                return
            except OSError:
                pass
        try:
            backend.process.wait(timeout=0.05)
            raise RuntimeError(f"backend exited: {backend.log.read_text()}")
        except subprocess.TimeoutExpired:
            waited += 0.05
    raise RuntimeError(f"backend not ready after {deadline} s: {backend.log.read_text()}")


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    started = start_backend(tmp_path_factory.mktemp("fcgi"))
    yield started
    started.stop()


@pytest.fixture
def own_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """A backend that a test may kill (its scripts call os._exit)."""
    started = start_backend(tmp_path_factory.mktemp("fcgi"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    htdocs = root / "htdocs"
    (htdocs / "sub").mkdir(parents=True)
    (htdocs / "index.html").write_text("<h1>index</h1>\n")
    (htdocs / "style.css").write_text("h1 { color: red }\n")
    (htdocs / "sub" / "index.html").write_text("<p>sub</p>\n")
    (htdocs / ".hidden").write_text("hidden\n")
    (htdocs / ".git").mkdir()
    (htdocs / ".git" / "config").write_text("[core]\n")
    (root / "data").mkdir()
    (root / "data" / "secret.txt").write_text("secret\n")
    (htdocs / "escape.txt").symlink_to(root / "data" / "secret.txt")
    (htdocs / "to-hidden.txt").symlink_to(htdocs / ".hidden")
    (htdocs / "alias.html").symlink_to("index.html")
    return root


@contextmanager
def running(site: Path, backend: UnixAddress, **settings: Any) -> Iterator[DevFront]:
    front = DevFront(DevFrontConfig(site=site, backend=backend, port=0, **settings))
    thread = threading.Thread(target=front.serve_forever)
    thread.start()
    try:
        yield front
    finally:
        front.shutdown()
        thread.join(timeout=10)
        assert not thread.is_alive()


@pytest.fixture
def front(site: Path, backend: Backend) -> Iterator[DevFront]:
    with running(site, backend.address) as started:
        yield started


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    threads_before = set(threading.enumerate())
    fds_before = len(os.listdir("/proc/self/fd"))
    yield
    leaked = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"
    # Module-scoped fixtures may open a log or a socket during the first test using them.
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 2


# -- clients ---------------------------------------------------------------------------


def connect(front: DevFront, timeout: float = 30.0) -> http.client.HTTPConnection:
    host, port = front.server_address
    return http.client.HTTPConnection(host, port, timeout=timeout)


def get(front: DevFront, path: str, method: str = "GET", body: Any = None,
        headers: dict[str, str] | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    conn = connect(front)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


def echo_env(front: DevFront, path: str = "/cgi-bin/echo", **kwargs: Any) -> dict[str, Any]:
    response, body = get(front, path, **kwargs)
    assert response.status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


@contextmanager
def log_seen(logger: str, text: str) -> Iterator[threading.Event]:
    """An event set when a record containing ``text`` is logged."""
    seen = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if text in record.getMessage():
                seen.set()

    watch = Watch()
    target = logging.getLogger(logger)
    previous = target.level
    target.addHandler(watch)
    target.setLevel(logging.INFO)
    try:
        yield seen
    finally:
        target.removeHandler(watch)
        target.setLevel(previous)


def raw_exchange(front: DevFront, data: bytes) -> bytes:
    """Send bytes as they are; everything the server answers until it closes."""
    with socket.create_connection(front.server_address, timeout=30) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def pieces(total: int) -> Iterator[bytes]:
    while total:
        n = min(total, len(PIECE))
        total -= n
        yield PIECE[:n]


def expected_digest(total: int) -> str:
    digest = hashlib.sha256()
    for piece in pieces(total):
        digest.update(piece)
    return digest.hexdigest()


@contextmanager
def memory_peak() -> Iterator[Callable[[], int]]:
    tracemalloc.start()
    try:
        yield lambda: tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def read_in_pieces(response: BinaryIO) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while piece := response.read(64 * 1024):
        digest.update(piece)
        size += len(piece)
    return size, digest.hexdigest()


# -- static files ----------------------------------------------------------------------


@pytest.mark.parametrize("path, content_type, body", [
    ("/", "text/html; charset=utf-8", b"<h1>index</h1>\n"),
    ("/index.html", "text/html; charset=utf-8", b"<h1>index</h1>\n"),
    ("/style.css", "text/css; charset=utf-8", b"h1 { color: red }\n"),
    ("/sub/", "text/html; charset=utf-8", b"<p>sub</p>\n"),
    ("/alias.html", "text/html; charset=utf-8", b"<h1>index</h1>\n"),
    ("/st%79le.css", "text/css; charset=utf-8", b"h1 { color: red }\n"),
])
def test_static_file_is_served(front: DevFront, path: str, content_type: str,
                               body: bytes) -> None:
    response, got = get(front, path)
    assert response.status == 200
    assert response.getheader("Content-Type") == content_type
    assert response.getheader("Content-Length") == str(len(body))
    assert response.getheader("Last-Modified")
    assert got == body


def test_head_gives_the_headers_of_get_without_a_body(front: DevFront) -> None:
    response, got = get(front, "/index.html", method="HEAD")
    assert response.status == 200
    assert response.getheader("Content-Length") == "15"
    assert got == b""


@pytest.mark.parametrize("path, status", [
    ("/missing.html", 404),
    ("/sub/missing/deeper", 404),
    ("/index.html/x", 404),
    ("/.hidden", 403),
    ("/.git/config", 403),
    ("/sub/../.hidden", 403),
    ("/../data/secret.txt", 400),
    ("/%2e%2e/data/secret.txt", 400),
    ("/sub/%2E%2E%2F%2E%2E%2Fdata/secret.txt", 400),
    ("/sub/%2E%2E%2F.hidden", 403),
    ("/escape.txt", 403),
    ("/to-hidden.txt", 403),
    ("/a%00b", 400),
])
def test_static_paths_that_are_refused(front: DevFront, path: str, status: int) -> None:
    response, body = get(front, path)
    assert response.status == status
    assert b"secret" not in body and b"hidden\n" not in body


def test_directory_without_slash_redirects(front: DevFront) -> None:
    response, _ = get(front, "/sub?x=1")
    assert response.status == 301
    assert response.getheader("Location") == "/sub/?x=1"


def test_post_to_a_static_file_is_not_allowed(front: DevFront) -> None:
    response, _ = get(front, "/index.html", method="POST", body=b"x=1")
    assert response.status == 405
    assert response.getheader("Allow") == "GET, HEAD"


# -- forwarding ------------------------------------------------------------------------


def test_get_is_forwarded_with_the_nginx_params(front: DevFront) -> None:
    result = echo_env(front, "/cgi-bin/echo/extra/path?a=1&b=%20",
                      headers={"X-Custom": "yes", "Cookie": "c=1"})
    env = result["env"]
    host, port = front.server_address
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == "/cgi-bin/echo/extra/path"
    assert env["DOCUMENT_URI"] == "/cgi-bin/echo/extra/path"
    assert env["REQUEST_URI"] == "/cgi-bin/echo/extra/path?a=1&b=%20"
    assert env["QUERY_STRING"] == "a=1&b=%20"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REQUEST_SCHEME"] == "http"
    assert env["SERVER_PORT"] == str(port)
    assert env["SERVER_ADDR"] == env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["REMOTE_PORT"].isdigit()
    assert env["DOCUMENT_ROOT"] == os.path.realpath(front.config.site / "htdocs")
    assert env["CONTENT_LENGTH"] == env["CONTENT_TYPE"] == ""
    assert env["HTTP_X_CUSTOM"] == "yes" and env["HTTP_COOKIE"] == "c=1"
    assert env["HTTP_HOST"] == f"{host}:{port}"
    assert env["REMOTE_USER"] == "" and env["REDIRECT_STATUS"] == "200"
    assert "SCRIPT_FILENAME" not in env and "HTTP_CONTENT_LENGTH" not in env


def test_percent_encoded_script_path_is_decoded(front: DevFront) -> None:
    env = echo_env(front, "/cgi-bin/echo/caf%C3%A9%20x")["env"]
    # flup decodes params as ISO-8859-1, so UTF-8 bytes arrive as two characters each.
    assert env["SCRIPT_NAME"].encode("latin-1") == "/cgi-bin/echo/café x".encode()


def test_httpoxy_proxy_header_is_not_forwarded(front: DevFront) -> None:
    env = echo_env(front, headers={"Proxy": "http://evil.invalid:3128", "X-Other": "1"})["env"]
    assert "HTTP_PROXY" not in env
    assert env["HTTP_X_OTHER"] == "1"


def test_underscore_header_cannot_spoof_a_dash_header(front: DevFront) -> None:
    env = echo_env(front, headers={"X_Forwarded_For": "1.2.3.4"})["env"]
    assert "HTTP_X_FORWARDED_FOR" not in env


def test_dot_segments_are_resolved_as_nginx_does(front: DevFront) -> None:
    response, body = get(front, "/cgi-bin/../index.html")  # the static /index.html
    assert response.status == 200 and body == b"<h1>index</h1>\n"
    env = echo_env(front, "/cgi-bin/x/../echo//a/./b")["env"]
    assert env["SCRIPT_NAME"] == env["DOCUMENT_URI"] == "/cgi-bin/echo/a/b"
    assert get(front, "/cgi-bin/../../etc/passwd")[0].status == 400


def test_post_body_is_forwarded(front: DevFront) -> None:
    result = echo_env(front, method="POST", body=b"name=value",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert result["received"] == 10
    assert result["sha256"] == hashlib.sha256(b"name=value").hexdigest()
    assert result["env"]["CONTENT_LENGTH"] == "10"
    assert result["env"]["CONTENT_TYPE"] == "application/x-www-form-urlencoded"


def test_ten_mib_upload_streams_with_bounded_memory(front: DevFront) -> None:
    total = 10 * MiB
    with memory_peak() as peak:
        result = echo_env(front, method="POST", body=pieces(total),
                          headers={"Content-Length": str(total)})
        assert peak() < MEMORY_BOUND
    assert result["received"] == total
    assert result["sha256"] == expected_digest(total)


def test_chunked_upload_is_spooled_and_gets_a_content_length(front: DevFront) -> None:
    total = 10 * MiB + 123
    conn = connect(front)
    with memory_peak() as peak:
        conn.request("POST", "/cgi-bin/echo", body=pieces(total), encode_chunked=True)
        response = conn.getresponse()
        result = json.loads(response.read())
        assert peak() < MEMORY_BOUND
    conn.close()
    assert result["env"]["CONTENT_LENGTH"] == str(total)
    assert result["received"] == total
    assert result["sha256"] == expected_digest(total)


@pytest.mark.parametrize("declare_length", ["yes", "no"])
def test_twenty_mib_response_streams_with_bounded_memory(front: DevFront,
                                                          declare_length: str) -> None:
    total = 20 * MiB
    conn = connect(front)
    with memory_peak() as peak:
        conn.request("GET", f"/cgi-bin/big?bytes={total}&length={declare_length}")
        response = conn.getresponse()
        size, digest = read_in_pieces(response)
        assert peak() < MEMORY_BOUND
    conn.close()
    chunked = response.getheader("Transfer-Encoding") == "chunked"
    assert chunked == (declare_length == "no")
    assert size == total
    assert digest == expected_digest(total)


def test_two_requests_share_one_keep_alive_connection(front: DevFront) -> None:
    conn = connect(front)
    try:
        seen = []
        for path in ("/cgi-bin/echo", "/index.html", "/cgi-bin/big?bytes=1000"):
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.status == 200
            response.read()
            assert not response.will_close
            seen.append(conn.sock)
        assert seen[0] is not None and seen[0] is seen[1] is seen[2]
    finally:
        conn.close()


def test_slow_requests_are_served_in_parallel(front: DevFront) -> None:
    """Each request is held in the backend until all four are inside at once."""
    parties = 4
    results: list[tuple[int, bytes]] = []

    def one() -> None:
        response, body = get(front, f"/cgi-bin/barrier?parties={parties}")
        results.append((response.status, body))

    threads = [threading.Thread(target=one) for _ in range(parties)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [(200, b"met\n")] * parties


def test_status_and_repeated_set_cookie_are_preserved(front: DevFront) -> None:
    response, body = get(front, "/cgi-bin/cookies")
    assert (response.status, response.reason) == (201, "Made Here")
    assert response.headers.get_all("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert "Status" not in response.headers
    assert body == b"two cookies\n"


def test_script_answering_without_reading_the_body_is_relayed(front: DevFront) -> None:
    total = 8 * MiB  # more than socket buffers hold: the answer comes before the body ends
    conn = connect(front)
    try:
        conn.request("POST", "/cgi-bin/cookies", body=pieces(total),
                     headers={"Content-Length": str(total)})
        response = conn.getresponse()
        assert (response.status, response.read()) == (201, b"two cookies\n")
        # The front end read and dropped the rest, so the connection carries on.
        assert not response.will_close
        conn.request("GET", "/cgi-bin/cookies")
        assert conn.getresponse().read() == b"two cookies\n"
    except (BrokenPipeError, ConnectionResetError):
        pytest.fail("the front end dropped the client instead of relaying the answer")
    finally:
        conn.close()


def test_head_to_a_script_sends_no_body(front: DevFront) -> None:
    response, body = get(front, "/cgi-bin/cookies", method="HEAD")
    assert response.status == 201 and body == b""


def test_script_stderr_goes_to_the_error_log(front: DevFront,
                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="cgirt.error"):
        response, _ = get(front, "/cgi-bin/stderr")
    assert response.status == 200
    assert "a line for the error log" in caplog.text


def test_expect_100_continue(front: DevFront) -> None:
    host, port = front.server_address
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"received": 3' in reply


# -- gateway errors --------------------------------------------------------------------


def test_backend_down_is_502(site: Path, tmp_path: Path) -> None:
    with running(site, UnixAddress(str(tmp_path / "nobody.sock"))) as front:
        response, body = get(front, "/cgi-bin/echo")
    assert response.status == 502
    assert b"502 Bad Gateway" in body and b"cannot connect" in body
    assert response.getheader("Content-Type") == "text/html; charset=utf-8"


def test_backend_dying_before_answering_is_502(site: Path, own_backend: Backend) -> None:
    with running(site, own_backend.address) as front:
        response, body = get(front, "/cgi-bin/die")
    assert response.status == 502
    assert b"closed the connection" in body


def test_backend_dying_mid_response_truncates_it(site: Path, own_backend: Backend) -> None:
    """Once the head is out a 502 is impossible: the client must see a broken response."""
    with running(site, own_backend.address) as front:
        conn = connect(front)
        conn.request("GET", "/cgi-bin/die-mid")
        response = conn.getresponse()
        assert response.status == 200
        with pytest.raises(http.client.IncompleteRead):
            response.read()
        conn.close()


def test_malformed_script_output_is_502(front: DevFront) -> None:
    response, body = get(front, "/cgi-bin/malformed")
    assert response.status == 502
    assert b"malformed header line" in body


def test_backend_timeout_is_504(site: Path, backend: Backend) -> None:
    with running(site, backend.address, response_timeout=0.5) as front:
        response, body = get(front, "/cgi-bin/hang")
    assert response.status == 504
    assert b"504 Gateway Timeout" in body


# -- limits ----------------------------------------------------------------------------


def test_declared_body_over_the_limit_is_413(site: Path, backend: Backend) -> None:
    with running(site, backend.address, max_body_bytes=1000) as front:
        reply = raw_exchange(front, b"POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\n"
                                    b"Content-Length: 1001\r\n\r\n" + b"x" * 1001)
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in reply


def test_chunked_body_over_the_limit_is_413(site: Path, backend: Backend) -> None:
    with running(site, backend.address, max_body_bytes=1000) as front:
        body = b"".join(b"%x\r\n%s\r\n" % (300, b"y" * 300) for _ in range(4)) + b"0\r\n\r\n"
        reply = raw_exchange(front, b"POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\n"
                                    b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert reply.startswith(b"HTTP/1.1 413 ")


def test_header_block_over_the_limit_is_431(site: Path, backend: Backend) -> None:
    with running(site, backend.address, max_header_bytes=1024) as front:
        ok = raw_exchange(front, b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 800 +
                          b"\r\nConnection: close\r\n\r\n")
        big = raw_exchange(front, b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 1100 +
                           b"\r\n\r\n")
        long_line = raw_exchange(front, b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 ")
    assert big.startswith(b"HTTP/1.1 431 ")
    assert long_line.startswith(b"HTTP/1.1 414 ")


def test_too_many_headers_is_431(site: Path, backend: Backend) -> None:
    with running(site, backend.address, max_headers=10) as front:
        many = b"".join(b"X-%d: 1\r\n" % i for i in range(10))
        reply = raw_exchange(front, b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert reply.startswith(b"HTTP/1.1 431 ")


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
     400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
])
def test_malformed_requests(front: DevFront, request_bytes: bytes, status: int) -> None:
    reply = raw_exchange(front, request_bytes)
    assert reply.startswith(b"HTTP/1.1 %d " % status)


def test_http_1_0_gets_a_close_delimited_stream(front: DevFront) -> None:
    reply = raw_exchange(front, b"GET /cgi-bin/big?bytes=70000 HTTP/1.0\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert len(body) == 70000


# -- lifecycle -------------------------------------------------------------------------


def test_missing_htdocs_means_no_static_files(tmp_path: Path, backend: Backend) -> None:
    with running(tmp_path, backend.address) as front:
        assert get(front, "/")[0].status == 404
        assert get(front, "/index.html")[0].status == 404
        assert echo_env(front)["env"]["DOCUMENT_ROOT"] == str(tmp_path / "htdocs")
        # Created later (an FTP upload), it is served without a restart.
        (tmp_path / "htdocs").mkdir()
        (tmp_path / "htdocs" / "index.html").write_text("<p>late</p>\n")
        response, body = get(front, "/")
        assert response.status == 200 and body == b"<p>late</p>\n"


def test_document_root_names_the_site_as_given(site: Path, backend: Backend,
                                               tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(site)
    with running(tmp_path / "link", backend.address) as front:
        assert echo_env(front)["env"]["DOCUMENT_ROOT"] == str(tmp_path / "link" / "htdocs")
        assert get(front, "/index.html")[0].status == 200


def test_missing_site_or_htdocs_not_a_directory_is_a_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(DevFrontError, match="the site"):
        DevFront(DevFrontConfig(site=tmp_path / "none", backend=UnixAddress("/nowhere"), port=0))
    (tmp_path / "htdocs").write_text("a file\n")
    with pytest.raises(DevFrontError, match="htdocs is not a directory"):
        DevFront(DevFrontConfig(site=tmp_path, backend=UnixAddress("/nowhere"), port=0))


def test_shutdown_without_serving_and_twice(site: Path) -> None:
    front = DevFront(DevFrontConfig(site=site, backend=UnixAddress("/nowhere"), port=0))
    front.shutdown()
    front.shutdown()


def test_shutdown_drops_idle_keep_alive_connections(site: Path, backend: Backend) -> None:
    with running(site, backend.address) as front:
        conn = connect(front)
        conn.request("GET", "/index.html")
        conn.getresponse().read()
    # running() asserted the accept thread ended; no_leaks checks the connection thread.
    conn.close()


def test_shutdown_interrupts_a_request_waiting_on_the_backend(site: Path,
                                                              backend: Backend) -> None:
    outcome: list[object] = []

    def hang() -> None:
        try:
            outcome.append(get(stopping, "/cgi-bin/hang")[0].status)
        except (http.client.HTTPException, OSError) as exc:
            outcome.append(exc)

    stopping = DevFront(DevFrontConfig(site=site, backend=backend.address, port=0,
                                    response_timeout=120))
    accept = threading.Thread(target=stopping.serve_forever)
    accept.start()
    with log_seen("cgirt.error", "script stderr: hanging") as in_backend:
        client = threading.Thread(target=hang)
        client.start()
        assert in_backend.wait(timeout=30)
    stopper = threading.Thread(target=stopping.shutdown)
    stopper.start()
    # The backend holds the request for 60 s and the response timeout is 120 s.
    stopper.join(timeout=20)
    assert not stopper.is_alive(), "shutdown() waited for the backend"
    accept.join(timeout=10)
    client.join(timeout=10)
    assert not client.is_alive() and len(outcome) == 1
    assert not isinstance(outcome[0], int), "a response came from a hanging backend"


def test_stalled_client_is_dropped_after_the_client_timeout(site: Path,
                                                            backend: Backend) -> None:
    with running(site, backend.address, client_timeout=0.3) as front:
        with socket.create_connection(front.server_address, timeout=30) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            assert sock.recv(100) == b""


def test_command_line_prints_the_url_and_stops_on_sigterm(site: Path,
                                                          backend: Backend) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [sys.executable, "-m", "cgirt.devserver", "--site", str(site),
         "--listen", "127.0.0.1:0", "--backend", f"unix:{backend.address.path}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        host, port = url[len("http://"):-1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", "/cgi-bin/echo")
        assert conn.getresponse().status == 200
        conn.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_command_line_reports_bad_arguments_in_one_line(site: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "cgirt.devserver", "--site", str(site),
         "--listen", "nowhere", "--backend", "unix:/x"],
        capture_output=True, env=env, timeout=30)
    assert result.returncode == 2  # bad arguments: the same status from every cgirt program
    assert result.stderr.decode().count("\n") == 1 and b"HOST:PORT" in result.stderr
