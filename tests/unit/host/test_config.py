"""What `cgirt host` reads: the admin's file and its drop-ins, all or nothing, every problem
with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cgirt.host.config import HostConfigError, load


def write(tmp_path: Path, main: str, **drop_ins: str) -> Path:
    (tmp_path / "site").mkdir(exist_ok=True)
    (tmp_path / "sites.d").mkdir(exist_ok=True)
    for name, text in drop_ins.items():
        (tmp_path / "sites.d" / f"{name}.toml").write_text(text)
    path = tmp_path / "cgirt.toml"
    path.write_text(main)
    return path


def test_sites_of_the_file_and_of_the_drop_ins_with_their_pools(tmp_path: Path) -> None:
    path = write(tmp_path, f'[host]\nsites_dir = "sites.d"\nidle_timeout = 5\n\n[runner]\nworkers = 3\n\n'
                 f'[sites.a]\nsite = "{tmp_path}/site"\nlisten = "unix:{tmp_path}/a.sock"\n'
                 'pm = "static"\n',
                 b=f'site = "{tmp_path}/site"\nlisten = "unix:{tmp_path}/b.sock"\nmax_workers = 7\n')
    plan = load(path)
    assert plan.names == ["a", "b"]
    a, b = plan.sites["a"], plan.sites["b"]
    assert (a.pool.pm, a.max_workers, a.runner.workers) == ("static", 3, 3)
    assert (b.pool.pm, b.max_workers, b.pool.idle_timeout) == ("ondemand", 7, 5.0)
    assert b.source == tmp_path / "sites.d" / "b.toml"


def test_every_problem_in_every_file_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, f'[host]\nsites_dir = "sites.d"\npm = "lazy"\n\n'
                 f'[sites.a]\nsite = "{tmp_path}/site"\nlisten = "unix:{tmp_path}/a.sock"\n'
                 'max_workers = -1\n',
                 b=f'site = "{tmp_path}/site"\nlisten = "unix:{tmp_path}/a.sock"\n',
                 c='site = "/nowhere"\nlisten = "fd:0"\ncolour = "red"\n',
                 a=f'site = "{tmp_path}/site"\nlisten = "unix:{tmp_path}/x.sock"\n')
    with pytest.raises(HostConfigError) as caught:
        load(path)
    problems = caught.value.problems
    c = tmp_path / "sites.d" / "c.toml"
    expected = [f"{path}:3: pm must be one of static, ondemand, dynamic, not 'lazy'",
                f"{path}:8: max_workers must be a whole number of at least 0, not -1",
                f"{c}:1: site directory /nowhere does not exist",
                f"{c}:3: unknown site setting 'colour'",
                f"{tmp_path / 'sites.d' / 'a.toml'}: site 'a' is also [sites.a] in {path}",
                f"{tmp_path / 'sites.d' / 'b.toml'}:2: unix:{tmp_path}/a.sock is also the "
                "address of site 'a'"]
    for line in expected:
        assert line in problems, (line, problems)


def test_a_toml_syntax_error_in_a_drop_in_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[host]\nsites_dir = "sites.d"\n', broken='site = "unterminated\n')
    with pytest.raises(HostConfigError) as caught:
        load(path)
    assert any(p.startswith(f"{tmp_path / 'sites.d' / 'broken.toml'}: ") and "line 1" in p
               for p in caught.value.problems)


def test_the_hosts_status_settings_and_their_problems(tmp_path: Path) -> None:
    from cgirt.host.status import host_status_address

    path = write(tmp_path, '[host]\n')
    assert host_status_address(load(path).settings, path) == f"unix:{tmp_path}/.cgirt-host/status.sock"
    path = write(tmp_path, '[host]\nstatus_listen = "off"\n')
    assert host_status_address(load(path).settings, path) is None
    path = write(tmp_path, '[host]\nstatus_listen = "127.0.0.1:9101"\nstatus_socket_mode = "640"\n')
    assert (load(path).settings.status_listen, load(path).settings.status_socket_mode) == (
        "127.0.0.1:9101", 0o640)
    path = write(tmp_path, '[host]\nstatus_listen = "nowhere"\nstatus_socket_mode = "999"\n'
                 'state_dir = ""\n')
    with pytest.raises(HostConfigError) as caught:
        load(path)
    problems = "\n".join(caught.value.problems)
    assert f"{path}:2: status_listen" in problems and f"{path}:3: status_socket_mode must be an octal" in problems
    assert f"{path}:4: state_dir must be a directory path" in problems
