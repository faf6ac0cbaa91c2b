"""The runner's one configuration object: every setting's default, help and check in one place.

Sources, later overriding earlier: defaults, a TOML file (`[runner]` table), command-line
flags. `RunnerConfig` is frozen and validated once; nothing else reads settings.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import ConfigError

MODES = ("persistent", "fork", "exec")


def _positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1, not {v!r}")
    return v


def _non_negative_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ConfigError(f"{name} must be a whole number of at least 0, not {v!r}")
    return v


def _positive_float(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
        raise ConfigError(f"{name} must be a number of seconds above 0, not {v!r}")
    return float(v)


def _mode(name: str, v: Any) -> str:
    if v not in MODES:
        raise ConfigError(f"{name} must be one of {', '.join(MODES)}, not {v!r}")
    return str(v)


def _words(v: Any) -> Any:
    """A comma-separated string (a flag, or TOML text) as a list of words; a list as it is."""
    return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v


def _modes(name: str, v: Any) -> frozenset[str]:
    v = _words(v)
    if not isinstance(v, (list, tuple, frozenset, set)) or not v:
        raise ConfigError(f"{name} must be a non-empty list of modes")
    return frozenset(_mode(name, m) for m in v)


def _listen(name: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{name} must be unix:PATH, HOST:PORT or fd:0, not {v!r}")
    if v.startswith("unix:") and len(v) > 5:
        return v
    if v == "fd:0":
        return v
    host, sep, port = v.rpartition(":")
    if sep and host and port.isdigit() and int(port) < 65536:
        return v
    raise ConfigError(f"{name} must be unix:PATH, HOST:PORT or fd:0, not {v!r}")


def _site(name: str, v: Any) -> Path:
    if not isinstance(v, (str, Path)) or not str(v):
        raise ConfigError(f"{name} must be a directory path")
    return Path(v).resolve()


def _cgi_roots(name: str, v: Any) -> tuple[tuple[str, str], ...]:
    """`["/cgi-bin=cgi-bin", "/apps=apps"]`: URL prefix = directory relative to the site."""
    if isinstance(v, str):
        v = [v]
    roots = []
    for item in v:
        url, sep, directory = str(item).partition("=")
        url = "/" + url.strip("/")
        directory = directory.strip().strip("/")
        if not sep or not directory or ".." in directory.split("/"):
            raise ConfigError(f"{name} entries look like '/cgi-bin=cgi-bin', not {item!r}")
        roots.append((url, directory))
    if not roots:
        raise ConfigError(f"{name} must name at least one cgi root")
    return tuple(roots)


def _octal_mode(name: str, v: Any) -> int:
    if isinstance(v, str):
        try:
            v = int(v, 8)
        except ValueError:
            raise ConfigError(f"{name} must be an octal mode such as '660', not {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0o777:
        raise ConfigError(f"{name} must be an octal mode such as '660', not {v!r}")
    return v


def _bool(name: str, v: Any) -> bool:
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    if not isinstance(v, bool):
        raise ConfigError(f"{name} must be true or false, not {v!r}")
    return v


def _text(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise ConfigError(f"{name} must be text, not {v!r}")
    return v


_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
# What CGI scripts import most: imported once per worker (and held by fork mode's template)
# instead of by every fork-mode child, and before a persistent worker's first request.
DEFAULT_PRELOAD = ("cgi", "cgitb", "html", "json", "datetime", "http.cookies", "hashlib",
                   "base64")


def _modules(name: str, v: Any) -> tuple[str, ...]:
    v = _words(v)
    if not isinstance(v, (list, tuple)):
        raise ConfigError(f"{name} must be a list of module names")
    for item in v:
        if not isinstance(item, str) or not _MODULE_NAME.fullmatch(item):
            raise ConfigError(f"{name} entries are module names such as 'json', not {item!r}")
    return tuple(v)


def _setting(default: Any, check: Callable[[str, Any], Any], help: str) -> Any:
    return field(default=default, metadata={"check": check, "help": help})


@dataclass(frozen=True)
class RunnerConfig:
    site: Path = _setting(Path("."), _site, "the site directory (holds cgi-bin/, htdocs/)")
    listen: str = _setting("unix:cgirt.sock", _listen, "unix:PATH, HOST:PORT, or fd:0 (inherited)")
    workers: int = _setting(2, _positive_int, "worker processes; each serves one request at a time")
    mode: str = _setting("persistent", _mode, "default execution mode: persistent, fork or exec")
    allowed_modes: frozenset[str] = _setting(
        frozenset(MODES), _modes, "modes a site owner may choose with a .cgirt-mode file"
    )
    timeout: float = _setting(30.0, _positive_float, "seconds a request may run (then 504)")
    kill_grace: float = _setting(
        1.0, _positive_float, "seconds after the timeout before a stuck worker is killed"
    )
    max_requests: int = _setting(0, _non_negative_int, "recycle a worker after N requests (0: never)")
    max_requests_jitter: int = _setting(
        0, _non_negative_int, "add up to N random requests to max_requests per worker"
    )
    memory_limit_mb: int = _setting(
        0, _non_negative_int, "address-space limit per worker in MiB (0: none)"
    )
    max_body_bytes: int = _setting(
        0, _non_negative_int, "largest request body accepted (0: no limit of the runner's own)"
    )
    graceful_timeout: float = _setting(
        30.0, _positive_float, "seconds in-flight requests get to finish on reload or stop"
    )
    cgi_roots: tuple[tuple[str, str], ...] = _setting(
        (("/cgi-bin", "cgi-bin"),), _cgi_roots, "URL prefix = directory pairs scripts run from"
    )
    socket_mode: int = _setting(0o660, _octal_mode, "permissions of a unix listening socket")
    script_path_env: str = _setting(
        "/usr/local/bin:/usr/bin:/bin", _text, "PATH given to scripts, as Apache does"
    )
    preload: tuple[str, ...] = _setting(
        DEFAULT_PRELOAD, _modules,
        "modules (not the site's own) each worker imports before any script runs",
    )
    access_log: bool = _setting(True, _bool, "write the site's logs/access.log")
    log_max_bytes: int = _setting(
        10 * 1024 * 1024, _non_negative_int,
        "rotate a site log (error, access, slow, deploy) past this size (0: never)",
    )
    log_backups: int = _setting(5, _non_negative_int, "rotated files kept per site log")
    log_file: str = _setting("", _text, "the runner's own log file (empty: standard error)")

    @classmethod
    def from_sources(
        cls, file_values: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> "RunnerConfig":
        values: dict[str, Any] = {}
        known = {f.name: f for f in dataclasses.fields(cls)}
        for source in (file_values or {}, overrides or {}):
            for key, raw in source.items():
                name = key.replace("-", "_")
                if name not in known:
                    raise ConfigError(f"unknown setting {key!r}")
                if raw is None:
                    continue
                values[name] = known[name].metadata["check"](key, raw)
        config = cls(**values)
        if config.kill_grace > config.timeout * 10:
            raise ConfigError("kill_grace should not be more than ten times the timeout")
        return config
