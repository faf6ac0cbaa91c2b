"""The gateway's settings: one frozen object, each setting declared once (cgirt.config).

The flags of `cgirt ftp` and the keys of the admin file's [ftp] table both come from these
declarations. Sizes and durations are spelled as everywhere in cgirt ("1G", "30s"; a bare
number is bytes or seconds; floats allowed, so tests can use short durations); 0 means
"unlimited" for the limits.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cgirt.config import (DURATION, SIZE, Renamed, boolean, build, duration, parse_values, path,
                          setting, size, text, whole, words)

from .errors import ConfigError

if TYPE_CHECKING:
    from cgirt.configfile import ConfigFile

DEFAULT_BANNER = "cgirt FTP gateway ready."
DEFAULT_LISTEN = "127.0.0.1:2121"


def parse_port_range(spec: str) -> tuple[int, int]:
    """'60000-60100' -> (60000, 60100)."""
    try:
        low, high = (int(part) for part in spec.split("-", 1))
    except ValueError:
        raise ConfigError(f"passive ports must look like LOW-HIGH, got {spec!r}") from None
    return low, high


def parse_listen(address: str) -> tuple[str, int]:
    """'HOST:PORT' (or '[v6]:PORT') -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--listen must be HOST:PORT, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _listen(name: str, v: Any) -> tuple[str, int]:
    host, port = parse_listen(text(name, v))
    if port > 65535:
        raise ConfigError(f"{name}: port out of range: {port}")
    return host, port


def _passive_ports(name: str, v: Any) -> tuple[int, int]:
    return parse_port_range(text(name, v))


def _runners(name: str, v: Any) -> tuple[str, ...]:
    items = words(v)
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"{name} must be a list of HOST:PORT or unix:PATH addresses")
    for item in items:
        site, sep, address = str(item).rpartition("=")
        if sep and not site:
            raise ConfigError(f"{name}: {item!r} names no site before '='")
        if address.startswith("unix:"):  # a runner host on this machine
            if not address[5:]:
                raise ConfigError(f"{name}: {item!r} names no socket after 'unix:'")
            continue
        _listen(name, address)
    return tuple(items)


@dataclass(frozen=True)
class GatewayConfig:
    users_file: Path = setting(path, "JSON users file (see `cgirt user add`)", key="users",
                               path=True, metavar="FILE")
    host: str = setting(_listen, "HOST:PORT to listen on; port 0 picks a free one",
                        "127.0.0.1", key="listen",
                        metavar="HOST:PORT", shown=DEFAULT_LISTEN,
                        fields=lambda v: {"host": v[0], "port": v[1]})
    port: int = field(default=2121)  # set by `listen`
    port_file: Path | None = setting(path, "write 'HOST PORT' here once listening", None,
                                     toml=False, metavar="FILE")
    banner: str = setting(text, "220 greeting (no version)", DEFAULT_BANNER)

    tls: bool = setting(boolean, "offer explicit FTPS (AUTH TLS)", False, switch=True)
    require_tls: bool = setting(boolean, "refuse logins and transfers without TLS (implies tls)",
                                False, switch=True)
    tls_cert: Path | None = setting(path, "PEM certificate chain, implies tls; self-signed "
                                    "if unset", None, path=True, metavar="FILE")
    tls_key: Path | None = setting(path, "PEM key", None, path=True, metavar="FILE",
                                   shown="in tls_cert")
    tls_dir: Path | None = setting(
        path, "where the self-signed certificate is kept", None, path=True, metavar="DIR",
        shown="the users file's directory")

    passive_ports: tuple[int, int] | None = setting(
        _passive_ports, "passive port range LOW-HIGH", None, metavar="LOW-HIGH")
    masquerade_address: str | None = setting(
        text, "IPv4 address announced in PASV replies (behind NAT)", None, key="masquerade",
        metavar="ADDRESS")

    max_connections: int = setting(whole(0), "connections in total", 256, flag_type=int,
                                   metavar="N")
    max_connections_per_ip: int = setting(whole(0), "connections per address", 10,
                                          flag_type=int, metavar="N")
    idle_timeout: float = setting(duration, "a control connection idle this long is closed",
                                  300.0, metavar=DURATION)
    data_timeout: float = setting(duration, "a transfer stalled this long is aborted", 120.0,
                                  metavar=DURATION)

    ban_failures: int = setting(whole(0), "failed logins from one address that trigger a ban", 5,
                                flag_type=int, metavar="N")
    ban_window: float = setting(duration, "...within this long", 600.0, metavar=DURATION)
    ban_duration: float = setting(duration, "how long a ban lasts", 900.0, metavar=DURATION)
    auth_failed_delay: float = setting(duration, "delay before answering a failed login", 1.0,
                                       metavar=DURATION)

    quota_bytes: int = setting(size, "per-site quota of disk space (0: none)", 0,
                               key="quota_size", metavar=SIZE,
                               renamed=(Renamed("quota_bytes"),))
    quota_files: int = setting(whole(0), "per-site quota of files (0: none)", 0, flag_type=int,
                               metavar="N")
    max_file_size: int = setting(size, "largest upload (0: none)", 0, metavar=SIZE)

    log_file: Path | None = setting(path, "log here instead of stderr; SIGUSR1 reopens it", None,
                                    path=True, metavar="FILE")

    runners: tuple[str, ...] = setting(
        _runners, "status addresses of the runner hosts: HOST:PORT (every site's) or "
        "SITE=HOST:PORT (the runner of the site directory named SITE), or unix:PATH on this "
        "machine; each publish is acknowledged by all of its site's before its 226", (),
        metavar="[SITE=]HOST:PORT,...")
    publish_secret: Path | None = setting(
        path, "file with the secret shared with the runners (needed with runners)", None,
        path=True, metavar="FILE")
    notify_timeout: float = setting(
        duration, "how long a publish waits for the runners' acknowledgements", 2.0,
        metavar=DURATION)

    completion_grace: float = setting(
        duration, "after an upload's data connection closes, how long to watch the control "
        "connection for a dying client before publishing", 0.1, metavar=DURATION)

    def __post_init__(self) -> None:
        self._check_ranges()
        self._check_addresses()
        if self.require_tls and not self.tls:
            object.__setattr__(self, "tls", True)
        if self.tls_key is not None and self.tls_cert is None:
            raise ConfigError("tls_key given without tls_cert")
        if self.tls_cert is not None and not self.tls:
            object.__setattr__(self, "tls", True)
        if self.runners and self.publish_secret is None:
            raise ConfigError("runners needs publish_secret, the secret shared with them")
        for pem in (self.tls_cert, self.tls_key):
            if pem is not None and not pem.is_file():
                raise ConfigError(f"TLS file not found: {pem}")

    def _check_ranges(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port out of range: {self.port}")
        for name in ("max_connections", "max_connections_per_ip", "ban_failures",
                     "quota_bytes", "quota_files", "max_file_size"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")
        for name in ("idle_timeout", "data_timeout", "ban_window", "ban_duration",
                     "auth_failed_delay", "completion_grace", "notify_timeout"):
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


def config_from(values: dict[str, Any]) -> GatewayConfig:
    """The gateway's config from field values; the users file must be among them."""
    if "users_file" not in values:
        raise ConfigError("no users file: give --users FILE or users in the [ftp] table")
    config: GatewayConfig = build(GatewayConfig, values)
    return config


def check_file(file: ConfigFile) -> tuple[list[str], list[str]]:
    """Every problem and warning of the file's [ftp] table, each with its line."""
    base = file.path.parent
    fields, problems, warnings = file.read(GatewayConfig, "ftp", base)
    table = file.table("ftp")
    for key, value in table.items():
        # A value whose type is right may still be refused by the object's own checks (a
        # TLS file that is missing, a port range below 1024): report it at its own line.
        single, issues = parse_values(GatewayConfig, {key: value}, base=base)
        if any(not issue.warning for issue in issues):
            continue  # already reported
        try:
            GatewayConfig(**{"users_file": base / "users.json", **single})
        except ConfigError as exc:
            problems.append(file.at(key, "ftp", str(exc)))
    if "users" not in table:
        problems.append(file.at("users", "ftp", "[ftp] needs users = the users file"))
    elif not problems:
        try:
            config_from(fields)
        except ConfigError as exc:
            problems.append(file.at("users", "ftp", str(exc)))
    return problems, warnings
