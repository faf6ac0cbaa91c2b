"""The settings `cgirt host` adds to the admin's file: the `[host]` table, and a site's pool.

A site's table (`[sites.NAME]`, or a drop-in file) holds runner settings (RunnerConfig)
and these pool settings side by side; `[host]` holds the host-wide ones and the pool
defaults. Each setting's default, help and check live here, as RunnerConfig's do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from ..config import (DURATION, _octal_mode, _status_listen, boolean, build, one_of, parse_values,
                      positive_duration, setting, text, whole)
from ..errors import ConfigError

PM_KINDS = ("static", "ondemand", "dynamic")


def _dir_text(name: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{name} must be a directory path")
    return v


@dataclass(frozen=True)
class PoolSettings:
    """How a site's workers come and go (PHP-FPM's vocabulary)."""

    pm: str = setting(one_of(PM_KINDS), "static (always `workers`), ondemand or dynamic",
                      "ondemand", flag=None)
    max_workers: int = setting(whole(0), "most workers the site may have at once (0: its `workers`)",
                               0, flag=None)
    idle_timeout: float = setting(
        positive_duration, "ondemand, dynamic: time without a request before a worker exits",
        10.0, flag=None, metavar=DURATION)
    min_spare: int = setting(whole(0), "dynamic: idle workers kept at least", 0, flag=None)
    max_spare: int = setting(whole(1), "dynamic: idle workers kept at most", 1, flag=None)
    allow_root_site: bool = setting(
        boolean, "serve a site directory owned by root (its workers then run as root)", False,
        flag=None)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "PoolSettings":
        config: PoolSettings = build(cls, _checked(cls, values))
        return config


@dataclass(frozen=True)
class HostSettings:
    """The `[host]` table: what is shared by every site of the host."""

    sites_dir: str = setting(
        _dir_text, "folder of drop-in sites, one NAME.toml per site (relative: to this file)", "",
        flag=None)
    max_workers_total: int = setting(
        whole(1), "most workers of all sites together; no burst goes above it", 64, flag=None)
    state_dir: str = setting(
        _dir_text, "the host's own state: its status socket (relative: to this file)",
        ".cgirt-host", flag=None)
    status_listen: str = setting(
        _status_listen, "admin-only status address of every site: unix:PATH or HOST:PORT; off: "
        "none", "", flag=None, shown="STATE_DIR/status.sock")
    status_socket_mode: int = setting(_octal_mode, "permissions of a unix status socket (octal)",
                                      0o600, flag=None, shown="600")
    log_file: str = setting(text, "the host master's own log file, reopened on SIGUSR1 (empty: "
                            "standard error)", "", flag=None)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "HostSettings":
        config: HostSettings = build(cls, _checked(cls, values))
        return config


POOL_KEYS = frozenset(f.name for f in dataclasses.fields(PoolSettings))
HOST_KEYS = frozenset(f.name for f in dataclasses.fields(HostSettings))


def _checked(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `cls` among `values` (other keys are someone else's); the first
    problem raises."""
    names = {f.name for f in dataclasses.fields(cls)}
    fields, issues = parse_values(cls, {k: v for k, v in values.items() if k in names})
    for issue in issues:
        if not issue.warning:
            raise ConfigError(issue.message)
    return fields
