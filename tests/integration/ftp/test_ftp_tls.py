"""Explicit FTPS: self-signed on first run, TLS 1.2+, publish still runs before the reply."""

from __future__ import annotations

import ftplib
import io
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from ftp_harness import Gateway, require_tool

pytestmark = pytest.mark.integration

GOOD = b'print("Content-Type: text/plain")\nprint()\nprint("tls")\n'
BAD = b"def broken(:\n"


def tls_client(gateway: Gateway, context: ssl.SSLContext | None = None) -> ftplib.FTP_TLS:
    if context is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    client = ftplib.FTP_TLS(context=context, timeout=30)
    client.connect(gateway.host, gateway.port)
    client.login(gateway.user, gateway.password)
    client.prot_p()
    return client


@pytest.fixture
def tls_gateway(gateway_factory: Callable[..., Gateway]) -> Gateway:
    return gateway_factory("--require-tls")


def test_self_signed_certificate_generated_once(tls_gateway: Gateway) -> None:
    pem = tls_gateway.users.parent / "ftp-selfsigned.pem"
    assert pem.exists() and pem.stat().st_mode & 0o077 == 0
    assert b"PRIVATE KEY" in pem.read_bytes()


def test_ftplib_tls_publishes_and_reports_syntax_errors(tls_gateway: Gateway) -> None:
    client = tls_client(tls_gateway)
    assert "published" in client.storbinary("STOR cgi-bin/hello.py", io.BytesIO(GOOD))
    with pytest.raises(ftplib.error_perm, match="550-/cgi-bin/hello.py was NOT published"):
        client.storbinary("STOR cgi-bin/hello.py", io.BytesIO(BAD))
    client.quit()
    assert (tls_gateway.site / "cgi-bin" / "hello.py").read_bytes() == GOOD


def test_required_tls_refuses_plain_login(tls_gateway: Gateway) -> None:
    client = tls_gateway.ftp(login=False)
    with pytest.raises(ftplib.error_perm, match="550 SSL/TLS required"):
        client.login(tls_gateway.user, tls_gateway.password)
    client.close()


def test_required_tls_refuses_plain_data_channel(tls_gateway: Gateway) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    client = ftplib.FTP_TLS(context=context, timeout=30)
    client.connect(tls_gateway.host, tls_gateway.port)
    client.login(tls_gateway.user, tls_gateway.password)
    with pytest.raises(ftplib.error_perm, match="550 SSL/TLS required on the data channel"):
        client.nlst()
    client.quit()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_below_1_2_is_refused(tls_gateway: Gateway) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    # Security level 0, so that it is the server, not this client, that says no.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    except ValueError:
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    client = ftplib.FTP_TLS(context=context, timeout=30)
    client.connect(tls_gateway.host, tls_gateway.port)
    with pytest.raises((ssl.SSLError, OSError, EOFError)):
        client.auth()
    client.close()


def test_curl_ssl_reqd(tls_gateway: Gateway, tmp_path: Path) -> None:
    curl = require_tool("curl")
    source = tmp_path / "app.py"
    source.write_bytes(GOOD)
    subprocess.run([curl, "-sS", "--ssl-reqd", "-k", "--ftp-create-dirs", "-T", str(source),
                    tls_gateway.url("cgi-bin/tls/app.py")], check=True, timeout=60)
    assert (tls_gateway.site / "cgi-bin" / "tls" / "app.py").read_bytes() == GOOD
    source.write_bytes(BAD)
    out = subprocess.run([curl, "-sS", "-v", "--ssl-reqd", "-k", "-T", str(source),
                          tls_gateway.url("cgi-bin/tls/app.py")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "550-/cgi-bin/tls/app.py was NOT published" in out.stderr
    assert (tls_gateway.site / "cgi-bin" / "tls" / "app.py").read_bytes() == GOOD


def test_lftp_ssl_force_mirror(tls_gateway: Gateway, tmp_path: Path) -> None:
    lftp = require_tool("lftp")
    source = tmp_path / "local"
    (source / "cgi-bin").mkdir(parents=True)
    (source / "cgi-bin" / "app.py").write_bytes(GOOD)
    (source / "index.html").write_bytes(b"<p>tls</p>\n")
    script = (f"set net:max-retries 1; set ftp:ssl-force true; set ftp:ssl-protect-data true; "
              f"set ssl:verify-certificate no; "
              f"open -u {tls_gateway.user},'{tls_gateway.password}' -p {tls_gateway.port} "
              f"{tls_gateway.host}; mirror -R --no-perms {source} /; bye")
    subprocess.run([lftp, "-c", script], check=True, capture_output=True, timeout=120)
    assert (tls_gateway.site / "cgi-bin" / "app.py").read_bytes() == GOOD
    assert (tls_gateway.site / "index.html").read_bytes() == b"<p>tls</p>\n"
