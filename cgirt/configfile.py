"""The admin's one TOML file: runner defaults, one table per site, the FTP gateway.

    [runner]            defaults for every site's runner (any `cgirt serve` setting)
    [sites.NAME]        a site: `site`, `listen`, and any runner setting to override
    [ftp]               the gateway (`cgirt ftp` settings)
    [host]              `cgirt host`: host-wide settings and pool defaults (host/settings.py)

Every problem is reported with the file and the line of the key it is about. Which keys a
table takes, and how each is checked, comes from the settings' declarations (config.py).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from .config import Issue, RunnerConfig, build, parse_values
from .errors import ConfigError
from .host.settings import POOL_KEYS


@dataclass(frozen=True)
class Problem:
    line: int | None
    message: str
    warning: bool = False

    def render(self, path: Path) -> str:
        where = f"{path}:{self.line}" if self.line else f"{path}"
        return f"{where}: {'warning: ' if self.warning else ''}{self.message}"


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

    def at(self, key: str, table: str | None, message: str, warning: bool = False) -> str:
        line = self.line_of(key, table) or (_header_line(self.text, table) if table else None)
        return Problem(line, message, warning).render(self.path)

    def read(self, cls: type, table: str, base: Path | None = None
             ) -> tuple[dict[str, Any], list[str], list[str]]:
        """A table's field values, its problems and its warnings, each with its line."""
        values = self.table(table)
        if cls is RunnerConfig and table.startswith("sites."):
            # A site's pool settings are `cgirt host`'s; `cgirt serve --name` runs without.
            values = {k: v for k, v in values.items() if k not in POOL_KEYS}
        fields, issues = parse_values(cls, values, base=base)
        return (fields, [self._render(i, table) for i in issues if not i.warning],
                [self._render(i, table) for i in issues if i.warning])

    def _render(self, issue: Issue, table: str) -> str:
        return self.at(issue.key, table, issue.message, issue.warning)

    def _site_at(self, name: str, message: str) -> str:
        line = self.line_of(name, None) or _header_line(self.text, f"sites.{name}")
        return Problem(line, message).render(self.path)

    def runner_values(self, name: str | None) -> dict[str, Any]:
        """[runner] with [sites.NAME] on top, as written."""
        values = dict(self.table("runner"))
        if name is not None:
            sites = self.table("sites")
            if name not in sites:
                known = ", ".join(sites) or "none"
                raise ConfigError(f"{self.path}: no [sites.{name}] table (sites: {known})")
            values.update({k: v for k, v in self.table(f"sites.{name}").items() if k not in POOL_KEYS})
        return values

    def runner_config(self, name: str | None, flags: Mapping[str, Any],
                      warn: Callable[[str], None]) -> RunnerConfig:
        """[runner], then [sites.NAME], then the flags' field values; the first problem raises,
        warnings (each a whole line with the file and line) go to `warn`."""
        self.runner_values(name)  # an unknown site is the first thing to say
        layers = []
        for table in ["runner"] + ([f"sites.{name}"] if name else []):
            fields, problems, warnings = self.read(RunnerConfig, table)
            for warning in warnings:
                warn(warning)
            if problems:
                raise ConfigError(problems[0])
            layers.append(fields)
        try:
            config: RunnerConfig = build(RunnerConfig, *layers, flags)
        except ConfigError as exc:
            raise ConfigError(f"{self.path}: {exc}") from None
        return config

    def problems(self, check_ftp: Callable[[ConfigFile], tuple[list[str], list[str]]] | None
                 ) -> tuple[list[str], list[str]]:
        """Every problem in the file and every warning, each with its line."""
        found: list[str] = []
        warned: list[str] = []
        layers: dict[str, dict[str, Any]] = {}
        for table in ["runner", *(f"sites.{n}" for n in self.site_names())]:
            fields, problems, warnings = self.read(RunnerConfig, table)
            layers[table] = fields
            found += problems
            warned += warnings
        for name in self.site_names():
            table = f"sites.{name}"
            values = self.runner_values(name)
            missing = [key for key in ("site", "listen") if key not in values]
            for key in missing:
                found.append(self._site_at(name, f"[{table}] needs {key!r}"))
            site = values.get("site")
            if isinstance(site, str) and not Path(site).is_dir():
                found.append(self.at("site", table, f"site directory {site} does not exist"))
            try:  # the checks across settings, on what this site's runner would get
                build(RunnerConfig, layers["runner"], layers[table])
            except ConfigError as exc:
                found.append(self._site_at(name, f"[{table}]: {exc}"))
        from .host.config import drop_in_files, drop_in_problems, host_problems, host_settings

        found += host_problems(self)
        for path in drop_in_files(self, host_settings(self)):
            try:
                found += drop_in_problems(ConfigFile(path))
            except ConfigError as exc:
                found.append(str(exc))
        if "ftp" in self.data and check_ftp is not None:
            problems, warnings = check_ftp(self)
            found += problems
            warned += warnings
        return found, warned


def _header_line(text: str, table: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().replace('"', "") == f"[{table}]":
            return number
    return None
