"""The settings `cgirt host` adds to the admin's file: the `[host]` table, and a site's pool.

A site's table (`[sites.NAME]`, or a drop-in file) holds runner settings (RunnerConfig)
and these pool settings side by side; `[host]` holds the host-wide ones and the pool
defaults. Each setting's default, help and check live here, as RunnerConfig's do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from ..config import _non_negative_int, _positive_float, _positive_int, _setting
from ..errors import ConfigError

PM_KINDS = ("static", "ondemand", "dynamic")


def _pm(name: str, v: Any) -> str:
    if v not in PM_KINDS:
        raise ConfigError(f"{name} must be one of {', '.join(PM_KINDS)}, not {v!r}")
    return str(v)


def _flag(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{name} must be true or false, not {v!r}")
    return v


def _dir_text(name: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{name} must be a directory path")
    return v


@dataclass(frozen=True)
class PoolSettings:
    """How a site's workers come and go (PHP-FPM's vocabulary)."""

    pm: str = _setting("ondemand", _pm, "static (always `workers`), ondemand or dynamic")
    max_workers: int = _setting(
        0, _non_negative_int, "most workers the site may have at once (0: its `workers`)")
    idle_timeout: float = _setting(
        10.0, _positive_float, "ondemand, dynamic: seconds without a request before a worker exits")
    min_spare: int = _setting(0, _non_negative_int, "dynamic: idle workers kept at least")
    max_spare: int = _setting(1, _positive_int, "dynamic: idle workers kept at most")
    allow_root_site: bool = _setting(
        False, _flag, "serve a site directory owned by root (its workers then run as root)")

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "PoolSettings":
        return cls(**_checked(cls, values))


@dataclass(frozen=True)
class HostSettings:
    """The `[host]` table: what is shared by every site of the host."""

    sites_dir: str = _setting(
        "", _dir_text, "folder of drop-in sites, one NAME.toml per site (relative: to this file)")
    max_workers_total: int = _setting(
        64, _positive_int, "most workers of all sites together; no burst goes above it")

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "HostSettings":
        return cls(**_checked(cls, values))


POOL_KEYS = frozenset(f.name for f in dataclasses.fields(PoolSettings))
HOST_KEYS = frozenset(f.name for f in dataclasses.fields(HostSettings))


def check(cls: type, key: str, value: Any) -> Any:
    """The checked value of one of `cls`'s settings (ConfigError naming it otherwise)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return fields[key].metadata["check"](key, value)


def _checked(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: check(cls, k, v) for k, v in values.items() if k in names}
