"""TLS for explicit FTPS: the certificate and a pyOpenSSL context for TLS 1.2 or newer only.

The certificate is the configured one, or one made self-signed on the first run."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from pathlib import Path

from OpenSSL import SSL

from .config import GatewayConfig
from .errors import ConfigError

SELF_SIGNED_NAME = "ftp-selfsigned.pem"


def certificate_files(config: GatewayConfig) -> tuple[Path, Path]:
    """(certificate, key) to use; generates the self-signed pair when none is configured."""
    if config.tls_cert is not None:
        return config.tls_cert, config.tls_key or config.tls_cert
    pem = config.self_signed_dir / SELF_SIGNED_NAME
    if not pem.exists():
        write_self_signed(pem)
    return pem, pem


def write_self_signed(pem: Path) -> None:
    """A P-256 key and a 10-year self-signed certificate in one file, mode 0600."""
    # Imported here: `cryptography` comes with pyOpenSSL, but only TLS needs it.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, socket.gethostname()[:64])])
    now = datetime.datetime.now(datetime.UTC)
    alt = x509.SubjectAlternativeName([
        x509.DNSName("localhost"),
        x509.DNSName(socket.gethostname()),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(alt, critical=False)
        .sign(key, hashes.SHA256())
    )
    data = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem.parent.mkdir(parents=True, exist_ok=True)
    tmp = pem.with_name(f".{pem.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, pem)


def ssl_context(config: GatewayConfig) -> SSL.Context:
    cert, key = certificate_files(config)
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION)
    try:
        context.use_certificate_chain_file(str(cert))
        context.use_privatekey_file(str(key))
        context.check_privatekey()
    except SSL.Error as err:
        raise ConfigError(f"unusable TLS certificate or key ({cert}, {key}): {err}") from None
    return context
