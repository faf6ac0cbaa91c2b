"""The development front end's settings: one frozen object, each setting declared once.

`python -m cgirt.devserver`'s flags come from these declarations (cgirt.config), with the
sizes and durations spelled as everywhere in cgirt ("64M", "30s").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DURATION, SIZE, path, positive_duration, setting, size, text, whole
from ..errors import ConfigError, StartupError
from ..fastcgi.client import BackendAddress, parse_address
from .http1 import Limits

DEFAULT_LISTEN = "127.0.0.1:8080"


class DevFrontError(StartupError):
    """The front end cannot start: missing site, address in use."""


def parse_listen(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"listen on HOST:PORT, not {address!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _listen(name: str, v: Any) -> tuple[str, int]:
    try:
        return parse_listen(text(name, v))
    except ConfigError:
        raise ConfigError(f"{name} must be HOST:PORT (port 0: any), not {v!r}") from None


def _backend(name: str, v: Any) -> BackendAddress:
    try:
        return parse_address(text(name, v))
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _positive_size(name: str, v: Any) -> int:
    value = size(name, v)
    if value < 1:
        raise ConfigError(f"{name} must be at least 1 byte, not {v!r}")
    return value


@dataclass(frozen=True)
class DevFrontConfig:
    site: Path = setting(path, "the site directory", metavar="DIR")
    backend: BackendAddress = setting(_backend, "the runner: unix:/path or HOST:PORT",
                                      metavar="ADDRESS")
    host: str = setting(_listen, "HOST:PORT to listen on; port 0 picks a free one",
                        "127.0.0.1", key="listen", metavar="HOST:PORT", shown=DEFAULT_LISTEN,
                        fields=lambda v: {"host": v[0], "port": v[1]})
    # 0 picks a free port; read it back from DevFront.server_address
    port: int = field(default=8080)
    server_name: str = setting(text, "SERVER_NAME for scripts", "", metavar="NAME",
                               shown="the listen host")
    max_header_bytes: int = setting(  # request line plus header fields → 414/431
        _positive_size, "largest request head", 32 * 1024, key="max_header_size",
        metavar=SIZE)
    max_headers: int = setting(whole(1), "most request header fields (→ 431)",
                               100, flag_type=int, metavar="N")
    max_body_bytes: int = setting(_positive_size, "largest request body (→ 413)",
                                  64 * 1024 * 1024, key="max_body", metavar=SIZE)
    max_response_header_bytes: int = setting(
        _positive_size, "largest header block a script may send (else 502)", 64 * 1024,
        key="max_response_header_size", metavar=SIZE)
    connect_timeout: float = setting(positive_duration, "to connect to the backend (else 502)",
                                     5.0, metavar=DURATION)
    response_timeout: float = setting(positive_duration,
                                      "longest silence from the backend (else 504)", 60.0,
                                      metavar=DURATION)
    client_timeout: float = setting(positive_duration, "idle keep-alive and slow clients", 30.0,
                                    metavar=DURATION)

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port out of range: {self.port}")
        for name in ("max_header_bytes", "max_headers", "max_body_bytes",
                     "max_response_header_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        for name in ("connect_timeout", "response_timeout", "client_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive")

    @property
    def limits(self) -> Limits:
        return Limits(self.max_header_bytes, self.max_headers, self.max_body_bytes)

