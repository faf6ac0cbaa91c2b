"""What `cgirt host` serves: the sites of the admin's file and of its drop-in folder.

Every `[sites.NAME]` of the file, and every `NAME.toml` of `[host] sites_dir` (one site
each, its settings at the top level).

`load()` reads everything or nothing: any problem, in any file, raises HostConfigError
with every problem found, each with its file and line, as `cgirt config check` reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RunnerConfig, build, parse_values, settings_of
from ..configfile import ConfigFile
from ..errors import ConfigError
from ..notice import read_secret
from .settings import HOST_KEYS, POOL_KEYS, HostSettings, PoolSettings



def _keys(cls: type) -> frozenset[str]:
    """The TOML keys `cls` reads, old names included."""
    return frozenset(k for s in settings_of(cls) for k in (s.key, *(o.key for o in s.renamed)))


RUNNER_KEYS = _keys(RunnerConfig)


class HostConfigError(ConfigError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class SiteSpec:
    name: str
    runner: RunnerConfig
    pool: PoolSettings
    source: Path  # the file that defines it
    # Its publish_secret's content, read with the file: the master's alone (never in a
    # worker's RunnerConfig); a changed secret is no reason to replace the site's workers.
    secret: bytes | None = field(default=None, compare=False)

    @property
    def max_workers(self) -> int:
        if self.pool.pm == "static":
            return self.runner.workers
        return self.pool.max_workers or self.runner.workers


@dataclass(frozen=True)
class HostPlan:
    settings: HostSettings
    sites: dict[str, SiteSpec]
    preload: tuple[str, ...]  # the zygote's: [runner] preload

    @property
    def names(self) -> list[str]:
        return sorted(self.sites)


def load(path: Path) -> HostPlan:
    main = ConfigFile(path)
    problems, _ = main.problems(None)  # with [host] and every drop-in's
    host_values = main.table("host")
    settings = host_settings(main)
    pool_defaults = {k: v for k, v in host_values.items() if k in POOL_KEYS}
    runner_defaults = main.table("runner")
    defaults, _ = parse_values(RunnerConfig, runner_defaults)  # its problems: problems()
    tables: list[tuple[str, dict[str, Any], ConfigFile, str]] = [
        (name, main.table(f"sites.{name}"), main, f"sites.{name}") for name in main.site_names()]
    for drop_in in drop_in_files(main, settings):
        try:
            f = ConfigFile(drop_in)
        except ConfigError:
            continue  # reported by problems()
        if drop_in.stem in main.site_names():
            problems.append(f"{drop_in}: site {drop_in.stem!r} is also [sites.{drop_in.stem}] in {path}")
            continue
        tables.append((drop_in.stem, f.data, f, ""))
    sites: dict[str, SiteSpec] = {}
    listens: dict[str, str] = {}
    directories: dict[str, str] = {}  # of the sites that take notices: directory name -> site
    for name, table, f, where in tables:
        runner_values = {**runner_defaults, **{k: v for k, v in table.items() if k not in POOL_KEYS}}
        listen = runner_values.get("listen")
        if listen == "fd:0":
            problems.append(f.at("listen", where, "listen = \"fd:0\" is for one runner, not a host"))
        elif isinstance(listen, str) and listen in listens:
            problems.append(f.at("listen", where, f"{listen} is also the address of site "
                                                  f"{listens[listen]!r}"))
        elif isinstance(listen, str):
            listens[listen] = name
        fields, issues = parse_values(RunnerConfig, {k: v for k, v in table.items()
                                                     if k not in POOL_KEYS})
        try:
            if any(not i.warning for i in issues):
                raise ConfigError(next(i.message for i in issues if not i.warning))
            runner: RunnerConfig = build(RunnerConfig, defaults, fields)
            pool = PoolSettings.from_values({**pool_defaults, **table})
        except ConfigError as exc:
            if not any(p.startswith(str(f.path)) for p in problems):  # else said, with its line
                problems.append(f"{f.path}: site {name!r}: {exc}")
            continue
        secret = None
        if runner.publish_secret is not None:
            # The main file's sites: host_problems() has said theirs; a drop-in's, here.
            found = [] if where else notice_problems(
                f, "", runner.publish_secret, runner.site, settings, directories)
            directories[runner.site.name] = name
            if found or problems:
                problems += found
                continue
            secret = read_secret(runner.publish_secret)
        sites[name] = SiteSpec(name, runner, pool, f.path, secret)
    if problems:
        raise HostConfigError(problems)
    preload: tuple[str, ...] = build(RunnerConfig, defaults).preload
    return HostPlan(settings, sites, preload)


def notice_problems(f: ConfigFile, table: str, secret: Path, site: Path,
                    settings: HostSettings, directories: dict[str, str]) -> list[str]:
    """A site's publish_secret under `cgirt host`: readable, a status address to take the
    notices on, and one such site per directory name (the name a notice gives)."""
    found = []
    try:
        read_secret(secret)
    except ConfigError as exc:
        found.append(f.at("publish_secret", table, str(exc)))
    if settings.status_listen == "off":
        found.append(f.at("publish_secret", table, "publish_secret needs the host's status "
                          "address to take notices on ([host] status_listen is off)"))
    other = directories.get(site.name)
    if other is not None:
        found.append(f.at("publish_secret", table, f"site {other!r} also has a directory named "
                          f"{site.name!r} and a publish_secret: a notice names the "
                          "directory, so it could not tell them apart"))
    return found


def drop_in_files(main: ConfigFile, settings: HostSettings) -> list[Path]:
    if not settings.sites_dir:
        return []
    folder = main.path.parent / settings.sites_dir
    if not folder.is_dir():
        return []  # a panel may create it later
    return sorted(folder.glob("*.toml"))


def host_settings(main: ConfigFile) -> HostSettings:
    try:
        return HostSettings.from_values(main.table("host"))
    except ConfigError:
        return HostSettings()  # its problems: host_problems()


def host_problems(main: ConfigFile) -> list[str]:
    """What `cgirt config check` adds for `cgirt host`: the [host] table and the drop-ins."""
    values = main.table("host")
    found = [main.at(key, "host", f"unknown host setting {key!r}") for key in values
             if key not in HOST_KEYS | POOL_KEYS]
    found += _issues(main, "host", HostSettings, values)
    found += _issues(main, "host", PoolSettings, values)
    settings = host_settings(main)
    directories: dict[str, str] = {}
    for name in main.site_names():
        table = main.table(f"sites.{name}")
        found += _issues(main, f"sites.{name}", PoolSettings, table)
        values = {**main.table("runner"), **table}
        secret, site = values.get("publish_secret"), values.get("site")
        if isinstance(secret, str) and isinstance(site, str):
            at = f"sites.{name}" if "publish_secret" in table else "runner"
            found += notice_problems(main, at, Path(secret), Path(site), settings, directories)
            directories[Path(site).name] = name
    return found


def _issues(f: ConfigFile, table: str, cls: type, values: dict[str, Any]) -> list[str]:
    """The problems of `cls`'s settings among `values`, each with its line."""
    names = _keys(cls)
    _, issues = parse_values(cls, {k: v for k, v in values.items() if k in names})
    return [f.at(i.key, table, i.message) for i in issues if not i.warning]


def drop_in_problems(f: ConfigFile) -> list[str]:
    """A drop-in site file: its settings at the top level, each problem with its line."""
    found: list[str] = []
    for key, value in f.data.items():
        if isinstance(value, dict):
            found.append(f.at(key, "", f"[{key}]: a drop-in holds one site's settings, no tables"))
            continue
        if key not in POOL_KEYS and key not in RUNNER_KEYS:
            found.append(f.at(key, "", f"unknown site setting {key!r}"))
    values = {k: v for k, v in f.data.items() if not isinstance(v, dict)}
    found += _issues(f, "", PoolSettings, values)
    found += _issues(f, "", RunnerConfig, values)
    for required in ("site", "listen"):
        if required not in f.data:
            found.append(f"{f.path}: needs {required!r}")
    site = f.data.get("site")
    if isinstance(site, str) and not Path(site).is_dir():
        found.append(f.at("site", "", f"site directory {site} does not exist"))
    return found
