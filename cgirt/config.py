"""Settings, declared once: the `Setting` helper, and the runner's one configuration object.

A program's configuration is a frozen dataclass whose fields are declared with `setting()`:
name, default, parse (which checks), help, command-line flag and TOML key all in one place.
From that one declaration come the program's flags (`add_flags`), the reading of a TOML
table and of the flags (`parse_values`), `cgirt config check` and the help text. The runner
(`RunnerConfig`, below), the FTP gateway (`ftp_gateway.config.GatewayConfig`) and the
development front end (`cgirt.devserver.config.DevFrontConfig`) are declared this way.

Spelling, the same for every setting: names carry no unit. A size is a whole number of
bytes or a text with a 1024-based unit, `"512M"` (K, M, G, T); a duration is a number of
seconds or a text with a unit, `"30s"` (ms, s, m, h). An old name (`memory_limit_mb`) is
still read, with a warning naming the new spelling.

Sources, later overriding earlier: defaults, a TOML file (`[runner]`, then `[sites.NAME]`),
command-line flags. Nothing else reads settings.

Adding a setting is one field: `slowlog_timeout: float = setting(duration, "help", 0.0,
metavar=DURATION)` in `RunnerConfig` gives `--slowlog-timeout`, the TOML key in `[runner]`
and `[sites.NAME]`, its check in `cgirt config check` and its help. (tests/unit/
test_config.py then asks for one sample line for it.) Renaming one keeps the old name
readable: `renamed=(Renamed("old_name", "M"),)`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .errors import ConfigError

Parse = Callable[[str, Any], Any]
"""(name as the user wrote it, raw value) -> value; raises ConfigError naming the setting."""


@dataclass(frozen=True)
class Renamed:
    """An old name of a setting, still read. `unit` is what a bare number meant under it."""

    key: str
    unit: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


@dataclass(frozen=True)
class Setting:
    """One setting of one program. `attr` is the dataclass field it fills."""

    key: str  # the TOML key; the flag is derived from it
    parse: Parse
    help: str
    default: Any = dataclasses.MISSING
    attr: str = ""
    flag: str | None = ""  # "" derives `--key-with-dashes`; None: no flag
    toml: bool = True  # False: a command-line flag only
    flag_type: Callable[[str], Any] | None = None  # an argparse type for the flag's text
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    switch: bool = False  # a flag without a value: given means true
    path: bool = False  # from a file: relative to the file's directory
    renamed: tuple[Renamed, ...] = ()
    fields: Callable[[Any], dict[str, Any]] | None = None  # a value filling several fields
    shown: str | None = None  # the default as help shows it, when the field's differs

    @property
    def flag_name(self) -> str | None:
        if self.flag is None:
            return None
        return self.flag or "--" + self.key.replace("_", "-")

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    def to_fields(self, value: Any) -> dict[str, Any]:
        return self.fields(value) if self.fields is not None else {self.attr: value}


def setting(parse: Parse, help: str, default: Any = dataclasses.MISSING, *, key: str = "",
            flag: str | None = "", toml: bool = True, flag_type: Callable[[str], Any] | None = None,
            choices: tuple[str, ...] | None = None, metavar: str | None = None,
            switch: bool = False, path: bool = False, renamed: tuple[Renamed, ...] = (),
            fields: Callable[[Any], dict[str, Any]] | None = None, shown: str | None = None) -> Any:
    """A dataclass field declared as a setting; `key` defaults to the field's name."""
    declared = Setting(key=key, parse=parse, help=help, default=default, flag=flag, toml=toml,
                       flag_type=flag_type, choices=choices, metavar=metavar, switch=switch,
                       path=path, renamed=renamed, fields=fields, shown=shown)
    return dataclasses.field(default=default, metadata={"setting": declared})


@functools.cache
def settings_of(cls: type) -> tuple[Setting, ...]:
    """Every setting a config class declares, in declaration order."""
    found = []
    for f in dataclasses.fields(cls):
        declared = f.metadata.get("setting")
        if isinstance(declared, Setting):
            found.append(dataclasses.replace(declared, attr=f.name, key=declared.key or f.name))
    return tuple(found)


def _by_key(cls: type) -> dict[str, tuple[Setting, Renamed | None]]:
    table: dict[str, tuple[Setting, Renamed | None]] = {}
    for s in settings_of(cls):
        table[s.key] = (s, None)
        for old in s.renamed:
            table[old.key] = (s, old)
    return table


# -- the command line -------------------------------------------------------------------


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per setting, its help the setting's; old flags are read but not shown."""
    for s in settings_of(cls):
        flag = s.flag_name
        if flag is None:
            continue
        shown = s.help
        if not (s.required or s.switch):
            shown += f" (default: {s.shown or show(s.default, s.metavar)})"
        if s.switch:
            parser.add_argument(flag, dest=s.attr, action="store_true", default=None, help=shown)
            continue
        parser.add_argument(flag, dest=s.attr, type=s.flag_type or str, choices=s.choices,
                            metavar=s.metavar, help=shown)
        for old in s.renamed:
            parser.add_argument(old.flag, dest=_renamed_dest(old), type=s.flag_type or str,
                                help=argparse.SUPPRESS)


def _renamed_dest(old: Renamed) -> str:
    return "renamed " + old.key  # not an identifier: cannot clash with a real option


def flag_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The settings given on the command line, by key (an old flag by its old key)."""
    given: dict[str, Any] = {}
    for s in settings_of(cls):
        if s.flag_name is None:
            continue
        for old in s.renamed:
            if getattr(args, _renamed_dest(old), None) is not None:
                given[old.key] = getattr(args, _renamed_dest(old))
        if getattr(args, s.attr, None) is not None:
            given[s.key] = getattr(args, s.attr)
    return given


SIZE, DURATION = "SIZE", "DURATION"  # the metavars of sizes and durations, and how they show


def show(value: Any, metavar: str | None = None) -> str:
    """A default as the user would write it."""
    if metavar == SIZE and isinstance(value, int) and value:
        unit = next(u for u in "TGMK " if u == " " or value % _SIZE_UNITS[u] == 0).strip()
        return f"{value // _SIZE_UNITS[unit]}{unit}"
    if metavar == DURATION and isinstance(value, (int, float)):
        return f"{value:g}s"
    if isinstance(value, (frozenset, set)):
        value = sorted(value)
    if isinstance(value, (list, tuple)):
        return ",".join(show(v) for v in value) or "none"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


# -- reading values ---------------------------------------------------------------------


@dataclass(frozen=True)
class Issue:
    """A problem (or, with `warning`, a deprecation) about one key of one source."""

    key: str
    message: str
    warning: bool = False


def parse_values(cls: type, values: Mapping[str, Any], *, from_flags: bool = False,
                 base: Path | None = None) -> tuple[dict[str, Any], list[Issue]]:
    """Field values from raw ones (a TOML table, or `flag_values`), and every issue found.

    Each key is parsed on its own, so one bad value does not hide the next."""
    known = _by_key(cls)
    fields: dict[str, Any] = {}
    issues: list[Issue] = []
    seen: dict[str, str] = {}  # setting -> the key that gave it
    for key, raw in values.items():
        found = known.get(key)
        if found is None or not (from_flags or found[0].toml):
            issues.append(Issue(key, f"unknown setting {key!r}"))
            continue
        s, old = found
        name = (old.flag if old else s.flag_name or key) if from_flags else key
        if s.key in seen:  # the old name and the new: which one was meant?
            keep = s.flag_name if from_flags else s.key
            issues.append(Issue(key, f"{name} and {seen[s.key]} are the same setting: keep "
                                     f"{keep} only"))
            continue
        seen[s.key] = name
        if old is not None:
            raw = _with_unit(raw, old.unit)
            issues.append(Issue(key, _deprecation(old, s, raw, from_flags), warning=True))
        try:
            value = s.parse(str(name), raw)
        except ConfigError as exc:
            issues.append(Issue(key, str(exc)))
            continue
        if s.path and base is not None and value is not None:
            value = base / value
        fields.update(s.to_fields(value))
    return fields, issues


def _with_unit(raw: Any, unit: str) -> Any:
    if unit and isinstance(raw, int) and not isinstance(raw, bool):
        return f"{raw}{unit}"
    if unit and isinstance(raw, str) and raw.strip().isdigit():
        return f"{raw.strip()}{unit}"
    return raw


def _deprecation(old: Renamed, new: Setting, raw: Any, from_flags: bool) -> str:
    if from_flags:
        return f"{old.flag} is deprecated: use {new.flag_name} {raw}"
    spelled = f'"{raw}"' if isinstance(raw, str) else str(raw)
    return f"{old.key} is deprecated: use {new.key} = {spelled}"


def build(cls: type, *layers: Mapping[str, Any]) -> Any:
    """The config object from field values, later layers overriding earlier ones; settings
    without a default must be given. Cross-setting checks are the class's own."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    for s in settings_of(cls):
        if s.required and s.attr not in merged:
            raise ConfigError(f"{s.flag_name or s.key} is required")
    return cls(**merged)


def config_from_flags(cls: type, args: argparse.Namespace, warn: Callable[[str], None],
               *earlier: Mapping[str, Any]) -> Any:
    """The config object from the flags over `earlier` field values; deprecations to `warn`."""
    fields, issues = parse_values(cls, flag_values(args, cls), from_flags=True)
    raise_first(issues, warn)
    return build(cls, *earlier, fields)


def raise_first(issues: Iterable[Issue], warn: Callable[[str], None]) -> None:
    for issue in issues:
        if issue.warning:
            warn(issue.message)
    for issue in issues:
        if not issue.warning:
            raise ConfigError(issue.message)


# -- what values look like --------------------------------------------------------------

_SIZE = re.compile(r"(\d+)\s*([KMGT]?)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, " ": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|)", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def size(name: str, v: Any) -> int:
    """Bytes: a whole number, or text with a 1024-based unit ("512M")."""
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    m = _SIZE.fullmatch(v.strip()) if isinstance(v, str) else None
    if m is None:
        raise ConfigError(f"{name} must be a size: bytes, or a number with K, M, G or T "
                          f"such as \"512M\", not {v!r}")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]


def duration(name: str, v: Any) -> float:
    """Seconds: a number, or text with a unit ("30s", "500ms", "5m", "1h")."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
        return float(v)
    m = _DURATION.fullmatch(v.strip()) if isinstance(v, str) else None
    if m is None:
        raise ConfigError(f"{name} must be a duration: seconds, or a number with ms, s, m or h "
                          f"such as \"30s\", not {v!r}")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]


def positive_duration(name: str, v: Any) -> float:
    seconds = duration(name, v)
    if seconds <= 0:
        raise ConfigError(f"{name} must be a duration above 0, not {v!r}")
    return seconds


def whole(minimum: int, maximum: int | None = None) -> Parse:
    """A whole number in a range (from a flag, argparse has made it an int already)."""
    def parse(name: str, v: Any) -> int:
        if (isinstance(v, bool) or not isinstance(v, int) or v < minimum
                or (maximum is not None and v > maximum)):
            top = f" and at most {maximum}" if maximum is not None else ""
            raise ConfigError(f"{name} must be a whole number of at least {minimum}{top}, not {v!r}")
        return v
    return parse


def one_of(choices: Iterable[str]) -> Parse:
    options = tuple(choices)

    def parse(name: str, v: Any) -> str:
        if v not in options:
            raise ConfigError(f"{name} must be one of {', '.join(options)}, not {v!r}")
        return str(v)
    return parse


def text(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise ConfigError(f"{name} must be text, not {v!r}")
    return v


def boolean(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{name} must be true or false, not {v!r}")
    return v


def path(name: str, v: Any) -> Path:
    if not isinstance(v, (str, Path)) or not str(v):
        raise ConfigError(f"{name} must be a path")
    return Path(v)


def words(v: Any) -> Any:
    """A comma-separated string (a flag, or TOML text) as a list of words; a list as it is."""
    return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v


# -- the runner -------------------------------------------------------------------------

MODES = ("persistent", "fork", "exec")
_mode = one_of(MODES)


def _modes(name: str, v: Any) -> frozenset[str]:
    v = words(v)
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
    return path(name, v).resolve()


def _cgi_roots(name: str, v: Any) -> tuple[tuple[str, str], ...]:
    """`["/cgi-bin=cgi-bin", "/apps=apps"]`: URL prefix = directory relative to the site."""
    v = words(v)
    if not isinstance(v, (list, tuple)):
        raise ConfigError(f"{name} must be a list such as ['/cgi-bin=cgi-bin'], not {v!r}")
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


def _status_listen(name: str, v: Any) -> str:
    """Empty: a unix socket in the site's state directory; "off": no status."""
    if v in ("", "off") or (isinstance(v, str) and v.startswith("unix:") and len(v) > 5):
        return str(v)
    if isinstance(v, str) and v != "fd:0":
        try:
            return _listen(name, v)
        except ConfigError:
            pass
    raise ConfigError(f"{name} must be unix:PATH, HOST:PORT, \"off\", or empty (a socket in "
                      f"the site's .cgirt/), not {v!r}")


def _host_name(name: str, v: Any) -> str:
    from .site import HOST_NAME

    if v == "" or (isinstance(v, str) and HOST_NAME.fullmatch(v)):
        return str(v)
    raise ConfigError(f"{name} must be letters, digits, '-' and '_' (at most 63), not {v!r}")


def _true_or_false(name: str, v: Any) -> bool:
    """A boolean whose default is true: its flag takes the word (`--access-log false`)."""
    if isinstance(v, str) and v in ("true", "false"):
        return v == "true"
    return boolean(name, v)


_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
# What CGI scripts import most: imported once per worker (and held by fork mode's template)
# instead of by every fork-mode child, and before a persistent worker's first request.
DEFAULT_PRELOAD = ("cgi", "cgitb", "html", "json", "datetime", "http.cookies", "hashlib",
                   "base64")


def _modules(name: str, v: Any) -> tuple[str, ...]:
    v = words(v)
    if not isinstance(v, (list, tuple)):
        raise ConfigError(f"{name} must be a list of module names")
    for item in v:
        if not isinstance(item, str) or not _MODULE_NAME.fullmatch(item):
            raise ConfigError(f"{name} entries are module names such as 'json', not {item!r}")
    return tuple(v)


@dataclass(frozen=True)
class RunnerConfig:
    site: Path = setting(_site, "the site directory (holds cgi-bin/ and htdocs/)", Path("."),
                         metavar="DIR")
    listen: str = setting(_listen, "unix:PATH, HOST:PORT (port 0: any), or fd:0 (inherited)",
                          "unix:cgirt.sock", metavar="ADDRESS")
    workers: int = setting(whole(1), "worker processes; each serves one request at a time", 2,
                           flag_type=int, metavar="N")
    mode: str = setting(_mode, "default execution mode: persistent, fork or exec",
                        "persistent", choices=MODES)
    allowed_modes: frozenset[str] = setting(
        _modes, "modes a site owner may choose with a .cgirt-mode file", frozenset(MODES),
        metavar="MODE,...")
    allow_keep_modules: bool = setting(
        _true_or_false, "a site may keep its modules loaded between requests (.cgirt-keep-modules)",
        True, metavar="true|false")
    timeout: float = setting(positive_duration, "how long a request may run (then 504)", 30.0,
                             metavar=DURATION)
    kill_grace: float = setting(
        positive_duration, "after the timeout, how long before a stuck worker is killed", 1.0,
        metavar=DURATION)
    max_requests: int = setting(whole(0), "recycle a worker after N requests (0: never)", 0,
                                flag_type=int, metavar="N")
    max_requests_jitter: int = setting(
        whole(0), "add up to N random requests to max_requests per worker", 0, flag_type=int,
        metavar="N")
    memory_limit: int = setting(size, "address-space limit per worker (0: none)", 0,
                                metavar=SIZE, renamed=(Renamed("memory_limit_mb", "M"),))
    max_body: int = setting(
        size, "largest request body accepted (0: no limit of the runner's own)", 0,
        metavar=SIZE, renamed=(Renamed("max_body_bytes"),))
    graceful_timeout: float = setting(
        positive_duration, "how long in-flight requests get to finish on reload or stop", 30.0,
        metavar=DURATION)
    cgi_roots: tuple[tuple[str, str], ...] = setting(
        _cgi_roots, "URL prefix = directory pairs scripts run from", (("/cgi-bin", "cgi-bin"),),
        metavar="URL=DIR,...", shown="/cgi-bin=cgi-bin")
    socket_mode: int = setting(_octal_mode, "permissions of a unix listening socket (octal)",
                               0o660, metavar="MODE", shown="660")
    script_path_env: str = setting(text, "PATH given to scripts, as Apache does",
                                   "/usr/local/bin:/usr/bin:/bin", metavar="PATH")
    preload: tuple[str, ...] = setting(
        _modules, "modules (not the site's own) each worker imports before any script runs",
        DEFAULT_PRELOAD, metavar="MODULE,...")

    status_listen: str = setting(
        _status_listen, "admin-only status address: unix:PATH or HOST:PORT; off: none", "",
        metavar="ADDRESS", shown="SITE/.cgirt/status.sock")
    status_socket_mode: int = setting(_octal_mode, "permissions of a unix status socket (octal)",
                                      0o600, metavar="MODE", shown="600")
    host_name: str = setting(
        _host_name, "this host's name when several serve the site from a shared filesystem: "
        "its pid file, status socket and logs carry it (logs/error.NAME.log)", "",
        metavar="NAME")
    publish_secret: Path | None = setting(
        path, "file with the secret shared with the FTP gateway; notices of a publish signed "
        "with it are taken on the status address (several runner hosts)", None,
        path=True, metavar="FILE")
    publish_window: float = setting(
        duration, "after a publish notice, how long stats bypass the network mount's "
        "attribute cache (at least the mount's attribute timeout)", 30.0, metavar=DURATION)
    slowlog_timeout: float = setting(
        duration, "a request running this long has its stack written to logs/slow.log (0: never)",
        0.0, metavar=DURATION)

    access_log: bool = setting(_true_or_false, "write the site's logs/access.log", True,
                               metavar="true|false")
    log_max_size: int = setting(
        size, "rotate a site log (error, access, slow, deploy) past this size (0: never)",
        10 * 1024 * 1024, metavar=SIZE, shown="10M")
    log_backups: int = setting(whole(0), "rotated files kept per site log", 5, flag_type=int,
                               metavar="N")
    log_file: str = setting(text, "the runner's own log file (empty: standard error)", "",
                            metavar="FILE")

    def __post_init__(self) -> None:
        if self.kill_grace > self.timeout * 10:
            raise ConfigError("kill_grace should not be more than ten times the timeout")

    @classmethod
    def from_sources(cls, file_values: Mapping[str, Any] | None = None,
                     overrides: Mapping[str, Any] | None = None,
                     warn: Callable[[str], None] | None = None) -> RunnerConfig:
        """From raw values by key: a file's, then the overrides (None: not given)."""
        layers = []
        for source in (file_values or {}, overrides or {}):
            given = {k.replace("-", "_"): v for k, v in source.items() if v is not None}
            fields, issues = parse_values(cls, given)
            raise_first(issues, warn or (lambda message: None))
            layers.append(fields)
        config: RunnerConfig = build(cls, *layers)
        return config
