"""Run a script the way a classic CGI server does (RFC 3875) and parse what it prints.

The skeleton's scripts must behave identically under plain CGI and under cgirt, so their
tests use no part of cgirt's runner: a subprocess per request, the CGI variables as its
whole environment, the body on stdin. The response head is parsed by the front end's own
parser, so a script whose output the front end would reject fails here too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cgirt.devserver.gateway import HEAD_END, CgiHead, parse_head


@dataclass(frozen=True)
class CgiResult:
    head: CgiHead
    body: bytes
    stderr: bytes

    @property
    def status(self) -> int:
        return self.head.status

    def header(self, name: str) -> str | None:
        return self.head.header(name.lower())

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def cgi_environ(script: Path, method: str, query: str, body: bytes, content_type: str,
                extra: dict[str, str] | None) -> dict[str, str]:
    env = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "classic-cgi-test",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": method,
        "QUERY_STRING": query,
        "SCRIPT_NAME": f"/cgi-bin/{script.name}",
        "PATH_INFO": "",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "CONTENT_TYPE": content_type,
        "HTTP_HOST": "localhost",
        # Not a CGI variable, but every CGI server passes one so programs can be found.
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    env.update(extra or {})
    return env


def start_cgi(script: Path, *, method: str = "GET", query: str = "", body: bytes = b"",
              content_type: str = "", extra: dict[str, str] | None = None,
              ) -> subprocess.Popen[bytes]:
    """Start the script; the interpreter is this test's, so legacy-cgi is importable."""
    env = cgi_environ(script, method, query, body, content_type, extra)
    return subprocess.Popen([sys.executable, str(script)], cwd=script.parent, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def finish_cgi(process: subprocess.Popen[bytes], body: bytes = b"") -> CgiResult:
    stdout, stderr = process.communicate(body, timeout=60)
    assert process.returncode == 0, stderr.decode(errors="replace")
    end = HEAD_END.search(stdout)
    assert end is not None, f"no blank line after the headers: {stdout[:200]!r}"
    return CgiResult(parse_head(stdout[:end.start()]), stdout[end.end():], stderr)


def run_cgi(script: Path, *, method: str = "GET", query: str = "", body: bytes = b"",
            content_type: str = "", extra: dict[str, str] | None = None) -> CgiResult:
    process = start_cgi(script, method=method, query=query, body=body,
                        content_type=content_type, extra=extra)
    return finish_cgi(process, body)
