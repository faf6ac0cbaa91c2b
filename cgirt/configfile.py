"""The admin's one TOML file: runner defaults, one table per site, the FTP gateway.

    [runner]            defaults for every site's runner (any `cgirt serve` setting)
    [sites.NAME]        a site: `site`, `listen`, and any runner setting to override
    [ftp]               the gateway (`cgirt ftp` settings)
    [host]              `cgirt host`: host-wide settings and pool defaults (host/settings.py)

Every problem is reported with the file and the line of the key it is about.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import RunnerConfig
from .errors import ConfigError
from .host.settings import POOL_KEYS, HostSettings, PoolSettings


@dataclass(frozen=True)
class Problem:
    line: int | None
    message: str

    def render(self, path: Path) -> str:
        return f"{path}:{self.line}: {self.message}" if self.line else f"{path}: {self.message}"


class ConfigFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        try:
            self.data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def table(self, name: str) -> dict[str, Any]:
        value: Any = self.data
        for part in name.split("."):
            value = value.get(part, {}) if isinstance(value, dict) else {}
        if not isinstance(value, dict):
            raise ConfigError(self.at(name.rsplit(".", 1)[-1], None, f"[{name}] must be a table"))
        return value

    def site_names(self) -> list[str]:
        return list(self.table("sites"))

    def line_of(self, key: str, table: str | None) -> int | None:
        """The line where `key` is set inside `[table]` (or anywhere, if table is None)."""
        current = ""
        header = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+")
        setting = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=")
        for number, line in enumerate(self.text.splitlines(), 1):
            m = header.match(line)
            if m:
                current = m.group(1).replace('"', "")
                continue
            if setting.match(line) and (table is None or current == table):
                return number
        return None

    def at(self, key: str, table: str | None, message: str) -> str:
        return Problem(self.line_of(key, table), message).render(self.path)

    def runner_values(self, name: str | None) -> dict[str, Any]:
        """[runner] with [sites.NAME] on top."""
        values = dict(self.table("runner"))
        if name is not None:
            sites = self.table("sites")
            if name not in sites:
                known = ", ".join(sites) or "none"
                raise ConfigError(f"{self.path}: no [sites.{name}] table (sites: {known})")
            # Pool settings are `cgirt host`'s alone; `cgirt serve --name` runs the site without.
            values.update({k: v for k, v in self.table(f"sites.{name}").items() if k not in POOL_KEYS})
        return values

    def runner_config(self, name: str | None, overrides: dict[str, Any]) -> RunnerConfig:
        table = f"sites.{name}" if name else "runner"
        try:
            return RunnerConfig.from_sources(self.runner_values(name), overrides)
        except ConfigError as exc:
            key = _key_named(str(exc), self.runner_values(name))
            where = table if key in self.table(table) else "runner"
            raise ConfigError(self.at(key, where, str(exc)) if key else f"{self.path}: {exc}") from None

    def problems(self, check_ftp: Callable[[dict[str, Any], Path], list[tuple[str, str]]] | None) -> list[str]:
        """Every problem in the file, each with its line."""
        found: list[str] = []
        fields = {f.name: f for f in dataclasses.fields(RunnerConfig)}
        pool_fields = {f.name: f for f in dataclasses.fields(PoolSettings)}
        for table in ["runner", *(f"sites.{n}" for n in self.site_names())]:
            for key, value in self.table(table).items():
                f = fields.get(key.replace("-", "_"))
                if f is None and table != "runner" and key in POOL_KEYS:
                    f = pool_fields[key]
                if f is None:
                    found.append(self.at(key, table, f"unknown runner setting {key!r}"))
                    continue
                try:
                    f.metadata["check"](key, value)
                except ConfigError as exc:
                    found.append(self.at(key, table, str(exc)))
        for name in self.site_names():
            values = self.runner_values(name)
            for required in ("site", "listen"):
                if required not in values:
                    found.append(Problem(self.line_of(name, None) or _header_line(self.text, f"sites.{name}"),
                                         f"[sites.{name}] needs {required!r}").render(self.path))
            site = values.get("site")
            if isinstance(site, str) and not Path(site).is_dir():
                found.append(self.at("site", f"sites.{name}", f"site directory {site} does not exist"))
        if "host" in self.data:
            from .host.config import drop_in_files, drop_in_problems, host_problems

            found.extend(host_problems(self))
            try:
                settings = HostSettings.from_values(self.table("host"))
            except ConfigError:
                settings = HostSettings()
            for path in drop_in_files(self, settings):
                try:
                    found.extend(drop_in_problems(ConfigFile(path)))
                except ConfigError as exc:
                    found.append(str(exc))
        if "ftp" in self.data and check_ftp is not None:
            for key, message in check_ftp(self.table("ftp"), self.path.parent):
                found.append(self.at(key, "ftp", message))
        return found


def _key_named(message: str, values: dict[str, Any]) -> str | None:
    for key in values:
        if message.startswith(key) or repr(key) in message:
            return key
    return None


def _header_line(text: str, table: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().replace('"', "") == f"[{table}]":
            return number
    return None
