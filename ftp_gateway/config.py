"""The gateway's settings: one frozen object, each setting's default, help and check here.

Durations are in seconds (floats allowed, so tests can use short ones); sizes in bytes;
0 means "unlimited" for the limits.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_BANNER = "cgirt FTP gateway ready."


def _help(text: str) -> dict[str, Any]:
    return {"help": text}


@dataclass(frozen=True)
class GatewayConfig:
    users_file: Path = field(metadata=_help("JSON users file (see `user add`)"))
    host: str = field(default="127.0.0.1", metadata=_help("address to listen on"))
    port: int = field(default=2121, metadata=_help("port to listen on; 0 picks a free one"))
    port_file: Path | None = field(
        default=None, metadata=_help("write 'HOST PORT' here once listening")
    )
    banner: str = field(default=DEFAULT_BANNER, metadata=_help("220 greeting (no version)"))

    tls: bool = field(default=False, metadata=_help("offer explicit FTPS (AUTH TLS)"))
    require_tls: bool = field(
        default=False, metadata=_help("refuse login and data without TLS (implies tls)")
    )
    tls_cert: Path | None = field(
        default=None, metadata=_help("PEM certificate chain; self-signed if unset")
    )
    tls_key: Path | None = field(default=None, metadata=_help("PEM key (default: tls_cert)"))
    tls_dir: Path | None = field(
        default=None,
        metadata=_help("where the self-signed certificate is kept (default: users file dir)"),
    )

    passive_ports: tuple[int, int] | None = field(
        default=None, metadata=_help("passive port range LOW-HIGH")
    )
    masquerade_address: str | None = field(
        default=None, metadata=_help("IPv4 address announced in PASV replies (NAT)")
    )

    max_connections: int = field(default=256, metadata=_help("connections in total"))
    max_connections_per_ip: int = field(default=10, metadata=_help("connections per IP"))
    idle_timeout: float = field(default=300.0, metadata=_help("control idle timeout (s)"))
    data_timeout: float = field(default=120.0, metadata=_help("stalled transfer timeout (s)"))

    ban_failures: int = field(default=5, metadata=_help("failed logins that trigger a ban"))
    ban_window: float = field(default=600.0, metadata=_help("...within this many seconds"))
    ban_duration: float = field(default=900.0, metadata=_help("ban length (s)"))
    auth_failed_delay: float = field(
        default=1.0, metadata=_help("delay before answering a failed login (s)")
    )

    quota_bytes: int = field(default=0, metadata=_help("per-site quota in bytes (0: none)"))
    quota_files: int = field(default=0, metadata=_help("per-site quota in files (0: none)"))
    max_file_size: int = field(default=0, metadata=_help("largest upload in bytes (0: none)"))

    log_file: Path | None = field(
        default=None, metadata=_help("log here instead of stderr; SIGUSR1 reopens it")
    )

    completion_grace: float = field(
        default=0.1,
        metadata=_help(
            "after an upload's data connection closes, how long to watch the control "
            "connection for a dying client before publishing (s)"
        ),
    )

    def __post_init__(self) -> None:
        self._check_ranges()
        self._check_addresses()
        if self.require_tls and not self.tls:
            object.__setattr__(self, "tls", True)
        if self.tls_key is not None and self.tls_cert is None:
            raise ConfigError("tls_key given without tls_cert")
        if self.tls_cert is not None and not self.tls:
            object.__setattr__(self, "tls", True)
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise ConfigError(f"TLS file not found: {path}")

    def _check_ranges(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port out of range: {self.port}")
        for name in ("max_connections", "max_connections_per_ip", "ban_failures",
                     "quota_bytes", "quota_files", "max_file_size"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")
        for name in ("idle_timeout", "data_timeout", "ban_window", "ban_duration",
                     "auth_failed_delay", "completion_grace"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")
        if self.completion_grace > 5:
            raise ConfigError("completion_grace above 5 s would stall every upload")
        if len(self.banner) > 75 or "\r" in self.banner or "\n" in self.banner:
            raise ConfigError("banner must be one line of at most 75 characters")

    def _check_addresses(self) -> None:
        if self.passive_ports is not None:
            low, high = self.passive_ports
            if not 1024 <= low <= high <= 65535:
                raise ConfigError(f"bad passive port range {low}-{high}")
        if self.masquerade_address is not None:
            try:
                ipaddress.IPv4Address(self.masquerade_address)
            except ValueError:
                raise ConfigError(
                    f"masquerade address must be an IPv4 address: {self.masquerade_address}"
                ) from None

    @property
    def self_signed_dir(self) -> Path:
        return self.tls_dir if self.tls_dir is not None else self.users_file.parent

    def replace(self, **changes: Any) -> GatewayConfig:
        return dataclasses.replace(self, **changes)


def parse_port_range(text: str) -> tuple[int, int]:
    """'60000-60100' -> (60000, 60100)."""
    try:
        low, high = (int(part) for part in text.split("-", 1))
    except ValueError:
        raise ConfigError(f"passive ports must look like LOW-HIGH, got {text!r}") from None
    return low, high


def parse_listen(text: str) -> tuple[str, int]:
    """'HOST:PORT' (or '[v6]:PORT') -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--listen must be HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


# -- the [ftp] table of the admin's TOML file ------------------------------------------


def _int(key: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{key} must be a whole number, not {v!r}")
    return v


def _float(key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{key} must be a number of seconds, not {v!r}")
    return float(v)


def _bool(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{key} must be true or false, not {v!r}")
    return v


def _text(key: str, v: Any) -> str:
    if not isinstance(v, str):
        raise ConfigError(f"{key} must be text, not {v!r}")
    return v


_TABLE_KEYS: dict[str, tuple[str, Any]] = {
    # key in [ftp] → (GatewayConfig field, converter)
    "users": ("users_file", _text), "banner": ("banner", _text),
    "tls": ("tls", _bool), "require_tls": ("require_tls", _bool),
    "tls_cert": ("tls_cert", _text), "tls_key": ("tls_key", _text), "tls_dir": ("tls_dir", _text),
    "masquerade": ("masquerade_address", _text),
    "max_connections": ("max_connections", _int),
    "max_connections_per_ip": ("max_connections_per_ip", _int),
    "idle_timeout": ("idle_timeout", _float), "data_timeout": ("data_timeout", _float),
    "ban_failures": ("ban_failures", _int), "ban_window": ("ban_window", _float),
    "ban_duration": ("ban_duration", _float), "auth_failed_delay": ("auth_failed_delay", _float),
    "quota_bytes": ("quota_bytes", _int), "quota_files": ("quota_files", _int),
    "max_file_size": ("max_file_size", _int), "completion_grace": ("completion_grace", _float),
    "log_file": ("log_file", _text),
}
_PATHS = {"users_file", "tls_cert", "tls_key", "tls_dir", "log_file"}


def _table_value(key: str, value: Any, base: Path) -> dict[str, Any]:
    if key == "listen":
        host, port = parse_listen(_text(key, value))
        return {"host": host, "port": port}
    if key == "passive_ports":
        return {"passive_ports": parse_port_range(_text(key, value))}
    if key not in _TABLE_KEYS:
        raise ConfigError(f"unknown ftp setting {key!r}")
    name, convert = _TABLE_KEYS[key]
    converted = convert(key, value)
    if name in _PATHS:
        converted = base / converted  # relative paths are relative to the file
    return {name: converted}


def table_values(table: dict[str, Any], base: Path) -> dict[str, Any]:
    """GatewayConfig keyword arguments from an [ftp] table (first problem raises)."""
    values: dict[str, Any] = {}
    for key, value in table.items():
        values.update(_table_value(key, value, base))
    return values


def check_table(table: dict[str, Any], base: Path) -> list[tuple[str, str]]:
    """Every problem of an [ftp] table, as (key, message)."""
    problems: list[tuple[str, str]] = []
    good: dict[str, Any] = {}
    for key, value in table.items():
        try:
            single = _table_value(key, value, base)
            GatewayConfig(**{"users_file": base / "users.json", **single})
            good.update(single)
        except ConfigError as exc:
            problems.append((key, str(exc)))
    if "users" not in table:
        problems.append(("ftp", "[ftp] needs users = the users file"))
    elif not problems:
        try:
            GatewayConfig(**good)
        except ConfigError as exc:
            problems.append(("ftp", str(exc)))
    return problems
