"""Settings declared once (cgirt.config): every setting of every program is reachable from
its flag and from its TOML key, with the same value and the same help; one spelling of sizes
and durations; old names read with a warning; bad values refused with a clear message."""

from __future__ import annotations

import argparse
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from cgirt import __version__, cli
from cgirt.config import (RunnerConfig, Setting, build, duration, flag_values, parse_values,
                          settings_of, size)
from cgirt.configfile import ConfigFile
from cgirt.devserver.config import DevFrontConfig
from cgirt.devserver.front import build_parser as devserver_parser
from cgirt.errors import CgirtError, ConfigError, ExitStatus, StartupError, exit_status_for
from cgirt.fastcgi.client import TcpAddress, UnixAddress
from ftp_gateway import errors as ftp_errors
from ftp_gateway.cli import config_from_args
from ftp_gateway.config import GatewayConfig, check_file, config_from

REPO = Path(__file__).resolve().parents[2]

# key: (TOML value, the flag's text, the field values it gives). A new setting needs a line
# here: the tests below fail until it has one, so no setting escapes them.
RUNNER: dict[str, tuple[str, str, dict[str, Any]]] = {
    "site": ('"/tmp"', "/tmp", {"site": Path("/tmp")}),
    "listen": ('"127.0.0.1:9000"', "127.0.0.1:9000", {"listen": "127.0.0.1:9000"}),
    "workers": ("3", "3", {"workers": 3}),
    "mode": ('"fork"', "fork", {"mode": "fork"}),
    "allowed_modes": ('["fork", "exec"]', "fork,exec", {"allowed_modes": {"fork", "exec"}}),
    "allow_keep_modules": ("false", "false", {"allow_keep_modules": False}),
    "timeout": ('"45s"', "45s", {"timeout": 45.0}),
    "kill_grace": ('"500ms"', "500ms", {"kill_grace": 0.5}),
    "max_requests": ("7", "7", {"max_requests": 7}),
    "max_requests_jitter": ("2", "2", {"max_requests_jitter": 2}),
    "memory_limit": ('"512M"', "512M", {"memory_limit": 512 << 20}),
    "max_body": ('"1K"', "1K", {"max_body": 1024}),
    "graceful_timeout": ('"2m"', "2m", {"graceful_timeout": 120.0}),
    "cgi_roots": ('["/cgi-bin=cgi-bin", "/apps=apps"]', "/cgi-bin=cgi-bin,/apps=apps",
                  {"cgi_roots": (("/cgi-bin", "cgi-bin"), ("/apps", "apps"))}),
    "socket_mode": ('"600"', "600", {"socket_mode": 0o600}),
    "script_path_env": ('"/bin"', "/bin", {"script_path_env": "/bin"}),
    "preload": ('["json"]', "json", {"preload": ("json",)}),
    "status_listen": ('"127.0.0.1:9001"', "127.0.0.1:9001", {"status_listen": "127.0.0.1:9001"}),
    "status_socket_mode": ('"660"', "660", {"status_socket_mode": 0o660}),
    "slowlog_timeout": ('"2s"', "2s", {"slowlog_timeout": 2.0}),
    "host_name": ('"web-2"', "web-2", {"host_name": "web-2"}),
    "publish_secret": ('"/etc/hostname"', "/etc/hostname",
                       {"publish_secret": Path("/etc/hostname")}),
    "publish_window": ('"5s"', "5s", {"publish_window": 5.0}),
    "access_log": ("false", "false", {"access_log": False}),
    "log_max_size": ('"1M"', "1M", {"log_max_size": 1 << 20}),
    "log_backups": ("3", "3", {"log_backups": 3}),
    "log_file": ('"/tmp/r.log"', "/tmp/r.log", {"log_file": "/tmp/r.log"}),
}

GATEWAY: dict[str, tuple[str, str | None, dict[str, Any]]] = {  # None: a switch
    "users": ('"/tmp/u.json"', "/tmp/u.json", {"users_file": Path("/tmp/u.json")}),
    "listen": ('"127.0.0.1:2100"', "127.0.0.1:2100", {"host": "127.0.0.1", "port": 2100}),
    "banner": ('"hello"', "hello", {"banner": "hello"}),
    "tls": ("true", None, {"tls": True}),
    "require_tls": ("true", None, {"require_tls": True, "tls": True}),
    "tls_cert": ('"/etc/hostname"', "/etc/hostname", {"tls_cert": Path("/etc/hostname")}),
    "tls_key": ('"/etc/hostname"', "/etc/hostname", {"tls_key": Path("/etc/hostname")}),
    "tls_dir": ('"/tmp/tls"', "/tmp/tls", {"tls_dir": Path("/tmp/tls")}),
    "passive_ports": ('"30000-30009"', "30000-30009", {"passive_ports": (30000, 30009)}),
    "masquerade": ('"203.0.113.7"', "203.0.113.7", {"masquerade_address": "203.0.113.7"}),
    "max_connections": ("9", "9", {"max_connections": 9}),
    "max_connections_per_ip": ("3", "3", {"max_connections_per_ip": 3}),
    "idle_timeout": ('"5m"', "5m", {"idle_timeout": 300.0}),
    "data_timeout": ("12", "12", {"data_timeout": 12.0}),
    "ban_failures": ("4", "4", {"ban_failures": 4}),
    "ban_window": ('"1h"', "1h", {"ban_window": 3600.0}),
    "ban_duration": ('"90s"', "90s", {"ban_duration": 90.0}),
    "auth_failed_delay": ('"250ms"', "250ms", {"auth_failed_delay": 0.25}),
    "quota_size": ('"1G"', "1G", {"quota_bytes": 1 << 30}),
    "quota_files": ("100", "100", {"quota_files": 100}),
    "max_file_size": ('"100M"', "100M", {"max_file_size": 100 << 20}),
    "completion_grace": ('"200ms"', "200ms", {"completion_grace": 0.2}),
    "runners": ('["10.0.0.2:9001", "10.0.0.3:9001"]', "10.0.0.2:9001,10.0.0.3:9001",
                {"runners": ("10.0.0.2:9001", "10.0.0.3:9001")}),
    "publish_secret": ('"/etc/hostname"', "/etc/hostname",
                       {"publish_secret": Path("/etc/hostname")}),
    "notify_timeout": ('"1500ms"', "1500ms", {"notify_timeout": 1.5}),
    "log_file": ('"/tmp/ftp.log"', "/tmp/ftp.log", {"log_file": Path("/tmp/ftp.log")}),
}
GATEWAY_NEEDS = {"tls_key": ("tls_cert", "/etc/hostname"),  # a key is refused without its cert
                 "runners": ("publish_secret", "/etc/hostname")}  # runners without the secret
GATEWAY_FLAG_ONLY = {"port_file": ("/tmp/port", {"port_file": Path("/tmp/port")})}

DEVSERVER: dict[str, tuple[str, dict[str, Any]]] = {  # no TOML table: flags only
    "site": ("/tmp", {"site": Path("/tmp")}),
    "backend": ("127.0.0.1:9000", {"backend": TcpAddress("127.0.0.1", 9000)}),
    "listen": ("127.0.0.1:0", {"host": "127.0.0.1", "port": 0}),
    "server_name": ("example.org", {"server_name": "example.org"}),
    "max_header_size": ("16K", {"max_header_bytes": 16 << 10}),
    "max_headers": ("50", {"max_headers": 50}),
    "max_body": ("1M", {"max_body_bytes": 1 << 20}),
    "max_response_header_size": ("8K", {"max_response_header_bytes": 8 << 10}),
    "connect_timeout": ("2s", {"connect_timeout": 2.0}),
    "response_timeout": ("2m", {"response_timeout": 120.0}),
    "client_timeout": ("1.5", {"client_timeout": 1.5}),
}


def keys(cls: type) -> set[str]:
    return {s.key for s in settings_of(cls)}


def action(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    found = [a for a in parser._actions if flag in a.option_strings]
    assert len(found) == 1, flag
    return found[0]


def subparser(name: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    chosen = sub.choices[name]
    assert isinstance(chosen, argparse.ArgumentParser)
    return chosen


def assert_fields(config: object, expected: dict[str, Any]) -> None:
    for attr, value in expected.items():
        got = getattr(config, attr)
        assert (set(got) if isinstance(got, frozenset) else got) == value, attr


def never_warned(message: str) -> None:
    raise AssertionError(f"unexpected warning: {message}")


def test_every_setting_has_a_sample_here() -> None:
    assert keys(RunnerConfig) == set(RUNNER)
    assert keys(GatewayConfig) == set(GATEWAY) | set(GATEWAY_FLAG_ONLY)
    assert keys(DevFrontConfig) == set(DEVSERVER)


@pytest.mark.parametrize("s", settings_of(RunnerConfig), ids=lambda s: s.key)
def test_runner_setting_from_flag_and_from_toml(s: Setting, tmp_path: Path) -> None:
    toml, flag_text, expected = RUNNER[s.key]
    # The flag, through the real `cgirt serve` parser, with the help of the declaration.
    assert s.flag_name == "--" + s.key.replace("_", "-")
    assert action(subparser("serve"), s.flag_name).help.startswith(s.help)  # type: ignore[union-attr]
    site = [] if s.key == "site" else ["--site", "/tmp"]
    args = cli.build_parser().parse_args(["serve", *site, s.flag_name, flag_text])
    assert_fields(cli._runner_config(args), expected)
    # The same value from the [runner] table and from a [sites.NAME] table.
    conf = tmp_path / "cgirt.toml"
    base = "" if s.key == "site" else 'site = "/tmp"\n'
    conf.write_text(f'[runner]\n{base}{s.key} = {toml}\n\n[sites.one]\n{s.key} = {toml}\n')
    assert_fields(ConfigFile(conf).runner_config(None, {}, never_warned), expected)
    assert_fields(ConfigFile(conf).runner_config("one", {}, never_warned), expected)


@pytest.mark.parametrize("s", settings_of(GatewayConfig), ids=lambda s: s.key)
def test_gateway_setting_from_flag_and_from_toml(s: Setting, tmp_path: Path) -> None:
    assert s.flag_name is not None
    assert action(subparser("ftp"), s.flag_name).help.startswith(s.help)  # type: ignore[union-attr]
    users = [] if s.key == "users" else ["--users", "/tmp/u.json"]
    needs = GATEWAY_NEEDS.get(s.key)
    if needs:
        users += ["--" + needs[0].replace("_", "-"), needs[1]]
    if s.key in GATEWAY_FLAG_ONLY:
        flag_text, expected = GATEWAY_FLAG_ONLY[s.key]
        toml = f'"{flag_text}"'
    else:
        toml, text, expected = GATEWAY[s.key]
        flag_text = text or ""
    argv = ["ftp", *users, s.flag_name] + ([flag_text] if flag_text else [])
    assert_fields(config_from_args(cli.build_parser().parse_args(argv)), expected)
    conf = tmp_path / "cgirt.toml"
    lines = [] if s.key == "users" else ['users = "/tmp/u.json"']
    lines += [f'{needs[0]} = "{needs[1]}"'] if needs else []
    conf.write_text("\n".join(["[ftp]", *lines, f"{s.key} = {toml}"]) + "\n")
    fields, problems, _ = ConfigFile(conf).read(GatewayConfig, "ftp", tmp_path)
    if s.key in GATEWAY_FLAG_ONLY:
        assert problems == [f"{conf}:3: unknown setting {s.key!r}"]
    else:
        assert problems == []
        assert_fields(config_from(fields), expected)


@pytest.mark.parametrize("s", settings_of(DevFrontConfig), ids=lambda s: s.key)
def test_devserver_setting_from_flag(s: Setting) -> None:
    assert s.flag_name is not None
    parser = devserver_parser()
    assert action(parser, s.flag_name).help.startswith(s.help)  # type: ignore[union-attr]
    flag_text, expected = DEVSERVER[s.key]
    required = {"site": "/tmp", "backend": "unix:/tmp/b.sock"}
    argv = [a for k, v in required.items() if k != s.key for a in (f"--{k}", v)]
    args = parser.parse_args([*argv, s.flag_name, flag_text])
    fields, issues = parse_values(DevFrontConfig, flag_values(args, DevFrontConfig), from_flags=True)
    assert issues == []
    assert_fields(build(DevFrontConfig, fields), expected)


def test_devserver_requires_site_and_backend() -> None:
    args = devserver_parser().parse_args(["--site", "/tmp"])
    fields, _ = parse_values(DevFrontConfig, flag_values(args, DevFrontConfig), from_flags=True)
    with pytest.raises(ConfigError, match="--backend is required"):
        build(DevFrontConfig, fields)
    args = devserver_parser().parse_args(["--site", "/tmp", "--backend", "unix:/b"])
    fields, _ = parse_values(DevFrontConfig, flag_values(args, DevFrontConfig), from_flags=True)
    assert build(DevFrontConfig, fields).backend == UnixAddress("/b")


@pytest.mark.parametrize("text, value", [
    (0, 0), (1000, 1000), ("1000", 1000), ("512K", 512 << 10), ("512m", 512 << 20),
    ("1G", 1 << 30), ("2T", 2 << 40), (" 64 M ", 64 << 20),
])
def test_sizes(text: object, value: int) -> None:
    assert size("memory_limit", text) == value


@pytest.mark.parametrize("text, seconds", [
    (30, 30.0), (0.25, 0.25), ("30", 30.0), ("30s", 30.0), ("500ms", 0.5), ("5m", 300.0),
    ("1h", 3600.0), ("1.5s", 1.5), (".5", 0.5),
])
def test_durations(text: object, seconds: float) -> None:
    assert duration("timeout", text) == seconds


@pytest.mark.parametrize("bad", ["lots", "-1", -1, "1.5M", "5 parsecs", "", True, [512]])
def test_bad_sizes_name_the_setting_and_the_spelling(bad: object) -> None:
    with pytest.raises(ConfigError, match=r'memory_limit must be a size: .* "512M", not'):
        size("memory_limit", bad)


@pytest.mark.parametrize("bad", ["soon", "-3s", -3, "3 days", "1d", "", False, ["30s"]])
def test_bad_durations_name_the_setting_and_the_spelling(bad: object) -> None:
    with pytest.raises(ConfigError, match=r'timeout must be a duration: .* "30s", not'):
        duration("timeout", bad)


def test_a_bad_value_from_a_flag_names_the_flag() -> None:
    args = cli.build_parser().parse_args(["serve", "--site", "/tmp", "--max-body", "huge"])
    with pytest.raises(ConfigError, match=r"^--max-body must be a size"):
        cli._runner_config(args)


@pytest.mark.parametrize("cls, old, new, raw, values, message", [
    (RunnerConfig, "memory_limit_mb", "memory_limit", 512, {"memory_limit": 512 << 20},
     'memory_limit_mb is deprecated: use memory_limit = "512M"'),
    (RunnerConfig, "max_body_bytes", "max_body", 1000, {"max_body": 1000},
     "max_body_bytes is deprecated: use max_body = 1000"),
    (GatewayConfig, "quota_bytes", "quota_size", 4096, {"quota_bytes": 4096},
     "quota_bytes is deprecated: use quota_size = 4096"),
])
def test_old_names_still_read_with_a_warning(cls: type, old: str, new: str, raw: int,
                                             values: dict[str, Any], message: str) -> None:
    fields, issues = parse_values(cls, {old: raw})
    assert fields == values
    assert [(i.key, i.message, i.warning) for i in issues] == [(old, message, True)]
    assert parse_values(cls, {new: raw if new != "memory_limit" else "512M"}) == (values, [])


def test_old_flags_still_read_with_a_warning() -> None:
    args = cli.build_parser().parse_args(["serve", "--site", "/tmp", "--memory-limit-mb", "64",
                                          "--max-body-bytes", "10"])
    fields, issues = parse_values(RunnerConfig, flag_values(args, RunnerConfig), from_flags=True)
    assert fields == {"site": Path("/tmp"), "memory_limit": 64 << 20, "max_body": 10}
    assert [i.message for i in issues if i.warning] == [
        "--memory-limit-mb is deprecated: use --memory-limit 64M",
        "--max-body-bytes is deprecated: use --max-body 10"]
    config = config_from_args(cli.build_parser().parse_args(
        ["ftp", "--users", "/tmp/u.json", "--quota-bytes", "99"]))
    assert config.quota_bytes == 99
    # Old flags are not advertised.
    assert "--memory-limit-mb" not in subparser("serve").format_help()


def test_old_names_in_a_file_warn_with_their_line(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('[runner]\nsite = "/tmp"\nmemory_limit_mb = 256\n')
    warned: list[str] = []
    config = ConfigFile(conf).runner_config(None, {}, warned.append)
    assert config.memory_limit == 256 << 20
    assert warned == [f'{conf}:3: warning: memory_limit_mb is deprecated: use memory_limit = "256M"']


def test_the_example_config_uses_no_old_name() -> None:
    problems, warnings = ConfigFile(REPO / "deploy" / "cgirt.toml").problems(None)
    assert warnings == []


def test_errors_share_one_root_and_one_exit_table() -> None:
    assert issubclass(ftp_errors.GatewayError, CgirtError)
    assert issubclass(ftp_errors.ConfigError, ConfigError)
    assert exit_status_for(ftp_errors.ConfigError("x")) == ExitStatus.USAGE
    assert exit_status_for(ftp_errors.UsersFileError("x")) == ExitStatus.USAGE
    assert exit_status_for(ftp_errors.CannotListen("x")) == ExitStatus.CANNOT_START
    assert exit_status_for(StartupError("x")) == ExitStatus.CANNOT_START
    assert exit_status_for(ConfigError("x")) == ExitStatus.USAGE
    assert exit_status_for(RuntimeError("x")) == ExitStatus.FAILURE
    from cgirt.devserver.config import DevFrontError
    from cgirt.runner.supervisor import WORKER_BOOT_ERROR

    assert exit_status_for(DevFrontError("x")) == ExitStatus.CANNOT_START
    assert WORKER_BOOT_ERROR == ExitStatus.BOOT_FAILED and int(WORKER_BOOT_ERROR) == 3


def test_readme_lists_every_exit_status_once() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Exit statuses", 1)[1].split("\n#", 1)[0]
    for status in ExitStatus:
        assert f"\n- {int(status)} " in section, status
    assert readme.count("### Exit statuses") == 1


def test_version_falls_back_to_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.version() == metadata.version("cgirt")

    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    assert cli.version() == __version__


def test_an_old_and_a_new_name_together_are_refused(tmp_path: Path) -> None:
    fields, issues = parse_values(RunnerConfig, {"memory_limit": "1G", "memory_limit_mb": 512})
    assert fields == {"memory_limit": 1 << 30}
    assert [i.message for i in issues if not i.warning] == [
        "memory_limit_mb and memory_limit are the same setting: keep memory_limit only"]
    args = cli.build_parser().parse_args(["serve", "--site", "/tmp", "--memory-limit", "1G",
                                          "--memory-limit-mb", "512"])
    with pytest.raises(ConfigError, match="^--memory-limit and --memory-limit-mb are the same "
                                          "setting: keep --memory-limit only$"):
        cli._runner_config(args)


def test_config_check_reports_a_missing_tls_file_beside_a_bad_value(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('[ftp]\nusers = "u.json"\nmax_connections = "many"\ntls_cert = "nope.pem"\n')
    problems, warnings = ConfigFile(conf).problems(check_file)
    assert [p.split(": ", 1)[0] for p in problems] == [f"{conf}:3", f"{conf}:4"]
    assert "TLS file not found" in problems[1] and warnings == []
