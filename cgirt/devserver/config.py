"""The development front end's settings: one frozen object, validated once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..fastcgi.client import BackendAddress
from .http1 import Limits


class DevFrontError(Exception):
    """The front end cannot start: bad configuration, missing site, address in use."""


@dataclass(frozen=True)
class DevFrontConfig:
    site: Path
    backend: BackendAddress
    host: str = "127.0.0.1"
    port: int = 8080  # 0 picks a free port; read it back from DevFront.server_address
    server_name: str = ""  # SERVER_NAME for scripts; the listen host when empty
    max_header_bytes: int = 32 * 1024  # request line plus header fields → 414/431
    max_headers: int = 100  # → 431
    max_body_bytes: int = 64 * 1024 * 1024  # → 413
    max_response_header_bytes: int = 64 * 1024  # a script's header block, else 502
    connect_timeout: float = 5.0  # to the backend, else 502
    response_timeout: float = 60.0  # longest silence from the backend, else 504
    client_timeout: float = 30.0  # idle keep-alive and slow clients

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise DevFrontError(f"port out of range: {self.port}")
        for name in ("max_header_bytes", "max_headers", "max_body_bytes",
                     "max_response_header_bytes"):
            if getattr(self, name) < 1:
                raise DevFrontError(f"{name} must be at least 1")
        for name in ("connect_timeout", "response_timeout", "client_timeout"):
            if not getattr(self, name) > 0:
                raise DevFrontError(f"{name} must be positive")

    @property
    def limits(self) -> Limits:
        return Limits(self.max_header_bytes, self.max_headers, self.max_body_bytes)
