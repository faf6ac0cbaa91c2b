"""The settings of the status and the slow log: defaults, accepted values, clear errors."""

from __future__ import annotations

import pytest

from cgirt.config import RunnerConfig
from cgirt.errors import ConfigError
from cgirt.runner.statusserver import status_address


def test_defaults_a_status_socket_in_the_state_dir_and_no_slow_log(tmp_path: object) -> None:
    config = RunnerConfig.from_sources(overrides={"site": str(tmp_path)})
    assert (config.status_listen, config.status_socket_mode, config.slowlog_timeout) == ("", 0o600, 0.0)
    assert status_address(config) == f"unix:{tmp_path}/.cgirt/status.sock"


@pytest.mark.parametrize("value, address", [
    ("off", None), ("unix:/run/cgirt/a.status", "unix:/run/cgirt/a.status"),
    ("127.0.0.1:9000", "127.0.0.1:9000"), ("[::1]:0", "[::1]:0"),
])
def test_status_listen(value: str, address: str | None) -> None:
    config = RunnerConfig.from_sources({"status_listen": value, "status_socket_mode": "660",
                                        "slowlog_timeout": 2})
    assert status_address(config) == address
    assert config.status_socket_mode == 0o660 and config.slowlog_timeout == 2.0


@pytest.mark.parametrize("key, value, message", [
    ("status_listen", "fd:0", "status_listen must be unix:PATH, HOST:PORT, \"off\""),
    ("status_listen", "localhost", "status_listen must be"),
    ("status_listen", 9000, "status_listen must be"),
    ("status_socket_mode", "999", "octal mode"),
    ("slowlog_timeout", -1, "slowlog_timeout"),
    ("slowlog_timeout", "5 parsecs", "slowlog_timeout"),
])
def test_bad_values_are_named(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        RunnerConfig.from_sources({key: value})
